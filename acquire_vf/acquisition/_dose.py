"""The light-dose ledger: the light a run took, against a stated comparator protocol.

Dose is exposure time x the channel's ``relative_power`` (unit: ms at relative power 1). The
comparator is the protocol without acquire-vf, for the planes the run acquired: every physical
and every virtual channel exposed, plus a z-scan autofocus of ``autofocus.zscan_planes``
exposures (of ``autofocus.zscan_channel``, else the first channel) every ``zscan_every``
time points at each position when the profile refocuses virtually, none when
``hardware_autofocus = true`` (a hardware autofocus costs no light).

Savings by cause count only what was made: a virtual frame that was skipped saved nothing
(``not_made`` says how much of the comparator was neither exposed nor replaced). Sentinel
exposures and fallback exposures (suspect, physical, or engine failure) are costs.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np

from acquire_vf._frames import Frame
from acquire_vf._stats import TimePoints
from acquire_vf.config import Profile

UNIT = "ms of exposure at relative power 1"
COSTS = {"sentinel": "sentinels", "suspect": "physical_fallback",
         "physical": "physical_fallback", "engine_failure": "physical_fallback",
         "zscan": "zscans", "sign_probe": "zscans"}


PURPOSES = {"plan": "plan", "sentinel": "sentinel", "suspect": "re-check of a suspect channel",
            "physical": "fallback (channel not trusted)",
            "engine_failure": "fallback (engine failed)", "zscan": "z-scan",
            "sign_probe": "focus sign probe"}
"""Why an exposure was taken (the ledger's reasons), in words a user reads; in this order."""


def by_purpose(reasons: dict[str, int]) -> dict[str, int]:
    """Exposure counts by :data:`PURPOSES` in words, only those that happened; they add up to
    the exposures taken (an unknown reason keeps its own name)."""
    out = {PURPOSES[k]: int(reasons[k]) for k in PURPOSES if reasons.get(k)}
    out.update({k: int(n) for k, n in reasons.items() if k not in PURPOSES and n})
    return out


class DoseLedger:
    """Fed by the run as frames arrive (any thread); :meth:`report` at the end."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._power = {c.name: c.relative_power for c in profile.channels}
        self._power.update({v.name: v.relative_power for v in profile.virtual_channels})
        mean_exposure = sum(c.exposure_ms for c in profile.channels) / len(profile.channels)
        self.dose = {c.name: c.exposure_ms * c.relative_power for c in profile.channels}
        self.dose.update({v.name: (v.exposure_ms or mean_exposure) * v.relative_power
                          for v in profile.virtual_channels})
        self._lock = threading.Lock()
        self.taken_exposures = 0
        self.taken_dose = 0.0
        self.by_why: Counter[str] = Counter()
        self.dose_by_why: dict[str, float] = {}
        self.made: Counter[str] = Counter()
        self.planes = TimePoints()
        """The plan's planes acquired, by (position, z index) and time point."""

    def taken(self, frame: Frame, why: str = "plan") -> None:
        exposure = frame.exposure_ms if frame.exposure_ms is not None else \
            self.dose.get(frame.id.c, 0.0) / self._power.get(frame.id.c, 1.0)
        d = exposure * self._power.get(frame.id.c, 1.0)
        with self._lock:
            self.taken_exposures += 1
            self.taken_dose += d
            self.by_why[why] += 1
            self.dose_by_why[why] = self.dose_by_why.get(why, 0.0) + d
            if why == "plan":
                self.planes.add((frame.id.p, frame.id.z), frame.id.t)

    def made_virtual(self, frame: Frame) -> None:
        if frame.id.c in self.dose and frame.id.c not in self._physical_names:
            with self._lock:
                self.made[frame.id.c] += 1

    @property
    def _physical_names(self) -> set[str]:
        return {c.name for c in self.profile.channels}

    def report(self, refocus_checked: TimePoints | None = None) -> dict[str, Any]:
        """``refocus_checked``: the time points, by position, whose focus an estimator or the
        refocus stage judged (a z-scan the comparator would have taken)."""
        prof = self.profile
        af = prof.autofocus
        with self._lock:
            planes = self.planes.copy()
            made = Counter(self.made)
            by_why, dose_by_why = Counter(self.by_why), dict(self.dose_by_why)
            taken = {"exposures": self.taken_exposures, "dose": round(self.taken_dose, 2)}
        per_plane = [c.name for c in prof.channels] + [v.name for v in prof.virtual_channels]
        zscan_on = af.refocuses and af.zscan_planes > 0
        focus_ch = af.zscan_channel or prof.channels[0].name
        focus_dose = 0.0 if af.hardware_autofocus else self.dose[focus_ch]
        n_planes = planes.count()
        due, avoided = _due_zscans(planes, af.zscan_every, refocus_checked or TimePoints())
        zscans = due if zscan_on else 0
        comp_exp = n_planes * len(per_plane) + zscans * (
            0 if af.hardware_autofocus else af.zscan_planes)
        comp_dose = n_planes * sum(self.dose[c] for c in per_plane) + \
            zscans * af.zscan_planes * focus_dose
        avoided = avoided if zscan_on else 0
        saved: dict[str, float] = {
            "virtual_channels": round(sum(n * self.dose[c] for c, n in made.items()), 2),
            "virtual_refocus": round(avoided * af.zscan_planes * focus_dose, 2),
            "sentinels": 0.0, "physical_fallback": 0.0, "zscans": 0.0}
        for why, d in dose_by_why.items():
            if why in COSTS:
                saved[COSTS[why]] = round(saved[COSTS[why]] - d, 2)
        net = round(sum(saved.values()), 2)
        return {
            "unit": UNIT,
            "taken": taken,
            "comparator": {"exposures": comp_exp, "dose": round(comp_dose, 2)},
            "comparator_protocol": {
                "channels_exposed_per_plane": per_plane, "planes": n_planes,
                "zscan_planes": af.zscan_planes if zscan_on else 0,
                "zscan_every": af.zscan_every, "hardware_autofocus": af.hardware_autofocus,
                "zscans": zscans},
            "saved_by_cause": saved,
            "saved_net": net,
            "saved_fraction": round(net / comp_dose, 4) if comp_dose else 0.0,
            "not_made": round(comp_dose - taken["dose"] - net, 2),
            "exposures_by_reason": dict(by_why),
            "virtual_frames_made": dict(made),
        }


def _due_zscans(planes: TimePoints, every: int, checked: TimePoints) -> tuple[int, int]:
    """The comparator's z-scans (one per position and time point acquired, every ``every``
    time points) and how many of them ``checked`` (by position) made unnecessary."""
    by_p = planes.merged(lambda key: key[0])  # type: ignore[index]  # (position, z index)
    due = avoided = 0
    for p in by_p:
        m = by_p.mask(p)
        m &= np.arange(len(m)) % every == 0
        c = checked.mask(p)
        n = min(len(m), len(c))
        due += int(m.sum())
        avoided += int((m[:n] & c[:n]).sum())
    return due, avoided
