"""Engines in the live loop on the real Micro-Manager demo configuration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import tifffile
from onnx import helper, numpy_helper

from acquire_vf._errors import ProfileError
from acquire_vf._session import build_stages, run_session
from acquire_vf.card import ModelCard
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile, onnx_engine

pytestmark = pytest.mark.slow


def test_live_run_writes_marked_virtual_channels(microscope, engines, tmp_path: Path) -> None:
    prof = make_profile(
        autofocus={"policy": "always", "engine": str(engines["refocus"]), "channels": ["AGP"]},
        virtual_channels=[{"name": "DNA", "engine": str(engines["dna"]),
                           "inputs": ["AGP", "RNA"]}],
        queues={"pipeline": 8})
    report = run_session(prof, tmp_path, time_points=4, quiet=True)
    assert report["frames_acquired"] == 8 and report["errors"] == []
    assert report["virtual_frames"] + report["virtual_skipped"] == 4 * 2
    # refocused frames are written (marked) whether or not the forward-consistency QC lets
    # later stages use them: how a 3-step engine fares there varies with its build
    assert report["virtual_frames"] > 0
    assert report["backend"].startswith("onnxruntime (CPUExecutionProvider, fp32)")
    assert report["exposures_full_protocol"] == 4 * 3 + 4 * 11  # + DNA, + z-scan autofocus
    dna = next(c for c in report["channels"] if c["name"] == "DNA")
    card = ModelCard.load(engines["dna"])
    assert dna["role"] == "virtual" and dna["sha256"] == card.onnx_sha256
    assert dna["backend"] == "onnxruntime" and dna["inputs"] == ["AGP", "RNA"]
    (ds,) = open_dataset(tmp_path)
    assert ds.verify() == []
    virtual = [r for r in ds.records if r["role"] == "virtual"]
    assert {r["channel"] for r in virtual} == {"DNA", "AGP-refocused"}
    for r in virtual:
        assert {"input_out_of_range", "saturated", "finite", "focus_score"} <= set(r["qc"])
    with tifffile.TiffFile(ds.path) as tf:
        ome = tf.ome_metadata
    assert 'Name="virtual:DNA"' in ome and 'Name="virtual:AGP-refocused"' in ome
    assert card.onnx_sha256 in ome
    session = json.loads((tmp_path / "session.json").read_text())
    assert session["virtual_frames"] == report["virtual_frames"]


def _bad_engines(tmp_path: Path) -> dict[str, Path]:
    zero = numpy_helper.from_array(np.zeros((1, 2, 1, 1), np.float32), "zero")
    nan_nodes = [helper.make_node("Conv", ["input", "zero"], ["z"]),  # two channels -> 0
                 helper.make_node("Div", ["z", "z"], ["output"])]  # 0 / 0
    # passes every warm-up (blank input: 0 after normalisation) but fails on real frames
    # (camera values normalise to below -0.5): a Reshape whose target grows by one column
    # when the input's minimum is below -0.5
    consts = [numpy_helper.from_array(np.array([0], np.int64), "c0"),
              numpy_helper.from_array(np.array([1], np.int64), "c1"),
              numpy_helper.from_array(np.array(-0.5, np.float32), "thr"),
              numpy_helper.from_array(np.array([0, 0, 0, 1], np.int64), "last")]
    raise_nodes = [
        helper.make_node("Slice", ["input", "c0", "c1", "c1"], ["first"]),  # (N, 1, h, w)
        helper.make_node("ReduceMin", ["input"], ["low"], keepdims=0),
        helper.make_node("Less", ["low", "thr"], ["dark"]),
        helper.make_node("Cast", ["dark"], ["grow"], to=onnx.TensorProto.INT64),
        helper.make_node("Mul", ["grow", "last"], ["extra"]),
        helper.make_node("Shape", ["first"], ["dims"]),
        helper.make_node("Add", ["dims", "extra"], ["target"]),
        helper.make_node("Reshape", ["first", "target"], ["output"]),
    ]
    return {
        "nan": onnx_engine(tmp_path / "nan.onnx", nan_nodes, 2, extra_inits=[zero],
                           names=("AGP", "RNA")),
        "raises": onnx_engine(tmp_path / "raises.onnx", raise_nodes, 2, extra_inits=consts,
                              names=("AGP", "RNA")),
    }


@pytest.mark.parametrize("kind", ["nan", "raises"])
def test_failing_engine_skips_virtual_frames_and_loses_no_raw_frame(microscope, tmp_path: Path,
                                                                     kind: str) -> None:
    engine = _bad_engines(tmp_path)[kind]
    prof = make_profile(virtual_channels=[{"name": "DNA", "engine": str(engine),
                                           "inputs": ["AGP", "RNA"]}],
                        queues={"pipeline": 16}, tiling={"tile": 256, "overlap": 32})
    report = run_session(prof, tmp_path / "run", time_points=6, quiet=True)
    assert report["frames_acquired"] == 12 and report["state"] == "finished"
    assert report["virtual_frames"] == 0 and report["virtual_skipped"] == 6
    expected = "produced NaN or inf" if kind == "nan" else "stage 'synthesis:DNA' failed"
    assert report["errors"] and all(expected in e for e in report["errors"])
    (ds,) = open_dataset(tmp_path / "run")
    assert len(ds.records) == 12 and ds.verify() == []


def test_card_inputs_must_exist_in_the_profile(engines) -> None:
    prof = make_profile(
        channels=[{"name": "Actin", "preset": "Rhodamine", "exposure_ms": 10},
                  {"name": "RNA", "preset": "FITC", "exposure_ms": 10}],
        virtual_channels=[{"name": "DNA", "engine": str(engines["dna"]),
                           "inputs": ["Actin", "RNA"]}])
    with pytest.raises(ProfileError) as ei:
        build_stages(prof)
    assert str(ei.value) == ("virtual channel 'DNA': engine 'dna' expects input channels "
                             "['AGP', 'RNA'], the profile gives ['Actin', 'RNA'] and has no "
                             "physical channel(s) ['AGP']")


def test_engine_failing_at_warmup_stops_before_any_exposure(microscope, tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([7, -1], np.int64), "shape")
    broken = onnx_engine(tmp_path / "broken.onnx",
                         [helper.make_node("Reshape", ["input", "shape"], ["output"])], 2,
                         extra_inits=[shape], names=("AGP", "RNA"))
    prof = make_profile(virtual_channels=[{"name": "DNA", "engine": str(broken),
                                           "inputs": ["AGP", "RNA"]}])
    from acquire_vf.inference import EngineFileError

    with pytest.raises(EngineFileError, match="engine 'broken' failed its warm-up run on "
                                              "onnxruntime: .*Reshape"):
        run_session(prof, tmp_path / "run", time_points=2, quiet=True)
    assert not list((tmp_path / "run").glob("*.ome.tif"))


def test_failed_engine_channel_goes_back_to_physical_exposure(microscope, tmp_path: Path) -> None:
    """When the first frame set reaches the failing engine depends on this machine's speed
    (the camera may finish a short plan first): the plan is long, and the run is stopped once
    DNA has been exposed physically three times, which is the behaviour under test."""
    engine = _bad_engines(tmp_path)["nan"]
    prof = make_profile(virtual_channels=[{
        "name": "DNA", "engine": str(engine), "inputs": ["AGP", "RNA"], "on_failure": "expose",
        "preset": "DAPI", "exposure_ms": 10}], queues={"pipeline": 1})
    dna_frames: list[int] = []

    def watch(run) -> None:
        def on_frame(frame) -> None:
            if frame.id.c == "DNA" and frame.role == "physical":
                dna_frames.append(frame.id.t)
                if len(dna_frames) == 3:
                    run.cancel()
        run.signals.frameReady.connect(on_frame)

    report = run_session(prof, tmp_path / "run", time_points=2000, quiet=True, on_run=watch)
    assert len(dna_frames) >= 3, "the DNA channel must be exposed after its engine failed"
    assert report["state"] == "cancelled" and report["virtual_frames"] == 0
    exposed = len(dna_frames)
    assert report["exposures_taken"] == report["frames_acquired"]
    assert any("exposing it physically from now on" in e for e in report["errors"])
    assert {"name": "DNA", "role": "physical", "fallback_for": "virtual:DNA"} in \
        report["channels"]
    (ds,) = open_dataset(tmp_path / "run")
    assert ds.verify() == []
    dna = [r for r in ds.records if r["channel"] == "DNA"]
    assert len(dna) == exposed and all(r["role"] == "physical" for r in dna)
    with tifffile.TiffFile(ds.path) as tf:
        ome = tf.ome_metadata
    assert 'Name="DNA"' in ome and 'Name="virtual:DNA"' in ome
