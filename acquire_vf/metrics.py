"""Image metrics as the paper reports them: MAE, PSNR and SSIM on images scaled to [0, 1].

SSIM uses the Gaussian window of Wang et al. (2004), sigma 1.5 pixels, with population
covariances: the window of the reference implementation and of the paper's tooling (MATLAB's
``ssim``), not scikit-image's default 7 x 7 uniform window (which gives other values).
"""

from __future__ import annotations

import numpy as np


def to_unit(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Scale to [0, 1] by a fixed range (e.g. the bit depth, or a model card's range)."""
    return np.clip((x.astype(np.float64) - low) / max(high - low, 1e-12), 0.0, 1.0)


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(np.abs(pred.astype(np.float64) - truth)))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    mse = float(np.mean((pred.astype(np.float64) - truth) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


SSIM_WINDOW = "Gaussian, sigma 1.5 px (Wang et al. 2004)"
"""The SSIM window, as reports state it."""


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(pred.astype(np.float64), truth.astype(np.float64),
                                       data_range=data_range, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def image_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, PSNR and SSIM of images already scaled to [0, 1]."""
    return {"mae": mae(pred, truth), "psnr": psnr(pred, truth), "ssim": ssim(pred, truth)}
