"""Profiles written back to TOML (tomllib reads; the standard library has no writer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acquire_vf.config._profile import Profile


def toml_lines(d: dict[str, Any], prefix: str = "") -> list[str]:
    """A JSON-like dict as TOML: values first, then tables and arrays of tables."""
    lines: list[str] = []
    tables = []
    for k, v in d.items():
        if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
            tables.append((f"{prefix}{k}", v))
        elif v is not None:
            lines.append(f"{k} = {json.dumps(v)}")
    for name, v in tables:
        for item in [v] if isinstance(v, dict) else v:
            lines += [f"[{name}]" if isinstance(v, dict) else f"[[{name}]]"]
            lines += toml_lines(item, name + ".")
    return lines


def write_profile(profile: Profile, path: Path) -> Path:
    """Write ``profile`` as a TOML file that :func:`load_profile` reads back as the same."""
    d = profile.model_dump(mode="json", exclude_none=True)
    if not d.get("virtual_channels"):
        d.pop("virtual_channels", None)  # left out, so a profile built on it can add some
    path.write_text("\n".join(toml_lines(d)) + "\n", encoding="utf-8")
    return path


def plain_demo_profile(folder: Path, time_points: int = 100_000) -> Path:
    """The demo hardware and specimen without engines, drift or interval (``Profile.bare``,
    10 ms exposures: the camera flat out), as ``folder/demo-plain.toml``."""
    from acquire_vf.config._load import load_profile

    prof = load_profile("demo").bare(exposure_ms=10)
    prof = prof.model_copy(update={
        "name": "demo-plain",
        "description": "The demo hardware and specimen: no engines, no focus drift, no interval.",
        "acquisition": prof.acquisition.model_copy(update={"time_points": time_points})})
    return write_profile(prof, folder / "demo-plain.toml")
