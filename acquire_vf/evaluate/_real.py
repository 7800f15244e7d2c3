"""Real nuclei that no engine was trained or tuned on: does refocusing make them worse?

The only real fluorescence images the project may use come from inside registry packages. One
is at hand: ``test_image_nuclei_2d`` of StarDist's wheel (``stardist/data/images/img2d.tif``,
512 x 512), an image of the 2018 Data Science Bowl (Caicedo et al. 2019, Nature Methods 16,
1247-1253; BBBC038v1, released CC0 by the Broad Institute; StarDist itself is BSD-3). It is
fetched with ``pip download`` (no StarDist install, no TensorFlow), checked by its sha256 and
used for evaluation only, never for training.

It is in focus, so the defocus is simulated: the real image, as an emitter map, is blurred by
the PSF of the engine's own optics (its card's ``optics``) at each defocus and exposed by the
camera model at the engine's training brightness; the truth is the same image through the
in-focus PSF, noise-free. The cells, their texture and their spacing are real; the defocus is
the model's. Each quadrant counts as a field for the intervals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SOURCE = {
    "package": "stardist==0.9.2", "member": "stardist/data/images/img2d.tif",
    "sha256": "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
    "what": "2018 Data Science Bowl nuclei (Caicedo et al. 2019, Nat. Methods 16:1247; "
            "BBBC038v1, CC0), as shipped in the StarDist wheel (BSD-3) as "
            "test_image_nuclei_2d",
}


def fetch_real_nuclei(cache: Path) -> Path:
    """The real nuclei image, downloaded from the package registry once into ``cache``."""
    from acquire_vf.evaluate._real_sets import RealSet, fetch

    dsb = RealSet("dsb2018", SOURCE["package"], False,
                  ((SOURCE["member"], SOURCE["sha256"]),), SOURCE["what"],
                  "CC0 (BBBC038v1); StarDist BSD-3")
    return fetch(dsb, cache)[0]


def real_refocus(model: Path, images: Path | list[Path], zs: tuple[float, ...] = (
        -10.0, -8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0), estimator: Path | bool = True
        ) -> dict[str, Any]:
    """The refocus engine ``model`` on real in-focus images defocused through its own optics:
    per defocus, the input's, the learned engine's and the refocus gate's PSNR and SSIM against
    the in-focus truth (gate without and with the true defocus as a hint), the consistency
    check's verdict, and 95% intervals by field (each image a field; one image: its quadrants).
    ``estimator``: the defocus estimator the gate takes as its second witness when not seeded
    (``True``: the one of the engine's stain shipped beside it, as ``predict`` does; ``False``:
    none).
    """
    from acquire_vf.card import ModelCard, acceptance_band
    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine
    from acquire_vf.pipeline import gate_for

    card = ModelCard.load(model)
    if card.task != "refocus" or not card.optics:
        raise ValueError(f"'{model}': expected a refocus engine whose card records its optics "
                         "(evaluate --update-card on simulated data writes them)")
    images = [images] if isinstance(images, Path) else list(images)
    lo, hi = (card.training.get("data") or {}).get("z_range_um", (-12.0, 8.0))
    engine = create_engine(model, Compute(backends=("onnxruntime",)))
    from acquire_vf.inference import create_estimator, create_estimator_beside

    ort = Compute(backends=("onnxruntime",))
    est = (create_estimator_beside(model, card.output, ort) if estimator is True else
           create_estimator(estimator, ort) if estimator else None)
    gate = gate_for(card, (lo, hi), estimator=est)
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    try:
        for k, image in enumerate(images):
            scene = _Scene(card, image)
            for z in zs:
                rows += _rows(scene, engine, gate, z, rng, field=None if len(images) == 1 else k)
    finally:
        engine.close()
        if est is not None:
            est.close()
    band = acceptance_band(card).get("consistency_chi2_max")
    per_z = [_summary([r for r in rows if r["z_um"] == z], band) for z in zs]
    worse = [p for p in per_z if p["gain_db"] < 0]
    return {"engine": card.name, "sha256": card.onnx_sha256, "images": [p.name for p in images],
            "consistency_chi2_max": band, "per_z": per_z, "worse_than_input": len(worse),
            "worse_and_flagged": sum(p["flagged"] for p in worse),
            "better_but_flagged": sum(p["flagged"] for p in per_z if p["gain_db"] >= 0)}


class _Scene:
    """A real in-focus image as emitters, seen through a card's optics and camera at the
    engine's training brightness; the truth is it through the in-focus PSF, noise-free."""

    def __init__(self, card: Any, image: Path) -> None:
        import tifffile

        from acquire_vf.simulate import Camera, card_optics, convolve

        o = card.optics
        self.optics, self.lens, self.convolve = o, card_optics(o), convolve
        self.cam = Camera(offset_adu=o["offset_adu"], gain_adu_per_e=o["gain_adu_per_e"],
                          read_noise_e=o["read_noise_e"])
        raw = tifffile.imread(image).astype(np.float32)
        self.emitters = np.clip(raw - np.percentile(raw, 1), 0, None)
        focus = convolve(self.emitters, self.lens.psf(o["wavelength_um"], 0.0))
        self.norm = card.normalisation[card.output]
        expected = float(self.cam.expected(np.array([np.percentile(focus, 99.9)]), 20.0)[0])
        # the engine's training brightness: the 99.9th percentile at 80% of its range
        self.exposure = 20.0 * (0.8 * self.norm.high - self.cam.offset_adu) / max(
            expected - self.cam.offset_adu, 1e-6)
        self.truth = self.cam.expected(focus, self.exposure)
        self.z_range = (card.training.get("data") or {}).get("z_range_um", (-12.0, 8.0))

    def seen(self, z: float, rng: np.random.Generator) -> np.ndarray:
        psf = self.lens.psf(self.optics["wavelength_um"], z)
        return self.cam.expose(self.convolve(self.emitters, psf), self.exposure, rng)

    def unit(self, x: np.ndarray) -> np.ndarray:
        from acquire_vf.metrics import to_unit

        return to_unit(x, self.norm.low, self.norm.high)


def _rows(scene: _Scene, engine: Any, gate: Any, z: float, rng: np.random.Generator,
          field: int | None) -> list[dict[str, Any]]:
    from acquire_vf.metrics import image_metrics
    from acquire_vf.simulate import consistency_from_card

    seen = scene.seen(z, rng)
    pred, _ = engine.infer([seen])
    chi2, _ = consistency_from_card(scene.optics, seen, pred, scene.z_range)
    frames = {"input": seen, "prediction": pred}
    choices = {}
    if gate is not None:
        for key, hint in (("gate", None), ("gate_seeded", z)):
            d = gate.choose(seen, pred, hint)
            frames[key], choices[key] = d.frame, d.choice
        # the physics path alone at the true defocus (where the gate may trust it): the
        # seeded gate's own frame when it deconvolved, else made here
        frames["deconvolution"] = frames["gate_seeded"] if choices["gate_seeded"] == \
            "deconvolution" else gate.deconvolution.refocus(seen, z).frame
    h, w = seen.shape
    parts = [((slice(None), slice(None)), field)] if field is not None else [
        ((slice(qy * h // 2, (qy + 1) * h // 2), slice(qx * w // 2, (qx + 1) * w // 2)),
         2 * qy + qx) for qy in range(2) for qx in range(2)]
    out = []
    for sl, f in parts:
        t = scene.unit(scene.truth[sl])
        out.append({"z_um": z, "field": f, "chi2": chi2, "choices": choices,
                    **{k: image_metrics(scene.unit(v[sl]), t) for k, v in frames.items()}})
    return out


def _summary(sub: list[dict[str, Any]], band: float | None) -> dict[str, Any]:
    from acquire_vf.evaluate._intervals import field_ci

    fields = [r["field"] for r in sub]

    def gain(k: str) -> list[float]:
        return [r[k]["psnr"] - r["input"]["psnr"] for r in sub]

    chi2 = float(np.median([r["chi2"] for r in sub]))
    out: dict[str, Any] = {
        "z_um": sub[0]["z_um"],
        "input_psnr": round(float(np.mean([r["input"]["psnr"] for r in sub])), 2),
        "prediction_psnr": round(float(np.mean([r["prediction"]["psnr"] for r in sub])), 2),
        "input_ssim": round(float(np.mean([r["input"]["ssim"] for r in sub])), 3),
        "prediction_ssim": round(float(np.mean([r["prediction"]["ssim"] for r in sub])), 3),
        "gain_db": round(float(np.mean(gain("prediction"))), 2),
        "gain_ci95": field_ci(gain("prediction"), fields),
        "chi2": round(chi2, 2),
        "flagged": bool(band is not None and chi2 > band)}
    for k in ("gate", "gate_seeded", "deconvolution"):
        if k in sub[0]:
            out[f"{k}_gain_db"] = round(float(np.mean(gain(k))), 2)
            out[f"{k}_ci95"] = field_ci(gain(k), fields)
            out[f"{k}_worst_db"] = round(float(np.min(gain(k))), 2)  # one field (or quadrant)
        if k in sub[0]["choices"]:
            out[f"{k}_choices"] = dict(sorted(
                {c: sum(r["choices"][k] == c for r in sub) for c in
                 {r["choices"][k] for r in sub}}.items()))
    return out
