"""Virtual planes a run never made, told apart from dark images.

A virtual channel's plane is missing where the same time point, position and z hold physical
frames but no frame of that virtual channel: a refocused channel where the frame was not
refocused (in focus, or outside the engine's range), a synthesised channel where its frame set
was skipped (dropped, an engine fault) or where the channel was exposed physically instead.
Where the run knew why (a frame set replaced in the engines' latest-frame slot, an engine
that failed on it, a NaN in its output, the writer falling behind, a run stopped before the
engines reached it) it journaled the reason (``skip`` lines) and that reason is reported;
otherwise the reason is inferred as above.
OME-TIFF readers that assemble arrays (tifffile, napari) fill such planes with zeros; the
OME-XML lists them (MapAnnotation ``acquire-vf/missing-planes``), ``session.json`` counts them
(``missing_virtual_planes``) and :meth:`DatasetFile.plane` and ``acquire-vf view`` show them
as missing, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from acquire_vf.storage._layout import DatasetLayout

MISSING_NS = "acquire-vf/missing-planes"
NOT_REFOCUSED = "not refocused (the frame was in focus, or outside the engine's range)"
EXPOSED = "exposed physically instead"
NOT_MADE = "not made (its frame set was skipped, or the engine failed)"


def missing_planes(layout: DatasetLayout, records: Iterable[dict[str, Any]],
                   skips: dict[tuple[int, int, int, str], str] | None = None,
                   ) -> list[dict[str, Any]]:
    """Every missing plane: ``{"t", "p", "z", "channel", "why", "role"}``, in plane order:
    virtual planes never made, and physical frames the run gave up (a device fault);
    ``skips`` (the journal's, :func:`~acquire_vf.storage._ometiff.journal_skips`) give the
    reason where the run recorded one."""
    skips = skips or {}
    have: dict[tuple[int, int, int], set[tuple[str, str]]] = {}
    for r in records:
        have.setdefault((int(r["t"]), int(r["p"]), int(r["z"])), set()).add(
            (str(r["channel"]), str(r.get("role", "physical"))))
    virtual = [c.name for c in layout.channels if c.role == "virtual"]
    out = []
    for plane in sorted(have):
        got = have[plane]
        if not any(role == "physical" for _, role in got):
            continue
        for name in virtual:
            if (name, "virtual") in got:
                continue
            why = EXPOSED if (name, "physical") in got else \
                skips.get((*plane, name)) or \
                (NOT_REFOCUSED if name.endswith("-refocused") else NOT_MADE)
            out.append({"t": plane[0], "p": plane[1], "z": plane[2], "channel": name,
                        "why": why, "role": "virtual"})
    physical = {c.name for c in layout.channels if c.role != "virtual"}
    for (t, p, z, name), why in sorted(skips.items()):  # frames the run gave up (faults)
        if name in physical and (name, "physical") not in have.get((t, p, z), set()):
            out.append({"t": t, "p": p, "z": z, "channel": name, "why": why,
                        "role": "physical"})
    return sorted(out, key=lambda m: (m["t"], m["p"], m["z"], m["role"] != "physical"))


def missing_summary(missing: list[dict[str, Any]], role: str = "virtual"
                    ) -> dict[str, dict[str, Any]]:
    """Per channel of ``role`` (virtual, or physical: frames given up): planes missing, by
    reason."""
    out: dict[str, dict[str, Any]] = {}
    for m in missing:
        if m.get("role", "virtual") != role:
            continue
        s = out.setdefault(m["channel"], {"missing": 0, "by_reason": {}})
        s["missing"] += 1
        s["by_reason"][m["why"]] = s["by_reason"].get(m["why"], 0) + 1
    return out
