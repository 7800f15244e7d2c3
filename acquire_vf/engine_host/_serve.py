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

    def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "place":
            return {"ok": True, **place(msg.get("avoid", ()), msg.get("nice", 0))}
        if op == "map":
            release(self.shm, unlink=False)
            self.shm = attach(msg["name"])
            return {"ok": True}
        if op == "load":
            return self._load(msg)
        if op == "run":
            return self._run(tuple(msg["shape"]), int(msg["out_offset"]))
        return {"ok": False, "error": f"unknown operation {op!r}"}

    def _load(self, msg: dict[str, Any]) -> dict[str, Any]:
        from acquire_vf.card import ModelCard
        from acquire_vf.config import Compute
        from acquire_vf.inference import first_runner

        path = Path(msg["path"])
        card = ModelCard.load(path)
        self.runner = first_runner(path, card, Compute.model_validate(msg["compute"]),
                                   backend=msg.get("backend"), tile=int(msg["tile"]),
                                   batch=int(msg["batch"]))
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

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        release(self.shm, unlink=False)


def _serve(conn: Connection) -> None:
    engine = _Engine()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg.get("op") == "close":
                return
            try:
                reply = engine.handle(msg)
            except MemoryError:
                reply = {"ok": False, "error": "out of memory in the engine host"}
            except Exception as e:  # noqa: BLE001 - the engine's own error, sent back as text
                reply = {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())}"}
            try:
                conn.send(reply)
            except OSError:  # the session went away mid-call
                return
    finally:
        engine.close()


def place(avoid: Any, nice: int) -> dict[str, Any]:
    """Run on the cores the acquisition does not (``avoid``), where the machine has others,
    and ``nice`` steps below it; returns where it runs."""
    out: dict[str, Any] = {}
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        free = [c for c in cores if c not in set(avoid)]
        if free and len(free) < len(cores):
            os.sched_setaffinity(0, free)
        out["cores"] = sorted(os.sched_getaffinity(0))
    if nice:
        try:
            out["nice"] = os.nice(int(nice))
        except OSError:
            out["nice"] = None
    return out
