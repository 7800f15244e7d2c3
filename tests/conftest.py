"""Shared fixtures: the real Micro-Manager demo configuration, started once per test process.

pycromanager's Python backend cannot be restarted within a process, so the microscope is
session-scoped; tests that need a fresh process (crash, disk-full) run the CLI as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._helpers import ROOT, run_cli


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


# ----- tests that must run in a child pytest process --------------------------------------
#
# Two kinds of test never run in the main test process:
# - ``qt``: they build Qt widgets in-process (offscreen). The main process must never load Qt
#   (tests assert it), so they run in one child process with QT_QPA_PLATFORM=offscreen.
# - Micro-Manager in-process tests (those using the ``microscope`` fixture) when the same
#   selection also runs ``torch`` tests: torch imported beside an in-process Micro-Manager has
#   crashed (SIGSEGV in torch's import of sympy), so they go to a child that never imports
#   torch. Alone (``pytest tests/test_acquisition.py``) they run in-process.
# The children start when collection ends and run beside this process (``BESIDE``), which
# runs its own tests first: the tests that compute for minutes and time nothing (type
# checking, the wheel, training, exports: ``FIRST``) lead, while the child runs, so paced runs
# and the tests that bound a stop time come after. The delegated tests are reported last,
# each with the outcome its child recorded for it (JUnit XML). So a plain ``pytest`` is safe
# and complete.

BESIDE = {"qt", "mmcore"}
"""Child groups started at once, beside this process. Beside other work the Micro-Manager child
twice died, in Micro-Manager's circular buffer and in the engine host's memory: two races,
both fixed on 2026-12-02; a full run with it beside took 20:16 against 22:42 with it alone
at the end. A child that dies fails each of its tests with its output kept."""

FIRST = ("tests/test_quality.py", "tests/test_packaging.py", "tests/test_training.py",
         "tests/test_defocus_training.py", "tests/test_bioimageio.py")
"""Modules that run first, beside the child processes: long, CPU-bound, and timing nothing."""

CHILD_ENV = "ACQUIRE_VF_TEST_CHILD"
SHARED_ENGINES_ENV = "ACQUIRE_VF_TEST_ENGINES"
"""The folder where the ``engines`` fixture builds its engines once per pytest session: the
main process and its child processes (which inherit this variable) use the same files."""


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(CHILD_ENV) and not os.environ.get(SHARED_ENGINES_ENV):
        import tempfile

        os.environ[SHARED_ENGINES_ENV] = tempfile.mkdtemp(prefix="acquire-vf-test-engines-")
        config.stash[_SHARED] = os.environ[SHARED_ENGINES_ENV]


def _group(item: pytest.Item, torch_selected: bool) -> str | None:
    if os.environ.get(CHILD_ENV):
        return None
    if item.get_closest_marker("qt") is not None:
        return "qt"
    if torch_selected and "microscope" in getattr(item, "fixturenames", ()):
        return "mmcore"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "engines" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)  # trains two engines first (about a minute)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Group what runs in child processes, from the final selection (after -m and -k); start
    the children; order this process's tests (:data:`FIRST` first, the children's last)."""
    config, items = session.config, session.items
    torch_selected = any(i.get_closest_marker("torch") for i in items)
    groups: dict[str, list[str]] = {}
    for item in items:
        group = _group(item, torch_selected)
        if group is not None:
            groups.setdefault(group, []).append(item.nodeid)
            item.stash[_GROUP] = group
            item.add_marker(pytest.mark.timeout(3600))  # the child has its own limits
    config.stash[_GROUPS] = groups
    if config.option.collectonly or not groups:
        return
    items.sort(key=lambda i: (_GROUP in i.stash, not i.nodeid.startswith(FIRST)))
    for group in set(groups) & BESIDE:
        _children[group] = _Child(group, groups[group])


_GROUP = pytest.StashKey[str]()
_GROUPS = pytest.StashKey[dict]()


class _Child:
    """A child pytest process running one group's tests, started at once, read when done."""

    TIMEOUT_S = 3000

    def __init__(self, group: str, nodeids: list[str]) -> None:
        import tempfile

        self.group = group
        self._dir = tempfile.TemporaryDirectory(prefix=f"acquire-vf-test-{group}-")
        self._xml = Path(self._dir.name) / "results.xml"
        self._log = open(Path(self._dir.name) / "output.txt", "w+")  # noqa: SIM115 - closed in
        env = {**os.environ, CHILD_ENV: group, "QT_QPA_PLATFORM": "offscreen",  # results()
               "QT_LOGGING_RULES": "qt.qpa.*=false", "PYTHONFAULTHANDLER": "1"}
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
             f"--junitxml={self._xml}", *nodeids], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, text=True)
        self._results: dict[str, tuple[str, str]] | None = None

    def results(self) -> dict[str, tuple[str, str]]:
        """Wait for the child; each test's (outcome, text) from its JUnit XML."""
        if self._results is not None:
            return self._results
        import xml.etree.ElementTree as ET

        try:
            self.proc.wait(timeout=max(1.0, self.TIMEOUT_S - (time.monotonic() - self._t0)))
        except subprocess.TimeoutExpired:
            self.stop()
        self._log.seek(0)
        output = self._log.read()
        self._log.close()
        results: dict[str, tuple[str, str]] = {}
        try:
            if not self._xml.is_file():  # it died: each of its tests fails with where it died
                import tempfile

                kept = Path(tempfile.gettempdir()) / f"acquire-vf-test-{self.group}-died.log"
                kept.write_text(output)
                fatal = output.find("Fatal Python error")
                where = output[fatal:fatal + 6000] if fatal >= 0 else output[-6000:]
                self._results = {"*": ("error", f"the {self.group} child process died (exit "
                                                f"{self.proc.returncode}) and wrote no results "
                                                f"(its whole output: {kept}):\n{where}")}
                return self._results
            for case in ET.parse(self._xml).getroot().iter("testcase"):
                module = case.get("classname", "").replace(".", "/")
                nodeid = f"{module}.py::{case.get('name')}"
                outcome, text = "passed", ""
                for kind in ("failure", "error", "skipped"):
                    el = case.find(kind)
                    if el is not None:
                        outcome = kind
                        text = (el.get("message") or "") + "\n" + (el.text or "")
                        break
                if outcome == "passed" or nodeid not in results:
                    results[nodeid] = (outcome, text)
        finally:
            self._dir.cleanup()
        self._results = results
        return results

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_children: dict[str, _Child] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    """Report a delegated test from its child's result, with no setup in this process (its
    fixtures, Micro-Manager's among them, are set up in the child)."""
    group = item.stash.get(_GROUP, None)
    if group is None:
        return None
    from _pytest.reports import TestReport

    ihook = item.ihook
    ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    t0 = time.time()
    if group not in _children:  # a group that runs alone, when its first test is reached
        _children[group] = _Child(group, item.config.stash[_GROUPS][group])
    results = _children[group].results()
    outcome, text = results.get(item.nodeid, results.get("*", ("error", "no result from child")))
    took = time.time() - t0

    def report(when: str, result: str, longrepr: object = None) -> None:
        ihook.pytest_runtest_logreport(report=TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords}, result, longrepr, when,
            duration=took if when == "call" else 0.0))

    if outcome == "skipped":
        reason = text.strip().splitlines()[0] if text.strip() else "skipped in the child"
        report("setup", "skipped", (str(item.path), item.location[1] or 0, reason))
    else:
        report("setup", "passed")
        report("call", "passed" if outcome == "passed" else "failed",
               None if outcome == "passed" else f"[ran in the {group} child process] "
               f"{text[-4000:]}")
    report("teardown", "passed")
    item.session._setupstate.teardown_exact(nextitem)  # what earlier tests left set up
    ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


@pytest.fixture(autouse=True)
def _close_qt_windows():
    """In the Qt child, each test leaves no window behind for the next one to find."""
    yield
    if os.environ.get(CHILD_ENV) == "qt" and "PySide6" in sys.modules:
        from pyqtgraph.Qt import QtWidgets

        app = QtWidgets.QApplication.instance()
        if app is not None:
            for w in app.topLevelWidgets():
                w.close()
            app.processEvents()


_EXIT = pytest.StashKey[int]()
_SHARED = pytest.StashKey[str]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT] = int(exitstatus)
    for child in _children.values():  # stopped early (-x, Ctrl-C): no child outlives us
        child.stop()
    shared = session.config.stash.get(_SHARED, None)
    if shared:  # the main process made the shared engines' folder: it removes it
        import shutil

        shutil.rmtree(shared, ignore_errors=True)
        os.environ.pop(SHARED_ENGINES_ENV, None)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The Qt child leaves without tearing Qt down (PySide6 can crash at interpreter exit);
    its results are already written."""
    if os.environ.get(CHILD_ENV) == "qt" and "PySide6" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash.get(_EXIT, 0))
