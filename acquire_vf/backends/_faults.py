"""Device faults at the backend seam: the error a backend raises when the hardware fails one
event, and a wrapper that injects such faults into any backend (``[debug] faults``).

Micro-Manager reports a camera time-out, a busy device or a failed property or stage call as
an exception from the core; a frame can also come back with the wrong shape, be lost in
transfer or be delivered twice. :class:`FaultInjector` makes each of these happen on the
events its rules match, around the memory and pycromanager backends alike, so the run's
fault policy (:mod:`acquire_vf.acquisition._faults`) is tested against what a rig does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError
from acquire_vf.backends._protocol import (
    AcquisitionBackend,
    BackendWrapper,
    Gate,
    RawImage,
    event_channel,
    event_kind,
)

TRANSIENT_WORDS = ("time-out", "timeout", "timed out", "busy", "not ready", "retry")
"""Words of a backend error that mark it transient when it does not say (Micro-Manager's own
messages: "Camera timed out", "Device busy")."""


class AcquisitionStopped(AcquisitionError):
    """The acquisition as a whole cannot go on (Micro-Manager's circular buffer overflowed, the
    frame hand-off broke): not one event's fault, so never retried; the run stops."""


class DeviceFault(AcquisitionError):
    """The hardware failed one event. ``transient``: a retry may cure it (a time-out, a busy
    device); ``device``: which (``Camera``, ``Stage``, ...); ``event``: the event, if known."""

    def __init__(self, message: str, *, device: str = "Camera", kind: str = "error",
                 transient: bool = False, event: useq.MDAEvent | None = None) -> None:
        super().__init__(message)
        self.device, self.kind, self.transient, self.event = device, kind, transient, event


def as_device_fault(e: AcquisitionError, event: useq.MDAEvent | None) -> DeviceFault:
    """A backend's error as a device fault of ``event`` (its words say whether transient)."""
    if isinstance(e, DeviceFault):
        if e.event is None:
            e.event = event
        return e
    text = str(e).lower()
    transient = any(w in text for w in TRANSIENT_WORDS)
    device = "Stage" if "stage" in text else "Camera"
    return DeviceFault(str(e), device=device, kind="timeout" if transient else "error",
                       transient=transient, event=event)


_RAISES = {"timeout": ("Camera", True, "camera timed out waiting for the image"),
           "busy": ("Shutter", True, "device busy"),
           "error": ("Camera", False, "property error: the camera refused a setting"),
           "stage": ("Stage", False, "stage move failed")}


class FaultInjector(BackendWrapper):
    """``backend`` with ``rules`` (:class:`~acquire_vf.config.InjectedFault`) applied to the
    events it executes; everything else passes through unchanged."""

    def __init__(self, backend: AcquisitionBackend, rules: Sequence[Any]) -> None:
        super().__init__(backend)
        self.rules = tuple(rules)
        self._seen = [0] * len(self.rules)
        """Matching events each rule has seen (for ``every``)."""
        self._streak: dict[tuple[int, Any], int] = {}
        """(rule, event key) -> times that event has failed in a row (for ``times``)."""
        self.injected: dict[str, int] = {}
        self._gate: Gate = lambda e: True

    def setup(self, gate: Gate) -> None:
        self._gate = gate
        self.inner.setup(gate)

    def _fault(self, event: useq.MDAEvent) -> str | None:
        """The fault ``event`` meets on this try, if any."""
        if event_kind(event) == "optional" and not self._gate(event):
            return None  # an exposure the run does not want never reaches the hardware
        t = int(event.index.get("t", 0))
        key = tuple(sorted(event.index.items()))
        for i, r in enumerate(self.rules):
            if r.channel is not None and event_channel(event) != r.channel:
                continue
            if t < r.from_t or (r.until_t is not None and t > r.until_t):
                continue
            streak = self._streak.get((i, key))
            if streak is None:  # a first try: does this rule pick the event?
                self._seen[i] += 1
                if (self._seen[i] - 1) % r.every:
                    continue
                streak = 0
            if r.times and streak >= r.times:  # it has failed its share: it succeeds now
                continue
            self._streak[(i, key)] = streak + 1
            self.injected[r.kind] = self.injected.get(r.kind, 0) + 1
            return str(r.kind)
        return None

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        """The inner backend's frames, with faults: an error raised where the failing event's
        frame would come (the events before it delivered), a bad frame in its place, the
        frame twice, or no frame."""
        faults: dict[int, str | None] = {}
        sent: list[useq.MDAEvent] = []
        stuck: dict[int, useq.MDAEvent] = {}
        for k, e in enumerate(events):  # up to the first error: the rest are not tried
            kind = faults[id(e)] = self._fault(e)
            if kind in _RAISES:
                if k:
                    yield from self._frames(self.inner.execute(sent), faults, stuck)
                device, transient, words = _RAISES[kind]
                raise DeviceFault(f"{device}: {words} (injected)", device=device, kind=kind,
                                  transient=transient, event=e)
            if kind == "stuck":  # the hardware is asked for no move: the stage stays
                e = e.model_copy(update={"x_pos": None, "y_pos": None, "z_pos": None})
                stuck[id(e)] = events[k]
                faults[id(e)] = kind
            sent.append(e)
        yield from self._frames(self.inner.execute(sent), faults, stuck)

    def _frames(self, images: Iterator[RawImage], faults: dict[int, str | None],
                stuck: dict[int, useq.MDAEvent]) -> Iterator[RawImage]:
        for img in images:
            kind = faults.get(id(img.event))
            if kind == "missing":
                continue
            if kind == "stuck":  # the frame says where it was meant to be, as a rig's would
                e = stuck[id(img.event)]
                md = dict(img.metadata)
                for axis, pos in (("X", e.x_pos), ("Y", e.y_pos), ("Z", e.z_pos)):
                    if pos is not None:
                        md[f"{axis}Position_um_Intended"] = pos
                img = RawImage(e, img.pixels, md)
            if kind == "shape":
                img = RawImage(img.event, np.asarray(img.pixels)[:-1, :], img.metadata)
            elif kind == "nan":
                img = RawImage(img.event, np.full(np.shape(img.pixels), np.nan, np.float32),
                               img.metadata)
            yield img
            if kind == "duplicate":
                yield img
