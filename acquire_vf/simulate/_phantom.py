"""Fields of simulated cells: a window onto an endless, deterministic slide.

The slide is cut into tiles of fixed size; each tile's cells derive from ``(seed, tile)``, and
each cell's texture from its own seed, so any window (a dataset field, or the camera frame at the
current stage position) renders the same cells the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acquire_vf.optics import Optics, convolve_many, z_planes
from acquire_vf.simulate._cells import Cell, Kind, at_time, sample_cells, territories
from acquire_vf.simulate._realism import SECTION_OFFSETS_UM, FieldStyle
from acquire_vf.simulate._stains import Truth, render_mda231, render_u2os

TILE_UM = {"u2os": 200.0, "mda231": 240.0}
MARGIN_UM = {"u2os": 70.0, "mda231": 110.0}


@dataclass(frozen=True)
class Stain:
    """A dye: its emission peak and how bright it images relative to the camera's flux."""

    wavelength_um: float
    brightness: float


STAINS: dict[str, Stain] = {
    # Cell Painting (BBBC022 filter sets: DAPI, GFP, Cy3, Texas Red, Cy5)
    "DNA": Stain(0.447, 1.0),
    "ER": Stain(0.520, 0.55),
    "RNA": Stain(0.593, 0.6),
    "AGP": Stain(0.642, 0.6),
    "Mito": Stain(0.692, 0.7),
    "actin": Stain(0.617, 0.8),  # phalloidin alone (BBBC006 w2)
    # MDA-MB-231 (60x oil): DAPI, phalloidin, anti-vinculin
    "DAPI": Stain(0.461, 1.0),
    "F-actin": Stain(0.617, 0.8),
    "Vinculin": Stain(0.520, 0.7),
}


@dataclass
class Field:
    """The in-focus emitter maps of a window, with what they are made of."""

    kind: Kind
    stains: dict[str, np.ndarray]
    truth: Truth
    pixel_size_um: float
    origin_px: tuple[int, int]
    cells: list[Cell]
    t: int = 0
    """The time point the cells are shown at (a live specimen's cells move and divide)."""


def cells_for_window(kind: Kind, seed: int, origin_px: tuple[int, int], shape: tuple[int, int],
                     pixel_size: float, density: float = 1.0) -> list[Cell]:
    """All cells of the slide that can reach into the window, numbered 1, 2, ... in order."""
    tile, margin = TILE_UM[kind], MARGIN_UM[kind]
    y0 = origin_px[0] * pixel_size - margin
    x0 = origin_px[1] * pixel_size - margin
    y1 = (origin_px[0] + shape[0]) * pixel_size + margin
    x1 = (origin_px[1] + shape[1]) * pixel_size + margin
    cells: list[Cell] = []
    for ty in range(int(np.floor(y0 / tile)), int(np.floor(y1 / tile)) + 1):
        for tx in range(int(np.floor(x0 / tile)), int(np.floor(x1 / tile)) + 1):
            tile_seed = int(np.random.default_rng([seed, tx + 2**20, ty + 2**20]).integers(2**31))
            for c in sample_cells(kind, tile_seed, tx * tile, ty * tile, tile, tile,
                                  density=density):
                if x0 <= c.x <= x1 and y0 <= c.y <= y1:
                    cells.append(dataclasses.replace(c, id=len(cells) + 1))
    return cells


def render_field(kind: Kind, seed: int, shape: tuple[int, int], pixel_size_um: float,
                 origin_px: tuple[int, int] = (0, 0), density: float = 1.0, *,
                 style: FieldStyle | None = None, thick: bool = False,
                 linked: bool = False, t: int = 0, motion_um: float = 0.0,
                 divisions: float = 0.0) -> Field:
    """Stain maps of the window ``shape`` (rows, cols) whose top-left pixel is ``origin_px``;
    ``style``, ``thick`` and ``linked`` are simulator version 4's (:mod:`._realism`); with
    ``motion_um`` or ``divisions`` the cells as they are at time point ``t`` of a live
    specimen (:func:`~acquire_vf.simulate._cells.at_time`)."""
    style = style or FieldStyle(density=density)
    cells = cells_for_window(kind, seed, origin_px, shape, pixel_size_um, style.density)
    if t > 0 and (motion_um > 0 or divisions > 0):
        cells = at_time(cells, t, motion_um, divisions)
    terr = territories(cells, origin_px, shape, pixel_size_um)
    render = render_u2os if kind == "u2os" else render_mda231
    stains, truth = render(cells, terr, pixel_size_um, style=style, thick=thick, linked=linked)
    return Field(kind, stains, truth, pixel_size_um, origin_px, cells,
                 t if (motion_um > 0 or divisions > 0) else 0)


def fluorescence(emitters: np.ndarray, stain: str, optics: Optics,
                 z_um: float | Sequence[float], sections: np.ndarray | None = None,
                 ) -> np.ndarray:
    """Widefield image(s) of a stain's emitter map at defocus ``z_um`` (µm from focus).

    With ``sections`` (a thick specimen's :attr:`Truth.sections`) the emitters are spread over
    the column's sections and each is imaged through the PSF at its own distance from the
    focal plane; the images add (incoherent light)."""
    zs, scalar = z_planes(z_um)
    wavelength = STAINS[stain].wavelength_um
    source = emitters * STAINS[stain].brightness
    if sections is None:
        imgs = convolve_many(source, optics.psf(wavelength, zs))
    else:
        imgs = np.zeros((len(zs), *emitters.shape), np.float32)
        for weight, offset in zip(sections, SECTION_OFFSETS_UM, strict=True):
            # a section above the focal plane is in focus when the focus moves up by ``offset``
            imgs += convolve_many(source * weight, optics.psf(wavelength,
                                                              [z - offset for z in zs]))
    return imgs[0] if scalar else imgs
