"""TensorRT plan cache: a plan is reused only where it was built for exactly this situation.

The key holds the ONNX file's sha256, the TensorRT and CUDA versions, the GPU's name and
compute capability, the precision, the optimisation-profile shapes, the builder settings
(workspace, precision flags, TF32) and the timing cache the build used. A plan whose key does
not match, or that fails to deserialise, is rebuilt, never used. Every file (plan, metadata,
timing cache) is written whole or not at all (:func:`write_atomic`). Torch- and
TensorRT-free, so the key logic is tested on every machine.
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
    builder: str = ""
    """The builder settings that shape the plan (see ``_tensorrt.builder_settings``)."""
    timing_cache: str = ""
    """The timing cache file the build read (one per GPU and TensorRT version)."""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        return (f"TensorRT {self.tensorrt}, CUDA {self.cuda}, {self.gpu} "
                f"(compute {self.compute_capability}), {self.precision}")


def cache_dir() -> Path:
    env = os.environ.get("ACQUIRE_VF_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "acquire-vf" / "tensorrt"


def timing_cache_path(key: PlanKey, root: Path | None = None) -> Path:
    """One timing cache per GPU model, compute capability and TensorRT version: a cache from
    another GPU or version is never offered to the builder."""
    gpu = "".join(ch if ch.isalnum() else "-" for ch in key.gpu).strip("-")
    return (root or cache_dir()) / f"timing-{gpu}-sm{key.compute_capability}-trt" \
        f"{key.tensorrt}.cache"


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` entirely or keeps what it held: written beside it, then
    renamed (a crash mid-write never leaves a half plan that looks whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def plan_path(name: str, key: PlanKey, root: Path | None = None) -> Path:
    return (root or cache_dir()) / f"{name}-{key.digest()[:16]}.plan"


def write_metadata(plan: Path, key: PlanKey) -> None:
    write_atomic(plan.with_suffix(".json"), json.dumps(asdict(key), indent=2).encode())


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
