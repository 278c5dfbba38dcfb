"""CPU kernels (numba) for the generic per-pixel segment blur.

A *segment blur* is the family behind :class:`MotionBlur` (line kernel and LUT)
and :class:`TwoSegmentBlur`. At pixel p it sums S segments::

    y(p) = sum_i mass_i(p) * sum_k w_i(k) x(p + k) / sum_k w_i(k)

where segment i has vector a = vec_i(p), length L = |a|, unit direction u = a/L,
and for an integer offset k, with t = k.u, s = |k x u|, h = L/2 + 1/2,
``w(k) = max(0, 1 - s) * clip(h - |t - beta*L|, 0, 1)``. ``beta = 0`` is the
centred line kernel of DESIGN.md; ``beta = 1/2`` the half segment from p to p + a.
L = 0 is a single tap at k = 0. Borders are replicated (coordinates clamped).

Taps are enumerated along the segment's major axis: for each integer step along
that axis only the three offsets nearest the segment across it can have s < 1
(|across| < L/|a_major| <= sqrt(2)), so a kernel of length L costs about 3(L+3)
taps instead of the (L+3)^2 of its bounding box. Weights are recomputed from
the flow on the fly; geometry and sums are in float64 whatever the image dtype.
"""
from __future__ import annotations

import math
import os

import numba as nb
import numpy as np

if "NUMBA_THREADING_LAYER" not in os.environ:
    # Numba's default layer here is GNU OpenMP, which kills processes forked after a parallel
    # kernel ran (torch DataLoader workers, multiprocessing). The fork-safe choice is TBB where
    # installed, else numba's own workqueue (callers serialise calls from threads, see _segment).
    nb.config.THREADING_LAYER = "forksafe"

__all__ = ["max_taps", "forward", "adjoint", "param_grad"]


def max_taps(max_len: float) -> int:
    """Upper bound on the taps :func:`_taps` emits for a segment of length <= max_len."""
    return 3 * (2 * int(math.ceil(0.5 * max_len + 1.5)) + 3)


@nb.njit(cache=True, inline="always")
def _weight(kx, ky, ux, uy, L, h, beta, want_grad):
    """Weight of offset (kx, ky) and, if asked, its gradient w.r.t. the segment vector."""
    t = kx * ux + ky * uy
    c = kx * uy - ky * ux
    s = abs(c)
    if s >= 1.0:
        return 0.0, 0.0, 0.0
    d = t - beta * L
    q = h - abs(d)
    if q <= 0.0:
        return 0.0, 0.0, 0.0
    wt = 1.0 - s
    wc = q if q < 1.0 else 1.0
    if not want_grad:
        return wt * wc, 0.0, 0.0
    sg = 1.0 if c > 0 else (-1.0 if c < 0 else 0.0)
    dsx = sg * (-ky - c * ux) / L
    dsy = sg * (kx - c * uy) / L
    dqx = 0.0
    dqy = 0.0
    if q < 1.0:
        sd = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
        dtx = (kx - t * ux) / L
        dty = (ky - t * uy) / L
        dqx = 0.5 * ux - sd * (dtx - beta * ux)
        dqy = 0.5 * uy - sd * (dty - beta * uy)
    return wt * wc, -dsx * wc + wt * dqx, -dsy * wc + wt * dqy


@nb.njit(cache=True)
def _taps(ax, ay, beta, kxs, kys, ws, dwx, dwy, want_grad):
    """Fill the non-zero taps of one segment into the buffers; return their count."""
    L = math.sqrt(ax * ax + ay * ay)
    if L == 0.0:
        kxs[0] = 0
        kys[0] = 0
        ws[0] = 1.0
        dwx[0] = 0.0
        dwy[0] = 0.0
        return 1
    ux = ax / L
    uy = ay / L
    h = 0.5 * L + 0.5
    major_x = abs(ax) >= abs(ay)
    if major_x:
        a_maj, a_min = ax, ay
    else:
        a_maj, a_min = ay, ax
    c_maj = beta * a_maj
    c_min = beta * a_min
    extent = h * abs(a_maj) / L + abs(a_min) / L
    slope = a_min / a_maj
    lo = int(math.ceil(c_maj - extent))
    hi = int(math.floor(c_maj + extent))
    n = 0
    for k_maj in range(lo, hi + 1):
        r = int(math.floor(c_min + (k_maj - c_maj) * slope + 0.5))
        for k_min in range(r - 1, r + 2):
            if major_x:
                kx, ky = k_maj, k_min
            else:
                kx, ky = k_min, k_maj
            w, gx, gy = _weight(float(kx), float(ky), ux, uy, L, h, beta, want_grad)
            if w > 0.0:
                kxs[n] = kx
                kys[n] = ky
                ws[n] = w
                dwx[n] = gx
                dwy[n] = gy
                n += 1
    return n


@nb.njit(cache=True)
def _normalised_taps(ax, ay, m, beta, kxs, kys, ws, dwx, dwy):
    """Like :func:`_taps`, with the weights scaled to sum to the segment's mass ``m``."""
    n = _taps(ax, ay, beta, kxs, kys, ws, dwx, dwy, False)
    tot = 0.0
    for t in range(n):
        tot += ws[t]
    scale = m / tot
    for t in range(n):
        ws[t] *= scale
    return n


@nb.njit(parallel=True, cache=True)
def forward(x, vec, mass, beta, ntaps):
    """y = K x for x (N, C, H, W); vec (Nf, S, 2, H, W) float64; mass (Nf, S, H, W) float64."""
    N, C, H, W = x.shape
    Nf, S = vec.shape[0], vec.shape[1]
    y = np.zeros_like(x)
    for row in nb.prange(N * H):
        b = row // H
        i = row % H
        bf = b if Nf > 1 else 0
        kxs = np.empty(ntaps, np.int64)
        kys = np.empty(ntaps, np.int64)
        ws = np.empty(ntaps)
        dwx = np.empty(ntaps)
        dwy = np.empty(ntaps)
        acc = np.empty(C)
        for j in range(W):
            for c in range(C):
                acc[c] = 0.0
            for sgi in range(S):
                m = mass[bf, sgi, i, j]
                if m == 0.0:
                    continue
                n = _normalised_taps(vec[bf, sgi, 0, i, j], vec[bf, sgi, 1, i, j], m, beta,
                                     kxs, kys, ws, dwx, dwy)
                for t in range(n):
                    ii = min(max(i + kys[t], 0), H - 1)
                    jj = min(max(j + kxs[t], 0), W - 1)
                    for c in range(C):
                        acc[c] += ws[t] * x[b, c, ii, jj]
            for c in range(C):
                y[b, c, i, j] = acc[c]
    return y


@nb.njit(parallel=True, cache=True)
def adjoint(g, vec, mass, beta, ntaps, nchunks):
    """x = Kᵀ g, the exact transpose of :func:`forward` (a scatter).

    Rows are split into ``nchunks`` contiguous blocks, each scattering into its own
    buffer; the buffers are summed in a fixed order, so the result is deterministic.
    """
    N, C, H, W = g.shape
    Nf, S = vec.shape[0], vec.shape[1]
    bufs = np.zeros((nchunks, N, C, H, W), dtype=g.dtype)
    rows = N * H
    for ch in nb.prange(nchunks):
        kxs = np.empty(ntaps, np.int64)
        kys = np.empty(ntaps, np.int64)
        ws = np.empty(ntaps)
        dwx = np.empty(ntaps)
        dwy = np.empty(ntaps)
        out = bufs[ch]
        for row in range(ch * rows // nchunks, (ch + 1) * rows // nchunks):
            b = row // H
            i = row % H
            bf = b if Nf > 1 else 0
            for j in range(W):
                for sgi in range(S):
                    m = mass[bf, sgi, i, j]
                    if m == 0.0:
                        continue
                    n = _normalised_taps(vec[bf, sgi, 0, i, j], vec[bf, sgi, 1, i, j], m, beta,
                                         kxs, kys, ws, dwx, dwy)
                    for t in range(n):
                        ii = min(max(i + kys[t], 0), H - 1)
                        jj = min(max(j + kxs[t], 0), W - 1)
                        for c in range(C):
                            out[b, c, ii, jj] += ws[t] * g[b, c, i, j]
    res = bufs[0].copy()
    for ch in range(1, nchunks):
        res += bufs[ch]
    return res


@nb.njit(parallel=True, cache=True)
def param_grad(x, g, vec, mass, beta, ntaps):
    """Gradients of <K x, g> w.r.t. the segment vectors and masses, per image.

    Returns (gvec (N, S, 2, H, W), gmass (N, S, H, W)) in float64; the caller sums
    over the batch when the flow is shared (Nf = 1).
    """
    N, C, H, W = x.shape
    Nf, S = vec.shape[0], vec.shape[1]
    gvec = np.zeros((N, S, 2, H, W))
    gmass = np.zeros((N, S, H, W))
    for row in nb.prange(N * H):
        b = row // H
        i = row % H
        bf = b if Nf > 1 else 0
        kxs = np.empty(ntaps, np.int64)
        kys = np.empty(ntaps, np.int64)
        ws = np.empty(ntaps)
        dwx = np.empty(ntaps)
        dwy = np.empty(ntaps)
        for j in range(W):
            for sgi in range(S):
                n = _taps(vec[bf, sgi, 0, i, j], vec[bf, sgi, 1, i, j], beta,
                          kxs, kys, ws, dwx, dwy, True)
                tot = 0.0
                dtx = 0.0
                dty = 0.0
                yg = 0.0
                ax_ = 0.0
                ay_ = 0.0
                for t in range(n):
                    ii = min(max(i + kys[t], 0), H - 1)
                    jj = min(max(j + kxs[t], 0), W - 1)
                    gt = 0.0
                    for c in range(C):
                        gt += g[b, c, i, j] * x[b, c, ii, jj]
                    tot += ws[t]
                    dtx += dwx[t]
                    dty += dwy[t]
                    yg += ws[t] * gt
                    ax_ += dwx[t] * gt
                    ay_ += dwy[t] * gt
                m = mass[bf, sgi, i, j]
                gvec[b, sgi, 0, i, j] = m / tot * (ax_ - dtx * yg / tot)
                gvec[b, sgi, 1, i, j] = m / tot * (ay_ - dty * yg / tot)
                gmass[b, sgi, i, j] = yg / tot
    return gvec, gmass
