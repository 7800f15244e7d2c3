"""Shared fixtures: the real Micro-Manager demo configuration, started once per test process.

pycromanager's Python backend cannot be restarted within a process, so the microscope is
session-scoped; tests that need a fresh process (crash, disk-full) run the CLI as a subprocess.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from acquire_vf.config import PROFILES_DIR, Profile, profile_from_dict

ROOT = Path(__file__).resolve().parents[1]


def demo_dict() -> dict[str, Any]:
    return tomllib.loads((PROFILES_DIR / "demo.toml").read_text())


def _merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def make_profile(**updates: Any) -> Profile:
    """The demo profile with ``updates`` merged in (nested dicts merge, other values replace;
    ``connection`` is replaced whole, since each kind has its own fields)."""
    base = demo_dict()
    if "connection" in updates:
        base.pop("connection")
    return profile_from_dict(_merge(base, updates), source="test profile")


@pytest.fixture(scope="session")
def microscope():
    from acquire_vf.config import load_profile
    from acquire_vf.microscope import connect

    return connect(load_profile("demo"))


@pytest.fixture
def core(microscope):
    """The demo core, with camera ROI and circular buffer restored after the test."""
    c = microscope.core
    exposure = c.get_exposure()
    yield c
    c.clear_roi()
    c.set_exposure(exposure)


def run_cli(*args: str, timeout: float = 180, env: dict[str, str] | None = None,
            **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``acquire-vf ARGS`` in a fresh interpreter (its own Micro-Manager)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "acquire_vf", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT, **kw)
