"""Closed-loop focus: per position, a defocus estimate from each frame set steers the Z stage.

The estimator stage gives each frame's defocus. A brightfield estimator gives it signed (a
phase object is bright on one side of focus, dark on the other): each estimate places focus
directly, ``z - d``. A fluorescence estimator gives only the distance (at low NA a widefield
frame 5 µm above focus looks like one 5 µm below). Per position the controller tracks where
focus is (``focus_um``, stage coordinates): the z-scan that starts the position sets it; each
later unsigned estimate offers two candidates, ``z - d`` and ``z + d``, and the one nearer the
tracked focus wins (the sign of the defocus). Then:

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

The sign of the Z drive is checked, not assumed: with a signed (brightfield) estimator, the
first finished z-scan of the run is followed by one probe exposure of the steering channel
``SIGN_PROBE_UM`` above the focus it found. The estimator must call that frame defocused to
the same side; a confident estimate to the other side means the rig's Z drive moves the other
way (stage up is specimen down), and the controller flips its convention for the run: each
optical defocus ``d`` then places focus at ``z + d`` instead of ``z - d``. The check and its
verdict are in ``session.json`` (``focus.sign_check``).

Stage moves and z-scan exposures go through the run's schedule
(:meth:`Schedule.adjust_focus`, :meth:`Schedule.insert`), between batches. Everything is
recorded for ``session.json``.
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
from acquire_vf._stats import Thinned
from acquire_vf.acquisition._payloads import (
    FocusCorrection,
    FocusEstimate,
    FocusEvent,
    FocusZScan,
    SignCheck,
)
from acquire_vf.acquisition._schedule import ScheduleView
from acquire_vf.backends import RunEvent
from acquire_vf.config import AutofocusClosedLoop, Profile
from acquire_vf.focus import focus_score, peak_of
from acquire_vf.pipeline import RunStages

log = logging.getLogger(__name__)
MAX_RECORDS = 20_000
"""Z-scans kept for session.json (they are rare; the run folder's focus.jsonl has every
one: :mod:`acquire_vf.acquisition._event_log`)."""
SAMPLE_ROWS = 2_000
"""Estimates and corrections (about one per time point each) session.json keeps, thinned
evenly over the run (:class:`~acquire_vf._stats.Thinned`): at 20,000 kept, a long run's
memory grew about 0.6 kB per time point until the 20,000th (measured in the soak)."""
AMBIGUOUS_HOLD_UM = 3.0
"""An estimate whose side of focus is unknown waits (the stage holds) up to this distance;
beyond it a z-scan settles focus (and, with the focus found before, the drift)."""
JUMP_UM = 8.0
"""An unexplained distance beyond this is a jump of focus (a plate move), not drift: the
z-scan after it does not change the drift."""
MAX_DRIFT = 5.0
"""Largest drift believed, µm per time point."""
STEP_UM, STEP_SIGMAS = 3.0, 4.0
"""A signed estimate further than both of these (µm, and the estimate's sigmas) from where
the track predicted focus is a step of focus (a knock, a plate move), not drift: the track is
shifted by it and the stage follows at once (a step left in the track would bend the drift it
predicts for the next time points)."""
DENSE = 6
"""A track of signed estimates has a point every time point: a least-squares line through
the last ``DENSE`` predicts (a line through three would pass their noise on)."""


@dataclass
class _Position:
    offset_um: float = 0.0
    """Correction applied to this position's focus so far."""
    track: list[tuple[int, float]] = field(default_factory=list)
    """Where focus was found (time point, stage µm): z-scans, and estimates whose side was
    clear; since the last jump (earlier points shifted by it)."""
    zscan: dict[str, Any] | None = None
    """The z-scan in progress: its planes' z, scores by z, the time point."""
    last_t: int = -1
    unsure_run: int = 0
    """Unsure estimates in a row taken as in focus (``unsure_hold``)."""
    fresh_seq: int = 0
    """Frames acquired before this (run order) predate the last z-scan: stale for steering."""

    @property
    def focus_um(self) -> float | None:
        return self.track[-1][1] if self.track else None


SIGN_PROBE_UM = 4.0
"""How far above the first z-scan's focus the sign probe is taken (inside every shipped
estimator's range, outside the in-focus band, where a brightfield frame shows its side)."""


@dataclass
class FocusRecord:
    estimates: Thinned = field(default_factory=lambda: Thinned(SAMPLE_ROWS))
    corrections: Thinned = field(default_factory=lambda: Thinned(SAMPLE_ROWS))
    zscans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def estimates_total(self) -> int:
        return self.estimates.total


class FocusController:
    """Decides stage corrections and z-scans per position; the run carries them out."""

    def __init__(self, profile: Profile, *, truth: Callable[[int], float] | None = None,
                 range_um: float = 20.0, signed: frozenset[str] = frozenset(),
                 refocus_range: tuple[float, float] | None = None,
                 sign_probe: Any = None, schedule: ScheduleView | None = None,
                 emit: Callable[[FocusEvent], None] | None = None) -> None:
        af = profile.autofocus
        if not isinstance(af, AutofocusClosedLoop):
            raise ValueError(f"the focus controller is closed loop's, not '{af.policy}'s")
        self.af = af
        self.channel = next(iter(profile.estimator_engines()))
        self.zscan_channel = af.zscan_channel or self.channel
        ch = next(c for c in profile.channels if c.name == self.zscan_channel)
        self._preset = (ch.group, ch.preset, ch.exposure_ms)
        self.signed_channels = signed
        """Channels whose estimator gives the signed defocus (brightfield)."""
        self.refocus_range = refocus_range
        """Defocus (µm) the refocus engines were trained on, lowest to highest: a step beyond
        it is confirmed by a z-scan (``confirm_steps``)."""
        self._truth = truth
        self._lock = threading.Lock()
        self._decided = threading.Condition(self._lock)
        self._handled: dict[int, int] = {}
        """Per position, the last time point whose steering estimate was decided."""
        self.log: str | None = None
        """The run folder's file with every focus event (set by whoever writes it)."""
        self.late_estimates = 0
        """Time points that went ahead without their previous estimate (``wait_for_estimate_s``
        ran out)."""
        self._pos: dict[int, _Position] = {}
        self.record = FocusRecord()
        self._schedule = schedule
        """The run's schedule: it carries out the moves and z-scans (``None``: decisions are
        recorded, nothing moves)."""
        self.range_um = range_um
        """The estimator's trained range: estimates near its edge are unsure."""
        self._emit: Callable[[FocusEvent], None] = emit or (lambda event: None)
        """The run's ``signals.focus``: every estimate, correction and z-scan."""
        self._signed: dict[tuple[int, int], tuple[float, float] | None] = {}
        self.convention = 1.0
        """+1: optical defocus = stage z - stage focus; -1: the Z drive is inverted."""
        self._probe_estimator = sign_probe if self.channel in signed else None
        """The steering estimator, to check the Z drive's sign on a probe frame (signed only)."""
        self._probe: dict[str, Any] | None = None
        self.sign_check: dict[str, Any] | None = None
        steer = next(c for c in profile.channels if c.name == self.channel)
        self._steer_preset = (steer.group, steer.preset, steer.exposure_ms)
        self._true_sign = -1.0 if profile.specimen.z_drive_inverted else 1.0

    # ----- the run's calls --------------------------------------------------------------
    def start(self, first_events: dict[int, useq.MDAEvent]) -> None:
        """Before the first event: z-scan each position where the profile says so."""
        if self.af.zscan_at_start:
            for p, ev in sorted(first_events.items()):
                self._zscan(p, int(ev.index.get("t", 0)), ev, "first time point")

    def estimate(self, t: int, p: int, channel: str, frame: Frame, distance: float,
                 sigma: float) -> float | None:
        """A frame set's estimate (pipeline thread): the distance from focus, or the signed
        defocus for a signed estimator's channel; returns the signed defocus it resolves
        (``None`` when it cannot tell the side). Once the steering channel's estimate is
        decided, :meth:`wait_decided` for (t, p) returns."""
        try:
            return self._estimate(t, p, channel, frame, distance, sigma)
        finally:
            if channel == self.channel:
                with self._decided:
                    self._handled[p] = max(self._handled.get(p, -1), t)
                    self._decided.notify_all()

    def wait_decided(self, t: int, p: int, timeout_s: float,
                     stopping: Callable[[], bool]) -> bool:
        """Wait until the steering estimate of (t, p) is decided (its correction or z-scan
        asked for): ``True``; ``False`` when ``timeout_s`` ran out or the run is stopping
        (counted as a late estimate)."""
        if self._wait(lambda: self._handled.get(p, -1) >= t, timeout_s, stopping):
            return True
        with self._lock:
            self.late_estimates += 1
        return False

    def _wait(self, ready: Callable[[], bool], timeout_s: float,
              stopping: Callable[[], bool] = lambda: False) -> bool:
        """Wait on the controller's condition until ``ready()`` (checked holding the lock),
        ``timeout_s`` runs out or ``stopping()``; whether it became ready."""
        import time

        end = time.monotonic() + timeout_s
        with self._decided:
            while not ready():
                left = end - time.monotonic()
                if left <= 0 or stopping():
                    return False
                self._decided.wait(min(left, 0.1))
        return True

    def _estimate(self, t: int, p: int, channel: str, frame: Frame, distance: float,
                  sigma: float) -> float | None:
        self._check_sign()
        z = frame.z_um
        given = channel in self.signed_channels
        with self._lock:
            pos = self._pos.setdefault(p, _Position())
            if not pos.track and not self.af.zscan_at_start and self._schedule is not None:
                here0 = self._schedule.focus_z(p)  # no start z-scan: the start is focus
                if here0 is not None:
                    pos.track.append((t, here0))
            signed: float | None  # stage-relative: z - focus, in stage coordinates
            optical: float | None  # the specimen's defocus (what refocus engines learned)
            if given:
                optical, ambiguous, distance = distance, False, abs(distance)
                signed = self.convention * optical
            else:
                signed, ambiguous = self._resolve(z, distance, sigma, t, pos)
                optical = None if signed is None else self.convention * signed
            busy = pos.zscan is not None or frame.seq < pos.fresh_seq or \
                self._probe is not None
        if channel == self.channel:
            with self._lock:
                self._signed[(t, p)] = (optical, sigma) if optical is not None else None
                while len(self._signed) > 512:
                    self._signed.pop(next(iter(self._signed)))
                self._decided.notify_all()  # the refocus stage may be waiting (signed())
        rec: dict[str, Any] = {"t": t, "p": p, "channel": channel,
                               "defocus_um": None if optical is None else round(optical, 3),
                               "distance_um": round(distance, 3), "sigma_um": round(sigma, 3)}
        if self._truth is not None and z is not None:
            rec["true_defocus_um"] = round(self._true_sign * (z - self._truth(t)), 3)
        self._emit(FocusEstimate(**rec))
        with self._lock:
            self.record.estimates.append(rec)
            if channel != self.channel or busy or t <= pos.last_t:
                return signed
            pos.last_t = t
        res = max(self.af.resolution_um, self.af.deadband_um)
        why, jump, span = None, False, self.af.zscan_range_um
        if given and signed is not None and z is not None and \
                sigma <= self.af.confident_sigma_um and distance <= 0.9 * self.range_um:
            pos.unsure_run = 0
            self._follow(p, t, pos, z - signed, optical if optical is not None else signed,
                         sigma, frame)
            return signed
        if sigma > self.af.confident_sigma_um and distance - 2 * sigma <= self.af.resolution_um \
                and self._hold(pos, t, z):
            self._steer(p, t, pos, f"unsure (sigma {sigma:.1f} um) where the track puts focus: "
                                   f"taken as in focus ({pos.unsure_run} in a row)")
            return signed
        if sigma > self.af.confident_sigma_um:
            why = f"unsure: sigma {sigma:.1f} um"
        elif distance > 0.9 * self.range_um:
            why, jump = f"{distance:.1f} um from focus: the edge of the estimator's range", True
        elif ambiguous and distance > res:
            jump = distance > JUMP_UM
            why = f"{distance:.1f} um from focus, on which side unknown" + (
                " (a jump)" if jump else "")
            if not jump:  # focus is near: a fine scan around it
                span = min(span, max(3.0, 2.0 * distance + 2.0))
        if why is not None:
            self._zscan(p, t + 1, None, why, frame=frame, jump=jump, span=span)
            return signed
        if signed is not None and z is not None and distance > res:
            with self._lock:
                self._observe(pos, t, z - signed)
        self._steer(p, t, pos, f"{'?' if signed is None else f'{signed:+.2f}'} +- "
                               f"{sigma:.2f} um from focus")
        return signed

    def _hold(self, pos: _Position, t: int, z: float | None) -> bool:
        """An unsure frame the track puts in focus: held (``unsure_hold`` in a row at most)."""
        with self._lock:
            predicted = self._predict(pos, t)
            near = z is not None and predicted is not None and \
                abs(z - predicted) <= self.af.resolution_um
            if near and pos.unsure_run < self.af.unsure_hold:
                pos.unsure_run += 1
                assert z is not None
                self._observe(pos, t, z)  # in focus, as far as the frame can tell
                return True
            pos.unsure_run = 0
            return False

    def _follow(self, p: int, t: int, pos: _Position, focus: float, signed: float,
                sigma: float, frame: Frame) -> None:
        """A confident signed estimate: focus is at ``focus`` (stage µm). Far from where the
        track predicted (a step: ``STEP_UM``, ``STEP_SIGMAS``), the track is shifted by the
        step and the stage goes there at once; otherwise the estimate joins the track and the
        stage follows it (rate-limited)."""
        with self._lock:
            predicted = self._predict(pos, t)
            jump = predicted is not None and abs(focus - predicted) > max(
                STEP_UM, STEP_SIGMAS * sigma)
            if jump and predicted is not None:
                shift = focus - predicted
                pos.track = [(a, b + shift) for a, b in pos.track]
            self._observe(pos, t, focus)
        if jump and self._schedule is not None:
            here = self._schedule.focus_z(p)
            if here is not None:
                ahead = max(t, self._schedule.last_t(p)) + 1
                with self._lock:
                    target = self._predict(pos, ahead)
                self._correct(t, p, (target if target is not None else focus) - here,
                              f"a jump of focus: {signed:+.2f} +- {sigma:.2f} um from focus")
                lo, hi = self.refocus_range or (0.0, 0.0)
                if self.af.confirm_steps and not lo <= signed <= hi:
                    self._zscan(p, t + 1, None, f"confirm a step of {-signed:+.1f} um, beyond "
                                f"the refocus range", span=3.0, frame=frame)
                return
        self._steer(p, t, pos, f"{signed:+.2f} +- {sigma:.2f} um from focus")

    def _steer(self, p: int, t: int, pos: _Position, why: str) -> None:
        """Move the stage toward where the track says focus will be at the next time point
        to be acquired (the estimate may arrive after later ones were)."""
        if self._schedule is None:
            return
        ahead = max(t, self._schedule.last_t(p)) + 1
        with self._lock:
            target = self._predict(pos, ahead)
        here = self._schedule.focus_z(p)
        if target is None or here is None:
            return
        err = target - here
        if abs(err) >= self.af.deadband_um:
            dz = float(np.clip(self.af.gain * err, -self.af.max_step_um, self.af.max_step_um))
            self._correct(t, p, dz, why)

    def _resolve(self, z: float | None, distance: float, sigma: float, t: int,
                 pos: _Position) -> tuple[float | None, bool]:
        """The signed defocus ``z - focus``. Within the estimator's resolution it is the
        track's prediction (bounded by the distance); beyond it, the distance on the side the
        track predicts (``near``). ``(None, True)`` when the track predicts much less than
        the distance (a jump, or a drift the track has wrong)."""
        predicted = self._predict(pos, t)
        if z is None or predicted is None:
            return None, True
        near = z - predicted
        if distance <= max(self.af.deadband_um, self.af.resolution_um):
            return float(np.clip(near, -distance, distance)), False
        if abs(near) < 0.5 * distance:
            return None, True
        return (distance if near >= 0 else -distance), False

    @staticmethod
    def _predict(pos: _Position, t: int) -> float | None:
        """Focus at time point ``t`` from the track: constant from one point, a line through
        the last three, a parabola through the last five once they span 8 time points; a
        least-squares line through the last ``DENSE`` where they are that many consecutive
        time points or nearly (signed estimates)."""
        if not pos.track:
            return None
        dense = pos.track[-DENSE:]
        if len(dense) == DENSE and dense[-1][0] - dense[0][0] <= DENSE + 2:
            ts = np.array([a for a, _ in dense], float)
            fs = np.array([b for _, b in dense], float)
            coef = np.polyfit(ts - ts[-1], fs, 1)
            if abs(coef[0]) <= MAX_DRIFT:
                return float(np.polyval(coef, min(t - ts[-1], 30.0)))
        tr = pos.track[-5:]
        if len(tr) == 1:
            return tr[0][1]
        ts = np.array([a for a, _ in tr], float)
        fs = np.array([b for _, b in tr], float)
        deg = 2 if len(tr) >= 4 and ts[-1] - ts[0] >= 8 else 1
        if deg == 1:
            ts, fs = ts[-3:], fs[-3:]
        if np.ptp(ts) == 0:
            return float(fs[-1])
        coef = np.polyfit(ts - ts[-1], fs, deg)
        dt = min(t - ts[-1], 30.0)
        slope = np.polyval(np.polyder(coef), 0.0)
        if abs(slope) > MAX_DRIFT:
            return float(fs[-1] + np.sign(slope) * MAX_DRIFT * dt)
        return float(np.polyval(coef, dt))

    @staticmethod
    def _observe(pos: _Position, t: int, focus: float) -> None:
        if pos.track and pos.track[-1][0] == t:
            pos.track[-1] = (t, focus)
        else:
            pos.track.append((t, focus))
        del pos.track[:-8]

    def signed(self, t: int, p: int, wait_s: float = 0.5) -> tuple[float, float] | None:
        """The signed defocus of (t, p) and its sigma, once estimated (waits up to
        ``wait_s``: the estimator runs beside the engines and is quicker)."""
        self._wait(lambda: (t, p) in self._signed, wait_s)
        with self._lock:
            return self._signed.get((t, p))

    def zscan_frame(self, frame: Frame, z_um: float) -> None:
        """A z-scan exposure arrived (acquisition thread): score it; fit when all are in. The
        sign probe is kept for the estimator's thread (:meth:`_check_sign`)."""
        p = frame.id.p
        with self._lock:
            probe = self._probe
            if probe is not None and "frame" not in probe and p == probe["p"] and \
                    frame.id.c == self.channel and abs(z_um - probe["z"]) < 1e-3:
                probe["frame"] = frame
                return
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
               frame: Frame | None = None, jump: bool = False,
               span: float | None = None) -> None:
        run = self._schedule
        if run is None:
            return
        here = run.focus_z(p)
        if here is None:
            log.warning("position %d: no focus stage position known; no z-scan", p)
            return
        n, r = max(self.af.zscan_planes, 3), span or self.af.zscan_range_um
        planes = [here + z for z in np.linspace(-r, r, n)]
        group, preset, exposure = self._preset
        x = like.x_pos if like is not None else (frame.x_um if frame is not None else None)
        y = like.y_pos if like is not None else (frame.y_um if frame is not None else None)
        events = [RunEvent(index={"t": t, "p": p, "z": 0},
                           channel={"config": preset, "group": group}, exposure=exposure,
                           x_pos=x, y_pos=y, z_pos=float(z), kind="zscan",
                           channel_name=self.zscan_channel)
                  for z in planes]
        with self._lock:
            self._pos.setdefault(p, _Position()).zscan = {
                "t": t, "planes": planes, "scores": {}, "why": why, "from_z": here,
                "jump": jump}
        run.insert(events)

    def _finish_zscan(self, p: int) -> None:
        with self._lock:
            pos = self._pos[p]
            scan, pos.zscan = pos.zscan, None
        assert scan is not None
        zs = sorted(scan["scores"])
        best = peak_of(zs, [scan["scores"][z] for z in zs])
        row = {"t": scan["t"], "p": p, "planes": len(zs), "best_z_um": round(best, 3),
               "why": scan["why"], "from_z_um": round(scan["from_z"], 3)}
        self._emit(FocusZScan(dz_um=round(best - scan["from_z"], 3), **row))
        with self._lock:
            if len(self.record.zscans) < MAX_RECORDS:
                self.record.zscans.append(row)
        with self._lock:  # after a jump the drift goes on from the new focus
            pos = self._pos[p]
            if scan.get("jump") and pos.track:
                shift = best - (self._predict(pos, scan["t"]) or best)
                pos.track = [(a, b + shift) for a, b in pos.track]
            self._observe(pos, scan["t"], best)
            pos.fresh_seq = self._schedule.frames_seen if self._schedule is not None else 0
        self._correct(scan["t"], p, best - scan["from_z"], "z-scan: " + scan["why"],
                      record=False)
        self._ask_sign_probe(p, scan["t"], best)

    # ----- the Z drive's sign -----------------------------------------------------------
    def _ask_sign_probe(self, p: int, t: int, best: float) -> None:
        """Once per run, after the first z-scan: one exposure of the steering (signed) channel
        ``SIGN_PROBE_UM`` above the focus just found."""
        if self._probe_estimator is None or self.sign_check is not None or self._schedule is None:
            return
        with self._lock:
            if self._probe is not None:
                return
            self._probe = {"p": p, "t": t, "z": best + SIGN_PROBE_UM}
        group, preset, exposure = self._steer_preset
        self._schedule.insert([RunEvent(
            index={"t": t, "p": p, "z": 0}, channel={"config": preset, "group": group},
            exposure=exposure, z_pos=best + SIGN_PROBE_UM, kind="sign_probe",
            channel_name=self.channel)])

    def _check_sign(self) -> None:
        """The probe frame, once it has arrived, through the steering estimator (on the
        estimator's own thread): a confident estimate on the other side of focus flips the
        convention for the run."""
        with self._lock:
            probe, est = self._probe, self._probe_estimator
            if probe is None or "frame" not in probe or est is None:
                return
        mu, sigma = est.estimate(probe["frame"].pixels)
        expected = SIGN_PROBE_UM  # z - focus, if stage up is specimen up
        confident = abs(mu) >= max(1.0, 2.0 * sigma)
        agrees = bool(np.sign(mu) == np.sign(expected))
        flip = confident and not agrees
        with self._lock:
            if flip:
                self.convention = -self.convention
            self.sign_check = {
                "t": probe["t"], "p": probe["p"], "probe_um": SIGN_PROBE_UM,
                "estimate_um": round(float(mu), 3), "sigma_um": round(float(sigma), 3),
                "agrees": agrees, "confident": confident, "convention": self.convention,
                "verdict": ("the Z drive is inverted: the convention is flipped for this run"
                            if flip else "the Z drive moves as assumed" if agrees and confident
                            else "unsure: the convention is kept")}
            self._probe = None
        if flip:
            log.warning("closed-loop focus: a probe %.1f um above focus read %+.2f +- %.2f um:"
                        " the Z drive moves the other way; steering flipped for this run",
                        SIGN_PROBE_UM, mu, sigma)
        if self.sign_check is not None:
            self._emit(SignCheck(**self.sign_check))

    def _correct(self, t: int, p: int, dz: float, why: str, record: bool = True) -> None:
        if self._schedule is None:
            return
        self._schedule.adjust_focus(p, dz)
        if record:
            self._emit(FocusCorrection(t, p, round(dz, 3), why))
        with self._lock:
            self._pos.setdefault(p, _Position()).offset_um += dz
            if record:
                self.record.corrections.append({"t": t, "p": p, "dz_um": round(dz, 3),
                                                "why": why})

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {"policy": self.af.policy, "channel": self.channel,
                    "signed": self.channel in self.signed_channels,
                    "sign_check": self.sign_check, "convention": self.convention,
                    "zscan_channel": self.zscan_channel,
                    "late_estimates": self.late_estimates,
                    "estimates_total": self.record.estimates_total,
                    "corrections_total": self.record.corrections.total,
                    "sampled_every": {"estimates": self.record.estimates.stride,
                                      "corrections": self.record.corrections.stride},
                    **({"log": self.log} if self.log else {}),
                    "estimates": list(self.record.estimates),
                    "corrections": list(self.record.corrections),
                    "zscans": list(self.record.zscans) + [
                        # a z-scan the run ended inside: its exposures were taken (the light
                        # dose counts them), so it is listed, unfinished, with what it scored
                        {"t": pos.zscan["t"], "p": p, "planes": len(pos.zscan["planes"]),
                         "scored": len(pos.zscan["scores"]), "why": pos.zscan["why"],
                         "finished": False}
                        for p, pos in sorted(self._pos.items()) if pos.zscan is not None]}


def make_focus(profile: Profile, stages: RunStages, schedule: ScheduleView | None = None,
               emit: Callable[[FocusEvent], None] | None = None,
               ) -> FocusController | None:
    """The closed-loop focus controller, listening to the defocus estimators and looked up by
    the refocus stage (``None`` unless the profile's autofocus policy is ``closed_loop``). On
    the simulated specimen each estimate also records the true defocus of its frame."""
    if not profile.autofocus.closed_loop:
        return None
    spec = profile.specimen
    truth = spec.focus_at if spec.kind == "simulated" else None
    from acquire_vf.pipeline import refocus_range

    spans = ([refocus_range(e) for e in stages.refocus.engines.values()]
             if stages.refocus is not None else [])
    refocus = (min(r[0] for r in spans), max(r[3] for r in spans)) if spans else None
    range_um, signed, probe = 20.0, frozenset[str](), None
    if stages.estimate is not None:
        steering = next(iter(profile.estimator_engines()))
        estimators = stages.estimate.estimators
        range_um = float(estimators[steering].range_um) if steering in estimators else range_um
        signed = frozenset(ch for ch, e in estimators.items() if e.signed)
        probe = estimators.get(steering)
    ctl = FocusController(profile, truth=truth, range_um=range_um, signed=signed,
                          refocus_range=refocus, sign_probe=probe, schedule=schedule,
                          emit=emit)
    if stages.estimate is not None:
        stages.estimate.listeners.append(ctl.estimate)
    if stages.refocus is not None:
        stages.refocus.lookup = ctl.signed
    return ctl
