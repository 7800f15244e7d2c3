"""``[compute]``, ``[tiling]`` and ``[queues]``: where engines run and how much may wait."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from acquire_vf.config._base import Backend, _Model


class Compute(_Model):
    """Where engines run."""

    backends: tuple[Backend, ...] = ("onnxruntime",)
    """Preference order; the first that can run is used."""
    allow_fallback: bool = False
    """If false, only the first backend is acceptable and the run refuses when it cannot run."""
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    threads: int = Field(0, ge=0)
    """CPU threads for inference; 0 means all cores but one (the spare one is acquisition's)."""
    estimator_threads: int = Field(1, ge=0)
    """CPU threads for the closed loop's defocus estimators; 0 means as ``threads``. They run
    beside the pipeline's engine, so they never spin (ONNX Runtime's thread pool otherwise
    spins between operators): on 2 cores, an engine beside an estimator with all cores and
    spinning ran 22.9 frames/s, beside one thread not spinning 25.8, the estimator 26.7
    against 24.8 calls/s (``scripts/perf_threads.py``; ``docs/performance.md``, Threads)."""
    spin: bool = True
    """ONNX Runtime's intra-op threads spin between operators (faster alone: 61.9 against
    57.1 frames/s on 2 cores); off where several engines share the cores (two engines with all
    cores each: 42.3 spinning, 66.8 not)."""
    device: int = Field(0, ge=0)
    """CUDA device index."""
    measured: bool = True
    """Run each engine on the backend and precision ``acquire-vf build-engine --profile``
    measured fastest on this machine (at this tile, batch and threads), where it has; else,
    or when false, the order of ``backends``. ``session.json`` says which and why
    (``engine_choices``)."""
    host: Literal["process", "thread"] = "process"
    """Where engines run: ``process``, an engine host process (``python -m
    acquire_vf.engine_host``) whose crash, hang or out-of-memory never touches acquisition;
    ``thread``, in the acquisition process (as before; for debugging)."""
    host_deadline_s: float = Field(10.0, gt=0)
    """``process``: a call the host has not answered in this time is a hang (the host is
    killed and restarted)."""
    host_restarts: int = Field(5, ge=0)
    """``process``: restarts allowed per run, with backoff; after them virtual channels stay
    off (``on_failure = "expose"`` channels exposed)."""


class Tiling(_Model):
    """Frames are cut into overlapping tiles, run in batches and blended back."""

    tile: int = Field(512, ge=64, multiple_of=32)
    overlap: int = Field(32, ge=0)
    batch: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _overlap_fits(self) -> Tiling:
        if self.overlap * 2 >= self.tile:
            raise ValueError(f"overlap {self.overlap} must be less than half the tile {self.tile}")
        return self


class Queues(_Model):
    """Bounds between acquisition and its consumers. Acquisition never waits on any of them."""

    pipeline: int = Field(1, ge=1)
    """Frame sets waiting for the engines; 1 is a latest-frame slot (lowest latency)."""
    kept: int = Field(8, ge=1)
    """Frame sets a check needs (sentinels, a channel under checks) that may wait for the
    engines; past this the oldest is skipped and recorded (bounded memory when the engines
    are slower than the camera)."""
    hold_for_newer: bool = True
    """With the one-set slot: when the engines come free and the waiting set has waited more
    than half the interval sets arrive at, hold for the next set and run that (virtual frames
    about the model's own time old, not up to a whole interval more; when the engines are
    slower than the camera, a few percent fewer of them). ``false`` runs the waiting set."""
    virtual_write: int = Field(64, ge=1)
    """Virtual frames waiting to be written; beyond this they are skipped and recorded."""
    raw_write_mb: int = Field(1024, ge=16)
    """Memory for raw frames waiting to be written; if exceeded the run stops (never drops)."""
    mm_buffer_mb: int = Field(1024, ge=1)
    """Micro-Manager circular buffer size."""
