"""The ``acquire-vf`` Typer app and the options its commands share: the subcommand modules
(:mod:`acquire_vf._cli`, ``_cli_train``, ``_cli_evaluate``, ``_cli_calibrate``) register
on it, and :mod:`acquire_vf._cli` imports them all, so nothing imports back up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None,  # help texts name TOML sections: [storage] is text
                  help="Real-time virtual refocusing and virtual fluorescence for Micro-Manager.")
profile_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="Check hardware profiles.")
app.add_typer(profile_app, name="profile")


BackendOpt = Annotated[str | None, typer.Option(
    "--backend", help="Run engines on this backend only (onnxruntime, torch, tensorrt, "
    "openvino).")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Output folder (default: the "
                                             "profile's storage folder, time-stamped).")]
HeadlessOpt = Annotated[bool, typer.Option("--headless", metavar="", help="No live window.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", help="ome-tiff or ome-zarr (default: the profile's [storage] format).")]
PlanOpt = Annotated[Path | None, typer.Option(
    "--plan", help="A useq-schema MDASequence (.json or .yaml, as pymmcore-plus and "
    "napari-micromanager save it) instead of the profile's [acquisition].")]
AcqOpt = Annotated[str | None, typer.Option(
    "--acquisition", help="Acquisition backend: pycromanager (Micro-Manager; the default), "
    "pymmcore-plus (Micro-Manager's core through pymmcore-plus's MDA engine, in this process; "
    "the default for [connection] kind = \"pymmcore-plus\") or memory (the simulated specimen "
    "rendered directly, no Micro-Manager).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", metavar="",
                                            help="Replace an existing output.")]
