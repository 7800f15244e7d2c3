"""The accelerated soak: a long run on the memory backend with everything on, its resources
measured as it goes (issue 34, item 3).

    .venv/bin/python scripts/soak.py                      # 200,000 frame sets (hours)
    .venv/bin/python scripts/soak.py --sets 20000 --kills 10

The demo profile on the in-memory backend at 128 x 128, no interval: three synthesis engines
in the engine host, the refocus gate, closed-loop focus steered by brightfield over a drifting
specimen, sentinels every 20 time points, 1% of events failing once (a camera time-out) and
the engine host SIGKILLed ``--kills`` times at random moments. Every ``--every`` seconds:
the session process's RSS, open file descriptors and threads, the engine host's RSS, the
shared-memory segments in /dev/shm and the journal's bytes per frame. Writes
``docs/reliability/soak.csv``, ``soak.json`` (growth after warm-up) and ``soak.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.config import demo_variant, profile_from_dict  # noqa: E402


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return float("nan")


def _count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except FileNotFoundError:
        return 0


def soak_profile(sets: int) -> Any:
    base = demo_variant({
        "acquisition": {"time_points": sets, "interval_s": 0.0},
        "connection": {"kind": "memory", "shape": [128, 128]},
        "compute": {"host_deadline_s": 10.0, "host_restarts": 1000},
        "verification": {"every": 20},
        "specimen": {"focus_drift_um": 10.0, "focus_drift_period": 400, "focus_steps": []},
        "debug": {"faults": [{"kind": "timeout", "every": 100}]},
        "faults": {"backoff_s": 0.001},
    }).model_dump(mode="json", exclude_none=True)
    return profile_from_dict(base, source="soak")


def trimmed_rss_mb() -> float | None:
    """The session's RSS after glibc hands its free heap pages back (``malloc_trim``):
    what the process still uses, as against what its allocator keeps. ``None`` off glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return round(_rss_mb(os.getpid()), 1)


def sample(run: Any, host: Any, journal: Path, t0: float) -> dict[str, Any]:
    frames = run.frames_acquired
    size = journal.stat().st_size if journal.is_file() else 0
    return {"s": round(time.monotonic() - t0, 1), "state": run.state.value,
            "frame_sets": run.schedule.last_t(0) + 1,
            "frames": frames, "written": run.writer.raw_written,
            "raw_backlog_mb": round(run.writer.raw_backlog_bytes / 2**20, 1),
            "virtual_queued": run.writer.virtual_depth, "pipeline_depth": run.pipeline.depth,
            "rss_mb": round(_rss_mb(os.getpid()), 1),
            "host_rss_mb": round(_rss_mb(host.pid), 1) if host and host.pid else None,
            "fds": _count("/proc/self/fd"), "threads": _count("/proc/self/task"),
            "shm_segments": len(list(Path("/dev/shm").glob(f"acqvf_{os.getpid()}_*"))),
            "journal_bytes_per_frame": round(size / frames, 1) if frames else None,
            "records": records(run)}


def records(run: Any) -> dict[str, int]:
    """How many rows the run keeps in memory for its report, by kind (each capped): where a
    growing RSS before the caps are reached goes."""
    out: dict[str, int] = {}
    if run.focus is not None:
        rec = run.focus.record
        out.update(focus_estimates=len(rec.estimates), focus_corrections=len(rec.corrections),
                   focus_zscans=len(rec.zscans))
    if run.verifier is not None:
        out["sentinel_rows"] = sum(len(r.fidelity) + len(r.switches)
                                   for r in run.verifier.records.values())
    out["plan_lookahead"] = len(run.sequence._buffer)
    out["plan_allowed"] = len(run.sequence._allowed)
    from acquire_vf.optics import _psf_plane

    out["psf_planes_cached"] = _psf_plane.cache_info().currsize  # bounded (lru, 512)
    return out


def growth(rows: list[dict[str, Any]], key: str, warm: float) -> dict[str, float]:
    """``key`` after warm-up: first and last value, change per 100,000 frame sets."""
    after = [r for r in rows if r["frame_sets"] >= warm and r["state"] == "running"
             and r[key] is not None and r[key] == r[key]]  # while acquiring; not NaN
    if len(after) < 2:
        return {}
    a, b = after[0], after[-1]
    span = max(b["frame_sets"] - a["frame_sets"], 1)
    out = {"first": a[key], "last": b[key], "max": max(r[key] for r in after),
           "per_100k_sets": round((b[key] - a[key]) * 1e5 / span, 3)}
    if key == "rss_mb" and a[key]:
        out["percent_per_100k_sets"] = round(100 * out["per_100k_sets"] / a[key], 3)
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("rss_mb", "session RSS (MB)"), ("host_rss_mb", "engine host RSS (MB)"),
            ("fds", "open files"), ("threads", "threads"), ("shm_segments", "shm segments"),
            ("journal_bytes_per_frame", "journal bytes / frame")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    rows = [r for r in rows if r["state"] == "running"]
    x = [r["frame_sets"] for r in rows]
    for ax, (k, label) in zip(axes.flat, keys, strict=True):
        ax.plot(x, [r[k] if r[k] is not None else float("nan") for r in rows], lw=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("frame sets", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class Growth:
    """Where the session's memory grows, by the Python line that allocated it: tracing starts
    after warm-up (it slows the run), the first snapshot is taken ``warm_sets`` later, and each
    later sample's growth since it goes to ``tracemalloc.txt``, largest first (numpy reports
    its buffers to tracemalloc too).

    The wait matters: a bounded container that replaces its oldest items (the frame-order
    check's 4,096 recent frames, the report's thinned rows) looks like growth to a late tracer
    until every item allocated before tracing began has been replaced: the new items are
    traced, the old ones freed untraced. Measured: 3,654 new blocks of frame identities "grew"
    over 609 sets while the live count stayed at 4,096 (``gc``, 2,500 sets)."""

    def __init__(self, warm_sets: int, out: Path, frames: int = 12) -> None:
        import tracemalloc

        self.tm, self.warm, self.out, self.base, self.frames = (
            tracemalloc, warm_sets, out, None, frames)

    def sample(self, frame_sets: int) -> None:
        if frame_sets < self.warm:
            return
        if not self.tm.is_tracing():
            self.tm.start(self.frames)
            self.started = frame_sets
            return
        if frame_sets < self.started + self.warm:  # a turnover of what was there untraced
            return
        snap = self.tm.take_snapshot().filter_traces((
            self.tm.Filter(False, self.tm.__file__), self.tm.Filter(False, "<frozen *>")))
        if self.base is None:
            self.base, self.base_sets = snap, frame_sets
            return
        diff = snap.compare_to(self.base, "traceback")
        lines = [f"growth from frame set {self.base_sets:,} to {frame_sets:,}: "
                 f"{sum(s.size_diff for s in snap.compare_to(self.base, 'filename')) / 2**20:+.2f} "
                 "MB traced in all", "", "largest growth (arrays in flight sit here):"]
        # a leak of records is many small blocks: by size alone, the frames in flight at the
        # moment of the snapshot hide it, so the lines that gained most blocks come second
        by_count = sorted(diff, key=lambda st: -st.count_diff)[:10]
        for title, stats in (("", diff[:15]), ("most new blocks (how a leak of small records "
                                                "looks):", by_count)):
            if title:
                lines += ["", title]
            for stat in stats:
                lines.append(f"{stat.size_diff / 1024:+10.1f} KB  {stat.count_diff:+7d} blocks")
                lines += [f"      {fr.filename}:{fr.lineno}"  # the allocating line first
                          for fr in list(reversed(stat.traceback))[:6]]
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("\n".join(lines) + "\n")


def run_soak(sets: int, kills: int, every_s: float, out_dir: Path, seed: int = 0,
             trim: bool = False, trace: bool = False) -> dict[str, Any]:
    from acquire_vf._session import run_session

    prof = soak_profile(sets)
    rows: list[dict[str, Any]] = []
    runs: list[Any] = []
    done = threading.Event()
    killed: list[int] = []
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        journal = run_dir / "acquisition.ome.tif.journal"
        t0 = time.monotonic()
        growth_by_line = Growth(max(sets // 10, 50), out_dir / "tracemalloc.txt") if trace \
            else None

        def watch() -> None:
            while not runs and not done.is_set():
                time.sleep(0.05)
            # kills spread over the run at random frame sets
            at = sorted(rng.sample(range(max(sets // 10, 1), sets), min(kills, sets - 1)))
            while not done.is_set():
                run = runs[0]
                host = run.exposure.engine_host
                rows.append(sample(run, host, journal, t0))
                if trim:
                    rows[-1]["rss_trimmed_mb"] = trimmed_rss_mb()
                if growth_by_line is not None:
                    growth_by_line.sample(rows[-1]["frame_sets"])
                print(json.dumps(rows[-1]), flush=True)
                deadline = time.monotonic() + every_s
                while time.monotonic() < deadline and not done.is_set():
                    if at and run.schedule.last_t(0) >= at[0] and host is not None and \
                            host.state == "up" and host.pid:
                        at.pop(0)
                        try:
                            os.kill(host.pid, signal.SIGKILL)
                            killed.append(host.pid)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.05)

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        rep = run_session(prof, run_dir, quiet=True, on_run=runs.append)
        done.set()
        th.join(5)
        after = sample(runs[0], None, journal, t0)  # the session closed: what is left
    summary = {"frame_sets": sets, "kills": len(killed), "state": rep["state"],
               "seconds": round(time.monotonic() - t0, 1),
               "host": {k: rep["engine_host"].get(k) for k in ("restarts", "crashes")},
               "faults": {k: rep["faults"][k] for k in ("retries", "events_skipped",
                                                         "recovered_by_retry")},
               "virtual_frames": rep["virtual_frames"], "errors": len(rep["errors"]),
               "first_errors": rep["errors"][:5], "after_the_run": after}
    return write_results(rows, sets, summary, out_dir)


def write_results(rows: list[dict[str, Any]], sets: int, summary: dict[str, Any],
                  out_dir: Path) -> dict[str, Any]:
    """``soak.csv``, ``soak.json`` (growth after warm-up) and ``soak.png`` from the samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "soak.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    warm = max(sets * 0.1, 50)
    summary = {**summary, "warm_up_sets": warm,
               "growth": {k: growth(rows, k, warm) for k in
                          ("rss_mb", "host_rss_mb", "fds", "threads", "shm_segments",
                           "journal_bytes_per_frame")}}
    (out_dir / "soak.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(rows, out_dir / "soak.png")
    return summary


def from_log(log: Path, sets: int, out_dir: Path) -> dict[str, Any]:
    """The figures of a soak stopped before its end, from the samples it printed (one JSON
    line each): the run's own report never came, so the summary says where it stopped."""
    rows = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"frame_sets"' in line:
            rows.append(json.loads(line))
    last = rows[-1]
    summary = {"frame_sets": sets, "state": f"stopped at {last['frame_sets']:,} of {sets:,} "
               f"frame sets after {last['s']:.0f} s (the summary is made from its samples)",
               "seconds": last["s"], "frame_sets_done": last["frame_sets"]}
    return write_results(rows, sets, summary, out_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=200_000, help="frame sets (time points)")
    ap.add_argument("--kills", type=int, default=10, help="engine host SIGKILLs")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability")
    ap.add_argument("--from-log", type=Path, help="summarise a soak stopped before its end "
                    "from its printed samples (its stdout) instead of running one")
    ap.add_argument("--trim", action="store_true", help="after each sample, hand glibc's "
                    "free heap back (malloc_trim) and sample again (rss_trimmed_mb): a leak "
                    "grows both, an allocator keeping freed pages only the first")
    ap.add_argument("--tracemalloc", action="store_true", help="trace Python allocations "
                    "(slower) and write where memory grew after warm-up, by the line that "
                    "allocated it, to OUT/tracemalloc.txt at every sample")
    a = ap.parse_args()
    summary = (from_log(a.from_log, a.sets, a.out) if a.from_log is not None
               else run_soak(a.sets, a.kills, a.every, a.out, trim=a.trim,
                             trace=a.tracemalloc))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
