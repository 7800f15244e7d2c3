"""Paired images for training: read from a public layout, split by field, normalised, patched.

Fields (well and site) are split into train / validation / test before any patch is cut, so
no field contributes to two splits. Images are read once into memory (these datasets are a few
hundred MB at most) and random patches with 90-degree rotations and flips are cut per step.
Normalisation is per channel over the training images: robust percentiles (0.1, 99.9) map to
[-1, 1] and are stored in the model card (see :class:`acquire_vf.card.Normalisation`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from acquire_vf import layouts
from acquire_vf.card import Normalisation
from acquire_vf.training._recipe import Recipe, simulated_root

log = logging.getLogger(__name__)


@dataclass
class Pair:
    """One training example: input channels and the target, as raw float32 images."""

    inputs: np.ndarray
    """(C, H, W)."""
    target: np.ndarray
    """(1, H, W)."""
    key: tuple[object, ...]
    z_um: float = 0.0


@dataclass
class PairedData:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    normalisation: dict[str, Normalisation]
    inputs: tuple[str, ...]
    target: str
    root: Path
    splits: dict[tuple[object, ...], str] = field(default_factory=dict)


def data_root(recipe: Recipe) -> Path:
    """The dataset folder: the real one, or the simulated one (written now if missing)."""
    if recipe.data.path is not None:
        if not recipe.data.path.is_dir():
            raise FileNotFoundError(f"data folder not found: '{recipe.data.path}'")
        return recipe.data.path
    from acquire_vf.simulate import ensure_dataset

    sim = recipe.data.simulated
    root = simulated_root(recipe)
    return ensure_dataset(recipe.data.simulate or "bbbc022", root, fields=sim.fields,
                          seed=sim.seed, size=(sim.size[1], sim.size[0]))


def load_pairs(recipe: Recipe, root: Path | None = None, *,
               require_splits: bool = True) -> PairedData:
    d = recipe.data
    root = root or data_root(recipe)
    cache: dict[Path, np.ndarray] = {}

    def read(p: Path) -> np.ndarray:
        if p not in cache:
            cache[p] = tifffile.imread(p).astype(np.float32)
        return cache[p]

    pairs: list[Pair] = []
    if d.layout == "bbbc006":
        for src, tgt in layouts.autofocus_pairs(layouts.scan_bbbc006(root), d.target,
                                                d.z_range_um, d.exclude_um):
            pairs.append(Pair(read(src.path)[None], read(tgt.path)[None], src.field_key,
                              src.z_um))
    else:
        channels = [*d.inputs, d.target]
        sites = layouts.scan_bbbc022(root) if d.layout == "bbbc022" \
            else layouts.scan_paired(root, channels)
        for site in sites:
            missing = [c for c in channels if c not in site]
            if missing:
                raise ValueError(f"{root}: channels {missing} not in the dataset "
                                 f"(has {sorted(site)})")
            pairs.append(Pair(np.stack([read(site[c].path) for c in d.inputs]),
                              read(site[d.target].path)[None], site[d.target].field_key))
    if not pairs:
        raise ValueError(f"no training pairs found in '{root}' for layout '{d.layout}'")
    splits = layouts.assign_splits([p.key for p in pairs], seed=recipe.seed)
    by = {s: [p for p in pairs if splits[p.key] == s] for s in ("train", "val", "test")}
    if require_splits and (not by["train"] or not by["val"]):
        raise ValueError(f"'{root}' has too few fields to split ({len(splits)}); need 3 or more")
    stats = by["train"] or pairs
    norm = {c: _robust_range(stats, i) for i, c in enumerate(d.inputs)}
    norm[d.target] = _robust_range(stats, -1)
    return PairedData(by["train"], by["val"], by["test"], norm, d.inputs, d.target, root, splits)


def _robust_range(pairs: list[Pair], channel: int, pct: tuple[float, float] = (0.1, 99.9),
                  ) -> Normalisation:
    rng = np.random.default_rng(0)
    samples = []
    for p in pairs:
        img = p.target[0] if channel == -1 else p.inputs[channel]
        samples.append(rng.choice(img.ravel(), size=min(img.size, 50_000), replace=False))
    lo, hi = np.percentile(np.concatenate(samples), pct)
    return Normalisation(low=float(lo), high=float(max(hi, lo + 1.0)), percentiles=pct)


class PatchSampler:
    """Random normalised patches from a list of pairs (deterministic in its generator)."""

    def __init__(self, data: PairedData, pairs: list[Pair], patch: int, *, augment: bool,
                 equalize: bool = False) -> None:
        self.pairs = pairs
        self.patch = patch
        self.augment = augment
        self.equalize = equalize
        self.in_norm = [data.normalisation[c] for c in data.inputs]
        self.out_norm = data.normalisation[data.target]
        small = [p.key for p in pairs if min(p.target.shape[-2:]) < patch]
        if small:
            raise ValueError(f"images of {small[0]} are smaller than the patch size {patch}")

    def normalise(self, inputs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.equalize:
            from skimage.exposure import equalize_hist

            inputs = np.stack([equalize_hist(c).astype(np.float32) * 2 - 1 for c in inputs])
        else:
            inputs = np.stack([n.forward(c) for n, c in zip(self.in_norm, inputs, strict=True)])
        return inputs, self.out_norm.forward(target)

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(n):
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            h, w = pair.target.shape[-2:]
            y0 = int(rng.integers(0, h - self.patch + 1))
            x0 = int(rng.integers(0, w - self.patch + 1))
            sl = (slice(None), slice(y0, y0 + self.patch), slice(x0, x0 + self.patch))
            x, y = self.normalise(pair.inputs[sl], pair.target[sl])
            if self.augment:
                k = int(rng.integers(4))
                x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(1, 2))
                if rng.random() < 0.5:
                    x, y = x[:, :, ::-1], y[:, :, ::-1]
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return np.stack(xs), np.stack(ys)

    def fixed(self, n: int, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
        """The same ``n`` patches every time (validation), without augmentation."""
        augment, self.augment = self.augment, False
        try:
            return self.batch(np.random.default_rng(seed), n)
        finally:
            self.augment = augment
