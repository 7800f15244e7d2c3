"""Crash-safe OME-Zarr (NGFF 0.5, Zarr v3): round trip, positions, repair after a kill, readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquire_vf._errors import StorageError
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.storage import (
    DatasetLayout,
    MissingPlane,
    OmeZarrWriter,
    journal_path,
    open_dataset,
    read_journal,
)
from tests._helpers import run_cli

zarr = pytest.importorskip("zarr")

LAYOUT = DatasetLayout(
    channels=(ChannelInfo("AGP"), ChannelInfo("RNA"),
              ChannelInfo("DNA", role="virtual", engine="engines/cps_dna.onnx", sha256="ab" * 32,
                          backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA")),
              ChannelInfo("uncertainty:DNA", role="virtual", engine="engines/cps_dna.onnx")),
    shape=(48, 64), pixel_size_um=0.65,
    positions=({"name": "A1", "x_um": 0.0, "y_um": 0.0}, {"name": "B1", "x_um": 500.0,
                                                          "y_um": 0.0}),
)


def _frame(t: int, p: int, c: str, seed: int, role: str = "physical") -> Frame:
    px = np.random.default_rng(seed).integers(0, 65535, (48, 64), dtype=np.uint16)
    return Frame(FrameId(t, p, 0, c), px, seq=seed, elapsed_ms=10.0 * t, role=role)


def _frames(n_t: int) -> list[Frame]:
    out = []
    for t in range(n_t):
        for p in (0, 1):
            seed = 100 * t + 10 * p
            out += [_frame(t, p, "AGP", seed), _frame(t, p, "RNA", seed + 1)]
            if t != 1:  # t = 1: the engine was not run
                out.append(_frame(t, p, "DNA", seed + 2, "virtual"))
    return out


def test_round_trip_positions_and_virtual_channels_marked(tmp_path: Path) -> None:
    path = tmp_path / "a.ome.zarr"
    w = OmeZarrWriter(path, LAYOUT)
    frames = _frames(3)
    for f in frames:
        w.append(f)
    for p in (0, 1):
        w.skip(FrameId(1, p, 0, "DNA"), "virtual", "engine busy")
    w.close()
    (ds,) = open_dataset(tmp_path)
    assert ds.verify() == [] and len(ds.records) == len(frames)
    for f, (rec, px) in zip(frames, ds.iter_frames(), strict=True):
        assert (rec["t"], rec["p"], rec["channel"]) == (f.id.t, f.id.p, f.id.c)
        np.testing.assert_array_equal(px, f.pixels)
    with pytest.raises(MissingPlane, match="DNA at t=1, p=1, z=0: engine busy"):
        ds.plane(1, "DNA", p=1)  # not a dark image: the reason the run journaled
    root = zarr.open_group(str(path), mode="r")
    assert root.attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    for p in (0, 1):
        img = root[str(p)]
        meta = img.attrs["acquire-vf"]
        kinds = {c["name"]: c["channel_type"] for c in meta["channels"]}
        assert kinds == {"AGP": "physical", "RNA": "physical", "DNA": "virtual",
                         "uncertainty:DNA": "uncertainty"}
        dna = next(c for c in meta["channels"] if c["name"] == "DNA")
        assert dna["engine"] == "engines/cps_dna.onnx" and dna["inputs"] == ["AGP", "RNA"]
        omero = img.attrs["ome"]["omero"]["channels"]
        assert [c["label"] for c in omero][2] == "virtual:DNA"
        assert omero[2]["color"] != omero[0]["color"]  # virtual coloured apart
        ms = img.attrs["ome"]["multiscales"][0]
        assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"][-1] == 0.65
        assert img["0"].shape == (3, 4, 1, 48, 64) and img["0"].chunks == (1, 1, 1, 48, 64)
        assert meta["missing_planes"]["summary"]["DNA"]["by_reason"] == {"engine busy": 1}
    # ome-zarr-py reads each position as an image with the channel names
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    node = next(iter(Reader(parse_url(str(path / "1")))()))
    assert node.metadata["channel_names"][:3] == ["AGP", "RNA", "virtual:DNA"]
    np.testing.assert_array_equal(np.asarray(node.data[0][2, 0, 0]), frames[-3].pixels)


def test_refuses_wrong_frames_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "a.ome.zarr"
    w = OmeZarrWriter(path, LAYOUT)
    with pytest.raises(ValueError, match="expected a 64 x 48 uint16 frame"):
        w.append(Frame(FrameId(0, 0, 0, "AGP"), np.zeros((10, 10), np.uint16), seq=0,
                       elapsed_ms=0.0))
    w.close()
    with pytest.raises(StorageError, match="refusing to overwrite"):
        OmeZarrWriter(path, LAYOUT)


def test_repair_keeps_exactly_the_journaled_frames(tmp_path: Path) -> None:
    """A kill between a chunk and its journal line, with a temporary file half written: the
    repair keeps what the journal lists, removes the rest, sizes the time axis, and the store
    reads back verified."""
    path = tmp_path / "a.ome.zarr"
    w = OmeZarrWriter(path, LAYOUT)
    frames = _frames(3)
    for f in frames[:-1]:
        w.append(f)
    w._journal.close()  # the process dies: its files close, nothing more is written
    last = frames[-1]  # written as a chunk, never journaled: as if killed in between
    arr = zarr.open_group(str(path), mode="r+")["1"]["0"]
    arr[last.id.t, 2, 0] = last.pixels
    arr.resize((7, *arr.shape[1:]))  # and the time axis was grown beyond the data
    (path / "1" / "0" / "c" / "stray.abc.partial").write_bytes(b"torn")
    with open(journal_path(path), "a") as j:
        j.write('{"kind":"frame","ifd":99,"t":')  # a torn journal line
    r = run_cli("recover", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())
    assert f"kept {len(frames) - 1} frames" in said and "each verified" in said, said
    assert "removed 2 chunk file(s) the journal did not record" in said, said
    (ds,) = open_dataset(tmp_path)
    assert len(ds.records) == len(frames) - 1 and ds.verify() == []
    arr = zarr.open_group(str(path), mode="r")["1"]["0"]
    assert arr.shape[0] == 3
    assert not (path / "1" / "0" / "c" / "2" / "2" / "0" / "0" / "0").exists()  # unjournaled
    assert not list(path.rglob("*.partial"))
    assert np.asarray(arr[2, 2, 0]).max() == 0  # reads as the fill value; listed as missing
    assert read_journal(path)[2] is True
    assert run_cli("recover", str(tmp_path), timeout=120).returncode == 0  # repeatable


def test_a_write_the_file_system_refuses_is_one_line(tmp_path: Path) -> None:
    """A chunk the file system refuses (here: larger than the process may write, 300 KB for a
    512 KB frame; a full disk takes the same path) raises StorageError with one line saying
    which frame and how many earlier frames are intact. Run in a child process, which alone
    gets the limit. (The CLI's exit code 5 and session report for a failed writer are tested
    with OME-TIFF in tests/test_crash.py.)"""
    import subprocess
    import sys

    script = f"""
import resource, numpy as np
from acquire_vf._errors import StorageError
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.storage import DatasetLayout, OmeZarrWriter
w = OmeZarrWriter({str(tmp_path / "a.ome.zarr")!r},
                  DatasetLayout(channels=(ChannelInfo("A"),), shape=(512, 512)))
w.append(Frame(FrameId(0, 0, 0, "A"), np.ones((512, 512), np.uint16), seq=0, elapsed_ms=0.0))
resource.setrlimit(resource.RLIMIT_FSIZE, (300 * 1024, 300 * 1024))
try:
    w.append(Frame(FrameId(1, 0, 0, "A"), np.ones((512, 512), np.uint16), seq=1,
                   elapsed_ms=0.0))
except StorageError as e:
    print(e)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert len(line.splitlines()) == 1, line
    assert line.startswith("writing frame {'t': 1") and "File too large" in line, line
    assert line.endswith("1 earlier frames are intact"), line
    records = read_journal(tmp_path / "a.ome.zarr")[1]
    assert [r["t"] for r in records] == [0]  # the refused frame was never journaled
