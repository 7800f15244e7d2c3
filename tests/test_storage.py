"""Crash-safe OME-TIFF: round trip, torn pages, bounded queues, disk errors."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf._errors import StorageError
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.storage import (
    BackgroundWriter,
    BacklogFull,
    DatasetLayout,
    OmeTiffWriter,
    journal_path,
    open_dataset,
    read_journal,
    repair,
)

LAYOUT = DatasetLayout(
    channels=(ChannelInfo("AGP"), ChannelInfo("RNA"),
              ChannelInfo("DNA", role="virtual", engine="engines/cps_dna.onnx", sha256="ab" * 32,
                          backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA"))),
    shape=(48, 64),
)


def _frame(t: int, c: str, seed: int, role: str = "physical", qc: dict | None = None) -> Frame:
    px = np.random.default_rng(seed).integers(0, 65535, (48, 64), dtype=np.uint16)
    return Frame(FrameId(t, 0, 0, c), px, seq=seed, elapsed_ms=10.0 * t, role=role,
                 qc=qc or {})


def _write(path: Path, n_t: int) -> list[Frame]:
    frames = []
    w = OmeTiffWriter(path, LAYOUT)
    for t in range(n_t):
        for i, c in enumerate(("AGP", "RNA")):
            frames.append(_frame(t, c, 10 * t + i))
        if t % 2 == 0:
            frames.append(_frame(t, "DNA", 10 * t + 2, "virtual", {"nan": False,
                                                                   "saturated": t == 2}))
    for f in frames:
        w.append(f)
    w.close()
    return frames


def test_round_trip_marks_virtual_channels(tmp_path: Path) -> None:
    frames = _write(tmp_path / "a.ome.tif", 4)
    (ds,) = open_dataset(tmp_path)
    assert ds.verify() == []
    for f, (rec, px) in zip(frames, ds.iter_frames(), strict=True):
        assert (rec["t"], rec["channel"], rec["role"]) == (f.id.t, f.id.c, f.role)
        np.testing.assert_array_equal(px, f.pixels)
    with tifffile.TiffFile(ds.path) as tf:
        meta = tifffile.xml2dict(tf.ome_metadata)["OME"]
        s = tf.series[0]
        assert s.shape == (4, 3, 48, 64)
    names = [c["Name"] for c in meta["Image"]["Pixels"]["Channel"]]
    assert names == ["AGP", "RNA", "virtual:DNA"]
    anns = meta["StructuredAnnotations"]["MapAnnotation"]
    anns = anns if isinstance(anns, list) else [anns]
    ann = next(a for a in anns if a["Namespace"] == "acquire-vf/virtual-channel")
    kv = {m["K"]: str(m["value"]) for m in ann["Value"]["M"]}
    assert kv["sha256"] == "ab" * 32 and kv["backend"] == "onnxruntime"
    assert kv["qc.saturated"] == "1" and kv["inputs"] == "AGP,RNA"


def test_refuses_wrong_shape_and_overwrite(tmp_path: Path) -> None:
    w = OmeTiffWriter(tmp_path / "a.ome.tif", LAYOUT)
    bad = Frame(FrameId(0, 0, 0, "AGP"), np.zeros((48, 65), np.uint16), 0, 0.0)
    with pytest.raises(ValueError, match="expected a 64 x 48 uint16 frame, got shape"):
        w.append(bad)
    w.append(_frame(0, "AGP", 1))
    w.close()
    with pytest.raises(StorageError, match="refusing to overwrite"):
        OmeTiffWriter(tmp_path / "a.ome.tif", LAYOUT)


@pytest.mark.parametrize("tear", ["mid-page", "unjournaled-page", "torn-journal-line"])
def test_repair_keeps_exactly_the_journaled_frames(tmp_path: Path, tear: str) -> None:
    path = tmp_path / "a.ome.tif"
    w = OmeTiffWriter(path, LAYOUT)
    frames = [_frame(t, "AGP", t) for t in range(6)]
    for f in frames[:5]:
        w.append(f)
    # simulate the crash: the process dies without close(); its handles simply go away
    w._tw.filehandle.close()
    w._journal.close()
    journal = journal_path(path)
    if tear == "mid-page":  # half of a sixth page reached the disk
        data = frames[5].pixels.tobytes()
        with open(path, "ab") as fh:
            fh.write(data[: len(data) // 2])
    elif tear == "unjournaled-page":  # a whole page was written, its journal line was not
        with tifffile.TiffWriter(path, bigtiff=True, append=True) as tw:
            tw.write(frames[5].pixels, contiguous=False, metadata=None)
    else:  # the journal line of the fifth frame is torn
        lines = journal.read_text().splitlines()
        journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    kept = 4 if tear == "torn-journal-line" else 5
    with tifffile.TiffFile(path) as tf:
        assert not tf.is_ome
    assert repair(path) == kept
    (ds,) = open_dataset(tmp_path)
    assert ds.verify() == []
    assert len(ds.records) == kept
    for f, (_, px) in zip(frames[:kept], ds.iter_frames(), strict=True):
        np.testing.assert_array_equal(px, f.pixels)
    with tifffile.TiffFile(path) as tf:
        assert len(tf.pages) == kept and tf.series[0].shape[0] == kept
    assert read_journal(path)[2] is True
    assert repair(path) == kept  # idempotent


def test_interrupted_repair_can_run_again(tmp_path: Path) -> None:
    path = tmp_path / "a.ome.tif"
    w = OmeTiffWriter(path, LAYOUT)
    for t in range(3):
        w.append(_frame(t, "AGP", t))
    w._tw.filehandle.close()
    w._journal.close()
    journal = journal_path(path)
    before = journal.read_bytes()
    repair(path)
    journal.write_bytes(before)  # killed after the OME-XML was appended, before the journal
    assert repair(path) == 3
    (ds,) = open_dataset(tmp_path)
    assert ds.verify() == [] and len(ds.records) == 3


def test_open_without_journal_is_one_clear_line(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "x.ome.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(StorageError, match="has no journal beside it"):
        open_dataset(tmp_path)
    with pytest.raises(StorageError, match="no acquire-vf dataset found"):
        open_dataset(tmp_path / "empty")


class GatedSink:
    """A FrameSink that writes only when the test lets it (a disk that stalls)."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.written: list[Frame] = []

    def append(self, frame: Frame) -> int:
        self.go.wait()
        self.written.append(frame)
        return len(self.written) - 1

    def skip(self, fid: object, role: str, why: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_writer_bounds_raw_backlog_and_drops_only_virtual() -> None:
    sink = GatedSink()
    one = _frame(0, "AGP", 0).nbytes
    w = BackgroundWriter(sink, raw_limit_bytes=3 * one, virtual_limit=2)
    for t in range(3):
        w.put_raw(_frame(t, "AGP", t))
    with pytest.raises(BacklogFull, match="the disk is not keeping up"):
        w.put_raw(_frame(3, "AGP", 3))
    assert [w.put_virtual(_frame(t, "DNA", t, "virtual")) for t in range(4)] == \
        [True, True, False, False]
    sink.go.set()
    w.close()
    assert w.raw_written == 3 and w.virtual_written == 2 and w.virtual_dropped == 2
    assert [f.role for f in sink.written] == ["physical"] * 3 + ["virtual"] * 2


def test_writer_error_is_reported_once_and_stops_writing(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    path = tmp_path / "a.ome.tif"
    w = BackgroundWriter(OmeTiffWriter(path, LAYOUT), raw_limit_bytes=2**30, virtual_limit=8,
                         on_error=errors.append)
    w.put_raw(_frame(0, "AGP", 0))
    w.put_raw(Frame(FrameId(1, 0, 0, "Nope"), np.zeros((48, 64), np.uint16), 1, 0.0))
    with pytest.raises(StorageError):
        w.close()
    assert len(errors) == 1
    with pytest.raises(StorageError):
        w.put_raw(_frame(2, "AGP", 2))
    (ds,) = open_dataset(tmp_path)
    assert len(ds.records) == 1 and ds.verify() == []


def test_sequence_checker_reports_gaps() -> None:
    ids = [FrameId(t, 0, 0, c) for t in range(3) for c in ("A", "B")]
    chk = SequenceChecker(ids)
    assert chk.arrived(ids[0]) is None
    msg = chk.arrived(ids[3])
    assert msg is not None and "2 frame(s) missing" in msg
    assert "first missing {'t': 0, 'p': 0, 'z': 0, 'c': 'B'}" in msg
    assert chk.arrived(FrameId(9, 0, 0, "A")) is not None and chk.unexpected
    assert chk.missing_at_end == 2
    assert chk.camera_number(5) is None and chk.camera_number(6) is None
    assert chk.camera_number(0) is None  # a new sequence restarts the counter
    jump = chk.camera_number(4)
    assert jump is not None and "3 lost" in jump
    assert len(chk.gaps) == 2


def test_journal_lines_are_json(tmp_path: Path) -> None:
    _write(tmp_path / "a.ome.tif", 1)
    lines = journal_path(tmp_path / "a.ome.tif").read_text().splitlines()
    kinds = [json.loads(x)["kind"] for x in lines]
    assert kinds[0] == "header" and kinds[-1] == "closed" and kinds.count("frame") == 3


def test_ome_xml_validates_against_the_ome_schema(tmp_path: Path) -> None:
    """What Fiji (Bio-Formats) and napari parse: checked against the OME 2016-06 XSD."""
    ome_types = pytest.importorskip("ome_types")
    layout = DatasetLayout(channels=LAYOUT.channels, shape=(48, 64), z_offsets_um=(-2.0, 0.0),
                           positions=({"name": "A1", "x_um": 0.0, "y_um": 0.0},
                                      {"name": "B2", "x_um": 100.0, "y_um": 5.0}))
    w = OmeTiffWriter(tmp_path / "a.ome.tif", layout)
    for p in range(2):
        for z in range(2):
            f = _frame(0, "AGP", p * 2 + z)
            w.append(Frame(FrameId(0, p, z, "AGP"), f.pixels, 0, 0.0, z_um=z - 2.0, x_um=100.0 * p,
                          y_um=5.0 * p, exposure_ms=10.0))
            w.append(Frame(FrameId(0, p, z, "DNA"), f.pixels, 0, 0.0, role="virtual",
                          qc={"nan": False, "saturated": True}))
    w.close()
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tf:
        ome = ome_types.from_xml(tf.ome_metadata, validate=True)
    assert [i.name for i in ome.images] == ["A1", "B2"]
    px = ome.images[1].pixels
    assert (px.size_z, px.size_c, px.size_t) == (2, 3, 1)
    assert [c.name for c in px.channels] == ["AGP", "RNA", "virtual:DNA"]
    assert px.planes[0].position_x == 100.0 and px.planes[0].exposure_time == 10.0
    (ann,) = ome.structured_annotations.map_annotations
    assert ann.namespace == "acquire-vf/virtual-channel"
    assert {m.k: m.value for m in ann.value.ms}["qc.saturated"] == "4"


def test_numpy_qc_values_are_written(tmp_path: Path) -> None:
    w = OmeTiffWriter(tmp_path / "a.ome.tif", LAYOUT)
    w.append(_frame(0, "DNA", 1, "virtual", {"saturated": np.bool_(True),
                                            "focus_score": np.float32(0.5)}))
    w.close()
    (ds,) = open_dataset(tmp_path)
    assert ds.records[0]["qc"] == {"saturated": True, "focus_score": 0.5}


def test_qc_counts_count_flags_raised_not_good_news() -> None:
    """``finite`` is true when all is well: the files' QC counts do not report it as a flag."""
    from acquire_vf.storage._journal import qc_counts

    recs = [{"channel": "DNA", "qc": {"finite": True, "input_dim": True, "nan_or_inf": False}},
            {"channel": "DNA", "qc": {"finite": True, "input_dim": False}}]
    assert qc_counts(recs) == {"DNA": {"input_dim": 1}}
