"""The refocus gate on simulated validation cells, the way the real-image suite runs it.

    .venv/bin/python scripts/gate_validation.py            # docs/real/gate-validation.json
    .venv/bin/python scripts/gate_validation.py --model engines/refocus_agp.onnx \
        --estimator engines/defocus_agp.onnx --out /tmp/agp.json

The real-image suite (``scripts/real_images.py``) takes real in-focus images, defocuses them
through the engine's own optics and asks whether the gate makes any plane worse. Its sets are
untouched: nothing may be chosen on them. This script asks the same question of the refocus
engine's *held-out (validation)* fields, simulated and never trained on, so that rules can be
chosen here and run once on the real sets afterwards:

- ``as simulated``: the noise-free in-focus plane of each held-out field (the engine's
  stain: DNA for ``refocus``);
- ``with its own noise``: the same plane as a camera would have recorded it (Poisson at about
  150 photo-electrons at the brightest nuclei over 10 of background, read noise, 8 bits): a
  real in-focus image carries its own noise, and the suite's defocusing blurs that noise as if
  it were texture of the specimen;
- ``half-size nuclei, own noise``: the same, shrunk twofold (mirrored tiles fill the field), as
  the real sets' nuclei are smaller than the simulator's at 0.65 µm pixels;
- ``real Kc167 DNA (ExampleFly POS002, POS076)``: real cells, never part of the untouched
  suite: the DNA channel of the two ExampleFly fields the fine-tuning journey trains and
  validates on (``scripts/examplefly.py``), each cut into quadrants (8 fields, about 500 px).
  POS218, the journey's final test, is never read here. Kc167 cells are what BBBC007 shows
  (another experiment: no BBBC007 image matches any part of these fields, normalised
  cross-correlation at most 0.43), so this is the validation form nearest the real sets.

Each: per defocus, the learned engine's, the deconvolution's (at the true defocus), the gate's
(defocus estimated, as ``predict`` runs it) and the gate's with the true defocus seeded (as the
closed loop seeds it live) PSNR gain over the camera's frame, with 95% intervals by field, and
the gate's choices.

``--write-card`` writes what the real form measured into the engine's card
(``metrics.real_validation``): where the learned frame and the deconvolution each beat the
camera's frame on those real cells, 95% interval above zero. The gate then takes each only
there (:func:`acquire_vf.pipeline._gate.trusted_defocus`, ``trusted_deconvolution``):

    .venv/bin/python scripts/gate_validation.py --forms real --write-card
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = "real Kc167 DNA (ExampleFly POS002, POS076)"
ZS = (-10.0, -8.0, -6.0, -4.0, -3.0, -2.0, 0.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def in_focus_planes(model: Path) -> list[Path]:
    """The noise-free in-focus planes of the engine's stain in its held-out set (BBBC006
    layout: ``z_16`` is focus), simulated if not cached."""
    from acquire_vf.card import ModelCard
    from acquire_vf.evaluate._sets import set_spec, simulate_set
    from acquire_vf.layouts import BBBC006_CHANNELS

    card = ModelCard.load(model)
    w = {name: k for k, name in BBBC006_CHANNELS.items()}.get(card.output)
    folder = simulate_set(card, set_spec(card, None, "held_out"))
    planes = sorted((folder / "clean" / "BBBC006_v1_images_z_16").glob(f"*_w{w}*.tif"))
    if w is None or not planes:
        raise SystemExit(f"{folder}: expected the BBBC006 layout's clean/ in-focus planes of "
                         f"'{card.output}' (a refocus engine's held-out set); found none")
    return planes


def variant(planes: list[Path], out: Path, scale: float, noisy: bool, seed: int = 1) -> list[Path]:
    import tifffile
    from skimage.transform import rescale

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for p in planes:
        im = tifffile.imread(p).astype(np.float64)
        if scale != 1.0:
            small = rescale(im, scale, anti_aliasing=True)
            n = int(np.ceil(im.shape[0] / small.shape[0]))
            im = np.block([[small if (i + j) % 2 == 0 else small[::-1, ::-1] for j in range(n)]
                           for i in range(n)])[:im.shape[0], :im.shape[1]]
        if noisy:
            unit = (im - im.min()) / max(np.percentile(im, 99.9) - im.min(), 1e-9)
            e = rng.poisson(np.clip(unit, 0, None) * 150 + 10) * 1.2 + rng.normal(0, 2, im.shape)
            im = np.clip(np.rint(e), 0, 255).astype(np.uint8)
        tifffile.imwrite(out / p.name, im if noisy else im.astype(np.float32))
        made.append(out / p.name)
    return made


EXAMPLEFLY_VALIDATION = ("01_POS002_D.TIF", "01_POS076_D.TIF")
"""The ExampleFly DNA fields this script may read (POS218 is the journey's final test)."""


def examplefly_quadrants(out: Path) -> list[Path]:
    """The DNA channel of ExampleFly's POS002 and POS076 (fetched, checked, cached), each cut
    into its four quadrants."""
    import tifffile

    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real_sets import fetch_set

    fields = {p.name: p for p in fetch_set("examplefly", cache_root() / "real")}
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for name in EXAMPLEFLY_VALIDATION:
        im = tifffile.imread(fields[name])
        h, w = im.shape[0] // 2, im.shape[1] // 2
        for qy in range(2):
            for qx in range(2):
                path = out / f"{Path(name).stem}_q{2 * qy + qx}.tif"
                tifffile.imwrite(path, im[qy * h:(qy + 1) * h, qx * w:(qx + 1) * w])
                made.append(path)
    return made


def write_card(model: Path, res: dict) -> str:
    """The gate's trust measured on the real validation cells, into ``model``'s card."""
    from acquire_vf.card import ModelCard
    from acquire_vf.pipeline._gate import trust_from

    card = ModelCard.load(model)
    ex = (card.training.get("data") or {}).get("exclude_um", (-2.0, 2.0))
    trust = trust_from(res["per_z"], (float(ex[0]), float(ex[1])))
    keep = ("z_um", "gain_db", "gain_ci95", "deconvolution_gain_db", "deconvolution_ci95")
    metrics = dict(card.metrics)
    metrics["real_validation"] = {
        "measured_on": f"{REAL}: " + ", ".join(res["images"]),
        "command": "scripts/gate_validation.py --forms real --write-card",
        **trust, "per_z": [{k: p[k] for k in keep if k in p} for p in res["per_z"]]}
    card.model_copy(update={"metrics": metrics}).save(model)
    lo, hi = trust["learned_beyond_um"]
    return (f"{model.name}: learned frame trusted at <= {lo if lo is not None else 'never'} or "
            f">= {hi if hi is not None else 'never'} um, deconvolution within "
            f"{trust.get('deconvolution_within_um')} um (written to its card)")


def main() -> None:
    from acquire_vf.evaluate._real import real_refocus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "engines" / "refocus.onnx")
    ap.add_argument("--estimator", type=Path, default=None,
                    help="the defocus estimator the gate takes as its second witness when not "
                    "seeded (default: the one of the engine's stain beside it, as predict)")
    ap.add_argument("--no-estimator", action="store_true", help="the gate without one")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "real" / "gate-validation.json")
    ap.add_argument("--forms", nargs="*", default=None,
                    help="only the forms whose names start so (default: all; e.g. 'real')")
    ap.add_argument("--write-card", action="store_true",
                    help="write the real form's trust into the engine's card (then rerun)")
    args = ap.parse_args()
    planes = in_focus_planes(args.model)
    results = json.loads(args.out.read_text()) if args.forms and args.out.is_file() else {}
    forms = (("as simulated", 1.0, False), ("with its own noise", 1.0, True),
             ("half-size nuclei, own noise", 0.5, True), (REAL, 1.0, False))
    with tempfile.TemporaryDirectory() as tmp:
        for name, scale, noisy in forms:
            if args.forms and not any(name.startswith(f) for f in args.forms):
                continue
            images = (examplefly_quadrants(Path(tmp) / "examplefly") if name == REAL else
                      variant(planes, Path(tmp) / name.replace(" ", "_"), scale, noisy))
            res = real_refocus(args.model, images, zs=ZS, estimator=False if
                               args.no_estimator else args.estimator or True)
            res["images"] = [p.name for p in (images if name == REAL else planes)]
            results[name] = res
            print(f"\n{name} ({len(images)} held-out fields)")
            for p in res["per_z"]:
                print(f"  {p['z_um']:+5.0f} um  learned {p['gain_db']:+6.2f}  deconvolution "
                      f"{p.get('deconvolution_gain_db', float('nan')):+6.2f}  gate "
                      f"{p['gate_gain_db']:+6.2f} [{p['gate_ci95'][0]:+.2f}, "
                      f"{p['gate_ci95'][1]:+.2f}]  seeded {p['gate_seeded_gain_db']:+6.2f}  "
                      f"{p['gate_choices']}")
    if args.write_card:
        if REAL not in results:
            raise SystemExit(f"--write-card: expected the form '{REAL}' to have run; it did not")
        print(f"\n{write_card(args.model, results[REAL])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
