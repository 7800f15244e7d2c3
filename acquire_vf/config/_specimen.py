"""``[specimen]``: the simulated specimen (or the real one's facts), its focus drift and
the disturbances that test verification."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from acquire_vf.config._base import _Model


class FocusStep(_Model):
    """A sudden focus change (a plate move): the focal plane jumps by ``dz_um`` at ``at``."""

    at: int = Field(ge=0)
    dz_um: float


class Perturbation(_Model):
    """A disturbance of the simulated specimen from time point ``at`` on (to test verification)."""

    at: int = Field(ge=0)
    kind: Literal["dim", "stain_shift", "new_sample"]
    """``dim``: a tenth of the light; ``stain_shift``: the stains move relative to each other
    (the relation an engine learned no longer holds); ``new_sample``: another cell type."""


class Specimen(_Model):
    """What the camera looks at: the real sample, or acquire-vf's simulated slide.

    With ``kind = "simulated"`` each frame shows the simulated slide as Micro-Manager's devices
    stand for that frame: the XY stage picks the field, the focus stage's distance from
    ``focus_z_um`` sets the defocus, the channel's preset picks the stain (``stains``), and the
    exposure scales the photons. The camera (e.g. the DemoCamera) still sets the timing.
    """

    kind: Literal["camera", "simulated"] = "camera"
    sample: Literal["u2os", "mda231"] = "u2os"
    """U2OS Cell Painting cells, or MDA-MB-231 (phase contrast, DAPI, F-actin, vinculin)."""
    seed: int = 0
    focus_z_um: float = 0.0
    """Focus-stage position (µm) at which the specimen is in focus."""
    na: float = Field(0.45, gt=0, lt=1.7)
    immersion_index: float = Field(1.0, ge=1.0, le=1.8)
    specimen_index: float = Field(1.38, ge=1.0, le=1.8)
    depth_um: float = Field(3.0, ge=0)
    """Depth of the emitters in the specimen (sets the focal shift and defocus asymmetry)."""
    stains: dict[str, Literal["DNA", "ER", "RNA", "AGP", "Mito", "actin", "DAPI", "F-actin",
                              "Vinculin", "PhC", "BF"]] = {}
    """Micro-Manager preset name → the stain it shows (e.g. ``Rhodamine = "AGP"``)."""
    focus_drift_um: float = Field(0.0, ge=0, le=50)
    """Amplitude of a simulated focus drift: the specimen's focal plane moves by
    ``focus_drift_um x sin(2 pi t / focus_drift_period)`` at time point ``t`` (thermal drift
    in a long experiment), so frames go out of focus and come back."""
    focus_drift_period: int = Field(20, ge=2)
    """Time points per drift cycle."""
    perturbation: Perturbation | None = None
    focus_steps: tuple[FocusStep, ...] = ()
    """Sudden focus changes on top of the drift (each lasts from its time point on)."""
    z_drive_inverted: bool = False
    """Simulated: the focus drive moves the other way (stage up brings the specimen's focal
    plane down), as on a rig whose Z drive is inverted; closed-loop focus must find this out
    (its sign check) rather than assume it."""
    realistic: bool = False
    """Simulator version 4's specimen (docs/simulator.md): thick cells, background and
    autofluorescence, vignetting, the sCMOS fixed pattern, linked channels, and
    photobleaching with each exposure. The demo's specimen; most shipped engines learned
    from it (their cards say which)."""
    bleach_s: float = Field(60.0, gt=0)
    """With ``realistic``: seconds of exposure of one field that leave 1/e of a stain."""
    motion_um: float = Field(0.0, ge=0, le=10)
    """Live cells: each cell's random-walk step per time point and axis (µm); 0: still."""
    divisions: float = Field(0.0, ge=0, le=0.2)
    """Live cells: the probability per time point that a cell divides (it rounds up for three
    time points, then splits into two daughters that walk apart)."""
    cells_every: int = Field(5, ge=1)
    """Live cells are shown as they are every this many time points (a new field costs about
    a second to render at 512 x 512, so not at every frame)."""

    def focus_at(self, t: int) -> float:
        """Focus-stage position (µm) at which the specimen is in focus at time point ``t``."""
        steps = sum(s.dz_um for s in self.focus_steps if t >= s.at)
        if not self.focus_drift_um:
            return self.focus_z_um + steps
        return self.focus_z_um + steps + self.focus_drift_um * math.sin(
            2 * math.pi * t / self.focus_drift_period)

    @model_validator(mode="after")
    def _optics_consistent(self) -> Specimen:
        if self.na >= self.immersion_index:
            raise ValueError(f"na {self.na} must be below the immersion index "
                             f"{self.immersion_index}")
        return self
