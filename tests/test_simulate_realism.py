"""Simulator version 4: thick cells, background, vignetting, the sCMOS pattern, dose, linked
channels, domain randomisation and photobleaching, each measured on what it makes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf import layouts
from acquire_vf.simulate import OPTICS_20X, Camera, Realism, fluorescence, render_field
from acquire_vf.simulate._realism import LAYER_UM, LAYERS, PLAIN, light, section_weights


@pytest.fixture(scope="module")
def thick():
    return render_field("u2os", 7, (256, 256), 0.65, thick=True, linked=True)


def test_thick_columns_hold_every_emitter_and_nuclei_are_3_to_8_um_tall(thick) -> None:
    s = thick.truth.sections
    assert s.shape[0] == LAYERS
    w = section_weights(np.array([[0.4, 3.0, 8.0, 20.0]]))
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=1e-6)
    assert w[:, 0, 1][2:].sum() == 0 and w[:, 0, 2][:5].min() > 0  # 3 µm: 2 sections; 8: 5
    nuclei = thick.truth.nuclei > 0
    top = (s > 1e-3).sum(axis=0)  # sections a column reaches
    assert np.percentile(top[nuclei], 90) * LAYER_UM >= 4.8  # tall nuclei
    cyto = (thick.truth.labels > 0) & ~nuclei
    assert np.median(top[cyto]) * LAYER_UM <= 3.2  # a thinner cytoplasm


def test_thick_cells_keep_their_flux_and_carry_out_of_focus_haze(thick) -> None:
    dna = thick.stains["DNA"]
    thin = fluorescence(dna, "DNA", OPTICS_20X, [0.0, 6.0])
    deep = fluorescence(dna, "DNA", OPTICS_20X, [0.0, 6.0], thick.truth.sections)
    assert deep.sum() / thin.sum() == pytest.approx(1.0, abs=0.03)

    def sharp(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img, axis=1)).mean() / img.mean())

    assert sharp(deep[0]) < 0.97 * sharp(thin[0])  # in focus, the other sections blur it
    # focused 6 µm higher, the tops of the tall nuclei come near focus: another section, not
    # only a blurrier copy of the in-focus frame
    assert sharp(deep[1]) > 1.05 * sharp(thin[1])


def test_linked_channels_put_rough_er_and_mitochondria_into_rna() -> None:
    plain = render_field("u2os", 3, (256, 256), 0.65)
    linked = render_field("u2os", 3, (256, 256), 0.65, linked=True)
    cyto = (plain.truth.labels > 0) & (plain.truth.nuclei == 0)

    def corr(f, a: str, b: str) -> float:
        return float(np.corrcoef(f.stains[a][cyto], f.stains[b][cyto])[0, 1])

    assert corr(linked, "RNA", "ER") > corr(plain, "RNA", "ER") + 0.05
    assert corr(linked, "RNA", "Mito") > corr(plain, "RNA", "Mito")


def test_background_autofluorescence_and_vignetting() -> None:
    flat = np.full((200, 300), 0.5, np.float32)
    cells = np.zeros(flat.shape, np.int32)
    cells[80:120, 130:170] = 1
    real = Realism(background=0.02, autofluorescence=0.05, vignetting=0.3)
    rng = np.random.default_rng(0)
    out = light(flat, 0.447, cells, real, PLAIN, rng)
    centre, corner = out[95:105, 140:160].mean(), out[:8, :8].mean()
    assert corner / out[40:60, 140:160].mean() == pytest.approx(0.7, abs=0.04)
    assert centre > out[95:105, 60:80].mean() + 0.03  # autofluorescence in the cell
    red = light(flat, 0.692, cells, real, PLAIN, np.random.default_rng(0))
    assert red[95:105, 140:160].mean() < centre  # and less of it in the red
    assert light(flat, None, cells, real, PLAIN, rng)[100, 150] < 0.51  # transmitted: none


def test_scmos_fixed_pattern_repeats_and_has_hot_pixels() -> None:
    dark = np.zeros((256, 256), np.float32)
    cam = Camera(fixed_pattern=True, pattern_seed=4)
    a = cam.expose(dark, 1000.0, np.random.default_rng(1)).astype(float)
    b = cam.expose(dark, 1000.0, np.random.default_rng(2)).astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5  # the pattern, not the noise
    hot = (a > 500) & (b > 500)
    assert 0 < hot.sum() < 60  # 2e-4 of 65,536 pixels: about 13
    plain = Camera()
    c = plain.expose(dark, 1000.0, np.random.default_rng(1)).astype(float)
    d = plain.expose(dark, 1000.0, np.random.default_rng(2)).astype(float)
    assert abs(np.corrcoef(c.ravel(), d.ravel())[0, 1]) < 0.05


def test_low_dose_brings_the_brightest_pixels_to_tens_or_hundreds_of_electrons(
        tmp_path: Path) -> None:
    from acquire_vf.simulate import write_dataset

    cam = Camera()
    root = write_dataset("bbbc022", tmp_path / "low", fields=2, seed=3, size=(128, 128),
                         realism=Realism(dose=0.02))
    dna = [s["DNA"].path for s in layouts.scan_bbbc022(root)]
    peak_e = [(np.percentile(tifffile.imread(p), 99.9) - cam.offset_adu) / cam.gain_adu_per_e
              for p in dna]
    assert 30 < np.median(peak_e) < 300, peak_e
    manifest = json.loads((root / "simulation.json").read_text())
    assert manifest["simulator_version"] == 4 and manifest["realism"]["dose"] == 0.02


def test_domain_randomisation_draws_each_field_and_records_it(tmp_path: Path) -> None:
    from acquire_vf.simulate import write_dataset

    root = write_dataset("bbbc022", tmp_path / "r", fields=3, seed=5, size=(96, 96),
                         realism=Realism(randomise=True))
    styles = json.loads((root / "fields.json").read_text())
    assert len(styles) == 3
    assert all(0.8 <= s["pixel_scale"] <= 1.2 and 0.01 <= s["dose"] <= 1 for s in styles)
    assert len({s["texture_grain"] for s in styles}) == 3
    plain = write_dataset("bbbc022", tmp_path / "p", fields=3, seed=5, size=(96, 96))
    assert not (plain / "fields.json").exists()
    assert json.loads((plain / "simulation.json").read_text())["realism"] is None


def test_the_live_realistic_specimen_bleaches_with_exposure() -> None:
    from acquire_vf.config import Specimen
    from acquire_vf.simulate import LiveSpecimen

    spec = Specimen(kind="simulated", realistic=True, bleach_s=2.0)
    live = LiveSpecimen(spec, pixel_size_um=0.65, bit_depth=16,
                        stain_of={"DNA": "DNA", "BF": "BF"})
    frames = [live.render((128, 128), t, "DNA", 0.0, 0.0, 0.0, 500.0).mean() for t in range(6)]
    assert frames[-1] < 0.4 * frames[0] + 0.6 * 100  # 3 s of light at 1/e per 2 s
    assert all(a > b for a, b in zip(frames, frames[1:], strict=False))
    bf = [live.render((128, 128), t, "BF", 0.0, 0.0, 0.0, 20.0).mean() for t in range(3)]
    assert bf[-1] == pytest.approx(bf[0], rel=0.01)  # transmitted light does not bleach
    # stage positions left of and above the slide's origin render too (calibration grids
    # around the current position reach there)
    left = live.render((128, 128), 0, "BF", -500.0, -300.0, 0.0, 20.0)
    assert left.shape == (128, 128) and left.mean() > 0


def test_realism_options_need_realistic_and_key_their_own_cache(tmp_path: Path) -> None:
    from acquire_vf._errors import ProfileError
    from acquire_vf.config import load_recipe, simulated_root
    from tests._helpers import ROOT, cli_here

    text = (ROOT / "training" / "cps_dna.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("size = [256, 256]", "size = [256, 256]\nrandomise = true"))
    with pytest.raises(ProfileError, match="set realistic = true"):
        load_recipe(bad)
    good = tmp_path / "good.toml"
    good.write_text(text.replace("size = [256, 256]", "size = [256, 256]\nrealistic = true"))
    real, plain = load_recipe(good)[0], load_recipe(ROOT / "training" / "cps_dna.toml")[0]
    assert Realism(**real.data.simulated.realism()) == Realism()
    assert simulated_root(real) != simulated_root(plain)
    assert plain.data.simulated.realism() is None
    res = cli_here("simulate", "bbbc022", "--out", str(tmp_path / "x"), "--randomise")
    assert res.returncode != 0 and "expected --realistic" in res.stderr
    assert not (tmp_path / "x").exists()


def test_live_cells_walk_and_divide_the_same_way_in_every_window() -> None:
    from acquire_vf.simulate._cells import MITOSIS_T, at_time
    from acquire_vf.simulate._phantom import cells_for_window

    cells = cells_for_window("u2os", 0, (0, 0), (512, 512), 0.65)
    assert at_time(cells, 40, 0.0, 0.0) == cells  # still cells stay as they are
    still = {c.seed: (c.x, c.y) for c in cells}
    later = at_time(cells, 40, 0.5, 0.0)  # walking, no divisions
    moved = [np.hypot(c.x - still[c.seed][0], c.y - still[c.seed][1]) for c in later]
    assert len(later) == len(cells)
    # a 2-D random walk of 40 steps of 0.5 µm per axis: typically sqrt(2 x 40) x 0.5 = 4.5 µm
    assert 2.5 < float(np.median(moved)) < 7.0
    assert at_time(cells, 40, 0.5, 0.0) == later  # deterministic
    grown = at_time(cells, 60, 0.0, 0.02)  # dividing, not walking
    assert len(cells) * 1.5 < len(grown) < len(cells) * 4
    assert [c.id for c in grown] == list(range(1, len(grown) + 1))
    # a daughter has half its mother's area
    mothers = {c.seed: c for c in cells}
    daughters = [c for c in grown if c.seed not in mothers]
    assert daughters and all(c.radius < 0.75 * max(m.radius for m in cells) for c in daughters)
    # before splitting, a dividing cell rounds up for MITOSIS_T time points
    seen_mitotic = any(c.mitotic and c.seed in mothers and not mothers[c.seed].mitotic
                       for t in range(1, 60) for c in at_time(cells, t, 0.0, 0.02))
    assert seen_mitotic and MITOSIS_T == 3


def test_the_live_specimen_shows_cells_where_they_are_at_each_time_point() -> None:
    from acquire_vf.config import Specimen
    from acquire_vf.simulate import LiveSpecimen

    spec = Specimen(kind="simulated", motion_um=1.0, divisions=0.01, cells_every=5)
    live = LiveSpecimen(spec, pixel_size_um=0.65, bit_depth=16, stain_of={"DNA": "DNA"})
    a, b, c = (live.render((128, 128), t, "DNA", 0.0, 0.0, 0.0, 20.0).astype(float)
               for t in (0, 4, 20))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9  # the same cells (noise apart)
    assert np.corrcoef(a.ravel(), c.ravel())[0, 1] < np.corrcoef(a.ravel(), b.ravel())[0, 1] - 0.1
    still = LiveSpecimen(Specimen(kind="simulated"), pixel_size_um=0.65, bit_depth=16,
                         stain_of={"DNA": "DNA"})
    s0, s20 = (still.render((128, 128), t, "DNA", 0.0, 0.0, 0.0, 20.0).astype(float)
               for t in (0, 20))
    assert np.corrcoef(s0.ravel(), s20.ravel())[0, 1] > 0.9


def test_a_dose_floor_bounds_the_randomised_dose_and_keys_its_own_cache(tmp_path: Path
                                                                         ) -> None:
    """``dose_floor`` (a recipe's ``[data.simulated]``): every field's dose lies between it and
    the nominal dose; the default keeps the datasets made before under their keys."""
    from acquire_vf._errors import ProfileError
    from acquire_vf.config import load_recipe, simulated_root
    from acquire_vf.simulate._realism import draw_style
    from tests._helpers import ROOT

    def doses(realism: Realism) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.array([draw_style(rng, realism, ("DNA",)).dose for _ in range(200)])

    wide, narrow = doses(Realism(randomise=True)), doses(Realism(randomise=True, dose_floor=0.1))
    assert wide.min() < 0.05 and wide.max() <= 1.0
    assert narrow.min() >= 0.1 and narrow.max() <= 1.0 and narrow.min() < 0.15
    text = (ROOT / "training" / "v4d" / "mda_phc_vinculin.toml").read_text()
    floored = tmp_path / "floored.toml"
    floored.write_text(text.replace("randomise = true", "randomise = true\ndose_floor = 0.1"))
    base, low = (load_recipe(ROOT / "training" / "v4d" / "mda_phc_vinculin.toml")[0],
                 load_recipe(floored)[0])
    assert "dose_floor" not in base.data.simulated.realism()  # its cache key as before
    assert Realism(**low.data.simulated.realism()).dose_floor == 0.1
    assert simulated_root(low) != simulated_root(base)
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("randomise = true", "randomise = false\ndose_floor = 0.1"))
    with pytest.raises(ProfileError, match="dose_floor bounds the randomised dose"):
        load_recipe(bad)
