"""``acquire-vf status|pause|resume|stop RUN_DIR``: watch and steer a running session from
another shell (its control socket, :mod:`acquire_vf._control`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from acquire_vf._cli_app import app

RunDirArg = Annotated[Path, typer.Argument(help="The run folder of a running session.")]


def _table(s: dict[str, Any]) -> str:
    left = "unknown" if s["time_left_s"] is None else f"{s['time_left_s'] / 60:.1f} min"
    faults = s["faults"]
    lines = [
        f"state            {s['state']}",
        f"time point       {s['time_point'] + 1} of {s['time_points']}",
        f"frames           {s['frames_acquired']} of {s['frames_expected']} "
        f"({s['frames_per_s']:.2f}/s; camera {s['camera_fps']:.1f} fps)",
        f"virtual frames   {s['virtual_frames']} made, {s['virtual_skipped']} skipped",
        f"time left        {left} at this rate",
        f"disk             {s['disk_free_gb']:.1f} GB free, about {s['disk_needed_gb']:.2f} GB "
        "still to write",
        f"faults           {faults['retries']} retried, {faults['events_skipped']} event(s) "
        "skipped (journaled)",
        f"write backlog    {s['raw_backlog_mb']:.1f} MB of raw frames waiting",
        f"errors           {s['errors']}",
    ]
    lines += [f"{name:16} {state}" for name, state in sorted(s["trust"].items())]
    return "\n".join(lines)


@app.command()
def status(
    run_dir: RunDirArg,
    follow: Annotated[bool, typer.Option("--follow", metavar="",
                                         help="Print it again every interval until the run "
                                         "ends.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1,
                                            help="Seconds between updates (--follow).")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print JSON.")] = False,
) -> None:
    """The live table of a session running in RUN_DIR: time point, rates, trust states,
    faults, disk and time left."""
    from acquire_vf._control import NotRunning, ask

    first = True
    while True:
        try:
            s = ask(run_dir, "status")["status"]
        except NotRunning:
            if first or not follow:
                raise
            typer.echo("the session has ended")
            return
        typer.echo(json.dumps(s) if as_json else _table(s) + ("\n" if follow else ""))
        first = False
        if not follow:
            return
        time.sleep(interval)


def _act(run_dir: Path, cmd: str) -> None:
    from acquire_vf._control import ask

    typer.echo(f"{run_dir}: {ask(run_dir, cmd)['state']}")


@app.command()
def pause(run_dir: RunDirArg) -> None:
    """Pause the session running in RUN_DIR before its next event."""
    _act(run_dir, "pause")


@app.command()
def resume(run_dir: RunDirArg) -> None:
    """Resume a paused session running in RUN_DIR."""
    _act(run_dir, "resume")


@app.command()
def stop(run_dir: RunDirArg) -> None:
    """Stop the session running in RUN_DIR as Ctrl-C does: within the current event, state
    cancelled, everything acquired saved."""
    _act(run_dir, "stop")
