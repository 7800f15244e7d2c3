"""What a dataset holds, fixed before the first frame: the journal's header and the OME frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acquire_vf._frames import ChannelInfo

JOURNAL_VERSION = 1


@dataclass(frozen=True)
class DatasetLayout:
    """Channels, positions, z offsets, frame shape and dtype of one dataset file."""

    channels: tuple[ChannelInfo, ...]
    shape: tuple[int, int]
    dtype: str = "uint16"
    positions: tuple[dict[str, Any], ...] = ({"name": "Pos0", "x_um": None, "y_um": None},)
    z_offsets_um: tuple[float, ...] = (0.0,)
    pixel_size_um: float = 1.0
    bit_depth: int = 16
    profile: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def channel_index(self, name: str, role: str = "physical") -> int:
        """Index of a channel; a name can exist twice, measured and ``virtual:`` (a virtual
        channel whose engine failed and that was then exposed physically)."""
        for i, c in enumerate(self.channels):
            if c.name == name and c.role == role:
                return i
        raise KeyError(f"{role} channel '{name}' not in dataset "
                       f"(has {[c.stored_name for c in self.channels]})")

    def check_frame(self, pixels: np.ndarray, what: str) -> None:
        """Refuse a frame that does not fit: a wrong shape or dtype would break the series."""
        if pixels.shape != self.shape or pixels.dtype != np.dtype(self.dtype):
            raise ValueError(
                f"{what}: expected a {self.shape[1]} x {self.shape[0]} {self.dtype} frame, "
                f"got shape {pixels.shape} {pixels.dtype}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "header", "version": JOURNAL_VERSION, "shape": list(self.shape),
            "dtype": self.dtype, "channels": [c.as_dict() for c in self.channels],
            "positions": list(self.positions), "z_offsets_um": list(self.z_offsets_um),
            "pixel_size_um": self.pixel_size_um, "bit_depth": self.bit_depth,
            "profile": self.profile, "extra": self.extra,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetLayout:
        return cls(
            channels=tuple(ChannelInfo.from_dict(c) for c in d["channels"]),
            shape=(int(d["shape"][0]), int(d["shape"][1])), dtype=d["dtype"],
            positions=tuple(d["positions"]), z_offsets_um=tuple(d["z_offsets_um"]),
            pixel_size_um=float(d["pixel_size_um"]), bit_depth=int(d["bit_depth"]),
            profile=d.get("profile", ""), extra=d.get("extra", {}),
        )
