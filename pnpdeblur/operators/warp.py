"""Warp-based reblur (Reblur2Deblur's faster alternative to the per-pixel kernel)."""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ._flow import as_flow_pair, check_tau, pad_flow
from .base import LinearOperator, check_width

__all__ = ["WarpBlur"]


def _bilinear_taps(flow: torch.Tensor, scale: float):
    """Corner indices and weights of bilinear sampling at p + scale·flow(p), clamped.

    Parameters
    ----------
    flow : tensor, shape (N, 2, H, W)
    scale : float

    Returns
    -------
    index : list of 4 int64 tensors, shape (N, H*W)
        Flat indices of the four corners.
    weight : list of 4 tensors, shape (N, H*W), flow's dtype
        Their bilinear weights (differentiable in the flow; sum to 1).
    """
    n, _, h, w = flow.shape
    dev, dt = flow.device, flow.dtype
    gy, gx = torch.meshgrid(torch.arange(h, device=dev, dtype=dt), torch.arange(w, device=dev, dtype=dt), indexing="ij")
    # Clamping the position replicates the border (a clamped coordinate gets no gradient).
    px = (gx + scale * flow[:, 0]).clamp(0, w - 1).reshape(n, -1)
    py = (gy + scale * flow[:, 1]).clamp(0, h - 1).reshape(n, -1)
    # The lower corner stays one below the last pixel so that p = W-1 is weight 1 on it.
    x0 = px.detach().floor().clamp(max=max(w - 2, 0))
    y0 = py.detach().floor().clamp(max=max(h - 2, 0))
    fx, fy = px - x0, py - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    index = [y0 * w + x0, y0 * w + x1, y1 * w + x0, y1 * w + x1]
    weight = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    return index, weight


class WarpBlur(LinearOperator):
    """Average of the image warped to ``n`` positions along each of two flows.

    ``y(p) = (x(p) + sum_{j=1..n} [x(p + τ j/n · f_next(p)) + x(p + τ j/n · f_prev(p))]) / (2n + 1)``

    with bilinear sampling and replicated borders (sample coordinates are clamped to
    the image). This is the warp-based blur formation of Reblur2Deblur: cheaper than
    :class:`TwoSegmentBlur`, and a discretisation of it. The adjoint is the exact
    transpose of the bilinear sampling (a scatter of the same weights).

    Parameters
    ----------
    flow_next, flow_prev : array, shape (N, 2, H, W) or (2, H, W), float
        Flows to the next and previous frames (u right, v down) in pixels.
    n : int >= 1
        Samples along each flow.
    tau : float in (0, 1], default 1.0
        Fraction of the flow covered on each side, as in :class:`TwoSegmentBlur`.
    """

    def __init__(self, flow_next: Any, flow_prev: Any, n: int = 8, tau: float = 1.0):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be an int >= 1, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.flow_next, self.flow_prev = as_flow_pair(flow_next, flow_prev)
        self.n, self.tau = int(n), check_tau(tau)
        nb, _, h, w = self.flow_next.shape
        self.image_shape = (nb, h, w)

    def reach(self) -> int:
        """``ceil(τ·max(|u|, |v|)) + 1`` over both flows: the farthest sample, plus the
        bilinear neighbour."""
        biggest = max(float(self.flow_next.detach().abs().max()), float(self.flow_prev.detach().abs().max()))
        return int(math.ceil(self.tau * biggest)) + 1 if biggest > 0 else 0

    def padded(self, width: int) -> "WarpBlur":
        width = check_width(width)
        return WarpBlur(pad_flow(self.flow_next, width), pad_flow(self.flow_prev, width), self.n, self.tau)

    def _taps(self, like: torch.Tensor):
        """Bilinear taps of the 2n warps, one (index, weight) pair per sample position."""
        batch = like.shape[0]
        if self.image_shape[0] not in (1, batch):
            raise ValueError(f"x has batch size {batch}, but the flows have {self.image_shape[0]}")
        for f in (self.flow_next, self.flow_prev):
            f = f.to(device=like.device, dtype=like.dtype)
            for j in range(1, self.n + 1):
                yield _bilinear_taps(f, self.tau * j / self.n)

    # Explicit gather/scatter rather than grid_sample: the adjoint is then an exact
    # transpose built from ops that autograd differentiates to any order on every torch
    # (grid_sample's backward has no derivative in torch 2.11, for one).
    def _forward(self, x):
        n, c, h, w = x.shape
        xf = x.reshape(n, c, h * w)
        out = xf
        for index, weight in self._taps(x):
            for i, wt in zip(index, weight):
                src = xf.gather(2, i.expand(n, -1)[:, None].expand(n, c, -1))
                out = out + wt.expand(n, -1)[:, None] * src
        return (out / (2 * self.n + 1)).reshape(n, c, h, w)

    def _adjoint(self, y):
        n, c, h, w = y.shape
        yf = y.reshape(n, c, h * w)
        out = yf
        for index, weight in self._taps(y):
            for i, wt in zip(index, weight):
                contrib = wt.expand(n, -1)[:, None] * yf
                out = out.scatter_add(2, i.expand(n, -1)[:, None].expand(n, c, -1), contrib)
        return (out / (2 * self.n + 1)).reshape(n, c, h, w)
