"""v3-trained against v4-trained engines, in both directions (issue 32, item 4).

    .venv/bin/python scripts/v3_vs_v4.py

For every engine in ``engines/`` whose card says it learned from simulator v4:

- its **final test, run once**: ``evaluate --final-test`` on the v4 recipe's ``[final_test]``
  fields (the card records the use; run again, this script reads that report back and does not
  test again), written to ``docs/models/NAME/final-test/``;
- the v3 engine it replaced (read from git at ``V3_REV``) on those same fields;
- both engines on the v3 recipe's final-test fields (``--data``: same fields, no new record);
- the refocus engines on the real-image suite's nuclei (DSB-2018 and BBBC007, defocused
  through each engine's own optics): the learned engine's and the gate's mean gain over the
  planes.

Writes ``docs/models/v3-vs-v4.md`` with its figures (``.json``) and plot (``.png``).
Estimators have held-out stacks only (no final-test set is defined for them); their v3/v4
figures are the queue's validation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf._paths import cache_root  # noqa: E402
from acquire_vf.card import ModelCard  # noqa: E402
from acquire_vf.evaluate import set_spec, simulate_set  # noqa: E402

V3_REV = "87366e5"
"""The last commit whose ``engines/`` held the v3-trained set."""
CLI = [sys.executable, "-m", "acquire_vf"]


def _evaluate(*args: str | Path) -> None:
    print("$ acquire-vf evaluate " + " ".join(map(str, args)), flush=True)
    subprocess.run([*CLI, "evaluate", *map(str, args)], cwd=ROOT, check=True)


def _v3_engine(name: str) -> Path:
    """The v3 engine of ``name`` from git, into the cache (its card beside it)."""
    folder = cache_root() / "v3-engines" / V3_REV
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".onnx", ".json"):
        path = folder / f"{name}{suffix}"
        if not path.is_file():
            blob = subprocess.run(["git", "show", f"{V3_REV}:engines/{name}{suffix}"], cwd=ROOT,
                                  check=True, capture_output=True).stdout
            path.write_bytes(blob)
    return folder / f"{name}.onnx"


def _psnr(report: Path) -> dict[str, Any]:
    m = json.loads((report / "metrics.json").read_text())
    base = m.get("baselines") or {}
    key = "input" if "input" in base else "linear"
    return {"psnr": float(m["prediction"]["psnr"]), "ssim": float(m["prediction"]["ssim"]),
            "baseline": float(base[key]["psnr"]), "baseline_name": key}


def _synthesis(name: str, work: Path) -> dict[str, Any]:
    v4, v3 = ROOT / "engines" / f"{name}.onnx", _v3_engine(name)
    final = ROOT / "docs" / "models" / name / "final-test"
    if not (final / "metrics.json").is_file() and not ModelCard.load(v4).metrics.get("final_test"):
        _evaluate("--model", v4, "--final-test", "--recipe", f"training/v4/{name}.toml",
                  "--out", final, "--update-card", "--overwrite")
    v4_fields = Path(json.loads((final / "metrics.json").read_text())["data"])
    if not v4_fields.is_dir():  # another machine's cache: the same seeded fields again
        v4_card = ModelCard.load(v4)
        v4_fields = simulate_set(v4_card, set_spec(v4_card, None, "final_test"))
    v3_card = ModelCard.load(v3)
    v3_fields = simulate_set(v3_card, set_spec(v3_card, None, "final_test"))
    out: dict[str, Any] = {"v4_test": {"v4": _psnr(final)}}
    for engine, tag in ((v3, "v3"), (v4, "v4")):
        for fields, test in ((v4_fields, "v4_test"), (v3_fields, "v3_test")):
            if (engine, test) == (v4, "v4_test"):
                continue
            report = work / f"{tag}-on-{test}-{name}"
            if not (report / "metrics.json").is_file():
                _evaluate("--model", engine, "--data", fields, "--split", "all", "--out", report,
                          "--overwrite")
            out.setdefault(test, {})[tag] = _psnr(report)
    return out


def _real(name: str) -> dict[str, Any]:
    from acquire_vf.evaluate._real import fetch_real_nuclei, real_refocus
    from acquire_vf.evaluate._real_sets import fetch_set

    cache = cache_root() / "real"
    sets: dict[str, Path | list[Path]] = {"dsb2018": fetch_real_nuclei(cache),
                                          "bbbc007": fetch_set("bbbc007", cache)}
    out: dict[str, Any] = {}
    for tag, engine in (("v3", _v3_engine(name)), ("v4", ROOT / "engines" / f"{name}.onnx")):
        for s, images in sets.items():
            r = real_refocus(engine, images)
            planes = r["per_z"]
            out.setdefault(s, {})[tag] = {
                "learned_gain_db": round(sum(p["gain_db"] for p in planes) / len(planes), 2),
                "gate_gain_db": round(sum(p["gate_gain_db"] for p in planes) / len(planes), 2),
                "worst_learned_db": min(p["gain_db"] for p in planes),
                "worse_than_input": r["worse_than_input"]}
    return out


def _table(results: dict[str, Any]) -> list[str]:
    rows = ["| engine | baseline | v3 engine on v3 test | v4 engine on v3 test | v3 engine on v4 "
            "test | v4 engine on v4 test (its final test) |", "|---|---|---|---|---|---|"]
    def cell(r: dict[str, Any], test: str, tag: str) -> str:
        f = r[test][tag]
        return f"{f['psnr']:.2f} dB ({f['psnr'] - f['baseline']:+.2f})"

    for name, r in results.items():
        base = r["v4_test"]["v4"]["baseline_name"]
        rows.append(f"| `{name}` | {base} | {cell(r, 'v3_test', 'v3')} | "
                    f"{cell(r, 'v3_test', 'v4')} | {cell(r, 'v4_test', 'v3')} | "
                    f"{cell(r, 'v4_test', 'v4')} |")
    return rows


def _real_table(real: dict[str, Any]) -> list[str]:
    rows = ["| engine | real set | v3: learned / gate (mean over planes) | v4: learned / gate | "
            "frames made worse by the learned engine v3 / v4 |", "|---|---|---|---|---|"]
    for name, sets in real.items():
        for s, r in sets.items():
            rows.append(f"| `{name}` | {s} | {r['v3']['learned_gain_db']:+.2f} / "
                        f"{r['v3']['gate_gain_db']:+.2f} dB | {r['v4']['learned_gain_db']:+.2f} / "
                        f"{r['v4']['gate_gain_db']:+.2f} dB | {r['v3']['worse_than_input']} / "
                        f"{r['v4']['worse_than_input']} |")
    return rows


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, test in zip(axes, ("v3_test", "v4_test"), strict=True):
        for k, tag in enumerate(("v3", "v4")):
            gains = [results[n][test][tag]["psnr"] - results[n][test][tag]["baseline"]
                     for n in names]
            ax.bar([i + (k - 0.5) * 0.38 for i in range(len(names))], gains, 0.38,
                   label=f"{tag}-trained")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"on the {test.split('_')[0]} final-test fields")
    axes[0].set_ylabel("PSNR gain over doing nothing (dB)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="measure this engine only (repeatable) and keep every other row of "
                         "docs/models/v3-vs-v4.json as it is")
    args = ap.parse_args()
    work = cache_root() / "v3-vs-v4"
    work.mkdir(parents=True, exist_ok=True)
    docs = ROOT / "docs" / "models"
    results: dict[str, Any] = {}
    real: dict[str, Any] = {}
    if args.only:  # the rows measured before stay
        before = json.loads((docs / "v3-vs-v4.json").read_text())
        results, real = before["simulated"], before["real"]
    for card_path in sorted((ROOT / "engines").glob("*.json")):
        card = ModelCard.load(card_path.with_suffix(".onnx"))
        sim = (card.training.get("data") or {}).get("simulated") or {}
        if card.task == "defocus" or not sim.get("realistic") or card.quantization:
            continue  # estimators, v3 engines, INT8 siblings
        if args.only and card.name not in args.only:
            continue
        results[card.name] = _synthesis(card.name, work)
        if card.task == "refocus":
            real[card.name] = _real(card.name)
    (docs / "v3-vs-v4.json").write_text(json.dumps({"v3_rev": V3_REV, "simulated": results,
                                                    "real": real}, indent=1) + "\n")
    _plot(results, docs / "v3-vs-v4.png")
    lines = ["PSNR (gain over doing nothing: the defocused input for refocus, the per-pixel "
             "linear fit for synthesis). The v4 engine on v4 fields is its final test, run once; "
             "every other cell evaluates the same fields with `--data` (no new record).", "",
             *_table(results), "", "![v3 against v4](v3-vs-v4.png)", "",
             "On the real-image suite's nuclei (untouched sets, defocused through each engine's "
             "own optics; `scripts/real_images.py` has the per-plane tables):", "",
             *_real_table(real)]
    (docs / "v3-vs-v4.md").write_text("\n".join([
        "# v3-trained against v4-trained engines", "",
        "Made by `scripts/v3_vs_v4.py` (v3 engines read from git at " + V3_REV + ").", "",
        *lines]) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
