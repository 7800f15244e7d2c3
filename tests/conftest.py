"""Shared fixtures: the real Micro-Manager demo configuration, started once per test process.

pycromanager's Python backend cannot be restarted within a process, so the microscope is
session-scoped; tests that need a fresh process (crash, disk-full) run the CLI as a subprocess.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

from tests._helpers import run_cli


@pytest.fixture
def plain_demo(tmp_path: Path) -> Path:
    """A profile file of the demo hardware without engines, drift or interval (camera flat
    out), for CLI runs that need many frames quickly: ``live --profile PATH``."""
    from acquire_vf.config import plain_demo_profile as plain_profile

    folder = tmp_path / "profile"
    folder.mkdir()
    return plain_profile(folder)


@pytest.fixture(scope="session")
def microscope():
    from acquire_vf.backends import connect
    from acquire_vf.config import load_profile

    return connect(load_profile("demo"))


@pytest.fixture
def core(microscope):
    """The demo core, with camera ROI and circular buffer restored after the test."""
    c = microscope.core
    exposure = c.get_exposure()
    yield c
    c.clear_roi()
    c.set_exposure(exposure)


@pytest.fixture(scope="session")
def engines(tmp_path_factory):
    """Real engines, made the way users make them: ``acquire-vf train``, then ``export``.

    ``dna``: AGP + RNA -> DNA (synthesis); ``refocus``: DNA -> DNA (refocus, residual, as the
    shipped refocus engines are). A few steps only:
    these test the machinery, not quality. Built by the CLI in child processes, so test
    processes that run Micro-Manager in-process never import torch (as live runs don't).
    """
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # found, never imported: this process may
        pytest.skip("training needs PyTorch (the train extra)")  # run Micro-Manager
    import fcntl

    shared = os.environ.get(SHARED_ENGINES_ENV)  # one build for this pytest and its children
    root = Path(shared) if shared else tmp_path_factory.mktemp("engines")
    with open(root / "lock", "w") as lock:  # the children run beside this process: one builds,
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for it and use its files
        return _build_engines(root)


def _build_engines(root: Path) -> dict[str, Path]:
    names = ("dna", "refocus")
    if (root / "built").is_file():  # a process of this session built them: the same files
        return {n: root / "engines" / f"{n}.onnx" for n in names}
    cache = root / "data"
    specs = {
        "dna": ("synthesis", "bbbc022", '["AGP", "RNA"]', "DNA", "false"),
        "refocus": ("refocus", "bbbc006", '["DNA"]', "DNA", "true"),
    }
    out = {}
    for name, (task, layout, inputs, target, residual) in specs.items():
        recipe = root / f"{name}.toml"
        recipe.write_text(
            f'name = "{name}"\ntask = "{task}"\nresidual = {residual}\n'
            f'[data]\nlayout = "{layout}"\n'
            f'simulate = "{layout}"\ninputs = {inputs}\ntarget = "{target}"\n'
            f'cache = "{cache}"\n[data.simulated]\nfields = 3\nseed = 5\n'
            f"size = [128, 128]\n[train]\nsteps = 3\nbatch = 2\npatch = 64\n"
            f"val_patches = 2\n")
        r = run_cli("train", str(recipe), "--out", str(root / name), "--overwrite",
                    timeout=600)  # --overwrite: a build another process left half done
        assert r.returncode == 0, r.stderr[-2000:]
        out[name] = root / "engines" / f"{name}.onnx"
        r = run_cli("export", str(root / name / "checkpoints" / "last.pt"), "--out",
                    str(out[name]), "--overwrite", timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    assert set(out) == set(names)
    (root / "built").write_text("dna refocus\n")
    return out


# ----- test groups that run in pytest processes of their own -------------------------------
#
# Two kinds of test do not share a process with the rest (``run.py test`` runs each group in
# a pytest process of its own, beside the main one, and sums their exit codes):
# - ``qt``: they build Qt widgets in-process (offscreen); the rest must never load Qt (a test
#   asserts it), and PySide6 can crash at interpreter exit.
# - ``mmcore``: Micro-Manager in-process (the ``microscope`` fixture), which torch imported
#   beside it has crashed (SIGSEGV in torch's import of sympy).
# A plain ``pytest`` whose selection mixes a group with other tests skips the group's tests,
# saying where they run; a selection of one group alone (``pytest tests/test_live_window.py``)
# runs in-process.

GROUPS = ("qt", "mmcore")
GROUP_ENV = "ACQUIRE_VF_TEST_GROUP"
"""Which group this pytest process runs (``run.py test`` sets it): ``main``, ``qt``, ``mmcore``."""
FIRST = ("tests/test_quality.py", "tests/test_packaging.py", "tests/test_training.py",
         "tests/test_defocus_training.py", "tests/test_bioimageio.py")
"""Modules the main process runs first: long, CPU-bound and timing nothing, while the groups'
processes start beside it; paced runs and the tests that bound a stop time come after."""
SHARED_ENGINES_ENV = "ACQUIRE_VF_TEST_ENGINES"
"""The folder where the ``engines`` fixture builds its engines once: ``run.py test`` makes it
for all its pytest processes, which share the files (a lock lets one build them)."""
_SHARED = pytest.StashKey[str]()
_CACHE = pytest.StashKey[str]()
ENGINE_CACHE_ENV = "ACQUIRE_VF_ENGINE_CACHE"
_EXIT = pytest.StashKey[int]()


def group_of(item: pytest.Item) -> str | None:
    """The group ``item`` belongs to, or ``None`` (the main process's)."""
    for g in GROUPS:
        if item.get_closest_marker(g) is not None:
            return g
    return None


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    if not os.environ.get(SHARED_ENGINES_ENV):
        os.environ[SHARED_ENGINES_ENV] = tempfile.mkdtemp(prefix="acquire-vf-test-engines-")
        config.stash[_SHARED] = os.environ[SHARED_ENGINES_ENV]
    if not os.environ.get(ENGINE_CACHE_ENV):
        # the tests never read this machine's engine cache: a path build-engine measured
        # fastest here (an INT8 engine, say) would change what every session test runs
        os.environ[ENGINE_CACHE_ENV] = tempfile.mkdtemp(prefix="acquire-vf-test-cache-")
        config.stash[_CACHE] = os.environ[ENGINE_CACHE_ENV]


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "engines" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)  # trains two engines first (about a minute)
        if "microscope" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mmcore)
    items.sort(key=lambda i: not i.nodeid.startswith(FIRST))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Outside ``run.py test``: a selection that mixes a group with other tests skips the
    group's tests, naming where they run."""
    kinds = {group_of(i) for i in session.items}
    if kinds == {"qt"}:  # Qt widgets, offscreen (run.py sets it for its Qt process too)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        os.environ.setdefault("QT_LOGGING_RULES", "qt.qpa.*=false")
    if os.environ.get(GROUP_ENV) or len(kinds) < 2:
        return
    for item in session.items:
        g = group_of(item)
        if g is not None:
            item.add_marker(pytest.mark.skip(
                reason=f"'{g}' tests run in a pytest process of their own: python3 run.py test "
                       f"(or pytest -m {g})"))


@pytest.fixture(autouse=True)
def _close_qt_windows():
    """In the Qt process, each test leaves no window behind for the next one to find, and its
    Qt objects are freed on the GUI thread (freed by a collection in another thread, Qt can
    crash)."""
    yield
    if "PySide6" in sys.modules:
        from pyqtgraph.Qt import QtWidgets

        app = QtWidgets.QApplication.instance()
        if app is not None:
            for w in app.topLevelWidgets():
                w.close()
            app.processEvents()
        gc.collect()  # the test's Qt cycles go here, on the GUI thread, not in a later thread


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)
    import shutil

    for key, env in ((_SHARED, SHARED_ENGINES_ENV), (_CACHE, ENGINE_CACHE_ENV)):
        made = session.config.stash.get(key, None)
        if made:  # this process made the folder: it removes it
            shutil.rmtree(made, ignore_errors=True)
            os.environ.pop(env, None)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """A process that loaded Qt leaves without tearing it down (PySide6 can crash at
    interpreter exit); its results are already reported."""
    if "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash.get(_EXIT, 0))
