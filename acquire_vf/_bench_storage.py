"""``bench``: write throughput of the two storage formats at 2048 x 2048, side by side."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def write_throughput(work: Path, frames: int, rounds: int = 3) -> dict[str, Any]:
    """MB/s of ``frames`` 2048 x 2048 uint16 frames (two channels) through each format's
    writer, journal and close included; the formats alternate round by round, so both see the
    same disk state, and the median round counts."""
    from acquire_vf._frames import ChannelInfo, Frame, FrameId
    from acquire_vf.storage import WRITERS, DatasetLayout

    layout = DatasetLayout(channels=(ChannelInfo("A"), ChannelInfo("B")), shape=(2048, 2048))
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 4096, (2048, 2048), dtype=np.uint16) for _ in range(4)]
    times: dict[str, list[float]] = {k: [] for k in WRITERS}
    for r in range(rounds):
        for fmt, (cls, suffix) in WRITERS.items():
            path = work / f"write-{r}{suffix}"
            t0 = time.perf_counter()
            w = cls(path, layout)
            for k in range(frames):
                w.append(Frame(FrameId(k // 2, 0, 0, "AB"[k % 2]), pixels[k % 4], seq=k,
                               elapsed_ms=0.0))
            w.close()
            times[fmt].append(time.perf_counter() - t0)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
    mb = frames * 2048 * 2048 * 2 / 1e6
    rate = {k: round(mb / float(np.median(v)), 1) for k, v in times.items()}
    return {"frames": frames, "mb_per_s": rate,
            "zarr_over_tiff_write_ratio": round(rate["ome-zarr"] / rate["ome-tiff"], 3)}
