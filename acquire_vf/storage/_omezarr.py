"""Journaled OME-Zarr (NGFF 0.5, Zarr v3): every frame written before a crash reads back intact.

The store holds one image per stage position: the image itself at the root with a single
position, else ``0/``, ``1/``, ... under a ``bioformats2raw.layout`` root (NGFF 0.5's
collection of images). Each image has one resolution level, array ``0`` of shape
``(t, c, z, y, x)`` in chunks of one frame, uncompressed, so a frame is one chunk file. Zarr's
local store writes every file (chunks and ``zarr.json``) to a temporary name and renames it,
so a file is either whole or absent. As with OME-TIFF, a journal line
(``NAME.ome.zarr.journal``) records each frame's identity and CRC-32 after its chunk is
written; the time axis grows as time points arrive.

After ``kill -9`` (:func:`repair_zarr`): chunks the journal does not list and leftover
temporary files are removed, the arrays are sized to the journaled time points, and the
metadata (channels, QC counts, missing planes) is written from the journal. What Zarr cannot
promise: a power loss may lose frames the operating system had not yet put on disk (the
journal is flushed, not synced; the same holds for OME-TIFF), and a reader that opens the
store during a run sees frames not yet journaled as the fill value (0) until they arrive.

Per-channel metadata sits beside NGFF's ``omero`` block in the image's attributes, under
``acquire-vf``: name, role, ``channel_type`` (``physical``, ``virtual``, ``uncertainty``),
engine, sha256 and inputs of virtual channels.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from acquire_vf._errors import StorageError
from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf.storage._journal import JournaledWriter, journal_skips, qc_counts, read_journal
from acquire_vf.storage._layout import DatasetLayout

log = logging.getLogger(__name__)
NGFF_VERSION = "0.5"
NAMESPACE = "acquire-vf"
PHYSICAL_COLOURS = ("00FF00", "FF00FF", "00FFFF", "FFFF00", "FF8000", "0080FF", "FFFFFF")
VIRTUAL_COLOUR = "FF4040"
"""Virtual channels in one colour apart (red), whatever the stain."""
UNCERTAINTY_COLOUR = "808080"


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as e:
        raise StorageError("OME-Zarr needs the zarr package (a dependency of acquire-vf), "
                           f"which does not import here ({e}); expected zarr>=3: pip install "
                           "'zarr>=3'") from e
    return zarr


def channel_type(c: ChannelInfo) -> str:
    if c.role != "virtual":
        return "physical"
    return "uncertainty" if c.name.startswith("uncertainty:") else "virtual"


def channel_metadata(layout: DatasetLayout) -> list[dict[str, Any]]:
    """Per channel: what it is, and for virtual channels where it came from."""
    return [{**c.as_dict(), "label": c.stored_name, "channel_type": channel_type(c)}
            for c in layout.channels]


def _omero(layout: DatasetLayout) -> dict[str, Any]:
    top = float(2**layout.bit_depth - 1)
    chans, k = [], 0
    for c in layout.channels:
        kind = channel_type(c)
        if kind == "physical":
            colour, k = PHYSICAL_COLOURS[k % len(PHYSICAL_COLOURS)], k + 1
        else:
            colour = VIRTUAL_COLOUR if kind == "virtual" else UNCERTAINTY_COLOUR
        chans.append({"label": c.stored_name, "color": colour, "active": True,
                      "window": {"min": 0.0, "max": top, "start": 0.0, "end": top}})
    return {"channels": chans, "rdefs": {"model": "color"}}


def _multiscales(layout: DatasetLayout, name: str) -> list[dict[str, Any]]:
    z = layout.z_offsets_um
    dz = float(abs(z[1] - z[0])) if len(z) > 1 and z[1] != z[0] else 1.0
    interval = float(layout.extra.get("interval_s") or 1.0)
    px = float(layout.pixel_size_um)
    return [{"name": name, "axes": [
        {"name": "t", "type": "time", "unit": "second"}, {"name": "c", "type": "channel"},
        {"name": "z", "type": "space", "unit": "micrometer"},
        {"name": "y", "type": "space", "unit": "micrometer"},
        {"name": "x", "type": "space", "unit": "micrometer"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [interval, 1.0, dz, px, px]}]}]}]


def image_paths(layout: DatasetLayout) -> list[str]:
    """The image group of each position, relative to the store's root: ``ROW/COL/FIELD`` in
    a plate (:func:`plate_of`), else the root itself or ``0``, ``1``, ..."""
    if plate_of(layout) is not None:
        return [str(p["path"]) for p in layout.positions]
    n = len(layout.positions)
    return [""] if n <= 1 else [str(p) for p in range(n)]


def plate_of(layout: DatasetLayout) -> dict[str, Any] | None:
    """The HCS plate a layout is written as (``extra["plate"]``: ``rows``, ``columns``; each
    position's ``path`` ``ROW/COL/FIELD``), or ``None``."""
    plate = layout.extra.get("plate")
    if plate and all("path" in p for p in layout.positions):
        return dict(plate)
    return None


def _plate_attrs(layout: DatasetLayout, plate: dict[str, Any]) -> dict[str, Any]:
    """NGFF 0.5's ``plate`` block (rows, columns, wells with their indices, fields)."""
    rows, cols = list(plate["rows"]), list(plate["columns"])
    wells = sorted({str(p["path"]).rsplit("/", 1)[0] for p in layout.positions})
    fields = max(sum(1 for p in layout.positions if str(p["path"]).startswith(w + "/"))
                 for w in wells)
    return {"name": str(plate.get("name", "")), "rows": [{"name": r} for r in rows],
            "columns": [{"name": c} for c in cols], "field_count": fields,
            "wells": [{"path": w, "rowIndex": rows.index(w.split("/")[0]),
                       "columnIndex": cols.index(w.split("/")[1])} for w in wells]}


class OmeZarrWriter(JournaledWriter):
    """Writes frames of one :class:`DatasetLayout` into the store ``path``; one writer thread."""

    kind = "store"

    def _open(self) -> None:
        self._arrays = create_store(_zarr(), self.path, self.layout)

    def _reopen(self) -> None:
        root = _zarr().open_group(store=str(self.path), mode="r+")
        self._arrays = [root[f"{sub}/0" if sub else "0"] for sub in image_paths(self.layout)]

    def append(self, frame: Frame) -> int:
        """Write ``frame`` as its chunk; return its sequence number in the store.

        Survives a crash once this returns: the chunk is in place before its journal line."""
        c, pixels = self._check(frame)
        fid = frame.id
        arr = self._arrays[fid.p]
        rec = self._record(frame, c, pixels)
        try:
            if fid.t >= arr.shape[0]:
                arr.resize((fid.t + 1, *arr.shape[1:]))
            arr[fid.t, c, fid.z] = pixels
            self._journal_frame(rec)
        except OSError as e:
            raise self._write_failed(frame, e) from e
        return int(rec["ifd"])

    def _finish(self, records: list[dict[str, Any]], qc: dict[str, dict[str, int]],
                annotations: dict[str, list[dict[str, Any]]]) -> None:
        finish_store(self.path, self.layout, records, qc, annotations)


def create_store(zarr: Any, path: Path, layout: DatasetLayout) -> list[Any]:
    """The store with one image group and array per position; the arrays."""
    root = zarr.open_group(store=str(path), mode="w-", zarr_format=3)
    paths = image_paths(layout)
    plate = plate_of(layout)
    if plate is not None:  # an HCS plate in, an HCS plate out
        root.attrs.update({"ome": {"version": NGFF_VERSION,
                                   "plate": _plate_attrs(layout, plate)}})
        for well in sorted({p.rsplit("/", 1)[0] for p in paths}):
            fields = [p.rsplit("/", 1)[1] for p in paths if p.startswith(well + "/")]
            root.require_group(well).attrs.update({"ome": {
                "version": NGFF_VERSION, "well": {"images": [{"path": f} for f in fields]}}})
    elif paths != [""]:
        root.attrs.update({"ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3}})
    arrays = []
    y, x = layout.shape
    shape = (1, len(layout.channels), len(layout.z_offsets_um), y, x)
    for k, sub in enumerate(paths):
        group = root if sub == "" else root.require_group(sub)
        name = str(layout.positions[k].get("name") or f"Pos{k}")
        group.attrs.update(_image_attrs(layout, name, k))
        arrays.append(group.create_array(
            "0", shape=shape, chunks=(1, 1, 1, y, x), dtype=layout.dtype, fill_value=0,
            dimension_names=("t", "c", "z", "y", "x"), compressors=None,
            config={"write_empty_chunks": True}))
    return arrays


def _image_attrs(layout: DatasetLayout, name: str, position: int,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ome": {"version": NGFF_VERSION, "multiscales": _multiscales(layout, name),
                    "omero": _omero(layout)},
            NAMESPACE: {"channels": channel_metadata(layout), "position": position,
                        "layout": layout.to_json(), **(extra or {})}}


def finish_store(path: Path, layout: DatasetLayout, records: list[dict[str, Any]],
                 qc: dict[str, dict[str, int]] | None = None,
                 annotations: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """The images' final metadata: QC counts, annotations and the planes never made."""
    from acquire_vf.storage._missing import missing_planes, missing_summary

    zarr = _zarr()
    if qc is None:
        qc = qc_counts(records)
    missing = missing_planes(layout, records, journal_skips(path))
    root = zarr.open_group(store=str(path), mode="r+", zarr_format=3)
    for k, sub in enumerate(image_paths(layout)):
        group = root if sub == "" else root[sub]
        name = str(layout.positions[k].get("name") or f"Pos{k}")
        mine = [m for m in missing if m.get("p", 0) == k]
        group.attrs.update(_image_attrs(layout, name, k, {
            "qc_counts": qc, "annotations": annotations or {},
            "missing_planes": {"summary": missing_summary(mine), "planes": mine[:5000]},
            "frames": sum(1 for r in records if r.get("p", 0) == k)}))


def repair_zarr(path: str | os.PathLike[str]) -> int:
    """Make a crashed store whole again from its journal; return the number of frames kept.

    Unjournaled chunks and temporary files are removed, each array is sized to its journaled
    time points, the metadata is written from the journal, and the journal is rewritten
    without its torn tail and marked closed. Repeatable; a cleanly closed store is untouched."""
    from acquire_vf.storage._ometiff import _rewrite_journal

    path = Path(path)
    layout, records, closed = read_journal(path)
    if closed:
        return len(records)
    if not records:
        shutil.rmtree(path, ignore_errors=True)
    else:
        zarr = _zarr()
        for tmp in path.rglob("*.partial"):
            tmp.unlink(missing_ok=True)
        root = zarr.open_group(store=str(path), mode="r+", zarr_format=3)
        kept = {(r.get("p", 0), r["t"], r["c"], r["z"]) for r in records}
        for k, sub in enumerate(image_paths(layout)):
            arr = (root if sub == "" else root[sub])["0"]
            last = max((r["t"] for r in records if r.get("p", 0) == k), default=-1)
            chunks = Path(path, sub, "0", "c") if sub else Path(path, "0", "c")
            for f in chunks.rglob("*") if chunks.is_dir() else []:
                if f.is_file():
                    t, c, z = (int(v) for v in f.relative_to(chunks).parts[:3])
                    if (k, t, c, z) not in kept:
                        f.unlink()
            arr.resize((max(last + 1, 1), *arr.shape[1:]))
        finish_store(path, layout, records)
    _rewrite_journal(path, layout, records)
    log.info("recovered %d frames in %s", len(records), path)
    return len(records)
