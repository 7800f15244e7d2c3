"""Raw acquisition rate with and without a 10x-slow stage, and memory over 20,000 frames.

Run with the project's environment: ``.venv/bin/python scripts/perf_acquisition.py``.
Prints the rows recorded in docs/performance.md. (acquire-vf bench will subsume this.)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.acquisition import AcquisitionRun, session_report  # noqa: E402
from acquire_vf.microscope import connect  # noqa: E402
from tests.conftest import make_profile  # noqa: E402
from tests.test_acquisition import SlowStage, _rss_kb  # noqa: E402


def main(repeats: int = 3) -> None:
    mic = connect(make_profile())
    print("| run | plain | 10x-slow stage | ratio | virtual frames made / skipped |")
    for i in range(repeats):
        d = Path(tempfile.mkdtemp())
        plain = AcquisitionRun(make_profile(), mic, d / "plain", time_points=100)
        plain.run()
        stage = SlowStage(10 * 2 / plain.raw_fps)
        slow = AcquisitionRun(make_profile(), mic, d / "slow", time_points=100, stages=[stage])
        slow.run()
        rep = session_report(slow)
        print(f"| {i + 1} | {plain.raw_fps:.1f} fps | {slow.raw_fps:.1f} fps | "
              f"{slow.raw_fps / plain.raw_fps:.3f} | "
              f"{rep['virtual_frames']} / {rep['virtual_skipped']} |")
    mic.core.set_roi(0, 0, 64, 64)
    prof = make_profile(channels=[{"name": "AGP", "preset": "Rhodamine", "exposure_ms": 1}],
                        acquisition={"time_points": 20000})
    run = AcquisitionRun(prof, mic, Path(tempfile.mkdtemp()) / "long")
    rss: dict[int, int] = {}
    run.signals.frameReady.connect(
        lambda f: rss.__setitem__(f.seq, _rss_kb()) if f.seq in (0, 2000, 19999) else None)
    run.run()
    mic.core.clear_roi()
    print(f"sequence mode: {run.frames_acquired} frames at {run.raw_fps:.0f} fps; RSS MB "
          + ", ".join(f"frame {k}: {v // 1024}" for k, v in sorted(rss.items())))


if __name__ == "__main__":
    main()
