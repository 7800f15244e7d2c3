"""PyTorch backend: the reference, and the GPU path where TensorRT is absent.

The network is rebuilt from the ONNX file's own weights (the exporter folds BatchNorm into the
convolutions; any BatchNormalization left in the graph is folded here), so there is one engine
file per model and ONNX Runtime and PyTorch compute the same function. On CUDA: fp16 autocast,
channels-last memory, and CUDA graphs (one captured graph per input shape, at most
:data:`MAX_GRAPHS`, least recently used dropped; warmed up on a side stream before capture and
replayed with static buffers, as PyTorch's CUDA-graph documentation prescribes), which removes
the kernel-launch overhead of a small network. Each shape has one pinned host buffer, reused:
pinning memory per call costs more than the copy. The runner's GPU is made current on the
calling thread (the pipeline runs on its own thread; torch binds to the current device).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.inference._errors import BackendUnavailable, EngineFileError

log = logging.getLogger(__name__)


Convs = list[tuple[str, np.ndarray, np.ndarray]]
MAX_GRAPHS = 8


def read_unet_weights(onnx_path: str | Path) -> tuple[Convs, float, bool]:
    """(op, weight, bias) of every Conv/ConvTranspose in graph order, BatchNorm folded in;
    the LeakyReLU slope; whether the network is residual (the input also feeds the output)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:
        raise EngineFileError(f"'{onnx_path}' is not a valid ONNX file: {e}") from e
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs: Convs = []
    source = model.graph.input[0].name
    residual = any(source in node.input and node.op_type != "Conv" for node in model.graph.node)
    by_output: dict[str, int] = {}
    slope = 0.2
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = init[node.input[1]].astype(np.float32)
            n_out = w.shape[0] if node.op_type == "Conv" else w.shape[1]
            b = init[node.input[2]].astype(np.float32) if len(node.input) > 2 \
                else np.zeros(n_out, np.float32)
            convs.append((node.op_type, w, b))
            by_output[node.output[0]] = len(convs) - 1
        elif node.op_type == "BatchNormalization" and node.input[0] in by_output:
            k = by_output[node.input[0]]
            op, w, b = convs[k]
            gamma, beta, mean, var = (init[n].astype(np.float32) for n in node.input[1:5])
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(var + eps)
            w = (w * (scale[:, None, None, None] if op == "Conv" else
                      scale[None, :, None, None])).astype(np.float32)
            convs[k] = (op, w.astype(np.float32), ((b - mean) * scale + beta).astype(np.float32))
            by_output[node.output[0]] = k
        elif node.op_type == "LeakyRelu":
            slope = next((a.f for a in node.attribute if a.name == "alpha"), 0.2)
    return convs, slope, residual


def build_unet(convs: Convs, slope: float, residual: bool = False) -> Any:
    """The exported U-Net as a torch module (BatchNorm folded); residual: the output is
    ``clip(x[:, :1] + 2 tanh(.), -1, 1)``, as ``Generator`` computes it."""
    import torch
    from torch import nn

    n_down = sum(op == "Conv" for op, _, _ in convs)
    if n_down < 2 or len(convs) != 2 * n_down or any(op != "Conv" for op, _, _ in
                                                      convs[:n_down]):
        # the backend cannot run it (ONNX Runtime can): a fallback may take it
        raise BackendUnavailable("the torch backend runs acquire-vf U-Net generators only; "
                                 f"this ONNX graph is not one ({len(convs)} convolutions)")

    def layer(op: str, w: np.ndarray, b: np.ndarray) -> nn.Module:
        if op == "Conv":
            m: nn.Module = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], 2, 1)
        else:
            m = nn.ConvTranspose2d(w.shape[0], w.shape[1], w.shape[2], 2, 1, output_padding=1)
        m.weight.data = torch.from_numpy(np.ascontiguousarray(w))
        m.bias.data = torch.from_numpy(np.ascontiguousarray(b))
        return m

    class FoldedUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.ModuleList(layer(*c) for c in convs[:n_down])
            self.up = nn.ModuleList(layer(*c) for c in convs[n_down:])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = [self.down[0](x)]
            for conv in self.down[1:]:
                skips.append(conv(torch.nn.functional.leaky_relu(skips[-1], slope)))
            y = skips[-1]
            for i, conv in enumerate(self.up):
                if i > 0:
                    y = torch.cat([y, skips[-1 - i]], dim=1)
                y = conv(torch.relu(y))
            if residual:
                return (x[:, :1] + 2 * torch.tanh(y)).clamp(-1.0, 1.0)
            return torch.tanh(y)

    return FoldedUNet().eval()


class TorchRunner:
    backend = "torch"

    def __init__(self, onnx_path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                 cuda_graphs: bool = True, threads: int = 0) -> None:
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable('the torch backend needs PyTorch: pip install '
                                     '"acquire-vf[train]"') from e
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable("the torch backend was asked for CUDA, but no GPU is "
                                     "visible to PyTorch")
        if precision == "int8":
            raise BackendUnavailable("the torch backend runs fp32 or fp16, not int8")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendUnavailable("fp16 needs a GPU; on CPU the torch backend runs fp32")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.precision = precision
        self.dev = torch.device(device)
        model = build_unet(*read_unet_weights(onnx_path)).to(self.dev)
        if self.dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.cuda_graphs = cuda_graphs and self.dev.type == "cuda"
        self._graphs: OrderedDict[tuple[int, ...], tuple[Any, Any, Any]] = OrderedDict()
        self._pinned: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def _forward(self, x: Any) -> Any:
        with self.torch.autocast(self.dev.type, dtype=self.torch.float16,
                                 enabled=self.precision == "fp16"):
            return self.model(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            if self.dev.type != "cuda":
                return self._forward(torch.from_numpy(np.ascontiguousarray(x))).numpy()
            with torch.cuda.device(self.dev):
                host = self._host_buffer(tuple(x.shape))
                host.numpy()[...] = x
                t = host.to(self.dev, non_blocking=True).contiguous(
                    memory_format=torch.channels_last)
                if not self.cuda_graphs:
                    return self._forward(t).float().cpu().numpy()
                graph, static_in, static_out = self._graph_for(t)
                static_in.copy_(t)
                graph.replay()
                return static_out.float().cpu().numpy()

    def _host_buffer(self, shape: tuple[int, ...]) -> Any:
        """The pinned host buffer of ``shape``, made once (the copy waits on the stream
        before the buffer is written again: ``.cpu()`` above synchronises)."""
        buf = self._pinned.get(shape)
        if buf is None:
            buf = self.torch.empty(shape, dtype=self.torch.float32, pin_memory=True)
            self._pinned[shape] = buf
            while len(self._pinned) > MAX_GRAPHS:
                self._pinned.popitem(last=False)
        else:
            self._pinned.move_to_end(shape)
        return buf

    def _graph_for(self, t: Any) -> tuple[Any, Any, Any]:
        """One CUDA graph per shape, captured after warm-up on a side stream."""
        torch = self.torch
        key = tuple(t.shape)
        if key in self._graphs:
            self._graphs.move_to_end(key)
        else:
            static_in = t.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
            log.info("captured a CUDA graph for input %s", key)
            while len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        return self._graphs[key]

    def close(self) -> None:
        self._graphs.clear()
        self._pinned.clear()
        self.model = None
