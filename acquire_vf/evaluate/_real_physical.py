"""Refocus on *physical* defocus: real through-focus stacks, each plane against the sharpest
plane of its stack, refocused by the engine-free path (deconvolution through measured optics)
and by the refocus gate.

Two stacks ship inside registry packages: flowdec's bead (one fluorescent bead, 64 planes; its
optics fitted by :mod:`acquire_vf.psf_fit`) and microfilm's E. coli (20 time points x 11
planes of a nucleoid stain; pixel size 0.065 µm, nothing else recorded). The shipped learned
engines cannot run on either (they learned 0.65 µm pixels through a 20x/0.45 objective), so
what is measured is the physics path, on optics measured from the data where the data allow:

- the camera (offset, gain, read noise) by photon transfer on the stack's flat regions;
- the E. coli plane spacing (and the objective's NA) by fitting, on calibration time points
  only, the sharpest plane blurred to each plane's defocus; the remaining time points are the
  untouched measurement.

PSNR is computed after each frame is matched to the reference by least squares (gain and
offset), the same for the camera's frame and the refocused ones: the planes of a real stack
differ in background and bleaching, which no refocus is asked to undo. The reference is itself
a noisy camera frame, so PSNR values are low and only gains are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_TIMEPOINTS = 5
"""E. coli: the first time points fit the plane spacing and NA; the rest are measured."""
ECOLI_ASSUMED = {"pixel_size_um": 0.065, "wavelength_um": 0.61, "immersion_index": 1.518,
                 "specimen_index": 1.38, "depth_um": 0.5}
"""What the E. coli set does not record, assumed: an oil objective (0.065 µm pixels are a 100x
objective on a 6.5 µm camera), a red nucleoid stain, cells 1 µm thick on agarose."""


def camera_from_stack(stack: np.ndarray) -> dict[str, float]:
    """Offset, gain (ADU per e-) and read noise (e-) of the camera that took ``stack``, by
    photon transfer: the variance of each pixel's difference from its two neighbours' mean (a
    linear gradient cancels) against the local mean, over the flattest half of the pixels.

    Only the variance model ``var = gain * adu + c`` is identified; the offset is taken as the
    stack's 0.1th percentile and the read noise then makes ``c`` exact, so the noise the gate and
    the deconvolution assume is the measured one whatever the true offset."""
    from scipy import ndimage

    x = np.asarray(stack, np.float64).reshape(-1, *stack.shape[-2:])
    diff = (x[:, :, 1:-1] - (x[:, :, :-2] + x[:, :, 2:]) / 2) * np.sqrt(2 / 3)
    mean = ndimage.gaussian_filter(x, (0, 2, 2))[:, :, 1:-1]  # not the pixel's own noise
    smooth = ndimage.gaussian_filter(x, (0, 2, 2))
    grad = np.hypot(*np.gradient(smooth, axis=(1, 2)))[:, :, 1:-1]
    flat = grad < np.percentile(grad, 50)
    m, d = mean[flat], diff[flat]
    edges = np.percentile(m, np.linspace(1, 99, 12))
    idx = np.digitize(m, edges)
    pts = [(m[idx == i].mean(), d[idx == i].var()) for i in range(1, 12) if (idx == i).sum() > 100]
    offset = float(np.percentile(x, 0.1))
    mu, var = np.array(pts).T
    slope, intercept = np.polyfit(mu, var, 1) if len(pts) > 2 else (0.0, float(np.median(var)))
    gain = float(slope) if slope > 1e-3 else 1e-3  # read-noise dominated: shot noise unseen
    read_var_adu = max(float(intercept + gain * offset), 1e-6)
    return {"offset_adu": offset, "gain_adu_per_e": gain,
            "read_noise_e": float(np.sqrt(read_var_adu) / gain)}


def sharpest_plane(planes: np.ndarray) -> int:
    """The plane with the most fine detail: the variance of its Laplacian of Gaussian."""
    from scipy import ndimage

    return int(np.argmax([ndimage.gaussian_laplace(p.astype(np.float64), 1.0).var()
                          for p in planes]))


def _matched(frame: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``frame`` under the least-squares gain and offset that bring it closest to ``ref``."""
    from acquire_vf.evaluate._real_pairs import linear_apply, linear_fit

    return linear_apply(linear_fit([frame], ref), [frame])


def _matched_psnr(frame: np.ndarray, ref: np.ndarray, lo: float, hi: float) -> float:
    """PSNR of ``frame`` against ``ref`` after a least-squares gain and offset, both in the
    reference's [lo, hi] units."""
    err = ((_matched(frame, ref) - ref.astype(np.float64)) / (hi - lo)) ** 2
    return float(10 * np.log10(1.0 / max(err.mean(), 1e-12)))


def stack_refocus(stack: np.ndarray, optics: Mapping[str, Any], z_step_um: float, *,
                  ref: int | None = None, sign: int = 1, band: float = 4.0,
                  ) -> list[dict[str, Any]]:
    """Per plane of ``stack`` (Z, Y, X; ADU) but the reference (its sharpest, or ``ref``):
    its defocus, and the PSNR gain over the camera's frame of the deconvolution (defocus
    seeded with the plane's true one, and estimated) and of the gate (no learned engine)."""
    from acquire_vf.pipeline import RefocusGate

    ref = sharpest_plane(stack) if ref is None else ref
    target = stack[ref]
    lo, hi = (float(v) for v in np.percentile(target, (0.1, 99.9)))
    zs = [sign * (k - ref) * z_step_um for k in range(len(stack))]
    reach = max(abs(z) for z in zs) + z_step_um
    dof = float(optics["wavelength_um"]) * float(optics["immersion_index"]) / float(
        optics["na"]) ** 2
    gate = RefocusGate(optics, band, (-reach, reach), (-dof / 2, dof / 2), step_um=z_step_um)
    rows = []
    for k, z in enumerate(zs):
        if k == ref:
            continue
        seen = stack[k]
        base = _matched_psnr(seen, target, lo, hi)
        seeded = gate.deconvolution.refocus(seen, z)
        est = gate.deconvolution.refocus(seen)
        g_est, g_seed = gate.choose(seen, None), gate.choose(seen, None, z)
        rows.append({"z_um": round(z, 3), "input_psnr": round(base, 3),
                     "deconvolution_seeded": round(_matched_psnr(seeded.frame, target, lo, hi)
                                                   - base, 3),
                     "deconvolution_estimated": round(_matched_psnr(est.frame, target, lo, hi)
                                                      - base, 3),
                     "estimated_z_um": est.z_um,
                     "gate": round(_matched_psnr(g_est.frame, target, lo, hi) - base, 3),
                     "gate_seeded": round(_matched_psnr(g_seed.frame, target, lo, hi) - base, 3),
                     "gate_choice": g_est.choice, "gate_seeded_choice": g_seed.choice})
    return rows


def _blur_model(ref: np.ndarray, lens: Any, wavelength: float, zs: list[float]) -> np.ndarray:
    """The reference plane carried to each defocus in ``zs``: its spectrum times the ratio
    of the transfer functions (regularised where the in-focus one is small)."""
    from acquire_vf.inference import transfer_function

    shape = ref.shape
    psfs = lens.psf(wavelength, [0.0, *zs])
    h0 = transfer_function(psfs[0], shape)
    spec = np.fft.rfft2(ref - ref.mean())
    eps = 1e-2 * np.abs(h0).max() ** 2
    ratio = np.conj(h0) / (np.abs(h0) ** 2 + eps)
    out = [np.fft.irfft2(spec * transfer_function(p, shape) * ratio, s=shape) for p in psfs[1:]]
    return np.stack(out) + ref.mean()


def fit_spacing(stacks: list[np.ndarray], assumed: Mapping[str, float],
                nas: tuple[float, ...] = (0.8, 1.0, 1.2, 1.4),
                steps: tuple[float, ...] = tuple(np.round(np.arange(0.05, 0.51, 0.05), 3)),
                ) -> dict[str, Any]:
    """The (NA, plane spacing, direction) that best carry each stack's sharpest plane to its
    other planes (least-squares misfit after a gain and offset per plane)."""
    from acquire_vf.optics import Optics

    # each stack's sharpest plane and the planes it must explain, found once
    refs = []
    for st in stacks:
        r = sharpest_plane(st)
        refs.append((st.astype(np.float64), r, [k for k in range(len(st)) if k != r]))
    best: dict[str, Any] = {"misfit": np.inf}
    for na in nas:
        lens = Optics(na=na, immersion_index=assumed["immersion_index"],
                      specimen_index=assumed["specimen_index"],
                      pixel_size_um=assumed["pixel_size_um"], depth_um=assumed["depth_um"])
        for step in steps:
            for sign in (1, -1):
                total = 0.0
                for st, ref, ks in refs:
                    model = _blur_model(st[ref], lens, assumed["wavelength_um"],
                                        [sign * (k - ref) * step for k in ks])
                    total += sum(float(np.mean((_matched(m, st[k]) - st[k]) ** 2))
                                 for m, k in zip(model, ks, strict=True))
                if total < best["misfit"]:
                    best = {"misfit": total, "na": na, "z_step_um": float(step), "sign": sign}
    return best


def _summarise(rows: list[dict[str, Any]], fields: list[int]) -> list[dict[str, Any]]:
    from acquire_vf.evaluate._intervals import field_ci

    out = []
    for z in sorted({r["z_um"] for r in rows}):
        sub = [(r, f) for r, f in zip(rows, fields, strict=True) if r["z_um"] == z]
        rs, fs = [r for r, _ in sub], [f for _, f in sub]
        p: dict[str, Any] = {"z_um": z, "n": len(rs),
                             "input_psnr": round(float(np.mean([r["input_psnr"] for r in rs])), 2)}
        for k in ("deconvolution_seeded", "deconvolution_estimated", "gate", "gate_seeded"):
            v = [r[k] for r in rs]
            p[k] = round(float(np.mean(v)), 2)
            p[f"{k}_ci95"] = field_ci(v, fs)
        p["gate_choices"] = {c: sum(r["gate_choice"] == c for r in rs)
                             for c in sorted({r["gate_choice"] for r in rs})}
        out.append(p)
    return out


def ecoli_physical(path: Path) -> dict[str, Any]:
    """The E. coli through-focus stacks: optics fitted on the calibration time points, the
    refocus measured on the others (nucleoid channel; the ori channel is foci in noise, with
    no plane sharper than another)."""
    import tifffile

    data = np.asarray(tifffile.imread(path))  # (C, T, Z, Y, X)
    nucleoid = data[0].astype(np.float64)
    cam = camera_from_stack(nucleoid)
    fit = fit_spacing(list(nucleoid[:CALIBRATION_TIMEPOINTS]), ECOLI_ASSUMED)
    optics = {**ECOLI_ASSUMED, **cam, "na": fit["na"]}
    rows, fields = [], []
    for t in range(CALIBRATION_TIMEPOINTS, len(nucleoid)):
        for r in stack_refocus(nucleoid[t], optics, fit["z_step_um"], sign=fit["sign"]):
            rows.append(r)
            fields.append(t)
    return {"assumed": ECOLI_ASSUMED, "camera": _rounded(cam),
            "fitted": _rounded({k: fit[k] for k in ("na", "z_step_um", "sign")}),
            "calibration_timepoints": CALIBRATION_TIMEPOINTS,
            "measured_timepoints": len(nucleoid) - CALIBRATION_TIMEPOINTS,
            "per_z": _summarise(rows, fields)}


def bead_physical(path: Path, fitted: Mapping[str, Any], assumed: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """flowdec's bead stack, each plane within 4 µm of the bead's centre against the centre
    plane, through the optics fitted to the same stack (``fitted``, ``assumed``: the bead fit's
    report). One stack: no interval."""
    import tifffile

    stack = np.asarray(tifffile.imread(path), np.float64)
    cam = camera_from_stack(stack)
    optics = {"na": fitted["na"], "depth_um": fitted.get("depth_um", 0.0), **assumed, **cam}
    step = float(fitted["z_step_um"])
    c = stack.shape[1] // 2
    ref = int(np.argmax(stack[:, c - 2:c + 3, c - 2:c + 3].sum(axis=(1, 2))))
    keep = int(4.0 / step)
    lo_k, hi_k = max(ref - keep, 0), min(ref + keep + 1, len(stack))
    rows = stack_refocus(stack[lo_k:hi_k], optics, step, ref=ref - lo_k)
    return {"camera": _rounded(cam), "reference_plane": ref,
            "per_z": _summarise(rows, [0] * len(rows))}


def _rounded(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
