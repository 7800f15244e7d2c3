"""Transposed convolutions rewritten as sub-pixel convolutions, exactly, so INT8 pays.

ONNX Runtime quantises ``Conv`` (``QLinearConv``, 2.3x the fp32 rate on this machine's
convolutions) but not ``ConvTranspose``: in the quantised U-Net the seven upsampling layers ran
in float between a dequantise and a quantise, 74% of the INT8 engine's time and slower than in
the fp32 engine (ONNX Runtime's profiler, ``docs/inference.md``). A stride-2 transposed
convolution is four ordinary convolutions on its input, one per output phase (even or odd row,
even or odd column), interleaved: one ``Conv`` with a 2 x 2 kernel and four times the output
channels, then ``DepthToSpace``. The rewrite is exact (the same sums, in another order); it
applies to the layers this project's generators export (kernel 3, stride 2, padding 1,
output padding 1, no groups or dilation) and leaves any other node as it is.

For ``ConvTranspose(k=3, s=2, p=1, output_padding=1)``, output ``o`` gathers input ``i`` through
tap ``k`` where ``o = 2 i - 1 + k``: an even output ``2m`` takes ``x[m]`` through tap 1; an odd
one ``2m + 1`` takes ``x[m]`` through tap 2 and ``x[m + 1]`` through tap 0. So a 2 x 2
convolution over offsets {0, 1} (input padded by one at the bottom and right) with, per phase,
``TAP[phase][offset]`` = {even: (1, none), odd: (2, 0)} in each direction gives every phase.

**The interleave's layout** (``layout``). ONNX Runtime runs ``QLinearConv`` channels-last
(NHWC) and wraps each in transposes to the graph's NCHW; ``DepthToSpace`` is NCHW only, so each
upsampling layer paid a transpose out, a ``DepthToSpace`` on bytes and a transpose back, and
the U-Net's concatenations ran NCHW between them: 37% of the INT8 engine's time (profiler,
``cps_dna``, four 512 x 512 tiles). With ``layout="nhwc"`` the interleave is written
channels-last: transpose to NHWC, reshape the 4C channels to (2, 2, C), swap the row phase
past the columns, reshape to (2H, 2W, C), transpose back. ONNX Runtime's transpose optimiser
cancels the outer transposes against those around the convolutions, so the decoder stays
channels-last throughout (concatenations on the last axis) and the interleave moves C-byte
runs instead of single bytes. (The quantiser dequantises a tensor for its ``Shape`` reader;
``acquire_vf.quantize`` points that reader at the quantised tensor.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

TAP = {0: (1, None), 1: (2, 0)}
"""Per output phase (0 even, 1 odd), the transposed kernel's tap at input offset 0 and 1."""


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _rewritable(node: Any, inits: dict[str, Any]) -> bool:
    a = _attrs(node)
    return (node.op_type == "ConvTranspose" and a.get("group", 1) == 1
            and list(a.get("strides", [])) == [2, 2]
            and list(a.get("kernel_shape", [])) == [3, 3]
            and list(a.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and list(a.get("output_padding", [0, 0])) == [1, 1]
            and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and len(node.input) >= 2 and node.input[1] in inits
            and (len(node.input) < 3 or node.input[2] in inits))


def subpixel_weights(w_t: np.ndarray, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The 2 x 2 ``Conv`` weight (4 Cout, Cin, 2, 2) and bias of a transposed convolution's
    weight (Cin, Cout, 3, 3): output channel ``(py * 2 + px) * Cout + c``, as ``DepthToSpace``
    in DCR mode reads it."""
    cin, cout = w_t.shape[:2]
    w = np.zeros((4 * cout, cin, 2, 2), w_t.dtype)
    for py in (0, 1):
        for px in (0, 1):
            block = w[(py * 2 + px) * cout:(py * 2 + px + 1) * cout]
            for dy in (0, 1):
                ky = TAP[py][dy]
                for dx in (0, 1):
                    kx = TAP[px][dx]
                    if ky is not None and kx is not None:
                        block[:, :, dy, dx] = w_t[:, :, ky, kx].T
    b = np.tile(bias if bias is not None else np.zeros(cout, w_t.dtype), 4)
    return w, b.astype(w_t.dtype)


def _nhwc_shuffle(stem: str, phases: str, output: str) -> tuple[list[Any], list[Any]]:
    """Nodes and initialisers interleaving ``phases`` (N, 4C, H, W; DCR order) into ``output``
    (N, C, 2H, 2W) through channels-last."""
    from onnx import helper, numpy_helper

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> Any:
        return helper.make_node(op, inputs, [out], name=f"{stem}_{out.rsplit('_', 1)[-1]}",
                                **attrs)

    const = {f"{stem}_split": np.array([0, 0, 0, 2, 2, -1], np.int64),
             f"{stem}_grow": np.array([1, 2, 2, 1], np.int64),
             f"{stem}_four": np.array([1, 1, 1, 4], np.int64)}
    nodes = [
        node("Transpose", [phases], f"{stem}_nhwc", perm=[0, 2, 3, 1]),
        node("Reshape", [f"{stem}_nhwc", f"{stem}_split"], f"{stem}_split6"),
        node("Transpose", [f"{stem}_split6"], f"{stem}_interleave", perm=[0, 1, 3, 2, 4, 5]),
        node("Shape", [f"{stem}_nhwc"], f"{stem}_inshape"),  # (N, H, W, 4C)
        node("Mul", [f"{stem}_inshape", f"{stem}_grow"], f"{stem}_grown"),
        node("Div", [f"{stem}_grown", f"{stem}_four"], f"{stem}_outshape"),  # (N, 2H, 2W, C)
        node("Reshape", [f"{stem}_interleave", f"{stem}_outshape"], f"{stem}_up"),
        helper.make_node("Transpose", [f"{stem}_up"], [output], name=f"{stem}_nchw",
                         perm=[0, 3, 1, 2]),
    ]
    return nodes, [numpy_helper.from_array(v, k) for k, v in const.items()]


def rewrite_transposed_convs(model: Any, *, layout: str = "nchw") -> tuple[Any, int]:
    """``model`` with each rewritable ``ConvTranspose`` as ``Conv`` + an interleave of its
    phases: ``DepthToSpace`` (``layout="nchw"``) or the channels-last form ONNX Runtime's INT8
    kernels run best (``"nhwc"``, module docstring); the number rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"subpixel: layout 'nchw' or 'nhwc' expected, got '{layout}'")
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        if not _rewritable(node, inits):
            nodes.append(node)
            continue
        w_t = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
        w, b = subpixel_weights(w_t, bias)
        stem = f"{node.name or node.output[0]}_subpixel"
        graph.initializer.extend([numpy_helper.from_array(w, f"{stem}_w"),
                                  numpy_helper.from_array(b, f"{stem}_b")])
        phases = f"{stem}_phases"
        nodes.append(helper.make_node("Conv", [node.input[0], f"{stem}_w", f"{stem}_b"],
                                      [phases], name=f"{stem}_conv", kernel_shape=[2, 2],
                                      pads=[0, 0, 1, 1], strides=[1, 1]))
        if layout == "nhwc":
            more, consts = _nhwc_shuffle(stem, phases, node.output[0])
            nodes.extend(more)
            graph.initializer.extend(consts)
        else:
            nodes.append(helper.make_node("DepthToSpace", [phases], list(node.output),
                                          name=f"{stem}_d2s", blocksize=2, mode="DCR"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model, count
