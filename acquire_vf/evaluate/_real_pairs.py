"""Figures of a synthesis engine on real paired fields (the ExampleFly journey): PSNR, SSIM and
Pearson r of the whole frame and the per-nucleus intensity correlation, for the engine and the
per-pixel linear baseline fitted on the training field, with 95% intervals.

One real field is one image, so the intervals resample what the field holds: its tiles (a
4 x 4 grid) for the frame figures and its nuclei for the per-nucleus correlation. Nuclei are
segmented on the true DNA frame (Otsu threshold, at least 30 pixels), the way a microscopist
would count them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.metrics import psnr, ssim

GRID = 4
RESAMPLES = 2000


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def nuclei(dna: np.ndarray, min_area: int = 30) -> np.ndarray:
    """Labels of the nuclei of a true DNA frame."""
    from acquire_vf.fidelity import segment_cells

    return segment_cells([dna], min_area=min_area)


def _tiles(img: np.ndarray) -> list[np.ndarray]:
    h, w = img.shape
    return [img[i * h // GRID:(i + 1) * h // GRID, j * w // GRID:(j + 1) * w // GRID]
            for i in range(GRID) for j in range(GRID)]


def _ci(values: np.ndarray, rng: np.random.Generator) -> list[float]:
    idx = rng.integers(0, len(values), (RESAMPLES, len(values)))
    means = values[idx].mean(axis=1)
    return [round(float(v), 3) for v in np.percentile(means, [2.5, 97.5])]


def _frame(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"psnr": psnr(pred, truth), "ssim": ssim(pred, truth), "pearson": pearson(pred, truth)}


def figures(pred: np.ndarray, baseline: np.ndarray, truth: np.ndarray, low: float, high: float,
            seed: int = 0) -> dict[str, Any]:
    """The engine's and the baseline's figures on one field, their gains with intervals.

    Intensities are scaled to [0, 1] by the card's output range (``low``, ``high``) as every
    report of the project does."""
    from acquire_vf.fidelity import cell_correlation
    from acquire_vf.metrics import to_unit

    p, b, t = (to_unit(x, low, high) for x in (pred, baseline, truth))
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"engine": _frame(p, t), "linear": _frame(b, t)}
    per_tile = {who: [_frame(x, y) for x, y in zip(_tiles(img), _tiles(t), strict=True)]
                for who, img in (("engine", p), ("linear", b))}
    out["gains"] = {}
    for metric in ("psnr", "ssim", "pearson"):
        g = np.array([e[metric] - lin[metric]
                      for e, lin in zip(per_tile["engine"], per_tile["linear"], strict=True)])
        out["gains"][metric] = {"mean": round(float(g.mean()), 3), "ci95": _ci(g, rng),
                                "by": f"{GRID * GRID} tiles"}
    out["engine"]["pearson_ci95"] = _ci(np.array([e["pearson"] for e in per_tile["engine"]]),
                                        rng)
    labels = nuclei(truth)
    n = int(labels.max())
    out["nuclei"] = n
    for who, img in (("engine", pred), ("linear", baseline)):
        out[who]["nucleus_r"] = cell_correlation(img, truth, labels)
        out[who]["nucleus_r_ci95"] = _nucleus_ci(img, truth, labels, rng)
    return out


def _nucleus_ci(img: np.ndarray, truth: np.ndarray, labels: np.ndarray,
                rng: np.random.Generator) -> list[float] | None:
    """Bootstrap over nuclei of the per-nucleus mean-intensity correlation."""
    ids = np.arange(1, int(labels.max()) + 1)
    if ids.size < 3:
        return None
    count = np.bincount(labels.ravel(), minlength=ids.size + 1)[1:]
    v = np.bincount(labels.ravel(), img.ravel().astype(np.float64), ids.size + 1)[1:] / count
    p = np.bincount(labels.ravel(), truth.ravel().astype(np.float64), ids.size + 1)[1:] / count
    rs = []
    for _ in range(RESAMPLES // 4):
        k = rng.integers(0, ids.size, ids.size)
        if np.std(v[k]) > 0 and np.std(p[k]) > 0:
            rs.append(np.corrcoef(v[k], p[k])[0, 1])
    return [round(float(x), 3) for x in np.percentile(rs, [2.5, 97.5])]


def linear_fit(inputs: list[np.ndarray], target: np.ndarray) -> np.ndarray:
    """Coefficients of target ~ inputs + 1 (per-pixel least squares)."""
    x = np.column_stack([c.astype(np.float64).ravel() for c in inputs] + [np.ones(target.size)])
    coef, *_ = np.linalg.lstsq(x, target.astype(np.float64).ravel(), rcond=None)
    return np.asarray(coef)


def linear_apply(coef: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(sum(c * x.astype(np.float64) for c, x in zip(coef[:-1], inputs,
                                                                    strict=True)) + coef[-1])


def predict_field(engine_path: Path, root: Path, inputs: tuple[str, ...], target: str,
                  train_field: str, field: str
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """``field`` of a paired folder ``root`` (``root/CHANNEL/FIELD.tif``): its inputs, its
    true target, the engine's prediction (ONNX Runtime) and the linear baseline fitted on
    ``train_field``."""
    import tifffile

    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine

    def read(field_name: str, c: str) -> np.ndarray:
        return tifffile.imread(root / c / f"{field_name}.tif").astype(np.float32)

    coef = linear_fit([read(train_field, c) for c in inputs], read(train_field, target))
    xs = [read(field, c) for c in inputs]
    truth = read(field, target)
    engine = create_engine(engine_path, Compute(backends=("onnxruntime",)))
    try:
        pred, _ = engine.infer(xs)
    finally:
        engine.close()
    return xs, truth, np.asarray(pred, np.float64).reshape(truth.shape), linear_apply(coef, xs)


def field_figures(engine_path: Path, root: Path, inputs: tuple[str, ...], target: str,
                  train_field: str, field: str) -> dict[str, Any]:
    """The engine and the linear baseline fitted on ``train_field``, judged on ``field``."""
    from acquire_vf.card import ModelCard

    _, truth, pred, base = predict_field(engine_path, root, inputs, target, train_field, field)
    norm = ModelCard.load(engine_path).normalisation[target]
    out = figures(pred, base, truth, norm.low, norm.high)
    out.update(field=field, baseline_fitted_on=train_field)
    return out
