"""OpenVINO on the CPU: the same ONNX file the other backends read, compiled by OpenVINO
(made for convolutional networks on x86 CPUs; issue 37). fp32 here; an int8 engine is its
QDQ graph (``acquire-vf quantize``), which OpenVINO runs in int8 where the CPU has VNNI or AMX.
Compiled models are cached (OpenVINO's own model cache, beside the TensorRT plans)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from acquire_vf.inference._errors import BackendUnavailable, EngineFileError


class OpenVINORunner:
    backend = "openvino"

    def __init__(self, onnx_path: Path, *, threads: int = 0, precision: str = "fp32",
                 cache_dir: Path | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise BackendUnavailable("OpenVINO is not installed (pip install "
                                     "'acquire-vf[openvino]')") from e
        if precision != "fp32":
            raise BackendUnavailable(f"OpenVINO here runs the engine's fp32 graph (or the "
                                     f"int8 one acquire-vf quantize writes), the profile asks "
                                     f"for {precision}")
        core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        # f32 kept: on a CPU with bf16 (AVX-512 BF16, AMX) OpenVINO would otherwise run the
        # fp32 graph in bf16 by default (2e-3 off ONNX Runtime here, in [-1, 1] units)
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY",
                                     "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self._compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        except Exception as e:  # OpenVINO raises its own exception types
            msg = " ".join(str(e).split())[:240]
            raise EngineFileError(f"'{onnx_path}' could not be compiled by OpenVINO: "
                                  f"{msg}") from e
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one request: one frame at a time
        self.device = f"CPU ({core.get_property('CPU', 'FULL_DEVICE_NAME')})"
        self.precision = precision

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(x, np.float32)})
            return np.array(self._request.get_output_tensor(0).data, copy=True)

    def close(self) -> None:
        self._request = None
        self._compiled = None
