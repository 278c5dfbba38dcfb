"""Preconditioned CG (issue 14, part 1): same answers, fewer iterations, clear errors."""
import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.priors import TV
from pnpdeblur.solvers import cg, hqs
from pnpdeblur.solvers._common import XStep
from pnpdeblur.solvers.preconditioners import UniformPreconditioner, fitted_motion_vector


def _spd(rng, n, cond):
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def test_pcg_matches_dense_solve_float64():
    rng = np.random.default_rng(0)
    A = _spd(rng, 30, 1e4)
    b = rng.standard_normal((3, 30))
    ref = np.linalg.solve(A, b.T).T
    Minv = np.linalg.inv(A + 0.5 * _spd(rng, 30, 10.0))  # SPD, close to A⁻¹
    x, info = cg(A, b, tol=1e-13, maxiter=300, preconditioner=lambda r: r @ Minv.T)
    assert info.converged and isinstance(x, np.ndarray) and x.dtype == np.float64
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-10)
    _, plain = cg(A, b, tol=1e-13, maxiter=300)
    assert info.iterations < plain.iterations
    # 1-D b, torch callable on torch input
    xt, info1 = cg(torch.from_numpy(A), torch.from_numpy(b[0]), tol=1e-13, maxiter=300,
                   preconditioner=lambda r: r @ torch.from_numpy(Minv).T)
    np.testing.assert_allclose(xt.numpy(), ref[0], atol=1e-10)


def test_uniform_preconditioner_is_spd():
    flow = np.zeros((2, 12, 10)); flow[0] = 3.0; flow[1] = -2.0
    P = UniformPreconditioner(pd.MotionBlur(flow), (12, 10), torch.float64, "cpu")
    eye = torch.eye(120, dtype=torch.float64).reshape(120, 1, 12, 10)
    Pm = P(eye, 0.01).reshape(120, 120)
    np.testing.assert_allclose(Pm, Pm.T, atol=1e-12)
    torch.linalg.cholesky(Pm)  # raises unless positive definite


def test_fitted_vector_treats_m_and_minus_m_alike():
    flow = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    flow[0, 0] = 5.0
    flow[0, 0, :2] = -5.0  # half the pixels point the other way: same blur
    m = fitted_motion_vector(flow)[0]
    np.testing.assert_allclose(np.abs(m), [5.0, 0.0], atol=1e-12)


def _problem(n=48):
    yy, xx = np.mgrid[0:n, 0:n] / n
    flow = np.stack([6.0 + 0.5 * xx, 2.0 + 0.5 * yy])  # nearly uniform
    K = pd.MotionBlur(flow)
    x = (0.5 + 0.4 * np.sin(7 * xx) * np.cos(5 * yy)).astype(np.float64)
    y = np.asarray(K(x)) + 0.01 * np.random.default_rng(1).standard_normal(x.shape)
    return K, x, y


def test_hqs_uniform_same_solution_fewer_iterations():
    K, x, y = _problem()
    kw = dict(prior=TV(), noise_level=0.01, cg_iters=500, cg_tol=1e-8)
    plain = hqs(y, K, **kw)
    pre = hqs(y, K, preconditioner="uniform", **kw)
    assert plain.converged and pre.converged
    # every x-step solves the same system: the iterates agree to CG's tolerance
    assert np.max(np.abs(pre.aux - plain.aux)) < 1e-5
    assert np.max(np.abs(pre.x - plain.x)) < 1e-5
    n_plain = sum(h["cg_iterations"] for h in plain.history)
    n_pre = sum(h["cg_iterations"] for h in pre.history)
    assert n_pre < 0.9 * n_plain, (n_pre, n_plain)  # measured 536 vs 664 (48², tol 1e-8)
    assert pre.settings["preconditioner"] == "uniform"


def test_xstep_callable_preconditioner_same_solution():
    K, x, y = _problem(32)
    yt = torch.from_numpy(y)[None, None]
    v = torch.from_numpy(x)[None, None]
    P = UniformPreconditioner(K, (32, 32), torch.float64, "cpu")
    a, ia = XStep(K, yt, 500, 1e-10, "cg")(v, 0.01, v)
    b, ib = XStep(K, yt, 500, 1e-10, "cg", preconditioner=P)(v, 0.01, v)
    assert ia.converged and ib.converged
    torch.testing.assert_close(a, b, atol=1e-7, rtol=0)


def test_hqs_differentiable_with_preconditioner():
    K, x, y = _problem(24)
    yt = torch.from_numpy(y).requires_grad_(True)
    res = hqs(yt, K, prior=TV(), noise_level=0.01, n_iter=2, cg_tol=1e-8, cg_iters=300,
              differentiable=True, preconditioner="uniform")
    res.x.sum().backward()
    assert yt.grad is not None and torch.isfinite(yt.grad).all()


def test_none_is_bit_identical_to_default():
    K, x, y = _problem(32)
    a = hqs(y, K, prior=TV(), noise_level=0.01)
    b = hqs(y, K, prior=TV(), noise_level=0.01, preconditioner=None)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.aux, b.aux)
    A = _spd(np.random.default_rng(2), 12, 100.0)
    bb = np.random.default_rng(3).standard_normal((2, 12))
    np.testing.assert_array_equal(cg(A, bb)[0], cg(A, bb, preconditioner=None)[0])


def test_bad_preconditioner_errors():
    K, x, y = _problem(16)
    with pytest.raises(ValueError, match="preconditioner"):
        hqs(y, K, prior=TV(), noise_level=0.01, preconditioner="nope")
    with pytest.raises(TypeError, match="preconditioner"):
        hqs(y, K, prior=TV(), noise_level=0.01, preconditioner=3)
    with pytest.raises(TypeError, match="preconditioner"):
        cg(np.eye(3), np.ones(3), preconditioner="uniform")
    with pytest.raises(ValueError, match="preconditioner"):
        cg(np.eye(3), np.ones(3), preconditioner=lambda r: r, M=lambda r: r)
    with pytest.raises(TypeError, match="preconditioner='uniform'"):
        hqs(y, pd.TwoSegmentBlur(np.ones((2, 16, 16)), -np.ones((2, 16, 16))), prior=TV(),
            noise_level=0.01, preconditioner="uniform")


def test_indefinite_preconditioner_is_reported():
    A = _spd(np.random.default_rng(4), 8, 10.0)
    x, info = cg(A, np.ones((1, 8)), preconditioner=lambda r: -r)
    assert not info.converged and "preconditioner is not positive definite" in info.message
