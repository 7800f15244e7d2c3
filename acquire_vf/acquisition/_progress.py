"""What a headless run says while it runs: a progress line, and a line when something changes.

On a terminal, one line redrawn twice a second (rich): time point of N, elapsed and time left
at the rate so far, frame rate, virtual frames made and skipped, each virtual channel's trust
state, the focus state. Above it, one line per change: a virtual channel switched to physical
exposure and back, a z-scan, an error, a pause. Where the output is not a terminal (a log file,
a pipe, a job scheduler) nothing is redrawn: the same line is written once a minute, and the
change lines as they happen, so a twelve-hour run leaves a readable log.

Everything here reads the run's counters and listens to its signals; nothing waits on the run
or slows it (the listeners only store a number or queue a line).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import deque
from typing import Any, TextIO

from acquire_vf.acquisition._payloads import FocusEstimate, FocusEvent, FocusZScan, SignCheck
from acquire_vf.acquisition._state import RunState

TTY_REFRESH_S = 0.5
LOG_EVERY_S = 60.0


def _clock(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class RunProgress:
    """Progress of ``run`` on ``stream`` (stderr by default), from :meth:`start` to
    :meth:`stop`. ``tty`` overrides the terminal check; ``log_every_s`` is the plain line's
    interval where the output is not a terminal."""

    def __init__(self, run: Any, *, stream: TextIO | None = None, tty: bool | None = None,
                 log_every_s: float = LOG_EVERY_S) -> None:
        self.run = run
        # the process's own stderr: the session routes sys.stderr to the log while
        # Micro-Manager runs (its threads print tracebacks there)
        self.stream = stream or sys.__stderr__ or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.log_every_s = log_every_s
        self.time_points = run.plan.time_points
        self._t = -1
        self._focus = ""
        self._changes: deque[str] = deque(maxlen=100)
        self._trust: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines_written = 0
        sig = run.signals
        sig.frameReady.connect(self._on_frame)
        sig.focus.connect(self._on_focus)
        sig.error.connect(lambda msg: self._changes.append(f"error: {msg}"))
        sig.stateChanged.connect(self._on_state)

    # ----- listeners (acquisition and pipeline threads: store, never wait) ------------------
    def _on_frame(self, frame: Any) -> None:
        self._t = max(self._t, int(frame.id.t))

    def _on_focus(self, ev: FocusEvent) -> None:
        if isinstance(ev, FocusEstimate) and ev.defocus_um is not None:
            self._focus = f"focus {ev.defocus_um:+.2f} um"
        elif isinstance(ev, FocusZScan):
            self._focus = "z-scan"
            self._changes.append(f"z-scan at time point {ev.t}, position {ev.p}"
                                 + (f": {ev.why}" if ev.why else ""))
        elif isinstance(ev, SignCheck) and not ev.agrees and ev.confident:
            self._changes.append(ev.verdict)

    def _on_state(self, state: Any) -> None:
        if state in (RunState.PAUSED, RunState.CANCELLING) or (
                state == RunState.RUNNING and self._t >= 0):
            self._changes.append(f"run {state.value}")

    # ----- the line --------------------------------------------------------------------
    def _trust_changes(self) -> None:
        verifier = self.run.verifier
        if verifier is None:
            return
        for c in verifier.channels:
            state = verifier.state(c)
            before = self._trust.get(c)
            if before is not None and state != before:
                what = ("exposing it physically" if state == "physical" else
                        "virtual again" if state == "trusted" else state)
                self._changes.append(f"{c}: {before} -> {state} ({what})")
            self._trust[c] = state

    def line(self) -> str:
        """The progress line as it stands now."""
        run = self.run
        started = run.started_at
        elapsed = time.time() - started if started is not None else 0.0
        done = self._t + 1
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        left = (self.time_points - done) / rate if rate > 0 else None
        st = run.status()
        parts = [f"time point {max(done, 0)} of {self.time_points}",
                 f"elapsed {_clock(elapsed)}",
                 f"left {_clock(left)}" if left is not None else "left -",
                 f"{st.fps:.1f} frames/s",
                 f"virtual {st.virtual_frames} made, {st.virtual_skipped} skipped"]
        if self._trust:
            parts.append(" ".join(f"{c} {s}" for c, s in self._trust.items()))
        if self._focus:
            parts.append(self._focus)
        return " | ".join(parts)

    # ----- output ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="acquire-vf progress",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write the last changes and the final line; return once the thread has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        self.lines_written += 1

    def _flush_changes(self, clear: bool) -> None:
        while self._changes:
            msg = self._changes.popleft()
            self._write(("\r\x1b[2K" if clear else "") + time.strftime("%H:%M:%S ") + msg + "\n")

    def _loop(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(TTY_REFRESH_S if self.tty else min(1.0, self.log_every_s)):
            self._trust_changes()
            self._flush_changes(clear=self.tty)
            if self.tty:  # one screen line: cut to the terminal's width, never wrapped
                width = shutil.get_terminal_size((120, 24)).columns - 1
                self._write("\r\x1b[2K" + self.line()[:width])
            elif time.monotonic() - last_log >= self.log_every_s:
                last_log = time.monotonic()
                self._write(time.strftime("%H:%M:%S ") + self.line() + "\n")
        self._trust_changes()
        self._flush_changes(clear=self.tty)
        self._write(("\r\x1b[2K" if self.tty else time.strftime("%H:%M:%S "))
                    + self.line() + "\n")
