"""Lengths of the 2-vectors of flow fields, fast on the CPU.

On the CPU, ``torch.linalg.vector_norm(f, dim=1)`` of a flow ``(N, 2, H, W)`` reduces
over a strided axis of size 2, and torch (2.13, CPU build) takes ~100x longer for that
than for the same reduction over a contiguous last axis: 0.16 s instead of 1.5 ms for one
1280×720 flow. Every per-call helper that measures flow lengths goes through
:func:`vector_length` instead.
"""
from __future__ import annotations

import torch

__all__ = ["vector_length", "longest_vector"]


def vector_length(v: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Euclidean length of the vectors along ``dim`` (any size; flows have 2).

    Parameters
    ----------
    v : Tensor, float
        Vectors stored along axis ``dim`` (e.g. a flow ``(N, 2, H, W)`` with ``dim=1``).
    dim : int
        The axis holding the components.

    Returns
    -------
    Tensor
        ``v``'s shape without ``dim``, the dtype of ``v``. Differentiable, with a zero (not
        NaN) gradient where a vector is exactly zero, as ``torch.linalg.vector_norm``.
    """
    # the same reduction as vector_norm(v, dim=dim), over a contiguous last axis (fast path)
    return torch.linalg.vector_norm(v.movedim(dim, -1).contiguous(), dim=-1)


def longest_vector(v: torch.Tensor, dim: int = 1) -> float:
    """The largest length of the 2-vectors along ``dim`` as a float (0.0 for an empty ``v``).

    Evaluated in float64 as ``sqrt(max(u² + v²))``: the square root is monotone and
    correctly rounded, so this is exactly the largest of the lengths that a float64
    kernel computes as ``sqrt(u*u + v*v)`` from the same values.
    """
    if v.shape[dim] != 2:
        raise ValueError(f"expected 2-vectors along dim {dim}, got {v.shape[dim]} components")
    if v.numel() == 0:
        return 0.0
    v = v.detach().to(torch.float64)
    u, w = v.select(dim, 0), v.select(dim, 1)
    return float(torch.sqrt((u * u + w * w).max()))
