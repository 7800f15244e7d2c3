"""An evaluation that cannot flatter: SSIM's stated window, intervals by field, the recipe's
targets judged with them, noise-free truth, and a final test that runs once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests._helpers import ROOT, cli_here, run_cli


def test_ssim_uses_the_gaussian_window_computed_by_hand() -> None:
    """SSIM by its definition (Wang et al. 2004) with a Gaussian window of sigma 1.5, population
    statistics, the 11 x 11 border cropped; scikit-image's default window gives another value."""
    from scipy.ndimage import gaussian_filter
    from skimage.metrics import structural_similarity

    from acquire_vf.metrics import ssim

    rng = np.random.default_rng(3)
    x = gaussian_filter(rng.random((64, 64)), 2)
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)

    def g(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, 1.5, truncate=3.5)

    mx, my = g(x), g(y)
    vx, vy, cxy = g(x * x) - mx**2, g(y * y) - my**2, g(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    by_hand = s[5:-5, 5:-5].mean()
    assert ssim(y, x) == pytest.approx(by_hand, abs=1e-6)
    assert abs(structural_similarity(y, x, data_range=1.0) - by_hand) > 1e-3


def test_intervals_resample_fields_not_images() -> None:
    """Ten planes of one field are one sample: repeating every field's image ten times must not
    narrow the interval (resampling images would)."""
    from acquire_vf.evaluate._intervals import field_ci, gain

    vals = [20.0, 22.0, 25.0, 21.0, 23.0, 27.0]
    once = field_ci(vals, list(range(6)))
    tenfold = field_ci(np.repeat(vals, 10), np.repeat(np.arange(6), 10))
    assert once == tenfold and once[0] < np.mean(vals) < once[1]
    assert field_ci(vals, [0] * 6) is None  # one field: nothing to resample
    assert field_ci([1.0, float("inf")], [0, 1]) is None
    assert field_ci([3.0, 3.0, 3.0], [0, 1, 2]) == [3.0, 3.0]
    assert gain(25.0, 22.0, "psnr") == 3.0 and gain(0.02, 0.05, "mae") == pytest.approx(0.03)


def _result(psnr: float, lin: float) -> dict:
    pred = {"psnr": psnr, "psnr_ci95": [psnr - 1, psnr + 1], "tl": 0.2, "tl_ci95": None}
    return {"prediction": pred, "baselines": {"linear": {"psnr": lin}},
            "gains": {"linear": {"psnr": psnr - lin, "psnr_ci95": [psnr - lin - 1,
                                                                   psnr - lin + 1]}},
            "features": {"median_correlation": 0.8, "baselines": {"linear": {
                "median_correlation": 0.5}}}}


def test_targets_are_judged_with_their_interval_and_say_why_when_they_cannot(
        tmp_path: Path) -> None:
    from acquire_vf.evaluate._targets import check_targets

    targets = [{"what": "gain", "metric": "psnr", "over": "linear", "at_least": 3.0},
               {"metric": "psnr", "at_least": 24.0},
               {"metric": "feature_correlation", "over": "linear", "at_least": 0.2},
               {"metric": "tl", "at_most": 0.1},
               {"metric": "psnr", "over": "input", "at_least": 3.0},
               {"metric": "tl", "over": "engine:other", "at_least": 0.0}]
    engine = tmp_path / "mine.onnx"
    out = check_targets(targets, _result(25.0, 21.5), engine)
    assert out[0]["met"] and not out[0]["met_at_95"] and out[0]["ci95"] == [2.5, 4.5]
    assert out[1]["met"] and out[1]["met_at_95"] is True and out[1]["target"] == "PSNR (dB) >= 24.0"
    assert out[2]["met"] and out[2]["value"] == pytest.approx(0.3)
    assert out[3]["met"] is False and "met_at_95" not in out[3]  # no interval: not claimed
    assert out[4]["met"] is None and "no baseline 'input'" in out[4]["why"]
    assert out[5]["met"] is None and "engine 'other'" in out[5]["why"]
    other = json.loads((ROOT / "engines" / "cps_dna.json").read_text())
    other["metrics"] = {"held_out": {"prediction": {"tl": 0.25}}}
    (tmp_path / "other.json").write_text(json.dumps(other))
    (tmp_path / "other.onnx").write_bytes(b"")
    judged = check_targets(targets[5:], _result(25.0, 21.5), engine)[0]
    assert judged["met"] and judged["value"] == pytest.approx(0.05)  # lower TL is better


def test_recipe_targets_and_sets_are_checked_when_the_recipe_loads(tmp_path: Path) -> None:
    text = (ROOT / "training" / "cps_dna.toml").read_text()
    both = '\n[[targets]]\nmetric = "psnr"\nat_least = 1\nat_most = 2\n'
    bad = {"exactly one of at_least or at_most": text + both,
           "also the training data's seed": text.replace("[final_test]\nseed = 9122",
                                                "[final_test]\nseed = 1000")}
    from acquire_vf._errors import ProfileError
    from acquire_vf.config import load_recipe

    for words, body in bad.items():
        path = tmp_path / "r.toml"
        path.write_text(body)
        with pytest.raises(ProfileError, match=words):
            load_recipe(path)
    assert len(load_recipe(ROOT / "training" / "cps_dna.toml")[0].targets) == 2


def test_simulated_data_carry_their_noise_free_truth(tmp_path: Path) -> None:
    """The camera's expectation is the mean its exposures scatter around; every in-focus image
    of a simulated data set has it under clean/ at the same relative path."""
    from acquire_vf import layouts
    from acquire_vf.simulate import Camera, write_dataset

    cam = Camera()
    flat = np.full((200, 200), 0.02)
    shots = np.stack([cam.expose(flat, 10.0, np.random.default_rng(i)) for i in range(20)])
    assert shots.mean() == pytest.approx(float(cam.expected(flat, 10.0).mean()), rel=2e-3)
    root = write_dataset("bbbc006", tmp_path / "d", fields=1, seed=5, size=(48, 64))
    planes = layouts.scan_bbbc006(root)
    for ref in planes:
        clean = root / "clean" / ref.path.relative_to(root)
        assert clean.is_file() == (ref.z_um == 0.0), ref.path
    import tifffile

    focus = next(r for r in planes if r.z_um == 0.0 and r.channel == "DNA")
    measured = tifffile.imread(focus.path).astype(float)
    clean = tifffile.imread(root / "clean" / focus.path.relative_to(root))
    assert clean.dtype == np.float32 and 0 < np.abs(measured - clean).mean() < 0.1 * clean.std()


@pytest.mark.slow
def test_final_test_runs_once_and_is_recorded_in_the_card(tmp_path: Path) -> None:
    eng = tmp_path / "cps_dna.onnx"
    shutil.copy(ROOT / "engines" / "cps_dna.onnx", eng)
    card = json.loads((ROOT / "engines" / "cps_dna.json").read_text())
    card["metrics"].pop("final_test", None)  # an engine whose final test has not been run
    eng.with_suffix(".json").write_text(json.dumps(card))
    recipe = tmp_path / "cps_dna.toml"
    recipe.write_text((ROOT / "training" / "cps_dna.toml").read_text().replace(
        "[final_test]\nseed = 9122\nfields = 16", "[final_test]\nseed = 9977\nfields = 3"))
    both = cli_here("evaluate", "--model", str(eng), "--out", str(tmp_path / "r"),
                    "--held-out", "--final-test")
    assert both.returncode != 0 and "expected one set, got both" in both.stderr
    first = run_cli("evaluate", "--model", str(eng), "--recipe", str(recipe), "--final-test",
                    "--out", str(tmp_path / "ft"))
    assert first.returncode == 0, first.stderr
    assert "final test, 3 images from 3 fields" in first.stdout and "target " in first.stdout
    card = json.loads(eng.with_suffix(".json").read_text())["metrics"]["final_test"]
    assert card["uses"] == 1 and card["set"] == {"seed": 9977, "fields": 3}
    assert card["prediction"]["psnr_ci95"] and card["targets"][0]["met"] in (True, False)
    assert card["noise_free"]["measured_truth"]["psnr"] > card["noise_free"]["prediction"]["psnr"]
    again = cli_here("evaluate", "--model", str(eng), "--recipe", str(recipe), "--final-test",
                     "--out", str(tmp_path / "ft2"))
    assert again.returncode != 0 and "already run" in again.stderr and "--again" in again.stderr
    assert not (tmp_path / "ft2").exists()
