"""The evaluation report: ``report.html`` with its figures beside it as PNG (matplotlib)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard
from acquire_vf.evaluate._tolerance import error_overlay, tolerance_curves
from acquire_vf.metrics import to_unit


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grey(ax: Any, img: np.ndarray, title: str, lo: float, hi: float) -> None:
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def examples_figure(path: Path, card: ModelCard, examples: list[tuple[Any, np.ndarray]],
                    bit_depth: int) -> None:
    plt = _plt()
    n_in = len(card.inputs)
    fig, axes = plt.subplots(len(examples), n_in + 4, figsize=(3 * (n_in + 4),
                                                               3 * len(examples)),
                             squeeze=False)
    for row, (pair, pred) in zip(axes, examples, strict=True):
        truth = pair.target[0]
        lo, hi = np.percentile(truth, [0.5, 99.8])
        for i, name in enumerate(card.inputs):
            ilo, ihi = np.percentile(pair.inputs[i], [0.5, 99.8])
            z = f" ({pair.z_um:+.0f} µm)" if card.task == "refocus" else ""
            _grey(row[i], pair.inputs[i], f"input {name}{z}", ilo, ihi)
        _grey(row[n_in], pred, f"prediction {card.output}", lo, hi)
        _grey(row[n_in + 1], truth, f"truth {card.output}", lo, hi)
        low, high = card.normalisation[card.output].low, card.normalisation[card.output].high
        rgb, mask = error_overlay(to_unit(pred, low, high) * 255, to_unit(truth, low, high) * 255,
                                  bit_depth=8)
        row[n_in + 2].imshow(rgb)
        row[n_in + 2].set_title(f"|error| > 50/255: {mask.mean():.1%} of pixels", fontsize=9)
        row[n_in + 2].set_axis_off()
        (y0, y1), (x0, x1) = _worst_window(mask)
        row[n_in + 3].imshow(rgb[y0:y1, x0:x1], interpolation="nearest")
        row[n_in + 3].set_title("zoom: where the errors are densest", fontsize=9)
        row[n_in + 3].set_axis_off()
        row[n_in + 2].add_patch(_box(x0, y0, x1 - x0, y1 - y0))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _worst_window(mask: np.ndarray, frac: float = 0.3) -> tuple[tuple[int, int],
                                                                tuple[int, int]]:
    """The square window (``frac`` of the image) holding the most error pixels."""
    from scipy import ndimage

    h, w = mask.shape
    s = max(8, int(min(h, w) * frac))
    density = ndimage.uniform_filter(mask.astype(np.float32), s, mode="constant")
    cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
    y0 = int(np.clip(cy - s // 2, 0, h - s))
    x0 = int(np.clip(cx - s // 2, 0, w - s))
    return (y0, y0 + s), (x0, x0 + s)


def _box(x: int, y: int, w: int, h: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="yellow", lw=1)


def tl_figure(path: Path, card: ModelCard, examples: list[tuple[Any, np.ndarray]]) -> None:
    plt = _plt()
    low, high = card.normalisation[card.output].low, card.normalisation[card.output].high
    curves = [tolerance_curves(to_unit(pred, low, high) * 255,
                               to_unit(pair.target[0], low, high) * 255, 8)
              for pair, pred in examples]
    bit_depth = 8
    x = curves[0].thresholds / (2**bit_depth - 1) * 100
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, c in enumerate(curves):  # each image's IE + SE, faint
        ax.plot(x, c.total, color="tab:green", alpha=0.25, lw=0.8,
                label="IE + SE, each image" if i == 0 else None)
    for name, style in (("ie", "--"), ("se", ":"), ("total", "-")):
        mean = np.mean([getattr(c, name) for c in curves], axis=0)
        ax.plot(x, mean, style, label={"ie": "IE (intensity error), mean",
                                       "se": "SE (spatial error), mean",
                                       "total": "IE + SE, mean"}[name])
    tl = float(np.mean([c.tl_fraction for c in curves])) * 100
    ax.axvline(tl, color="grey", lw=0.8)
    ax.set_xlabel("tolerance (% of the bit-depth range)")
    ax.set_ylabel("error")
    ax.set_title(f"tolerance-level index (mean over {len(curves)} images): TL = {tl:.1f}%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def metrics_figure(path: Path, result: dict[str, Any]) -> None:
    plt = _plt()
    names = ["prediction", *result["baselines"]]
    data = [result["prediction"], *result["baselines"].values()]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, key in zip(axes, ("psnr", "ssim", "mae"), strict=True):
        ax.bar(names, [d[key] for d in data], yerr=[d[f"{key}_sd"] for d in data],
               color=["tab:green"] + ["tab:grey"] * (len(names) - 1))
        ax.set_title(key.upper())
        ax.tick_params(axis="x", rotation=20, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def features_figure(path: Path, features: dict[str, Any]) -> None:
    plt = _plt()
    per = features["per_feature"]
    names = sorted(per, key=per.__getitem__)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    ax1.hist(list(per.values()), bins=np.linspace(-1, 1, 21), color="tab:green")
    ax1.set_xlabel("correlation across cells (real vs virtual)")
    ax1.set_ylabel("features")
    ax1.set_title(f"median {features['median_correlation']:.2f} over "
                  f"{features['n_cells']} cells")
    ax2.barh(names, [per[n] for n in names], color="tab:green")
    ax2.set_xlim(-1, 1)
    ax2.tick_params(axis="y", labelsize=7)
    ax2.set_xlabel("correlation")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def per_z_figure(path: Path, result: dict[str, Any]) -> None:
    plt = _plt()
    zs = [r["z_um"] for r in result["per_z"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(zs, [r["prediction"]["psnr"] for r in result["per_z"]], "o-", label="refocused")
    ax.plot(zs, [r["input"]["psnr"] for r in result["per_z"]], "s--", label="defocused input")
    ax.set_xlabel("defocus (µm)")
    ax.set_ylabel("PSNR (dB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(d: dict[str, Any], k: str) -> str:
    ci = d.get(f"{k}_ci95")
    return f"<td>{d[k]:.4f} ± {d[k + '_sd']:.4f}" + (
        f"<br><small>[{ci[0]:.4f}, {ci[1]:.4f}]</small>" if ci else "") + "</td>"


def _table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    body = "".join(f"<tr><td>{html.escape(n)}</td>"
                   + "".join(_cell(d, k) for k in ("mae", "psnr", "ssim", "tl")) + "</tr>"
                   for n, d in rows)
    return ("<table><tr><th></th><th>MAE</th><th>PSNR (dB)</th><th>SSIM</th>"
            f"<th>TL (fraction)</th></tr>{body}</table>")


def _gains(result: dict[str, Any]) -> str:
    if not result.get("gains"):
        return ""
    body = "".join(
        f"<tr><td>over {html.escape(b)}</td>" + "".join(
            f"<td>{g[k]:+.4f}" + (f" [{g[k + '_ci95'][0]:+.4f}, {g[k + '_ci95'][1]:+.4f}]"
                                  if g.get(k + "_ci95") else "") + "</td>"
            for k in ("mae", "psnr", "ssim", "tl")) + "</tr>"
        for b, g in result["gains"].items())
    return ("<h3>Gains (positive: the engine is better; 95% interval by field)</h3><table>"
            "<tr><th></th><th>MAE</th><th>PSNR (dB)</th><th>SSIM</th><th>TL</th></tr>"
            f"{body}</table>")


def _targets(result: dict[str, Any]) -> str:
    if not result.get("targets"):
        return ""
    def row(t: dict[str, Any]) -> str:
        if t["met"] is None:
            verdict, value = f"not judged: {t['why']}", "–"
        else:
            verdict = "met" if t["met"] else "missed"
            if t["met"] and t.get("met_at_95") is False:
                verdict += " (not across its interval)"
            ci = t.get("ci95")
            value = f"{t['value']}" + (f" [{ci[0]}, {ci[1]}]" if ci else "")
        return (f"<tr><td>{html.escape(t['target'])}</td><td>{html.escape(value)}</td>"
                f"<td>{t['threshold']}</td><td>{html.escape(verdict)}</td></tr>")

    return ("<h2>Targets (the recipe's)</h2><table><tr><th>target</th><th>value [95%]</th>"
            "<th>threshold</th><th></th></tr>" + "".join(row(t) for t in result["targets"])
            + "</table>")


def _noise_free(result: dict[str, Any]) -> str:
    nf = result.get("noise_free")
    if not nf:
        return ""
    rows = [("prediction", nf["prediction"]), ("measured truth", nf["measured_truth"]),
            *nf["baselines"].items()]
    return (f"<h3>Against the noise-free truth ({nf['n_images']} images)</h3>"
            f"<p>{html.escape(nf['note'])}.</p>{_table(rows)}")


def _set_words(result: dict[str, Any]) -> str:
    s = result.get("set")
    if not s:
        return ""
    kind = "the final test set, run once" if s["which"] == "final_test" else \
        "the recipe's held-out set, for choosing (validation)"
    return f"; {kind}: seed {s['seed']}, {s['fields']} fields"


def _fit_note(result: dict[str, Any]) -> str:

    fit = result.get("linear_baseline")
    if not fit:
        return ""
    text = linear_fit_text(fit)
    return f" {html.escape(text[0].upper() + text[1:])}."


def write_report(out: Path, card: ModelCard, result: dict[str, Any],
                 rows: list[dict[str, Any]], examples: list[tuple[Any, np.ndarray]],
                 bit_depth: int) -> Path:
    figures = {"examples.png": "Input, prediction, truth and the error map (errors above "
                               "50/255 of the range in green)",
               "tolerance.png": "Tolerance-level index: IE, SE and their sum (paper Fig. 5D)",
               "metrics.png": "Metrics of the prediction and the baselines (mean ± sd)"}
    examples_figure(out / "examples.png", card, examples, bit_depth)
    tl_figure(out / "tolerance.png", card, examples)
    metrics_figure(out / "metrics.png", result)
    if result.get("features", {}).get("median_correlation") is not None:
        features_figure(out / "features.png", result["features"])
        base = "; ".join(f"{b}: median {v['median_correlation']:.2f}"
                         for b, v in result["features"].get("baselines", {}).items())
        figures["features.png"] = ("Per-cell feature fidelity: correlation across cells of each "
                                   "feature, real against virtual (paper Figs. 7-8)"
                                   + (f"; the baselines measured the same way: {base}"
                                      if base else ""))
    if "per_z" in result:
        per_z_figure(out / "per_z.png", result)
        figures["per_z.png"] = "PSNR by defocus: refocused against the defocused input"
    card_view = {k: v for k, v in card.model_dump(mode="json").items() if k != "training"}
    card_view["training"] = {k: v for k, v in card.training.items() if k != "recipe_text"}
    figs = "".join(f'<figure><img src="{name}" alt="{html.escape(cap)}">'
                   f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                   for name, cap in figures.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>acquire-vf evaluation: {html.escape(card.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
img{{max-width:100%}}pre{{background:#f6f6f6;padding:1em;overflow:auto}}</style></head><body>
<h1>{html.escape(card.name)}: {html.escape(card.task)}
{html.escape(", ".join(card.inputs))} → {html.escape(card.output)}</h1>
<p>{result["n_images"]} held-out images from {result["n_fields"]} fields
({html.escape(result["split"])} split{_set_words(result)}), images scaled to [0, 1] by the card's
output range for MAE, PSNR and SSIM (window: {html.escape(result["ssim_window"])}); mean ± sd
over images, and below it the {html.escape(result["intervals"])}.{_fit_note(result)}</p>
<h2>Metrics</h2>{_table([("prediction", result["prediction"]), *result["baselines"].items()])}
{_gains(result)}{_noise_free(result)}{_targets(result)}
<h2>Figures</h2>{figs}
<h2>Model card</h2><pre>{html.escape(json.dumps(card_view, indent=2))}</pre>
</body></html>"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def linear_fit_text(fit: dict[str, Any]) -> str:
    """Where the linear baseline was fitted, in words (the report and the console say it)."""
    return (f"the linear baseline was fitted on {fit['fitted_on']}"
            + (f" ({fit['why']})" if "why" in fit else ""))
