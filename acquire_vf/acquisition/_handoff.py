"""From a backend's raw image to a saved, identified frame and a frame set for the engines.

:meth:`FrameHandoff.take` runs for every frame on the runner's thread. It never waits: the raw
frame goes to the writer's queue (bounded by memory; when full the run must stop, never drop),
the frame set to the pipeline's latest-frame slot (which drops the oldest set, never blocks).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import numpy as np

from acquire_vf._frames import Frame, FrameId, QcFlag, metadata_number, stage_positions
from acquire_vf._stats import LatencyRecorder
from acquire_vf.acquisition._plan import frame_id
from acquire_vf.acquisition._schedule import is_zscan
from acquire_vf.acquisition._sequence import SequenceChecker
from acquire_vf.backends import RawImage
from acquire_vf.pipeline import FrameSet, Pipeline
from acquire_vf.storage import BackgroundWriter


class FrameHandoff:
    """Identity, gap checks, timing, writing and grouping of arriving frames."""

    def __init__(self, sequence: SequenceChecker, writer: BackgroundWriter, pipeline: Pipeline,
                 group: frozenset[str], latency: LatencyRecorder, *,
                 focus_pipeline: Pipeline | None = None,
                 record_error: Any, keep: Any = None, pace: Any = None,
                 on_zscan: Any = None) -> None:
        self.sequence = sequence
        self.writer = writer
        self.pipeline = pipeline
        self.focus_pipeline = focus_pipeline
        self._group = group
        self.latency = latency
        self._record_error = record_error
        self._keep = keep
        """``(t, p) -> bool``: the frame set must not be dropped (a sentinel needs it)."""
        self._on_zscan = on_zscan
        """``(frame, z_um)``: a z-scan exposure (not saved, not grouped, not a gap)."""
        self._pace = pace
        """Called before each frame set is handed over: a replay paced to the engines waits
        there until they (and the verifier) are idle; live runs never wait."""
        self._pending: dict[tuple[int, int, int], dict[str, Frame]] = {}
        self._clock0: float | None = None
        self.first_ms: float | None = None
        self.last_ms: float | None = None
        self.frames = 0

    def take(self, img: RawImage) -> Frame:
        """Tag, queue for writing, group; return the frame. Raises if it cannot be written."""
        t0 = time.perf_counter()
        md = img.metadata
        if is_zscan(img.event):
            return self._zscan(img, t0)
        fid = self._identify(img)
        arr = np.asarray(img.pixels)
        arr.flags.writeable = False  # raw data: no stage may change it in place
        elapsed = self._elapsed_ms(md, t0)
        back, meant = stage_positions(md)
        at = {**meant, **back}  # where the stage was, read back, else where it was sent
        frame = Frame(id=fid, pixels=arr, seq=self.frames, elapsed_ms=elapsed,
                      z_um=at.get("Z"), x_um=at.get("X"), y_um=at.get("Y"),
                      exposure_ms=metadata_number(md.get("Exposure")), received=t0,
                      qc=_off_target_qc(md, meant))
        self.writer.put_raw(frame)
        self.frames += 1
        self.first_ms = elapsed if self.first_ms is None else self.first_ms
        self.last_ms = elapsed
        self._collect(frame)
        self.latency.add("handoff", (time.perf_counter() - t0) * 1e3)
        return frame

    def skipped(self, fid: FrameId, why: str) -> None:
        """A planned frame the run gave up (a device fault): journaled as missing with
        ``why``, and the virtual frames its frame set would have made with it."""
        self.writer.skip(fid, "raw", why)
        self.sequence.excuse(fid)
        key = (fid.t, fid.p, fid.z)
        if fid.c in self._group:
            self._pending.pop(key, None)
            self.pipeline.virtual_skipped += len(self.pipeline.outputs)
            for out in self.pipeline.outputs:
                self.writer.skip(FrameId(fid.t, fid.p, fid.z, out.name), "virtual",
                                 f"skipped: its input {fid.c} is missing ({why})")

    def _zscan(self, img: RawImage, t0: float) -> Frame:
        fid = frame_id(img.event)
        z = metadata_number(img.metadata.get("ZPosition_um_Intended"))
        z = z if z is not None else img.event.z_pos
        problem = self.sequence.camera_number(
            metadata_number(img.metadata.get("ImageNumber"), int))  # keeps the count going
        if problem:
            self._record_error(problem)
        frame = Frame(id=fid, pixels=np.asarray(img.pixels), seq=-1, elapsed_ms=0.0, z_um=z,
                      exposure_ms=metadata_number(img.metadata.get("Exposure")), received=t0)
        if self._on_zscan is not None and z is not None:
            self._on_zscan(frame, float(z))
        return frame

    @property
    def raw_fps(self) -> float:
        """Raw frame rate from the frames' own timestamps (first to last frame)."""
        if self.first_ms is None or self.last_ms is None or self.frames < 2:
            return 0.0
        span = (self.last_ms - self.first_ms) / 1e3
        return (self.frames - 1) / span if span > 0 else 0.0

    def _identify(self, img: RawImage) -> FrameId:
        fid = frame_id(img.event)
        for problem in (self.sequence.arrived(fid), self.sequence.camera_number(
                metadata_number(img.metadata.get("ImageNumber"), int))):
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
        if frame.id.c not in self._group:
            return  # a fallback or inserted exposure is data, not an engine input
        key = (frame.id.t, frame.id.p, frame.id.z)
        group = self._pending.setdefault(key, {})
        group[frame.id.c] = frame
        if len(group) == len(self._group):
            del self._pending[key]
            if self._pace is not None:
                self._pace()
            keep = bool(self._keep(key[0], key[1])) if self._keep is not None else False
            if self.focus_pipeline is not None:
                self.focus_pipeline.submit(FrameSet(*key, frames=dict(group)))
            self.pipeline.submit(FrameSet(*key, frames=group, keep=keep))


def _off_target_qc(md: dict[str, Any], meant: dict[str, float]) -> dict[str, Any]:
    """A camera frame's QC: ``stage_off_target`` with the distance and the intended position
    when the fault policy found the stage away from it; else nothing."""
    off = metadata_number(md.get("StageOffTarget_um"))
    if off is None:
        return {}
    return {QcFlag.STAGE_OFF_TARGET.value: True, "stage_off_target_um": round(off, 3),
            "intended_um": {a.lower(): v for a, v in meant.items()}}
