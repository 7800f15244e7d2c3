"""A model card's engine: normalisation, tiling, a backend runner, QC flags.

Normalisation follows the card exactly as training applied it: fixed per-channel ranges, so no
per-frame image statistics are computed (a full ``np.percentile`` per frame would cost a fifth
of a small model's time). QC per virtual frame: the fraction of input pixels outside the
training range, the saturated fraction of the output, NaN or inf in the output, and the focus
score of the output.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard
from acquire_vf.focus import focus_score
from acquire_vf.inference._equalise import equalise
from acquire_vf.inference._protocol import Runner
from acquire_vf.inference._tiling import run_tiled

log = logging.getLogger(__name__)
OUT_OF_RANGE_LIMIT = 0.05
"""Flag a frame when more than this fraction of input pixels lies outside the training range."""


class InferenceError(Exception):
    """An input that does not fit the engine (shape, dtype, channel count)."""


class TiledEngine:
    """Implements :class:`Engine` for any :class:`Runner`."""

    def __init__(self, card: ModelCard, runner: Runner, *, tile: int | None = None,
                 overlap: int | None = None, batch: int = 4) -> None:
        self.card = card
        self.runner = runner
        self.backend = runner.backend
        self.precision = "int8" if card.quantization else runner.precision
        m = card.multiple_of
        self.tile = max(m, ((tile or card.tile) // m) * m)
        self.overlap = card.overlap if overlap is None else overlap
        self.batch = batch
        self.chosen: dict[str, Any] | None = None
        """The measured choice this engine runs (``build-engine --profile``), if any."""
        self._in = [card.normalisation[c] for c in card.inputs]
        self._out = card.normalisation[card.output]
        self._equalise = bool((card.training or {}).get("equalize_inputs"))
        """Inputs histogram-equalised frame by frame (``[train] equalize``), not scaled."""
        self._max = np.iinfo(np.dtype(card.dtype)).max

    def warmup(self, frame_shape: tuple[int, int] | None = None) -> None:
        """Run the shapes the tiler will use, so the first live frames do not pay for plan
        loading, CUDA graph capture or kernel selection: with ``frame_shape`` (the camera's)
        one blank frame through the tiler (the tile shrinks to fit the frame, the last batch
        is smaller), else full batches and single tiles of the configured tile."""
        c = len(self.card.inputs)
        slot = getattr(self.runner, "frame_slot", None)
        if frame_shape is not None and slot is not None:  # the ring's pages are touched too
            x = slot((c, *frame_shape), **self._geometry)
            x.fill(0.0)
            self.runner.run_frame(x)  # type: ignore[attr-defined]  # lent with frame_slot
            return
        if frame_shape is not None:
            self._tiled(np.zeros((c, *frame_shape), np.float32))
            return
        for n in sorted({self.batch, 1}, reverse=True):
            self.runner.run(np.zeros((n, c, self.tile, self.tile), np.float32))

    def normalise(self, frames: Sequence[np.ndarray], slot: Any = None) -> np.ndarray:
        """The frames as the network's (C, H, W) input; with ``slot`` (a hosted runner's
        :meth:`frame_slot`) written straight into the engine host's shared memory."""
        if len(frames) != len(self._in):
            raise InferenceError(f"engine '{self.card.name}' takes {len(self._in)} input(s) "
                                 f"{list(self.card.inputs)}, got {len(frames)}")
        shapes = {f.shape for f in frames}
        if len(shapes) != 1 or frames[0].ndim != 2:
            raise InferenceError(f"expected {len(frames)} 2-D frame(s) of one size, got shapes "
                                 f"{[f.shape for f in frames]}")
        for f in frames:
            if not (np.issubdtype(f.dtype, np.integer) or np.issubdtype(f.dtype, np.floating)):
                raise InferenceError(f"expected integer or float pixels, got {f.dtype}")
        x = slot((len(frames), *frames[0].shape), **self._geometry) if slot is not None else \
            np.empty((len(frames), *frames[0].shape), np.float32)
        for n, f, xi in zip(self._in, frames, x, strict=True):
            if self._equalise:  # the whole frame, as training equalised it
                xi[...] = equalise(f)
            else:
                n.forward(f, out=xi)
        return x

    def _tiled(self, x: np.ndarray) -> np.ndarray:
        return run_tiled(x, self.runner.run, tile=self.tile, overlap=self.overlap,
                         batch=self.batch, multiple=self.card.multiple_of)

    @property
    def _geometry(self) -> dict[str, int]:
        return {"tile": self.tile, "overlap": self.overlap, "batch": self.batch,
                "multiple": self.card.multiple_of}

    def infer(self, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, Any]]:
        # in the engine host the whole frame set crosses at once: normalised straight into a
        # slot of its shared-memory ring, tiled, run and stitched there, one call per set
        slot = getattr(self.runner, "frame_slot", None)
        x = self.normalise(frames, slot)
        run_frame = getattr(self.runner, "run_frame", None)
        y = run_frame(x) if slot is not None and run_frame is not None else self._tiled(x)
        qc = self._qc(x, y)
        if not qc["finite"]:
            raise InferenceError(f"engine '{self.card.name}' ({self.backend}) produced NaN or "
                                 "inf; the virtual frame is skipped")
        out = self._out.inverse(y)
        dtype = frames[0].dtype  # camera units in the input's own type: float stays float
        if np.issubdtype(dtype, np.integer):
            top = np.iinfo(dtype).max
            np.rint(out, out=out)
            np.clip(out, 0, top, out=out)
            out = out.astype(dtype)
            qc["saturated_fraction"] = round(float(np.count_nonzero(out[::4, ::4] >= top)
                                                   / out[::4, ::4].size), 5)
        else:
            out = out.astype(dtype)
        qc["saturated"] = bool(qc.get("saturated_fraction", 0.0) > 0.01)
        qc["focus_score"] = round(focus_score(out, step=4), 5)
        return out, qc

    def _qc(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        # normalised inputs: the training range is [-1, 1]; allow a quarter of it as headroom
        sub = x[:, ::4, ::4]
        outside = float(np.count_nonzero((sub > 1.5) | (sub < -1.5)) / sub.size)
        finite = bool(np.isfinite(y).all())
        return {"input_out_of_range_fraction": round(outside, 5),
                "input_out_of_range": bool(outside > OUT_OF_RANGE_LIMIT),
                "finite": finite, "nan_or_inf": not finite}

    def close(self) -> None:
        self.runner.close()
