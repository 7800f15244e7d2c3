"""``acquire-vf predict --profile P RUN --out OUT.ome.zarr [--cluster ...]``: a saved run's
virtual channels, with progress and the summary table (:mod:`acquire_vf.distributed`)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer

from acquire_vf._errors import DataError


def _adapt(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition(":")
    if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi) or int(hi) < 1:
        raise DataError(f"--adapt: expected MIN:MAX workers (e.g. 1:8), got '{text}'")
    return int(lo), int(hi)


def predict_over_run(profile: str, inputs: list[Path], out: Path, *, cluster: str,
                     adapt: str, backend: str | None, overwrite: bool,
                     uncertainty: int | None = None, chunk: int = 1) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from acquire_vf.config import load_profile
    from acquire_vf.distributed import predict_dataset, sidecar_name
    from acquire_vf.storage import check_output

    if uncertainty is not None and uncertainty not in (0, *range(2, 9)):
        raise DataError(f"--uncertainty: expected 0 (none) or 2 to 8 passes, got {uncertainty}")
    if chunk < 1:
        raise DataError(f"--chunk: expected 1 or more frame sets per task, got {chunk}")
    if len(inputs) != 1:
        raise DataError(f"predict --profile: expected one saved run, got {len(inputs)} inputs")
    if not out.name.endswith(".zarr"):
        raise DataError(f"--out: expected an OME-Zarr store (NAME.ome.zarr), got '{out.name}'")
    from acquire_vf.storage import journal_path

    resume = out.exists() and journal_path(out).exists() and not overwrite
    check_output(out, inputs=inputs, overwrite=overwrite or resume)
    if overwrite and out.exists():
        shutil.rmtree(out)
        journal_path(out).unlink(missing_ok=True)
    prof = load_profile(profile)
    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), "frame sets", "[cyan]{task.fields[rate]}",
                   TimeRemainingColumn())
    task: dict[str, Any] = {}

    def started(n: int, dashboard: str | None) -> None:
        if dashboard:
            typer.echo(f"Dask dashboard: {dashboard}")
        task["id"] = bar.add_task("virtual channels", total=n, rate="")

    def done(res: Any) -> None:
        t = bar.tasks[0]
        rate = (t.completed + 1) / t.elapsed if t.elapsed else 0.0
        bar.update(task["id"], advance=1, rate=f"{rate:.2f} sets/s")

    with bar:
        summary = predict_dataset(prof, inputs[0], out, cluster=cluster, backend=backend,
                                  adapt=_adapt(adapt), on_start=started, on_set=done,
                                  uncertainty=uncertainty, chunk=chunk)
    before = summary["frame_sets_done_before"]
    table = Table(title=f"{out.name}: {summary['frame_sets']} frame sets in "
                  f"{summary['seconds']:.1f} s" + (f" ({before} done before: went on where "
                                                   "it stopped)" if before else ""))
    for col in ("virtual channel", "made", "not made", "QC flags"):
        table.add_column(col)
    for name, c in summary["channels"].items():
        table.add_row(name, str(c["made"]),
                      ", ".join(f"{k} {v}" for k, v in c["not_made"].items()) or "-",
                      ", ".join(f"{k} {v}" for k, v in c["qc_flags"].items()) or "-")
    Console().print(table)
    for line in summary["failures"][:10]:
        typer.echo(f"failed: {line}", err=True)
    typer.echo(f"{out} (and {sidecar_name(out)} beside it)")
    if summary["failures"]:
        raise typer.Exit(1)
