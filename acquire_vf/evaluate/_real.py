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

import hashlib
import subprocess
import sys
import tempfile
import zipfile
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
    out = cache / "dsb2018_img2d.tif"
    if out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == SOURCE["sha256"]:
        return out
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", SOURCE["package"], "--no-deps",
                        "--only-binary=:all:", "-q", "-d", tmp], check=True,
                       capture_output=True, text=True, timeout=300)
        wheel = next(Path(tmp).glob("stardist-*.whl"))
        data = zipfile.ZipFile(wheel).read(SOURCE["member"])
    if hashlib.sha256(data).hexdigest() != SOURCE["sha256"]:
        raise ValueError(f"{SOURCE['member']} in {SOURCE['package']}: expected sha256 "
                         f"{SOURCE['sha256']}, got another file")
    out.write_bytes(data)
    (cache / "SOURCE.txt").write_text(SOURCE["what"] + "\n")
    return out


def real_refocus(model: Path, image: Path, zs: tuple[float, ...] = (
        -10.0, -8.0, -6.0, -4.0, 0.0, 4.0, 6.0, 8.0)) -> dict[str, Any]:
    """The refocus engine ``model`` on the real nuclei at each defocus: its PSNR and SSIM and
    the input's against the in-focus truth, and the forward-consistency check's verdict."""
    import tifffile

    from acquire_vf.card import ModelCard, acceptance_band
    from acquire_vf.config import Compute
    from acquire_vf.evaluate._intervals import field_ci
    from acquire_vf.inference import create_engine
    from acquire_vf.metrics import image_metrics, to_unit
    from acquire_vf.simulate import Camera, card_optics, consistency_from_card, convolve

    card = ModelCard.load(model)
    if card.task != "refocus" or not card.optics:
        raise ValueError(f"'{model}': expected a refocus engine whose card records its optics "
                         "(evaluate --update-card on simulated data writes them)")
    o = card.optics
    lens = card_optics(o)
    cam = Camera(offset_adu=o["offset_adu"], gain_adu_per_e=o["gain_adu_per_e"],
                 read_noise_e=o["read_noise_e"])
    raw = tifffile.imread(image).astype(np.float32)
    emitters = np.clip(raw - np.percentile(raw, 1), 0, None)
    focus = convolve(emitters, lens.psf(o["wavelength_um"], 0.0))
    norm = card.normalisation[card.output]
    exposure = 20.0 * (0.8 * norm.high - cam.offset_adu) / max(
        float(cam.expected(np.array([np.percentile(focus, 99.9)]), 20.0)[0]) - cam.offset_adu,
        1e-6)  # the engine's training brightness: the 99.9th percentile at 80% of its range
    truth = cam.expected(focus, exposure)
    band = acceptance_band(card).get("consistency_chi2_max")
    lo, hi = (card.training.get("data") or {}).get("z_range_um", (-12.0, 8.0))
    engine = create_engine(model, Compute(backends=("onnxruntime",)))
    from acquire_vf.pipeline import gate_for

    gate = gate_for(card, (lo, hi))
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    h, w = raw.shape
    for z in zs:
        seen = cam.expose(convolve(emitters, lens.psf(o["wavelength_um"], z)), exposure, rng)
        pred, qc = engine.infer([seen])
        chi2, _ = consistency_from_card(o, seen, pred, (lo, hi))
        gated = {"gate": gate.choose(seen, pred), "gate_seeded": gate.choose(seen, pred, z)} \
            if gate is not None else {}
        for qy in range(2):  # quadrants: the fields of the intervals
            for qx in range(2):
                sl = (slice(qy * h // 2, (qy + 1) * h // 2), slice(qx * w // 2, (qx + 1) * w // 2))
                t = to_unit(truth[sl], norm.low, norm.high)
                rows.append({"z_um": z, "field": 2 * qy + qx, "chi2": chi2,
                             "input": image_metrics(to_unit(seen[sl], norm.low, norm.high), t),
                             "prediction": image_metrics(to_unit(pred[sl], norm.low,
                                                                 norm.high), t),
                             **{k: image_metrics(to_unit(d.frame[sl], norm.low, norm.high), t)
                                for k, d in gated.items()},
                             "choices": {k: d.choice for k, d in gated.items()}})
    engine.close()
    per_z = []
    for z in zs:
        sub = [r for r in rows if r["z_um"] == z]
        gain = [r["prediction"]["psnr"] - r["input"]["psnr"] for r in sub]
        per_z.append({
            "z_um": z, "input_psnr": round(float(np.mean([r["input"]["psnr"] for r in sub])), 2),
            "prediction_psnr": round(float(np.mean([r["prediction"]["psnr"] for r in sub])), 2),
            "input_ssim": round(float(np.mean([r["input"]["ssim"] for r in sub])), 3),
            "prediction_ssim": round(float(np.mean([r["prediction"]["ssim"] for r in sub])), 3),
            "gain_db": round(float(np.mean(gain)), 2),
            "gain_ci95": field_ci(gain, [r["field"] for r in sub]),
            "chi2": round(sub[0]["chi2"], 2),
            "flagged": bool(band is not None and sub[0]["chi2"] > band),
            **{f"{k}_gain_db": round(float(np.mean([r[k]["psnr"] - r["input"]["psnr"]
                                                    for r in sub])), 2)
               for k in ("gate", "gate_seeded") if k in sub[0]},
            **{f"{k}_ci95": field_ci([r[k]["psnr"] - r["input"]["psnr"] for r in sub],
                                     [r["field"] for r in sub])
               for k in ("gate", "gate_seeded") if k in sub[0]},
            "choices": sub[0].get("choices", {})})
    worse = [p for p in per_z if p["gain_db"] < 0]
    return {"engine": card.name, "sha256": card.onnx_sha256, "image": SOURCE,
            "consistency_chi2_max": band, "per_z": per_z,
            "worse_than_input": len(worse),
            "worse_and_flagged": sum(p["flagged"] for p in worse),
            "better_but_flagged": sum(p["flagged"] for p in per_z if p["gain_db"] >= 0)}
