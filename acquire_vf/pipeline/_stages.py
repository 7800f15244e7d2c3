"""Stages that need no engine (the engine-backed ones are in ``_engine_stages.py``)."""

from __future__ import annotations

from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf.focus import focus_score
from acquire_vf.pipeline._protocol import FrameSet


class FocusScoreStage:
    """Measures the focus score of every physical frame (``scores["focus:CHANNEL"]``).

    Downstream, the refocus policy ``when_defocused`` reads it; the session report summarises it.
    """

    name = "focus_score"

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return ()

    def process(self, frames: FrameSet) -> dict[str, Frame]:
        for ch, f in frames.frames.items():
            s = focus_score(f.pixels)
            frames.scores[f"focus:{ch}"] = s
            self.last[ch] = s
        return {}

    def close(self) -> None:
        pass
