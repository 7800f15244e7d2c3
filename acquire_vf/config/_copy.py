"""``acquire-vf profile copy``: a profile copied elsewhere that still finds its engines.

Engine paths in a profile are relative to the profile's own folder, so a copied file whose
paths were left as they were points at engines that are not there. The copy keeps the file's
text (comments included) and rewrites each relative ``.onnx`` path so it names the same file
from the new folder (absolute where that is two or more folders up, or on another drive).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from acquire_vf._errors import ProfileError, StorageError

_ENGINE = re.compile(r'(=\s*")([^"\n]+\.onnx)(")')


def copy_profile(source: Path, dest: Path, *, overwrite: bool = False) -> list[tuple[str, str]]:
    """Write ``dest`` from ``source``; return the engine paths rewritten, (old, new)."""
    if dest.exists() and not overwrite:
        raise StorageError(f"'{dest}' exists; expected a new file name (or --overwrite)")
    if dest.suffix != ".toml":
        raise ProfileError(f"expected a destination ending in .toml, got '{dest}'")
    text = source.read_text(encoding="utf-8")
    changed: list[tuple[str, str]] = []
    here, there = source.resolve().parent, dest.resolve().parent

    def rewrite(m: re.Match[str]) -> str:
        old = m.group(2)
        if Path(old).is_absolute():
            return m.group(0)
        target = (here / old).resolve()
        try:
            new = Path(os.path.relpath(target, there)).as_posix()
        except ValueError:  # another drive
            new = target.as_posix()
        if new.startswith("../../"):  # far away: an absolute path reads better
            new = target.as_posix()
        if new != old:
            changed.append((old, new))
        return f"{m.group(1)}{new}{m.group(3)}"

    out = _ENGINE.sub(rewrite, text)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(out, encoding="utf-8")
    return changed
