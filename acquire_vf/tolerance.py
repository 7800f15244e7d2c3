"""The paper's tolerance-level error index (Methods, eq. 7; Discussion; Fig. 5D).

Over tolerances ``i`` of the absolute error ``d = |pred - truth|`` from 0 to 99% of the range:

- ``IE(i)``, the intensity error: the errors within the tolerance (``d <= i``), summed over
  the image, **relative to the ground truth's signal** (its mean signal intensity times its
  signal area): the intensity mismatch tolerated, as a fraction of all the signal there is;
- ``SE(i)``, the spatial error: the area of the error map segmented above the tolerance
  (``d > i``), **relative to the signal's area**: signal invented or missed, as a fraction of
  the area that holds signal;
- ``TL = argmin_i (beta1 IE(i) + beta2 SE(i))``, with the minimum; equal weights by default.

The signal area is the ground truth above its Otsu threshold. The normalisations are the
paper's Discussion ("the tolerance for intensity mismatch normalized to the mean signal
intensity of ground truth ... the area mismatch normalized to the signal image area fraction").
With them a pixel counts as a spatial error exactly when its error exceeds the mean signal, so
the minimum lies between the ordinary intensity errors and the invented or missed structures,
as the curves of Fig. 5D show. Normalising IE by the bit-depth maximum alone, as an earlier
version here did, makes ``IE + SE`` fall until the largest error, so that index was just the
first tolerance above the largest pixel error.

IE never falls and SE never rises as the tolerance grows; identical images give 0 everywhere.
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
    """The same as a fraction of the range's maximum."""
    minimum: float
    signal_mean: float
    """Mean of the ground truth over its signal area (IE's normaliser)."""
    signal_fraction: float
    """Area fraction of the ground truth's signal (SE's normaliser)."""


def signal_mask(truth: np.ndarray) -> np.ndarray:
    """The ground truth's signal: above its Otsu threshold (all of it when flat)."""
    t = truth.astype(np.float64)
    if float(t.max()) <= float(t.min()):
        return np.ones(t.shape, bool)
    from skimage.filters import threshold_otsu

    return t > threshold_otsu(t)


def tolerance_curves(pred: np.ndarray, truth: np.ndarray, bit_depth: int = 16, *,
                     top: float | None = None, beta: tuple[float, float] = (1.0, 1.0),
                     steps: int = 100) -> ToleranceCurves:
    """IE, SE and their weighted sum over tolerances 0..99% of the range; TL and its value.

    The range is ``top`` when given (e.g. 1.0 for images scaled to [0, 1]), else the bit
    depth's maximum.
    """
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    top = float(2**bit_depth - 1) if top is None else float(top)
    mask = signal_mask(truth)
    signal_mean = max(float(truth[mask].mean()), 1e-12 * top)
    signal_fraction = max(float(mask.mean()), 1.0 / mask.size)
    d = np.sort(np.abs(pred.astype(np.float64) - truth.astype(np.float64)).ravel())
    thresholds = np.linspace(0.0, 0.99 * top, steps)
    n_within = np.searchsorted(d, thresholds, side="right")  # pixels with d <= tolerance
    cum = np.concatenate([[0.0], np.cumsum(d)])
    signal_total = signal_mean * signal_fraction * d.size
    ie = cum[n_within] / signal_total
    se = (1.0 - n_within / d.size) / signal_fraction
    total = beta[0] * ie + beta[1] * se
    k = int(np.argmin(total))
    return ToleranceCurves(thresholds, ie, se, total, float(thresholds[k]),
                           float(thresholds[k] / top), float(total[k]), signal_mean,
                           signal_fraction)


def error_area_fraction(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> float:
    """Fraction of pixels whose absolute error exceeds ``tolerance`` (the paper's green
    pixels at 50/255 of the range)."""
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))
                         > tolerance))
