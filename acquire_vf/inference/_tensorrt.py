"""TensorRT backend (extra ``tensorrt``): build from ONNX, cache the plan, run with cuda-python.

Build (TensorRT 10 Python API): the ONNX parser; fp32 with TF32 cleared (``BuilderFlag.TF32``
is on by default, so an "fp32" plan would otherwise run TF32 convolutions), fp16, or int8
from an explicitly quantised (Q/DQ) ONNX that ``acquire-vf quantize`` writes: the calibrator
API is deprecated since TensorRT 10.1 and needs a calibration profile with dynamic shapes,
explicit quantisation needs neither. One optimisation profile spans the tiler's shapes; the
timing cache is one per GPU and TensorRT version, attached with ``ignore_mismatch=False`` and
its result checked; every file is written atomically.

Run: pinned host buffers and device buffers allocated once per engine, asynchronous copies and
``execute_async_v3`` on one stream. CUDA graphs: one execution context per input shape (the
tiler changes shape within a frame: full batches, then the remainder), each capturing its own
graph once, as NVIDIA's guidance asks (a graph replays the shapes it was captured with;
"Working with CUDA Graphs" in the TensorRT developer guide, NVIDIA/TensorRT issue 3798). The
contexts share one block of activation memory (``ExecutionContextAllocationStrategy.
USER_MANAGED``), which is safe because they run one at a time on one stream. Capture is
thread-local; a capture that fails is ended, the error cleared and that shape runs without a
graph, as trtexec does. The device is made current on the calling thread before any call
(TensorRT and CUDA bind to the thread's current device; the pipeline runs on its own thread).
cuda-python (``cuda-bindings``) rather than pycuda: prebuilt wheels, maintained by NVIDIA,
used by TensorRT's own samples (``samples/python/common_runtime.py``).
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard, sha256_file
from acquire_vf.inference import _plan_cache as plans
from acquire_vf.inference._errors import BackendUnavailable, EngineFileError

log = logging.getLogger(__name__)
WORKSPACE = 2 << 30
MAX_GRAPHS = 8
"""Captured shapes kept (the tiler uses two or three per frame size)."""


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


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


def _check(result: Any) -> Any:
    """cuda-python returns (error, value...); raise on error, return the value(s)."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"CUDA error {err}")
    return None if not rest else rest[0] if len(rest) == 1 else tuple(rest)


def builder_settings(precision: str, qdq: bool = False) -> str:
    """What the builder is told besides the network (part of the plan key). A Q/DQ engine is
    built as a strongly typed network with no precision flags: the TensorRT documentation
    ("Explicit Quantization": "Use explicit quantization with Strong Typing. Precision-control
    build flags are not required and should not be specified")."""
    if qdq:
        return f"workspace={WORKSPACE >> 20}MiB;strongly_typed;int8=qdq"
    flags = {"fp32": "tf32=off", "fp16": "fp16=on", "int8": "fp16=on"}[precision]
    return f"workspace={WORKSPACE >> 20}MiB;{flags}"


def plan_key(card: ModelCard, onnx_path: Path, precision: str, tile: int, batch: int,
             device: int = 0) -> plans.PlanKey:
    trt, cudart = _modules()
    prop = _check(cudart.cudaGetDeviceProperties(device))
    name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
    c = len(card.inputs)
    m = card.multiple_of
    key = plans.PlanKey(
        onnx_sha256=sha256_file(onnx_path), tensorrt=trt.__version__,
        cuda=str(_check(cudart.cudaRuntimeGetVersion())), gpu=name.strip("\x00"),
        compute_capability=f"{prop.major}.{prop.minor}", precision=precision,
        shapes=((1, c, m, m), (batch, c, tile, tile), (batch, c, tile, tile)),
        builder=builder_settings(precision, qdq=bool(card.quantization)))
    return dataclasses.replace(key, timing_cache=plans.timing_cache_path(key).name)


def build_plan(card: ModelCard, onnx_path: Path, key: plans.PlanKey, out: Path) -> Path:
    """Build and serialise a plan for ``key``; keep the timing cache beside it."""
    trt, _ = _modules()
    if key.precision == "int8" and not card.quantization:
        raise BackendUnavailable("int8 on TensorRT runs explicitly quantised (Q/DQ) engines: "
                                 "make one with 'acquire-vf quantize' and name it in the profile")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    typed = bool(card.quantization) and hasattr(trt.NetworkDefinitionCreationFlag,
                                                 "STRONGLY_TYPED")
    # explicit batch is the only mode in TensorRT 10; Q/DQ engines are strongly typed
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineFileError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
    if typed:
        pass  # the network's types decide: no precision flags (see builder_settings)
    elif card.quantization:  # TensorRT before strong typing: Q/DQ needs the INT8 flag
        config.set_flag(trt.BuilderFlag.INT8)
    elif key.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: "fp32" would run TF32
    else:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, *key.shapes)
    config.add_optimization_profile(profile)
    timing = plans.cache_dir() / key.timing_cache if key.timing_cache else None
    cache = config.create_timing_cache(timing.read_bytes() if timing and timing.exists()
                                       else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # a cache from another device or version: build without it, and replace it after
        log.warning("timing cache %s does not fit this GPU or TensorRT; starting a new one",
                    timing)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineFileError(f"TensorRT could not build a plan for '{onnx_path}'")
    plans.write_atomic(out, bytes(serialized))
    plans.write_metadata(out, key)
    built_cache = config.get_timing_cache()
    if timing is not None and built_cache is not None:  # None when no cache was attached
        plans.write_atomic(timing, bytes(built_cache.serialize()))
    log.info("built TensorRT plan %s (%s)", out.name, key.describe())
    return out


class TensorRTRunner:
    """Runs a cached (or freshly built) plan. Buffers sized for ``batch`` x tile, allocated once;
    one execution context (and CUDA graph) per input shape, sharing activation memory."""

    backend = "tensorrt"

    def __init__(self, onnx_path: str | Path, card: ModelCard, *, precision: str = "fp16",
                 tile: int, batch: int, device: int = 0, cuda_graphs: bool = True) -> None:
        trt, cudart = _modules()
        self.trt, self.cudart = trt, cudart
        self.precision = precision
        self.device_index = device
        self.device = f"cuda:{device}"
        self._current()
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
            build_plan(card, Path(onnx_path), key, path)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise EngineFileError(f"TensorRT built '{path}' but cannot load it")
        self.plan_was_cached = reason is None
        self.engine = engine
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
        size = int(getattr(engine, "device_memory_size_v2", 0) or engine.device_memory_size)
        self.d_work = _check(cudart.cudaMalloc(max(size, 1)))
        self.work_size = size
        self.cuda_graphs = cuda_graphs
        self._contexts: OrderedDict[tuple[int, ...], dict[str, Any]] = OrderedDict()

    def _current(self) -> None:
        """Make the engine's GPU current on this thread (each thread has its own)."""
        _check(self.cudart.cudaSetDevice(self.device_index))

    def _context(self, shape: tuple[int, ...]) -> dict[str, Any]:
        """The execution context for ``shape``: its input shape and addresses set once."""
        slot = self._contexts.get(shape)
        if slot is not None:
            self._contexts.move_to_end(shape)
            return slot
        trt = self.trt
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is not None:
            ctx = self.engine.create_execution_context(strategy.USER_MANAGED)
            if hasattr(ctx, "set_device_memory"):  # TensorRT >= 10.1
                ctx.set_device_memory(int(self.d_work), self.work_size)
            else:
                ctx.device_memory = int(self.d_work)
        else:
            ctx = self.engine.create_execution_context()
        ctx.set_input_shape(self.input, shape)
        ctx.set_tensor_address(self.input, int(self.d_in))
        ctx.set_tensor_address(self.output, int(self.d_out))
        slot = {"context": ctx, "graph": None, "graph_failed": False}
        self._contexts[shape] = slot
        while len(self._contexts) > MAX_GRAPHS:
            self._release(self._contexts.popitem(last=False)[1])
        return slot

    def _host(self, ptr: int, n: int) -> np.ndarray:
        buf = (ctypes.c_float * n).from_address(int(ptr))
        return np.ctypeslib.as_array(buf)

    def _enqueue(self, ctx: Any, nbytes_in: int, nbytes_out: int) -> None:
        cu = self.cudart
        _check(cu.cudaMemcpyAsync(self.d_in, self.h_in, nbytes_in,
                                  cu.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        if not ctx.execute_async_v3(int(self.stream)):
            raise CudaError("TensorRT execution failed")
        _check(cu.cudaMemcpyAsync(self.h_out, self.d_out, nbytes_out,
                                  cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))

    def _capture(self, slot: dict[str, Any], nbytes_in: int, nbytes_out: int) -> None:
        """Capture copy-in, run, copy-out as a graph; on failure end the capture, clear the
        error and run this shape without a graph (trtexec's fallback)."""
        cu = self.cudart
        ctx = slot["context"]
        self._enqueue(ctx, nbytes_in, nbytes_out)  # shape-dependent setup outside capture
        _check(cu.cudaStreamSynchronize(self.stream))
        graph = None
        try:
            _check(cu.cudaStreamBeginCapture(
                self.stream, cu.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
            try:
                self._enqueue(ctx, nbytes_in, nbytes_out)
            finally:
                graph = _check(cu.cudaStreamEndCapture(self.stream))
            slot["graph"] = _check(cu.cudaGraphInstantiate(graph, 0))
        except CudaError as e:
            log.warning("CUDA graph capture failed for %s (%s): this shape runs without one",
                        ctx, e)
            cu.cudaGetLastError()  # clear the sticky capture error
            slot["graph_failed"] = True
        finally:
            if graph is not None:
                cu.cudaGraphDestroy(graph)  # the instantiated graph stands on its own

    def run(self, x: np.ndarray) -> np.ndarray:
        self._current()
        x = np.ascontiguousarray(x, np.float32)
        if x.nbytes > self.max_in:
            raise ValueError(f"batch {x.shape} exceeds the plan's buffers")
        n_out = x.shape[0] * x.shape[2] * x.shape[3]
        self._host(self.h_in, x.size)[:] = x.ravel()
        slot = self._context(tuple(x.shape))
        cu = self.cudart
        if self.cuda_graphs and slot["graph"] is None and not slot["graph_failed"]:
            self._capture(slot, x.nbytes, n_out * 4)
        if slot["graph"] is not None:
            _check(cu.cudaGraphLaunch(slot["graph"], self.stream))
        else:
            self._enqueue(slot["context"], x.nbytes, n_out * 4)
        _check(cu.cudaStreamSynchronize(self.stream))
        return self._host(self.h_out, n_out).reshape(x.shape[0], 1, x.shape[2], x.shape[3]).copy()

    def _release(self, slot: dict[str, Any]) -> None:
        if slot["graph"] is not None:
            self.cudart.cudaGraphExecDestroy(slot["graph"])
        slot["graph"] = slot["context"] = None

    def close(self) -> None:
        cu = self.cudart
        self._current()
        cu.cudaStreamSynchronize(self.stream)
        for slot in self._contexts.values():
            self._release(slot)
        self._contexts.clear()
        for ptr in (self.d_in, self.d_out, self.d_work):
            cu.cudaFree(ptr)
        for ptr in (self.h_in, self.h_out):
            cu.cudaFreeHost(ptr)
        cu.cudaStreamDestroy(self.stream)
        self.engine = None

    def __enter__(self) -> TensorRTRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
