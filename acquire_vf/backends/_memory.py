"""The in-memory backend: the simulated specimen rendered at each event, no Micro-Manager.

A frame costs the specimen's render (milliseconds once a field is cached), so the run loop's
behaviour (states, gaps, grouping, fallback, cancel) is testable in well under a second per
run. Stages and the camera counter behave like the demo configuration's: the XY stage picks
the field, the focus stage defocuses it, the channel's preset picks the stain.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError
from acquire_vf.backends._protocol import BackendInfo, Gate, RawImage, event_channel

Render = Callable[[tuple[int, int], int, str, float, float, float, float], np.ndarray]
"""``(shape, t, channel, x, y, z, exposure_ms) -> frame``: the simulated specimen's ``render``."""


class MemoryBackend:
    """Frames rendered in this process by ``render`` at the event's stage position."""

    name = "memory"

    def __init__(self, render: Render, *, shape: tuple[int, int] = (512, 512),
                 dtype: str = "uint16", exposure_time: bool = False,
                 xy_um: tuple[float, float] = (0.0, 0.0), z_um: float = 0.0) -> None:
        self._render = render
        self._shape = shape
        self._dtype = dtype
        self._exposure_time = exposure_time
        self.xy_um = xy_um
        self.z_um = z_um
        self._start = (xy_um, z_um)
        self._gate: Gate = lambda e: True
        self._aborted = threading.Event()
        self._clock0 = 0.0
        self.image_number = 0
        self.fail_at: int | None = None
        """Raise a hardware error instead of delivering this image number (for tests)."""

    def describe(self) -> BackendInfo:
        return BackendInfo(name=self.name, mode="memory", source="simulated specimen",
                           shape=self._shape, dtype=self._dtype, xy_um=self.xy_um,
                           z_um=self.z_um)

    def setup(self, gate: Gate) -> None:
        self._gate = gate
        self._clock0 = time.perf_counter()

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        for event in events:
            if self._aborted.is_set():
                return
            if not self._gate(event):
                continue
            if self._aborted.is_set():  # aborted while the gate held (paused)
                return
            if event.x_pos is not None and event.y_pos is not None:
                self.xy_um = (event.x_pos, event.y_pos)
            if event.z_pos is not None:
                self.z_um = event.z_pos
            exposure = float(event.exposure if event.exposure is not None else 10.0)
            if self.fail_at is not None and self.image_number == self.fail_at:
                raise AcquisitionError(f"simulated hardware failure at image "
                                       f"{self.image_number}")
            if self._exposure_time:
                self._aborted.wait(exposure / 1e3)
            channel = event_channel(event)
            pixels = self._render(self._shape, int(event.index.get("t", 0)), channel,
                                  *self.xy_um, self.z_um, exposure)
            md = {"ElapsedTime-ms": (time.perf_counter() - self._clock0) * 1e3,
                  "ImageNumber": self.image_number, "Exposure": exposure,
                  "XPosition_um_Intended": _or(event.x_pos, self.xy_um[0]),
                  "YPosition_um_Intended": _or(event.y_pos, self.xy_um[1]),
                  "ZPosition_um_Intended": _or(event.z_pos, self.z_um),
                  # where the stages are, read back (as a real backend asks the core)
                  "XPosition_um": self.xy_um[0], "YPosition_um": self.xy_um[1],
                  "ZPosition_um": self.z_um}
            self.image_number += 1
            yield RawImage(event=event, pixels=pixels, metadata=md)

    def move_z(self, dz_um: float) -> None:
        self.z_um += dz_um

    def abort(self) -> None:
        self._aborted.set()

    def teardown(self) -> None:
        self.xy_um, self.z_um = self._start


def _or(value: float | None, default: float) -> float:
    return default if value is None else float(value)
