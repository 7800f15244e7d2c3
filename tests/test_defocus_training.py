"""Defocus estimators end to end, small: a recipe trains (the NLL falls and the validation
error is measured), exports to ONNX checked against PyTorch, and ``evaluate`` judges it on
held-out through-focus stacks, above and below focus apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow]

from tests._helpers import ROOT, run_cli  # noqa: E402

RECIPE = (ROOT / "training" / "defocus_agp.toml").read_text()


def test_a_defocus_recipe_trains_exports_and_evaluates(tmp_path: Path) -> None:
    small = RECIPE
    for key, value in (("steps", "60"), ("fields", "4"), ("val_fields", "2"),
                       ("val_every", "30"), ("val_patches", "32"), ("size", "96"),
                       ("batch", "8"), ("range_um", "10.0"), ("step_um", "1.0")):
        small = "\n".join(f"{key} = {value}" if line.split(" = ")[0] == key else line
                          for line in small.splitlines())
    recipe = tmp_path / "defocus_small.toml"
    recipe.write_text(small.replace('name = "defocus_agp"', 'name = "defocus_small"'))
    run = tmp_path / "run"
    r = run_cli("train", str(recipe), "--out", str(run), timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 60 and len(summary["history"]) == 2
    assert summary["best_val_median_abs_error_um"] < 5.0  # better than knowing nothing (5)

    onnx = tmp_path / "defocus_small.onnx"
    r = run_cli("export", str(run / "checkpoints" / "best.pt"), "--out", str(onnx),
                timeout=600)
    assert r.returncode == 0, r.stderr
    card = json.loads(onnx.with_suffix(".json").read_text())
    assert card["task"] == "defocus" and card["inputs"] == ["AGP"]
    assert card["defocus"]["range_um"] == 10.0 and card["defocus"]["signed"] is False
    assert card["training"]["recipe_text"] == recipe.read_text()
    assert max(card["metrics"]["export_check_max_abs_error"].values()) < 1e-3

    out = tmp_path / "eval"
    r = run_cli("evaluate", "--model", str(onnx), "--data", str(tmp_path / "stacks"),
                "--out", str(out), "--update-card", timeout=600)
    assert r.returncode == 0, r.stderr
    assert "above focus" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["above_focus"]["n"] > 0 and m["below_focus"]["n"] > 0 and m["per_z"]
    assert 0 < m["near_focus"]["n"] < m["within_20um"]["n"]  # |z| <= 3 um, on its own
    assert (out / "defocus.png").is_file()
    card = json.loads(onnx.with_suffix(".json").read_text())
    assert card["metrics"]["held_out"]["within_20um"] == m["within_20um"]
    assert card["metrics"]["targets"][0]["threshold"] == 0.5


def test_near_focus_draws_and_sensor_patterns_reach_the_batches() -> None:
    """``near_focus``: that fraction of a batch comes from within ``near_focus_um`` of focus;
    ``sensors``: each patch carries one of several cameras' fixed patterns, as the live
    specimen's frames do (a flat field shows it)."""
    import numpy as np

    from acquire_vf.training._defocus import StackSampler

    zs = np.arange(-20, 21, 1.0, dtype=np.float32)
    bank = np.full((3, zs.size, 64, 64), 0.5, np.float32)
    plain = StackSampler(bank, zs, 32, 20.0, seed=0, signed=True)
    near = StackSampler(bank, zs, 32, 20.0, seed=0, signed=True, near_focus=0.5,
                        near_focus_um=3.0)
    share = [float(np.mean(np.abs(s.batch(2000)[1]) <= 3.0)) for s in (plain, near)]
    assert share[0] < 0.25 and 0.5 < share[1] < 0.7, share  # 7/41 uniform; 0.5 + 0.5 x 7/41
    dim = np.full_like(bank, 5e-4)  # a few electrons a pixel: the sensor's pattern shows
    sensors = StackSampler(dim, zs, 32, 20.0, seed=0, sensors=4)
    flat = StackSampler(dim, zs, 32, 20.0, seed=0)
    assert len(sensors.cameras) == 4 and len(flat.cameras) == 1
    # a column's offset survives averaging down the column; shot noise shrinks (patches are
    # rotated, so columns or rows)
    def lines(x: np.ndarray) -> float:
        return float(np.median([max(p.mean(0).std(), p.mean(1).std()) for p in x[:, 0]]))

    stripes = [lines(s.batch(64)[0]) for s in (flat, sensors)]
    assert stripes[1] > 2 * stripes[0], stripes
