"""Real nuclei from outside the simulator (the 2018 Data Science Bowl image in StarDist's
wheel, fetched from the package registry): the shipped refocus engine's failure there is
measured, and the forward-consistency QC flags every such frame, live, while it flags no
validation frame."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests._helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nuclei() -> Path:
    from acquire_vf.evaluate._real import SOURCE, fetch_real_nuclei

    path = fetch_real_nuclei(ROOT / ".cache" / "real")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SOURCE["sha256"]
    return path


def test_the_consistency_qc_flags_every_real_frame_the_engine_makes_worse(nuclei) -> None:
    from acquire_vf.evaluate._real import real_refocus

    res = real_refocus(ROOT / "engines" / "refocus.onnx", nuclei, zs=(-8.0, 0.0, 6.0))
    assert res["worse_than_input"] == res["worse_and_flagged"] > 0, res["per_z"]
    card = json.loads((ROOT / "engines" / "refocus.json").read_text())
    cons = card["metrics"]["held_out"]["consistency"]
    assert cons["chi2_max"] < card["acceptance"]["consistency_chi2_max"]  # no validation frame
    # (the v4 engine makes 5 of its validation frames worse than their input, unflagged: the
    # check's blind spot, docs/real-images.md; v3's made none)


def test_a_flagged_refocused_frame_is_saved_marked_and_later_stages_keep_the_camera_frame(
        nuclei) -> None:
    import tifffile

    from acquire_vf._frames import Frame, FrameId
    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine
    from acquire_vf.pipeline import RefocusStage
    from acquire_vf.pipeline._protocol import FrameSet

    raw = tifffile.imread(nuclei).astype(np.float32)
    frame = (100 + raw / raw.max() * 3000).astype(np.uint16)  # an in-focus real frame
    engine = create_engine(ROOT / "engines" / "refocus.onnx", Compute(backends=("onnxruntime",)))
    src = Frame(FrameId(0, 0, 0, "DNA"), frame, seq=0, elapsed_ms=0.0)
    # through the gate: the learned frame is refused, the frame is in focus, the camera's is
    # kept and the plane journaled as not refocused with the reason
    gated = RefocusStage({"DNA": engine}, policy="always")
    fs = FrameSet(0, 0, 0, {"DNA": src})
    out = gated.process(fs)
    assert "DNA-refocused" not in out and "DNA" not in out
    why = fs.scores["not_made"]["DNA-refocused"]
    assert why.startswith("not refocused: learned frame inconsistent") and "in focus" in why
    assert gated.gate_report()["DNA-refocused"]["choices"] == {"camera": 1}
    # without a gate (a card with no optics): saved, flagged, and not used by later stages
    stage = RefocusStage({"DNA": engine}, policy="always", gate=False)
    out = stage.process(FrameSet(0, 0, 0, {"DNA": src}))
    stage.close()
    qc = out["DNA-refocused"].qc
    assert qc["inconsistent_with_input"] and qc["consistency_chi2"] > 10
    assert "DNA" not in out  # the synthesis stages go on with the camera's frame


def test_every_real_set_is_fetched_checked_and_a_changed_file_refetched(tmp_path: Path) -> None:
    """From the registry, sha256-checked, cached; a cached file that changed is fetched again;
    the fetch is skipped (said) where the registry cannot be reached."""
    import subprocess

    from acquire_vf.evaluate._real_sets import SETS, fetch_set

    try:
        files = fetch_set("bead", tmp_path)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"the package registry cannot be reached: {e}")
    (name, sha), = SETS["bead"].members
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == sha
    files[0].write_bytes(b"not the bead")
    again = fetch_set("bead", tmp_path)
    assert hashlib.sha256(again[0].read_bytes()).hexdigest() == sha
    assert "Apache-2.0" in (tmp_path / "bead" / "SOURCE.txt").read_text()
    assert {s.name for s in SETS.values()} == {"examplefly", "ecoli", "bead", "bbbc007"}
    assert len(SETS["bbbc007"].members) == 14 and len(SETS["examplefly"].members) == 9


def test_a_refocused_frame_of_the_engines_own_kind_passes_the_check(tmp_path: Path) -> None:
    import tifffile

    from acquire_vf import layouts
    from acquire_vf._frames import Frame, FrameId
    from acquire_vf.config import Compute
    from acquire_vf.inference import create_engine
    from acquire_vf.pipeline import RefocusStage
    from acquire_vf.pipeline._protocol import FrameSet
    from acquire_vf.simulate import write_dataset

    root = write_dataset("bbbc006", tmp_path / "d", fields=1, seed=4242, size=(256, 256))
    from acquire_vf.card import ModelCard
    from acquire_vf.pipeline._gate import trusted_defocus

    edge = trusted_defocus(ModelCard.load(ROOT / "engines" / "refocus.onnx"))[0]
    src_ref = next(s for s, _ in layouts.autofocus_pairs(layouts.scan_bbbc006(root), "DNA")
                   if s.z_um == edge)
    engine = create_engine(ROOT / "engines" / "refocus.onnx", Compute(backends=("onnxruntime",)))
    stage = RefocusStage({"DNA": engine}, policy="always")
    src = Frame(FrameId(0, 0, 0, "DNA"), tifffile.imread(src_ref.path), seq=0, elapsed_ms=0.0)
    # with the closed loop's estimate (where the card trusts the engine: -10 um, measured on
    # real validation cells) the learned frame passes the check and goes on to later stages
    seeded = FrameSet(0, 0, 0, {"DNA": src}, scores={"defocus": {"DNA": (edge, 0.5)}})
    out = stage.process(seeded)
    # without one the gate reads the defocus from the learned frame; where that is inside the
    # card's untrusted range the camera's frame stays, and the set says why
    bare = FrameSet(0, 0, 0, {"DNA": src})
    left = stage.process(bare)
    stage.close()
    assert out["DNA-refocused"].qc["inconsistent_with_input"] is False
    assert out["DNA-refocused"].qc["refocus_choice"] == "learned"
    assert out["DNA"].role == "virtual"  # the refocused frame goes on to later stages
    gate = stage.gates["DNA"]
    chi2, z_seen = gate.consistency(src.pixels, out["DNA-refocused"].pixels)
    assert chi2 <= gate.band and z_seen < -2.0
    assert "DNA-refocused" not in left and "DNA" not in left
    assert bare.scores["not_made"]["DNA-refocused"].startswith("not refocused: ")
