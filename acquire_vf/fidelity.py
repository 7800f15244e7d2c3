"""Live fidelity of a virtual frame against the physical exposure of the same plane.

The figures are the paper's (MAE, PSNR, SSIM, the tolerance-level index) on the engine card's
intensity scale (its output range mapped to [0, 1]), the area fraction of the paper's error map
at 50/255 of that range, and for synthesised channels the per-cell intensity correlation, with
cells segmented from the physical input channels. Leaf functions: acquisition and evaluation
share them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from acquire_vf.metrics import image_metrics, to_unit
from acquire_vf.tolerance import error_area_fraction, signal_mask, tolerance_curves

ERROR_TOLERANCE = 50 / 255
"""The paper's error-map tolerance (Fig. 5), as a fraction of the range."""


def segment_cells(inputs: Sequence[np.ndarray], min_area: int = 30) -> np.ndarray:
    """Cell labels from the physical inputs: their normalised sum above its Otsu threshold,
    split into connected regions of at least ``min_area`` pixels."""
    from skimage.measure import label

    acc = np.zeros(inputs[0].shape, np.float64)
    for a in inputs:
        a = a.astype(np.float64)
        lo, hi = np.percentile(a, [1, 99.5])
        acc += np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1)
    labels = np.asarray(label(signal_mask(acc)), np.int32)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area
    keep[0] = False
    relabel = np.zeros(sizes.size, np.int32)
    relabel[keep] = np.arange(1, int(keep.sum()) + 1)
    return relabel[labels]


def cell_correlation(virtual: np.ndarray, physical: np.ndarray, labels: np.ndarray
                     ) -> float | None:
    """Pearson correlation of per-cell mean intensities (``None`` under 3 cells)."""
    n = int(labels.max())
    if n < 3:
        return None
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n + 1)[1:]
    v = np.bincount(flat, virtual.ravel().astype(np.float64), n + 1)[1:] / np.maximum(count, 1)
    p = np.bincount(flat, physical.ravel().astype(np.float64), n + 1)[1:] / np.maximum(count, 1)
    if v.std() == 0 or p.std() == 0:
        return None
    return float(np.corrcoef(v, p)[0, 1])


def pair_fidelity(virtual: np.ndarray, physical: np.ndarray, low: float, high: float,
                  inputs: Sequence[np.ndarray] = ()) -> dict[str, Any]:
    """MAE, PSNR, SSIM, ``tl`` (tolerance level, fraction of the range) and ``tl_value`` (the
    index), ``error_area`` (fraction above 50/255) and, given inputs, ``cell_r``."""
    v01, p01 = to_unit(virtual, low, high), to_unit(physical, low, high)
    out: dict[str, Any] = {k: round(x, 5) for k, x in image_metrics(v01, p01).items()}
    curves = tolerance_curves(v01, p01, top=1.0)
    out["tl"] = round(curves.tl_fraction, 4)
    out["tl_value"] = round(curves.minimum, 5)
    out["error_area"] = round(error_area_fraction(v01, p01, ERROR_TOLERANCE), 5)
    if len(inputs):
        r = cell_correlation(virtual, physical, segment_cells(inputs))
        if r is not None:
            out["cell_r"] = round(r, 4)
    return out


def outside_band(fid: dict[str, Any], band: dict[str, float]) -> list[str]:
    """Which figures fall outside the acceptance band, in words (empty: inside)."""
    why = []
    if "psnr_min" in band and fid["psnr"] < band["psnr_min"]:
        why.append(f"PSNR {fid['psnr']:.1f} dB < {band['psnr_min']:.1f}")
    if "ssim_min" in band and fid["ssim"] < band["ssim_min"]:
        why.append(f"SSIM {fid['ssim']:.3f} < {band['ssim_min']:.3f}")
    if "mae_max" in band and fid["mae"] > band["mae_max"]:
        why.append(f"MAE {fid['mae']:.4f} > {band['mae_max']:.4f}")
    return why
