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

    :meth:`start` collects everything and disables automatic collection; :meth:`stop`
    collects again and re-enables it if it was on (also a context manager).
    """

    def __init__(self) -> None:
        self.threshold = gc.get_threshold()
        self.was_enabled = gc.isenabled()

    def start(self) -> GuiThreadCollector:
        self.was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        return self

    def stop(self) -> None:
        gc.collect()
        if self.was_enabled:
            gc.enable()

    def __enter__(self) -> GuiThreadCollector:
        return self.start()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (call on the GUI
        thread, about once a second)."""
        l0, l1, l2 = gc.get_count()
        t0, t1, t2 = self.threshold
        if l0 <= t0:
            return
        gen = 2 if (l1 > t1 and l2 > t2) else 1 if l1 > t1 else 0
        gc.collect(gen)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
