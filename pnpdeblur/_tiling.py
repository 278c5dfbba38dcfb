"""Apply an image-to-image function in overlapping tiles, so memory does not grow with the photo.

:func:`apply_in_tiles` cuts ``(N, C, H, W)`` images into ``tile``² pieces that overlap by
``2 * overlap`` pixels, runs the function on each piece and keeps, of each output piece, only
what lies at least ``overlap`` pixels inside the cuts (a piece's edges on the image's own
borders are kept whole). For a function whose output pixel depends only on inputs within
``overlap`` pixels of it (a fully convolutional network with that receptive-field radius, e.g.
a depth-d DnCNN of 3×3 convolutions has radius d) and that pads the image's own borders the same
way whatever its size, the result equals the function applied to the whole image (up to float
rounding). For a wider receptive field (U-Nets) it is an approximation whose error falls with
``overlap``.
"""
from __future__ import annotations

from typing import Callable, List

import torch

__all__ = ["window_starts", "tile_starts", "balanced_tile", "apply_in_tiles"]


def window_starts(size: int, tile: int, step: int) -> List[int]:
    """First indices of ``tile``-long windows ``step`` apart along an axis of ``size``, the last
    one ending at ``size`` (one window at 0 when ``size <= tile``)."""
    if step < 1:  # range() would raise on 0 and return nothing for a negative step: a gap
        raise ValueError(f"step must be >= 1, got {step}")
    if size <= tile:
        return [0]
    return list(range(0, size - tile, step)) + [size - tile]


def tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    """First indices of the tiles along one axis of length ``size``.

    Consecutive tiles start ``tile - 2 * overlap`` apart and the last one ends at ``size``, so
    the kept parts (see the module docstring) cover the axis without a gap.
    """
    return window_starts(size, tile, tile - 2 * overlap)


def balanced_tile(size: int, tile: int, overlap: int) -> int:
    """The shortest piece length that covers an axis of ``size`` in as many pieces as ``tile``.

    ``n = len(tile_starts(size, tile, overlap))`` pieces of length ``p`` cover the axis when
    ``n·(p - 2·overlap) + 2·overlap >= size``, so ``p = 2·overlap + ceil((size - 2·overlap) / n)``,
    which is at most ``tile``. ``size`` itself when it is no longer than ``tile`` (one piece).
    """
    if size <= tile:
        return size
    n = len(tile_starts(size, tile, overlap))
    return 2 * overlap + -(-(size - 2 * overlap) // n)


def _kept(start: int, tile: int, size: int, overlap: int):
    """The part of a tile that is kept: image indices [lo, hi)."""
    end = min(start + tile, size)
    lo = start + overlap if start > 0 else 0
    hi = end - overlap if end < size else size
    return lo, hi


def apply_in_tiles(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int,
                   overlap: int) -> torch.Tensor:
    """``fn(x)`` computed tile by tile (see the module docstring).

    Parameters
    ----------
    fn : callable
        Maps an ``(N, C, h, w)`` tensor to an ``(N, C', h, w)`` tensor (same spatial size).
    x : torch.Tensor
        ``(N, C, H, W)``.
    tile : int
        Longest side of the pieces ``fn`` sees, > ``2 * overlap``; along each axis the pieces
        have the length :func:`balanced_tile` gives. An image no larger than ``tile`` on either
        side is passed to ``fn`` whole.
    overlap : int
        Margin (px) discarded at each cut, >= 0.

    Returns
    -------
    torch.Tensor
        ``(N, C', H, W)``, in ``fn``'s output dtype and device.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or isinstance(overlap, bool) or not isinstance(overlap, int):
        raise TypeError(f"tile and overlap must be ints, got {type(tile).__name__} and {type(overlap).__name__}")
    if overlap < 0 or tile <= 2 * overlap:
        raise ValueError(f"tile must be > 2·overlap and overlap >= 0, got tile={tile}, overlap={overlap}")
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return fn(x)
    out = None
    th, tw = balanced_tile(h, tile, overlap), balanced_tile(w, tile, overlap)
    for y0 in tile_starts(h, th, overlap):
        ky0, ky1 = _kept(y0, th, h, overlap)
        for x0 in tile_starts(w, tw, overlap):
            kx0, kx1 = _kept(x0, tw, w, overlap)
            piece = fn(x[..., y0:y0 + th, x0:x0 + tw])
            if piece.shape[-2:] != (th, tw):
                raise ValueError(f"fn must keep the spatial size, got {tuple(piece.shape[-2:])} for a "
                                 f"{(th, tw)} piece")
            if out is None:
                out = piece.new_empty(piece.shape[:-2] + (h, w))
            out[..., ky0:ky1, kx0:kx1] = piece[..., ky0 - y0:ky1 - y0, kx0 - x0:kx1 - x0]
    return out
