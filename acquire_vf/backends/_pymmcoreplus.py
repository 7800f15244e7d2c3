"""The pymmcore-plus backend: Micro-Manager's core in this process as ``CMMCorePlus``, the
events run by its MDA engine (hardware-sequenced wherever its engine finds the devices allow
it), frames from its ``frameReady`` signal.

Chosen with ``--acquisition pymmcore-plus`` on a ``demo`` or ``headless`` connection (the
same config files as the pycromanager backend). The run's gate is asked about each event as
pymmcore-plus's engine takes it; a simulated specimen replaces the demo camera's pixels
through the same frame source the pycromanager backend uses.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError, MicroscopeError
from acquire_vf.backends._protocol import BackendInfo, Gate, RawImage, event_channel

log = logging.getLogger(__name__)
_POLL_S = 0.05


class SnakeCase:
    """``CMMCorePlus`` answering the snake_case names the rest of acquire-vf calls (as
    pycromanager's core does): ``get_x_position`` is ``getXPosition``."""

    def __init__(self, core: Any) -> None:
        self.core = core

    def __getattr__(self, name: str) -> Any:
        head, *rest = name.split("_")
        camel = head + "".join("XY" if w == "xy" else w[:1].upper() + w[1:] for w in rest)
        return getattr(self.core, re.sub(r"Xy(?=[A-Z]|$)", "XY", camel))


def load_core(mm_dir: Path, cfg: Path) -> Any:
    """A ``CMMCorePlus`` with ``cfg`` loaded from the adapters in ``mm_dir``."""
    try:
        from pymmcore_plus import CMMCorePlus
    except ImportError:
        raise MicroscopeError("the pymmcore-plus backend needs pymmcore-plus: pip install "
                              "'acquire-vf[pymmcore-plus]'") from None
    core = CMMCorePlus()
    core.setDeviceAdapterSearchPaths([str(mm_dir)])
    try:
        core.loadSystemConfiguration(str(cfg))
    except Exception as e:  # the core's own error type
        raise MicroscopeError(f"Micro-Manager config '{cfg.name}' did not load through "
                              f"pymmcore-plus: {' '.join(str(e).split())[:300]}") from e
    return core


class _Gated:
    """The batch's events as pymmcore-plus's engine takes them, each first through the run's
    gate (an iterable, not an iterator, so the engine may sequence them)."""

    def __init__(self, events: Sequence[useq.MDAEvent], gate: Gate, aborted: threading.Event,
                 dropped: list[int]) -> None:
        self.events, self.gate, self.aborted, self.dropped = events, gate, aborted, dropped

    def __iter__(self) -> Iterator[useq.MDAEvent]:
        for e in self.events:
            if self.aborted.is_set():
                return
            if self.gate(e):
                yield e
            else:
                self.dropped[0] += 1


class PyMMCorePlusBackend:
    name = "pymmcore-plus"

    def __init__(self, core: Any, *, mode: str, source: str,
                 frame_source: Callable[..., np.ndarray] | None = None) -> None:
        self.core = core
        self.mode, self.source = mode, source
        self._frame_source = frame_source
        self._gate: Gate = lambda e: True
        self._aborted = threading.Event()
        self._start: tuple[float | None, tuple[float, float] | None] = (None, None)
        self._release_engine: Callable[[], None] = lambda: None

    def describe(self) -> BackendInfo:
        c = self.core
        z = float(c.getPosition()) if c.getFocusDevice() else None
        xy = (float(c.getXPosition()), float(c.getYPosition())) if c.getXYStageDevice() \
            else None
        return BackendInfo(name=self.name, mode=self.mode, source=self.source,
                           shape=(int(c.getImageHeight()), int(c.getImageWidth())),
                           dtype="uint8" if int(c.getBytesPerPixel()) == 1 else "uint16",
                           xy_um=xy, z_um=z)

    def setup(self, gate: Gate) -> None:
        info = self.describe()
        self._start = (info.z_um, info.xy_um)
        self._gate = gate
        self._release_engine = quiet_engine(self.core)

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        if self._aborted.is_set() or not events:
            return
        frames: queue.Queue[RawImage | None] = queue.Queue()
        failed: list[BaseException] = []
        dropped = [0]

        def on_frame(img: np.ndarray, event: useq.MDAEvent, meta: dict[str, Any]) -> None:
            frames.put(self._image(img, event, meta))

        def run() -> None:
            try:
                self.core.mda.run(_Gated(events, self._gate, self._aborted, dropped))
            except BaseException as e:  # noqa: BLE001 - surfaces in execute(), our thread
                failed.append(e)
            finally:
                frames.put(None)

        self.core.mda.events.frameReady.connect(on_frame)
        thread = threading.Thread(target=run, name="acquire-vf pymmcore-plus", daemon=True)
        thread.start()
        try:
            while True:
                item = frames.get()
                if item is None:
                    break
                yield item
        finally:
            if thread.is_alive():  # the consumer stopped early: end the batch
                self.core.mda.cancel()
            thread.join(30)
            self.core.mda.events.frameReady.disconnect(on_frame)
        if failed and not self._aborted.is_set():
            e = failed[0]
            raise AcquisitionError(f"Micro-Manager (pymmcore-plus): {type(e).__name__}: "
                                   f"{' '.join(str(e).split())[:300]}") from e

    def _image(self, img: np.ndarray, event: useq.MDAEvent, meta: dict[str, Any]) -> RawImage:
        """A frame as the hand-off reads it: Micro-Manager's metadata keys, the event's
        intended positions, the stage read back (pymmcore-plus's ``position``)."""
        pos = meta.get("position") or {}
        md: dict[str, Any] = {"ElapsedTime-ms": meta.get("runner_time_ms"),
                              "Exposure": meta.get("exposure_ms", event.exposure)}
        for axis, planned in (("X", event.x_pos), ("Y", event.y_pos), ("Z", event.z_pos)):
            back = pos.get(axis.lower())
            if back is not None:
                md[f"{axis}Position_um"] = float(back)
            md[f"{axis}Position_um_Intended"] = planned if planned is not None else back
        pixels = np.asarray(img)
        if self._frame_source is not None:
            pixels = self._frame_source(pixels, int(event.index.get("t", 0)),
                                        event_channel(event), md)
        return RawImage(event=event, pixels=pixels, metadata=md)

    def move_z(self, dz_um: float) -> None:
        c = self.core
        c.setPosition(float(c.getPosition()) + dz_um)
        c.waitForDevice(c.getFocusDevice())

    def abort(self) -> None:
        self._aborted.set()
        try:
            self.core.mda.cancel()
        except Exception as e:  # noqa: BLE001 - nothing running
            log.debug("abort: %s", e)

    def teardown(self) -> None:
        z, xy = self._start
        c = self.core
        try:
            if c.isSequenceRunning():
                c.stopSequenceAcquisition()
            self._release_engine()
            if z is not None:
                c.setPosition(z)
            if xy is not None:
                c.setXYPosition(*xy)
            c.waitForSystem()
        except Exception as e:  # noqa: BLE001 - never hide the run's own outcome
            log.warning("could not return the stages to their start: %s", e)


def quiet_engine(core: Any) -> Callable[[], None]:
    """Run with pymmcore-plus's engine whose frame metadata asks the camera nothing while it
    streams, until the returned function is called (the run's end).

    pymmcore-plus reads the exposure and the pixel size (the camera's binning) for every
    frame of a hardware sequence; Micro-Manager's ``CDeviceBase::GetProperty`` writes the
    device's strings on every read, unlocked against the camera's own sequence thread, which
    reads its properties per frame too: the heap corruption the pycromanager backend met
    (:func:`acquire_vf.backends._pycromanager.hold_pixel_size`). The exposure comes from the
    event (or as read when the event was set up), the pixel size as read when the sequence
    was. A caller's own engine (``attach``) is left as it is."""
    from pymmcore_plus.mda import MDAEngine

    engine = core.mda.engine
    if type(engine) is not MDAEngine:
        return lambda: None
    quiet = _quiet_engine_class()(core, use_hardware_sequencing=engine.use_hardware_sequencing)
    quiet.include_frame_position_metadata = engine.include_frame_position_metadata
    core.register_mda_engine(quiet)
    return lambda: core.register_mda_engine(engine)


_QUIET: list[type] = []


def _quiet_engine_class() -> type:
    """The engine class (made on first use: pymmcore-plus is an optional extra)."""
    if _QUIET:
        return _QUIET[0]
    from pymmcore_plus.mda import MDAEngine
    from pymmcore_plus.metadata.functions import position

    class QuietEngine(MDAEngine):
        _pixel_size_um = 0.0
        _exposure_ms = 0.0

        def setup_sequence(self, sequence: Any) -> Any:
            self._pixel_size_um = float(self.mmcore.getPixelSizeUm(True))
            return super().setup_sequence(sequence)

        def setup_event(self, event: Any) -> None:
            super().setup_event(event)
            self._exposure_ms = float(self.mmcore.getExposure())  # before the camera streams

        def get_frame_metadata(self, event: Any, prop_values: Any = None,
                               runner_time_ms: float = 0.0, include_position: bool = True,
                               camera_device: str | None = None) -> Any:
            if prop_values is None and (ch := event.channel):
                prop_values = self._get_current_props(ch.group)
            core = self.mmcore
            info = {"format": "frame-dict", "version": "1.0", "runner_time_ms": runner_time_ms,
                    "camera_device": camera_device or core.getPhysicalCameraDevice(),
                    "property_values": prop_values or (),
                    "exposure_ms": event.exposure if event.exposure is not None
                    else self._exposure_ms,
                    "pixel_size_um": self._pixel_size_um, "mda_event": event}
            if include_position:
                info["position"] = position(core)
            return info

    _QUIET.append(QuietEngine)
    return QuietEngine
