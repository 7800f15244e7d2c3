"""The session's side: start and supervise the engine host; runners whose calls run there.

Faults, and what the session sees:

- **crash** (the host exits: SIGKILL, a segfault in a native library, the kernel's out-of-memory
  killer; or it runs out of memory itself, says so and exits): the call in flight, and every
  call until the host is back, raises :class:`EngineHostFault`; the pipeline records the virtual
  frame as skipped with the reason, and ``on_fault`` tells the run (channels with ``on_failure =
  "expose"`` are exposed at once);
- **hang** (no answer to a call or a heartbeat within ``deadline_s``): the host is killed, then
  as a crash. A host *starved* of CPU is not hung: past the deadline, while a thread of it has
  waited for a core longer than it ran (other work at a higher priority than its nice 19;
  Linux schedstat), the call waits on, up to ``STARVED_X`` deadlines, counted as ``starved``;
- **restart**: a new host starts at once (after a failed restart: 0.5 s, doubling, at most 8 s
  later), every engine is loaded and warmed up again, ``on_recovered`` tells the run, and
  virtual frames resume; at most ``restarts`` times per session, after which the engines stay
  off.

``counts`` (``restarts``, ``crashes``, ``hangs``, ``starved``) and ``events`` go into
``session.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import TransientFault
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
from acquire_vf.engine_host._shm import KEY_ENV, aligned, create, release, view

log = logging.getLogger(__name__)
LOAD_S = 120.0
"""Deadline for starting the host and loading an engine (TensorRT may build a plan)."""
HEARTBEAT_S = 0.5
STARVED_X = 10
"""A call the host is too starved of CPU to answer waits at most this many deadlines."""
PROBE_S = 0.25
"""Past the deadline, starvation is judged over windows this long."""


class EngineHostFault(TransientFault):
    """The engine host crashed, hung or is restarting: the call did not run."""


class EngineHost:
    """One engine host process per session (per compute device), supervised."""

    def __init__(self, *, deadline_s: float = 10.0, restarts: int = 5,
                 on_fault: Callable[[str], None] | None = None,
                 on_recovered: Callable[[], None] | None = None,
                 avoid_cores: tuple[int, ...] = (), nice: int = 19) -> None:
        self.deadline_s, self.max_restarts = deadline_s, restarts
        self.on_fault, self.on_recovered = on_fault, on_recovered
        self.counts = {"restarts": 0, "crashes": 0, "hangs": 0, "starved": 0}
        self.probe_note = ""
        """Why the last call past its deadline was judged a hang (what its threads did)."""
        self.events: list[str] = []
        self.placement: dict[str, Any] = {}
        self._avoid, self._nice = tuple(avoid_cores), nice
        self._key = os.urandom(16)
        self._dir = tempfile.mkdtemp(prefix="acquire-vf-host-")
        self._lock = threading.RLock()
        self._runners: list[HostedRunner] = []
        self._closed = threading.Event()
        self.generation = 0
        self.state = "starting"
        self.reason = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._control: Connection | None = None
        self._start()
        self.state = "up"
        self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                      name="acquire-vf engine host heartbeat")
        self._beat.start()

    # ----- the process ------------------------------------------------------------------
    def _start(self) -> None:
        self._address = str(Path(self._dir) / f"host-{self.generation}.sock")
        env = dict(os.environ, **{KEY_ENV: self._key.hex()})
        self.proc = subprocess.Popen([sys.executable, "-m", "acquire_vf.engine_host",
                                      self._address], env=env, stdin=subprocess.DEVNULL)
        threading.Thread(target=self._watch, args=(self.proc, self.generation), daemon=True,
                         name="acquire-vf engine host watch").start()
        end = time.monotonic() + LOAD_S
        while True:
            if self.proc.poll() is not None:
                raise EngineHostFault(f"the engine host exited at start (code "
                                      f"{self.proc.returncode})")
            try:
                self._control = self.connect()
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > end:
                    self._kill()
                    raise EngineHostFault(
                        f"the engine host did not start within {LOAD_S:.0f} s") from None
                time.sleep(0.02)
        self.placement = self.call(self._control, Place(tuple(self._avoid), self._nice),
                                   LOAD_S)
        self.placement.pop("ok", None)
        log.info("engine host started (pid %d) %s", self.proc.pid, self.placement)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def connect(self) -> Connection:
        return Client(self._address, family="AF_UNIX", authkey=self._key)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    # ----- calls ------------------------------------------------------------------------
    def call(self, conn: Connection, msg: Message, timeout: float) -> dict[str, Any]:
        """Send ``msg`` and wait for the answer; a dead host or no answer in ``timeout`` is a
        fault (the host is killed and restarted) and raises :class:`EngineHostFault`. While
        the host is starting, the fault is the restart's to handle."""
        generation = self.generation
        try:
            conn.send(msg)
            ready = conn.poll(timeout) or self._starved_past(conn, timeout, msg.op)
            if ready:
                reply = conn.recv()
                if not reply.get("oom"):
                    return reply
                kind, detail = "crash", f"out of memory on {msg.op}: {reply['error']}"
            else:
                kind = "hang"
                detail = f"no answer to {msg.op} within {timeout:.1f} s{self.probe_note}"
        except (EOFError, OSError) as e:
            kind, detail = "crash", f"{type(e).__name__} on {msg.op}"
        if self.state == "up":
            self.fault(kind, detail, generation)
            raise EngineHostFault(self.reason)
        raise EngineHostFault(f"engine host {self.state}: {detail}")

    def _starved_past(self, conn: Connection, timeout: float, op: Any) -> bool:
        """Past the deadline: wait on while a thread of the host has, since the deadline,
        waited for a core longer than it ran (and a tenth of the time at least), checked every
        ``PROBE_S``, for up to ``STARVED_X`` deadlines in all; True if the answer came. A host
        that is stopped, deadlocked, or spinning with a core to itself waits for no core: a
        hang, one probe later."""
        pid, waited, starved = self.pid, 0.0, False
        since = thread_times(pid) if pid is not None else {}
        self.probe_note = ""
        while pid is not None and waited < (STARVED_X - 1) * timeout:
            if conn.poll(PROBE_S):
                break
            waited += PROBE_S
            now = thread_times(pid)
            if not starving(since, now, waited):
                self.probe_note = _probe_note(since, now, waited)
                return False
            starved = True
        else:
            self.probe_note = f"; still starved after {waited:.1f} s" if pid is not None else ""
            return False
        if starved:
            self.counts["starved"] += 1
            if self.counts["starved"] == 1:
                self._event(f"engine host starved of CPU: {op} answered {waited:.1f} s past "
                            f"its {timeout:.1f} s deadline, its threads waiting for a core "
                            "(other work at a higher priority); not a hang")
        return True

    def check(self, generation: int) -> None:
        """Raise :class:`EngineHostFault` unless the host of ``generation`` is up."""
        if self.state != "up" or generation != self.generation:
            raise EngineHostFault(self.reason or f"engine host {self.state}")

    # ----- faults -----------------------------------------------------------------------
    def fault(self, kind: str, detail: str, generation: int | None = None) -> None:
        """The host of ``generation`` crashed or hung: kill it, count it, restart it."""
        with self._lock:
            if self._closed.is_set() or self.state != "up" or (
                    generation is not None and generation != self.generation):
                return  # already handled
            code = self.proc.poll() if self.proc is not None else None
            if kind == "hang" and code is not None:
                kind = "crash"
            self.state = "down"
            self._kill()
            code = self.proc.returncode if self.proc is not None else None
            self.counts["crashes" if kind == "crash" else "hangs"] += 1
            what = "crashed" if kind == "crash" else "hung"
            self.reason = f"engine host {what} ({detail}; exit code {code})"
            self._event(self.reason + "; virtual frames skipped until it is back")
        if self.on_fault is not None:
            self.on_fault(self.reason)
        threading.Thread(target=self._restart, daemon=True,
                         name="acquire-vf engine host restart").start()

    def _restart(self) -> None:
        delay = 0.0  # at once; while restarts fail, after 0.5 s, doubling, at most 8 s
        while not self._closed.is_set():
            with self._lock:
                if self.counts["restarts"] >= self.max_restarts:
                    self.state = "failed"
                    self.reason = (f"engine host: {self.max_restarts} restarts used; virtual "
                                   "channels stay off for the rest of the run")
                    self._event(self.reason)
                    return
            if self._closed.wait(delay):
                return
            delay = min(max(delay * 2, 0.5), 8.0)
            with self._lock:
                self.counts["restarts"] += 1
                self.generation += 1
                self.state = "starting"
                try:
                    self._start()
                    for r in list(self._runners):
                        r.attach()
                except Exception as e:  # noqa: BLE001 - counted, retried with backoff
                    self.state = "down"
                    died = self.proc is not None and self.proc.poll() is not None
                    self._kill()
                    self.counts["crashes"] += int(died)
                    self._event(f"engine host restart {self.counts['restarts']} failed: "
                                f"{type(e).__name__}: {e}")
                    continue
                self.state = "up"
                self._event(f"engine host restarted (pid {self.pid}); virtual frames resume")
            if self.on_recovered is not None:
                self.on_recovered()
            return

    def _watch(self, proc: subprocess.Popen[bytes], generation: int) -> None:
        """A host that exits is a crash the moment it exits, between calls too."""
        code = proc.wait()
        if not self._closed.is_set():
            self.fault("crash", f"the process exited ({code})", generation)

    def _heartbeat(self) -> None:
        while not self._closed.wait(HEARTBEAT_S):
            with self._lock:
                conn, gen, up = self._control, self.generation, self.state == "up"
            if not up or conn is None:
                continue
            if self.proc is not None and self.proc.poll() is not None:
                self.fault("crash", f"the process exited ({self.proc.returncode})", gen)
                continue
            try:
                self.call(conn, Ping(), self.deadline_s)
            except EngineHostFault:
                continue

    def _event(self, msg: str) -> None:
        log.warning("%s", msg)
        if len(self.events) < 1000:
            self.events.append(msg)

    # ----- engines ----------------------------------------------------------------------
    def runner(self, path: Path, compute: Any, *, backend: str | None, tile: int,
               batch: int) -> HostedRunner:
        r = HostedRunner(self, Load(str(path), compute.model_dump(mode="json"), backend, tile,
                                    batch))
        with self._lock:
            try:
                r.attach()
            except BaseException:  # a backend the host cannot run (a measured choice's on
                r.release()  # a machine without it): its block unlinked, not left in /dev/shm
                raise
            self._runners.append(r)
        return r

    def report(self) -> dict[str, Any]:
        return {**self.counts, "pid": self.pid, "state": self.state,
                "placement": self.placement, "events": list(self.events)}

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            for r in self._runners:
                r.release()
            if self._control is not None:
                self._control.close()
            # the engines hold nothing worth flushing: end the process at once (a stopping
            # run must not wait on it)
            self._kill()
        shutil.rmtree(self._dir, ignore_errors=True)


RING_SLOTS = 2
"""Frame-set slots per engine: a virtual frame returned as a view of one slot stays valid
while the next frame set is written into the other."""


class HostedRunner:
    """A :class:`~acquire_vf.inference.Runner` whose network runs in the engine host.

    Whole frame sets cross in one call (:meth:`frame_slot`, :meth:`run_frame`): the engine
    normalises the frames straight into a slot of this engine's shared-memory ring, the host
    tiles, runs and stitches there, and the virtual frame comes back as a view of the slot: no
    pixel is copied or pickled on the way. Single batches (:meth:`run`: warm-up, the focus
    estimator's crops) cross through a second block the same way."""

    def __init__(self, host: EngineHost, spec: Load) -> None:
        self.host, self.spec = host, spec
        self.backend = self.device = self.precision = ""
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._shm: Any = None
        self._ring: Any = None
        self._slot_bytes = 0
        self._next = 0
        self._gen = -1
        self._warm: tuple[int, ...] | None = None
        self._shapes: set[tuple[Any, ...]] = set()
        """Batch shapes and frame geometries this engine has run (the hang deadline applies)."""
        self._warm_frame: RunFrame | None = None
        self._lent: np.ndarray | None = None
        self._slot: tuple[RunFrame, np.ndarray] | None = None
        self.host_ms = 0.0
        """The host's own time for the last frame set (tiling, network, stitching): the call
        took this plus the hand-off."""

    def attach(self) -> None:
        """Connect to the current host, map the block, load (and warm up) the engine."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = self.host.connect()
            if self._shm is None:
                t, b = self.spec.tile, self.spec.batch
                self._shm = create(2 * b * 4 * t * t * 4)
            h = self.host
            h.call(self._conn, Map(self._shm.name), LOAD_S)
            if self._ring is not None:
                h.call(self._conn, Map(self._ring.name, ring=True), LOAD_S)
            reply = h.call(self._conn, self.spec, LOAD_S)
            if not reply.get("ok"):
                from acquire_vf.inference import BackendUnavailable

                raise BackendUnavailable(reply.get("error", "the engine host could not load "
                                                   f"'{self.spec.path}'"))
            self.backend, self.device = reply["backend"], reply["device"]
            self.precision = reply["precision"]
            self._gen = h.generation
            if self._warm is not None:
                self._run(np.zeros(self._warm, np.float32), LOAD_S)
            if self._warm_frame is not None:
                self._call_frame(self._warm_frame, LOAD_S)

    def input_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A batch of ``shape`` in this engine's shared memory, to cut tiles straight into
        (``run_tiled`` does): :meth:`run` on it copies nothing, and returns the output as a
        view of the block, valid until the next call on this engine. One thread per engine
        (the pipeline's)."""
        with self._lock:
            n = int(np.prod(shape)) * 4
            need = aligned(n) + shape[0] * shape[-2] * shape[-1] * 4 * 4
            if need > self._shm.size:
                self.host.check(self._gen)
                self._grow(need)
            self._lent = view(self._shm, tuple(shape))
            return self._lent

    def frame_slot(self, shape: tuple[int, int, int], *, tile: int, overlap: int, batch: int,
                   multiple: int) -> np.ndarray:
        """The next ring slot's (C, H, W) float32 input, to write a normalised frame set into;
        :meth:`run_frame` on it runs the engine on the whole set in the host. One thread per
        engine (the pipeline's)."""
        from acquire_vf.inference import stitched_shape

        c, h, w = (int(n) for n in shape)
        out_h, out_w = stitched_shape((h, w), tile, overlap, multiple)
        out_at = aligned(c * h * w * 4)
        need = out_at + aligned(out_h * out_w * 4)
        with self._lock:
            self.host.check(self._gen)
            if need > self._slot_bytes:
                self._grow_ring(need)
            k = self._next
            self._next = (k + 1) % RING_SLOTS
            msg = RunFrame(k * self._slot_bytes, (c, h, w), k * self._slot_bytes + out_at,
                           out_h * out_w, (out_h, out_w), tile, overlap, batch, multiple)
            x = view(self._ring, (c, h, w), msg.at)
            self._slot = (msg, x)
            return x

    def run_frame(self, x: np.ndarray) -> np.ndarray:
        """The engine on the frame set in ``x`` (from :meth:`frame_slot`), tiled and stitched
        in the host: the (H, W) normalised output, a view of the slot valid until the ring
        comes round to it again."""
        with self._lock:
            self.host.check(self._gen)
            if self._slot is None or self._slot[1] is not x:
                raise RuntimeError("run_frame takes the array frame_slot lent")
            msg, _ = self._slot
            self._slot = None
            # a geometry not run before may load kernels, build a TensorRT plan or capture a
            # CUDA graph: it gets the load deadline, not the hang deadline (as run's shapes)
            key = msg.geometry
            y = self._call_frame(msg, self.host.deadline_s if key in self._shapes else LOAD_S)
            self._shapes.add(key)
            self._warm_frame = msg
            return y

    def _call_frame(self, msg: RunFrame, timeout: float) -> np.ndarray:
        assert self._conn is not None
        reply = self.host.call(self._conn, msg, timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"engine host: {reply.get('error')}")
        self.host_ms = float(reply["host_ms"])
        h, w = msg.shape[1:]
        rows, cols = msg.out_shape if reply["in_place"] else (h, w)
        return view(self._ring, (rows, cols), msg.out_at)[:h, :w]

    def _grow_ring(self, slot_bytes: int) -> None:
        old, self._ring = self._ring, create(RING_SLOTS * slot_bytes)
        self._slot_bytes, self._next = slot_bytes, 0
        assert self._conn is not None
        self.host.call(self._conn, Map(self._ring.name, ring=True), LOAD_S)
        release(old, unlink=True)

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self.host.check(self._gen)
            lent = self._lent is not None and x is self._lent
            self._lent = None
            seen = tuple(x.shape) in self._shapes  # a new shape gets the load deadline
            out = self._run(x if lent else np.ascontiguousarray(x, np.float32),
                            self.host.deadline_s if seen else LOAD_S, in_place=lent)
            self._shapes.add(tuple(x.shape))
            self._warm = tuple(x.shape)
            return out

    def _run(self, x: np.ndarray, timeout: float, in_place: bool = False) -> np.ndarray:
        assert self._conn is not None
        out_at = aligned(x.nbytes)
        need = out_at + x.shape[0] * x.shape[-2] * x.shape[-1] * 4 * 4
        for _ in range(2):
            if need > self._shm.size:
                self._grow(need)
                in_place = False
            if not in_place:
                view(self._shm, x.shape)[...] = x
            reply = self.host.call(self._conn, Run(x.shape, out_at), timeout)
            if reply.get("ok"):
                y = view(self._shm, tuple(reply["shape"]), out_at)
                return y if in_place else y.copy()
            if "grow" not in reply:
                raise RuntimeError(f"engine host: {reply.get('error')}")
            need = int(reply["grow"])
        raise RuntimeError("engine host: the output does not fit its buffer")

    def _grow(self, need: int) -> None:
        old, self._shm = self._shm, create(int(need * 1.25))
        assert self._conn is not None
        self.host.call(self._conn, Map(self._shm.name), LOAD_S)
        release(old, unlink=True)

    def release(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(Close())
                self._conn.close()
                self._conn = None
            release(self._shm, unlink=True)
            release(self._ring, unlink=True)
            self._shm = self._ring = None

    def close(self) -> None:
        """Engines close at the end of the run; the host releases everything then."""


def thread_times(pid: int) -> dict[str, tuple[int, int, str]]:
    """Per thread of ``pid``: nanoseconds on a core and runnable but waiting for one, over its
    life (Linux ``/proc/PID/task/TID/schedstat``), and its state now (``R``: running or
    runnable); empty where that is not available."""
    out: dict[str, tuple[int, int, str]] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                ran, waited = f.read().split()[:2]
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            out[tid] = (int(ran), int(waited), state)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _probe_note(before: dict[str, tuple[int, int, str]],
                after: dict[str, tuple[int, int, str]], window_s: float) -> str:
    """What the threads did in the ``window_s`` after the deadline, for the hang's message
    (the most any one thread ran, and the most any one waited for a core)."""
    ran = [after[t][0] - before[t][0] for t in before if t in after]
    waited = [after[t][1] - before[t][1] for t in before if t in after]
    if not ran:
        return "; its threads could not be read"
    return (f"; in the {window_s:.2f} s after the deadline its {len(ran)} threads ran at most "
            f"{max(ran) / 1e9:.3f} s and waited for a core at most {max(waited) / 1e9:.3f} s")


def starving(before: dict[str, tuple[int, int, str]], after: dict[str, tuple[int, int, str]],
             window_s: float) -> bool:
    """Whether a thread, between two :func:`thread_times`, waited for a core longer than it
    ran (and a tenth of the window at least), or is runnable now and ran less than a tenth of
    the window: the kernel adds a thread's wait to its count only when it gets a core, so a
    thread starved through the whole window shows no wait yet (measured: six threads with no
    run and no wait in the 0.25 s after a deadline, on a host starved by busy loops and other
    work, judged a hang and killed). A stopped, deadlocked or sleeping host is not runnable; a
    host spinning with a core to itself runs."""
    tenth = window_s * 0.1e9
    for tid, (ran0, waited0, _) in before.items():
        if tid in after:
            ran1, waited1, state = after[tid]
            if waited1 - waited0 >= max(ran1 - ran0, tenth):
                return True
            if state == "R" and ran1 - ran0 < tenth:
                return True
    return False
