"""What both dataset writers share: the journal beside the data, a frame's journal record (with
its QC flag counts), skips, annotations, and closing (:class:`JournaledWriter`).

A writer subclass makes its file or store in :meth:`JournaledWriter._open`, writes a frame's
pixels in ``append`` before :meth:`JournaledWriter._journal_frame`, and writes its metadata from
the journal's records in :meth:`JournaledWriter._finish`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import StorageError
from acquire_vf._frames import Frame, FrameId, raised_flags
from acquire_vf.storage._layout import DatasetLayout


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def frame_crc(pixels: np.ndarray) -> int:
    import zlib

    return zlib.crc32(np.ascontiguousarray(pixels).data) & 0xFFFFFFFF


def plain(v: Any) -> Any:
    """numpy scalars (from a stage's QC flags) as plain JSON values."""
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def qc_counts(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per channel, how many frames raised each QC flag (:class:`~acquire_vf._frames.QcFlag`)."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        counts = out.setdefault(r["channel"], {})
        for flag in raised_flags(r.get("qc")):
            counts[flag.value] = counts.get(flag.value, 0) + 1
    return out


def whole_lines(jp: Path, what: str) -> list[tuple[str, dict[str, Any]]]:
    """A journal's lines with their records, up to a torn one (the line being written at a
    crash: nothing after it is trusted)."""
    try:
        lines = jp.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise StorageError(f"{what} '{jp}' cannot be read: {e.strerror or e}") from e
    out = []
    for line in lines:
        try:
            out.append((line, json.loads(line)))
        except json.JSONDecodeError:
            break
    return out


def read_journal(path: Path) -> tuple[DatasetLayout, list[dict[str, Any]], bool]:
    """Layout, frame records and whether the writer closed cleanly. A torn last line is ignored."""
    jp = journal_path(path)
    recs = [rec for _, rec in whole_lines(jp, "journal")]
    if not recs or recs[0].get("kind") != "header":
        raise StorageError(f"journal '{jp}': expected a header line first, found none")
    frames = [r for r in recs if r.get("kind") == "frame"]
    closed = any(r.get("kind") == "closed" for r in recs)
    return DatasetLayout.from_json(recs[0]), frames, closed


def journal_skips(path: Path) -> dict[tuple[int, int, int, str], str]:
    """Why each journaled skip's virtual frame was not made: ``(t, p, z, channel) -> why``."""
    out: dict[tuple[int, int, int, str], str] = {}
    try:
        lines = journal_path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            break
        if r.get("kind") == "skip":
            out[(int(r["t"]), int(r["p"]), int(r["z"]), str(r["channel"]))] = str(r["why"])
    return out


class JournaledWriter:
    """Frames of one :class:`DatasetLayout` into ``path`` and its journal; one writer thread."""

    kind = "file"

    def __init__(self, path: str | os.PathLike[str], layout: DatasetLayout) -> None:
        self.path = Path(path)
        self.layout = layout
        self.frames_written = 0
        self.frames_skipped = 0
        self._qc: dict[str, dict[str, int]] = {}
        """Per channel, frames that raised each QC flag, counted as they are written (the
        records themselves stay in the journal: a three-day run holds none in memory)."""
        self._annotations: dict[str, list[dict[str, Any]]] = {}
        if self.path.exists():
            raise StorageError(f"refusing to overwrite existing {self.kind} '{self.path}'")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._journal = open(journal_path(self.path), "x", encoding="utf-8")  # noqa: SIM115
            self._open()
            self._write_journal(layout.to_json())
        except OSError as e:
            raise StorageError(f"cannot create '{self.path}': {e.strerror or e}") from e
        self._closed = False

    @classmethod
    def reopen(cls, path: str | os.PathLike[str]) -> JournaledWriter:
        """A writer that goes on where an earlier one stopped (closed, interrupted or killed):
        its journal keeps every whole line but a torn last one and the closing lines (written
        again at :meth:`close`), and new frames are appended. Only stores can be reopened (an
        OME-TIFF's metadata is in its first page)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        jp = journal_path(self.path)
        kept = [line for line, rec in whole_lines(jp, "journal to reopen")
                if rec.get("kind") not in ("annotations", "closed")]
        tmp = jp.with_name(jp.name + ".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, jp)  # one step: the journal is whole before and after
        self.layout, records, _ = read_journal(self.path)
        self.frames_written, self.frames_skipped = len(records), 0
        self._qc = qc_counts(records)
        self._annotations = {}
        self._reopen()
        self._journal = open(jp, "a", encoding="utf-8")  # noqa: SIM115
        self._closed = False
        return self

    # ----- for subclasses -----------------------------------------------------------------
    def _open(self) -> None:
        """Create the file or store."""

    def _reopen(self) -> None:
        """Open the existing file or store to append to it."""
        raise StorageError(f"'{self.path}': a {self.kind} cannot be appended to once written; "
                           "expected an OME-Zarr store")

    def _seal(self) -> None:
        """Finish writing pixels (before the metadata is written)."""

    def _finish(self, records: list[dict[str, Any]], qc: dict[str, dict[str, int]],
                annotations: dict[str, list[dict[str, Any]]]) -> None:
        """Write the metadata from the journaled frames."""
        raise NotImplementedError

    def _check(self, frame: Frame) -> tuple[int, np.ndarray]:
        """The frame's channel index and contiguous pixels; refuses a closed writer or a frame
        that does not fit."""
        if self._closed:
            raise StorageError(f"'{self.path}' is closed")
        self.layout.check_frame(frame.pixels, f"frame {frame.id}")
        return (self.layout.channel_index(frame.id.c, frame.role),
                np.ascontiguousarray(frame.pixels))

    def _record(self, frame: Frame, c: int, pixels: np.ndarray) -> dict[str, Any]:
        """The frame's journal record (written by :meth:`_journal_frame` once its pixels are
        safe)."""
        rec: dict[str, Any] = {
            "kind": "frame", "ifd": self.frames_written, **frame.id.as_dict(), "c": c,
            "channel": frame.id.c, "role": frame.role, "seq": frame.seq,
            "crc32": frame_crc(pixels), "elapsed_ms": round(frame.elapsed_ms, 3),
            "exposure_ms": frame.exposure_ms, "x_um": frame.x_um, "y_um": frame.y_um,
            "z_um": frame.z_um}
        if frame.qc:
            rec["qc"] = frame.qc
        return rec

    def _journal_frame(self, rec: dict[str, Any]) -> None:
        self._write_journal(rec)
        for flag in raised_flags(rec.get("qc")):
            counts = self._qc.setdefault(rec["channel"], {})
            counts[flag.value] = counts.get(flag.value, 0) + 1
        self.frames_written += 1

    def _write_failed(self, frame: Frame, e: OSError) -> StorageError:
        reason = e.strerror or (
            f"the disk is full or a file-size limit was reached ({e})" if "written" in str(e)
            else str(e))
        return StorageError(f"writing frame {frame.id.as_dict()} to '{self.path}' failed: "
                            f"{reason}; {self.frames_written} earlier frames are intact")

    # ----- the FrameSink protocol ---------------------------------------------------------
    def skip(self, fid: FrameId, role: str, why: str) -> None:
        """Record that a frame of the plan will not come (a virtual frame not made), so a
        reader can tell a missing plane from a dark one. Journaled only: no pixels."""
        if self._closed:
            raise StorageError(f"'{self.path}' is closed")
        self._write_journal({"kind": "skip", **fid.as_dict(), "channel": fid.c, "role": role,
                             "why": why})
        self.frames_skipped += 1

    def annotate(self, namespace: str, records: list[dict[str, Any]]) -> None:
        """Records to write into the metadata when the writer closes."""
        self._annotations[namespace] = list(records)

    def close(self) -> None:
        """Write the metadata and mark the journal closed. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._seal()
            records = read_journal(self.path)[1]
            for ns, recs in self._annotations.items():
                self._write_journal({"kind": "annotations", "namespace": ns, "records": recs})
            self._finish(records, self._qc, self._annotations)
            self._write_journal({"kind": "closed", "frames": len(records)})
        except OSError as e:
            raise StorageError(
                f"finishing '{self.path}' failed: {e.strerror or e}; the frames are intact, "
                f"run 'acquire-vf recover {self.path.parent}' to restore its metadata") from e
        finally:
            self._journal.close()

    def _write_journal(self, rec: dict[str, Any]) -> None:
        self._journal.write(json.dumps(rec, separators=(",", ":"), default=plain) + "\n")
        self._journal.flush()
