"""Train, export and evaluate the shipped engines, exactly as their cards say.

    .venv/bin/python scripts/ship_engines.py [NAME ...]      (default: every recipe)

For each recipe ``training/NAME.toml``: ``acquire-vf train`` into ``runs/NAME``, ``acquire-vf
export`` of the best checkpoint to ``engines/NAME.onnx`` (+ card; ``paper``-preset engines,
~120 MB, stay in ``runs/NAME/engine/``), a held-out data set simulated
with a seed training never used, and ``acquire-vf evaluate --split all --update-card`` with the
report in ``docs/models/NAME/``. Steps run through the CLI, in subprocesses, so what this does
is what a user's commands do. A step whose output exists is skipped (``--force`` redoes it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "acquire_vf"]
HELD_OUT = {  # dataset -> (seed, fields); training simulates with seed 1000
    "bbbc006": (9006, 6),
    "bbbc022": (9022, 8),
    "mda231": (9231, 4),
}


def _run(args: list[str]) -> None:
    print("$ acquire-vf " + " ".join(args[len(CLI):]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True)
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def held_out(recipe: dict) -> Path:
    kind = recipe["data"]["simulate"]
    seed, fields = HELD_OUT[kind]
    w, h = recipe["data"]["simulated"]["size"]
    folder = ROOT / ".cache" / "held-out" / f"{kind}-{seed}-{fields}-{w}x{h}"
    if not folder.is_dir():
        tmp = folder.with_name(folder.name + ".partial")
        _run([*CLI, "simulate", kind, "--out", str(tmp), "--fields", str(fields),
              "--seed", str(seed), "--size", f"{w}x{h}"])
        tmp.rename(folder)
    return folder


def ship(name: str, force: bool) -> None:
    recipe_path = ROOT / "training" / f"{name}.toml"
    recipe = tomllib.loads(recipe_path.read_text())
    run = ROOT / "runs" / name
    # the paper preset (30.6 M parameters, ~120 MB) is trained for the preset comparison only
    shipped = recipe.get("preset", "realtime") != "paper"
    onnx = (ROOT / "engines" if shipped else run / "engine") / f"{name}.onnx"
    if force or not (run / "summary.json").is_file():
        _run([*CLI, "train", str(recipe_path.relative_to(ROOT)), "--out", str(run),
              *(["--resume"] if (run / "checkpoints" / "last.pt").is_file() and not force
                else [])])
    if force or not onnx.is_file():
        onnx.parent.mkdir(parents=True, exist_ok=True)
        _run([*CLI, "export", str(run / "checkpoints" / "best.pt"), "--out",
              str(onnx.relative_to(ROOT))])
    data = held_out(recipe)
    report = ROOT / "docs" / "models" / name
    if force or not (report / "metrics.json").is_file():
        _run([*CLI, "evaluate", "--model", str(onnx.relative_to(ROOT)), "--data", str(data),
              "--out", str(report.relative_to(ROOT)), "--split", "all", "--update-card"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="recipe names (default: all in training/)")
    ap.add_argument("--force", action="store_true", help="redo steps whose output exists")
    a = ap.parse_args()
    names = a.names or sorted(p.stem for p in (ROOT / "training").glob("*.toml"))
    for name in names:
        print(f"== {name}", flush=True)
        ship(name, a.force)


if __name__ == "__main__":
    main()
