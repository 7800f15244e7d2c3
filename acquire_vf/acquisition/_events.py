"""Turn a profile's protocol into pycromanager acquisition events and the frames they yield."""

from __future__ import annotations

from typing import Any

from acquire_vf._frames import FrameId
from acquire_vf.config import Profile


def fallback_channels(profile: Profile) -> list[tuple[str, str, str, float]]:
    """(name, group, preset, exposure) of virtual channels exposed when their engine fails."""
    return [(v.name, v.group, v.preset, v.exposure_ms) for v in profile.virtual_channels
            if v.on_failure == "expose" and v.preset is not None and v.exposure_ms is not None]


def build_events(profile: Profile, *, time_points: int | None = None,
                 base_z_um: float | None = None,
                 base_xy_um: tuple[float, float] | None = None,
                 ) -> tuple[list[dict[str, Any]], list[FrameId], list[dict[str, Any]]]:
    """Events in acquisition order (time, position, z, channel) and the frame each one yields.

    Returns the events, the expected :class:`FrameId` of each, and the position table
    (name, x, y) for the dataset. Virtual channels with ``on_failure = "expose"`` get an event
    after the physical channels of each (t, p, z); the run's gate drops it while that channel's
    engine works.
    """
    proto = profile.acquisition
    n_t = time_points if time_points is not None else proto.time_points
    positions = [{"name": p.name or f"Pos{i}", "x_um": p.x_um, "y_um": p.y_um}
                 for i, p in enumerate(proto.positions)]
    if not positions:
        x, y = base_xy_um if base_xy_um is not None else (None, None)
        positions = [{"name": "Pos0", "x_um": x, "y_um": y}]
    move_z = base_z_um is not None and any(o != 0.0 for o in proto.z_offsets_um)
    events: list[dict[str, Any]] = []
    ids: list[FrameId] = []
    for t in range(n_t):
        for p, pos in enumerate(positions):
            for zi, off in enumerate(proto.z_offsets_um):
                chans = [(c.name, c.group, c.preset, c.exposure_ms) for c in profile.channels]
                for name, group, preset, exposure in chans + fallback_channels(profile):
                    ev: dict[str, Any] = {
                        "axes": {"time": t, "position": p, "z": zi, "channel": name},
                        "config_group": [group, preset],
                        "exposure": exposure,
                    }
                    if proto.interval_s > 0:
                        ev["min_start_time"] = t * proto.interval_s
                    if proto.positions:
                        ev["x"], ev["y"] = pos["x_um"], pos["y_um"]
                    if move_z and base_z_um is not None:
                        ev["z"] = base_z_um + off
                    events.append(ev)
                    ids.append(FrameId(t, p, zi, name))
    return events, ids, positions
