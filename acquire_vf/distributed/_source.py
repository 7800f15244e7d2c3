"""What ``predict`` reads, as frame sets: a saved acquire-vf run (OME-TIFF or OME-Zarr), an
NGFF image or HCS plate (:mod:`._ngff`), or a folder of TIFFs with a folder per channel
(``ROOT/CHANNEL/FIELD.tif``, the paired layout training reads)."""

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


class TiffFolderSource:
    """``ROOT/CHANNEL/FIELD.tif``: each field found in every channel folder is a position
    (one time point, one plane)."""

    def __init__(self, path: Path) -> None:
        import tifffile

        from acquire_vf._frames import ChannelInfo
        from acquire_vf.layouts import scan_paired
        from acquire_vf.storage import DatasetLayout

        self.path = path
        self._channels = sorted(d.name for d in path.iterdir()
                                if d.is_dir() and any(d.glob("*.tif")))
        self._fields = scan_paired(path, self._channels)
        if not self._fields:
            raise DataError(f"'{path}': expected FIELD.tif files present in every channel "
                            f"folder {self._channels}, found none in all of them")
        first = tifffile.imread(next(iter(self._fields[0].values())).path)
        self.layout = DatasetLayout(
            channels=tuple(ChannelInfo(c) for c in self._channels), shape=first.shape[-2:],
            dtype=str(first.dtype), positions=tuple(
                {"name": next(iter(f.values())).path.stem, "x_um": None, "y_um": None}
                for f in self._fields))

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def keys(self) -> list[SetKey]:
        return [(0, p, 0) for p in range(len(self._fields))]

    def frame_set(self, key: SetKey) -> dict[str, tuple[np.ndarray, float | None]]:
        import tifffile

        out: dict[str, tuple[np.ndarray, float | None]] = {}
        for c, ref in self._fields[key[1]].items():
            try:
                px = np.asarray(tifffile.imread(ref.path))
            except Exception as e:  # noqa: BLE001 - a corrupt file: named, one line
                raise DataError(f"'{ref.path}' cannot be read: {type(e).__name__}: {e}") from e
            if px.shape != tuple(self.layout.shape):
                raise DataError(f"'{ref.path}': expected {tuple(self.layout.shape)} pixels "
                                f"like the other fields, got {px.shape}")
            out[c] = (px, None)
        return out


def open_source(path: Path) -> Any:
    """The input at ``path``: an NGFF image or plate, a folder of TIFFs with a folder per
    channel, else an acquire-vf run."""
    from acquire_vf.distributed._ngff import NgffSource, is_ngff

    if is_ngff(path):
        return NgffSource(path)
    if path.is_dir() and not path.name.endswith(".zarr") and not any(
            path.glob("*.journal")) and any(path.glob("*/*.tif")):
        return TiffFolderSource(path)
    return DatasetSource(path)
