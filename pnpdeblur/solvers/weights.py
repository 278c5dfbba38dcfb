"""Data-term weights for the splitting solvers: which observed pixels to trust.

The solvers' data term ``½ Σ w (K x − y)²`` assumes the linear model ``y = K x + n``. A
pixel the sensor clipped (a light, a specular highlight, a white sky) does not follow it:
its true value ``K x`` is above what was recorded, and fitting it anyway spreads ringing
over everything the blur links it to. Weighting such pixels by 0 removes them from the
data term (the outlier handling of Cho et al. 2011 and Whyte et al. 2014, in its simplest,
hard form); the pixels that were recorded unclipped still constrain the sharp image,
including the bright pixels near a clipped region, and the prior fills in the rest.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..backend import array_kind, check_finite, from_torch, to_torch
from ..operators.base import to_nchw

__all__ = ["saturation_weights", "DEFAULT_SATURATION"]

#: Observed values at or above this (images in [0, 1]) count as clipped: 8-bit 250–255.
#: Below 1 because JPEG coding and demosaicing spread a clipped region's edge a few levels
#: down (benchmarks/RESULTS.md, "Saturated pixels").
DEFAULT_SATURATION = 0.98


def saturation_weights(y: Any, threshold: float = DEFAULT_SATURATION, margin: int = 0) -> Any:
    """0/1 weights that leave clipped (saturated) pixels out of a solver's data term.

    Parameters
    ----------
    y : array
        The observed image: ``(H, W)``, ``(H, W, C)`` numpy/cupy, ``(C, H, W)`` torch or
        ``(N, C, H, W)``; float in [0, 1] or uint8 (compared as ``y / 255``).
    threshold : float
        A channel value at or above it is taken as clipped (default
        :data:`DEFAULT_SATURATION`). Each channel is judged alone: a red light clips the red
        channel first.
    margin : int
        Also leave out pixels within ``margin`` px (a square neighbourhood) of a clipped
        one in the same channel, for sensors whose clipping bleeds into its neighbours.

    Returns
    -------
    array
        Weights of ``y``'s shape, type, layout and device: 1.0 for a pixel to trust, 0.0 for
        one to leave out; float32 for uint8 input, else ``y``'s dtype. Pass them as
        ``weights`` to :func:`~pnpdeblur.solvers.hqs` or :func:`~pnpdeblur.solvers.admm`.

    Examples
    --------
    >>> w = saturation_weights(y)                          # doctest: +SKIP
    >>> x = pd.solvers.hqs(y, K, prior, noise_level=0.01, weights=w).x
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (images in [0, 1]), got {threshold!r}")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    kind = array_kind(y, "y")
    t = to_torch(y, "y")
    if t.dtype == torch.uint8:
        t = t.to(torch.float32) / 255.0
    elif not t.is_floating_point():
        raise TypeError(f"y must be uint8 or float, got dtype {t.dtype}")
    t4, restore = to_nchw(t, kind, "y")
    check_finite(t4, "y")
    clipped = t4 >= threshold
    if margin > 0 and bool(clipped.any()):
        k = 2 * margin + 1
        clipped = F.max_pool2d(clipped.to(torch.float32), k, stride=1, padding=margin) > 0
    return from_torch(restore((~clipped).to(t4.dtype)), kind)
