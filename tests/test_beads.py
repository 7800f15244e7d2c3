"""Optics measured from a bead stack (``calibrate --beads``): the PSF model fitted to a stack
recovers the NA it was made with, fits flowdec's real bead better than a Gaussian PSF does, and
bad input gets one line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests._helpers import run_cli


@pytest.mark.slow
def test_the_fit_recovers_the_na_of_a_known_stack() -> None:
    from acquire_vf.psf_fit import _render, fit_bead_stack

    truth = {"na": 1.1, "depth": 0.0, "diameter": 0.6, "hollow": 0.0, "dxy": 0.12, "dz": 0.3}
    stack = _render(truth, 32, 0.52, 1.518, 1.33, gaussian=False)
    rng = np.random.default_rng(0)
    photons = stack / stack.max() * 5000 + 100
    noisy = rng.poisson(photons).astype(np.float64)
    fit = fit_bead_stack(noisy, wavelength_um=0.52, pixel_size_um=0.12, z_step_um=0.3,
                         size=32)
    assert abs(fit.na - 1.1) < 0.08, fit.summary()
    assert fit.residual < 0.5 * fit.gaussian_residual, fit.summary()


@pytest.mark.slow
def test_flowdecs_real_bead_fits_the_physical_model_better_than_a_gaussian(
        tmp_path: Path) -> None:
    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real_bead import bead_fit
    from acquire_vf.evaluate._real_sets import fetch_set

    try:
        path = fetch_set("bead", cache_root() / "real")[0]
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"the package registry cannot be reached: {e}")
    out = bead_fit(path, tmp_path / "fit.png")
    f = out["fit"]
    print(f)
    assert (tmp_path / "fit.png").is_file()
    assert f["residual"] < 0.6 * f["gaussian_residual"]  # measured 0.224 against 0.656
    assert 0.9 < f["na"] < 1.45  # an oil objective's, as the stack's out-of-focus cone says


def test_beads_without_their_plane_spacing_get_one_line(tmp_path: Path) -> None:
    stack = tmp_path / "bead.tif"
    tifffile.imwrite(stack, np.zeros((20, 20, 20), np.float32))
    r = run_cli("calibrate", "--profile", "demo", "--out", str(tmp_path / "cal"), "--beads",
                str(stack))
    assert r.returncode != 0
    assert "--beads: expected --beads-z-step too" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "cal" / "calibration.json").exists()
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((40, 40), np.float32))
    r = run_cli("calibrate", "--profile", "demo", "--out", str(tmp_path / "cal2"), "--beads",
                str(flat), "--beads-z-step", "0.2")
    assert r.returncode != 0 and "expected a 3-D stack" in r.stderr, r.stderr
