"""The viewer, rendered offscreen: it shows the frames it was given, virtual panels badged.

Tests marked ``qt`` build widgets in-process; ``run.py test`` runs them in a pytest process
(offscreen), because the main test process must never load Qt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from acquire_vf._errors import DisplayUnavailable
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from tests._helpers import run_cli
from tests.qt_helpers import DNA, gradients, trend

pytestmark = pytest.mark.display

try:
    import importlib.util

    HAVE_GUI = importlib.util.find_spec("pyqtgraph") is not None
except ImportError:
    HAVE_GUI = False
needs_gui = pytest.mark.skipif(not HAVE_GUI, reason="the gui extra (pyqtgraph, PySide6) is "
                                                    "not installed")

@needs_gui
@pytest.mark.qt
def test_panels_show_the_frames_they_were_given() -> None:
    from acquire_vf.display._panels import ViewerWindow

    win = ViewerWindow([ChannelInfo("AGP"), DNA])
    right, down = gradients()
    win.show_frame("AGP", "physical", right)
    win.show_frame("DNA", "virtual", down)
    agp, dna = win.grab_panel("AGP"), win.grab_panel("DNA", "virtual")
    assert agp.std() > 20 and dna.std() > 20, "a blank panel"
    assert trend(agp, 1) > 0.9 and abs(trend(agp, 0)) < 0.5, (trend(agp, 1), trend(agp, 0))
    assert trend(dna, 0) > 0.9 and abs(trend(dna, 1)) < 0.5, (trend(dna, 0), trend(dna, 1))


@needs_gui
@pytest.mark.qt
def test_virtual_panels_carry_the_badge() -> None:
    from acquire_vf.display._panels import ViewerWindow

    win = ViewerWindow([ChannelInfo("AGP"), DNA])
    virtual, physical = win.panel("DNA", "virtual"), win.panel("AGP")
    assert "VIRTUAL" in virtual.title and "VIRTUAL" not in physical.title
    tip = virtual.widget.toolTip()
    assert "engine cps_dna" in tip and "onnxruntime" in tip and "abababab" in tip
    assert "border" in virtual.widget.styleSheet() and physical.widget.styleSheet() == ""


def _gradient_dataset(folder: Path, fmt: str = "ome-tiff") -> Path:
    from acquire_vf.storage import WRITERS, DatasetLayout

    right, down = gradients(256)
    cls, suffix = WRITERS[fmt]
    w = cls(folder / f"acquisition{suffix}",
            DatasetLayout(channels=(ChannelInfo("AGP"), DNA), shape=(256, 256)))
    for t in range(3):
        w.append(Frame(FrameId(t, 0, 0, "AGP"), right, t, 0.0))
        w.append(Frame(FrameId(t, 0, 0, "DNA"), down, t, 0.0, role="virtual"))
    w.close()
    return folder


@needs_gui
@pytest.mark.parametrize("fmt", ["ome-tiff", "ome-zarr"])
def test_view_screenshot_renders_a_dataset(tmp_path: Path, fmt: str) -> None:
    _gradient_dataset(tmp_path / "run", fmt)
    png = tmp_path / "shot.png"
    r = run_cli("view", str(tmp_path / "run"), "--screenshot", str(png), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 channel panel(s)" in r.stdout
    assert "propagateSizeHints" not in r.stderr  # the offscreen platform's noise is dropped
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05


@needs_gui
@pytest.mark.qt
def test_the_viewer_shows_the_saved_frames(tmp_path: Path) -> None:
    import numpy as np

    from acquire_vf.display import DatasetViewer

    viewer = DatasetViewer(_gradient_dataset(tmp_path / "run"))
    assert viewer.view.sliders["time"].maximum() == 2
    assert "VIRTUAL" in viewer.view.panel("DNA", "virtual").title
    shown = viewer.frame("DNA", "virtual")
    _, down = gradients(256)
    assert shown is not None and np.array_equal(shown, down)


def test_view_without_display_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "acquire_vf", "view", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == DisplayUnavailable.exit_code and "no display found" in r.stderr


@pytest.mark.skipif(os.environ.get("ACQUIRE_VF_TEST_GROUP") == "qt",
                    reason="the Qt tests' process loads Qt by design")
def test_the_test_process_never_loads_qt() -> None:
    assert "PySide6" not in sys.modules and "pyqtgraph" not in sys.modules


_CLOSE_AND_COLLECT = """
import gc, sys, weakref
import numpy as np
import pyqtgraph as pg
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.display import LiveWindow
from acquire_vf.display._panels import ViewerWindow
from tests.qt_helpers import DNA

app = pg.mkQApp()
pixels = np.ones((64, 64), np.uint16)
held = weakref.ref(pixels)

def windows():
    for _ in range(3):
        ViewerWindow([ChannelInfo("AGP"), DNA]).show_frame("AGP", "physical", pixels + 1)
    for w in app.topLevelWidgets():
        w.close()
    gc.collect()
    live = LiveWindow([ChannelInfo("AGP"), DNA], on_close="stop")
    live.offer(Frame(FrameId(0, 0, 0, "AGP"), pixels, 0, 0.0))
    live.window.show()
    live.process_events(0.3)
    live.window.close()
    live.release()

windows()
for w in app.topLevelWidgets():
    w.close()
app.processEvents()
del pixels
gc.collect()
gc.collect()
print("alive after collecting;", "frames dropped" if held() is None else "a frame still held")
"""


@needs_gui
@pytest.mark.qt
def test_closed_windows_survive_the_cycle_collector_and_drop_their_frames() -> None:
    """Collected, a closed pyqtgraph window segfaults the process (Qt objects freed in the
    wrong order): the CI's crash. Windows stay for the process and drop what they held."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"}
    r = subprocess.run([sys.executable, "-c", _CLOSE_AND_COLLECT], capture_output=True,
                       text=True, env=env, timeout=120, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "alive after collecting; frames dropped" in r.stdout, r.stdout + r.stderr[-2000:]
