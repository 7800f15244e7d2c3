"""Is a refocused frame consistent with the frame it came from? The forward-model check.

A refocus engine claims that its output is the in-focus image of what the camera saw
defocused. Blurring that output with the microscope's PSF at some defocus must then give back
the camera's frame, up to the camera's noise. The check searches the defocus planes of the
engine's training range for the one that does so best and reports the noise-normalised misfit
there (chi-square per pixel: about 1 for a perfect, physically possible output; the PSF model's
own error adds a little). Structure the engine invented, or removed, at spatial frequencies the
PSF passes shows up as misfit; at large defocus the PSF passes less and the check sees less,
which is physics (what the camera never recorded cannot be checked).

The noise model is the camera's: ``var = gain x (signal - offset) + (gain x read noise)^2 +
1/12`` ADU^2. The check runs on a centred window (256 x 256 by default) to keep it cheap
(about 20 FFT convolutions of the window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from acquire_vf.optics import Optics, card_optics, convolve_many


def forward_consistency(camera_frame: np.ndarray, refocused: np.ndarray, optics: Optics,
                        wavelength_um: float, planes_um: Sequence[float], *,
                        offset_adu: float, gain_adu_per_e: float, read_noise_e: float,
                        window: int = 256) -> tuple[float, float]:
    """``(chi2 per pixel, defocus of the best plane in µm)`` of ``refocused`` against
    ``camera_frame`` (both ADU)."""
    h, w = camera_frame.shape
    n = min(window, h, w)
    y0, x0 = (h - n) // 2, (w - n) // 2
    seen = camera_frame[y0:y0 + n, x0:x0 + n].astype(np.float32)
    source = np.clip(refocused[y0:y0 + n, x0:x0 + n].astype(np.float32) - offset_adu, 0, None)
    models = convolve_many(source, optics.psf(wavelength_um, tuple(planes_um))) + offset_adu
    var = (gain_adu_per_e * np.clip(seen - offset_adu, 0, None)
           + (gain_adu_per_e * read_noise_e) ** 2 + 1 / 12)
    chi2 = ((models - seen[None]) ** 2 / var[None]).mean(axis=(1, 2))
    best = int(np.argmin(chi2))
    return float(chi2[best]), float(planes_um[best])


def consistency_from_card(optics: Mapping[str, Any], camera_frame: np.ndarray,
                          refocused: np.ndarray, z_range_um: tuple[float, float],
                          step_um: float = 1.0) -> tuple[float, float]:
    """:func:`forward_consistency` with the optics and camera a refocus engine's card records
    (``card.optics``), over its training range (and two planes beyond) in ``step_um`` planes
    (1 µm for the 20x/0.45 engines; a high-NA objective's depth of field asks for finer)."""
    o = dict(optics)
    lens = card_optics(o)
    lo, hi = z_range_um
    planes = tuple(round(float(z), 4) for z in np.arange(np.floor(lo) - 2 * step_um,
                                               np.ceil(hi) + 2.5 * step_um, step_um))
    return forward_consistency(camera_frame, refocused, lens, o["wavelength_um"], planes,
                               offset_adu=o["offset_adu"], gain_adu_per_e=o["gain_adu_per_e"],
                               read_noise_e=o["read_noise_e"])
