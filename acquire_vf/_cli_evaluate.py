"""``acquire-vf evaluate``: an engine's figures on held-out data, its targets, its final test
(registered on the CLI's app when :mod:`acquire_vf._cli` imports this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from acquire_vf._cli_app import OverwriteOpt, app
from acquire_vf._errors import DataError


@app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Option("--model", help="Engine (NAME.onnx with NAME.json).")],
    out: Annotated[Path, typer.Option("--out", help="Report folder.")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="Held-out data in the layout of the engine's recipe (or --held-out / "
        "--final-test for the sets the recipe names).")] = None,
    held_out: Annotated[bool, typer.Option(
        "--held-out", metavar="", help="Evaluate on the held-out set the recipe names "
        "(validation: figures to choose by), simulated if needed.")] = False,
    final_test: Annotated[bool, typer.Option(
        "--final-test", metavar="", help="Evaluate once on the final test set the recipe "
        "names, after every choice is made; the card records the use.")] = False,
    again: Annotated[bool, typer.Option(
        "--again", metavar="", help="Run a final test this engine file already had (the card "
        "counts the uses).")] = False,
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", help="Take targets and evaluation sets from this recipe instead of the "
        "card (for engines exported before the recipe had them).")] = None,
    split: Annotated[str, typer.Option("--split", help="test (the recipe's test fields), "
                                       "val, or all (data never used in training).")] = "test",
    max_images: Annotated[int | None, typer.Option(
        "--max-images", min=1, help="Evaluate at most this many images (the first ones).")] = None,
    update_card: Annotated[bool, typer.Option("--update-card", metavar="",
                                              help="Write the figures, the targets' results, "
                                              "the acceptance band and the input statistics "
                                              "into the model card.")] = False,
    uncertainty_passes: Annotated[int, typer.Option(
        "--uncertainty-passes", min=0, max=8, help="Also measure the test-time-augmentation "
        "uncertainty (2 to 8 passes) against the error.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """The paper's metrics with intervals by field, baselines and the recipe's targets;
    metrics.json + report.html."""
    if uncertainty_passes == 1:
        raise DataError("--uncertainty-passes: expected 0 (off) or 2 to 8, got 1")
    from acquire_vf.card import ModelCard
    from acquire_vf.config import load_recipe

    rec = load_recipe(recipe)[0] if recipe is not None else None
    card = ModelCard.load(model, verify=False)
    which = _which(held_out, final_test, data)
    spec: dict[str, Any] = {}
    if which is not None and card.task != "defocus":
        spec, data = _prepare_set(model, card, rec, which, again)
        split = "all"
    if data is None:
        raise DataError("--data: expected a folder of held-out data, got none (or pass "
                        "--held-out / --final-test for the sets the engine's recipe names)")
    from acquire_vf.storage import check_output

    check_output(out, inputs=[data, model], overwrite=overwrite)
    if card.task == "defocus":
        _defocus(model, data, out, update_card)
        return
    from rich.progress import Progress

    from acquire_vf.evaluate import evaluate as run_evaluate

    with Progress(transient=False) as bar:
        task = bar.add_task("evaluating", total=None)
        try:
            result = run_evaluate(model, data, out, split=split, max_images=max_images,
                                  progress=lambda k, n: bar.update(task, completed=k,
                                                                   total=n),
                                  uncertainty_passes=uncertainty_passes,
                                  targets=rec.targets if rec is not None else None,
                                  figures="final_test" if which == "final_test" else "held_out")
        except (ValueError, FileNotFoundError) as e:
            raise DataError(str(e)) from e
    if which is not None:
        result["set"] = {"which": which, **spec}
    if which == "final_test":
        from acquire_vf.evaluate import record_final_test

        record_final_test(model, result, spec)
    elif update_card:
        from acquire_vf.evaluate import update_card as write_card

        write_card(model, result, rec)
    _say(out, result, which)


def _which(held_out: bool, final_test: bool, data: Path | None) -> str | None:
    if held_out and final_test:
        raise DataError("--held-out and --final-test: expected one set, got both")
    which = "final_test" if final_test else "held_out" if held_out else None
    if which is not None and data is not None:
        raise DataError(f"--data and --{which.replace('_', '-')}: expected one source of "
                        "data (that set is simulated from the recipe), got both")
    return which


def _prepare_set(model: Path, card: Any, rec: Any, which: str, again: bool,
                 ) -> tuple[dict[str, Any], Path]:
    from acquire_vf.evaluate import final_test_used, set_spec, simulate_set

    try:
        spec = set_spec(card, rec, which)
        used = final_test_used(card) if which == "final_test" else None
        if used and not again:
            raise DataError(
                f"the final test of '{model}' was already run ({used['date']}, "
                f"{used['uses']} use{'s' if used['uses'] > 1 else ''}; figures in the card's "
                "metrics.final_test): a second look makes it a validation set. Pass --again "
                "to run it anyway; the card counts the uses")
        return spec, simulate_set(card, spec)
    except ValueError as e:
        raise DataError(str(e)) from e


def _defocus(model: Path, data: Path, out: Path, update_card: bool) -> None:
    from acquire_vf.evaluate import evaluate_defocus

    res = evaluate_defocus(model, data, out)
    if update_card:
        from acquire_vf.evaluate import update_defocus_card

        update_defocus_card(model, res)
    w, a, b = res["within_20um"], res["above_focus"], res["below_focus"]
    typer.echo(f"{out / 'metrics.json'}: median |error| {w['median_abs_error_um']} um "
               f"within +-20 um (above focus {a['median_abs_error_um']}, below "
               f"{b['median_abs_error_um']}); 2-sigma coverage {w['coverage_2sigma']}")


def _ci(v: Any) -> str:
    return f" [{v[0]:.2f}, {v[1]:.2f}]" if v else ""


def _say(out: Path, result: dict[str, Any], which: str | None) -> None:
    from acquire_vf.evaluate import linear_fit_text

    p, n = result["prediction"], result["n_images"]
    kind = {"final_test": "final test", "held_out": "held-out (validation)"}.get(which or "", "")
    typer.echo(f"{out / 'report.html'}: {kind + ', ' if kind else ''}{n} "
               f"image{'' if n == 1 else 's'} from {result['n_fields']} field"
               f"{'' if result['n_fields'] == 1 else 's'}; PSNR {p['psnr']:.2f} dB"
               f"{_ci(p['psnr_ci95'])}, SSIM {p['ssim']:.3f}, MAE {p['mae']:.4f}, "
               f"TL {p['tl']:.3f}"
               + "".join(f"; {b}: PSNR {v['psnr']:.2f}" for b, v in result["baselines"].items()))
    nf = result.get("noise_free")
    if nf:
        typer.echo(f"against the noise-free truth: PSNR {nf['prediction']['psnr']:.2f} dB "
                   f"(the measured truth itself: {nf['measured_truth']['psnr']:.2f} dB)")
    unc = result.get("uncertainty")
    if unc:
        typer.echo(f"uncertainty ({unc['passes']} passes): frame mean {unc['frame_mean']:.4f}"
                   f" ± {unc['frame_mean_sd']:.4f}; Spearman with error: per frame "
                   f"{unc['spearman_frame']}, per pixel (median) {unc['spearman_pixel_median']}")
    for t in result.get("targets", []):
        if t["met"] is None:
            typer.echo(f"target not judged: {t['target']} ({t['why']})")
        else:
            sure = {True: ", interval too", False: ", not across its interval"}.get(
                t.get("met_at_95"), "")
            typer.echo(f"target {'met' if t['met'] else 'MISSED'}: {t['target']}: "
                       f"{t['value']}{_ci(t.get('ci95'))}{sure if t['met'] else ''}")
    fit = result.get("linear_baseline")
    if fit and not fit["engine_training_fields"]:
        typer.echo(f"note: {linear_fit_text(fit)}, so it may differ from the card's")
