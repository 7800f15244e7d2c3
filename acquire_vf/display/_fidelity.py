"""The live window's fidelity trace: each verified channel's sentinel PSNR over time points,
with its acceptance band, and its trust state in the legend."""

from __future__ import annotations

import threading
from typing import Any

from acquire_vf.acquisition import SentinelFidelity

COLOURS = ("#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176")


class FidelityTrace:
    """``offer`` takes a judged pair (any thread); ``render`` draws (GUI thread)."""

    def __init__(self, pg: Any, QtWidgets: Any) -> None:
        self.box = QtWidgets.QGroupBox("sentinel fidelity (PSNR, dB)")
        lay = QtWidgets.QVBoxLayout(self.box)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        self.plot.setLabel("bottom", "time point")
        self.legend = self.plot.addLegend(offset=(5, 5))
        lay.addWidget(self.plot)
        self.box.setVisible(False)  # shown with the first judged pair (runs that verify)
        self._pg = pg
        self._lock = threading.Lock()
        self._points: dict[str, list[tuple[int, float, bool]]] = {}
        self._curves: dict[str, Any] = {}
        self._dirty = False
        self.pairs_shown = 0

    def offer(self, pair: SentinelFidelity) -> None:
        with self._lock:
            psnr = float(pair.psnr) if pair.psnr != float("inf") else 60.0
            self._points.setdefault(pair.channel, []).append((pair.t, psnr, pair.ok))
            self._dirty = True

    def render(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            points = {k: list(v) for k, v in self._points.items()}
            self._dirty = False
        self.box.setVisible(True)
        for i, (name, pts) in enumerate(sorted(points.items())):
            curve = self._curves.get(name)
            if curve is None:
                colour = COLOURS[i % len(COLOURS)]
                curve = self._curves[name] = self.plot.plot(
                    [], [], pen=self._pg.mkPen(colour, width=2), symbol="o", symbolSize=6,
                    symbolBrush=colour, name=name)
            curve.setData([p[0] for p in pts], [p[1] for p in pts],
                          symbolBrush=[self._pg.mkBrush(COLOURS[i % len(COLOURS)] if p[2]
                                                        else "#ff1744") for p in pts])
        self.pairs_shown = sum(len(v) for v in points.values())
