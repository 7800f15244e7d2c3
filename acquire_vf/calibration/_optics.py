"""The rig's optics in a calibration: from the profile, or measured from a bead stack
(``calibrate --beads STACK.tif``), recorded in the manifest and carried into the cards of
refocus engines fine-tuned on it, so the forward-consistency check, the deconvolution path and
the refocus gate run on them as on the shipped engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acquire_vf._errors import DataError

SIMULATED_CAMERA = {"offset_adu": 100.0, "gain_adu_per_e": 0.5, "read_noise_e": 1.6}
"""The simulated specimen's camera (:class:`acquire_vf.simulate.Camera`'s defaults)."""


def channel_wavelengths(profile: Any, names: list[str]) -> dict[str, float]:
    """Emission wavelength (µm) of each channel whose preset shows a known stain."""
    from acquire_vf.simulate import STAINS

    stain_of = dict(profile.specimen.stains)
    presets = {c.name: c.preset for c in [*profile.channels, *profile.virtual_channels]}
    out = {}
    for name in names:
        stain = stain_of.get(presets.get(name, ""), name)
        if stain in STAINS and STAINS[stain].wavelength_um:
            out[name] = float(STAINS[stain].wavelength_um)
    return out


def rig_optics(profile: Any, channels: list[str], beads: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The manifest's ``optics``: the profile's objective and specimen (replaced by the bead
    fit's NA and emitter depth when there is one), the camera's pixel size and noise, and the
    emission wavelength of each channel."""
    s = profile.specimen
    cam = profile.camera
    noise = {k: getattr(cam, k) for k in SIMULATED_CAMERA if getattr(cam, k, None) is not None}
    if s.kind == "simulated":
        noise = SIMULATED_CAMERA | noise
    out: dict[str, Any] = {
        "source": "profile", "na": s.na, "immersion_index": s.immersion_index,
        "specimen_index": s.specimen_index, "pixel_size_um": cam.pixel_size_um,
        "depth_um": s.depth_um, "wavelength_um": channel_wavelengths(profile, channels),
        **noise}
    if beads is not None:
        out.update(source="beads", na=beads["na"], depth_um=beads["depth_um"], beads=beads)
    return out


def card_optics_for(manifest: dict[str, Any], channel: str) -> dict[str, Any] | None:
    """The card ``optics`` of an engine refocusing ``channel`` on this calibration's rig;
    ``None`` when the manifest lacks the channel's wavelength or the camera's noise."""
    o = manifest.get("optics") or {}
    wl = (o.get("wavelength_um") or {}).get(channel)
    if wl is None or not all(k in o for k in SIMULATED_CAMERA):
        return None
    keep = ("na", "immersion_index", "specimen_index", "pixel_size_um", "depth_um",
            *SIMULATED_CAMERA)
    return {**{k: o[k] for k in keep}, "wavelength_um": wl, "source": o.get("source")}


def fit_beads(path: Path, pixel_size_um: float, z_step_um: float, wavelength_um: float,
              immersion_index: float, specimen_index: float) -> dict[str, Any]:
    """Fit the PSF model to the bead stack at ``path``; the fit's summary (one line when the
    file is not a 3-D stack)."""
    import numpy as np
    import tifffile

    from acquire_vf.psf_fit import fit_bead_stack

    try:
        stack = np.asarray(tifffile.imread(path), np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"--beads: expected a TIFF through-focus stack of one bead, could not "
                        f"read '{path}' ({e})") from None
    stack = np.squeeze(stack)
    try:
        fit = fit_bead_stack(stack, wavelength_um=wavelength_um, pixel_size_um=pixel_size_um,
                             z_step_um=z_step_um, immersion_index=immersion_index,
                             specimen_index=specimen_index)
    except ValueError as e:
        raise DataError(f"--beads '{path}': {e}") from None
    return {"file": str(path), **fit.summary()}


def carry_into_card(engine: Path, data: Path, init: Path | None) -> str | None:
    """Give a refocus engine fine-tuned on a calibration the rig's optics (and the consistency
    band of the engine it started from), so the gate runs on it; what was done, in words."""
    from acquire_vf.calibration._acquire import read_manifest
    from acquire_vf.card import ModelCard, acceptance_band

    card = ModelCard.load(engine)
    manifest = read_manifest(data) or read_manifest(data.parent)
    if card.task != "refocus" or manifest is None:
        return None
    optics = card_optics_for(manifest, card.output)
    if optics is None:
        return (f"{engine.name}: the calibration records no wavelength for {card.output} or "
                "no camera noise (set [camera] offset_adu, gain_adu_per_e, read_noise_e in the "
                "profile): the consistency check and the refocus gate will not run on it")
    accept = dict(card.acceptance)
    if init is not None and init.suffix == ".onnx" and "consistency_chi2_max" not in accept:
        band = acceptance_band(ModelCard.load(init)).get("consistency_chi2_max")
        if band is not None:
            accept["consistency_chi2_max"] = band
    card.model_copy(update={"optics": optics, "acceptance": accept}).save(engine)
    return (f"{engine.name}: the rig's optics ({optics['source']}: NA {optics['na']}, "
            f"{optics['pixel_size_um']} um pixels) written into its card"
            + (f", consistency band {accept['consistency_chi2_max']} from the engine it "
               "started from" if "consistency_chi2_max" in accept else ""))
