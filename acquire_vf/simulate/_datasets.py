"""Write simulated datasets in the public layouts (see :mod:`acquire_vf.layouts`).

Each field gets its own seed derived from the dataset seed and the field index, so a dataset is
reproducible and fields are independent. ``simulation.json`` at the root records every setting;
``truth/`` holds the cell and nucleus label images and ``clean/`` the noise-free image (the
camera's expected ADU, float32) of every in-focus image at the same relative path as the image
itself, so evaluation can tell model error from the noise of the measured truth. Neither is
part of the public layouts; the loaders ignore them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

from acquire_vf import layouts
from acquire_vf.optics import Optics, convolve, phase_contrast
from acquire_vf.simulate._camera import Camera
from acquire_vf.simulate._phantom import STAINS, Field, fluorescence, render_field
from acquire_vf.simulate._realism import FieldStyle, Realism, draw_style, light

log = logging.getLogger(__name__)
DatasetKind = Literal["bbbc006", "bbbc022", "mda231"]
SIMULATOR_VERSION = 4
"""Recorded in ``simulation.json``; bump it when what the simulator writes changes, so that
cached datasets written by another version are rewritten, never silently reused.
3: ``clean/`` (noise-free images) added; the measured images are those of version 2.
4: ``realism`` (thick cells, background, vignetting, sCMOS pattern, dose, linked channels,
domain randomisation; :mod:`._realism`), recorded in ``simulation.json`` with each field's
draw in ``fields.json``; without it the images are those of version 3."""

# 20x/0.45 air over an aqueous sample (the BBBC screens); 60x/1.25 oil (the paper's MDA-MB-231)
OPTICS_20X = Optics(na=0.45, immersion_index=1.0, specimen_index=1.38, pixel_size_um=0.65,
                    depth_um=3.0, psf_px=65)
OPTICS_60X = Optics(na=1.25, immersion_index=1.515, specimen_index=1.38, pixel_size_um=0.1075,
                    depth_um=2.0, psf_px=33)
DEFAULT_SIZE = {"bbbc006": (520, 696), "bbbc022": (520, 696), "mda231": (1040, 1392)}
EXPOSURE_MS = {"DNA": 20.0, "actin": 40.0, "ER": 60.0, "RNA": 50.0, "AGP": 50.0, "Mito": 50.0,
               "DAPI": 30.0, "F-actin": 40.0, "Vinculin": 60.0, "PhC": 10.0}
PHASE_FLUX = 0.6  # transmitted-light background, as a fraction of the camera's photon flux


def field_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, index, 0xF1E1D]).integers(2**31))


def write_dataset(kind: DatasetKind, out: Path, *, fields: int, seed: int,
                  size: tuple[int, int] | None = None,
                  progress: Callable[[int], None] | None = None,
                  realism: Realism | None = None) -> Path:
    """Write ``fields`` fields of ``kind`` under ``out``; return the dataset root.

    ``realism`` (simulator version 4's additions; ``None``: version 3's thin, bright,
    background-free specimen) applies to every field, each with its own draw of the domain
    randomisation when ``realism.randomise``."""
    shape = size or DEFAULT_SIZE[kind]
    out.mkdir(parents=True, exist_ok=True)
    optics = OPTICS_60X if kind == "mda231" else OPTICS_20X
    write = {"bbbc006": _bbbc006_field, "bbbc022": _bbbc022_field, "mda231": _mda_field}[kind]
    styles = []
    for k in range(fields):
        sim = _FieldSim.make(kind, field_seed(seed, k), seed, shape, optics, realism)
        write(out, k, seed, sim)
        styles.append({"field": k, **(sim.style.as_dict() if realism else {})})
        if progress is not None:
            progress(k + 1)
    manifest = {
        "dataset": kind, "simulated_by": "acquire-vf", "simulator_version": SIMULATOR_VERSION,
        "fields": fields, "seed": seed,
        "shape": list(shape), "optics": asdict(optics), "camera": asdict(Camera()),
        "exposure_ms": EXPOSURE_MS,
        "realism": asdict(realism) if realism else None,
    }
    if realism:
        (out / "fields.json").write_text(json.dumps(styles, indent=1))
    (out / "simulation.json").write_text(json.dumps(manifest, indent=2))
    return out


@dataclass
class _FieldSim:
    """One field as simulated: its cells, optics, camera and (version 4) style and light."""

    field: Field
    optics: Optics
    camera: Camera
    style: FieldStyle
    realism: Realism | None
    seed: int

    @classmethod
    def make(cls, kind: DatasetKind, fs: int, dataset_seed: int, shape: tuple[int, int],
             optics: Optics, realism: Realism | None) -> _FieldSim:
        sample: Literal["u2os", "mda231"] = "mda231" if kind == "mda231" else "u2os"
        if realism is None:
            return cls(render_field(sample, fs, shape, optics.pixel_size_um), optics, Camera(),
                       FieldStyle(), None, fs)
        stains = tuple(STAINS)
        style = draw_style(np.random.default_rng([fs, 2]), realism, stains)
        optics = dataclasses.replace(
            optics, pixel_size_um=round(optics.pixel_size_um * style.pixel_scale, 5),
            na=round(optics.na * style.na_scale, 4), depth_um=style.depth_um or optics.depth_um)
        camera = Camera(fixed_pattern=realism.fixed_pattern,
                        pattern_seed=fs if realism.randomise else dataset_seed)
        field = render_field(sample, fs, shape, optics.pixel_size_um, style=style,
                             thick=realism.thick, linked=realism.linked)
        return cls(field, optics, camera, style, realism, fs)

    def fluorescence(self, stain: str, z: float | tuple[float, ...]) -> np.ndarray:
        img = fluorescence(self.field.stains[stain], stain, self.optics, z,
                           self.field.truth.sections)
        return self._light(img, STAINS[stain].wavelength_um)

    def transmitted(self, img: np.ndarray) -> np.ndarray:
        return self._light(img, None)

    def _light(self, img: np.ndarray, wavelength: float | None) -> np.ndarray:
        if self.realism is None:
            return img
        rng = np.random.default_rng([self.seed, 3])  # the same light in every plane and stain
        planes = img if img.ndim == 3 else img[None]
        lit = np.stack([light(p, wavelength, self.field.truth.labels, self.realism, self.style,
                              rng) for p in planes])
        return lit if img.ndim == 3 else lit[0]

    def exposure(self, stain: str) -> float:
        return EXPOSURE_MS[stain] * self.style.dose


def simulated_version(root: Path) -> int | None:
    """The simulator version that wrote the dataset at ``root``; ``None`` if none did (or an
    older one that recorded none)."""
    try:
        v = json.loads((root / "simulation.json").read_text()).get("simulator_version")
    except (OSError, ValueError):
        return None
    return int(v) if isinstance(v, int) else None


def ensure_dataset(kind: DatasetKind, out: Path, *, fields: int, seed: int,
                   size: tuple[int, int] | None = None, realism: Realism | None = None) -> Path:
    """``out`` as :func:`write_dataset` makes it: reused if this simulator version wrote it,
    else (missing, or another version's) written afresh, via ``OUT.partial`` so that an
    interrupted write never looks finished."""
    if simulated_version(out) == SIMULATOR_VERSION:
        return out
    if out.exists():
        log.warning("rewriting %s: written by simulator version %s, this is %d", out,
                    simulated_version(out), SIMULATOR_VERSION)
        shutil.rmtree(out)
    log.info("writing simulated %s data to %s", kind, out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted write
    write_dataset(kind, tmp, fields=fields, seed=seed, size=size, realism=realism)
    tmp.rename(out)
    return out


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img, compression="zlib", photometric="minisblack")


def _expose(out: Path, path: Path, intensity: np.ndarray, exposure_ms: float, camera: Camera,
            rng: np.random.Generator, *, clean: bool = True) -> None:
    """Save the camera's image of ``intensity`` at ``path`` and, with ``clean``, its noise-free
    expectation at the same path under ``out/clean``."""
    _save(path, camera.expose(intensity, exposure_ms, rng))
    if clean:
        _save(out / "clean" / path.relative_to(out), camera.expected(intensity, exposure_ms))


def _truth(out: Path, name: str, labels: np.ndarray, nuclei: np.ndarray) -> None:
    _save(out / "truth" / f"{name}_cells.tif", labels.astype(np.uint16))
    _save(out / "truth" / f"{name}_nuclei.tif", nuclei.astype(np.uint16))


def _bbbc006_field(out: Path, k: int, seed: int, sim: _FieldSim) -> None:
    well, site = layouts.well_name(k // 2), k % 2 + 1
    f = sim.field
    rng = np.random.default_rng([sim.seed, 1])
    zs = tuple((i - layouts.BBBC006_FOCUS_INDEX) * layouts.BBBC006_Z_STEP_UM
               for i in range(layouts.BBBC006_PLANES))
    for w, stain in layouts.BBBC006_CHANNELS.items():
        stack = sim.fluorescence(stain, zs)
        for i, plane in enumerate(stack):
            _expose(out, layouts.bbbc006_path(out, i, well, site, w, seed), plane,
                    sim.exposure(stain), sim.camera, rng,
                    clean=i == layouts.BBBC006_FOCUS_INDEX)
    _truth(out, f"{well}_s{site}", f.truth.labels, f.truth.nuclei)


def _bbbc022_field(out: Path, k: int, seed: int, sim: _FieldSim) -> None:
    plate = f"{20585 + k // 96}"
    well, site = layouts.well_name(k // 2 % 384, upper=True), k % 2 + 1
    f = sim.field
    rng = np.random.default_rng([sim.seed, 1])
    for w, stain in layouts.BBBC022_CHANNELS.items():
        _expose(out, layouts.bbbc022_path(out, plate, well, site, w, seed),
                sim.fluorescence(stain, 0.0), sim.exposure(stain), sim.camera, rng)
    _truth(out, f"{plate}_{well}_s{site}", f.truth.labels, f.truth.nuclei)


def _mda_field(out: Path, k: int, seed: int, sim: _FieldSim) -> None:
    f, optics = sim.field, sim.optics
    rng = np.random.default_rng([sim.seed, 1])
    name = f"field_{k + 1:03d}"
    pc = phase_contrast(f.stains["OPD"], pixel_size_um=optics.pixel_size_um)
    pc = sim.transmitted(convolve(pc, optics.psf(0.55, 0.0)) * PHASE_FLUX)
    _expose(out, out / "PhC" / f"{name}.tif", pc, sim.exposure("PhC"), sim.camera, rng)
    for stain in ("DAPI", "F-actin", "Vinculin"):
        _expose(out, out / stain / f"{name}.tif", sim.fluorescence(stain, 0.0),
                sim.exposure(stain), sim.camera, rng)
    _truth(out, name, f.truth.labels, f.truth.nuclei)
    adhesions = [{"cell": c, "x_um": x, "y_um": y} for c, x, y in f.truth.adhesions]
    (out / "truth" / f"{name}_adhesions.json").write_text(json.dumps(adhesions))
