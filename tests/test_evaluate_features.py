"""Per-cell feature fidelity on simulated cells."""

from __future__ import annotations

import numpy as np
import pytest

from acquire_vf.evaluate._features import FEATURES, cell_features, fidelity, segment
from acquire_vf.simulate import Camera, fluorescence, render_field
from acquire_vf.simulate._datasets import OPTICS_20X


@pytest.fixture(scope="module")
def field():
    f = render_field("u2os", 21, (384, 384), 0.65)
    rng = np.random.default_rng(0)
    imgs = {s: Camera().expose(fluorescence(f.stains[s], s, OPTICS_20X, 0.0), 50, rng)
            for s in ("DNA", "AGP", "RNA", "ER")}
    return f, imgs


def test_segmentation_finds_the_nuclei(field) -> None:
    f, imgs = field
    nuclei, cells = segment(imgs["DNA"], imgs["AGP"])
    truth_n = len(np.unique(f.truth.nuclei[f.truth.nuclei > 0]))
    found = int(nuclei.max())
    assert abs(found - truth_n) <= 0.25 * truth_n, (found, truth_n)
    assert set(np.unique(cells)) >= set(np.unique(nuclei))  # every nucleus has a cell


def test_an_image_against_itself_correlates_perfectly(field) -> None:
    _, imgs = field
    nuclei, cells = segment(imgs["DNA"], imgs["AGP"])
    feats = cell_features(imgs["ER"], nuclei, cells, [imgs["AGP"], imgs["RNA"]])
    assert set(FEATURES) <= set(feats) and len(feats["intensity_mean"]) == cells.max()
    fid = fidelity(feats, feats)
    assert all(v == pytest.approx(1.0) for v in fid.per_feature.values())
    assert fid.median_correlation == pytest.approx(1.0) and fid.n_cells > 30


def test_shuffled_cells_do_not_correlate(field) -> None:
    _, imgs = field
    nuclei, cells = segment(imgs["DNA"], imgs["AGP"])
    feats = cell_features(imgs["ER"], nuclei, cells)
    perm = np.random.default_rng(3).permutation(len(feats["intensity_mean"]))
    shuffled = {k: v[perm] for k, v in feats.items()}
    assert abs(fidelity(feats, shuffled).median_correlation) < 0.3


def test_a_noisier_copy_keeps_most_features(field) -> None:
    _, imgs = field
    nuclei, cells = segment(imgs["DNA"], imgs["AGP"])
    real = cell_features(imgs["ER"], nuclei, cells)
    noisy = imgs["ER"].astype(float) + np.random.default_rng(4).normal(0, 30, imgs["ER"].shape)
    fid = fidelity(real, cell_features(noisy, nuclei, cells))
    assert fid.per_feature["intensity_mean"] > 0.95 and fid.median_correlation > 0.7


def test_too_few_cells_say_so_instead_of_a_correlation() -> None:
    """Two cells: a correlation across cells would read 0.0 or 1.0 by accident."""
    import numpy as np

    from acquire_vf.card import ModelCard
    from acquire_vf.evaluate._summary import MIN_CELLS, feature_summary
    from tests._helpers import ROOT

    card = ModelCard.load(ROOT / "engines" / "cps_dna.onnx")
    two = {"mean": np.array([1.0, 2.0]), "area": np.array([10.0, 12.0])}
    out = feature_summary(card, {"real": [two], "virtual": [two], "inputs": [two],
                                 "baselines": {}})
    assert out["median_correlation"] is None and out["n_cells"] == 2
    assert f"at least {MIN_CELLS}" in out["note"]
