"""``session.json`` and the printed session table: what the run did and what it saved."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from acquire_vf.acquisition._runner import AcquisitionRun


def full_protocol_exposures(run: AcquisitionRun) -> int:
    """Exposures the acquired time points would have taken physically: every virtual channel
    exposed, and a z-scan autofocus (``zscan_planes``) per time point and position when the
    profile's autofocus is on."""
    if not run.expected:
        return 0
    done = run.expected[: run.frames_acquired]
    n_sets = len({(f.t, f.p, f.z) for f in done})
    n_tp = len({(f.t, f.p) for f in done})
    prof = run.profile
    zscan = prof.autofocus.zscan_planes if prof.autofocus.policy != "off" else 0
    return n_sets * (len(prof.channels) + len(prof.virtual_channels)) + n_tp * zscan


def session_report(run: AcquisitionRun, *, profile_source: str = "",
                   backend: str | None = None) -> dict[str, Any]:
    """The session record (keys fixed by DESIGN.md, plus detail after them)."""
    prof = run.profile
    p, w = run.pipeline, run.writer
    channels: list[dict[str, Any]] = [{"name": c.name, "role": "physical"} for c in prof.channels]
    channels += [{"name": n, "role": "physical", "fallback_for": "virtual:" + n}
                 for n in sorted(run.exposing)]
    if p is not None:
        channels += [c.as_dict() for c in p.outputs]
    full = full_protocol_exposures(run)
    skipped = (p.virtual_skipped if p else 0) + (w.virtual_dropped if w else 0)
    duration = (run.finished_at or 0) - (run.started_at or 0)
    return {
        "profile": {"name": prof.name, "source": profile_source},
        "channels": channels,
        "frames_acquired": run.frames_acquired,
        "exposures_taken": run.frames_acquired,
        "exposures_full_protocol": full,
        "virtual_frames": p.virtual_made if p else 0,
        "virtual_skipped": skipped,
        "refocus_applied": p.refocus_applied if p else 0,
        "latency_ms": {k: {"p50": v["p50"], "p95": v["p95"]}
                       for k, v in run.latency.summary().items()},
        "errors": list(run.errors),
        # detail beyond the contract
        "state": run.state.value,
        "frames_expected": len(run.expected),
        "frame_gaps": list(run.sequence.gaps),
        "raw_fps": round(run.raw_fps, 2),
        "duration_s": round(duration, 3),
        "microscope": {"mode": run.backend_info.mode, "source": run.backend_info.source},
        "acquisition_backend": run.backend_info.name,
        "specimen": prof.specimen.model_dump(mode="json"),
        "backend": backend,
        "files": [run.data_path.name] if run.data_path else [],
        "queues": {
            "pipeline_sets_dropped": p.sets_dropped if p else 0,
            "pipeline_max_depth": p.max_depth if p else 0,
            "pipeline_bound": prof.queues.pipeline,
            "raw_max_backlog_mb": round((w.max_raw_backlog_bytes if w else 0) / 2**20, 2),
            "raw_bound_mb": prof.queues.raw_write_mb,
            "virtual_max_depth": w.max_virtual_depth if w else 0,
            "virtual_bound": prof.queues.virtual_write,
        },
    }


def write_session(report: dict[str, Any], out_dir: Path) -> Path:
    """Write ``session.json`` atomically (a crash never leaves half a file)."""
    path = out_dir / "session.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def print_session(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"session: {report['profile']['name']} ({report['state']})", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    saved = report["exposures_full_protocol"] - report["exposures_taken"]
    t.add_row("frames acquired", f"{report['frames_acquired']} / {report['frames_expected']}")
    t.add_row("raw frame rate", f"{report['raw_fps']:.1f} fps")
    t.add_row("exposures taken", str(report["exposures_taken"]))
    t.add_row("full protocol would take", f"{report['exposures_full_protocol']} "
                                          f"({saved} saved)")
    t.add_row("virtual frames made / skipped",
              f"{report['virtual_frames']} / {report['virtual_skipped']}")
    t.add_row("refocus applied", str(report["refocus_applied"]))
    for stage, lat in report["latency_ms"].items():
        t.add_row(f"latency {stage} (p50 / p95)", f"{lat['p50']:.2f} / {lat['p95']:.2f} ms")
    if report.get("backend"):
        t.add_row("backend", report["backend"])
    t.add_row("errors", str(len(report["errors"])))
    console.print(t)
    for e in report["errors"][:5]:
        console.print(f"[red]error:[/red] {e}")
