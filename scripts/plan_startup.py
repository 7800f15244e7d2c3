"""Time from ``acquire-vf demo`` to its first saved frame, against the plan's length (issue 34,
item 6: a plan is consumed as the run goes, so a long one should start as fast as a short one).

    .venv/bin/python scripts/plan_startup.py                  # 10 to 1,000,000 time points
    .venv/bin/python scripts/plan_startup.py --time-points 10 100000

Each run is the real demo (Micro-Manager's demo configuration, the shipped engines), headless,
stopped with SIGTERM once its first frame is in the journal. Prints one line per length.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_frame_s(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "acquire_vf", "demo", "--headless",
                                 "--time-points", str(n), "--out", str(out)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while proc.poll() is None:
                journals = list(out.glob("*.journal"))
                if journals and '"kind":"frame"' in journals[0].read_text():
                    return time.monotonic() - t0
                time.sleep(0.05)
            raise RuntimeError(f"demo --time-points {n} ended (exit {proc.returncode}) "
                               "before its first frame")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-points", type=int, nargs="+", default=[10, 1000, 100_000, 1_000_000])
    for n in ap.parse_args().time_points:
        print(f"{n:>9,} time points: first frame after {first_frame_s(n):.1f} s", flush=True)


if __name__ == "__main__":
    main()
