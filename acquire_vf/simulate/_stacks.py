"""Through-focus stacks of the simulated slide, for the defocus estimators.

Each field of the U2OS slide is rendered at defocus planes ``-range..+range`` (``step`` µm
apart) through the physical PSF of one stain's emission, or in brightfield (``stain = "BF"``:
the cells' optical path difference through defocus); noise-free mean intensities (noise and
exposure are drawn at training time, so one bank serves every dose). Defocus is measured
from the stain's best focus, as in the live specimen.

With ``realism`` (simulator version 4) each field is simulated as the v4 datasets are: thick
cells, background, autofluorescence and vignetting (the same light in every plane), and with
``realism.randomise`` each field's own style (texture, density, gains, PSF aberration, pixel
size, dose), its dose scaling the bank.
"""

from __future__ import annotations

import numpy as np

from acquire_vf.optics import Optics, brightfield
from acquire_vf.simulate._phantom import fluorescence, render_field
from acquire_vf.simulate._realism import Realism


def defocus_planes(range_um: float, step_um: float) -> np.ndarray:
    n = int(round(range_um / step_um))
    return np.arange(-n, n + 1, dtype=np.float64) * step_um


def through_focus_bank(stain: str, *, seed: int, fields: int, size: int, range_um: float,
                       step_um: float, optics: Optics, realism: Realism | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(images, z)``: images float32 (fields, planes, size, size), mean intensity at
    stain intensity 1; ``z`` the defocus of each plane (µm)."""
    zs = defocus_planes(range_um, step_um)
    out = np.empty((fields, zs.size, size, size), np.float32)
    rng = np.random.default_rng([seed, 0xD3F])
    if realism is not None:
        for k in range(fields):
            out[k] = _realistic_planes(stain, seed, k, size, zs, optics, realism)
        return out, zs.astype(np.float32)
    for k in range(fields):
        origin = (int(rng.integers(0, 20_000)), int(rng.integers(0, 20_000)))
        field = render_field("u2os", seed + k, (size, size), optics.pixel_size_um,
                             origin_px=origin)
        if stain == "BF":
            out[k] = brightfield(field.stains["OPD"], optics, tuple(zs))
        else:
            out[k] = fluorescence(field.stains[stain], stain, optics, tuple(zs))
    return out, zs.astype(np.float32)


def _realistic_planes(stain: str, seed: int, k: int, size: int, zs: np.ndarray, optics: Optics,
                      realism: Realism) -> np.ndarray:
    """One field's planes as simulator version 4 renders its datasets (a field of the
    ``bbbc022`` kind: the U2OS slide)."""
    from acquire_vf.simulate._datasets import _FieldSim, field_seed

    sim = _FieldSim.make("bbbc022", field_seed(seed, k), seed, (size, size), optics, realism)
    planes = tuple(float(z) for z in zs)
    if stain == "BF":
        img = sim.transmitted(brightfield(sim.field.stains["OPD"], sim.optics, planes))
    else:
        img = sim.fluorescence(stain, planes)
    return (img * sim.style.dose).astype(np.float32)
