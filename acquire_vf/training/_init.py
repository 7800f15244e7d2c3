"""Fine-tuning: a generator that starts as an existing engine (``acquire-vf train --init``).

From a shipped engine (``NAME.onnx`` with its card) the weights are read out of the ONNX
graph. The exporter folded each BatchNorm into the convolution before it (``W' = W gamma /
sqrt(var + eps)``, bias ``beta - mean gamma / sqrt(var + eps)``), so the convolution takes the
folded weight and its BatchNorm becomes the identity with the folded bias as its shift. From a
training checkpoint (``checkpoints/*.pt``) the state dict loads as it was saved.

In both cases the BatchNorm layers are frozen for fine-tuning (their statistics stay, their
affine weights still learn), as is usual with small data sets: a calibration has a few
positions, and batch statistics of a few patches would move the engine away from what it
was. The generator then computes exactly what the engine computed, before the first step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from acquire_vf._errors import DataError
from acquire_vf.training._models import Generator

FINE_TUNE_LR_FACTOR = 0.1
"""Fine-tuning takes a tenth of the recipe's learning rate: it adjusts an engine, it does not
train one."""


class _FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm that always normalises with its running statistics and never updates them."""

    def train(self, mode: bool = True) -> _FrozenBatchNorm2d:
        return super().train(False)


def freeze_batchnorm(model: nn.Module) -> int:
    """Freeze every BatchNorm2d of ``model`` (state dict unchanged); how many."""
    n = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = _FrozenBatchNorm2d
            m.train(False)
            n += 1
    return n


def check_compatible(card: Any, recipe: Any, inputs: tuple[str, ...], target: str) -> None:
    """One line when the engine cannot start this recipe's generator."""
    have = {"task": card.task, "inputs": tuple(card.inputs), "output": card.output,
            "preset": card.preset, "residual": bool(card.residual)}
    want = {"task": recipe.task, "inputs": tuple(inputs), "output": target,
            "preset": recipe.preset, "residual": bool(recipe.residual)}
    diff = [f"{k} {want[k]!r} (engine: {have[k]!r})" for k in want if want[k] != have[k]]
    if diff:
        raise DataError(f"--init '{card.name}': expected an engine of the recipe's kind, got "
                        f"one that differs in {'; '.join(diff)}")


def onnx_state(engine: Path, G: Generator) -> dict[str, torch.Tensor]:
    """``G``'s state dict rebuilt from the folded weights of an exported engine."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(engine))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    state = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        parent, _, index = module.rpartition(".")
        if key in init:  # convolutions: their (folded) weights and biases
            out[key] = _tensor(init[key], value, key, engine)
        elif index.isdigit() and f"{parent}.{int(index) - 1}.weight_bias" in init:
            conv = f"{parent}.{int(index) - 1}"  # a BatchNorm after this convolution
            eps = float(dict(G.named_modules())[module].eps)
            if leaf == "bias":
                out[key] = _tensor(init[f"{conv}.weight_bias"], value, key, engine)
            elif leaf == "running_var":
                out[key] = torch.full_like(value, 1.0 - eps)
            else:  # weight 1; running_mean and num_batches_tracked 0
                out[key] = torch.ones_like(value) if leaf == "weight" else \
                    torch.zeros_like(value)
        else:
            raise DataError(f"--init '{engine}': expected the weights of a {G.cfg.depth}-level "
                            f"generator, but the engine has none for '{key}' (exported by "
                            "another version of acquire-vf?)")
    return out


def _tensor(array: np.ndarray, like: torch.Tensor, key: str, engine: Path) -> torch.Tensor:
    if tuple(array.shape) != tuple(like.shape):
        raise DataError(f"--init '{engine}': '{key}' has shape {tuple(array.shape)}, the "
                        f"recipe's generator needs {tuple(like.shape)} (another width or "
                        "depth?)")
    return torch.from_numpy(np.array(array, dtype=np.float32))


def load_initial(G: Generator, init: Path, recipe: Any, inputs: tuple[str, ...],
                 target: str) -> dict[str, Any]:
    """Load ``init`` (an engine or a checkpoint) into ``G`` and freeze its BatchNorm; what
    was loaded, for the card."""
    import hashlib

    if init.suffix == ".onnx":
        from acquire_vf.card import ModelCard

        card = ModelCard.load(init, verify=True)
        check_compatible(card, recipe, inputs, target)
        G.load_state_dict(onnx_state(init, G))
        what: dict[str, Any] = {"engine": card.name, "normalisation": {
            k: v.model_dump() for k, v in card.normalisation.items()}}
    else:
        from acquire_vf.training._checkpoint import load_checkpoint

        state = load_checkpoint(init)
        if "generator" not in state:
            raise DataError(f"--init '{init}': expected an engine (.onnx) or a training "
                            "checkpoint with a generator, got neither")
        try:
            G.load_state_dict(state["generator"])
        except RuntimeError as e:
            raise DataError(f"--init '{init}': the checkpoint's generator does not fit the "
                            f"recipe's ({str(e).splitlines()[0]})") from None
        what = {"checkpoint": str(init),
                "normalisation": state.get("normalisation")}
    frozen = freeze_batchnorm(G)
    return {"path": str(init.resolve()), "sha256": hashlib.sha256(init.read_bytes()).hexdigest(),
            "frozen_batchnorm": frozen, "lr_factor": FINE_TUNE_LR_FACTOR, **what}


def start_normalisation(data: Any, normalisation: dict[str, Any] | None) -> Any:
    """The data normalised as the engine's inputs and output were (its card's ranges), so the
    generator's first output is the engine's; the data's own ranges where it has none."""
    import dataclasses

    from acquire_vf.card import Normalisation

    if not normalisation:
        return data
    missing = [c for c in (*data.inputs, data.target) if c not in normalisation]
    if missing:
        raise DataError(f"--init: the engine has no normalisation for {missing}; expected one "
                        f"for every channel of the recipe ({[*data.inputs, data.target]})")
    return dataclasses.replace(data, normalisation={
        c: Normalisation.model_validate(normalisation[c]) for c in (*data.inputs, data.target)})
