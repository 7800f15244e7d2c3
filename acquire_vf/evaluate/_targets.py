"""The recipe's quality targets (``[[targets]]``), checked against an evaluation's figures.

Each result says the value, its 95% interval by field where there is one, the threshold,
whether the mean meets it (``met``) and whether the whole interval does (``met_at_95``: the
target holds beyond the spread of the fields). A target that cannot be judged on these data
(no such baseline, another engine's card without figures) says why instead of passing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acquire_vf.evaluate._intervals import gain

METRIC_WORDS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "tl": "tolerance-level index",
                "feature_correlation": "median per-cell feature correlation"}


def describe(t: Any) -> str:
    """The target in words (the recipe's ``what`` when it has one)."""
    if t.what:
        return str(t.what)
    bound = f">= {t.at_least}" if t.at_least is not None else f"<= {t.at_most}"
    subject = METRIC_WORDS[t.metric] + (f" gain over {t.over}" if t.over else "")
    return f"{subject} {bound}"


def check_targets(targets: Any, result: dict[str, Any], model: Path,
                  figures: str = "held_out") -> list[dict[str, Any]]:
    """Every target against ``result`` (an evaluation's figures); ``figures`` names which of
    another engine's card figures an ``engine:NAME`` target compares with."""
    from acquire_vf.config import Target

    out = []
    for raw in targets:
        t = raw if isinstance(raw, Target) else Target.model_validate(raw)
        value, ci, why = _value(t, result, model, figures)
        row: dict[str, Any] = {"target": describe(t), "metric": t.metric, "over": t.over}
        above = t.at_least is not None
        threshold = float(t.at_least if above else t.at_most)  # type: ignore[arg-type]
        row["threshold"] = threshold
        if value is None:
            out.append({**row, "value": None, "met": None, "why": why})
            continue
        row.update(value=round(value, 4), ci95=ci,
                   met=bool(value >= threshold if above else value <= threshold))
        if ci is not None:
            row["met_at_95"] = bool(ci[0] >= threshold if above else ci[1] <= threshold)
        out.append(row)
    return out


def _value(t: Any, result: dict[str, Any], model: Path, figures: str,
           ) -> tuple[float | None, list[float] | None, str]:
    if t.metric == "feature_correlation":
        feats = result.get("features") or {}
        own = feats.get("median_correlation")
        if own is None:
            return None, None, feats.get("note", "no per-cell features in this evaluation")
        if not t.over:
            return float(own), None, ""
        other = (feats.get("baselines") or {}).get(t.over, {}).get("median_correlation")
        if other is None:
            return None, None, f"no per-cell features of '{t.over}' in this evaluation"
        return float(own) - float(other), None, ""
    pred = result["prediction"]
    if not t.over:
        return float(pred[t.metric]), pred.get(f"{t.metric}_ci95"), ""
    if t.over.startswith("engine:"):
        return _over_engine(t, pred, model, figures)
    g = (result.get("gains") or {}).get(t.over)
    if g is None:
        return None, None, (f"no baseline '{t.over}' in this evaluation (has "
                            f"{', '.join(result.get('baselines', {})) or 'none'})")
    return float(g[t.metric]), g.get(f"{t.metric}_ci95"), ""


def _over_engine(t: Any, pred: dict[str, Any], model: Path, figures: str,
                 ) -> tuple[float | None, list[float] | None, str]:
    """The gain over another engine's figures of the same kind (its card beside this one);
    the interval is this engine's, shifted: the other's figure is taken as fixed."""
    from acquire_vf.card import ModelCard

    name = t.over.removeprefix("engine:")
    path = model.parent / f"{name}.onnx"
    try:
        other = ModelCard.load(path, verify=False).metrics.get(figures) or {}
    except Exception as e:  # noqa: BLE001 - reported as the reason the target was not judged
        return None, None, f"engine '{name}': {e}"
    value = (other.get("prediction") or {}).get(t.metric)
    if value is None:
        return None, None, f"engine '{name}' has no {figures} {t.metric} in its card ({path})"
    ci = pred.get(f"{t.metric}_ci95")
    shifted = None if ci is None else sorted(round(gain(c, float(value), t.metric), 5)
                                             for c in ci)
    return gain(float(pred[t.metric]), float(value), t.metric), shifted, ""
