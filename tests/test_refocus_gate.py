"""The refocus gate: a learned frame only when the camera's frame supports it, else the
deconvolved frame when consistent, else the camera's frame; never a frame made worse.

Frames are emitters blurred through the refocus engine's own optics (its card) and exposed by
its camera model; the truth is the same emitters through the in-focus PSF, noise-free."""

from __future__ import annotations

import numpy as np
import pytest

from acquire_vf.card import ModelCard
from acquire_vf.metrics import image_metrics, to_unit
from acquire_vf.pipeline import gate_for
from tests._helpers import ROOT

CARD = ModelCard.load(ROOT / "engines" / "refocus.onnx")


def _scene(z_um: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(camera frame at ``z_um``, noise-free in-focus truth), ADU, 256 x 256."""
    from acquire_vf.optics import card_optics, convolve
    from acquire_vf.simulate import Camera

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:256, :256]
    emitters = np.zeros((256, 256))
    for _ in range(40):  # nuclei-sized blobs with some texture
        cy, cx, r = rng.uniform(20, 236), rng.uniform(20, 236), rng.uniform(4, 9)
        emitters += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r ** 2)) * rng.uniform(1, 2)
    emitters *= 1 + 0.3 * rng.random((256, 256))
    o = CARD.optics
    lens = card_optics(o)
    cam = Camera(offset_adu=o["offset_adu"], gain_adu_per_e=o["gain_adu_per_e"],
                 read_noise_e=o["read_noise_e"])
    truth = cam.expected(convolve(emitters, lens.psf(o["wavelength_um"], 0.0)), 40.0)
    seen = cam.expose(convolve(emitters, lens.psf(o["wavelength_um"], z_um)), 40.0, rng)
    return seen, truth


def _psnr(frame: np.ndarray, truth: np.ndarray) -> float:
    n = CARD.normalisation[CARD.output]
    return image_metrics(to_unit(frame, n.low, n.high), to_unit(truth, n.low, n.high))["psnr"]


def test_a_consistent_learned_frame_is_kept_and_an_invented_one_is_not() -> None:
    gate = gate_for(CARD, (-12.0, 8.0))
    assert gate is not None
    seen, truth = _scene(gate.learned_beyond[0] - 1.0)  # where the card trusts the engine
    # (from 1 µm beyond its edge: the check reads a frame 1 µm nearer focus than it is)
    kept = gate.choose(seen, truth.astype(np.uint16))  # the ideal refocus: what the camera saw
    assert kept.choice == "learned" and kept.chi2["learned"] <= gate.band
    rng = np.random.default_rng(1)
    invented = truth * (1 + 0.8 * rng.random(truth.shape)) + 300 * (rng.random(truth.shape) > .98)
    d = gate.choose(seen, invented.astype(np.uint16))
    assert d.choice != "learned" and d.chi2["learned"] > gate.band
    assert "learned frame inconsistent" in d.reason
    assert d.qc()["refocus_choice"] == d.choice and "consistency_chi2_learned" in d.qc()
    assert gate.report()["choices"] == {"learned": 1, d.choice: 1}


@pytest.mark.parametrize("hint", [None, 0.5], ids=["defocus-estimated", "defocus-known"])
def test_an_in_focus_frame_keeps_the_camera_even_when_the_learned_frame_passes(
        hint: float | None) -> None:
    """In focus there is nothing to refocus: the camera's frame stays, consistent learned
    frame or not (on real nuclei the v4 engine's in-focus frames passed the check and were
    19.9 dB worse). The in-focus decision comes from the closed loop's estimate, else from
    the plane at which the learned frame explains the camera's."""
    gate = gate_for(CARD, (-12.0, 8.0))
    seen, truth = _scene(0.0, seed=3)
    sharpened = np.clip(truth * 1.05 - 0.05 * truth.mean(), 0, 65535).astype(np.uint16)
    d = gate.choose(seen, sharpened, hint)
    assert d.choice == "camera" and d.frame is seen, d
    assert "in focus" in d.reason, d.reason
    assert hint is not None or d.chi2["learned"] <= gate.band, d  # it passed, yet not taken


@pytest.mark.parametrize("hint", [True, False], ids=["defocus-known", "defocus-estimated"])
def test_the_gate_never_makes_a_frame_worse(hint: bool) -> None:
    """Over -10..8 µm and in focus, with an invented learned frame, the frame the gate gives
    is never worse than the camera's against the truth; near focus deconvolution gains."""
    gate = gate_for(CARD, (-12.0, 8.0))
    rng = np.random.default_rng(2)
    gains = {}
    for z in (-10.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0):
        seen, truth = _scene(z, seed=int(z) + 20)
        bad = (seen * (1 + rng.random(seen.shape))).astype(np.uint16)
        d = gate.choose(seen, bad, z if hint else None)
        gains[z] = round(_psnr(d.frame, truth) - _psnr(seen, truth), 2)
        assert d.choice != "learned", (z, d)
    print(gains)
    assert min(gains.values()) >= -0.05, gains
    if hint:  # near focus, where the deconvolution is consistent, it helps
        assert gains[2.0] > 0.05 and gains[-2.0] > 0.05, gains


def test_the_simulated_specimen_in_focus_is_never_deconvolved_by_an_estimate() -> None:
    """The simulator's own nuclei, in focus and 1 µm off: the likelihood reads them as +-2 µm
    (the band's edge), which counts as in focus without a seed; deconvolved there they lost
    9 to 17 dB."""
    from acquire_vf.optics import card_optics
    from acquire_vf.simulate import Camera
    from acquire_vf.simulate._stacks import through_focus_bank

    o = CARD.optics
    cam = Camera(offset_adu=o["offset_adu"], gain_adu_per_e=o["gain_adu_per_e"],
                 read_noise_e=o["read_noise_e"])
    imgs, zs = through_focus_bank("DNA", seed=5, fields=1, size=256, range_um=1.0, step_um=1.0,
                                  optics=card_optics(o))
    gate = gate_for(CARD, (-12.0, 8.0))
    rng = np.random.default_rng(0)
    high = CARD.normalisation[CARD.output].high  # the brightness of the real-image suite: the
    e99 = float(cam.expected(np.array([np.percentile(imgs[0, 1], 99.9)]), 20.0)[0])  # 99.9th
    exposure = 20.0 * (0.8 * high - cam.offset_adu) / (e99 - cam.offset_adu)  # at 80% of range
    truth = cam.expected(imgs[0, 1], exposure)
    for k, z in enumerate(zs):
        seen = cam.expose(imgs[0, k], exposure, rng)
        d = gate.choose(seen, None)
        gain = _psnr(d.frame, truth) - _psnr(seen, truth)
        print(z, d.choice, d.z_um, round(gain, 2))
        assert d.choice == "camera" and abs(d.z_um or 0.0) <= 2.0, (z, d.reason)
        assert gain >= -0.05, (z, d.reason, gain)


def test_real_validation_cells_decide_where_each_path_is_trusted() -> None:
    """A table measured on real validation cells (``scripts/gate_validation.py
    --write-card``) sets where the learned frame (outward from the innermost plane whose gain
    and every one beyond it are sure) and the deconvolution (inward: from focus out to the
    last sure plane) are taken; it overrides the card's simulated held-out table."""
    from acquire_vf.pipeline._gate import trust_from, trusted_deconvolution, trusted_defocus

    def row(z: float, learned: float, deconv: float) -> dict:
        return {"z_um": z, "gain_ci95": [learned, learned + 1],
                "deconvolution_ci95": [deconv, deconv + 1]}

    table = [row(-10, 0.2, -3), row(-8, 0.1, -2), row(-6, -0.5, -1), row(-4, 0.3, -0.1),
             row(-3, -1, 0.5), row(-2, -5, 2), row(0, -20, 1), row(2, -5, -0.2), row(3, -1, 0.5),
             row(4, 0.3, 0.4), row(6, 0.2, -1), row(8, -0.1, -2)]
    trust = trust_from(table, (-2.0, 2.0))
    assert trust == {"learned_beyond_um": [-8.0, None], "deconvolution_within_um": [-3.0, 0.0]}
    held_out = trusted_defocus(CARD.model_copy(update={"metrics": {
        k: v for k, v in CARD.metrics.items() if k != "real_validation"}}))
    assert held_out is not None and held_out != (-8.0, float("inf"))
    card = CARD.model_copy(update={"metrics": {**CARD.metrics, "real_validation": trust}})
    assert trusted_defocus(card) == (-8.0, float("inf"))
    assert trusted_deconvolution(card) == (-3.0, 0.0)  # none beyond focus on the + side

    gate = gate_for(card, (-12.0, 8.0))
    for z, want in ((2.0, "camera"), (-2.0, "deconvolution")):
        seen, truth = _scene(z, seed=7)
        bad = (seen * 2).astype(np.uint16)  # an invented learned frame
        d = gate.choose(seen, bad, z)
        assert d.choice == want, (z, d.reason)
        if want == "camera":
            assert "did not beat the camera's frame at +2 um on real validation" in d.reason
            assert d.chi2["deconvolution"] <= gate.band  # consistent, yet not trusted there
    seen, truth = _scene(6.0, seed=8)  # consistent learned frame, never trusted on this side
    d = gate.choose(seen, truth.astype(np.uint16), 6.0)
    assert d.choice != "learned" and "did not beat the camera's frame at +6" in d.reason


@pytest.mark.slow
def test_on_real_validation_cells_the_gate_makes_no_plane_worse() -> None:
    """The shipped ``refocus`` card's trust on real Kc167 nuclei (ExampleFly POS076, four
    quadrants, defocused through the engine's optics; POS218 never read): with the defocus
    seeded and estimated, no plane is worse than the camera's frame, where the simulated
    table's trust lost 0.7 dB at +-6 µm. Skipped when the registry cannot be reached."""
    import subprocess
    import tempfile
    from pathlib import Path

    import tifffile

    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real import real_refocus
    from acquire_vf.evaluate._real_sets import fetch_set

    try:
        fields = {p.name: p for p in fetch_set("examplefly", cache_root() / "real")}
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"the package registry cannot be reached: {e}")
    assert CARD.metrics.get("real_validation"), "the shipped card records its real validation"
    im = tifffile.imread(fields["01_POS076_D.TIF"])
    with tempfile.TemporaryDirectory() as tmp:
        quads = []
        for k, (y, x) in enumerate(((0, 0), (0, 500), (503, 0), (503, 500))):
            quads.append(Path(tmp) / f"q{k}.tif")
            tifffile.imwrite(quads[-1], im[y:y + 503, x:x + 500])
        res = real_refocus(ROOT / "engines" / "refocus.onnx", quads,
                           zs=(-10.0, -6.0, -4.0, 2.0, 6.0, 8.0))
    gains = {p["z_um"]: (p["gate_gain_db"], p["gate_seeded_gain_db"]) for p in res["per_z"]}
    print(gains)
    assert min(min(g) for g in gains.values()) >= -0.05, gains
    assert gains[2.0][1] > 0.5, gains  # seeded, the deconvolution still gains near focus


def test_deconvolution_leaves_an_in_focus_frame_alone() -> None:
    from acquire_vf.inference import DeconvolutionRefocus

    seen, truth = _scene(0.0, seed=5)
    d = DeconvolutionRefocus(CARD.optics, (-12.0, 8.0)).refocus(seen)
    assert abs(d.z_um) <= 2.0 and d.frame.dtype == seen.dtype
    assert _psnr(d.frame, truth) >= _psnr(seen, truth) - 0.05


@pytest.mark.slow
def test_a_live_run_records_every_gate_choice(tmp_path) -> None:
    """Refocusing every frame (``always``) with the shipped engines on the in-memory specimen:
    each refocused plane's choice is in session.json (counts, band, reasons) and in the saved
    frame's QC; a camera frame kept is a plane not refocused, journaled with the reason."""
    import json

    from acquire_vf._session import run_session
    from acquire_vf.storage import open_dataset
    from tests._helpers import verified_profile

    prof = verified_profile(autofocus={"policy": "always"}, acquisition={"time_points": 4},
                            queues={"pipeline": 16})
    report = run_session(prof, tmp_path / "run", quiet=True)
    session = json.loads((tmp_path / "run" / "session.json").read_text())
    (ds,) = open_dataset(tmp_path / "run")
    for ch in ("AGP-refocused", "RNA-refocused"):
        gate = session["refocus_gate"][ch]
        assert sum(gate["choices"].values()) == 4 and gate["band"] > 0, gate
        saved = [r for r in ds.records if r["channel"] == ch]
        assert all(r["qc"]["refocus_choice"] in ("learned", "deconvolution") for r in saved)
        assert len(saved) == 4 - gate["choices"].get("camera", 0)
        not_made = [m for m in ds.missing() if m["channel"] == ch]
        assert len(not_made) == gate["choices"].get("camera", 0)
        assert all(m["why"].startswith("not refocused: ") for m in not_made)
    assert report["errors"] == []


@pytest.mark.slow
def test_predict_on_a_real_in_focus_nucleus_frame_is_no_worse_than_it(tmp_path) -> None:
    """The shipped refocus engine made this real frame 25.6 dB worse; through the gate,
    ``predict`` returns a frame no worse than the input, and says what it chose."""
    import json
    import subprocess

    import tifffile

    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real import fetch_real_nuclei
    from tests._helpers import run_cli

    try:
        image = fetch_real_nuclei(cache_root() / "real")
    except (subprocess.SubprocessError, OSError, StopIteration) as e:
        pytest.skip(f"the registry cannot be reached to fetch the real image: {e}")
    out = tmp_path / "refocused.tif"
    r = run_cli("predict", "--model", str(ROOT / "engines" / "refocus.onnx"), "--out",
                str(out), str(image))
    assert r.returncode == 0, r.stderr
    side = json.loads((tmp_path / "refocused.tif.json").read_text())
    assert side["qc"]["refocus_choice"] in ("camera", "deconvolution"), side["qc"]
    assert side["qc"]["refocus_defocus_by"] == "defocus_dna"  # the witness shipped beside it
    assert "refocus gate:" in r.stdout
    src, got = tifffile.imread(image), tifffile.imread(out)
    assert got.dtype == src.dtype and got.shape == src.shape
    if side["qc"]["refocus_choice"] == "camera":
        assert np.array_equal(got, src)
    else:
        n = CARD.normalisation[CARD.output]
        assert image_metrics(to_unit(got, n.low, n.high), to_unit(src, n.low, n.high))[
            "psnr"] > 35


@pytest.mark.slow
def test_a_defocus_estimator_is_a_second_witness_for_the_learned_frame(tmp_path) -> None:
    """Without a seed the gate trusts the learned frame by the defocus the frame itself
    explains the camera's from; on real-like frames that reads up to 3 µm too far
    (``scripts/gate_validation.py``). A defocus estimator of the stain, when there is one, is
    a second witness: both readings must be where the card trusts the engine. Here (a
    simulated v4 DNA field 2 µm off focus, trust moved to beyond +-2.5 µm so the readings
    straddle it) the learned frame explains the camera's from +3 µm and the gate alone takes
    it; ``defocus_dna`` reads about 2.3 µm and the witnessed gate does not."""
    from acquire_vf.config import Compute
    from acquire_vf.evaluate._real import _Scene
    from acquire_vf.inference import create_engine, create_estimator, estimator_beside
    from acquire_vf.simulate import Realism, ensure_dataset

    folder = ensure_dataset("bbbc006", tmp_path / "v4", fields=1, seed=9006, size=(256, 256),
                            realism=Realism())
    plane = next((folder / "clean" / "BBBC006_v1_images_z_16").glob("*_w1*.tif"))
    seen = _Scene(CARD, plane).seen(-2.0, np.random.default_rng(0))
    ort = Compute(backends=("onnxruntime",), measured=False)
    engine = create_engine(ROOT / "engines" / "refocus.onnx", ort)
    found = estimator_beside(ROOT / "engines" / "refocus.onnx", "DNA")
    assert found is not None and found.name == "defocus_dna.onnx"
    est = create_estimator(found, ort)
    try:
        learned, _ = engine.infer([seen])
        lo, hi = CARD.training["data"]["z_range_um"]
        alone, witnessed = gate_for(CARD, (lo, hi)), gate_for(CARD, (lo, hi), estimator=est)
        alone.learned_beyond = witnessed.learned_beyond = (-2.5, 2.5)
        chi2, z_learned = alone.consistency(seen, learned)
        assert chi2 <= alone.band and z_learned >= 2.5
        assert alone.choose(seen, learned).choice == "learned"
        d = witnessed.choose(seen, learned)
        assert d.choice != "learned" and "read by defocus_dna" in d.reason
        assert witnessed.choose(seen, learned, z_hint_um=-2.0).choice != "learned"
    finally:
        engine.close()
        est.close()
