"""``[autofocus]``: virtual refocusing and closed-loop focus, and the z-scan protocol the
light-dose ledger compares against.

A tagged union on ``policy``, as ``[connection]`` is on ``kind``: each policy carries exactly
the settings it uses, so ``deadband_um`` under ``policy = "off"`` is an error that names the
key, not a setting silently ignored. The z-scan protocol (what the ledger compares against,
and what calibration and closed-loop z-scans use) is common to all four."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from acquire_vf.config._base import _Model


class RefocusPolicy(StrEnum):
    """When frames are refocused (``[autofocus] policy``); compared as members, never as
    strings, outside this module."""

    OFF = "off"
    ALWAYS = "always"
    WHEN_DEFOCUSED = "when_defocused"
    CLOSED_LOOP = "closed_loop"


class _ZScanProtocol(_Model):
    """What every policy has: the z-scan protocol."""

    policy: RefocusPolicy
    zscan_planes: int = Field(11, ge=0)
    """Comparator protocol: exposures a z-scan autofocus takes per time point and position
    (the light-dose ledger compares the run against that protocol)."""
    zscan_every: int = Field(1, ge=1)
    """Comparator protocol: a z-scan every this many time points."""
    hardware_autofocus: bool = False
    """Comparator protocol: the microscope focuses by hardware (a z-scan costs no light)."""
    zscan_range_um: float = Field(30.0, gt=0)
    """A z-scan (closed loop's, calibration's) spans +- this around the current position, in
    ``zscan_planes`` planes."""
    zscan_channel: str | None = None
    """The physical channel z-scans expose (default: closed loop's steering channel, else the
    first). A brightfield frame shows least contrast in focus, so with a brightfield estimator
    name a fluorescence channel here."""

    @property
    def refocuses(self) -> bool:
        """Any policy but ``off``."""
        return self.policy is not RefocusPolicy.OFF

    @property
    def closed_loop(self) -> bool:
        return self.policy is RefocusPolicy.CLOSED_LOOP


class AutofocusOff(_ZScanProtocol):
    """No virtual refocusing (the frames are saved as the camera took them)."""

    policy: Literal[RefocusPolicy.OFF] = RefocusPolicy.OFF


class _Refocusing(_ZScanProtocol):
    """The refocus engines, for every policy that refocuses."""

    engine: Path | None = None
    """Refocus ONNX file for ``channels``; relative to the profile's folder."""
    channels: tuple[str, ...] = ()
    """Physical channels that ``engine`` refocuses; empty means every physical channel that
    has no engine of its own in ``engines``."""
    engines: dict[str, Path] = Field(default_factory=dict)
    """One refocus engine per physical channel (``AGP = "engines/refocus_agp.onnx"``): a
    refocus engine is trained on one stain."""
    focus_threshold: float = Field(0.6, gt=0, le=1)
    """``when_defocused``: refocus when the focus score falls below this fraction of the best
    score seen."""

    @model_validator(mode="after")
    def _needs_engine(self) -> _Refocusing:
        if self.policy is not RefocusPolicy.CLOSED_LOOP and self.engine is None \
                and not self.engines:
            raise ValueError(f"autofocus policy '{self.policy}' needs 'engine' or 'engines'")
        return self


class AutofocusAlways(_Refocusing):
    """Refocus every frame."""

    policy: Literal[RefocusPolicy.ALWAYS]


class AutofocusWhenDefocused(_Refocusing):
    """Refocus frames whose focus score is low (``focus_threshold``)."""

    policy: Literal[RefocusPolicy.WHEN_DEFOCUSED]


class AutofocusClosedLoop(_Refocusing):
    """Estimate each frame set's signed defocus (``estimators``), correct the Z stage toward
    focus, refocus virtually inside the refocus engines' trained range, and z-scan when unsure
    (docs/focus.md)."""

    policy: Literal[RefocusPolicy.CLOSED_LOOP]
    estimators: dict[str, Path] = Field(default_factory=dict)
    """Defocus estimator engines by physical channel (the first steers)."""
    confident_sigma_um: float = Field(1.5, gt=0)
    """An estimate with a larger sigma is unsure (a z-scan follows)."""
    deadband_um: float = Field(0.5, ge=0)
    """Estimates smaller than this move nothing."""
    gain: float = Field(1.0, gt=0, le=1)
    """The stage moves this fraction of the way to where the tracked focus will be ..."""
    max_step_um: float = Field(3.0, gt=0)
    """... and by at most this much per time point (it cannot oscillate)."""
    zscan_at_start: bool = True
    """The first time point of each position is z-scanned."""
    confirm_steps: bool = True
    """Signed estimator: a step of focus beyond the refocus engines' trained range is followed
    at once and then confirmed by a fine z-scan around the new position (false: the signed
    estimate alone)."""
    resolution_um: float = Field(1.5, ge=0)
    """Estimated distances below this count as in focus (the shipped fluorescence estimators
    read about 1 µm at focus: inside the depth of field a frame barely changes). Signed
    estimators (brightfield) are taken at their word."""
    unsure_hold: int = Field(3, ge=0)
    """An unsure estimate where the focus track puts this frame within ``resolution_um`` of
    focus is taken as in focus (a phase object shows no contrast there, so a brightfield
    frame in focus is the least certain of all) for up to this many time points in a row;
    then, or anywhere else, a z-scan. 0: every unsure estimate is z-scanned."""
    wait_for_estimate_s: float = Field(0.0, ge=0)
    """Before each time point of a position, wait up to this long for the steering estimate
    of its previous time point, so every correction and z-scan it asks for comes before the
    next exposure (for intervals shorter than the estimator's time on a busy computer). 0:
    never wait; a late estimate then steers a later time point. Waits that ran out are
    counted in session.json (``focus.late_estimates``)."""

    @model_validator(mode="after")
    def _zscans_fit(self) -> AutofocusClosedLoop:
        if not self.estimators:
            raise ValueError("autofocus policy 'closed_loop' needs 'estimators' (defocus "
                             "estimator engines by channel)")
        if self.zscan_planes < 3:
            raise ValueError("closed_loop z-scans need zscan_planes >= 3 (a parabola fit)")
        return self


def _policy_off_by_default(v: Any) -> Any:
    if isinstance(v, dict) and "policy" not in v:
        return {**v, "policy": RefocusPolicy.OFF.value}
    return v


Autofocus = Annotated[
    AutofocusOff | AutofocusAlways | AutofocusWhenDefocused | AutofocusClosedLoop,
    Field(discriminator="policy"), BeforeValidator(_policy_off_by_default)]
"""``[autofocus]``: one of the four policies (``off`` when the table does not say)."""
Refocusing = AutofocusAlways | AutofocusWhenDefocused | AutofocusClosedLoop
"""The policies that refocus (they name refocus engines)."""
VARIANTS: dict[str, type[_ZScanProtocol]] = {
    RefocusPolicy.OFF.value: AutofocusOff, RefocusPolicy.ALWAYS.value: AutofocusAlways,
    RefocusPolicy.WHEN_DEFOCUSED.value: AutofocusWhenDefocused,
    RefocusPolicy.CLOSED_LOOP.value: AutofocusClosedLoop}
"""Policy -> its model (which settings it takes)."""
