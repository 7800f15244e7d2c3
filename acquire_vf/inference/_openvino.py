"""OpenVINO on the CPU: the same ONNX file the other backends read, compiled by OpenVINO
(made for convolutional networks on x86 CPUs; issue 37). fp32 here; an int8 engine is its
QDQ graph (``acquire-vf quantize``), which OpenVINO runs in int8 where the CPU has VNNI or AMX.
Compiled models are cached (OpenVINO's own model cache, beside the TensorRT plans).

Each input shape is compiled static, on its first call: the INT8 engine's channels-last
interleave (:mod:`acquire_vf.subpixel`) computes its reshapes from the input's shape, which
OpenVINO's dynamic-shape path ran 2.8x slower (82 against 30 ms, ``cps_dna``, four 512 x 512
tiles, 2 threads); static, it runs as fast as ONNX Runtime's."""

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
        self._core, self._config, self._path = core, config, onnx_path
        try:
            self._model = core.read_model(str(onnx_path))
            core.compile_model(self._model, "CPU", config)  # a file it cannot run fails here
        except Exception as e:  # OpenVINO raises its own exception types
            raise self._error(e) from e
        self._requests: dict[tuple[int, ...], object] = {}
        self._lock = threading.Lock()  # one request per shape: one frame at a time
        self.device = f"CPU ({core.get_property('CPU', 'FULL_DEVICE_NAME')})"
        self.precision = precision

    def _error(self, e: Exception) -> EngineFileError:
        msg = " ".join(str(e).split())[:240]
        return EngineFileError(f"'{self._path}' could not be compiled by OpenVINO: {msg}")

    def _request_for(self, shape: tuple[int, ...]) -> object:
        request = self._requests.get(shape)
        if request is None:
            model = self._model.clone()
            try:
                model.reshape({0: list(shape)})
                compiled = self._core.compile_model(model, "CPU", self._config)
            except Exception as e:
                raise self._error(e) from e
            request = self._requests[shape] = compiled.create_infer_request()
        return request

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        with self._lock:
            request = self._request_for(tuple(x.shape))
            request.infer({0: x})  # type: ignore[attr-defined]
            return np.array(request.get_output_tensor(0).data, copy=True)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._requests.clear()
        self._model = None
