"""Tiled (product-convolution) and Jacobi preconditioners for the CG x-step (issue 14, part 1)."""
import math

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.priors import Tikhonov
from pnpdeblur.solvers import hqs
from pnpdeblur.solvers._common import XStep
from pnpdeblur.solvers.preconditioners import (
    JacobiPreconditioner,
    TiledPreconditioner,
    UniformPreconditioner,
    fitted_motion_vector,
    fitted_motion_vectors,
    make_preconditioner,
    normal_diagonal,
    tile_partition,
)

F64 = torch.float64


def _flow(h, w, amp, seed=0):
    return np.random.default_rng(seed).uniform(-amp, amp, (2, h, w))


def _dense(fn, h, w):
    """Matrix of a linear map on (1, 1, h, w) images, column j = fn(e_j)."""
    eye = torch.eye(h * w, dtype=F64).reshape(h * w, 1, h, w)
    return fn(eye).reshape(h * w, h * w).T


# ---------------------------------------------------------------- partition of unity
@pytest.mark.parametrize("n,tile", [(8, 8), (13, 4), (64, 32), (250, 64), (333, 48), (20, 64)])
def test_partition_sums_to_one_and_fits_its_boxes(n, tile):
    w, starts, size = tile_partition(n, tile)
    assert w.shape == (max(1, round(2 * n / tile)), n)
    assert bool((w >= 0).all())
    torch.testing.assert_close(w.sum(0), torch.ones(n, dtype=F64), atol=1e-14, rtol=0)
    for i in range(w.shape[0]):
        outside = torch.ones(n, dtype=torch.bool)
        outside[starts[i]:starts[i] + size] = False
        assert bool((w[i][outside] == 0).all())
        assert 0 <= starts[i] <= n - size


def test_partition_window_values_by_hand():
    # n = 8, tile = 8: two windows, spacing 4, centres 1.5 and 5.5
    w, starts, size = tile_partition(8, 8)
    # pixel 3: 1.5/4 and 2.5/4 of a spacing from the centres -> cos²(33.75°), cos²(56.25°)
    assert w[0, 3].item() == pytest.approx((1 + math.cos(math.radians(67.5))) / 2, abs=1e-15)
    assert w[1, 3].item() == pytest.approx((1 - math.cos(math.radians(67.5))) / 2, abs=1e-15)
    # beyond the outer centres the outer windows are 1
    assert w[0, :2].tolist() == [1.0, 1.0] and w[1, 6:].tolist() == [1.0, 1.0]
    assert w[1, 1].item() == 0.0 and w[0, 6].item() == 0.0  # exactly one spacing away or more


def test_squared_roots_sum_to_one_over_the_tiles():
    # Σ_t (√w_t)² = 1 at every pixel, through the preconditioner's own index layout
    h, w = 23, 31
    P = TiledPreconditioner(pd.MotionBlur(_flow(h, w, 3.0)), (h, w), F64, "cpu", tile=8)
    acc = torch.zeros(h * w, dtype=F64).index_add_(0, P.index, (P.root**2).reshape(-1))
    torch.testing.assert_close(acc, torch.ones(h * w, dtype=F64), atol=1e-14, rtol=0)
    assert P.n_tiles == (round(2 * h / 8), round(2 * w / 8))


# ---------------------------------------------------------------- tiled preconditioner
@pytest.mark.parametrize("tile,shift", [(4, 0.0), (6, 0.05), (8, 0.0), (1000, 0.0)])
def test_tiled_is_symmetric_positive_definite(tile, shift):
    h, w = 12, 10
    K = pd.MotionBlur(_flow(h, w, 5.0))
    P = TiledPreconditioner(K, (h, w), F64, "cpu", tile=tile, shift=shift)
    Pm = _dense(lambda e: P(e, 0.01), h, w)
    np.testing.assert_allclose(Pm, Pm.T, rtol=0, atol=1e-12)
    torch.linalg.cholesky(Pm)  # raises unless positive definite
    assert float(torch.linalg.eigvalsh(Pm).min()) > 0


def test_identity_blur_gives_exact_scaled_identity():
    # K = I (zero flow): |H_t|² = 1, so M⁻¹ = Σ_t √w_t (1 + β + δ)⁻¹ √w_t = I / (1 + β + δ)
    h, w = 19, 26
    K = pd.MotionBlur(np.zeros((2, h, w)))
    r = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, h, w)))
    for tile, shift in ((4, 0.0), (10, 0.2), (64, 0.0)):
        P = TiledPreconditioner(K, (h, w), F64, "cpu", tile=tile, shift=shift)
        torch.testing.assert_close(P(r, 0.3), r / (1.3 + shift), atol=1e-14, rtol=0)


def test_one_tile_is_the_uniform_preconditioner():
    h, w = 20, 17
    K = pd.MotionBlur(_flow(h, w, 6.0, seed=3))
    r = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 2, h, w)))
    T = TiledPreconditioner(K, (h, w), F64, "cpu", tile=1000, shift=0.0)
    U = UniformPreconditioner(K, (h, w), F64, "cpu")
    assert T.n_tiles == (1, 1)
    torch.testing.assert_close(T(r, 0.004), U(r, 0.004), atol=1e-11, rtol=1e-12)


def test_batch_of_flows_gets_its_own_tiles():
    h, w = 16, 20
    flows = np.stack([_flow(h, w, 4.0, seed=5), _flow(h, w, 7.0, seed=6)])
    r = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 1, h, w)))
    both = TiledPreconditioner(pd.MotionBlur(flows), (h, w), F64, "cpu", tile=8)(r, 0.01)
    for i in range(2):
        one = TiledPreconditioner(pd.MotionBlur(flows[i]), (h, w), F64, "cpu", tile=8)(r[i:i + 1], 0.01)
        torch.testing.assert_close(both[i:i + 1], one, atol=1e-13, rtol=0)


def test_float32_keeps_dtype():
    h, w = 16, 16
    K = pd.MotionBlur(_flow(h, w, 4.0).astype(np.float32))
    P = TiledPreconditioner(K, (h, w), torch.float32, "cpu", tile=8)
    r = torch.rand(1, 3, h, w)
    z = P(r, 0.01)
    assert z.dtype == torch.float32 and z.shape == r.shape and bool(torch.isfinite(z).all())
    P64 = TiledPreconditioner(pd.MotionBlur(_flow(h, w, 4.0)), (h, w), F64, "cpu", tile=8)
    torch.testing.assert_close(z.double(), P64(r.double(), 0.01), atol=1e-3, rtol=1e-4)


def _weighted_fit_by_hand(flow, wt):
    """The doubled-angle fit written out with numpy: flow (2, H, W), wt (H, W)."""
    u, v = flow
    L = np.hypot(u, v)
    ang2 = 2 * np.arctan2(v, u)
    c = np.sum(wt * L * np.cos(ang2)) / wt.sum()
    s = np.sum(wt * L * np.sin(ang2)) / wt.sum()
    theta = 0.5 * np.arctan2(s, c)
    length = np.sum(wt * L) / wt.sum()
    return np.array([length * np.cos(theta), length * np.sin(theta)])


def test_fitted_motion_vectors_weighted_by_tile():
    h, w = 12, 14
    flow = _flow(h, w, 8.0, seed=7)
    wy, _, _ = tile_partition(h, 8)
    wx, _, _ = tile_partition(w, 6)
    got = fitted_motion_vectors(torch.from_numpy(flow)[None], wy, wx)
    assert got.shape == (1, wy.shape[0], wx.shape[0], 2)
    for a in range(wy.shape[0]):
        for b in range(wx.shape[0]):
            ref = _weighted_fit_by_hand(flow, np.outer(wy[a].numpy(), wx[b].numpy()))
            np.testing.assert_allclose(got[0, a, b], ref, atol=1e-12)
    # all-ones weights: the global fit of the uniform preconditioner
    ones = fitted_motion_vectors(torch.from_numpy(flow)[None], torch.ones(1, h, dtype=F64), torch.ones(1, w, dtype=F64))
    np.testing.assert_allclose(ones[0, 0, 0], fitted_motion_vector(torch.from_numpy(flow)[None])[0], atol=1e-12)


# ---------------------------------------------------------------- Jacobi
@pytest.mark.parametrize("kind", ["line", "lut", "two", "batch"])
def test_normal_diagonal_matches_dense_matrix(kind):
    h, w = 11, 9
    f = _flow(h, w, 7.0, seed=11)  # |m| up to ~10 px on a 9-px-wide image: borders clamp a lot
    K = {
        "line": lambda: pd.MotionBlur(f),
        "lut": lambda: pd.MotionBlur.lut(_flow(h, w, 5.0, seed=12)),
        "two": lambda: pd.TwoSegmentBlur(f, _flow(h, w, 4.0, seed=13), tau=0.7),
        "batch": lambda: pd.MotionBlur(np.stack([f, np.zeros_like(f)])),
    }[kind]()
    d = normal_diagonal(K, (h, w))
    nf = K.image_shape[0]
    assert d.shape == (nf, 1, h, w) and d.dtype == F64
    for i in range(nf):
        Kd = _dense(lambda e: _apply_one(K, e, i), h, w)
        ref = (Kd**2).sum(0).reshape(h, w)  # Σ_i K_ij²
        torch.testing.assert_close(d[i, 0], ref, atol=1e-14, rtol=1e-13)
    if kind == "batch":
        torch.testing.assert_close(d[1, 0], torch.ones(h, w, dtype=F64), atol=1e-15, rtol=0)  # K = I


def _apply_one(K, e, i):
    """K's flow i applied to the probes e (M, 1, H, W): the probes ride as channels of image i."""
    nf = K.image_shape[0]
    if nf == 1:
        return K._forward(e)
    z = torch.zeros((nf, e.shape[0]) + tuple(e.shape[2:]), dtype=e.dtype)
    z[i] = e[:, 0]
    return K._forward(z)[i][:, None]


def test_uniform_blur_diagonal_is_the_squared_kernel_sum():
    k = np.random.default_rng(4).random((3, 5))
    k /= k.sum()
    K = pd.UniformBlur(k)
    Kd = _dense(K._forward, 8, 9)
    d = normal_diagonal(K, (8, 9))
    torch.testing.assert_close(d[0, 0], (Kd**2).sum(0).reshape(8, 9), atol=1e-15, rtol=1e-13)


def test_jacobi_is_the_dense_diagonal_inverse():
    h, w = 10, 12
    K = pd.MotionBlur(_flow(h, w, 6.0, seed=8))
    J = JacobiPreconditioner(K, (h, w), F64, "cpu")
    Kd = _dense(K._forward, h, w)
    ref = torch.diag(1.0 / (torch.diag(Kd.T @ Kd) + 0.02))
    torch.testing.assert_close(_dense(lambda e: J(e, 0.02), h, w), ref, atol=1e-12, rtol=1e-13)


# ---------------------------------------------------------------- same CG solution
@pytest.mark.parametrize("spec", ["tiles", "tiles_shifted", "jacobi"])
def test_xstep_same_solution_with_preconditioner(spec):
    n = 32
    flow = pd.data.random_motion_flow((n, n), preset="23", seed=1, max_len=8).astype(np.float64)
    K = pd.MotionBlur(flow)
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.random((1, 1, n, n)))
    y = K._forward(x) + 0.01 * torch.from_numpy(rng.standard_normal(x.shape))
    # tile 16 on 32²: 4 × 4 overlapping tiles
    P = {"tiles": TiledPreconditioner(K, (n, n), F64, "cpu", tile=16, shift=0.0),
         "tiles_shifted": TiledPreconditioner(K, (n, n), F64, "cpu", tile=16, shift=0.05),
         "jacobi": "jacobi"}[spec]
    beta = 0.01
    plain, ip = XStep(K, y, 600, 1e-10, "cg")(y, beta, y)
    pre, iq = XStep(K, y, 600, 1e-10, "cg", preconditioner=P)(y, beta, y)
    assert ip.converged and iq.converged, (ip.message, iq.message)
    # both within tol·‖b‖ of the same system's solution: ‖x − x*‖ ≤ ‖b − A x‖ / β
    bound = 2 * 1e-10 * float(torch.linalg.vector_norm(K._adjoint(y) + beta * y)) / beta
    assert float((pre - plain).abs().max()) < bound
    assert float((pre - plain).abs().max()) < 1e-6


def test_hqs_accepts_the_new_names():
    n = 24
    K = pd.MotionBlur(_flow(n, n, 3.0, seed=2))
    y = np.asarray(K(np.random.default_rng(5).random((n, n))))
    # a linear prior, so that the iterates differ only by the x-steps' CG tolerance
    # (noise level 0.05: β ≥ 0.016, where every variant converges in a few dozen iterations)
    kw = dict(prior=Tikhonov(), noise_level=0.05, n_iter=3, cg_iters=400, cg_tol=1e-10)
    ref = hqs(y, K, **kw)
    assert ref.converged
    for name in ("tiles", "jacobi"):
        res = hqs(y, K, preconditioner=name, **kw)
        assert res.converged and res.settings["preconditioner"] == name
        assert np.max(np.abs(res.x - ref.x)) < 1e-6


# ---------------------------------------------------------------- errors
def test_bad_arguments_raise_named_errors():
    K = pd.MotionBlur(_flow(16, 16, 3.0))
    for bad in (2, 3.5, True, "64", None):
        with pytest.raises(ValueError, match="tile"):
            TiledPreconditioner(K, (16, 16), F64, "cpu", tile=bad)
    for bad in (-0.1, float("nan"), float("inf"), "0"):
        with pytest.raises(ValueError, match="shift"):
            TiledPreconditioner(K, (16, 16), F64, "cpu", shift=bad)
    with pytest.raises(ValueError, match="shape"):
        TiledPreconditioner(K, (16, 0), F64, "cpu")
    with pytest.raises(ValueError, match="shape"):
        JacobiPreconditioner(K, (16,), F64, "cpu")
    with pytest.raises(ValueError, match="shape"):
        normal_diagonal(K, (16, 15))
    P = TiledPreconditioner(K, (16, 16), F64, "cpu")
    with pytest.raises(ValueError, match="spatial shape"):
        P(torch.zeros(1, 1, 16, 15, dtype=F64), 0.1)
    with pytest.raises(ValueError, match="spatial shape"):
        JacobiPreconditioner(K, (16, 16), F64, "cpu")(torch.zeros(1, 1, 15, 16, dtype=F64), 0.1)
    two = pd.TwoSegmentBlur(np.ones((2, 16, 16)), -np.ones((2, 16, 16)))
    with pytest.raises(TypeError, match="preconditioner='tiles'"):
        make_preconditioner("tiles", two, torch.zeros(1, 1, 16, 16, dtype=F64))
    conv = pd.Convolution(np.ones((3, 3)) / 9, boundary="replicate")
    with pytest.raises(TypeError, match="preconditioner='jacobi'"):
        make_preconditioner("jacobi", conv, torch.zeros(1, 1, 16, 16, dtype=F64))
    with pytest.raises(ValueError, match="wy and wx"):
        fitted_motion_vectors(K.flow, torch.ones(1, 15, dtype=F64), torch.ones(1, 16, dtype=F64))
    with pytest.raises(ValueError, match="preconditioner"):
        make_preconditioner("tile", K, torch.zeros(1, 1, 16, 16, dtype=F64))


def test_shifted_tiles_need_fewer_iterations():
    # measured: 38 plain vs 27 (tile 16, δ = 0.1) and 35 (δ = 0) CG iterations to 1e-4
    from pnpdeblur.solvers.cg import _cg_core

    n = 48
    K = pd.MotionBlur(pd.data.random_motion_flow((n, n), preset="23", seed=0, max_len=12).astype(np.float64))
    yy, xx = np.mgrid[0:n, 0:n] / n
    x = torch.from_numpy(0.5 + 0.4 * np.sin(9 * xx) * np.cos(7 * yy))[None, None]
    y = K._forward(x) + 0.01 * torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape))
    beta = 0.002
    A = lambda t: K._normal(t) + beta * t  # noqa: E731
    b = K._adjoint(y) + beta * y
    P = TiledPreconditioner(K, (n, n), F64, "cpu", tile=16, shift=0.1)
    _, plain = _cg_core(A, b, y, 1e-4, 0.0, 500, None)
    _, pre = _cg_core(A, b, y, 1e-4, 0.0, 500, lambda r: P(r, beta))
    assert plain.converged and pre.converged
    assert pre.iterations < 0.8 * plain.iterations, (pre.iterations, plain.iterations)
