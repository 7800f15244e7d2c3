"""Plans are useq-schema: a profile's ``[acquisition]`` or a saved ``MDASequence`` file, mapped
onto the profile's channels and turned into the run's events.

useq-schema's ``MDASequence`` is the experiment format pymmcore-plus and napari-micromanager
save (JSON or YAML). A plan channel matches a profile channel when its ``config`` is the
profile channel's ``name`` or its ``preset``; the events the runner executes then carry the
hardware's preset in ``channel`` and the profile's name in ``metadata["channel"]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import useq

from acquire_vf._errors import ProfileError
from acquire_vf._frames import FrameId
from acquire_vf.backends import RunEvent, event_channel
from acquire_vf.config import Profile

AXIS_ORDER = "tpzc"
"""Time, position, z, channel: every channel of a plane before the next plane, so a frame set
(all channels of one t, p, z) is complete as early as possible."""


def profile_sequence(profile: Profile, time_points: int | None = None) -> useq.MDASequence:
    """The profile's ``[acquisition]`` section as a ``useq.MDASequence``."""
    proto = profile.acquisition
    n_t = time_points if time_points is not None else proto.time_points
    plan: dict[str, Any] = {
        "axis_order": AXIS_ORDER,
        "channels": [{"config": c.name, "group": c.group, "exposure": c.exposure_ms}
                     for c in profile.channels],
        "time_plan": {"interval": proto.interval_s, "loops": n_t},
    }
    if proto.positions:
        plan["stage_positions"] = [{"x": p.x_um, "y": p.y_um, "name": p.name or None}
                                   for p in proto.positions]
    if any(o != 0.0 for o in proto.z_offsets_um):
        plan["z_plan"] = {"relative": list(proto.z_offsets_um)}
    return useq.MDASequence(**plan)


def load_plan(path: str | Path) -> useq.MDASequence:
    """A useq sequence from a JSON or YAML file, or one clear line saying why not."""
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"plan '{p}' not found (expected a useq-schema MDASequence as "
                           ".json or .yaml)")
    if p.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ProfileError(f"plan '{p}': expected a .json, .yaml or .yml file, got "
                           f"'{p.suffix or 'no suffix'}'")
    try:
        return useq.MDASequence.from_file(p)
    except Exception as e:  # pydantic, JSON and YAML errors alike
        first = " ".join(str(e).split())[:300]
        raise ProfileError(f"plan '{p}' is not a valid useq-schema MDASequence: {first}") from e


@dataclass(frozen=True)
class PlannedChannel:
    name: str
    group: str
    preset: str
    exposure_ms: float


@dataclass
class RunPlan:
    """The events of one run, in order, with what the dataset needs to know up front.

    ``events`` is re-iterable: a list (a replayed dataset), or :class:`PlanEvents`, which makes
    each event as the run reaches it, so a plan of a million time points costs nothing before
    the first frame (issue 34). The counts the run needs up front (frames expected, time
    points, channels) come from the sequence's sizes, not from walking its events."""

    events: Iterable[useq.MDAEvent]
    positions: list[dict[str, Any]]
    """Position table for the dataset: name, x_um, y_um."""
    z_offsets_um: tuple[float, ...]
    optional: frozenset[str] = frozenset()
    """Channels whose events the gate may drop (fallback exposures): never counted missing."""
    sequence: useq.MDASequence | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    frames_expected: int = -1
    """Planned frames that must arrive (optional fallback exposures not counted)."""
    time_points: int = 0
    channels: tuple[str, ...] = ()
    """The channels of the events (fallbacks included), in the order they first come."""
    _z_of: dict[int, float | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.frames_expected < 0:  # a list of events: counted once
            events = list(self.events)
            self.events = events
            self.frames_expected = sum(1 for e in events
                                       if event_channel(e) not in self.optional)
            self.time_points = 1 + max((int(e.index.get("t", 0)) for e in events), default=0)
            self.channels = tuple(dict.fromkeys(event_channel(e) for e in events))

    def position_z(self, p: int) -> float | None:
        """The z of position ``p``'s first planned event (``None``: the plan leaves z)."""
        if p not in self._z_of:
            self._z_of[p] = next((e.z_pos for e in self.events
                                  if int(e.index.get("p", 0)) == p), None)
        return self._z_of[p]

    def first_events(self) -> dict[int, useq.MDAEvent]:
        """Each position's first event (walks the plan only until every position is seen)."""
        firsts: dict[int, useq.MDAEvent] = {}
        for e in self.events:
            firsts.setdefault(int(e.index.get("p", 0)), e)
            if len(firsts) >= len(self.positions):
                break
        return firsts

    def expected(self) -> Iterator[FrameId]:
        """The frames that must arrive, in order, made as they are asked for."""
        return (frame_id(e) for e in self.events if event_channel(e) not in self.optional)


def frame_id(event: useq.MDAEvent) -> FrameId:
    idx = event.index
    return FrameId(int(idx.get("t", 0)), int(idx.get("p", 0)), int(idx.get("z", 0)),
                   event_channel(event))


def match_channels(seq: useq.MDASequence, profile: Profile) -> list[PlannedChannel]:
    """Each plan channel as the profile channel it names (by name or preset)."""
    out = []
    for ch in seq.channels:
        hit = [c for c in profile.channels if ch.config in (c.name, c.preset)]
        if not hit:
            have = ", ".join(f"{c.name} (preset {c.preset})" for c in profile.channels)
            raise ProfileError(f"plan channel '{ch.config}' matches no channel of profile "
                               f"'{profile.name}': expected one of {have}")
        c = hit[0]
        out.append(PlannedChannel(c.name, c.group, c.preset,
                                  float(ch.exposure if ch.exposure is not None
                                        else c.exposure_ms)))
    return out


def build_plan(seq: useq.MDASequence, profile: Profile, *, base_z_um: float | None = None,
               base_xy_um: tuple[float, float] | None = None) -> RunPlan:
    """The run's events: plan channels mapped onto the profile, z made absolute.

    Relative z plans are offsets from the focus position at the start of the run
    (``base_z_um``); without a focus stage they leave z alone. Virtual channels with
    ``on_failure = "expose"`` get an optional event after the physical channels of each plane,
    which the run's gate drops while that channel's engine works.
    """
    if not seq.channels:
        raise ProfileError("plan has no channels: expected at least one of the profile's "
                           f"channels ({', '.join(c.name for c in profile.channels)})")
    chans = match_channels(seq, profile)
    fallback = [PlannedChannel(v.name, v.group, v.preset or "", v.exposure_ms or 0.0)
                for v in profile.exposable_virtual]
    events = PlanEvents(seq, tuple(chans), tuple(fallback), base_z_um)
    return RunPlan(events=events, positions=_positions(seq, base_xy_um),
                   z_offsets_um=_z_offsets(seq), optional=frozenset(c.name for c in fallback),
                   sequence=seq, frames_expected=count_events(seq),
                   time_points=time_points(seq),
                   channels=tuple(dict.fromkeys(c.name for c in (*chans, *fallback))))


@dataclass(frozen=True)
class PlanEvents:
    """A plan's events, made one at a time each time they are iterated: the sequence's
    events with their channels mapped onto the profile's and z made absolute, and after the
    physical channels of each plane, an optional event per fallback channel."""

    seq: useq.MDASequence
    chans: tuple[PlannedChannel, ...]
    fallback: tuple[PlannedChannel, ...]
    base_z_um: float | None

    def __iter__(self) -> Iterator[useq.MDAEvent]:
        seq = self.seq
        relative = seq.z_plan is not None and seq.z_plan.is_relative
        plane: tuple[int, int, int] | None = None
        last: useq.MDAEvent | None = None
        for t, start, ev in iter_plan(seq):
            c = self.chans[ev.index.get("c", 0)]
            key = (t, ev.index.get("p", 0), ev.index.get("z", 0))
            if plane is not None and key != plane and last is not None:
                yield from (_event_like(last, f) for f in self.fallback)
            plane = key
            z = ev.z_pos
            if relative and _position_z(seq, key[1]) is None:
                z = None if self.base_z_um is None else self.base_z_um + float(z or 0.0)
            last = RunEvent(
                index={"t": key[0], "p": key[1], "z": key[2]},
                channel={"config": c.preset, "group": c.group},
                exposure=ev.exposure if ev.exposure is not None else c.exposure_ms,
                x_pos=ev.x_pos, y_pos=ev.y_pos, z_pos=z, min_start_time=start,
                kind="plan", channel_name=c.name)
            yield last
        if last is not None:
            yield from (_event_like(last, f) for f in self.fallback)


CHUNK_T = 256
"""Time points of a long interval plan made per walk of useq's iterator (which holds its whole
time axis: 0.4 s before the first event at a million time points)."""


def iter_plan(seq: useq.MDASequence) -> Iterator[tuple[int, float | None, useq.MDAEvent]]:
    """``seq``'s events with their time index and start time: an interval plan of many time
    points, time outermost, walked a chunk of time points at a time (equal, event for event,
    to walking it whole), so its first event comes as soon as a short plan's."""
    tp = seq.time_plan
    every = math.lcm(*(max(c.acquire_every, 1) for c in seq.channels)) if seq.channels else 1
    chunk = CHUNK_T * every  # a multiple of every channel's acquire_every: the skips hold
    if not (isinstance(tp, useq.TIntervalLoops) and seq.axis_order[:1] == ("t",)
            and tp.loops > chunk):
        for ev in seq:
            yield int(ev.index.get("t", 0)), ev.min_start_time, ev
        return
    step = tp.interval.total_seconds()
    for t0 in range(0, tp.loops, chunk):
        part = seq.replace(time_plan=tp.replace(loops=min(chunk, tp.loops - t0)))
        for ev in part:
            start = None if ev.min_start_time is None else ev.min_start_time + t0 * step
            yield t0 + int(ev.index.get("t", 0)), start, ev


def count_events(seq: useq.MDASequence) -> int:
    """The number of events ``seq`` yields, from its sizes (a channel acquired every Nth
    time point, or only at the middle plane, counted as useq skips it); walked only where a
    position has a sub-sequence of its own or the plan has an autofocus plan."""
    subs = any(getattr(p, "sequence", None) is not None for p in seq.stage_positions)
    if subs or seq.autofocus_plan is not None:
        return sum(1 for _ in seq)
    t = time_points(seq)
    rest = max(len(seq.stage_positions), 1) * max(len(list(seq.iter_axis("g"))), 1)
    z = max(len(list(seq.iter_axis("z"))), 1)
    return sum(math.ceil(t / max(c.acquire_every, 1)) * rest
               * (z if c.do_stack or seq.z_plan is None else 1) for c in seq.channels)


def time_points(seq: useq.MDASequence) -> int:
    """The plan's time points (its time axis is never walked to count them)."""
    return seq.time_plan.num_timepoints() if seq.time_plan is not None else 1


def _event_like(ev: useq.MDAEvent, c: PlannedChannel) -> useq.MDAEvent:
    """An optional exposure of ``c`` at ``ev``'s plane (validated, unlike ``model_copy``)."""
    return RunEvent(index=dict(ev.index), channel={"config": c.preset, "group": c.group},
                    exposure=c.exposure_ms, x_pos=ev.x_pos, y_pos=ev.y_pos, z_pos=ev.z_pos,
                    kind="optional", channel_name=c.name)


def _position_z(seq: useq.MDASequence, p: int) -> float | None:
    if not seq.stage_positions:
        return None
    return seq.stage_positions[p].z


def _positions(seq: useq.MDASequence,
               base_xy_um: tuple[float, float] | None) -> list[dict[str, Any]]:
    if not seq.stage_positions:
        x, y = base_xy_um if base_xy_um is not None else (None, None)
        return [{"name": "Pos0", "x_um": x, "y_um": y}]
    return [{"name": p.name or f"Pos{i}", "x_um": p.x, "y_um": p.y}
            for i, p in enumerate(seq.stage_positions)]


def _z_offsets(seq: useq.MDASequence) -> tuple[float, ...]:
    if seq.z_plan is None:
        return (0.0,)
    return tuple(float(z) for z in seq.z_plan) or (0.0,)
