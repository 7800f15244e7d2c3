#!/usr/bin/env python3
"""Set up ``.venv`` at the repository root (create or reuse) and run the demo or the tests.

Usage::

    python3 run.py demo [acquire-vf demo options]
    python3 run.py test [pytest options]

Needs only Python 3.11+ with pip. The environment is reinstalled only when ``pyproject.toml``
or ``constraints.txt`` changed since the last install (a stamp file in ``.venv`` records that),
so the second call starts in seconds.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
EXTRAS = {"demo": "gui", "test": "dev,train,gui"}


def _venv_python() -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return VENV / sub / ("python.exe" if os.name == "nt" else "python")


def _stamp(extras: str) -> str:
    h = hashlib.sha256(extras.encode())
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def ensure_venv(extras: str) -> Path:
    """Create ``.venv`` if missing and install the package with ``extras`` if out of date."""
    if sys.version_info < (3, 11):  # noqa: UP036 - run.py may be started by an old python3
        sys.exit(f"acquire-vf needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    py = _venv_python()
    if not py.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp_file = VENV / f".acquire-vf-{extras.replace(',', '-')}.stamp"
    stamp = _stamp(extras)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return py
    print(f"installing acquire-vf[{extras}] into {VENV}", flush=True)
    cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[{extras}]"]
    subprocess.run(cmd, check=True)
    stamp_file.write_text(stamp)
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    py = ensure_venv(EXTRAS[what])
    if what == "demo":
        return subprocess.call([str(py), "-m", "acquire_vf", "demo", *rest], cwd=ROOT)
    # One pytest: conftest runs Qt tests, and Micro-Manager in-process tests beside torch
    # tests, in child processes of its own (see tests/conftest.py).
    return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
