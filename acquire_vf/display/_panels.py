"""The viewer's widgets (pyqtgraph, extra ``gui``): one panel per channel, linked zoom and pan.

Virtual channels are unmistakable: the title carries a "VIRTUAL" badge, the panel has an orange
border, and the tooltip names the engine, its sha256 and the backend. Contrast is automatic from
robust percentiles of a pixel subsample, recomputed at most twice a second (a live stream keeps
its levels in between), or fixed by the user. Everything here runs on the GUI thread only.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from acquire_vf._errors import DisplayUnavailable, MissingExtraError
from acquire_vf._frames import ChannelInfo

VIRTUAL_COLOR = "#ff8c00"

KEPT: list[Any] = []
"""Every window this process made. Python's cycle collector must never tear a pyqtgraph
window down: it frees the Qt objects in an order Qt does not survive (a closed two-panel
viewer, collected, segfaults in ``QGraphicsWidget::event`` as a child leaves a parent already
gone; PySide6 6.11, Python 3.11). So windows stay for the life of the process, closed, having
dropped their frames and run (:meth:`LiveWindow.release`): a few MB of widgets each."""


def keep_for_process(window: Any) -> None:
    """Keep ``window`` reachable until the process ends (see :data:`KEPT`)."""
    KEPT.append(window)


def qt() -> tuple[Any, Any]:
    """pyqtgraph and its Qt bindings, or a one-line error naming the extra to install."""
    try:
        import pyqtgraph as pg
        from pyqtgraph.Qt import QtCore, QtWidgets
    except ImportError:
        raise MissingExtraError("pyqtgraph", "gui") from None
    _quiet_offscreen(QtCore)
    check_binding(QtCore)
    return pg, QtWidgets


def bool_refcount_leak(QtCore: Any, emits: int = 64) -> int:
    """How many references to ``True`` the Qt binding drops over ``emits`` signal emits that
    carry it (0 for a sound binding).

    PySide6 6.12.0 releases a ``True`` passed through a signal once too often. On Python 3.12
    and later ``True`` is immortal and nothing happens; on 3.11 its count falls with every
    emit (pyqtgraph emits bools on every range change, three per ``autoRange``) until Python
    aborts the whole process with ``bool_dealloc``: the live window's crash, measured by
    the loop in ``docs/viewer.md``.
    """

    class Probe(QtCore.QObject):
        sig = QtCore.Signal(object)

    probe = Probe()
    probe.sig.connect(lambda _v: None)
    before = sys.getrefcount(True)
    for _ in range(emits):
        probe.sig.emit(True)
    leaked = before - sys.getrefcount(True)
    if leaked > 0:  # give back what was taken, so the probe itself leaves True as it found it
        import ctypes

        for _ in range(leaked):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))
    return max(0, leaked)


def check_binding(QtCore: Any) -> None:
    """Refuse, in one line and before anything is exposed, a Qt binding that would abort the
    run (see :func:`bool_refcount_leak`); checked once per process."""
    if getattr(check_binding, "done", False):
        return
    leaked = bool_refcount_leak(QtCore, emits=64)
    if leaked >= 32:
        import pyqtgraph.Qt as pgqt

        binding = f"{pgqt.QT_LIB} {getattr(pgqt, 'PySideVersion', None) or QtCore.qVersion()}"
        raise DisplayUnavailable(
            f"the Qt binding {binding} drops a reference to True on every signal that carries "
            f"it ({leaked} of 64 here): on Python {sys.version_info.major}."
            f"{sys.version_info.minor} the live window would abort the run within minutes; "
            "expected a binding without this defect: pip install 'PySide6-Essentials<6.12' "
            "(what acquire-vf[gui] installs on Python < 3.12), or run with --headless")
    check_binding.done = True  # type: ignore[attr-defined]


_QUIET = ("propagateSizeHints",)
"""Qt messages that say nothing to a user: the offscreen platform (``--screenshot``, headless
tests) cannot propagate size hints and says so on every window shown."""


def _quiet_offscreen(QtCore: Any) -> None:
    """Drop :data:`_QUIET` messages; everything else still reaches stderr as Qt prints it."""
    if getattr(_quiet_offscreen, "done", False):
        return
    _quiet_offscreen.done = True  # type: ignore[attr-defined]

    def handler(mode: Any, context: Any, message: str) -> None:
        if not any(q in message for q in _QUIET):
            sys.stderr.write(message + "\n")

    QtCore.qInstallMessageHandler(handler)


def robust_levels(img: np.ndarray, step: int = 4) -> tuple[float, float]:
    """0.5 and 99.8 percentiles of a subsample: display contrast that ignores hot pixels."""
    lo, hi = np.percentile(img[::step, ::step], [0.5, 99.8])
    return float(lo), float(max(hi, lo + 1))


def image_plot(pg: Any, **kw: Any) -> tuple[Any, Any]:
    """An image view: square pixels, y down, no axes; returns (plot widget, image item)."""
    widget = pg.PlotWidget(**kw)
    widget.setAspectLocked(True)
    widget.invertY(True)
    widget.hideAxis("left")
    widget.hideAxis("bottom")
    image = pg.ImageItem(axisOrder="row-major", autoDownsample=True)
    widget.addItem(image)
    return widget, image


class ChannelPanel:
    """A titled image panel for one channel."""

    def __init__(self, info: ChannelInfo) -> None:
        pg, QtWidgets = qt()
        self.info = info
        self.widget, self.image = image_plot(pg)
        self.levels: tuple[float, float] | None = None
        """Manual levels; ``None`` means automatic."""
        self.auto_interval_s = 0.5
        self.shown_levels: tuple[float, float] = (0.0, 1.0)
        self._levels_at = -1e9
        self.frames_shown = 0
        self.fit: Any = None
        """Called with each frame's shape: shows the whole frame (the linked views' owner
        sets it; see ``_layout.PanelGrid.fit``). Without it, the panel ranges itself."""
        self.flags = pg.TextItem("", color="#ff3030", anchor=(0, 0))
        self.flags.setZValue(10)
        self.widget.addItem(self.flags)
        if info.role == "virtual":
            self.widget.setTitle(f'<span style="color:{VIRTUAL_COLOR}"><b>VIRTUAL</b></span> '
                                 f"{info.name}")
            self.widget.setStyleSheet(f"border: 3px solid {VIRTUAL_COLOR};")
            self.widget.setToolTip(f"virtual channel {info.name}: engine {info.engine}, "
                                   f"sha256 {str(info.sha256)[:12]}..., backend {info.backend}, "
                                   f"{info.precision}; inputs {', '.join(info.inputs)}")
        elif info.role == "error":
            self.widget.setTitle(f"{info.name} map")
            self.widget.setToolTip("|virtual - physical| over the physical frame's display range")
        else:
            self.widget.setTitle(info.name)
            self.widget.setToolTip(f"measured channel {info.name}")

    @property
    def title(self) -> str:
        return str(self.widget.getPlotItem().titleLabel.text)

    def show_missing(self, why: str) -> None:
        """No frame here: the panel is emptied and says why (never a stale or black image)."""
        import textwrap

        self.image.clear()
        self.flags.setColor("#c0c0c0")
        self.flags.setText(textwrap.fill(f"no frame: {why}", 36))

    def show(self, pixels: np.ndarray, flags: str = "",
             levels: tuple[float, float] | None = None) -> None:
        """Show a frame; ``flags`` (QC problems) are written over its top-left corner;
        ``levels`` fixes the contrast for this frame alone (an error map's 0-0.5)."""
        now = time.perf_counter()
        if levels is not None:
            self.shown_levels, self._levels_at = levels, -1e9  # the next frame re-measures
        elif self.levels is not None:
            self.shown_levels = self.levels
        elif self.frames_shown == 0 or now - self._levels_at >= self.auto_interval_s:
            self.shown_levels, self._levels_at = robust_levels(pixels), now
        self.image.setImage(pixels, levels=self.shown_levels, autoLevels=False)
        self.flags.setColor("#ff3030")
        self.flags.setText(flags)
        if self.fit is not None:
            self.fit(pixels.shape)
        elif self.frames_shown == 0:
            self.widget.getViewBox().setRange(
                xRange=(0, pixels.shape[1]), yRange=(0, pixels.shape[0]), padding=0)
        self.frames_shown += 1


class ViewerWindow:
    """Channel panels in a grid with linked views, sliders for t / position / z, a status bar."""

    def __init__(self, channels: list[ChannelInfo], *, title: str = "acquire-vf") -> None:
        pg, QtWidgets = qt()
        from pyqtgraph.Qt import QtCore

        self.app = pg.mkQApp()
        self.window = QtWidgets.QMainWindow()
        keep_for_process(self)
        self.window.setWindowTitle(title)
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        grid = QtWidgets.QGridLayout()
        layout.addLayout(grid)
        self.panels: dict[tuple[str, str], ChannelPanel] = {}
        cols = min(3, max(1, len(channels)))
        first = None
        for i, info in enumerate(channels):
            panel = ChannelPanel(info)
            grid.addWidget(panel.widget, i // cols, i % cols)
            if first is None:
                first = panel.widget
            else:
                panel.widget.setXLink(first)
                panel.widget.setYLink(first)
            panel.fit = self._fit
            self.panels[(info.name, info.role)] = panel
        self._first = first
        self._shape: tuple[int, ...] | None = None
        self.sliders: dict[str, Any] = {}
        for axis in ("time", "position", "z"):
            row = QtWidgets.QHBoxLayout()
            label = QtWidgets.QLabel(axis)
            slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            slider.setMaximum(0)
            row.addWidget(label)
            row.addWidget(slider)
            layout.addLayout(row)
            self.sliders[axis] = slider
        self.window.setCentralWidget(central)
        self.status = self.window.statusBar()
        self.window.resize(420 * cols, 380 * ((len(channels) + cols - 1) // cols) + 120)

    def _fit(self, shape: tuple[int, ...]) -> None:
        """The whole frame in every (linked) panel, set on the first when the shape changes."""
        if self._first is not None and tuple(shape[:2]) != self._shape:
            self._shape = tuple(shape[:2])
            self._first.getViewBox().setRange(xRange=(0, shape[1]), yRange=(0, shape[0]),
                                              padding=0)

    def panel(self, name: str, role: str = "physical") -> ChannelPanel:
        return self.panels[(name, role)]

    def show_frame(self, name: str, role: str, pixels: np.ndarray) -> None:
        self.panel(name, role).show(pixels)

    def set_status(self, text: str) -> None:
        self.status.showMessage(text)

    def screenshot(self, path: str) -> None:
        """Render (offscreen works) and save the whole window as PNG."""
        self.window.show()
        for _ in range(3):
            self.app.processEvents()
        if not self.window.grab().save(str(path)):
            raise OSError(f"could not write '{path}'")

    def grab_panel(self, name: str, role: str = "physical") -> np.ndarray:
        """The panel as rendered on screen, grey (for tests and checks)."""
        self.window.show()
        self.app.processEvents()
        img = self.panel(name, role).widget.grab().toImage()
        w, h = img.width(), img.height()
        ptr = img.constBits()
        arr = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(h, img.bytesPerLine())
        rgba = arr[:, : w * 4].reshape(h, w, 4)
        return rgba[..., :3].mean(axis=2)
