"""What a worker does: the live run's refocus and synthesis stages, built once per process,
run on one frame set of a saved dataset read where the worker is.

The stages are the live run's own (:func:`acquire_vf._session.build_stages`): the refocus
gate, the input checks, the uncertainty passes and the QC flags are the same code, on the same
engines. Offline, refocus runs on every frame (``policy = "always"``: the gate decides per
frame), because a policy that compares a frame with the frames before it would make the
result depend on which worker saw which frames.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._frames import Frame, FrameId
from acquire_vf.config import Profile

SetKey = tuple[int, int, int]
"""(t, p, z): one frame set of the input."""


@dataclass
class SetResult:
    """A frame set's virtual frames (pixels and QC per channel) and what was not made."""

    key: SetKey
    frames: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    not_made: dict[str, str] = field(default_factory=dict)
    """Virtual channel -> why it is not in the output for this set (one line)."""
    worker: str = ""
    seconds: float = 0.0


class Worker:
    """One process's engines and open inputs (built on first use, then kept)."""

    def __init__(self, profile: Profile, backend: str | None) -> None:
        from acquire_vf._session import build_stages
        from acquire_vf.pipeline import RefocusStage, RunStages

        stages, _ = build_stages(profile, backend=backend)
        refocus = stages.refocus
        if refocus is not None:  # every frame through the gate; no order-dependent policy
            # the profile's defocus estimators, idle offline, are the gate's second witness
            est = stages.estimate.estimators if stages.estimate is not None else None
            refocus = RefocusStage(refocus.engines, policy="always", estimators=est)
        self.stages = RunStages(refocus=refocus, synthesis=stages.synthesis).pipeline()
        self.outputs = [c for s in self.stages for c in s.outputs]
        self._inputs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def dataset(self, path: str) -> Any:
        from acquire_vf.distributed._source import open_source

        with self._lock:
            if path not in self._inputs:
                self._inputs[path] = open_source(Path(path))
            return self._inputs[path]

    def process(self, path: str, key: SetKey) -> SetResult:
        """The virtual frames of frame set ``key`` of the dataset at ``path``."""
        import time

        from acquire_vf.pipeline import FrameSet

        t0 = time.perf_counter()
        t, p, z = key
        planes = self.dataset(path).frame_set(key)
        frames = {c: Frame(FrameId(t, p, z, c), px, seq=0, elapsed_ms=0.0, z_um=zu)
                  for c, (px, zu) in planes.items()}
        fs = FrameSet(t, p, z, frames, raw=dict(frames))
        out = SetResult(key)
        virtual = {c.name for c in self.outputs}
        for stage in self.stages:
            try:
                produced = stage.process(fs)
            except Exception as e:  # noqa: BLE001 - one engine's failure costs its channels
                for c in stage.outputs:
                    out.not_made[c.name] = f"engine failed: {type(e).__name__}: {e}"
                continue
            for name, frame in produced.items():
                if name in virtual:
                    out.frames[name] = (frame.pixels, dict(frame.qc))
                else:  # a refocused frame replaces its channel for the stages after it
                    fs.frames[name] = frame
            for name, why in fs.scores.pop("not_made", {}).items():
                out.not_made[name] = why
        out.seconds = time.perf_counter() - t0
        return out


_WORKER: dict[str, Worker] = {}
"""This process's worker, per profile and backend (a cluster worker holds one)."""
_LOCK = threading.Lock()


def worker_for(profile: Profile, backend: str | None) -> Worker:
    """This process's :class:`Worker` for ``profile`` (made once; engines load once)."""
    key = f"{profile.name}:{hash(profile.model_dump_json())}:{backend}"
    with _LOCK:
        if key not in _WORKER:
            _WORKER[key] = Worker(profile, backend)
        return _WORKER[key]


def run_set(profile: Profile, backend: str | None, path: str, key: SetKey) -> SetResult:
    """The task a cluster runs: one frame set, on this process's engines."""
    import socket

    res = worker_for(profile, backend).process(path, key)
    res.worker = _worker_name() or socket.gethostname()
    return res


def run_sets(profile: Profile, backend: str | None, path: str,
             keys: list[SetKey]) -> list[SetResult]:
    """The task a cluster runs for ``--chunk N``: several frame sets in one task (one
    scheduler round trip for ``N`` sets); a set that fails says why, the rest go on."""
    out = []
    for key in keys:
        try:
            out.append(run_set(profile, backend, path, key))
        except Exception as e:  # noqa: BLE001 - one set's failure costs that set
            out.append(failed_set(key, e))
    return out


def failed_set(key: SetKey, e: BaseException) -> SetResult:
    """A frame set that could not be read or run: a result saying why, in one line."""
    from acquire_vf._errors import DataError

    why = str(e) if isinstance(e, DataError) else f"{type(e).__name__}: {e}"
    return SetResult(key, not_made={"*": why})


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return ""
