"""``acquire-vf calibrate``: training data from the profile's own microscope (registered on the
CLI's app when :mod:`acquire_vf._cli` imports this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquire_vf._cli import OverwriteOpt, app


@app.command()
def calibrate(
    profile: Annotated[str, typer.Option("--profile", help="Hardware profile (a name or a "
                                         "path).")],
    out: Annotated[Path, typer.Option("--out", help="Calibration folder (bbbc006/, paired/, "
                                      "calibration.json).")],
    positions: Annotated[int, typer.Option("--positions", min=3, help="Positions to image "
                                           "(3 or more: training, validation, unseen "
                                           "test).")] = 12,
    z_range: Annotated[tuple[float, float], typer.Option(
        "--z-range", help="Through-focus planes, µm from focus (2 µm apart).")] = (-12.0, 8.0),
    overwrite: OverwriteOpt = False,
) -> None:
    """Through-focus stacks and every channel at focus, at N positions, on the profile's
    microscope (the demo: its simulated specimen), for fine-tuning engines (docs/calibration.md)."""
    from rich.progress import Progress

    from acquire_vf.calibration import MANIFEST
    from acquire_vf.calibration import calibrate as run_calibration
    from acquire_vf.storage import check_output

    check_output(out, overwrite=overwrite)
    for old in ("bbbc006", "paired"):  # --overwrite: this command's own output, nothing else
        if (out / old).is_dir():
            import shutil

            shutil.rmtree(out / old)
    with Progress(transient=False) as bar:
        task = bar.add_task("calibrating", total=positions)

        def progress(what: str, k: int, n: int) -> None:
            bar.update(task, completed=k, total=n, description=what)

        m = run_calibration(profile, positions, out, z_range_um=z_range, progress=progress)
        bar.update(task, completed=positions, description="calibrated")
    st, pr = m["stacks"], m["paired"]
    focus = [p["focus_z_um"] for p in m["positions"]]
    typer.echo(f"{out / MANIFEST}: {len(m['positions'])} positions, {m['frames']} frames in "
               f"{m['seconds']:.0f} s; stacks of {', '.join(st['channels'])} at "
               f"{st['z_um'][0]:g} to {st['z_um'][-1]:g} um ({out / 'bbbc006'}); "
               f"{', '.join(pr['channels'])} at focus ({out / 'paired'}); focus found at "
               f"{min(focus):.2f} to {max(focus):.2f} um")
    for cmd in m["train"]:
        typer.echo(f"  fine-tune: {cmd}")
