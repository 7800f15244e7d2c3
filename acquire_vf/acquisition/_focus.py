"""Closed-loop focus: per position, a defocus estimate from each frame set steers the Z stage.

The estimator stage gives each frame's distance from focus (unsigned: at low NA a widefield
frame 5 µm above focus looks like one 5 µm below). Per position the controller tracks where
focus is (``focus_um``, stage coordinates): the z-scan that starts the position sets it; each
later estimate offers two candidates, ``z - d`` and ``z + d``, and the one nearer the tracked
focus wins (the sign of the defocus). Then:

- a confident estimate (``sigma <= confident_sigma_um``), unambiguous, inside the estimator's
  range: the stage moves toward the tracked focus by ``gain`` of the way, at most
  ``max_step_um`` per time point and not below ``deadband_um`` (it cannot oscillate); the
  refocus stage meanwhile repairs the frame virtually when the signed defocus is inside its
  engine's trained range;
- unsure, ambiguous (both candidates about as near: a jump of focus), or at the edge of the
  estimator's range: a real z-scan (``zscan_planes`` exposures over ``+-zscan_range_um``, the
  normalised focus measure, a parabola through the best three planes) resets focus before the
  next time point. The first time point of each position is z-scanned unless
  ``zscan_at_start`` is off (without it, the start position is taken as in focus).

Stage moves and z-scan exposures go through the run (:meth:`AcquisitionRun.adjust_focus`,
:meth:`AcquisitionRun.insert`), between batches. Everything is recorded for ``session.json``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import useq

from acquire_vf._frames import Frame
from acquire_vf.config import Profile
from acquire_vf.focus import focus_score

log = logging.getLogger(__name__)
MAX_RECORDS = 100_000
AMBIGUOUS_HOLD_UM = 3.0
"""An estimate whose side of focus is unknown waits (the stage holds) up to this distance;
beyond it a z-scan settles focus (and, with the focus found before, the drift)."""
MAX_DRIFT = 5.0
"""Largest drift believed, µm per time point."""


@dataclass
class _Position:
    offset_um: float = 0.0
    """Correction applied to this position's focus so far."""
    focus_um: float | None = None
    """Where focus is tracked to be (stage coordinates); ``None`` until known."""
    focus_t: int = 0
    """The time point ``focus_um`` was found at."""
    velocity: float | None = None
    """Drift of focus (µm per time point), from successive focus positions; ``None`` until
    two are known."""
    fresh_seq: int = 0
    """Frames acquired before this (run order) predate the last z-scan: stale for steering."""
    zscan: dict[str, Any] | None = None
    """The z-scan in progress: its planes' z, scores by z, the time point."""
    last_t: int = -1


@dataclass
class FocusRecord:
    estimates: list[dict[str, Any]] = field(default_factory=list)
    corrections: list[dict[str, Any]] = field(default_factory=list)
    zscans: list[dict[str, Any]] = field(default_factory=list)


class FocusController:
    """Decides stage corrections and z-scans per position; the run carries them out."""

    def __init__(self, profile: Profile, *, truth: Callable[[int], float] | None = None,
                 range_um: float = 20.0) -> None:
        af = profile.autofocus
        self.af = af
        self.channel = next(iter(profile.estimator_engines()))
        ch = next(c for c in profile.channels if c.name == self.channel)
        self._preset = (ch.group, ch.preset, ch.exposure_ms)
        self._truth = truth
        self._lock = threading.Lock()
        self._pos: dict[int, _Position] = {}
        self.record = FocusRecord()
        self._run: Any = None
        self.range_um = range_um
        """The estimator's trained range: estimates near its edge are unsure."""
        self._emit: Callable[[dict[str, Any]], None] = lambda event: None
        self._signed: dict[tuple[int, int], tuple[float, float] | None] = {}

    def attach(self, run: Any) -> None:
        """The run that carries out moves and z-scans (it calls :meth:`start` when it starts);
        its ``signals.focus`` hears every estimate, correction and z-scan."""
        self._run = run
        signals = getattr(run, "signals", None)
        if signals is not None and hasattr(signals, "focus"):
            self._emit = signals.focus.emit

    # ----- the run's calls --------------------------------------------------------------
    def start(self, first_events: dict[int, useq.MDAEvent]) -> None:
        """Before the first event: z-scan each position where the profile says so."""
        if self.af.zscan_at_start:
            for p, ev in sorted(first_events.items()):
                self._zscan(p, int(ev.index.get("t", 0)), ev, "first time point")

    def estimate(self, t: int, p: int, channel: str, frame: Frame, distance: float,
                 sigma: float) -> float | None:
        """A frame set's estimate (pipeline thread); returns the signed defocus it resolves
        (``None`` when it cannot tell the sign)."""
        z = frame.z_um
        with self._lock:
            pos = self._pos.setdefault(p, _Position())
            if pos.focus_um is None and not self.af.zscan_at_start and self._run is not None:
                pos.focus_um = self._run.focus_z(p)  # no start z-scan: the start is focus
            tracked = pos.focus_um
            busy = pos.zscan is not None or frame.seq < pos.fresh_seq
        signed, ambiguous = self._resolve(z, distance, sigma, tracked, t, pos)
        if channel == self.channel:
            with self._lock:
                self._signed[(t, p)] = (signed, sigma) if signed is not None else None
                while len(self._signed) > 512:
                    self._signed.pop(next(iter(self._signed)))
        rec: dict[str, Any] = {"t": t, "p": p, "channel": channel,
                               "defocus_um": None if signed is None else round(signed, 3),
                               "distance_um": round(distance, 3), "sigma_um": round(sigma, 3)}
        if self._truth is not None and z is not None:
            rec["true_defocus_um"] = round(z - self._truth(t), 3)
        self._emit({"kind": "estimate", **rec})
        with self._lock:
            if len(self.record.estimates) < MAX_RECORDS:
                self.record.estimates.append(rec)
            if channel != self.channel or busy or t <= pos.last_t:
                return signed
            pos.last_t = t
        why = None
        if sigma > self.af.confident_sigma_um:
            why = f"unsure: sigma {sigma:.1f} um"
        elif distance > 0.9 * self.range_um:
            why = f"{distance:.1f} um from focus: the edge of the estimator's range"
        elif ambiguous and distance > AMBIGUOUS_HOLD_UM:
            why = f"{distance:.1f} um from focus, on which side unknown"
        if why is not None:
            self._zscan(p, t + 1, None, why, frame=frame)
            return signed
        if signed is None or z is None:
            return signed  # ambiguous and close: hold until it is clear or a z-scan settles it
        self._track(pos, t, z - signed)
        # where focus will be when the correction takes effect: the estimate may arrive after
        # later time points were acquired
        ahead = max(t, self._run.last_t(p) if self._run is not None else t) + 1
        target = self._predict(pos, ahead)
        here = self._run.focus_z(p) if self._run is not None else None
        err = (here - target) if here is not None else signed
        if abs(err) >= self.af.deadband_um:
            dz = float(np.clip(-self.af.gain * err, -self.af.max_step_um, self.af.max_step_um))
            self._correct(t, p, dz, f"{signed:+.2f} +- {sigma:.2f} um from focus")
        return signed

    def _resolve(self, z: float | None, distance: float, sigma: float,
                 tracked: float | None, t: int, pos: _Position) -> tuple[float | None, bool]:
        """The signed defocus ``z - focus``: of the two focus candidates (``z -+ distance``)
        the one nearer the focus predicted from the track (its last position and drift).
        A distance within the estimator's resolution is 0. ``(None, True)`` when the two are
        about as near (a jump of focus, or a drift not known yet)."""
        if z is None or tracked is None:
            return None, True
        if distance <= max(self.af.deadband_um, sigma):
            return 0.0, False
        near = z - self._predict(pos, t)  # the defocus the track predicts for this frame
        if abs(near) < 0.5 * distance:
            return None, True
        return (distance if near > 0 else -distance), False

    @staticmethod
    def _predict(pos: _Position, t: int) -> float:
        assert pos.focus_um is not None
        return pos.focus_um + (pos.velocity or 0.0) * (t - pos.focus_t)

    @staticmethod
    def _track(pos: _Position, t: int, focus: float, learn: bool = True) -> None:
        """Focus is at ``focus`` at time point ``t``; with ``learn``, update the drift."""
        if learn and pos.focus_um is not None and t > pos.focus_t:
            v = float(np.clip((focus - pos.focus_um) / (t - pos.focus_t), -MAX_DRIFT,
                              MAX_DRIFT))
            pos.velocity = v if pos.velocity is None else 0.7 * pos.velocity + 0.3 * v
        pos.focus_um, pos.focus_t = focus, t

    def signed(self, t: int, p: int, wait_s: float = 0.5) -> tuple[float, float] | None:
        """The signed defocus of (t, p) and its sigma, once estimated (waits up to
        ``wait_s``: the estimator runs beside the engines and is quicker)."""
        import time

        end = time.monotonic() + wait_s
        while True:
            with self._lock:
                known, got = (t, p) in self._signed, self._signed.get((t, p))
            if known or time.monotonic() >= end:
                return got
            time.sleep(0.005)

    def zscan_frame(self, frame: Frame, z_um: float) -> None:
        """A z-scan exposure arrived (acquisition thread): score it; fit when all are in."""
        p = frame.id.p
        with self._lock:
            scan = self._pos.setdefault(p, _Position()).zscan
            if scan is None:
                return
            scan["scores"][round(z_um, 4)] = focus_score(frame.pixels)
            done = len(scan["scores"]) >= len(scan["planes"])
        if done:
            self._finish_zscan(p)

    # ----- decisions --------------------------------------------------------------------
    def _zscan(self, p: int, t: int, like: useq.MDAEvent | None, why: str,
               frame: Frame | None = None) -> None:
        run = self._run
        if run is None:
            return
        here = run.focus_z(p)
        if here is None:
            log.warning("position %d: no focus stage position known; no z-scan", p)
            return
        n, r = max(self.af.zscan_planes, 3), self.af.zscan_range_um
        planes = [here + z for z in np.linspace(-r, r, n)]
        group, preset, exposure = self._preset
        x = like.x_pos if like is not None else (frame.x_um if frame is not None else None)
        y = like.y_pos if like is not None else (frame.y_um if frame is not None else None)
        events = [useq.MDAEvent(index={"t": t, "p": p, "z": 0},
                                channel={"config": preset, "group": group}, exposure=exposure,
                                x_pos=x, y_pos=y, z_pos=float(z),
                                metadata={"channel": self.channel, "zscan": True})
                  for z in planes]
        with self._lock:
            self._pos.setdefault(p, _Position()).zscan = {
                "t": t, "planes": planes, "scores": {}, "why": why, "from_z": here}
        run.insert(events)

    def _finish_zscan(self, p: int) -> None:
        with self._lock:
            pos = self._pos[p]
            scan, pos.zscan = pos.zscan, None
        assert scan is not None
        zs = np.array(sorted(scan["scores"]))
        s = np.array([scan["scores"][z] for z in zs])
        best = float(zs[int(np.argmax(s))])
        k = int(np.argmax(s))
        if 0 < k < len(zs) - 1:  # a parabola through the peak and its neighbours
            a, b, _ = np.polyfit(zs[k - 1:k + 2], np.log(s[k - 1:k + 2] + 1e-12), 2)
            if a < 0:
                best = float(np.clip(-b / (2 * a), zs[k - 1], zs[k + 1]))
        row = {"t": scan["t"], "p": p, "planes": len(zs), "best_z_um": round(best, 3),
               "why": scan["why"], "from_z_um": round(scan["from_z"], 3)}
        self._emit({"kind": "zscan", "dz_um": round(best - scan["from_z"], 3), **row})
        with self._lock:
            if len(self.record.zscans) < MAX_RECORDS:
                self.record.zscans.append(row)
        with self._lock:  # a z-scan after a jump must not teach the drift the jump
            pos = self._pos[p]
            self._track(pos, scan["t"], best, learn=pos.velocity is None)
            pos.fresh_seq = self._run.frames_acquired if self._run is not None else 0
        self._correct(scan["t"], p, best - scan["from_z"], "z-scan: " + scan["why"],
                      record=False)

    def _correct(self, t: int, p: int, dz: float, why: str, record: bool = True) -> None:
        if self._run is None:
            return
        self._run.adjust_focus(p, dz)
        if record:
            self._emit({"kind": "correction", "t": t, "p": p, "dz_um": round(dz, 3)})
        with self._lock:
            self._pos.setdefault(p, _Position()).offset_um += dz
            if record and len(self.record.corrections) < MAX_RECORDS:
                self.record.corrections.append({"t": t, "p": p, "dz_um": round(dz, 3),
                                                "why": why})

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"policy": self.af.policy, "channel": self.channel,
                    "estimates": list(self.record.estimates),
                    "corrections": list(self.record.corrections),
                    "zscans": list(self.record.zscans)}


def make_focus(profile: Profile, stages: Any) -> FocusController | None:
    """The closed-loop focus controller, listening to the defocus stage (``None`` unless the
    profile's autofocus policy is ``closed_loop``). On the simulated specimen each estimate
    also records the true defocus of its frame."""
    if profile.autofocus.policy != "closed_loop":
        return None
    spec = profile.specimen
    truth = spec.focus_at if spec.kind == "simulated" else None
    estimating = [s for s in stages if getattr(s, "name", "") == "defocus"
                  and hasattr(s, "listeners")]
    steering = next(iter(profile.estimator_engines()))
    range_um = 20.0
    for stage in estimating:
        est = stage.estimators.get(steering)
        range_um = float(getattr(est, "range_um", range_um))
    ctl = FocusController(profile, truth=truth, range_um=range_um)
    for stage in estimating:
        stage.listeners.append(ctl.estimate)
    for stage in stages:
        if getattr(stage, "name", "") == "refocus" and hasattr(stage, "lookup"):
            stage.lookup = ctl.signed
    return ctl
