"""Per-pixel uncertainty by test-time augmentation: the engine run on flipped and rotated
copies of its inputs, each output turned back, and their per-pixel spread.

A conditional GAN's generator is not equivariant to flips and 90° rotations; where its output
depends on how the input happens to be oriented, it is guessing (invented texture, a cell it
is unsure of). The spread across the passes measures that; their mean is the virtual frame.
``docs/verification.md`` reports how well it tracks the real error on held-out data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TRANSFORMS: tuple[tuple[int, bool], ...] = (
    (0, False), (0, True), (2, False), (2, True), (1, False), (3, False), (1, True), (3, True))
"""(quarter turns, mirrored): identity first, then the transforms that keep the shape, then
those that transpose it; the first ``passes`` are used."""


def _forward(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    a = a[..., ::-1] if mirror else a
    return np.ascontiguousarray(np.rot90(a, turns, axes=(-2, -1)))


def _back(a: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    a = np.rot90(a, -turns, axes=(-2, -1))
    return a[..., ::-1] if mirror else a


def infer_with_uncertainty(engine: Any, frames: Sequence[np.ndarray], passes: int,
                           ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(virtual frame, per-pixel spread, qc)``: the mean and standard deviation of
    ``passes`` (2 to 8) augmented runs of ``engine.infer``, in the input's intensity units.

    The QC is the identity pass's, with ``uncertainty_mean``: the spread's frame mean on the
    card's output scale (its output range mapped to [0, 1]).
    """
    if not 2 <= passes <= len(TRANSFORMS):
        raise ValueError(f"uncertainty passes: expected 2 to {len(TRANSFORMS)}, got {passes}")
    qc: dict[str, Any] = {}
    dtype = frames[0].dtype
    outs = []
    for i, (turns, mirror) in enumerate(TRANSFORMS[:passes]):
        out, q = engine.infer([_forward(f, turns, mirror) for f in frames])
        outs.append(_back(out, turns, mirror))
        if i == 0:
            qc = q
    # float32 (camera units of at most 16 bits: exact in 24 of mantissa); the mean and the
    # spread about it, in two passes over the stack (no sum of squares to cancel)
    stack = np.stack(outs).astype(np.float32)
    mean = stack.mean(axis=0)
    spread = np.sqrt(np.square(stack - mean).mean(axis=0))
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        virtual = np.clip(np.rint(mean), 0, top).astype(dtype)
    else:
        virtual = mean.astype(dtype)
    norm = engine.card.normalisation[engine.card.output]
    qc["uncertainty_mean"] = round(float(spread.mean()) / max(norm.high - norm.low, 1e-9), 6)
    qc["uncertainty_passes"] = passes
    return virtual, spread, qc


def spread_frame(spread: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The spread as a frame of the dataset's pixel type (intensity units, rounded)."""
    if np.issubdtype(dtype, np.integer):
        return np.clip(np.rint(spread), 0, np.iinfo(dtype).max).astype(dtype)
    return spread.astype(dtype)
