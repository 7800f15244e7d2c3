"""The GPU paths: what can be checked on every machine here, and the checks that run wherever
their dependency imports (``gpu``: PyTorch sees an NVIDIA GPU; ``tensorrt``: TensorRT and
cuda-python import), skipped elsewhere with the reason printed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests._helpers import ROOT

ENGINE = ROOT / "engines" / "cps_dna.onnx"
SHAPES = [(4, 2, 768, 768), (1, 2, 768, 768), (1, 2, 768, 768), (1, 2, 1024, 1024),
          (4, 2, 768, 768)]


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        return False
    return _cuda()


gpu = pytest.mark.skipif(not _cuda(), reason="needs an NVIDIA GPU visible to PyTorch")
needs_tensorrt = pytest.mark.skipif(not _tensorrt(), reason="needs TensorRT, cuda-python and a "
                                    "GPU (not installable on the development machine)")


def test_the_device_check_says_in_one_line_that_there_is_no_gpu(tmp_path: Path) -> None:
    if _cuda():
        pytest.skip("a GPU is here: the full check runs instead (scripts/gpu_check.py)")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"),
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1 and "no NVIDIA GPU" in res.stdout
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["gpu"] is None and out["versions"]["onnxruntime"]


def test_onnxruntime_never_claims_a_precision_it_does_not_run() -> None:
    from acquire_vf.inference import BackendUnavailable, OnnxRuntimeRunner

    for device in ("cpu", "cuda"):
        with pytest.raises(BackendUnavailable, match="fp32|CUDAExecutionProvider"):
            OnnxRuntimeRunner(ENGINE, device=device, precision="fp16")
    assert OnnxRuntimeRunner(ENGINE, device="cpu").precision == "fp32"


def test_the_plan_key_holds_builder_settings_and_its_timing_cache(tmp_path: Path) -> None:
    from acquire_vf.inference import _plan_cache as plans
    from acquire_vf.inference._tensorrt import builder_settings

    key = plans.PlanKey("ab" * 32, "10.3.0", "12040", "NVIDIA H200", "9.0", "fp32",
                        ((1, 2, 64, 64), (4, 2, 512, 512), (4, 2, 512, 512)),
                        builder=builder_settings("fp32"))
    assert "tf32=off" in key.builder
    other = replace(key, builder=builder_settings("fp16"))
    assert key.digest() != other.digest()
    t1 = plans.timing_cache_path(key, tmp_path)
    t2 = plans.timing_cache_path(replace(key, tensorrt="10.4.0"), tmp_path)
    t3 = plans.timing_cache_path(replace(key, gpu="NVIDIA RTX 4090", compute_capability="8.9"),
                                 tmp_path)
    assert len({t1, t2, t3}) == 3  # never offered to another GPU or version
    plan = plans.plan_path("cps_dna", key, tmp_path)
    plans.write_atomic(plan, b"plan")
    plans.write_metadata(plan, key)
    assert plans.mismatch(plan, key) is None
    assert "builder" in str(plans.mismatch(plan, other))
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left beside them
    old = json.loads(plan.with_suffix(".json").read_text())
    del old["builder"], old["timing_cache"]  # a plan from before these were keyed
    plan.with_suffix(".json").write_text(json.dumps(old))
    assert plans.mismatch(plan, key) is not None  # rebuilt, never trusted


def test_warm_up_runs_the_shapes_the_tiler_will_use() -> None:
    from acquire_vf.card import ModelCard
    from acquire_vf.inference import OnnxRuntimeRunner, TiledEngine

    seen: list[tuple[int, ...]] = []

    class Recording(OnnxRuntimeRunner):
        def run(self, x: np.ndarray) -> np.ndarray:
            seen.append(tuple(x.shape))
            return super().run(x)

    engine = TiledEngine(ModelCard.load(ENGINE), Recording(ENGINE), tile=256, overlap=32,
                         batch=4)
    engine.warmup()  # no frame size known: full batches and single tiles
    assert set(seen) == {(4, 2, 256, 256), (1, 2, 256, 256)}
    seen.clear()
    engine.warmup(frame_shape=(330, 330))  # the camera's: the tiler's own shapes
    warm = set(seen)
    seen.clear()
    engine.infer([np.full((330, 330), 500, np.uint16)] * 2)
    assert set(seen) == warm  # every shape the frame needs was warmed
    assert {s[-1] for s in warm} == {192}  # the tile shrank to fit the frame
    engine.close()


def _against_onnxruntime(make, precision: str) -> None:  # noqa: ANN001
    from acquire_vf.inference import OnnxRuntimeRunner

    bound = {"fp32": 2e-3, "fp16": 2e-2}[precision]
    ort = OnnxRuntimeRunner(ENGINE, device="cpu")
    rng = np.random.default_rng(0)
    runner = make()
    for shape in SHAPES:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        assert np.abs(runner.run(x) - ort.run(x)).max() <= bound, (shape, precision)
    runner.close()


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_follows_onnxruntime_through_changing_shapes(precision: str) -> None:
    from acquire_vf.inference import TorchRunner

    _against_onnxruntime(lambda: TorchRunner(ENGINE, device="cuda:0", precision=precision),
                         precision)
    x = np.random.default_rng(1).uniform(-1, 1, SHAPES[0]).astype(np.float32)
    graphs = TorchRunner(ENGINE, device="cuda:0", precision=precision)
    eager = TorchRunner(ENGINE, device="cuda:0", precision=precision, cuda_graphs=False)
    assert np.array_equal(graphs.run(x), eager.run(x))


@gpu
@pytest.mark.gpu
def test_a_runner_built_on_one_thread_runs_on_another() -> None:
    from acquire_vf.inference import TorchRunner

    runner = TorchRunner(ENGINE, device="cuda:0", precision="fp16")
    x = np.zeros(SHAPES[1], np.float32)
    out: list[np.ndarray] = []
    th = threading.Thread(target=lambda: out.append(runner.run(x)))
    th.start()
    th.join(60)
    assert out and out[0].shape == (1, 1, 768, 768)


@needs_tensorrt
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_follows_onnxruntime_and_reuses_its_plan(
        precision: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from acquire_vf.card import ModelCard
    from acquire_vf.inference import TensorRTRunner

    monkeypatch.setenv("ACQUIRE_VF_ENGINE_CACHE", str(tmp_path))
    card = ModelCard.load(ENGINE)
    _against_onnxruntime(lambda: TensorRTRunner(ENGINE, card, precision=precision, tile=1024,
                                                batch=4), precision)
    again = TensorRTRunner(ENGINE, card, precision=precision, tile=1024, batch=4)
    assert again.plan_was_cached
    out: list[np.ndarray] = []
    th = threading.Thread(target=lambda: out.append(again.run(np.zeros(SHAPES[1], np.float32))))
    th.start()
    th.join(120)
    assert out, "the plan did not run on another thread"
    again.close()
    for meta in tmp_path.glob("*.json"):  # a plan from another version: rebuilt, not fatal
        meta.write_text(meta.read_text().replace('"tensorrt": "', '"tensorrt": "0.'))
    for cache in tmp_path.glob("timing-*.cache"):
        cache.write_bytes(b"not a timing cache")
    rebuilt = TensorRTRunner(ENGINE, card, precision=precision, tile=1024, batch=4)
    assert not rebuilt.plan_was_cached
    rebuilt.close()
