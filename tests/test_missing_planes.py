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
