"""Inference engines: backends agree, tiling blends without seams, normalisation is exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from acquire_vf.card import CardError, ModelCard
from acquire_vf.config import Compute
from acquire_vf.inference import (
    BackendUnavailable,
    EngineFileError,
    InferenceError,
    TiledEngine,
    create_engine,
    run_tiled,
)
from acquire_vf.inference import _plan_cache as plans
from acquire_vf.inference._onnxruntime import OnnxRuntimeRunner
from tests._helpers import onnx_engine

ORT = Compute(backends=("onnxruntime",))


def identity(tmp_path: Path) -> Path:
    return onnx_engine(tmp_path / "identity.onnx", [helper.make_node("Identity", ["input"],
                                                                     ["output"])])


def local_conv(tmp_path: Path) -> Path:
    """A 3 x 3 blur + tanh: a receptive field of 3 pixels."""
    w = numpy_helper.from_array(np.full((1, 1, 3, 3), 1 / 9, np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["c"], ["output"])]
    return onnx_engine(tmp_path / "blur.onnx", nodes, extra_inits=[w])


@pytest.mark.parametrize("shape", [(64, 64), (128, 192), (256, 320)])
@pytest.mark.torch
def test_onnxruntime_and_torch_agree(engines, shape) -> None:
    pytest.importorskip("torch")
    from acquire_vf.inference._torch import TorchRunner

    for name, n_in in (("dna", 2), ("refocus", 1)):
        ort_runner = OnnxRuntimeRunner(engines[name])
        torch_runner = TorchRunner(engines[name])
        x = np.random.default_rng(0).uniform(-1, 1, (2, n_in, *shape)).astype(np.float32)
        assert np.abs(ort_runner.run(x) - torch_runner.run(x)).max() < 1e-4


def test_normalisation_round_trip_is_exact_for_an_identity_model(tmp_path: Path) -> None:
    engine = create_engine(identity(tmp_path), ORT, tile=64)
    frame = np.random.default_rng(1).integers(0, 65535, (100, 130), dtype=np.uint16)
    out, qc = engine.infer([frame])
    assert out.dtype == np.uint16 and out.shape == frame.shape
    np.testing.assert_array_equal(out, frame)
    assert qc["finite"] and not qc["input_out_of_range"]
    fout, _ = engine.infer([frame.astype(np.float32)])
    assert fout.dtype == np.float32  # a float input stays float (camera units, not rounded)
    np.testing.assert_allclose(fout, frame, rtol=0, atol=0.05)


def test_tiled_equals_whole_frame_and_overlaps_carry_no_extra_error(tmp_path: Path) -> None:
    runner = OnnxRuntimeRunner(local_conv(tmp_path))
    x = np.random.default_rng(2).uniform(-1, 1, (1, 300, 410)).astype(np.float32)
    whole = runner.run(x[None])[0, 0]
    tiled = run_tiled(x, runner.run, tile=64, overlap=16, batch=8, multiple=1)
    assert tiled.shape == whole.shape
    err = np.abs(tiled - whole)[1:-1, 1:-1]  # away from the frame's own border
    assert err.max() < 1e-6
    overlap = np.zeros(err.shape, bool)
    for s in range(48, 410, 48):  # tile starts 0, 48, 96, ...: overlaps [s, s + 16)
        overlap[max(s - 1, 0):s + 15, :] = True
        overlap[:, max(s - 1, 0):s + 15] = True
    assert err[overlap].max() <= err[~overlap].max() + 1e-7


def test_blending_improves_unet_tile_joins(engines) -> None:
    from scipy import ndimage

    engine = create_engine(engines["refocus"], ORT)
    run = engine.runner.run
    smooth = ndimage.gaussian_filter(np.random.default_rng(3).normal(size=(512, 512)), 6)
    x = (smooth / np.abs(smooth).max())[None].astype(np.float32)
    whole = run_tiled(x, run, tile=512, overlap=0, batch=1, multiple=64)
    hard = run_tiled(x, run, tile=128, overlap=0, batch=8, multiple=64)
    blended = run_tiled(x, run, tile=128, overlap=32, batch=8, multiple=64)
    band = np.zeros(whole.shape, bool)
    for c in (128, 256, 384):  # where hard-stitched tiles meet
        band[:, c - 3:c + 3] = True
        band[c - 3:c + 3, :] = True
    hard_err = np.abs(hard - whole)[band].mean()
    blend_err = np.abs(blended - whole)[band].mean()
    assert blend_err < 0.5 * hard_err, (blend_err, hard_err)


def test_engine_checks_its_inputs(engines) -> None:
    engine = create_engine(engines["dna"], ORT)
    one = np.zeros((64, 64), np.uint16)
    with pytest.raises(InferenceError, match=r"takes 2 input\(s\) \['AGP', 'RNA'\], got 1"):
        engine.infer([one])
    with pytest.raises(InferenceError, match="2-D frame"):
        engine.infer([one, np.zeros((64, 65), np.uint16)])


def test_nan_output_is_an_error_not_a_frame(tmp_path: Path) -> None:
    zero = numpy_helper.from_array(np.zeros(1, np.float32), "zero")
    nodes = [helper.make_node("Mul", ["input", "zero"], ["z"]),
             helper.make_node("Div", ["z", "z"], ["output"])]  # 0 / 0
    engine = create_engine(onnx_engine(tmp_path / "nan.onnx", nodes, extra_inits=[zero]), ORT)
    with pytest.raises(InferenceError, match="produced NaN or inf"):
        engine.infer([np.ones((64, 64), np.uint16)])


def test_out_of_range_input_is_flagged(tmp_path: Path) -> None:
    path = onnx_engine(tmp_path / "narrow.onnx", [helper.make_node("Identity", ["input"],
                                                                   ["output"])], high=1000.0)
    engine = create_engine(path, ORT)
    _, qc = engine.infer([np.full((64, 64), 5000, np.uint16)])
    assert qc["input_out_of_range"] and qc["input_out_of_range_fraction"] == 1.0
    _, ok = engine.infer([np.full((64, 64), 500, np.uint16)])
    assert not ok["input_out_of_range"]


def test_corrupt_onnx_is_one_clear_line(tmp_path: Path) -> None:
    path = identity(tmp_path)
    path.write_bytes(b"\x08\x01garbage" * 10)
    card = json.loads(path.with_suffix(".json").read_text())
    from acquire_vf.card import sha256_file

    card["onnx_sha256"] = sha256_file(path)
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(EngineFileError) as ei:
        create_engine(path, ORT)
    assert "is not a valid ONNX model" in str(ei.value) and "\n" not in str(ei.value)


def test_card_must_match_its_onnx_file(tmp_path: Path) -> None:
    path = identity(tmp_path)
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(CardError, match="does not match its card: sha256"):
        ModelCard.load(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CardError, match="model card not found"):
        ModelCard.load(path)


def test_backend_refusal_lists_reasons_and_never_falls_back_silently(tmp_path: Path) -> None:
    path = identity(tmp_path)
    strict = Compute(backends=("tensorrt", "onnxruntime"), allow_fallback=False)
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here: the refusal path needs a machine without it")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable) as ei:
        create_engine(path, strict)
    msg = str(ei.value)
    assert "tensorrt: TensorRT is not installed" in msg
    assert "does not allow falling back to ['onnxruntime']" in msg
    loose = Compute(backends=("tensorrt", "onnxruntime"), allow_fallback=True)
    assert create_engine(path, loose).backend == "onnxruntime"
    with pytest.raises(BackendUnavailable, match="fp32 only"):
        create_engine(path, Compute(backends=("onnxruntime",), precision="fp16"))


def _key(**over) -> plans.PlanKey:
    base = dict(onnx_sha256="ab" * 32, tensorrt="10.3.0", cuda="12060", gpu="NVIDIA H100",
                compute_capability="9.0", precision="fp16",
                shapes=((1, 2, 64, 64), (4, 2, 512, 512), (4, 2, 512, 512)))
    return plans.PlanKey(**{**base, **over})


def test_plan_cache_key_covers_everything_that_makes_a_plan_invalid(tmp_path: Path) -> None:
    key = _key()
    variants = [_key(onnx_sha256="cd" * 32), _key(tensorrt="10.4.0"), _key(cuda="12080"),
                _key(gpu="NVIDIA A100"), _key(compute_capability="8.0"),
                _key(precision="fp32"), _key(shapes=((1, 2, 64, 64),) * 3)]
    assert len({k.digest() for k in [key, *variants]}) == 1 + len(variants)
    plan = plans.plan_path("cps_dna", key, tmp_path)
    plan.write_bytes(b"plan")
    plans.write_metadata(plan, key)
    assert plans.mismatch(plan, key) is None


def test_plan_from_another_tensorrt_version_is_one_clear_line(tmp_path: Path) -> None:
    here, there = _key(), _key(tensorrt="8.6.1", compute_capability="8.6")
    plan = plans.plan_path("cps_dna", here, tmp_path)
    plan.write_bytes(b"plan")
    plans.write_metadata(plan, there)  # a plan copied in from another machine
    msg = plans.mismatch(plan, here)
    assert msg is not None and "\n" not in msg
    assert "was built for TensorRT 8.6.1" in msg and "this machine needs TensorRT 10.3.0" in msg
    assert "compute_capability: plan '8.6', here '9.0'" in msg


@pytest.mark.tensorrt
def test_tensorrt_matches_onnxruntime(engines) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    from acquire_vf.inference._tensorrt import TensorRTRunner

    card = ModelCard.load(engines["dna"])
    trt_runner = TensorRTRunner(engines["dna"], card, precision="fp32", tile=128, batch=2)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 2, 128, 128)).astype(np.float32)
    ref = OnnxRuntimeRunner(engines["dna"]).run(x)
    assert np.abs(trt_runner.run(x) - ref).max() < 1e-3
    trt_runner.close()


def test_tiled_engine_protocol(engines) -> None:
    from acquire_vf.inference import Engine

    engine = create_engine(engines["dna"], ORT)
    assert isinstance(engine, TiledEngine) and isinstance(engine, Engine)
    engine.warmup()
    frames = [np.random.default_rng(i).integers(90, 3000, (200, 300), dtype=np.uint16)
              for i in range(2)]
    out, qc = engine.infer(frames)
    assert out.shape == (200, 300) and out.dtype == np.uint16
    assert {"input_out_of_range", "saturated", "finite", "focus_score"} <= set(qc)


@pytest.mark.parametrize(("length", "tile", "expected"),
                         [(2048, 512, 448), (2048, 1024, 704), (512, 512, 512), (700, 512, 384)])
def test_tiles_shrink_to_fit_the_frame(length: int, tile: int, expected: int) -> None:
    from acquire_vf.inference._tiling import fit_tile, tile_starts

    fitted = fit_tile(length, tile, 32, 64)
    assert fitted == expected and fitted % 64 == 0 and fitted <= tile
    starts = tile_starts(length, fitted, 32)
    assert starts[0] == 0 and starts[-1] + fitted == max(length, fitted)
    assert all(b - a <= fitted - 32 for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(64, 64), (128, 192)])
def test_onnxruntime_and_openvino_agree(engines, shape) -> None:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the openvino extra)")
    from acquire_vf.inference._openvino import OpenVINORunner

    for name, n_in in (("dna", 2), ("refocus", 1)):
        ort_runner = OnnxRuntimeRunner(engines[name])
        ov_runner = OpenVINORunner(engines[name], threads=1)
        x = np.random.default_rng(0).uniform(-1, 1, (2, n_in, *shape)).astype(np.float32)
        assert np.abs(ort_runner.run(x) - ov_runner.run(x)).max() < 1e-4
        # a second shape on the same runner (a last, smaller batch): compiled for it, static
        assert np.abs(ort_runner.run(x[1:]) - ov_runner.run(x[1:])).max() < 1e-4
        ov_runner.close()


@pytest.mark.slow
def test_a_shipped_engine_on_openvino_agrees_with_onnxruntime_in_camera_units() -> None:
    pytest.importorskip("openvino", reason="OpenVINO is not installed (the openvino extra)")
    root = Path(__file__).resolve().parents[1]
    onnx = root / "engines" / "cps_dna.onnx"
    eo = create_engine(onnx, ORT)
    ev = create_engine(onnx, Compute(backends=("openvino",)))
    assert ev.backend == "openvino" and ev.runner.device.startswith("CPU")
    rng = np.random.default_rng(0)
    frames = [rng.integers(100, 3000, (256, 256)).astype(np.uint16) for _ in eo.card.inputs]
    a, _ = eo.infer(frames)
    b, _ = ev.infer(frames)
    # float32 kernels differ in summation order: within 0.1% of the output's range
    assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 0.001 * 65535
    eo.close()
    ev.close()


def test_an_estimator_beside_the_pipeline_takes_its_own_threads_and_never_spins() -> None:
    """ONNX Runtime's own record of the sessions: the pipeline's engine gets the profile's
    threads and spins between operators; the closed loop's defocus estimator, which runs
    beside it, gets ``estimator_threads`` and does not spin (two sessions spinning on the same
    cores ran 0.63x: ``scripts/perf_threads.py``)."""
    from acquire_vf.inference import create_estimator

    root = Path(__file__).resolve().parents[1] / "engines"
    compute = Compute(backends=("onnxruntime",), threads=2)
    engine = create_engine(root / "cps_dna.onnx", compute.model_copy(update={"measured": False}))
    est = create_estimator(root / "defocus_bf.onnx", compute)
    try:
        opts = engine.runner.session.get_session_options()
        assert opts.intra_op_num_threads == 2
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "1"
        opts = est.runner.session.get_session_options()
        assert opts.intra_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        alone = create_estimator(root / "defocus_bf.onnx",
                                 compute.model_copy(update={"estimator_threads": 0}))
        assert alone.runner.session.get_session_options().intra_op_num_threads == 2
    finally:
        engine.close()


def test_an_engine_trained_on_equalised_inputs_equalises_each_whole_frame(tmp_path: Path) -> None:
    """``[train] equalize = true``: training equalised each whole frame's histogram, so
    inference must too (it had scaled by the dataset's range: an engine fed inputs unlike
    its training). An identity engine then returns the frame's equalised histogram in the
    output's range, whatever the exposure: three times the light gives the same frame, and
    training's patches are cut from frames equalised whole."""
    from acquire_vf.card import ModelCard
    from acquire_vf.inference import equalise
    from acquire_vf.training._data import PatchSampler

    path = identity(tmp_path)
    card = ModelCard.load(path)
    card.model_copy(update={"training": {"equalize_inputs": True}}).save(path)
    engine = create_engine(path, ORT, tile=64)
    rng = np.random.default_rng(2)
    frame = rng.gamma(2.0, 300.0, (96, 130)).astype(np.float32) + 100
    out, _ = engine.infer([frame])
    brighter, _ = engine.infer([frame * 3])
    np.testing.assert_allclose(out, brighter, atol=1.0)
    expected = (equalise(frame) + 1) / 2 * 65535  # the output's range [0, 65535]
    np.testing.assert_allclose(out, expected, atol=1.0)
    assert out.max() - out.min() > 60000  # spread over the range, not the raw scale

    class Data:
        inputs, target = ("in0",), "out"
        normalisation = card.normalisation

    from acquire_vf.pairs import Pair

    pair = Pair(inputs=frame[None], target=frame[None], key=("f",))
    sampler = PatchSampler(Data(), [pair], 32, augment=False, equalize=True)
    x, _ = sampler.batch(np.random.default_rng(0), 4)
    whole = equalise(frame)
    for patch in x[:, 0]:  # every patch is a window of the whole frame's equalisation
        hits = [(y, xx) for y in range(96 - 31) for xx in range(130 - 31)
                if np.array_equal(whole[y:y + 32, xx:xx + 32], patch)]
        assert hits
