"""Offline prediction on saved images: the live loop's engine, tiling and normalisation."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from acquire_vf._errors import InputImageError
from acquire_vf.config import Compute
from acquire_vf.inference._factory import create_engine


def read_inputs(paths: Sequence[Path], channels: Sequence[str]) -> list[np.ndarray]:
    """One 2-D image per input channel: one TIFF each, or one multi-channel TIFF (C, Y, X)."""
    images = []
    tiff_log = logging.getLogger("tifffile")
    for p in paths:
        level = tiff_log.level
        tiff_log.setLevel(logging.ERROR)  # its warnings would split the one-line error
        try:
            with tifffile.TiffFile(p) as tf:
                axes = tf.series[0].axes if tf.series else ""
                img = tf.asarray()
        except FileNotFoundError:
            raise InputImageError(f"input image not found: '{p}'") from None
        except Exception as e:
            raise InputImageError(f"'{p}' is not a readable TIFF: {e}") from e
        finally:
            tiff_log.setLevel(level)
        if img.size == 0:
            raise InputImageError(f"'{p}' is not a readable TIFF: it holds no image data")
        if "S" in axes:  # samples per pixel: an RGB(A) picture, not microscope channels
            raise InputImageError(f"'{p}': expected grey images (one channel per TIFF, or a "
                                  f"(C, Y, X) stack), got an RGB image of shape {img.shape} "
                                  f"(axes {axes}); save each channel as its own grey TIFF")
        images.extend([img] if img.ndim == 2 else list(img) if img.ndim == 3 else [])
        if img.ndim not in (2, 3):
            raise InputImageError(f"'{p}': expected a 2-D image or a (C, Y, X) stack, got "
                                  f"shape {img.shape}")
    if len(images) != len(channels):
        raise InputImageError(f"the engine takes {len(channels)} input channel(s) "
                              f"{list(channels)} in that order, got {len(images)} image(s)")
    for img in images:
        if not np.issubdtype(img.dtype, np.integer) and not np.issubdtype(img.dtype,
                                                                            np.floating):
            raise InputImageError(f"expected integer or float pixels, got {img.dtype}")
        if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
            raise InputImageError("an input image contains NaN or inf")
    return images


def predict(model: Path, inputs: Sequence[Path], out: Path, compute: Compute,
            backend: str | None = None, gate_for: Any = None) -> dict[str, Any]:
    """The engine on saved images; with ``gate_for`` (``pipeline.gate_for``, passed in by the
    caller: the gate lives above this layer) a refocus engine's output goes through the refocus
    gate, as live, and the sidecar records the choice."""
    engine = create_engine(model, compute, backend=backend)
    try:
        images = read_inputs(inputs, engine.card.inputs)
        pred, qc = engine.infer(images)
    finally:
        engine.close()
    if gate_for is not None and engine.card.task == "refocus":
        pred = _gated(model, engine.card, images[0], pred, qc, compute, gate_for)
    out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out, pred, photometric="minisblack", metadata={
        "acquire-vf": "VIRTUAL (predicted)", "engine": engine.card.name,
        "sha256": engine.card.onnx_sha256, "backend": engine.backend})
    info = {"output": out.name, "inputs": [str(p) for p in inputs],
            "shape": list(pred.shape), "dtype": str(pred.dtype),
            "engine": engine.card.name, "sha256": engine.card.onnx_sha256,
            "backend": engine.backend, "qc": _plain(qc)}
    sidecar(out).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return {**info, **qc}


def _gated(model: Path, card: Any, seen: np.ndarray, pred: np.ndarray, qc: dict[str, Any],
           compute: Compute, gate_for: Any) -> np.ndarray:
    """The refocus gate's frame (as live: learned if consistent, else deconvolved, else the
    camera's), deciding by the defocus estimator of the engine's stain shipped beside it when
    there is one (no closed loop seeds ``predict``); its choice goes into ``qc``."""
    from acquire_vf.inference._defocus import create_estimator_beside

    z = (card.training.get("data") or {}).get("z_range_um", (-12.0, 8.0))
    est = create_estimator_beside(model, card.output, compute)
    try:
        gate = gate_for(card, (float(z[0]), float(z[1])), estimator=est)
        if gate is None:
            return pred
        decision = gate.choose(seen, pred)
    finally:
        if est is not None:
            est.close()
    qc.update(decision.qc())
    if est is not None:
        qc["refocus_defocus_by"] = est.card.name
    return decision.frame.astype(pred.dtype, copy=False)


def sidecar(out: Path) -> Path:
    """The JSON beside ``predict``'s output: what made it, and its QC."""
    return out.with_name(out.name + ".json")


def _plain(qc: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in qc.items()}
