"""Warp-based reblur (Reblur2Deblur's faster alternative to the per-pixel kernel)."""
from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from ._flow import as_flow_pair, check_tau
from .base import LinearOperator

__all__ = ["WarpBlur"]


def _sample_grid(flow: torch.Tensor, scale: float) -> torch.Tensor:
    """Normalised grid for ``grid_sample`` at p + scale·flow(p); flow (N, 2, H, W)."""
    n, _, h, w = flow.shape
    dev, dt = flow.device, flow.dtype
    gy, gx = torch.meshgrid(torch.arange(h, device=dev, dtype=dt), torch.arange(w, device=dev, dtype=dt), indexing="ij")
    px = gx + scale * flow[:, 0]
    py = gy + scale * flow[:, 1]
    # align_corners=True maps pixel centres 0 and W-1 to -1 and +1; a 1-pixel axis maps to 0.
    nx = 2 * px / (w - 1) - 1 if w > 1 else torch.zeros_like(px)
    ny = 2 * py / (h - 1) - 1 if h > 1 else torch.zeros_like(py)
    return torch.stack([nx, ny], -1)


class WarpBlur(LinearOperator):
    """Average of the image warped to ``n`` positions along each of two flows.

    ``y(p) = (x(p) + sum_{j=1..n} [x(p + τ j/n · f_next(p)) + x(p + τ j/n · f_prev(p))]) / (2n + 1)``

    with bilinear sampling and replicated borders (sample coordinates are clamped to
    the image). This is the warp-based blur formation of Reblur2Deblur: cheaper than
    :class:`TwoSegmentBlur`, and a discretisation of it. The adjoint is the exact
    transpose of the bilinear sampling (computed as its vector-Jacobian product).

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

    def _grids(self, like: torch.Tensor, batch: int):
        if self.image_shape[0] not in (1, batch):
            raise ValueError(f"x has batch size {batch}, but the flows have {self.image_shape[0]}")
        grids = []
        for f in (self.flow_next, self.flow_prev):
            f = f.to(device=like.device, dtype=like.dtype)
            for j in range(1, self.n + 1):
                g = _sample_grid(f, self.tau * j / self.n)
                grids.append(g.expand(batch, *g.shape[1:]))
        return grids

    def _forward(self, x):
        out = x
        for g in self._grids(x, x.shape[0]):
            out = out + F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=True)
        return out / (2 * self.n + 1)

    def _adjoint(self, y):
        # The forward is linear in x, so its vector-Jacobian product at any point is the
        # exact transpose; create_graph keeps the adjoint differentiable (in y and flows).
        needs_graph = torch.is_grad_enabled() and (
            y.requires_grad or self.flow_next.requires_grad or self.flow_prev.requires_grad
        )
        # inference_mode(False): under torch.inference_mode() autograd would record nothing.
        with torch.inference_mode(False), torch.enable_grad():
            z = torch.zeros(y.shape, dtype=y.dtype, device=y.device, requires_grad=True)
            (out,) = torch.autograd.grad(self._forward(z), z, y.clone() if y.is_inference() else y,
                                         create_graph=needs_graph)
        return out
