"""The run's fault policy (``[faults]``): a backend's batch executed so that a device fault
costs one event, never the run.

A transient fault (a time-out, a busy device, a frame lost in transfer or delivered wrong) is
retried after a back-off that doubles; an event that still fails is skipped, journaled as a
missing plane with its reason, and the run goes on with the next event. A channel failing
``persistent_after`` events in a row gets one try per event until one succeeds; after
``stop_after`` failed events in a row the run stops cleanly. Frames delivered twice are
dropped. Everything is counted for ``session.json``'s ``faults``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError
from acquire_vf._frames import off_target_um
from acquire_vf.backends import (
    AcquisitionBackend,
    AcquisitionStopped,
    BackendInfo,
    DeviceFault,
    RawImage,
    as_device_fault,
    event_channel,
    event_kind,
)
from acquire_vf.config import FaultPolicy

log = logging.getLogger(__name__)
MAX_LISTED = 1000
"""Skipped events listed one by one in ``session.json`` (all are counted)."""

Key = tuple[Any, ...]
FOCUSING = ("zscan", "sign_probe")
"""Event kinds that find focus: not data, not accounted frame by frame."""


def event_key(e: useq.MDAEvent) -> Key:
    """One event of the run, whatever object a backend hands back for it (the planes of a
    z-scan share their index and differ in ``z_pos``)."""
    return (tuple(sorted(e.index.items())), event_kind(e), event_channel(e), e.z_pos)


class FaultHandler:
    """Executes batches through a backend under ``policy``; ``skip(event, why)`` is told of
    every event given up, ``late(event)`` of one whose frame will come later than its turn
    (retried: not a gap in the sequence), ``wait(seconds)`` sleeps a back-off (``True``: the
    run is stopping)."""

    def __init__(self, policy: FaultPolicy, info: BackendInfo,
                 skip: Callable[[useq.MDAEvent, str], None],
                 wait: Callable[[float], bool],
                 late: Callable[[useq.MDAEvent], None] = lambda e: None) -> None:
        self.policy, self.info = policy, info
        self._skip, self._wait, self._late = skip, wait, late
        self._admitted: set[Key] = set()
        self._last_admitted: useq.MDAEvent | None = None
        self._tries: dict[Key, int] = {}
        self._streak: dict[str, int] = {}
        self.in_a_row = 0
        self.by_device: dict[str, dict[str, int]] = {}
        self.retries = 0
        self.recovered = 0
        self.duplicates = 0
        self.skipped: list[dict[str, Any]] = []
        self.skipped_count = 0
        self.persistent: dict[str, int] = {}
        """Channel -> times it was found failing persistently."""

    def gate(self, inner: Callable[[useq.MDAEvent], bool]) -> Callable[[useq.MDAEvent], bool]:
        """``inner`` (the run's gate), noting which events reached the hardware."""
        def gate(event: useq.MDAEvent) -> bool:
            ok = inner(event)
            if ok:
                self._admitted.add(event_key(event))
                self._last_admitted = event
            return ok
        return gate

    def degraded(self, channel: str) -> bool:
        return self._streak.get(channel, 0) >= self.policy.persistent_after

    def execute(self, backend: AcquisitionBackend, events: Sequence[useq.MDAEvent]
                ) -> Iterator[RawImage]:
        queue = list(events)
        while queue:
            self._admitted.clear()
            self._last_admitted = None
            order = {event_key(e): i for i, e in enumerate(queue)}
            told = 0  # events before this index are delivered or known late
            delivered: set[Key] = set()
            bad: dict[Key, DeviceFault] = {}
            raised: DeviceFault | None = None
            try:
                for img in backend.execute(queue):
                    k = event_key(img.event)
                    if event_kind(img.event) in FOCUSING:  # not data: the focus controller
                        problem = self._bad_frame(img)    # works with the planes it gets
                        if problem:
                            self._count("Camera", "bad frame")
                        else:
                            self._succeeded(img.event)
                            yield img
                        continue
                    if k in delivered:
                        self.duplicates += 1
                        self._count("Camera", "duplicate")
                        continue
                    problem = self._bad_frame(img)
                    if problem:
                        bad[k] = DeviceFault(problem, kind="bad frame", transient=True,
                                             event=img.event)
                        continue
                    at = order.get(k, told)
                    for e in queue[told:at]:  # reached the hardware, no frame yet: lost or
                        ek = event_key(e)     # bad, retried after this batch (not a gap)
                        if ek in self._admitted or ek in bad:
                            self._late(e)
                    told = max(told, at + 1)
                    delivered.add(k)
                    self._succeeded(img.event)
                    yield self._placed(img)
            except AcquisitionStopped:
                raise  # not one event's fault: the run stops
            except AcquisitionError as e:
                failed = e.event if isinstance(e, DeviceFault) and e.event is not None \
                    else self._undelivered_last(delivered)
                raised = as_device_fault(e, failed)
            queue = self._after(queue, delivered, bad, raised)

    def _undelivered_last(self, delivered: set[Key]) -> useq.MDAEvent | None:
        e = self._last_admitted
        return e if e is not None and event_key(e) not in delivered else None

    def _after(self, queue: list[useq.MDAEvent], delivered: set[Key],
               bad: dict[Key, DeviceFault], raised: DeviceFault | None) -> list[useq.MDAEvent]:
        """What is left to execute after one pass over ``queue``: failed events to retry and
        events never tried (those after a raised fault), in plan order."""
        keys = [event_key(e) for e in queue]
        stop_at = len(queue)
        if raised is not None and raised.event is not None and event_key(raised.event) in keys:
            stop_at = keys.index(event_key(raised.event))
        elif raised is not None:  # a fault of no known event: the first not delivered
            stop_at = next((i for i, k in enumerate(keys) if k not in delivered), len(queue))
        again: list[useq.MDAEvent] = []
        backoff = 0.0
        for i, (e, k) in enumerate(zip(queue, keys, strict=True)):
            if k in delivered or (event_kind(e) in FOCUSING and i != stop_at):
                continue  # (a backend may hand a z-scan's planes back as one event)
            if i > stop_at:
                again.append(e)  # never tried
                continue
            if i == stop_at and raised is not None:
                fault = raised
            elif k in bad:
                fault = bad[k]
            elif k in self._admitted:
                fault = DeviceFault("the frame never arrived (lost in transfer)",
                                    kind="missing", transient=True, event=e)
            else:
                continue  # dropped by the gate (a fallback whose engine works)
            retry = self._failed(e, k, fault)
            if retry is not None:
                backoff = max(backoff, retry)
                again.append(e)
        if backoff and again and self._wait(backoff):
            return []
        return again

    def _failed(self, e: useq.MDAEvent, k: Key, fault: DeviceFault) -> float | None:
        """Count a failure of ``e``; the back-off before retrying it, or ``None`` (given up)."""
        self._count(fault.device, fault.kind)
        n = self._tries[k] = self._tries.get(k, 0) + 1
        channel = event_channel(e)
        if fault.transient and n <= self.policy.retries and not self.degraded(channel):
            self.retries += 1
            return self.policy.backoff_s * 2 ** (n - 1)
        self._tries.pop(k, None)
        why = f"{fault.device} {fault.kind}: {fault}" + (
            f" (after {n - 1} retries)" if n > 1 else "")
        self.skipped_count += 1
        if len(self.skipped) < MAX_LISTED:
            t, p = int(e.index.get("t", 0)), int(e.index.get("p", 0))
            self.skipped.append({"t": t, "p": p, "channel": channel, "kind": event_kind(e),
                                 "why": why})
        self._skip(e, why)
        self._streak[channel] = self._streak.get(channel, 0) + 1
        if self._streak[channel] == self.policy.persistent_after:
            self.persistent[channel] = self.persistent.get(channel, 0) + 1
            log.warning("%s failed %d events in a row: one try per event from now on, until "
                        "one succeeds", channel, self.policy.persistent_after)
        self.in_a_row += 1
        if self.policy.stop_after is not None and self.in_a_row >= self.policy.stop_after:
            raise AcquisitionError(f"stopped: {self.in_a_row} events failed in a row "
                                   f"([faults] stop_after); the last: {why}")
        return None

    def _succeeded(self, e: useq.MDAEvent) -> None:
        k = event_key(e)
        if self._tries.pop(k, 0):
            self.recovered += 1
        self._streak[event_channel(e)] = 0
        self.in_a_row = 0

    def _count(self, device: str, kind: str) -> None:
        d = self.by_device.setdefault(device, {})
        d[kind] = d.get(kind, 0) + 1

    def _placed(self, img: RawImage) -> RawImage:
        """``img``, marked when the stage, read back, stood away from its event's position
        (a move that failed without an error, or a stage knocked): the frame is data, kept,
        and says where it was taken."""
        off = off_target_um(img.metadata)
        if off is None or off <= self.policy.position_tolerance_um:
            return img
        self._count("Stage", "off target")
        log.warning("frame %s taken %.2f um from its intended position (stage read back)",
                    event_key(img.event), off)
        return RawImage(img.event, img.pixels, {**img.metadata, "StageOffTarget_um": off})

    def _bad_frame(self, img: RawImage) -> str | None:
        """Why a delivered frame cannot be data (wrong shape, dtype, non-finite values)."""
        px = np.asarray(img.pixels)
        if px.shape[-2:] != tuple(self.info.shape):
            return f"frame of shape {px.shape}, expected {tuple(self.info.shape)}"
        if px.dtype.kind == "f" and not np.isfinite(px).all():
            return "frame with non-finite values (NaN or inf)"
        if px.dtype != np.dtype(self.info.dtype):
            return f"frame of type {px.dtype}, expected {self.info.dtype}"
        return None

    def report(self) -> dict[str, Any]:
        """``session.json``'s ``faults``."""
        return {"by_device": self.by_device, "retries": self.retries,
                "recovered_by_retry": self.recovered, "duplicates_dropped": self.duplicates,
                "events_skipped": self.skipped_count, "skipped": self.skipped,
                "persistent": self.persistent,
                "policy": self.policy.model_dump()}


def cancellable_wait(stopping: Any) -> Callable[[float], bool]:
    """A back-off that ends early when the run stops (``stopping``: a ``threading.Event``)."""
    def wait(seconds: float) -> bool:
        stopping.wait(seconds)
        return bool(stopping.is_set())
    return wait
