"""docs/real/: the shipped refocus engine on real nuclei it was never trained or tuned on.

    .venv/bin/python scripts/real_images.py

Fetches the 2018 Data Science Bowl image shipped in StarDist's wheel (acquire_vf.evaluate._real,
registry download, sha256-checked), runs ``engines/refocus.onnx`` on it at each defocus of
the engine's own optics, and writes ``docs/real/refocus.json`` (per defocus: input and engine
PSNR/SSIM against the in-focus truth, the gain with its 95% interval over the quadrants, the
forward-consistency chi-square and whether the QC flags the frame) and ``docs/real/refocus.png``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf.evaluate._real import fetch_real_nuclei, real_refocus  # noqa: E402


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ROOT / "docs" / "real"
    out.mkdir(parents=True, exist_ok=True)
    image = fetch_real_nuclei(ROOT / ".cache" / "real")
    res = real_refocus(ROOT / "engines" / "refocus.onnx", image)
    (out / "refocus.json").write_text(json.dumps(res, indent=1) + "\n")
    zs = [p["z_um"] for p in res["per_z"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.plot(zs, [p["input_psnr"] for p in res["per_z"]], "s--", label="defocused input")
    a1.plot(zs, [p["prediction_psnr"] for p in res["per_z"]], "o-", label="refocused")
    a1.set_xlabel("defocus (µm)")
    a1.set_ylabel("PSNR against the in-focus truth (dB)")
    a1.set_title("real nuclei (DSB 2018), simulated defocus")
    a1.legend()
    a2.bar([str(z) for z in zs], [p["chi2"] for p in res["per_z"]],
           color=["tab:red" if p["flagged"] else "tab:grey" for p in res["per_z"]])
    if res["consistency_chi2_max"]:
        a2.axhline(res["consistency_chi2_max"], color="k", lw=0.8, label="QC band")
        a2.legend()
    a2.set_xlabel("defocus (µm)")
    a2.set_ylabel("forward-consistency chi-square")
    a2.set_title("flagged frames in red")
    fig.tight_layout()
    fig.savefig(out / "refocus.png", dpi=80)
    print(out / "refocus.json")


if __name__ == "__main__":
    main()
