"""The run's states, the moves allowed between them, and the snapshot displays read."""

from __future__ import annotations

import enum
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
