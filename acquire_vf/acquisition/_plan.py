"""Plans are useq-schema: a profile's ``[acquisition]`` or a saved ``MDASequence`` file, mapped
onto the profile's channels and turned into the run's events.

useq-schema's ``MDASequence`` is the experiment format pymmcore-plus and napari-micromanager
save (JSON or YAML). A plan channel matches a profile channel when its ``config`` is the
profile channel's ``name`` or its ``preset``; the events the runner executes then carry the
hardware's preset in ``channel`` and the profile's name in ``metadata["channel"]``.
"""

from __future__ import annotations

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
    """The events of one run, in order, with what the dataset needs to know up front."""

    events: list[useq.MDAEvent]
    positions: list[dict[str, Any]]
    """Position table for the dataset: name, x_um, y_um."""
    z_offsets_um: tuple[float, ...]
    optional: frozenset[str] = frozenset()
    """Channels whose events the gate may drop (fallback exposures): never counted missing."""
    sequence: useq.MDASequence | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def position_z(self, p: int) -> float | None:
        """The z of position ``p``'s first planned event (``None``: the plan leaves z)."""
        return next((e.z_pos for e in self.events if int(e.index.get("p", 0)) == p), None)

    @property
    def expected(self) -> list[FrameId]:
        return [frame_id(e) for e in self.events]


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
    relative = seq.z_plan is not None and seq.z_plan.is_relative
    events: list[useq.MDAEvent] = []
    plane: tuple[int, int, int] | None = None
    last: useq.MDAEvent | None = None

    def flush_fallbacks() -> None:
        if last is not None:
            events.extend(_event_like(last, c) for c in fallback)

    for ev in seq:
        c = chans[ev.index.get("c", 0)]
        key = (ev.index.get("t", 0), ev.index.get("p", 0), ev.index.get("z", 0))
        if plane is not None and key != plane:
            flush_fallbacks()
        plane = key
        z = ev.z_pos
        pos_z = _position_z(seq, ev.index.get("p", 0))
        if relative and pos_z is None:
            z = None if base_z_um is None else base_z_um + float(z or 0.0)
        index = {"t": key[0], "p": key[1], "z": key[2]}
        last = RunEvent(
            index=index, channel={"config": c.preset, "group": c.group},
            exposure=ev.exposure if ev.exposure is not None else c.exposure_ms,
            x_pos=ev.x_pos, y_pos=ev.y_pos, z_pos=z, min_start_time=ev.min_start_time,
            kind="plan", channel_name=c.name)
        events.append(last)
    flush_fallbacks()
    return RunPlan(events=events, positions=_positions(seq, base_xy_um),
                   z_offsets_um=_z_offsets(seq), optional=frozenset(c.name for c in fallback),
                   sequence=seq)


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
