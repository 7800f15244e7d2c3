"""The stage chain and its worker thread, fed through a bounded latest-frame slot.

``submit`` never blocks: when the slot is full the oldest waiting frame set is dropped (its
virtual frames are counted as skipped) and the new one takes its place, so the engines always
work on the newest data and a slow engine costs virtual frames, never raw ones.

Freshness: with an engine slower than the camera, the set in a one-set slot has waited, when
the engines come free, anything from nothing to a whole arrival interval (half of one on
average), and a virtual frame is that much older than the model's own time. When the set has
waited more than half the interval at which sets arrive, and the next is due within that
interval, the worker holds for the next (a quarter of an interval past its due time at most)
and takes it instead. The wait drops to about an eighth of an interval on average, for as much
engine time idle (docs/inference.md, "Latency"). ``hold_for_newer=False`` (the profile's
``queues.hold_for_newer``) turns it off; a queue longer than one never holds.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf._stats import LatencyRecorder
from acquire_vf.pipeline._protocol import FrameSet, Stage, StageFault, check_stage

log = logging.getLogger(__name__)
DROPPED = "skipped: the engines were busy with a later frame set (latest-frame slot)"
BEHIND = "skipped: the engines fell behind (the frame sets the checks need filled their queue)"
STOPPED = "skipped: the run stopped before the engines reached it"
RHYTHM = 8
"""Arrival intervals the freshness hold estimates the set interval from."""


class Pipeline:
    """Runs ``stages`` in order on each submitted :class:`FrameSet` on one worker thread."""

    def __init__(self, stages: Sequence[Stage], *, slot_size: int = 1, kept_max: int = 8,
                 on_virtual: Callable[[Frame], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 on_stage_failure: Callable[[StageFault], None] | None = None,
                 latency: LatencyRecorder | None = None,
                 on_skip: Callable[[FrameId, str], None] | None = None,
                 name: str = "pipeline", hold_for_newer: bool = True) -> None:
        self.name = name
        """Its latency rows: ``NAME`` (all stages of a set), ``NAME_wait`` (time in the slot)."""
        self.stages = [check_stage(s) for s in stages]
        self._slot: deque[FrameSet] = deque()
        self._slot_size = slot_size
        self._kept_max = max(kept_max, slot_size)
        """Frame sets to keep (a check needs their virtual frames) wait beyond the slot, up to
        this many; past it the oldest goes too (recorded). Without the bound, engines slower
        than the camera while a channel was under checks held every set's raw frames: a soak
        grew by its four frames per set (130 KB at 128 x 128, 32 MB at 2048 x 2048) and ran
        on for minutes after its last set."""
        self.kept_dropped = 0
        self._hold = hold_for_newer and slot_size == 1
        self._arrivals: deque[float] = deque(maxlen=RHYTHM + 1)
        self._cv = threading.Condition()
        self._stop = False
        self._on_virtual = on_virtual
        self._on_error = on_error
        self._on_stage_failure = on_stage_failure
        self._on_skip = on_skip
        self.latency = latency or LatencyRecorder()
        self.sets_processed = 0
        self.sets_dropped = 0
        self.virtual_made = 0
        self.virtual_skipped = 0
        self.refocus_applied = 0
        self.errors: list[str] = []
        self.max_depth = 0
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="acquire-vf pipeline", daemon=True)
        self._thread.start()

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return tuple(c for s in self.stages for c in s.outputs)

    @property
    def depth(self) -> int:
        return len(self._slot)

    def submit(self, fs: FrameSet) -> None:
        """Hand over a frame set without waiting; the oldest waiting set is dropped if full."""
        with self._cv:
            if len(self._slot) >= self._slot_size:
                # the oldest set that may go; sets to keep (sentinels) wait their turn
                drop = next((s for s in self._slot if not s.keep), None)
                if drop is not None:
                    self._slot.remove(drop)
                    self.sets_dropped += 1
                    self._skipped(drop, self.outputs, DROPPED)
                elif len(self._slot) >= self._kept_max:
                    drop = self._slot.popleft()
                    self.sets_dropped += 1
                    self.kept_dropped += 1
                    self._skipped(drop, self.outputs, BEHIND)
            fs.submitted = time.perf_counter()
            self._arrivals.append(fs.submitted)
            self._slot.append(fs)
            self.max_depth = max(self.max_depth, len(self._slot))
            self._cv.notify()

    def wait_idle(self, timeout: float = 600.0) -> None:
        """Block until no frame set waits or runs (replays paced to the engines use it)."""
        with self._cv:
            self._cv.wait_for(lambda: (not self._slot and not self._busy) or self._stop,
                              timeout=timeout)

    def _run(self) -> None:
        _lower_priority()
        while True:
            with self._cv:
                fs = self._take()
                if fs is None:
                    return
                self._busy = True
            self.latency.add(f"{self.name}_wait", (time.perf_counter() - fs.submitted) * 1e3)
            try:
                self._process(fs)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _take(self) -> FrameSet | None:
        """The next set to run (``None`` once stopped and empty); called holding ``_cv``."""
        while True:
            while not self._slot and not self._stop:
                self._cv.wait()
            if not self._slot:
                return None
            hold = self._hold_for_fresher()
            if hold <= 0:
                return self._slot.popleft()
            self._cv.wait(hold)  # a newer set takes the slot's place, or the hold runs out

    def _hold_for_fresher(self) -> float:
        """Seconds to wait for a fresher set than the one waiting; 0 for a queue, a sentinel
        or a stopping run."""
        fs = self._slot[0]
        if not self._hold or len(self._slot) != 1 or fs.keep or self._stop:
            return 0.0
        return fresher_hold(time.perf_counter() - fs.submitted, self._arrivals)

    def _process(self, fs: FrameSet) -> None:
        if not fs.raw:
            fs.raw = dict(fs.frames)
        t_start = time.perf_counter()
        for stage in self.stages:
            t0 = time.perf_counter()
            try:
                produced = stage.process(fs)
            except Exception as e:
                self._record_error(f"stage '{stage.name}' failed at t={fs.t} p={fs.p} z={fs.z}: "
                                   f"{type(e).__name__}: {e}")
                self._skipped(fs, stage.outputs, f"engine failed: {type(e).__name__}")
                if self._on_stage_failure is not None:
                    self._on_stage_failure(StageFault(
                        stage.name, tuple(c.name for c in stage.outputs), e))
                continue
            finally:
                stage_ms = (time.perf_counter() - t0) * 1e3
                self.latency.add(stage.name, stage_ms)
            self._accept(stage, fs, produced, stage_ms)
            for name, why in fs.scores.pop("not_made", {}).items():  # by choice, not a fault
                if self._on_skip is not None:
                    self._on_skip(FrameId(fs.t, fs.p, fs.z, name), why)
        self.latency.add(self.name, (time.perf_counter() - t_start) * 1e3)
        self.sets_processed += 1

    def _accept(self, stage: Stage, fs: FrameSet, produced: dict[str, Frame],
                stage_ms: float) -> None:
        """Declared outputs are saved; a physical channel's name replaces that channel for the
        stages after this one (a refocused frame); anything else is an error. A virtual
        frame's latency is recorded whole and beyond its own stage's time (the slot's wait,
        earlier stages, the hand-off)."""
        virtual_names = {c.name for c in stage.outputs}
        for name, frame in produced.items():
            if name in virtual_names:
                if not np.isfinite(frame.pixels).all():
                    self._record_error(f"stage '{stage.name}': NaN or inf in '{name}' at "
                                       f"t={fs.t} p={fs.p} z={fs.z}; virtual frame skipped")
                    self._skipped(fs, [c for c in stage.outputs if c.name == name],
                                  "NaN or inf in the engine's output")
                    continue
                self.virtual_made += 1
                if frame.received:
                    e2e = (time.perf_counter() - frame.received) * 1e3
                    self.latency.add("virtual_end_to_end", e2e)
                    self.latency.add("virtual_beyond_engine", e2e - stage_ms)
                if self._on_virtual is not None:
                    self._on_virtual(frame)
            elif name in fs.frames:
                fs.frames[name] = frame  # a refocused physical channel for later stages
                self.refocus_applied += 1
            else:
                self._record_error(f"stage '{stage.name}' produced undeclared channel '{name}'")

    def _skipped(self, fs: FrameSet, outputs: Sequence[ChannelInfo], why: str) -> None:
        """Count virtual frames not made, and say why (the sink journals it)."""
        self.virtual_skipped += len(outputs)
        if self._on_skip is not None:
            for c in outputs:
                self._on_skip(FrameId(fs.t, fs.p, fs.z, c.name), why)

    def _record_error(self, msg: str) -> None:
        log.warning(msg)
        if len(self.errors) < 1000:  # bounded: a stage failing every frame must not grow memory
            self.errors.append(msg)
        elif len(self.errors) == 1000:
            self.errors.append("(further pipeline errors not recorded)")
        if self._on_error is not None:
            self._on_error(msg)

    def drop_waiting(self) -> None:
        """Skip every frame set waiting for the worker now (a forced stop), not when the run
        has wound down: the worker would otherwise go on through them meanwhile."""
        with self._cv:
            for fs in self._slot:
                self._skipped(fs, self.outputs, STOPPED)
            self.sets_dropped += len(self._slot)
            self._slot.clear()

    def close(self, drain: bool = True) -> None:
        """Stop the worker: finish waiting frame sets first if ``drain``, else skip them."""
        if not drain:
            self.drop_waiting()
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
        for s in self.stages:
            try:
                s.close()
            except Exception as e:
                self._record_error(f"closing stage '{s.name}': {e}")


def fresher_hold(age: float, arrivals: Sequence[float]) -> float:
    """Seconds to hold a set that has waited ``age`` s for the next, given the last arrival
    times (module docstring): 0 when it waited at most half the interval sets arrive at, or a
    whole one (the next is overdue: a time point ended), or there is no rhythm yet (under five
    arrivals). The interval is a low quantile of the gaps, which time-point gaps lengthen."""
    if len(arrivals) < 5:
        return 0.0
    gaps = np.sort(np.diff(np.asarray(arrivals)))
    interval = float(gaps[len(gaps) // 4])
    if age <= interval / 2 or age >= interval:
        return 0.0
    return 1.25 * interval - age


def _lower_priority(niceness: int = 19) -> None:
    """Let acquisition threads win the CPU over this one (Linux: per-thread nice value).

    Engines run here; on a machine with few cores they would otherwise compete with the frame
    hand-off and the writer. Elsewhere this is a no-op.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        except OSError as e:
            log.debug("could not lower the pipeline thread's priority: %s", e)


def virtual_frame(source: Frame, name: str, pixels: np.ndarray, qc: dict | None = None) -> Frame:
    """A virtual frame at the same time point, position and z as ``source``."""
    return replace(source, id=replace(source.id, c=name), pixels=pixels, role="virtual",
                   qc=dict(qc or {}))
