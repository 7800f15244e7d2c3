"""``acquire-vf evaluate``: an engine on held-out data, with the paper's metrics and baselines.

The data are read with the training loaders in the layout the card's recipe names, and split
by field exactly as training split them, so only the test fields are used (``split="all"``
for a data set simulated with seeds training never saw). Every image is scaled to [0, 1] by the
card's output range before MAE, PSNR and SSIM; the tolerance-level index works on
intensities scaled to 8 bits by the same range (the paper's 8-bit error tolerances).
Baselines in the same report: the input itself and Richardson-Lucy deconvolution
with the known PSF (refocus, simulated data), per-pixel linear regression from the input
channels fitted on the training fields (synthesis).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard, acceptance_band
from acquire_vf.config import Compute
from acquire_vf.evaluate._summary import feature_summary, summarise
from acquire_vf.evaluate._tolerance import tolerance_curves
from acquire_vf.metrics import image_metrics, to_unit

log = logging.getLogger(__name__)


def _recipe_for(card: ModelCard, data: Path) -> Any:
    from acquire_vf.config import Recipe

    spec = dict(card.training.get("data") or {})
    if not spec:
        raise ValueError(f"card '{card.name}' names no training data layout; cannot evaluate")
    spec.update(path=str(data), simulate=None)
    return Recipe.model_validate({"name": card.name, "task": card.task, "data": spec,
                                  "seed": card.training.get("seed", 0)})


def evaluate(model: Path, data: Path, out: Path, *, split: str = "test",
             max_images: int | None = None, compute: Compute | None = None,
             progress: Callable[[int, int], None] | None = None,
             uncertainty_passes: int = 0, targets: Any = None,
             figures: str = "held_out") -> dict[str, Any]:
    """Evaluate ``model`` on ``data``; write ``out/metrics.json`` and ``out/report.html``.

    With ``uncertainty_passes`` (2 to 8) also the test-time-augmentation uncertainty: how it
    correlates with the error (:mod:`acquire_vf.evaluate._uncertainty`). The inputs'
    statistics (:func:`~acquire_vf.inference.input_stats`) are always reported.
    ``targets`` (the recipe's ``[[targets]]``; default: the card's) are checked against the
    figures; ``figures`` names which of another engine's card figures they compare with
    (``held_out``, or ``final_test`` for a final test).
    """
    from acquire_vf.evaluate._uncertainty import UncertaintyTally
    from acquire_vf.inference import create_engine, infer_with_uncertainty, input_stats
    from acquire_vf.pairs import read_pairs

    card = ModelCard.load(model)
    engine = create_engine(model, compute or Compute(backends=("onnxruntime",)))
    rec = _recipe_for(card, data)
    pairs_data = read_pairs(rec.data, data, seed=rec.seed, require_splits=split != "all")
    if split == "all":
        pairs = pairs_data.train + pairs_data.val + pairs_data.test
    elif split in ("test", "val"):
        pairs = getattr(pairs_data, split)
    else:
        raise ValueError(f"split: expected test, val or all, got '{split}'")
    pairs = pairs[:max_images] if max_images else pairs
    if not pairs:
        raise ValueError(f"no {split} images in '{data}'")
    norm = card.normalisation[card.output]
    lo, hi = norm.low, norm.high
    bit_depth = 16 if card.dtype == "uint16" else 8
    baselines, linear_fit = _baselines(card, pairs_data, data)
    source = _fp32_source(card, compute)
    if source is not None:  # an INT8 engine: its fp32 engine on the same images
        baselines["fp32_engine"] = lambda pair: source.infer(
            [pair.inputs[i].astype(np.uint16) for i in range(pair.inputs.shape[0])])[0]
    seg_source = _segmentation_source(card, data) if card.task == "synthesis" else None
    optics = data_optics(card, data) if card.task == "refocus" else None
    feats: dict[str, Any] = {"real": [], "virtual": [], "inputs": [],
                             "baselines": {b: [] for b in baselines}}
    rows: list[dict[str, Any]] = []
    examples: list[tuple[Any, np.ndarray]] = []
    tally = UncertaintyTally(uncertainty_passes, lo, hi) if uncertainty_passes else None
    seen: dict[str, list[np.ndarray]] = {c: [] for c in card.inputs}
    for k, pair in enumerate(pairs):
        inputs = [pair.inputs[i].astype(np.uint16) for i in range(pair.inputs.shape[0])]
        for c, frame in zip(card.inputs, inputs, strict=True):
            seen[c].append(frame)
        truth = pair.target[0]
        pred, qc = engine.infer(inputs)
        if tally is not None:
            mean, spread, _ = infer_with_uncertainty(engine, inputs, uncertainty_passes)
            tally.add(spread, mean, truth)
        outs = {name: fn(pair) for name, fn in baselines.items()}
        row: dict[str, Any] = {"key": [str(v) for v in pair.key], "z_um": pair.z_um, "qc": qc}
        row["prediction"] = _scores(pred, truth, lo, hi, bit_depth)
        for name, img in outs.items():
            row[name] = _scores(img, truth, lo, hi, bit_depth)
        clean = noise_free_truth(pair, data)
        if clean is not None:
            row["noise_free"] = {"prediction": _scores(pred, clean, lo, hi, bit_depth),
                                 "measured_truth": _scores(truth, clean, lo, hi, bit_depth)}
            row["noise_free"].update({name: _scores(img, clean, lo, hi, bit_depth)
                                      for name, img in outs.items()})
        if optics is not None:
            from acquire_vf.simulate import consistency_from_card

            chi2, z_fit = consistency_from_card(optics, inputs[0], pred, _z_range(card))
            row["consistency_chi2"], row["consistency_z_um"] = round(chi2, 3), z_fit
        rows.append(row)
        if len(examples) < 3:
            examples.append((pair, pred))
        if seg_source is not None:
            _measure_cells(seg_source(pair), pair, pred, outs, feats)
        if progress is not None:
            progress(k + 1, len(pairs))
    engine.close()
    result = summarise(card, rows, list(baselines), split)
    result["data"] = str(data)
    if optics is not None:
        chi = np.array([r["consistency_chi2"] for r in rows])
        worse = np.array([r["prediction"]["psnr"] < r["input"]["psnr"] for r in rows])
        result["consistency"] = {
            "chi2_median": round(float(np.median(chi)), 3),
            "chi2_p95": round(float(np.percentile(chi, 95)), 3),
            "chi2_max": round(float(chi.max()), 3), "optics": optics,
            "worse_than_input": int(worse.sum()),
            "note": "forward consistency: the refocused frame blurred by the best PSF plane "
                    "against the camera frame, chi-square per pixel (acquire_vf.simulate."
                    "_consistency)"}
    if source is not None:
        source.close()
        result["int8_psnr_cost_db"] = round(result["baselines"]["fp32_engine"]["psnr"]
                                            - result["prediction"]["psnr"], 3)
    result["input_stats"] = {c: input_stats(f, card.normalisation[c]) for c, f in seen.items()}
    if tally is not None:
        result["uncertainty"] = tally.summary()
    if linear_fit is not None:
        result["linear_baseline"] = linear_fit
    if feats["real"]:
        result["features"] = feature_summary(card, feats)
    targets = targets if targets is not None else card.targets
    if targets:
        from acquire_vf.evaluate._targets import check_targets

        result["targets"] = check_targets(targets, result, model, figures)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "per_image.json").write_text(json.dumps(rows, indent=1, default=_plain))
    from acquire_vf.evaluate._report import write_report

    write_report(out, card, result, rows, examples, bit_depth)
    return result


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else str(v)


def _scores(pred: np.ndarray, truth: np.ndarray, lo: float, hi: float,
            bit_depth: int) -> dict[str, float]:
    p01, t01 = to_unit(pred, lo, hi), to_unit(truth, lo, hi)
    m = image_metrics(p01, t01)
    tl = tolerance_curves(p01 * 255, t01 * 255, 8)  # the paper's 8-bit error tolerances
    return {**m, "tl": tl.tl_fraction, "tl_value": tl.minimum}


def _baselines(card: ModelCard, data: Any, root: Path,
               ) -> tuple[dict[str, Callable[[Any], np.ndarray]], dict[str, Any] | None]:
    """The baselines, and for the linear one which fields it was fitted on."""
    if card.task == "refocus":
        out: dict[str, Callable[[Any], np.ndarray]] = {"input": lambda p: p.inputs[0]}
        rl = _richardson_lucy(card, root)
        if rl is not None:
            out["richardson_lucy"] = rl
        return out, None
    from acquire_vf.config import data_root

    named = str(card.training.get("data_root") or "")
    trained_on = data_root(named)  # the cache's, the checkout's, or absolute
    if named and trained_on.is_dir() and trained_on.resolve() == root.resolve():
        return {"linear": linear_regression(data)}, {  # the same split training used
            "fitted_on": f"the training split of {root}", "engine_training_fields": True}
    if named and trained_on.is_dir():
        from acquire_vf.pairs import read_pairs  # fit where the engine learned

        rec = _recipe_for(card, trained_on)
        data = read_pairs(rec.data, trained_on, seed=rec.seed, require_splits=False)
        return {"linear": linear_regression(data)}, {"fitted_on": named,
                                                      "engine_training_fields": True}
    fit = {"fitted_on": f"the training split of {root}", "engine_training_fields": False,
           "why": f"the engine's training data ({named}) was not found" if named
           else "the card names no training data"}
    return {"linear": linear_regression(data)}, fit


def linear_regression(data: Any) -> Callable[[Any], np.ndarray]:
    """Per-pixel least squares, target ~ inputs + 1, fitted on the training fields."""
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for p in data.train or data.train + data.val + data.test:
        idx = rng.choice(p.target[0].size, size=min(20_000, p.target[0].size), replace=False)
        xs.append(np.column_stack([c.ravel()[idx] for c in p.inputs] + [np.ones(idx.size)]))
        ys.append(p.target[0].ravel()[idx])
    coef, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)

    def predict(p: Any) -> np.ndarray:
        flat = np.tensordot(coef[:-1], p.inputs.astype(np.float64), axes=1) + coef[-1]
        return np.asarray(flat, np.float64)

    return predict


def _richardson_lucy(card: ModelCard, root: Path) -> Callable[[Any], np.ndarray] | None:
    """Deconvolution with the true PSF, available for the project's simulated data only."""
    meta = root / "simulation.json"
    if not meta.exists():
        return None
    from skimage.restoration import richardson_lucy

    from acquire_vf.simulate import STAINS, Optics

    optics = Optics(**json.loads(meta.read_text())["optics"])
    wavelength = STAINS.get(card.output, STAINS["DNA"]).wavelength_um

    def deconvolve(p: Any) -> np.ndarray:
        img = p.inputs[0].astype(np.float64)
        offset = float(np.percentile(img, 0.5))
        psf = optics.psf(wavelength, float(p.z_um))
        est = richardson_lucy(np.clip(img - offset, 0, None), psf, num_iter=30, clip=False)
        return np.asarray(est + offset)

    return deconvolve


def _segmentation_source(card: ModelCard, root: Path) -> Callable[[Any], tuple[Any, Any]]:
    """Where each site's DNA (nuclei) and cell-body images come from, by layout."""
    from acquire_vf import layouts

    layout = (card.training.get("data") or {}).get("layout")
    dna_names, body_names = ("DNA", "DAPI"), ("AGP", "F-actin")
    by_site: dict[Any, dict[str, Path]] = {}
    if layout == "bbbc022":
        for site in layouts.scan_bbbc022(root):
            by_site[next(iter(site.values())).field_key] = {c: r.path for c, r in site.items()}
    elif layout == "paired":
        have = [c for c in (*dna_names, *body_names) if (root / c).is_dir()]
        if have:
            for site in layouts.scan_paired(root, have):
                by_site[next(iter(site.values())).field_key] = {c: r.path
                                                                for c, r in site.items()}

    def images(pair: Any) -> tuple[Any, Any]:
        import tifffile

        files = by_site.get(pair.key, {})
        named = dict(zip(card.inputs, pair.inputs, strict=True)) | {card.output: pair.target[0]}
        for c, path in files.items():
            named.setdefault(c, tifffile.imread(path))
        dna = next((named[c] for c in dna_names if c in named), None)
        body = next((named[c] for c in body_names if c in named), None)
        return dna, body

    return images


def _z_range(card: ModelCard) -> tuple[float, float]:
    lo, hi = (card.training.get("data") or {}).get("z_range_um", (-12.0, 8.0))
    return float(lo), float(hi)


def data_optics(card: ModelCard, root: Path) -> dict[str, Any] | None:
    """The optics and camera of simulated data (its ``simulation.json``), in the card's
    ``optics`` form, for the refocused channel's stain; ``None`` for other data."""
    meta = root / "simulation.json"
    if not meta.exists():
        return card.optics or None
    from acquire_vf.simulate import STAINS

    sim = json.loads(meta.read_text())
    o, cam = sim["optics"], sim["camera"]
    return {"na": o["na"], "immersion_index": o["immersion_index"],
            "specimen_index": o["specimen_index"], "pixel_size_um": o["pixel_size_um"],
            "depth_um": o["depth_um"], "psf_px": o["psf_px"],
            "wavelength_um": STAINS.get(card.output, STAINS["DNA"]).wavelength_um,
            "offset_adu": cam["offset_adu"], "gain_adu_per_e": cam["gain_adu_per_e"],
            "read_noise_e": cam["read_noise_e"]}


def noise_free_truth(pair: Any, root: Path) -> np.ndarray | None:
    """The simulator's noise-free image of the pair's target (``clean/`` beside the data,
    same relative path), or ``None`` for data without one (real data, older simulations)."""
    if pair.target_path is None:
        return None
    try:
        path = root / "clean" / Path(pair.target_path).relative_to(root)
    except ValueError:
        return None
    if not path.is_file():
        return None
    import tifffile

    return np.asarray(tifffile.imread(path), np.float64)


def _measure_cells(seg: tuple[Any, Any], pair: Any, pred: np.ndarray,
                   outs: dict[str, np.ndarray], feats: dict[str, Any]) -> None:
    from acquire_vf.evaluate._features import cell_features, segment

    dna, body = seg
    if dna is None:
        return
    nuclei, cells = segment(dna, body)
    if cells.max() == 0:
        return
    inputs = list(pair.inputs)
    feats["real"].append(cell_features(pair.target[0], nuclei, cells, inputs))
    feats["virtual"].append(cell_features(pred, nuclei, cells, inputs))
    feats["inputs"].append(cell_features(inputs[0], nuclei, cells))
    for name, img in outs.items():  # the baselines, measured the same way
        feats["baselines"][name].append(cell_features(img, nuclei, cells, inputs))


def _fp32_source(card: ModelCard, compute: Compute | None) -> Any:
    """The fp32 engine an INT8 engine was quantised from, when its file is at hand."""
    if not card.quantization:
        return None
    from acquire_vf.inference import create_engine

    path = Path(str(card.quantization.get("from_path", "")))
    if not path.is_file() or ModelCard.load(path).onnx_sha256 != card.quantization.get(
            "from_sha256"):
        log.warning("the fp32 engine '%s' this INT8 engine came from is not at hand: no "
                    "quality cost reported", path)
        return None
    return create_engine(path, compute or Compute(backends=("onnxruntime",)))


def update_card(model: Path, result: dict[str, Any], recipe: Any = None) -> ModelCard:
    """Write the held-out (validation) figures into the model card (the ONNX file is
    unchanged); with ``recipe``, also its targets and evaluation sets."""
    card = ModelCard.load(model)
    metrics = dict(card.metrics)
    held = dict(metrics.get("held_out") or {})  # keep what this run does not measure
    keep = ("n_images", "n_fields", "split", "data", "set", "ssim_window", "intervals",
            "prediction", "baselines", "gains", "per_z", "uncertainty", "noise_free", "targets",
            "consistency")
    held.update({k: result[k] for k in keep if k in result})
    if "targets" in result:
        metrics.pop("targets", None)  # where scripts wrote them before evaluate checked them
    if result.get("features"):
        held["feature_median_correlation"] = result["features"]["median_correlation"]
    metrics["held_out"] = held
    update: dict[str, Any] = {"metrics": metrics, "acceptance": {},
                              # input statistics come from the training data at export;
                              # held-out ones only fill a gap
                              "input_stats": card.input_stats or result.get("input_stats", {})}
    if "consistency" in result:
        update["optics"] = result["consistency"]["optics"]
    if recipe is not None:
        update["targets"] = tuple(t.model_dump() for t in recipe.targets)
        update["training"] = {**card.training, **{
            k: getattr(recipe, k).model_dump() for k in ("held_out", "final_test")
            if getattr(recipe, k) is not None}}
    updated = card.model_copy(update=update)
    updated = updated.model_copy(update={"acceptance": acceptance_band(updated)})
    updated.save(model)
    return updated
