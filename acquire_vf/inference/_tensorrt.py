"""TensorRT backend (extra ``tensorrt``): build from ONNX, cache the plan, run with cuda-python.

Build: the ONNX parser, fp32/fp16 (or int8 with an entropy calibrator fed from training
patches), one optimisation profile for the tile and batch shapes, a persistent timing cache.
Run: pinned host buffers and device buffers allocated once per engine, asynchronous copies and
``execute_async_v3`` on one stream, and, where the shape is fixed, the whole copy-run-copy
sequence captured once as a CUDA graph and replayed. cuda-python (``cuda-bindings``) rather
than pycuda: prebuilt wheels, maintained by NVIDIA, used by TensorRT's own samples, and no
second CUDA context next to PyTorch.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard, sha256_file
from acquire_vf.inference import _plan_cache as plans
from acquire_vf.inference._errors import BackendUnavailable, EngineFileError

log = logging.getLogger(__name__)


def _modules() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable('TensorRT is not installed: pip install "acquire-vf[tensorrt]"'
                                 ) from e
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as e:
            raise BackendUnavailable('cuda-python is not installed: pip install '
                                     '"acquire-vf[tensorrt]"') from e
    return trt, cudart


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...); raise on error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else tuple(rest)


def plan_key(card: ModelCard, onnx_path: Path, precision: str, tile: int, batch: int,
             device: int = 0) -> plans.PlanKey:
    trt, cudart = _modules()
    prop = _check(cudart.cudaGetDeviceProperties(device))
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    c = len(card.inputs)
    m = card.multiple_of
    return plans.PlanKey(
        onnx_sha256=sha256_file(onnx_path), tensorrt=trt.__version__,
        cuda=str(_check(cudart.cudaRuntimeGetVersion())), gpu=name.strip("\x00"),
        compute_capability=f"{prop.major}.{prop.minor}", precision=precision,
        shapes=((1, c, m, m), (batch, c, tile, tile), (batch, c, tile, tile)))


def build_plan(card: ModelCard, onnx_path: Path, key: plans.PlanKey, out: Path,
               calibration: Iterator[np.ndarray] | None = None) -> Path:
    """Build and serialise a plan for ``key``; keep the timing cache beside it."""
    trt, _ = _modules()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineFileError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if key.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif key.precision == "int8":
        if calibration is None:
            raise BackendUnavailable("int8 needs calibration patches (the card's training data)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = _calibrator(trt, calibration, out.with_suffix(".calib"))
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *key.shapes)
    config.add_optimization_profile(profile)
    timing = plans.cache_dir() / "timing.cache"
    cache = config.create_timing_cache(timing.read_bytes() if timing.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineFileError(f"TensorRT could not build a plan for '{onnx_path}'")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    timing.write_bytes(bytes(config.get_timing_cache().serialize()))
    plans.write_metadata(out, key)
    log.info("built TensorRT plan %s (%s)", out.name, key.describe())
    return out


def _calibrator(trt: Any, batches: Iterator[np.ndarray], cache_file: Path) -> Any:
    _, cudart = _modules()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._it = batches
            self._dev: Any = None
            self._shape: tuple[int, ...] = ()

        def get_batch_size(self) -> int:
            return self._shape[0] if self._shape else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            x = next(self._it, None)
            if x is None:
                return None
            x = np.ascontiguousarray(x, np.float32)
            if self._dev is None:
                self._dev = _check(cudart.cudaMalloc(x.nbytes))
                self._shape = x.shape
            _check(cudart.cudaMemcpy(self._dev, x.ctypes.data, x.nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
            return [int(self._dev)]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()


class TensorRTRunner:
    """Runs a cached (or freshly built) plan. Buffers sized for ``batch`` x tile, allocated once."""

    backend = "tensorrt"

    def __init__(self, onnx_path: str | Path, card: ModelCard, *, precision: str = "fp16",
                 tile: int, batch: int, device: int = 0, cuda_graphs: bool = True,
                 calibration: Iterator[np.ndarray] | None = None) -> None:
        trt, cudart = _modules()
        self.trt, self.cudart = trt, cudart
        self.precision = precision
        self.device = f"cuda:{device}"
        key = plan_key(card, Path(onnx_path), precision, tile, batch, device)
        path = plans.plan_path(card.name, key)
        reason = plans.mismatch(path, key)
        engine = None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if reason is None:
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                log.warning("cached plan %s failed to load; rebuilding", path.name)
        else:
            log.info("building TensorRT plan: %s", reason)
        if engine is None:
            build_plan(card, Path(onnx_path), key, path, calibration)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise EngineFileError(f"TensorRT built '{path}' but cannot load it")
        self.engine = engine
        self.context = engine.create_execution_context()
        self.names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in self.names
                          if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output = next(n for n in self.names if n != self.input)
        self.stream = _check(cudart.cudaStreamCreate())
        c = len(card.inputs)
        self.max_in = batch * c * tile * tile * 4
        self.max_out = batch * tile * tile * 4
        self.h_in = _check(cudart.cudaMallocHost(self.max_in))
        self.h_out = _check(cudart.cudaMallocHost(self.max_out))
        self.d_in = _check(cudart.cudaMalloc(self.max_in))
        self.d_out = _check(cudart.cudaMalloc(self.max_out))
        self.context.set_tensor_address(self.input, int(self.d_in))
        self.context.set_tensor_address(self.output, int(self.d_out))
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], Any] = {}

    def _host(self, ptr: int, n: int) -> np.ndarray:
        buf = (ctypes.c_float * n).from_address(int(ptr))
        return np.ctypeslib.as_array(buf)

    def _enqueue(self, nbytes_in: int, nbytes_out: int) -> None:
        cu = self.cudart
        _check(cu.cudaMemcpyAsync(self.d_in, self.h_in, nbytes_in,
                                  cu.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise RuntimeError("TensorRT execution failed")
        _check(cu.cudaMemcpyAsync(self.h_out, self.d_out, nbytes_out,
                                  cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if x.nbytes > self.max_in:
            raise ValueError(f"batch {x.shape} exceeds the plan's buffers")
        n_out = x.shape[0] * x.shape[2] * x.shape[3]
        self._host(self.h_in, x.size)[:] = x.ravel()
        self.context.set_input_shape(self.input, x.shape)
        cu = self.cudart
        if self.cuda_graphs:
            graph = self._graphs.get(x.shape)
            if graph is None:  # capture copy-in, run, copy-out once for this shape
                self._enqueue(x.nbytes, n_out * 4)  # first run outside capture (allocations)
                _check(cu.cudaStreamSynchronize(self.stream))
                _check(cu.cudaStreamBeginCapture(
                    self.stream, cu.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
                self._enqueue(x.nbytes, n_out * 4)
                captured = _check(cu.cudaStreamEndCapture(self.stream))
                graph = _check(cu.cudaGraphInstantiate(captured, 0))
                self._graphs[x.shape] = graph
            _check(cu.cudaGraphLaunch(graph, self.stream))
        else:
            self._enqueue(x.nbytes, n_out * 4)
        _check(cu.cudaStreamSynchronize(self.stream))
        return self._host(self.h_out, n_out).reshape(x.shape[0], 1, x.shape[2], x.shape[3]).copy()

    def close(self) -> None:
        cu = self.cudart
        for g in self._graphs.values():
            cu.cudaGraphExecDestroy(g)
        self._graphs.clear()
        for ptr in (self.d_in, self.d_out):
            cu.cudaFree(ptr)
        for ptr in (self.h_in, self.h_out):
            cu.cudaFreeHost(ptr)
        cu.cudaStreamDestroy(self.stream)
        self.context = None
        self.engine = None

    def __enter__(self) -> TensorRTRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
