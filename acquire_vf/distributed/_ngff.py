"""NGFF OME-Zarr inputs for ``predict``: one image (``multiscales``), or an HCS plate
(``plate/row/col/field``), each field a position. Channel names come from ``omero`` labels;
the full-resolution level is read (``datasets[0]``); axes as the image declares them (any of
t, c, z before y, x). NGFF 0.4 (attributes at the group) and 0.5 (under ``ome``) alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import DataError
from acquire_vf._frames import ChannelInfo
from acquire_vf.distributed._work import SetKey


def _ome(attrs: Any) -> dict[str, Any]:
    a = dict(attrs)
    return dict(a.get("ome", a))


def is_ngff(path: Path) -> bool:
    """Whether ``path`` is an NGFF image or plate (not an acquire-vf run: no journal)."""
    if not path.is_dir() or path.with_name(path.name + ".journal").exists():
        return False
    import zarr

    try:
        meta = _ome(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - not a zarr group at all
        return False
    return "multiscales" in meta or "plate" in meta


class NgffSource:
    """The planes of an NGFF image or HCS plate, indexed by frame set ``(t, p, z)``."""

    def __init__(self, path: Path) -> None:
        import zarr

        from acquire_vf.storage import DatasetLayout

        self.path = path
        root = zarr.open_group(str(path), mode="r")
        meta = _ome(root.attrs)
        plate: dict[str, Any] | None = None
        if "plate" in meta:
            images = []
            for well in meta["plate"]["wells"]:
                wmeta = _ome(root[well["path"]].attrs)["well"]
                images += [f"{well['path']}/{im['path']}" for im in wmeta["images"]]
            plate = {"name": meta["plate"].get("name", ""),
                     "rows": [r["name"] for r in meta["plate"]["rows"]],
                     "columns": [c["name"] for c in meta["plate"]["columns"]]}
        else:
            images = [""]
        self._images = [(name, root[name] if name else root) for name in images]
        first = _ome(self._images[0][1].attrs)
        axes = [a["name"] if isinstance(a, dict) else a for a in first["multiscales"][0]["axes"]]
        if axes[-2:] != ["y", "x"] or not set(axes[:-2]) <= {"t", "c", "z"}:
            raise DataError(f"'{path}': expected NGFF axes among t, c, z then y, x; got {axes}")
        self.axes = axes
        self._level = first["multiscales"][0]["datasets"][0]["path"]
        arr = self._array(0)
        sizes = dict(zip(axes, arr.shape, strict=True))
        self._sizes = sizes
        labels = [c.get("label") for c in first.get("omero", {}).get("channels", [])]
        n_c = sizes.get("c", 1)
        if len(labels) != n_c or not all(labels):
            raise DataError(f"'{path}': expected an omero label per channel (the profile "
                            f"names its inputs by channel), got {labels} for {n_c} channel(s)")
        self._channels = [str(lab) for lab in labels]
        self.layout = DatasetLayout(
            channels=tuple(ChannelInfo(c) for c in self._channels),
            shape=(sizes["y"], sizes["x"]), dtype=str(arr.dtype),
            positions=tuple({"name": name or "0", "x_um": None, "y_um": None,
                             **({"path": name} if plate else {})}
                            for name, _ in self._images),
            z_offsets_um=tuple(float(k) for k in range(sizes.get("z", 1))),
            extra={"plate": plate} if plate else {})

    def _array(self, p: int) -> Any:
        return self._images[p][1][self._level]

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def keys(self) -> list[SetKey]:
        t, z = self._sizes.get("t", 1), self._sizes.get("z", 1)
        return [(ti, p, zi) for ti in range(t) for p in range(len(self._images))
                for zi in range(z)]

    def frame_set(self, key: SetKey) -> dict[str, tuple[np.ndarray, float | None]]:
        t, p, z = key
        out: dict[str, tuple[np.ndarray, float | None]] = {}
        for ci, c in enumerate(self._channels):
            index = tuple({"t": t, "c": ci, "z": z}[a] for a in self.axes[:-2])
            try:
                px = np.asarray(self._array(p)[index])
            except Exception as e:  # noqa: BLE001 - a corrupt chunk: named, one line
                raise DataError(f"{self.path.name}: {c} at t={t}, p={p} "
                                f"({self._images[p][0] or 'image'}), z={z} cannot be read: "
                                f"{type(e).__name__}: {e}") from e
            out[c] = (px, None)
        return out
