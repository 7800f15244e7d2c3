"""``[faults]``: what a run does when the hardware fails, and ``[debug]``: faults injected at
the backend seam (tests, demos of the policy)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from acquire_vf.config._base import _Model

FaultKind = Literal["timeout", "busy", "error", "stage", "stuck", "shape", "nan", "duplicate",
                    "missing"]
"""What an injected fault does: ``timeout`` (the camera timed out) and ``busy`` (a device
reported busy) raise a transient device error; ``error`` (a property error) and ``stage`` (a
stage move failed) a persistent one; ``stuck``: the stage silently stays where it was (the
frame is taken at the wrong place, which only its read-back position shows); ``shape`` and
``nan`` deliver a frame of the wrong shape or full of NaN; ``duplicate`` delivers the frame
twice; ``missing`` never delivers it."""


class FaultPolicy(_Model):
    """How a run meets device faults (``docs/reliability.md``). A transient fault (a time-out,
    a busy device, a bad or lost frame) is retried; an event that still fails is skipped and
    journaled as a missing plane with the reason, and the run goes on."""

    retries: int = Field(3, ge=0, le=20)
    """Tries after the first, for a transient fault, each after a back-off."""
    backoff_s: float = Field(0.05, ge=0, le=10)
    """Wait before the first retry; doubled for each further one."""
    persistent_after: int = Field(5, ge=1)
    """A channel whose events failed this many times in a row is failing persistently: its
    events get one try each, no retries, until one succeeds (a device that comes back is
    picked up at once, and a dead one costs no back-off)."""
    position_tolerance_um: float = Field(1.0, gt=0)
    """A frame whose stage position, read back, is farther than this from its event's is
    marked ``stage_off_target`` (its record keeps both) and counted under ``Stage``."""
    stop_after: int | None = Field(None, ge=1)
    """Stop the run cleanly (state ``failed``, everything acquired saved) after this many
    failed events in a row; none: go on whatever fails."""


class InjectedFault(_Model):
    """One fault rule: events that match it fail as ``kind`` says."""

    kind: FaultKind
    channel: str | None = None
    """Only events of this profile channel (any channel: none)."""
    from_t: int = Field(0, ge=0)
    """From this time point on."""
    until_t: int | None = Field(None, ge=0)
    """Up to this time point (inclusive; none: no end)."""
    times: int = Field(1, ge=0)
    """How many times in a row a matching event fails before it succeeds (0: every time):
    1 is a fault a retry cures, 0 a device that fails while the rule lasts."""
    every: int = Field(1, ge=1)
    """Only every this many matching events (1: each)."""

    @model_validator(mode="after")
    def _span(self) -> InjectedFault:
        if self.until_t is not None and self.until_t < self.from_t:
            raise ValueError(f"until_t {self.until_t} is before from_t {self.from_t}")
        return self


class Debug(_Model):
    faults: tuple[InjectedFault, ...] = ()
    """Faults injected between the run and its backend (memory and pycromanager alike)."""
