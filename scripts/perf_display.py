"""Raw frame rate of the demo with the live window on versus off, in paired runs.

    .venv/bin/python scripts/perf_display.py [--pairs 5] [--time-points 150]

Each pair runs ``acquire-vf demo --display --close-when-done`` (offscreen Qt) and
``acquire-vf demo --headless`` back to back, on the plain demo hardware (no engines, no
interval: the camera runs flat out, the hardest case for the window). The rate is the one
``session.json`` reports (from Micro-Manager's frame timestamps). Prints each pair's ratio and
the median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from acquire_vf.config import plain_demo_profile  # noqa: E402


def rate(profile: Path, out: Path, flags: list[str], time_points: int) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"}
    prof = f"{profile}"
    subprocess.run([sys.executable, "-m", "acquire_vf", "live", "--profile", prof, *flags,
                    "--out", str(out)], check=True, env=env, cwd=ROOT,
                   capture_output=True, timeout=600)
    report = json.loads((out / "session.json").read_text())
    assert report["frames_acquired"] == report["frames_expected"], report
    return float(report["raw_fps"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--time-points", type=int, default=150)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profile = plain_demo_profile(folder, a.time_points)
        ratios = []
        for k in range(a.pairs):
            on = rate(profile, folder / f"on{k}", ["--display", "--close-when-done"],
                      a.time_points)
            off = rate(profile, folder / f"off{k}", ["--headless"], a.time_points)
            ratios.append(on / off)
            print(f"pair {k + 1}: window {on:.1f} fps, headless {off:.1f} fps, "
                  f"ratio {on / off:.3f}", flush=True)
    print(f"median ratio {statistics.median(ratios):.3f} over {a.pairs} pairs "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
