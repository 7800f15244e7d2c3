"""ome-writers' OME-Zarr write speed on the frames ``acquire-vf bench`` writes (docs/storage.md).

    pip install --no-deps --target /tmp/owlib ome-writers==0.3.2 yaozarrs tensorstore ml_dtypes
    .venv/bin/python scripts/bench_ome_writers.py [/tmp/owlib]

ome-writers is not a dependency, so it is kept outside the environment. Run this in turns with
``acquire_vf._bench_storage.write_throughput`` to compare the two in the same conditions.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES = 24


def main(lib: str) -> None:
    sys.path.insert(0, lib)
    from ome_writers import AcquisitionSettings, Dimension, create_stream

    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 4096, (2048, 2048), dtype=np.uint16) for _ in range(4)]
    work = Path(tempfile.mkdtemp())
    times = []
    for r in range(3):
        path = work / f"ow-{r}.ome.zarr"
        settings = AcquisitionSettings(root_path=str(path), dtype="uint16", format="ome-zarr",
                                       dimensions=[
            Dimension(name="t", count=FRAMES // 2, chunk_size=1, type="time"),
            Dimension(name="c", count=2, chunk_size=1, type="channel"),
            Dimension(name="y", count=2048, chunk_size=2048, type="space"),
            Dimension(name="x", count=2048, chunk_size=2048, type="space")])
        t0 = time.perf_counter()
        with create_stream(settings) as stream:
            for k in range(FRAMES):
                stream.append(pixels[k % 4])
        times.append(time.perf_counter() - t0)
        shutil.rmtree(path, ignore_errors=True)
    mb = FRAMES * 2048 * 2048 * 2 / 1e6
    print({"ome-writers (ome-zarr)": round(mb / float(np.median(times)), 1)})


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/owlib")
