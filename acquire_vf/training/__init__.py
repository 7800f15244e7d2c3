"""Training: the VirFluoNet conditional GAN, dataset loaders, DDP training, ONNX export.

Needs the ``train`` extra (torch). Importing this package does not import torch; its functions
do, so ``acquire-vf --help`` works on a microscope PC without it.
"""

from __future__ import annotations

from typing import Any

from acquire_vf._errors import MissingExtraError


def require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("torch", "train") from None


def __getattr__(name: str) -> Any:
    lazy = {"train": "_loop", "export": "_export", "ExportError": "_export",
            "Generator": "_models", "Discriminator": "_models", "GeneratorConfig": "_models",
            "PRESETS": "_models", "load_pairs": "_data", "export_untrained": "_export",
            "PatchSampler": "_data", "data_root": "_data", "train_defocus": "_defocus",
            "export_defocus": "_defocus", "DefocusNet": "_defocus",
            "load_checkpoint": "_checkpoint", "CheckpointError": "_checkpoint"}
    if name in lazy:
        if name not in ("load_pairs", "PatchSampler", "data_root"):
            require_torch()
        import importlib

        return getattr(importlib.import_module(f"acquire_vf.training.{lazy[name]}"), name)
    raise AttributeError(name)
