"""Transposed convolutions as sub-pixel convolutions (:mod:`acquire_vf.subpixel`): exact, so
the INT8 engine quantises its upsampling too."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from acquire_vf.subpixel import rewrite_transposed_convs
from tests._helpers import ROOT


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_the_rewrite_is_exact_and_leaves_no_transposed_convolution(tmp_path, layout) -> None:
    src = ROOT / "engines" / "cps_dna.onnx"
    model, n = rewrite_transposed_convs(onnx.load(str(src)), layout=layout)
    assert n == 6
    ops = [node.op_type for node in model.graph.node]
    assert "ConvTranspose" not in ops
    assert ops.count("DepthToSpace") == (6 if layout == "nchw" else 0)
    out = tmp_path / "sub.onnx"
    onnx.save(model, str(out))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    a, b = (ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            for p in (src, out))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 2, 128, 192)).astype(np.float32)
    ya, yb = (s.run(None, {"input": x})[0] for s in (a, b))
    assert ya.shape == yb.shape == (2, 1, 128, 192)
    assert np.abs(ya - yb).max() < 1e-4  # the same sums, in another order


def test_other_transposed_convolutions_are_left_alone() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3, 4, 4), np.float32), "w")
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                            kernel_shape=[4, 4])  # kernel 4: not this project's layer
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                             [1, 3, 16, 16])],
                              [w])
    model, n = rewrite_transposed_convs(helper.make_model(graph))
    assert n == 0 and [nd.op_type for nd in model.graph.node] == ["ConvTranspose"]


def test_the_int8_engine_runs_channels_last_and_dequantises_only_its_output(tmp_path) -> None:
    """As ONNX Runtime optimises the INT8 engine: no ``DepthToSpace`` between layouts, no
    tensor dequantised for a reader of its shape, concatenations on the channels-last axis
    (the graph that made INT8 pay: ``docs/performance.md``)."""
    from acquire_vf.quantize import quantize_engine

    src = ROOT / "engines" / "cps_dna.onnx"
    tiles = [np.random.default_rng(i).uniform(-1, 1, (2, 128, 128)).astype(np.float32)
             for i in range(2)]
    quantize_engine(src, tmp_path / "q.onnx", tiles=tiles)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), so, providers=["CPUExecutionProvider"])
    ops = [n for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    kinds = [n.op_type for n in ops]
    assert "DepthToSpace" not in kinds and "ConvTranspose" not in kinds
    assert kinds.count("DequantizeLinear") == 1  # the output's, before the Tanh
    assert kinds.count("QLinearConv") == 12
    concat_axes = [a.i for n in ops if n.op_type == "QLinearConcat" for a in n.attribute
                   if a.name == "axis"]
    assert concat_axes == [3] * 5
    assert kinds.count("Transpose") <= 8  # in, out and one interleave per upsampling
