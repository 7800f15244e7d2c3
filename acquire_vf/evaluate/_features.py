"""Per-cell feature fidelity (the paper's Figs. 7 and 8): do virtual cells measure like real ones?

Cells are segmented once, from the real images (nuclei from the DNA channel by Otsu threshold
and a distance-transform watershed; cell bodies by a watershed from the nuclei over a
cell-body channel, or by expanding the nuclei when there is none), so a cell in the real and
in the virtual channel is the same cell. In each cell, CellProfiler-style feature families are
measured on the real and on the virtual channel:

- intensity: mean, integrated, standard deviation, maximum;
- size and shape of the stained area (pixels above the channel's Otsu threshold in the cell):
  area fraction, eccentricity, solidity;
- texture: Haralick contrast, correlation, homogeneity and energy (grey-level co-occurrence,
  32 levels, distance 1, four directions averaged);
- granularity: the fraction of intensity removed by grey openings of radius 1-4 pixels;
- radial distribution: the fraction of intensity in four rings from the nucleus outwards;
- correlation with each input channel (Pearson, within the cell).

For each feature the Pearson correlation across cells between real and virtual values says how
faithfully the virtual channel reproduces it. Features of the input channels correlate
perfectly with themselves and are reported apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


def segment(dna: np.ndarray, body: np.ndarray | None = None, *, min_area: int = 30,
            expand: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and cell labels (int32) from a DNA image and an optional cell-body image."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import expand_labels, watershed

    smooth = ndimage.gaussian_filter(dna.astype(np.float64), 1.0)
    mask = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
    lab, _ = ndimage.label(mask)
    big = np.bincount(lab.ravel()) >= min_area
    big[0] = False
    mask = big[lab]
    dist = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=5, labels=ndimage.label(mask)[0],
                           exclude_border=False)
    markers = np.zeros(dna.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = watershed(-dist, markers, mask=mask).astype(np.int32)
    if body is None:
        return nuclei, expand_labels(nuclei, expand).astype(np.int32)
    b = ndimage.gaussian_filter(body.astype(np.float64), 1.5)
    cell_mask = (b > 0.5 * threshold_otsu(b)) | (nuclei > 0)
    cells = watershed(-b, nuclei, mask=cell_mask).astype(np.int32)
    return nuclei, cells


FEATURES = ("intensity_mean", "intensity_integrated", "intensity_sd", "intensity_max",
            "stained_area_fraction", "stained_eccentricity", "stained_solidity",
            "texture_contrast", "texture_correlation", "texture_homogeneity", "texture_energy",
            "granularity_1", "granularity_2", "granularity_3", "granularity_4",
            "radial_1", "radial_2", "radial_3", "radial_4")


def cell_features(img: np.ndarray, nuclei: np.ndarray, cells: np.ndarray,
                  inputs: Sequence[np.ndarray] = ()) -> dict[str, np.ndarray]:
    """Feature values per cell (arrays in cell-label order) of one channel."""
    from skimage.feature import graycomatrix, graycoprops
    from skimage.filters import threshold_otsu
    from skimage.measure import regionprops
    from skimage.morphology import disk, opening

    x = img.astype(np.float64)
    otsu = threshold_otsu(x)
    lo, hi = np.percentile(x, [0.5, 99.8])
    q = np.clip((x - lo) / max(hi - lo, 1e-9) * 31, 0, 31).astype(np.uint8)
    out: dict[str, list[float]] = {k: [] for k in FEATURES}
    out.update({f"correlation_input_{i}": [] for i in range(len(inputs))})
    for region in regionprops(cells):
        sl = region.slice
        m = cells[sl] == region.label
        v = x[sl][m]
        out["intensity_mean"].append(v.mean())
        out["intensity_integrated"].append(v.sum())
        out["intensity_sd"].append(v.std())
        out["intensity_max"].append(v.max())
        stained = m & (x[sl] > otsu)
        out["stained_area_fraction"].append(stained.sum() / m.sum())
        props = regionprops(stained.astype(np.uint8))
        out["stained_eccentricity"].append(props[0].eccentricity if props else 0.0)
        out["stained_solidity"].append(props[0].solidity if props else 0.0)
        patch = np.where(m, q[sl], 0)
        glcm = graycomatrix(patch, [1], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32,
                            symmetric=True, normed=True)
        for prop in ("contrast", "correlation", "homogeneity", "energy"):
            out[f"texture_{prop}"].append(float(np.nan_to_num(graycoprops(glcm, prop)).mean()))
        total = max(v.sum(), 1e-12)
        previous = np.where(m, x[sl], 0.0)
        for r in range(1, 5):
            opened = opening(previous, disk(r))
            out[f"granularity_{r}"].append(float((previous - opened)[m].sum() / total))
            previous = opened
        nuc = nuclei[sl] == nuclei[sl][m][np.argmax(nuclei[sl][m] > 0)] if \
            (nuclei[sl][m] > 0).any() else m
        centre = ndimage.center_of_mass(nuc if nuc.any() else m)
        yy, xx = np.indices(m.shape)
        d = np.hypot(yy - centre[0], xx - centre[1])[m]
        ring = np.minimum((d / max(d.max(), 1e-9) * 4).astype(int), 3)
        for k in range(4):
            out[f"radial_{k + 1}"].append(float(v[ring == k].sum() / total))
        for i, other in enumerate(inputs):
            o = other.astype(np.float64)[sl][m]
            c = np.corrcoef(v, o)[0, 1] if v.std() > 0 and o.std() > 0 else 0.0
            out[f"correlation_input_{i}"].append(float(c))
    return {k: np.asarray(vals, np.float64) for k, vals in out.items()}


@dataclass(frozen=True)
class Fidelity:
    n_cells: int
    per_feature: dict[str, float]
    median_correlation: float


def fidelity(real: dict[str, np.ndarray], virtual: dict[str, np.ndarray]) -> Fidelity:
    """Pearson correlation across cells of each feature, real against virtual."""
    per = {}
    for k, r in real.items():
        v = virtual[k]
        if len(r) < 3 or r.std() == 0 or v.std() == 0:
            per[k] = 1.0 if np.array_equal(r, v) else 0.0
        else:
            per[k] = round(float(np.corrcoef(r, v)[0, 1]), 4)
    return Fidelity(len(next(iter(real.values()), [])), per,
                    round(float(np.median(list(per.values()))), 4))
