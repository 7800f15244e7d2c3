"""The acquisition run: a hardware-agnostic state machine over an :class:`AcquisitionBackend`.

The runner walks the plan's ``useq.MDAEvent``s in batches (a batch is a run of events that is
due now and needs no decision in between, so a backend may sequence it in hardware), waits for
each time point's start itself, and hands every frame to :class:`FrameHandoff`, which never
waits. Between batches it runs inserted events and focus moves. Pause holds before the next
event (the backend's gate); cancel ends the run within the event in progress, through the
backend's own abort, with everything acquired saved. Raw frames are never dropped: if they
cannot be written the run stops with an error.

After pymmcore-plus's ``mda/_runner.py``: the runner knows the protocol, not the hardware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import useq

from acquire_vf._errors import AcquireVFError, AcquisitionError, StorageError
from acquire_vf._frames import Frame
from acquire_vf._stats import LatencyRecorder
from acquire_vf.acquisition._disk import DiskWatch
from acquire_vf.acquisition._dose import DoseLedger
from acquire_vf.acquisition._exposure import EngineHostLike, ExposurePolicy
from acquire_vf.acquisition._faults import FaultHandler, cancellable_wait
from acquire_vf.acquisition._focus import FocusController
from acquire_vf.acquisition._handoff import FrameHandoff
from acquire_vf.acquisition._plan import RunPlan, frame_id
from acquire_vf.acquisition._qc import QcTally
from acquire_vf.acquisition._schedule import Schedule, is_zscan
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.acquisition._signals import RunSignals
from acquire_vf.acquisition._state import RunControl, RunState, RunStatus
from acquire_vf.acquisition._verify import Verifier
from acquire_vf.backends import (
    AcquisitionBackend,
    BackendInfo,
    check_backend,
    event_kind,
)
from acquire_vf.config import Profile
from acquire_vf.pipeline import Pipeline, RunStages, Stage
from acquire_vf.storage import BackgroundWriter, BacklogFull, FileSink, FrameSink

log = logging.getLogger(__name__)


class AcquisitionRun:
    """One acquisition: ``plan`` executed by ``backend``, frames to ``sink`` and the stages.

    The runner keeps the state machine and the loop; what it exposes next is its
    :class:`~acquire_vf.acquisition._schedule.Schedule`, which optional events expose its
    :class:`~acquire_vf.acquisition._exposure.ExposurePolicy`, and the QC counts its
    :class:`~acquire_vf.acquisition._qc.QcTally`.

    Parameters
    ----------
    profile
        Queue bounds, fallback policy and the report's facts.
    backend
        What executes events (Micro-Manager, the in-memory specimen, a replay).
    sink
        Where frames are stored; chosen by the caller (the session), written on one thread.
    plan
        The events, from :func:`~acquire_vf.acquisition.build_plan`.
    stages
        Processing stages, run in order on the pipeline's thread.
    verifier
        Sentinel exposures and trust per virtual channel (``[verification]``), or none;
        built on this run's ``signals`` (:func:`~acquire_vf.acquisition.make_verifier`).
    pace_to_engines
        Hand each frame set over only once the engines and the verifier are idle, so no
        virtual frame is skipped and every decision sees the pairs before it (a replay as
        fast as possible; never on hardware, which cannot wait).
    focus
        Closed-loop focus (``autofocus.policy = "closed_loop"``), built on this run's
        ``schedule`` and ``signals`` (:func:`~acquire_vf.acquisition.make_focus`): it
        corrects each position's focus and inserts z-scans through the schedule.
    schedule, signals
        Made here unless the caller made them first (for the focus controller).
    """

    def __init__(self, profile: Profile, backend: AcquisitionBackend, sink: FrameSink,
                 plan: RunPlan, *, stages: RunStages | Sequence[Stage] = (),
                 verifier: Verifier | None = None, pace_to_engines: bool = False,
                 focus: FocusController | None = None, schedule: Schedule | None = None,
                 signals: RunSignals | None = None) -> None:
        self.profile = profile
        self.backend = check_backend(backend)
        self.backend_info: BackendInfo = backend.describe()
        self.signals = signals if signals is not None else RunSignals()
        self.errors: list[str] = []
        """Every problem anything of the run reported on ``signals.error`` (the first 1000)."""
        self.signals.error.connect(self._keep_error)
        self.schedule = schedule if schedule is not None else Schedule(
            plan, self.backend_info.z_um, closed_loop=focus is not None)
        self.exposure = ExposurePolicy(profile, plan.optional, self._record_error, verifier)
        self.qc = QcTally()
        self.verifier = verifier
        self.ledger = DoseLedger(profile)
        self.focus = focus
        self._steered: dict[int, int] = {}
        """Per position, the last time point whose steering channel was acquired."""
        self._sink = sink
        self._ctl = RunControl(self._state_changed)
        # focus estimation runs on its own thread and slot, so the slow engines never starve it
        self.stages = stages = RunStages.of(stages)
        latency = LatencyRecorder()
        pipeline = Pipeline(stages.pipeline(), slot_size=profile.queues.pipeline,
                            kept_max=profile.queues.kept,
                            hold_for_newer=profile.queues.hold_for_newer,
                            on_virtual=self._on_virtual, on_error=self._record_error,
                            on_stage_failure=self.exposure.stage_failed, latency=latency,
                            on_skip=lambda fid, why: self.writer.skip(fid, "virtual", why))
        focus_pipeline = Pipeline([stages.estimate], slot_size=1, on_error=self._record_error,
                                  latency=latency, name="focus_pipeline"
                                  ) if stages.estimate is not None else None
        writer = BackgroundWriter(
            sink, raw_limit_bytes=profile.queues.raw_write_mb * 2**20,
            virtual_limit=profile.queues.virtual_write, on_error=self._writer_failed)
        group = frozenset(plan.channels) - plan.optional
        self.handoff = FrameHandoff(self.schedule.sequence, writer, pipeline, group, latency,
                                    focus_pipeline=focus_pipeline,
                                    record_error=self._record_error,
                                    keep=verifier.keep if verifier is not None else None,
                                    pace=self._wait_for_engines if pace_to_engines else None,
                                    on_zscan=focus.zscan_frame if focus is not None else None)
        self.disk = _disk_watch(sink, self.backend_info, profile, len(group),
                                len(pipeline.outputs), self._record_error)
        self.faults = FaultHandler(profile.faults, self.backend_info, self._give_up,
                                   cancellable_wait(self._ctl.cancel), self._late)

    # ----- what the run is made of (read by the report, displays and tests) -------------
    @property
    def plan(self) -> RunPlan:
        return self.schedule.plan

    @property
    def sequence(self) -> SequenceChecker:
        return self.schedule.sequence

    @property
    def frames_expected(self) -> int:
        """Planned frames that must arrive (from the plan's sizes: never walked whole)."""
        return self.schedule.sequence.total

    @property
    def pipeline(self) -> Pipeline:
        return self.handoff.pipeline

    @property
    def focus_pipeline(self) -> Pipeline | None:
        return self.handoff.focus_pipeline

    @property
    def writer(self) -> BackgroundWriter:
        return self.handoff.writer

    @property
    def latency(self) -> LatencyRecorder:
        return self.handoff.latency

    @property
    def data_path(self) -> Path | None:
        return self._sink.path if isinstance(self._sink, FileSink) else None

    @property
    def started_at(self) -> float | None:
        return self._ctl.started_at

    @property
    def finished_at(self) -> float | None:
        return self._ctl.finished_at

    # ----- state machine ---------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._ctl.state

    def _state_changed(self, new: RunState) -> None:
        log.info("run %s", new.value)
        self.signals.stateChanged.emit(new)

    def pause(self) -> None:
        """Hold before the next event; the hardware stays where it is."""
        if self._ctl.state == RunState.RUNNING:
            self._ctl.unpaused.clear()
            self._ctl.move(RunState.PAUSED)

    def resume(self) -> None:
        if self._ctl.state == RunState.PAUSED:
            self._ctl.move(RunState.RUNNING)
            self._ctl.unpaused.set()

    def cancel(self) -> None:
        """End the run within the event in progress (the backend aborts it); everything
        acquired so far is saved. Before the run starts, it makes the run end without
        exposing. Safe from any thread, and to call twice."""
        state = self._ctl.state
        if state == RunState.IDLE:
            self._ctl.cancel.set()
        elif state in (RunState.RUNNING, RunState.PAUSED):
            self._ctl.cancel.set()
            self._ctl.move(RunState.CANCELLING)
            self._ctl.unpaused.set()
            self.backend.abort()

    def force_stop(self) -> None:
        """Cancel without waiting for the engines: frame sets still queued are skipped (the
        raw frames are all written, and the files stay readable)."""
        self._ctl.forced = True
        self.cancel()
        self.pipeline.drop_waiting()

    def status(self) -> RunStatus:
        w, p = self.writer, self.pipeline
        return RunStatus(
            state=self._ctl.state, frames_acquired=self.frames_acquired,
            frames_expected=self.frames_expected, virtual_frames=p.virtual_made,
            virtual_skipped=p.virtual_skipped + w.virtual_dropped,
            raw_backlog_mb=w.raw_backlog_bytes / 2**20, pipeline_depth=p.depth,
            fps=self.raw_fps)

    @property
    def frames_acquired(self) -> int:
        return self.handoff.frames

    @property
    def raw_fps(self) -> float:
        return self.handoff.raw_fps

    @property
    def fatal_error(self) -> AcquireVFError | None:
        e = self._ctl.fatal
        return e if isinstance(e, AcquireVFError) else None

    def attach_engine_host(self, host: EngineHostLike) -> None:
        """The engine host's faults reach the run's exposure policy (see
        :meth:`ExposurePolicy.follow`)."""
        self.exposure.follow(host)

    # ----- the run ---------------------------------------------------------------------
    def run(self) -> RunState:
        """Acquire until done, cancelled or failed; return the end state. The fatal error,
        if any, is in :attr:`fatal_error` (the caller raises it after writing the report)."""
        ctl = self._ctl
        ctl.started_at = time.time()
        ctl.move(RunState.RUNNING)
        if ctl.cancel.is_set():  # cancelled before it started
            ctl.move(RunState.CANCELLING)
        try:
            self.backend.setup(self.faults.gate(self._gate))
            if self.focus is not None:
                self.focus.start(self.plan.first_events())
            if self.disk is not None:
                self.disk.check(self._frames_left(), now=True)
            self._loop()
        except AcquireVFError as e:
            self._abort(e)
        except Exception as e:
            self._abort(AcquisitionError(f"{self.backend.name}: {type(e).__name__}: {e}"))
        finally:
            try:
                self.backend.teardown()
            except AcquireVFError as e:
                if not ctl.cancel.is_set():
                    ctl.fail_first(e)
            self._finish()
        return ctl.state

    def _loop(self) -> None:
        t0 = time.perf_counter()
        ctl = self._ctl
        wait = self.focus is not None and self.focus.af.wait_for_estimate_s > 0
        for batch in self.schedule.batches(lambda: ctl.stopping, self.backend.move_z,
                                           before=self._await_focus if wait else None):
            start = batch[0].min_start_time
            if start:
                ctl.cancel.wait(max(0.0, t0 + start - time.perf_counter()))
            if ctl.stopping:
                return
            if self.disk is not None:
                self.disk.check(self._frames_left())
            for img in self.faults.execute(self.backend, self.schedule.focused(batch)):
                try:
                    frame = self.handoff.take(img)
                except BacklogFull as e:
                    self._abort(AcquisitionError(f"{e} (queues.raw_write_mb)"))
                    return
                except AcquireVFError as e:
                    self._abort(e)
                    return
                self._account(frame, img.event)
                if is_zscan(img.event):
                    continue
                if self.focus is not None and frame.id.c == self.focus.channel:
                    self._steered[frame.id.p] = frame.id.t
                self.signals.frameReady.emit(frame)
                if ctl.fatal is not None:
                    return

    def _await_focus(self, event: useq.MDAEvent) -> None:
        """Before a position's next time point: its last steering frame's estimate decided
        (``[autofocus] wait_for_estimate_s``), so what it asks for comes first."""
        assert self.focus is not None
        p, t = int(event.index.get("p", 0)), int(event.index.get("t", 0))
        last = self._steered.get(p)
        if last is not None and last < t:
            self.focus.wait_decided(last, p, self.focus.af.wait_for_estimate_s,
                                    lambda: self._ctl.stopping)

    def _wait_for_engines(self) -> None:
        self.pipeline.wait_idle()
        if self.verifier is not None:
            self.verifier.wait_idle()

    def _gate(self, event: useq.MDAEvent) -> bool:
        """Just before the hardware: hold while paused, drop everything once stopping, and
        drop fallback exposures while their engine works."""
        self._ctl.unpaused.wait()
        if self._ctl.stopping:
            return False
        return self.exposure.admits(event)

    def _give_up(self, event: useq.MDAEvent, why: str) -> None:
        """An event the fault policy gave up: a planned frame is journaled as missing (a
        z-scan plane is not data: the focus controller works with the planes it has)."""
        log.warning("skipped %s: %s", frame_id(event).as_dict(), why)
        if not is_zscan(event):
            self.handoff.skipped(frame_id(event), why)

    def _frames_left(self) -> int:
        return max(self.frames_expected - self.frames_acquired, 0)

    def _late(self, event: useq.MDAEvent) -> None:
        """A frame asked for again after a fault: later than its turn, not a gap."""
        if not is_zscan(event):
            self.sequence.excuse(frame_id(event))

    def _account(self, frame: Frame, event: useq.MDAEvent | None = None) -> None:
        """The ledger and the verifier learn of every physical frame, with why it was taken."""
        self.schedule.acquired(event, frame.id.p, frame.id.t)
        if is_zscan(event):  # focus-finding, not data
            self.ledger.taken(frame, event_kind(event))  # zscan or sign_probe
            return
        why = "plan"
        c = frame.id.c
        if c in self.plan.optional:
            planned = self.verifier.plan(frame.id.t, frame.id.p).get(c) \
                if self.verifier is not None else None
            why = planned or "engine_failure"
        self.ledger.taken(frame, why)
        if self.verifier is not None:
            self.verifier.physical(frame)

    def _on_virtual(self, frame: Frame) -> None:
        if self.writer.put_virtual(frame):
            self.ledger.made_virtual(frame)
            self.qc.count(frame)
            if self.verifier is not None:
                self.verifier.virtual(frame)
            self.signals.virtualReady.emit(frame)

    def _record_error(self, msg: str) -> None:
        self.signals.error.emit(msg)

    def _keep_error(self, msg: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(msg)

    def _writer_failed(self, e: BaseException) -> None:
        self._abort(e if isinstance(e, AcquireVFError) else StorageError(str(e)))

    def _abort(self, e: AcquireVFError) -> None:
        """Stop acquisition at once (first fatal error wins); data written so far is kept."""
        if not self._ctl.fail_first(e):
            return
        log.error("%s", e)
        self._ctl.unpaused.set()
        self.backend.abort()

    def _finish(self) -> None:
        ctl = self._ctl
        if self.focus_pipeline is not None:
            self.focus_pipeline.close(drain=False)
        self.pipeline.close(drain=ctl.fatal is None and not ctl.forced)
        if self.verifier is not None:
            self.verifier.close()
            if isinstance(self._sink, FileSink):
                self._sink.annotate("acquire-vf/sentinel-fidelity", [
                    {"channel": c, **row} for c, r in self.verifier.records.items()
                    for row in r.fidelity])
        try:
            self.writer.close()
        except StorageError as e:
            ctl.fail_first(e)
        if not ctl.cancel.is_set() and ctl.fatal is None and self.sequence.missing_at_end:
            self._record_error(
                f"{self.sequence.missing_at_end} frame(s) of the protocol never arrived")
        ctl.finished_at = time.time()
        if ctl.fatal is not None:
            self._record_error(str(ctl.fatal))
            ctl.move(RunState.FAILED)
        elif ctl.cancel.is_set():
            ctl.move(RunState.CANCELLED)
        else:
            ctl.move(RunState.FINISHED)


def _disk_watch(sink: FrameSink, info: BackendInfo, profile: Profile, inputs: int, outputs: int,
                warn: Callable[[str], None]) -> DiskWatch | None:
    """The output's disk watched against the plan (file sinks only): a raw frame's bytes, and
    the virtual frames each raw one brings."""
    if not isinstance(sink, FileSink):
        return None
    raw = info.shape[0] * info.shape[1] * np.dtype(info.dtype).itemsize
    per_frame = raw * (1 + outputs / max(inputs, 1))
    return DiskWatch(Path(sink.path).parent, per_frame, profile.storage.min_free_gb, warn)

