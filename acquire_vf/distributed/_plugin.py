"""The Dask worker plugin (imported only with Dask present)."""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

from distributed import WorkerPlugin

from acquire_vf.config import Profile
from acquire_vf.distributed._work import worker_for

log = logging.getLogger(__name__)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters."""


def keep_frames_on_the_heap() -> bool:
    """Undo, in this worker, what Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` does to frames:
    setting it switches glibc's adaptive mmap threshold off, so every frame-sized array is
    mapped and unmapped afresh (page faults on each): a frame set took 0.57 s in a worker
    against 0.34 s in one process (512 x 512, the demo's engines, one thread; measured with
    the variable set in a plain process too). Arrays up to 64 MiB come from the heap again,
    returned to the system above 128 MiB free. glibc only; elsewhere nothing to undo."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 64 * 2**20)
                    and libc.mallopt(M_TRIM_THRESHOLD, 128 * 2**20))
    except (OSError, AttributeError) as e:  # musl, or no libc.so.6
        log.info("mallopt not available (%s): the worker keeps Dask's malloc settings", e)
        return False


class EnginesPlugin(WorkerPlugin):
    """Each worker builds its engines once, when it starts or joins, never per task."""

    name = "acquire-vf-engines"

    def __init__(self, profile: Profile, backend: str | None) -> None:
        self.profile, self.backend = profile, backend

    def setup(self, worker: Any) -> None:
        keep_frames_on_the_heap()
        worker_for(self.profile, self.backend)
