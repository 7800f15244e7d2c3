"""Cell geometry in physical units: where cells are, their shapes, nuclei and territories.

Cells are star-shaped outlines (an ellipse with a few Fourier harmonics of wobble, and for
MDA-MB-231 a fan-shaped lamellipodium), placed with jitter on a grid so that they vary in
density and touch. Where outlines overlap, a pixel belongs to the cell in whose outline it lies
deepest (smallest normalised radius), which gives shared, curved borders like a confluent
monolayer. Everything about a cell derives from its own seed, so a cell renders identically in
any window that contains it: a slide larger than the camera frame has no seams.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Kind = Literal["u2os", "mda231"]


@dataclass(frozen=True)
class Cell:
    """One cell; positions and sizes in µm, angles in radians."""

    id: int
    seed: int
    x: float
    y: float
    radius: float
    elongation: float
    angle: float
    harmonics: tuple[tuple[float, float], ...]
    """(amplitude, phase) of outline harmonics 2, 3, ...."""
    nucleus_dx: float
    nucleus_dy: float
    nucleus_a: float
    nucleus_b: float
    nucleus_angle: float
    mitotic: bool = False
    front: float = 0.0
    """Direction of the lamellipodium (MDA-MB-231) or of the Golgi (U2OS)."""
    gains: dict[str, float] = field(default_factory=dict, compare=False)
    """Per-stain brightness of this cell (staining varies cell to cell)."""

    @property
    def extent(self) -> float:
        """Radius (µm) of a circle that surely contains the cell."""
        wobble = sum(a for a, _ in self.harmonics)
        return self.radius * self.elongation * (1.0 + wobble) * 1.15 + 1.0

    def rho(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Normalised radius: 0 at the centre, 1 on the outline."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        u = dx * c + dy * s
        v = -dx * s + dy * c
        theta = np.arctan2(v, u)
        r = np.full_like(theta, 1.0)
        for k, (amp, ph) in enumerate(self.harmonics, start=2):
            r += amp * np.cos(k * theta + ph)
        if self.front:  # lamellipodium: the outline bulges towards the front
            r += 0.35 * np.exp(-((np.angle(np.exp(1j * (theta - self.front)))) / 0.6) ** 2)
        ell = np.sqrt((u / self.elongation) ** 2 + v**2)
        return ell / (self.radius * r)

    def rho_nucleus(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.nucleus_angle), np.sin(self.nucleus_angle)
        px, py = dx - self.nucleus_dx, dy - self.nucleus_dy
        u = px * c + py * s
        v = -px * s + py * c
        return np.sqrt((u / self.nucleus_a) ** 2 + (v / self.nucleus_b) ** 2)


U2OS_STAINS = ("DNA", "ER", "RNA", "AGP", "Mito", "actin")
MDA_STAINS = ("OPD", "DAPI", "F-actin", "Vinculin")


def sample_cells(kind: Kind, seed: int, x0: float, y0: float, width: float, height: float,
                 *, density: float = 1.0, first_id: int = 1) -> list[Cell]:
    """Cells whose centres lie in the rectangle (µm), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    spacing = (36.0 if kind == "u2os" else 52.0) / np.sqrt(max(density, 1e-3))
    nx = max(1, int(round(width / spacing)))
    ny = max(1, int(round(height / spacing)))
    cells: list[Cell] = []
    for j in range(ny):
        for i in range(nx):
            local = 0.55 + 0.45 * np.sin(i * 0.9 + seed % 7) * np.cos(j * 0.7 + seed % 5)
            if rng.random() > (local + 0.35 if kind == "u2os" else 0.7):
                continue  # gaps: density varies across the slide, as in a real well
            cx = x0 + (i + 0.5 + rng.uniform(-0.45, 0.45)) * width / nx
            cy = y0 + (j + 0.5 + rng.uniform(-0.45, 0.45)) * height / ny
            cell_seed = int(rng.integers(0, 2**31))
            make = _u2os_cell if kind == "u2os" else _mda_cell
            cells.append(make(first_id + len(cells), cell_seed, cx, cy))
    return cells


def _u2os_cell(cid: int, seed: int, x: float, y: float) -> Cell:
    r = np.random.default_rng(seed)
    mitotic = r.random() < 0.06
    radius = float(np.clip(r.lognormal(np.log(19.0), 0.22), 11, 32))
    if mitotic:  # rounded up, smaller footprint, condensed chromatin
        radius *= 0.55
        harmonics: tuple[tuple[float, float], ...] = ((0.03, r.uniform(0, 6.28)),)
        elong = 1.05
        na = nb = radius * r.uniform(0.45, 0.55)
    else:
        harmonics = tuple((float(r.uniform(0.03, 0.14) / k), float(r.uniform(0, 2 * np.pi)))
                          for k in range(2, 6))
        elong = float(r.uniform(1.0, 1.5))
        na = radius * r.uniform(0.38, 0.5)
        nb = na * r.uniform(0.7, 0.95)
    off = radius * r.uniform(0.0, 0.2)
    phi = r.uniform(0, 2 * np.pi)
    gains = {s: float(r.lognormal(0.0, 0.25)) for s in U2OS_STAINS}
    if mitotic:
        gains["DNA"] *= 2.2
    return Cell(cid, seed, x, y, radius, elong, float(r.uniform(0, np.pi)), harmonics,
                float(off * np.cos(phi)), float(off * np.sin(phi)), float(na), float(nb),
                float(r.uniform(0, np.pi)), mitotic, front=float(phi + np.pi), gains=gains)


def _mda_cell(cid: int, seed: int, x: float, y: float) -> Cell:
    r = np.random.default_rng(seed)
    radius = float(np.clip(r.lognormal(np.log(13.0), 0.2), 8, 22))
    elong = float(r.uniform(1.6, 2.8))  # mesenchymal, spindle to fan shaped
    angle = float(r.uniform(0, np.pi))
    harmonics = tuple((float(r.uniform(0.08, 0.22) / np.sqrt(k)), float(r.uniform(0, 2 * np.pi)))
                      for k in range(2, 7))
    na = radius * r.uniform(0.4, 0.5)
    nb = na * r.uniform(0.65, 0.9)
    along = radius * elong * r.uniform(-0.25, 0.1)
    front = float(0.0 if r.random() < 0.5 else np.pi)
    gains = {s: float(r.lognormal(0.0, 0.2)) for s in MDA_STAINS}
    return Cell(cid, seed, x, y, radius, elong, angle, harmonics,
                float(along * np.cos(angle)), float(along * np.sin(angle)),
                float(na), float(nb), angle + float(r.uniform(-0.3, 0.3)), False,
                front=front, gains=gains)


@dataclass
class CellBox:
    """A cell's pixels in a window: its full box (fixed by the cell alone) and the visible part."""

    window: tuple[slice, slice]
    """The visible part, in window coordinates."""
    crop: tuple[slice, slice]
    """The visible part, in the cell's full-box coordinates."""
    full_shape: tuple[int, int]
    dx: np.ndarray
    """µm from the cell centre, over the visible part."""
    dy: np.ndarray
    rho: np.ndarray


@dataclass
class Territories:
    """Which cell each pixel of a window belongs to, and each cell's local coordinates there."""

    labels: np.ndarray
    """int32 (ny, nx): cell id, 0 for background."""
    boxes: dict[int, CellBox]


def territories(cells: list[Cell], origin_px: tuple[int, int], shape: tuple[int, int],
                pixel_size: float) -> Territories:
    """Assign the pixels of a window (top-left at ``origin_px`` in slide pixels) to cells."""
    ny, nx = shape
    oy, ox = origin_px
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, 1.0, np.float32)
    boxes: dict[int, CellBox] = {}
    for cell in cells:
        ext = int(np.ceil(cell.extent / pixel_size)) + 1
        gy0 = int(np.floor(cell.y / pixel_size)) - ext  # full box: depends on the cell only
        gx0 = int(np.floor(cell.x / pixel_size)) - ext
        size = 2 * ext + 1
        y0, y1 = max(gy0, oy), min(gy0 + size, oy + ny)
        x0, x1 = max(gx0, ox), min(gx0 + size, ox + nx)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx = (xx + 0.5) * pixel_size - cell.x
        dy = (yy + 0.5) * pixel_size - cell.y
        rho = cell.rho(dx, dy).astype(np.float32)
        win = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
        crop = (slice(y0 - gy0, y1 - gy0), slice(x0 - gx0, x1 - gx0))
        inside = rho < best[win]
        best[win] = np.where(inside, rho, best[win])
        labels[win] = np.where(inside, cell.id, labels[win])
        boxes[cell.id] = CellBox(win, crop, (size, size), dx, dy, rho)
    return Territories(labels, boxes)


MITOSIS_T = 3
"""Time points a dividing cell spends rounded up (mitotic) before it splits."""


def at_time(cells: list[Cell], t: int, motion_um: float, divisions: float) -> list[Cell]:
    """The cells at time point ``t`` of a live specimen, renumbered 1, 2, ...

    Each cell walks at random (steps of ``motion_um`` per time point and axis, from its own
    seed, so a cell moves the same way in every window); a cell divides with probability
    ``divisions`` per time point: it rounds up for :data:`MITOSIS_T` time points, then splits
    into two daughters of half its area that move apart along its long axis and walk on their
    own (they may divide in turn, once)."""
    out: list[Cell] = []
    for c in cells:
        out.extend(_lineage(c, 0, t, motion_um, divisions, generation=0))
    return [dataclasses.replace(c, id=k + 1) for k, c in enumerate(out)]


def _lineage(c: Cell, born: int, t: int, motion_um: float, divisions: float,
             generation: int) -> list[Cell]:
    r = np.random.default_rng([c.seed, 0x11FE])
    split = born + int(r.geometric(divisions)) if divisions > 0 and generation < 2 else None
    until = t if split is None else min(t, split)
    walk = r.normal(0.0, motion_um, size=(max(until - born, 0), 2)).sum(axis=0) \
        if motion_um > 0 else np.zeros(2)
    here = dataclasses.replace(c, x=c.x + float(walk[0]), y=c.y + float(walk[1]))
    if split is None or t < split - MITOSIS_T:
        return [here]
    if t < split:  # rounded up, chromatin condensed
        return [dataclasses.replace(here, mitotic=True, radius=here.radius * 0.6,
                                    elongation=1.05, nucleus_a=here.radius * 0.3,
                                    nucleus_b=here.radius * 0.27, nucleus_dx=0.0,
                                    nucleus_dy=0.0,
                                    gains={**here.gains, "DNA": here.gains.get("DNA", 1) * 2})]
    daughters = []
    shrink = 1 / np.sqrt(2)
    for k, sign in ((1, 1.0), (2, -1.0)):
        gap = 0.5 * here.radius * sign
        d = dataclasses.replace(
            here, seed=int(np.random.default_rng([c.seed, k]).integers(2**31)),
            x=here.x + gap * float(np.cos(here.angle)), y=here.y + gap * float(np.sin(here.angle)),
            radius=here.radius * shrink, nucleus_a=here.nucleus_a * shrink,
            nucleus_b=here.nucleus_b * shrink, nucleus_dx=here.nucleus_dx * shrink,
            nucleus_dy=here.nucleus_dy * shrink)
        daughters.extend(_lineage(d, split, t, motion_um, divisions, generation + 1))
    return daughters
