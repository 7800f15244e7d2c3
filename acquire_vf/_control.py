"""Watch and steer a running session from another shell: a local control socket.

A running session listens on a Unix domain socket, ``RUN_DIR/.control.sock`` (owner-only
permissions, no network port; where the run folder's path is too long for a socket address,
in a private folder of the temp directory with ``RUN_DIR/.control`` naming it). One request
per connection, a JSON line each way: ``{"cmd": "status"}`` answers the live table,
``pause``, ``resume`` and ``stop`` act within the current event (``stop`` as Ctrl-C does:
state ``cancelled``, everything saved). ``acquire-vf status|pause|resume|stop RUN_DIR``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from acquire_vf._errors import AcquireVFError

log = logging.getLogger(__name__)
SOCKET_NAME = ".control.sock"
POINTER_NAME = ".control"
MAX_ADDRESS = 100
"""Bytes of a socket path that every platform accepts (Linux allows 107, macOS 103)."""
COMMANDS = ("status", "pause", "resume", "stop")


class NotRunning(AcquireVFError):
    """No session is running in that folder (or it does not answer): exit code 1."""


def socket_path(run_dir: Path) -> Path:
    """Where the session of ``run_dir`` listens (inside it when the path fits)."""
    inside = run_dir.resolve() / SOCKET_NAME
    if len(os.fsencode(inside)) <= MAX_ADDRESS:
        return inside
    digest = hashlib.sha1(os.fsencode(run_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"acquire-vf-{os.getuid()}" / f"{digest}.sock"


class ControlServer:
    """Answers ``status`` and acts on ``pause``/``resume``/``stop`` for ``run`` while it runs.

    ``status``: a function returning the live table (a JSON-able dict)."""

    def __init__(self, run: Any, run_dir: Path, status: Any) -> None:
        self.run, self.run_dir, self._status = run, run_dir, status
        self.path = socket_path(run_dir)
        if self.path.parent != run_dir.resolve():
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            (run_dir / POINTER_NAME).write_text(str(self.path))
        if self.path.exists():
            if _answers(self.path):
                raise AcquireVFError(f"'{run_dir}': a session is already running in this folder "
                                     "(acquire-vf status shows it); expected a folder no "
                                     "running session writes to")
            self.path.unlink()  # a killed session's
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # owner-only from the start: no window where others connect
        try:
            self._sock.bind(str(self.path))
        finally:
            os.umask(old)
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self.answered = 0
        self.stopped = False
        """``acquire-vf stop`` ended the run."""
        self._thread = threading.Thread(target=self._serve, name="acquire-vf control",
                                        daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    request = json.loads(_read_line(conn) or "{}")
                    reply = self._handle(str(request.get("cmd", "")))
                except Exception as e:  # noqa: BLE001 - one bad client never ends the run
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                self.answered += 1

    def _handle(self, cmd: str) -> dict[str, Any]:
        if cmd == "status":
            return {"ok": True, "status": self._status()}
        if cmd == "pause":
            self.run.pause()
        elif cmd == "resume":
            self.run.resume()
        elif cmd == "stop":
            self.stopped = True
            log.warning("stop asked from another shell: cancelling within the current event, "
                        "everything acquired is saved")
            self.run.cancel()
        else:
            return {"ok": False, "error": f"unknown command '{cmd}': expected one of "
                                          f"{', '.join(COMMANDS)}"}
        return {"ok": True, "state": self.run.state.value}

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / POINTER_NAME).unlink()


def _read_line(conn: socket.socket, limit: int = 1 << 20) -> str:
    buf = b""
    while not buf.endswith(b"\n") and len(buf) < limit:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def _address(run_dir: Path) -> Path:
    pointer = run_dir / POINTER_NAME
    if pointer.is_file():
        return Path(pointer.read_text().strip())
    return socket_path(run_dir)


def _answers(path: Path) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    return False


def refuse_if_running(run_dir: Path) -> None:
    """One clear line, before anything is built, when a session runs in ``run_dir``."""
    from acquire_vf._errors import OutputExistsError

    if run_dir.is_dir() and _answers(_address(run_dir)):
        raise OutputExistsError(f"'{run_dir}': a session is running in this folder "
                                f"(acquire-vf status {run_dir}); expected a folder no running "
                                "session writes to")


def ask(run_dir: Path, cmd: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send ``cmd`` to the session running in ``run_dir``; its answer."""
    if cmd not in COMMANDS:
        raise AcquireVFError(f"unknown command '{cmd}': expected one of {', '.join(COMMANDS)}")
    if not run_dir.is_dir():
        raise NotRunning(f"'{run_dir}': no such run folder")
    path = _address(run_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
            reply = json.loads(_read_line(s) or "{}")
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise NotRunning(f"'{run_dir}': no session is running there (expected a run folder "
                         f"of a running acquire-vf session; {type(e).__name__})") from e
    except (OSError, ValueError) as e:
        raise NotRunning(f"'{run_dir}': the session did not answer ({e})") from e
    if not reply.get("ok"):
        raise AcquireVFError(f"'{run_dir}': {reply.get('error', 'refused')}")
    return reply


def live_status(run: Any, run_dir: Path, started: float, time_points: int) -> dict[str, Any]:
    """The live table: where the run is, its rates, trust states, faults, disk and time left
    (cheap: nothing here reads the files). Time left is the time points left at the rate
    time points have gone (frames also count z-scans and fallbacks, which the plan does not)."""
    st = run.status()
    done = st.frames_acquired
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    positions = max(len(run.plan.positions), 1)
    at = max(run.schedule.last_t(p) for p in range(positions))
    tp_left = max(time_points - 1 - at, 0)
    left = tp_left * st.frames_expected / max(time_points, 1)  # planned frames still to come
    per_frame = run.disk.frame_bytes if run.disk is not None else 0.0  # the disk check's
    return {
        "state": st.state.value, "time_point": at, "time_points": time_points,
        "frames_acquired": done, "frames_expected": st.frames_expected,
        "virtual_frames": st.virtual_frames, "virtual_skipped": st.virtual_skipped,
        "frames_per_s": round(rate, 2), "camera_fps": round(st.fps, 2),
        "elapsed_s": round(elapsed, 1),
        "time_left_s": round(tp_left * elapsed / (at + 1), 1) if at >= 0 else None,
        "disk_free_gb": round(shutil.disk_usage(run_dir).free / 2**30, 2),
        "disk_needed_gb": round(left * per_frame / 2**30, 3),
        "trust": {n: v["state"] for n, v in (run.verifier.report().items()
                                             if run.verifier is not None else [])},
        "faults": {"retries": run.faults.retries, "events_skipped": run.faults.skipped_count,
                   "by_device": run.faults.by_device},
        "raw_backlog_mb": round(st.raw_backlog_mb, 1),
        "errors": len(run.errors),
    }

