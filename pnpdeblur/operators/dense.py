"""Slow, obviously-correct sparse-matrix builds of the operators (test reference only).

Each function returns a ``scipy.sparse.csr_matrix`` of shape ``(H*W, H*W)`` acting on one
image channel flattened in row-major order, built pixel by pixel from the kernel formulas
of docs/conventions.md evaluated over each kernel's full bounding box. Nothing here shares code with
the fast paths except the per-segment formula :func:`motion._segment_kernel`, which is
itself a direct transcription of the design card.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .motion import LUT_RANGE, _segment_kernel, motion_kernel_table

__all__ = [
    "motion_blur_matrix",
    "lut_blur_matrix",
    "two_segment_matrix",
    "warp_blur_matrix",
    "apply_matrix",
]


def _add_kernel(rows, cols, vals, H, W, i, j, K, scale=1.0):
    r = K.shape[0] // 2
    ky, kx = np.nonzero(K)
    ii = np.clip(i + ky - r, 0, H - 1)
    jj = np.clip(j + kx - r, 0, W - 1)
    rows.append(np.full(ky.size, i * W + j))
    cols.append(ii * W + jj)
    vals.append(scale * K[ky, kx])


def _build(H, W, rows, cols, vals):
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(H * W, H * W)
    )  # duplicates (clamped border taps) are summed


def motion_blur_matrix(flow: np.ndarray) -> sp.csr_matrix:
    """Matrix of the line-kernel :class:`MotionBlur` for one flow of shape (2, H, W)."""
    _, H, W = flow.shape
    rows, cols, vals = [], [], []
    for i in range(H):
        for j in range(W):
            _add_kernel(rows, cols, vals, H, W, i, j, _segment_kernel(flow[:, i, j], 0.0))
    return _build(H, W, rows, cols, vals)


def lut_blur_matrix(flow: np.ndarray) -> sp.csr_matrix:
    """Matrix of :meth:`MotionBlur.lut`: bilinear blend of the 33×33 table's kernels."""
    _, H, W = flow.shape
    table = motion_kernel_table()
    rows, cols, vals = [], [], []
    for i in range(H):
        for j in range(W):
            u, v = float(flow[0, i, j]), float(flow[1, i, j])
            u0 = min(max(int(np.floor(u)), -LUT_RANGE), LUT_RANGE - 1)
            v0 = min(max(int(np.floor(v)), -LUT_RANGE), LUT_RANGE - 1)
            fu, fv = u - u0, v - v0
            K = np.zeros_like(table[0, 0])
            for du, dv, wgt in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv),
                                (1, 1, fu * fv)):
                K += wgt * table[v0 + dv + LUT_RANGE, u0 + du + LUT_RANGE]
            _add_kernel(rows, cols, vals, H, W, i, j, K)
    return _build(H, W, rows, cols, vals)


def two_segment_matrix(flow_next: np.ndarray, flow_prev: np.ndarray, tau: float = 1.0) -> sp.csr_matrix:
    """Matrix of :class:`TwoSegmentBlur` for flows of shape (2, H, W).

    ``tau`` defaults to 1.0, the operator's default (Chen et al.'s exposure cycle).
    """
    _, H, W = flow_next.shape
    rows, cols, vals = [], [], []
    for i in range(H):
        for j in range(W):
            for f in (flow_next, flow_prev):
                _add_kernel(rows, cols, vals, H, W, i, j, _segment_kernel(tau * f[:, i, j], 0.5), 0.5)
    return _build(H, W, rows, cols, vals)


def warp_blur_matrix(flow_next: np.ndarray, flow_prev: np.ndarray, n: int, tau: float = 1.0) -> sp.csr_matrix:
    """Matrix of :class:`WarpBlur`: bilinear samples at clamped positions, averaged.

    ``tau`` defaults to 1.0, the operator's default.
    """
    _, H, W = flow_next.shape
    rows, cols, vals = [], [], []
    wgt = 1.0 / (2 * n + 1)
    for i in range(H):
        for j in range(W):
            p = i * W + j
            rows.append(np.array([p]))
            cols.append(np.array([p]))
            vals.append(np.array([wgt]))
            for f in (flow_next, flow_prev):
                for s in range(1, n + 1):
                    X = min(max(j + tau * s / n * f[0, i, j], 0.0), W - 1.0)
                    Y = min(max(i + tau * s / n * f[1, i, j], 0.0), H - 1.0)
                    x0, y0 = int(np.floor(X)), int(np.floor(Y))
                    x1, y1 = min(x0 + 1, W - 1), min(y0 + 1, H - 1)
                    fx, fy = X - x0, Y - y0
                    for yy, xx, b in ((y0, x0, (1 - fy) * (1 - fx)), (y0, x1, (1 - fy) * fx),
                                      (y1, x0, fy * (1 - fx)), (y1, x1, fy * fx)):
                        rows.append(np.array([p]))
                        cols.append(np.array([yy * W + xx]))
                        vals.append(np.array([wgt * b]))
    return _build(H, W, rows, cols, vals)


def apply_matrix(A: sp.spmatrix, x: np.ndarray) -> np.ndarray:
    """Apply a per-channel matrix to an (N, C, H, W) array (same matrix for all n, c)."""
    N, C, H, W = x.shape
    flat = x.reshape(N * C, H * W).T
    return np.asarray(A @ flat).T.reshape(N, C, H, W)
