"""``session.json`` and the printed session table: what the run did and what it saved."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from acquire_vf.acquisition._dose import by_purpose
from acquire_vf.acquisition._runner import AcquisitionRun


def light_dose(run: AcquisitionRun) -> dict[str, Any]:
    """The run's light-dose ledger (:mod:`acquire_vf.acquisition._dose`)."""
    return run.ledger.report(run.stages.checked_planes())


def refocus_gate(run: AcquisitionRun) -> dict[str, Any]:
    """Per refocused channel: how often the gate kept the learned frame, the deconvolved one
    or the camera's, and why (:mod:`acquire_vf.pipeline._gate`)."""
    return run.stages.gate_report()


def full_protocol_exposures(run: AcquisitionRun) -> int:
    """Exposures the comparator protocol would have taken for the planes acquired."""
    return int(light_dose(run)["comparator"]["exposures"])


def session_report(run: AcquisitionRun, *, profile_source: str = "",
                   backend: str | None = None) -> dict[str, Any]:
    """The session record (keys fixed by DESIGN.md, plus detail after them)."""
    prof = run.profile
    p, w = run.pipeline, run.writer
    channels: list[dict[str, Any]] = [{"name": c.name, "role": "physical"} for c in prof.channels]
    channels += [{"name": n, "role": "physical", "fallback_for": "virtual:" + n}
                 for n in sorted(run.exposure.fell_back)]
    if p is not None:
        channels += [c.as_dict() for c in p.outputs]
    dose = light_dose(run)
    full = int(dose["comparator"]["exposures"])
    skipped = (p.virtual_skipped if p else 0) + (w.virtual_dropped if w else 0)
    duration = (run.finished_at or 0) - (run.started_at or 0)
    return {
        "profile": {"name": prof.name, "source": profile_source},
        "channels": channels,
        "frames_acquired": run.frames_acquired,
        "exposures_taken": dose["taken"]["exposures"],  # with z-scans, which are not data
        "exposures_full_protocol": full,
        "virtual_frames": p.virtual_made if p else 0,
        "virtual_skipped": skipped,
        "refocus_applied": p.refocus_applied if p else 0,
        "refocus_gate": refocus_gate(run),
        "latency_ms": {k: {"p50": v["p50"], "p95": v["p95"]}
                       for k, v in run.latency.summary().items()},
        "errors": list(run.errors),
        "listener_errors": run.signals.listener_errors.report(),
        "light_dose": dose,
        "verification": run.verifier.report() if run.verifier is not None else {},
        "focus": run.focus.report() if run.focus is not None else {},
        "qc": run.qc.report(),
        "faults": run.faults.report(),
        "disk": ({"checks": run.disk.checks, "lowest_free_gb": run.disk.lowest_free_gb,
                  "min_free_gb": prof.storage.min_free_gb} if run.disk is not None else {}),
        "engine_host": ({"mode": "process", **run.exposure.engine_host.report()}
                        if run.exposure.engine_host is not None else {"mode": "thread"}),
        # detail beyond the contract
        "state": run.state.value,
        "frames_expected": run.frames_expected,
        "frame_gaps": list(run.sequence.gaps),
        "raw_fps": round(run.raw_fps, 2),
        "duration_s": round(duration, 3),
        "microscope": {"mode": run.backend_info.mode, "source": run.backend_info.source},
        "acquisition_backend": run.backend_info.name,
        "specimen": prof.specimen.model_dump(mode="json"),
        "backend": backend,
        "engine_choices": {e.card.name: e.chosen["why"] for e in run.stages.engines()
                           if getattr(e, "chosen", None)},
        "files": [run.data_path.name] if run.data_path else [],
        "queues": {
            "pipeline_sets_dropped": p.sets_dropped if p else 0,
            "pipeline_kept_sets_dropped": p.kept_dropped if p else 0,
            "pipeline_max_depth": p.max_depth if p else 0,
            "pipeline_bound": prof.queues.pipeline,
            "raw_max_backlog_mb": round((w.max_raw_backlog_bytes if w else 0) / 2**20, 2),
            "raw_bound_mb": prof.queues.raw_write_mb,
            "virtual_max_depth": w.max_virtual_depth if w else 0,
            "virtual_bound": prof.queues.virtual_write,
        },
    }


LATENCY_ORDER = ("handoff", "focus_pipeline_wait", "focus_score", "defocus", "focus_pipeline",
                 "pipeline_wait", "refocus", "synthesis", "pipeline", "virtual_end_to_end",
                 "virtual_beyond_engine")
"""The order a frame set meets them in (the session table lists latencies so)."""


def _latency_order(item: tuple[str, Any]) -> tuple[int, str]:
    name = item[0]
    first = next((i for i, k in enumerate(LATENCY_ORDER) if name == k or name.startswith(k)),
                 LATENCY_ORDER.index("pipeline") - 1)  # other stages: before the total
    return first, name


def write_session(report: dict[str, Any], out_dir: Path) -> Path:
    """Write ``session.json`` atomically (a crash never leaves half a file)."""
    path = out_dir / "session.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def exposures_by_purpose(report: dict[str, Any]) -> dict[str, int]:
    """Exposures by purpose in words (:data:`~._dose.PURPOSES`), adding up to the total."""
    return by_purpose((report.get("light_dose") or {}).get("exposures_by_reason") or {})


def _not_made_row(name: str, m: dict[str, Any], planes: int) -> tuple[str, str]:
    """``AGP-refocused not refocused | 6 of 6 planes: in focus ...`` rather than a failure."""
    parts = []
    for reason, n in m["by_reason"].items():
        if reason.startswith("not refocused"):
            why = reason[reason.find("(") + 1: reason.rfind(")")] if "(" in reason else reason
            parts.append(f"{n} of {planes} planes: {why}; the camera frame is kept")
        else:
            parts.append(f"{n}: {reason}")
    refocus = all(r.startswith("not refocused") for r in m["by_reason"])
    return f"{name} {'not refocused' if refocus else 'not made'}", "; ".join(parts)


def print_session(report: dict[str, Any], console: Console | None = None) -> None:
    """The run in a table a microscopist reads at the end: what was taken and why, what was
    saved, what was not made and why; only rows for what happened, units on every figure.
    A replay speaks of replayed frames and of the exposures a live run would have taken."""
    console = console or Console()
    replay = report.get("acquisition_backend") == "replay"
    t = Table(title=f"session: {report['profile']['name']} ({report['state']})", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    by = exposures_by_purpose(report)
    planned = by.get("plan", report["frames_acquired"])
    frames = "frames replayed" if replay else "planned frames acquired"
    t.add_row(frames, f"{planned} of {report['frames_expected']}")
    t.add_row("raw frame rate", f"{report['raw_fps']:.1f} frames/s")
    taken = "exposures a live run would have taken" if replay else "exposures taken"
    t.add_row(taken, f"{report['exposures_taken']} = " + " + ".join(
        f"{n} {k}" for k, n in by.items()))
    saved = report["exposures_full_protocol"] - report["exposures_taken"]
    t.add_row("exposures of the full protocol", f"{report['exposures_full_protocol']} "
                                                f"({saved} not taken)")
    dose = report.get("light_dose") or {}
    if dose:
        t.add_row("light dose" + (" it would have taken" if replay else "")
                  + ", against the full protocol",
                  f"{dose['taken']['dose']:.0f} / {dose['comparator']['dose']:.0f} ms at full "
                  f"power ({100 * dose['saved_fraction']:.0f}% less light)")
    for name, v in (report.get("verification") or {}).items():
        t.add_row(f"{name} virtual, checked", f"{v['state']}: {v['sentinels']} sentinel(s), "
                                              f"{v['outside_band']} outside the band, "
                                              f"{len(v['switches'])} switch(es) to physical")
    t.add_row("virtual frames made / skipped",
              f"{report['virtual_frames']} / {report['virtual_skipped']}")
    for name, q in (report.get("qc") or {}).items():
        if q["flagged"]:
            flags = ", ".join(f"{f} {n}" for f, n in sorted(q["by_flag"].items()))
            t.add_row(f"[yellow]QC flags {name}[/yellow]",
                      f"{q['flagged']} of {q['frames']} frames: {flags}")
    planes = report["frames_expected"] // max(1, len([c for c in report["channels"]
                                                      if c.get("role") == "physical"
                                                      and "fallback_for" not in c]))
    for name, m in (report.get("missing_virtual_planes") or {}).items():
        t.add_row(*_not_made_row(name, m, planes))
    if report["refocus_applied"]:
        t.add_row("frames refocused", str(report["refocus_applied"]))
    for name, g in (report.get("refocus_gate") or {}).items():
        if g["choices"]:
            t.add_row(f"{name}: refocus gate", ", ".join(
                f"{n} {k if k != 'camera' else 'camera frame kept'}"
                for k, n in sorted(g["choices"].items())))
    focus = report.get("focus") or {}
    if focus.get("zscans") or focus.get("corrections"):
        t.add_row("focus", f"{len(focus.get('corrections', []))} correction(s), "
                           f"{len(focus.get('zscans', []))} z-scan(s)")
    for stage, lat in sorted(report["latency_ms"].items(), key=_latency_order):
        t.add_row(f"latency {stage} (p50 / p95)", f"{lat['p50']:.2f} / {lat['p95']:.2f} ms")
    if report.get("backend"):
        t.add_row("engines run on", report["backend"])
    policy = report.get("policy")
    if policy:
        for name, v in policy["channels"].items():
            if v["virtual_relied_on"]:
                t.add_row(f"{name}: virtual frames relied on that were bad",
                          f"{v['bad_let_through']} of {v['virtual_relied_on']}")
    faults = report.get("faults") or {}
    if faults.get("by_device"):
        kinds = ", ".join(f"{d} {k} {n}" for d, ks in sorted(faults["by_device"].items())
                          for k, n in sorted(ks.items()))
        t.add_row("[yellow]device faults[/yellow]",
                  f"{kinds}; {faults['recovered_by_retry']} recovered by retry, "
                  f"{faults['events_skipped']} event(s) skipped (journaled)")
    t.add_row("errors", str(len(report["errors"])))
    for key, n in (report.get("listener_errors") or {}).items():
        t.add_row(f"listener errors ({key})", f"{n} (logged once; the run went on)")
    console.print(t)
    for e in report["errors"][:5]:
        console.print(f"[red]error:[/red] {e}")
