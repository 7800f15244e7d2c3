"""The replay backend: a saved acquire-vf dataset played back as if it were being acquired.

Its physical frames come in recorded order, at the recorded pace (``ElapsedTime``) or as fast as
possible, so a profile's pipeline (other engines, other settings) can be tried on data already
taken. The dataset is only read: a run that was killed must be recovered first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tifffile
import useq

from acquire_vf._errors import DataError
from acquire_vf.backends._protocol import BackendInfo, Gate, RawImage, RunEvent, event_channel
from acquire_vf.storage import DatasetFile, open_dataset


class ReplayBackend:
    """Plays the physical frames of ``dataset`` (a run folder or one ``.ome.tif``)."""

    name = "replay"

    def __init__(self, dataset: str | Path, *, as_fast_as_possible: bool = False) -> None:
        files = open_dataset(dataset, repair_if_needed=False)
        if not files:
            raise DataError(f"'{dataset}': the dataset holds no frames to replay")
        self.file: DatasetFile = files[0]
        self.dataset = Path(dataset)
        self._fast = as_fast_as_possible
        self._records = {(r["t"], r["p"], r["z"], r["channel"]): r
                         for r in self.file.records if r["role"] == "physical"}
        self._tif: tifffile.TiffFile | None = None
        self._aborted = threading.Event()
        self._gate: Gate = lambda e: True
        self._clock0 = 0.0
        self.dz_um = 0.0
        """Focus moves asked of a replay cannot happen; they are summed here."""

    @property
    def channels(self) -> list[str]:
        """Physical channel names in the dataset, in its channel order."""
        return [c.name for c in self.file.layout.channels if c.role == "physical"]

    def events(self, channel_table: dict[str, tuple[str, str, float]],
               optional: frozenset[str] = frozenset()) -> list[useq.MDAEvent]:
        """The recorded physical frames as events, in recorded order.

        ``channel_table`` maps the channels to replay to (group, preset, exposure); frames of
        other channels are left out. Events of ``optional`` channels are marked so (the run's
        gate decides whether they are "exposed": sentinels, fallback exposures).
        """
        out: list[useq.MDAEvent] = []
        for r in sorted(self._records.values(), key=lambda r: r["ifd"]):
            if r["channel"] not in channel_table:
                continue
            group, preset, exposure = channel_table[r["channel"]]
            out.append(RunEvent(
                index={"t": r["t"], "p": r["p"], "z": r["z"]},
                channel={"config": preset, "group": group},
                exposure=r.get("exposure_ms") or exposure, x_pos=r.get("x_um"),
                y_pos=r.get("y_um"), z_pos=r.get("z_um"),
                kind="optional" if r["channel"] in optional else "plan",
                channel_name=r["channel"],
                metadata={"elapsed_ms": r.get("elapsed_ms", 0.0)}))
        return out

    def describe(self) -> BackendInfo:
        lay = self.file.layout
        return BackendInfo(name=self.name, mode="replay", source=str(self.file.path),
                           shape=lay.shape, dtype=lay.dtype)

    def setup(self, gate: Gate) -> None:
        self._gate = gate
        self._tif = tifffile.TiffFile(self.file.path)
        self._clock0 = time.perf_counter()

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        assert self._tif is not None, "setup() first"
        for event in events:
            if self._aborted.is_set() or not self._gate(event):
                if self._aborted.is_set():
                    return
                continue
            idx = event.index
            rec = self._records.get((idx.get("t", 0), idx.get("p", 0), idx.get("z", 0),
                                     event_channel(event)))
            if rec is None:
                continue  # an event the recording never had (inserted): nothing to replay
            if not self._fast:
                due = self._clock0 + float(rec.get("elapsed_ms") or 0.0) / 1e3
                self._aborted.wait(max(0.0, due - time.perf_counter()))
                if self._aborted.is_set():
                    return
            pixels = self._tif.pages[int(rec["ifd"])].asarray()
            md: dict[str, Any] = {
                "ElapsedTime-ms": (time.perf_counter() - self._clock0) * 1e3,
                "Exposure": rec.get("exposure_ms"), "XPosition_um_Intended": rec.get("x_um"),
                "YPosition_um_Intended": rec.get("y_um"),
                "ZPosition_um_Intended": rec.get("z_um")}
            yield RawImage(event=event, pixels=pixels, metadata=md)

    def move_z(self, dz_um: float) -> None:
        self.dz_um += dz_um

    def abort(self) -> None:
        self._aborted.set()

    def teardown(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
