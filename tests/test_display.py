"""The viewer, rendered offscreen: it shows the frames it was given, virtual panels badged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pyqtgraph", reason="the gui extra (pyqtgraph, PySide6) is not installed")

from acquire_vf._frames import ChannelInfo, Frame, FrameId  # noqa: E402
from acquire_vf.storage import DatasetLayout, OmeTiffWriter  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

pytestmark = pytest.mark.display
DNA = ChannelInfo("DNA", role="virtual", engine="cps_dna", sha256="ab" * 32,
                  backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA"))


def _gradients(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    ramp = np.linspace(100, 4000, n)
    return (np.tile(ramp, (n, 1)).astype(np.uint16),  # brighter to the right
            np.tile(ramp[:, None], (1, n)).astype(np.uint16))  # brighter downwards


def _trend(grey: np.ndarray, axis: int) -> float:
    h, w = grey.shape
    core = grey[h // 5: -h // 10, w // 10: -w // 10]  # inside the title and the border
    profile = core.mean(axis=1 - axis)
    if profile.std() < 1e-9:
        return 0.0  # no trend at all along this axis
    return float(np.corrcoef(np.arange(profile.size), profile)[0, 1])


def test_panels_show_the_frames_they_were_given() -> None:
    from acquire_vf.display._panels import ViewerWindow

    win = ViewerWindow([ChannelInfo("AGP"), DNA])
    right, down = _gradients()
    win.show_frame("AGP", "physical", right)
    win.show_frame("DNA", "virtual", down)
    agp, dna = win.grab_panel("AGP"), win.grab_panel("DNA", "virtual")
    assert agp.std() > 20 and dna.std() > 20, "a blank panel"
    assert _trend(agp, axis=1) > 0.9 and abs(_trend(agp, axis=0)) < 0.5
    assert _trend(dna, axis=0) > 0.9 and abs(_trend(dna, axis=1)) < 0.5


def test_virtual_panels_carry_the_badge() -> None:
    from acquire_vf.display._panels import ViewerWindow

    win = ViewerWindow([ChannelInfo("AGP"), DNA])
    virtual, physical = win.panel("DNA", "virtual"), win.panel("AGP")
    assert "VIRTUAL" in virtual.title and "VIRTUAL" not in physical.title
    tip = virtual.widget.toolTip()
    assert "engine cps_dna" in tip and "onnxruntime" in tip and "abababab" in tip
    assert "border" in virtual.widget.styleSheet() and physical.widget.styleSheet() == ""


def test_view_screenshot_renders_a_dataset(tmp_path: Path) -> None:
    right, down = _gradients(256)
    layout = DatasetLayout(channels=(ChannelInfo("AGP"), DNA), shape=(256, 256))
    w = OmeTiffWriter(tmp_path / "run" / "acquisition.ome.tif", layout)
    for t in range(3):
        w.write(Frame(FrameId(t, 0, 0, "AGP"), right, t, 0.0))
        w.write(Frame(FrameId(t, 0, 0, "DNA"), down, t, 0.0, role="virtual"))
    w.close()
    png = tmp_path / "shot.png"
    r = run_cli("view", str(tmp_path / "run"), "--screenshot", str(png), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 channel panel(s)" in r.stdout
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05

    from acquire_vf.display._dataset import DatasetViewer

    viewer = DatasetViewer(tmp_path / "run")
    assert viewer.view.sliders["time"].maximum() == 2
    assert "VIRTUAL" in viewer.view.panel("DNA", "virtual").title
    frame = viewer.frame("DNA", "virtual")
    assert frame is not None and np.array_equal(frame, down)


def test_view_without_display_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "acquire_vf", "view", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "no display found" in r.stderr
