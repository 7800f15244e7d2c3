"""The figures of docs/focus.md: ``python scripts/focus_figures.py``.

- each shipped defocus estimator on held-out through-focus stacks (``acquire-vf evaluate``);
- a 200-time-point closed-loop run on the in-memory backend: the simulated slide drifts by
  +-30 µm (period 200) and steps by 15 µm at t = 100; the fraction of physical frames within
  half the depth of field of focus (the simulator's truth), z-scans, stage corrections, and the
  ledger's saving against a z-scan at every time point. Steered by the brightfield estimator
  (the demo's), and for comparison by the AGP one (the distance only).

Writes docs/focus/figures.json and docs/focus/closed_loop.png (the estimators' own plots go to
docs/focus/NAME/).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.config import demo_variant  # noqa: E402

OUT = ROOT / "docs" / "focus"
HALF_DOF_UM = 1.3
"""Half the depth of field at 20x / NA 0.45 in air (lambda / NA^2 ~ 2.5 um, halved, with the
pixel term)."""
N_T, STEP_AT = 200, 100


def estimators() -> dict[str, Any]:
    out = {}
    for name in ("defocus_bf", "defocus_agp", "defocus_rna"):
        folder = OUT / name
        subprocess.run([sys.executable, "-m", "acquire_vf", "evaluate", "--model",
                        f"engines/{name}.onnx", "--data", ".cache/held-out/defocus",
                        "--out", str(folder.relative_to(ROOT)), "--overwrite"], cwd=ROOT,
                       check=True)
        out[name] = json.loads((folder / "metrics.json").read_text())
        out[name].pop("per_z", None)
    return out


def closed_loop(work: Path, steer: str = "BF") -> dict[str, Any]:
    from acquire_vf._session import run_session

    update: dict[str, Any] = {
        "specimen": {"focus_drift_um": 30.0, "focus_drift_period": 200,
                     "focus_steps": [{"at": STEP_AT, "dz_um": 15.0}]},
        "verification": {"every": 1000},
        "acquisition": {"time_points": N_T, "interval_s": 0.3}}
    if steer != "BF":
        # AGP comes first in channel order, so it steers (the brightfield estimator still runs)
        update["autofocus"] = {"estimators": {
            steer: str(ROOT / "engines" / f"defocus_{steer.lower()}.onnx")}}
    prof = demo_variant(update)
    rep = run_session(prof, work / steer, quiet=True)
    focus = rep["focus"]
    agp = [e for e in focus["estimates"] if e["channel"] == focus["channel"]]
    true = np.array([e["true_defocus_um"] for e in agp])
    signed = [e for e in agp if e["defocus_um"] is not None]
    d = rep["light_dose"]
    return {
        "steering": focus["channel"], "signed": focus["signed"],
        "time_points": N_T, "frames_estimated": len(agp),
        "within_half_dof": round(float(np.mean(np.abs(true) <= HALF_DOF_UM)), 4),
        "median_abs_true_defocus_um": round(float(np.median(np.abs(true))), 3),
        "max_abs_true_defocus_um": round(float(np.max(np.abs(true))), 3),
        "tracking_error_median_um": round(float(np.median(
            [abs(e["defocus_um"] - e["true_defocus_um"]) for e in signed])), 3),
        "zscans": focus["zscans"], "zscan_fraction": round(len(focus["zscans"]) / N_T, 4),
        "corrections": len(focus["corrections"]),
        "refocus_applied": rep["refocus_applied"],
        "light": {"saved_fraction": d["saved_fraction"], "saved_by_cause": d["saved_by_cause"],
                  "comparator": d["comparator_protocol"], "taken": d["taken"]},
        "trace": [(e["t"], e["defocus_um"], e["true_defocus_um"]) for e in agp],
        "corrections_trace": [(c["t"], c["dz_um"]) for c in focus["corrections"]],
    }


def plot(fig: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cl = fig["closed_loop"]
    t = [r[0] for r in cl["trace"]]
    f, ax = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    ax[0].plot(t, [r[2] for r in cl["trace"]], "k-", lw=1, label="true defocus (simulator)")
    ax[0].plot([r[0] for r in cl["trace"] if r[1] is not None],
               [r[1] for r in cl["trace"] if r[1] is not None], ".", ms=4,
               label="estimate" + ("" if cl["signed"] else " (sign from tracking)"))
    ax[0].axhspan(-HALF_DOF_UM, HALF_DOF_UM, color="green", alpha=0.1,
                  label="half the depth of field")
    for z in cl["zscans"]:
        ax[0].axvline(z["t"], color="orange", lw=1)
    ax[0].set_ylabel("defocus (um)")
    ax[0].legend(fontsize=8)
    ax[0].set_title(f"closed loop steered by {cl['steering']}, +-30 um drift and a 15 um "
                    f"step at t = {STEP_AT}:\n"
                    f"{100 * cl['within_half_dof']:.1f}% within half the depth of field, "
                    f"{len(cl['zscans'])} z-scans (orange)")
    ax[1].bar([c[0] for c in cl["corrections_trace"]], [c[1] for c in cl["corrections_trace"]],
              width=0.8)
    ax[1].set_ylabel("stage correction (um)")
    ax[1].set_xlabel("time point")
    f.tight_layout()
    f.savefig(path, dpi=100)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="acquire-vf-focus-"))
    try:
        fig = {"estimators": estimators(), "closed_loop": closed_loop(work),
               "closed_loop_unsigned": closed_loop(work, "AGP")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    plot(fig, OUT / "closed_loop.png")
    (OUT / "figures.json").write_text(json.dumps(fig, indent=1))
    for key in ("closed_loop", "closed_loop_unsigned"):
        print(json.dumps({k: v for k, v in fig[key].items()
                          if k not in ("trace", "corrections_trace")}, indent=1))


if __name__ == "__main__":
    main()
