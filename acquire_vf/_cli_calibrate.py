"""``acquire-vf calibrate``: training data from the profile's own microscope (registered on the
CLI's app when :mod:`acquire_vf._cli` imports this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquire_vf._cli_app import OverwriteOpt, app


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
    beads: Annotated[Path | None, typer.Option(
        "--beads", help="A through-focus TIFF stack of one fluorescent bead on this rig: the "
        "PSF model is fitted to it (NA, spherical aberration) and its optics recorded instead "
        "of the profile's.")] = None,
    beads_z_step: Annotated[float | None, typer.Option(
        "--beads-z-step", min=0.01, help="The bead stack's plane spacing (µm); needed with "
        "--beads.")] = None,
    beads_wavelength: Annotated[float, typer.Option(
        "--beads-wavelength", min=0.3, max=1.0, help="The bead's emission wavelength (µm).")
    ] = 0.52,
    overwrite: OverwriteOpt = False,
) -> None:
    """Through-focus stacks and every channel at focus, at N positions, on the profile's
    microscope (the demo: its simulated specimen), for fine-tuning engines (docs/calibration.md)."""
    from rich.progress import Progress

    from acquire_vf.calibration import MANIFEST
    from acquire_vf.calibration import calibrate as run_calibration
    from acquire_vf.storage import check_output

    check_output(out, overwrite=overwrite)
    fit = _fit_beads(profile, beads, beads_z_step, beads_wavelength) if beads else None
    for old in ("bbbc006", "paired"):  # --overwrite: this command's own output, nothing else
        if (out / old).is_dir():
            import shutil

            shutil.rmtree(out / old)
    with Progress(transient=False) as bar:
        task = bar.add_task("calibrating", total=positions)

        def progress(what: str, k: int, n: int) -> None:
            bar.update(task, completed=k, total=n, description=what)

        m = run_calibration(profile, positions, out, z_range_um=z_range, progress=progress,
                            beads=fit)
        bar.update(task, completed=positions, description="calibrated")
    st, pr = m["stacks"], m["paired"]
    focus = [p["focus_z_um"] for p in m["positions"]]
    typer.echo(f"{out / MANIFEST}: {len(m['positions'])} positions, {m['frames']} frames in "
               f"{m['seconds']:.0f} s; stacks of {', '.join(st['channels'])} at "
               f"{st['z_um'][0]:g} to {st['z_um'][-1]:g} um ({out / 'bbbc006'}); "
               f"{', '.join(pr['channels'])} at focus ({out / 'paired'}); focus found at "
               f"{min(focus):.2f} to {max(focus):.2f} um")
    o = m["optics"]
    typer.echo(f"  optics ({o['source']}): NA {o['na']}, immersion {o['immersion_index']}, "
               f"specimen {o['specimen_index']}, {o['pixel_size_um']} um pixels, emitters "
               f"{o['depth_um']} um deep" + (f"; bead fit residual {fit['residual']:.3f} "
                                             f"(Gaussian PSF {fit['gaussian_residual']:.3f})"
                                             if fit else ""))
    for cmd in m["train"]:
        typer.echo(f"  fine-tune: {cmd}")


def _fit_beads(profile: str, beads: Path, z_step: float | None, wavelength: float) -> dict:
    """The bead stack's fit, before any frame is acquired (a bad stack fails at once)."""
    from acquire_vf._errors import DataError
    from acquire_vf.calibration import fit_beads
    from acquire_vf.config import load_profile, resolve_profile_path

    if z_step is None:
        raise DataError("--beads: expected --beads-z-step too (the stack's plane spacing in "
                        "um), got none")
    if not beads.is_file():
        raise DataError(f"--beads: expected a TIFF stack of one bead, got '{beads}' (no such "
                        "file)")
    prof = load_profile(resolve_profile_path(profile))
    typer.echo(f"fitting the PSF model to {beads} ...")
    return fit_beads(beads, prof.camera.pixel_size_um, z_step, wavelength,
                     prof.specimen.immersion_index, prof.specimen.specimen_index)
