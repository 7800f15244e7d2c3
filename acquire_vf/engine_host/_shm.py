"""Shared-memory blocks and numpy views on them, on both sides of the engine host."""

from __future__ import annotations

import contextlib
from multiprocessing import shared_memory

import numpy as np

KEY_ENV = "ACQUIRE_VF_HOST_KEY"
"""The connection's authentication key (hex), passed to the host in its environment."""
ALIGN = 64


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def view(shm: shared_memory.SharedMemory, shape: tuple[int, ...], offset: int = 0
         ) -> np.ndarray:
    """A float32 array of ``shape`` over ``shm`` at ``offset`` (no copy)."""
    return np.ndarray(shape, np.float32, buffer=shm.buf, offset=offset)


def attach(name: str) -> shared_memory.SharedMemory:
    """Map the block the session created. The host does not own it: it is taken off this
    process's resource tracker, which would otherwise unlink it when the host exits (a
    crashed host must not take the session's memory with it)."""
    shm = shared_memory.SharedMemory(name=name)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - bookkeeping only; the mapping works either way
        pass
    return shm


def create(size: int) -> shared_memory.SharedMemory:
    return shared_memory.SharedMemory(create=True, size=max(aligned(size), ALIGN))


def release(shm: shared_memory.SharedMemory | None, unlink: bool) -> None:
    if shm is None:
        return
    # a view still alive somewhere keeps the mapping (BufferError), but the name goes now:
    with contextlib.suppress(BufferError):  # the memory is freed when the last view is
        shm.close()
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
