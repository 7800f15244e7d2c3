"""Paired images from a public layout, split by field and normalised: what training and
evaluation both read.

Fields (well and site) are split into train / validation / test before any patch is cut, so
no field contributes to two splits. Images are read once into memory (these datasets are a few
hundred MB at most). Normalisation is per channel over the training images: robust
percentiles (0.1, 99.9) map to [-1, 1] and are stored in the model card
(see :class:`acquire_vf.card.Normalisation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import tifffile

from acquire_vf import layouts
from acquire_vf.card import Normalisation


class DataSpec(Protocol):
    """What a recipe's ``[data]`` section says about the layout (``config.Recipe.data``)."""

    @property
    def layout(self) -> str: ...

    @property
    def inputs(self) -> tuple[str, ...]: ...

    @property
    def target(self) -> str: ...

    @property
    def z_range_um(self) -> tuple[float, float]: ...

    @property
    def exclude_um(self) -> tuple[float, float]: ...


@dataclass
class Pair:
    """One training example: input channels and the target, as raw float32 images."""

    inputs: np.ndarray
    """(C, H, W)."""
    target: np.ndarray
    """(1, H, W)."""
    key: tuple[object, ...]
    z_um: float = 0.0
    target_path: Path | None = None
    """The target's file (evaluation finds the simulator's noise-free truth beside it)."""


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


def read_pairs(d: DataSpec, root: Path, *, seed: int, require_splits: bool = True
               ) -> PairedData:
    """Every (inputs, target) pair of the dataset at ``root``, split by field with ``seed``
    and normalised by the training split's robust range."""
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
                              src.z_um, tgt.path))
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
                              read(site[d.target].path)[None], site[d.target].field_key,
                              target_path=site[d.target].path))
    if not pairs:
        raise ValueError(f"no training pairs found in '{root}' for layout '{d.layout}'")
    named = getattr(d, "splits", None)
    splits = _named_splits(pairs, named, root) if named else \
        layouts.assign_splits([p.key for p in pairs], seed=seed)
    by = {s: [p for p in pairs if splits[p.key] == s] for s in ("train", "val", "test")}
    if require_splits and (not by["train"] or not by["val"]):
        raise ValueError(f"'{root}' has too few fields to split ({len(splits)}); need 3 or more")
    stats = by["train"] or pairs
    norm = {c: _robust_range(stats, i) for i, c in enumerate(d.inputs)}
    norm[d.target] = _robust_range(stats, -1)
    return PairedData(by["train"], by["val"], by["test"], norm, d.inputs, d.target, root, splits)


def _named_splits(pairs: list[Pair], named: dict[str, str], root: Path
                  ) -> dict[tuple[object, ...], str]:
    """The recipe's ``splits``: each field's split by its name (the key's well)."""
    keys = {p.key for p in pairs}
    unnamed = sorted(str(k[1]) for k in keys if str(k[1]) not in named)
    if unnamed:
        raise ValueError(f"{root}: the recipe's splits name {sorted(named)}; expected every "
                         f"field, got unnamed fields {unnamed}")
    return {k: named[str(k[1])] for k in keys}


def _robust_range(pairs: list[Pair], channel: int, pct: tuple[float, float] = (0.1, 99.9),
                  ) -> Normalisation:
    rng = np.random.default_rng(0)
    samples = []
    for p in pairs:
        img = p.target[0] if channel == -1 else p.inputs[channel]
        samples.append(rng.choice(img.ravel(), size=min(img.size, 50_000), replace=False))
    lo, hi = np.percentile(np.concatenate(samples), pct)
    return Normalisation(low=float(lo), high=float(max(hi, lo + 1.0)), percentiles=pct)
