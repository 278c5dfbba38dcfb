"""The numba segment-blur kernels called directly, on tiny images.

Every code path of :mod:`pnpdeblur.operators._numba_kernels` (interior and border
pixels; C = 1, C = 3 and any other C; zero-length segments; segments of zero mass;
Nf = 1 and Nf = N; any number of scatter chunks) is compared with an independent
reference: the dense sparse matrices of :mod:`pnpdeblur.operators.dense` (built from
the reference kernel formula :func:`pnpdeblur.operators.motion._segment_kernel`) for
``forward``/``adjoint``, the dense kernel's support for ``_taps``, and central differences of
the reference kernel for ``param_grad`` (no torch autograd: see ``_reference_param_grads``).

The images are small (14 x 14, |segment| <= 3) so that the file also runs in seconds
with the kernels as plain Python (``NUMBA_DISABLE_JIT=1``, or ``make mutation`` with
``MUTATION_NUMBA_PYTHON=1``, which mutates the kernels themselves).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import dense
from pnpdeblur.operators.motion import _segment_kernel

H, W = 14, 14
LONGEST = 3.0  # line kernel: radius ceil(3/2) + 4 = 6, so rows/columns 6 and 7 are interior


def _flow(seed: int, scale: float = LONGEST, n: int = 1, axis_aligned: bool = True) -> np.ndarray:
    """Random flows (n, 2, H, W), |f| <= scale, every direction, with exact special cases.

    The interior pixels (6..7, 6..7) get one horizontal-major, one vertical-major, one
    diagonal (|u| == |v|, the major-axis tie) and one negative-major segment, so the
    interior fast paths see both axes; a few border pixels get exact zeros.
    """
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, 2 * np.pi, (n, H, W))
    length = scale * rng.uniform(0.3, 1.0, (n, H, W))
    f = np.stack([length * np.cos(ang), length * np.sin(ang)], 1)
    s = scale * 0.9
    f[:, :, 6, 6] = (s, 0.4)
    f[:, :, 6, 7] = (-0.3, s)
    f[:, :, 7, 6] = (s / math.sqrt(2), -s / math.sqrt(2))
    f[:, :, 7, 7] = (-s, -0.7)
    f[:, :, 0, 3] = 0.0
    f[:, :, 12, 1] = 0.0
    if axis_aligned:  # exactly one zero component (not the identity); kinks for param_grad
        f[:, :, 3, 5] = (0.7 * scale, 0.0)
        f[:, :, 9, 2] = (0.0, -0.55 * scale)
    return f


def _line(f: np.ndarray):
    """(vec, mass) of the line kernel for flows (Nf, 2, H, W)."""
    return np.ascontiguousarray(f[:, None]), np.ones((f.shape[0], 1, H, W))


def _dense_apply(A, x, transpose=False):
    return dense.apply_matrix(A.T.tocsr() if transpose else A, x)


def _ntaps(vec) -> int:
    return nk.max_taps(float(np.sqrt((vec**2).sum(2)).max()))


def test_max_taps_hand_values():
    # 3 * (2 * ceil(L/2 + 3/2) + 3)
    assert nk.max_taps(0.0) == 3 * (2 * 2 + 3)
    assert nk.max_taps(3.0) == 3 * (2 * 3 + 3)
    assert nk.max_taps(3.2) == 3 * (2 * 4 + 3)
    assert nk.max_taps(10.0) == 3 * (2 * 7 + 3)


def test_interior_and_border_pixels_exist():
    # guards the fixture: the interior fast path and the clamped border path both run
    R = nk._radius(LONGEST, 0.0)
    assert R == 6 and H - 2 * R == 2 and W - 2 * R == 2
    assert nk._radius(2.0, 0.5) == 6  # two-segment fixtures below: |tau f| <= 2


@pytest.mark.parametrize("C", [1, 2, 3])
def test_line_forward_and_adjoint_match_dense(C):
    f = _flow(C)
    vec, mass = _line(f)
    x = np.random.default_rng(20 + C).random((1, C, H, W))
    A = dense.motion_blur_matrix(f[0])
    nt = _ntaps(vec)
    np.testing.assert_allclose(nk.forward(x, vec, mass, 0.0, nt), _dense_apply(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(nk.adjoint(x, vec, mass, 0.0, nt, 2), _dense_apply(A, x, True), rtol=0, atol=1e-12)


@pytest.mark.parametrize("C", [1, 3])
def test_two_segments_batch_of_flows_match_dense(C):
    # beta = 1/2, two segments of mass 1/2 each, one flow per image (Nf = N = 2)
    tau = 0.6
    fn, fp = _flow(5, 2.0 / tau, 2), _flow(6, 2.0 / tau, 2)
    vec = np.ascontiguousarray(tau * np.stack([fn, fp], 1))
    mass = np.full((2, 2, H, W), 0.5)
    x = np.random.default_rng(7).random((2, C, H, W))
    y = nk.forward(x, vec, mass, 0.5, _ntaps(vec))
    yt = nk.adjoint(x, vec, mass, 0.5, _ntaps(vec), 3)
    for b in range(2):
        A = dense.two_segment_matrix(fn[b], fp[b], tau=tau)
        np.testing.assert_allclose(y[b : b + 1], _dense_apply(A, x[b : b + 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(yt[b : b + 1], _dense_apply(A, x[b : b + 1], True), rtol=0, atol=1e-12)


def test_unequal_masses_and_zero_mass_segments_match_a_weighted_sum():
    # mass_i weights segment i's normalised kernel; a zero mass contributes nothing
    f1, f2 = _flow(8)[0], _flow(9)[0]
    rng = np.random.default_rng(10)
    m1 = rng.uniform(0.2, 1.0, (H, W))
    m2 = rng.uniform(0.0, 0.7, (H, W))
    m2[::3] = 0.0
    m1[1::4] = 0.0  # a first segment of zero mass must not end the pixel's sum
    vec = np.ascontiguousarray(np.stack([f1, f2])[None])
    mass = np.stack([m1, m2])[None]
    A1, A2 = dense.motion_blur_matrix(f1), dense.motion_blur_matrix(f2)
    import scipy.sparse as sp

    A = sp.diags(m1.ravel()) @ A1 + sp.diags(m2.ravel()) @ A2
    for C in (1, 2, 3):  # each channel path sums both segments
        x = rng.random((1, C, H, W))
        np.testing.assert_allclose(nk.forward(x, vec, mass, 0.0, _ntaps(vec)), _dense_apply(A, x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            nk.adjoint(x, vec, mass, 0.0, _ntaps(vec), 1), _dense_apply(A, x, True), rtol=0, atol=1e-12
        )


def test_one_flow_blurs_every_image_of_a_batch():
    f = _flow(11)
    vec, mass = _line(f)
    x = np.random.default_rng(12).random((3, 3, H, W))
    A = dense.motion_blur_matrix(f[0])
    np.testing.assert_allclose(nk.forward(x, vec, mass, 0.0, _ntaps(vec)), _dense_apply(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        nk.adjoint(x, vec, mass, 0.0, _ntaps(vec), 4), _dense_apply(A, x, True), rtol=0, atol=1e-12
    )


def test_float32_images_stay_float32_and_match_float64():
    f = _flow(13)
    vec, mass = _line(f)
    x = np.random.default_rng(14).random((1, 3, H, W))
    y64 = nk.forward(x, vec, mass, 0.0, _ntaps(vec))
    y32 = nk.forward(x.astype(np.float32), vec, mass, 0.0, _ntaps(vec))
    t32 = nk.adjoint(x.astype(np.float32), vec, mass, 0.0, _ntaps(vec), 2)
    assert y32.dtype == np.float32 and t32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=0, atol=2e-6)


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_taps_are_the_dense_kernels_support_and_weights(beta):
    # _taps lists exactly the non-zero weights of the reference kernel (before normalising)
    rng = np.random.default_rng(int(beta * 10))
    cases = [(0.0, 0.0), (3.0, 0.0), (0.0, -2.5), (2.0, 2.0), (-1.5, 1.5), (0.4, 0.3)]
    cases += [tuple(v) for v in rng.uniform(-4, 4, (12, 2))]
    n_max = nk.max_taps(6.0)
    bufs = [np.empty(n_max, np.int64), np.empty(n_max, np.int64)] + [np.empty(n_max) for _ in range(3)]
    for a in cases:
        n = nk._taps(a[0], a[1], beta, *bufs, False)
        assert 1 <= n <= nk.max_taps(math.hypot(*a))
        K = _segment_kernel(a, beta, radius=8)
        got = np.zeros_like(K)
        got[8 + bufs[1][:n], 8 + bufs[0][:n]] = bufs[2][:n]
        np.testing.assert_allclose(got / got.sum(), K, rtol=0, atol=1e-14)
        assert len(set(zip(bufs[0][:n], bufs[1][:n]))) == n  # no tap listed twice
        assert (bufs[2][:n] > 0).all()  # only the non-zero taps are listed


def _reference_param_grads(x, g, vec, mass, beta, eps=1e-6, R=7):
    """Gradients of <K x, g> w.r.t. vec and mass from the reference kernel formula.

    Row p of K is sum_i mass_i(p) * kernel(vec_i(p)) over the clamped neighbourhood of p,
    so d/dmass_i(p) = <kernel_i, Q_p> and d/dvec_i(p) = mass_i(p) d<kernel(a), Q_p>/da
    (central differences), with Q_p(k) = sum_c g_c(p) x_c(p + k). No torch autograd: the
    tests must also run in processes forked after autograd ran (make mutation).
    """
    N, C = x.shape[:2]
    S = vec.shape[1]
    gv, gm = np.zeros((N, S, 2, H, W)), np.zeros((N, S, H, W))
    k = np.arange(-R, R + 1)
    for b in range(N):
        bf = b if vec.shape[0] > 1 else 0
        for i in range(H):
            for j in range(W):
                ii = np.clip(i + k, 0, H - 1)[:, None]
                jj = np.clip(j + k, 0, W - 1)[None, :]
                Q = np.einsum("c,cyx->yx", g[b, :, i, j], x[b][:, ii, jj])
                for s in range(S):
                    a = vec[bf, s, :, i, j]
                    gm[b, s, i, j] = (_segment_kernel(a, beta, R) * Q).sum()
                    for d in range(2):
                        e = np.zeros(2)
                        e[d] = eps
                        up = (_segment_kernel(a + e, beta, R) * Q).sum()
                        down = (_segment_kernel(a - e, beta, R) * Q).sum()
                        gv[b, s, d, i, j] = mass[bf, s, i, j] * (up - down) / (2 * eps)
    return gv, gm


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_param_grad_matches_the_reference_formula(beta):
    # gradients of <K x, g> w.r.t. the segment vectors and masses, per image (Nf = N = 2)
    # (not at exactly axis-aligned integer lengths: there taps sit on the kernel's kinks,
    # s = 1 or q = 0, where one-sided derivatives differ)
    rng = np.random.default_rng(15)
    f = _flow(16, 2.5, 2, axis_aligned=False)
    vec = np.ascontiguousarray(np.stack([f, 0.5 * f[:, ::-1]], 1))
    mass = rng.uniform(0.2, 1.0, (2, 2, H, W))
    x, g = rng.random((2, 2, H, W)), rng.random((2, 2, H, W))
    gv, gm = nk.param_grad(x, g, vec, mass, beta, _ntaps(vec))
    rv, rm = _reference_param_grads(x, g, vec, mass, beta)
    np.testing.assert_allclose(gm, rm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gv, rv, rtol=0, atol=1e-7)


def test_param_grad_of_zero_length_segments_is_the_identity_tap():
    # L = 0: one tap of weight 1 at k = 0, so d/dmass = g·x at p and no vector gradient
    rng = np.random.default_rng(17)
    vec = np.zeros((1, 1, 2, H, W))
    mass = np.ones((1, 1, H, W))
    x, g = rng.random((1, 3, H, W)), rng.random((1, 3, H, W))
    gv, gm = nk.param_grad(x, g, vec, mass, 0.0, nk.max_taps(0.0))
    np.testing.assert_allclose(gm[0, 0], (x * g).sum(1)[0], rtol=0, atol=1e-14)
    assert not gv.any()


def test_adjoint_chunking_is_deterministic():
    f = _flow(18)
    vec, mass = _line(f)
    g = np.random.default_rng(19).random((2, 3, H, W))
    ref = nk.adjoint(g, vec, mass, 0.0, _ntaps(vec), 1)
    for chunks in (2, 3, 5):
        np.testing.assert_allclose(nk.adjoint(g, vec, mass, 0.0, _ntaps(vec), chunks), ref, rtol=0, atol=1e-14)


def test_two_segments_of_one_flow_for_a_batch_and_one_segment_per_image():
    # Nf = 1 with S = 2 and N = 2 (and Nf = N = 2 with S = 1): Nf and S must not be mixed up
    fn, fp = _flow(21, 2.0), _flow(22, 2.0)
    vec = np.ascontiguousarray(np.stack([fn, fp], 1))  # (1, 2, 2, H, W)
    mass = np.full((1, 2, H, W), 0.5)
    x = np.random.default_rng(23).random((2, 3, H, W))
    A = dense.two_segment_matrix(fn[0], fp[0], tau=1.0)
    np.testing.assert_allclose(nk.forward(x, vec, mass, 0.5, _ntaps(vec)), _dense_apply(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(nk.adjoint(x, vec, mass, 0.5, _ntaps(vec), 2), _dense_apply(A, x, True), rtol=0, atol=1e-12)
    f = _flow(24, n=2)
    vec, mass = _line(f)
    for b in range(2):
        A = dense.motion_blur_matrix(f[b])
        np.testing.assert_allclose(nk.forward(x, vec, mass, 0.0, _ntaps(vec))[b : b + 1], _dense_apply(A, x[b : b + 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            nk.adjoint(x, vec, mass, 0.0, _ntaps(vec), 2)[b : b + 1], _dense_apply(A, x[b : b + 1], True), rtol=0, atol=1e-12
        )


@pytest.mark.parametrize("a", [(20.0, 0.0), (0.0, -21.5), (14.5, 14.5)])
def test_long_segments_fit_the_buffers_sized_by_max_taps(a):
    # |m| = 20 along x: 21 major steps; the step buffers hold max_taps(20) // 3 = 27 (a
    # buffer of max_taps // 4 = 20 would overflow, silently in numba)
    h, w = 3, 4
    f = np.zeros((2, h, w))
    f[0], f[1] = a
    f[:, 1, 1] = (a[1], -a[0])
    x = np.random.default_rng(25).random((1, 1, h, w))
    vec, mass = np.ascontiguousarray(f[None, None]), np.ones((1, 1, h, w))
    A = dense.motion_blur_matrix(f)
    for beta in (0.0, 0.5):
        if beta:  # half segment p -> p + a: twice the two-segment matrix of (a, 0) minus the identity
            A = 2 * dense.two_segment_matrix(f, np.zeros_like(f)) - dense.two_segment_matrix(0 * f, 0 * f)
        np.testing.assert_allclose(nk.forward(x, vec, mass, beta, _ntaps(vec)), _dense_apply(A, x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(nk.adjoint(x, vec, mass, beta, _ntaps(vec), 1), _dense_apply(A, x, True), rtol=0, atol=1e-12)


def test_param_grad_of_one_flow_for_a_batch_is_per_image():
    # Nf = 1, S = 2, N = 2: every image reads the one flow; gradients stay per image
    rng = np.random.default_rng(26)
    f = _flow(27, 2.0, axis_aligned=False)
    vec = np.ascontiguousarray(np.stack([f, -0.7 * f], 1))  # (1, 2, 2, H, W)
    mass = rng.uniform(0.2, 1.0, (1, 2, H, W))
    x, g = rng.random((2, 1, H, W)), rng.random((2, 1, H, W))
    gv, gm = nk.param_grad(x, g, vec, mass, 0.5, _ntaps(vec))
    assert gv.shape == (2, 2, 2, H, W) and gm.shape == (2, 2, H, W)
    rv, rm = _reference_param_grads(x, g, vec, mass, 0.5)
    np.testing.assert_allclose(gm, rm, rtol=0, atol=1e-12)
    np.testing.assert_allclose(gv, rv, rtol=0, atol=1e-7)
