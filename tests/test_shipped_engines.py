"""The shipped engines: every recipe's engine is there, small, verified, and its card carries
held-out metrics and the quality targets with whether each is met."""

from __future__ import annotations

import hashlib
import json
import tomllib

import pytest

from tests._helpers import ROOT

RECIPES = sorted(p for p in (ROOT / "training").glob("*.toml")
                 if tomllib.loads(p.read_text()).get("preset", "realtime") != "paper")


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_each_recipe_ships_an_engine_with_held_out_metrics(recipe) -> None:
    onnx = ROOT / "engines" / f"{recipe.stem}.onnx"
    assert onnx.is_file(), f"no shipped engine for {recipe.name}"
    assert onnx.stat().st_size < 10 * 2**20  # a few MB, as the repository can carry
    card = json.loads(onnx.with_suffix(".json").read_text())
    assert card["onnx_sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert card["training"]["recipe"] == recipe.stem
    recipe = _shipped_recipe(recipe, card)  # v3's, or the v4 queue's that it learned from
    assert card["training"]["seed"] == 0 and "acquire-vf train" in card["training"]["command"]
    held = card["metrics"]["held_out"]
    assert held["split"] == "all" and held["n_images"] >= 4
    if card["task"] == "defocus":  # distance from focus on held-out through-focus stacks
        assert "seed" in held["data"]
        assert {"within_20um", "above_focus", "below_focus"} <= set(held)
        replaced = ROOT / "docs" / "focus" / recipe.stem / "replaced-v3-metrics.json"
        if replaced.is_file():  # v4: no worse than the v3 estimator on the same v4 stacks
            old = json.loads(replaced.read_text())["within_20um"]["median_abs_error_um"]
            assert held["within_20um"]["median_abs_error_um"] <= old
        else:
            assert held["within_20um"]["median_abs_error_um"] <= 0.5
        assert card["defocus"]["stain"] in card["inputs"]
        assert (ROOT / "docs" / "focus" / recipe.stem / "metrics.json").is_file()
        return
    assert {"psnr", "ssim", "mae", "tl"} <= set(held["prediction"])
    assert held["baselines"], "no baseline to compare with"
    if card["task"] == "refocus":
        assert {"input", "richardson_lucy"} <= set(held["baselines"])
        assert len(held["per_z"]) >= 6  # the metrics per z-offset
    rec = tomllib.loads(recipe.read_text())
    assert held["set"] == {"which": "held_out", **rec["held_out"]}  # the recipe's validation set
    assert {"psnr_ci95", "ssim_ci95"} <= set(held["prediction"]) and held["gains"]
    assert held["ssim_window"].startswith("Gaussian")
    targets = held["targets"]  # the recipe's, checked by evaluate
    assert [t["target"] for t in targets] == [t["what"] for t in rec["targets"]]
    assert all(isinstance(t["met"], bool) and "threshold" in t for t in targets)
    assert [{k: v for k, v in t.items() if v is not None}
            for t in card["targets"]] == rec["targets"]  # the card carries them
    assert (ROOT / "docs" / "models" / recipe.stem / "report.html").is_file()


def _shipped_recipe(recipe, card: dict):  # noqa: ANN001, ANN202 - Path in, Path out
    """The recipe the shipped engine of ``recipe``'s name learned from: the v3 one, or a v4
    queue's (``training/v4/``, ``v4b/``, ``v4c/``), whichever its card's text is."""
    for folder in ("v4c", "v4b", "v4", "."):
        candidate = (ROOT / "training" / folder / recipe.name).resolve()
        if candidate.is_file() and _training_part(card["training"]["recipe_text"]) == \
                _training_part(candidate.read_text()):
            return candidate
    raise AssertionError(f"no recipe in training/ is the one {recipe.stem}'s card learned from")


def _training_part(text: str) -> dict:
    """A recipe's tables that shape training (its evaluation sets and targets are added to a
    recipe after its engine was trained without changing what was trained)."""
    return {k: v for k, v in tomllib.loads(text).items()
            if k not in ("targets", "held_out", "final_test")}


def test_models_index_lists_every_engine_and_its_misses() -> None:
    text = (ROOT / "docs" / "models" / "README.md").read_text()
    for recipe in RECIPES:
        assert f"`{recipe.stem}`" in text
    assert "## Targets missed" in text
