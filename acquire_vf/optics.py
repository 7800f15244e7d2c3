"""Widefield image formation: a physical defocus PSF per channel, and approximate phase contrast.

Fluorescence: the specimen is thin (a monolayer a few µm tall), so the image at defocus ``z`` is
the in-focus emitter map convolved with the PSF plane at ``z``. The PSF is psfmodels' vectorial
model (Richards-Wolf with the Gibson-Lanni stratified-medium aberration): emission wavelength,
NA, immersion and specimen refractive indices from the optics settings, and the emitters at a
depth ``pz`` in the specimen. That depth and the index mismatch (an air objective imaging into
an aqueous sample) make defocus asymmetric about focus, as on a real microscope. The PSF is
computed 3x oversampled and binned to camera pixels, so each plane holds the energy a pixel
integrates, and each plane is normalised to sum 1 (defocus spreads light, it does not lose it).

Brightfield (transmitted light through a partly closed condenser): the specimen is a thin phase
object ``exp(i phi)``; its field is propagated to the defocused plane with the angular-spectrum
transfer function inside the objective's pupil, for a few illumination angles within the
condenser NA (Köhler illumination as a sum of coherent images, 2x oversampled then binned to
camera pixels). In focus a phase object is all but invisible; out of focus it shows as bright
or dark according to the side (the transport-of-intensity equation: ``dI/dz ~ -laplacian(phi)``),
so a brightfield frame tells above from below focus, which a fluorescence frame at low NA
cannot.

Phase contrast (approximate, documented): the specimen's optical path difference (OPD) gives
a phase ``phi = 2 pi OPD / lambda``. Positive phase contrast renders thick/dense regions dark,
``I = I0 (1 - k phi)``; the finite phase ring passes the low spatial frequencies of the
object's scattered light, which subtracts a smoothed copy of the phase and produces the bright
halo round cells: ``I = I0 (1 - k (phi - h * G_sigma(phi)))`` with the halo width ``sigma``
(a few µm) and strength ``h``. The result is blurred by the (transmitted-light) PSF.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


BRIGHTFIELD_UM = 0.55
"""Brightfield's wavelength (a white LED through a green filter)."""


def brightfield(opd_um: np.ndarray, optics: Optics, z_um: float | Sequence[float], *,
                wavelength_um: float = BRIGHTFIELD_UM, condenser_na: float = 0.2,
                ring: int = 6) -> np.ndarray:
    """Brightfield image(s) of an OPD map (µm) at defocus ``z_um``: relative intensity, 1
    where there is no specimen. Shape as :meth:`Optics.psf` (one plane or a stack)."""
    zs, scalar = z_planes(z_um)
    os_ = 2
    h, w = opd_um.shape
    pad = 16 * os_
    o = np.pad(ndimage.zoom(opd_um.astype(np.float32), os_, order=1), pad, mode="reflect")
    shape = [sfft.next_fast_len(s) for s in o.shape]
    field = np.exp(1j * (2 * np.pi / wavelength_um) * o).astype(np.complex64)
    spectrum = sfft.fft2(field, shape, workers=-1)
    d = optics.pixel_size_um / os_
    fy = sfft.fftfreq(shape[0], d).astype(np.float32)[:, None]
    fx = sfft.fftfreq(shape[1], d).astype(np.float32)[None, :]
    k = optics.immersion_index / wavelength_um
    cut = (optics.na / wavelength_um) ** 2
    tilts = [(0.0, 0.0)] + [(0.7 * condenser_na / wavelength_um * np.cos(a),
                             0.7 * condenser_na / wavelength_um * np.sin(a))
                            for a in np.arange(ring) * 2 * np.pi / ring]
    terms = []
    for sx, sy in tilts:  # the spectrum seen through the pupil under a tilted plane wave
        f2 = (fx + sx) ** 2 + (fy + sy) ** 2
        kz = np.sqrt(np.clip(k * k - f2, 0, None)) - np.sqrt(k * k - sx * sx - sy * sy)
        terms.append((f2 <= cut, kz.astype(np.float32)))
    out = np.empty((len(zs), h, w), np.float32)
    for i, z in enumerate(zs):
        acc = np.zeros(shape, np.float32)
        for pupil, kz in terms:
            tf = np.where(pupil, np.exp((2j * np.pi * z) * kz), 0).astype(np.complex64)
            acc += np.abs(sfft.ifft2(spectrum * tf, workers=-1)) ** 2
        crop = acc[pad:pad + h * os_, pad:pad + w * os_] / np.float32(len(terms))
        out[i] = crop.reshape(h, os_, w, os_).mean(axis=(1, 3))
    return out[0] if scalar else out


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


def card_optics(optics: Mapping[str, Any]) -> Optics:
    """The :class:`Optics` a refocus engine's card records (``card.optics``)."""
    o = dict(optics)
    return Optics(na=o["na"], immersion_index=o["immersion_index"],
                  specimen_index=o["specimen_index"], pixel_size_um=o["pixel_size_um"],
                  depth_um=o["depth_um"], psf_px=int(o.get("psf_px", 65)))
