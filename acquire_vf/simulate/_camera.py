"""Camera model: photons to digital numbers, with shot noise, read noise, gain, offset, clipping.

``ADU = clip(round(gain * (Poisson(QE * photons) + Normal(0, read_noise)) + offset), 0, 2^bits-1)``

Mean and variance of a flat field therefore follow ``mean = gain * QE * N + offset`` and
``var = gain^2 * (QE * N + read_noise^2)`` (plus 1/12 ADU^2 of rounding), which the tests check.

With ``fixed_pattern`` (simulator version 4's sCMOS) each pixel also has its own offset
(``offset_sd_adu``) and gain (photo-response non-uniformity, ``prnu_sd``), every column its own
offset, and a few hot pixels collect ``hot_e_per_s`` dark electrons a second: a pattern fixed by
``pattern_seed`` (one camera), the same in every frame, as a real sensor's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    """An sCMOS-like camera. Photon flux is photons per pixel per second at stain intensity 1."""

    bit_depth: int = 16
    qe: float = 0.7
    read_noise_e: float = 1.6
    gain_adu_per_e: float = 0.5
    offset_adu: float = 100.0
    photon_flux: float = 250_000.0
    """Photons/pixel/s where the stain's intensity is 1 (a bright, well-stained structure)."""
    fixed_pattern: bool = False
    pattern_seed: int = 0
    offset_sd_adu: float = 1.5
    column_sd_adu: float = 0.8
    prnu_sd: float = 0.01
    hot_pixel_fraction: float = 2e-4
    hot_e_per_s: float = 2000.0

    @property
    def max_adu(self) -> int:
        return 2**self.bit_depth - 1

    def expected(self, intensity: np.ndarray, exposure_ms: float) -> np.ndarray:
        """The noise-free image: the mean ADU that :meth:`expose` draws around (float32,
        before rounding and clipping), the truth that tells model error from noise."""
        electrons = np.clip(intensity, 0, None) * (
            self.photon_flux * exposure_ms / 1e3 * self.qe)
        return (electrons * self.gain_adu_per_e + self.offset_adu).astype(np.float32)

    def expose(self, intensity: np.ndarray, exposure_ms: float, rng: np.random.Generator,
               *, exact: bool = True) -> np.ndarray:
        """Digitise a relative-intensity image for ``exposure_ms``; returns uint16 (uint8 <= 8 bit).

        ``exact=False`` draws shot noise from the normal approximation (mean = variance), three
        times faster; the live specimen uses it, where frames are bright (thousands of
        electrons), the datasets and tests use the exact Poisson draw.
        """
        electrons_mean = np.clip(intensity, 0, None) * (
            self.photon_flux * exposure_ms / 1e3 * self.qe)
        if exact:
            e = rng.poisson(electrons_mean).astype(np.float32)
            e += rng.normal(0.0, self.read_noise_e, e.shape).astype(np.float32)
        else:
            m = electrons_mean.astype(np.float32, copy=False)
            sd = np.sqrt(m + self.read_noise_e**2)
            e = m + sd * rng.standard_normal(m.shape, dtype=np.float32)
        if self.fixed_pattern:
            offset, gain, hot = _pattern(self, e.shape)
            e = e * gain + hot * np.float32(self.hot_e_per_s * exposure_ms / 1e3)
            adu = np.rint(e * self.gain_adu_per_e + self.offset_adu + offset)
        else:
            adu = np.rint(e * self.gain_adu_per_e + self.offset_adu)
        dtype = np.uint8 if self.bit_depth <= 8 else np.uint16
        return np.clip(adu, 0, self.max_adu).astype(dtype)


@functools.lru_cache(maxsize=8)
def _pattern(camera: Camera, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sensor's fixed pattern over ``shape``: offsets (ADU), gains, hot-pixel mask."""
    rng = np.random.default_rng([camera.pattern_seed, 0xF1C])
    offset = rng.normal(0, camera.offset_sd_adu, shape).astype(np.float32)
    offset += rng.normal(0, camera.column_sd_adu, shape[-1]).astype(np.float32)
    gain = (1 + rng.normal(0, camera.prnu_sd, shape)).astype(np.float32)
    hot = (rng.random(shape) < camera.hot_pixel_fraction).astype(np.float32)
    for a in (offset, gain, hot):
        a.flags.writeable = False
    return offset, gain, hot
