"""``acquire-vf train``, ``export`` and ``quantize``: the commands that make engines (registered
on the CLI's app when :mod:`acquire_vf._cli` imports this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from acquire_vf._cli_app import OverwriteOpt, app
from acquire_vf._errors import DataError, EngineFileError, OutputExistsError


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe (training/*.toml).")],
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default: "
                                             "runs/RECIPE-NAME).")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=1,
                                                  help="Stop after this many steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", metavar="",
                                         help="Continue from the run folder's "
                                         "last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", metavar="",
                                            help="Replace a training run "
                                            "already in the run folder.")] = False,
    data: Annotated[Path | None, typer.Option(
        "--data", help="Train on this folder instead of the recipe's data: a calibration "
        "(acquire-vf calibrate) or a folder in the recipe's layout.")] = None,
    init: Annotated[Path | None, typer.Option(
        "--init", help="Fine-tune: start from this engine (NAME.onnx with its card) or "
        "checkpoint.")] = None,
    install: Annotated[Path | None, typer.Option(
        "--install", help="Then judge the result against the engine this profile uses, on "
        "positions it never saw, and put it into the profile only if it is better.")] = None,
) -> None:
    """Train one engine from a recipe (several GPUs: torchrun -m acquire_vf.training);
    fine-tune one on calibration data with --data, --init and --install."""
    import json

    from acquire_vf.config import load_recipe, recipe_task, resolve_recipe_path
    from acquire_vf.training import require_torch

    require_torch()
    recipe = resolve_recipe_path(recipe)  # a path, or a shipped recipe's name
    if recipe_task(recipe) == "defocus":
        if data or init or install:
            raise DataError("--data, --init and --install: expected a refocus or synthesis "
                            f"recipe, got the defocus estimator recipe '{recipe}' (estimators "
                            "train on simulated stacks only, for now)")
        _train_defocus(recipe, out, overwrite)
        return
    from acquire_vf.training import train as run_training

    rec, text = load_recipe(recipe)
    if data is not None:
        from acquire_vf.calibration import recipe_on

        rec = recipe_on(rec, data)
    if install is not None and init is None:
        raise DataError("--install: expected --init too (the engine the profile uses, or the "
                        "one to start from): an engine is installed only when it beats the one "
                        "it replaces")
    if init is not None:  # before any folder is made: a shipped engine by name, or one line
        from acquire_vf.card import engine_path

        init = engine_path(init)
        if not init.exists():
            raise EngineFileError(f"--init: engine or checkpoint not found: '{init}' (a shipped "
                                  "engine can be named alone, e.g. --init refocus_rna)")
    folder = out or Path("runs") / rec.name
    if rec.name != recipe.stem:
        typer.echo(f"note: the recipe file '{recipe}' names its engine '{rec.name}' (its "
                   f"`name`): the run goes to '{folder}'", err=True)
    if not resume:
        _refuse_replacing(folder, overwrite)
    made = next((d for d in reversed([folder, *folder.parents]) if not d.exists()), None)
    try:
        summary = run_training(rec, text, folder, max_steps=max_steps, resume=resume,
                               recipe_path=recipe, init=init)
    except BaseException as e:
        if made is not None and made.is_dir() and not any(made.rglob("*.pt")):
            import shutil

            shutil.rmtree(made)  # a failed start leaves nothing to block the retry
        if isinstance(e, ValueError | FileNotFoundError):
            raise DataError(str(e)) from e
        raise
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    typer.echo(f"{folder}: {summary['steps']} steps, best validation MAE "
               f"{summary['best_val_mae']:.4f}, {summary['patches_per_s']:.1f} patches/s; "
               f"checkpoints in {folder / 'checkpoints'}")
    if init is not None:
        _judge_fine_tuned(folder, rec, init, install)


def _judge_fine_tuned(folder: Path, rec: object, init: Path, install: Path | None) -> None:
    """Export the fine-tuned engine, compare it on unseen positions with the engine it
    started from (and the profile's), and install it when it is better."""
    import json

    from acquire_vf.calibration import compare_engines, engine_in_profile, install_engine
    from acquire_vf.card import ModelCard
    from acquire_vf.config import load_profile
    from acquire_vf.training import export

    data = rec.data.path  # type: ignore[attr-defined]
    if data is None and install is None:  # simulated: evaluate --held-out judges it
        typer.echo("fine-tuned on simulated data: judge it with `acquire-vf evaluate --held-out "
                   "--recipe RECIPE` against the engine it started from")
        return
    engine = folder / "engine" / f"{rec.name}.onnx"  # type: ignore[attr-defined]
    engine.parent.mkdir(parents=True, exist_ok=True)
    export(folder / "checkpoints" / "best.pt", engine)
    from acquire_vf.calibration import carry_into_card

    said = carry_into_card(engine, data, init)
    if said:
        typer.echo(said)
    against: dict[str, Path] = {}
    if init.suffix == ".onnx":
        against["started from"] = init
    where = None
    if install is not None:
        prof = load_profile(install)
        kind, channel, current = engine_in_profile(prof, ModelCard.load(engine))
        where = (kind, channel)
        against["in the profile"] = current
    results: dict[str, dict[str, Any]] = {}
    done: dict[Path, dict[str, Any]] = {}  # one comparison per engine file, whatever its label
    for label, old in against.items():
        if old.resolve() not in done:
            done[old.resolve()] = res = compare_engines(engine, old, data)
            n = res["unseen_positions"]
            typer.echo(f"{engine}: on {n} unseen position{'s' * (n != 1)} ({res['images']} "
                       f"images), PSNR {res['new_figures']['psnr']:.2f} dB, SSIM "
                       f"{res['new_figures']['ssim']:.3f}")
            for who, a in res["against"].items():
                figs = res["old_figures" if who == "old" else "baseline_figures"]
                name = f"{label} {old}" if who == "old" else who
                ci = a["psnr_gain_ci95"]
                typer.echo(f"  vs {name}: PSNR {figs['psnr']:.2f} dB (gain "
                           f"{a['psnr_gain_db']:+.2f}"
                           f"{f' [{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else ', no interval'}), "
                           f"SSIM {figs['ssim']:.3f}: "
                           f"{'beaten' if a['beats'] else 'not beaten: ' + a['why']}")
            typer.echo(f"  {'better than all' if res['beats'] else 'not better: '}"
                       f"{'; '.join(res['why_not'])} ({res['rule']})")
        results[label] = done[old.resolve()]
    (folder / "calibration-eval.json").write_text(json.dumps(results, indent=2))
    if install is None or where is None:
        return
    if not results["in the profile"]["beats"]:
        typer.echo(f"{install}: unchanged; the fine-tuned engine does not beat the one it uses "
                   f"for {where[1]} and {results['in the profile']['baseline']} on the unseen "
                   "positions")
        return
    dest = install_engine(install, engine, *where)
    typer.echo(f"{install}: {where[1]} now uses {dest} (the previous profile is "
               f"{install.name}.before-install)")


def _refuse_replacing(folder: Path, overwrite: bool) -> None:
    """A second ``train`` into a run folder would rewrite its checkpoints and cut its log."""
    done = folder / "checkpoints"
    if not overwrite and done.is_dir() and any(done.glob("*.pt")):
        raise OutputExistsError(f"'{folder}' already holds a training run ({done}); continue "
                                "it with --resume, replace it with --overwrite, or name "
                                "another folder with --out")


def _train_defocus(recipe: Path, out: Path | None, overwrite: bool = False) -> None:
    from rich.progress import Progress

    from acquire_vf.config import load_defocus_recipe
    from acquire_vf.training import train_defocus

    rec, text = load_defocus_recipe(recipe)
    folder = out or Path("runs") / rec.name
    _refuse_replacing(folder, overwrite)
    with Progress(transient=False) as bar:
        task = bar.add_task(f"training {rec.name}", total=rec.steps)

        def progress(step: int, total: int, m: dict[str, float]) -> None:
            bar.update(task, completed=step, description=f"training {rec.name}: median "
                       f"|error| {m['median_abs_error_um']:.2f} um")

        summary = train_defocus(rec, folder, progress=progress, recipe_text=text)
    typer.echo(f"{folder}: {summary['steps']} steps, best validation median |error| "
               f"{summary['best_val_median_abs_error_um']:.3f} um ({summary['seconds']:.0f} s);"
               f" checkpoints in {folder / 'checkpoints'}")


@app.command("export")
def export_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint written by train.")],
    out: Annotated[Path, typer.Option("--out", help="engines/NAME.onnx (the card is "
                                      "written beside it as NAME.json); with --bioimageio a "
                                      "package folder.")],
    bioimageio: Annotated[bool, typer.Option("--bioimageio", metavar="", help="Write a "
                                             "bioimage.io model package instead.")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """ONNX + model card, checked against PyTorch with ONNX Runtime (or a bioimage.io
    package of it)."""
    from acquire_vf.storage import check_output
    from acquire_vf.training import require_torch

    if out.suffix != ".onnx" and not bioimageio:
        raise DataError(f"--out: expected a path ending in .onnx, got '{out}'")
    check_output(out, inputs=[checkpoint], overwrite=overwrite)
    if not bioimageio:
        check_output(out.with_suffix(".json"), overwrite=overwrite, what="the card")
    require_torch()
    from acquire_vf.training import ExportError, export, export_defocus, load_checkpoint

    state = load_checkpoint(checkpoint)  # weights and plain data only
    kind = state.get("kind")
    if bioimageio:
        import tempfile

        name = str((state.get("recipe") or {}).get("name") or checkpoint.stem)
        with tempfile.TemporaryDirectory() as tmp:
            onnx = Path(tmp) / f"{name}.onnx"
            try:
                export(checkpoint, onnx)
            except ExportError as e:
                raise DataError(str(e)) from e
            _package(onnx, out, overwrite)
        return
    try:
        card = export_defocus(checkpoint, out) if kind == "defocus" else \
            export(checkpoint, out)[0]
    except ExportError as e:
        raise DataError(str(e)) from e
    typer.echo(f"{out}: {card.task} engine, inputs {list(card.inputs)} -> {card.output}, "
               f"{card.parameters:,} parameters, {card.gflop_per_256} GFLOP per 256x256; "
               f"card {out.with_suffix('.json')}")


@app.command("export-bioimageio")
def export_bioimageio_cmd(
    model: Annotated[Path, typer.Argument(help="An engine (NAME.onnx with NAME.json).")],
    out: Annotated[Path, typer.Option("--out", help="Package folder (rdf.yaml, weights, test "
                                      "tensors, cover, README, the card).")],
    overwrite: OverwriteOpt = False,
) -> None:
    """A bioimage.io model package of an engine, validated by bioimageio.spec (for
    deepImageJ, ilastik, QuPath, BioEngine; acquire-vf takes it as an engine too)."""
    from acquire_vf.storage import check_output

    check_output(out, inputs=[model], overwrite=overwrite)
    _package(model, out, overwrite)


def _package(onnx: Path, out: Path, overwrite: bool) -> None:
    from acquire_vf.interop import export_bioimageio

    rdf = export_bioimageio(onnx, out, overwrite=overwrite)
    typer.echo(f"{rdf}: bioimage.io model package of {onnx.stem} (bioimageio.spec validation: "
               f"valid format); acquire-vf takes {out} as an engine (predict --model, "
               "profiles)")


@app.command()
def quantize(
    model: Annotated[Path, typer.Argument(help="An fp32 engine (NAME.onnx with NAME.json).")],
    out: Annotated[Path, typer.Option("--out", help="The INT8 engine (OUT.onnx; its card "
                                      "is written beside it).")],
    frames: Annotated[int, typer.Option("--frames", min=1, help="Training images to "
                                        "calibrate on.")] = 32,
    data: Annotated[Path | None, typer.Option("--data", help="Calibration images in the "
                                              "engine's training layout (default: its "
                                              "training data).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """INT8 engine for CPU-only rigs: static QDQ quantisation calibrated on the engine's
    training data (docs/inference.md)."""
    from acquire_vf.storage import check_output

    if out.suffix != ".onnx":
        raise DataError(f"--out: expected a path ending in .onnx, got '{out}'")
    check_output(out, inputs=[model, model.with_suffix(".json")], overwrite=overwrite)
    check_output(out.with_suffix(".json"), overwrite=overwrite, what="the card")
    from acquire_vf.quantize import quantize_engine

    card = quantize_engine(model, out, frames=frames, data=data)
    typer.echo(f"{out}: INT8 ({card.quantization['format']}) from {card.quantization['from']}; "
               f"{card.quantization['calibration']}; card {out.with_suffix('.json')}. "
               f"Judge it: acquire-vf evaluate --model {out} ... (reports int8_psnr_cost_db)")
