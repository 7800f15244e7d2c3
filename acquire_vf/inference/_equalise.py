"""Histogram equalisation of a whole input frame, as the paper prepared its MDA-MB-231 inputs.

An engine whose recipe says ``[train] equalize = true`` learned from inputs equalised frame by
frame (their 256-bin cumulative histogram, mapped to [-1, 1]) instead of scaled by the
dataset's range; its card says so (``training.equalize_inputs``) and inference equalises each
frame the same way before tiling. The whole frame, never a tile or a training patch: a patch's
histogram is not its frame's, and an engine would see different inputs live than in training.
It makes an engine indifferent to the input's exposure and gain.
"""

from __future__ import annotations

import numpy as np


def equalise(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` (2-D) equalised over the whole frame, float32 in [-1, 1]."""
    from skimage.exposure import equalize_hist

    return (equalize_hist(np.asarray(pixels, np.float64)) * 2.0 - 1.0).astype(np.float32)
