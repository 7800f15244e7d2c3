"""Disk space as a fault, ahead of time: the output's free space against what the rest of the
plan will write, at the start and every minute (``[storage] min_free_gb``)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from acquire_vf._errors import StorageError

log = logging.getLogger(__name__)
GB = 2**30


class DiskWatch:
    """Below ``margin`` free the run stops cleanly (a :class:`StorageError`: state failed,
    everything acquired saved) before the disk fills mid-frame; below what the remaining
    frames will take plus ``margin`` it warns (once, and again if it gets worse by half)."""

    def __init__(self, folder: Path, frame_bytes: float, margin_gb: float,
                 warn: Callable[[str], None], every_s: float = 60.0) -> None:
        self.folder, self.frame_bytes = folder, frame_bytes
        self.margin = margin_gb * GB
        self._warn, self.every_s = warn, every_s
        self._last = -float("inf")
        self._warned_short: float | None = None
        self.checks = 0
        self.lowest_free_gb: float | None = None

    def check(self, frames_left: int, *, now: bool = False) -> None:
        t = time.monotonic()
        if not now and t - self._last < self.every_s:
            return
        self._last = t
        self.checks += 1
        free = shutil.disk_usage(self.folder).free
        self.lowest_free_gb = round(min(free / GB, self.lowest_free_gb or free / GB), 3)
        if free < self.margin:
            raise StorageError(
                f"the output's disk ('{self.folder}') has {free / GB:.2f} GB free, below "
                f"[storage] min_free_gb = {self.margin / GB:g}: the run stopped before the disk "
                "filled (everything acquired is saved)")
        need = frames_left * self.frame_bytes
        short = need + self.margin - free
        if short > 0 and (self._warned_short is None or short > 1.5 * self._warned_short):
            self._warned_short = short
            self._warn(f"disk space: the rest of the plan will write about {need / GB:.2f} GB, "
                       f"{free / GB:.2f} GB are free and [storage] min_free_gb is "
                       f"{self.margin / GB:g}: the run will stop early unless space is freed")
            log.warning("disk space: %.2f GB free, about %.2f GB still to write", free / GB,
                        need / GB)
