"""The viewer, rendered offscreen: it shows the frames it was given, virtual panels badged.

Each test body runs in its own interpreter: Qt and pyqtgraph can crash when torn down at
interpreter exit, and the test process must never load them. The child reports ``OK`` and
leaves with ``os._exit``; an assertion error prints its traceback and exits with 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from acquire_vf._errors import DisplayUnavailable
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.display

try:
    import importlib.util

    HAVE_GUI = importlib.util.find_spec("pyqtgraph") is not None
except ImportError:
    HAVE_GUI = False
needs_gui = pytest.mark.skipif(not HAVE_GUI, reason="the gui extra (pyqtgraph, PySide6) is "
                                                    "not installed")

PRELUDE = """
import os, sys, traceback
import numpy as np
from acquire_vf._frames import ChannelInfo, Frame, FrameId
DNA = ChannelInfo("DNA", role="virtual", engine="cps_dna", sha256="ab" * 32,
                  backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA"))

def gradients(n=200):
    ramp = np.linspace(100, 4000, n)
    right = np.tile(ramp, (n, 1)).astype(np.uint16)
    return right, np.ascontiguousarray(right.T)

def trend(grey, axis):
    h, w = grey.shape
    core = grey[h // 5: -h // 10, w // 10: -w // 10]
    profile = core.mean(axis=1 - axis)
    if profile.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(np.arange(profile.size), profile)[0, 1])
"""


def run_qt(body: str, timeout: float = 120) -> None:
    code = PRELUDE + "\ntry:\n" + textwrap.indent(textwrap.dedent(body), "    ") + \
        "\n    print('OK', flush=True)\n    os._exit(0)\nexcept BaseException:\n" \
        "    traceback.print_exc()\n    sys.stdout.flush(); sys.stderr.flush()\n    os._exit(1)\n"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=timeout)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


@needs_gui
def test_panels_show_the_frames_they_were_given() -> None:
    run_qt("""
        from acquire_vf.display._panels import ViewerWindow
        win = ViewerWindow([ChannelInfo("AGP"), DNA])
        right, down = gradients()
        win.show_frame("AGP", "physical", right)
        win.show_frame("DNA", "virtual", down)
        agp, dna = win.grab_panel("AGP"), win.grab_panel("DNA", "virtual")
        assert agp.std() > 20 and dna.std() > 20, "a blank panel"
        assert trend(agp, 1) > 0.9 and abs(trend(agp, 0)) < 0.5, (trend(agp, 1), trend(agp, 0))
        assert trend(dna, 0) > 0.9 and abs(trend(dna, 1)) < 0.5, (trend(dna, 0), trend(dna, 1))
    """)


@needs_gui
def test_virtual_panels_carry_the_badge() -> None:
    run_qt("""
        from acquire_vf.display._panels import ViewerWindow
        win = ViewerWindow([ChannelInfo("AGP"), DNA])
        virtual, physical = win.panel("DNA", "virtual"), win.panel("AGP")
        assert "VIRTUAL" in virtual.title and "VIRTUAL" not in physical.title
        tip = virtual.widget.toolTip()
        assert "engine cps_dna" in tip and "onnxruntime" in tip and "abababab" in tip
        assert "border" in virtual.widget.styleSheet() and physical.widget.styleSheet() == ""
    """)


@needs_gui
def test_view_screenshot_renders_a_dataset(tmp_path: Path) -> None:
    import numpy as np

    from acquire_vf._frames import ChannelInfo, Frame, FrameId
    from acquire_vf.storage import DatasetLayout, OmeTiffWriter

    ramp = np.linspace(100, 4000, 256)
    right = np.tile(ramp, (256, 1)).astype(np.uint16)
    down = np.tile(ramp[:, None], (1, 256)).astype(np.uint16)
    dna = ChannelInfo("DNA", role="virtual", engine="cps_dna", sha256="ab" * 32,
                      backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA"))
    w = OmeTiffWriter(tmp_path / "run" / "acquisition.ome.tif",
                      DatasetLayout(channels=(ChannelInfo("AGP"), dna), shape=(256, 256)))
    for t in range(3):
        w.append(Frame(FrameId(t, 0, 0, "AGP"), right, t, 0.0))
        w.append(Frame(FrameId(t, 0, 0, "DNA"), down, t, 0.0, role="virtual"))
    w.close()
    png = tmp_path / "shot.png"
    r = run_cli("view", str(tmp_path / "run"), "--screenshot", str(png), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 channel panel(s)" in r.stdout
    import matplotlib.image

    img = matplotlib.image.imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 400 and img[..., :3].std() > 0.05
    run_qt(f"""
        from acquire_vf.display._dataset import DatasetViewer
        viewer = DatasetViewer({str(tmp_path / "run")!r})
        assert viewer.view.sliders["time"].maximum() == 2
        assert "VIRTUAL" in viewer.view.panel("DNA", "virtual").title
        frame = viewer.frame("DNA", "virtual")
        _, down = gradients(256)
        assert frame is not None and np.array_equal(frame, down)
    """)


def test_view_without_display_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, "-m", "acquire_vf", "view", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == DisplayUnavailable.exit_code and "no display found" in r.stderr


def test_the_test_process_never_loads_qt() -> None:
    assert "PySide6" not in sys.modules and "pyqtgraph" not in sys.modules
