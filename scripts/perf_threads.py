"""How ONNX Runtime's threads fit this machine's cores (issue 37, item 4).

    .venv/bin/python scripts/perf_threads.py                 # cps_dna + defocus_bf, 512 x 512

Measures, in one run, frames per second of a synthesis engine (and calls per second of a
defocus estimator beside it) for each arrangement a session can make:

- one engine, intra-op threads 1 .. all cores, the thread pool spinning or not;
- ONNX Runtime's parallel executor (inter-op threads) against the sequential one;
- two engines at once (the pipeline's engine and the verifier's, or two sessions), each with
  all cores (oversubscribed) or with its share;
- the pipeline's engine with the closed loop's defocus estimator beside it, the estimator with
  all cores or with one thread.

Each figure is the better of two runs of ``--seconds``; ratios within one run are what to
read (``docs/performance.md``, "Threads"). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def session(model: Path, intra: int, spin: bool, parallel: bool = False):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = intra
    o.inter_op_num_threads = intra if parallel else 1
    o.execution_mode = ort.ExecutionMode.ORT_PARALLEL if parallel else \
        ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    o.log_severity_level = 3
    return ort.InferenceSession(str(model), o, providers=["CPUExecutionProvider"])


def feed(s, size: int, batch: int = 1) -> dict[str, np.ndarray]:
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((batch, i.shape[1], size, size))
    return {i.name: x.astype(np.float32)}


def rates(jobs: list[tuple], seconds: float) -> list[float]:
    """Calls per second of each ``(session, feed)`` run in its own thread, all at once."""
    for s, f in jobs:
        s.run(None, f)
    counts = [0] * len(jobs)
    stop = time.monotonic() + seconds

    def work(i: int) -> None:
        s, f = jobs[i]
        while time.monotonic() < stop:
            s.run(None, f)
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [c / (time.monotonic() - t0) for c in counts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", type=Path, default=ROOT / "engines" / "cps_dna.onnx")
    ap.add_argument("--estimator", type=Path, default=ROOT / "engines" / "defocus_bf.onnx")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = int(cores or 1)
    rows: list[tuple[str, str, str]] = []

    def measure(what: str, jobs_of: callable, label_est: bool = False) -> None:
        best = None
        for _ in range(2):
            got = rates(jobs_of(), args.seconds)
            if best is None or got[0] > best[0]:
                best = got
        assert best is not None
        est = f"{best[1]:.1f}" if label_est else ""
        rows.append((what, f"{sum(best) if not label_est else best[0]:.1f}", est))
        print(f"{what}: {rows[-1][1]} frames/s {est}", flush=True)

    eng = lambda intra, spin, par=False: (lambda s: (s, feed(s, args.size)))(  # noqa: E731
        session(args.engine, intra, spin, par))
    est = lambda intra, spin: (lambda s: (s, feed(s, 256, 4)))(  # noqa: E731
        session(args.estimator, intra, spin))
    for intra in sorted({1, max(1, n - 1), n}):
        for spin in (True, False):
            measure(f"one engine, {intra} intra-op thread(s), spinning {'on' if spin else 'off'}",
                    lambda intra=intra, spin=spin: [eng(intra, spin)])
    measure(f"one engine, parallel executor, {n} inter-op threads",
            lambda: [eng(n, True, True)])
    for spin in (True, False):
        measure(f"two engines at once, {n} threads each (oversubscribed), spinning "
                f"{'on' if spin else 'off'}", lambda spin=spin: [eng(n, spin), eng(n, spin)])
    share = max(1, n // 2)
    measure(f"two engines at once, {share} thread(s) each", lambda: [eng(share, True),
                                                                      eng(share, True)])
    for intra, spin in ((n, True), (1, False)):
        measure(f"engine ({n} threads) + defocus estimator ({intra} thread(s), spinning "
                f"{'on' if spin else 'off'})",
                lambda intra=intra, spin=spin: [eng(n, True), est(intra, spin)], label_est=True)
    print(f"\n{cores} cores; {args.engine.stem} at {args.size} x {args.size}, "
          f"{args.estimator.stem} on 4 crops of 256 x 256\n")
    print("| arrangement | engine frames/s (sum over engines) | estimator calls/s |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    sys.exit(main())
