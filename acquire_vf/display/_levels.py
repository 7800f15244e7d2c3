"""The live window's contrast control: which channel's levels are edited, automatic or manual,
and the histogram that shows them (refreshed by a timer, never per frame)."""

from __future__ import annotations

import contextlib
from typing import Any

from acquire_vf.display._panels import ChannelPanel


class LevelsControl:
    """A channel chooser, an "automatic" switch and a histogram over ``panels``."""

    def __init__(self, pg: Any, QtWidgets: Any, side: Any,
                 panels: dict[tuple[str, str], ChannelPanel]) -> None:
        self.panels = panels
        box = QtWidgets.QGroupBox("contrast")
        lay = QtWidgets.QVBoxLayout(box)
        self.channel = QtWidgets.QComboBox()
        self.keys: list[tuple[str, str]] = []
        self._linking = False
        self.auto = QtWidgets.QCheckBox("automatic (robust percentiles)")
        self.auto.setChecked(True)
        self.histogram = pg.HistogramLUTWidget(gradientPosition="left")
        self.histogram.setMinimumHeight(160)
        self.channel.currentIndexChanged.connect(self._channel_chosen)
        self.auto.toggled.connect(self._auto_toggled)
        self.histogram.item.sigLevelChangeFinished.connect(self._dragged)
        for w in (self.channel, self.auto, self.histogram):
            lay.addWidget(w)
        side.addWidget(box)

    def add(self, key: tuple[str, str], label: str) -> None:
        self.keys.append(key)  # before addItem: adding the first selects it
        self.channel.addItem(label)

    def key(self) -> tuple[str, str] | None:
        i = self.channel.currentIndex()
        return self.keys[i] if 0 <= i < len(self.keys) else None

    def select(self, name: str, role: str = "physical") -> None:
        self.channel.setCurrentIndex(self.keys.index((name, role)))

    def follow(self, key: tuple[str, str]) -> None:
        """A frame of ``key`` was shown: link the histogram to it if it is the chosen one."""
        panel = self.panels[key]
        if key == self.key() and self.histogram.item.imageItem() is not panel.image:
            self.link(panel)

    def _channel_chosen(self, _index: int) -> None:
        key = self.key()
        if key is None:
            return
        panel = self.panels[key]
        if panel.image.image is not None:  # else linked on its first frame (see follow)
            self.link(panel)
        self.auto.blockSignals(True)
        self.auto.setChecked(panel.levels is None)
        self.auto.blockSignals(False)

    def link(self, panel: ChannelPanel) -> None:
        """Show this panel's histogram. Linked only once the image has data: levels set on an
        empty ImageItem are deferred by pyqtgraph and would override the first frame's."""
        self._linking = True
        try:
            self.histogram.setImageItem(panel.image)
        finally:
            self._linking = False
        panel.image.setLevels(panel.shown_levels)  # linking auto-levels the histogram
        # the histogram is refreshed by its own timer, not on every frame
        with contextlib.suppress(RuntimeError, TypeError):
            panel.image.sigImageChanged.disconnect(self.histogram.item.imageChanged)

    def refresh(self) -> None:
        if self.histogram.item.imageItem() is not None:
            self.histogram.item.imageChanged(autoLevel=False, autoRange=True)

    def _auto_toggled(self, on: bool) -> None:
        key = self.key()
        if key in self.panels:
            self.panels[key].levels = None if on else tuple(self.histogram.item.getLevels())

    def _dragged(self, _item: Any) -> None:
        """The user moved the histogram's levels (programmatic updates show the levels the
        panel already uses, and are ignored): that channel switches to manual levels."""
        key = self.key()
        if key not in self.panels or self._linking:
            return
        lo, hi = (float(v) for v in self.histogram.item.getLevels())
        shown = self.panels[key].shown_levels
        if abs(lo - shown[0]) + abs(hi - shown[1]) <= 1e-6 * max(1.0, abs(hi)):
            return
        self.panels[key].levels = (lo, hi)
        self.auto.blockSignals(True)
        self.auto.setChecked(False)
        self.auto.blockSignals(False)
