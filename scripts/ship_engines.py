"""Train, export and evaluate the shipped engines, exactly as their cards say.

    .venv/bin/python scripts/ship_engines.py [NAME ...]      (default: every recipe)

For each recipe ``training/NAME.toml``: ``acquire-vf train`` into ``runs/NAME``, ``acquire-vf
export`` of the best checkpoint to ``engines/NAME.onnx`` (+ card; ``paper``-preset engines,
~120 MB, stay in ``runs/NAME/engine/``), and ``acquire-vf evaluate --held-out --recipe
training/NAME.toml --update-card`` on the recipe's held-out (validation) set, which checks the
recipe's ``[[targets]]`` and writes figures and targets into the card, with the report in
``docs/models/NAME/``. Training, export and evaluation run through the CLI, in subprocesses, so
what this does is what a user's commands do. A step whose output exists is skipped (``--force``
redoes every step, ``--evaluate`` the evaluation only). The final test is not run here: it is
run once per engine, by hand, after every choice (``acquire-vf evaluate --final-test``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "acquire_vf"]
sys.path.insert(0, str(ROOT))
from acquire_vf.card import engine_table  # noqa: E402


def _run(args: list[str]) -> None:
    print("$ acquire-vf " + " ".join(args[len(CLI):]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def engine_path(name: str, recipe: dict) -> Path:
    """engines/NAME.onnx; the paper preset (30.6 M parameters, ~120 MB) is trained for the
    preset comparison only and stays in runs/NAME/engine/."""
    shipped = recipe.get("preset", "realtime") != "paper"
    return (ROOT / "engines" if shipped else ROOT / "runs" / name / "engine") / f"{name}.onnx"


def ship(name: str, force: bool, evaluate: bool = False) -> None:
    recipe_path = ROOT / "training" / f"{name}.toml"
    recipe = tomllib.loads(recipe_path.read_text())
    run = ROOT / "runs" / name
    onnx = engine_path(name, recipe)
    if force or not (onnx.is_file() or (run / "summary.json").is_file()):
        _run([*CLI, "train", str(recipe_path.relative_to(ROOT)), "--out", str(run),
              *(["--resume"] if (run / "checkpoints" / "last.pt").is_file() and not force
                else ["--overwrite"])])
    if force or not onnx.is_file():
        onnx.parent.mkdir(parents=True, exist_ok=True)
        _run([*CLI, "export", str(run / "checkpoints" / "best.pt"), "--out",
              str(onnx.relative_to(ROOT)), "--overwrite"])
    if recipe["task"] == "defocus":  # distance from focus: held-out stacks, docs/focus/NAME
        report = ROOT / "docs" / "focus" / name
        if force or not (report / "metrics.json").is_file():
            _run([*CLI, "evaluate", "--model", str(onnx.relative_to(ROOT)), "--data",
                  ".cache/held-out/defocus", "--out", str(report.relative_to(ROOT)),
                  "--update-card", "--overwrite"])
        return
    report = ROOT / "docs" / "models" / name
    if force or evaluate or not (report / "metrics.json").is_file():
        _run([*CLI, "evaluate", "--model", str(onnx.relative_to(ROOT)), "--held-out",
              "--recipe", str(recipe_path.relative_to(ROOT)), "--out",
              str(report.relative_to(ROOT)), "--update-card", "--overwrite"])


COMPARED = {"mda_factin_vinculin"}
"""Engines whose targets compare with another engine's held-out figures: evaluated last."""


def write_index() -> None:
    """docs/models/README.md: every engine with its held-out metrics and targets."""
    rows = ["| engine | task | inputs -> output | held-out PSNR / SSIM / TL | baseline PSNR | "
            "targets met | report |", "|---|---|---|---|---|---|---|"]
    misses = []
    cards = sorted((ROOT / "engines").glob("*.json")) + sorted(
        (ROOT / "runs").glob("*/engine/*.json"))
    defocus = ["| engine | input | held-out median error within +-20 um (above / below focus) | "
               "targets met | report |", "|---|---|---|---|---|"]
    for f in cards:
        c = json.loads(f.read_text())
        held = c.get("metrics", {}).get("held_out")
        if not held or c.get("quantization"):  # INT8 engines: docs/performance.md
            continue
        targets = held.get("targets") or c["metrics"].get("targets", [])
        if c["task"] == "defocus":  # docs/focus.md
            w, a, b = held["within_20um"], held["above_focus"], held["below_focus"]
            defocus.append(f"| `{c['name']}` | {c['inputs'][0]} | {w['median_abs_error_um']} "
                           f"um ({a['median_abs_error_um']} / {b['median_abs_error_um']}) | "
                           f"{sum(t['met'] for t in targets)} of {len(targets)} | "
                           f"[metrics](../focus/{c['name']}/metrics.json) |")
            misses += [f"- `{c['name']}`: {t['target']}: {t['value']} (needs "
                       f"{t['threshold']})" for t in targets if not t["met"]]
            continue
        p = held["prediction"]
        base = "; ".join(f"{k} {v['psnr']:.2f}" for k, v in held["baselines"].items())
        met = sum(t["met"] for t in targets)
        misses += [f"- `{c['name']}`: {t['target']}: {t['value']} (needs {t['threshold']})"
                   for t in targets if not t["met"]]
        name = c["name"] + ("" if f.parent.name == "engines" else " (not shipped)")
        rows.append(f"| `{name}` | {c['task']} | {' + '.join(c['inputs'])} -> {c['output']} | "
                    f"{p['psnr']:.2f} dB / {p['ssim']:.3f} / {p['tl']:.3f} | {base} | "
                    f"{met} of {len(targets)} | [report]({c['name']}/report.html) |")
    text = ["# Engine reports", "",
            "Held-out (validation) evaluation of every engine (`acquire-vf evaluate "
            "--held-out`: the recipe's `[held_out]` fields, simulated with a seed training "
            "never used; made by `scripts/ship_engines.py`). These figures are the ones "
            "choices were made on; an engine's final test (`--final-test`, run once) is in its "
            "card under `metrics.final_test` when it has been run. PSNR and SSIM (Gaussian "
            "window, sigma 1.5) on intensities scaled by the card's output range; TL is the "
            "paper's tolerance-level error index (lower is better). Targets are the recipe's "
            "`[[targets]]`, checked by `evaluate`; each card lists them under "
            "`metrics.held_out.targets`.", "",
            *rows, "", "## Defocus estimators", "",
            "Defocus from one frame (`docs/focus.md`): signed for brightfield, the distance "
            "from focus for fluorescence; on held-out simulated through-focus stacks.", "",
            *defocus, "",
            "## Targets missed", "", *(misses or ["None."]), "", *_real_cells()]
    (ROOT / "docs" / "models" / "README.md").write_text("\n".join(text))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- engines:")
    start = readme.index("\n", start) + 1
    end = readme.index("<!-- /engines -->")
    (ROOT / "README.md").write_text(readme[:start] + engine_table(ROOT / "engines") + "\n"
                                    + readme[end:], encoding="utf-8")


def _real_cells() -> list[str]:
    """Engines trained on real cells (not shipped): their final tests (scripts/examplefly.py)."""
    rows = []
    for f in sorted((ROOT / "docs" / "models").glob("*/final_test.json")):
        m = json.loads(f.read_text())
        e, g = m["engine"], m["gains"]["psnr"]
        rows.append(f"| [`{f.parent.name}`]({f.parent.name}/README.md) | {m['field']} | "
                    f"{e['psnr']:.2f} dB ({g['mean']:+.2f} {g['ci95']} over linear) | "
                    f"{e['pearson']:.3f} {e['pearson_ci95']} | {e['nucleus_r']:.3f} |")
    if not rows:
        return []
    return ["## Real cells (not shipped)", "",
            "Engines trained on real widefield fields (CellProfiler's ExampleFly, "
            "`scripts/examplefly.py`): the final test, run once on a field never used before.",
            "", "| engine | final-test field | PSNR (gain) | Pearson r | per-nucleus r |",
            "|---|---|---|---|---|", *rows, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="recipe names (default: all in training/)")
    ap.add_argument("--force", action="store_true", help="redo steps whose output exists")
    ap.add_argument("--evaluate", action="store_true", help="redo the evaluation only")
    a = ap.parse_args()
    names = a.names or sorted(p.stem for p in (ROOT / "training").glob("*.toml"))
    first = [n for n in names if n not in COMPARED]  # compared engines' figures go first
    for name in first + [n for n in names if n in COMPARED]:
        print(f"== {name}", flush=True)
        ship(name, a.force, a.evaluate)
    write_index()


if __name__ == "__main__":
    main()
