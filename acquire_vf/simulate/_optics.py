"""Widefield image formation: a physical defocus PSF per channel, and approximate phase contrast.

Fluorescence: the specimen is thin (a monolayer a few µm tall), so the image at defocus ``z`` is
the in-focus emitter map convolved with the PSF plane at ``z``. The PSF is psfmodels' vectorial
model (Richards-Wolf with the Gibson-Lanni stratified-medium aberration): emission wavelength,
NA, immersion and specimen refractive indices from the optics settings, and the emitters at a
depth ``pz`` in the specimen. That depth and the index mismatch (an air objective imaging into
an aqueous sample) make defocus asymmetric about focus, as on a real microscope. The PSF is
computed 3x oversampled and binned to camera pixels, so each plane holds the energy a pixel
integrates, and each plane is normalised to sum 1 (defocus spreads light, it does not lose it).

Phase contrast (approximate, documented): the specimen's optical path difference (OPD) gives
a phase ``phi = 2 pi OPD / lambda``. Positive phase contrast renders thick/dense regions dark,
``I = I0 (1 - k phi)``; the finite phase ring passes the low spatial frequencies of the
object's scattered light, which subtracts a smoothed copy of the phase and produces the bright
halo round cells: ``I = I0 (1 - k (phi - h * G_sigma(phi)))`` with the halo width ``sigma``
(a few µm) and strength ``h``. The result is blurred by the (transmitted-light) PSF.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

_OVERSAMPLE = 3


@dataclass(frozen=True)
class Optics:
    """An objective and specimen, in physical units (µm)."""

    na: float = 0.45
    """Numerical aperture (20x air objective of the BBBC data)."""
    immersion_index: float = 1.0
    specimen_index: float = 1.38
    pixel_size_um: float = 0.65
    depth_um: float = 3.0
    """Emitter depth in the specimen (mid-cell above the coverslip)."""
    psf_px: int = 65
    """PSF window (odd, pixels): large enough for the largest defocus used."""

    def best_focus_um(self, wavelength_um: float) -> float:
        """Objective position of best focus for emitters at ``depth_um`` (the focal shift).

        With a refractive-index mismatch, emitters inside the specimen focus away from the
        nominal position; defocus in this package is measured from the best focus.
        """
        return _focal_shift(self, round(wavelength_um, 4))

    def psf(self, wavelength_um: float, z_um: float | Sequence[float]) -> np.ndarray:
        """PSF plane(s) at defocus ``z_um`` from best focus, each summing to 1.

        Shape (ny, nx) for a scalar ``z_um``, else (nz, ny, nx).
        """
        zs, scalar = z_planes(z_um)
        shift = self.best_focus_um(wavelength_um)
        planes = np.stack([_psf_plane(self, round(wavelength_um, 4), round(z + shift, 3))
                           for z in zs])
        return planes[0] if scalar else planes


def z_planes(z_um: float | Sequence[float]) -> tuple[tuple[float, ...], bool]:
    """Defocus value(s) as a tuple, and whether a single value was given."""
    if isinstance(z_um, int | float | np.floating | np.integer):
        return (float(z_um),), True
    return tuple(float(z) for z in z_um), False


@functools.lru_cache(maxsize=64)
def _focal_shift(optics: Optics, wavelength_um: float) -> float:
    import psfmodels

    span = max(2.0, 3.0 * optics.depth_um * abs(optics.specimen_index / optics.immersion_index - 1))
    zs = np.arange(-span, span + 1e-9, 0.05)
    psf = psfmodels.make_psf(
        list(zs), 9, dxy=optics.pixel_size_um / _OVERSAMPLE, NA=optics.na,
        ns=optics.specimen_index, ni=optics.immersion_index, ni0=optics.immersion_index,
        wvl=wavelength_um, pz=optics.depth_um, model="vectorial", normalize=False,
    )
    return float(zs[int(np.argmax(psf[:, 4, 4]))])


@functools.lru_cache(maxsize=512)
def _psf_plane(optics: Optics, wavelength_um: float, z_um: float) -> np.ndarray:
    import psfmodels

    n = optics.psf_px * _OVERSAMPLE
    psf = psfmodels.make_psf(
        [z_um], n, dxy=optics.pixel_size_um / _OVERSAMPLE, NA=optics.na,
        ns=optics.specimen_index, ni=optics.immersion_index, ni0=optics.immersion_index,
        wvl=wavelength_um, pz=optics.depth_um, model="vectorial",
    )[0]
    m = optics.psf_px
    binned = psf.reshape(m, _OVERSAMPLE, m, _OVERSAMPLE).sum(axis=(1, 3))
    binned = np.clip(binned, 0, None)
    out = (binned / binned.sum()).astype(np.float32)
    out.flags.writeable = False
    return out


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``image`` blurred by ``psf`` (same shape; mirrored borders, so flux is conserved)."""
    return convolve_many(image, psf[None])[0]


def convolve_many(image: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """``image`` blurred by each of ``psfs`` (nz, k, k): the object's FFT is computed once."""
    k = psfs.shape[-1]
    pad = k // 2
    padded = np.pad(image.astype(np.float32, copy=False), pad, mode="reflect")
    shape = [sfft.next_fast_len(s + k - 1, real=True) for s in padded.shape]
    obj = sfft.rfft2(padded, shape, workers=-1)
    out = np.empty((len(psfs), *image.shape), np.float32)
    for i, p in enumerate(psfs):
        otf = sfft.rfft2(p, shape, workers=-1)
        full = sfft.irfft2(obj * otf, shape, workers=-1)
        out[i] = full[2 * pad: 2 * pad + image.shape[0], 2 * pad: 2 * pad + image.shape[1]]
    return np.clip(out, 0, None)


def phase_contrast(opd_um: np.ndarray, *, wavelength_um: float = 0.55, pixel_size_um: float,
                   contrast: float = 0.45, halo: float = 1.0, halo_um: float = 2.0,
                   background: float = 1.0) -> np.ndarray:
    """Approximate positive phase contrast of an OPD map (µm): dark cells with a bright halo.

    Returns relative intensity (background ``background``), clipped at 0.
    """
    phi = 2 * np.pi * opd_um / wavelength_um
    low = ndimage.gaussian_filter(phi, halo_um / pixel_size_um, mode="reflect")
    img = background * (1.0 - contrast * (phi - halo * low))
    return np.clip(img, 0.0, None).astype(np.float32)
