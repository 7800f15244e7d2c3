"""Defocus estimators at inference: one frame in, its defocus out (µm). A fluorescence
estimator gives the distance from focus (unsigned: at low NA the widefield PSF is symmetric
about focus, see training/_defocus.py; the closed-loop controller supplies the sign); a
brightfield one (card ``defocus.signed``) gives the signed defocus, above focus positive.

The card (task ``defocus``) says what the estimator was trained on: its stain, range, pixel
size, NA and wavelength. A frame is cut into up to nine crops of ``crop`` pixels, each scaled
by its own robust range (:func:`frame_normalise`, exactly as training scales its patches: a
vignetted frame scaled whole gives its corners another range than training ever showed); their
estimates are combined by inverse-variance weighting and the spread is the larger of the
crops' own and their disagreement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquire_vf.card import CardError, ModelCard

CROP = 96
"""Crop size when the card does not say (the training patch)."""


def frame_normalise(pixels: np.ndarray) -> np.ndarray:
    """``(x - p1) / (p99.5 - p1)`` of the frame itself, float32 (exposure-independent)."""
    x = np.asarray(pixels, np.float32)
    lo, hi = np.percentile(x[::2, ::2], (1.0, 99.5))
    out = x - np.float32(lo)
    out /= np.float32(max(float(hi - lo), 1.0))
    return out


def crops(pixels: np.ndarray, size: int, multiple: int, most: int = 3) -> list[np.ndarray]:
    """Crops of ``size`` (the training patch, a multiple of ``multiple``) on a grid of up to
    ``most`` x ``most`` over the frame: the network judges patches as it learnt them (its
    scale does not carry over to a larger field: whole 256 x 256 frames read 0.7x the
    distance)."""
    h, w = pixels.shape
    s = max(multiple, (min(size, h, w) // multiple) * multiple)
    ys = np.linspace(0, h - s, max(1, min(most, h // s))).astype(int)
    xs = np.linspace(0, w - s, max(1, min(most, w // s))).astype(int)
    return [pixels[y:y + s, x:x + s] for y in ys for x in xs]


class DefocusEstimator:
    """``estimate(pixels) -> (defocus_um, sigma_um)`` over any :class:`Runner`: the distance
    from focus, or the signed defocus where the card says ``signed``."""

    def __init__(self, card: ModelCard, runner: Any, *, crop: int = CROP) -> None:
        if card.task != "defocus":
            raise ValueError(f"'{card.name}' is a {card.task} engine, not a defocus estimator")
        self.card, self.runner = card, runner
        self.crop = int(card.defocus.get("patch", crop))
        self.backend, self.precision = runner.backend, runner.precision
        self.range_um = float(card.defocus.get("range_um", 20.0))
        self.signed = bool(card.defocus.get("signed", False))
        """Whether :meth:`estimate` gives the signed defocus, not the distance."""

    def estimate(self, pixels: np.ndarray) -> tuple[float, float]:
        x = np.asarray(pixels, np.float32)  # each crop scaled by its own range, as in training
        batch = np.stack([frame_normalise(c) for c in crops(x, self.crop,
                                                            self.card.multiple_of)])[:, None]
        out = np.asarray(self.runner.run(np.ascontiguousarray(batch)), np.float64)
        mu, sigma = out[:, 0], np.exp(out[:, 1])
        w = 1.0 / sigma**2
        mean = float(np.sum(w * mu) / np.sum(w))
        if not self.signed:
            mean = max(0.0, mean)
        spread = float(np.sqrt(1.0 / np.mean(w)))
        if len(mu) > 1:
            spread = max(spread, float(np.std(mu)))
        return mean, spread

    def warmup(self) -> None:
        self.estimate(np.ones((self.crop, self.crop), np.float32))

    def close(self) -> None:
        self.runner.close()


def create_estimator(path: str | Path, compute: Any, backend: str | None = None,
                     host: Any = None) -> DefocusEstimator:
    from acquire_vf.inference._factory import any_runner

    card = ModelCard.load(Path(path))
    # beside the pipeline's engine: its own few threads, never spinning (Compute's fields)
    compute = compute.model_copy(update={
        "threads": compute.estimator_threads or compute.threads, "spin": False})
    return DefocusEstimator(card, any_runner(Path(path), card, compute, backend=backend,
                                             tile=CROP, batch=4, host=host))


def create_estimator_beside(model: Path, stain: str, compute: Any) -> DefocusEstimator | None:
    """:func:`create_estimator` of the estimator :func:`estimator_beside` finds, if any."""
    found = estimator_beside(model, stain)
    return create_estimator(found, compute) if found is not None else None


def estimator_beside(model: Path, stain: str) -> Path | None:
    """The defocus estimator of ``stain`` shipped beside the engine ``model`` (a card in the
    same folder whose task is ``defocus`` and whose ``defocus.stain`` is ``stain``), if any:
    what the refocus gate decides by when no closed loop seeds it (``predict``)."""
    for card_path in sorted(Path(model).parent.glob("*.json")):
        try:
            card = ModelCard.load(card_path.with_suffix(".onnx"), verify=False)
        except CardError:  # a JSON that is no card (a choice record, a report): not ours
            continue
        if card.task == "defocus" and card.defocus.get("stain") == stain:
            return card_path.with_suffix(".onnx")
    return None
