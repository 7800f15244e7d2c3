"""Connect to Micro-Manager through pycromanager, in one of three modes, in bounded time.

``demo`` and ``headless`` run Micro-Manager's core (pymmcore) in this process; ``attach`` talks
to a running Micro-Manager application over pycromanager's ZMQ bridge. pycromanager's Python
backend can be started only once per process (after a stop, a second start fails at the next
acquisition with "Camera byte depth cannot be zero"), so the in-process core is kept for the
life of the process and reused by later runs with the same configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from acquire_vf._errors import MicroscopeError
from acquire_vf.config import (
    AttachConnection,
    DemoConnection,
    HeadlessConnection,
    MemoryConnection,
    Profile,
    PyMMCorePlusConnection,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_in_process: tuple[tuple[str, str], Microscope] | None = None


@dataclass(frozen=True)
class Microscope:
    """A connected Micro-Manager core and how it was reached."""

    core: Any
    """pycromanager's snake_case core (pymmcore in-process, or the Java bridge proxy)."""
    mode: str
    """``demo``, ``headless`` or ``attach``."""
    source: str
    """Config file (in-process modes) or ``localhost:PORT`` (attach)."""

    @property
    def in_process(self) -> bool:
        return self.mode != "attach"


def demo_adapter_dir() -> Path:
    """Folder of the DemoCamera adapters and ``MMConfig_demo.cfg`` (PyPI ``mm-test-adapters``)."""
    try:
        import mm_test_adapters
    except ImportError as e:  # a core dependency, so this means a broken install
        raise MicroscopeError(
            "the demo configuration needs the 'mm-test-adapters' package; "
            "reinstall acquire-vf (pip install acquire-vf)"
        ) from e
    return Path(mm_test_adapters.device_adapter_path())


def connect(profile: Profile) -> Microscope:
    """Connect as the profile says and check that the profile fits the hardware.

    Raises
    ------
    MicroscopeError
        One line saying what failed: an unreachable application, a missing folder or config
        file, a configuration that does not load, a preset the profile names but Micro-Manager
        lacks, or a camera whose bit depth differs from the profile's.
    """
    conn = profile.connection
    if isinstance(conn, MemoryConnection):
        raise MicroscopeError("connection kind 'memory' has no Micro-Manager to connect to; "
                              "expected kind 'demo', 'headless' or 'attach'")
    if isinstance(conn, PyMMCorePlusConnection):
        raise MicroscopeError("connection kind 'pymmcore-plus' runs through pymmcore-plus's "
                              "MDA engine, not pycromanager; expected --acquisition "
                              "pymmcore-plus (the default for this kind)")
    if isinstance(conn, AttachConnection):
        mic = _attach(conn)
    else:
        mic = _start_in_process(conn, profile.queues.mm_buffer_mb)
    if isinstance(conn, DemoConnection) and profile.specimen.kind == "simulated":
        define_missing_presets(mic, profile)
    check_profile_against_hardware(mic, profile)
    return mic


def define_missing_presets(mic: Microscope, profile: Profile) -> list[str]:
    """On the demo configuration, define the presets a simulated specimen maps to a stain but
    the config lacks (its Channel group has no ER preset): each copies the device settings of
    the group's first preset, and the specimen's ``stains`` says what it shows. Returns the
    presets defined. Never used on a real microscope, where a missing preset is an error."""
    core = mic.core
    wanted = [(c.group, c.preset) for c in profile.channels] + [
        (v.group, v.preset) for v in profile.exposable_virtual if v.preset]
    made = []
    for group, preset in wanted:
        if preset not in profile.specimen.stains or not core.is_group_defined(group):
            continue
        presets = list(core.get_available_configs(group))
        if preset in presets or not presets:
            continue
        template = core.get_config_data(group, presets[0])  # pymmcore's own (camelCase) type
        for i in range(template.size()):
            s = template.getSetting(i)
            core.define_config(group, preset, s.getDeviceLabel(), s.getPropertyName(),
                               s.getPropertyValue())
        made.append(preset)
        log.info("demo config: defined preset %s/%s (as %s) for the simulated stain %s",
                 group, preset, presets[0], profile.specimen.stains[preset])
    return made


def _start_in_process(conn: DemoConnection | HeadlessConnection, buffer_mb: int) -> Microscope:
    global _in_process
    if isinstance(conn, DemoConnection):
        mm_dir = demo_adapter_dir()
        cfg = Path(conn.config_file)
        cfg = cfg if cfg.is_absolute() else mm_dir / cfg
    else:
        mm_dir = conn.mm_dir
        cfg = conn.config_file if conn.config_file.is_absolute() else mm_dir / conn.config_file
        if not mm_dir.is_dir():
            raise MicroscopeError(
                f"Micro-Manager folder not found: expected the installation folder with the "
                f"device adapters at connection.mm_dir, got '{mm_dir}'"
            )
    if not cfg.is_file():
        raise MicroscopeError(f"Micro-Manager config file not found: '{cfg}'")
    key = (str(mm_dir.resolve()), str(cfg.resolve()))
    with _lock:
        if _in_process is not None:
            if _in_process[0] == key:
                _in_process[1].core.set_circular_buffer_memory_footprint(buffer_mb)
                return _in_process[1]
            raise MicroscopeError(
                f"Micro-Manager is already running in this process with '{_in_process[0][1]}'; "
                f"'{cfg}' needs a new process (pycromanager's core starts once per process)"
            )

        def start() -> Any:
            from pycromanager import Core, start_headless

            start_headless(str(mm_dir), str(cfg), python_backend=True, buffer_size_mb=buffer_mb)
            return Core()

        core = _bounded(start, conn.timeout_s, f"loading Micro-Manager config '{cfg.name}'")
        mic = Microscope(core=core, mode=conn.kind, source=str(cfg))
        _in_process = (key, mic)
        log.info("Micro-Manager %s mode, config %s", conn.kind, cfg)
        return mic


def _attach(conn: AttachConnection) -> Microscope:
    if _in_process is not None:
        # pycromanager routes Core() and Acquisition() to the in-process core once one exists.
        raise MicroscopeError(
            "attach mode needs its own process: this one already runs Micro-Manager's core "
            f"in-process ('{_in_process[1].source}')"
        )

    def reach() -> Any:
        from pycromanager.mm_java_classes import ZMQRemoteMMCoreJ

        core = ZMQRemoteMMCoreJ(port=conn.port, timeout=int(conn.timeout_s * 1000))
        core.get_version_info()  # the first real round trip
        return core

    _quiet_bridge_threads()
    try:
        _listening(conn.port, min(2.0, conn.timeout_s))
        core = _bounded(reach, conn.timeout_s + 2.0,
                        f"reaching Micro-Manager on localhost:{conn.port}")
    except MicroscopeError as e:
        raise MicroscopeError(
            f"no Micro-Manager answered on localhost:{conn.port}: is the application running "
            f"with Tools > Options > 'Run server on port {conn.port}' enabled?"
        ) from e
    log.info("attached to Micro-Manager on port %d (ZMQ bridge: ~100-200 MB/s)", conn.port)
    return Microscope(core=core, mode="attach", source=f"localhost:{conn.port}")


def _listening(port: int, timeout_s: float) -> None:
    """A plain TCP connect to the bridge's port first: with no Micro-Manager there, the answer
    (refused) comes at once, where pycromanager's bridge would poll a non-blocking socket for
    the whole timeout and burn a core doing it."""
    import socket

    try:
        socket.create_connection(("localhost", port), timeout=timeout_s).close()
    except OSError as e:
        raise MicroscopeError(f"nothing listens on localhost:{port} ({e.strerror or e})") from e


def _quiet_bridge_threads() -> None:
    """pyjavaz's socket threads die with a traceback on stderr when nothing answers; log it.

    The failure itself reaches the user as one line from :func:`_attach`.
    """
    previous = threading.excepthook
    if getattr(previous, "_acquire_vf", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is not None and args.thread.name.startswith("BridgeSocketThread"):
            log.debug("pycromanager bridge thread: %s", args.exc_value)
            return
        previous(args)

    hook._acquire_vf = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def _bounded(fn: Callable[[], T], timeout_s: float, what: str, hint: str = "") -> T:
    """Run ``fn`` in a daemon thread; give up with one clear line after ``timeout_s``.

    Micro-Manager calls cannot be interrupted, so a hung call is left behind in its daemon
    thread (it dies with the process) and the user gets an answer in bounded time.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # reported to the caller below
            result["error"] = e

    th = threading.Thread(target=run, name=f"acquire-vf: {what}", daemon=True)
    th.start()
    th.join(timeout_s)
    tail = f"; {hint}" if hint else ""
    if th.is_alive():
        raise MicroscopeError(f"{what}: no answer within {timeout_s:g} s{tail}")
    if "error" in result:
        msg = " ".join(str(result["error"]).split()) or type(result["error"]).__name__
        raise MicroscopeError(f"{what} failed: {msg}{tail}") from result["error"]
    return result["value"]


def check_profile_against_hardware(mic: Microscope, profile: Profile) -> None:
    """Fail early, with the names, when the profile asks for what Micro-Manager lacks."""
    core = mic.core
    groups = set(core.get_available_config_groups())
    wanted = [(c.name, c.group, c.preset) for c in profile.channels] + [
        (v.name, v.group, v.preset) for v in profile.exposable_virtual if v.preset is not None
    ]  # a virtual channel's preset matters only where the run may expose it
    for name, group, preset in wanted:
        if group not in groups:
            raise MicroscopeError(
                f"channel '{name}': config group '{group}' not in Micro-Manager "
                f"(has: {', '.join(sorted(groups))})"
            )
        presets = set(core.get_available_configs(group))
        if preset not in presets:
            raise MicroscopeError(
                f"channel '{name}': preset '{preset}' not in config group '{group}' "
                f"(has: {', '.join(sorted(presets))})"
            )
    if not core.get_camera_device():
        raise MicroscopeError("Micro-Manager has no camera device loaded")
    nbytes = int(core.get_bytes_per_pixel())
    if nbytes not in (1, 2):
        raise MicroscopeError(
            f"camera delivers {nbytes} bytes per pixel; expected 1 or 2 (monochrome 8-16 bit)"
        )
    bits = int(core.get_image_bit_depth())
    if bits != profile.camera.bit_depth:
        raise MicroscopeError(
            f"camera bit depth: profile says camera.bit_depth = {profile.camera.bit_depth}, "
            f"Micro-Manager's camera reports {bits}"
        )
