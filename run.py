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
TORCH_TEST_MODULES = ("test_training.py", "test_inference.py")


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
    if rest:
        return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT)
    # The whole suite, in two processes: the modules that train and run PyTorch in-process,
    # and the rest (which runs Micro-Manager in-process). Live runs never load both either.
    torch_modules = [f"tests/{m}" for m in TORCH_TEST_MODULES]
    first = subprocess.call([str(py), "-m", "pytest", *torch_modules], cwd=ROOT)
    ignore = [f"--ignore={m}" for m in torch_modules]
    second = subprocess.call([str(py), "-m", "pytest", *ignore], cwd=ROOT)
    return first or second


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
