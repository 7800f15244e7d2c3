"""What the run will expose next: the plan's events, events inserted while it runs (z-scans,
sign probes, fallback exposures), focus moves and each position's focus offset.

The focus controller and the verifier talk to the run through :class:`ScheduleView` only
(insert events, shift a position's focus, read where it stands); the runner takes its batches
from :meth:`Schedule.batches`. Every method is safe from any thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import useq

from acquire_vf.acquisition._plan import RunPlan, frame_id
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.backends import RunEvent

MAX_BATCH = 256
"""Most events per batch: inserted events and focus moves wait at most this long."""


def _plane_tp(e: useq.MDAEvent) -> tuple[int, int]:
    return int(e.index.get("t", 0)), int(e.index.get("p", 0))


def is_zscan(event: useq.MDAEvent | None) -> bool:
    """A focus-finding exposure (a z-scan plane or the sign probe): for the focus controller,
    not data."""
    return isinstance(event, RunEvent) and event.focusing


class ScheduleView(Protocol):
    """What the focus controller may ask of the run's schedule."""

    def insert(self, events: Sequence[useq.MDAEvent]) -> None: ...

    def adjust_focus(self, p: int, dz_um: float) -> None: ...

    def focus_z(self, p: int) -> float | None: ...

    def last_t(self, p: int) -> int: ...

    @property
    def frames_seen(self) -> int: ...


class Schedule:
    """The plan's events and everything added to them while the run goes on.

    ``base_z_um``: the stage's z at the start (positions without a plan z focus there);
    ``closed_loop``: cut batches at every time point and position, so each sees the last
    focus correction."""

    def __init__(self, plan: RunPlan, base_z_um: float | None, *,
                 closed_loop: bool = False) -> None:
        self.plan = plan
        self.sequence = SequenceChecker(plan.expected(), optional=set(plan.optional),
                                        total=plan.frames_expected)
        self._base_z = base_z_um
        self._closed_loop = closed_loop
        self._lock = threading.Lock()
        self._inserted: deque[useq.MDAEvent] = deque()
        self._moves: deque[float] = deque()
        self._offset: dict[int, float] = {}
        self._last_t: dict[int, int] = {}
        self._seen = 0

    # ----- what the focus controller and the verifier ask -------------------------------
    def insert(self, events: Sequence[useq.MDAEvent]) -> None:
        """Run ``events`` before the next batch. Their frames are saved like any other and
        never counted missing, except z-scan exposures, which go to the focus controller."""
        with self._lock:
            for e in events:
                if not is_zscan(e):
                    self.sequence.allow(frame_id(e))
            self._inserted.extend(events)

    def adjust_focus(self, p: int, dz_um: float) -> None:
        """Shift position ``p``'s focus by ``dz_um`` from its next event on (closed loop)."""
        with self._lock:
            self._offset[p] = self._offset.get(p, 0.0) + dz_um

    def focus_z(self, p: int) -> float | None:
        """Where position ``p``'s focus stands now (its plan z, or the start z, plus the
        corrections so far)."""
        base = self.plan.position_z(p)
        base = base if base is not None else self._base_z
        if base is None:
            return None
        with self._lock:
            return base + self._offset.get(p, 0.0)

    def last_t(self, p: int) -> int:
        """The last time point acquired at position ``p`` (-1 before the first)."""
        return self._last_t.get(p, -1)

    @property
    def frames_seen(self) -> int:
        """Data frames acquired so far (z-scans not counted): the next frame's ``seq``."""
        return self._seen

    def move_z(self, dz_um: float) -> None:
        """Move the focus stage by ``dz_um`` before the next batch."""
        with self._lock:
            self._moves.append(dz_um)

    # ----- what the runner asks ---------------------------------------------------------
    def acquired(self, event: useq.MDAEvent | None, p: int, t: int) -> None:
        """A frame arrived (z-scan or data)."""
        if not is_zscan(event):
            self._seen += 1
            self._last_t[p] = max(self._last_t.get(p, -1), t)

    def batches(self, stopping: Callable[[], bool], move: Callable[[float], None],
                before: Callable[[useq.MDAEvent], None] | None = None,
                ) -> Iterator[list[useq.MDAEvent]]:
        """Events in order, cut where a time point is not yet due, where an event was
        inserted or a focus move asked for, and every :data:`MAX_BATCH` events; focus moves
        are made (``move``) before the batch after them. The runner applies the focus
        offsets (:meth:`focused`) as it executes a batch, after waiting for its start.
        ``before``: called with the next planned event before anything inserted is taken
        (the runner waits there for the focus controller's decision)."""
        queue = _Peek(iter(self.plan.events))  # made as they are reached, never all held
        while (queue or self._inserted) and not stopping():
            if before is not None and queue:
                before(queue.head)
            with self._lock:
                inserted = list(self._inserted)
                self._inserted.clear()
                moves = list(self._moves)
                self._moves.clear()
            for dz in moves:
                move(dz)
            if inserted:
                yield inserted
                continue
            batch = [queue.pop()]
            while queue and len(batch) < MAX_BATCH and not queue.head.min_start_time \
                    and not self._inserted and not self._moves \
                    and not (self._closed_loop and _plane_tp(queue.head) != _plane_tp(batch[0])):
                batch.append(queue.pop())
            yield batch

    def focused(self, batch: list[useq.MDAEvent]) -> list[useq.MDAEvent]:
        """The batch with each position's focus correction applied (z-scans are absolute)."""
        if not self._closed_loop:
            return batch
        with self._lock:
            offsets = dict(self._offset)
        out = []
        for e in batch:
            z = e.z_pos if e.z_pos is not None else self._base_z
            if is_zscan(e) or z is None:
                out.append(e)
                continue
            out.append(e.model_copy(update={"z_pos": z + offsets.get(int(e.index.get("p", 0)),
                                                                      0.0)}))
        return out


class _Peek:
    """An iterator whose next item can be looked at (``head``) before it is taken."""

    _END = object()

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it
        self._head: Any = next(it, self._END)

    def __bool__(self) -> bool:
        return self._head is not self._END

    @property
    def head(self) -> Any:
        return self._head

    def pop(self) -> Any:
        item, self._head = self._head, next(self._it, self._END)
        return item
