"""``acquire_vf.attach(core, profile)``: virtual channels inside someone else's acquisition.

Another program drives an MDA run on a pymmcore-plus ``CMMCorePlus`` (napari-micromanager,
pymmcore-widgets' MDA widget, a script). Attached, acquire-vf listens to that run's frames
(``frameReady``), groups them into frame sets, runs the profile's refocus and synthesis stages
on its own thread (the latest-frame slot: the run is never held up), and saves the virtual
channels in an OME-Zarr store of their own beside the run's data (marked as virtual, the
engine and its sha256, the inputs), calling back with each virtual frame (the napari widget
adds them as layers). It exposes nothing and moves nothing: checks that need an exposure
(sentinels, fallback exposures, closed-loop focus) are the driving program's to make.

A plan channel is the profile channel whose ``preset`` (or name) is the event's channel
``config``; frames of channels the profile does not know are left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf._errors import ProfileError
from acquire_vf._frames import ChannelInfo, Frame, FrameId
from acquire_vf.config import Profile

log = logging.getLogger(__name__)
PENDING_SETS = 64
"""Frame sets waiting for their last input channel at most (a channel the run skipped)."""


class Attached:
    """The profile's pipeline listening to ``core``'s MDA runs (:func:`attach`)."""

    def __init__(self, core: Any, profile: Profile, out_dir: Path | None,
                 on_virtual: Callable[[Frame], None] | None = None,
                 backend: str | None = None) -> None:
        from acquire_vf._session import build_stages
        from acquire_vf.pipeline import Pipeline

        if not profile.virtual_channels and not profile.autofocus.refocuses:
            raise ProfileError(f"profile '{profile.name}' has no virtual channel and no "
                               "refocus engine: nothing to attach")
        self.core, self.profile, self.out_dir = core, profile, out_dir
        self._on_virtual = on_virtual
        stages, _ = build_stages(profile, backend=backend)
        run = [s for s in (stages.refocus, *stages.synthesis) if s is not None]
        self.pipeline = Pipeline(run, on_virtual=self._virtual, on_error=self._error,
                                 name="attached")
        self.needed = sorted({c for s in run for c in getattr(s, "inputs", ())}
                             | set(getattr(stages.refocus, "engines", {}) or {}))
        self._by_config = {c.preset: c.name for c in profile.channels}
        self._by_config.update({c.name: c.name for c in profile.channels})
        self._pending: dict[tuple[int, int, int], dict[str, Frame]] = {}
        self._lock = threading.Lock()
        self.writer: Any = None
        self.frames_seen = 0
        self.sets_submitted = 0
        self.virtual_frames = 0
        self.errors: list[str] = []
        self.runs = 0
        ev = core.mda.events
        ev.sequenceStarted.connect(self._started)
        ev.frameReady.connect(self._frame)
        ev.sequenceFinished.connect(self._finished)

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return self.pipeline.outputs

    # ----- the driving program's threads: quick, never blocking --------------------------
    def _started(self, sequence: Any, *args: Any) -> None:
        from acquire_vf.storage import DatasetLayout, OmeZarrWriter

        self.runs += 1
        c = self.core
        if self.out_dir is None:
            return
        positions = [{"name": p.name or f"Pos{i}", "x_um": p.x, "y_um": p.y}
                     for i, p in enumerate(getattr(sequence, "stage_positions", ()) or ())]
        z = [float(v) for v in (sequence.z_plan or ())] if getattr(sequence, "z_plan", None) \
            else [0.0]
        layout = DatasetLayout(
            channels=self.outputs, shape=(int(c.getImageHeight()), int(c.getImageWidth())),
            dtype="uint8" if int(c.getBytesPerPixel()) == 1 else "uint16",
            positions=tuple(positions or [{"name": "Pos0", "x_um": None, "y_um": None}]),
            z_offsets_um=tuple(z or [0.0]), pixel_size_um=self.profile.camera.pixel_size_um,
            profile=self.profile.name, extra={"attached_to": "pymmcore-plus MDA"})
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.writer = OmeZarrWriter(self.out_dir / f"virtual-{self.runs:03d}.ome.zarr", layout)

    def _frame(self, img: np.ndarray, event: Any, meta: Any = None) -> None:
        from acquire_vf.pipeline import FrameSet

        self.frames_seen += 1
        config = getattr(event.channel, "config", None) if event.channel else None
        name = self._by_config.get(str(config))
        if name is None or name not in self.needed:
            return
        t, p, z = (int(event.index.get(k, 0)) for k in ("t", "p", "z"))
        frame = Frame(FrameId(t, p, z, name), np.array(img, copy=True), seq=self.frames_seen,
                      elapsed_ms=float((meta or {}).get("runner_time_ms") or 0.0),
                      z_um=event.z_pos, x_um=event.x_pos, y_um=event.y_pos,
                      exposure_ms=event.exposure)
        with self._lock:
            got = self._pending.setdefault((t, p, z), {})
            got[name] = frame
            if len(got) < len(self.needed):
                while len(self._pending) > PENDING_SETS:  # a set whose channel never came
                    self._pending.pop(next(iter(self._pending)))
                return
            del self._pending[(t, p, z)]
        self.sets_submitted += 1
        self.pipeline.submit(FrameSet(t, p, z, got, raw=dict(got)))

    def _finished(self, *args: Any) -> None:
        """The run ended: its waiting sets finish and its store closes on a thread of ours
        (the driving program's own handlers of this signal are not held up)."""
        writer = self.writer

        def close() -> None:
            self.pipeline.wait_idle()
            if writer is not None:
                writer.close()

        self._closing = threading.Thread(target=close, name="acquire-vf attached close")
        self._closing.start()

    # ----- the pipeline's thread ---------------------------------------------------------
    def _virtual(self, frame: Frame) -> None:
        self.virtual_frames += 1
        if self.writer is not None:
            try:
                self.writer.append(frame)
            except Exception as e:  # noqa: BLE001 - a write error must not stop the run
                self._error(f"writing {frame.id.c}: {e}")
        if self._on_virtual is not None:
            self._on_virtual(frame)

    def _error(self, msg: str) -> None:
        if len(self.errors) < 1000:
            self.errors.append(msg)
        log.warning("attached: %s", msg)

    def detach(self) -> None:
        """Stop listening; finish the frame sets waiting and close the store."""
        ev = self.core.mda.events
        for sig, slot in ((ev.sequenceStarted, self._started), (ev.frameReady, self._frame),
                          (ev.sequenceFinished, self._finished)):
            try:
                sig.disconnect(slot)
            except Exception as e:  # noqa: BLE001 - already disconnected
                log.debug("detach: %s", e)
        closing = getattr(self, "_closing", None)
        if closing is not None:
            closing.join()
        self.pipeline.close(drain=True)
        if self.writer is not None:
            self.writer.close()

    def report(self) -> dict[str, Any]:
        return {"runs": self.runs, "frames_seen": self.frames_seen,
                "sets_submitted": self.sets_submitted, "sets_dropped": self.pipeline.sets_dropped,
                "virtual_frames": self.virtual_frames, "errors": self.errors[:20]}


def attach(core: Any, profile: Profile | str | Path, out_dir: Path | None = None, *,
           on_virtual: Callable[[Frame], None] | None = None,
           backend: str | None = None) -> Attached:
    """Listen to ``core``'s MDA runs (a pymmcore-plus ``CMMCorePlus``) with ``profile``'s
    refocus and synthesis stages; virtual channels saved under ``out_dir`` (one store per
    run), each virtual frame passed to ``on_virtual``. ``detach()`` ends it."""
    if not isinstance(profile, Profile):
        from acquire_vf.config import load_profile

        profile = load_profile(profile)
    return Attached(core, profile, out_dir, on_virtual=on_virtual, backend=backend)
