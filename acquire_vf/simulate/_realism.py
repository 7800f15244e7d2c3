"""What simulator version 4 adds, so that engines learn what transfers to real cells.

Version 3's specimen is a sheet of bright, background-free emitters at one depth. ``Realism``
turns on, each separately:

- **thick cells**: every cell has a column height (a nucleus dome 3 to 8 µm tall, a thinner
  cytoplasm, mitotic cells rounded to 10 µm) and its emitters are spread over that column in
  1.6 µm sections (up to 9.6 µm), each with its own texture. Each section is imaged through the
  PSF at its own distance from the focal plane (2 µm above the coverslip: the top of the flat
  cytoplasm, inside the nuclei), so an in-focus frame carries the haze of the sections above
  and below, and a large defocus brings another section into focus;
- **linked channels** as in U2OS Cell Painting: cytoplasmic RNA follows the rough ER, the
  mitochondria show faintly in RNA;
- **background and autofluorescence**: medium background with a slow spatial drift, and
  cellular autofluorescence that is strongest in the blue;
- **flat-field vignetting**: a radial fall-off about an off-centre optical axis;
- **sCMOS fixed pattern and hot pixels** (:class:`~acquire_vf.simulate.Camera`);
- **dose**: a photon scale (1 is version 3's bright fixed cells, about 5,000 electrons at the
  brightest pixels; 0.01 to 0.04 is the low-dose live-cell regime of 50 to 200);
- **domain randomisation** (``randomise``): per field, nuclear texture from smooth to granular,
  cell size and density, stain gains, PSF aberration (emitter depth, i.e. spherical aberration
  from the index mismatch, and NA), pixel size ±20% and the dose.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

LAYER_UM = 1.6
"""Thickness of one section of a thick cell."""
LAYERS = 6
"""Sections per column (9.6 µm: the tallest, mitotic, cells)."""
FOCUS_DEPTH_UM = 2.0
"""Height of the focal plane above the coverslip at zero defocus."""
SECTION_OFFSETS_UM = tuple(round((k + 0.5) * LAYER_UM - FOCUS_DEPTH_UM, 3)
                           for k in range(LAYERS))
"""Each section's distance above the focal plane."""


@dataclass(frozen=True)
class Realism:
    """Version 4's additions (see the module docstring); ``None`` in their place is version 3."""

    thick: bool = True
    linked: bool = True
    background: float = 0.015
    """Medium background, in stain-intensity units (1 is a bright stained structure)."""
    autofluorescence: float = 0.04
    """Cellular autofluorescence at 450 nm (it falls with the cube of the wavelength)."""
    vignetting: float = 0.25
    """Light lost at the corners of the field, as a fraction."""
    fixed_pattern: bool = True
    dose: float = 1.0
    randomise: bool = False
    dose_floor: float = 0.01
    """With ``randomise``: the dimmest field's dose as a fraction of ``dose``."""


@dataclass(frozen=True)
class FieldStyle:
    """One field's draw of the domain randomisation (the defaults: no randomisation)."""

    density: float = 1.0
    texture_grain: float = 1.0
    """Chromatin grain size, relative (0.5: fine and granular; 2: smooth)."""
    texture_amp: float = 0.22
    gains: dict[str, float] = field(default_factory=dict)
    """Per stain, on top of each cell's own gain."""
    pixel_scale: float = 1.0
    na_scale: float = 1.0
    depth_um: float | None = None
    dose: float = 1.0
    axis: tuple[float, float] = (0.5, 0.5)
    """The optical axis (vignetting centre) as a fraction of the field."""

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


PLAIN = FieldStyle()
"""No randomisation (version 3's field)."""


def draw_style(rng: np.random.Generator, realism: Realism, stains: tuple[str, ...],
               ) -> FieldStyle:
    """A field's style: randomised when ``realism.randomise``, else the defaults (with the
    optical axis drawn a little off centre, as a real microscope's is)."""
    axis = (float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6)))
    if not realism.randomise:
        return FieldStyle(dose=realism.dose, axis=axis)
    q = lambda v, step: round(round(v / step) * step, 4)  # noqa: E731 - quantised: PSFs cache
    return FieldStyle(
        density=float(rng.uniform(0.6, 1.6)),
        texture_grain=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
        texture_amp=float(rng.uniform(0.1, 0.35)),
        gains={s: float(rng.lognormal(0.0, 0.3)) for s in stains},
        pixel_scale=q(rng.uniform(0.8, 1.2), 0.05),
        na_scale=q(rng.uniform(0.95, 1.05), 0.025),
        depth_um=q(rng.uniform(1.0, 6.0), 1.0),
        dose=float(realism.dose * np.exp(rng.uniform(np.log(realism.dose_floor), 0.0))),
        axis=axis,
    )


def section_weights(height_um: np.ndarray) -> np.ndarray:
    """(LAYERS, H, W): the fraction of each column's emitters in each section, for emitters
    spread evenly from the coverslip to the column's height (columns sum to 1)."""
    h = np.clip(height_um, LAYER_UM * 0.25, LAYERS * LAYER_UM).astype(np.float32)
    tops = (np.arange(LAYERS, dtype=np.float32) * LAYER_UM)[:, None, None]
    inside = np.clip(h[None] - tops, 0.0, LAYER_UM)
    return inside / h[None]


def light(intensity: np.ndarray, stain_wavelength_um: float | None, cells: np.ndarray,
          realism: Realism, style: FieldStyle, rng: np.random.Generator) -> np.ndarray:
    """The intensity a camera pixel receives: the specimen's image plus background and
    autofluorescence, times the vignetting (fluorescence; ``stain_wavelength_um`` None for
    transmitted light, which gets vignetting only)."""
    h, w = intensity.shape
    out = intensity.astype(np.float32, copy=True)
    if stain_wavelength_um is not None:
        drift = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32),
                                        max(h, w) / 6, mode="reflect")
        drift /= float(drift.std()) + 1e-6
        out += realism.background * (1 + 0.15 * drift)
        af = realism.autofluorescence * (0.447 / stain_wavelength_um) ** 3
        if af > 0:
            grain = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.0)
            grain /= float(grain.std()) + 1e-6
            mask = ndimage.gaussian_filter((cells > 0).astype(np.float32), 1.0)
            out += af * mask * np.clip(1 + 0.3 * grain, 0, None)
    return out * vignette((h, w), realism.vignetting, style.axis)


def vignette(shape: tuple[int, int], loss: float, axis: tuple[float, float]) -> np.ndarray:
    """Relative illumination: 1 on the optical axis, ``1 - loss`` at the farthest corner."""
    h, w = shape
    yy = (np.arange(h, dtype=np.float32) - axis[0] * (h - 1))[:, None]
    xx = (np.arange(w, dtype=np.float32) - axis[1] * (w - 1))[None, :]
    r2 = yy**2 + xx**2
    return (1.0 - loss * r2 / max(float(r2.max()), 1e-6)).astype(np.float32)
