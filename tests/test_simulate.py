"""The simulator: determinism, biology, optics and camera physics, public layouts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from acquire_vf.pipeline import focus_score
from acquire_vf.simulate import Camera, Optics, convolve, fluorescence, render_field

U2OS_PX = 0.65
MDA_PX = 0.1075


@pytest.fixture(scope="module")
def u2os():
    return [render_field("u2os", s, (384, 384), U2OS_PX) for s in (1, 2, 3)]


@pytest.fixture(scope="module")
def mda():
    return [render_field("mda231", s, (700, 900), MDA_PX) for s in (1, 2)]


def test_same_seed_same_images_different_seed_differs() -> None:
    a = render_field("u2os", 7, (128, 160), U2OS_PX)
    b = render_field("u2os", 7, (128, 160), U2OS_PX)
    c = render_field("u2os", 8, (128, 160), U2OS_PX)
    for stain in a.stains:
        np.testing.assert_array_equal(a.stains[stain], b.stains[stain])
        assert not np.array_equal(a.stains[stain], c.stains[stain])


def test_a_window_of_the_slide_matches_the_larger_field() -> None:
    """The slide is seamless: a sub-window renders exactly as that part of a bigger field."""
    big = render_field("u2os", 4, (300, 300), U2OS_PX, origin_px=(1000, 2000))
    small = render_field("u2os", 4, (100, 120), U2OS_PX, origin_px=(1100, 2090))
    for stain in ("DNA", "ER", "Mito"):
        np.testing.assert_allclose(small.stains[stain], big.stains[stain][100:200, 90:210],
                                   atol=1e-5)


@pytest.mark.slow
def test_cells_vary_touch_and_include_mitoses(u2os) -> None:
    cells = [c for f in u2os for c in f.cells]
    radii = np.array([c.radius for c in cells])
    assert radii.std() / radii.mean() > 0.15
    assert any(c.mitotic for c in cells)
    labels = u2os[0].truth.labels
    touching = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    assert touching.sum() > 100, "cells should share borders in a confluent field"


def _pearson(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def test_channel_relationships_follow_the_biology(u2os) -> None:
    for f in u2os:
        s, nuc, cells = f.stains, f.truth.nuclei > 0, f.truth.labels > 0
        rna_enrichment = s["RNA"][nuc].mean() / s["RNA"][cells].mean()
        mito_enrichment = s["Mito"][nuc].mean() / s["Mito"][cells].mean()
        assert rna_enrichment > 1.5, rna_enrichment  # nucleoli and nucleoplasm
        assert mito_enrichment < 0.35, mito_enrichment  # cytoplasmic: strongly depleted
        dna_rna = _pearson(s["DNA"], s["RNA"], cells)
        dna_mito = _pearson(s["DNA"], s["Mito"], cells)
        assert dna_rna > 0.2 and dna_mito < 0.0 and dna_rna - dna_mito > 0.3, (dna_rna, dna_mito)


def test_er_fades_with_distance_from_the_nucleus(u2os) -> None:
    ratios = []
    for f in u2os:
        for c in f.cells:
            if c.mitotic:
                continue
            own = f.truth.labels == c.id
            nucleus = f.truth.nuclei == c.id
            if own.sum() < 400 or nucleus.sum() < 50:
                continue
            dist = ndimage.distance_transform_edt(~nucleus) * U2OS_PX
            near = own & (dist > 0.5) & (dist < 3)
            far = own & (dist > 8) & (dist < 14)
            if near.sum() > 20 and far.sum() > 20:
                ratios.append(f.stains["ER"][near].mean() / f.stains["ER"][far].mean())
    assert len(ratios) > 30
    assert np.mean(np.array(ratios) > 1.5) > 0.85, np.percentile(ratios, [10, 50, 90])


@pytest.mark.slow
def test_vinculin_spots_lie_at_actin_fibre_ends(mda) -> None:
    near_end, total, fibre_ends_with_spot = 0, 0, []
    for f in mda:
        v = f.stains["Vinculin"]
        peaks = (v == ndimage.maximum_filter(v, size=11)) & (v > 0.6)
        ys, xs = np.nonzero(peaks)
        spots = np.stack([(xs + 0.5) * MDA_PX, (ys + 0.5) * MDA_PX], 1)
        ends = np.array([(x0, y0) for _, x0, y0, _, _ in f.truth.fibres]
                        + [(x1, y1) for _, _, _, x1, y1 in f.truth.fibres])
        h, w = np.array(v.shape) * MDA_PX
        visible = (ends[:, 0] > 2) & (ends[:, 0] < w - 2) & (ends[:, 1] > 2) & (ends[:, 1] < h - 2)
        d = np.sqrt(((spots[:, None, :] - ends[None]) ** 2).sum(-1))
        near_end += int((d.min(1) < 2.0).sum())
        total += len(spots)
        fibre_ends_with_spot.append(float((d[:, visible].min(0) < 2.0).mean()))
    assert total > 40
    assert near_end / total > 0.75, (near_end, total)  # the rest: nascent adhesions
    assert np.mean(fibre_ends_with_spot) > 0.6


def test_psf_planes_hold_their_energy() -> None:
    wide = Optics(psf_px=129)
    narrow = Optics()
    for z in (-12.0, -4.0, 0.0, 6.0, 12.0):
        p = wide.psf(0.52, z)
        assert p.min() >= 0 and p.sum() == pytest.approx(1.0, abs=1e-5)
        c = (129 - 65) // 2
        assert p[c:c + 65, c:c + 65].sum() > 0.97, f"65-px window loses energy at z={z}"
        assert narrow.psf(0.52, z).sum() == pytest.approx(1.0, abs=1e-5)
    obj = np.zeros((200, 200), np.float32)
    obj[80:120, 70:130] = np.random.default_rng(0).random((40, 60))
    assert convolve(obj, narrow.psf(0.52, 8.0)).sum() == pytest.approx(obj.sum(), rel=1e-3)


def test_focus_measure_falls_monotonically_with_defocus() -> None:
    f = render_field("u2os", 2, (256, 256), U2OS_PX)
    zs = tuple(float(z) for z in range(-12, 13))
    scores = [focus_score(i, step=1) for i in fluorescence(f.stains["DNA"], "DNA", Optics(), zs)]
    assert int(np.argmax(scores)) == 12
    assert all(np.diff(scores[:13]) > 0) and all(np.diff(scores[12:]) < 0)


def test_defocus_asymmetry_follows_the_model() -> None:
    f = render_field("u2os", 2, (256, 256), U2OS_PX)
    matched = Optics(specimen_index=1.0, depth_um=0.0)  # no index mismatch: symmetric
    mismatched = Optics()  # air objective into an aqueous sample, emitters 3 µm deep
    for z in (2.0, 4.0, 8.0):
        up, down = fluorescence(f.stains["DNA"], "DNA", matched, (z, -z))
        np.testing.assert_allclose(up, down, rtol=1e-4, atol=1e-6)
        up, down = fluorescence(f.stains["DNA"], "DNA", mismatched, (z, -z))
        assert np.abs(up - down).sum() / up.sum() > 0.001, "mismatch must break the symmetry"
    for z in (2.0, 4.0):
        up, down = fluorescence(f.stains["DNA"], "DNA", mismatched, (z, -z))
        peak_up, peak_down = (mismatched.psf(0.447, s).max() for s in (z, -z))
        sharper_up = focus_score(up, step=1) > focus_score(down, step=1)
        assert sharper_up == (peak_up > peak_down)


@pytest.mark.parametrize("bits", [12, 16])
def test_camera_flat_field_matches_shot_and_read_noise(bits: int) -> None:
    cam = Camera(bit_depth=bits)
    flat = np.full((400, 400), 0.2, np.float32)
    img = cam.expose(flat, 20.0, np.random.default_rng(1)).astype(np.float64)
    electrons = 0.2 * cam.photon_flux * 0.020 * cam.qe
    mean = cam.gain_adu_per_e * electrons + cam.offset_adu
    var = cam.gain_adu_per_e**2 * (electrons + cam.read_noise_e**2) + 1 / 12
    assert img.mean() == pytest.approx(mean, rel=0.005)
    assert img.var() == pytest.approx(var, rel=0.03)


def test_camera_saturates_at_its_bit_depth() -> None:
    cam = Camera(bit_depth=12)
    img = cam.expose(np.full((64, 64), 50.0, np.float32), 100.0, np.random.default_rng(0))
    assert img.dtype == np.uint16 and img.max() == 4095 and (img == 4095).all()
    low = Camera(bit_depth=16).expose(np.zeros((64, 64), np.float32), 10.0,
                                      np.random.default_rng(0))
    assert abs(float(low.mean()) - 100.0) < 1.0  # the offset, never negative


def test_brightfield_shows_the_side_of_focus(u2os) -> None:
    """A phase object is all but invisible in focus and shows with opposite contrast on the
    two sides (transport of intensity: dI/dz ~ -laplacian(phase)); defocus moves light
    about, it does not lose it."""
    from acquire_vf.simulate import OPTICS_20X, brightfield

    opd = u2os[0].stains["OPD"]
    assert 0.05 < opd.max() < 0.5  # a flat cell: tenths of a µm of optical path
    zs = (-5.0, -1.0, 0.0, 1.0, 5.0)
    images = brightfield(opd, OPTICS_20X, zs)
    curvature = ndimage.gaussian_laplace(opd, 1.5).ravel()
    r = [np.corrcoef(im.ravel(), curvature)[0, 1] for im in images]
    contrast = [float(im.std()) for im in images]
    assert r[0] > 0.4 and r[1] > 0.4 and r[3] < -0.4 and r[4] < -0.4, np.round(r, 2)
    assert contrast[2] < 0.3 * min(contrast[1], contrast[3]), np.round(contrast, 4)
    assert np.allclose([im.mean() for im in images], 1.0, atol=0.01)
