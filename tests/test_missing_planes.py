"""Virtual planes a run never made read as missing, with the reason, not as black frames:
in the OME-XML, through the library reader, and in the viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.storage import DatasetLayout, MissingPlane, OmeTiffWriter, open_dataset
from tests.test_display import needs_gui

LAYOUT = DatasetLayout(
    channels=(ChannelInfo("AGP"), ChannelInfo("DNA"),
              ChannelInfo("AGP-refocused", role="virtual", engine="e.onnx", sha256="ab" * 32,
                          backend="onnxruntime", precision="fp32", inputs=("AGP",)),
              ChannelInfo("DNA", role="virtual", engine="d.onnx", sha256="cd" * 32,
                          backend="onnxruntime", precision="fp32", inputs=("AGP",))),
    shape=(32, 48),
)


def _frame(t: int, c: str, role: str = "physical") -> Frame:
    px = np.full((32, 48), 1000 + t, np.uint16)
    return Frame(FrameId(t, 0, 0, c), px, seq=t, elapsed_ms=10.0 * t, role=role)


def _dataset(tmp_path: Path) -> Path:
    """t=0: AGP, the refocused AGP, virtual DNA; t=1: AGP only (not refocused, DNA skipped);
    t=2: AGP and DNA exposed physically instead of virtual DNA."""
    path = tmp_path / "run.ome.tif"
    w = OmeTiffWriter(path, LAYOUT)
    for f in (_frame(0, "AGP"), _frame(0, "AGP-refocused", "virtual"), _frame(0, "DNA", "virtual"),
              _frame(1, "AGP"), _frame(2, "AGP"), _frame(2, "DNA")):
        w.append(f)
    w.close()
    return path


def test_missing_virtual_planes_are_listed_with_their_reason(tmp_path: Path) -> None:
    ds = open_dataset(_dataset(tmp_path))[0]
    missing = {(m["t"], m["channel"]): m["why"] for m in ds.missing()}
    assert set(missing) == {(1, "AGP-refocused"), (1, "DNA"), (2, "AGP-refocused"), (2, "DNA")}
    assert missing[(1, "AGP-refocused")].startswith("not refocused")
    assert missing[(1, "DNA")].startswith("not made")
    assert missing[(2, "DNA")] == "exposed physically instead"
    with pytest.raises(MissingPlane, match="not refocused"):
        ds.plane(1, "AGP-refocused")
    assert ds.plane(0, "DNA", role="virtual")[0, 0] == 1000
    assert ds.plane(2, "DNA", role="physical")[0, 0] == 1002
    with tifffile.TiffFile(ds.path) as tf:
        xml = tf.ome_metadata
    assert "acquire-vf/missing-planes" in xml and "t1p0z0" in xml


@needs_gui
@pytest.mark.qt
def test_the_viewer_says_a_plane_was_not_made_instead_of_showing_a_stale_one(
        tmp_path: Path) -> None:
    from acquire_vf.display import DatasetViewer

    viewer = DatasetViewer(_dataset(tmp_path))
    viewer.view.sliders["time"].setValue(0)
    assert viewer.view.panel("AGP-refocused", "virtual").image.image is not None
    viewer.view.sliders["time"].setValue(1)
    panel = viewer.view.panel("AGP-refocused", "virtual")
    assert panel.image.image is None
    assert panel.flags.toPlainText().startswith("no frame: not refocused")
    assert viewer.view.panel("AGP").flags.toPlainText() == ""


def test_a_journaled_reason_is_kept_through_a_repair(tmp_path: Path) -> None:
    """The run journals why a virtual frame was not made (``skip``); readers report that reason,
    and a repair after a kill keeps it."""
    path = tmp_path / "run.ome.tif"
    w = OmeTiffWriter(path, LAYOUT)
    w.append(_frame(0, "AGP"))
    w.skip(FrameId(0, 0, 0, "DNA"), "virtual", "skipped: the writer fell behind")
    w.append(_frame(1, "AGP"))
    w._journal.close()  # killed: never closed, no OME-XML
    w._tw.close()
    (ds,) = open_dataset(tmp_path)  # repairs first
    why = {(m["t"], m["channel"]): m["why"] for m in ds.missing()}
    assert why[(0, "DNA")] == "skipped: the writer fell behind"
    assert why[(1, "DNA")].startswith("not made")
    with tifffile.TiffFile(ds.path) as tf:
        assert "the writer fell behind" in tf.ome_metadata


def test_the_pipeline_says_why_it_skipped_a_frame_set() -> None:
    """A frame set replaced in the latest-frame slot, and one a failing stage could not make,
    are reported with their reasons (the runner journals them)."""
    import threading

    from acquire_vf.pipeline import FrameSet, Pipeline

    gate = threading.Event()

    class Slow:
        name = "slow"
        outputs = (ChannelInfo("DNA", role="virtual"),)

        def process(self, fs: FrameSet) -> dict[str, Frame]:
            gate.wait(10)
            if fs.t == 2:
                raise RuntimeError("boom")
            return {}

        def close(self) -> None:
            pass

    said: list[tuple[int, str, str]] = []
    pipe = Pipeline([Slow()], slot_size=1,
                    on_skip=lambda fid, why: said.append((fid.t, fid.c, why)))
    sets = [FrameSet(t, 0, 0, {"AGP": _frame(t, "AGP")}) for t in range(3)]
    pipe.submit(sets[0])  # taken by the worker, which waits at the gate
    while pipe.depth:
        pass
    pipe.submit(sets[1])
    pipe.submit(sets[2])  # replaces t=1 in the slot
    gate.set()
    pipe.close()
    assert said[0][:2] == (1, "DNA") and "latest-frame slot" in said[0][2]
    assert said[1] == (2, "DNA", "engine failed: RuntimeError")
    assert pipe.virtual_skipped == 2
