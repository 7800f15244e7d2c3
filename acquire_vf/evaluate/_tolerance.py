"""The paper's tolerance-level error index (Methods, eq. 7) and its error maps (Fig. 5).

The index is computed over tolerances of the absolute difference error ``d = |pred - truth|``
(the paper: "computed over a range of tolerances of the absolute difference error"). For each
tolerance ``i`` from 0 to 99% of the bit-depth range:

- ``IE(i)``, the intensity error: the mean of ``d`` over the pixels whose error is within the
  tolerance (``d <= i``), divided by the bit-depth maximum: differences small enough to be
  tolerated as intensity differences (0 when no pixel is within it);
- ``SE(i)``, the spatial error: the area fraction of the error map segmented above the
  tolerance (``d > i``): signal predicted where there is none, or missing where there is, the
  green pixels of the paper's error maps;
- ``TL = argmin_i (beta1 IE(i) + beta2 SE(i))``, with the minimum value; equal weights by default.

IE never falls and SE never rises as the tolerance grows (the curves of Fig. 5D); identical
images give IE = SE = 0 at every tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ToleranceCurves:
    thresholds: np.ndarray
    """Tolerances of the absolute error, in intensity units (0 to 99% of the maximum)."""
    ie: np.ndarray
    se: np.ndarray
    total: np.ndarray
    tl: float
    """The threshold (intensity units) where ``total`` is smallest."""
    tl_fraction: float
    """The same as a fraction of the bit-depth maximum."""
    minimum: float


def tolerance_curves(pred: np.ndarray, truth: np.ndarray, bit_depth: int = 16, *,
                     beta: tuple[float, float] = (1.0, 1.0), steps: int = 100,
                     ) -> ToleranceCurves:
    """IE, SE and their weighted sum over tolerances 0..99% of the range; TL and its value."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    top = float(2**bit_depth - 1)
    d = np.sort(np.abs(pred.astype(np.float64) - truth.astype(np.float64)).ravel())
    thresholds = np.linspace(0.0, 0.99 * top, steps)
    n_within = np.searchsorted(d, thresholds, side="right")  # pixels with d <= tolerance
    cum = np.concatenate([[0.0], np.cumsum(d)])
    ie = np.where(n_within > 0, cum[n_within] / np.maximum(n_within, 1), 0.0) / top
    se = 1.0 - n_within / d.size
    total = beta[0] * ie + beta[1] * se
    k = int(np.argmin(total))
    return ToleranceCurves(thresholds, ie, se, total, float(thresholds[k]),
                           float(thresholds[k] / top), float(total[k]))


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
