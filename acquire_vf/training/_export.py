"""Checkpoint → ONNX + model card, checked against PyTorch before it is accepted.

The generator is exported in eval mode (BatchNorm uses its running statistics and the exporter
folds it into the convolutions) with torch's current exporter (``torch.export`` + onnxscript),
opset 18, a dynamic batch and dynamic height and width constrained to multiples of
``2**depth``. Other sizes are padded (reflect) to the next multiple and the output is cropped
back (:func:`acquire_vf.card.pad_to_multiple`); the inference engines do the same.

The export checks itself: ``onnx.checker``, then ONNX Runtime against PyTorch at the minimum
size, a typical tile, a large frame and an odd size; the largest absolute difference must stay
below 1e-4 (fp32), or the file is removed and the export fails.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from acquire_vf.card import ModelCard, Normalisation, pad_to_multiple, sha256_file
from acquire_vf.training._checkpoint import load_checkpoint
from acquire_vf.training._models import Generator, GeneratorConfig, count_parameters, gflop

OPSET = 18
TOLERANCE = 1e-4


class ExportError(Exception):
    pass

log = logging.getLogger(__name__)


def load_generator(checkpoint: str | Path) -> tuple[Generator, dict[str, Any]]:
    state = load_checkpoint(checkpoint)
    try:
        gcfg = GeneratorConfig(**state["generator_config"])
    except (KeyError, ValueError, TypeError) as e:
        raise ExportError(f"'{checkpoint}' is not an acquire-vf training checkpoint "
                          f"(expected a checkpoints/*.pt written by 'acquire-vf train'): "
                          f"{type(e).__name__}: {e}") from e
    G = Generator(gcfg)
    G.load_state_dict(state["generator"])
    return G.eval(), state


def export(checkpoint: str | Path, out: str | Path, *, name: str | None = None,
           sizes: list[tuple[int, int]] | None = None) -> tuple[ModelCard, dict[str, float]]:
    """Write ``out`` (ONNX) and its card; return the card and the check's max errors by size."""
    out = Path(out)
    G, state = load_generator(checkpoint)
    cfg = G.cfg
    m = cfg.multiple_of
    write_onnx(G, out)
    try:
        errors = check_export(G, out, sizes or default_check_sizes(m))
    except Exception:
        out.unlink(missing_ok=True)
        raise
    recipe = state["recipe"]
    card = ModelCard(
        name=name or out.stem, task=recipe["task"], inputs=tuple(state["inputs"]),
        output=state["target"],
        normalisation={k: Normalisation(**v) for k, v in state["normalisation"].items()},
        tile=recipe["export"]["tile"], overlap=recipe["export"]["overlap"], multiple_of=m,
        preset=recipe["preset"], width=cfg.width, depth=cfg.depth,
        residual=cfg.residual, parameters=count_parameters(G),
        gflop_per_256=round(gflop(G, cfg.in_channels), 3),
        onnx_sha256=sha256_file(out), opset=OPSET,
        training={
            "recipe": recipe["name"], "recipe_text": state["recipe_text"],
            "steps": state["step"], "seed": recipe["seed"], "data": recipe["data"],
            "data_root": state["data_root"], "splits": state["splits"],
            "best_val_mae": state["best_val_mae"], "world_size": state["world_size"],
            "equalize_inputs": recipe["train"]["equalize"],
            "command": _command(state, recipe, checkpoint, out),
            "provenance": {**state.get("provenance", {}),
                           "checkpoint": str(Path(checkpoint).resolve()),
                           "engine": str(out.resolve())},
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "held_out": recipe.get("held_out"), "final_test": recipe.get("final_test"),
        },
        targets=tuple(recipe.get("targets") or ()),
        metrics={"export_check_max_abs_error": errors},
    )
    card = card.model_copy(update={"input_stats": training_input_stats(card, recipe)})
    card.save(out)
    return card, errors


def _command(state: dict[str, Any], recipe: dict[str, Any], checkpoint: str | Path,
             out: Path) -> str:
    """The commands that made this engine: the recipe file that was trained (as typed; older
    checkpoints, which did not record it, name the shipped recipe of that name)."""
    given = (state.get("provenance") or {}).get("recipe_path") or \
        f"training/{recipe['name']}.toml"
    return f"acquire-vf train {given} && acquire-vf export {checkpoint} --out {out}"


def training_input_stats(card: ModelCard, recipe: dict[str, Any]) -> dict[str, Any]:
    """The live input checks' statistics (:func:`~acquire_vf.inference.input_stats`) of the
    training split's inputs; empty, with a warning, when the training data is not at hand."""
    from acquire_vf.config import Recipe, data_root
    from acquire_vf.inference import input_stats
    from acquire_vf.pairs import read_pairs

    root = Path(str(card.training.get("data_root") or ""))
    root = data_root(str(root))
    if not root.is_dir():
        log.warning("no input statistics in the card: training data '%s' not found", root)
        return {}
    spec = Recipe.model_validate({"name": card.name, "task": card.task, "seed": recipe["seed"],
                                  "data": {**recipe["data"], "path": str(root),
                                           "simulate": None}}).data
    data = read_pairs(spec, root, seed=recipe["seed"], require_splits=False)
    pairs = (data.train or data.val or data.test)[:64]
    return {c: input_stats([p.inputs[i] for p in pairs], card.normalisation[c])
            for i, c in enumerate(card.inputs)}


def write_onnx(G: Generator, out: Path) -> None:
    """Trace ``G`` (eval mode) to ONNX at ``out`` with dynamic batch, height and width."""
    m = G.cfg.multiple_of
    out.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, G.cfg.in_channels, 2 * m, 2 * m)
    batch, h, w = (torch.export.Dim("batch", min=1, max=256), torch.export.Dim("h", min=1),
                   torch.export.Dim("w", min=1))
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notices: not relevant here
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # torch-internal deprecation notices
            program = torch.onnx.export(
                G.eval(), (example,), dynamo=True, opset_version=OPSET, input_names=["input"],
                output_names=["output"], dynamic_shapes={"x": {0: batch, 2: m * h, 3: m * w}},
                optimize=True, verbose=False)
            if program is None:
                raise ExportError("torch.onnx.export returned no program")
            program.save(str(out))
    finally:
        quiet.setLevel(level)


def export_untrained(preset: str, in_channels: int, out: Path, *, task: str = "synthesis",
                     tile: int = 512) -> ModelCard:
    """An engine with random weights, for speed measurements only (speed does not depend on
    the weights). Its card says so: ``training.untrained = true``."""
    from acquire_vf.training._models import PRESETS

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(in_channels, **PRESETS[preset])).eval()
    write_onnx(G, out)
    check_export(G, out, [(G.cfg.multiple_of, G.cfg.multiple_of)])
    names = tuple(f"in{i}" for i in range(in_channels))
    norm = Normalisation(low=100.0, high=4000.0)
    card = ModelCard(
        name=out.stem, task=task, inputs=names, output="out",
        normalisation={**{n: norm for n in names}, "out": norm}, tile=tile, overlap=32,
        multiple_of=G.cfg.multiple_of, preset=preset, width=G.cfg.width, depth=G.cfg.depth,
        parameters=count_parameters(G), gflop_per_256=round(gflop(G, in_channels), 3),
        onnx_sha256=sha256_file(out), opset=OPSET, training={"untrained": True})
    card.save(out)
    return card


def default_check_sizes(m: int) -> list[tuple[int, int]]:
    """Minimum, typical tile, large frame, odd size."""
    return [(m, m), (256, 256), (1024, 1024), (m * 3 + 5, m * 2 + 17)]


def check_export(G: Generator, onnx_path: Path, sizes: list[tuple[int, int]],
                 ) -> dict[str, float]:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(onnx_path)), full_check=True)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    errors = {}
    for h, w in sizes:
        x = rng.uniform(-1, 1, (1, G.cfg.in_channels, h, w)).astype(np.float32)
        xp, (oh, ow) = pad_to_multiple(x, G.cfg.multiple_of)
        with torch.no_grad():
            ref = G(torch.from_numpy(xp)).numpy()[..., :oh, :ow]
        got = sess.run(None, {"input": xp})[0][..., :oh, :ow]
        err = float(np.abs(ref - got).max())
        errors[f"{h}x{w}"] = err
        if not err < TOLERANCE:
            raise ExportError(f"ONNX Runtime differs from PyTorch by {err:.2e} at {h}x{w} "
                              f"(expected < {TOLERANCE:g})")
    print("export check: onnx.checker ok; ONNX Runtime vs PyTorch max |diff| "
          + ", ".join(f"{k}: {v:.1e}" for k, v in errors.items()), file=sys.stderr)
    return errors
