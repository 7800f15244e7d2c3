"""The acquisition run: an explicit state machine around one pycromanager ``Acquisition``.

Frames arrive on pycromanager's image-processor thread, which runs in line with the acquisition
engine (a slow ``image_process_fn`` throttles the camera). :meth:`AcquisitionRun._on_image`
therefore only tags the frame, queues it for the writer and the pipeline, and returns ``None``
(so pycromanager keeps no copy). Pause and cancel act between events through a pre-hardware
hook. Raw frames are never dropped: if they cannot be written the run stops with an error.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import AcquireVFError, AcquisitionError, StorageError
from acquire_vf._frames import ChannelInfo, Frame, FrameId, metadata_number
from acquire_vf._stats import LatencyRecorder
from acquire_vf.acquisition._events import build_events, fallback_channels
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.acquisition._signals import RunSignals
from acquire_vf.config import AttachConnection, Profile
from acquire_vf.microscope import Microscope
from acquire_vf.pipeline import FrameSet, Pipeline, Stage
from acquire_vf.storage import BackgroundWriter, DatasetLayout, OmeTiffWriter

log = logging.getLogger(__name__)


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"


_ALLOWED = {
    RunState.IDLE: {RunState.RUNNING, RunState.FAILED},
    RunState.RUNNING: {RunState.PAUSED, RunState.CANCELLING, RunState.FINISHED, RunState.FAILED},
    RunState.PAUSED: {RunState.RUNNING, RunState.CANCELLING, RunState.FAILED},
    RunState.CANCELLING: {RunState.CANCELLED, RunState.FAILED},
    RunState.FINISHED: set(),
    RunState.CANCELLED: set(),
    RunState.FAILED: set(),
}


@dataclass(frozen=True)
class RunStatus:
    """A consistent snapshot for displays and status bars."""

    state: RunState
    frames_acquired: int
    frames_expected: int
    virtual_frames: int
    virtual_skipped: int
    raw_backlog_mb: float
    pipeline_depth: int
    fps: float


class AcquisitionRun:
    """One acquisition into ``out_dir``: Micro-Manager → writer + pipeline → OME-TIFF.

    Parameters
    ----------
    profile, microscope
        What to acquire, and the connected Micro-Manager.
    out_dir
        Folder for ``NAME.ome.tif``, its journal and ``session.json``.
    stages
        Processing stages, run in order on a separate thread (see :class:`Pipeline`).
    time_points
        Overrides the profile's number of time points.
    hooks
        Extra pycromanager hooks (``post_camera_hook_fn``, ...) for hardware-specific needs such
        as external triggering; they run in line with acquisition, so keep them fast.
    frame_source
        Optional function ``(pixels, frame_id, metadata) -> pixels`` that replaces the camera's
        pixels (the simulated specimen); it runs in line with acquisition, so it must be fast.
    """

    def __init__(self, profile: Profile, microscope: Microscope, out_dir: str | Path, *,
                 stages: Sequence[Stage] = (), time_points: int | None = None,
                 hooks: dict[str, Callable[..., Any]] | None = None,
                 frame_source: Callable[[np.ndarray, FrameId, dict[str, Any]], np.ndarray]
                 | None = None) -> None:
        self.profile = profile
        self.microscope = microscope
        self.out_dir = Path(out_dir)
        self.signals = RunSignals()
        self.latency = LatencyRecorder()
        self._stages = list(stages)
        self._time_points = time_points
        self._hooks = dict(hooks or {})
        self._frame_source = frame_source
        self._state = RunState.IDLE
        self._lock = threading.Lock()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._cancel = threading.Event()
        self.errors: list[str] = []
        self._fatal: AcquireVFError | None = None
        self._acq: Any = None
        self.frames_acquired = 0
        self.expected: list[FrameId] = []
        self.sequence = SequenceChecker([])
        self._fallback: set[str] = set()
        self.exposing: set[str] = set()
        self._pending: dict[tuple[int, int, int], dict[str, Frame]] = {}
        self._clock0: float | None = None
        self._first_ms: float | None = None
        self._last_ms: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.writer: BackgroundWriter | None = None
        self.pipeline: Pipeline | None = None
        self.data_path: Path | None = None

    # ----- state machine ---------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    def _set_state(self, new: RunState) -> None:
        with self._lock:
            if new == self._state:
                return
            if new not in _ALLOWED[self._state]:
                raise RuntimeError(f"run cannot go from {self._state.value} to {new.value}")
            self._state = new
        log.info("run %s", new.value)
        self.signals.stateChanged.emit(new)

    def pause(self) -> None:
        """Stop before the next event; the hardware stays where it is."""
        if self._state == RunState.RUNNING:
            self._unpaused.clear()
            self._set_state(RunState.PAUSED)

    def resume(self) -> None:
        if self._state == RunState.PAUSED:
            self._set_state(RunState.RUNNING)
            self._unpaused.set()

    def cancel(self) -> None:
        """Stop after the frame in progress; everything acquired so far is saved. Before the
        run starts, it makes the run end without exposing."""
        if self._state == RunState.IDLE:
            self._cancel.set()
        elif self._state in (RunState.RUNNING, RunState.PAUSED):
            self._cancel.set()
            self._set_state(RunState.CANCELLING)
            self._unpaused.set()

    def status(self) -> RunStatus:
        w, p = self.writer, self.pipeline
        return RunStatus(
            state=self._state, frames_acquired=self.frames_acquired,
            frames_expected=len(self.expected),
            virtual_frames=p.virtual_made if p else 0,
            virtual_skipped=(p.virtual_skipped if p else 0) + (w.virtual_dropped if w else 0),
            raw_backlog_mb=(w.raw_backlog_bytes / 2**20) if w else 0.0,
            pipeline_depth=p.depth if p else 0, fps=self.raw_fps,
        )

    @property
    def raw_fps(self) -> float:
        """Raw frame rate from Micro-Manager's frame timestamps (first to last frame)."""
        if self._first_ms is None or self._last_ms is None or self.frames_acquired < 2:
            return 0.0
        span = (self._last_ms - self._first_ms) / 1e3
        return (self.frames_acquired - 1) / span if span > 0 else 0.0

    # ----- the run ---------------------------------------------------------------------
    def run(self) -> RunState:
        """Acquire until done, cancelled or failed; write ``session.json``; return the end state.

        Raises the run's fatal error (one line) after everything acquired has been saved.
        """
        from pycromanager import Acquisition

        core = self.microscope.core
        self._prepare_output()
        data_path = self.out_dir / f"{self.profile.storage.name}.ome.tif"
        if data_path.exists():  # before any thread starts or anything moves
            raise StorageError(f"refusing to overwrite existing file '{data_path}'")
        base_z = core.get_position() if core.get_focus_device() else None
        base_xy = None
        if core.get_xy_stage_device():
            base_xy = (core.get_x_position(), core.get_y_position())
        events, self.expected, positions = build_events(
            self.profile, time_points=self._time_points, base_z_um=base_z, base_xy_um=base_xy)
        self._fallback = {name for name, *_ in fallback_channels(self.profile)}
        self.exposing = set()  # virtual channels exposed physically since their engine failed
        self.sequence = SequenceChecker(self.expected, optional=self._fallback)
        self.expected = self.sequence.expected
        _stop_camera_sequence(core)  # never resize the buffer under a streaming camera
        core.set_circular_buffer_memory_footprint(self.profile.queues.mm_buffer_mb)
        h, w = int(core.get_image_height()), int(core.get_image_width())
        dtype = "uint8" if int(core.get_bytes_per_pixel()) == 1 else "uint16"
        self.pipeline = Pipeline(self._stages, slot_size=self.profile.queues.pipeline,
                                 on_virtual=self._on_virtual, on_error=self._record_error,
                                 on_stage_failure=self._stage_failed, latency=self.latency)
        layout = DatasetLayout(
            channels=tuple(ChannelInfo(c.name) for c in self.profile.channels)
            + tuple(ChannelInfo(name) for name in sorted(self._fallback))
            + self.pipeline.outputs,
            shape=(h, w), dtype=dtype, positions=tuple(positions),
            z_offsets_um=self.profile.acquisition.z_offsets_um,
            pixel_size_um=self.profile.camera.pixel_size_um,
            bit_depth=self.profile.camera.bit_depth, profile=self.profile.name,
            extra={"specimen": self.profile.specimen.model_dump(mode="json")},
        )
        self.data_path = self.out_dir / f"{self.profile.storage.name}.ome.tif"
        self.writer = BackgroundWriter(
            OmeTiffWriter(self.data_path, layout),
            raw_limit_bytes=self.profile.queues.raw_write_mb * 2**20,
            virtual_limit=self.profile.queues.virtual_write, on_error=self._writer_failed)
        backend_args: dict[str, Any] = {}
        if isinstance(self.profile.connection, AttachConnection):
            backend_args["port"] = self.profile.connection.port  # the Java backend's bridge
        self.started_at = time.time()
        self._set_state(RunState.RUNNING)
        if self._cancel.is_set():  # cancelled before it started
            self._set_state(RunState.CANCELLING)
        try:
            with Acquisition(directory=None, image_process_fn=self._on_image,
                             pre_hardware_hook_fn=self._gate, show_display=False,
                             **backend_args, **self._hooks) as acq:
                self._acq = acq
                acq.acquire(events)
        except Exception as e:
            if self._fatal is None:
                self._fatal = _micro_manager_error(e)
        finally:
            self._acq = None
            _stop_camera_sequence(core)  # an aborted run can leave the camera streaming
            self._restore_stages(base_z, base_xy)
            self._finish()
        return self._state

    def _restore_stages(self, z: float | None, xy: tuple[float, float] | None) -> None:
        """Put focus and XY back where the run found them (as Micro-Manager's MDA does)."""
        core = self.microscope.core
        try:
            if z is not None and any(o != 0.0 for o in self.profile.acquisition.z_offsets_um):
                core.set_position(z)
            if xy is not None and self.profile.acquisition.positions:
                core.set_xy_position(*xy)
        except Exception as e:  # never let a stage error hide the run's own outcome
            self._record_error(f"could not return the stages to their start: {e}")

    def _prepare_output(self) -> None:
        prepare_output(self.out_dir)

    def _gate(self, event: Any) -> Any:
        """Pre-hardware hook: hold while paused, drop remaining events once cancelled, and
        drop fallback exposures while their engine works. In hardware-sequence mode
        pycromanager passes a list of events; otherwise one."""
        self._unpaused.wait()
        if self._cancel.is_set() or self._fatal is not None:
            return None
        if isinstance(event, list):
            kept = [e for e in event if self._wanted(e)]
            return kept or None
        return event if self._wanted(event) else None

    def _wanted(self, event: dict[str, Any]) -> bool:
        channel = (event.get("axes") or {}).get("channel")
        return not (channel in self._fallback and channel not in self.exposing)

    def _stage_failed(self, stage: Stage) -> None:
        """A synthesis engine failed: expose its channel from now on if the profile says so."""
        channel = getattr(stage, "channel", None)
        if channel in self._fallback and channel not in self.exposing:
            self.exposing.add(channel)
            self._record_error(f"virtual channel '{channel}': engine failed, exposing it "
                               "physically from now on (on_failure = 'expose')")

    def _on_image(self, pixels: np.ndarray, md: dict[str, Any]) -> None:
        """pycromanager's image_process_fn: tag, queue, return at once (never blocks)."""
        t0 = time.perf_counter()
        if self._fatal is not None:
            return None
        try:
            fid = self._identify(md)
            ready = t0
            if self._frame_source is not None:  # the simulated specimen stands in for the camera
                pixels = self._frame_source(pixels, fid, md)
                ready = time.perf_counter()
            arr = np.asarray(pixels)
            arr.flags.writeable = False  # raw data: no stage may change it in place
            elapsed = self._elapsed_ms(md, t0)
            frame = Frame(id=fid, pixels=arr, seq=self.frames_acquired, elapsed_ms=elapsed,
                          z_um=metadata_number(md.get("ZPosition_um_Intended")),
                          x_um=metadata_number(md.get("XPosition_um_Intended")),
                          y_um=metadata_number(md.get("YPosition_um_Intended")),
                          exposure_ms=metadata_number(md.get("Exposure")), received=ready)
            assert self.writer is not None
            self.writer.put_raw(frame)
        except AcquireVFError as e:
            self._abort(e)
            return None
        except Exception as e:
            self._abort(AcquisitionError(f"frame hand-off failed: {type(e).__name__}: {e}"))
            return None
        self.frames_acquired += 1
        self._first_ms = elapsed if self._first_ms is None else self._first_ms
        self._last_ms = elapsed
        self.signals.frameReady.emit(frame)
        self._collect(frame)
        self.latency.add("handoff", (time.perf_counter() - t0) * 1e3)
        return None

    def _identify(self, md: dict[str, Any]) -> FrameId:
        axes = md.get("Axes") or {}
        fid = FrameId(int(axes.get("time", 0)), int(axes.get("position", 0)),
                      int(axes.get("z", 0)), str(axes.get("channel", "")))
        for problem in (self.sequence.arrived(fid),
                        self.sequence.camera_number(metadata_number(md.get("ImageNumber"), int))):
            if problem:
                self._record_error(problem)
        return fid

    def _elapsed_ms(self, md: dict[str, Any], now: float) -> float:
        """Milliseconds since the first frame, on the best clock the metadata offers.

        ``TimeReceivedByCore`` (µs resolution, stamped by the core as the camera delivers) is
        right in sequence mode, where ``ElapsedTime-ms`` is the same for every frame of the
        sequence; without either, the arrival clock is used.
        """
        stamp = md.get("TimeReceivedByCore")
        t: float | None = None
        if isinstance(stamp, str):
            try:
                t = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
            except ValueError:
                t = None
        if t is None:
            t = now if "ElapsedTime-ms" not in md else float(md["ElapsedTime-ms"]) / 1e3
        if self._clock0 is None:
            self._clock0 = t
        return (t - self._clock0) * 1e3

    def _collect(self, frame: Frame) -> None:
        if frame.id.c in self._fallback:
            return  # a fallback exposure is data, not an engine input
        key = (frame.id.t, frame.id.p, frame.id.z)
        group = self._pending.setdefault(key, {})
        group[frame.id.c] = frame
        if len(group) == len(self.profile.channels):
            del self._pending[key]
            assert self.pipeline is not None
            self.pipeline.submit(FrameSet(*key, frames=group))

    def _on_virtual(self, frame: Frame) -> None:
        assert self.writer is not None
        if self.writer.put_virtual(frame):
            self.signals.virtualReady.emit(frame)

    def _record_error(self, msg: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(msg)
        self.signals.error.emit(msg)

    def _writer_failed(self, e: BaseException) -> None:
        self._abort(e if isinstance(e, AcquireVFError) else StorageError(str(e)))

    def _abort(self, e: AcquireVFError) -> None:
        """Stop acquisition at once (first fatal error wins); data written so far is kept."""
        with self._lock:
            if self._fatal is not None:
                return
            self._fatal = e
        log.error("%s", e)
        self._unpaused.set()
        acq = self._acq
        if acq is not None:
            try:
                acq.abort()
            except Exception as abort_err:  # already stopping
                log.debug("abort: %s", abort_err)

    def _finish(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close(drain=self._fatal is None)
        if self.writer is not None:
            try:
                self.writer.close()
            except StorageError as e:
                if self._fatal is None:
                    self._fatal = e
        if not self._cancel.is_set() and self._fatal is None and self.sequence.missing_at_end:
            self._record_error(
                f"{self.sequence.missing_at_end} frame(s) of the protocol never arrived")
        self.finished_at = time.time()
        if self._fatal is not None:
            self._record_error(str(self._fatal))
            self._set_state(RunState.FAILED)
        elif self._cancel.is_set():
            self._set_state(RunState.CANCELLED)
        else:
            self._set_state(RunState.FINISHED)

    @property
    def fatal_error(self) -> AcquireVFError | None:
        return self._fatal


def _stop_camera_sequence(core: Any) -> None:
    """Stop a hardware sequence that is still running (after an overflow, pycromanager aborts
    without stopping the camera, which then keeps writing into the circular buffer)."""
    try:
        if core.is_sequence_running():
            core.stop_sequence_acquisition()
            log.warning("stopped a camera sequence that was still running")
    except Exception as e:  # a camera without sequencing, or a bridge error
        log.debug("stop sequence: %s", e)


def prepare_output(out_dir: Path) -> None:
    """Create the output folder and prove it takes a file, before any hardware moves."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".acquire-vf-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise StorageError(f"output folder '{out_dir}' is not writable: "
                           f"{e.strerror or e}") from e


def _micro_manager_error(e: Exception) -> AcquireVFError:
    msg = " ".join(str(e).split())
    if "overflow" in msg.lower():
        return AcquisitionError(
            "Micro-Manager's circular buffer overflowed (frames arrived faster than they were "
            "read out); the run was stopped. Frames acquired before it are saved. Raise "
            "queues.mm_buffer_mb or lower the frame rate."
        )
    return AcquisitionError(f"Micro-Manager stopped the acquisition: {msg or type(e).__name__}")
