"""Refocus by physics: an engine with no weights.

A widefield frame at defocus z is the in-focus specimen blurred by the PSF at z, plus the
camera's noise. Given the optics (a card's or a profile's ``optics``: NA, immersion and
specimen index, pixel size, emission wavelength, camera offset, gain and read noise), the
refocused frame is the Wiener estimate of the specimen through the *in-focus* PSF:

    F0 = G · conj(Hz) · H0 / (|Hz|² + N / S)

with ``Hz``, ``H0`` the optical transfer functions at z and at focus, ``N`` the camera's noise
power and ``S`` the specimen's power spectrum. Nothing is invented: where the PSF at z passed
nothing, the estimate is damped to zero instead of painted.

The defocus is found from the frame itself by maximum likelihood (blur identification, after
Lagendijk, Biemond & Boekee 1990): with a Gaussian specimen of power-law spectrum
``S(k) = A k^-b`` and the camera's noise, the frame's spectrum at each candidate z has a known
distribution; the z (and A, b) that make the frame most likely win, in-focus (z = 0) included,
so an in-focus frame is left as it is (denoised at most). The likelihood is computed on the
radially averaged spectrum (the defocus PSF is radially symmetric), a few hundred numbers per
candidate, so the search costs less than the two FFTs of the refocus itself. A closed-loop
estimate may seed it (``z_um``), as may the live run's focus controller.

Whether the result is used is not this module's decision: the refocus gate
(:mod:`acquire_vf.pipeline._gate`) keeps it only when it is consistent with the camera's frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

PAD = 32
"""Reflected border (pixels) against the FFT's wrap-around."""
SLOPES = (1.5, 3.0)
"""Range of the specimen spectrum's power-law slope ``b``. Steeper slopes let an in-focus
specimen mimic a blurred one, and the defocus search then says 0 more often."""
REGULARISE = 4.0
"""The Wiener filter's noise-to-signal term is this many times the fitted one: a more
conservative filter. Chosen on simulated validation stacks (BBBC006 layout, 2 fields, seed 5,
planes -12..8 µm): refocus gain with the defocus known +3.35 dB mean against -0.15 dB at 1x,
with the defocus estimated +1.56 dB against +1.41 dB (``docs/real-images.md``)."""


@dataclass(frozen=True)
class DeconvolutionResult:
    frame: np.ndarray
    """The refocused frame, camera units (ADU), the input's dtype."""
    z_um: float
    """The defocus used (estimated, or as given)."""
    loglik: dict[float, float]
    """Per candidate defocus: the frame's negative log-likelihood (lower is likelier)."""


def _radial_bins(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per rfft2 coefficient its radial bin (integer |k| in pixels of the smaller side)."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.sqrt(ky ** 2 + kx ** 2) * min(h, w)
    bins = np.minimum(k.astype(int), min(h, w) // 2)
    return bins, k, int(bins.max()) + 1


def transfer_function(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The PSF's transfer function at ``shape`` (PSF centred on pixel 0, rfft2)."""
    h, w = shape
    ph, pw = psf.shape
    pad = np.zeros(shape, np.float64)
    cy, cx = ph // 2, pw // 2
    ys = (np.arange(ph) - cy) % h
    xs = (np.arange(pw) - cx) % w
    np.add.at(pad, np.ix_(ys, xs), psf)  # a PSF wider than the frame wraps, as it would
    return np.fft.rfft2(pad)


class DeconvolutionRefocus:
    """Refocus frames of one optics (see the module docstring). ``z_range_um`` bounds the
    defocus search (both signs, 1 µm apart, focus included)."""

    def __init__(self, optics: Mapping[str, Any], z_range_um: tuple[float, float] = (-12.0, 8.0),
                 step_um: float = 1.0) -> None:
        from acquire_vf.optics import card_optics

        self.optics = dict(optics)
        self.lens = card_optics(self.optics)
        self.wavelength = float(self.optics["wavelength_um"])
        lo, hi = z_range_um
        grid = np.arange(np.floor(lo), np.ceil(hi) + step_um / 2, step_um)
        self.planes = tuple(round(float(z), 4) for z in grid)
        if 0.0 not in self.planes:
            self.planes = tuple(sorted((*self.planes, 0.0)))
        self._psfs = dict(zip(self.planes, self.lens.psf(self.wavelength, self.planes),
                              strict=True))
        self._cache: dict[tuple[int, int], dict[str, Any]] = {}

    # ----- transfer functions for a frame shape --------------------------------------
    def _for(self, shape: tuple[int, int]) -> dict[str, Any]:
        got = self._cache.get(shape)
        if got is None:
            bins, k, nb = _radial_bins(shape)
            otf = {z: transfer_function(p, shape) for z, p in self._psfs.items()}
            counts = np.bincount(bins.ravel(), minlength=nb).astype(np.float64)
            mtf2 = {z: np.bincount(bins.ravel(), (np.abs(o) ** 2).ravel(), nb) / np.maximum(
                counts, 1) for z, o in otf.items()}
            kb = np.bincount(bins.ravel(), k.ravel(), nb) / np.maximum(counts, 1)
            got = {"bins": bins, "k": np.maximum(k, 0.5), "otf": otf, "counts": counts,
                   "mtf2": mtf2, "kb": np.maximum(kb, 0.5)}
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[shape] = got
        return got

    def _electrons(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        o = self.optics
        e = (frame.astype(np.float64) - o["offset_adu"]) / o["gain_adu_per_e"]
        noise = float(max(np.mean(np.clip(e, 0, None)), 0.0) + o["read_noise_e"] ** 2 + 1 / 12)
        return e, noise

    # ----- the defocus ------------------------------------------------------------------
    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, float, dict[str, Any]]:
        """The padded frame's spectrum (photo-electrons), its noise power per coefficient, and
        the transfer functions for its shape: computed once per frame, used by both the
        defocus search and the refocus."""
        e, noise = self._electrons(frame)
        padded = np.pad(e, PAD, mode="reflect")
        return np.fft.rfft2(padded), noise * padded.size, self._for(padded.shape)

    def likelihoods(self, frame: np.ndarray) -> tuple[dict[float, float], dict[float, tuple]]:
        """Per candidate defocus: the negative log-likelihood of ``frame`` and the fitted
        spectrum ``(A, b)``."""
        return self._fit(*self._prepare(frame))

    def _fit(self, spectrum: np.ndarray, nn: float, t: dict[str, Any]
             ) -> tuple[dict[float, float], dict[float, tuple]]:
        power = np.abs(spectrum) ** 2  # the mean (k = 0) is left out below
        pb = np.bincount(t["bins"].ravel(), power.ravel(), len(t["counts"])) / np.maximum(
            t["counts"], 1)
        use = (t["counts"] > 0) & (np.arange(len(pb)) > 0)  # not the mean (k = 0)
        pb, cnt, kb = pb[use], t["counts"][use], t["kb"][use]
        betas = np.linspace(*SLOPES, 13)
        out, fits = {}, {}
        for z in self.planes:
            m2 = t["mtf2"][z][use]
            best = (np.inf, (0.0, 0.0))
            for b in betas:
                shape_k = m2 * kb ** (-b)
                # A from the moment equation sum(P) = sum(A s + N) over the bins, then refined
                a = max(float(np.sum(cnt * (pb - nn)) / max(np.sum(cnt * shape_k), 1e-30)),
                        1e-12)
                for scale in (0.25, 0.5, 1.0, 2.0, 4.0):
                    model = a * scale * shape_k + nn
                    nll = float(np.sum(cnt * (pb / model + np.log(model))))
                    if nll < best[0]:
                        best = (nll, (a * scale, float(b)))
            out[z], fits[z] = best[0], best[1]
        return out, fits

    def estimate_z(self, frame: np.ndarray) -> float:
        """The most likely defocus of ``frame`` among the planes searched."""
        nll, _ = self.likelihoods(frame)
        return min(nll, key=nll.__getitem__)

    # ----- the refocus ------------------------------------------------------------------
    def refocus(self, frame: np.ndarray, z_um: float | None = None) -> DeconvolutionResult:
        """The in-focus estimate of ``frame`` (camera units, its dtype). ``z_um``: the defocus
        if known (a closed-loop estimate), else found by maximum likelihood."""
        spectrum, nn, t = self._prepare(frame)
        nll, fits = self._fit(spectrum, nn, t)
        z = min(nll, key=nll.__getitem__) if z_um is None else min(
            self.planes, key=lambda p: abs(p - z_um))
        a, b = fits[z]
        a /= REGULARISE
        hz, h0 = t["otf"][z], t["otf"][0.0]
        signal = np.maximum(a * t["k"] ** (-b), 1e-12)  # specimen power per coefficient
        shape = tuple(n + 2 * PAD for n in frame.shape)
        est = np.fft.irfft2(spectrum * np.conj(hz) * h0 / (np.abs(hz) ** 2 + nn / signal),
                            s=shape)
        est = est[PAD:-PAD, PAD:-PAD]
        o = self.optics
        adu = est * o["gain_adu_per_e"] + o["offset_adu"]
        return DeconvolutionResult(_as_dtype(adu, frame.dtype), float(z), nll)


def _as_dtype(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.clip(np.rint(x), 0, top).astype(dtype)
    return x.astype(dtype)
