"""Confidence intervals by field: the bootstrap over imaged fields, not over images.

The images of one field (the planes of a refocus stack, the sites' channels) share the cells
and the noise, so they are not independent samples; resampling images would give intervals
too narrow. Each resample draws fields with replacement and takes the mean over all images of
the drawn fields (a field drawn twice counts twice); the interval is the 2.5th to 97.5th
percentile of that mean over 2000 resamples (percentile bootstrap, fixed seed: the same data
give the same interval). With one field there is nothing to resample and the interval is
``None``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def field_ci(values: Sequence[float] | np.ndarray, fields: Sequence[object], *,
             resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0,
             ) -> list[float] | None:
    """The ``level`` interval of the mean of ``values`` (one per image), resampling by the
    field each image belongs to; ``None`` with fewer than two fields or a non-finite value."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.all(np.isfinite(v)):
        return None
    names = {f: i for i, f in enumerate(dict.fromkeys(fields))}
    if len(names) < 2:
        return None
    idx = np.array([names[f] for f in fields])
    sums = np.bincount(idx, weights=v, minlength=len(names))
    counts = np.bincount(idx, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(names), size=(resamples, len(names)))
    times = np.stack([np.bincount(d, minlength=len(names)) for d in draws]).astype(np.float64)
    means = (times @ sums) / (times @ counts)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [round(float(lo), 5), round(float(hi), 5)]


HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "mae": False, "tl": False}


def gain(pred: float, other: float, metric: str) -> float:
    """How much better the prediction is than ``other`` (positive: better)."""
    return pred - other if HIGHER_IS_BETTER.get(metric, True) else other - pred
