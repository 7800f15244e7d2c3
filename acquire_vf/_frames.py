"""Frames and their identity, shared by acquisition, pipeline, storage and display."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np


def metadata_number(v: Any, kind: type[float] | type[int] = float) -> Any:
    """A Micro-Manager metadata value as a number, or ``None`` when absent or not numeric."""
    try:
        return None if v is None else kind(v)
    except (TypeError, ValueError):
        return None


def stage_positions(md: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """A frame's stage positions from its metadata: (read back, intended), by axis (X, Y, Z),
    each only where the metadata has it."""
    back: dict[str, float] = {}
    meant: dict[str, float] = {}
    for axis in "XYZ":
        if (v := metadata_number(md.get(f"{axis}Position_um"))) is not None:
            back[axis] = v
        if (v := metadata_number(md.get(f"{axis}Position_um_Intended"))) is not None:
            meant[axis] = v
    return back, meant


def off_target_um(md: Mapping[str, Any]) -> float | None:
    """How far (µm) the stage, read back, was from the frame's intended position (over the
    axes that have both); ``None`` where nothing was read back."""
    back, meant = stage_positions(md)
    both = back.keys() & meant.keys()
    if not both:
        return None
    return float(sum((back[a] - meant[a]) ** 2 for a in both) ** 0.5)


VIRTUAL_PREFIX = "virtual:"
"""Prefix of a virtual channel's name in files and on screen, so it is never taken for data."""


class QcFlag(StrEnum):
    """Every QC flag a frame can raise (``frame.qc[flag] is True``), declared once:
    the run's tallies, the live window, napari and the verifier all read them from here."""

    NAN_OR_INF = "nan_or_inf"
    """The engine's output has non-finite pixels."""
    INPUT_OUT_OF_RANGE = "input_out_of_range"
    SATURATED = "saturated"
    INPUT_DIM = "input_dim"
    INPUT_FOCUS_OUTSIDE = "input_focus_outside"
    INPUT_HISTOGRAM_FAR = "input_histogram_far"
    UNCERTAINTY_HIGH = "uncertainty_high"
    INCONSISTENT_WITH_INPUT = "inconsistent_with_input"
    """A refocused frame the forward-consistency check (or the refocus gate) rejected."""
    STAGE_OFF_TARGET = "stage_off_target"
    """A camera frame taken away from its event's position (the stage's read-back position
    is farther from it than ``[faults] position_tolerance_um``)."""


SUSPECT_FLAGS = frozenset({QcFlag.UNCERTAINTY_HIGH, QcFlag.INPUT_DIM, QcFlag.INPUT_FOCUS_OUTSIDE,
                           QcFlag.INPUT_HISTOGRAM_FAR, QcFlag.INPUT_OUT_OF_RANGE,
                           QcFlag.SATURATED})
"""The flags that make a trusted virtual channel suspect (exposed at the next time point)."""


def raised_flags(qc: Mapping[str, Any] | None) -> list[QcFlag]:
    """The QC flags ``qc`` raises, in declaration order."""
    qc = qc or {}
    return [f for f in QcFlag if qc.get(f.value) is True]


@dataclass(frozen=True, order=True)
class FrameId:
    """Where a frame sits in the acquisition: time point, position, z index, channel name."""

    t: int
    p: int
    z: int
    c: str

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "p": self.p, "z": self.z, "c": self.c}


@dataclass(frozen=True)
class Frame:
    """One image with its identity and acquisition facts.

    ``pixels`` is owned by the frame (copied out of Micro-Manager's buffer) and never mutated.
    """

    id: FrameId
    pixels: np.ndarray
    seq: int
    """Arrival order in the run (0, 1, 2, ...): gaps in it mean lost frames."""
    elapsed_ms: float
    """Milliseconds since the start of the acquisition (Micro-Manager's ElapsedTime-ms)."""
    z_um: float | None = None
    x_um: float | None = None
    y_um: float | None = None
    exposure_ms: float | None = None
    role: Literal["physical", "virtual"] = "physical"
    qc: dict[str, Any] = field(default_factory=dict)
    """Quality flags of a virtual frame (empty for physical frames)."""
    received: float = 0.0
    """``time.perf_counter()`` when the frame reached acquire-vf (for latency accounting)."""

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


@dataclass(frozen=True)
class ChannelInfo:
    """A channel of a dataset: physical, or virtual with its provenance."""

    name: str
    role: Literal["physical", "virtual"] = "physical"
    engine: str | None = None
    sha256: str | None = None
    backend: str | None = None
    precision: str | None = None
    inputs: tuple[str, ...] = ()

    @property
    def stored_name(self) -> str:
        """The name written into files: virtual channels carry :data:`VIRTUAL_PREFIX`."""
        return VIRTUAL_PREFIX + self.name if self.role == "virtual" else self.name

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "role": self.role}
        if self.role == "virtual":
            d.update(engine=self.engine, sha256=self.sha256, backend=self.backend,
                     precision=self.precision, inputs=list(self.inputs))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChannelInfo:
        return cls(name=d["name"], role=d.get("role", "physical"), engine=d.get("engine"),
                   sha256=d.get("sha256"), backend=d.get("backend"),
                   precision=d.get("precision"), inputs=tuple(d.get("inputs", ())))
