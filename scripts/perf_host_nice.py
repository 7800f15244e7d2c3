"""What the engine host's priority costs the camera: bench's live pairs (camera flat out,
without and with a synthesis engine, back to back) with the host at a chosen nice level.

    .venv/bin/python scripts/perf_host_nice.py --nice 19 --preset paper --pairs 2

``paper`` is an engine 10-20x slower than the camera on this machine, ``realtime`` one
1.5-2x slower (random weights: speed does not depend on them). Prints the median
``acquisition_rate_ratio``, each pair's, the virtual frames made and the latency ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nice", type=int, default=19)
    ap.add_argument("--preset", choices=("realtime", "paper"), default="paper")
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--time-points", type=int, default=150)
    args = ap.parse_args()

    import acquire_vf.engine_host._client as client
    from acquire_vf.bench import live_ratios
    from acquire_vf.training import export_untrained

    start = client.EngineHost.__init__

    def at_nice(self, **kw):  # the session passes its own level: this one replaces it
        start(self, **{**kw, "nice": args.nice})

    client.EngineHost.__init__ = at_nice  # type: ignore[method-assign]
    work = Path(tempfile.mkdtemp(prefix="acquire-vf-nice-"))
    export_untrained(args.preset, 2, work / f"{args.preset}.onnx")
    r = live_ratios(work / f"{args.preset}.onnx", lambda _: None,
                    time_points=args.time_points, pairs=args.pairs)
    print(f"nice {args.nice}, {args.preset}: acquisition_rate_ratio "
          f"{r['acquisition_rate_ratio']} (pairs "
          f"{[p['acquisition_rate_ratio'] for p in r['pairs']]}), virtual frames "
          f"{r['virtual_frames']}, latency_over_model_ratio {r['latency_over_model_ratio']}")


if __name__ == "__main__":
    main()
