"""The time slider of the live window: a downsampled history of every channel, and scrubbing.

The window keeps the last ``length`` frames of each channel, shrunk so that their longest side
is at most :data:`HISTORY_PX` (the file holds the full frames). Moving the slider leaves live
mode and shows the frames of that time point; ticking "live" again shows the newest ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

HISTORY_PX = 256
"""Longest side of the frames kept for the time slider."""

Key = tuple[str, str]


def thumb(pixels: np.ndarray) -> np.ndarray:
    step = max(1, -(-max(pixels.shape) // HISTORY_PX))
    return np.ascontiguousarray(pixels[::step, ::step])


class TimeBrowser:
    """The slider row: ``time [----slider----] t N [x] live``.

    ``show(key, pixels, flags)`` draws one panel; ``redraw()`` refreshes what depends on all
    panels (the composite); ``show_latest()`` puts the newest frames back when live resumes.
    """

    def __init__(self, QtWidgets: Any, QtCore: Any, length: int,
                 show: Callable[[Key, np.ndarray, str], None], redraw: Callable[[], None],
                 show_latest: Callable[[], None]) -> None:
        self._show, self._redraw, self._show_latest = show, redraw, show_latest
        self.length = length
        self.history: dict[Key, deque[tuple[int, np.ndarray, str]]] = {}
        self.row = QtWidgets.QHBoxLayout()
        self.live_box = QtWidgets.QCheckBox("live")
        self.live_box.setChecked(True)
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setMaximum(0)
        self.label = QtWidgets.QLabel("t 0")
        self.slider.valueChanged.connect(self.scrub)
        self.live_box.toggled.connect(self._live_toggled)
        for w in (QtWidgets.QLabel("time"), self.slider, self.label, self.live_box):
            self.row.addWidget(w)

    @property
    def live(self) -> bool:
        return bool(self.live_box.isChecked())

    def add(self, key: Key) -> None:
        self.history[key] = deque(maxlen=self.length)

    def record(self, key: Key, t: int, pixels: np.ndarray, flags: str) -> None:
        self.history[key].append((t, thumb(pixels), flags))

    def advance(self, newest: int) -> None:
        """New frames up to time point ``newest`` arrived (once per redraw, not per frame)."""
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(self.slider.maximum(), newest))
        if self.live:
            self.slider.setValue(newest)
        self.slider.blockSignals(False)
        if self.live:
            self.label.setText(f"t {self.slider.value()}")

    def to_latest(self) -> None:
        self.slider.setValue(self.slider.maximum())

    def _live_toggled(self, on: bool) -> None:
        if on:
            self._show_latest()

    def scrub(self, t: int) -> None:
        """Show the history at time point ``t`` (leaves live mode)."""
        self.label.setText(f"t {t}")
        if self.live and t != self.slider.maximum():
            self.live_box.blockSignals(True)
            self.live_box.setChecked(False)
            self.live_box.blockSignals(False)
        for key, frames in self.history.items():
            hit = next((f for f in reversed(frames) if f[0] == t), None)
            if hit is not None:
                self._show(key, hit[1], hit[2])
        self._redraw()
