"""What the latest-frame slot's freshness hold buys and costs: the realtime engine in the
engine host, camera flat out, runs with the hold and without it alternating (this machine's
speed drifts), 150 time points each.

    .venv/bin/python scripts/perf_freshness.py --runs 3 [--preset realtime] [--host process]

Prints per run: the median time a set waited in the slot, ``latency_over_model_ratio`` (as
bench: 1 + the median latency beyond the engine's time over the engine's median), the ratio of
the medians of latency and engine time (bench's figure before 2026-12-02), the virtual frames made,
the raw rate over that of a run without the engine just before (``acquisition_rate_ratio``),
and the engine's time per set over the frame-set interval; then the medians of each.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--preset", choices=("realtime", "paper"), default="realtime")
    ap.add_argument("--host", choices=("process", "thread"), default="process")
    ap.add_argument("--time-points", type=int, default=150)
    args = ap.parse_args()

    from acquire_vf._session import run_session
    from acquire_vf.bench import live_profiles
    from acquire_vf.training import export_untrained

    work = Path(tempfile.mkdtemp(prefix="acquire-vf-fresh-"))
    engine = work / f"{args.preset}.onnx"
    export_untrained(args.preset, 2, engine)
    bare, prof = live_profiles(engine, args.host)
    rows: dict[str, list[dict[str, float]]] = {"hold": [], "no hold": []}
    for i in range(args.runs):
        plain = run_session(bare, work / f"plain{i}", time_points=args.time_points, quiet=True)
        for mode in ("hold", "no hold"):
            queues = prof.queues.model_copy(update={"hold_for_newer": mode == "hold"})
            r = run_session(prof.model_copy(update={"queues": queues}),
                            work / f"{mode.replace(' ', '_')}{i}",
                            time_points=args.time_points, quiet=True)
            lat = r["latency_ms"]
            model = lat["synthesis:DNA"]["p50"]
            row = {"wait_ms_p50": lat["pipeline_wait"]["p50"],
                   "latency_over_model_ratio":
                       round(1 + lat["virtual_beyond_engine"]["p50"] / model, 3),
                   "latency_p50_over_model_p50":
                       round(lat["virtual_end_to_end"]["p50"] / model, 3),
                   "virtual_frames": r["virtual_frames"],
                   "acquisition_rate_ratio": round(r["raw_fps"] / plain["raw_fps"], 3),
                   "model_over_frame_set_interval": round(model * r["raw_fps"] / 2e3, 2)}
            rows[mode].append(row)
            print(mode, row, flush=True)
    for mode, rs in rows.items():
        print(mode, "median:", {k: round(float(np.median([r[k] for r in rs])), 3) for k in rs[0]})


if __name__ == "__main__":
    main()
