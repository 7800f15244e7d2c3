"""Small pipeline stages and backend wrappers for tests of the run loop (behaviour the real
engines cannot show on demand: slowness, exceptions, NaN, undeclared outputs, lost frames)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
import useq

from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf.acquisition import frame_id
from acquire_vf.backends import AcquisitionBackend, BackendWrapper, RawImage
from acquire_vf.pipeline import FrameSet, virtual_frame


class CopyStage:
    """Emits virtual channel ``channel`` as a copy of AGP; ``mode`` makes it misbehave:
    ``slow`` (sleeps ``delay_s``), ``raise``, ``nan``, ``undeclared`` (an unknown name)."""

    def __init__(self, channel: str = "SLOW", mode: str = "ok", delay_s: float = 0.0,
                 fail_from: int = 0, name: str | None = None) -> None:
        self.channel = channel
        self.name = name or f"copy:{channel}"
        self.mode = mode
        self.delay_s = delay_s
        self.fail_from = fail_from
        self.calls = 0

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return (ChannelInfo(self.channel, role="virtual", engine="tests/copy-stage",
                            sha256="0" * 64, backend="python", precision="fp32",
                            inputs=("AGP",)),)

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        src = fs.frames["AGP"]
        pixels = src.pixels.copy()
        failing = self.calls > self.fail_from
        if self.mode == "raise" and failing:
            raise RuntimeError("engine exploded")
        if self.mode == "nan" and failing:
            pixels = np.full(src.pixels.shape, np.nan, np.float32)
        name = "NOT-DECLARED" if self.mode == "undeclared" and failing else self.channel
        return {name: virtual_frame(src, name, pixels, {"nan": False})}

    def close(self) -> None:
        pass


class Tampering(BackendWrapper):
    """Wraps a backend and loses the frames ``drop`` names, or bumps the camera counter after
    ``jump_after`` frames: the faults the gap checks exist to catch."""

    def __init__(self, inner: AcquisitionBackend, drop: Sequence[tuple] = (),
                 jump_after: int | None = None) -> None:
        super().__init__(inner)
        self.name = f"tampering {inner.name}"
        self.drop = set(drop)
        self.jump_after = jump_after
        self.seen = 0

    def execute(self, events: Sequence[useq.MDAEvent]) -> Iterator[RawImage]:
        for img in self.inner.execute(events):
            fid = frame_id(img.event)
            self.seen += 1
            if (fid.t, fid.p, fid.z, fid.c) in self.drop:
                continue
            if self.jump_after is not None and self.seen > self.jump_after:
                md = dict(img.metadata)
                md["ImageNumber"] = int(md["ImageNumber"]) + 5
                img = RawImage(img.event, img.pixels, md)
            yield img

