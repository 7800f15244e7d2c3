"""``[verification]``: sentinel exposures that check the virtual channels."""

from __future__ import annotations

from pydantic import Field, model_validator

from acquire_vf.config._base import _Model


class Acceptance(_Model):
    """The band a virtual channel's sentinel fidelity must stay in (else: exposed physically)."""

    psnr_min: float | None = None
    ssim_min: float | None = None
    mae_max: float | None = Field(None, gt=0)
    """On the engine card's intensity scale (its output range mapped to [0, 1])."""
    uncertainty_max: float | None = Field(None, gt=0)
    """Frame mean of the per-pixel uncertainty, on the same scale."""


class Verification(_Model):
    """Sentinel exposures: virtual channels checked against real exposures during the run.

    At a sentinel time point every virtual channel is also exposed (its ``preset`` and
    ``exposure_ms``) and the pair is compared. A channel outside its acceptance band becomes
    ``suspect`` and is exposed from the next time point on; a second bad pair makes it
    ``physical``; ``recover_after`` good pairs in a row make it ``trusted`` (virtual) again.
    """

    every: int = Field(5, ge=1)
    """A sentinel every this many time points (counted per position)."""
    at_start: bool = True
    """The first time point of each position is a sentinel."""
    recover_after: int = Field(3, ge=1)
    """Good sentinels in a row that return a channel from physical to virtual."""
    uncertainty_passes: int = Field(2, ge=0, le=8)
    """Test-time augmentation passes (flips and 90° rotations) per virtual frame; their
    per-pixel spread is saved as ``uncertainty:NAME``. 0 turns it off; otherwise 2 to 8. The
    spread grows with the passes, so the card's uncertainty band applies only to the count it
    was measured with (2 for the shipped engines)."""
    acceptance: dict[str, Acceptance] = Field(default_factory=dict)
    """Per virtual channel, overrides of the band stored in its engine's card."""

    @model_validator(mode="after")
    def _passes(self) -> Verification:
        if self.uncertainty_passes == 1:
            raise ValueError("uncertainty_passes: expected 0 (off) or 2 to 8, got 1")
        return self
