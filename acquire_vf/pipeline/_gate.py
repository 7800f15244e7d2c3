"""The refocus gate: a refocused frame is never one the camera's frame does not support.

A learned refocus engine can invent texture (on real nuclei the shipped one made every frame
worse, by 4.5 to 25.6 dB); physics cannot. For each frame the gate takes, in order:

0. the **camera**'s frame when the frame is in focus: the closed loop's estimate, or, without
   one, the defocus at which the learned frame explains the camera's, inside the in-focus
   band (there is nothing to refocus, and a consistent learned frame can still be worse);
1. the **learned** engine's frame, if it is consistent with the camera's frame (the forward
   check of :mod:`acquire_vf.simulate._consistency`: re-blurred at the best plane, it must
   give back the camera's frame within the card's chi-square band) and the defocus is one
   where the engine was measured beating the camera's frame (:func:`trusted_defocus`: on
   real validation cells where the card has them, else on its simulated held-out table);
2. else the **deconvolution** of the camera's frame
   (:class:`~acquire_vf.inference.DeconvolutionRefocus`, no weights, at the defocus the
   closed loop estimated or, without one, the likeliest), if it is consistent and, where the
   card's real validation measured it, at a defocus where it beat the camera's frame there
   (:func:`trusted_deconvolution`);
3. else the **camera**'s frame itself: the plane is not refocused, and says why.

Every choice is recorded with its chi-squares and reason: ``session.json`` (``refocus_gate``),
the frame's QC in the OME annotations, and ``predict``'s JSON sidecar. The live refocus stage
and ``predict`` use this one class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Choice = Literal["learned", "deconvolution", "camera"]


@dataclass(frozen=True)
class GateDecision:
    choice: Choice
    frame: np.ndarray
    """The frame chosen (camera units): later stages see it as the channel."""
    reason: str
    chi2: dict[str, float] = field(default_factory=dict)
    """Per candidate checked (``learned``, ``deconvolution``): its consistency chi-square."""
    z_um: float | None = None
    """The defocus the deconvolution used (estimated or seeded)."""

    def qc(self) -> dict[str, Any]:
        """What the frame's QC (and so the files) carries of the decision."""
        out: dict[str, Any] = {"refocus_choice": self.choice, "refocus_reason": self.reason}
        out.update({f"consistency_chi2_{k}": round(v, 3) for k, v in self.chi2.items()})
        if self.z_um is not None:
            out["deconvolution_z_um"] = self.z_um
        return out


class RefocusGate:
    """The gate for one refocus engine's optics and band (its card's ``optics`` and
    ``consistency_chi2_max``). ``z_range_um``: the defocus range searched."""

    def __init__(self, optics: Mapping[str, Any], band: float,
                 z_range_um: tuple[float, float],
                 in_focus_um: tuple[float, float] = (-2.0, 2.0), step_um: float = 1.0,
                 learned_beyond_um: tuple[float, float] | None = None,
                 estimator: Any = None,
                 deconvolution_within_um: tuple[float, float] | None = None) -> None:
        from acquire_vf.inference import DeconvolutionRefocus

        self.optics, self.band, self.z_range = dict(optics), float(band), z_range_um
        self.step = float(step_um)
        """Spacing of the defocus planes searched (µm): 1 µm at 20x/0.45, finer at high NA."""
        self.in_focus = in_focus_um
        """Defocus inside this band counts as in focus (the engine's excluded band): a slightly
        wrong small defocus made a frame worse (-0.26 dB, simulated, +2 µm taken for +1 µm), a
        frame left alone cannot be. A defocus the likelihood *estimated* (no seed) at the
        band's edge counts as in focus too: on simulated validation stacks (v3 specimen,
        BBBC006 layout, seeds 5 and 6, three fields each) it read every frame from -4 to +4
        µm, in focus included, as -2 or +2 µm, and deconvolving in-focus frames there lost
        16-17 dB (1 µm off focus, 9-10 dB), against +8 dB gained where the truth was +-2 µm."""
        self.learned_beyond = learned_beyond_um
        """The learned frame is taken only at defocus <= the first or >= the second (µm):
        where it was measured beating the camera's frame (real validation cells, else its
        card's held-out set; see :func:`trusted_defocus`); ``None``: wherever it is
        consistent."""
        self.estimator = estimator
        """Without a seed: a defocus estimator of the engine's stain
        (:class:`~acquire_vf.inference.DefocusEstimator`), a second witness for the learned
        frame: it is taken only where both the defocus it explains the camera's frame from and
        the estimator's are trusted (on real-like frames the first reads 0-3 µm too far).
        ``None``: the first alone."""
        self.deconvolution_within = deconvolution_within_um
        """The deconvolved frame is taken only at a defocus in this range (µm, ends included):
        where the card's real validation cells showed it beating the camera's frame (see
        :func:`trusted_deconvolution`); ``None``: wherever it is consistent."""
        self.deconvolution = DeconvolutionRefocus(self.optics, z_range_um, step_um)
        self.choices: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def learned_trusted(self, z_um: float) -> bool:
        if self.learned_beyond is None:
            return True
        lo, hi = self.learned_beyond
        return z_um <= lo or z_um >= hi

    def consistency(self, seen: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
        """``candidate``'s chi-square against ``seen`` and the defocus (µm) that explains
        ``seen`` best from it."""
        from acquire_vf.simulate import consistency_from_card

        return consistency_from_card(self.optics, seen, candidate, self.z_range, self.step)

    def chi2(self, seen: np.ndarray, candidate: np.ndarray) -> float:
        return self.consistency(seen, candidate)[0]

    def choose(self, seen: np.ndarray, learned: np.ndarray | None,
               z_hint_um: float | None = None) -> GateDecision:
        """The frame to use for ``seen`` (the camera's), given the learned engine's output
        (``None``: no learned engine) and a defocus estimate if the run has one."""
        chi2: dict[str, float] = {}
        lo, hi = self.in_focus
        if z_hint_um is not None and lo < z_hint_um < hi:
            return self._note(GateDecision(
                "camera", seen, f"the frame is in focus ({z_hint_um:+.3g} um estimated: "
                "nothing to refocus)", chi2, z_hint_um))
        learned_why = "no learned engine"
        if learned is not None:
            chi2["learned"], z_learned = self.consistency(seen, learned)
            if chi2["learned"] <= self.band and z_hint_um is None and lo <= z_learned <= hi:
                # the learned frame explains the camera's only as (nearly) in focus: the frame
                # needs no refocus, and a consistent learned frame there can still be worse
                return self._note(GateDecision(
                    "camera", seen, f"the frame is in focus (the learned frame explains it at "
                    f"{z_learned:+.3g} um: nothing to refocus)", chi2, z_learned))
            z_at = z_hint_um if z_hint_um is not None else z_learned
            read_by = ""
            if chi2["learned"] <= self.band and self.learned_trusted(z_at) and \
                    z_hint_um is None and self.estimator is not None:
                z_at = self.estimated(seen, z_learned)  # a second witness, not the engine's
                read_by = f" (read by {self.estimator.card.name})"
            if chi2["learned"] <= self.band and self.learned_trusted(z_at):
                return self._note(GateDecision("learned", learned, "consistent with the "
                                               "camera's frame", chi2, z_learned))
            learned_why = (f"learned frame inconsistent (chi2 {chi2['learned']:.1f} > "
                           f"{self.band:.1f})") if chi2["learned"] > self.band else (
                f"the learned engine did not beat the camera's frame at {z_at:+.3g} um"
                f"{read_by} where it was measured")
        dec = self.deconvolution.refocus(seen, z_hint_um)
        chi2["deconvolution"] = self.chi2(seen, dec.frame)
        if lo < dec.z_um < hi or (z_hint_um is None and lo <= dec.z_um <= hi):
            return self._note(GateDecision(
                "camera", seen, f"{learned_why}; the frame is in focus ({dec.z_um:+.3g} um: "
                "nothing to deconvolve)", chi2, dec.z_um))
        within = self.deconvolution_within
        if chi2["deconvolution"] <= self.band and within is not None and not (
                within[0] <= dec.z_um <= within[1]):
            return self._note(GateDecision(
                "camera", seen, f"{learned_why}; deconvolution did not beat the camera's frame "
                f"at {dec.z_um:+.3g} um on real validation cells", chi2, dec.z_um))
        if chi2["deconvolution"] <= self.band:
            return self._note(GateDecision("deconvolution", dec.frame,
                                           f"{learned_why}; deconvolved at {dec.z_um:+.3g} um",
                                           chi2, dec.z_um))
        return self._note(GateDecision(
            "camera", seen, f"{learned_why}; deconvolution at {dec.z_um:+.3g} um inconsistent "
            f"too (chi2 {chi2['deconvolution']:.1f})", chi2, dec.z_um))

    def estimated(self, seen: np.ndarray, z_learned: float | None) -> float:
        """The estimator's defocus of ``seen``; an estimator of distance (fluorescence: a
        symmetric PSF has no sign) takes the side the learned frame explains it from."""
        z, _ = self.estimator.estimate(seen)
        if not self.estimator.signed and z_learned is not None and z_learned < 0:
            z = -abs(z)
        return float(z)

    def _note(self, d: GateDecision) -> GateDecision:
        self.choices[d.choice] += 1
        self.reasons[d.reason.split(";")[0] if d.choice != "camera" else d.reason] += 1
        return d

    def report(self) -> dict[str, Any]:
        """``session.json``'s ``refocus_gate`` entry for one channel."""
        return {"choices": dict(self.choices), "band": self.band,
                "reasons": dict(self.reasons.most_common(8))}


def gate_for(card: Any, z_range_um: tuple[float, float],
             in_focus_um: tuple[float, float] | None = None,
             estimator: Any = None) -> RefocusGate | None:
    """The gate a refocus engine's card allows (its optics and band), else ``None``: an
    engine whose card records neither cannot be checked (``evaluate --update-card`` writes
    them)."""
    from acquire_vf.card import acceptance_band

    band = acceptance_band(card).get("consistency_chi2_max")
    if not card.optics or band is None:
        return None
    if in_focus_um is None:
        ex = (card.training.get("data") or {}).get("exclude_um", (-2.0, 2.0))
        in_focus_um = (float(ex[0]), float(ex[1]))
    return RefocusGate(card.optics, band, z_range_um, in_focus_um,
                       learned_beyond_um=trusted_defocus(card), estimator=estimator,
                       deconvolution_within_um=trusted_deconvolution(card))


def trusted_defocus(card: Any) -> tuple[float, float] | None:
    """Where the learned engine may be taken (at defocus <= the first or >= the second, µm).

    From the card's real validation cells (``metrics.real_validation``, written by
    ``scripts/gate_validation.py --write-card``) where it has them, else from its simulated
    held-out table (``metrics.held_out.per_z``, never trained on): on each side of focus, the
    innermost defocus from which outward every plane's PSNR gain over the camera's frame has
    its 95% interval above zero. ``None`` when the card has neither; ``(-inf, inf)`` (never)
    when no plane qualifies.

    Chosen on validation: on simulated v4 fields (seeds 5 and 6, never trained on) the v4
    ``refocus`` engine's frames passed the consistency check from -3 to +3 µm and lost 2 to
    20 dB there; its card's table shows no gain at +-4 µm (intervals across zero). On real
    Kc167 nuclei (ExampleFly's validation fields) the simulated table's +-6 µm lost 0.7 dB:
    real cells, where a card has them, decide."""
    real = (card.metrics or {}).get("real_validation") or {}
    if real.get("learned_beyond_um"):
        lo, hi = real["learned_beyond_um"]  # JSON has no infinity: null is "never"
        return (float("-inf") if lo is None else float(lo),
                float("inf") if hi is None else float(hi))
    rows = ((card.metrics or {}).get("held_out") or {}).get("per_z") or []
    gains = {float(r["z_um"]): float(r["gain_over_input"]["psnr_ci95"][0]) > 0.0 for r in rows
             if (r.get("gain_over_input") or {}).get("psnr_ci95")}
    return _outer_edges(gains) if gains else None


def trusted_deconvolution(card: Any) -> tuple[float, float] | None:
    """Where the deconvolved frame may be taken (µm, ends included): from the card's real
    validation cells (``metrics.real_validation.deconvolution_within_um``); ``None`` (wherever
    it is consistent) when the card has none."""
    within = ((card.metrics or {}).get("real_validation") or {}).get("deconvolution_within_um")
    return (float(within[0]), float(within[1])) if within else None


def _outer_edges(better: Mapping[float, bool]) -> tuple[float, float]:
    """On each side of focus, the innermost defocus from which outward every plane is
    ``better``; ``-inf``/``inf`` where the outermost is not."""

    def edge(side: list[float]) -> float | None:
        inner = None
        for z in side:  # outermost first
            if not better[z]:
                break
            inner = z
        return inner

    neg = edge(sorted(z for z in better if z < 0))
    pos = edge(sorted((z for z in better if z > 0), reverse=True))
    return (neg if neg is not None else float("-inf"), pos if pos is not None else float("inf"))


def _inner_edges(better: Mapping[float, bool], in_focus: tuple[float, float]
                 ) -> tuple[float, float]:
    """On each side, the outermost defocus up to which every plane from the in-focus band
    outward is ``better``; 0 (focus: nothing on that side) where the first is not."""

    def edge(side: list[float]) -> float:
        outer = 0.0
        for z in side:  # innermost first
            if not better[z]:
                break
            outer = z
        return outer

    lo, hi = in_focus
    return (edge(sorted((z for z in better if z <= lo), reverse=True)),
            edge(sorted(z for z in better if z >= hi)))


def trust_from(per_z: list[Mapping[str, Any]], in_focus: tuple[float, float]) -> dict[str, Any]:
    """The gate's trust, measured: from a real-image run's table
    (:func:`acquire_vf.evaluate.real_refocus`'s ``per_z`` on validation cells), where the
    learned frame and the deconvolution (at the true defocus) each beat the camera's frame,
    95% interval above zero: ``learned_beyond_um`` and ``deconvolution_within_um``."""
    learned = {float(r["z_um"]): float(r["gain_ci95"][0]) > 0.0 for r in per_z
               if not in_focus[0] < r["z_um"] < in_focus[1]}
    deconv = {float(r["z_um"]): float(r["deconvolution_ci95"][0]) > 0.0 for r in per_z
              if "deconvolution_ci95" in r and not in_focus[0] < r["z_um"] < in_focus[1]}
    out: dict[str, Any] = {"learned_beyond_um": [
        z if np.isfinite(z) else None for z in _outer_edges(learned)]}  # JSON: null is never
    if deconv:
        out["deconvolution_within_um"] = list(_inner_edges(deconv, in_focus))
    return out
