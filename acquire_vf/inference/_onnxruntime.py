"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers with
``onnxruntime-gpu``. Providers are passed explicitly, never guessed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acquire_vf.inference._errors import BackendUnavailable, EngineFileError

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeRunner:
    backend = "onnxruntime"

    def __init__(self, onnx_path: str | Path, *, device: str = "cpu", threads: int = 0,
                 precision: str = "fp32", spin: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("onnxruntime is not installed "
                                     "(pip install onnxruntime)") from e
        providers = PROVIDERS[device]
        available = ort.get_available_providers()
        if providers[0] not in available:
            raise BackendUnavailable(f"ONNX Runtime has no {providers[0]} here (available: "
                                     f"{', '.join(available)}); install onnxruntime-gpu")
        if precision != "fp32" and device == "cpu":
            raise BackendUnavailable(f"ONNX Runtime on CPU runs fp32 only, profile asks "
                                     f"for {precision}")
        if precision != "fp32":  # the CUDA provider runs the fp32 graph as it is
            raise BackendUnavailable(f"ONNX Runtime runs the engine's fp32 graph (on CUDA too),"
                                     f" profile asks for {precision}: use the tensorrt or "
                                     "torch backend")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1  # the sequential executor (the parallel one: 0.45x)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                                providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            msg = " ".join(str(e).split())[:240]
            raise EngineFileError(f"'{onnx_path}' is not a valid ONNX model: expected a file "
                                  f"written by 'acquire-vf export'; ONNX Runtime says: {msg}") \
                from e
        self.device = self.session.get_providers()[0]
        self.precision = precision
        self._input = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]

    def close(self) -> None:
        del self.session
