"""``acquire-vf quantize``: a statically quantised INT8 engine for CPU-only rigs.

ONNX Runtime's static quantisation in QDQ format: weights int8 per output channel, activations
uint8 per tensor, ranges calibrated (MinMax) on tiles of the engine's own training split,
normalised exactly as live frames are. The result is an ONNX file with its own card:
``quantization`` names the fp32 engine it came from (name, sha256, path), the format, and the
calibration data; ``evaluate`` runs the fp32 engine beside it as a baseline and reports the
cost (``int8_psnr_cost_db``); ``bench`` the speed-up (``int8_over_fp32_speedup``). The
generators' transposed convolutions are first rewritten, exactly, as sub-pixel convolutions
(:mod:`acquire_vf.subpixel`): ONNX Runtime quantises ``Conv`` but runs ``ConvTranspose`` in
float, which held the INT8 engine to 1.15x the fp32 one; their phases are interleaved
channels-last, where ONNX Runtime runs its int8 convolutions (1.62x became 1.7-2.2x).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import DataError
from acquire_vf.card import ModelCard, sha256_file

log = logging.getLogger(__name__)


def calibration_tiles(card: ModelCard, n: int, tile: int, data: Path | None = None
                      ) -> list[np.ndarray]:
    """``n`` normalised (C, tile, tile) tiles from the engine's training split (the centre of
    each training field), or from ``data`` in the same layout."""
    from acquire_vf.config import Recipe, data_root
    from acquire_vf.pairs import read_pairs

    root = data or Path(str(card.training.get("data_root") or ""))
    root = data_root(str(root))
    spec = dict(card.training.get("data") or {})
    if not spec or not root.is_dir():
        raise DataError(f"quantize: calibration data (the engine's training data, card "
                        f"training.data_root, or --data) expected at '{root}'; not found")
    rec = Recipe.model_validate({"name": card.name, "task": card.task,
                                 "seed": card.training.get("seed", 0),
                                 "data": {**spec, "path": str(root), "simulate": None}})
    found = read_pairs(rec.data, root, seed=rec.seed, require_splits=False)
    pairs = (found.train or found.val or found.test)[:n]
    norms = [card.normalisation[c] for c in card.inputs]
    tiles = []
    for p in pairs:
        if card.training.get("equalize_inputs"):  # as the engine sees its inputs
            from acquire_vf.inference import equalise

            x = np.stack([equalise(c) for c in p.inputs])
        else:
            x = np.stack([nm.forward(p.inputs[i]) for i, nm in enumerate(norms)])
        h, w = x.shape[-2:]
        s = min(tile, h, w) // card.multiple_of * card.multiple_of
        y0, x0 = (h - s) // 2, (w - s) // 2
        tiles.append(np.ascontiguousarray(x[:, y0:y0 + s, x0:x0 + s], np.float32))
    if not tiles:
        raise DataError(f"quantize: no training images in '{root}'")
    return tiles


def quantize_engine(src: Path, out: Path, *, frames: int = 32, tile: int | None = None,
                    tiles: list[np.ndarray] | None = None, data: Path | None = None,
                    layout: str = "nhwc") -> ModelCard:
    """Write the INT8 engine ``out`` (and its card) from the fp32 engine ``src``, calibrated
    on its training data (or on ``tiles``: ``bench``'s speed measurement, where the ranges do
    not matter). ``layout``: how the upsampling's phases are interleaved
    (:func:`acquire_vf.subpixel.rewrite_transposed_convs`; ``nchw`` only to measure it)."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    card = ModelCard.load(src)
    if card.quantization:
        raise DataError(f"quantize: '{src}' is already quantised (from "
                        f"{card.quantization.get('from')})")
    synthetic = tiles is not None
    calib = tiles if tiles is not None else calibration_tiles(card, frames, tile or card.tile,
                                                              data)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calib)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {"input": x[None]}

    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its advice
    import tempfile

    import onnx

    from acquire_vf.subpixel import rewrite_transposed_convs

    # ONNX Runtime has no int8 ConvTranspose: rewritten exactly as Conv + a channels-last
    # interleave first (acquire_vf.subpixel: its int8 convolutions run channels-last)
    model, rewritten = rewrite_transposed_convs(onnx.load(str(src)), layout=layout)
    with tempfile.TemporaryDirectory(prefix="acquire-vf-quantize-") as tmp:
        fp32 = Path(tmp) / "subpixel.onnx"
        onnx.save(model, str(fp32))
        quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=_minmax())
    onnx.save(shapes_without_dequantising(onnx.load(str(out))), str(out))
    q: dict[str, Any] = {
        "from": card.name, "from_sha256": card.onnx_sha256, "from_path": str(src.resolve()),
        "format": "QDQ", "weights": "int8, per output channel", "activations": "uint8, per tensor",
        "upsampling": (f"{rewritten} transposed convolutions as sub-pixel Conv + a "
                       f"{'channels-last interleave' if layout == 'nhwc' else 'DepthToSpace'} "
                       "(exact; quantised where ConvTranspose would run in float)"
                       if rewritten else "no transposed convolutions"),
        "calibration": (f"{len(calib)} synthetic tiles (speed measurement only)" if synthetic
                        else f"{len(calib)} tiles of {calib[0].shape[-1]} px, the centres of "
                             f"the first training fields of {data or 'its training data'} "
                             f"(MinMax)"),
        "onnxruntime": ort.__version__}
    new = card.model_copy(update={"name": out.stem, "onnx_sha256": sha256_file(out),
                                  "quantization": q, "metrics": {}, "acceptance": {}})
    new.save(out)
    return new


def shapes_without_dequantising(model: Any) -> Any:
    """``model`` with each ``Shape`` that read a ``DequantizeLinear``'s output reading its
    quantised input instead (the same shape), and dequantisations left unread removed: the
    quantiser dequantises a whole tensor for any float reader, a shape included."""
    graph = model.graph
    dq = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    for n in graph.node:
        if n.op_type == "Shape" and n.input[0] in dq:
            n.input[0] = dq[n.input[0]].input[0]
    read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    keep = [n for n in graph.node
            if not (n.op_type == "DequantizeLinear" and n.output[0] not in read)]
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _minmax() -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return CalibrationMethod.MinMax
