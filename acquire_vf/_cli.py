"""The ``acquire-vf`` command line.

Errors a user can cause print one line (what was expected, what arrived) and exit non-zero;
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from acquire_vf import __version__
from acquire_vf._cli_app import (
    AcqOpt,
    BackendOpt,
    FormatOpt,
    HeadlessOpt,
    OutOpt,
    OverwriteOpt,
    PlanOpt,
    app,
    profile_app,
)
from acquire_vf._errors import AcquireVFError, DataError, DisplayUnavailable

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"acquire-vf {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", metavar="", help="Show tracebacks.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", metavar="",
                                          help="More log output.")] = False,
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _desktop() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
        or sys.platform in ("win32", "darwin")


def _has_display() -> bool:
    return _desktop() or os.environ.get("QT_QPA_PLATFORM") == "offscreen"


def _render_offscreen() -> None:
    """Screenshots render offscreen (no window flashes up, no desktop needed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")


def _want_window(headless: bool, display: bool, profile_display: bool) -> bool:
    """The live window when asked for, or by default on a desktop; else a one-line note."""
    if headless:
        return False
    if display:
        if not _has_display():
            raise DisplayUnavailable("--display: no display found (expected a desktop session, or "
                            "QT_QPA_PLATFORM=offscreen)")
        return True
    if not profile_display:
        return False
    if _desktop() and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        from acquire_vf._errors import MissingExtraError

        try:
            import pyqtgraph  # noqa: F401
        except ImportError:
            typer.echo(f"running headless ({MissingExtraError('pyqtgraph', 'gui')})", err=True)
            return False
        return True
    typer.echo("running headless (no display found)", err=True)
    return False


class OnClose(enum.StrEnum):
    ask = "ask"
    stop = "stop"
    continue_ = "continue"


DisplayOpt = Annotated[bool, typer.Option("--display", metavar="",
                                          help="Open the live window even where "
                                          "none would open by default (e.g. offscreen).")]
OnCloseOpt = Annotated[OnClose, typer.Option(
    "--on-close", help="Closing the live window mid-run: ask, stop the run, or continue "
    "headless.")]
CloseDoneOpt = Annotated[bool, typer.Option("--close-when-done", metavar="",
                                            help="Close the live window "
                                            "when the run ends.")]
ShotOpt = Annotated[Path | None, typer.Option("--screenshot", help="Save the live window as "
                                              "PNG when the run ends, then close it (with "
                                              "--display, works offscreen).")]


def _session(profile_name: str, out: Path | None, *, headless: bool, display: bool,
             on_close: OnClose, close_when_done: bool, backend: str | None,
             time_points: int | None = None, screenshot: Path | None = None,
             fmt: str | None = None, **run_args: object) -> None:
    from acquire_vf._session import default_out_dir, run_session
    from acquire_vf.config import load_profile

    prof = load_profile(profile_name)
    if fmt is not None:
        if fmt not in ("ome-tiff", "ome-zarr"):
            raise DataError(f"--format: expected ome-tiff or ome-zarr, got '{fmt}'")
        prof = prof.model_copy(update={"storage": prof.storage.model_copy(
            update={"format": fmt})})
    out = out or default_out_dir(prof)
    typer.echo(f"saving to {out.resolve()}")
    if screenshot is not None:
        _render_offscreen()
        headless, display = False, True
    window = _want_window(headless, display, prof.display.enabled)
    code = 0
    try:
        report = run_session(prof, out, time_points=time_points, profile_source=profile_name,
                    quiet_libraries=not _state["debug"], backend=backend, display=window,
                    on_close=on_close.value, close_when_done=close_when_done,
                    screenshot=screenshot, **run_args)  # type: ignore[arg-type]
        typer.echo(f"saved to {out.resolve()}" if out.is_dir() else
                   f"nothing saved ({out} was not created)")
        if report.get("state") == "cancelled" and report.get("stopped_by") != "acquire-vf stop":
            # the shell's convention: 128 + the signal
            code = 128 + getattr(signal, report.get("stopped_by") or "SIGINT", signal.SIGINT)
            # a Ctrl-C pressed again while the interpreter exits would print a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except AcquireVFError as e:
        if not window or _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        code = e.exit_code
    if window:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # Qt and pyqtgraph tear down in the wrong order at interpreter exit
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    headless: HeadlessOpt = False,
    time_points: Annotated[int | None, typer.Option("--time-points", min=1,
                                                    help="Number of time points.")] = None,
    out: OutOpt = None,
    backend: BackendOpt = None,
    display: DisplayOpt = False,
    on_close: OnCloseOpt = OnClose.ask,
    close_when_done: CloseDoneOpt = False,
    screenshot: ShotOpt = None,
    plan: PlanOpt = None,
    acquisition: AcqOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """The main job on Micro-Manager's demo configuration (no hardware needed)."""
    _session("demo", out, headless=headless, display=display, on_close=on_close,
             close_when_done=close_when_done, backend=backend, time_points=time_points,
             screenshot=screenshot, plan=plan, acquisition=acquisition, fmt=fmt)


@app.command()
def live(
    profile: Annotated[str, typer.Option("--profile", help="Hardware profile (.toml or name).")],
    headless: HeadlessOpt = False,
    out: OutOpt = None,
    backend: BackendOpt = None,
    display: DisplayOpt = False,
    on_close: OnCloseOpt = OnClose.ask,
    close_when_done: CloseDoneOpt = False,
    screenshot: ShotOpt = None,
    time_points: Annotated[int | None, typer.Option("--time-points", min=1,
                                                    help="Number of time points.")] = None,
    plan: PlanOpt = None,
    acquisition: AcqOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Acquire on the microscope that PROFILE describes."""
    _session(profile, out, headless=headless, display=display, on_close=on_close,
             close_when_done=close_when_done, backend=backend, screenshot=screenshot,
             time_points=time_points, plan=plan, acquisition=acquisition, fmt=fmt)


@app.command()
def replay(
    dataset: Annotated[Path, typer.Argument(help="A saved acquire-vf run folder or .ome.tif.")],
    profile: Annotated[str, typer.Option("--profile", help="Profile whose pipeline (engines, "
                                         "settings) runs over the data.")],
    out: OutOpt = None,
    fast: Annotated[bool, typer.Option("--as-fast-as-possible", metavar="", help="Do not keep the "
                                       "recorded pace.")] = False,
    headless: HeadlessOpt = False,
    backend: BackendOpt = None,
    display: DisplayOpt = False,
    screenshot: ShotOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Play a saved acquisition's physical frames through PROFILE's pipeline."""
    from acquire_vf.storage import check_output

    if not dataset.exists():
        raise DataError(f"replay: dataset '{dataset}' not found (expected a run folder or "
                        ".ome.tif)")
    if out is not None:
        check_output(out, inputs=[dataset])
    _session(profile, out, headless=headless, display=display, on_close=OnClose.ask,
             close_when_done=False, backend=backend, screenshot=screenshot, replay=dataset,
             as_fast_as_possible=fast, fmt=fmt)


@profile_app.command("validate")
def profile_validate(
    profile: Annotated[str, typer.Argument(help="Hardware profile (.toml or shipped name).")],
    here: Annotated[bool, typer.Option("--here", help="Also check that this machine can run "
                                       "the engines as [compute] asks (GPU, TensorRT, "
                                       "precision).")] = False,
) -> None:
    """Check a profile without touching hardware: keys, types, channels, engine files and
    cards, engine inputs, and a headless connection's Micro-Manager folder; with --here, also
    whether this machine can run the engines as the profile's compute settings ask."""
    from acquire_vf.config import load_profile, resolve_profile_path

    path = resolve_profile_path(profile)
    prof = load_profile(path)
    from acquire_vf._validate import validate

    validate(prof, str(path), here=here)
    engines = bool(prof.virtual_channels or prof.refocus_engines() or prof.estimator_engines())
    machine = ("; this machine can run its engines" if here else
               "; not checked against this machine (--here does)") if engines else ""
    typer.echo(f"{path}: ok ({prof.connection.kind} connection, {len(prof.channels)} physical "
               f"and {len(prof.virtual_channels)} virtual channel(s), "
               f"autofocus {prof.autofocus.policy}){machine}")


@profile_app.command("copy")
def profile_copy(
    profile: Annotated[str, typer.Argument(help="Profile to copy (.toml or shipped name).")],
    dest: Annotated[Path, typer.Argument(help="The new profile file (.toml).")],
    overwrite: OverwriteOpt = False,
) -> None:
    """Copy a profile to another folder, its engine paths rewritten to still find the engines
    (they are relative to the profile's folder); comments are kept."""
    from acquire_vf.config import copy_profile, resolve_profile_path

    src = resolve_profile_path(profile)
    changed = copy_profile(src, dest, overwrite=overwrite)
    typer.echo(f"{dest}: copied from {src}" + (f"; {len(changed)} engine path(s) rewritten "
                                               f"(e.g. {changed[0][0]} -> {changed[0][1]})"
                                               if changed else ""))


class DatasetName(enum.StrEnum):
    bbbc006 = "bbbc006"
    bbbc022 = "bbbc022"
    mda231 = "mda231"


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(
            f"expected WIDTHxHEIGHT in pixels (e.g. 696x520), got {text!r}") from None
    if w < 64 or h < 64:
        raise typer.BadParameter(f"expected at least 64x64 pixels, got {text!r}")
    return h, w


@app.command()
def simulate(
    dataset: Annotated[DatasetName, typer.Argument(help="Which public layout to write.")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to create.")],
    fields: Annotated[int, typer.Option("--fields", min=1, help="Fields (sites) to simulate.")]
    = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")]
    = 0,
    size: Annotated[str | None, typer.Option("--size", help="Field size WIDTHxHEIGHT "
                                             "(default: the public dataset's).")] = None,
    realistic: Annotated[bool, typer.Option(
        "--realistic", metavar="", help="Simulator version 4's realism: thick cells, "
        "background, vignetting, sCMOS pattern, linked channels (docs/simulator.md).")] = False,
    randomise: Annotated[bool, typer.Option(
        "--randomise", metavar="", help="With --realistic: draw texture, density, gains, PSF "
        "aberration, pixel size and dose per field (domain randomisation).")] = False,
    dose: Annotated[float, typer.Option(
        "--dose", min=0.001, max=10.0, help="With --realistic: photon scale (1: about 5,000 "
        "electrons at the brightest pixels; 0.01-0.04: the low-dose regime).")] = 1.0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Synthetic datasets in the layouts of BBBC006, BBBC022 and the paper's MDA-MB-231."""
    import shutil

    from rich.progress import Progress

    from acquire_vf.simulate import write_dataset
    from acquire_vf.storage import check_output

    shape = _parse_size(size)
    if (randomise or dose != 1.0) and not realistic:
        raise DataError("--randomise and --dose: expected --realistic with them (they are "
                        "simulator version 4's), got neither")
    from acquire_vf.simulate import Realism

    realism = Realism(randomise=randomise, dose=dose) if realistic else None
    check_output(out, overwrite=overwrite)
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    with Progress(transient=False) as bar:
        task = bar.add_task(f"simulating {dataset.value}", total=fields)
        write_dataset(dataset.value, out, fields=fields, seed=seed, size=shape,
                      progress=lambda k: bar.update(task, completed=k), realism=realism)
    typer.echo(f"{out}: {fields} field(s) of {dataset.value} (seed {seed})")


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="With --model: one TIFF per input "
                                                 "channel in the card's order, or one (C, Y, X) "
                                                 "TIFF. With --profile: a saved run (its "
                                                 "folder, .ome.tif or .ome.zarr), or an NGFF "
                                                 "image or HCS plate.")],
    out: Annotated[Path, typer.Option("--out", help="Output TIFF (--model) or OME-Zarr store "
                                      "(--profile: OUT.ome.zarr).")],
    model: Annotated[Path | None, typer.Option(
        "--model", help="Engine (NAME.onnx with NAME.json, or a bioimage.io package exported "
        "by acquire-vf).")] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Profile whose refocus and virtual channels to make over a saved "
        "run, with the live run's checks.")] = None,
    cluster: Annotated[str, typer.Option(
        "--cluster", help="With --profile: none (this process), local[:N] (a Dask "
        "LocalCluster of N workers), tcp://HOST:PORT (a running scheduler) or "
        "jobqueue:FILE.yaml (Slurm, PBS, LSF, SGE).")] = "none",
    adapt: Annotated[str, typer.Option(
        "--adapt", help="With --cluster jobqueue: the workers' adaptive range, MIN:MAX.")
    ] = "1:4",
    uncertainty: Annotated[int | None, typer.Option(
        "--uncertainty", help="With --profile: passes per virtual frame for its uncertainty "
        "channel (0: none, 2-8; default: the profile's [verification]).")] = None,
    chunk: Annotated[int, typer.Option(
        "--chunk", help="With --cluster: frame sets per task (fewer scheduler round trips "
        "for small frames; 1: a task per set).")] = 1,
    backend: BackendOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run an engine on saved images (any size; keeps the input's shape and dtype), or a
    profile's virtual channels over a saved run (on Dask distributed with --cluster)."""
    if profile is not None:
        from acquire_vf._cli_predict import predict_over_run

        if model is not None:
            raise DataError("predict: expected --model (images) or --profile (a saved run), "
                            "got both")
        predict_over_run(profile, inputs, out, cluster=cluster, adapt=adapt, backend=backend,
                         overwrite=overwrite, uncertainty=uncertainty, chunk=chunk)
        return
    if model is None:
        raise DataError("predict: expected --model ENGINE (images) or --profile P (a saved "
                        "run), got neither")
    from acquire_vf.card import engine_path
    from acquire_vf.storage import check_output

    model = engine_path(model)
    check_output(out, inputs=[*inputs, model, model.with_suffix(".json")], overwrite=overwrite)
    from acquire_vf.config import Compute
    from acquire_vf.inference import predict as run_predict
    from acquire_vf.pipeline import gate_for

    info = run_predict(model, inputs, out, Compute(backends=("onnxruntime", "torch"),
                                                   allow_fallback=True), backend=backend,
                       gate_for=gate_for)
    flags = [k for k in ("input_out_of_range", "saturated") if info.get(k)]
    h, w = info["shape"][-2:]
    choice = info.get("refocus_choice")
    gated = f"; refocus gate: {choice} ({info['refocus_reason']})" if choice else ""
    typer.echo(f"{out}: {h} x {w} pixels (height x width), {info['dtype']}, "
               f"{info['backend']}; QC: {', '.join(flags) or 'ok'}{gated} (details in "
               f"{out.name}.json beside it)")


@app.command("build-engine")
def build_engine(
    onnx: Annotated[Path | None, typer.Argument(
        help="Engine (NAME.onnx with NAME.json); without it, every engine of --profile.")
    ] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="Take tile, batch, precision and device from this profile's "
        "[tiling] and [compute], so the session finds the plan. Without ONNX on a machine "
        "with no NVIDIA GPU: measure every CPU path of the profile's engines and keep the "
        "fastest that agrees with fp32 (sessions run it).")] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="fp32, fp16 or int8 "
                                                  "(default: the profile's, else fp16).")] = None,
    tile: Annotated[int | None, typer.Option("--tile", help="Tile size the plan is built for "
                                             "(default: the profile's, else 512).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Largest batch of tiles "
                                              "(default: the profile's, else 4).")] = None,
) -> None:
    """Build the TensorRT plan for this GPU into the engine cache, ahead of a session (for
    the tiling and precision the session will ask for: pass its --profile); on a CPU-only
    machine, --profile alone chooses each engine's fastest CPU path by measurement."""
    from acquire_vf.config import Compute, Tiling, load_profile
    from acquire_vf.inference import create_engine

    prof = load_profile(profile) if profile is not None else None
    if onnx is None:
        if prof is None:
            raise DataError("build-engine: expected an ONNX engine or --profile P, got neither")
        from acquire_vf._cli_fastest import fastest_paths

        fastest_paths(prof)
        return
    tiling = prof.tiling if prof is not None else Tiling()
    base = prof.compute.model_dump() if prof is not None else {"precision": "fp16"}
    chosen = precision or base["precision"]
    if chosen not in ("fp32", "fp16", "int8"):
        raise DataError(f"--precision: expected fp32, fp16 or int8, got '{chosen}'")
    compute = Compute.model_validate({**base, "backends": ["tensorrt"], "precision": chosen})
    t, b = tile or tiling.tile, batch or tiling.batch
    engine = create_engine(onnx, compute, tile=t, batch=b, backend="tensorrt")
    engine.close()
    typer.echo(f"{onnx}: TensorRT plan ready ({chosen}, tile {engine.tile}, batch {b}, "
               f"device {compute.device})")


@app.command()
def bench(
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the results "
                                                   "as JSON.")] = None,
    quick: Annotated[bool, typer.Option("--quick", metavar="",
                                        help="512 x 512 and the realtime preset "
                                        "only (about a minute).")] = False,
) -> None:
    """Inference and pipeline speed as ratios measured side by side in one run."""
    import json

    from acquire_vf.training import require_torch

    require_torch()
    from acquire_vf.bench import run as run_bench

    result = run_bench(json_file, quick=quick, progress=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps({k: v for k, v in result.items() if k != "detail"}, indent=2))


@app.command()
def view(
    dataset: Annotated[Path, typer.Argument(help="Run folder or .ome.tif file.")],
    screenshot: Annotated[Path | None, typer.Option("--screenshot", help="Render offscreen "
                                                    "to this PNG and exit.")] = None,
) -> None:
    """The viewer over a saved dataset: physical and virtual channels, t/position/z sliders."""
    if screenshot is not None:
        _render_offscreen()
    elif not _desktop():
        raise DisplayUnavailable("no display found: expected a desktop session, or use "
                                 "--screenshot PNG to render offscreen")
    from acquire_vf.display import DatasetViewer

    try:
        viewer = DatasetViewer(dataset)
    except FileNotFoundError as e:
        raise DataError(str(e)) from e
    if screenshot is not None:
        viewer.view.screenshot(str(screenshot))
        typer.echo(f"{screenshot}: {len(viewer.view.panels)} channel panel(s)")
        viewer.view.window.close()
        viewer.view.app.processEvents()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # Qt and pyqtgraph tear down in the wrong order at interpreter exit
    viewer.view.window.show()
    viewer.view.app.exec()
    sys.stdout.flush()
    os._exit(0)


@app.command()
def recover(
    dataset: Annotated[Path, typer.Argument(help="Run folder, .ome.tif file or .ome.zarr "
                                            "store.")],
) -> None:
    """Restore a killed run's OME-XML (OME-TIFF) or metadata (OME-Zarr): keeps exactly the
    journaled frames and verifies them, says what it kept and cut, and writes the session.json
    a killed run could not."""
    from acquire_vf._recover import recover as run_recover

    report, session = run_recover(dataset)
    for r in report:
        typer.echo(r.line())
    if session is not None:
        typer.echo(f"{session}: written from the journal (the run ended without one): "
                   "channels, frames, planes not made; latencies and the light dose are not "
                   "known")
    if any(r.problems for r in report):
        raise typer.Exit(1)


# the other commands register themselves on ``app``
from acquire_vf import _cli_calibrate, _cli_control, _cli_evaluate, _cli_train  # noqa: E402, F401


def main() -> None:
    """Entry point: typer reports usage errors itself; ours become one line and an exit code."""
    try:
        app()
    except AcquireVFError as e:
        if _state["debug"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
