"""Stain images of cells: what each dye labels, as relative emitter density (about 0-1.5).

The structures are built so that channels predict one another as they do in real cells:
RNA (SYTO14) shares the nucleus with DNA (nucleoli and nucleoplasm) and the perinuclear
cytoplasm with ER; mitochondria are cytoplasmic and tubular, so DNA says little about them;
ER is a reticular network dense round the nucleus (continuous with the nuclear envelope) and
fading toward the edge; AGP is the Golgi ribbon beside the nucleus, the plasma membrane and
F-actin fibres. For MDA-MB-231, focal adhesions (vinculin) sit at the ends of stress fibres
near the cell edge, which F-actin shows and phase contrast does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from acquire_vf.simulate._cells import Cell, CellBox, Territories
from acquire_vf.simulate._realism import LAYERS, PLAIN, FieldStyle, section_weights


@dataclass
class Truth:
    """What the phantom is made of, for tests and evaluation (µm in slide coordinates)."""

    labels: np.ndarray
    nuclei: np.ndarray
    """int32: the cell id inside each nucleus, 0 elsewhere."""
    fibres: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    """(cell id, x0, y0, x1, y1) of each stress fibre."""
    adhesions: list[tuple[int, float, float]] = field(default_factory=list)
    """(cell id, x, y) of each focal adhesion at a fibre end."""
    nascent: list[tuple[int, float, float]] = field(default_factory=list)
    """(cell id, x, y) of small adhesions at the leading edge (not at fibre ends)."""
    sections: np.ndarray | None = None
    """Thick cells (simulator version 4): (LAYERS, H, W), how each pixel's emitters spread over
    the column's sections (:func:`~acquire_vf.simulate._realism.section_weights`), each section
    with its own texture; ``None`` for a thin specimen."""


def _sections(cell: Cell, b: CellBox, own: np.ndarray, height: np.ndarray, px: float,
              truth: Truth) -> None:
    """Add a cell's column (``height``, µm) to the window's sections, with a texture of its own
    in each section (so another section looks different, as a thick nucleus does)."""
    if truth.sections is None:
        return
    w = section_weights(height)
    for k in range(LAYERS):
        texture = np.clip(1 + 0.35 * _noise(cell, 60 + k, b, 0.8 / px), 0, None)
        truth.sections[k][b.window] += own * w[k] * texture


def _thick_truth(labels: np.ndarray, thick: bool) -> Truth:
    truth = Truth(labels, np.zeros(labels.shape, np.int32))
    if thick:
        truth.sections = np.zeros((LAYERS, *labels.shape), np.float32)
    return truth


def _noise(cell: Cell, key: int, box: CellBox, sigma_px: float) -> np.ndarray:
    """Band-limited noise (zero mean, unit sd) over the cell's full box, cropped to the window."""
    rng = np.random.default_rng([cell.seed, key])
    white = rng.standard_normal(box.full_shape, dtype=np.float32)
    n = ndimage.gaussian_filter(white, sigma_px, mode="wrap")
    n /= float(n.std()) + 1e-6
    return n[box.crop]


def _sub(dx: np.ndarray, dy: np.ndarray, x0: float, x1: float, y0: float, y1: float,
         ) -> tuple[slice, slice]:
    """Rows and columns of a cell box whose coordinates fall in [x0, x1] x [y0, y1] (µm)."""
    xs, ys = dx[0], dy[:, 0]
    c0, c1 = np.searchsorted(xs, x0), np.searchsorted(xs, x1, side="right")
    r0, r1 = np.searchsorted(ys, y0), np.searchsorted(ys, y1, side="right")
    return slice(int(r0), int(r1)), slice(int(c0), int(c1))


def _blobs(dx: np.ndarray, dy: np.ndarray, centres: list[tuple[float, float, float]],
           ) -> np.ndarray:
    out = np.zeros(dx.shape, np.float32)
    for x, y, r in centres:
        sl = _sub(dx, dy, x - 4 * r, x + 4 * r, y - 4 * r, y + 4 * r)
        out[sl] += np.exp(-((dx[sl] - x) ** 2 + (dy[sl] - y) ** 2) / (2 * r * r))
    return out


def _segment(dx: np.ndarray, dy: np.ndarray, mx: float, my: float, theta: float,
             t0: float, t1: float, width: float, out: np.ndarray | None = None,
             gain: float = 1.0) -> np.ndarray:
    """Add a line segment (µm, relative to the cell centre; Gaussian profile, soft ends)."""
    if out is None:
        out = np.zeros(dx.shape, np.float32)
    c, s = np.cos(theta), np.sin(theta)
    ends_x = (mx + t0 * c, mx + t1 * c)
    ends_y = (my + t0 * s, my + t1 * s)
    pad = 3 * width + 1.5
    sl = _sub(dx, dy, min(ends_x) - pad, max(ends_x) + pad, min(ends_y) - pad, max(ends_y) + pad)
    px, py = dx[sl] - mx, dy[sl] - my
    along = px * c + py * s
    perp = -px * s + py * c
    ends = 1.0 / (1.0 + np.exp(-(along - t0) / 0.3)) / (1.0 + np.exp((along - t1) / 0.3))
    out[sl] += gain * np.exp(-(perp / width) ** 2) * ends
    return out


def fibre_extent(cell: Cell, mx: float, my: float, theta: float, limit: float = 0.92,
                 ) -> tuple[float, float]:
    """Where a line through (mx, my) at ``theta`` enters and leaves the cell's outline."""
    span = cell.extent
    t = np.arange(-span, span, 0.2, dtype=np.float32)
    rho = cell.rho(mx + t * np.cos(theta), my + t * np.sin(theta))
    inside = rho < limit
    mid = int(np.argmin(np.abs(t)))
    if not inside[mid]:
        return 0.0, 0.0
    i0 = mid
    while i0 > 0 and inside[i0 - 1]:
        i0 -= 1
    i1 = mid
    while i1 < len(t) - 1 and inside[i1 + 1]:
        i1 += 1
    return float(t[i0]), float(t[i1])


def _membrane(labels: np.ndarray, width_px: float) -> np.ndarray:
    """Cell outlines, including borders between touching cells, blurred to ``width_px``."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge &= labels > 0
    return ndimage.gaussian_filter(edge.astype(np.float32), width_px) * (2.5 * width_px)


def _nucleus(cell: Cell, b: CellBox, px: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft nucleus mask, distance outside the nucleus (µm), and nucleoli, for a cell's box."""
    rn = cell.rho_nucleus(b.dx, b.dy)
    rmean = float(np.sqrt(cell.nucleus_a * cell.nucleus_b))
    soft = 1.0 / (1.0 + np.exp((rn - 1.0) * rmean / 0.25))
    d_out = np.clip((rn - 1.0) * rmean, 0.0, None)
    nucleoli = np.zeros_like(soft)
    if not cell.mitotic:
        r = np.random.default_rng([cell.seed, 7])
        centres = []
        for _ in range(int(r.integers(2, 5))):
            ang, rad = r.uniform(0, 2 * np.pi), r.uniform(0, 0.55)
            cx = cell.nucleus_dx + rad * cell.nucleus_a * np.cos(ang)
            cy = cell.nucleus_dy + rad * cell.nucleus_b * np.sin(ang)
            centres.append((cx, cy, float(r.uniform(0.7, 1.2))))
        nucleoli = np.clip(_blobs(b.dx, b.dy, centres), 0, 1) * soft
    return soft.astype(np.float32), d_out.astype(np.float32), nucleoli


@dataclass
class _InWindow:
    """One cell's part of the window: its box, own mask, nucleus and nucleoli."""

    cell: Cell
    b: CellBox
    own: np.ndarray
    soft: np.ndarray
    d_out: np.ndarray
    nucleoli: np.ndarray
    nuc: np.ndarray


def _cells_in_window(cells: list[Cell], terr: Territories, px: float,
                     truth: Truth) -> Iterator[_InWindow]:
    """Each cell that reaches into the window, with its nucleus recorded in ``truth``."""
    for cell in cells:
        b = terr.boxes.get(cell.id)
        if b is None:
            continue
        own = (terr.labels[b.window] == cell.id).astype(np.float32)
        soft, d_out, nucleoli = _nucleus(cell, b, px)
        nuc = soft * own
        truth.nuclei[b.window][nuc > 0.5] = cell.id
        yield _InWindow(cell, b, own, soft, d_out, nucleoli, nuc)


def render_u2os(cells: list[Cell], terr: Territories, px: float, *,
                style: FieldStyle = PLAIN, thick: bool = False,
                linked: bool = False) -> tuple[dict, Truth]:
    """The five Cell Painting stains (plus phalloidin alone as ``actin``, BBBC006's w2), and the
    optical path difference ``OPD`` (µm) that transmitted light sees (brightfield).

    ``style`` is the field's domain randomisation, ``thick`` fills ``truth.sections``,
    ``linked`` couples RNA to the rough ER and the mitochondria (simulator version 4)."""
    shape = terr.labels.shape
    out = {k: np.zeros(shape, np.float32)
           for k in ("DNA", "ER", "RNA", "AGP", "Mito", "actin", "OPD")}
    truth = _thick_truth(terr.labels, thick)
    for w in _cells_in_window(cells, terr, px, truth):
        cell, b, own, soft, d_out, nucleoli, nuc = (w.cell, w.b, w.own, w.soft, w.d_out,
                                                    w.nucleoli, w.nuc)
        cyto = np.clip(own - nuc, 0, 1)
        g = {k: v * style.gains.get(k, 1.0) for k, v in cell.gains.items()}
        chrom = _noise(cell, 1, b, 0.6 * style.texture_grain / px)
        reticulum = np.exp(-((_noise(cell, 2, b, 0.9 / px)) / 0.35) ** 2)
        tubules = np.exp(-((_noise(cell, 3, b, 0.5 / px)) / 0.22) ** 2)
        tubules *= np.clip(_noise(cell, 4, b, 1.5 / px), 0, None)  # fragments of the network
        fine = _noise(cell, 5, b, 0.45 / px)
        if cell.mitotic:
            clumps = np.clip(0.6 + 0.5 * _noise(cell, 6, b, 1.2 / px), 0, None)
            dna = nuc * clumps * 1.1
            rna = own * 0.3 * (0.8 + 0.2 * fine)
            er = own * 0.35 * (0.5 + 0.5 * reticulum)
            mito = own * 0.3 * (0.4 + 0.6 * tubules)
            agp = own * 0.15
            actin = own * 0.12
        else:
            rim = np.exp(-(((cell.rho_nucleus(b.dx, b.dy) - 1.0) / 0.08) ** 2)) * own
            dna = nuc * np.clip(0.55 + style.texture_amp * chrom, 0.05, None) * (
                1 - 0.65 * nucleoli) + 0.1 * rim
            rna = 1.1 * nucleoli * own + 0.14 * nuc + 0.3 * cyto * np.exp(-d_out / 8.0) * (
                0.75 + 0.25 * fine) * ((0.45 + 0.55 * reticulum) if linked else 1.0)
            er = 0.8 * cyto * (0.12 + 0.88 * np.exp(-d_out / 5.5)) * (0.2 + 0.8 * reticulum)
            er += 0.55 * np.exp(-((d_out + (1 - soft)) / 0.9) ** 2) * own * (1 - nuc)
            mito = cyto * (0.03 + 1.1 * np.exp(-d_out / 5.0) * tubules)
            if linked:  # SYTO14 stains mitochondrial RNA faintly
                rna = rna + 0.08 * mito
            fibres = _stress_fibres(cell, (4, 9), 0.25, 8)
            agp, actin = _golgi_and_fibres(cell, b, fibres, cyto, own)
            truth.fibres.extend(_fibre_list(cell, fibres))
        out["DNA"][b.window] += g["DNA"] * dna
        out["RNA"][b.window] += g["RNA"] * rna
        out["ER"][b.window] += g["ER"] * er
        out["Mito"][b.window] += g["Mito"] * mito
        out["actin"][b.window] += g["actin"] * actin
        out["AGP"][b.window] += g["AGP"] * (agp + actin)
        out["OPD"][b.window] += _opd_u2os(cell, b, own, nuc, nucleoli, fine, px)
        _sections(cell, b, own, _height_u2os(cell, b, soft), px, truth)
    membrane = _membrane(terr.labels, 0.5 / px)
    out["AGP"] += 0.2 * membrane
    out["actin"] += 0.25 * membrane  # cortical actin
    return out, truth


def _height_u2os(cell: Cell, b: CellBox, soft: np.ndarray) -> np.ndarray:
    """A thick U2OS cell's column height (µm): a nucleus dome 3 to 8 µm tall over a cytoplasm
    2.3 µm at most (a mitotic cell: rounded, 10 µm)."""
    if cell.mitotic:
        return 10.0 * np.sqrt(np.clip(1 - b.rho**2, 0, None)) + 0.3
    top = 3.0 + 5.0 * float(np.random.default_rng([cell.seed, 61]).random())
    rn = cell.rho_nucleus(b.dx, b.dy)
    dome = top * np.sqrt(np.clip(1 - rn**2, 0, None)) * soft
    return np.maximum(dome, 2.0 * np.clip(1 - b.rho**2, 0, None) ** 1.5 + 0.3)


def _opd_u2os(cell: Cell, b: CellBox, own: np.ndarray, nuc: np.ndarray, nucleoli: np.ndarray,
              fine: np.ndarray, px: float) -> np.ndarray:
    """Optical path difference (µm) of a U2OS cell in medium: a flat cell (5 µm over the
    nucleus, 0.3 µm at the edge; a mitotic cell rounded, 10 µm tall) with a refractive index
    0.03 above the medium's, the nucleus and nucleoli a little denser."""
    if cell.mitotic:
        height = 10.0 * np.sqrt(np.clip(1 - b.rho**2, 0, None)) + 0.3
    else:
        height = 4.5 * np.clip(1 - b.rho**2, 0, None) ** 1.5 + 0.3
    opd = own * 0.03 * height * (0.92 + 0.08 * fine)
    return opd + nuc * 0.04 + nucleoli * own * 0.03


def _stress_fibres(cell: Cell, n_range: tuple[int, int], spread: float, key: int,
                   ) -> list[tuple[float, float, float, float, float]]:
    """(mx, my, theta, t0, t1): fibres roughly along the cell's long axis."""
    r = np.random.default_rng([cell.seed, key])
    fibres = []
    for _ in range(int(r.integers(*n_range))):
        theta = cell.angle + float(r.normal(0, spread))
        off = float(r.uniform(-0.6, 0.6)) * cell.radius
        mx, my = -off * np.sin(cell.angle), off * np.cos(cell.angle)
        t0, t1 = fibre_extent(cell, mx, my, theta)
        if t1 - t0 > 3.0:
            fibres.append((mx, my, theta, t0, t1))
    return fibres


def _fibre_list(cell: Cell, fibres: list[tuple[float, float, float, float, float]],
                ) -> list[tuple[int, float, float, float, float]]:
    out = []
    for mx, my, th, t0, t1 in fibres:
        c, s = np.cos(th), np.sin(th)
        out.append((cell.id, cell.x + mx + t0 * c, cell.y + my + t0 * s,
                    cell.x + mx + t1 * c, cell.y + my + t1 * s))
    return out


def _golgi_and_fibres(cell: Cell, b: CellBox,
                      fibre_list: list[tuple[float, float, float, float, float]],
                      cyto: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.random.default_rng([cell.seed, 9])
    rn_edge = float(np.sqrt(cell.nucleus_a * cell.nucleus_b))
    centres = []
    for _ in range(int(r.integers(6, 13))):
        ang = cell.front + float(r.normal(0, 0.45))
        dist = rn_edge + float(r.uniform(0.8, 3.5))
        centres.append((cell.nucleus_dx + dist * np.cos(ang), cell.nucleus_dy + dist * np.sin(ang),
                        float(r.uniform(0.5, 1.0))))
    golgi = np.clip(_blobs(b.dx, b.dy, centres), 0, 1.2) * cyto
    fibres = np.zeros_like(own)
    for mx, my, th, t0, t1 in fibre_list:
        _segment(b.dx, b.dy, mx, my, th, t0, t1, 0.35, out=fibres)
    actin = (0.25 * np.clip(fibres, 0, 1.5) + 0.08) * own
    return golgi, actin


def render_mda231(cells: list[Cell], terr: Territories, px: float, *,
                  style: FieldStyle = PLAIN, thick: bool = False,
                  linked: bool = False) -> tuple[dict, Truth]:
    """MDA-MB-231: optical path difference (µm, for phase contrast), DAPI, F-actin, vinculin
    (``style``, ``thick`` as :func:`render_u2os`; ``linked`` changes nothing here)."""
    shape = terr.labels.shape
    out = {k: np.zeros(shape, np.float32) for k in ("OPD", "DAPI", "F-actin", "Vinculin")}
    truth = _thick_truth(terr.labels, thick)
    for w in _cells_in_window(cells, terr, px, truth):
        cell, b, own, nucleoli, nuc = w.cell, w.b, w.own, w.nucleoli, w.nuc
        g = {k: v * style.gains.get(k, 1.0) for k, v in cell.gains.items()}
        fine = _noise(cell, 5, b, 0.3 / px)
        chrom = _noise(cell, 1, b, 0.4 * style.texture_grain / px)
        height = 3.5 * np.clip(1 - b.rho**2, 0, None) ** 1.3 + 0.25  # lamella ~0.25 µm thick
        opd = own * (0.03 * height * (0.92 + 0.08 * fine))
        opd += nuc * 0.025 * 2.5 + nucleoli * own * 0.03
        dapi = nuc * np.clip(0.6 + style.texture_amp * chrom, 0.05, None) * (1 - 0.5 * nucleoli)
        _sections(cell, b, own, np.maximum(height, nuc * (3.0 + 4.0 * float(
            np.random.default_rng([cell.seed, 61]).random()))), px, truth)
        theta = np.arctan2(b.dy, b.dx) - cell.angle
        front = np.exp(-((np.angle(np.exp(1j * (theta - cell.front)))) / 0.6) ** 2)
        edge_band = np.exp(-((1 - b.rho) / 0.04) ** 2) * own
        fibres = np.zeros_like(own)
        vinc = 0.12 * own * (0.85 + 0.15 * fine)
        r = np.random.default_rng([cell.seed, 11])
        for mx, my, th, t0, t1 in _stress_fibres(cell, (6, 15), 0.18, 8):
            _segment(b.dx, b.dy, mx, my, th, t0, t1, 0.22, out=fibres)
            c, s = np.cos(th), np.sin(th)
            for t_end, sign in ((t0, 1.0), (t1, -1.0)):
                if r.random() < 0.8:
                    ax = mx + (t_end + sign * 0.7) * c
                    ay = my + (t_end + sign * 0.7) * s
                    _segment(b.dx, b.dy, ax, ay, th, -0.9, 0.9, 0.28, out=vinc)
                    truth.adhesions.append((cell.id, cell.x + ax, cell.y + ay))
            truth.fibres.append((cell.id, cell.x + mx + t0 * c, cell.y + my + t0 * s,
                                 cell.x + mx + t1 * c, cell.y + my + t1 * s))
        for _ in range(int(r.integers(2, 6))):  # nascent adhesions at the leading edge
            ang = cell.angle + cell.front + float(r.normal(0, 0.35))
            t0, t1 = fibre_extent(cell, 0.0, 0.0, ang, limit=0.93)
            nx_, ny_ = t1 * np.cos(ang), t1 * np.sin(ang)
            vinc += 0.7 * _blobs(b.dx, b.dy, [(nx_, ny_, 0.25)])
            truth.nascent.append((cell.id, cell.x + nx_, cell.y + ny_))
        factin = (0.9 * np.clip(fibres, 0, 1.5) + 0.2 * edge_band * (0.5 + front)
                  + 0.1 * (0.85 + 0.15 * fine)) * own
        out["OPD"][b.window] += opd
        out["DAPI"][b.window] += g["DAPI"] * dapi
        out["F-actin"][b.window] += g["F-actin"] * factin
        out["Vinculin"][b.window] += g["Vinculin"] * vinc * own
    out["F-actin"] += 0.1 * _membrane(terr.labels, 0.3 / px)
    return out, truth
