"""Simulated datasets in the public layouts parse back with the loaders' scanners."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf import layouts
from acquire_vf.pipeline import focus_score
from acquire_vf.simulate import write_dataset
from tests._helpers import run_cli

SIZE = (96, 128)


@pytest.fixture(scope="module")
def bbbc006(tmp_path_factory) -> Path:
    return write_dataset("bbbc006", tmp_path_factory.mktemp("d") / "BBBC006", fields=4, seed=5,
                         size=SIZE)


@pytest.mark.slow
def test_bbbc006_layout_and_naming(bbbc006: Path) -> None:
    refs = layouts.scan_bbbc006(bbbc006)
    assert len(refs) == 4 * 34 * 4  # w1 Hoechst, w2 phalloidin, and the simulated w3, w4
    dirs = sorted(p.name for p in bbbc006.iterdir() if p.name.startswith("BBBC006"))
    assert dirs == [f"BBBC006_v1_images_z_{i:02d}" for i in range(34)]
    pattern = re.compile(r"^mcf-z-stacks-03212011_[a-p]\d{2}_s[12]_w[1-4][0-9A-F-]{36}\.tif$")
    assert all(pattern.match(r.path.name) for r in refs)
    assert Counter(r.channel for r in refs) == {"DNA": 136, "actin": 136, "RNA": 136, "AGP": 136}
    assert {r.z_um for r in refs} == {(i - 16) * 2.0 for i in range(34)}
    img = tifffile.imread(refs[0].path)
    assert img.shape == SIZE and img.dtype == np.uint16


@pytest.mark.slow
def test_bbbc006_plane_16_is_in_focus(bbbc006: Path) -> None:
    site = [r for r in layouts.scan_bbbc006(bbbc006)
            if r.field_key == ("BBBC006", "a01", 1) and r.channel == "DNA"]
    score = {r.z_um: focus_score(tifffile.imread(r.path), step=1) for r in site}
    assert max(score, key=score.__getitem__) == 0.0
    assert score[0.0] > score[-8.0] > score[-16.0] and score[0.0] > score[8.0] > score[16.0]


@pytest.mark.slow
def test_autofocus_pairs_respect_range_and_exclusion(bbbc006: Path) -> None:
    pairs = layouts.autofocus_pairs(layouts.scan_bbbc006(bbbc006))
    zs = sorted({src.z_um for src, _ in pairs})
    assert zs == [-12.0, -10.0, -8.0, -6.0, -4.0, 4.0, 6.0, 8.0]
    assert len(pairs) == 4 * len(zs)
    for src, target in pairs:
        assert target.z_um == 0.0 and target.field_key == src.field_key
        assert target.channel == src.channel == "DNA"


def test_bbbc022_layout(tmp_path: Path) -> None:
    root = write_dataset("bbbc022", tmp_path / "BBBC022", fields=3, seed=1, size=SIZE)
    sites = layouts.scan_bbbc022(root)
    assert len(sites) == 3
    for site in sites:
        assert sorted(site) == sorted(layouts.BBBC022_CHANNELS.values())
        for w, ch in layouts.BBBC022_CHANNELS.items():
            assert re.match(rf"^IXMtest_[A-P]\d{{2}}_s[12]_w{w}[0-9A-F-]{{36}}\.tif$",
                            site[ch].path.name)
            assert site[ch].path.parent.name == "20585"


def test_mda231_paired_layout_and_missing_channel(tmp_path: Path) -> None:
    root = write_dataset("mda231", tmp_path / "MDA", fields=2, seed=1, size=(200, 256))
    fields = layouts.scan_paired(root, layouts.MDA231_CHANNELS)
    assert [f["PhC"].well for f in fields] == ["field_001", "field_002"]
    assert all(tifffile.imread(f[c].path).shape == (200, 256) for f in fields for c in f)
    with pytest.raises(FileNotFoundError, match=r"missing \['Paxillin'\]"):
        layouts.scan_paired(root, ["PhC", "Paxillin"])


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = write_dataset("bbbc022", tmp_path / "a", fields=1, seed=9, size=SIZE)
    b = write_dataset("bbbc022", tmp_path / "b", fields=1, seed=9, size=SIZE)
    c = write_dataset("bbbc022", tmp_path / "c", fields=1, seed=10, size=SIZE)
    fa = sorted(a.glob("*/*.tif"))
    fb = sorted(b.glob("*/*.tif"))
    assert [p.name for p in fa] == [p.name for p in fb]
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(tifffile.imread(x), tifffile.imread(y))
    fc = sorted(c.glob("*/*.tif"))
    assert not np.array_equal(tifffile.imread(fa[0]), tifffile.imread(fc[0]))


def test_split_by_site_is_stable_and_balanced() -> None:
    keys = [("BBBC022", layouts.well_name(i), s) for i in range(150) for s in (1, 2)]
    splits = [layouts.split_of(k) for k in keys]
    assert splits == [layouts.split_of(k) for k in keys]
    counts = Counter(splits)
    assert 0.6 < counts["train"] / len(keys) < 0.8
    assert counts["val"] > 20 and counts["test"] > 20


@pytest.mark.slow
def test_simulate_cli(tmp_path: Path) -> None:
    r = run_cli("simulate", "bbbc022", "--out", str(tmp_path / "d"), "--fields", "2",
                "--size", "128x96", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert len(layouts.scan_bbbc022(tmp_path / "d")) == 2
    bad = run_cli("simulate", "bbbc022", "--out", str(tmp_path / "e"), "--size", "big")
    assert bad.returncode == 2 and "expected WIDTHxHEIGHT in pixels" in bad.stderr


@pytest.mark.parametrize("n", [3, 4, 5, 8])
def test_small_sets_still_get_every_split(n: int) -> None:
    for seed in range(20):
        keys = [("X", layouts.well_name(i), 1) for i in range(n)]
        splits = layouts.assign_splits(keys, seed=seed)
        assert set(splits.values()) == {"train", "val", "test"}
        assert splits == layouts.assign_splits(list(reversed(keys)), seed=seed)


def test_a_recipe_names_which_field_trains_validates_and_tests(tmp_path: Path) -> None:
    """Real data of a few fields (the ExampleFly journey): the recipe's ``splits`` put each
    named field where it says, and a field it does not name is one clear error."""
    from acquire_vf.config import Recipe
    from acquire_vf.pairs import read_pairs

    rng = np.random.default_rng(0)
    for channel in ("F-actin", "DNA"):
        for field in ("POS002", "POS076", "POS218"):
            (tmp_path / channel).mkdir(exist_ok=True)
            tifffile.imwrite(tmp_path / channel / f"{field}.tif",
                             rng.integers(0, 255, (64, 64)).astype(np.uint8))
    splits = {"POS002": "train", "POS076": "val", "POS218": "test"}
    rec = Recipe.model_validate({"name": "fly", "task": "synthesis", "data": {
        "layout": "paired", "path": str(tmp_path), "inputs": ["F-actin"], "target": "DNA",
        "splits": splits}})
    for seed in (0, 1, 2):  # the seed no longer decides
        data = read_pairs(rec.data, tmp_path, seed=seed)
        got = {s: [p.key[1] for p in getattr(data, s)] for s in ("train", "val", "test")}
        assert got == {"train": ["POS002"], "val": ["POS076"], "test": ["POS218"]}
    partial = rec.data.model_copy(update={"splits": {"POS002": "train", "POS076": "val"}})
    with pytest.raises(ValueError, match=r"expected every field, got unnamed fields \['POS218'\]"):
        read_pairs(partial, tmp_path, seed=0)
