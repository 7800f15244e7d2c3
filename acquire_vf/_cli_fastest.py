"""``acquire-vf build-engine --profile P`` on a CPU-only machine: each engine's fastest CPU
path, measured and recorded (:mod:`acquire_vf._fastest`), shown as a table."""

from __future__ import annotations

import typer

from acquire_vf._errors import DataError
from acquire_vf.config import Profile


def fastest_paths(profile: Profile) -> None:
    from rich.console import Console
    from rich.table import Table

    from acquire_vf._fastest import choose_for_profile, cpu_only, profile_engines

    if not profile_engines(profile):
        raise DataError(f"build-engine --profile {profile.name}: expected refocus or virtual "
                        "channel engines in the profile, found none")
    if not cpu_only(profile.compute):
        raise DataError("build-engine --profile: this machine has an NVIDIA GPU; expected "
                        "an ONNX engine to build its TensorRT plan (build-engine ENGINE "
                        "--profile P)")
    console = Console(stderr=True)
    with console.status("timing each engine's CPU paths ..."):
        records = choose_for_profile(profile, progress=console.log)
    table = Table(title=f"fastest CPU paths for profile {profile.name} "
                  f"({records[0]['cpu']}, {records[0]['threads']} threads)")
    for col in ("engine", "path", "ms / frame", "PSNR vs fp32 (dB)", "chosen"):
        table.add_column(col)
    for rec in records:
        for c in rec["candidates"]:
            if "skipped" in c:
                table.add_row(rec["engine"], c["path"], "-", "-", f"skipped: {c['skipped']}")
                continue
            chosen = c["path"] == f"{rec['backend']} {rec['precision']}"
            table.add_row(rec["engine"], c["path"], f"{c['ms_per_frame']:.1f}",
                          str(c["psnr_vs_onnxruntime_fp32_db"] or "identical"),
                          "[bold]chosen[/bold]" if chosen else
                          ("" if c["within_tolerance"] else "disagrees"))
    Console().print(table)
    for rec in records:
        typer.echo(f"{rec['engine']}: {rec['backend']} {rec['precision']} "
                   f"({rec['speedup_over_onnxruntime_fp32']:.2f}x onnxruntime fp32) -> "
                   f"{rec['saved_to']}")
