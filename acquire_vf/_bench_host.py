"""``acquire-vf bench``'s engine-host figures: what it costs to run the network in another
process. The hand-off is measured with a network that does no work (its output is its first
input channel), per 2048 x 2048 two-channel frame set (512-pixel tiles, overlap 32, batches of
4), two ways:

- ``handoff_ms_per_2048_frame_set``: the whole engine call hosted minus in this process,
  interleaved (normalising into the shared ring instead of a new array, the call, tiling and
  stitching in the host instead of here, the virtual frame read from the ring);
- ``host_call_ms_per_2048_frame_set``: the call alone, its time less the host's own time for
  the set (the message, both processes waking up); ``detail`` adds the CPU time the call costs
  the session's thread (``host_call_cpu_ms``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard, Normalisation, sha256_file
from acquire_vf.config import Compute


def null_engine(path: Path, tile: int = 512) -> Path:
    """An ONNX engine of two inputs whose output is its first input (a Slice), with a card."""
    import onnx
    from onnx import TensorProto, helper

    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 2, "h", "w"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 1, "h", "w"])
    inits = [helper.make_tensor(n, TensorProto.INT64, [1], [v])
             for n, v in (("starts", 0), ("ends", 1), ("axes", 1))]
    node = helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])
    graph = helper.make_graph([node], "null", [inp], [out], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    norm = Normalisation(low=100.0, high=4000.0)
    ModelCard(name=path.stem, task="synthesis", inputs=("in0", "in1"), output="out",
              normalisation={"in0": norm, "in1": norm, "out": norm}, tile=tile, overlap=32,
              multiple_of=32, preset="realtime", width=1, depth=1, parameters=0,
              gflop_per_256=0.0, onnx_sha256=sha256_file(path), opset=18,
              training={"untrained": True}).save(path)
    return path


def handoff(work: Path, reps: int,
            timer: Callable[[dict[str, Callable[[], Any]], int], dict[str, float]]
            ) -> dict[str, Any]:
    from acquire_vf.engine_host import EngineHost
    from acquire_vf.inference import create_engine

    path = null_engine(work / "null.onnx")
    cpu = Compute(backends=("onnxruntime",))
    rng = np.random.default_rng(1)
    frames = [rng.integers(100, 4000, (2048, 2048), dtype=np.uint16) for _ in range(2)]
    host = EngineHost(deadline_s=60.0, restarts=0)
    try:
        hosted = create_engine(path, cpu, tile=512, overlap=32, batch=4, host=host)
        local = create_engine(path, cpu, tile=512, overlap=32, batch=4)
        t = timer({"hosted": lambda: hosted.infer(frames),
                   "in_process": lambda: local.infer(frames)}, reps)
        calls = [call_ms(hosted, frames) for _ in range(max(reps, 5))]
    finally:
        host.close()
    return {"hosted_ms": t["hosted"], "in_process_ms": t["in_process"],
            "handoff_ms_per_2048_frame_set": round(t["hosted"] - t["in_process"], 3),
            "host_call_ms_per_2048_frame_set": round(min(c[0] for c in calls), 3),
            "host_call_cpu_ms": round(min(c[1] for c in calls), 3)}


def call_ms(engine: Any, frames: list[np.ndarray]) -> tuple[float, float]:
    """One hosted frame-set call: its time less the host's own time for the set (the message
    and both processes waking up), and the CPU time it took the calling thread."""
    import time

    x = engine.normalise(frames, engine.runner.frame_slot)
    t0, c0 = time.perf_counter(), time.thread_time()
    engine.runner.run_frame(x)
    c1, t1 = time.thread_time(), time.perf_counter()
    return (t1 - t0) * 1e3 - engine.runner.host_ms, (c1 - c0) * 1e3


def int8_speedup(fp32: Path, work: Path, reps: int,
                 timer: Callable[[dict[str, Callable[[], Any]], int], dict[str, float]]
                 ) -> dict[str, Any]:
    """The INT8 engine (:mod:`acquire_vf.quantize`) against its fp32 engine: the model on a
    batch of four 512 x 512 tiles with ONNX Runtime on the CPU, interleaved."""
    from acquire_vf.card import ModelCard
    from acquire_vf.inference import create_engine
    from acquire_vf.quantize import quantize_engine

    card = ModelCard.load(fp32)
    rng = np.random.default_rng(2)
    c = len(card.inputs)
    tiles = [rng.uniform(-1, 1, (c, 512, 512)).astype(np.float32) for _ in range(4)]
    int8 = quantize_engine(fp32, work / f"{fp32.stem}_int8.onnx", tiles=tiles)
    cpu = Compute(backends=("onnxruntime",))
    a = create_engine(fp32, cpu, tile=512)
    b = create_engine(work / f"{int8.name}.onnx", cpu, tile=512)
    x = np.stack(tiles)
    t = timer({"fp32": lambda: a.runner.run(x), "int8": lambda: b.runner.run(x)}, reps)
    return {"fp32_ms": t["fp32"], "int8_ms": t["int8"],
            "int8_over_fp32_speedup": round(t["fp32"] / t["int8"], 3)}


def openvino_over_onnxruntime(work: Path, threads: int, reps: int,
                              timer: Callable[[dict[str, Callable[[], Any]], int],
                                              dict[str, float]]) -> dict[str, Any]:
    """OpenVINO against ONNX Runtime on the CPU, each with ``threads`` threads: the model on a
    batch of four 512 x 512 tiles, fp32 for the realtime and paper presets, and the realtime
    preset's INT8 (QDQ) graph (``int8_speedup`` wrote it), interleaved. ``{}`` without
    OpenVINO."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        return {}
    import functools

    from acquire_vf.inference import OnnxRuntimeRunner, OpenVINORunner

    out: dict[str, Any] = {}
    rng = np.random.default_rng(3)
    graphs = {"realtime_fp32": work / "realtime.onnx", "paper_fp32": work / "paper.onnx",
              "realtime_int8": work / "realtime_int8.onnx"}
    for key, onnx in graphs.items():
        if not onnx.is_file():
            continue
        ort = OnnxRuntimeRunner(onnx, threads=threads)
        ov = OpenVINORunner(onnx, threads=threads)
        x = rng.uniform(-1, 1, (4, 2, 512, 512)).astype(np.float32)
        t = timer({"onnxruntime": functools.partial(ort.run, x),
                   "openvino": functools.partial(ov.run, x)}, reps)
        out[key] = {"onnxruntime_ms": t["onnxruntime"], "openvino_ms": t["openvino"],
                    "openvino_over_onnxruntime": round(t["onnxruntime"] / t["openvino"], 3)}
        ov.close()
        ort.close()
    return out
