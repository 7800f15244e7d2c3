"""Verified virtual channels: sentinel exposures, live fidelity and trust per channel.

At a sentinel time point (``[verification]``: the first of each position with ``at_start``,
then every ``every`` time points) each virtual channel is also exposed physically, through the
plan's optional events, and the pair (virtual, physical) of each plane is compared on a worker
thread (:func:`~acquire_vf.fidelity.pair_fidelity`), never on the acquisition thread.

Trust, per virtual channel and position::

    trusted --bad sentinel, or a QC flag--> suspect --bad, or flags again--> physical
       ^                                       |                               |
       +-----good (and no QC flag)-------------+                               |
       +------------- recover_after good pairs in a row, no QC flag -----------+

QC flags are the virtual frame's input checks (dim, focus, histogram, range), saturation and
uncertainty above the card's band: inputs unlike the engine's data.

A ``suspect`` or ``physical`` channel is exposed at every time point (its virtual frame is
still made, saved and compared); a ``trusted`` one only at sentinels. Every switch is recorded
with time point, position, reason and the figures behind it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from acquire_vf._frames import SUSPECT_FLAGS, Frame, raised_flags
from acquire_vf._stats import Thinned
from acquire_vf.acquisition._payloads import SentinelFidelity
from acquire_vf.acquisition._signals import RunSignals
from acquire_vf.card import acceptance_band
from acquire_vf.config import Profile, Verification
from acquire_vf.fidelity import outside_band, pair_fidelity
from acquire_vf.pipeline import RunStages

log = logging.getLogger(__name__)
TRUSTED, SUSPECT, PHYSICAL = "trusted", "suspect", "physical"
SEVERITY = {TRUSTED: 0, SUSPECT: 1, PHYSICAL: 2}
MAX_WAITING = 256
WAIT_TIME_POINTS = 64
"""A frame waits this many time points at most for its partner (a sentinel's virtual frame
for its exposure, or the other way round): a partner that never comes (the engines skipped
that set) must not keep frames for the rest of a three-day run (the soak found 517 frames
more held after 1,400 sets than after 400). Not fewer: the engines' queue keeps up to
``[queues] kept`` (8) sentinel sets, which at a sentinel every 5 time points is 40 time points
behind the camera (16 lost 2 of 40 sentinel pairs in a loaded test run)."""
SAMPLE_ROWS = 2_000
"""Judged sentinels and trust switches per channel that session.json and the OME annotation
keep, thinned evenly over the run (:class:`~acquire_vf._stats.Thinned`; the run folder's
``sentinels.jsonl`` has every one): at 20,000 kept, a long run grew about 0.3 kB per time
point for days (measured in the soak)."""


@dataclass(frozen=True)
class CheckedChannel:
    """A virtual channel under verification: its engine's intensity scale and band."""

    name: str
    low: float
    high: float
    band: dict[str, float]
    inputs: tuple[str, ...] = ()


@dataclass
class _Trust:
    state: str = TRUSTED
    good: int = 0
    flagged_at: int | None = None
    """First time point of the current run of QC-flagged virtual frames."""


@dataclass
class _Record:
    sentinels: int = 0
    fidelity: Thinned = field(default_factory=lambda: Thinned(SAMPLE_ROWS))
    switches: Thinned = field(default_factory=lambda: Thinned(SAMPLE_ROWS))
    outside: int = 0


class Verifier:
    """Decides which virtual channels to expose at each (t, p) and judges the pairs."""

    def __init__(self, config: Verification, channels: Mapping[str, CheckedChannel], *,
                 on_fidelity: Callable[[SentinelFidelity], None] | None = None,
                 record_error: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.channels = dict(channels)
        self._on_fidelity = on_fidelity
        self._record_error = record_error or log.warning
        self._lock = threading.Lock()
        self._trust: dict[tuple[str, int], _Trust] = {}
        self._plans: OrderedDict[tuple[int, int], dict[str, str]] = OrderedDict()
        self._physical: OrderedDict[tuple[int, int, int, str], Frame] = OrderedDict()
        self._virtual: OrderedDict[tuple[int, int, int, str], Frame] = OrderedDict()
        self._inputs: OrderedDict[tuple[int, int, int], dict[str, Frame]] = OrderedDict()
        self.records = {c: _Record() for c in self.channels}
        self.log: str | None = None
        """The run folder's file with every judged sentinel (``sentinels.jsonl``), if any."""
        self.exposures: Counter[tuple[str, str]] = Counter()
        """(channel, why) -> exposures taken: why is "sentinel", "suspect" or "physical"."""
        self.pairs_dropped = 0
        self._queue: queue.Queue[tuple[Frame, Frame, dict[str, Frame]] | None] = \
            queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._work, name="acquire-vf verify",
                                        daemon=True)
        self._thread.start()

    # ----- decisions (acquisition thread) ------------------------------------------------
    def is_sentinel(self, t: int) -> bool:
        every = self.config.every
        return (t == 0 and self.config.at_start) or (t > 0 and t % every == 0)

    def plan(self, t: int, p: int) -> dict[str, str]:
        """Channel -> why it is exposed at (t, p); fixed at the first question (the frame set's
        hand-over), so the pipeline's keep decision and the gate agree."""
        with self._lock:
            got = self._plans.get((t, p))
            if got is None:
                got = self._plans[(t, p)] = self._decide(t, p)
                while len(self._plans) > MAX_WAITING:
                    self._plans.popitem(last=False)
            return got

    def _decide(self, t: int, p: int) -> dict[str, str]:
        sentinel = self.is_sentinel(t)
        got = {}
        for c in self.channels:
            state = self._trust_of(c, p).state
            if state != TRUSTED:
                got[c] = state
            elif sentinel:
                got[c] = "sentinel"
        return got

    def _peek(self, t: int, p: int) -> bool:
        """Would (t, p) be checked? Without fixing the decision (an input frame arrives before
        its frame set is complete, and a pair judged meanwhile may still change it)."""
        with self._lock:
            got = self._plans.get((t, p))
            return bool(got if got is not None else self._decide(t, p))

    def wants(self, channel: str, t: int, p: int) -> bool:
        return channel in self.plan(t, p)

    def keep(self, t: int, p: int) -> bool:
        """The frame set of (t, p) must get its virtual frames (a pair will need them)."""
        return bool(self.plan(t, p))

    # ----- frames ------------------------------------------------------------------------
    def physical(self, frame: Frame) -> None:
        """A physical frame: an engine input of a checked plane, or a channel's exposure."""
        fid = frame.id
        if fid.c in self.channels:
            why = self.plan(fid.t, fid.p).get(fid.c)
            if why is not None:
                self.exposures[(fid.c, why)] += 1
            self._arrived(self._physical, self._virtual, frame, virtual_first=False)
        elif self._peek(fid.t, fid.p):
            with self._lock:
                self._inputs.setdefault((fid.t, fid.p, fid.z), {})[fid.c] = frame
                _evict(self._inputs, fid.t)

    def virtual(self, frame: Frame) -> None:
        c, fid = frame.id.c, frame.id
        if c not in self.channels:
            return
        flags = [f.value for f in raised_flags(frame.qc) if f in SUSPECT_FLAGS]
        self._qc_flags(c, fid.t, fid.p, flags)
        if self.plan(fid.t, fid.p).get(c):
            self._arrived(self._virtual, self._physical, frame, virtual_first=True)

    def _qc_flags(self, c: str, t: int, p: int, flags: list[str]) -> None:
        """QC flags on a virtual frame: a trusted channel becomes suspect; flags at a later
        time point too (the inputs stay unlike the engine's data) make it physical."""
        with self._lock:
            trust = self._trust_of(c, p)
            if not flags:
                trust.flagged_at = None
                return
            since, state = trust.flagged_at, trust.state
            if since is None:
                trust.flagged_at = t
        why = "QC: " + ", ".join(flags)
        if state == TRUSTED:
            self._switch(c, t, p, SUSPECT, why, {})
        elif state == SUSPECT and since is not None and t > since:
            self._switch(c, t, p, PHYSICAL, why + f" (since t={since})", {})
        elif state == PHYSICAL:
            with self._lock:
                trust.good = 0  # flagged frames never count towards recovery

    def _arrived(self, mine: OrderedDict, other: OrderedDict, frame: Frame,
                 virtual_first: bool) -> None:
        key = (frame.id.t, frame.id.p, frame.id.z, frame.id.c)
        with self._lock:
            partner = other.pop(key, None)
            for waiting in (mine, other, self._inputs):
                _evict(waiting, key[0])
            if partner is None:
                mine[key] = frame
                return
            inputs = self._inputs.get(key[:3], {})
        virtual, physical = (frame, partner) if virtual_first else (partner, frame)
        try:
            self._queue.put_nowait((virtual, physical, dict(inputs)))
        except queue.Full:
            self.pairs_dropped += 1

    # ----- judging (worker thread) -------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            try:
                self._judge(*item)
            except Exception as e:  # a pair that cannot be judged must not end verification
                self._record_error(f"verification: {type(e).__name__}: {e}")
            finally:
                self._queue.task_done()

    def _judge(self, virtual: Frame, physical: Frame, inputs: dict[str, Frame]) -> None:
        spec = self.channels[virtual.id.c]
        ins = [inputs[c].pixels for c in spec.inputs if c in inputs]
        fid = pair_fidelity(virtual.pixels, physical.pixels, spec.low, spec.high,
                            ins if len(ins) == len(spec.inputs) else ())
        t, p = virtual.id.t, virtual.id.p
        bad = outside_band(fid, spec.band)
        rec = self.records[spec.name]
        row = {"t": t, "p": p, "z": virtual.id.z, **fid, "ok": not bad}
        with self._lock:
            rec.sentinels += 1
            rec.outside += bool(bad)
            rec.fidelity.append(row)
        if self._on_fidelity is not None:
            more = {k: v for k, v in fid.items() if k not in ("psnr", "ssim", "mae")}
            self._on_fidelity(SentinelFidelity(
                spec.name, t, p, virtual.id.z, fid["psnr"], fid["ssim"], fid["mae"],
                not bad, more))
        self._advance(spec.name, t, p, bad, fid)

    def _advance(self, c: str, t: int, p: int, bad: list[str], fid: dict[str, Any]) -> None:
        with self._lock:
            trust = self._trust_of(c, p)
            state = trust.state
            if bad:
                trust.good = 0
        figures: dict[str, Any] = {k: fid[k] for k in ("psnr", "ssim", "mae") if k in fid}
        if bad:
            if state != PHYSICAL:
                self._switch(c, t, p, SUSPECT if state == TRUSTED else PHYSICAL,
                             "sentinel outside the acceptance band: " + "; ".join(bad),
                             figures)
            return
        with self._lock:
            flagged = trust.flagged_at is not None
        if state == SUSPECT and not flagged:
            self._switch(c, t, p, TRUSTED, "sentinel back inside the acceptance band", figures)
        elif state == PHYSICAL and not flagged:
            with self._lock:
                trust.good += 1
                enough = trust.good >= self.config.recover_after
            if enough:
                self._switch(c, t, p, TRUSTED, f"{self.config.recover_after} sentinels in a "
                             "row inside the acceptance band", figures)

    def _switch(self, c: str, t: int, p: int, to: str, why: str, figures: dict[str, Any],
                only_from: str | None = None) -> None:
        with self._lock:
            trust = self._trust_of(c, p)
            if trust.state == to or (only_from is not None and trust.state != only_from):
                return
            sw = {"t": t, "p": p, "from": trust.state, "to": to, "why": why, **figures}
            trust.state, trust.good = to, 0
            rec = self.records[c]
            rec.switches.append(sw)
        log.info("virtual channel %s at position %d: %s from t=%d (%s)", c, p, to, t, why)

    def _trust_of(self, c: str, p: int) -> _Trust:
        return self._trust.setdefault((c, p), _Trust())

    def wait_idle(self) -> None:
        """Block until every queued pair is judged (replays paced to the engines use it)."""
        self._queue.join()

    # ----- end ---------------------------------------------------------------------------
    def state(self, c: str, p: int | None = None) -> str:
        """A channel's state at position ``p``, or its worst over all positions."""
        with self._lock:
            states = [tr.state for (ch, pp), tr in self._trust.items()
                      if ch == c and (p is None or pp == p)]
        return max(states, key=SEVERITY.__getitem__, default=TRUSTED)

    def close(self) -> None:
        """Judge the pairs still queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout=60)

    def report(self) -> dict[str, Any]:
        """``session.json``'s ``verification``: per channel sentinels, fidelity, state,
        switches, and the band it was held to."""
        out: dict[str, Any] = {}
        for c, rec in self.records.items():
            with self._lock:
                positions = {str(p): tr.state for (ch, p), tr in self._trust.items() if ch == c}
                fidelity, switches = list(rec.fidelity), list(rec.switches)
            out[c] = {"sentinels": rec.sentinels, "outside_band": rec.outside,
                      "fidelity": fidelity, "fidelity_sampled_every": rec.fidelity.stride,
                      "state": self.state(c), "positions": positions,
                      "switches": switches, "switches_total": rec.switches.total,
                      "band": self.channels[c].band, **({"log": self.log} if self.log else {}),
                      "exposures": {why: n for (ch, why), n in self.exposures.items()
                                    if ch == c}}
        return out


def make_verifier(profile: Profile, stages: RunStages, signals: RunSignals | None = None,
                  ) -> Verifier | None:
    """The verifier for ``profile``'s ``[verification]``, over the virtual channels that a
    synthesis stage makes (their engine's card gives the scale and the band; the profile's
    ``verification.acceptance`` overrides it), telling the run's ``signals`` of each judged
    pair and each problem. ``None`` without ``[verification]``."""
    config = profile.verification
    if config is None:
        return None
    channels: dict[str, CheckedChannel] = {}
    for stage in stages.synthesising():
        card = stage.engine.card
        norm = card.normalisation[card.output]
        band = acceptance_band(card)
        override = config.acceptance.get(stage.channel)
        if override is not None:
            band.update({k: v for k, v in override.model_dump().items() if v is not None})
        channels[stage.channel] = CheckedChannel(stage.channel, norm.low, norm.high, band,
                                                 tuple(stage.inputs))
    if signals is None:
        return Verifier(config, channels)
    return Verifier(config, channels, on_fidelity=signals.fidelity.emit,
                    record_error=signals.error.emit)


def _evict(waiting: OrderedDict[Any, Any], t: int) -> None:
    """Drop the oldest waiting frames: beyond :data:`MAX_WAITING`, or more than
    :data:`WAIT_TIME_POINTS` time points before ``t`` (keys begin with the time point, in
    the order the frames came)."""
    while waiting and (len(waiting) >= MAX_WAITING
                       or next(iter(waiting))[0] < t - WAIT_TIME_POINTS):
        waiting.popitem(last=False)
