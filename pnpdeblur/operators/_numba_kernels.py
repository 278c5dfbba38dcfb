"""CPU kernels (numba) for the generic per-pixel segment blur.

A *segment blur* is the family behind :class:`MotionBlur` (line kernel and LUT)
and :class:`TwoSegmentBlur`. At pixel p it sums S segments::

    y(p) = sum_i mass_i(p) * sum_k w_i(k) x(p + k) / sum_k w_i(k)

where segment i has vector a = vec_i(p), length L = |a|, unit direction u = a/L,
and for an integer offset k, with t = k.u, s = |k x u|, h = L/2 + 1/2,
``w(k) = max(0, 1 - s) * clip(h - |t - beta*L|, 0, 1)``. ``beta = 0`` is the
centred line kernel of docs/conventions.md; ``beta = 1/2`` the half segment from p to p + a.
L = 0 is a single tap at k = 0. Borders are replicated (coordinates clamped).

Taps are enumerated along the segment's major axis: for each integer step along
that axis only the three offsets nearest the segment across it can have s < 1
(|across| < L/|a_major| <= sqrt(2)), so a kernel of length L costs about 3(L+3)
taps instead of the (L+3)^2 of its bounding box. Weights are recomputed from
the flow on the fly. Geometry (tap positions, weights, normaliser) is evaluated in
float64 whatever the dtype of the image or of the segment arrays (float32 arrays are
read as float64, so they give the same weights as their float64 copies). For a float32
image the weights are then rounded to float32 and the tap sums accumulate in float32:
the gather and scatter convert nothing per tap, and the result agrees with float64 to
~1e-6 relative; float64 images are computed in float64 throughout.

How :func:`forward` and :func:`adjoint` are fast (issue 14; ~2x the first version):
the weights of all candidate taps of a segment are computed first, branch-free, into
three small per-thread buffers (a loop LLVM vectorises; zero weights are kept), and
summed once for the normaliser; the gather (scatter) then walks the buffers with a
fixed shape, reading (writing) a channel-last copy of the image so that one tap
touches one cache line for all channels, with flat offsets and no clamping for
pixels whose whole kernel lies inside the image. ``t`` and ``s`` are evaluated with
the reference expressions, so every weight is bit-identical to :func:`_taps`'s;
only the order of the float additions differs (~1e-16 relative in float64).
:func:`param_grad` still uses the tap list of :func:`_taps` (gradients are rare in
solves).

**Weight tables.** A solve applies the same flow's operator hundreds of times, and the
weights are ~30 % of K's time. :func:`table_steps` and :func:`fill_table` store each
segment's step weights (image dtype), rounded minor offsets (int16), first step, axis,
interior radius and scale once; :func:`forward`, :func:`adjoint` and :func:`normal` given
that ``table`` read it instead of recomputing the weights. The stored values are the ones the
kernels compute, gathered and scattered by the same inline functions in the same order, so the
results are bitwise those without the table. (The caller bounds the table's memory:
``_segment.WEIGHT_TABLES``.)

:func:`normal` is ``KᵀK`` in one pass for the CG x-step: each pixel's weights are
evaluated once and used for both its gather (``y_p``) and its scatter (``w_k y_p``);
the gather and scatter are the same inline functions (:func:`_gather`,
:func:`_scatter`) as :func:`forward` and :func:`adjoint` use, so its result is
bitwise ``adjoint(forward(x))``.
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

__all__ = ["max_taps", "forward", "adjoint", "normal", "param_grad", "table_steps", "fill_table"]


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


@nb.njit(cache=True, inline="always")
def _geometry(ax, ay, beta):
    """Per-segment constants of the major-axis tap walk (see :func:`_step_weights`)."""
    L = math.sqrt(ax * ax + ay * ay)
    if abs(ax) >= abs(ay):
        major_x, a_maj, a_min = True, ax, ay
    else:
        major_x, a_maj, a_min = False, ay, ax
    um = a_maj / L
    un = a_min / L
    h = 0.5 * L + 0.5
    c_maj = beta * a_maj
    extent = h * abs(a_maj) / L + abs(a_min) / L
    lo = int(math.ceil(c_maj - extent))
    hi = int(math.floor(c_maj + extent))
    return L, major_x, um, un, h, c_maj, beta * a_min, a_min / a_maj, lo, hi


@nb.njit(cache=True, inline="always")
def _pos(q):
    return q if q > 0.0 else 0.0


@nb.njit(cache=True, inline="always")
def _clip01(q):
    q = q if q > 0.0 else 0.0
    return q if q < 1.0 else 1.0


@nb.njit(cache=True)
def _step_weights(lo, nk, um, un, h, bL, c_maj, c_min, slope, w0b, w1b, w2b, rbuf):
    """Weights of the 3 candidate taps at each of ``nk`` major steps.

    At major offset ``lo + k`` the candidates are the minor offsets r-1, r, r+1 around
    the segment (``r = rbuf[k]``, the rounded minor coordinate of the line); their
    weights go to ``w0b[k], w1b[k], w2b[k]``. In major/minor coordinates
    t = k*um + k_min*un and s = |k*un - k_min*um|, so no branch on the axis is needed.
    The loop is branch-free and has no reduction, so LLVM vectorises it; a zero
    weight is stored, not skipped, and the gather loops keep a fixed shape.
    """
    for k in range(nk):
        fk = float(lo + k)
        r = np.floor(c_min + (fk - c_maj) * slope + 0.5)
        rbuf[k] = r
        # t and s are evaluated exactly as the reference formula does (no incremental
        # updates), so a tap on the support's edge gets the same weight, 0 included
        ka = r - 1.0
        kc = r + 1.0
        w0b[k] = _pos(1.0 - abs(fk * un - ka * um)) * _clip01(h - abs(fk * um + ka * un - bL))
        w1b[k] = _pos(1.0 - abs(fk * un - r * um)) * _clip01(h - abs(fk * um + r * un - bL))
        w2b[k] = _pos(1.0 - abs(fk * un - kc * um)) * _clip01(h - abs(fk * um + kc * un - bL))


@nb.njit(cache=True, fastmath={"reassoc"})
def _sum3(w0b, w1b, w2b, nk):
    """Sum of the first ``nk`` entries of three buffers, in float64 (reassociated: vectorised, fixed order)."""
    tot = 0.0
    for k in range(nk):
        tot += np.float64(w0b[k]) + np.float64(w1b[k]) + np.float64(w2b[k])
    return tot


@nb.njit(cache=True, inline="always")
def _radius(L, beta):
    """Chebyshev radius that bounds every tap of a segment (interior test).

    |k_maj| <= beta*L + extent and |k_min| <= beta*L + extent + 1.5 with
    extent <= L/2 + 1.5, so L*(beta + 1/2) + 3 bounds both; one more for slack.
    """
    return int(math.ceil(L * (abs(beta) + 0.5))) + 4


@nb.njit(parallel=True, cache=True)
def _to_nhwc(x):
    N, C, H, W = x.shape
    xh = np.empty((N, H * W * C), x.dtype)
    for row in nb.prange(N * H):
        b = row // H
        i = row % H
        for j in range(W):
            o = (i * W + j) * C
            for c in range(C):
                xh[b, o + c] = x[b, c, i, j]
    return xh


_U1 = np.uint64(1)
_U2 = np.uint64(2)


@nb.njit(cache=True, inline="always")
def _segment_weights(ax, ay, beta, w0b, w1b, w2b, rbuf):
    """Step weights of one non-zero segment into the buffers.

    Returns ``(lo, nk, major_x, R, total)``: the first major-axis step and the number of
    steps, the major axis, the radius of the interior test and the sum of the weights.
    """
    L, major_x, um, un, h, c_maj, c_min, slope, lo, hi = _geometry(ax, ay, beta)
    nk = hi - lo + 1
    _step_weights(lo, nk, um, un, h, beta * L, c_maj, c_min, slope, w0b, w1b, w2b, rbuf)
    return lo, nk, major_x, _radius(L, beta), _sum3(w0b, w1b, w2b, nk)


@nb.njit(cache=True, inline="always")
def _border_offset(i, j, k_maj, k_min, major_x, H, W, C):
    """Flat NHWC offset of tap (k_maj, k_min) of pixel (i, j), clamped to the image (replicated border)."""
    if major_x:
        ii = min(max(i + k_min, 0), H - 1)
        jj = min(max(j + k_maj, 0), W - 1)
    else:
        ii = min(max(i + k_maj, 0), H - 1)
        jj = min(max(j + k_min, 0), W - 1)
    return (ii * W + jj) * C


@nb.njit(cache=True, inline="always")
def _gather(xb, acc, sacc, zero, scale, i, j, H, W, C, R, major_x, lo, nk, w0b, w1b, w2b, rbuf):
    """acc[c] += scale * sum of the taps of one segment at pixel (i, j) (channel-last ``xb``).

    The tap sums accumulate in the type of ``zero`` (the image dtype: no conversion per
    tap for float32 images); interior offsets are unsigned, which spares numba's
    negative-index wrap-around code on every load.
    """
    if R <= i < H - R and R <= j < W - R:
        st_maj = C if major_x else W * C
        st_min = W * C if major_x else C
        p0 = (i * W + j) * C + lo * st_maj
        if C == 3:
            # three accumulators per channel: independent additions
            a0 = a1 = a2 = b0 = b1 = b2 = c0 = c1 = c2 = zero
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                w0 = w0b[k]
                w1 = w1b[k]
                w2 = w2b[k]
                ou = np.uint64(o)
                oa = np.uint64(o - st_min)
                ob = np.uint64(o + st_min)
                a0 += w0 * xb[oa]
                b0 += w1 * xb[ou]
                c0 += w2 * xb[ob]
                a1 += w0 * xb[oa + _U1]
                b1 += w1 * xb[ou + _U1]
                c1 += w2 * xb[ob + _U1]
                a2 += w0 * xb[oa + _U2]
                b2 += w1 * xb[ou + _U2]
                c2 += w2 * xb[ob + _U2]
            acc[0] += scale * (a0 + b0 + c0)
            acc[1] += scale * (a1 + b1 + c1)
            acc[2] += scale * (a2 + b2 + c2)
        elif C == 1:
            a0 = b0 = c0 = zero
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                a0 += w0b[k] * xb[np.uint64(o - st_min)]
                b0 += w1b[k] * xb[np.uint64(o)]
                c0 += w2b[k] * xb[np.uint64(o + st_min)]
            acc[0] += scale * (a0 + b0 + c0)
        else:
            for c in range(C):
                sacc[c] = 0.0
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                for d in range(3):
                    wt = w0b[k] if d == 0 else (w1b[k] if d == 1 else w2b[k])
                    od = o + (d - 1) * st_min
                    for c in range(C):
                        sacc[c] += wt * xb[od + c]
            for c in range(C):
                acc[c] += scale * sacc[c]
    else:  # near the border: clamp each tap's coordinates (replicated border)
        for c in range(C):
            sacc[c] = 0.0
        for k in range(nk):
            k_maj = lo + k
            for d in range(3):
                wt = w0b[k] if d == 0 else (w1b[k] if d == 1 else w2b[k])
                if wt == 0.0:
                    continue
                o = _border_offset(i, j, k_maj, int(rbuf[k]) + d - 1, major_x, H, W, C)
                for c in range(C):
                    sacc[c] += wt * xb[o + c]
        for c in range(C):
            acc[c] += scale * sacc[c]


@nb.njit(cache=True, inline="always")
def _scatter(out, gs, i, j, H, W, C, R, major_x, lo, nk, w0b, w1b, w2b, rbuf):
    """out[p + k] += w_k * gs for the taps of one segment at pixel (i, j) (channel-last ``out``).

    ``gs`` and the weights have the image dtype, so a float32 scatter converts nothing.
    """
    if R <= i < H - R and R <= j < W - R:
        st_maj = C if major_x else W * C
        st_min = W * C if major_x else C
        p0 = (i * W + j) * C + lo * st_maj
        if C == 3:
            g0 = gs[0]
            g1 = gs[1]
            g2 = gs[2]
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                w0 = w0b[k]
                w1 = w1b[k]
                w2 = w2b[k]
                ou = np.uint64(o)
                oa = np.uint64(o - st_min)
                ob = np.uint64(o + st_min)
                out[oa] += w0 * g0
                out[oa + _U1] += w0 * g1
                out[oa + _U2] += w0 * g2
                out[ou] += w1 * g0
                out[ou + _U1] += w1 * g1
                out[ou + _U2] += w1 * g2
                out[ob] += w2 * g0
                out[ob + _U1] += w2 * g1
                out[ob + _U2] += w2 * g2
        elif C == 1:
            # grey images: the same stores in the same order as the general loop below,
            # without its per-tap weight selection and channel loop (2x faster here)
            g0 = gs[0]
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                out[np.uint64(o - st_min)] += w0b[k] * g0
                out[np.uint64(o)] += w1b[k] * g0
                out[np.uint64(o + st_min)] += w2b[k] * g0
        else:
            for k in range(nk):
                o = p0 + k * st_maj + int(rbuf[k]) * st_min
                for d in range(3):
                    wt = w0b[k] if d == 0 else (w1b[k] if d == 1 else w2b[k])
                    od = o + (d - 1) * st_min
                    for c in range(C):
                        out[od + c] += wt * gs[c]
    else:
        for k in range(nk):
            k_maj = lo + k
            for d in range(3):
                wt = w0b[k] if d == 0 else (w1b[k] if d == 1 else w2b[k])
                if wt == 0.0:
                    continue
                o = _border_offset(i, j, k_maj, int(rbuf[k]) + d - 1, major_x, H, W, C)
                for c in range(C):
                    out[o + c] += wt * gs[c]


@nb.njit(parallel=True, cache=True)
def table_steps(vec, mass, beta):
    """Steps of each segment's tap walk, (Nf, S, H, W) int64: 0 where the segment has no mass or no length."""
    Nf, S, H, W = vec.shape[0], vec.shape[1], vec.shape[3], vec.shape[4]
    steps = np.zeros((Nf, S, H, W), np.int64)
    for row in nb.prange(Nf * H):
        b = row // H
        i = row % H
        for j in range(W):
            for sgi in range(S):
                ax = np.float64(vec[b, sgi, 0, i, j])
                ay = np.float64(vec[b, sgi, 1, i, j])
                if np.float64(mass[b, sgi, i, j]) == 0.0 or (ax == 0.0 and ay == 0.0):
                    continue
                lo, hi = _geometry(ax, ay, beta)[8:]
                steps[b, sgi, i, j] = hi - lo + 1
    return steps


@nb.njit(parallel=True, cache=True)
def fill_table(vec, mass, beta, ntaps, start, kind, scale, lo, radius, major, w, r):
    """Fill a weight table (see the module docstring) from the segments.

    The table is the tuple ``(start, steps, kind, scale, lo, radius, major, w, r)``. ``steps``
    (Nf, S, H, W) is :func:`table_steps`, ``start`` its exclusive prefix sum: each segment's
    first entry in ``w`` (3, total; image dtype) and ``r`` (total,) int16. Per segment:
    ``kind`` (0 no mass, 1 zero length, 2 taps), ``scale`` (``mass/Σw``; the mass itself for
    kind 1), first step ``lo``, interior ``radius`` and ``major`` axis (x: True).
    """
    Nf, S, H, W = vec.shape[0], vec.shape[1], vec.shape[3], vec.shape[4]
    nsteps = ntaps // 3
    for row in nb.prange(Nf * H):
        b = row // H
        i = row % H
        w0b = np.empty(nsteps, w.dtype)
        w1b = np.empty(nsteps, w.dtype)
        w2b = np.empty(nsteps, w.dtype)
        rbuf = np.empty(nsteps)
        for j in range(W):
            for sgi in range(S):
                m = np.float64(mass[b, sgi, i, j])
                ax = np.float64(vec[b, sgi, 0, i, j])
                ay = np.float64(vec[b, sgi, 1, i, j])
                kind[b, sgi, i, j] = 0
                if m == 0.0:
                    continue
                if ax == 0.0 and ay == 0.0:
                    kind[b, sgi, i, j] = 1
                    scale[b, sgi, i, j] = m
                    continue
                first, n, major_x, R, total = _segment_weights(ax, ay, beta, w0b, w1b, w2b, rbuf)
                st = start[b, sgi, i, j]
                for k in range(n):
                    w[0, st + k] = w0b[k]
                    w[1, st + k] = w1b[k]
                    w[2, st + k] = w2b[k]
                    r[st + k] = np.int16(rbuf[k])
                kind[b, sgi, i, j] = 2
                scale[b, sgi, i, j] = m / total
                lo[b, sgi, i, j] = first
                radius[b, sgi, i, j] = R
                major[b, sgi, i, j] = major_x


@nb.njit(cache=True, inline="always")
def _table_entry(table, bf, sgi, i, j):
    """One segment of a weight table: kind, scale, radius, axis, first step, then its step
    weights and minor offsets as slices (empty for kinds 0 and 1, which have no steps)."""
    start, steps, kind, scale, lo, radius, major, w, r = table
    st = start[bf, sgi, i, j]
    e = st + steps[bf, sgi, i, j]
    return (kind[bf, sgi, i, j], scale[bf, sgi, i, j], radius[bf, sgi, i, j], major[bf, sgi, i, j],
            lo[bf, sgi, i, j], w[0, st:e], w[1, st:e], w[2, st:e], r[st:e])


@nb.njit(cache=True, inline="always")
def _table_gather(table, x, xb, acc, sacc, zero, b, bf, sgi, i, j, H, W, C):
    """:func:`forward`'s work for one segment, read from a weight table."""
    kd, m, R, major_x, lo, w0, w1, w2, r = _table_entry(table, bf, sgi, i, j)
    if kd == 1:
        for c in range(C):
            acc[c] += m * x[b, c, i, j]
    elif kd == 2:
        _gather(xb, acc, sacc, zero, m, i, j, H, W, C, R, major_x, lo, len(r), w0, w1, w2, r)


@nb.njit(cache=True, inline="always")
def _table_scatter(table, out, gs, yp, b, bf, sgi, i, j, H, W, C):
    """:func:`adjoint`'s work for one segment (``gs`` scratch, ``yp`` the value scattered), from a table."""
    kd, m, R, major_x, lo, w0, w1, w2, r = _table_entry(table, bf, sgi, i, j)
    if kd == 1:
        o = (i * W + j) * C
        for c in range(C):
            out[o + c] += m * yp[c]
    elif kd == 2:
        for c in range(C):
            gs[c] = m * yp[c]
        _scatter(out, gs, i, j, H, W, C, R, major_x, lo, len(r), w0, w1, w2, r)


@nb.njit(parallel=True, cache=True)
def _from_chunks(bufs, like):
    """Sum the channel-last chunk buffers (fixed order: deterministic) into (N, C, H, W)."""
    N, C, H, W = like.shape
    nchunks = bufs.shape[0]
    res = np.empty_like(like)
    for row in nb.prange(N * H):
        b = row // H
        i = row % H
        for j in range(W):
            o = (i * W + j) * C
            for c in range(C):
                v = bufs[0, b, o + c]
                for ch in range(1, nchunks):
                    v += bufs[ch, b, o + c]
                res[b, c, i, j] = v
    return res


@nb.njit(parallel=True, cache=True)
def forward(x, vec, mass, beta, ntaps, table=None):
    """y = K x for x (N, C, H, W); vec (Nf, S, 2, H, W) and mass (Nf, S, H, W) float64 or float32.

    ``ntaps`` is :func:`max_taps` of the longest segment (it sizes the per-thread step
    buffers). ``table``: the segments' weight table in ``x``'s dtype (:func:`fill_table`), or
    None to compute the weights on the fly (the same result, bitwise). The image is read
    channel-last (one copy), so a tap touches one cache
    line for all channels; interior pixels use flat offsets without clamping; each
    segment's weights are summed while they are computed and applied at the end
    (no second pass to normalise).
    """
    N, C, H, W = x.shape
    Nf, S = vec.shape[0], vec.shape[1]
    xh = _to_nhwc(x)
    y = np.empty_like(x)
    nsteps = ntaps // 3
    zero = np.zeros(1, x.dtype)[0]
    for row in nb.prange(N * H):
        b = row // H
        i = row % H
        bf = b if Nf > 1 else 0
        # weights in the image dtype: float32 images gather without per-tap conversions
        w0b = np.empty(nsteps, x.dtype)
        w1b = np.empty(nsteps, x.dtype)
        w2b = np.empty(nsteps, x.dtype)
        rbuf = np.empty(nsteps)
        acc = np.empty(C)
        sacc = np.empty(C, x.dtype)
        xb = xh[b]
        for j in range(W):
            for c in range(C):
                acc[c] = 0.0
            for sgi in range(S):
                if table is not None:
                    _table_gather(table, x, xb, acc, sacc, zero, b, bf, sgi, i, j, H, W, C)
                    continue
                m = np.float64(mass[bf, sgi, i, j])
                if m == 0.0:
                    continue
                ax = np.float64(vec[bf, sgi, 0, i, j])
                ay = np.float64(vec[bf, sgi, 1, i, j])
                if ax == 0.0 and ay == 0.0:
                    for c in range(C):
                        acc[c] += m * x[b, c, i, j]
                    continue
                lo, nk, major_x, R, total = _segment_weights(ax, ay, beta, w0b, w1b, w2b, rbuf)
                _gather(xb, acc, sacc, zero, m / total, i, j, H, W, C, R, major_x, lo, nk, w0b, w1b, w2b, rbuf)
            for c in range(C):
                y[b, c, i, j] = acc[c]
    return y


@nb.njit(parallel=True, cache=True)
def adjoint(g, vec, mass, beta, ntaps, nchunks, table=None):
    """x = Kᵀ g, the exact transpose of :func:`forward` (a scatter); ``table`` as there.

    Rows are split into ``nchunks`` contiguous blocks, each scattering into its own
    channel-last buffer (one cache line per tap for all channels); the buffers are
    summed in a fixed order while being transposed back, so the result is
    deterministic.
    """
    N, C, H, W = g.shape
    Nf, S = vec.shape[0], vec.shape[1]
    bufs = np.zeros((nchunks, N, H * W * C), dtype=g.dtype)
    rows = N * H
    nsteps = ntaps // 3
    for ch in nb.prange(nchunks):
        w0b = np.empty(nsteps, g.dtype)
        w1b = np.empty(nsteps, g.dtype)
        w2b = np.empty(nsteps, g.dtype)
        rbuf = np.empty(nsteps)
        gs = np.empty(C, g.dtype)
        gp = np.empty(C, g.dtype)
        for row in range(ch * rows // nchunks, (ch + 1) * rows // nchunks):
            b = row // H
            i = row % H
            bf = b if Nf > 1 else 0
            out = bufs[ch, b]
            for j in range(W):
                if table is not None:
                    for c in range(C):
                        gp[c] = g[b, c, i, j]
                for sgi in range(S):
                    if table is not None:
                        _table_scatter(table, out, gs, gp, b, bf, sgi, i, j, H, W, C)
                        continue
                    m = np.float64(mass[bf, sgi, i, j])
                    if m == 0.0:
                        continue
                    ax = np.float64(vec[bf, sgi, 0, i, j])
                    ay = np.float64(vec[bf, sgi, 1, i, j])
                    if ax == 0.0 and ay == 0.0:
                        o = (i * W + j) * C
                        for c in range(C):
                            out[o + c] += m * g[b, c, i, j]
                        continue
                    lo, nk, major_x, R, total = _segment_weights(ax, ay, beta, w0b, w1b, w2b, rbuf)
                    scale = m / total
                    for c in range(C):
                        gs[c] = scale * g[b, c, i, j]
                    _scatter(out, gs, i, j, H, W, C, R, major_x, lo, nk, w0b, w1b, w2b, rbuf)
    return _from_chunks(bufs, g)


@nb.njit(parallel=True, cache=True)
def normal(x, vec, mass, beta, ntaps, nchunks, table=None):
    """z = Kᵀ K x in one pass (the normal operator of the CG x-step); ``table`` as in :func:`forward`.

    Per pixel p the weights of its segments are computed once, then used twice:
    ``y_p = sum_k w_k x[p + k]`` (gathered exactly as :func:`forward` does, and rounded
    to the image dtype as its output would be) and ``z[p + k] += w_k y_p`` (scattered
    exactly as :func:`adjoint` does, into the same ``nchunks`` row blocks). So the
    result is bitwise ``adjoint(forward(x))`` with the same ``nchunks``, for half the
    weight evaluations and without the intermediate image ``y``.
    """
    N, C, H, W = x.shape
    Nf, S = vec.shape[0], vec.shape[1]
    xh = _to_nhwc(x)
    bufs = np.zeros((nchunks, N, H * W * C), dtype=x.dtype)
    rows = N * H
    nsteps = ntaps // 3
    zero = np.zeros(1, x.dtype)[0]
    for ch in nb.prange(nchunks):
        # one set of step buffers per segment: the scatter reuses the gather's weights
        w0b = np.empty((S, nsteps), x.dtype)
        w1b = np.empty((S, nsteps), x.dtype)
        w2b = np.empty((S, nsteps), x.dtype)
        rbuf = np.empty((S, nsteps))
        kind = np.empty(S, np.int64)  # 0: no mass, 1: zero-length (one tap), 2: taps in the buffers
        s_scale = np.empty(S)
        s_lo = np.empty(S, np.int64)
        s_nk = np.empty(S, np.int64)
        s_R = np.empty(S, np.int64)
        s_maj = np.empty(S, np.bool_)
        acc = np.empty(C)
        sacc = np.empty(C, x.dtype)
        yp = np.empty(C, x.dtype)  # y_p rounded to the image dtype, as forward() stores it
        gs = np.empty(C, x.dtype)
        for row in range(ch * rows // nchunks, (ch + 1) * rows // nchunks):
            b = row // H
            i = row % H
            bf = b if Nf > 1 else 0
            xb = xh[b]
            out = bufs[ch, b]
            for j in range(W):
                for c in range(C):
                    acc[c] = 0.0
                if table is not None:  # the weights are in the table: gather, round, scatter
                    for sgi in range(S):
                        _table_gather(table, x, xb, acc, sacc, zero, b, bf, sgi, i, j, H, W, C)
                    for c in range(C):
                        yp[c] = acc[c]
                    for sgi in range(S):
                        _table_scatter(table, out, gs, yp, b, bf, sgi, i, j, H, W, C)
                    continue
                for sgi in range(S):
                    m = np.float64(mass[bf, sgi, i, j])
                    kind[sgi] = 0
                    if m == 0.0:
                        continue
                    ax = np.float64(vec[bf, sgi, 0, i, j])
                    ay = np.float64(vec[bf, sgi, 1, i, j])
                    if ax == 0.0 and ay == 0.0:
                        kind[sgi] = 1
                        for c in range(C):
                            acc[c] += m * x[b, c, i, j]
                        continue
                    lo, nk, major_x, R, total = _segment_weights(ax, ay, beta, w0b[sgi], w1b[sgi], w2b[sgi],
                                                                 rbuf[sgi])
                    scale = m / total
                    kind[sgi] = 2
                    s_scale[sgi] = scale
                    s_lo[sgi] = lo
                    s_nk[sgi] = nk
                    s_R[sgi] = R
                    s_maj[sgi] = major_x
                    _gather(xb, acc, sacc, zero, scale, i, j, H, W, C, R, major_x, lo, nk,
                            w0b[sgi], w1b[sgi], w2b[sgi], rbuf[sgi])
                for c in range(C):
                    yp[c] = acc[c]
                for sgi in range(S):
                    if kind[sgi] == 0:
                        continue
                    if kind[sgi] == 1:
                        m = np.float64(mass[bf, sgi, i, j])
                        o = (i * W + j) * C
                        for c in range(C):
                            out[o + c] += m * yp[c]
                        continue
                    for c in range(C):
                        gs[c] = s_scale[sgi] * yp[c]
                    _scatter(out, gs, i, j, H, W, C, s_R[sgi], s_maj[sgi], s_lo[sgi], s_nk[sgi],
                             w0b[sgi], w1b[sgi], w2b[sgi], rbuf[sgi])
    return _from_chunks(bufs, x)


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
