"""The host's side: listen, load engines, run batches out of shared memory, answer pings.

One thread per connection (the session opens one per engine, and one for the heartbeat), so
the focus estimator's calls do not queue behind a synthesis engine's. The host ignores Ctrl-C
(the session decides when to stop), runs at lower priority on the cores the acquisition does
not use (:func:`place`), and exits when the session's process is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.engine_host._messages import (
    Close,
    Load,
    Map,
    Message,
    Ping,
    Place,
    Run,
    RunFrame,
)
from acquire_vf.engine_host._shm import KEY_ENV, attach, release, view

log = logging.getLogger("acquire_vf.engine_host")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or KEY_ENV not in os.environ:
        sys.exit("usage: python -m acquire_vf.engine_host ADDRESS (started by an acquire-vf "
                 "session, which passes its key in the environment)")
    key = bytes.fromhex(os.environ.pop(KEY_ENV))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="engine host: %(message)s")
    listener = Listener(args[0], family="AF_UNIX", authkey=key)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except Exception:  # noqa: BLE001 - a failed handshake must not end the host
            continue
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)  # the session is gone: nobody to serve
        time.sleep(0.5)


class _Engine:
    """One connection's engine: its runner and its shared-memory block."""

    def __init__(self) -> None:
        self.runner: Any = None
        self.shm: Any = None
        self.ring: Any = None

    def handle(self, msg: Message) -> dict[str, Any]:
        match msg:
            case Ping():
                return {"ok": True, "pid": os.getpid()}
            case Place(avoid=avoid, nice=nice):
                return {"ok": True, **place(avoid, nice)}
            case Map(name=name, ring=True):
                release(self.ring, unlink=False)
                self.ring = attach(name)
                return {"ok": True}
            case Map(name=name):
                release(self.shm, unlink=False)
                self.shm = attach(name)
                return {"ok": True}
            case Load():
                return self._load(msg)
            case Run(shape=shape, out_offset=out_offset):
                return self._run(tuple(shape), int(out_offset))
            case RunFrame():
                return self._frame(msg)
        return {"ok": False, "error": f"unknown operation {type(msg).__name__}"}

    def _load(self, msg: Load) -> dict[str, Any]:
        from acquire_vf.card import ModelCard
        from acquire_vf.config import Compute
        from acquire_vf.inference import first_runner

        path = Path(msg.path)
        card = ModelCard.load(path)
        self.runner = first_runner(path, card, Compute.model_validate(msg.compute),
                                   backend=msg.backend, tile=msg.tile, batch=msg.batch)
        r = self.runner
        return {"ok": True, "backend": r.backend, "device": r.device, "precision": r.precision}

    def _run(self, shape: tuple[int, ...], out_offset: int) -> dict[str, Any]:
        if self.runner is None or self.shm is None:
            return {"ok": False, "error": "no engine loaded"}
        y = np.asarray(self.runner.run(view(self.shm, shape)), np.float32)
        if out_offset + y.nbytes > self.shm.size:
            return {"ok": False, "grow": out_offset + y.nbytes, "error": "output too large"}
        view(self.shm, y.shape, out_offset)[...] = y
        return {"ok": True, "shape": y.shape}

    def _frame(self, msg: RunFrame) -> dict[str, Any]:
        """A whole frame set: tiled, run and stitched here, from the ring slot and into it."""
        from acquire_vf.inference import run_tiled

        if self.runner is None or self.ring is None:
            return {"ok": False, "error": "no engine or frame ring"}
        t0 = time.perf_counter()
        x = view(self.ring, msg.shape, msg.at)
        into = view(self.ring, (msg.out_size,), msg.out_at)
        y = run_tiled(x, self.runner.run, tile=msg.tile, overlap=msg.overlap, batch=msg.batch,
                      multiple=msg.multiple, into=into)
        in_place = np.may_share_memory(y, into)  # stitched there: padded, the client crops
        if not in_place:  # one tile for the whole frame: the network's output, written there
            into[:y.size].reshape(y.shape)[...] = y
        return {"ok": True, "in_place": in_place, "host_ms": (time.perf_counter() - t0) * 1e3}

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        release(self.shm, unlink=False)
        release(self.ring, unlink=False)


def _serve(conn: Connection) -> None:
    engine = _Engine()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if isinstance(msg, Close):
                return
            try:
                reply = engine.handle(msg)
            except Exception as e:  # noqa: BLE001 - the engine's own error, sent back as text
                text = f"{type(e).__name__}: {' '.join(str(e).split())}"
                reply = {"ok": False, "error": text, "oom": out_of_memory(e)}
            try:
                conn.send(reply)
            except OSError:  # the session went away mid-call
                return
            if reply.get("oom"):  # memory may be fragmented or leaked: a fresh process is the
                logging.getLogger(__name__).warning("out of memory: %s", reply["error"])
                os._exit(OOM_EXIT)  # cure; the session restarts it
    finally:
        engine.close()


OOM_EXIT = 75
"""The host's exit code after it ran out of memory (it says so first)."""
_OOM_WORDS = ("out of memory", "failed to allocate", "bad_alloc", "cannot allocate memory")


def out_of_memory(e: BaseException) -> bool:
    """``e`` is an allocation failure: Python's MemoryError, or the text a native library
    (ONNX Runtime's allocator, CUDA, TensorRT) gives it."""
    return isinstance(e, MemoryError) or any(w in str(e).lower() for w in _OOM_WORDS)


def place(avoid: Any, nice: int) -> dict[str, Any]:
    """Run on the cores the acquisition does not (``avoid``), where the machine has others,
    and ``nice`` steps below it; returns where it runs.

    On Linux both are a thread's, not the process's: every thread the host has is placed
    (the threads it starts later, the engines' among them, inherit it from the thread that
    starts them, which is placed too)."""
    out: dict[str, Any] = {}
    threads = _threads()
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        free = [c for c in cores if c not in set(avoid)]
        if free and len(free) < len(cores):
            for tid in threads:
                os.sched_setaffinity(tid, free)
        out["cores"] = sorted(os.sched_getaffinity(0))
    if nice:
        try:
            level = os.getpriority(os.PRIO_PROCESS, 0) + int(nice)
            for tid in threads:
                os.setpriority(os.PRIO_PROCESS, tid, level)
            out["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
        except OSError:
            out["nice"] = None
    out["threads_placed"] = len(threads)
    return out


def _threads() -> list[int]:
    """This process's thread ids (Linux), or just this thread's (0) elsewhere."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
