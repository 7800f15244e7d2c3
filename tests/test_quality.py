"""Lint and types are part of the suite, so CI's single test command enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._helpers import ROOT


@pytest.mark.parametrize(
    "cmd",
    [pytest.param([sys.executable, "-m", "ruff", "check", "acquire_vf", "tests", "scripts",
                   "run.py"], id="ruff"),
     # mypy takes 40 s on a cold cache (a fresh clone, CI): part of the whole suite only
     pytest.param([sys.executable, "-m", "mypy"], id="mypy", marks=pytest.mark.slow)],
)
def test_tool_is_clean(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ----- layering ------------------------------------------------------------------------------

LAYERS: list[set[str]] = [
    {"__init__", "_errors", "_paths", "_frames", "_stats", "card", "layouts", "focus",
     "metrics", "pairs", "tolerance", "fidelity", "optics", "psf_fit", "subpixel"},  # leaves
    {"config"},
    {"storage", "inference", "simulate"},
    {"pipeline", "engine_host"},
    {"backends"},
    {"acquisition"},
    {"display", "training", "evaluate", "quantize"},
    {"calibration", "interop"},
    {"_session", "_api", "bench", "_bench_host", "_bench_storage", "_validate", "_recover",
     "_guard", "_control", "_attach", "_napari_attach", "_fastest"},
    {"distributed"},  # the live run's stages (_session.build_stages) on Dask workers
    {"_cli", "_cli_app", "_cli_train", "_cli_evaluate", "_cli_calibrate", "_cli_docs",
     "_cli_control", "_cli_predict", "_cli_fastest", "__main__"},
]
"""DESIGN.md's order: each unit imports only from tiers below it. Top-level modules of one
tier may use each other (``bench`` runs sessions); subpackages of one tier may not."""
PACKAGE = ROOT / "acquire_vf"


def _tier(unit: str) -> int:
    for i, tier in enumerate(LAYERS):
        if unit in tier:
            return i
    raise AssertionError(f"'{unit}' is in no tier of the layering; add it to LAYERS")


def _imports(path, package=PACKAGE) -> list[tuple[int, str]]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    if path == package / "__init__.py":  # the root's lazy ``__getattr__`` (``acquire_vf.acquire``)
        tree.body = [n for n in tree.body  # loads on first use: no tier below depends on it
                     if not (isinstance(n, ast.FunctionDef) and n.name == "__getattr__")]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "acquire_vf":
            out += [(node.lineno, f"acquire_vf.{a.name}") for a in node.names
                    if not a.name.startswith("__")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
    return [(n, m) for n, m in out if m.startswith("acquire_vf.")]


def layering_problems(package: Path = PACKAGE) -> list[str]:
    """Every import of ``package`` (the package's tree, or a copy of it) against
    :data:`LAYERS`."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        me = parts[0]
        is_package = (package / me).is_dir()
        for line, mod in _imports(path, package):
            target = mod.split(".")
            unit = target[1]
            where = f"{path.relative_to(package.parent)}:{line}"
            if unit == me:
                continue
            if len(target) >= 3 and target[2].startswith("_") and (package / unit).is_dir():
                problems.append(f"{where} imports {mod}, a private module of another "
                                "subpackage (import what its __init__ exports)")
            mine, theirs = _tier(me), _tier(unit)
            if theirs > mine or (theirs == mine and (is_package or (package / unit).is_dir())):
                problems.append(f"{where}: {me} (tier {mine}) imports {mod} (tier {theirs})")
    return problems


def test_layering_holds() -> None:
    problems = layering_problems()
    assert not problems, "\n".join(problems)


def test_layering_check_catches_an_upward_import(tmp_path) -> None:
    """The check itself: an upward and a private import, added to a module of a copy of the
    package (the package itself is never written to), are found."""
    import shutil

    copy = tmp_path / "acquire_vf"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.onnx"))
    src = (copy / "storage" / "_folder.py").read_text()
    (copy / "storage" / "_layering_probe.py").write_text(
        src + "\nfrom acquire_vf.acquisition import RunState  # noqa\n"
        "from acquire_vf.inference._tiling import run_tiled  # noqa\n")
    problems = layering_problems(copy)
    assert any("_layering_probe.py" in p and "tier 5" in p for p in problems), problems
    assert any("_layering_probe.py" in p and "private module" in p for p in problems)
