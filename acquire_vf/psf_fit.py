"""Optics measured from a bead stack: the PSF model of :mod:`acquire_vf.optics` fitted to a
widefield through-focus stack of one fluorescent bead (``acquire-vf calibrate --beads``).

The model is psfmodels' vectorial PSF (Richards-Wolf with the Gibson-Lanni aberration of an
index mismatch) convolved with the bead, a sphere or a shell (hollow beads are common in test
slides), plus a background. Fitted: the NA, the emitters' depth below the coverslip (which sets
the spherical aberration: how asymmetric defocus is), the bead's diameter and hollowness, and
the voxel size where the stack does not record it. Given: the emission wavelength and the
immersion and specimen indices. The residual says how well the shape fits; the same fit with a
3-D Gaussian PSF is reported beside it, so "is this the shape a widefield microscope has" has a
number on each side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SIZE = 48
"""Cube (voxels) around the bead that is fitted."""


@dataclass
class BeadFit:
    na: float
    depth_um: float
    bead_diameter_um: float
    hollow: float
    """Inner over outer radius of the shell (0: a solid sphere)."""
    pixel_size_um: float
    z_step_um: float
    wavelength_um: float
    immersion_index: float
    specimen_index: float
    residual: float
    """Relative RMS misfit, ``|data - model| / |data - background|``."""
    gaussian_residual: float
    """The same with a 3-D Gaussian PSF fitted instead of the physical model."""
    fitted: tuple[str, ...]
    evaluations: int = 0
    model: np.ndarray | None = field(default=None, repr=False)
    data: np.ndarray | None = field(default=None, repr=False)

    def optics(self) -> dict[str, float]:
        """The optics as cards and the calibration manifest record them."""
        return {"na": round(self.na, 3), "immersion_index": self.immersion_index,
                "specimen_index": self.specimen_index,
                "pixel_size_um": round(self.pixel_size_um, 4),
                "depth_um": round(self.depth_um, 2), "wavelength_um": self.wavelength_um}

    def summary(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("model", "data")}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def _crop(stack: np.ndarray, size: int) -> np.ndarray:
    """A cube of ``size`` around the brightest voxel of the smoothed stack (edge-padded)."""
    from scipy import ndimage

    s = ndimage.gaussian_filter(stack.astype(np.float64), 1.5)
    centre = np.unravel_index(int(np.argmax(s)), s.shape)
    half = size // 2
    pad = [(half, half)] * 3
    padded = np.pad(stack.astype(np.float64), pad, mode="edge")
    sl = tuple(slice(c, c + size) for c in centre)
    return padded[sl]


def _bead(size: int, dxy: float, dz: float, diameter: float, hollow: float) -> np.ndarray:
    """The bead's emitter density on the voxel grid (2x oversampled, binned)."""
    o = 2
    z = (np.arange(size * o) - size * o / 2 + 0.5) / o * dz
    y = (np.arange(size * o) - size * o / 2 + 0.5) / o * dxy
    zz, yy, xx = np.meshgrid(z, y, y, indexing="ij", sparse=True)
    r = np.sqrt(zz**2 + yy**2 + xx**2)
    outer = diameter / 2
    dens = ((r <= outer) & (r >= hollow * outer)).astype(np.float64)
    if dens.sum() == 0:
        dens[tuple(s // 2 for s in dens.shape)] = 1.0
    return dens.reshape(size, o, size, o, size, o).sum(axis=(1, 3, 5))


def _psf(size: int, dxy: float, dz: float, na: float, depth: float, wvl: float, ni: float,
         ns: float, gaussian: bool) -> np.ndarray:
    if gaussian:  # sigma from the NA: the widefield FWHM, lateral 0.51 l / NA, axial 2 n l / NA^2
        sx = 0.21 * wvl / na / dxy
        sz = 0.88 * ni * wvl / na**2 / dz
        zc = np.arange(size) - size // 2
        g = np.exp(-zc[:, None, None] ** 2 / (2 * sz**2)
                   - (zc[None, :, None] ** 2 + zc[None, None, :] ** 2) / (2 * sx**2))
        return g / g.sum()
    import psfmodels

    zs = (np.arange(size) - size // 2) * dz
    p = psfmodels.make_psf(list(zs), size + 1, dxy=dxy, NA=min(na, ni * 0.999), ns=ns, ni=ni,
                           ni0=ni, wvl=wvl, pz=max(depth, 0.0), model="vectorial")[:, :size, :size]
    return p / p.sum()


def _render(params: dict[str, float], size: int, wvl: float, ni: float, ns: float,
            gaussian: bool) -> np.ndarray:
    from scipy import fft

    psf = _psf(size, params["dxy"], params["dz"], params["na"], params["depth"], wvl, ni, ns,
               gaussian)
    bead = _bead(size, params["dxy"], params["dz"], params["diameter"], params["hollow"])
    out = fft.irfftn(fft.rfftn(bead) * fft.rfftn(fft.ifftshift(psf)), bead.shape)
    return np.clip(out, 0, None)


def _misfit(model: np.ndarray, data: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares amplitude and background; the misfit on a square-root scale (so the dim
    out-of-focus cone counts beside the bright centre) and the scaled model."""
    a = np.column_stack([model.ravel(), np.ones(model.size)])
    coef, *_ = np.linalg.lstsq(a, data.ravel(), rcond=None)
    fit = (a @ coef).reshape(data.shape)
    lo = float(coef[1])
    r = np.sqrt(np.clip(data - lo, 0, None)) - np.sqrt(np.clip(fit - lo, 0, None))
    return float(np.mean(r**2)), fit


def fit_bead_stack(stack: np.ndarray, *, wavelength_um: float, pixel_size_um: float | None = None,
                   z_step_um: float | None = None, immersion_index: float = 1.518,
                   specimen_index: float = 1.33, na: float = 1.3, size: int = SIZE,
                   point: bool = False, progress: Any = None) -> BeadFit:
    """Fit the PSF model to ``stack`` (Z, Y, X); voxel sizes not given are fitted too.
    ``point``: the stack is a PSF itself (a sub-resolution bead, or a computed PSF): no bead
    size is fitted."""
    from scipy.optimize import minimize

    if stack.ndim != 3 or min(stack.shape) < 16:
        raise ValueError(f"a bead stack: expected a 3-D stack (Z, Y, X) of at least 16 planes "
                         f"and 16 x 16 pixels, got shape {stack.shape}")
    data = _crop(stack, size)
    start = {"na": na, "depth": 1.0, "diameter": 0.0 if point else 1.0, "hollow": 0.0,
             "dxy": pixel_size_um or 0.15, "dz": z_step_um or 0.3}
    given = {"dxy": pixel_size_um, "dz": z_step_um}
    free = [k for k in start if not (given.get(k) or (point and k in ("diameter", "hollow")))]
    bounds = {"na": (0.1, immersion_index * 0.98), "depth": (0.0, 30.0), "diameter": (0.0, 10.0),
              "hollow": (0.0, 0.95), "dxy": (0.02, 2.0), "dz": (0.02, 5.0)}
    results = {}
    for gaussian in (False, True):
        n = 0

        def cost(v: np.ndarray, gaussian: bool = gaussian) -> float:
            nonlocal n
            n += 1
            p = dict(start)
            for k, x in zip(free, v, strict=True):
                lo, hi = bounds[k]
                p[k] = lo + (hi - lo) / (1 + math.exp(-x))  # bounded by a logistic
            if progress is not None:
                progress()
            return _misfit(_render(p, size, wavelength_um, immersion_index, specimen_index,
                                   gaussian), data)[0]

        def to_x(p: dict[str, float]) -> np.ndarray:
            out = []
            for k in free:
                lo, hi = bounds[k]
                f = min(max((p[k] - lo) / (hi - lo), 1e-4), 1 - 1e-4)
                out.append(math.log(f / (1 - f)))
            return np.array(out)

        tries = [minimize(cost, to_x({**start, "diameter": d0, "hollow": 0.0 if d0 < 1 else 0.5}),
                          method="Powell", options={"maxfev": 250, "xtol": 1e-3})
                 for d0 in ((0.0,) if point else (0.5, 2.5))]  # a small and a large bead
        best = min(tries, key=lambda r: float(r.fun))
        p = dict(start)
        for k, x in zip(free, best.x, strict=True):
            lo, hi = bounds[k]
            p[k] = lo + (hi - lo) / (1 + math.exp(-x))
        _, fit = _misfit(_render(p, size, wavelength_um, immersion_index, specimen_index,
                                 gaussian), data)
        bg = float(np.percentile(data, 1))
        rel = float(np.linalg.norm(data - fit) / np.linalg.norm(data - bg))
        results[gaussian] = (p, fit, rel, n)
    p, fit, rel, n = results[False]
    return BeadFit(na=p["na"], depth_um=p["depth"], bead_diameter_um=p["diameter"],
                   hollow=p["hollow"], pixel_size_um=p["dxy"], z_step_um=p["dz"],
                   wavelength_um=wavelength_um, immersion_index=immersion_index,
                   specimen_index=specimen_index, residual=rel,
                   gaussian_residual=results[True][2], fitted=tuple(free),
                   evaluations=n + results[True][3], model=fit, data=data)
