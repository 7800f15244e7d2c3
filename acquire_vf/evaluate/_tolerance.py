"""The tolerance-level error index (:mod:`acquire_vf.tolerance`) and the paper's error maps
(Fig. 5)."""

from __future__ import annotations

import numpy as np

from acquire_vf.tolerance import ToleranceCurves, tolerance_curves

__all__ = ["ToleranceCurves", "error_mask", "error_overlay", "tolerance_curves"]


def error_mask(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> np.ndarray:
    """Pixels whose absolute error exceeds ``tolerance`` (intensity units)."""
    return np.abs(pred.astype(np.float64) - truth.astype(np.float64)) > tolerance


def error_overlay(pred: np.ndarray, truth: np.ndarray, *, bit_depth: int = 16,
                  tolerance_of_255: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """The paper's error map: truth in grey, errors above the tolerance in green.

    The default tolerance is 50 of 255 (19.6% of the range), as in the paper's Fig. 5. Returns
    the RGB image (float, 0-1) and the boolean error mask it shows.
    """
    top = float(2**bit_depth - 1)
    mask = error_mask(pred, truth, tolerance_of_255 / 255.0 * top)
    lo, hi = np.percentile(truth, [0.5, 99.8])
    grey = np.clip((truth.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = np.stack([grey, grey, grey], axis=-1)
    rgb[mask] = (0.0, 1.0, 0.0)
    return rgb, mask
