"""Is the raw rate lost to a CPU engine the design's or the machine's? Acquire with another
*process* burning one core (no shared interpreter, no GIL), at the pipeline's niceness.

Run with the project's environment:
``.venv/bin/python scripts/perf_contention.py [--pairs N] [--burner matmul|model]``.
``matmul`` (default) multiplies 600 x 600 matrices (compute-bound, cache-friendly) at nice 10
and 19; ``model`` runs the realtime engine preset (random weights, two inputs, 512 x 512, one
ONNX Runtime thread) in a loop at nice 19, the same work the live pipeline does, but in its
own process. Prints the rows recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf._session import run_session  # noqa: E402
from acquire_vf.config import load_profile  # noqa: E402

BURN = ("import os, numpy as np; os.nice(int(os.environ['BURN_NICE']))\n"
        "a = np.random.rand(600, 600).astype(np.float32)\n"
        "while True: a @ a")
MODEL = ("import os, sys, numpy as np, onnxruntime as ort; os.nice(int(os.environ['BURN_NICE']))\n"
         "o = ort.SessionOptions(); o.intra_op_num_threads = 1\n"
         "s = ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
         "x = np.random.rand(1, 2, 512, 512).astype(np.float32)\n"
         "while True: s.run(None, {s.get_inputs()[0].name: x})")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def rate(profile, out: Path, nice: int | None, burn: list[str] | None = None) -> float:
    burner = None
    if nice is not None:
        burner = subprocess.Popen([sys.executable, "-c", *(burn or [BURN])],
                                  env={**os.environ, **ONE_THREAD, "BURN_NICE": str(nice)})
        time.sleep(1.0)
    try:
        return float(run_session(profile, out, time_points=150, quiet=True)["raw_fps"])
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--burner", choices=("matmul", "model"), default="matmul")
    a = ap.parse_args()
    prof = load_profile("demo").bare(exposure_ms=10)
    out = Path(tempfile.mkdtemp())
    run_session(prof, out / "warm", time_points=20, quiet=True)
    if a.burner == "model":
        from acquire_vf.training._export import export_untrained

        export_untrained("realtime", 2, out / "realtime.onnx")
        burn = [MODEL, str(out / "realtime.onnx")]
        print("| run | alone | realtime model in another process, nice 19 | ratio |")
        print("|---|---|---|---|")
        for i in range(a.pairs):
            alone = rate(prof, out / f"alone{i}", None)
            model = rate(prof, out / f"model{i}", 19, burn)
            print(f"| {i + 1} | {alone:.1f} fps | {model:.1f} | {model / alone:.3f} |",
                  flush=True)
        return
    print("| run | alone | burner at nice 10 | ratio | burner at nice 19 | ratio |")
    print("|---|---|---|---|---|---|")
    for i in range(a.pairs):
        alone = rate(prof, out / f"alone{i}", None)
        n10 = rate(prof, out / f"n10-{i}", 10)
        n19 = rate(prof, out / f"n19-{i}", 19)
        print(f"| {i + 1} | {alone:.1f} fps | {n10:.1f} | {n10 / alone:.3f} | {n19:.1f} | "
              f"{n19 / alone:.3f} |", flush=True)


if __name__ == "__main__":
    main()
