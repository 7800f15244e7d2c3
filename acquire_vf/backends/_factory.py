"""One factory for acquisition backends: each in its own module, imported only when chosen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from acquire_vf.backends._protocol import AcquisitionBackend, check_backend
from acquire_vf.config import MemoryConnection, Profile, PyMMCorePlusConnection

BACKENDS = ("pycromanager", "pymmcore-plus", "memory", "replay")


def specimen_for(profile: Profile, stage: Callable[[], tuple[float, float, float]] | None = None
                 ) -> Any:
    """The simulated slide the profile describes (``None`` when the camera sees a real one)."""
    if profile.specimen.kind != "simulated":
        return None
    from acquire_vf.simulate import LiveSpecimen

    spec = profile.specimen
    stain_of = {c.name: spec.stains[c.preset] for c in profile.channels}
    stain_of.update({v.name: spec.stains[v.preset] for v in profile.exposable_virtual
                     if v.preset in spec.stains})
    return LiveSpecimen(spec, pixel_size_um=profile.camera.pixel_size_um,
                        bit_depth=profile.camera.bit_depth, stain_of=stain_of, stage=stage)


def open_backend(profile: Profile, kind: str | None = None, *,
                 hooks: dict[str, Callable[..., Any]] | None = None,
                 replay: Path | None = None, as_fast_as_possible: bool = False,
                 ) -> AcquisitionBackend:
    """The backend ``kind`` (default: ``memory`` for a memory connection, else pycromanager),
    connected and checked against the profile; the simulated specimen prepared at the plan's
    positions when the profile has one."""
    kind = kind or ("memory" if isinstance(profile.connection, MemoryConnection)
                    else "pymmcore-plus" if isinstance(profile.connection, PyMMCorePlusConnection)
                    else "pycromanager")
    if kind not in BACKENDS:
        from acquire_vf._errors import ProfileError

        raise ProfileError(f"acquisition backend '{kind}': expected one of "
                           f"{', '.join(BACKENDS)}")
    backend: Any
    if kind == "replay":
        from acquire_vf.backends._replay import ReplayBackend

        if replay is None:
            raise ValueError("the replay backend needs a dataset")
        backend = ReplayBackend(replay, as_fast_as_possible=as_fast_as_possible)
    elif kind == "memory":
        backend = _memory(profile)
    elif kind == "pymmcore-plus":
        backend = _pymmcore_plus(profile)
    else:
        backend = _pycromanager(profile, hooks)
    if profile.debug.faults and kind != "replay":  # [debug] faults: injected at the seam
        from acquire_vf.backends._faults import FaultInjector

        backend = FaultInjector(backend, profile.debug.faults)
    return check_backend(backend)


def _xy_list(profile: Profile, here: tuple[float, float] | None) -> list[tuple[float, float]]:
    xy = [(p.x_um, p.y_um) for p in profile.acquisition.positions]
    return xy or [here or (0.0, 0.0)]


def _memory(profile: Profile) -> Any:
    from acquire_vf._errors import ProfileError
    from acquire_vf.backends._memory import MemoryBackend

    conn = profile.connection
    shape = conn.shape if isinstance(conn, MemoryConnection) else (512, 512)
    exposure_time = conn.exposure_time if isinstance(conn, MemoryConnection) else False
    spec = specimen_for(profile)
    if spec is None:
        raise ProfileError("the memory backend renders the simulated specimen: expected "
                           "specimen.kind = 'simulated', got 'camera'")
    spec.prepare(shape, _xy_list(profile, None))
    dtype = "uint8" if profile.camera.bit_depth <= 8 else "uint16"
    return MemoryBackend(spec.render, shape=shape, dtype=dtype, exposure_time=exposure_time)


def _pycromanager(profile: Profile, hooks: dict[str, Callable[..., Any]] | None) -> Any:
    from acquire_vf.backends._connect import connect
    from acquire_vf.backends._pycromanager import PycroManagerBackend

    mic = connect(profile)
    return PycroManagerBackend(mic, buffer_mb=profile.queues.mm_buffer_mb,
                               frame_source=_specimen_on(profile, mic.core), hooks=hooks)


def _specimen_on(profile: Profile, core: Any) -> Any:
    """The simulated specimen (``None`` for a real one) seen through ``core``'s stages and
    camera (a snake_case core: pycromanager's, or :class:`SnakeCase` around pymmcore-plus's)."""

    def stage() -> tuple[float, float, float]:
        xy = (core.get_x_position(), core.get_y_position()) if core.get_xy_stage_device() \
            else (0.0, 0.0)
        return (*xy, core.get_position() if core.get_focus_device() else 0.0)

    spec = specimen_for(profile, stage)
    if spec is not None:
        shape = (int(core.get_image_height()), int(core.get_image_width()))
        spec.prepare(shape, _xy_list(profile, stage()[:2]))
    return spec


def _pymmcore_plus(profile: Profile) -> Any:
    """``CMMCorePlus`` on the profile's demo or headless config, checked against the profile
    as the pycromanager backend's core is (and the demo's missing stain presets defined)."""
    from acquire_vf._errors import MicroscopeError
    from acquire_vf.backends._connect import (
        Microscope,
        check_profile_against_hardware,
        define_missing_presets,
        demo_adapter_dir,
    )
    from acquire_vf.backends._pymmcoreplus import PyMMCorePlusBackend, SnakeCase, load_core
    from acquire_vf.config import DemoConnection, HeadlessConnection

    conn = profile.connection
    if isinstance(conn, DemoConnection):
        mm_dir, demo = demo_adapter_dir(), True
    elif isinstance(conn, HeadlessConnection):
        mm_dir, demo = conn.mm_dir, False
    elif isinstance(conn, PyMMCorePlusConnection):
        mm_dir, demo = conn.mm_dir or demo_adapter_dir(), conn.is_demo
    else:
        raise MicroscopeError(f"the pymmcore-plus backend runs Micro-Manager's core in this "
                              f"process: expected connection kind 'pymmcore-plus', 'demo' or "
                              f"'headless', got '{conn.kind}'")
    cfg = Path(conn.config_file)
    cfg = cfg if cfg.is_absolute() else mm_dir / cfg
    if not cfg.is_file():
        raise MicroscopeError(f"Micro-Manager config file not found: '{cfg}'")
    core = load_core(mm_dir, cfg)
    mic = Microscope(core=SnakeCase(core), mode=conn.kind, source=str(cfg))
    if demo and profile.specimen.kind == "simulated":
        define_missing_presets(mic, profile)
    check_profile_against_hardware(mic, profile)
    return PyMMCorePlusBackend(core, mode=conn.kind, source=str(cfg),
                               frame_source=_specimen_on(profile, mic.core))
