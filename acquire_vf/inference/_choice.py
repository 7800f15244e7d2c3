"""The backend and precision measured fastest for an engine on this machine.

``acquire-vf build-engine --profile P`` on a CPU-only machine times every backend and
precision it can run (:mod:`acquire_vf._fastest`) and keeps here, in the engine cache, the
fastest whose output stays within the card's tolerance of fp32 ONNX Runtime's. A session whose
``[compute] measured`` is on (the default) runs that choice for the engine at the same tile,
batch and threads on the same CPU model; anything else (another geometry, another CPU, the
file changed) finds no choice and runs the profile's ``backends`` as before.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acquire_vf.card import ModelCard, sha256_file
from acquire_vf.inference._plan_cache import cache_dir, write_atomic

CHOICES = "choices"
"""Folder of the engine cache holding the measured choices."""


def cpu_model() -> str:
    """This CPU's model name (the choice of one CPU says nothing about another)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class ChoiceKey:
    """What a measured choice holds for: the fp32 engine, the tiling, the threads, the CPU."""

    onnx_sha256: str
    tile: int
    batch: int
    threads: int
    cpu: str

    def path(self, root: Path | None = None) -> Path:
        cpu = "".join(ch if ch.isalnum() else "-" for ch in self.cpu).strip("-")[:48]
        return (root or cache_dir() / CHOICES) / (
            f"{self.onnx_sha256[:16]}-tile{self.tile}-batch{self.batch}-threads{self.threads}"
            f"-{cpu}.json")


def choice_key(card: ModelCard, tile: int, batch: int, threads: int) -> ChoiceKey:
    return ChoiceKey(card.onnx_sha256, tile, batch, threads, cpu_model())


def save_choice(key: ChoiceKey, choice: dict[str, Any]) -> Path:
    path = key.path()
    write_atomic(path, (json.dumps(choice, indent=1) + "\n").encode())
    return path


def load_choice(key: ChoiceKey) -> dict[str, Any] | None:
    """The choice measured for ``key``, if its file to run is still the one measured."""
    path = key.path()
    try:
        choice = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run = Path(choice.get("onnx", ""))
    if choice.get("key") != _as_dict(key) or not run.is_file() \
            or sha256_file(run) != choice.get("onnx_sha256"):
        return None
    return dict(choice)


def _as_dict(key: ChoiceKey) -> dict[str, Any]:
    return {"onnx_sha256": key.onnx_sha256, "tile": key.tile, "batch": key.batch,
            "threads": key.threads, "cpu": key.cpu}


def choice_record(key: ChoiceKey, **fields: Any) -> dict[str, Any]:
    """The JSON a choice is kept as (``key`` in it, so a renamed file cannot mislead)."""
    return {"key": _as_dict(key), **fields}
