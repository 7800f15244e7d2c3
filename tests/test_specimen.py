"""The live simulated specimen on the real Micro-Manager demo configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf._session import make_run
from acquire_vf.acquisition import RunState
from acquire_vf.backends import specimen_for
from acquire_vf.pipeline import focus_score
from acquire_vf.simulate import fluorescence
from acquire_vf.storage import open_dataset
from tests._helpers import make_profile

pytestmark = pytest.mark.slow

TWO_STAINS = [{"name": "DNA", "preset": "DAPI", "exposure_ms": 100},
              {"name": "Mito", "preset": "Cy5", "exposure_ms": 100}]


def _acquire(microscope, out: Path, profile) -> dict[tuple[int, int, int, str], np.ndarray]:
    run = make_run(profile, out)
    run.run()
    assert run.state is RunState.FINISHED and run.errors == []
    (ds,) = open_dataset(out)
    return {(r["t"], r["p"], r["z"], r["channel"]): px for r, px in ds.iter_frames()}


def test_z_offset_of_8_um_defocuses_the_frame(core, microscope, tmp_path: Path) -> None:
    prof = make_profile(acquisition={"time_points": 2, "z_offsets_um": [0.0, 8.0]})
    z0 = core.get_position()
    frames = _acquire(microscope, tmp_path, prof)
    assert core.get_position() == pytest.approx(z0), "the run must return focus to its start"
    for t in range(2):
        for ch in ("AGP", "RNA"):
            sharp = focus_score(frames[(t, 0, 0, ch)], step=1)
            blurred = focus_score(frames[(t, 0, 1, ch)], step=1)
            assert blurred < 0.6 * sharp, (ch, sharp, blurred)


def test_moving_the_z_stage_in_micro_manager_defocuses(core, microscope, tmp_path: Path) -> None:
    prof = make_profile(acquisition={"time_points": 1})
    z0 = core.get_position()
    try:
        sharp = _acquire(microscope, tmp_path / "focus", prof)
        core.set_position(z0 + 8.0)
        core.wait_for_device(core.get_focus_device())
        blurred = _acquire(microscope, tmp_path / "moved", prof)
    finally:
        core.set_position(z0)
    for ch in ("AGP", "RNA"):
        assert focus_score(blurred[(0, 0, 0, ch)], step=1) < \
            0.6 * focus_score(sharp[(0, 0, 0, ch)], step=1)


def test_channel_preset_picks_the_stain(microscope, tmp_path: Path) -> None:
    prof = make_profile(channels=TWO_STAINS, acquisition={"time_points": 1})
    frames = _acquire(microscope, tmp_path, prof)
    spec = specimen_for(prof)
    field = spec._field((0, 0), frames[(0, 0, 0, "DNA")].shape)
    dna = fluorescence(field.stains["DNA"], "DNA", spec.optics, 0.0)
    mito = fluorescence(field.stains["Mito"], "Mito", spec.optics, 0.0)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel().astype(float), b.ravel())[0, 1])

    assert corr(frames[(0, 0, 0, "DNA")], dna) > 0.9
    assert corr(frames[(0, 0, 0, "Mito")], mito) > 0.9
    assert corr(frames[(0, 0, 0, "DNA")], mito) < 0.2


def test_xy_stage_picks_the_field_and_files_say_simulated(microscope, tmp_path: Path) -> None:
    prof = make_profile(acquisition={"time_points": 2, "positions": [
        {"name": "here", "x_um": 0.0, "y_um": 0.0},
        {"name": "there", "x_um": 900.0, "y_um": 300.0}]})
    frames = _acquire(microscope, tmp_path, prof)
    a0, a1 = frames[(0, 0, 0, "AGP")].astype(float), frames[(1, 0, 0, "AGP")].astype(float)
    b0 = frames[(0, 1, 0, "AGP")].astype(float)
    assert np.corrcoef(a0.ravel(), a1.ravel())[0, 1] > 0.9  # same place, new noise
    assert abs(np.corrcoef(a0.ravel(), b0.ravel())[0, 1]) < 0.3  # another field
    with tifffile.TiffFile(next(tmp_path.glob("*.ome.tif"))) as tf:
        assert "SIMULATED PIXELS" in tf.ome_metadata
