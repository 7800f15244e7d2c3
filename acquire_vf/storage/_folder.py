"""Output folders and files: proven writable before any hardware moves, never overwritten."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from acquire_vf._errors import OutputExistsError, StorageError


def prepare_output(out_dir: Path) -> None:
    """Create the output folder and prove it takes a file, before any hardware moves."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".acquire-vf-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"output folder '{out_dir}' is not writable: "
                           f"{e.strerror or e}") from e


def check_output(out: Path, *, inputs: Iterable[Path] = (), overwrite: bool = False,
                 what: str = "--out") -> None:
    """Refuse to write over data: an existing output (unless ``overwrite``), and always one of
    the command's own inputs (or a folder holding one). One clear line, before any work."""
    target = out.resolve()
    for src in inputs:
        s = Path(src).resolve()
        inside_input = s.is_dir() and s in target.parents
        if s == target or target in s.parents or inside_input:
            raise OutputExistsError(f"{what} '{out}' is also an input ('{src}'); expected a "
                                    "new path, so the input is never replaced")
    exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if exists and not overwrite:
        kind = "folder" if out.is_dir() else "file"
        raise OutputExistsError(f"{what} '{out}' already exists (a non-empty {kind}); expected "
                                "a new path, or pass --overwrite to replace it")
