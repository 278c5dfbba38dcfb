"""Synthetic camera-shake kernels: one blur kernel (PSF) for the whole image, from a random
smooth camera path.

A hand-held camera that shakes during the exposure blurs a distant scene with one kernel: the
image of the camera's path, each point weighted by the time spent there. Such paths are
curved and uneven in speed (Levin et al. 2009 recorded some), unlike the straight segment of a
line kernel. Here the path is a random walk with momentum: the velocity is a smoothed sequence
of Gaussian accelerations, so the path turns and changes speed smoothly; it is scaled so that
its larger extent equals ``extent`` pixels and drawn into a ``size``×``size`` grid with bilinear
weights.

Conventions: the kernel is a ``(size, size)`` float64 numpy array, non-negative, summing to 1,
in the convolution convention of :class:`pnpdeblur.operators.Convolution` (``y = x ⊛ k``), its
mass centred (centroid within half a pixel of the central pixel).
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ._utils import as_generator

if TYPE_CHECKING:  # a torch.Generator seeds it too (as_generator)
    import torch

__all__ = ["random_shake_kernel"]

# Steps of the path: enough that neighbouring samples are < 0.1 px apart at any size used.
_STEPS = 2000
# Velocity memory per step (a low-pass on the accelerations): smooth turns, not jitter.
_MOMENTUM = 0.999


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd int >= 3 (pixels), got {size!r}")
    return int(size)


def random_shake_kernel(
    size: int,
    extent: Optional[float] = None,
    seed: Union[int, np.random.Generator, torch.Generator, None] = None,
) -> np.ndarray:
    """A random camera-shake kernel.

    Parameters
    ----------
    size : int
        Odd side length of the kernel, pixels.
    extent : float, optional
        Larger side of the path's bounding box, pixels, in ``[0, size - 3]``; default drawn
        uniformly from ``[(size - 3) / 2, size - 3]``. 0 gives the identity kernel. A lopsided path,
        centred on its mass, may need to be drawn smaller to fit the grid.
    seed : int, numpy.random.Generator or torch.Generator, optional
        Randomness (same seed, same kernel).

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float64, non-negative, sum 1, centred.
    """
    size = _check_size(size)
    rng = as_generator(seed)  # checked as every generator of pnpdeblur.data checks it
    if extent is None:
        extent = rng.uniform((size - 3) / 2.0, size - 3.0)
    if isinstance(extent, bool) or not isinstance(extent, numbers.Real) or not 0 <= extent <= size - 3:
        raise ValueError(f"extent must be a number in [0, size - 3] = [0, {size - 3}], got {extent!r}")

    accel = rng.standard_normal((_STEPS, 2))
    velocity = np.empty_like(accel)
    v = rng.standard_normal(2) * 20.0  # an initial drift, so paths are not all tight curls
    for t in range(_STEPS):
        v = _MOMENTUM * v + accel[t]
        velocity[t] = v
    path = np.cumsum(velocity, axis=0)
    path = path - path.mean(axis=0)  # centroid (time average) at the kernel's centre
    span = float((path.max(axis=0) - path.min(axis=0)).max())
    reach = float(np.abs(path).max())
    c = (size - 1) / 2.0
    # the larger side of the box is `extent`, unless the path, centred on its mass, would then
    # leave the grid (a lopsided path): then it is shrunk to fit
    scale = min(float(extent) / span, (c - 1.0) / reach) if span > 0 else 0.0
    path = path * scale

    k = np.zeros((size, size))
    # bilinear splatting: each path sample spreads its time over the 4 nearest pixels
    x, y = path[:, 0] + c, path[:, 1] + c
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            np.add.at(k, (y0 + dy, x0 + dx), wy * wx)
    return k / k.sum()
