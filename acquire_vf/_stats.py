"""Run bookkeeping with flat (or one-bit-per-time-point) memory over arbitrarily long runs:
latency statistics, which time points something happened at, and a report's rows thinned
evenly over a run of any length."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any

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


class TimePoints:
    """Which time points something happened at, per key (a position, or a position and a z
    plane): one bit per time point, so a million-time-point run keeps 125 kB per key where a
    set of tuples kept about 100 MB. Not thread-safe: callers hold their own lock."""

    def __init__(self) -> None:
        self._bits: dict[Hashable, bytearray] = {}

    def add(self, key: Hashable, t: int) -> None:
        bits = self._bits.get(key)
        if bits is None:
            bits = self._bits[key] = bytearray()
        i = t >> 3
        if i >= len(bits):  # grows by half again: amortised constant time per time point
            bits.extend(bytes(max(i + 1, len(bits) + len(bits) // 2) - len(bits)))
        bits[i] |= 1 << (t & 7)

    def __contains__(self, item: tuple[Hashable, int]) -> bool:
        key, t = item
        bits = self._bits.get(key)
        return bits is not None and (t >> 3) < len(bits) and bool(bits[t >> 3] >> (t & 7) & 1)

    def __iter__(self) -> Iterator[Hashable]:
        """The keys."""
        return iter(list(self._bits))

    def mask(self, key: Hashable) -> np.ndarray:
        """The time points of ``key`` as a boolean array indexed by time point."""
        bits = self._bits.get(key, bytearray())
        return np.unpackbits(np.frombuffer(bytes(bits), np.uint8), bitorder="little"
                             ).astype(bool)

    def count(self) -> int:
        """(key, time point) pairs marked."""
        return sum(int.from_bytes(b, "little").bit_count() for b in self._bits.values())

    def union(self, other: TimePoints) -> TimePoints:
        return self.copy().merged(lambda key: key, other)

    def merged(self, key_of: Callable[[Hashable], Hashable],
               *more: TimePoints) -> TimePoints:
        """A new one whose key ``key_of(k)`` holds every time point of the keys it maps from
        (here and in ``more``): per position from (position, z), say."""
        out = TimePoints()
        for src in (self, *more):
            for key, bits in src._bits.items():
                k = key_of(key)
                mine = out._bits.get(k, bytearray())
                n = max(len(mine), len(bits))
                out._bits[k] = bytearray((int.from_bytes(mine, "little") |
                                          int.from_bytes(bits, "little")).to_bytes(n, "little"))
        return out

    def copy(self) -> TimePoints:
        out = TimePoints()
        out._bits = {k: bytearray(b) for k, b in self._bits.items()}
        return out


class Thinned:
    """At most ``cap`` rows spread evenly over everything appended: when full, every second
    row kept goes and from then on only every ``stride``-th row is taken. A run's report
    samples its whole length at a bounded memory (the full record is the run folder's JSON
    lines); ``total`` counts every row offered."""

    def __init__(self, cap: int) -> None:
        if cap < 2:
            raise ValueError(f"a thinned record keeps at least 2 rows, got {cap}")
        self.cap = cap
        self.rows: list[Any] = []
        self.stride = 1
        """Rows kept are those whose offer number is a multiple of this."""
        self.total = 0

    def append(self, row: Any) -> None:
        if self.total % self.stride == 0:
            self.rows.append(row)
            if len(self.rows) >= self.cap:
                self.rows = self.rows[::2]
                self.stride *= 2
        self.total += 1

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)
