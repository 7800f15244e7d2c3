"""Engine-backed pipeline stages: virtual refocusing and channel synthesis.

They run on the pipeline's thread (never the acquisition thread). A failure raises; the
pipeline records it and skips only that virtual frame.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf.card import acceptance_band
from acquire_vf.focus import focus_score
from acquire_vf.inference import TiledEngine, check_inputs, infer_with_uncertainty, spread_frame
from acquire_vf.pipeline._chain import virtual_frame
from acquire_vf.pipeline._protocol import FrameSet

log = logging.getLogger(__name__)
UNCERTAINTY = "uncertainty:"
"""Name prefix of a virtual channel's per-pixel uncertainty channel."""


def _info(name: str, engine: TiledEngine, inputs: tuple[str, ...]) -> ChannelInfo:
    return ChannelInfo(name, role="virtual", engine=engine.card.name,
                       sha256=engine.card.onnx_sha256, backend=engine.backend,
                       precision=engine.precision, inputs=inputs)


class RefocusStage:
    """Refocuses defocused physical frames; later stages see the refocused frames.

    ``engines`` maps each refocused channel to its engine (a refocus engine is trained on one
    stain; one engine may serve several channels). ``always`` refocuses every frame;
    ``when_defocused`` only frames whose focus score falls below ``threshold`` x the best score
    seen for that channel. Each refocused frame is saved as the virtual channel
    ``NAME-refocused`` and replaces ``NAME`` for the synthesis stages.
    """

    name = "refocus"

    def __init__(self, engines: dict[str, TiledEngine], *, policy: str = "always",
                 threshold: float = 0.6) -> None:
        self.engines = engines
        self.channels = tuple(engines)
        self.policy = policy
        self.threshold = threshold
        self.best: dict[str, float] = {}
        self.applied = 0
        self.checked: set[tuple[int, int]] = set()
        """(t, p) whose focus this stage judged: a z-scan the run did not need."""

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return tuple(_info(f"{c}-refocused", e, (c,)) for c, e in self.engines.items())

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        out: dict[str, Frame] = {}
        if len(self.checked) < 1_000_000:
            self.checked.add((fs.t, fs.p))
        for ch, engine in self.engines.items():
            src = fs.frames[ch]
            score = focus_score(src.pixels)
            best = self.best[ch] = max(self.best.get(ch, 0.0), score)
            if self.policy == "when_defocused" and score >= self.threshold * best:
                continue
            pixels, qc = engine.infer([src.pixels])
            qc["input_focus_score"] = round(score, 5)
            saved = virtual_frame(src, f"{ch}-refocused", pixels, qc)
            out[f"{ch}-refocused"] = saved
            out[ch] = replace(saved, id=src.id)  # what later stages see as this channel
            self.applied += 1
        return out

    def close(self) -> None:
        for engine in {id(e): e for e in self.engines.values()}.values():
            engine.close()


class SynthesisStage:
    """Synthesises one virtual channel from its input channels (raw or refocused).

    With ``passes`` (2 to 8) the engine runs on flipped and rotated inputs; the virtual frame
    is their mean and their per-pixel spread is saved as ``uncertainty:NAME``. QC adds the
    input checks of the card's ``input_stats`` and ``uncertainty_high`` when the spread's
    frame mean is above ``uncertainty_max`` (the card's band unless given).
    """

    def __init__(self, channel: str, engine: TiledEngine, inputs: tuple[str, ...], *,
                 passes: int = 0, uncertainty_max: float | None = None) -> None:
        self.name = f"synthesis:{channel}"
        self.channel = channel
        self.engine = engine
        self.inputs = inputs
        self.passes = passes
        self.uncertainty_max = uncertainty_max
        if uncertainty_max is None and passes:
            measured = ((engine.card.metrics.get("held_out") or {}).get("uncertainty")
                        or {}).get("passes")
            if measured == passes:  # the spread grows with the passes: a band is per count
                self.uncertainty_max = acceptance_band(engine.card).get("uncertainty_max")
            else:
                log.warning("virtual channel %s: the card's uncertainty band is for %s "
                            "passes, the profile asks %d: no uncertainty flag", channel,
                            measured, passes)

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        info = _info(self.channel, self.engine, self.inputs)
        if not self.passes:
            return (info,)
        return (info, replace(info, name=UNCERTAINTY + self.channel))

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        frames = [fs.frames[c].pixels for c in self.inputs]
        if self.passes:
            pixels, spread, qc = infer_with_uncertainty(self.engine, frames, self.passes)
            if self.uncertainty_max is not None:
                qc["uncertainty_high"] = bool(qc["uncertainty_mean"] > self.uncertainty_max)
        else:
            pixels, qc = self.engine.infer(frames)
        qc.update(check_inputs(self.engine.card, dict(zip(self.inputs, frames, strict=True))))
        # timed from the last input's arrival: the virtual frame cannot exist before it
        src = max((fs.frames[c] for c in self.inputs), key=lambda f: f.received)
        out = {self.channel: virtual_frame(src, self.channel, pixels, qc)}
        if self.passes:
            name = UNCERTAINTY + self.channel
            out[name] = virtual_frame(src, name, spread_frame(spread, pixels.dtype),
                                      {"uncertainty_mean": qc["uncertainty_mean"]})
        return out

    def close(self) -> None:
        self.engine.close()
