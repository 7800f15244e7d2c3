"""Images and measurements for the Qt tests (which run in a child process, see conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._frames import ChannelInfo, Frame, FrameId

DNA = ChannelInfo("DNA", role="virtual", engine="cps_dna", sha256="ab" * 32,
                  backend="onnxruntime", precision="fp32", inputs=("AGP", "RNA"))


def gradients(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A left-to-right and a top-to-bottom ramp."""
    ramp = np.linspace(100, 4000, n)
    right = np.tile(ramp, (n, 1)).astype(np.uint16)
    return right, np.ascontiguousarray(right.T)


def trend(grey: np.ndarray, axis: int) -> float:
    """Correlation of brightness with position along ``axis`` (1: left to right)."""
    h, w = grey.shape
    core = grey[h // 5: -h // 10, w // 10: -w // 10]
    # the frame with its aspect kept leaves black bars beside or above it: not the frame
    core = core[:, core.max(axis=0) > 5][core.max(axis=1) > 5]
    profile = core.mean(axis=1 - axis)
    if profile.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(np.arange(profile.size), profile)[0, 1])


def frame(name: str, t: int, pixels: np.ndarray, role: str = "physical",
          qc: dict[str, Any] | None = None) -> Frame:
    return Frame(FrameId(t, 0, 0, name), pixels, t, 0.0, role=role,  # type: ignore[arg-type]
                 qc=qc or {})


def grab(widget: Any) -> np.ndarray:
    """A widget as a grey image."""
    img = widget.grab().toImage()
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8, img.sizeInBytes())
    return arr.reshape(h, img.bytesPerLine())[:, : w * 4].reshape(h, w, 4)[..., :3].mean(2)


def main_window() -> Any:
    """The visible main window (windows of earlier runs linger, closed)."""
    from pyqtgraph.Qt import QtWidgets

    return next((w for w in QtWidgets.QApplication.topLevelWidgets()
                 if isinstance(w, QtWidgets.QMainWindow) and w.isVisible()), None)


_ALIVE: list[Any] = []
"""Timers started here, kept referenced (Qt forgets an unreferenced Python timer)."""


def every(ms: int, fn: Any) -> Any:
    """Call ``fn`` on the GUI thread every ``ms`` until it returns True."""
    from pyqtgraph.Qt import QtCore

    timer = QtCore.QTimer()
    timer.setInterval(ms)

    def tick() -> None:
        if fn():
            timer.stop()

    timer.timeout.connect(tick)
    timer.start()
    _ALIVE.append((timer, tick))
    return timer


def close_when_saving(out: Path, lines: int = 3) -> None:
    """Close the main window once the run in ``out`` has journaled ``lines`` lines."""

    def check() -> bool:
        j = out / "acquisition.ome.tif.journal"
        win = main_window()
        if j.is_file() and len(j.read_text().splitlines()) >= lines and win is not None:
            win.close()
            return True
        return False

    every(20, check)
