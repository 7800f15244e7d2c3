"""Engine-backed pipeline stages: virtual refocusing and channel synthesis.

They run on the pipeline's thread (never the acquisition thread). A failure raises; the
pipeline records it and skips only that virtual frame.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from acquire_vf._frames import ChannelInfo, Frame
from acquire_vf._stats import TimePoints
from acquire_vf.card import acceptance_band
from acquire_vf.config import RefocusPolicy
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


class FocusEstimateStage:
    """Each estimated channel's defocus (``closed_loop``: the distance from focus, or the
    signed defocus where the estimator gives it) to every listener (the focus controller,
    which returns the signed defocus it resolved, or ``None``); the signed value goes into
    ``fs.scores["defocus"]`` for the refocus stage, the distance into
    ``fs.scores["defocus_distance"]``."""

    name = "defocus"
    outputs: tuple[ChannelInfo, ...] = ()

    def __init__(self, estimators: dict[str, Any]) -> None:
        self.estimators = estimators
        self.listeners: list[Any] = []
        self.checked = TimePoints()
        """Time points, by position, whose focus was judged without a z-scan (the ledger's
        saving)."""

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        signed = fs.scores.setdefault("defocus", {})
        distance = fs.scores.setdefault("defocus_distance", {})
        for ch, est in self.estimators.items():
            frame = fs.frames.get(ch)
            if frame is None:  # a plan (a useq file) that does not acquire this channel
                continue
            mu, sigma = est.estimate(frame.pixels)
            distance[ch] = (abs(mu), sigma)
            for listen in self.listeners:
                resolved = listen(fs.t, fs.p, ch, frame, mu, sigma)
                if resolved is not None:
                    signed[ch] = (resolved, sigma)
        self.checked.add(fs.p, fs.t)
        return {}

    def close(self) -> None:
        for est in self.estimators.values():
            est.close()


def refocus_range(engine: TiledEngine) -> tuple[float, float, float, float]:
    """The defocus a refocus engine was trained on: (low, high) with the excluded band
    (near focus) between; from its card's recipe data (bbbc006 planes)."""
    data = engine.card.training.get("data") or {}
    lo, hi = data.get("z_range_um", (-12.0, 8.0))
    ex_lo, ex_hi = data.get("exclude_um", (-2.0, 2.0))
    return float(lo), float(ex_lo), float(ex_hi), float(hi)


def _consistent(engine: TiledEngine, seen: np.ndarray, refocused: np.ndarray,
                qc: dict[str, Any]) -> bool:
    """The forward-consistency check (:mod:`acquire_vf.simulate._consistency`) where the card
    records its optics and band: ``qc`` gets ``consistency_chi2`` and, beyond the band,
    ``inconsistent_with_input`` (the engine made something the camera's frame does not
    support: the refocused frame is saved, flagged, and later stages use the camera's)."""
    card = engine.card
    limit = acceptance_band(card).get("consistency_chi2_max")
    if not card.optics or limit is None:
        return True
    from acquire_vf.simulate import consistency_from_card

    lo, _, _, hi = refocus_range(engine)
    chi2, _ = consistency_from_card(card.optics, seen, refocused, (lo, hi))
    qc["consistency_chi2"] = round(chi2, 3)
    qc["inconsistent_with_input"] = bool(chi2 > limit)
    return not qc["inconsistent_with_input"]


class RefocusStage:
    """Refocuses defocused physical frames; later stages see the refocused frames.

    ``engines`` maps each refocused channel to its engine (a refocus engine is trained on one
    stain; one engine may serve several channels). ``always`` refocuses every frame;
    ``when_defocused`` only frames whose focus score falls below ``threshold`` x the best score
    seen for that channel; ``closed_loop`` only frames whose estimated defocus (the
    ``defocus`` stage's) lies inside the engine's trained range, with a sigma of at most
    ``confident_sigma``. Each refocused frame is saved as the virtual channel
    ``NAME-refocused`` and replaces ``NAME`` for the synthesis stages.
    """

    name = "refocus"

    CONFIDENT_SIGMA = 1.5
    """A closed-loop estimate with a larger sigma (µm) is unsure; the default
    ``confident_sigma`` when the profile's policy has no closed loop to set it."""

    def __init__(self, engines: dict[str, TiledEngine], *,
                 policy: RefocusPolicy | str = RefocusPolicy.ALWAYS,
                 threshold: float = 0.6, confident_sigma: float = CONFIDENT_SIGMA,
                 lookup: Any = None, gate: bool = True,
                 estimators: dict[str, Any] | None = None) -> None:
        self.engines = engines
        self.channels = tuple(engines)
        self.policy = RefocusPolicy(policy)
        self.threshold = threshold
        self.confident_sigma = confident_sigma
        self.lookup = lookup
        """``(t, p) -> (signed defocus, sigma) | None``: the focus controller's estimate of a
        frame set (closed loop; the estimator runs on its own thread)."""
        self.best: dict[str, float] = {}
        self.gates: dict[str, Any] = {}
        """Per channel, the refocus gate (learned, deconvolution or the camera's frame) where
        the engine's card records its optics and band (:mod:`acquire_vf.pipeline._gate`)."""
        if gate:
            from acquire_vf.pipeline._gate import gate_for

            for ch, engine in engines.items():
                lo, _, _, hi = refocus_range(engine)
                # an estimator only where nothing else calls it (offline: ``predict``); live,
                # the closed loop's own thread runs it and seeds the gate through ``lookup``
                found = gate_for(engine.card, (lo, hi),
                                 estimator=(estimators or {}).get(ch))
                if found is not None:
                    self.gates[ch] = found
        self.applied = 0
        self.checked = TimePoints()
        """Time points, by position, whose focus this stage judged: a z-scan the run did not
        need."""

    @property
    def outputs(self) -> tuple[ChannelInfo, ...]:
        return tuple(_info(f"{c}-refocused", e, (c,)) for c, e in self.engines.items())

    def process(self, fs: FrameSet) -> dict[str, Frame]:
        out: dict[str, Frame] = {}
        self.checked.add(fs.p, fs.t)
        for ch, engine in self.engines.items():
            src = fs.frames[ch]
            score = focus_score(src.pixels)
            best = self.best[ch] = max(self.best.get(ch, 0.0), score)
            if self.policy is RefocusPolicy.WHEN_DEFOCUSED and score >= self.threshold * best:
                continue
            estimate = self._estimate(fs, ch)
            if self.policy is RefocusPolicy.CLOSED_LOOP and not self._inside(engine, estimate):
                continue
            pixels, qc = engine.infer([src.pixels])
            qc["input_focus_score"] = round(score, 5)
            if estimate is not None:
                qc["defocus_um"], qc["defocus_sigma_um"] = round(estimate[0], 3), round(
                    estimate[1], 3)
            gate = self.gates.get(ch)
            if gate is None:  # a card without optics or band: the learned frame, checked if
                trusted = _consistent(engine, src.pixels, pixels, qc)  # it can be
            else:
                decision = gate.choose(src.pixels, pixels,
                                       estimate[0] if estimate is not None else None)
                qc.update(decision.qc())
                qc["consistency_chi2"] = qc.get("consistency_chi2_learned")
                qc["inconsistent_with_input"] = decision.choice != "learned"
                if decision.choice == "camera":  # not refocused: said, the camera's frame kept
                    fs.scores.setdefault("not_made", {})[f"{ch}-refocused"] = \
                        f"not refocused: {decision.reason}"
                    continue
                pixels, trusted = decision.frame, True
            saved = virtual_frame(src, f"{ch}-refocused", pixels, qc)
            out[f"{ch}-refocused"] = saved
            if trusted:  # else later stages keep the camera's frame
                out[ch] = replace(saved, id=src.id)  # what later stages see as this channel
            self.applied += 1
        return out

    def gate_report(self) -> dict[str, Any]:
        """``session.json``'s ``refocus_gate``: per refocused channel, the choices and why."""
        return {f"{ch}-refocused": g.report() for ch, g in self.gates.items()}

    def _estimate(self, fs: FrameSet, ch: str) -> tuple[float, float] | None:
        """This channel's signed defocus estimate, else another channel's (one focal plane),
        else the focus controller's for this frame set."""
        found = fs.scores.get("defocus") or {}
        got = found.get(ch) or next(iter(found.values()), None)
        if got is None and self.lookup is not None:
            got = self.lookup(fs.t, fs.p)
        return got

    def _inside(self, engine: TiledEngine, estimate: tuple[float, float] | None) -> bool:
        """The signed estimate lies in the engine's trained range (outside its excluded band
        near focus) and is confident."""
        if estimate is None or estimate[1] > self.confident_sigma:
            return False
        lo, ex_lo, ex_hi, hi = refocus_range(engine)
        return lo <= estimate[0] <= ex_lo or ex_hi <= estimate[0] <= hi

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
