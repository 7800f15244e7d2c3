"""The evaluation sets a recipe names, and the final test's once-only record.

``[held_out]`` (validation: choices may be made on it) and ``[final_test]`` (used once, after
every choice) are simulated with their own seeds, in the training data's kind and field size,
into ``.cache/held-out/`` beside the training cache, and reused while the simulator version
holds. The final test's use is written into the card (``metrics.final_test``: engine sha256,
date, uses) whatever the other options, so a second look is refused unless asked for
(``--again``), and then counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from acquire_vf.card import ModelCard

SETS = ("held_out", "final_test")


def set_spec(card: ModelCard, recipe: Any, which: str) -> dict[str, Any]:
    """``{"seed", "fields"}`` of the set ``which``: the recipe's (``--recipe``) or the card's."""
    spec = getattr(recipe, which, None) if recipe is not None else None
    if spec is not None:
        return spec.model_dump()
    named = card.training.get(which)
    if not named:
        raise ValueError(f"engine '{card.name}' names no [{which}] set: its recipe has none "
                         f"(add [{which}] seed = ..., fields = ... to the recipe and pass "
                         "--recipe RECIPE)")
    return dict(named)


def simulate_set(card: ModelCard, spec: dict[str, Any]) -> Path:
    """The set's folder, simulated if needed (the training data's kind and field size)."""
    from acquire_vf._paths import cache_root
    from acquire_vf.simulate import ensure_dataset

    data = card.training.get("data") or {}
    kind = data.get("simulate")
    if not kind:
        raise ValueError(f"engine '{card.name}' was trained on real data ('{data.get('path')}'):"
                         " its evaluation sets cannot be simulated; pass --data")
    sim = data.get("simulated") or {}
    w, h = sim.get("size", (256, 256))
    seed, fields = int(spec["seed"]), int(spec["fields"])
    name = f"{kind}-{seed}-{fields}-{w}x{h}"
    realism = None
    if sim.get("realistic"):  # the engine's kind of specimen; never randomised: one microscope
        from acquire_vf.simulate import Realism

        realism = Realism(dose=float(sim.get("dose", 1.0)))
        name += f"-realistic-{realism.dose}"
    folder = cache_root() / "held-out" / name
    return ensure_dataset(kind, folder, fields=fields, seed=seed, size=(h, w), realism=realism)


def final_test_used(card: ModelCard) -> dict[str, Any] | None:
    """The record of this engine file's final test, if it was run."""
    done = card.metrics.get("final_test") or {}
    return done if done.get("sha256") == card.onnx_sha256 else None


def record_final_test(model: Path, result: dict[str, Any], spec: dict[str, Any]) -> ModelCard:
    """Write the final test's figures and its use into the card."""
    card = ModelCard.load(model)
    before = final_test_used(card)
    keep = ("n_images", "n_fields", "split", "data", "ssim_window", "intervals", "prediction",
            "baselines", "gains", "per_z", "noise_free", "targets")
    record = {k: result[k] for k in keep if k in result}
    if result.get("features"):
        record["feature_median_correlation"] = result["features"]["median_correlation"]
    record.update(sha256=card.onnx_sha256, set=spec,
                  date=time.strftime("%Y-%m-%dT%H:%M:%S"),
                  uses=(before or {}).get("uses", 0) + 1)
    updated = card.model_copy(update={"metrics": {**card.metrics, "final_test": record}})
    updated.save(model)
    return updated
