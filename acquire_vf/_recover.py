"""``acquire-vf recover``: make a killed run's files whole, say what was kept and what was cut,
and write the ``session.json`` the run could not.

The journal is the truth (``docs/storage.md``): every frame it records survives, pixel for
pixel; what the file holds beyond the last journaled frame (a torn page, frames written but not
yet journaled) is cut. A run killed before it wrote ``session.json`` gets one rebuilt from the
journal alone, marked ``recovered``: the channels, the frames by role, the planes the run
recorded as not made. Figures only the live run knew (latencies, the light-dose ledger, trust
states) are absent rather than guessed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acquire_vf.storage import journal_path, missing_summary, open_dataset, read_journal


@dataclass
class FileRecovery:
    """What recovery did to one file or store."""

    path: Path
    was_open: bool
    frames: int
    physical: int
    virtual: int
    cut_bytes: int
    """OME-TIFF: bytes after the last journaled frame; OME-Zarr: chunk files removed."""
    problems: list[str]

    def line(self) -> str:
        kept = (f"kept {self.frames} frames ({self.physical} physical, {self.virtual} virtual)"
                + (", each verified against its journal checksum" if not self.problems else ""))
        if not self.was_open:
            done = "closed cleanly, nothing to repair"
        elif self.path.name.endswith(".ome.zarr"):
            done = (f"removed {self.cut_bytes} chunk file(s) the journal did not record; "
                    "metadata rewritten")
        else:
            done = (f"cut {self.cut_bytes} bytes after the last journaled frame (a torn page or "
                    "frames not yet journaled); OME-XML written" if self.cut_bytes else
                    "nothing after the last journaled frame; OME-XML written")
        status = "" if not self.problems else \
            f"; {len(self.problems)} problem(s): {self.problems[0]}"
        return f"{self.path}: {kept}; {done}{status}"


def _chunk_files(store: Path) -> int:
    return sum(1 for f in store.rglob("*") if f.is_file() and "c" in f.relative_to(store).parts)


def _before(files: list[Path]) -> dict[Path, tuple[bool, int]]:
    """Per file: was it left open, and its size (TIFF) or chunk count (Zarr) before repair."""
    out = {}
    for f in files:
        if not journal_path(f).exists():
            continue
        _, records, closed = read_journal(f)
        if closed or not f.exists():
            out[f] = (not closed, 0)
        elif f.name.endswith(".ome.zarr"):
            out[f] = (True, _chunk_files(f))
        else:
            end = int(records[-1]["end"]) if records else 0
            out[f] = (True, max(0, f.stat().st_size - end))
    return out


def recover(path: Path, *, by: str = "acquire-vf recover", extra: dict[str, Any] | None = None
            ) -> tuple[list[FileRecovery], Path | None]:
    """Repair every file of the run at ``path``; the report per file, and the ``session.json``
    written (``None`` where the run wrote its own, or ``path`` is not a run folder). ``by``
    and ``extra`` go into that ``session.json``'s ``recovered``."""
    run_dir = path if path.is_dir() and not path.name.endswith(".ome.zarr") else None
    with _locked(run_dir or path.parent):  # one repair at a time (a guard and a user's recover)
        return _recover(path, run_dir, by, extra)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the run folder for the repair: a session's guard and a user's
    ``acquire-vf recover`` started at the same moment must not cut the same file twice; the
    second finds it whole."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _recover(path: Path, run_dir: Path | None, by: str, extra: dict[str, Any] | None
             ) -> tuple[list[FileRecovery], Path | None]:
    candidates = ([run_dir / j.name.removesuffix(".journal")
                   for j in sorted(run_dir.glob("*.journal"))] if run_dir else [path])
    before = _before(candidates)
    files = open_dataset(path)
    out = []
    for f in files:
        was_open, cut = before.get(f.path, (False, 0))  # TIFF: the bytes past the journal
        if was_open and f.path.name.endswith(".ome.zarr"):  # Zarr: chunk files before - after
            cut = max(0, cut - _chunk_files(f.path))
        virtual = sum(1 for r in f.records if r.get("role") == "virtual")
        out.append(FileRecovery(f.path, was_open, len(f.records), len(f.records) - virtual,
                                virtual, cut, f.verify()))
    session = None
    if run_dir is not None and not (run_dir / "session.json").exists() and files:
        session = _write_session(run_dir, files, out, by, extra or {})
    return out, session


def _write_session(run_dir: Path, files: list[Any], report: list[FileRecovery], by: str,
                   extra: dict[str, Any]) -> Path:
    from acquire_vf.acquisition import write_session

    layout = files[0].layout
    physical = sum(r.physical for r in report)
    missing = missing_summary([m for f in files for m in f.missing()])
    session: dict[str, Any] = {
        "profile": {"name": layout.profile, "source": ""},
        "channels": [c.as_dict() for c in layout.channels],
        "frames_acquired": physical,
        "exposures_taken": physical,
        "exposures_full_protocol": None,
        "virtual_frames": sum(r.virtual for r in report),
        "virtual_skipped": sum(m["missing"] for m in missing.values()),
        "refocus_applied": None,
        "latency_ms": {},
        "errors": ["the run ended without writing session.json (killed or crashed); this one "
                   f"was rebuilt from the journal by {by}"],
        "state": "recovered",
        "recovered": {"by": by, **extra, "files": [{"file": r.path.name, "frames": r.frames,
                                 "left_open": r.was_open, "cut": r.cut_bytes} for r in report],
                      "not_known": ["latency_ms", "light_dose", "verification", "focus",
                                    "exposures_full_protocol", "refocus_applied"]},
        "files": [r.path.name for r in report],
        "missing_virtual_planes": missing,
    }
    return write_session(session, run_dir)
