"""Validation of flow fields given to the per-pixel operators."""
from __future__ import annotations

import numbers
from typing import Any

import torch

from ..backend import array_kind, check_finite, check_float, to_torch

__all__ = ["MAX_FLOW", "as_flow", "as_flow_pair", "check_tau", "pad_flow"]

#: Largest |u| or |v| (pixels) the per-pixel operators accept. Kernels longer than
#: this are outside what the papers use (±46 px) and would make every tap loop slow.
MAX_FLOW = 64.0


def as_flow(flow: Any, name: str = "flow", max_abs: float = MAX_FLOW) -> torch.Tensor:
    """Return ``flow`` as a float torch tensor of shape ``(N, 2, H, W)``.

    Accepts ``(N, 2, H, W)`` or ``(2, H, W)`` numpy, torch or cupy arrays of float32
    or float64. Raises ``TypeError`` for other dtypes and ``ValueError`` for a wrong
    shape, NaN/Inf, or a component beyond ``max_abs`` pixels.
    """
    array_kind(flow, name)  # TypeError for non-arrays
    f = to_torch(flow, name)
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[1] != 2:
        raise ValueError(
            f"{name} must have shape (N, 2, H, W) or (2, H, W) with channels (u, v), "
            f"got shape {tuple(f.shape)}"
        )
    if f.shape[0] < 1 or f.shape[2] < 1 or f.shape[3] < 1:
        raise ValueError(f"{name} must have a non-empty batch and image grid, got shape {tuple(f.shape)}")
    check_float(f, name, image=False)
    check_finite(f, name)
    biggest = float(f.detach().abs().max())
    if biggest > max_abs:
        raise ValueError(
            f"{name} has a component of {biggest:.3g} px; at most {max_abs:g} px is supported"
        )
    return f


def as_flow_pair(flow_next: Any, flow_prev: Any) -> tuple:
    """Validate the flows to the next and previous frames; they must have the same shape."""
    fn = as_flow(flow_next, "flow_next")
    fp = as_flow(flow_prev, "flow_prev")
    if fn.shape != fp.shape:
        raise ValueError(
            f"flow_next and flow_prev must have the same shape, got {tuple(fn.shape)} and {tuple(fp.shape)}"
        )
    return fn, fp


def check_tau(tau: Any) -> float:
    """Return ``tau`` as a float in (0, 1] or raise naming it."""
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise TypeError(f"tau must be a float in (0, 1], got {type(tau).__name__}")
    if not (0.0 < float(tau) <= 1.0):
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    return float(tau)


def pad_flow(flow: torch.Tensor, width: int) -> torch.Tensor:
    """An ``(N, 2, H, W)`` flow on the grid enlarged by ``width`` px per side, its border
    vectors repeated (the operators' :meth:`~pnpdeblur.operators.LinearOperator.padded`)."""
    if width == 0:
        return flow
    return torch.nn.functional.pad(flow, (width,) * 4, mode="replicate")
