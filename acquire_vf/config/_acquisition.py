"""``[acquisition]``: the protocol (time points, interval, positions)."""

from __future__ import annotations

from pydantic import Field

from acquire_vf.config._base import _Model


class XYPosition(_Model):
    name: str = ""
    x_um: float
    y_um: float


class Protocol(_Model):
    """The multi-dimensional acquisition: time points, positions, z offsets, channels."""

    time_points: int = Field(20, ge=1)
    interval_s: float = Field(0.0, ge=0)
    """Time between time-point starts; 0 runs as fast as the hardware allows."""
    z_offsets_um: tuple[float, ...] = Field((0.0,), min_length=1)
    """Offsets from the focus position at the start of the run."""
    positions: tuple[XYPosition, ...] = ()
    """Stage positions; empty acquires at the current position."""
