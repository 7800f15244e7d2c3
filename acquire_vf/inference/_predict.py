"""Offline prediction on saved images: the live loop's engine, tiling and normalisation."""

from __future__ import annotations

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
            img = tifffile.imread(p)
        except FileNotFoundError:
            raise InputImageError(f"input image not found: '{p}'") from None
        except Exception as e:
            raise InputImageError(f"'{p}' is not a readable TIFF: {e}") from e
        finally:
            tiff_log.setLevel(level)
        if img.size == 0:
            raise InputImageError(f"'{p}' is not a readable TIFF: it holds no image data")
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
            backend: str | None = None) -> dict[str, Any]:
    engine = create_engine(model, compute, backend=backend)
    try:
        images = read_inputs(inputs, engine.card.inputs)
        pred, qc = engine.infer(images)
    finally:
        engine.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out, pred, photometric="minisblack", metadata={
        "acquire-vf": "VIRTUAL (predicted)", "engine": engine.card.name,
        "sha256": engine.card.onnx_sha256, "backend": engine.backend})
    return {"shape": pred.shape, "dtype": str(pred.dtype), "backend": engine.backend, **qc}
