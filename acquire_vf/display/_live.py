"""The live window of ``demo`` and ``live``: the latest frame of every channel, as it comes.

Threading: acquisition and inference call :meth:`LiveWindow.offer` on their own threads. It
stores the frame in a one-frame slot per channel (a newer frame replaces one not yet shown, and
is counted as skipped for display) and returns; no Qt call is made off the GUI thread (PySide
can deadlock when Python threads emit into a busy GUI thread). A Qt timer on the GUI thread
fires ``refresh_hz`` times a second and :meth:`render` shows whatever the slots hold. ``offer``
never waits for the GUI, so a slow or closed window never slows the run.

Around the panels: a merged colour composite (per-channel colour and on/off), manual levels with
a histogram (or automatic ones), overlays (QC flags on virtual panels; an error map when a
physical frame of a virtual channel exists, e.g. a fallback exposure), start / pause / stop, a
time slider over a downsampled history of what was acquired, and a status bar (fps, per-stage
latency, queue depths, skipped frames, exposures saved, backend).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal, cast

import numpy as np

from acquire_vf._frames import ChannelInfo, Frame, raised_flags
from acquire_vf.display._composite import Composite
from acquire_vf.display._controls import RunControls, ask_on_close
from acquire_vf.display._fidelity import FidelityTrace
from acquire_vf.display._focus_trace import FocusTrace
from acquire_vf.display._history import TimeBrowser
from acquire_vf.display._layout import PanelGrid
from acquire_vf.display._levels import LevelsControl
from acquire_vf.display._panels import ChannelPanel, keep_for_process, qt, robust_levels

OnClose = Literal["ask", "stop", "continue"]
VIEWS = ("prediction", "uncertainty", "error")
"""What a virtual panel can show: the virtual frame, its uncertainty, its error against the
measured frame of the same time point."""


def is_uncertainty(name: str) -> bool:
    """An uncertainty channel (``uncertainty:NAME``): a view of NAME's panel, not a panel."""
    return name.startswith("uncertainty:")


def _redraw(pending: dict[tuple[str, str], Frame]) -> set[tuple[str, str]]:
    """The panels that new frames change: their own; a virtual channel's for its uncertainty
    and for a measured frame of it (the error view)."""
    keys = set()
    for name, role in pending:
        if is_uncertainty(name):
            keys.add((name.split(":", 1)[1], "virtual"))
        else:
            keys.add((name, role))
            keys.add((name, "virtual"))
    return keys


def _flags(frame: Frame) -> str:
    bad = [f.value for f in raised_flags(frame.qc)]
    return ("QC: " + ", ".join(bad)) if bad else ""


class LiveWindow:
    """The live window over one :class:`~acquire_vf.acquisition.AcquisitionRun`.

    ``start`` is called (on the GUI thread) to begin the run, by the Start button or at once
    with ``autostart``. ``on_close`` says what closing the window mid-run does: stop the run
    (everything acquired is saved), let it go on headless, or ask.
    """

    def __init__(self, channels: list[ChannelInfo], *, run: Any = None,
                 start: Any = None, on_close: OnClose = "ask", backend: str | None = None,
                 history: int = 500, title: str = "acquire-vf live",
                 refresh_hz: float = 5.0, composite_off: frozenset[str] = frozenset()) -> None:
        pg, QtWidgets = qt()
        from pyqtgraph.Qt import QtCore

        self.run, self.on_close, self.backend = run, on_close, backend
        self._QtWidgets = QtWidgets
        self.app = pg.mkQApp()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Frame] = {}
        self._rendered_at = -1e9
        self._composite_at = -1e9
        self.display_skipped = 0
        self.frames_offered = 0
        self.frames_shown = 0
        self.closed = False
        self.run_done = False
        """Set when the run's thread has ended (whatever state the run object says)."""
        self.controls = RunControls(QtWidgets, run, start)
        self.times = TimeBrowser(QtWidgets, QtCore, history, self._show_thumb,
                                 self._update_composite, self._show_latest)
        self.history = self.times.history
        self.time_slider, self.live_box = self.times.slider, self.times.live_box
        self.start_button, self.pause_button, self.stop_button = self.controls.buttons
        self._last: dict[tuple[str, str], Frame] = {}
        self.uncertainty: dict[str, Frame] = {}
        """The latest uncertainty frame per virtual channel (shown in its panel on demand)."""
        self.error_maps: dict[str, tuple[int, np.ndarray]] = {}
        """Per virtual channel with a measured frame at the same time point: (t, |error|)."""

        class Window(QtWidgets.QMainWindow):  # type: ignore[name-defined]
            def closeEvent(inner, event: Any) -> None:  # noqa: N805
                if self._close_requested():
                    event.accept()
                else:
                    event.ignore()

        self.window = Window()
        keep_for_process(self)
        self.window.live = self  # the window knows its controller (tests, scripts)
        self.window.setWindowTitle(title)
        central = QtWidgets.QWidget()
        outer = QtWidgets.QHBoxLayout(central)
        left = QtWidgets.QVBoxLayout()
        outer.addLayout(left, stretch=4)
        self.panels: dict[tuple[str, str], ChannelPanel] = {}
        self.composite_view = Composite(pg, QtWidgets, self.panels, off=composite_off)
        self.composite_image = self.composite_view.image
        self.enabled, self.colors = self.composite_view.enabled, self.composite_view.colors
        shown = [c for c in channels if not is_uncertainty(c.name)]
        self.grid = PanelGrid(QtWidgets, QtCore, self.composite_view.view, len(shown))
        self.composite_view.fit = self.grid.fit
        left.addWidget(self.grid.widget, stretch=1)
        self._build_side(pg, QtWidgets, outer)
        for info in shown:
            self._add_panel(info)
        left.addLayout(self.times.row)
        self.window.setCentralWidget(central)
        self._build_status(QtWidgets, QtCore, refresh_hz)
        screen = self.app.primaryScreen()
        avail = screen.availableGeometry() if screen is not None else None
        big = avail is not None and avail.width() >= 1024  # offscreen's screen is 800 x 600
        self.window.resize(*self.grid.window_size(
            (avail.width(), avail.height()) if big and avail is not None else None))

    # ----- construction --------------------------------------------------------------
    def _build_side(self, pg: Any, QtWidgets: Any, outer: Any) -> None:
        side = QtWidgets.QVBoxLayout()
        outer.addLayout(side, stretch=1)
        side.addWidget(self.controls.box)
        side.addWidget(self.composite_view.box)
        self.levels = LevelsControl(pg, QtWidgets, side, self.panels)
        self.histogram, self.auto_levels = self.levels.histogram, self.levels.auto
        self._build_overlays(QtWidgets, side)
        self.fidelity = FidelityTrace(pg, QtWidgets)
        side.addWidget(self.fidelity.box)
        self.focus = FocusTrace(pg, QtWidgets)
        side.addWidget(self.focus.box)
        side.addStretch(1)

    def _build_status(self, QtWidgets: Any, QtCore: Any, refresh_hz: float) -> None:
        """The status bar and the GUI-thread timers that refresh status, frames, histogram."""
        self.status = self.window.statusBar()
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setWordWrap(True)
        self.status.addWidget(self.status_label, 1)
        self.status_timer = QtCore.QTimer()
        self.status_timer.timeout.connect(self.update_status)
        self.status_timer.start(500)
        self.frame_timer = QtCore.QTimer()
        self.frame_timer.timeout.connect(self.render)
        self.frame_timer.start(max(1, int(1000 / refresh_hz)))
        self.histogram_timer = QtCore.QTimer()  # the histogram follows the image once a second
        self.histogram_timer.timeout.connect(self._refresh_histogram)
        self.histogram_timer.start(1000)

    def _build_overlays(self, QtWidgets: Any, side: Any) -> None:
        box = QtWidgets.QGroupBox("virtual panels")
        lay = QtWidgets.QVBoxLayout(box)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("show"))
        self.virtual_view = QtWidgets.QComboBox()
        self.virtual_view.addItems(list(VIEWS))
        self.virtual_view.setToolTip(
            "prediction: the virtual frame; uncertainty: its spread over perturbed passes; "
            "error: |virtual - measured| where the channel was also exposed (sentinels)")
        self.virtual_view.currentTextChanged.connect(lambda _v: self._show_latest())
        row.addWidget(self.virtual_view, 1)
        lay.addLayout(row)
        self.show_qc = QtWidgets.QCheckBox("QC flags on virtual frames")
        self.show_qc.setChecked(True)
        lay.addWidget(self.show_qc)
        side.addWidget(box)

    @property
    def view_mode(self) -> str:
        """What virtual panels show: one of :data:`VIEWS`."""
        return str(self.virtual_view.currentText())

    def _add_panel(self, info: ChannelInfo) -> ChannelPanel:
        key = (info.name, info.role)
        panel = ChannelPanel(info)
        self.grid.add(panel)
        self.panels[key] = panel
        self.times.add(key)
        self.composite_view.add_layer(info)
        self.levels.add(key, f"{info.name} ({info.role})")
        if info.role == "virtual":  # says why it is empty rather than staying black
            panel.show_missing("none yet; frames in focus are not refocused"
                               if info.name.endswith("-refocused") else "none yet")
        return panel

    # ----- feeding (any thread) ------------------------------------------------------
    def offer(self, frame: Frame) -> None:
        """Take the newest frame of a channel; never waits for the GUI (any thread)."""
        key = (frame.id.c, frame.role)
        with self._lock:
            self.frames_offered += 1
            if key in self._pending:
                self.display_skipped += 1
            self._pending[key] = frame

    def connect(self, signals: Any) -> None:
        """Listen to a run's :class:`RunSignals` (emitted on acquisition/pipeline threads)."""
        signals.frameReady.connect(self.offer)
        signals.virtualReady.connect(self.offer)
        if hasattr(signals, "fidelity"):
            signals.fidelity.connect(self.fidelity.offer)
        if hasattr(signals, "focus"):
            signals.focus.connect(self.focus.offer)

    # ----- GUI thread ----------------------------------------------------------------
    def render(self) -> None:
        """Show what the slots hold (GUI thread; the frame timer calls it)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not self.closed:
            self.fidelity.render()
            self.focus.render()
        if self.closed or not pending:
            return
        self._rendered_at = time.perf_counter()
        for key, frame in pending.items():
            if is_uncertainty(key[0]):
                self.uncertainty[key[0].split(":", 1)[1]] = frame
                continue
            if key not in self.panels:
                self._add_panel(ChannelInfo(key[0], role=cast(Any, key[1])))
            flags = self._qc_text(frame)
            self.times.record(key, frame.id.t, frame.pixels, flags)
            self._last[key] = frame
        self._update_error_maps(pending)
        self.times.advance(max(f.id.t for f in pending.values()))
        if self.times.live:
            for key in _redraw(pending):
                if key in self.panels and self._show_key(key):
                    self.frames_shown += 1
                    self.levels.follow(key)
            if self._rendered_at - self._composite_at >= 0.5:
                self._composite_at = self._rendered_at
                self._update_composite()

    def _qc_text(self, frame: Frame) -> str:
        return _flags(frame) if frame.role == "virtual" and self.show_qc.isChecked() else ""

    def _show_key(self, key: tuple[str, str]) -> bool:
        """Draw the panel of ``key`` as the view mode says; False if it has nothing yet."""
        panel, frame = self.panels[key], self._last.get(key)
        name, role = key
        mode = self.view_mode if role == "virtual" else "prediction"
        if mode == "uncertainty":
            u = self.uncertainty.get(name)
            if u is None:
                panel.show_missing("no uncertainty for this channel (verification off)")
                return False
            panel.show(u.pixels, f"uncertainty, t {u.id.t}")
        elif mode == "error":
            hit = self.error_maps.get(name)
            if hit is None:
                panel.show_missing("not measured yet (error maps need a sentinel exposure)")
                return False
            panel.show(hit[1], f"t {hit[0]}: mean |error| {float(hit[1].mean()):.3f} "
                       "of the measured range", levels=(0.0, 0.5))
        elif frame is None:
            return False
        else:
            panel.show(frame.pixels, self._qc_text(frame))
        return True

    def _update_error_maps(self, pending: dict[tuple[str, str], Frame]) -> None:
        """|virtual - measured| (over the measured frame's display range) where a channel has
        both frames at the same time point; shown in the virtual panel on demand."""
        for (name, role), frame in pending.items():
            if role not in ("virtual", "physical") or is_uncertainty(name):
                continue
            other = self._last.get((name, "virtual" if role == "physical" else "physical"))
            if other is None or other.id.t != frame.id.t:
                continue
            v, p = (frame, other) if role == "virtual" else (other, frame)
            lo, hi = robust_levels(p.pixels)
            err = np.abs(v.pixels.astype(np.float32) - p.pixels.astype(np.float32)) / (hi - lo)
            self.error_maps[name] = (frame.id.t, err)

    def _update_composite(self) -> None:
        self.composite_view.update()

    def _show_latest(self) -> None:
        for key in self.panels:
            self._show_key(key)
        self.times.to_latest()
        self._update_composite()

    def _show_thumb(self, key: tuple[str, str], pixels: np.ndarray, flags: str) -> None:
        self.panels[key].show(pixels, flags)

    def select_levels(self, name: str, role: str = "physical") -> None:
        """Show the histogram of this channel (its levels become the ones to edit)."""
        self.levels.select(name, role)

    def _refresh_histogram(self) -> None:
        if not self.closed:
            self.levels.refresh()

    # ----- controls --------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.controls.started

    def start(self) -> None:
        self.controls.start()

    def toggle_pause(self) -> None:
        self.controls.toggle_pause()

    def stop(self) -> None:
        self.controls.stop()

    def run_finished(self) -> None:
        """The run ended (called on the GUI thread): say so and keep the last frames up."""
        self.run_done = True
        self.render()
        self._update_composite()
        self.update_status()
        self.controls.finished()

    def _running(self) -> bool:
        from acquire_vf.acquisition import RunState

        if self.run is None or not self.started or self.run_done:
            return False
        return self.run.state in (RunState.IDLE, RunState.RUNNING, RunState.PAUSED)

    def release(self) -> None:
        """After the run: drop the run and every frame held (the window itself stays for the
        process, see :data:`~acquire_vf.display._panels.KEPT`)."""
        with self._lock:
            self._pending.clear()
        self._last.clear()
        self.uncertainty.clear()
        self.error_maps.clear()
        self.times.history.clear()
        for panel in self.panels.values():
            panel.image.clear()
        self.composite_image.clear()
        self.run = self.controls.run = None

    def _close_requested(self) -> bool:
        """The window is closing: stop the run, let it go on headless, or stay open."""
        if self._running():
            choice: str = self.on_close
            if choice == "ask":  # offscreen there is nobody to answer: stop
                offscreen = self.app.platformName() in ("offscreen", "minimal")
                choice = "stop" if offscreen else ask_on_close(self._QtWidgets, self.window)
            if choice == "cancel":
                return False
            if choice == "stop":
                self.run.cancel()
        self.closed = True
        for timer in (self.status_timer, self.frame_timer, self.histogram_timer):
            timer.stop()
        return True

    def update_status(self) -> None:
        if self.run is None or self.closed:
            return
        self.status_label.setText(status_text(self.run, self.display_skipped, self.backend))

    # ----- for tests and checks ---------------------------------------------------------
    def process_events(self, seconds: float = 0.0) -> None:
        end = time.perf_counter() + seconds
        while True:
            self.app.processEvents()
            if time.perf_counter() >= end:
                return
            time.sleep(0.01)


def status_text(run: Any, display_skipped: int, backend: str | None) -> str:
    """The status bar: state, fps, per-stage latency, queues, skipped, exposures saved."""
    from acquire_vf.acquisition import by_purpose, light_dose

    st = run.status()
    lat = run.latency.summary()
    stages = "  ".join(f"{k} {v['p50']:.0f} ms" for k, v in lat.items()) or "-"
    dose = light_dose(run)
    saved = (f"exposures saved {dose['comparator']['exposures'] - dose['taken']['exposures']}"
             f" ({100 * dose['saved_fraction']:.0f}% of the light)")
    by = by_purpose(dose.get("exposures_by_reason") or {})
    planned = by.pop("plan", st.frames_acquired)
    more = ", ".join(f"+{n} {k}" for k, n in by.items())
    writer = run.writer
    return (f"{st.state.value}  |  {planned}/{st.frames_expected} planned frames"
            f"{f' ({more})' if more else ''}, "
            f"{st.fps:.1f} fps  |  latency p50: {stages}  |  queues: pipeline "
            f"{st.pipeline_depth}, raw {st.raw_backlog_mb:.1f} MB, virtual "
            f"{writer.virtual_depth if writer else 0}  |  skipped: display {display_skipped}, "
            f"virtual {st.virtual_skipped}  |  {saved}  |  {backend or 'no engines'}")
