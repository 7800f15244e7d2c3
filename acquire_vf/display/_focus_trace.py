"""The live window's focus trace (closed-loop focus): per position, the estimated defocus of
each frame set (and the simulator's true defocus where known), stage corrections and z-scans."""

from __future__ import annotations

import threading
from typing import Any

from acquire_vf.acquisition import FocusCorrection, FocusEstimate, FocusEvent, FocusZScan


class FocusTrace:
    """``offer`` takes a focus event (any thread); ``render`` draws (GUI thread)."""

    def __init__(self, pg: Any, QtWidgets: Any) -> None:
        self.box = QtWidgets.QGroupBox("focus (um from focus)")
        lay = QtWidgets.QVBoxLayout(self.box)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(140)
        self.plot.setLabel("bottom", "time point")
        self.plot.addLegend(offset=(5, 5))
        lay.addWidget(self.plot)
        self.box.setVisible(False)  # shown with the first event (closed-loop runs)
        self._pg = pg
        self._lock = threading.Lock()
        self._events: list[FocusEvent] = []
        self._dirty = False
        self._items: dict[str, Any] = {}
        self.events_shown = 0

    def offer(self, event: FocusEvent) -> None:
        with self._lock:
            self._events.append(event)
            self._dirty = True

    def render(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            events = list(self._events)
            self._dirty = False
        self.box.setVisible(True)
        series: dict[str, tuple[list[float], list[float]]] = {}
        for e in events:
            p = e.p
            if isinstance(e, FocusEstimate):
                if e.defocus_um is None:  # the side untold: nothing to plot
                    continue
                series.setdefault(f"estimate p{p}", ([], []))
                series[f"estimate p{p}"][0].append(e.t)
                series[f"estimate p{p}"][1].append(e.defocus_um)
                if e.true_defocus_um is not None:
                    series.setdefault(f"true p{p}", ([], []))
                    series[f"true p{p}"][0].append(e.t)
                    series[f"true p{p}"][1].append(e.true_defocus_um)
            elif isinstance(e, FocusCorrection | FocusZScan):
                key = f"{'zscan' if isinstance(e, FocusZScan) else 'correction'} p{p}"
                series.setdefault(key, ([], []))
                series[key][0].append(e.t)
                series[key][1].append(e.dz_um)
            # a SignCheck is once per run, in session.json and the log: not a point on the trace
        style = {"estimate": dict(pen="#4fc3f7", symbol="o", symbolSize=5),
                 "true": dict(pen=self._pg.mkPen("#9e9e9e", width=1)),
                 "correction": dict(pen=None, symbol="t", symbolSize=8, symbolBrush="#81c784"),
                 "zscan": dict(pen=None, symbol="s", symbolSize=9, symbolBrush="#ffb74d")}
        for name, (xs, ys) in series.items():
            item = self._items.get(name)
            if item is None:
                item = self._items[name] = self.plot.plot([], [], name=name,
                                                          **style[name.split()[0]])
            item.setData(xs, ys)
        self.events_shown = len(events)
