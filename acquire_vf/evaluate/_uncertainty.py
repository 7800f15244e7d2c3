"""Does the per-pixel uncertainty mean something? Measured on held-out data.

For each image: the test-time-augmentation spread (:func:`infer_with_uncertainty`) and the
absolute error of its mean against the truth. Reported: the Spearman correlation of frame-mean
uncertainty with frame MAE across images, and per image the Spearman correlation of
uncertainty with absolute error across pixels (median over images); the frame mean's spread,
from which the live acceptance band (``uncertainty_max``) is derived.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties broken by order; NaN for constant input)."""
    from scipy.stats import spearmanr

    r = spearmanr(np.ravel(a), np.ravel(b)).statistic
    return float(r)


class UncertaintyTally:
    """Collects one (spread, error) pair per image; :meth:`summary` at the end."""

    def __init__(self, passes: int, low: float, high: float) -> None:
        self.passes, self.low, self.scale = passes, low, max(high - low, 1e-9)
        self.frame_unc: list[float] = []
        self.frame_err: list[float] = []
        self.pixel_r: list[float] = []
        self._rng = np.random.default_rng(0)

    def add(self, spread: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> None:
        err = np.abs(pred.astype(np.float64) - truth) / self.scale
        unc = spread / self.scale
        self.frame_unc.append(float(unc.mean()))
        self.frame_err.append(float(err.mean()))
        idx = self._rng.choice(err.size, size=min(20_000, err.size), replace=False)
        r = spearman(unc.ravel()[idx], err.ravel()[idx])
        if np.isfinite(r):
            self.pixel_r.append(r)

    def summary(self) -> dict[str, Any]:
        u = np.array(self.frame_unc)
        frame_r = spearman(u, np.array(self.frame_err)) if len(u) >= 3 else float("nan")
        return {"passes": self.passes, "frame_mean": round(float(u.mean()), 6),
                "frame_mean_sd": round(float(u.std()), 6),
                "spearman_frame": None if not np.isfinite(frame_r) else round(frame_r, 4),
                "spearman_pixel_median": round(float(np.median(self.pixel_r)), 4)
                if self.pixel_r else None,
                "n_images": len(u)}
