"""The run's states, the moves allowed between them, the snapshot displays read, and the
flags the run's threads share."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


ALLOWED: dict[RunState, set[RunState]] = {
    RunState.IDLE: {RunState.RUNNING, RunState.FAILED},
    RunState.RUNNING: {RunState.PAUSED, RunState.CANCELLING, RunState.FINISHED, RunState.FAILED},
    RunState.PAUSED: {RunState.RUNNING, RunState.CANCELLING, RunState.FAILED},
    RunState.CANCELLING: {RunState.CANCELLED, RunState.FAILED},
    RunState.FINISHED: set(),
    RunState.CANCELLED: set(),
    RunState.FAILED: set(),
}
"""Every legal transition; anything else is a bug and raises."""


@dataclass(frozen=True)
class RunStatus:
    """A consistent snapshot for displays and status bars."""

    state: RunState
    frames_acquired: int
    frames_expected: int
    virtual_frames: int
    virtual_skipped: int
    raw_backlog_mb: float
    pipeline_depth: int
    fps: float


class RunControl:
    """The run's state and the flags its threads share: pause, cancel, a forced stop, the
    first fatal error, and when it started and ended. Transitions are checked against
    :data:`ALLOWED`; ``on_change`` hears each one."""

    def __init__(self, on_change: Callable[[RunState], None]) -> None:
        self.state = RunState.IDLE
        self.lock = threading.Lock()
        self.unpaused = threading.Event()
        self.unpaused.set()
        self.cancel = threading.Event()
        self.forced = False
        self.fatal: Exception | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._on_change = on_change

    def move(self, new: RunState) -> None:
        with self.lock:
            if new == self.state:
                return
            if new not in ALLOWED[self.state]:
                raise RuntimeError(f"run cannot go from {self.state.value} to {new.value}")
            self.state = new
        self._on_change(new)

    def fail_first(self, e: Exception) -> bool:
        """Record ``e`` as the run's fatal error unless one is already recorded (the first
        wins); whether it was recorded."""
        with self.lock:
            if self.fatal is not None:
                return False
            self.fatal = e
            return True

    @property
    def stopping(self) -> bool:
        return self.cancel.is_set() or self.fatal is not None
