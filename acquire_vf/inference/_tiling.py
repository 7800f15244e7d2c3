"""Cut frames into overlapping tiles, run them in batches, blend them back without seams.

Tiles overlap by ``overlap`` pixels; each tile's output is weighted by a separable ramp that
rises smoothly (raised cosine) across the overlap and is flat inside, and the weighted sum is
divided by the summed weights. Every output pixel is therefore a convex combination of the
tiles covering it, with weights that change smoothly, so no seam is visible. Each tile's
outermost quarter-overlap gets no weight (convolutions' zero padding corrupts it), so a network
whose receptive field fits in that margin is reproduced exactly, seams included. Frames
smaller than a tile, or whose size is not a multiple of the network's, are padded (reflect)
and cropped back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

from acquire_vf.card import pad_to_multiple


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis so tiles of ``tile`` cover ``length`` with >= ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1-D blending weight over a tile: 0 on the outer quarter of the overlap (pixels that a
    convolution's zero padding corrupts), a raised cosine across the middle half, 1 inside.

    Two neighbouring tiles' weights are mirror images across their overlap, so every pixel has
    a positive total weight and the blend is smooth.
    """
    w = np.ones(tile, np.float32)
    if overlap > 0:
        margin = overlap // 4
        span = overlap - 2 * margin
        t = (np.arange(span, dtype=np.float32) + 0.5) / span
        edge = np.concatenate([np.zeros(margin, np.float32), 0.5 - 0.5 * np.cos(np.pi * t),
                               np.ones(margin, np.float32)])
        w[:overlap] = edge
        w[-overlap:] = edge[::-1]
    return w


def tiles(shape: tuple[int, int], tile: int, overlap: int) -> Iterator[tuple[slice, slice]]:
    h, w = shape
    for y in tile_starts(h, tile, overlap):
        for x in tile_starts(w, tile, overlap):
            yield slice(y, y + tile), slice(x, x + tile)


def fit_tile(length: int, tile: int, overlap: int, multiple: int) -> int:
    """The smallest tile (a multiple of ``multiple``, at most ``tile``) that covers ``length``
    with as few tiles as ``tile`` would need: less area is computed twice."""
    if length <= tile:
        return tile
    n = -(-(length - overlap) // (tile - overlap))
    fitted = -(-(length + (n - 1) * overlap) // n)
    return min(tile, -(-fitted // multiple) * multiple)


def run_tiled(x: np.ndarray, run: Callable[[np.ndarray], np.ndarray], *, tile: int,
              overlap: int, batch: int, multiple: int, into: np.ndarray | None = None
              ) -> np.ndarray:
    """Apply ``run`` (N, C, t, t) -> (N, 1, t, t) to a (C, H, W) image by blended tiles.

    Returns (H, W) float32. ``tile`` must be a multiple of ``multiple``; it is shrunk to fit
    the frame evenly (:func:`fit_tile`), square, so batches keep one shape. ``into``, a flat
    float32 buffer of at least H x W elements (:func:`stitched_shape`), receives the
    stitching (the result is then a view of it): the engine host stitches into its shared
    memory.
    """
    if tile % multiple:
        raise ValueError(f"tile {tile} must be a multiple of {multiple}")
    tile = max(fit_tile(x.shape[-2], tile, overlap, multiple),
               fit_tile(x.shape[-1], tile, overlap, multiple))
    c, h, w = x.shape
    th, tw = max(h, tile), max(w, tile)
    if h < tile or w < tile:  # smaller than one tile: pad up to the tile
        x = np.pad(x, ((0, 0), (0, th - h), (0, tw - w)), mode="symmetric")
    x, _ = pad_to_multiple(x, multiple)
    H, W = x.shape[-2:]
    if tile >= H and tile >= W:
        return run(x[None])[0, 0, :h, :w]
    if into is not None and into.size >= H * W:
        out = into[:H * W].reshape(H, W)
        out.fill(0.0)
    else:
        out = np.zeros((H, W), np.float32)
    boxes, weights = (_blend_weights if H * W <= CACHE_PIXELS else
                      _blend_weights.__wrapped__)(H, W, tile, overlap)
    # a runner in another process lends its shared memory: tiles are cut straight into it
    lend = getattr(getattr(run, "__self__", None), "input_buffer", None)
    for i in range(0, len(boxes), batch):
        chunk = range(i, min(i + batch, len(boxes)))
        if lend is not None:
            xb = lend((len(chunk), c, tile, tile))
            for j, k in enumerate(chunk):
                xb[j] = x[:, boxes[k][0], boxes[k][1]]
        else:
            xb = np.stack([x[:, boxes[k][0], boxes[k][1]] for k in chunk])
        y = run(xb)
        for k, t in zip(chunk, y[:, 0], strict=True):
            out[boxes[k]] += t * weights[k]
    return out[:h, :w]


def stitched_shape(shape: tuple[int, ...], tile: int, overlap: int, multiple: int
                   ) -> tuple[int, int]:
    """The (H, W) :func:`run_tiled` stitches a frame of ``shape`` (.., h, w) into: padded to
    the tile where smaller, and to ``multiple``."""
    h, w = shape[-2:]
    tile = max(fit_tile(h, tile, overlap, multiple), fit_tile(w, tile, overlap, multiple))
    return (-(-max(h, tile) // multiple) * multiple, -(-max(w, tile) // multiple) * multiple)


CACHE_PIXELS = 4096 * 4096
"""Frames up to this size keep their blending weights cached (live frames repeat one
geometry); larger ones (offline prediction of mosaics) compute them per call."""


@lru_cache(maxsize=4)
def _blend_weights(H: int, W: int, tile: int, overlap: int,
                   ) -> tuple[list[tuple[slice, slice]], list[np.ndarray]]:
    """The tiles of an H x W frame and each one's blending weight, already divided by the
    summed weight of all tiles, so stitching is one multiply-add per tile."""
    wy = ramp(tile, overlap)
    win = np.outer(wy, wy)
    boxes = list(tiles((H, W), tile, overlap))
    raw = [_edge_aware(win, sy, sx, H, W, overlap, wy) for sy, sx in boxes]
    total = np.zeros((H, W), np.float32)
    for box, wt in zip(boxes, raw, strict=True):
        total[box] += wt
    weights = [wt / np.maximum(total[box], 1e-12) for box, wt in zip(boxes, raw, strict=True)]
    for wt in weights:
        wt.setflags(write=False)  # shared between calls
    return boxes, weights


def _edge_aware(win: np.ndarray, sy: slice, sx: slice, H: int, W: int, overlap: int,
                wy: np.ndarray) -> np.ndarray:
    """At the frame's own edges no other tile overlaps: keep full weight there."""
    if overlap == 0:
        return win
    ry, rx = wy.copy(), wy.copy()
    if sy.start == 0:
        ry[:overlap] = 1.0
    if sy.stop == H:
        ry[-overlap:] = 1.0
    if sx.start == 0:
        rx[:overlap] = 1.0
    if sx.stop == W:
        rx[-overlap:] = 1.0
    return np.outer(ry, rx)
