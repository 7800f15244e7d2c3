"""Append-only, journaled OME-TIFF: every frame written before a crash reads back intact.

Each frame becomes one BigTIFF page, written and flushed to the operating system before a
journal line (``NAME.ome.tif.journal``) records its identity, its CRC-32 and the file size after
it. Nothing is preallocated and no page is rewritten. tifffile writes the OME-XML only at close,
so a killed process leaves pages without it and possibly a torn last page; :func:`repair` cuts
the file back to the last journaled size and writes the OME-XML from the journal.

Each page also carries its own identity as JSON in a private tag, so a frame can be checked on
readback without trusting the OME-XML.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import tifffile

from acquire_vf._errors import StorageError
from acquire_vf._frames import Frame
from acquire_vf.storage._journal import (
    JournaledWriter,
    frame_crc,
    journal_path,
    journal_skips,
    plain,
    qc_counts,
    read_journal,
)
from acquire_vf.storage._layout import DatasetLayout
from acquire_vf.storage._omexml import build_ome_xml

__all__ = ["IDENTITY_TAG", "OmeTiffWriter", "frame_crc", "journal_path", "read_journal",
           "repair"]

log = logging.getLogger(__name__)

IDENTITY_TAG = 65421
"""Private TIFF tag holding each page's identity JSON."""
_PLACEHOLDER = "acquire-vf: OME-XML is written when the file is closed or repaired" + " " * 64


class OmeTiffWriter(JournaledWriter):
    """Writes frames of one :class:`DatasetLayout` to ``path``; one writer thread only."""

    def _open(self) -> None:
        self._tw = tifffile.TiffWriter(self.path, bigtiff=True, ome=False)

    def append(self, frame: Frame) -> int:
        """Append ``frame`` as the next page; return its page index (IFD).

        Survives a crash once this returns: the page is flushed before its journal line."""
        c, pixels = self._check(frame)
        rec = self._record(frame, c, pixels)
        identity = json.dumps({k: v for k, v in rec.items() if k not in ("kind", "ifd")},
                              default=plain)
        try:
            self._tw.write(
                pixels, description=_PLACEHOLDER if rec["ifd"] == 0 else None, metadata=None,
                contiguous=False, software="acquire-vf",
                extratags=[(IDENTITY_TAG, "s", 0, identity, True)],
            )
            fh = self._tw.filehandle
            fh.flush()
            rec["end"] = os.fstat(fh.fileno()).st_size
            self._journal_frame(rec)
        except OSError as e:
            raise self._write_failed(frame, e) from e
        return int(rec["ifd"])

    def _seal(self) -> None:
        self._tw.close()

    def _finish(self, records: list[dict[str, Any]], qc: dict[str, dict[str, int]],
                annotations: dict[str, list[dict[str, Any]]]) -> None:
        if records:
            _write_ome(self.path, self.layout, records, qc, annotations)
        else:
            self.path.unlink()  # a header-only file is not a valid TIFF; the journal says why


def _write_ome(path: Path, layout: DatasetLayout, records: list[dict[str, Any]],
               qc: dict[str, dict[str, int]] | None = None,
               annotations: dict[str, list[dict[str, Any]]] | None = None) -> None:
    if qc is None:
        qc = qc_counts(records)
    from acquire_vf.storage._missing import MISSING_NS, missing_planes, missing_summary

    missing = missing_planes(layout, records, journal_skips(path))
    if missing:  # virtual planes never made: listed, so no reader takes them for dark images
        planes: dict[str, list[str]] = {}
        for m in missing:
            planes.setdefault(m["channel"], []).append(f"t{m['t']}p{m['p']}z{m['z']}")
        annotations = {**(annotations or {}), MISSING_NS: [
            {"channel": c, "missing": v["missing"], **v["by_reason"],
             "planes": " ".join(planes[c][:500])}
            for c, v in missing_summary(missing).items()]}
    xml = build_ome_xml(layout, records, qc, annotations)
    tifffile.tiffcomment(path, comment=xml.encode("utf-8"))


def repair(path: str | os.PathLike[str]) -> int:
    """Make a crashed file whole again from its journal; return the number of frames kept.

    The file is cut back to the size recorded after the last journaled frame (removing a torn
    page and anything unjournaled), the last kept page's next-IFD link is cleared, the OME-XML
    is written, and the journal is rewritten without its torn tail and marked closed. Each step
    can be repeated, so a repair that is itself interrupted can simply be run again. A file
    whose writer closed cleanly is left untouched.
    """
    path = Path(path)
    layout, records, closed = read_journal(path)
    if closed:
        return len(records)
    if not records:
        path.unlink(missing_ok=True)
    else:
        end = int(records[-1]["end"])
        with open(path, "r+b") as fh:
            if os.fstat(fh.fileno()).st_size < end:
                raise StorageError(
                    f"'{path}' is shorter than its journal says ({end} bytes expected): "
                    "the file was truncated outside acquire-vf"
                )
            fh.truncate(end)
            _clear_next_ifd(fh, len(records), end)
        _write_ome(path, layout, records)
    _rewrite_journal(path, layout, records)
    log.info("recovered %d frames in %s", len(records), path)
    return len(records)


def _rewrite_journal(path: Path, layout: DatasetLayout, records: list[dict[str, Any]]) -> None:
    jp = journal_path(path)
    tmp = jp.with_name(jp.name + ".tmp")
    skips = [{"kind": "skip", "t": k[0], "p": k[1], "z": k[2], "c": k[3], "channel": k[3],
              "role": "virtual", "why": why} for k, why in journal_skips(path).items()]
    lines = [layout.to_json(), *records, *skips,
             {"kind": "closed", "frames": len(records), "recovered": True}]
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines),
                   encoding="utf-8")
    os.replace(tmp, jp)


def _clear_next_ifd(fh: Any, n_pages: int, end: int) -> None:
    """Walk the BigTIFF IFD chain to page ``n_pages - 1`` and end the chain there.

    Also empties page 0's ImageDescription if its value lies beyond ``end`` (an OME-XML that
    an interrupted repair appended and this truncation removed), so it can be written anew.
    """
    fh.seek(0)
    head = fh.read(16)
    if head[:2] != b"II" or struct.unpack("<H", head[2:4])[0] != 43:
        raise StorageError("expected a little-endian BigTIFF header")
    offset = struct.unpack("<Q", head[8:16])[0]
    for i in range(n_pages):
        fh.seek(offset)
        (count,) = struct.unpack("<Q", fh.read(8))
        if i == 0:
            _reset_description(fh, offset, count, end)
        link = offset + 8 + count * 20
        fh.seek(link)
        (offset,) = struct.unpack("<Q", fh.read(8))
        if i == n_pages - 1:
            fh.seek(link)
            fh.write(struct.pack("<Q", 0))


def _reset_description(fh: Any, ifd: int, count: int, end: int) -> None:
    for k in range(count):
        entry = ifd + 8 + k * 20
        fh.seek(entry)
        code, _typ, n, value = struct.unpack("<HHQQ", fh.read(20))
        if code == 270 and n > 8 and value + n > end:
            fh.seek(entry)
            fh.write(struct.pack("<HHQ8s", 270, 2, 1, b"\0" * 8))
