"""TensorRT plan cache: a plan is reused only where it was built for exactly this situation.

The key holds the ONNX file's sha256, the TensorRT and CUDA versions, the GPU's name and
compute capability, the precision and the optimisation-profile shapes. A plan whose key does
not match, or that fails to deserialise, is rebuilt, never used. Torch- and TensorRT-free, so
the key logic is tested on every machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PlanKey:
    onnx_sha256: str
    tensorrt: str
    cuda: str
    gpu: str
    compute_capability: str
    precision: str
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    """(min, opt, max) input shapes of the optimisation profile."""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        return (f"TensorRT {self.tensorrt}, CUDA {self.cuda}, {self.gpu} "
                f"(compute {self.compute_capability}), {self.precision}")


def cache_dir() -> Path:
    env = os.environ.get("ACQUIRE_VF_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "acquire-vf" / "tensorrt"


def plan_path(name: str, key: PlanKey, root: Path | None = None) -> Path:
    return (root or cache_dir()) / f"{name}-{key.digest()[:16]}.plan"


def write_metadata(plan: Path, key: PlanKey) -> None:
    plan.with_suffix(".json").write_text(json.dumps(asdict(key), indent=2))


def mismatch(plan: Path, key: PlanKey) -> str | None:
    """Why the plan at ``plan`` must not be used here (``None`` when it fits)."""
    meta_path = plan.with_suffix(".json")
    if not plan.exists() or not meta_path.exists():
        return f"no plan at '{plan}'"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        built = PlanKey(**{**meta, "shapes": tuple(tuple(s) for s in meta["shapes"])})
    except (ValueError, TypeError, KeyError) as e:
        return f"'{meta_path.name}' is unreadable ({e})"
    if built == key:
        return None
    diffs = [f"{k}: plan {getattr(built, k)!r}, here {getattr(key, k)!r}"
             for k in asdict(key) if getattr(built, k) != getattr(key, k)]
    return (f"'{plan.name}' was built for {built.describe()}; this machine needs "
            f"{key.describe()} ({'; '.join(diffs)})")
