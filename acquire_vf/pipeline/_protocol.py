"""The contract between the run loop and its processing stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from acquire_vf._frames import ChannelInfo, Frame


@dataclass
class FrameSet:
    """All physical channels of one time point, position and z plane, as they arrived.

    Stages read ``frames`` (raw, or refocused by an earlier stage) and may record measurements
    in ``scores``; they never modify a frame's pixels in place (raw pixels are read-only).
    """

    t: int
    p: int
    z: int
    frames: dict[str, Frame]
    scores: dict[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Frame] = field(default_factory=dict)
    """The frames as acquired, kept when a stage replaces one in ``frames``."""
    keep: bool = False
    """Never dropped from the latest-frame slot (a sentinel pair needs its virtual frames)."""
    submitted: float = 0.0
    """When it reached the pipeline (``time.perf_counter``); set by ``Pipeline.submit``."""


@runtime_checkable
class Stage(Protocol):
    """One processing step of the live pipeline (refocus, synthesis, a measurement).

    ``process`` returns new frames by channel name: a virtual channel (``role="virtual"``), or a
    physical channel's replacement for later stages (refocused). It runs on the pipeline's
    thread, never on the acquisition thread; an exception skips only this stage's outputs for
    this frame set.
    """

    name: str

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        """Virtual channels this stage adds to the dataset (empty for measurements)."""
        ...

    def process(self, frames: FrameSet) -> dict[str, Frame]: ...

    def close(self) -> None: ...


def check_stage(obj: object) -> Stage:
    """Registration-time check, so a wrong plug-in fails before the run, not mid-run."""
    if not isinstance(obj, Stage):
        missing = [m for m in ("name", "outputs", "process", "close") if not hasattr(obj, m)]
        raise TypeError(f"{type(obj).__name__} is not a Stage: missing {', '.join(missing)}")
    return obj


@dataclass(frozen=True)
class StageFault:
    """A stage that raised on a frame set, as the pipeline reports it to the run."""

    stage: str
    channels: tuple[str, ...]
    """The virtual channels it did not make."""
    error: BaseException

    @property
    def transient(self) -> bool:
        """What runs the stage is restarting (:class:`~acquire_vf._errors.TransientFault`):
        the stage itself is not broken."""
        from acquire_vf._errors import TransientFault

        return isinstance(self.error, TransientFault)
