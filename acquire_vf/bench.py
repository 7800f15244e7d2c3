"""``acquire-vf bench``: inference and pipeline speed as ratios measured side by side in one run.

Everything is timed on this machine in this process, so the ratios hold even where absolute
times do not travel (a noisy 2-core CI machine, a workstation). Engines of both presets are
made with random weights for the measurement (speed does not depend on the weights).

JSON keys (numbers; ``null`` where a backend is absent): ``ort_over_torch_speedup``,
``ort_fraction_of_matmul``, ``tiling_overhead_ratio``, ``pipeline_overhead_ratio``,
``latency_over_model_ratio`` (1 + the median time a virtual frame's latency adds to its
engine's, over the engine's median), ``acquisition_rate_ratio`` (the engine in the engine host; also
``acquisition_rate_ratio_slow_engine``, one 10-20x slower than the camera, and
``acquisition_rate_ratio_in_process``, the realtime engine in the session's process, and
``acquisition_rate_ratio_pymmcore_plus``, through the pymmcore-plus backend),
``handoff_ms_per_2048_frame_set`` (the engine host's hand-off, hosted minus in-process) and
``host_call_ms_per_2048_frame_set`` (the call alone, less the host's own time),
``int8_over_fp32_speedup`` (``acquire-vf quantize``), ``openvino_over_onnxruntime`` (per
graph: realtime and paper fp32, realtime int8; above 1: OpenVINO faster),
``best_cpu_fraction_of_matmul`` (per preset, the fastest of those paths and its share of the
matrix-multiply rate),
``uncertainty_cost_ratio`` (a virtual frame with its test-time-augmentation uncertainty,
2/4/8 passes, over one pass),
``write_mb_per_s`` (OME-TIFF and OME-Zarr at 2048 x 2048) and ``zarr_over_tiff_write_ratio``,
``gpu_2048_ms``, ``device``, and ``detail`` with every underlying time.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.config import Compute


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Best of ``repeats`` (ms): on a shared machine the minimum is the least disturbed run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(min(times), 3)


def interleaved_ms(fns: dict[str, Callable[[], Any]], repeats: int,
                   warmup: int = 3) -> dict[str, float]:
    """Best of ``repeats`` for each function, run in turn, so that every one of them meets
    the same machine state (thermal, other load, allocator warm-up)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: round(min(v), 3) for k, v in times.items()}


def matmul_gflops(n: int = 2048) -> float:
    """fp32 matrix multiply rate (numpy/BLAS), the reference for 'fraction of matmul'."""
    a = np.random.default_rng(0).random((n, n), np.float32)
    b = np.random.default_rng(1).random((n, n), np.float32)
    ms = _median_ms(lambda: a @ b, repeats=5)
    return round(2 * n**3 / (ms / 1e3) / 1e9, 1)


def best_cpu_fraction(paths: dict[str, Any], gflop_per_256: dict[str, float],
                      matmul: float) -> dict[str, Any]:
    """Per preset, the fastest CPU path measured side by side (``openvino_over_onnxruntime``'s
    batch of four 512 x 512 tiles, every core: ONNX Runtime and OpenVINO, fp32 and, for the
    realtime preset, INT8) and its rate as a fraction of the fp32 matrix-multiply rate. The
    work is the fp32 graph's multiply-adds whatever the path's precision: the fraction says
    how near the useful work comes to what the cores multiply, not their int8 peak."""
    out: dict[str, Any] = {}
    for key, times in paths.items():
        preset, precision = key.split("_")
        gflop = gflop_per_256[preset] * 4 * (512 / 256) ** 2
        for backend in ("onnxruntime", "openvino"):
            ms = times[f"{backend}_ms"]
            best = out.get(preset)
            if best is None or ms < best["ms"]:
                out[preset] = {"path": f"{backend} {precision}", "ms": ms,
                               "fraction": round(gflop / (ms / 1e3) / matmul, 3)}
    return out


def _cpu_flags() -> list[str]:
    """The CPU features int8 and bf16 kernels depend on, where Linux lists them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    return [f for f in ("avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16") if f in have]


def device_description() -> str:
    import os

    from acquire_vf.inference import cpu_model

    flags = _cpu_flags()
    desc = (f"{cpu_model()} ({platform.machine()}"
            + (f"; {', '.join(flags)}" if flags else "") + f"), {os.cpu_count()} CPU cores")
    try:
        import torch

        if torch.cuda.is_available():
            desc += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return desc


def run(json_path: Path | None = None, *, quick: bool = False,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    from acquire_vf.training import export_untrained

    work = Path(tempfile.mkdtemp(prefix="acquire-vf-bench-"))
    reps = 5 if quick else 7
    detail: dict[str, Any] = {"matmul_gflops": matmul_gflops()}
    progress(f"matmul: {detail['matmul_gflops']} GFLOP/s")
    import os

    cores = os.cpu_count() or 1
    cpu = Compute(backends=("onnxruntime",), threads=cores)  # like the matmul: every core
    engines = {}
    for preset in ("realtime", "paper"):
        card = export_untrained(preset, 2, work / f"{preset}.onnx")
        engines[preset] = card
    detail.update(_inference(engines, work, cpu, quick, reps, progress))
    rt = detail["realtime_512"]
    tiling_key = "realtime_2048" if "realtime_2048" in detail else "realtime_512"
    result: dict[str, Any] = {
        "ort_over_torch_speedup": round(rt["torch_eager_ms"] / rt["onnxruntime_model_ms"], 3),
        "ort_fraction_of_matmul": round(rt["onnxruntime_gflops"] / detail["matmul_gflops"], 3),
        "tiling_overhead_ratio": round(detail[tiling_key]["onnxruntime_tiled_ms"]
                                       / detail[tiling_key]["onnxruntime_frame_ms"], 3),
        "pipeline_overhead_ratio": round((rt["onnxruntime_frame_ms"] - rt["onnxruntime_model_ms"])
                                         / rt["onnxruntime_model_ms"], 3),
    }
    detail["uncertainty"] = uncertainty_cost(work / "realtime.onnx", cpu, reps)
    progress(f"uncertainty passes: {detail['uncertainty']}")
    result["uncertainty_cost_ratio"] = {k: v for k, v in detail["uncertainty"].items()
                                        if k.startswith("passes_")}
    tp, pairs = (25, 1) if quick else (150, 3)
    live = live_ratios(work / "realtime.onnx", progress, time_points=tp, pairs=pairs)
    detail["live"] = live
    # the same with an engine 10-20x slower than the camera (the paper preset), the case the
    # acquisition-rate target names: the slot must keep latency near the model's own time
    detail["live_slow_engine"] = live_ratios(work / "paper.onnx", progress, time_points=tp,
                                             pairs=pairs)
    detail["live_in_process"] = live_ratios(work / "realtime.onnx", progress, time_points=tp,
                                            pairs=pairs, host="thread")
    result["latency_over_model_ratio"] = live["latency_over_model_ratio"]
    result["acquisition_rate_ratio"] = live["acquisition_rate_ratio"]
    result["acquisition_rate_ratio_slow_engine"] = \
        detail["live_slow_engine"]["acquisition_rate_ratio"]
    result["acquisition_rate_ratio_in_process"] = \
        detail["live_in_process"]["acquisition_rate_ratio"]
    if importlib.util.find_spec("pymmcore_plus") is not None:  # the same through pymmcore-plus
        detail["live_pymmcore_plus"] = live_ratios(work / "realtime.onnx", progress,
                                                   time_points=tp, pairs=pairs,
                                                   acquisition="pymmcore-plus")
        result["acquisition_rate_ratio_pymmcore_plus"] = \
            detail["live_pymmcore_plus"]["acquisition_rate_ratio"]
    from acquire_vf._bench_host import handoff, int8_speedup, openvino_over_onnxruntime

    detail["int8"] = int8_speedup(work / "realtime.onnx", work, reps, interleaved_ms)
    progress(f"int8: {detail['int8']}")
    result["int8_over_fp32_speedup"] = detail["int8"]["int8_over_fp32_speedup"]
    detail["openvino"] = openvino_over_onnxruntime(work, cores, reps, interleaved_ms)
    progress(f"openvino: {detail['openvino']}")
    result["openvino_over_onnxruntime"] = {k: v["openvino_over_onnxruntime"]
                                           for k, v in detail["openvino"].items()}
    result["best_cpu_fraction_of_matmul"] = best_cpu_fraction(
        detail["openvino"], {k: c.gflop_per_256 for k, c in engines.items()},
        detail["matmul_gflops"])
    detail["engine_host"] = handoff(work, reps, interleaved_ms)
    progress(f"engine host hand-off: {detail['engine_host']}")
    for key in ("handoff_ms_per_2048_frame_set", "host_call_ms_per_2048_frame_set"):
        result[key] = detail["engine_host"][key]
    from acquire_vf._bench_storage import write_throughput

    detail["storage"] = write_throughput(work, 8 if quick else 24)
    progress(f"storage write at 2048 x 2048: {detail['storage']}")
    result["write_mb_per_s"] = detail["storage"]["mb_per_s"]
    result["zarr_over_tiff_write_ratio"] = detail["storage"]["zarr_over_tiff_write_ratio"]
    result["gpu_2048_ms"] = gpu_2048_ms(work)
    result["device"] = device_description()
    result["detail"] = detail
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))
    return result


def _inference(cards: dict[str, Any], work: Path, cpu: Compute, quick: bool, reps: int,
               progress: Callable[[str], None]) -> dict[str, Any]:
    """Per preset and frame size: model, whole-frame and tiled ONNX Runtime times, and eager
    PyTorch at 512 x 512, measured interleaved."""
    from acquire_vf.inference import TorchRunner, create_engine

    cores = cpu.threads
    detail: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    sizes = (512,) if quick else (512, 2048)
    for preset, card in cards.items():
        path = work / f"{preset}.onnx"
        for size in sizes:
            if quick and preset == "paper":
                continue
            frames = [rng.integers(100, 4000, (size, size), dtype=np.uint16) for _ in range(2)]
            whole = create_engine(path, cpu, tile=size, overlap=0, batch=1)
            tiled = create_engine(path, cpu, tile=min(size, 1024), overlap=32, batch=4)
            x = whole.normalise(frames)[None]
            big = preset == "paper" and size == 2048
            fns: dict[str, Callable[[], Any]] = {
                "model": lambda: whole.runner.run(x),  # noqa: B023 - called right here
                "frame": lambda: whole.infer(frames),  # noqa: B023
                "tiled": lambda: tiled.infer(frames)}  # noqa: B023
            if size == 512:
                tr = TorchRunner(path, threads=cores)
                fns["torch"] = lambda: tr.run(x)  # noqa: B023
            t = interleaved_ms(fns, 2 if big else reps, warmup=1 if big else 3)
            model_ms, infer_ms, tiled_ms = t["model"], t["frame"], t["tiled"]
            torch_ms = t.get("torch")
            gflop = card.gflop_per_256 * (size / 256) ** 2
            detail[f"{preset}_{size}"] = {
                "onnxruntime_model_ms": model_ms, "onnxruntime_frame_ms": infer_ms,
                "onnxruntime_tiled_ms": tiled_ms, "torch_eager_ms": torch_ms,
                "gflop": round(gflop, 2),
                "onnxruntime_gflops": round(gflop / (model_ms / 1e3), 1)}
            progress(f"{preset} {size}: {detail[f'{preset}_{size}']}")
    return detail


def uncertainty_cost(engine: Path, cpu: Compute, reps: int, size: int = 512
                     ) -> dict[str, Any]:
    """Time of a virtual frame with its TTA uncertainty (2, 4, 8 passes) over one pass, the
    frame tiled as the demo tiles it; measured interleaved."""
    from acquire_vf.inference import create_engine, infer_with_uncertainty

    rng = np.random.default_rng(1)
    frames = [rng.integers(100, 4000, (size, size), dtype=np.uint16) for _ in range(2)]
    eng = create_engine(engine, cpu, tile=512, overlap=32, batch=4)
    fns: dict[str, Callable[[], Any]] = {"one_pass": lambda: eng.infer(frames)}
    for n in (2, 4, 8):
        fns[f"passes_{n}"] = lambda n=n: infer_with_uncertainty(eng, frames, n)  # type: ignore[misc]
    t = interleaved_ms(fns, reps, warmup=1)
    out: dict[str, Any] = {"size": size, "one_pass_ms": t["one_pass"]}
    for n in (2, 4, 8):
        out[f"passes_{n}"] = round(t[f"passes_{n}"] / t["one_pass"], 3)
        out[f"passes_{n}_ms"] = t[f"passes_{n}"]
    eng.close()
    return out


def live_ratios(engine: Path, progress: Callable[[str], None], time_points: int,
                pairs: int = 1, host: str = "process",
                acquisition: str | None = None) -> dict[str, Any]:
    """On the demo configuration: raw rate with a synthesis engine running over the rate
    without, and a virtual frame's end-to-end latency over the model's own time; the median
    of ``pairs`` runs without and with, back to back (this machine's speed drifts). The
    engine runs in the engine host (``host = "process"``) or in the session's process;
    ``acquisition``: the acquisition backend (pycromanager by default, or pymmcore-plus)."""
    from acquire_vf._session import run_session

    prof, with_engine = live_profiles(engine, host)
    out = Path(tempfile.mkdtemp())
    runs = []
    for i in range(pairs):
        plain = run_session(prof, out / f"plain{i}", time_points=time_points, quiet=True,
                            acquisition=acquisition)
        engines = run_session(with_engine, out / f"engine{i}", time_points=time_points,
                              quiet=True, acquisition=acquisition)
        lat = engines["latency_ms"]
        stage = lat["synthesis:DNA"]["p50"]
        e2e = lat.get("virtual_end_to_end", {}).get("p50")
        # what latency adds to the engine's time, frame by frame: the ratio of the two
        # medians swings 1.0-1.4 between runs here, each median falling between the modes of
        # a model time that varies 3x with the camera's load (docs/performance.md)
        beyond = lat.get("virtual_beyond_engine", {}).get("p50")
        set_ms = 1e3 * len(prof.channels) / engines["raw_fps"]  # a frame set, camera flat out
        runs.append({"model_over_frame_set_interval": round(stage / set_ms, 2),
                     "raw_fps_without": plain["raw_fps"], "raw_fps_with": engines["raw_fps"],
                     "acquisition_rate_ratio": round(engines["raw_fps"] / plain["raw_fps"], 3),
                     "model_ms_p50": stage, "virtual_end_to_end_ms_p50": e2e,
                     "latency_over_model_ratio":
                         round(1 + beyond / stage, 3) if beyond is not None else None,
                     "latency_p50_over_model_p50": round(e2e / stage, 3) if e2e else None,
                     "slot_wait_ms_p50": lat.get("pipeline_wait", {}).get("p50"),
                     "virtual_frames": engines["virtual_frames"],
                     "virtual_skipped": engines["virtual_skipped"]})
    res: dict[str, Any] = {}
    for key in runs[0]:  # the median of each figure over the pairs
        values = [r[key] for r in runs if r[key] is not None]
        res[key] = round(float(np.median(values)), 3) if values else None
    res["pairs"] = runs
    progress(f"live: {res}")
    return res


def live_profiles(engine: Path, host: str = "process") -> tuple[Any, Any]:
    """The demo profile, camera flat out, without and with ``engine`` synthesising DNA from
    AGP and RNA (run in the engine host, or the session's process: ``host = "thread"``)."""
    import shutil

    from acquire_vf.card import ModelCard
    from acquire_vf.config import load_profile

    prof = load_profile("demo").bare(exposure_ms=10)  # the shipped demo waits 1 s per point
    prof = prof.model_copy(update={"compute": prof.compute.model_copy(update={"host": host})})
    # the demo's channels are AGP and RNA: a copy of the engine whose card names them
    card = ModelCard.load(engine)
    target = Path(tempfile.mkdtemp()) / "bench_dna.onnx"
    shutil.copy(engine, target)
    norm = card.normalisation["in0"]
    card.model_copy(update={"name": "bench_dna", "inputs": ("AGP", "RNA"),
                            "normalisation": {"AGP": norm, "RNA": norm, "out": norm}}
                    ).save(target)
    return prof, prof.model_copy(update={"virtual_channels": (_virtual(target),)})


def _virtual(engine: Path) -> Any:
    from acquire_vf.config import VirtualChannel

    return VirtualChannel(name="DNA", engine=engine, inputs=("AGP", "RNA"))


def gpu_2048_ms(work: Path) -> float | None:
    """Refocus + three synthesis engines (realtime) on one 2048 x 2048 frame, PyTorch CUDA fp16
    with CUDA graphs; ``None`` without a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from acquire_vf.inference import TorchRunner
    from acquire_vf.training import export_untrained

    export_untrained("realtime", 1, work / "refocus_gpu.onnx", task="refocus")
    runners = [TorchRunner(work / "refocus_gpu.onnx", device="cuda:0", precision="fp16")]
    runners += [TorchRunner(work / "realtime.onnx", device="cuda:0", precision="fp16")
                for _ in range(3)]
    x1 = np.zeros((1, 1, 2048, 2048), np.float32)
    x2 = np.zeros((1, 2, 2048, 2048), np.float32)

    def frame() -> None:
        runners[0].run(x1)
        for r in runners[1:]:
            r.run(x2)

    return _median_ms(frame, repeats=20, warmup=3)
