"""``acquire-vf evaluate`` for a defocus estimator: held-out simulated through-focus stacks.

Fields of the simulated slide rendered with seeds training never used, at every µm from
``-range`` to ``+range``, exposed with the camera's noise at the recipe's exposure; each frame
estimated whole (as live). The estimator gives the distance from focus (its sign is the
controller's), so the error is ``|estimate - |z||``; a signed estimator's (brightfield) is
``|estimate - z|``. Per z: the median absolute error, the
spread of the estimates, and how often the reported sigma covers the error (``|error| <= 2
sigma``); above and below focus summarised apart (defocus can be asymmetric).

``--data`` names a folder where the held-out stacks are cached (simulated on first use).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard
from acquire_vf.config import Compute

HELD_OUT_SEED = 9_500


def held_out_stacks(card: ModelCard, folder: Path, *, fields: int = 6, size: int = 256,
                    realistic: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out stacks of the card's stain, cached as ``folder/stacks-STAIN...npz``: of
    the specimen the estimator learned (``realistic``: simulator version 4's, never
    randomised: one microscope), or the one ``realistic`` names (to compare estimators)."""
    from acquire_vf.simulate import OPTICS_20X, Realism, through_focus_bank

    stain, rng_um = card.defocus["stain"], float(card.defocus["range_um"])
    v4 = bool(card.defocus.get("realistic")) if realistic is None else realistic
    path = folder / f"stacks-{stain}-{fields}x{size}-{HELD_OUT_SEED}{'-v4' if v4 else ''}.npz"
    if path.is_file():
        d = np.load(path)
        return d["images"], d["z"]
    images, z = through_focus_bank(stain, seed=HELD_OUT_SEED, fields=fields, size=size,
                                   range_um=rng_um, step_um=1.0, optics=OPTICS_20X,
                                   realism=Realism() if v4 else None)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, z=z)
    return images, z


def evaluate_defocus(model: Path, data: Path, out: Path, *, exposure_ms: float | None = None,
                     compute: Compute | None = None, realistic: bool | None = None
                     ) -> dict[str, Any]:
    """The estimator on held-out stacks (``realistic``: which specimen's; ``None``: the one it
    learned)."""
    from acquire_vf.inference import create_estimator
    from acquire_vf.simulate import Camera

    est = create_estimator(model, compute or Compute(estimator_threads=0))  # alone: all cores
    images, zs = held_out_stacks(est.card, data, realistic=realistic)
    if exposure_ms is None:  # the recipe's typical exposure
        exposure_ms = float(est.card.defocus.get("exposure_ms", 50.0))
    camera, rng = Camera(), np.random.default_rng(HELD_OUT_SEED)
    rows = []
    for f in range(images.shape[0]):
        for k, z in enumerate(zs):
            frame = camera.expose(images[f, k], exposure_ms, rng)
            mu, sigma = est.estimate(frame)
            rows.append({"field": f, "z_um": float(z), "defocus_um": mu, "sigma_um": sigma})
    est.close()
    result = summarise(rows, float(est.card.defocus["range_um"]), signed=est.signed)
    result["model"] = {"name": est.card.name, "stain": est.card.defocus["stain"],
                       "sha256": est.card.onnx_sha256}
    v4 = bool(est.card.defocus.get("realistic")) if realistic is None else realistic
    result["data"] = (f"{images.shape[0]} held-out fields of the simulated slide (seed "
                      f"{HELD_OUT_SEED}{', simulator v4' if v4 else ''}), {images.shape[-1]} "
                      f"px, every 1 um, {exposure_ms} ms")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    plot(rows, result, out / "defocus.png")
    return result


NEAR_FOCUS_UM = 3.0
"""Where closed-loop focus works: an estimator's error within this distance of focus is
reported on its own (``near_focus``), so a good median over +-20 µm cannot hide it."""


def summarise(rows: list[dict[str, Any]], range_um: float, signed: bool = False
              ) -> dict[str, Any]:
    z = np.array([r["z_um"] for r in rows])
    mu = np.array([r["defocus_um"] for r in rows])
    sd = np.array([r["sigma_um"] for r in rows])
    err = np.abs(mu - (z if signed else np.abs(z)))

    def part(m: np.ndarray) -> dict[str, float]:
        return {"median_abs_error_um": round(float(np.median(err[m])), 3),
                "p90_abs_error_um": round(float(np.percentile(err[m], 90)), 3),
                "coverage_2sigma": round(float(np.mean(err[m] <= 2 * sd[m])), 3),
                "n": int(m.sum())}

    inside = np.abs(z) <= min(20.0, range_um)
    per_z = []
    for v in np.unique(z):
        m = z == v
        per_z.append({"z_um": float(v), "median_abs_error_um": round(float(np.median(err[m])), 3),
                      "mean_estimate_um": round(float(mu[m].mean()), 3),
                      "spread_um": round(float(mu[m].std()), 3),
                      "mean_sigma_um": round(float(sd[m].mean()), 3),
                      "coverage_2sigma": round(float(np.mean(err[m] <= 2 * sd[m])), 3)})
    return {"signed": signed, "within_20um": part(inside), "above_focus": part(inside & (z > 0)),
            "below_focus": part(inside & (z < 0)), "near_focus": part(np.abs(z) <= NEAR_FOCUS_UM),
            "all": part(np.ones_like(inside)), "per_z": per_z}


def plot(rows: list[dict[str, Any]], result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = result["per_z"]
    z = np.array([p["z_um"] for p in per])
    m = np.array([p["mean_estimate_um"] for p in per])
    s = np.array([p["mean_sigma_um"] for p in per])
    f, ax = plt.subplots(1, 2, figsize=(10, 4))
    signed = bool(result.get("signed"))
    ax[0].plot(z, z if signed else np.abs(z), "k:", lw=1,
               label="true defocus" if signed else "|true defocus|")
    ax[0].scatter([r["z_um"] for r in rows], [r["defocus_um"] for r in rows], s=4, alpha=0.4)
    ax[0].fill_between(z, m - 2 * s, m + 2 * s, alpha=0.2, label="mean +- 2 sigma")
    ax[0].set_xlabel("true defocus (um)")
    ax[0].set_ylabel("estimated defocus (um)" if signed else
                     "estimated distance from focus (um)")
    ax[0].legend()
    ax[1].plot(z, [p["median_abs_error_um"] for p in per], "o-", label="median |error|")
    ax[1].plot(z, [p["coverage_2sigma"] for p in per], "s-", label="2-sigma coverage")
    ax[1].axhline(0.5, color="red", ls="--", lw=1)
    ax[1].set_xlabel("true defocus (um)")
    ax[1].legend()
    w = result["within_20um"]
    f.suptitle(f"{result['model']['name']}: median |error| {w['median_abs_error_um']} um "
               f"within +-20 um, coverage {w['coverage_2sigma']}")
    f.tight_layout()
    f.savefig(path, dpi=100)


TARGET_UM = 0.5
"""The issue's target: median error within +-20 µm on held-out stacks."""


def update_defocus_card(model: Path, result: dict[str, Any]) -> ModelCard:
    """Write the held-out figures and the target into the card (the ONNX is unchanged)."""
    card = ModelCard.load(model)
    w = result["within_20um"]
    metrics = dict(card.metrics)
    metrics["held_out"] = {"split": "all", "n_images": result["all"]["n"],
                           "data": result["data"], **{k: result[k] for k in (
                               "within_20um", "above_focus", "below_focus", "all")}}
    metrics["targets"] = [{"target": f"median |error| within +-20 um <= {TARGET_UM} um",
                           "value": w["median_abs_error_um"], "threshold": TARGET_UM,
                           "met": bool(w["median_abs_error_um"] <= TARGET_UM)}]
    updated = card.model_copy(update={"metrics": metrics})
    updated.save(model)
    return updated
