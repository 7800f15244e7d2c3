"""Stages that need no engine. Engine-backed stages (refocus, synthesis) live with the engines."""

from __future__ import annotations

import numpy as np

from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf.pipeline._protocol import FrameSet


def focus_score(pixels: np.ndarray, step: int = 2) -> float:
    """Normalised variance of the Laplacian on a pixel subsample: high in focus, low when blurred.

    Divided by the mean intensity so that exposure and stain brightness do not move it;
    subsampling by ``step`` keeps it cheap enough to run on every live frame.
    """
    a = pixels[::step, ::step].astype(np.float32)
    lap = 4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]
    mean = float(a.mean())
    return float(lap.var() / (mean * mean + 1e-6)) if mean > 0 else 0.0


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
