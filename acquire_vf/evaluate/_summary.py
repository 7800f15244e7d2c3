"""An evaluation's per-image scores summarised: means, spreads, intervals by field, gains.

Every metric gets its mean, standard deviation over images and 95% interval by field
(:mod:`acquire_vf.evaluate._intervals`); every baseline a gain (positive: the engine is better)
with its own interval, computed per image and then resampled, so the pairing of prediction and
baseline on the same image is kept. Where the data hold the simulator's noise-free truth, the
same figures against it tell the model's error from the noise of the measured truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard
from acquire_vf.evaluate._intervals import field_ci, gain
from acquire_vf.metrics import SSIM_WINDOW

METRICS = ("mae", "psnr", "ssim", "tl")
MIN_CELLS = 10
"""Fewest cells over which per-cell feature fidelity (a correlation across cells) is reported."""

Scores = Callable[[dict[str, Any]], dict[str, float]]


def _fields(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [tuple(r["key"]) for r in rows]


def agg(rows: list[dict[str, Any]], pick: Scores) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = _fields(rows)
    for k in METRICS:
        vals = np.array([pick(r)[k] for r in rows], float)
        out[k] = round(float(vals.mean()), 5)
        out[f"{k}_sd"] = round(float(vals.std()), 5)
        out[f"{k}_ci95"] = field_ci(vals, fields)
    return out


def gains(rows: list[dict[str, Any]], pred: Scores, other: Scores) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fields = _fields(rows)
    for k in METRICS:
        vals = np.array([gain(pred(r)[k], other(r)[k], k) for r in rows], float)
        out[k] = round(float(vals.mean()), 5)
        out[f"{k}_ci95"] = field_ci(vals, fields)
    return out


def summarise(card: ModelCard, rows: list[dict[str, Any]], baselines: list[str],
              split: str) -> dict[str, Any]:
    def by(name: str) -> Scores:
        return lambda r: r[name]

    result: dict[str, Any] = {
        "model": {"name": card.name, "task": card.task, "inputs": list(card.inputs),
                  "output": card.output, "sha256": card.onnx_sha256, "preset": card.preset},
        "n_images": len(rows), "n_fields": len(set(_fields(rows))), "split": split,
        "ssim_window": SSIM_WINDOW,
        "intervals": "95% percentile bootstrap over fields (2000 resamples)",
        "prediction": agg(rows, by("prediction")),
        "baselines": {b: agg(rows, by(b)) for b in baselines},
        "gains": {b: gains(rows, by("prediction"), by(b)) for b in baselines},
    }
    if card.task == "refocus":
        zs = sorted({r["z_um"] for r in rows})
        result["per_z"] = [{"z_um": z, "prediction": agg(sub, by("prediction")),
                            "input": agg(sub, by("input")),
                            "gain_over_input": gains(sub, by("prediction"), by("input"))}
                           for z in zs if (sub := [r for r in rows if r["z_um"] == z])]
    clean = [r for r in rows if r.get("noise_free")]
    if clean:
        def nf(name: str) -> Scores:
            return lambda r: r["noise_free"][name]

        result["noise_free"] = {
            "n_images": len(clean),
            "note": "against the simulator's noise-free truth: the prediction's error without "
                    "the measured truth's noise; measured_truth is that noise itself (the best "
                    "any prediction scored against the measured truth can look)",
            "prediction": agg(clean, nf("prediction")),
            "measured_truth": agg(clean, nf("measured_truth")),
            "baselines": {b: agg(clean, nf(b)) for b in baselines},
        }
    return result


def feature_summary(card: ModelCard, feats: dict[str, Any]) -> dict[str, Any]:
    """Per-cell feature fidelity of the engine and, the same way, of each baseline."""
    from acquire_vf.evaluate._features import fidelity

    def pool(items: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([d[k] for d in items]) for k in items[0]}

    real = pool(feats["real"])
    fid = fidelity(real, pool(feats["virtual"]))
    if fid.n_cells < MIN_CELLS:  # a correlation across two cells says nothing
        return {"n_cells": fid.n_cells, "median_correlation": None, "per_feature": {},
                "note": f"too few cells ({fid.n_cells}) for a correlation across cells; at "
                        f"least {MIN_CELLS} are needed"}
    own = fidelity(pool(feats["inputs"]), pool(feats["inputs"]))
    names = {f"correlation_input_{i}": f"correlation_with_{c}" for i, c in enumerate(card.inputs)}
    per = {names.get(k, k): v for k, v in fid.per_feature.items()}
    base = {}
    for b, items in feats["baselines"].items():
        f = fidelity(real, pool(items))
        base[b] = {"median_correlation": f.median_correlation,
                   "per_feature": {names.get(k, k): v for k, v in f.per_feature.items()}}
    return {"n_cells": fid.n_cells, "median_correlation": fid.median_correlation,
            "per_feature": per, "baselines": base,
            "inputs": {"channel": card.inputs[0],
                       "median_correlation": own.median_correlation,
                       "note": "an input channel measured against itself: correlation 1 by "
                               "construction, reported apart"}}
