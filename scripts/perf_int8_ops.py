"""Where an INT8 engine's time goes, operator by operator (issue 37): ONNX Runtime's profiler
over the fp32 engine and its INT8 engines with the upsampling's phases interleaved by
``DepthToSpace`` (``nchw``) and channels-last (``nhwc``, what ``acquire-vf quantize`` writes).

    .venv/bin/python scripts/perf_int8_ops.py [--engine engines/cps_dna.onnx] [--threads 1]

A batch of four 512 x 512 tiles, calibrated on random tiles (ranges do not change the time);
each graph warmed three times, then ``--runs`` runs timed and profiled. Prints, per graph, the
wall time per run and the kernel time per operator type.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def profile(path: Path, x: np.ndarray, threads: int, runs: int, prefix: Path
            ) -> tuple[float, dict[str, float], dict[str, int]]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(prefix)
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x}
    for _ in range(3):
        s.run(None, feed)
    t0 = time.perf_counter()
    for _ in range(runs):
        s.run(None, feed)
    wall = (time.perf_counter() - t0) / runs * 1e3
    events = json.loads(Path(s.end_profiling()).read_text())
    per_op: dict[str, float] = collections.Counter()
    nodes: dict[str, int] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 3)
            nodes[e["args"]["op_name"]] += 1
    return wall, dict(per_op), {k: v // (runs + 3) for k, v in nodes.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", type=Path, default=ROOT / "engines" / "cps_dna.onnx")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    from acquire_vf.card import ModelCard
    from acquire_vf.quantize import quantize_engine

    card = ModelCard.load(args.engine)
    rng = np.random.default_rng(2)
    tiles = [rng.uniform(-1, 1, (len(card.inputs), 512, 512)).astype(np.float32)
             for _ in range(4)]
    x = np.stack(tiles)
    with tempfile.TemporaryDirectory(prefix="acquire-vf-int8-ops-") as tmp:
        graphs = {"fp32": args.engine}
        for layout in ("nchw", "nhwc"):
            out = Path(tmp) / f"int8_{layout}.onnx"
            quantize_engine(args.engine, out, tiles=tiles, layout=layout)
            graphs[f"int8 {layout}"] = out
        for name, path in graphs.items():
            wall, per_op, nodes = profile(path, x, args.threads, args.runs, Path(tmp) / "p")
            total = sum(per_op.values())
            print(f"{name}: {wall:.1f} ms a run (kernels {total:.1f} ms), "
                  f"{args.threads} thread(s), {card.name}")
            for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]):
                if ms >= 0.05:
                    share = 100 * ms / total
                    print(f"  {op:24s} {ms:7.2f} ms  {nodes[op]:3d} nodes  {share:5.1f}%")


if __name__ == "__main__":
    main()
