"""``acquire-vf evaluate`` on simulated held-out data, for a refocus and a synthesis engine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from acquire_vf._errors import DataError
from acquire_vf.card import ModelCard
from acquire_vf.simulate import write_dataset
from tests._helpers import run_cli

pytestmark = pytest.mark.slow
KEYS = {"mae", "psnr", "ssim", "tl"}


@pytest.mark.parametrize(("engine", "layout", "baselines"),
                         [("dna", "bbbc022", {"linear"}),
                          ("refocus", "bbbc006", {"input", "richardson_lucy"})],
                         ids=["synthesis", "refocus"])
def test_report_for_held_out_simulated_data(engines, tmp_path: Path, engine: str, layout: str,
                                            baselines: set[str]) -> None:
    data = write_dataset(layout, tmp_path / "heldout", fields=2, seed=777, size=(128, 128))
    out = tmp_path / "report"
    r = run_cli("evaluate", "--model", str(engines[engine]), "--data", str(data), "--out",
                str(out), "--split", "all", "--max-images", "6", "--update-card", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"model", "n_images", "prediction", "baselines"} <= set(metrics)
    assert metrics["n_images"] == (2 if layout == "bbbc022" else 6)
    assert set(metrics["prediction"]) >= KEYS and set(metrics["baselines"]) == baselines
    assert all(set(v) >= KEYS for v in metrics["baselines"].values())
    if engine == "refocus":
        assert metrics["per_z"] and {"z_um", "prediction", "input"} <= set(metrics["per_z"][0])
    else:
        feats = metrics["features"]
        assert feats["n_cells"] > 5 and -1 <= feats["median_correlation"] <= 1
        assert "intensity_mean" in feats["per_feature"] and "texture_contrast" in \
            feats["per_feature"]
        assert feats["inputs"]["median_correlation"] == 1.0
        assert (out / "features.png").exists()
        fit = metrics["linear_baseline"]  # fitted where the engine learned, not on held-out
        assert fit["engine_training_fields"] and Path(fit["fitted_on"]).is_dir()
        assert "note:" not in r.stdout
    per_image = json.loads((out / "per_image.json").read_text())
    assert len(per_image) == metrics["n_images"]
    assert all({"tl", "tl_value"} <= set(r["prediction"]) for r in per_image)
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 3 and all((out / name).exists() for name in images)
    card = ModelCard.load(engines[engine])
    assert card.metrics["held_out"]["prediction"] == metrics["prediction"]


def test_evaluate_refuses_unknown_split(engines, tmp_path: Path) -> None:
    data = write_dataset("bbbc022", tmp_path / "d", fields=3, seed=778, size=(128, 128))
    r = run_cli("evaluate", "--model", str(engines["dna"]), "--data", str(data), "--out",
                str(tmp_path / "o"), "--split", "everything", timeout=300)
    assert r.returncode == DataError.exit_code and "split: expected test, val or all" in r.stderr


def test_linear_baseline_says_when_the_training_fields_are_missing(engines,
                                                                   tmp_path: Path) -> None:
    """In a checkout without the engine's training data the baseline is fitted on the
    evaluated set's own training split, and metrics, report and console say so."""
    import shutil

    model = tmp_path / "moved.onnx"
    shutil.copy(engines["dna"], model)
    card = ModelCard.load(engines["dna"])
    training = {**card.training, "data_root": str(tmp_path / "gone")}
    card.model_copy(update={"training": training}).save(model)
    data = write_dataset("bbbc022", tmp_path / "heldout", fields=3, seed=779, size=(128, 128))
    out = tmp_path / "report"
    r = run_cli("evaluate", "--model", str(model), "--data", str(data), "--out", str(out),
                "--split", "all", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    fit = json.loads((out / "metrics.json").read_text())["linear_baseline"]
    assert not fit["engine_training_fields"] and str(data) in fit["fitted_on"]
    assert "gone" in fit["why"]
    assert "note: the linear baseline was fitted on the training split of" in r.stdout
    assert "was not found" in (out / "report.html").read_text()
