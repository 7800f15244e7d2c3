"""The fastest CPU path chosen by measurement (issue 37, item 3): ``build-engine --profile``
times every backend and precision this machine runs, keeps the fastest whose output agrees
with fp32 ONNX Runtime within the card's tolerance, records it in the engine cache, and a
session runs it and says so. Which path is fastest is this machine's business; that the
choice is the fastest of those that agree, and that a path that disagrees is never chosen,
is the behaviour tested."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acquire_vf.config import load_profile, profile_from_dict
from tests._helpers import ROOT, run_cli

pytestmark = pytest.mark.slow


def _engines(tmp_path: Path, int8: str | None) -> Path:
    """cps_dna copied to ``tmp_path``, with an INT8 sibling calibrated on other fields of the
    profile's slide (``good``) or on blank tiles, whose ranges ruin it (``bad``)."""
    from acquire_vf.quantize import quantize_engine

    eng = tmp_path / "engines"
    eng.mkdir()
    for f in ("cps_dna.onnx", "cps_dna.json"):
        shutil.copy(ROOT / "engines" / f, eng / f)
    if int8 == "good":  # calibrated on fields of the slide the profile's camera sees
        from acquire_vf._fastest import frames_for
        from acquire_vf.card import ModelCard

        card, demo, tiles = ModelCard.load(eng / "cps_dna.onnx"), load_profile("demo"), []
        for seed in range(6):
            other = demo.model_copy(update={"specimen": demo.specimen.model_copy(
                update={"seed": 100 + seed})})
            frames, _ = frames_for(other, card, ["AGP", "RNA"], (256, 256))
            tiles.append(np.stack([card.normalisation[c].forward(f.astype(np.float32))
                                   for c, f in zip(card.inputs, frames, strict=True)]))
        quantize_engine(eng / "cps_dna.onnx", eng / "cps_dna.int8.onnx",
                        tiles=[t.astype(np.float32) for t in tiles])
    elif int8 == "bad":
        blank = [np.full((2, 128, 128), -1.0, np.float32)] * 3
        quantize_engine(eng / "cps_dna.onnx", eng / "cps_dna.int8.onnx", tiles=blank)
    return eng / "cps_dna.onnx"


def _profile(engine: Path, **compute: Any) -> Any:
    """The demo with its DNA channel on ``engine`` and the other engines off."""
    data = load_profile("demo").model_dump(mode="json", exclude_none=True)
    data["virtual_channels"] = [dict(data["virtual_channels"][0], engine=str(engine))]
    data["autofocus"] = {"policy": "off"}
    data["verification"] = None
    data["connection"] = {"kind": "memory", "shape": [256, 256]}
    data["compute"] = {**data["compute"], "threads": 1, **compute}
    data["acquisition"] = {**data["acquisition"], "time_points": 2}
    return profile_from_dict({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize("int8", ["good", "bad"])
def test_the_fastest_path_that_agrees_is_chosen(tmp_path: Path, monkeypatch, int8: str
                                                ) -> None:
    from acquire_vf._fastest import choose_for_profile

    monkeypatch.setenv("ACQUIRE_VF_ENGINE_CACHE", str(tmp_path / "cache"))
    prof = _profile(_engines(tmp_path, int8))
    (rec,) = choose_for_profile(prof, reps=3)
    timed = {c["path"]: c for c in rec["candidates"] if "skipped" not in c}
    assert {"onnxruntime fp32", "onnxruntime int8"} <= set(timed)
    agreeing = [c for c in timed.values() if c["within_tolerance"]]
    chosen = f"{rec['backend']} {rec['precision']}"
    assert timed[chosen]["within_tolerance"]
    assert timed[chosen]["ms_per_frame"] == min(c["ms_per_frame"] for c in agreeing)
    assert timed["onnxruntime fp32"]["psnr_vs_onnxruntime_fp32_db"] is None  # the reference
    if int8 == "bad":  # calibrated on blank tiles: far outside the card's tolerance
        assert not timed["onnxruntime int8"]["within_tolerance"]
        assert rec["precision"] == "fp32"
    else:
        assert timed["onnxruntime int8"]["within_tolerance"], timed
        assert timed["onnxruntime int8"]["psnr_vs_onnxruntime_fp32_db"] >= \
            rec["tolerance_psnr_db"]
    assert Path(rec["saved_to"]).is_file()
    assert rec["frames_from"] == "the profile's simulated specimen"


def test_a_session_runs_the_recorded_choice_and_says_why(tmp_path: Path, monkeypatch) -> None:
    """Recorded by the command as users run it; a memory-backend session then runs the
    choice (its checks keep the fp32 card's band), says why in session.json, and with
    ``[compute] measured = false`` runs the profile's backends instead."""
    from acquire_vf._session import run_session
    from acquire_vf.inference import create_engine

    monkeypatch.setenv("ACQUIRE_VF_ENGINE_CACHE", str(tmp_path / "cache"))
    engine = _engines(tmp_path, "good")
    prof = _profile(engine)
    from acquire_vf.config import write_profile

    prof_file = write_profile(prof, tmp_path / "p.toml")
    r = run_cli("build-engine", "--profile", str(prof_file), timeout=600,
                env={"ACQUIRE_VF_ENGINE_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cps_dna" in r.stdout and "chosen" in r.stdout
    (saved,) = (tmp_path / "cache" / "choices").glob("*.json")
    rec = json.loads(saved.read_text())
    t = prof.tiling
    eng = create_engine(engine, prof.compute, tile=t.tile, overlap=t.overlap, batch=t.batch)
    try:
        assert eng.chosen is not None and eng.backend == rec["backend"]
        assert eng.precision == rec["precision"]
        fp32 = create_engine(engine, prof.compute.model_copy(update={"measured": False}),
                             tile=t.tile, batch=t.batch)
        assert fp32.chosen is None and fp32.backend == "onnxruntime"
        assert fp32.precision == "fp32"
        assert eng.card.metrics == fp32.card.metrics  # the band the checks use
        fp32.close()
    finally:
        eng.close()
    rep = run_session(prof, tmp_path / "run", quiet=True)
    assert rep["engine_choices"] == {eng.card.name: rec["why"]}, rep["engine_choices"]
    assert rec["why"].startswith("fastest of ")


def test_a_chosen_int8_engine_is_checked_by_its_own_band_once_measured(tmp_path: Path,
                                                                       monkeypatch) -> None:
    """A recorded INT8 choice runs with the fp32 engine's figures and band until the INT8
    engine has its own held-out measurement (``evaluate --held-out --update-card``); then with
    its own: its test-time-augmentation spread is its own (cps_er's INT8 spread ran 6% above
    the fp32 band's basis and flagged a steady demo channel as uncertain)."""
    from acquire_vf._fastest import choose_for_profile
    from acquire_vf.card import ModelCard, sha256_file
    from acquire_vf.inference import create_engine

    monkeypatch.setenv("ACQUIRE_VF_ENGINE_CACHE", str(tmp_path / "cache"))
    engine = _engines(tmp_path, "good")
    prof = _profile(engine)
    (rec,) = choose_for_profile(prof, reps=1)
    int8 = engine.with_name("cps_dna.int8.onnx")
    saved = Path(rec["saved_to"])
    choice = json.loads(saved.read_text())  # whichever was fastest here: int8 recorded
    choice.update(backend="onnxruntime", precision="int8", onnx=str(int8),
                  onnx_sha256=sha256_file(int8))
    saved.write_text(json.dumps(choice))
    t = prof.tiling
    fp32_card = ModelCard.load(engine)

    def chosen() -> tuple[Any, ModelCard]:
        e = create_engine(engine, prof.compute, tile=t.tile, overlap=t.overlap, batch=t.batch)
        e.close()
        return e.chosen, e.card

    ran, card = chosen()
    assert ran is not None and ran["precision"] == "int8"
    assert card.acceptance == fp32_card.acceptance and card.metrics == fp32_card.metrics
    own = ModelCard.load(int8)
    band = {**fp32_card.acceptance, "uncertainty_max": 0.5}
    own.model_copy(update={"metrics": {"held_out": {"prediction": {"psnr": 1.0}}},
                           "acceptance": band}).save(int8)
    ran, card = chosen()
    assert ran is not None and ran["precision"] == "int8"
    assert card.acceptance == band and card.metrics["held_out"]["prediction"]["psnr"] == 1.0
