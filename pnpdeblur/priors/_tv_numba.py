"""CPU kernels (numba) for the TV proximal map's dual iterations (issue 14: the TV z-step).

:func:`pnpdeblur.priors.classical.tv_prox` runs Beck & Teboulle's fast gradient projection;
in torch one iteration is about fifteen whole-array passes with as many temporaries. Here one
iteration is two fused passes over the image: :func:`primal` (``x = z − τ ∇ᵀq``) and
:func:`dual_step` (gradient step, projection onto the unit ball, momentum, and the per-row sums
of the stopping rule). The arithmetic is the torch path's, operation by operation, in the
image dtype (scalars are given in that dtype), so the two paths agree to rounding.

Arrays: images ``(N, C, H, W)``, dual variables ``(N, 2, C, H, W)`` (x then y differences),
forward differences with a Neumann boundary (the last difference of a row/column is 0).
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["primal", "dual_step"]


@nb.njit(parallel=True, cache=True)
def primal(z, q, tau, x):
    """``x = z − τ ∇ᵀq`` (``∇ᵀ`` the exact transpose of the forward differences), in place."""
    N, C, H, W = z.shape
    zero = np.zeros(1, z.dtype)[0]
    for row in nb.prange(N * C * H):
        n = row // (C * H)
        c = (row // H) % C
        i = row % H
        for j in range(W):
            # the torch path's order: −px, +px(left), −py, +py(above)
            g = zero
            if j < W - 1:
                g -= q[n, 0, c, i, j]
            if j > 0:
                g += q[n, 0, c, i, j - 1]
            if i < H - 1:
                g -= q[n, 1, c, i, j]
            if i > 0:
                g += q[n, 1, c, i - 1, j]
            x[n, c, i, j] = z[n, c, i, j] - tau * g


@nb.njit(parallel=True, cache=True)
def dual_step(x, p, q, step, mom, coupled, pn, qn, dsq, nsq):
    """One projected gradient step with momentum on the dual.

    ``pn = P(q + step ∇x)`` with P the projection onto the unit ball (jointly over the two
    differences and the channels when ``coupled``, per channel otherwise); ``qn = pn + mom
    (pn − p)``. Per image row ``(n, i)``, ``dsq`` gets Σ (pn − p)² and ``nsq`` Σ pn² (float64),
    summed by the caller in a fixed order.
    """
    N, _, C, H, W = p.shape
    zero = np.zeros(1, x.dtype)[0]
    for row in nb.prange(N * H):
        n = row // H
        i = row % H
        sd = 0.0
        sn = 0.0
        for j in range(W):
            s = _gradient_step(x, q, step, pn, zero, n, i, j, C, H, W)
            if coupled:
                f = _ball(s)
                for c in range(C):
                    pn[n, 0, c, i, j] = pn[n, 0, c, i, j] / f
                    pn[n, 1, c, i, j] = pn[n, 1, c, i, j] / f
            else:
                for c in range(C):
                    a = pn[n, 0, c, i, j]
                    b = pn[n, 1, c, i, j]
                    f = _ball(a * a + b * b)
                    pn[n, 0, c, i, j] = a / f
                    pn[n, 1, c, i, j] = b / f
            for c in range(C):
                for d in range(2):
                    v = pn[n, d, c, i, j]
                    old = p[n, d, c, i, j]
                    qn[n, d, c, i, j] = v + mom * (v - old)
                    e = np.float64(v) - np.float64(old)
                    sd += e * e
                    sn += np.float64(v) * np.float64(v)
        dsq[row] = sd
        nsq[row] = sn


@nb.njit(cache=True, inline="always")
def _gradient_step(x, q, step, pn, zero, n, i, j, C, H, W):
    """``pn = q + step ∇x`` at pixel (i, j) for every channel; returns Σ pn² over both differences and channels."""
    s = zero
    for c in range(C):
        gx = x[n, c, i, j + 1] - x[n, c, i, j] if j < W - 1 else zero
        gy = x[n, c, i + 1, j] - x[n, c, i, j] if i < H - 1 else zero
        a = q[n, 0, c, i, j] + step * gx
        b = q[n, 1, c, i, j] + step * gy
        pn[n, 0, c, i, j] = a
        pn[n, 1, c, i, j] = b
        s += a * a
        s += b * b
    return s


@nb.njit(cache=True, inline="always")
def _ball(sq):
    """The projection's divisor ``max(√sq, 1)``."""
    f = math.sqrt(sq)
    return f if f > 1.0 else 1.0
