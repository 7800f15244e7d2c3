"""``acquire-vf profile copy``: a profile copied elsewhere that still finds its engines.

Engine paths in a profile are relative to the profile's own folder, so a copied file whose
paths were left as they were points at engines that are not there. The copy keeps the file's
text (comments included) and rewrites each relative ``.onnx`` path so it names the same file
from the new folder (absolute where that is two or more folders up, or on another drive).

What would now lie is corrected too: the copy's ``name`` is its file's stem (a template's name
is not the rig's); comments that name the source file name the copy; a folder path in a comment
(``../engines/``) is rewritten as engine paths are; and a trailing "relative to this file" beside
a path that became absolute is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from acquire_vf._errors import ProfileError, StorageError

_ENGINE = re.compile(r'(=\s*")([^"\n]+\.onnx)(")([^\n]*)')
_NAME = re.compile(r'^name\s*=\s*"[^"\n]*"', re.M)
_FOLDER = re.compile(r'(?<![\w/.])((?:\.\./)+[\w.-]+/)')


def copy_profile(source: Path, dest: Path, *, overwrite: bool = False) -> list[tuple[str, str]]:
    """Write ``dest`` from ``source``; return the engine paths rewritten, (old, new)."""
    if dest.exists() and not overwrite:
        raise StorageError(f"'{dest}' exists; expected a new file name (or --overwrite)")
    if dest.suffix != ".toml":
        raise ProfileError(f"expected a destination ending in .toml, got '{dest}'")
    text = source.read_text(encoding="utf-8")
    changed: list[tuple[str, str]] = []
    here, there = source.resolve().parent, dest.resolve().parent

    def moved(old: str) -> str:
        target = (here / old).resolve()
        try:
            new = Path(os.path.relpath(target, there)).as_posix()
        except ValueError:  # another drive
            new = target.as_posix()
        if new.startswith("../../"):  # far away: an absolute path reads better
            new = target.as_posix()
        return new + ("/" if old.endswith("/") else "")

    def rewrite(m: re.Match[str]) -> str:
        old, rest = m.group(2), m.group(4)
        if Path(old).is_absolute():
            return m.group(0)
        new = moved(old)
        if new != old:
            changed.append((old, new))
        if Path(new).is_absolute() and "relative to this file" in rest:
            rest = re.sub(r"\s*#\s*relative to this file\s*$", "", rest)
        return f"{m.group(1)}{new}{m.group(3)}{rest}"

    lines = []
    for line in _ENGINE.sub(rewrite, text).splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            line = re.sub(rf"\S*{re.escape(source.name)}", dest.as_posix(), line)
            line = _FOLDER.sub(lambda m: moved(m.group(1)), line)
        lines.append(line)
    out = _NAME.sub(f'name = "{dest.stem}"', "".join(lines), count=1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(out, encoding="utf-8")
    return changed
