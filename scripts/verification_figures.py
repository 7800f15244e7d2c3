"""The figures of docs/verification.md, measured on the in-memory backend with the shipped
engines and the simulated specimen: ``python scripts/verification_figures.py``.

- detection delay and false alarms per perturbation kind (3 specimen seeds each);
- false alarms without a perturbation over 200 time points;
- light saved net of sentinels for ``every`` = 5, 10, 20;
- uncertainty against error on a validation set simulated with its own seed (not the
  held-out set the acceptance bands come from), for 2, 4 and 8 passes;
- uncertainty and sentinel fidelity of in-distribution frames against disturbed ones.

Writes docs/verification/figures.json and docs/verification/verification.png.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf._session import run_session  # noqa: E402
from acquire_vf.config import demo_variant  # noqa: E402
from acquire_vf.storage import open_dataset  # noqa: E402

OUT = ROOT / "docs" / "verification"
AT, N_T = 12, 40
INTERVAL_S = 0.3
"""A time point every 0.3 s: the engines (three, two passes each, 256 x 256) keep up, as in
the demo (one a second at 512 x 512), so every frame set gets its virtual frames."""
KINDS = ("dim", "stain_shift", "new_sample")


def _run(work: Path, name: str, n: int, every: int = 5, seed: int = 0,
         perturbation: dict | None = None) -> tuple[dict, Path]:
    spec: dict[str, Any] = {"seed": seed}
    if perturbation:
        spec["perturbation"] = perturbation
    prof = demo_variant({"specimen": spec, "verification": {"every": every},
                         "autofocus": {"policy": "when_defocused"},
                         "acquisition": {"time_points": n, "interval_s": INTERVAL_S}})
    out = work / name
    print(f"run {name}", flush=True)
    return run_session(prof, out, quiet=True), out


def _uncertainty_trace(out: Path, channel: str = "DNA") -> list[tuple[int, float]]:
    (f,) = open_dataset(out)
    return sorted((r["t"], r["qc"]["uncertainty_mean"]) for r in f.records
                  if r["channel"] == f"uncertainty:{channel}")


def detection(work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        rows = []
        for seed in (0, 1, 2):
            rep, folder = _run(work, f"{kind}-{seed}", N_T, seed=seed,
                               perturbation={"at": AT, "kind": kind})
            for ch, v in rep["verification"].items():
                first = next((s["t"] for s in v["switches"]), None)
                rows.append({
                    "seed": seed, "channel": ch,
                    "caught_at": first, "delay": None if first is None else first - AT,
                    "false_alarms": sum(1 for s in v["switches"] if s["t"] < AT),
                    "to_physical_at": next((s["t"] for s in v["switches"]
                                            if s["to"] == "physical"), None),
                    "why": v["switches"][0]["why"] if v["switches"] else None,
                    "psnr_before": _mean([f["psnr"] for f in v["fidelity"] if f["t"] < AT]),
                    "psnr_after": _mean([f["psnr"] for f in v["fidelity"] if f["t"] >= AT]),
                    "band": v["band"]})
            unc = _uncertainty_trace(folder)
            rows[-3]["uncertainty_before"] = _mean([u for t, u in unc if t < AT])
            rows[-3]["uncertainty_after"] = _mean([u for t, u in unc if t >= AT])
            if seed == 0:
                out.setdefault("traces", {})[kind] = {
                    "psnr": [(f["t"], f["psnr"]) for f in rep["verification"]["DNA"]
                             ["fidelity"]], "uncertainty": unc}
        out[kind] = rows
    return out


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return round(float(np.mean(xs)), 4) if xs else None


def no_perturbation(work: Path) -> dict[str, Any]:
    rep, _ = _run(work, "none-200", 200)
    return {ch: {"switches": len(v["switches"]), "sentinels": v["sentinels"],
                 "state": v["state"], "psnr_mean": _mean([f["psnr"] for f in v["fidelity"]]),
                 "psnr_min": min(f["psnr"] for f in v["fidelity"])}
            for ch, v in rep["verification"].items()}


def light(work: Path) -> dict[str, Any]:
    out = {}
    for every in (5, 10, 20):
        rep, _ = _run(work, f"every-{every}", 60, every=every)
        d = rep["light_dose"]
        out[str(every)] = {"saved_fraction": d["saved_fraction"], "saved_net": d["saved_net"],
                           "saved_by_cause": d["saved_by_cause"],
                           "comparator_dose": d["comparator"]["dose"],
                           "taken_dose": d["taken"]["dose"]}
    return out


def uncertainty_validation(work: Path) -> dict[str, Any]:
    from acquire_vf.evaluate import evaluate
    from acquire_vf.simulate import ensure_dataset

    data = ensure_dataset("bbbc022", ROOT / ".cache" / "validation" / "bbbc022-9122-8-256x256",
                          fields=8, seed=9122, size=(256, 256))
    out: dict[str, Any] = {}
    for engine in ("cps_dna", "cps_er", "cps_mito"):
        for passes in (2, 4, 8):
            res = evaluate(ROOT / "engines" / f"{engine}.onnx", data,
                           work / f"eval-{engine}-{passes}", split="all",
                           uncertainty_passes=passes)
            out[f"{engine}/{passes}"] = res["uncertainty"]
            print(engine, passes, res["uncertainty"], flush=True)
    return out


def plot(fig: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, ax = plt.subplots(2, 2, figsize=(11, 8))
    band = fig["detection"][KINDS[0]][0]["band"].get("psnr_min")
    for kind, tr in fig["detection"]["traces"].items():
        t, p = zip(*tr["psnr"], strict=True)
        ax[0, 0].plot(t, p, "o-", label=kind)
        t, u = zip(*tr["uncertainty"], strict=True)
        ax[0, 1].plot(t, u, ".-", label=kind)
    if band is not None:
        ax[0, 0].axhline(band, color="red", ls="--", label="acceptance band (PSNR min)")
    for a in (ax[0, 0], ax[0, 1]):
        a.axvline(AT, color="grey", ls=":", label=f"perturbation at t={AT}")
        a.set_xlabel("time point")
        a.legend(fontsize=8)
    ax[0, 0].set_title("DNA: sentinel PSNR (dB)")
    ax[0, 1].set_title("DNA: frame-mean uncertainty (card scale)")
    every = sorted(fig["light"], key=int)
    ax[1, 0].bar(every, [100 * fig["light"][e]["saved_fraction"] for e in every])
    ax[1, 0].set_xlabel("sentinel every N time points")
    ax[1, 0].set_ylabel("light saved net of sentinels (%)")
    ax[1, 0].set_title("light-dose ledger, 60 time points")
    names = sorted(fig["uncertainty"])
    ax[1, 1].bar(range(len(names)), [fig["uncertainty"][n]["spearman_pixel_median"]
                                     for n in names], label="per pixel (median)")
    ax[1, 1].plot(range(len(names)), [fig["uncertainty"][n]["spearman_frame"] for n in names],
                  "ko", label="per frame")
    ax[1, 1].set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax[1, 1].set_title("Spearman(uncertainty, |error|), validation set")
    ax[1, 1].legend(fontsize=8)
    f.tight_layout()
    f.savefig(path, dpi=110)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acquire-vf-verification-"))
    try:
        fig = {"detection": detection(work), "no_perturbation_200": no_perturbation(work),
               "light": light(work), "uncertainty": uncertainty_validation(work)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "figures.json").write_text(json.dumps(fig, indent=1))
    plot(fig, OUT / "verification.png")
    print(f"wrote {OUT / 'figures.json'} and {OUT / 'verification.png'}")


if __name__ == "__main__":
    main()
