"""Shared-memory blocks and numpy views on them, on both sides of the engine host."""

from __future__ import annotations

import contextlib
import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

KEY_ENV = "ACQUIRE_VF_HOST_KEY"
"""The connection's authentication key (hex), passed to the host in its environment."""
ALIGN = 64


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def view(shm: shared_memory.SharedMemory, shape: tuple[int, ...], offset: int = 0
         ) -> np.ndarray:
    """A float32 array of ``shape`` over ``shm`` at ``offset`` (no copy). Its base is the
    mapping itself, so the mapping lives as long as any view of it (:func:`release`)."""
    return np.ndarray(shape, np.float32, buffer=shm._mmap,  # type: ignore[attr-defined]
                      offset=offset)


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


PREFIX = "acqvf_"
"""Blocks are named ``acqvf_<session pid>_<random>``: whose they are is in the name, so a
session's guard can remove them when the session dies, and a later session can remove those
of a session that is gone (:func:`sweep_orphans`)."""
SHM_DIR = Path("/dev/shm")


def create(size: int) -> shared_memory.SharedMemory:
    name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(6)}"
    return shared_memory.SharedMemory(name=name, create=True, size=max(aligned(size), ALIGN))


def session_blocks(pid: int) -> list[Path]:
    """The blocks session ``pid`` created that still have a name (Linux ``/dev/shm``)."""
    return sorted(SHM_DIR.glob(f"{PREFIX}{pid}_*")) if SHM_DIR.is_dir() else []


def remove_blocks(pid: int) -> int:
    """Unlink every block of session ``pid`` (its guard's job once it died); how many."""
    n = 0
    for f in session_blocks(pid):
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
            n += 1
    return n


def sweep_orphans() -> int:
    """Unlink the blocks of sessions whose process is gone (killed with no guard left to do
    it); how many. Blocks of a live session are never touched."""
    if not SHM_DIR.is_dir():
        return 0
    gone = 0
    for f in SHM_DIR.glob(f"{PREFIX}*_*"):
        try:
            pid = int(f.name[len(PREFIX):].split("_", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
                gone += 1
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True


def release(shm: shared_memory.SharedMemory | None, unlink: bool) -> None:
    """Let go of a block: its name goes now (``unlink``, the creator's), its memory when the
    last view of it does.

    ``SharedMemory.close`` would unmap the memory at once, and numpy views do not stop it:
    a virtual frame still being read (QC, the return to camera units) on the pipeline thread
    while the run ends would then read unmapped memory (a segfault, seen once in a full test
    run). So the mapping is handed to the views instead: each view's base is the ``mmap``
    object, which unmaps itself when the last reference goes."""
    if shm is None:
        return
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
    buf = getattr(shm, "_buf", None)
    if buf is not None:
        with contextlib.suppress(BufferError):
            buf.release()
    shm._buf = None  # type: ignore[attr-defined]
    shm._mmap = None  # type: ignore[attr-defined]  # the views keep the mapping
    fd = getattr(shm, "_fd", -1)
    if fd >= 0:  # POSIX: the descriptor is not needed once mapped
        with contextlib.suppress(OSError):
            os.close(fd)
        shm._fd = -1  # type: ignore[attr-defined]
