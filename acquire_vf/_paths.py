"""Where acquire-vf finds what it ships and where it keeps its caches, checkout or wheel.

In a checkout (the repository, an editable install) the shipped profiles, engines and recipes
are the repository's ``hardware_profiles/``, ``engines/`` and ``training/``, and caches go to
``.cache/`` at its root. An installed wheel carries the same three folders as package data,
``acquire_vf/_shipped/`` (the wheel build maps them there; their relative layout is kept, so a
shipped profile's ``../engines/NAME.onnx`` still resolves), and caches go to the user's cache
folder (``$XDG_CACHE_HOME/acquire-vf``, else ``~/.cache/acquire-vf``; ``ACQUIRE_VF_CACHE``
overrides both).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = _PACKAGE.parent
"""The checkout's root (for an installed wheel: the folder the package sits in)."""
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "engines").is_dir()


def shipped(name: str) -> Path:
    """The shipped folder ``name`` (``hardware_profiles``, ``engines`` or ``training``)."""
    return REPO_ROOT / name if IN_CHECKOUT else _PACKAGE / "_shipped" / name


def user_profiles() -> Path:
    """The user's own profiles, found by bare name before the shipped ones
    (``$XDG_CONFIG_HOME/acquire-vf/profiles``, else ``~/.config/acquire-vf/profiles``;
    ``ACQUIRE_VF_PROFILES`` overrides both). Engines a profile names resolve beside it."""
    env = os.environ.get("ACQUIRE_VF_PROFILES")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "acquire-vf" / "profiles"


def cache_root() -> Path:
    """The root of acquire-vf's caches (simulated data sets, evaluation sets, real images)."""
    env = os.environ.get("ACQUIRE_VF_CACHE")
    if env:
        return Path(env)
    if IN_CHECKOUT:
        return REPO_ROOT / ".cache"
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "acquire-vf"
