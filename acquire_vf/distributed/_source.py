"""What ``predict`` reads, as frame sets: a saved acquire-vf run (OME-TIFF or OME-Zarr), or an
NGFF image or HCS plate (:mod:`._ngff`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import DataError
from acquire_vf.distributed._work import SetKey


class DatasetSource:
    """The physical planes of a saved run, indexed by frame set ``(t, p, z)``."""

    def __init__(self, path: Path) -> None:
        from acquire_vf.storage import open_dataset

        self.path = path
        self.files = open_dataset(path, repair_if_needed=False)
        self.layout = self.files[0].layout
        self._index: dict[SetKey, dict[str, tuple[Any, dict[str, Any]]]] = {}
        for f in self.files:
            for r in f.records:
                if r.get("role", "physical") == "physical":
                    key = (int(r["t"]), int(r["p"]), int(r["z"]))
                    self._index.setdefault(key, {})[r["channel"]] = (f, r)

    @property
    def channels(self) -> list[str]:
        return [c.name for c in self.layout.channels if c.role == "physical"]

    def keys(self) -> list[SetKey]:
        return sorted(self._index)

    def frame_set(self, key: SetKey) -> dict[str, tuple[np.ndarray, float | None]]:
        """Each physical channel's pixels and z (µm) at ``key``; a plane that cannot be read
        is one line naming it."""
        out: dict[str, tuple[np.ndarray, float | None]] = {}
        for c, (f, r) in self._index.get(key, {}).items():
            try:
                px = np.asarray(f.read(r))
            except Exception as e:  # noqa: BLE001 - a corrupt chunk or page: named, one line
                raise DataError(f"{self.path.name}: {c} at t={key[0]}, p={key[1]}, z={key[2]} "
                                f"cannot be read: {type(e).__name__}: {e}") from e
            if px.shape != tuple(self.layout.shape):
                raise DataError(f"{self.path.name}: {c} at t={key[0]}, p={key[1]}, z={key[2]}: "
                                f"expected {tuple(self.layout.shape)} pixels, got {px.shape}")
            out[c] = (px, r.get("z_um"))
        return out


def open_source(path: Path) -> Any:
    """The input at ``path``: an NGFF image or plate, else an acquire-vf run."""
    from acquire_vf.distributed._ngff import NgffSource, is_ngff

    return NgffSource(path) if is_ngff(path) else DatasetSource(path)
