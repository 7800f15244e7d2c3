"""Latency statistics with flat memory over arbitrarily long runs."""

from __future__ import annotations

import threading

import numpy as np


class LatencyRecorder:
    """Keeps the most recent ``capacity`` samples per name (a ring) plus a total count.

    p50/p95 over the last 4096 samples describe a live run well and keep memory constant over
    20,000-frame sessions.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._cap = capacity
        self._rings: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            ring = self._rings.get(name)
            if ring is None:
                ring = self._rings[name] = np.empty(self._cap, dtype=np.float64)
                self._counts[name] = 0
            ring[self._counts[name] % self._cap] = ms
            self._counts[name] += 1

    def summary(self) -> dict[str, dict[str, float]]:
        """``{name: {"p50": ms, "p95": ms, "n": count}}``."""
        out = {}
        with self._lock:
            for name, ring in self._rings.items():
                n = self._counts[name]
                vals = ring[: min(n, self._cap)]
                p50, p95 = np.percentile(vals, [50, 95])
                out[name] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "n": n}
        return out
