"""Read a saved dataset back (OME-TIFF or OME-Zarr), repairing it first if its writer was
killed, and verify it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from acquire_vf._errors import StorageError
from acquire_vf.storage._journal import frame_crc, journal_path, read_journal
from acquire_vf.storage._layout import DatasetLayout
from acquire_vf.storage._ometiff import IDENTITY_TAG, repair

_IDENTITY_KEYS = ("t", "p", "z", "channel", "role", "seq", "crc32")


class MissingPlane(LookupError):
    """A plane the dataset does not hold (a virtual frame never made): not a black image."""


@dataclass
class DatasetFile:
    """One OME-TIFF of a dataset with its journal records (one per frame, in page order)."""

    path: Path
    layout: DatasetLayout
    records: list[dict[str, Any]]

    def read(self, rec: dict[str, Any]) -> np.ndarray:
        """Pixels of the frame that ``rec`` describes."""
        with tifffile.TiffFile(self.path) as tf:
            return tf.pages[int(rec["ifd"])].asarray()

    def iter_frames(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        with tifffile.TiffFile(self.path) as tf:
            for rec in self.records:
                yield rec, tf.pages[int(rec["ifd"])].asarray()

    def identity(self, rec: dict[str, Any]) -> dict[str, Any]:
        """The identity JSON the page itself carries (independent of journal and OME-XML)."""
        with tifffile.TiffFile(self.path) as tf:
            return _page_identity(tf, int(rec["ifd"]))

    def find(self, t: int, channel: str, z: int = 0, p: int = 0) -> dict[str, Any] | None:
        for r in self.records:
            if (r["t"], r["channel"], r["z"], r["p"]) == (t, channel, z, p):
                return r
        return None

    def missing(self) -> list[dict[str, Any]]:
        """Virtual planes the run never made, with the reason (:mod:`._missing`)."""
        from acquire_vf.storage._journal import journal_skips
        from acquire_vf.storage._missing import missing_planes

        return missing_planes(self.layout, self.records, journal_skips(self.path))

    def plane(self, t: int, channel: str, z: int = 0, p: int = 0,
              role: str | None = None) -> np.ndarray:
        """The pixels of one plane; a plane the run never made raises :class:`MissingPlane`
        with the reason (it is not a dark image)."""
        for r in self.records:
            if (r["t"], r["channel"], r["z"], r["p"]) == (t, channel, z, p) and \
                    (role is None or r.get("role") == role):
                return self.read(r)
        why = next((m["why"] for m in self.missing() if (m["t"], m["channel"], m["z"], m["p"])
                    == (t, channel, z, p)), "not in the dataset")
        raise MissingPlane(f"{self.path.name}: {channel} at t={t}, p={p}, z={z}: {why}")

    def verify(self) -> list[str]:
        """Problems found: page count, identity tag or CRC not matching the journal."""
        problems = []
        with tifffile.TiffFile(self.path) as tf:
            tf.pages.useframes = False
            if not tf.is_ome:
                problems.append(f"{self.path.name}: no OME-XML")
            if len(tf.pages) != len(self.records):
                problems.append(f"{self.path.name}: {len(tf.pages)} pages, "
                                f"journal has {len(self.records)} frames")
            for rec in self.records[: len(tf.pages)]:
                page = tf.pages[int(rec["ifd"])]
                ident = _page_identity(tf, int(rec["ifd"]))
                want = {k: rec.get(k) for k in _IDENTITY_KEYS}
                got = {k: ident.get(k) for k in _IDENTITY_KEYS}
                if got != want:
                    problems.append(f"page {rec['ifd']}: identity {got} != journal {want}")
                elif frame_crc(page.asarray()) != rec["crc32"]:
                    problems.append(f"page {rec['ifd']}: pixels differ from journal CRC")
        return problems


class ZarrDatasetFile(DatasetFile):
    """One OME-Zarr store of a dataset (:mod:`._omezarr`) with its journal records.

    A chunk carries no identity of its own: :meth:`identity` is the journal's, and
    :meth:`verify` checks each frame's pixels against the journal's CRC."""

    def _array(self, p: int) -> Any:
        from acquire_vf.storage._omezarr import _zarr, image_paths

        cache = self.__dict__.setdefault("_arrays", {})
        if p not in cache:
            root = _zarr().open_group(store=str(self.path), mode="r", zarr_format=3)
            sub = image_paths(self.layout)[p]
            cache[p] = (root if sub == "" else root[sub])["0"]
        return cache[p]

    def read(self, rec: dict[str, Any]) -> np.ndarray:
        return np.asarray(self._array(int(rec.get("p", 0)))[int(rec["t"]), int(rec["c"]),
                                                             int(rec["z"])])

    def iter_frames(self) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
        for rec in self.records:
            yield rec, self.read(rec)

    def identity(self, rec: dict[str, Any]) -> dict[str, Any]:
        return {k: rec.get(k) for k in _IDENTITY_KEYS}

    def verify(self) -> list[str]:
        problems = []
        for rec in self.records:
            arr = self._array(int(rec.get("p", 0)))
            if int(rec["t"]) >= arr.shape[0]:
                problems.append(f"frame {rec['ifd']}: t={rec['t']} beyond the array's "
                                f"{arr.shape[0]} time points")
            elif frame_crc(self.read(rec)) != rec["crc32"]:
                problems.append(f"frame {rec['ifd']} (t={rec['t']}, {rec['channel']}): pixels "
                                "differ from journal CRC")
        return problems


def _page_identity(tf: tifffile.TiffFile, ifd: int) -> dict[str, Any]:
    tf.pages.useframes = False
    page = tf.pages[ifd]
    tag = page.tags.get(IDENTITY_TAG)  # type: ignore[union-attr]
    return json.loads(tag.value) if tag is not None else {}


def open_dataset(path: str | os.PathLike[str], *,
                 repair_if_needed: bool = True) -> list[DatasetFile]:
    """The OME-TIFF files of a run folder (or one file), repaired first if a crash left them open.

    A run that stopped before its first frame leaves only a journal; it contributes no file.
    """
    p = Path(path)
    if p.is_dir() and not p.name.endswith(".zarr"):  # a run folder (a store is a folder too)
        names = {f.name for ext in SUFFIXES for f in p.glob(f"*{ext}")}
        names |= {j.name.removesuffix(".journal") for ext in SUFFIXES
                  for j in p.glob(f"*{ext}.journal")}
        files = [p / n for n in sorted(names)]
    else:
        files = [p]
    if not files or not all(f.exists() or journal_path(f).exists() for f in files):
        raise StorageError(f"no acquire-vf dataset found at '{p}' (expected NAME.ome.tif or "
                           "NAME.ome.zarr with NAME.ome.tif.journal or NAME.ome.zarr.journal "
                           "beside it)")
    out = []
    for f in files:
        if not journal_path(f).exists():
            raise StorageError(f"'{f}' has no journal beside it; expected '{journal_path(f).name}'")
        zarr_store = f.name.endswith(".zarr")  # NAME.ome.zarr, or any store predict wrote
        layout, records, closed = read_journal(f)
        if not closed:
            if not repair_if_needed:
                raise StorageError(f"'{f}' was not closed; run 'acquire-vf recover {p}'")
            if zarr_store:
                from acquire_vf.storage._omezarr import repair_zarr

                repair_zarr(f)
            else:
                repair(f)
            layout, records, closed = read_journal(f)
        if records:
            out.append((ZarrDatasetFile if zarr_store else DatasetFile)(f, layout, records))
    return out


SUFFIXES = (".ome.tif", ".ome.zarr")
