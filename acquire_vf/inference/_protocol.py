"""The contracts: a backend ``Runner`` executes the network; an ``Engine`` runs a model card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from acquire_vf.card import ModelCard


@runtime_checkable
class Runner(Protocol):
    """Executes the network on normalised batches: (N, C, H, W) float32 -> (N, 1, H, W).

    H and W are multiples of the card's ``multiple_of``. One per backend module.
    """

    backend: str
    """``onnxruntime``, ``torch``, ``tensorrt`` or ``openvino``."""
    device: str
    """Where it runs, in words (e.g. ``CPUExecutionProvider``, ``cuda:0``)."""
    precision: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class Engine(Protocol):
    """Raw frames in, a predicted frame out, in the original intensity range and dtype."""

    card: ModelCard
    backend: str
    precision: str

    def warmup(self) -> None: ...

    def infer(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        """Inputs in the card's order; returns the prediction and its QC flags."""
        ...

    def close(self) -> None: ...
