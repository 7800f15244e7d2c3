"""docs/simulator.png: one simulated field per stain, MDA-MB-231 channels, a through-focus strip.

Run: ``.venv/bin/python scripts/figure_simulator.py`` (about 20 s). Also prints the speed
figures recorded in docs/performance.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.simulate import (  # noqa: E402
    OPTICS_20X,
    OPTICS_60X,
    Camera,
    convolve,
    fluorescence,
    phase_contrast,
    render_field,
)

CAM = Camera()


def _show(ax, img: np.ndarray, title: str, cmap: str = "gray") -> None:
    lo, hi = np.percentile(img, [0.5, 99.7])
    ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=11)
    ax.set_axis_off()


def speed() -> None:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    f = render_field("u2os", 11, (512, 512), 0.65)
    imgs = [CAM.expose(fluorescence(f.stains[s], s, OPTICS_20X, 0.0), 50, rng)
            for s in ("DNA", "ER", "RNA", "AGP", "Mito")]
    t1 = time.perf_counter()
    zs = tuple((i - 16) * 2.0 for i in range(34))
    stack = fluorescence(f.stains["DNA"], "DNA", OPTICS_20X, zs)
    planes = [CAM.expose(p, 20, rng) for p in stack]
    t2 = time.perf_counter()
    print(f"512x512 five-channel in-focus field: {t1 - t0:.2f} s "
          f"(phantom + optics + camera, PSFs cached)")
    print(f"34-plane z-stack of that field (one channel): {t2 - t1:.2f} s")
    del imgs, planes


def main() -> None:
    rng = np.random.default_rng(1)
    for s in ("DNA", "ER", "RNA", "AGP", "Mito"):  # warm the PSF cache before timing
        fluorescence(np.zeros((8, 8), np.float32), s, OPTICS_20X, 0.0)
    speed()
    u2os = render_field("u2os", 3, (400, 400), 0.65)
    mda = render_field("mda231", 5, (800, 1100), 0.1075)
    fig = plt.figure(figsize=(20, 11), constrained_layout=True)
    grid = fig.add_gridspec(3, 12)
    stains = {"DNA": "Hoechst (DNA)", "ER": "Concanavalin A (ER)",
              "RNA": "SYTO14 (nucleoli, RNA)", "AGP": "WGA + phalloidin (AGP)",
              "Mito": "MitoTracker (mitochondria)"}
    for i, (s, title) in enumerate(stains.items()):
        img = CAM.expose(fluorescence(u2os.stains[s], s, OPTICS_20X, 0.0), 50, rng)
        _show(fig.add_subplot(grid[0, 2 * i:2 * i + 2]), img, f"U2OS {title}")
    rgb = np.stack([u2os.stains["AGP"], u2os.stains["ER"], u2os.stains["DNA"]], -1)
    rgb = np.clip(rgb / np.percentile(rgb, 99.5, axis=(0, 1)), 0, 1)
    ax = fig.add_subplot(grid[0, 10:12])
    ax.imshow(rgb)
    ax.set_title("composite: AGP / ER / DNA", fontsize=11)
    ax.set_axis_off()
    pc = convolve(phase_contrast(mda.stains["OPD"], pixel_size_um=0.1075),
                  OPTICS_60X.psf(0.55, 0.0)) * 0.6
    _show(fig.add_subplot(grid[1, 0:3]), CAM.expose(pc, 10, rng), "MDA-MB-231 phase contrast")
    for j, s in enumerate(("DAPI", "F-actin", "Vinculin"), start=1):
        img = CAM.expose(fluorescence(mda.stains[s], s, OPTICS_60X, 0.0), 50, rng)
        _show(fig.add_subplot(grid[1, 3 * j:3 * j + 3]), img, f"MDA-MB-231 {s}")
    zs = (-12.0, -8.0, -4.0, -2.0, 0.0, 4.0)
    crop = (slice(100, 300), slice(100, 300))
    stack = fluorescence(u2os.stains["DNA"], "DNA", OPTICS_20X, zs)
    for k, (z, plane) in enumerate(zip(zs, stack, strict=True)):
        _show(fig.add_subplot(grid[2, 2 * k:2 * k + 2]), CAM.expose(plane, 20, rng)[crop],
              f"DNA, {z:+.0f} µm from focus")
    out = ROOT / "docs" / "simulator.png"
    fig.savefig(out, dpi=55)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
