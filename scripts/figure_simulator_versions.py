"""docs/simulator_versions.png: the same field by simulator version 3 and version 4.

    .venv/bin/python scripts/figure_simulator_versions.py

Rows: version 3 (thin, bright, no background), version 4 (``--realistic``: thick cells,
background and autofluorescence, vignetting, sCMOS pattern, linked channels) at version 3's
dose, and version 4 at a low dose (0.02: about 100 electrons at the brightest pixels). Columns:
DNA in focus and 6 µm below focus (a refocus engine's input), RNA and ER (linked in version 4).
Each panel is one camera frame, scaled from its 0.5th to 99.8th percentile.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.simulate import OPTICS_20X, Camera, Realism  # noqa: E402
from acquire_vf.simulate._datasets import EXPOSURE_MS, _FieldSim  # noqa: E402


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("version 3", None), ("version 4", Realism()),
            ("version 4, dose 0.02", Realism(dose=0.02))]
    cols = [("DNA", 0.0), ("DNA", -6.0), ("RNA", 0.0), ("ER", 0.0)]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(12, 9.4))
    for r, (label, realism) in enumerate(rows):
        sim = _FieldSim.make("bbbc022", 11, 11, (256, 256), OPTICS_20X, realism)
        rng = np.random.default_rng(0)
        for c, (stain, z) in enumerate(cols):
            img = sim.camera.expose(sim.fluorescence(stain, z), EXPOSURE_MS[stain] * (
                realism.dose if realism else 1.0), rng).astype(float)
            lo, hi = np.percentile(img, [0.5, 99.8])
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            peak = (np.percentile(img, 99.9) - Camera().offset_adu) / Camera().gain_adu_per_e
            ax.set_title(f"{stain}, z = {z:+.0f} µm (peak ~{peak:,.0f} e-)", fontsize=9)
            if c == 0:
                ax.set_ylabel(label)
    fig.tight_layout()
    out = ROOT / "docs" / "simulator_versions.png"
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
