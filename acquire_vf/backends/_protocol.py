"""The contract between the hardware-agnostic run loop and whatever makes the frames.

The runner (:mod:`acquire_vf.acquisition`) knows this protocol and ``useq.MDAEvent``, nothing
of pycromanager. A backend is set up once, executes batches of events (a batch is a run of
events with no decision between them, so a backend may sequence them in hardware), may move
the focus stage between batches, can be aborted from any thread, and is torn down once.

Modelled on pymmcore-plus's ``mda/_protocol.py`` (setup / exec / teardown) with one change:
``execute`` takes a batch, because pycromanager merges events into hardware sequences only
within one submission, and the camera's full speed depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import useq

Gate = Callable[[useq.MDAEvent], bool]
"""Called just before an event reaches the hardware: ``False`` drops it (a fallback exposure
whose engine works). It may block (pause) and must return quickly otherwise."""


@dataclass(frozen=True)
class BackendInfo:
    """What a connected backend is and the frames it delivers, known before the first event."""

    name: str
    """``pycromanager``, ``memory`` or ``replay``."""
    mode: str
    """How it is reached: ``demo``, ``headless``, ``attach``, ``memory``, ``replay``."""
    source: str
    """Config file, ``localhost:PORT``, ``simulated specimen`` or the replayed dataset."""
    shape: tuple[int, int]
    dtype: str
    xy_um: tuple[float, float] | None = None
    """XY stage position at connection (``None`` without an XY stage)."""
    z_um: float | None = None
    """Focus stage position at connection (``None`` without a focus stage)."""


@dataclass(frozen=True)
class RawImage:
    """One frame as the backend delivered it, with Micro-Manager-style metadata.

    ``metadata`` keys the runner reads: ``ElapsedTime-ms`` or ``TimeReceivedByCore`` (timing),
    ``ImageNumber`` (the camera's counter, for gap checks), ``X/Y/ZPosition_um_Intended`` and
    ``Exposure``.
    """

    event: useq.MDAEvent
    pixels: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class AcquisitionBackend(Protocol):
    """Makes frames for events. Implementations: ``PycroManagerBackend``, ``MemoryBackend``,
    ``ReplayBackend``.

    Events carry the hardware's channel (``event.channel.group`` / ``.config`` = preset), the
    exposure and absolute stage positions; ``event.metadata["channel"]`` is the profile's
    channel name, which is what files and engines call it.
    """

    name: str

    def describe(self) -> BackendInfo:
        """Frame format and stage positions, before :meth:`setup`."""
        ...

    def setup(self, gate: Gate) -> None:
        """Prepare for a run (buffers, camera state); ``gate`` is consulted per event."""
        ...

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        """Run ``events`` in order, yielding each frame as it arrives; returns early (without
        error) after :meth:`abort`. Raises :class:`~acquire_vf._errors.AcquisitionError` on a
        hardware failure."""
        ...

    def move_z(self, dz_um: float) -> None:
        """Move the focus stage by ``dz_um`` between batches (closed-loop focus)."""
        ...

    def abort(self) -> None:
        """From any thread: end the batch in progress as soon as the hardware allows."""
        ...

    def teardown(self) -> None:
        """Leave the hardware as the run found it (stages, camera not streaming)."""
        ...


class BackendWrapper:
    """A backend around another (``inner``): everything but :meth:`execute` passes through.
    Fault injection and tests wrap backends this way."""

    def __init__(self, inner: AcquisitionBackend) -> None:
        self.inner = inner
        self.name = inner.name

    def describe(self) -> BackendInfo:
        return self.inner.describe()

    def setup(self, gate: Gate) -> None:
        self.inner.setup(gate)

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        return self.inner.execute(events)

    def move_z(self, dz_um: float) -> None:
        self.inner.move_z(dz_um)

    def abort(self) -> None:
        self.inner.abort()

    def teardown(self) -> None:
        self.inner.teardown()


def check_backend(obj: object) -> AcquisitionBackend:
    """Registration-time check, so a wrong plug-in fails before the run, not mid-run."""
    if not isinstance(obj, AcquisitionBackend):
        names = ("name", "describe", "setup", "execute", "move_z", "abort", "teardown")
        missing = [m for m in names if not hasattr(obj, m)]
        raise TypeError(f"{type(obj).__name__} is not an AcquisitionBackend: missing "
                        f"{', '.join(missing)}")
    return obj


EventKind = Literal["plan", "optional", "zscan", "sign_probe"]
"""What an event of a run is for: ``plan`` (the protocol's), ``optional`` (a virtual channel's
exposure, taken only when the run's gate admits it: sentinels, fallbacks), ``zscan`` and
``sign_probe`` (focus-finding exposures for the focus controller, not data)."""


class RunEvent(useq.MDAEvent):
    """An event of an acquire-vf run: what it is for and the profile's name of its channel,
    typed (as pymmcore-plus subclasses events for sequencing) instead of in ``metadata``."""

    kind: EventKind = "plan"
    channel_name: str = ""
    """The profile's channel name (files and engines use it; ``channel.config`` is the
    hardware's preset)."""

    @property
    def focusing(self) -> bool:
        """A z-scan or sign-probe exposure: for the focus controller, not saved as data."""
        return self.kind in ("zscan", "sign_probe")


def event_kind(event: useq.MDAEvent | None) -> EventKind:
    """``event``'s kind (an event made outside a run is a plan event)."""
    return event.kind if isinstance(event, RunEvent) else "plan"


def event_channel(event: useq.MDAEvent) -> str:
    """The profile's channel name of an event (what files and engines call it): a run's own
    name for it, else the hardware preset's."""
    if isinstance(event, RunEvent) and event.channel_name:
        return event.channel_name
    return event.channel.config if event.channel is not None else ""
