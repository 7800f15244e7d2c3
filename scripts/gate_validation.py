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
  the real sets' nuclei are smaller than the simulator's at 0.65 µm pixels.

Each: per defocus, the learned engine's, the gate's (defocus estimated, as ``predict`` runs it)
and the gate's with the true defocus seeded (as the closed loop seeds it live) PSNR gain over
the camera's frame, with 95% intervals by field, and the gate's choices.
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


def main() -> None:
    from acquire_vf.evaluate._real import real_refocus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "engines" / "refocus.onnx")
    ap.add_argument("--estimator", type=Path, default=None,
                    help="the defocus estimator the gate takes as its second witness when not "
                    "seeded (default: the one of the engine's stain beside it, as predict)")
    ap.add_argument("--no-estimator", action="store_true", help="the gate without one")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "real" / "gate-validation.json")
    args = ap.parse_args()
    planes = in_focus_planes(args.model)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scale, noisy in (("as simulated", 1.0, False), ("with its own noise", 1.0, True),
                                   ("half-size nuclei, own noise", 0.5, True)):
            images = variant(planes, Path(tmp) / name.replace(" ", "_"), scale, noisy)
            res = real_refocus(args.model, images, zs=ZS, estimator=False if
                               args.no_estimator else args.estimator or True)
            res["images"] = [p.name for p in planes]
            results[name] = res
            print(f"\n{name} ({len(images)} held-out fields)")
            for p in res["per_z"]:
                print(f"  {p['z_um']:+5.0f} um  learned {p['gain_db']:+6.2f}  gate "
                      f"{p['gate_gain_db']:+6.2f} [{p['gate_ci95'][0]:+.2f}, "
                      f"{p['gate_ci95'][1]:+.2f}]  seeded {p['gate_seeded_gain_db']:+6.2f}  "
                      f"{p['gate_choices']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
