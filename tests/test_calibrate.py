"""Calibration on the user's microscope (the demo: its simulated specimen), fine-tuning a shipped
engine on it, and installing the result only when it beats the profile's engine on positions it
never saw. Real Micro-Manager demo config, real training, real ONNX Runtime, all through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf.config import PROFILES_DIR, REPO_ROOT
from tests._helpers import run_cli

SHIPPED_RNA = REPO_ROOT / "engines" / "refocus_rna.onnx"


@pytest.fixture(scope="module")
def calibration(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "cal"
    r = run_cli("calibrate", "--profile", "demo", "--positions", "3", "--z-range", "-4", "4",
                "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "3 positions" in r.stdout and "fine-tune:" in r.stdout, r.stdout
    return out


@pytest.mark.slow
def test_calibration_writes_stacks_and_channels_with_a_manifest(calibration: Path) -> None:
    from acquire_vf.layouts import BBBC006_FOCUS_INDEX, scan_bbbc006, scan_paired

    m = json.loads((calibration / "calibration.json").read_text())
    assert m["kind"] == "acquire-vf calibration" and m["frames"] > 0
    assert m["stacks"]["z_um"] == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert set(m["stacks"]["channels"]) == {"AGP", "RNA", "BF"}  # refocused, and the estimator
    assert set(m["paired"]["channels"]) == {"AGP", "RNA", "BF", "DNA", "ER", "Mito"}
    assert m["paired"]["channels"]["DNA"]["virtual_in_profile"] is True
    # the demo specimen's focal plane is at 0 µm at t = 0: the z-scans find it within half the
    # depth of field (1.3 µm; on the v4 slide's thick cells the sharpest AGP plane of a field
    # lies up to about 1 µm from the nominal focal plane, on the thin v3 one within 0.5)
    for p in m["positions"]:
        assert abs(p["focus_z_um"]) <= 1.3, p
    # the rig's optics: the demo profile's objective and its simulated camera's noise
    o = m["optics"]
    assert o["source"] == "profile" and o["na"] == 0.45 and o["pixel_size_um"] > 0
    assert o["read_noise_e"] > 0 and set(o["wavelength_um"]) >= {"AGP", "RNA", "DNA"}
    xs = {(p["x_um"], p["y_um"]) for p in m["positions"]}
    assert len(xs) == 3  # three places on the slide, a frame apart: no shared cells
    # the shipped profile is never written: the suggested commands install into a copy
    assert m["train"][0].startswith("acquire-vf profile copy demo")
    assert all(str(PROFILES_DIR) not in c.split("--install")[-1] for c in m["train"])
    refs = scan_bbbc006(calibration / "bbbc006")
    assert len(refs) == 3 * 3 * 5 and {r.channel for r in refs} == {"AGP", "RNA", "BF"}
    fields = scan_paired(calibration / "paired", ["AGP", "RNA", "DNA", "ER", "Mito"])
    assert len(fields) == 3
    # the in-focus plane is the sharpest of each stack: the layout's z_16 is focus
    from acquire_vf.focus import focus_score

    site = [r for r in refs if r.well == "a01" and r.channel == "AGP"]
    best = max(site, key=lambda r: focus_score(tifffile.imread(r.path)))
    assert best.z_um == 0.0 and f"_z_{BBBC006_FOCUS_INDEX}" in str(best.path.parent)
    img = tifffile.imread(fields[0]["DNA"].path)
    assert img.dtype == np.uint16 and img.shape == (512, 512) and img.max() > img.min()


def test_calibrate_refuses_bad_requests_with_one_line(tmp_path: Path) -> None:
    r = run_cli("calibrate", "--profile", "demo", "--positions", "2", "--out",
                str(tmp_path / "c"), timeout=120)  # refused by the option, as --help says
    assert r.returncode == 2, r.stderr  # a usage error, as every bounded option's
    assert r.stderr.strip().splitlines()[-1].endswith("greater than or equal to 3"), r.stderr
    assert not (tmp_path / "c").exists()
    from acquire_vf.calibration import CalibrationError
    from acquire_vf.calibration._acquire import plan
    from acquire_vf.config import load_profile

    demo = load_profile("demo")
    with pytest.raises(CalibrationError, match="contains focus"):
        plan(demo, 3, (2.0, 6.0), (0.0, 0.0), (512, 512))
    with pytest.raises(CalibrationError, match="BBBC006 grid holds"):
        plan(demo, 3, (-40.0, 8.0), (0.0, 0.0), (512, 512))
    p = plan(demo, 4, (-3.0, 5.0), (10.0, 20.0), (512, 512))
    assert p.z_um == [-2.0, 0.0, 2.0, 4.0] and len(p.positions) == 4
    assert p.w_index == {"AGP": 4, "RNA": 3, "BF": 1}  # the data set's own numbers first


def _identity_engine(out: Path) -> Path:
    """The shipped refocus_rna engine with its last layer zeroed: a residual engine that
    returns its input (the weakest refocus engine a profile might hold), card updated."""
    import onnx
    from onnx import numpy_helper

    from acquire_vf.card import ModelCard, sha256_file

    model = onnx.load(str(SHIPPED_RNA))
    for init in model.graph.initializer:
        if init.name.startswith("final.1."):
            init.CopyFrom(numpy_helper.from_array(
                np.zeros_like(numpy_helper.to_array(init)), init.name))
    out.mkdir(parents=True)
    engine = out / "identity_rna.onnx"
    onnx.save(model, str(engine))
    card = ModelCard.load(SHIPPED_RNA)
    card.model_copy(update={"onnx_sha256": sha256_file(engine)}).save(engine)
    return engine


@pytest.mark.slow
def test_a_fine_tuned_engine_is_installed_only_when_it_beats_doing_nothing(
        calibration: Path, tmp_path: Path) -> None:
    """The profile's engine is weak (it returns its input). Fine-tuned for five steps from the
    shipped engine, the new one beats it on the unseen position, as before, and was then
    installed although the camera's own frame was as good (the issue's case). Now the camera's
    frame is a baseline the engine must beat too, and one unseen position gives no interval:
    the profile is left as it was, and every comparison is printed with its reason."""
    weak = _identity_engine(tmp_path / "weak")
    profile = tmp_path / "rig" / "my-demo.toml"
    r = run_cli("profile", "copy", "demo", str(profile))
    assert r.returncode == 0, r.stderr
    text = profile.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("RNA = "))
    profile.write_text(text.replace(line, f'RNA = "{weak}"  # the weak one'))
    before = profile.read_text()

    r = run_cli("train", "refocus_rna", "--data", str(calibration), "--init", str(SHIPPED_RNA),
                "--install", str(profile), "--max-steps", "5", "--out",
                str(tmp_path / "ft"), timeout=400)
    assert r.returncode == 0, r.stderr
    judged = json.loads((tmp_path / "ft" / "calibration-eval.json").read_text())
    started, current = judged["started from"], judged["in the profile"]
    # five small steps from the shipped engine: within a fraction of a dB of it
    assert abs(started["psnr_gain_db"]) < 0.3 and started["beats"] is False, started
    assert current["unseen_positions"] == 1 and current["images"] == 2  # z = +-4 µm
    assert current["against"]["old"]["psnr_gain_db"] >= 0.1  # better than the weak engine ...
    assert current["baseline"] == "the camera frame"
    assert set(current["against"]) == {"old", "the camera frame"}
    assert current["beats"] is False  # ... but no interval, and not judged against nothing
    assert "an interval needs 2 or more (calibrate --positions 15 or more" in \
        current["why_not"][0]
    print(r.stdout)
    said = " ".join(r.stdout.split())
    assert "vs the camera frame: PSNR" in said and "vs in the profile" in said, said
    assert "unchanged; the fine-tuned engine does not beat" in said
    assert profile.read_text() == before
    # the fine-tuned card carries the rig's optics and the band: the gate runs on it
    from acquire_vf.card import ModelCard
    from acquire_vf.pipeline._gate import gate_for

    card = ModelCard.load(tmp_path / "ft" / "engine" / "refocus_rna.onnx")
    assert card.optics["na"] == 0.45 and card.optics["source"] == "profile"
    assert card.optics["wavelength_um"] == json.loads(
        (calibration / "calibration.json").read_text())["optics"]["wavelength_um"]["RNA"]
    assert card.acceptance["consistency_chi2_max"] == ModelCard.load(
        SHIPPED_RNA).acceptance["consistency_chi2_max"]
    assert gate_for(card, (-12.0, 8.0)) is not None
    assert "the rig's optics (profile: NA 0.45" in said
    assert not (profile.parent / "engines").exists()
    assert not (profile.parent / "my-demo.toml.before-install").exists()

    # the other way round: the weak engine never replaces a better one (and returns its input)
    from acquire_vf.calibration import compare_engines

    res = compare_engines(weak, SHIPPED_RNA, calibration / "bbbc006")
    assert res["beats"] is False and res["psnr_gain_db"] < 0
    # the weak engine is the camera frame: nothing between them
    assert abs(res["against"]["the camera frame"]["psnr_gain_db"]) < 0.05


@pytest.mark.slow
def test_installing_rewrites_one_line_and_keeps_the_old_profile(calibration: Path,
                                                                 tmp_path: Path) -> None:
    """What an install does, once the judgement says so: the engine and its card beside the
    profile, the one line naming the replaced engine rewritten, the old profile kept."""
    from acquire_vf.calibration import install_engine
    from acquire_vf.config import load_profile

    profile = tmp_path / "rig" / "my-demo.toml"
    assert run_cli("profile", "copy", "demo", str(profile)).returncode == 0
    before = profile.read_text()
    engine = tmp_path / "ft" / "refocus_rna.onnx"
    engine.parent.mkdir()
    shutil.copy2(SHIPPED_RNA, engine)
    shutil.copy2(SHIPPED_RNA.with_suffix(".json"), engine.with_suffix(".json"))
    dest = install_engine(profile, engine, "refocus", "RNA")
    new = profile.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), new.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1 and changed[0][1].startswith('RNA = "engines/refocus_rna.onnx"')
    assert dest == (profile.parent / "engines" / "refocus_rna.onnx")
    assert (profile.parent / "engines" / "refocus_rna.json").is_file()
    assert (profile.parent / "my-demo.toml.before-install").read_text() == before
    assert load_profile(profile).refocus_engines()["RNA"] == dest.resolve()


@pytest.mark.slow
def test_install_never_writes_a_shipped_profile(calibration: Path, tmp_path: Path) -> None:
    shipped = PROFILES_DIR / "demo.toml"
    before = shipped.read_bytes()
    from acquire_vf._errors import ProfileError
    from acquire_vf.calibration import install_engine

    copy = tmp_path / "e" / "refocus_rna.onnx"
    copy.parent.mkdir()
    shutil.copy2(SHIPPED_RNA, copy)
    shutil.copy2(SHIPPED_RNA.with_suffix(".json"), copy.with_suffix(".json"))
    with pytest.raises(ProfileError, match="shipped profile"):
        install_engine(shipped, copy, "refocus", "RNA")
    assert shipped.read_bytes() == before


def test_profile_line_rewrite_keeps_everything_else(tmp_path: Path) -> None:
    from acquire_vf._errors import ProfileError
    from acquire_vf.calibration._install import _point

    text = (PROFILES_DIR / "demo.toml").read_text()
    out = _point(text, "virtual", "ER", "engines/cps_er-2.onnx", tmp_path)
    diff = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert diff == [('engine = "../engines/cps_er.onnx"', 'engine = "engines/cps_er-2.onnx"')]
    out = _point(text, "refocus", "AGP", "engines/x.onnx", tmp_path)
    diff = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert diff == [('AGP = "../engines/refocus_agp.onnx"', 'AGP = "engines/x.onnx"')]
    with pytest.raises(ProfileError, match="expected one line naming BF's engine"):
        _point(text, "refocus", "BF", "engines/x.onnx", tmp_path)
