"""One prepared device check: the GPU paths measured and checked in one run, under six minutes.

    python scripts/gpu_check.py OUT_DIR          (on a lent device: see the README)

Writes ``OUT_DIR/gpu_check.json``:
- versions (Python, torch, CUDA, cuDNN, ONNX Runtime, TensorRT and cuda-python where they
  import) and the GPU;
- the torch CUDA backend at fp32 and fp16 on the shape sequence (4,C,768,768) ->
  (1,C,768,768) -> repeat -> (1,C,1024,1024) -> the first again, each against ONNX Runtime on
  the CPU (max |error|; bounds fp32 2e-3, fp16 2e-2), CUDA graphs on against off (must be
  identical), and the median latency of each shape;
- 2048 x 2048 frame sets through ``create_engine`` (torch, fp32 and fp16, tile 512, batch 4):
  median ms per frame set;
- bench's ``gpu_2048_ms`` (refocus plus three synthesis engines, fp16, CUDA graphs);
- a cuda-python capture / instantiate / launch round trip of a copy, when cuda-python imports;
- the same shape sequence on TensorRT, and the plan cache hit on a second construction, when
  TensorRT imports.

Without a GPU it says so in one line, writes the versions and exits 0 (the dry run CI makes).
Everything it needs is in the repository (the shipped engines); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENGINE = ROOT / "engines" / "cps_dna.onnx"
SHAPES = [(4, 2, 768, 768), (1, 2, 768, 768), (1, 2, 768, 768), (1, 2, 1024, 1024),
          (4, 2, 768, 768)]
BOUND = {"fp32": 2e-3, "fp16": 2e-2}


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for mod in ("numpy", "onnxruntime", "torch", "tensorrt"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    try:
        from cuda import bindings

        out["cuda-python"] = bindings.__version__
    except ImportError:
        out["cuda-python"] = None
    return out


def _median_ms(fn: Any, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(times)), 3)


def shape_sequence(make: Any, reference: Any) -> dict[str, Any]:
    """Each shape of :data:`SHAPES` on ``make()``'s runner against ``reference``."""
    rng = np.random.default_rng(0)
    runner = make()
    rows = []
    try:
        for shape in SHAPES:
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            got = runner.run(x)
            want = reference.run(x)
            rows.append({"shape": list(shape),
                         "max_abs_error": round(float(np.abs(got - want).max()), 6),
                         "median_ms": _median_ms(lambda x=x: runner.run(x), 5)})
    finally:
        runner.close()
    return {"shapes": rows, "max_abs_error": max(r["max_abs_error"] for r in rows)}


def torch_checks(out: dict[str, Any], deadline: float) -> None:
    from acquire_vf.inference import OnnxRuntimeRunner, TorchRunner

    ort = OnnxRuntimeRunner(ENGINE, device="cpu")
    for precision in ("fp32", "fp16"):
        if time.monotonic() > deadline:
            out[f"torch_{precision}"] = "skipped: out of time"
            continue
        on = shape_sequence(lambda p=precision: TorchRunner(
            ENGINE, device="cuda:0", precision=p, cuda_graphs=True), ort)
        x = np.random.default_rng(1).uniform(-1, 1, SHAPES[0]).astype(np.float32)
        with_graphs = TorchRunner(ENGINE, device="cuda:0", precision=precision)
        without = TorchRunner(ENGINE, device="cuda:0", precision=precision, cuda_graphs=False)
        same = bool(np.array_equal(with_graphs.run(x), without.run(x)))
        with_graphs.close()
        without.close()
        on.update(bound=BOUND[precision], within_bound=on["max_abs_error"] <= BOUND[precision],
                  graphs_identical_to_eager=same)
        out[f"torch_{precision}"] = on
    ort.close()


def frame_sets_2048(out: dict[str, Any]) -> None:
    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine

    frames = [np.random.default_rng(k).integers(100, 4000, (2048, 2048)).astype(np.uint16)
              for k in range(2)]
    for precision in ("fp32", "fp16"):
        compute = Compute.model_validate({"backends": ["torch"], "precision": precision})
        engine = create_engine(ENGINE, compute, tile=512, batch=4, backend="torch")
        engine.warmup()
        out[f"create_engine_2048_{precision}_ms"] = _median_ms(lambda e=engine: e.infer(frames))
        engine.close()


def cuda_graph_round_trip() -> dict[str, Any]:
    try:
        from cuda.bindings import runtime as cu
    except ImportError:
        return {"skipped": "cuda-python is not installed"}
    n = 1 << 20
    host = np.arange(n, dtype=np.float32)
    back = np.zeros_like(host)
    err, dev = cu.cudaMalloc(host.nbytes)
    err, stream = cu.cudaStreamCreate()
    t0 = time.perf_counter()
    cu.cudaStreamBeginCapture(stream, cu.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
    cu.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes,
                       cu.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    cu.cudaMemcpyAsync(back.ctypes.data, dev, host.nbytes,
                       cu.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    err, graph = cu.cudaStreamEndCapture(stream)
    err, exe = cu.cudaGraphInstantiate(graph, 0)
    cu.cudaGraphDestroy(graph)
    cu.cudaGraphLaunch(exe, stream)
    cu.cudaStreamSynchronize(stream)
    ms = (time.perf_counter() - t0) * 1e3
    ok = bool(np.array_equal(host, back))
    cu.cudaGraphExecDestroy(exe)
    cu.cudaFree(dev)
    cu.cudaStreamDestroy(stream)
    return {"ok": ok, "capture_instantiate_launch_ms": round(ms, 3), "error": int(err)}


def tensorrt_checks() -> dict[str, Any]:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return {"skipped": "TensorRT is not installed (desk-checked only)"}
    import os

    from acquire_vf.card import ModelCard
    from acquire_vf.inference import OnnxRuntimeRunner, TensorRTRunner

    os.environ.setdefault("ACQUIRE_VF_ENGINE_CACHE", tempfile.mkdtemp(prefix="trt-plans-"))
    card = ModelCard.load(ENGINE)
    ort = OnnxRuntimeRunner(ENGINE, device="cpu")
    res: dict[str, Any] = {}
    for precision in ("fp32", "fp16"):
        res[precision] = shape_sequence(lambda p=precision: TensorRTRunner(
            ENGINE, card, precision=p, tile=1024, batch=4), ort)
        again = TensorRTRunner(ENGINE, card, precision=precision, tile=1024, batch=4)
        res[precision]["second_construction_hit_cache"] = again.plan_was_cached
        again.close()
    ort.close()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--budget-s", type=float, default=330.0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + a.budget_s
    out: dict[str, Any] = {"versions": versions(), "engine": ENGINE.name}
    try:
        import torch

        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu:
        out["gpu"] = None
        (a.out / "gpu_check.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"gpu_check: no NVIDIA GPU visible to PyTorch (torch.cuda.is_available() is "
              f"False): nothing measured; versions in {a.out / 'gpu_check.json'}")
        return 0
    out["gpu"] = torch.cuda.get_device_name(0)
    out["versions"].update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    steps = [("torch", lambda: torch_checks(out, deadline)),
             ("create_engine_2048", lambda: frame_sets_2048(out)),
             ("gpu_2048_ms", lambda: out.update(gpu_2048_ms=_bench_gpu())),
             ("cuda_graph", lambda: out.update(cuda_graph=cuda_graph_round_trip())),
             ("tensorrt", lambda: out.update(tensorrt=tensorrt_checks()))]
    for name, step in steps:
        if time.monotonic() > deadline:
            out.setdefault("skipped", []).append(name)
            continue
        try:
            step()
        except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
            out.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        (a.out / "gpu_check.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(out, indent=2, default=str))
    return 0


def _bench_gpu() -> float | None:
    from acquire_vf.bench import gpu_2048_ms
    from acquire_vf.training import export_untrained

    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    export_untrained("realtime", 2, work / "realtime.onnx")
    return gpu_2048_ms(work)


if __name__ == "__main__":
    sys.exit(main())
