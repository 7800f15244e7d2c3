"""Training data: a recipe's dataset (simulated once if it names no real folder), its pairs
(:mod:`acquire_vf.pairs`), and random normalised patches with 90-degree rotations and flips
cut per step."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from acquire_vf.config import Recipe, simulated_root
from acquire_vf.pairs import Pair, PairedData, read_pairs

log = logging.getLogger(__name__)


def data_root(recipe: Recipe) -> Path:
    """The dataset folder: the real one, or the simulated one (written now if missing)."""
    if recipe.data.path is not None:
        if not recipe.data.path.is_dir():
            raise FileNotFoundError(f"data folder not found: '{recipe.data.path}'")
        return recipe.data.path
    from acquire_vf.simulate import Realism, ensure_dataset

    sim = recipe.data.simulated
    root = simulated_root(recipe)
    realism = sim.realism()
    return ensure_dataset(recipe.data.simulate or "bbbc022", root, fields=sim.fields,
                          seed=sim.seed, size=(sim.size[1], sim.size[0]),
                          realism=Realism(**realism) if realism else None)  # type: ignore[arg-type]


def load_pairs(recipe: Recipe, root: Path | None = None, *,
               require_splits: bool = True) -> PairedData:
    """The recipe's pairs (its dataset written first when it is simulated)."""
    return read_pairs(recipe.data, root or data_root(recipe), seed=recipe.seed,
                      require_splits=require_splits)


class PatchSampler:
    """Random normalised patches from a list of pairs (deterministic in its generator)."""

    def __init__(self, data: PairedData, pairs: list[Pair], patch: int, *, augment: bool,
                 equalize: bool = False) -> None:
        if equalize:  # each whole frame, as inference equalises it (never a patch)
            import dataclasses

            from acquire_vf.inference import equalise

            pairs = [dataclasses.replace(p, inputs=np.stack([equalise(c) for c in p.inputs]))
                     for p in pairs]
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
            inputs = np.asarray(inputs, np.float32)  # equalised whole in __init__
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
