"""The real bead stack of the real-image suite: is the simulator's PSF the shape a real
widefield microscope has? The PSF model fitted to flowdec's bead stack, with its residual
beside a Gaussian PSF's, and a figure of the measured and fitted stacks side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ASSUMED = {"pixel_size_um": 0.258, "wavelength_um": 0.52, "immersion_index": 1.518,
           "specimen_index": 1.33}
"""What the set does not record, assumed: the EPFL stack's 64.5 nm pixels at flowdec's 25%
(0.258 µm), a green bead, an oil objective and an aqueous mount. The plane spacing is fitted."""


def bead_fit(stack_path: Path, figure: Path | None = None) -> dict[str, Any]:
    """Fit and report (figures in a dict; the plot to ``figure``)."""
    import tifffile

    from acquire_vf.psf_fit import fit_bead_stack

    stack = np.asarray(tifffile.imread(stack_path), np.float64)
    fit = fit_bead_stack(stack, wavelength_um=ASSUMED["wavelength_um"],
                         pixel_size_um=ASSUMED["pixel_size_um"],
                         immersion_index=ASSUMED["immersion_index"],
                         specimen_index=ASSUMED["specimen_index"])
    if figure is not None and fit.model is not None and fit.data is not None:
        _plot(fit.data, fit.model, fit.summary(), figure)
    return {"assumed": ASSUMED, "fit": fit.summary()}


def _plot(data: np.ndarray, model: np.ndarray, s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = data.shape[1] // 2
    z0 = int(np.argmax(data[:, c, c]))
    lo = float(np.percentile(data, 1))
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.8))
    for a, img, title in ((ax[0], data, "measured (x-z, log)"), (ax[1], model, "fitted model")):
        a.imshow(np.log(np.clip(img[:, c, :] - lo, 1e-3 * (data.max() - lo), None)),
                 cmap="magma", aspect=s["z_step_um"] / s["pixel_size_um"])
        a.set_title(title)
        a.set_xlabel("x (px)")
        a.set_ylabel("z (plane)")
    zs = (np.arange(data.shape[0]) - z0) * s["z_step_um"]
    ax[2].semilogy(zs, data[:, c, c] - lo, "k.", label="measured, axial")
    ax[2].semilogy(zs, np.clip(model[:, c, c] - lo, 1e-9, None), "r-", label="model, axial")
    ax[2].set_xlabel("defocus (µm)")
    ax[2].set_title(f"NA {s['na']:.2f}, bead {s['bead_diameter_um']:.2f} µm; residual "
                    f"{s['residual']:.3f} (Gaussian {s['gaussian_residual']:.3f})", fontsize=9)
    ax[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
