"""The live window's colour composite: each channel a colour, switched on or off, summed on a
subsample of the frame and shown at full-frame coordinates."""

from __future__ import annotations

from typing import Any

import numpy as np

from acquire_vf._frames import ChannelInfo
from acquire_vf.display._panels import VIRTUAL_COLOR, ChannelPanel, image_plot

PALETTE = ("#00ff00", "#ff00ff", "#00ffff", "#ffff00", "#ff4040", "#4080ff", "#ffffff")


class Composite:
    """The composite view (a plot in the grid) and its layer list (a box beside it)."""

    def __init__(self, pg: Any, QtWidgets: Any, panels: dict[tuple[str, str], ChannelPanel],
                 off: frozenset[str] = frozenset()) -> None:
        self._pg, self._QtWidgets, self.panels = pg, QtWidgets, panels
        self.view, self.image = image_plot(pg, title="composite")
        self.layers = QtWidgets.QGridLayout()
        self.box = QtWidgets.QGroupBox("composite")
        self.box.setLayout(self.layers)
        self.colors: dict[tuple[str, str], Any] = {}
        self.enabled: dict[tuple[str, str], Any] = {}
        self.off = off
        """Measured channels that start switched off (brightfield: no stain to colour)."""
        self.fit: Any = None
        """Shows the whole frame (the window's :class:`~._layout.PanelGrid`)."""

    def starts_on(self, info: ChannelInfo) -> bool:
        """The composite starts from the stains: measured fluorescence and synthesised
        channels; not brightfield, not refocused copies of a measured stain, and not the
        sentinel exposures of a channel that is shown virtual."""
        if info.role == "virtual":
            return not info.name.endswith("-refocused")
        return info.name not in self.off and (info.name, "virtual") not in self.enabled

    def add_layer(self, info: ChannelInfo) -> None:
        """A colour and an on/off switch for the channel (see :meth:`starts_on`)."""
        key = (info.name, info.role)
        k = len(self.colors)
        button = self._pg.ColorButton(color=PALETTE[k % len(PALETTE)])
        check = self._QtWidgets.QCheckBox(
            f"{'virtual ' if info.role == 'virtual' else ''}{info.name}")
        check.setChecked(self.starts_on(info))
        if info.role == "virtual":
            check.setStyleSheet(f"color: {VIRTUAL_COLOR}")
        self.layers.addWidget(check, k // 2, 2 * (k % 2))
        self.layers.addWidget(button, k // 2, 2 * (k % 2) + 1)
        self.colors[key], self.enabled[key] = button, check
        check.toggled.connect(lambda _on: self.update())
        button.sigColorChanged.connect(lambda _b: self.update())

    def update(self) -> None:
        rgb = None
        full: tuple[int, ...] = (1, 1)
        for key, check in self.enabled.items():
            if not check.isChecked() or key not in self.panels:
                continue
            img = self.panels[key].image.image
            if img is None:
                continue
            full = img.shape  # shown at full-frame coordinates, computed on a subsample
            img = img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)]
            lo, hi = self.panels[key].shown_levels
            norm = np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)
            color = self.colors[key].color()
            c = np.array([color.redF(), color.greenF(), color.blueF()], np.float32)
            layer = norm[..., None] * c
            if rgb is None or rgb.shape != layer.shape:
                rgb = layer
            else:
                rgb += layer
        if rgb is not None:
            self.image.setImage(np.clip(rgb, 0, 1), levels=(0, 1), autoLevels=False)
            self.image.setRect(0, 0, full[1], full[0])
            if self.fit is not None:
                self.fit(full)
