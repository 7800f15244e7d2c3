"""What the session asks of the engine host: one frozen message type per operation, pickled
over the connection. The host answers each with a dict (``ok``, and what the operation
returns, or ``error``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Ping:
    """Is the host alive (its pid)?"""

    op: ClassVar[str] = "ping"


@dataclass(frozen=True)
class Place:
    """Run on the cores the acquisition does not use, ``nice`` steps below it."""

    avoid: tuple[int, ...]
    nice: int
    op: ClassVar[str] = "place"


@dataclass(frozen=True)
class Map:
    """Attach the shared-memory block ``name``: the single-batch block, or the frame ring."""

    name: str
    ring: bool = False
    op: ClassVar[str] = "map"


@dataclass(frozen=True)
class Load:
    """Load the engine at ``path`` on the first backend ``compute`` allows (or ``backend``)."""

    path: str
    compute: dict[str, Any]
    backend: str | None
    tile: int
    batch: int
    op: ClassVar[str] = "load"


@dataclass(frozen=True)
class Run:
    """The network on the batch of ``shape`` in the block; its output at ``out_offset``."""

    shape: tuple[int, ...]
    out_offset: int
    op: ClassVar[str] = "run"


@dataclass(frozen=True)
class RunFrame:
    """A whole frame set in ring slot ``at`` (``shape``: C, H, W), tiled, run and stitched
    into the slot at ``out_at`` (``out_size`` floats, ``out_shape`` when stitched padded)."""

    at: int
    shape: tuple[int, int, int]
    out_at: int
    out_size: int
    out_shape: tuple[int, int]
    tile: int
    overlap: int
    batch: int
    multiple: int
    op: ClassVar[str] = "frame"

    @property
    def geometry(self) -> tuple[Any, ...]:
        """What decides whether the host has run this before (the hang deadline applies)."""
        return (self.shape, self.tile, self.overlap, self.batch, self.multiple)


@dataclass(frozen=True)
class Close:
    """This connection is done (its engine is released)."""

    op: ClassVar[str] = "close"


Message = Ping | Place | Map | Load | Run | RunFrame | Close
