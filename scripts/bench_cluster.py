"""Throughput of ``predict --profile demo`` over a saved run: one process against a Dask
LocalCluster of one and of two single-threaded workers, the two also with four frame sets
per task (`--chunk 4`) (issue 35's targets: two workers over
one >= 1.7 on a 2-core machine; the distributed path's overhead over one process <= 10% at
512 x 512).

    .venv/bin/python scripts/bench_cluster.py                 # 512 x 512, 32 frame sets
    .venv/bin/python scripts/bench_cluster.py --size 256 --time-points 4

Each configuration runs the demo profile's refocus gate and three synthesis engines (with
uncertainty passes) on ONNX Runtime, its engines limited to one thread per worker (the
single process too, so the comparison is per core). Prints a table and writes
``docs/performance/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def saved_run(out: Path, size: int, time_points: int) -> Path:
    from acquire_vf._session import make_run
    from acquire_vf.config import demo_variant

    prof = demo_variant({"connection": {"kind": "memory", "shape": [size, size]},
                         "acquisition": {"time_points": time_points, "interval_s": 0.0,
                                         "positions": [{"x_um": 0.0, "y_um": 0.0},
                                                       {"x_um": 400.0, "y_um": 0.0}]}})
    make_run(prof, out, stages=[]).run()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--time-points", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3, help="configurations run in turns, "
                    "this many times; each one's best round is reported")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "performance" / "cluster.json")
    a = ap.parse_args()
    from acquire_vf.config import load_profile
    from acquire_vf.distributed import predict_dataset

    demo = load_profile("demo")
    one_thread = demo.model_copy(update={"compute": demo.compute.model_copy(
        update={"threads": 1})})
    rows: dict[str, dict[str, float]] = {}
    configs = (("one process, 1 thread", one_thread, "none", 1), ("local:1", demo, "local:1", 1),
               ("local:2", demo, "local:2", 1), ("local:2, --chunk 4", demo, "local:2", 4))
    with tempfile.TemporaryDirectory() as tmp:
        src = saved_run(Path(tmp) / "run", a.size, a.time_points)
        for r in range(a.rounds):  # in turns, best of the rounds: each meets the same machine
            for name, prof, cluster, chunk in configs:
                t0 = time.perf_counter()
                ready: list[float] = []

                def started(n: int, dashboard: str | None, ready: list[float] = ready) -> None:
                    ready.append(time.perf_counter())

                s = predict_dataset(prof, src, Path(tmp) / f"{cluster}-{chunk}-{r}.ome.zarr",
                                    cluster=cluster, backend="onnxruntime", on_start=started,
                                    chunk=chunk)
                wall = time.perf_counter() - ready[0]  # engines loaded to last set written
                row = {"frame_sets": s["frame_sets"], "start_s": round(ready[0] - t0, 2),
                       "wall_s": round(wall, 2), "sets_per_s": round(s["frame_sets"] / wall, 3),
                       "task_s_mean": round(sum(w["seconds"] for w in s["workers"].values())
                                            / s["frame_sets"], 3)}
                print(f"round {r + 1}, {name}: {row}", flush=True)
                if name not in rows or row["sets_per_s"] > rows[name]["sets_per_s"]:
                    rows[name] = row
    base, w1, w2, w2c = (rows[k]["sets_per_s"] for k in rows)
    out = {"size": a.size, "frame_sets": rows["local:2"]["frame_sets"], "rows": rows,
           "two_workers_over_one": round(w2 / w1, 3),
           "two_workers_chunk4_over_one": round(w2c / w1, 3),
           "distributed_overhead_per_set": round(base / w1 - 1, 3),
           "rounds": a.rounds,
           "note": "sets per second from the moment every worker has its engines (start_s: "
                   "the cluster and the engines) to the last set written; the configurations "
                   "in turns, each one's best of the rounds"}
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
