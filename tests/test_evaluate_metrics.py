"""The paper's metrics: MAE, PSNR, SSIM by hand; the tolerance-level index; error maps."""

from __future__ import annotations

import numpy as np
import pytest

from acquire_vf.evaluate import image_metrics, mae, psnr, ssim, to_unit
from acquire_vf.evaluate._tolerance import error_overlay, tolerance_curves
from acquire_vf.tolerance import error_area_fraction, signal_mask


def test_metrics_against_hand_computed_values() -> None:
    a = np.array([[0.0, 0.5], [1.0, 0.25]])
    b = np.array([[0.0, 0.25], [0.5, 0.25]])
    assert mae(a, b) == pytest.approx((0 + 0.25 + 0.5 + 0) / 4)
    mse = (0.25**2 + 0.5**2) / 4
    assert psnr(a, b) == pytest.approx(10 * np.log10(1 / mse))
    img = np.random.default_rng(0).random((64, 64))
    assert mae(img, img) == 0 and ssim(img, img) == pytest.approx(1.0)
    assert psnr(img, img) == float("inf")
    m = image_metrics(img, np.clip(img + 0.1, 0, 1))
    assert 0 < m["ssim"] < 1 and m["mae"] > 0
    np.testing.assert_allclose(to_unit(np.array([0, 32767.5, 65535]), 0, 65535), [0, 0.5, 1])


def test_identical_images_have_zero_error_at_every_threshold() -> None:
    img = np.random.default_rng(1).integers(0, 65535, (50, 60))
    c = tolerance_curves(img, img)
    assert np.all(c.ie == 0) and np.all(c.se == 0) and c.minimum == 0
    assert len(c.thresholds) == 100 and c.thresholds[-1] == pytest.approx(0.99 * 65535)


def test_constant_offset() -> None:
    truth = np.tile(np.linspace(1000, 40000, 200), (50, 1))
    c = tolerance_curves(truth + 600.0, truth)  # every pixel off by 600 (0.9% of the range)
    below, at_or_above = c.thresholds < 600, c.thresholds >= 600
    sig = signal_mask(truth)
    assert c.signal_mean == pytest.approx(truth[sig].mean())
    assert c.signal_fraction == pytest.approx(sig.mean()) and 0.3 < c.signal_fraction < 0.7
    # all of it is "spatial" (normalised by the signal's area fraction) ...
    assert np.all(c.ie[below] == 0) and np.allclose(c.se[below], 1.0 / c.signal_fraction)
    # ... then all of it is tolerated as intensity, relative to all the signal there is
    signal = c.signal_mean * c.signal_fraction
    np.testing.assert_allclose(c.ie[at_or_above], 600 / signal)
    assert np.all(c.se[at_or_above] == 0)
    assert c.tl == pytest.approx(655.35) and c.minimum == pytest.approx(600 / signal)


def test_missing_blob() -> None:
    truth = np.zeros((100, 100))
    truth[40:60, 40:60] = 30000.0  # a cell, 4% of the field
    c = tolerance_curves(np.zeros_like(truth), truth)  # the prediction misses it
    below, above = c.thresholds < 30000, c.thresholds >= 30000
    assert c.signal_fraction == pytest.approx(0.04) and c.signal_mean == pytest.approx(30000)
    np.testing.assert_allclose(c.se[below], 1.0)  # the whole signal area is missing
    assert np.all(c.ie[below] == 0)
    assert np.all(c.se[above] == 0)
    np.testing.assert_allclose(c.ie[above], 1.0)  # tolerated as intensity: all of the signal
    assert c.minimum == pytest.approx(1.0)  # missing a cell costs all its signal either way


def test_curves_are_monotonic_as_the_paper_draws_them() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 60000, (80, 80)).astype(float)
    pred = np.clip(truth + rng.normal(0, 3000, truth.shape), 0, 65535)
    pred[10:20, 10:20] = 0  # a missing region too
    c = tolerance_curves(pred, truth)
    assert np.all(np.diff(c.ie) >= -1e-15) and np.all(np.diff(c.se) <= 0)
    assert c.se[0] > 0.9 and c.se[-1] == 0
    assert c.ie[-1] == pytest.approx(np.abs(pred - truth).mean()
                                     / (c.signal_mean * c.signal_fraction))
    assert 0 < c.tl_fraction < 0.99  # a minimum in between


def test_the_index_is_not_the_first_step_above_the_largest_error() -> None:
    """Small errors everywhere and a few large ones: the minimum lies between them (the
    bit-depth normalisation put it above the largest error, whatever the image)."""
    rng = np.random.default_rng(3)
    truth = np.zeros((128, 128))
    truth[20:60, 20:60] = truth[70:110, 64:120] = 20000.0
    pred = np.clip(truth + rng.normal(0, 500, truth.shape), 0, None)
    pred[30:34, 30:34] += 40000.0  # a hallucinated spot
    c = tolerance_curves(pred, truth)
    largest = np.abs(pred - truth).max()
    assert 1000 < c.tl < 40000 < largest, (c.tl, largest)
    # a worse prediction (more hallucination) has a larger index
    worse = pred.copy()
    worse[80:100, 10:40] += 30000.0
    assert tolerance_curves(worse, truth).minimum > c.minimum
    assert error_area_fraction(worse, truth, 50 / 255 * 65535) > \
        error_area_fraction(pred, truth, 50 / 255 * 65535)


def test_error_overlay_marks_exactly_the_pixels_above_tolerance() -> None:
    truth = np.full((20, 30), 10000.0)
    pred = truth.copy()
    tol = 50 / 255 * 65535
    pred[2, 3] += tol + 1  # above
    pred[5, 6] += tol - 1  # below
    pred[7, 8] -= tol + 100  # above, the other sign
    rgb, mask = error_overlay(pred, truth)
    assert mask.sum() == 2 and mask[2, 3] and mask[7, 8] and not mask[5, 6]
    assert tuple(rgb[2, 3]) == (0.0, 1.0, 0.0) and rgb[5, 6, 0] == rgb[5, 6, 1]
