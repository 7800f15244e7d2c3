#!/usr/bin/env python3
"""Set up ``.venv`` at the repository root (create or reuse) and run the demo or the tests.

Usage::

    python3 run.py demo [acquire-vf demo options]
    python3 run.py test [pytest options]   # three pytest processes at once (see run_tests)

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
EXTRAS = {"demo": "gui", "test": "dev,train,gui,cluster,pymmcore-plus,openvino"}


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
    return run_tests(py, rest)


GROUPS = ("qt", "mmcore")
"""Test groups that run in pytest processes of their own, beside the main one: Qt widgets
(the main process must never load Qt) and Micro-Manager in-process (torch beside it has
crashed). See tests/conftest.py."""


def run_tests(py: Path, args: list[str]) -> int:
    """pytest three times at once: the main selection, and each group's tests in a process of
    its own (``-m`` given is combined with each); their output follows the main run's. Exit
    code: the first failure's (a group with nothing selected counts as passed)."""
    import tempfile

    marks, rest, i = None, [], 0
    while i < len(args):
        if args[i] == "-m" and i + 1 < len(args):
            marks, i = args[i + 1], i + 2
            continue
        if args[i].startswith("-m") and len(args[i]) > 2:
            marks, i = args[i][2:], i + 1
            continue
        rest.append(args[i])
        i += 1

    def expr(group: str | None) -> str:
        own = group or " and ".join(f"not {g}" for g in GROUPS)
        return f"({marks}) and ({own})" if marks else own

    shared = tempfile.mkdtemp(prefix="acquire-vf-test-engines-")
    env = {**os.environ, "ACQUIRE_VF_TEST_ENGINES": shared, "PYTHONFAULTHANDLER": "1"}
    logs = Path(tempfile.mkdtemp(prefix="acquire-vf-test-groups-"))
    beside = {}
    for g in GROUPS:
        extra = {"QT_QPA_PLATFORM": "offscreen", "QT_LOGGING_RULES": "qt.qpa.*=false"} \
            if g == "qt" else {}
        out = open(logs / f"{g}.txt", "w+")  # noqa: SIM115 - read and closed below
        proc = subprocess.Popen([str(py), "-m", "pytest", "-p", "no:cacheprovider", *rest,
                                 "-m", expr(g)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "ACQUIRE_VF_TEST_GROUP": g, **extra})
        beside[g] = (proc, out)
    codes = [subprocess.call([str(py), "-m", "pytest", *rest, "-m", expr(None)], cwd=ROOT,
                             env={**env, "ACQUIRE_VF_TEST_GROUP": "main"})]
    for g, (proc, out) in beside.items():
        codes.append(proc.wait())
        out.seek(0)
        print(f"\n===== the '{g}' tests, in a pytest process of their own =====", flush=True)
        print(out.read(), flush=True)
        out.close()
    import shutil

    shutil.rmtree(shared, ignore_errors=True)
    shutil.rmtree(logs, ignore_errors=True)
    failed = [c for c in codes if c not in (0, 5)]  # 5: nothing selected in that process
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
