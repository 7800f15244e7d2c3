"""Figures of a synthesis engine on one real field (the ExampleFly journey): PSNR, SSIM and
Pearson r with intervals over the field's tiles, per-nucleus intensity correlation over its
nuclei, each beside the linear baseline."""

from __future__ import annotations

import numpy as np

from acquire_vf.evaluate._real_pairs import figures, linear_apply, linear_fit


def _nuclei_field(rng: np.random.Generator, n: int = 60, size: int = 256) -> np.ndarray:
    img = np.full((size, size), 5.0)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n):
        y, x = rng.integers(10, size - 10, 2)
        img[(yy - y) ** 2 + (xx - x) ** 2 < 25] = rng.uniform(60, 200)
    return img


def test_a_good_prediction_beats_the_baseline_with_intervals_and_counts_nuclei() -> None:
    rng = np.random.default_rng(0)
    truth = _nuclei_field(rng)
    good = truth + rng.normal(0, 3, truth.shape)
    poor = np.full_like(truth, truth.mean()) + rng.normal(0, 30, truth.shape)
    f = figures(good, poor, truth, 0.0, 255.0)
    assert f["engine"]["pearson"] > 0.95 and f["linear"]["pearson"] < 0.3
    lo, hi = f["gains"]["psnr"]["ci95"]
    assert 0 < lo <= f["gains"]["psnr"]["mean"] <= hi
    assert f["gains"]["psnr"]["by"] == "16 tiles"
    assert 30 <= f["nuclei"] <= 60  # touching blobs merge
    assert f["engine"]["nucleus_r"] > 0.95 and f["engine"]["nucleus_r_ci95"][0] > 0.9
    # the other way round: the gains change sign
    g = figures(poor, good, truth, 0.0, 255.0)["gains"]["psnr"]
    assert g["ci95"][1] < 0


def test_the_linear_baseline_is_a_least_squares_fit() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 100, (64, 64))
    y = 3.0 * x - 7.0
    coef = linear_fit([x], y)
    assert np.allclose(coef, [3.0, -7.0])
    assert np.allclose(linear_apply(coef, [x]), y)
