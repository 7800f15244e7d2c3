"""Your own data, on real cells: the fine-tuning journey on CellProfiler's ExampleFly fields.

    .venv/bin/python scripts/examplefly.py            # fetch, train, validate (POS076)
    .venv/bin/python scripts/examplefly.py --final    # once, after every choice: POS218

What a microscopist would do with three fields of their own: lay the channels out in the paired
layout (``CHANNEL/FIELD.tif``), write a recipe naming which field trains, which validates and
which is kept for the final test (``training/real/*.toml``), then ``acquire-vf train``,
``export`` and ``evaluate``, all through the CLI. The images are fetched from the cellprofiler
4.0.7 wheel and checked by sha256 (never committed). Validation figures (POS076) are the ones
choices were made on; ``--final`` judges each engine once on POS218 and writes its card and
report to ``docs/models/NAME/`` (a second ``--final`` is refused: it would make POS218 a
validation field). The engines are not demo engines: they stay in ``runs/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = [sys.executable, "-m", "acquire_vf"]
PAIRED = ROOT / ".cache" / "real" / "examplefly-paired"
PER_FIELD = ROOT / ".cache" / "real" / "examplefly-paired-per-field"
CHANNELS = {"D": "DNA", "F": "F-actin", "R": "PH3"}
RECIPES = ("examplefly_dna_raw", "examplefly_dna_ph3", "examplefly_dna")
"""The chosen recipe (the fields as they are), the second pairing, and the choice the first
was compared with on validation (each field scaled by its own percentiles)."""
FINAL = ("examplefly_dna_raw", "examplefly_dna_ph3")
"""The engines whose final test is run (the compared choice never meets POS218)."""


def prepare() -> None:
    """The fetched fields written as ``PAIRED/CHANNEL/POSnnn.tif`` as they are (8-bit), and
    as ``PAIRED-per-field/...``: each channel of each field scaled by its own 0.1 and 99.9
    percentiles to 0..1000 (float32). The three fields were taken at different exposures (the
    median F-actin pixel is 5 counts in POS002 and 19 in POS076), which no fixed scale learned
    on one field carries to another; which of the two trains is a choice made on validation."""
    import numpy as np
    import tifffile

    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real_sets import fetch_set

    for path in fetch_set("examplefly", cache_root() / "real"):
        field, channel = path.stem.split("_")[1:3]
        dest = PAIRED / CHANNELS[channel] / f"{field}.tif"
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        scaled = PER_FIELD / CHANNELS[channel] / f"{field}.tif"
        if not scaled.is_file():
            img = tifffile.imread(path).astype(np.float32)
            lo, hi = np.percentile(img, [0.1, 99.9])
            scaled.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(scaled, ((img - lo) / max(hi - lo, 1.0) * 1000).astype(np.float32))


def _cli(*args: str) -> None:
    print("$ acquire-vf " + " ".join(args), flush=True)
    subprocess.run([*CLI, *args], cwd=ROOT, check=True)


def _splits(recipe: dict) -> dict[str, str]:
    return {s: f for f, s in recipe["data"]["splits"].items()}


def engine_of(name: str) -> Path:
    return ROOT / "runs" / name / "engine" / f"{name}.onnx"


def validate(name: str) -> dict:
    """Train (once), export and judge on the validation field; the figures."""
    recipe_path = ROOT / "training" / "real" / f"{name}.toml"
    run = ROOT / "runs" / name
    steps = tomllib.loads(recipe_path.read_text())["train"]["steps"]
    summary = run / "summary.json"
    trained = json.loads(summary.read_text())["steps"] if summary.is_file() else 0
    onnx = engine_of(name)
    if trained < steps:  # not yet, or the recipe's schedule was lengthened on validation
        _cli("train", str(recipe_path.relative_to(ROOT)), "--out", str(run.relative_to(ROOT)),
             "--resume" if (run / "checkpoints" / "last.pt").is_file() else "--overwrite")
        onnx.unlink(missing_ok=True)
    if not onnx.is_file():
        _cli("export", str((run / "checkpoints" / "best.pt").relative_to(ROOT)), "--out",
             str(onnx.relative_to(ROOT)), "--overwrite")
    return judge(name, "val")


def judge(name: str, split: str) -> dict:
    from acquire_vf.evaluate._real_pairs import field_figures

    recipe = tomllib.loads((ROOT / "training" / "real" / f"{name}.toml").read_text())
    fields = _splits(recipe)
    d = recipe["data"]
    root = (ROOT / "training" / "real" / d["path"]).resolve()
    fig = field_figures(engine_of(name), root, tuple(d["inputs"]), d["target"],
                        fields["train"], fields[split])
    fig["split"] = {"val": "validation", "test": "final test"}[split]
    return fig


def line(name: str, f: dict) -> str:
    e, b, g = f["engine"], f["linear"], f["gains"]
    return (f"{name} on {f['field']} ({f['split']}): PSNR {e['psnr']:.2f} dB (linear "
            f"{b['psnr']:.2f}; gain {g['psnr']['mean']:+.2f} {g['psnr']['ci95']}), SSIM "
            f"{e['ssim']:.3f} ({b['ssim']:.3f}), Pearson r {e['pearson']:.3f} "
            f"{e['pearson_ci95']} (linear {b['pearson']:.3f}), per-nucleus r "
            f"{e['nucleus_r']:.3f} {e['nucleus_r_ci95']} (linear {b['nucleus_r']:.3f}) over "
            f"{f['nuclei']} nuclei")


def final(name: str) -> dict:
    """The final test, once: figures, card and report into docs/models/NAME/."""
    out = ROOT / "docs" / "models" / name
    if (out / "final_test.json").is_file():
        raise SystemExit(f"{name}: the final test was already run ({out / 'final_test.json'});"
                         " a second look would make POS218 a validation field")
    fig = judge(name, "test")
    fig["validation"] = judge(name, "val")
    out.mkdir(parents=True, exist_ok=True)
    (out / "final_test.json").write_text(json.dumps(fig, indent=2))
    shutil.copy2(engine_of(name).with_suffix(".json"), out / f"{name}.json")
    (out / "README.md").write_text(report(name, fig))
    return fig


def report(name: str, fig: dict) -> str:
    recipe = tomllib.loads((ROOT / "training" / "real" / f"{name}.toml").read_text())
    summary = json.loads((ROOT / "runs" / name / "summary.json").read_text())
    rows = []
    for label, f in (("validation (POS076)", fig["validation"]), ("final test (POS218)", fig)):
        e, b, g = f["engine"], f["linear"], f["gains"]
        rows.append(f"| {label} | {e['psnr']:.2f} / {b['psnr']:.2f} | {g['psnr']['mean']:+.2f} "
                    f"{g['psnr']['ci95']} | {e['ssim']:.3f} / {b['ssim']:.3f} | "
                    f"{e['pearson']:.3f} {e['pearson_ci95']} / {b['pearson']:.3f} | "
                    f"{e['nucleus_r']:.3f} {e['nucleus_r_ci95']} / {b['nucleus_r']:.3f} "
                    f"({f['nuclei']}) |")
    met_r = fig["engine"]["pearson"] >= 0.8
    met_db = fig["gains"]["psnr"]["ci95"][0] >= 2.0
    return "\n".join([
        f"# {name}: {recipe['description']}", "",
        "Real cells: CellProfiler's ExampleFly fields (cellprofiler 4.0.7 wheel, BSD-3), "
        f"inputs {recipe['data']['inputs']} -> {recipe['data']['target']}. Trained on POS002 "
        f"({summary['steps']} steps, best validation MAE {summary['best_val_mae']:.4f}), "
        "choices made on POS076, POS218 used once as the final test "
        "(`.venv/bin/python scripts/examplefly.py --final`). Not a demo engine: it stays in "
        "`runs/`; its card is beside this page.", "",
        "Engine / linear baseline (per-pixel least squares fitted on POS002). Intervals are "
        "95% bootstrap intervals over the field's 16 tiles (frame figures) and over its nuclei "
        "(per-nucleus r; nuclei segmented on the true DNA frame).", "",
        "| field | PSNR (dB) | PSNR gain | SSIM | Pearson r | per-nucleus r (nuclei) |",
        "|---|---|---|---|---|---|", *rows, "",
        "Targets (final test): Pearson r >= 0.8: "
        f"{'met' if met_r else 'missed'} ({fig['engine']['pearson']:.3f}); PSNR gain over the "
        f"linear baseline >= +2 dB across the interval: {'met' if met_db else 'missed'} "
        f"({fig['gains']['psnr']['mean']:+.2f} {fig['gains']['psnr']['ci95']}).", "",
        "![the final-test field: input, measured DNA, engine, linear baseline]"
        "(final-test.png)", ""])


def figure(name: str) -> Path:
    """The final-test field as the report shows it: input, truth, engine, linear baseline
    (a 300 x 300 crop; drawing it judges nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from acquire_vf.evaluate._real_pairs import predict_field

    recipe = tomllib.loads((ROOT / "training" / "real" / f"{name}.toml").read_text())
    d, fields = recipe["data"], _splits(recipe)
    root = (ROOT / "training" / "real" / d["path"]).resolve()
    xs, truth, pred, base = predict_field(engine_of(name), root, tuple(d["inputs"]),
                                          d["target"], fields["train"], fields["test"])
    crop = (slice(350, 650), slice(350, 650))
    hi = float(np.percentile(truth, 99.8))
    panels = [(f"{d['inputs'][0]} (input)", xs[0], float(np.percentile(xs[0], 99.8))),
              ("DNA (measured)", truth, hi), ("DNA (engine)", pred, hi),
              ("DNA (linear baseline)", base, hi)]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
    for ax, (title, img, top) in zip(axes, panels, strict=True):
        ax.imshow(img[crop], cmap="gray", vmin=0, vmax=top)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{name} on {fields['test']} (final test field), 300 x 300 px crop")
    fig.tight_layout()
    out = ROOT / "docs" / "models" / name / "final-test.png"
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*")
    ap.add_argument("--final", action="store_true", help="run the final test (once)")
    ap.add_argument("--figure", action="store_true", help="draw the final-test field for "
                    "the reports (after --final)")
    a = ap.parse_args()
    prepare()
    for name in a.names or (FINAL if a.final or a.figure else RECIPES):
        if a.figure:
            print(figure(name))
            continue
        f = final(name) if a.final else validate(name)
        print(line(name, f), flush=True)


if __name__ == "__main__":
    main()
