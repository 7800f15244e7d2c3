"""Micro-Manager through pycromanager, behind the :class:`AcquisitionBackend` protocol.

One pycromanager ``Acquisition`` is opened per run and fed one batch of events at a time, so
pycromanager can still merge a batch into a hardware sequence (the camera's full speed). Its
``image_process_fn`` runs in line with the acquisition engine: it only applies the frame source
(the simulated specimen, when there is one) and queues the frame for :meth:`execute`, which
yields it to the runner. pycromanager's dict events exist only in this module.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import useq

from acquire_vf._errors import AcquisitionError
from acquire_vf.backends._connect import Microscope
from acquire_vf.backends._faults import AcquisitionStopped
from acquire_vf.backends._protocol import BackendInfo, Gate, RawImage, event_channel

log = logging.getLogger(__name__)
FrameSource = Callable[[np.ndarray, int, str, dict[str, Any]], np.ndarray]
"""``(pixels, time point, channel, metadata) -> pixels``: replaces the camera's pixels."""
_POLL_S = 0.05


def _key(axes: dict[str, Any]) -> tuple[int, int, int, str]:
    return (int(axes.get("time", 0)), int(axes.get("position", 0)), int(axes.get("z", 0)),
            str(axes.get("channel", "")))


def to_pycromanager(event: useq.MDAEvent) -> dict[str, Any]:
    """A useq event as pycromanager's dict event (only this backend ever sees these)."""
    idx = event.index
    axes = {"time": idx.get("t", 0), "position": idx.get("p", 0), "z": idx.get("z", 0),
            "channel": event_channel(event)}
    ev: dict[str, Any] = {"axes": axes}
    if event.channel is not None:
        ev["config_group"] = [event.channel.group, event.channel.config]
    if event.exposure is not None:
        ev["exposure"] = event.exposure
    if event.x_pos is not None and event.y_pos is not None:
        ev["x"], ev["y"] = event.x_pos, event.y_pos
    if event.z_pos is not None:
        ev["z"] = event.z_pos
    return ev


class PycroManagerBackend:
    """Micro-Manager's core (in-process, or the application over the Java bridge)."""

    name = "pycromanager"

    def __init__(self, microscope: Microscope, *, buffer_mb: int,
                 frame_source: FrameSource | None = None,
                 hooks: dict[str, Callable[..., Any]] | None = None) -> None:
        self.microscope = microscope
        self.core = microscope.core
        self._buffer_mb = buffer_mb
        self._frame_source = frame_source
        self._hooks = dict(hooks or {})
        self._acq: Any = None
        self._frames: queue.Queue[RawImage | BaseException] = queue.Queue()
        self._batch: dict[tuple[int, int, int, str], useq.MDAEvent] = {}
        self._dropped = 0
        self._gate: Gate = lambda e: True
        self._aborted = threading.Event()
        self._start: tuple[float | None, tuple[float, float] | None] = (None, None)
        self._read_back: dict[tuple[int, int, int, str], dict[str, float]] = {}
        """Per event awaiting its image: the stages' positions read after the hardware was
        set (pycromanager's own metadata has only the intended ones)."""
        self._moved = False
        self._release_pixel_size: Callable[[], None] = lambda: None

    def describe(self) -> BackendInfo:
        c = self.core
        z = float(c.get_position()) if c.get_focus_device() else None
        xy = (float(c.get_x_position()), float(c.get_y_position())) \
            if c.get_xy_stage_device() else None
        return BackendInfo(
            name=self.name, mode=self.microscope.mode, source=self.microscope.source,
            shape=(int(c.get_image_height()), int(c.get_image_width())),
            dtype="uint8" if int(c.get_bytes_per_pixel()) == 1 else "uint16", xy_um=xy, z_um=z)

    def setup(self, gate: Gate) -> None:
        from pycromanager import Acquisition

        info = self.describe()
        self._start = (info.z_um, info.xy_um)
        self._gate = gate
        stop_camera_sequence(self.core)  # never resize the buffer under a streaming camera
        set_buffer_footprint(self.core, self._buffer_mb)
        self._release_pixel_size = hold_pixel_size(self.core)
        args: dict[str, Any] = {}
        if self.microscope.mode == "attach":
            args["port"] = int(self.microscope.source.rsplit(":", 1)[1])
        hooks = dict(self._hooks)
        after = hooks.pop("post_hardware_hook_fn", None)
        try:
            self._acq = Acquisition(directory=None, image_process_fn=self._on_image,
                                    pre_hardware_hook_fn=self._pre_hardware,
                                    post_hardware_hook_fn=self._post_hardware(after),
                                    show_display=False, **args, **hooks)
        except Exception as e:
            raise micro_manager_error(e) from e

    # ----- pycromanager's threads -------------------------------------------------------
    def _pre_hardware(self, event: Any) -> Any:
        """Ask the runner's gate about each event; in sequence mode pycromanager passes a list."""
        if isinstance(event, list):
            kept = [e for e in event if self._keep(e)]
            return kept or None
        return event if self._keep(event) else None

    def _post_hardware(self, after: Callable[..., Any] | None) -> Callable[..., Any]:
        """The hook after the hardware is set for an event (a caller's own first): read the
        stages back, so each frame says where it was taken, not only where it was sent."""

        def hook(event: Any) -> Any:
            if after is not None:
                event = after(event)
                if event is None:
                    return None
            back = self._positions()
            for ev in event if isinstance(event, list) else [event]:
                self._read_back[_key(ev.get("axes") or {})] = back
            return event

        return hook

    def _positions(self) -> dict[str, float]:
        c, out = self.core, {}
        try:
            if c.get_focus_device():
                out["ZPosition_um"] = float(c.get_position())
            if c.get_xy_stage_device():
                out["XPosition_um"] = float(c.get_x_position())
                out["YPosition_um"] = float(c.get_y_position())
        except Exception as e:  # noqa: BLE001 - a stage that cannot say: the frame says so
            log.warning("stage position not read back: %s", e)
        return out

    def _keep(self, ev: dict[str, Any]) -> bool:
        if self._aborted.is_set():
            self._dropped += 1
            return False
        mda = self._batch.get(_key(ev.get("axes") or {}))
        if mda is None or self._gate(mda):
            return True
        self._dropped += 1
        return False

    def _on_image(self, pixels: np.ndarray, md: dict[str, Any]) -> None:
        """In line with acquisition: apply the frame source, queue, return at once."""
        try:
            key = _key(md.get("Axes") or {})
            event = self._batch.get(key)
            if event is None:
                event = useq.MDAEvent(index={"t": key[0], "p": key[1], "z": key[2]},
                                      metadata={"channel": key[3]})
            if self._frame_source is not None:
                pixels = self._frame_source(pixels, key[0], key[3], md)
            md = {**md, **self._read_back.pop(key, {})}
            self._frames.put(RawImage(event=event, pixels=pixels, metadata=md))
        except BaseException as e:  # surfaces in execute(), on the runner's thread
            self._frames.put(e)
        return None  # pycromanager keeps no copy

    # ----- the protocol ------------------------------------------------------------------
    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        if self._aborted.is_set() or not events:
            return
        self._batch = {_key(to_pycromanager(e)["axes"]): e for e in events}
        self._read_back.clear()  # a frame never delivered leaves nothing behind
        self._dropped = 0
        try:
            self._acq.acquire([to_pycromanager(e) for e in events])
        except Exception as e:
            raise micro_manager_error(e) from e
        received = 0
        while received + self._dropped < len(events):
            try:
                item = self._frames.get(timeout=_POLL_S)
            except queue.Empty:
                if self._aborted.is_set():
                    return
                self._check()
                continue
            if isinstance(item, BaseException):
                raise AcquisitionStopped(f"frame hand-off failed: {type(item).__name__}: "
                                         f"{item}") from item
            received += 1
            yield item

    def _check(self) -> None:
        try:
            self._acq._check_for_exceptions()
        except Exception as e:
            raise micro_manager_error(e) from e

    def move_z(self, dz_um: float) -> None:
        z = float(self.core.get_position())
        self.core.set_position(z + dz_um)
        self.core.wait_for_device(self.core.get_focus_device())
        self._moved = True

    def abort(self) -> None:
        self._aborted.set()
        acq = self._acq
        if acq is not None:
            try:
                acq.abort()
            except Exception as e:  # already stopping
                log.debug("abort: %s", e)

    def teardown(self) -> None:
        acq, self._acq = self._acq, None
        error: AcquisitionError | None = None
        if acq is not None:
            try:
                acq.mark_finished()
                acq.await_completion()
            except Exception as e:
                if not self._aborted.is_set():
                    error = micro_manager_error(e)
        stop_camera_sequence(self.core)  # an aborted run can leave the camera streaming
        self._release_pixel_size()
        self._restore_stages()
        if error is not None:
            raise error

    def _restore_stages(self) -> None:
        """Put focus and XY back where the run found them (as Micro-Manager's MDA does)."""
        z, xy = self._start
        try:
            if z is not None and abs(float(self.core.get_position()) - z) > 1e-6:
                self.core.set_position(z)
            if xy is not None and (abs(float(self.core.get_x_position()) - xy[0]) > 1e-6 or
                                   abs(float(self.core.get_y_position()) - xy[1]) > 1e-6):
                self.core.set_xy_position(*xy)
        except Exception as e:  # never let a stage error hide the run's own outcome
            log.warning("could not return the stages to their start: %s", e)


def stop_camera_sequence(core: Any) -> None:
    """Stop a hardware sequence that is still running (after an overflow, pycromanager aborts
    without stopping the camera, which then keeps writing into the circular buffer)."""
    try:
        if core.is_sequence_running():
            core.stop_sequence_acquisition()
            log.warning("stopped a camera sequence that was still running")
    except Exception as e:  # a camera without sequencing, or a bridge error
        log.debug("stop sequence: %s", e)


def hold_pixel_size(core: Any) -> Callable[[], None]:
    """Answer ``get_pixel_size_um`` with the value it has now until the returned function is
    called (the run's end), for an in-process core.

    pycromanager asks for the pixel size with every frame it pops during a hardware
    sequence; Micro-Manager reads it through the camera's binning property, and
    ``CDeviceBase::GetProperty`` writes the device's strings on every read (the property's
    value, and ``morePropertyErrorInfo_``) without a lock the camera's own sequence thread
    respects. The demo camera's thread reads its binning and exposure properties for every
    frame, so the two threads wrote the same ``std::string`` at once: "double free or
    corruption" aborts, about one 20,000-frame run of seven on a loaded two-core machine
    (the native stack and the destructor's member offsets named the string). Binning and the
    pixel-size configuration do not change during a run, so nothing is lost."""
    if not _in_process(core):  # the Java bridge: its core is not ours to change
        return lambda: None
    size = float(core.get_pixel_size_um())
    own = vars(core).get("get_pixel_size_um")
    core.get_pixel_size_um = lambda *args, **kwargs: size

    def release() -> None:
        if own is not None:
            core.get_pixel_size_um = own
        else:
            vars(core).pop("get_pixel_size_um", None)

    return release


def _in_process(core: Any) -> bool:
    import pymmcore

    return isinstance(core, pymmcore.CMMCore)


def set_buffer_footprint(core: Any, mb: int) -> None:
    """Size Micro-Manager's circular buffer, only when it is not that size already: a resize
    frees the buffer, and a camera thread still delivering the last frames of a stopped
    sequence then writes into freed memory (MMCore aborted so once, between two runs on a
    busy machine). Before a resize the camera is waited for."""
    if int(core.get_circular_buffer_memory_footprint()) == int(mb):
        return
    try:
        core.wait_for_device(core.get_camera_device())
    except Exception as e:  # no camera, or one that cannot say: resize as before
        log.debug("wait for camera: %s", e)
    core.set_circular_buffer_memory_footprint(mb)


def micro_manager_error(e: BaseException) -> AcquisitionError:
    if isinstance(e, AcquisitionError):
        return e
    msg = " ".join(str(e).split())
    if "overflow" in msg.lower():
        return AcquisitionStopped(
            "Micro-Manager's circular buffer overflowed (frames arrived faster than they were "
            "read out); the run was stopped. Frames acquired before it are saved. Raise "
            "queues.mm_buffer_mb or lower the frame rate."
        )
    return AcquisitionError(f"Micro-Manager stopped the acquisition: {msg or type(e).__name__}")
