"""``acquire-vf train``, ``export`` and ``quantize``: the commands that make engines (registered
on the CLI's app when :mod:`acquire_vf._cli` imports this module)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from acquire_vf._cli import OverwriteOpt, app
from acquire_vf._errors import DataError, OutputExistsError


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
) -> None:
    """Train one engine from a recipe (several GPUs: torchrun -m acquire_vf.training)."""
    import json

    from acquire_vf.config import load_recipe, recipe_task, resolve_recipe_path
    from acquire_vf.training import require_torch

    require_torch()
    recipe = resolve_recipe_path(recipe)  # a path, or a shipped recipe's name
    if recipe_task(recipe) == "defocus":
        _train_defocus(recipe, out, overwrite)
        return
    from acquire_vf.training import train as run_training

    rec, text = load_recipe(recipe)
    folder = out or Path("runs") / rec.name
    if rec.name != recipe.stem:
        typer.echo(f"note: the recipe file '{recipe}' names its engine '{rec.name}' (its "
                   f"`name`): the run goes to '{folder}'", err=True)
    if not resume:
        _refuse_replacing(folder, overwrite)
    try:
        summary = run_training(rec, text, folder, max_steps=max_steps, resume=resume,
                               recipe_path=recipe)
    except (ValueError, FileNotFoundError) as e:
        raise DataError(str(e)) from e
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    typer.echo(f"{folder}: {summary['steps']} steps, best validation MAE "
               f"{summary['best_val_mae']:.4f}, {summary['patches_per_s']:.1f} patches/s; "
               f"checkpoints in {folder / 'checkpoints'}")


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
                                      "written beside it as NAME.json).")],
    overwrite: OverwriteOpt = False,
) -> None:
    """ONNX + model card, checked against PyTorch with ONNX Runtime."""
    from acquire_vf.storage import check_output
    from acquire_vf.training import require_torch

    if out.suffix != ".onnx":
        raise DataError(f"--out: expected a path ending in .onnx, got '{out}'")
    check_output(out, inputs=[checkpoint], overwrite=overwrite)
    check_output(out.with_suffix(".json"), overwrite=overwrite, what="the card")
    require_torch()
    from acquire_vf.training import ExportError, export, export_defocus, load_checkpoint

    kind = load_checkpoint(checkpoint).get("kind")  # weights and plain data only
    try:
        card = export_defocus(checkpoint, out) if kind == "defocus" else \
            export(checkpoint, out)[0]
    except ExportError as e:
        raise DataError(str(e)) from e
    typer.echo(f"{out}: {card.task} engine, inputs {list(card.inputs)} -> {card.output}, "
               f"{card.parameters:,} parameters, {card.gflop_per_256} GFLOP per 256x256; "
               f"card {out.with_suffix('.json')}")


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
