"""The fastest CPU path for each engine of a profile, chosen by measurement (``acquire-vf
build-engine --profile P`` on a machine without an NVIDIA GPU; issue 37).

Every backend this machine can run (ONNX Runtime, OpenVINO) in fp32, and in int8 where an
INT8 engine made by ``acquire-vf quantize`` lies beside the fp32 one (``NAME.int8.onnx``), is
timed on the profile's tile, batch and threads over the same camera frames, in turns (so each
meets the same machine state), warm. A candidate is kept only if its output agrees with fp32
ONNX Runtime's within the card's tolerance: its PSNR against that output (both scaled to
[0, 1] by the card's output range, as its held-out figures are) at least the card's
held-out PSNR plus :data:`MARGIN_DB`, which costs the engine at most :data:`TOLERANCE_DB` of
its own figure (independent errors add: 10 log10(1 + 10^(-11.5/10)) = 0.30 dB); without a
held-out PSNR on the card, :data:`FLOOR_DB`. The fastest kept is recorded in the engine cache
(:mod:`acquire_vf.inference._choice`), and sessions run it.

The frames are the profile's simulated specimen's where it has one (the refocus engines' a
few micrometres from focus), else noise over the card's training range (said in the record).
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard
from acquire_vf.config import Compute, Profile

TOLERANCE_DB = 0.3
"""Most a chosen path may cost an engine's held-out PSNR (issue 37's int8 budget)."""
MARGIN_DB = 11.5
"""PSNR against the fp32 output that costs at most :data:`TOLERANCE_DB` (see above)."""
FLOOR_DB = 40.0
"""Agreement asked of a card without a held-out PSNR."""
CPU_BACKENDS = ("onnxruntime", "openvino")
REFOCUS_DEFOCUS_UM = 4.0
"""Where the refocus engines' frames are rendered from focus (inside their trained range)."""


def int8_sibling(path: Path) -> Path | None:
    """The INT8 engine ``acquire-vf quantize`` made beside ``path`` (``NAME.int8.onnx``)."""
    found = path.with_name(f"{path.stem}.int8.onnx")
    return found if found.is_file() and found.with_suffix(".json").is_file() else None


def profile_engines(profile: Profile) -> dict[Path, list[str]]:
    """The refocus and synthesis engines of ``profile``, each once, with the physical
    channels its frames come from (estimators run whole frames, not tiles: not measured)."""
    out: dict[Path, list[str]] = {}
    for channel, path in profile.refocus_engines().items():
        out.setdefault(path, [channel])
    for v in profile.virtual_channels:
        out.setdefault(v.engine, list(v.inputs))
    return out


def frames_for(profile: Profile, card: ModelCard, channels: list[str], shape: tuple[int, int],
               *, defocus_um: float = 0.0) -> tuple[list[np.ndarray], str]:
    """One camera frame per input channel, and where they came from."""
    from acquire_vf.backends import specimen_for

    spec = specimen_for(profile)
    if spec is not None:
        exposure = {c.name: c.exposure_ms for c in profile.channels}
        z = profile.specimen.focus_at(0) + defocus_um
        return [spec.render(shape, 0, c, 0.0, 0.0, z, exposure.get(c, 50.0))
                for c in channels], "the profile's simulated specimen"
    rng = np.random.default_rng(0)
    top = np.iinfo(np.dtype(card.dtype)).max
    return [rng.integers(0, top // 4, shape).astype(card.dtype) for _ in channels], \
        "noise (no simulated specimen in the profile)"


def tolerance_db(card: ModelCard) -> float:
    held = (card.metrics.get("held_out") or {}).get("prediction") or {}
    return float(held["psnr"]) + MARGIN_DB if "psnr" in held else FLOOR_DB


def measure_engine(profile: Profile, path: Path, channels: list[str], *,
                   shape: tuple[int, int] = (512, 512), reps: int = 5,
                   timer: Callable[..., dict[str, float]] | None = None) -> dict[str, Any]:
    """Time every CPU path of the engine at ``path``; the record of the fastest that agrees
    (``choice_record``'s fields), with every candidate's figures."""
    from acquire_vf.bench import interleaved_ms
    from acquire_vf.inference import (
        BackendUnavailable,
        TiledEngine,
        choice_key,
        choice_record,
        cpu_model,
        cpu_threads,
        make_runner,
    )
    from acquire_vf.metrics import psnr, to_unit

    timer = timer or interleaved_ms
    compute = profile.compute.model_copy(update={"precision": "fp32"})
    tiling = profile.tiling
    card = ModelCard.load(path)
    m = card.multiple_of
    tile = max(m, (tiling.tile // m) * m)
    threads = cpu_threads(compute)
    frames, source = frames_for(profile, card, channels, shape,
                                defocus_um=REFOCUS_DEFOCUS_UM if card.task == "refocus" else 0)
    files = {"fp32": path}
    q = int8_sibling(path)
    if q is not None:
        files["int8"] = q
    engines: dict[str, TiledEngine] = {}
    skipped: dict[str, str] = {}
    for precision, file in files.items():
        run_card = ModelCard.load(file)
        for backend in CPU_BACKENDS:
            name = f"{backend} {precision}"
            if importlib.util.find_spec(backend) is None:
                skipped[name] = f"{backend} is not installed"
                continue
            try:
                runner = make_runner(backend, file, run_card, compute, tile=tile,
                                     batch=tiling.batch)
            except BackendUnavailable as err:
                skipped[name] = str(err)
                continue
            engines[name] = TiledEngine(run_card, runner, tile=tile, overlap=tiling.overlap,
                                        batch=tiling.batch)
    try:
        outputs = {k: eng.infer(frames)[0] for k, eng in engines.items()}
        out_norm = card.normalisation[card.output]  # the range the card's figures are on
        ref = to_unit(outputs["onnxruntime fp32"], out_norm.low, out_norm.high)
        agree = {k: psnr(to_unit(o, out_norm.low, out_norm.high), ref)
                 for k, o in outputs.items()}
        ms = timer({k: functools.partial(eng.infer, frames) for k, eng in engines.items()},
                   reps)
    finally:
        for eng in engines.values():
            eng.close()
    need = tolerance_db(card)
    candidates: list[dict[str, Any]] = [
        {"path": k, "ms_per_frame": round(ms[k], 2),
         "psnr_vs_onnxruntime_fp32_db": None if np.isinf(agree[k]) else round(agree[k], 2),
         "within_tolerance": bool(agree[k] >= need)} for k in engines]
    candidates += [{"path": k, "skipped": why} for k, why in skipped.items()]
    best = min((k for k in engines if agree[k] >= need), key=lambda k: ms[k])
    backend, precision = best.split()
    base = ms["onnxruntime fp32"]
    why = (f"fastest of {len(engines)} measured by build-engine on "
           f"{datetime.date.today().isoformat()}: {best} {ms[best]:.2f} ms a "
           f"{shape[0]} x {shape[1]} frame against onnxruntime fp32 {base:.2f} ms "
           f"({base / ms[best]:.2f}x), agreeing with it within {need:.1f} dB PSNR")
    return choice_record(
        choice_key(card, tile, tiling.batch, threads), engine=card.name, backend=backend,
        precision=precision, onnx=str(files[precision].resolve()),
        onnx_sha256=ModelCard.load(files[precision]).onnx_sha256,
        ms_per_frame=round(ms[best], 2), speedup_over_onnxruntime_fp32=round(base / ms[best], 3),
        frame=list(shape), tile=tile,
        batch=tiling.batch, threads=threads, cpu=cpu_model(), frames_from=source,
        tolerance_psnr_db=round(need, 2), candidates=candidates, why=why)


def choose_for_profile(profile: Profile, *, shape: tuple[int, int] = (512, 512),
                       reps: int = 5, progress: Callable[[str], None] = lambda m: None
                       ) -> list[dict[str, Any]]:
    """Measure every engine of ``profile`` and record each one's fastest path (the engine
    cache); returns the records."""
    from acquire_vf.inference import ChoiceKey, save_choice

    records = []
    for path, channels in profile_engines(profile).items():
        progress(f"measuring {path.name} ...")
        rec = measure_engine(profile, path, channels, shape=shape, reps=reps)
        key = ChoiceKey(**rec["key"])
        rec["saved_to"] = str(key.path())
        save_choice(key, rec)
        records.append(rec)
    return records


def cpu_only(compute: Compute) -> bool:
    """No CUDA device for ONNX Runtime or PyTorch here (the measured CPU paths apply)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return False
    if importlib.util.find_spec("torch") is not None and "torch" in compute.backends:
        import torch

        return not torch.cuda.is_available()
    return True
