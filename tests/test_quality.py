"""Lint and types are part of the suite, so CI's single test command enforces them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "cmd",
    [[sys.executable, "-m", "ruff", "check", "acquire_vf", "tests", "scripts", "run.py"],
     [sys.executable, "-m", "mypy"]],
    ids=["ruff", "mypy"],
)
def test_tool_is_clean(cmd: list[str]) -> None:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
