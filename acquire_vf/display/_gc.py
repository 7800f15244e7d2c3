"""Python's cycle collector on the GUI thread only, while a window is up.

The cycle collector runs in whichever thread happens to allocate past its threshold. With a
window up, acquisition, pipeline and writer threads allocate all the time; a collection there
that frees a cycle holding a Qt object deletes that object off the GUI thread, which can crash
Qt (pyqtgraph's ``GarbageCollector`` documents the same). So a displayed session collects
once on the main thread, switches automatic collection off, collects by the same thresholds
from a GUI timer (and from the main thread's wait once the window is closed), and restores
automatic collection when the session ends.
"""

from __future__ import annotations

import gc
from types import TracebackType


class GuiThreadCollector:
    """Collect cycles only where :meth:`check` is called (the GUI thread), by gc's thresholds.

    A context manager: entering collects everything and disables automatic collection;
    leaving collects again and re-enables it if it was on.
    """

    def __init__(self) -> None:
        self.threshold = gc.get_threshold()
        self.was_enabled = gc.isenabled()
        self.collections = 0

    def __enter__(self) -> GuiThreadCollector:
        self.was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (call on the GUI
        thread, about once a second)."""
        l0, l1, l2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if l0 <= t0:
            return
        gen = 2 if (l1 > t1 and l2 > t2) else 1 if l1 > t1 else 0
        gc.collect(gen)
        self.collections += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        gc.collect()
        if self.was_enabled:
            gc.enable()
