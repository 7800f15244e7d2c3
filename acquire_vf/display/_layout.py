"""Where the live window's panels go: two groups (measured, virtual) in columns that fit the
screen, every view showing the same region of the frame, the whole frame to begin with.

Why explicit ranges: pyqtgraph's ``autoRange`` on a panel's first frame ran before the image's
bounds were known and before the window was laid out, and every linked panel then showed only
the lower-right part of its frame. Every view is given the frame's rectangle (``setRange``, no
padding) whenever a frame of a new shape arrives; aspect locking keeps the whole rectangle
visible at any panel size.

Why not pyqtgraph's view links: X and Y links between aspect-locked views of different sizes
(the two groups' panels differ in height) feed each one's aspect correction back to the other,
and the range grows until the frame is a dot. Here a user's zoom or pan of one view
(``sigRangeChangedManually``) is copied to the others as a target rectangle, which each view
fits to its own aspect; a copied range is not a manual change, so nothing comes back.

Why two groups: a demo run has 3 measured, 2 refocused and 3 synthesised channels (plus the
sentinels' measured frames); uncertainty and error maps are not panels of their own but views
of each virtual panel (``prediction | uncertainty | error``), so the grid holds one panel per
channel and stays usable at 12 channels on a 1920 x 1080 screen.
"""

from __future__ import annotations

import math
from typing import Any

from acquire_vf.display._panels import ChannelPanel

GROUPS = ("measured", "virtual")
SIDE_PX = 280
"""Width of the side column (controls, composite layers, contrast, traces)."""
MIN_PANEL_PX = (220, 190)
"""The smallest panel that still shows a cell: below it the window scrolls instead."""


def columns_for(n_panels: int) -> int:
    """Columns for ``n_panels`` (composite included): about square, 3 to 5."""
    return max(3, min(5, math.ceil(math.sqrt(n_panels))))


class PanelGrid:
    """The panel area: a measured and a virtual group box, each a grid, in a scroll area.

    ``composite`` is the composite's plot widget: it takes the first cell of the measured group
    and is the view every panel links to (zoom and pan once, everywhere).
    """

    def __init__(self, QtWidgets: Any, QtCore: Any, composite: Any, n_expected: int) -> None:
        self._QtCore = QtCore
        self.cols = columns_for(n_expected + 1)
        self.composite = composite
        self.widget = QtWidgets.QScrollArea()
        self.widget.setWidgetResizable(True)
        inner = QtWidgets.QWidget()
        column = QtWidgets.QVBoxLayout(inner)
        column.setContentsMargins(0, 0, 0, 0)
        self.boxes: dict[str, Any] = {}
        self.grids: dict[str, Any] = {}
        self.counts = {g: 0 for g in GROUPS}
        for group in GROUPS:
            box = QtWidgets.QGroupBox(group)
            grid = QtWidgets.QGridLayout(box)
            grid.setContentsMargins(2, 2, 2, 2)
            column.addWidget(box, stretch=1)
            self.boxes[group], self.grids[group] = box, grid
        self.widget.setWidget(inner)
        self.views: list[Any] = []
        self._place(composite, "measured")
        self._follow(composite)
        self.boxes["virtual"].setVisible(False)
        self.shape: tuple[int, ...] | None = None

    def _place(self, widget: Any, group: str) -> None:
        n = self.counts[group]
        self.grids[group].addWidget(widget, n // self.cols, n % self.cols)
        widget.setMinimumSize(*MIN_PANEL_PX)
        self.counts[group] = n + 1
        self.boxes[group].setVisible(True)

    def add(self, panel: ChannelPanel) -> None:
        """Place ``panel`` in its group; it shows what the other views show."""
        self._place(panel.widget, "virtual" if panel.info.role == "virtual" else "measured")
        self._follow(panel.widget)
        panel.fit = self.fit
        if self.shape is not None:
            h, w = self.shape
            self.views[-1].setRange(self._QtCore.QRectF(0, 0, w, h), padding=0)

    def _follow(self, widget: Any) -> None:
        view = widget.getViewBox()
        self.views.append(view)
        view.sigRangeChangedManually.connect(lambda _mask, v=view: self._copy_from(v))

    def _copy_from(self, source: Any) -> None:
        """A user zoomed or panned ``source``: the other views show the same region."""
        rect = source.viewRect()
        for view in self.views:
            if view is not source:
                view.setRange(rect, padding=0)

    def fit(self, shape: tuple[int, ...]) -> None:
        """Show the whole frame of ``shape`` in every panel (once per new shape)."""
        shape = tuple(shape[:2])
        if shape == self.shape:
            return
        self.shape = shape
        h, w = shape
        for view in self.views:
            view.setRange(self._QtCore.QRectF(0, 0, w, h), padding=0)

    def window_size(self, available: tuple[int, int] | None) -> tuple[int, int]:
        """The window's first size: every panel at a useful size, within the screen."""
        rows = sum(math.ceil(max(c, 1) / self.cols) for c in self.counts.values())
        want_w = SIDE_PX + self.cols * 330
        want_h = 110 + rows * 280
        if available is None:
            return want_w, want_h
        return min(want_w, available[0]), min(want_h, available[1])
