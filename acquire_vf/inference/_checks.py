"""Input checks beyond the intensity range: is this frame like the engine's training data?

The card holds, per input channel, statistics of the frames the engine was judged on
(``input_stats``, written by ``evaluate --update-card``): the spread of frame mean intensity
and focus score, and the mean histogram of normalised intensities with the largest distance
a data frame had from it. A live input frame is flagged

- ``input_dim``: its mean is below half the dimmest data frame's (low dose, a failing lamp);
- ``input_focus_outside``: its focus score is outside the data's range (x0.5 to x2);
- ``input_histogram_far``: its histogram is farther from the data's mean histogram than twice
  the farthest data frame, and than :data:`HIST_FLOOR`: another stain, sample or exposure.
  (Smaller fields vary more: on the simulated slide, 192 x 192 windows reach 0.2 where the
  256 x 256 held-out fields reach 0.1; a tenth of the light gives 0.64 to 0.76, another cell
  type 0.2 to 0.56 in at least one input.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from acquire_vf.card import ModelCard, Normalisation
from acquire_vf.focus import focus_score

HIST_RANGE = (-1.5, 1.5)
HIST_BINS = 32
HIST_FLOOR = 0.3
"""Smallest Jensen-Shannon distance that flags a histogram as far."""
INPUT_FLAGS = ("input_dim", "input_focus_outside", "input_histogram_far")


def histogram(pixels: np.ndarray, norm: Normalisation) -> np.ndarray:
    """Normalised-intensity histogram of a frame (a probability vector; subsampled)."""
    x = norm.forward(pixels[::4, ::4])
    h, _ = np.histogram(np.clip(x, *HIST_RANGE), bins=HIST_BINS, range=HIST_RANGE)
    return h / max(h.sum(), 1)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2; 0 same, 1 disjoint)."""
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def input_stats(frames: Sequence[np.ndarray], norm: Normalisation) -> dict[str, Any]:
    """The statistics a card keeps for one input channel, from data frames of it."""
    means = np.array([float(f.mean()) for f in frames])
    focus = np.array([focus_score(f, step=4) for f in frames])
    hists = np.array([histogram(f, norm) for f in frames])
    ref = hists.mean(axis=0)
    return {"n_frames": len(frames), "mean_min": float(means.min()),
            "mean_median": float(np.median(means)), "focus_min": float(focus.min()),
            "focus_max": float(focus.max()), "histogram": [round(float(v), 6) for v in ref],
            "histogram_distance_max": float(max(js_distance(h, ref) for h in hists))}


def check_inputs(card: ModelCard, frames: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The input flags for one frame set (empty when the card has no ``input_stats``)."""
    out: dict[str, Any] = {}
    for name, pixels in frames.items():
        st = card.input_stats.get(name)
        if not st:
            continue
        mean = float(pixels[::4, ::4].mean())
        score = focus_score(pixels, step=4)
        dist = js_distance(histogram(pixels, card.normalisation[name]),
                           np.asarray(st["histogram"]))
        out[f"input_mean:{name}"] = round(mean, 2)
        out[f"input_histogram_distance:{name}"] = round(dist, 4)
        if mean < 0.5 * st["mean_min"]:
            out["input_dim"] = True
        if not 0.5 * st["focus_min"] <= score <= 2.0 * st["focus_max"]:
            out["input_focus_outside"] = True
        if dist > max(2.0 * st["histogram_distance_max"], HIST_FLOOR):
            out["input_histogram_far"] = True
    return out
