"""The napari reader: an acquire-vf dataset (a run folder, ``NAME.ome.tif`` or
``NAME.ome.zarr``) as napari layers.

One image layer per channel and position, (t, z, y, x), read lazily plane by plane (dask):

- physical channels in their own colours, additive;
- virtual channels named ``virtual:NAME`` in red, with the engine, sha256 and inputs in the
  layer's metadata;
- uncertainty channels (``virtual:uncertainty:NAME``) in grey, hidden at first;
- a plane the run never made reads as zeros, and is listed in the layer's metadata under
  ``missing_planes`` (with the reason).

Per virtual channel, a points layer ``qc:NAME`` marks each frame whose QC raised a flag, at
the frame's corner, labelled with the flags. napari never imports acquire-vf's engines: this
reads files only. Install with ``pip install "acquire-vf[napari]"``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._frames import raised_flags
from acquire_vf.storage import PHYSICAL_COLOURS, channel_type

LayerData = tuple[Any, dict[str, Any], str]
_COLOURMAP = {"virtual": "red", "uncertainty": "gray"}
_PHYSICAL = ("green", "magenta", "cyan", "yellow", "bop orange", "bop blue", "gray")
assert len(_PHYSICAL) == len(PHYSICAL_COLOURS)


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """napari's reader hook: a reader for an acquire-vf dataset, ``None`` for anything else."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else ""
    p = Path(path)
    if not p.exists() or not _is_dataset(p):
        return None
    return read


def _is_dataset(p: Path) -> bool:
    journal = p.with_name(p.name + ".journal")
    if p.name.endswith((".ome.tif", ".zarr")):
        return journal.is_file()
    return p.is_dir() and any(any(p.glob(f"*{ext}.journal")) for ext in (".ome.tif", ".ome.zarr"))


def read(path: str | list[str]) -> list[LayerData]:
    """Every channel of every file of the dataset as layers (``open_dataset`` repairs a
    killed run first, as every acquire-vf reader does)."""
    from acquire_vf.storage import open_dataset

    p = Path(path[0] if isinstance(path, list) else path)
    layers: list[LayerData] = []
    for ds in open_dataset(p):
        layers += _layers(ds)
    return layers


def _layers(ds: Any) -> list[LayerData]:
    import dask.array as da
    from dask import delayed

    lay = ds.layout
    n_t = max(int(r["t"]) for r in ds.records) + 1
    n_z = len(lay.z_offsets_um)
    positions = sorted({int(r.get("p", 0)) for r in ds.records})
    blank = da.zeros(lay.shape, dtype=lay.dtype, chunks=lay.shape)
    missing = ds.missing()
    dz = abs(lay.z_offsets_um[1] - lay.z_offsets_um[0]) if n_z > 1 else 1.0
    scale = (1.0, float(dz) or 1.0, lay.pixel_size_um, lay.pixel_size_um)
    out: list[LayerData] = []
    k = 0
    for c in lay.channels:
        kind = channel_type(c)
        if kind == "physical":
            colour, k = _PHYSICAL[k % len(_PHYSICAL)], k + 1
        else:
            colour = _COLOURMAP[kind]
        for p in positions:
            index = {(int(r["t"]), int(r["z"])): r for r in ds.records
                     if r["channel"] == c.name and r.get("role", "physical") == c.role
                     and int(r.get("p", 0)) == p}
            planes = [[da.from_delayed(delayed(ds.read)(index[(t, z)]), lay.shape, lay.dtype)
                       if (t, z) in index else blank for z in range(n_z)] for t in range(n_t)]
            name = c.stored_name + (f" @{_position_name(lay, p)}" if len(positions) > 1 else "")
            gone = [m for m in missing if m["channel"] == c.name and int(m["p"]) == p]
            meta = {"acquire-vf": {**c.as_dict(), "channel_type": kind, "position": p,
                                   "missing_planes": gone, "dataset": str(ds.path)}}
            if not index:  # no frame at all (e.g. never refocused: in focus): said, not dropped
                meta["acquire-vf"]["no_frames"] = _reasons(gone) or "no frame was saved"
                out.append((da.stack([da.stack(row) for row in planes]),
                            {"name": f"{name} (no frames)", "colormap": colour,
                             "blending": "additive", "visible": False, "scale": scale,
                             "metadata": meta, "contrast_limits": [0.0, 1.0]}, "image"))
                continue
            out.append((da.stack([da.stack(row) for row in planes]),
                        {"name": name, "colormap": colour, "blending": "additive",
                         "visible": kind != "uncertainty", "scale": scale, "metadata": meta,
                         "contrast_limits": _limits(ds, index)}, "image"))
            if kind == "virtual":
                out.append(_qc_points(c.stored_name, index, name, scale))
    return out


def _reasons(missing: list[dict[str, Any]]) -> str:
    """``6 planes: not refocused (...)``: the missing planes counted by reason."""
    counts: dict[str, int] = {}
    for m in missing:
        counts[m["why"]] = counts.get(m["why"], 0) + 1
    return "; ".join(f"{n} plane(s): {why}" for why, n in counts.items())


def add_to_viewer(viewer: Any, path: str | Path) -> list[Any]:
    """Add an acquire-vf dataset's layers to a napari viewer (``napari.Viewer`` or a headless
    ``ViewerModel``) without the plugin registry: for scripts and notebooks, where napari has
    not discovered plugins (``napari PATH`` and File > Open do that themselves)."""
    from napari.layers import Layer

    return [viewer.add_layer(Layer.create(data, meta, kind))
            for data, meta, kind in read(str(path))]


def _position_name(layout: Any, p: int) -> str:
    pos = layout.positions[p] if p < len(layout.positions) else {}
    return str(pos.get("name") or f"Pos{p}")


def _limits(ds: Any, index: dict[tuple[int, int], dict[str, Any]]) -> list[float]:
    """Contrast limits from the first frame (robust percentiles), so napari need not read
    every plane to set them."""
    first = ds.read(next(iter(index.values())))
    lo, hi = np.percentile(first, [0.5, 99.8])
    return [float(lo), float(max(hi, lo + 1))]


def _qc_points(label: str, index: dict[tuple[int, int], dict[str, Any]], name: str,
               scale: tuple[float, ...]) -> LayerData:
    rows, flags = [], []
    for (t, z), r in sorted(index.items()):
        raised = [f.value for f in raised_flags(r.get("qc"))]
        if raised:
            rows.append([t, z, 8.0, 8.0])
            flags.append(", ".join(raised))
    data = np.asarray(rows, dtype=float).reshape(-1, 4)
    return (data, {"name": "qc:" + name.removeprefix("virtual:"), "scale": scale,
                   "features": {"flags": flags}, "face_color": "red", "size": 12,
                   "text": {"string": "{flags}", "color": "red", "anchor": "upper_left"},
                   "metadata": {"acquire-vf": {"qc_of": label}}}, "points")
