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
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import useq

from acquire_vf._errors import AcquireVFError, AcquisitionError, StorageError
from acquire_vf._frames import Frame, raised_flags
from acquire_vf._stats import LatencyRecorder
from acquire_vf.acquisition._dose import DoseLedger
from acquire_vf.acquisition._focus import FocusController
from acquire_vf.acquisition._handoff import FrameHandoff
from acquire_vf.acquisition._plan import RunPlan, frame_id
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.acquisition._signals import RunSignals
from acquire_vf.acquisition._state import ALLOWED, RunState, RunStatus
from acquire_vf.acquisition._verify import Verifier
from acquire_vf.backends import AcquisitionBackend, BackendInfo, check_backend, event_channel
from acquire_vf.config import Profile
from acquire_vf.pipeline import Pipeline, RunStages, Stage
from acquire_vf.storage import BackgroundWriter, BacklogFull, FrameSink

log = logging.getLogger(__name__)


def _plane_tp(e: useq.MDAEvent) -> tuple[int, int]:
    return int(e.index.get("t", 0)), int(e.index.get("p", 0))
MAX_BATCH = 256
"""Most events per batch: inserted events and focus moves wait at most this long."""


class AcquisitionRun:
    """One acquisition: ``plan`` executed by ``backend``, frames to ``sink`` and the stages.

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
        Sentinel exposures and trust per virtual channel (``[verification]``), or none.
    pace_to_engines
        Hand each frame set over only once the engines and the verifier are idle, so no
        virtual frame is skipped and every decision sees the pairs before it (a replay as
        fast as possible; never on hardware, which cannot wait).
    focus
        Closed-loop focus (``autofocus.policy = "closed_loop"``): it corrects each position's
        focus through :meth:`adjust_focus` and z-scans through :meth:`insert`.
    """

    def __init__(self, profile: Profile, backend: AcquisitionBackend, sink: FrameSink,
                 plan: RunPlan, *, stages: RunStages | Sequence[Stage] = (),
                 verifier: Verifier | None = None, pace_to_engines: bool = False,
                 focus: FocusController | None = None) -> None:
        self.profile = profile
        self.backend = check_backend(backend)
        self.backend_info: BackendInfo = backend.describe()
        self.plan = plan
        self.signals = RunSignals()
        self.latency = LatencyRecorder()
        self.errors: list[str] = []
        self.exposing: set[str] = set()
        """Virtual channels exposed physically since their engine failed (or while the engine
        host is down)."""
        self.qc: dict[str, dict[str, Any]] = {}
        """Per virtual channel: frames made, frames flagged by QC, and counts by flag."""
        self.fell_back: set[str] = set()
        """Every virtual channel that was ever exposed as a fallback."""
        self.engine_host: Any = None
        self._host_exposing: set[str] = set()
        self.data_path = getattr(sink, "path", None)
        self.verifier = verifier
        if verifier is not None:
            verifier.connect(self.signals.fidelity.emit, self._record_error)
        self.ledger = DoseLedger(profile)
        self._sink = sink
        self.focus = focus
        self._focus_offset: dict[int, float] = {}
        self._last_t: dict[int, int] = {}
        self._base_z = self.backend_info.z_um
        if focus is not None:
            focus.attach(self)
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._state = RunState.IDLE
        self._lock = threading.Lock()
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._cancel = threading.Event()
        self._forced = False
        self._fatal: AcquireVFError | None = None
        self._inserted: deque[useq.MDAEvent] = deque()
        self._moves: deque[float] = deque()
        self.sequence = SequenceChecker(plan.expected, optional=set(plan.optional))
        self.expected = self.sequence.expected
        # focus estimation runs on its own thread and slot, so the slow engines never starve it
        stages = RunStages.of(stages)
        self.pipeline = Pipeline(stages.pipeline(), slot_size=profile.queues.pipeline,
                                 hold_for_newer=profile.queues.hold_for_newer,
                                 on_virtual=self._on_virtual, on_error=self._record_error,
                                 on_stage_failure=self._stage_failed, latency=self.latency,
                                 on_skip=lambda fid, why: self.writer.skip(fid, "virtual", why))
        self.focus_pipeline = Pipeline([stages.estimate], slot_size=1,
                                       on_error=self._record_error, latency=self.latency,
                                       name="focus_pipeline"
                                       ) if stages.estimate is not None else None
        self.writer = BackgroundWriter(
            sink, raw_limit_bytes=profile.queues.raw_write_mb * 2**20,
            virtual_limit=profile.queues.virtual_write, on_error=self._writer_failed)
        group = frozenset(event_channel(e) for e in plan.events) - plan.optional
        self.handoff = FrameHandoff(self.sequence, self.writer, self.pipeline, group,
                                    self.latency, focus_pipeline=self.focus_pipeline,
                                    record_error=self._record_error,
                                    keep=verifier.keep if verifier is not None else None,
                                    pace=self._wait_for_engines if pace_to_engines else None,
                                    on_zscan=focus.zscan_frame if focus is not None else None)

    # ----- state machine ---------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    def _set_state(self, new: RunState) -> None:
        with self._lock:
            if new == self._state:
                return
            if new not in ALLOWED[self._state]:
                raise RuntimeError(f"run cannot go from {self._state.value} to {new.value}")
            self._state = new
        log.info("run %s", new.value)
        self.signals.stateChanged.emit(new)

    def pause(self) -> None:
        """Hold before the next event; the hardware stays where it is."""
        if self._state == RunState.RUNNING:
            self._unpaused.clear()
            self._set_state(RunState.PAUSED)

    def resume(self) -> None:
        if self._state == RunState.PAUSED:
            self._set_state(RunState.RUNNING)
            self._unpaused.set()

    def cancel(self) -> None:
        """End the run within the event in progress (the backend aborts it); everything
        acquired so far is saved. Before the run starts, it makes the run end without
        exposing. Safe from any thread, and to call twice."""
        if self._state == RunState.IDLE:
            self._cancel.set()
        elif self._state in (RunState.RUNNING, RunState.PAUSED):
            self._cancel.set()
            self._set_state(RunState.CANCELLING)
            self._unpaused.set()
            self.backend.abort()

    def force_stop(self) -> None:
        """Cancel without waiting for the engines: frame sets still queued are skipped (the
        raw frames are all written, and the files stay readable)."""
        self._forced = True
        self.cancel()
        self.pipeline.drop_waiting()

    def insert(self, events: Sequence[useq.MDAEvent]) -> None:
        """Run ``events`` before the next batch. Their frames are saved like any other and
        never counted missing, except z-scan exposures (``metadata["zscan"]``), which go to
        the focus controller only."""
        with self._lock:
            for e in events:
                if not (e.metadata or {}).get("zscan"):
                    self.sequence.allow(frame_id(e))
            self._inserted.extend(events)

    def adjust_focus(self, p: int, dz_um: float) -> None:
        """Shift position ``p``'s focus by ``dz_um`` from its next event on (closed loop)."""
        with self._lock:
            self._focus_offset[p] = self._focus_offset.get(p, 0.0) + dz_um

    def focus_z(self, p: int) -> float | None:
        """Where position ``p``'s focus stands now (its plan z, or the start z, plus the
        corrections so far); ``None`` without a focus stage."""
        base = self.plan.position_z(p) if hasattr(self.plan, "position_z") else None
        base = base if base is not None else self._base_z
        if base is None:
            return None
        with self._lock:
            return base + self._focus_offset.get(p, 0.0)

    def last_t(self, p: int) -> int:
        """The last time point acquired at position ``p`` (-1 before the first)."""
        return self._last_t.get(p, -1)

    def _focused(self, batch: list[useq.MDAEvent]) -> list[useq.MDAEvent]:
        """The batch with each position's focus correction applied (z-scans are absolute)."""
        if self.focus is None:
            return batch
        out = []
        with self._lock:
            offsets = dict(self._focus_offset)
        for e in batch:
            if (e.metadata or {}).get("zscan"):
                out.append(e)
                continue
            p = int(e.index.get("p", 0))
            z = e.z_pos if e.z_pos is not None else self._base_z
            if z is None:
                out.append(e)
                continue
            out.append(e.model_copy(update={"z_pos": z + offsets.get(p, 0.0)}))
        return out

    def move_z(self, dz_um: float) -> None:
        """Move the focus stage by ``dz_um`` before the next batch."""
        with self._lock:
            self._moves.append(dz_um)

    def status(self) -> RunStatus:
        w, p = self.writer, self.pipeline
        return RunStatus(
            state=self._state, frames_acquired=self.frames_acquired,
            frames_expected=len(self.expected), virtual_frames=p.virtual_made,
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
        return self._fatal

    # ----- the run ---------------------------------------------------------------------
    def run(self) -> RunState:
        """Acquire until done, cancelled or failed; return the end state. The fatal error,
        if any, is in :attr:`fatal_error` (the caller raises it after writing the report)."""
        self.started_at = time.time()
        self._set_state(RunState.RUNNING)
        if self._cancel.is_set():  # cancelled before it started
            self._set_state(RunState.CANCELLING)
        try:
            self.backend.setup(self._gate)
            if self.focus is not None:
                firsts: dict[int, useq.MDAEvent] = {}
                for e in self.plan.events:
                    firsts.setdefault(int(e.index.get("p", 0)), e)
                self.focus.start(firsts)
            self._loop()
        except AcquireVFError as e:
            self._abort(e)
        except Exception as e:
            self._abort(AcquisitionError(f"{self.backend.name}: {type(e).__name__}: {e}"))
        finally:
            try:
                self.backend.teardown()
            except AcquireVFError as e:
                if self._fatal is None and not self._cancel.is_set():
                    self._fatal = e
            self._finish()
        return self._state

    def _loop(self) -> None:
        t0 = time.perf_counter()
        for batch in self._batches():
            start = batch[0].min_start_time
            if start:
                self._cancel.wait(max(0.0, t0 + start - time.perf_counter()))
            if self._stopping():
                return
            for img in self.backend.execute(self._focused(batch)):
                try:
                    frame = self.handoff.take(img)
                except BacklogFull as e:
                    self._abort(AcquisitionError(f"{e} (queues.raw_write_mb)"))
                    return
                except AcquireVFError as e:
                    self._abort(e)
                    return
                self._account(frame, img.event)
                if self._is_zscan(img.event):
                    continue
                self.signals.frameReady.emit(frame)
                if self._fatal is not None:
                    return

    def _batches(self) -> Iterator[list[useq.MDAEvent]]:
        """Events in order, cut where a time point is not yet due, where an event was
        inserted or a focus move asked for, and every :data:`MAX_BATCH` events."""
        queue = deque(self.plan.events)
        while (queue or self._inserted) and not self._stopping():
            with self._lock:
                inserted = list(self._inserted)
                self._inserted.clear()
                moves = list(self._moves)
                self._moves.clear()
            for dz in moves:
                self.backend.move_z(dz)
            if inserted:
                yield inserted
                continue
            batch = [queue.popleft()]
            while queue and len(batch) < MAX_BATCH and not queue[0].min_start_time \
                    and not self._inserted and not self._moves \
                    and not (self.focus is not None and _plane_tp(queue[0]) != _plane_tp(
                        batch[0])):  # closed loop: each time point sees the last correction
                batch.append(queue.popleft())
            yield batch

    def _wait_for_engines(self) -> None:
        self.pipeline.wait_idle()
        if self.verifier is not None:
            self.verifier.wait_idle()

    def _stopping(self) -> bool:
        return self._cancel.is_set() or self._fatal is not None

    def _gate(self, event: useq.MDAEvent) -> bool:
        """Just before the hardware: hold while paused, drop everything once stopping, and
        drop fallback exposures while their engine works."""
        self._unpaused.wait()
        if self._stopping():
            return False
        meta = event.metadata or {}
        if not meta.get("optional"):
            return True
        c = event_channel(event)
        if c in self.exposing:
            return True
        v = self.verifier
        return v is not None and v.wants(c, int(event.index.get("t", 0)),
                                         int(event.index.get("p", 0)))

    @staticmethod
    def _is_zscan(event: useq.MDAEvent) -> bool:
        return bool((event.metadata or {}).get("zscan"))

    def _account(self, frame: Frame, event: useq.MDAEvent | None = None) -> None:
        """The ledger and the verifier learn of every physical frame, with why it was taken."""
        c = frame.id.c
        if event is not None and self._is_zscan(event):  # focus-finding, not data
            probe = (event.metadata or {}).get("sign_probe")
            self.ledger.taken(frame, "sign_probe" if probe else "zscan")
            return
        why = "plan"
        self._last_t[frame.id.p] = max(self._last_t.get(frame.id.p, -1), frame.id.t)
        if c in self.plan.optional:
            planned = self.verifier.plan(frame.id.t, frame.id.p).get(c) \
                if self.verifier is not None else None
            why = planned or "engine_failure"
        self.ledger.taken(frame, why)
        if self.verifier is not None:
            self.verifier.physical(frame)

    def attach_engine_host(self, host: Any) -> None:
        """The engine host's faults reach the run: while it is down, channels with
        ``on_failure = "expose"`` are exposed physically; when it is back, virtual again."""
        self.engine_host = host
        host.on_fault, host.on_recovered = self._engine_host_down, self._engine_host_up
        if host.state != "up":  # it went down while the engines were being set up
            self._engine_host_down(host.reason or f"engine host {host.state}")

    def _engine_host_down(self, reason: str) -> None:
        self._record_error(reason)
        with self._lock:
            for v in self.profile.virtual_channels:
                if v.on_failure == "expose" and v.name in self.plan.optional \
                        and v.name not in self.exposing:
                    self.exposing.add(v.name)
                    self.fell_back.add(v.name)
                    self._host_exposing.add(v.name)

    def _engine_host_up(self) -> None:
        self._record_error("engine host restarted; virtual frames resume")
        with self._lock:
            self.exposing -= self._host_exposing
            self._host_exposing.clear()

    def _stage_failed(self, stage: Stage, error: BaseException | None = None) -> None:
        """A synthesis engine failed: expose its channel from now on if the profile says so
        (a fault of the engine host is the host's: it restarts and the channel returns)."""
        from acquire_vf.engine_host import EngineHostFault

        if isinstance(error, EngineHostFault):
            return
        channel = getattr(stage, "channel", None)
        if channel in self.plan.optional and channel not in self.exposing:
            self.exposing.add(channel)
            self.fell_back.add(channel)
            self._record_error(f"virtual channel '{channel}': engine failed, exposing it "
                               "physically from now on (on_failure = 'expose')")

    def _on_virtual(self, frame: Frame) -> None:
        if self.writer.put_virtual(frame):
            self.ledger.made_virtual(frame)
            self._count_qc(frame)
            if self.verifier is not None:
                self.verifier.virtual(frame)
            self.signals.virtualReady.emit(frame)

    def _count_qc(self, frame: Frame) -> None:
        """Per virtual channel: frames made, frames flagged, counts by flag; a warning line
        the first time each flag is raised (a run whose engine sees inputs unlike its
        training data must not look clean)."""
        flags = [f.value for f in raised_flags(frame.qc)]
        c = frame.id.c
        with self._lock:
            tally = self.qc.setdefault(c, {"frames": 0, "flagged": 0, "by_flag": {}})
            tally["frames"] += 1
            tally["flagged"] += bool(flags)
            new = [f for f in flags if f not in tally["by_flag"]]
            for f in flags:
                tally["by_flag"][f] = tally["by_flag"].get(f, 0) + 1
        for f in new:
            log.warning("virtual channel '%s': QC flag '%s' from t=%d (the virtual frames are "
                        "saved and marked; session.json 'qc' counts them)", c, f, frame.id.t)

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
        self.backend.abort()

    def _finish(self) -> None:
        if self.focus_pipeline is not None:
            self.focus_pipeline.close(drain=False)
        self.pipeline.close(drain=self._fatal is None and not self._forced)
        if self.verifier is not None:
            self.verifier.close()
            annotate = getattr(self._sink, "annotate", None)
            if annotate is not None:
                annotate("acquire-vf/sentinel-fidelity", [
                    {"channel": c, **row} for c, r in self.verifier.records.items()
                    for row in r.fidelity])
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
