"""One factory for all backends: each in its own module, imported only when chosen.

The profile lists backends in order of preference. Without ``allow_fallback`` only the first
may run, and if it cannot the run refuses with the reason; with it, the next is tried, and every
failure is reported together. The backend that runs is logged and written to session.json.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from acquire_vf.card import ModelCard
from acquire_vf.config import Compute
from acquire_vf.inference._engine import TiledEngine
from acquire_vf.inference._errors import BackendUnavailable
from acquire_vf.inference._protocol import Runner

log = logging.getLogger(__name__)


def cpu_threads(compute: Compute) -> int:
    """Threads for CPU inference: the profile's, or all cores but one.

    The spare core is acquisition's: engines on every core would starve the frame hand-off and
    the writer, and acquisition must never wait on inference.
    """
    return compute.threads or max(1, (os.cpu_count() or 2) - 1)


def make_runner(backend: str, onnx_path: Path, card: ModelCard, compute: Compute, *,
                tile: int, batch: int) -> Runner:
    """The runner of ``backend``; a CUDA failure while making it (no GPU, an old driver, out
    of memory) is the backend being unavailable here, said in one line, not a traceback."""
    try:
        return _make_runner(backend, onnx_path, card, compute, tile=tile, batch=batch)
    except RuntimeError as e:  # torch and cuda-python raise RuntimeError for CUDA failures
        if backend == "onnxruntime":
            raise
        msg = " ".join(str(e).split())[:240]
        raise BackendUnavailable(f"{backend} cannot use the GPU here: {msg}") from e


def _make_runner(backend: str, onnx_path: Path, card: ModelCard, compute: Compute, *,
                 tile: int, batch: int) -> Runner:
    if backend == "onnxruntime":
        import onnxruntime as ort

        from acquire_vf.inference._onnxruntime import OnnxRuntimeRunner

        gpu = "CUDAExecutionProvider" in ort.get_available_providers()
        return OnnxRuntimeRunner(onnx_path, device="cuda" if gpu else "cpu",
                                 threads=cpu_threads(compute), precision=compute.precision,
                                 spin=compute.spin)
    if backend == "torch":
        from acquire_vf.inference._torch import TorchRunner

        try:
            import torch

            device = f"cuda:{compute.device}" if torch.cuda.is_available() else "cpu"
        except ImportError:
            device = "cpu"
        return TorchRunner(onnx_path, device=device, precision=compute.precision,
                           threads=cpu_threads(compute) if device == "cpu" else 0)
    if backend == "openvino":
        from acquire_vf.inference._openvino import OpenVINORunner
        from acquire_vf.inference._plan_cache import cache_dir

        return OpenVINORunner(onnx_path, threads=cpu_threads(compute),
                              precision=compute.precision, cache_dir=cache_dir() / "openvino")
    if backend == "tensorrt":
        from acquire_vf.inference._tensorrt import TensorRTRunner

        return TensorRTRunner(onnx_path, card, precision=compute.precision, tile=tile,
                              batch=batch, device=compute.device)
    raise BackendUnavailable(f"unknown backend '{backend}' (expected onnxruntime, torch, "
                             "tensorrt or openvino)")


def create_engine(onnx_path: str | Path, compute: Compute, *, tile: int | None = None,
                  overlap: int | None = None, batch: int = 4,
                  backend: str | None = None, host: Any = None) -> TiledEngine:
    """The engine for ``onnx_path`` on the first backend that may and can run it; with
    ``host`` (an :class:`~acquire_vf.engine_host.EngineHost`) the network runs there."""
    from acquire_vf.card import engine_path

    path = engine_path(Path(onnx_path))  # a bioimage.io package exported by acquire-vf too
    card = ModelCard.load(path)
    m = card.multiple_of
    tile_px = max(m, ((tile or card.tile) // m) * m)
    chosen = measured_choice(card, compute, tile_px, batch) if backend is None else None
    runner = None
    if chosen is not None:  # build-engine measured this engine here: run what it chose
        try:
            run_card = ModelCard.load(Path(chosen["onnx"]))
            runner = any_runner(Path(chosen["onnx"]), run_card, compute.model_copy(
                update={"precision": "fp32"}), backend=chosen["backend"], tile=tile_px,
                batch=batch, host=host)
            # its checks take the band measured for the file that runs (an INT8 engine
            # evaluated on the held-out set: its test-time-augmentation spread is its own,
            # 6% above the fp32 engine's for cps_er); else the fp32 engine's figures and
            # band: the choice was taken only where its output costs at most TOLERANCE_DB
            if not (run_card.acceptance and run_card.metrics.get("held_out")):
                card = run_card.model_copy(update={"metrics": card.metrics,
                                                   "acceptance": card.acceptance})
            else:
                card = run_card
        except BackendUnavailable as e:
            log.warning("engine %s: the measured choice (%s %s) cannot run here (%s); the "
                        "profile's backends instead", card.name, chosen["backend"],
                        chosen["precision"], e)
            chosen = None
    if runner is None:
        runner = any_runner(path, card, compute, backend=backend, tile=tile_px, batch=batch,
                            host=host)
    engine = TiledEngine(card, runner, tile=tile_px, overlap=overlap, batch=batch)
    engine.chosen = chosen
    return engine


def measured_choice(card: ModelCard, compute: Compute, tile: int, batch: int
                    ) -> dict[str, Any] | None:
    """What ``build-engine --profile`` measured fastest for ``card`` at this geometry on this
    machine (``[compute] measured``), or ``None``."""
    if not compute.measured or card.quantization:
        return None
    from acquire_vf.inference._choice import choice_key, load_choice

    return load_choice(choice_key(card, tile, batch, cpu_threads(compute)))


def any_runner(path: Path, card: ModelCard, compute: Compute, *, backend: str | None,
               tile: int, batch: int, host: Any = None) -> Runner:
    """:func:`first_runner`, in the engine host when one is given."""
    if host is None:
        return first_runner(path, card, compute, backend=backend, tile=tile, batch=batch)
    return host.runner(path, compute, backend=backend, tile=tile, batch=batch)


def first_runner(path: Path, card: ModelCard, compute: Compute, *, backend: str | None,
                 tile: int, batch: int) -> Runner:
    """A runner on the first backend that may and can run ``path``."""
    order = [backend] if backend else list(compute.backends)
    allowed = order if (compute.allow_fallback and not backend) else order[:1]
    failures = []
    for name in allowed:
        try:
            runner = make_runner(name, path, card, compute, tile=tile, batch=batch)
        except BackendUnavailable as e:
            failures.append(f"{name}: {e}")
            continue
        if failures:
            log.warning("engine %s: %s", card.name, "; ".join(failures))
        log.info("engine %s runs on %s (%s, %s)", card.name, runner.backend, runner.device,
                 runner.precision)
        return runner
    hint = "" if compute.allow_fallback or backend or len(order) == 1 else \
        f" (the profile does not allow falling back to {order[1:]})"
    raise BackendUnavailable(f"no backend can run '{path.name}'{hint}: {'; '.join(failures)}")
