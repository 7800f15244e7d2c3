"""``acquire-vf view DATASET``: the viewer over a saved acquisition.

Physical and virtual channels side by side (virtual ones badged), sliders for time point,
position and z over what the file holds; ``--screenshot PNG`` renders offscreen and exits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acquire_vf.display._panels import ViewerWindow
from acquire_vf.storage import DatasetFile, open_dataset


class DatasetViewer:
    def __init__(self, path: str | Path) -> None:
        files = open_dataset(path)
        if not files:
            raise FileNotFoundError(f"'{path}' holds no frames")
        self.ds: DatasetFile = files[0]
        layout = self.ds.layout
        self.view = ViewerWindow(list(layout.channels), title=f"acquire-vf: {self.ds.path.name}")
        self.t_max = max(r["t"] for r in self.ds.records)
        self.missing = self.ds.missing()
        self.view.sliders["time"].setMaximum(self.t_max)
        self.view.sliders["position"].setMaximum(len(layout.positions) - 1)
        self.view.sliders["z"].setMaximum(len(layout.z_offsets_um) - 1)
        for s in self.view.sliders.values():
            s.valueChanged.connect(lambda _v: self.refresh())
        self.view.sliders["time"].setValue(self.t_max)
        self.refresh()

    def refresh(self) -> None:
        t = self.view.sliders["time"].value()
        p = self.view.sliders["position"].value()
        z = self.view.sliders["z"].value()
        shown = 0
        filled = set()
        for rec in self.ds.records:
            if (rec["t"], rec["p"], rec["z"]) == (t, p, z):
                self.view.show_frame(rec["channel"], rec["role"], self.ds.read(rec))
                filled.add((rec["channel"], rec["role"]))
                shown += 1
        why = {(m["channel"], "virtual"): m["why"] for m in self.missing
               if (m["t"], m["p"], m["z"]) == (t, p, z)}
        for key, panel in self.view.panels.items():
            if key not in filled:
                panel.show_missing(why.get(key, "none at this time point, position and z"))
        virtual = sum(1 for r in self.ds.records if r["role"] == "virtual")
        self.view.set_status(f"time point {t + 1} of {self.t_max + 1} (t = {t})  position {p}  "
                             f"z {z}  |  {shown} channel(s) "
                             f"shown  |  {len(self.ds.records)} frames, {virtual} virtual")

    def frame(self, channel: str, role: str = "physical") -> np.ndarray | None:
        t = self.view.sliders["time"].value()
        rec = next((r for r in self.ds.records if (r["t"], r["channel"], r["role"]) ==
                    (t, channel, role)), None)
        return None if rec is None else self.ds.read(rec)
