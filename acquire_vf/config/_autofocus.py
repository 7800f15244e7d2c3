"""``[autofocus]``: virtual refocusing and closed-loop focus, and the z-scan protocol the
light-dose ledger compares against."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator

from acquire_vf.config._base import _Model


class RefocusPolicy(StrEnum):
    """When frames are refocused (``[autofocus] policy``); compared as members, never as
    strings, outside this module."""

    OFF = "off"
    ALWAYS = "always"
    WHEN_DEFOCUSED = "when_defocused"
    CLOSED_LOOP = "closed_loop"


class Autofocus(_Model):
    """Virtual refocusing, which replaces a z-scan autofocus."""

    policy: RefocusPolicy = RefocusPolicy.OFF
    """``always`` refocuses every frame; ``when_defocused`` only frames whose focus score is
    low; ``closed_loop`` estimates each frame set's signed defocus (``estimators``), corrects
    the Z stage toward focus, refocuses virtually inside the refocus engine's trained range,
    and z-scans when unsure (docs/focus.md)."""
    engine: Path | None = None
    """Refocus ONNX file for ``channels``; relative to the profile's folder."""
    channels: tuple[str, ...] = ()
    """Physical channels that ``engine`` refocuses; empty means every physical channel that
    has no engine of its own in ``engines``."""
    engines: dict[str, Path] = Field(default_factory=dict)
    """One refocus engine per physical channel (``AGP = "engines/refocus_agp.onnx"``): a
    refocus engine is trained on one stain."""
    focus_threshold: float = Field(0.6, gt=0, le=1)
    """Refocus when the focus score falls below this fraction of the best score seen."""
    zscan_planes: int = Field(11, ge=0)
    """Comparator protocol: exposures a z-scan autofocus takes per time point and position
    (the light-dose ledger compares the run against that protocol)."""
    zscan_every: int = Field(1, ge=1)
    """Comparator protocol: a z-scan every this many time points."""
    hardware_autofocus: bool = False
    """Comparator protocol: the microscope focuses by hardware (a z-scan costs no light)."""
    estimators: dict[str, Path] = Field(default_factory=dict)
    """``closed_loop``: defocus estimator engines by physical channel (the first steers)."""
    confident_sigma_um: float = Field(1.5, gt=0)
    """``closed_loop``: an estimate with a larger sigma is unsure (a z-scan follows)."""
    deadband_um: float = Field(0.5, ge=0)
    """``closed_loop``: estimates smaller than this move nothing."""
    gain: float = Field(1.0, gt=0, le=1)
    """``closed_loop``: the stage moves this fraction of the way to where the tracked focus
    will be ..."""
    max_step_um: float = Field(3.0, gt=0)
    """... and by at most this much per time point (it cannot oscillate)."""
    zscan_range_um: float = Field(30.0, gt=0)
    """``closed_loop``: a z-scan spans +- this around the current position, in
    ``zscan_planes`` planes."""
    zscan_at_start: bool = True
    """``closed_loop``: the first time point of each position is z-scanned."""
    confirm_steps: bool = True
    """``closed_loop``, signed estimator: a step of focus beyond the refocus engines' trained
    range is followed at once and then confirmed by a fine z-scan around the new position
    (false: the signed estimate alone)."""
    zscan_channel: str | None = None
    """``closed_loop``: the physical channel z-scans expose (default: the steering one). A
    brightfield frame shows least contrast in focus, so with a brightfield estimator name a
    fluorescence channel here."""
    resolution_um: float = Field(1.5, ge=0)
    """``closed_loop``: estimated distances below this count as in focus (the shipped
    fluorescence estimators read about 1 µm at focus: inside the depth of field a frame barely
    changes). Signed estimators (brightfield) are taken at their word."""

    @property
    def refocuses(self) -> bool:
        """Any policy but ``off``."""
        return self.policy is not RefocusPolicy.OFF

    @property
    def closed_loop(self) -> bool:
        return self.policy is RefocusPolicy.CLOSED_LOOP

    @model_validator(mode="after")
    def _policy_needs_engine(self) -> Autofocus:
        if self.policy == "closed_loop":
            if not self.estimators:
                raise ValueError("autofocus policy 'closed_loop' needs 'estimators' (defocus "
                                 "estimator engines by channel)")
        elif self.policy != "off" and self.engine is None and not self.engines:
            raise ValueError(f"autofocus policy '{self.policy}' needs 'engine' or 'engines'")
        if self.policy == "closed_loop" and self.zscan_planes < 3:
            raise ValueError("closed_loop z-scans need zscan_planes >= 3 (a parabola fit)")
        return self
