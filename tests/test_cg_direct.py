"""Conjugate gradients checked iterate by iterate against an independent numpy PCG.

Small dense SPD systems (n ≤ 10, float64), so every test runs in milliseconds: the
stopping rule (tol, atol, b = 0), the per-sample bookkeeping, the messages, the
preconditioner paths, the implicit gradient and every argument check of
:func:`pnpdeblur.solvers.cg.cg`.
"""
import re

import numpy as np
import pytest
import torch

from pnpdeblur.operators.convolution import Convolution
from pnpdeblur.solvers.cg import CGInfo, cg


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)



def _spd(seed, n=8, cond=10.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def _ref_pcg(A, b, x0=None, tol=1e-6, atol=0.0, maxiter=100, Minv=None):
    """Textbook (P)CG for one vector: x, relative-residual history, iterations."""
    x = np.zeros_like(b) if x0 is None else x0.astype(np.float64).copy()
    r = b - A @ x
    bnorm = np.linalg.norm(b)
    scale = bnorm if bnorm > 0 else 1.0
    thresh = max(tol * bnorm, atol)
    hist = [np.linalg.norm(r) / scale]
    if np.linalg.norm(r) <= thresh:
        return x, hist, 0
    z = r if Minv is None else Minv @ r
    p = z.copy()
    rz = r @ z
    k = 0
    while k < maxiter:
        k += 1
        Ap = A @ p
        alpha = rz / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        hist.append(np.linalg.norm(r) / scale)
        if np.linalg.norm(r) <= thresh:
            break
        z = r if Minv is None else Minv @ r
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, hist, k


def _padded(hist, length):
    return hist + [hist[-1]] * (length - len(hist))


# -- the iteration itself ----------------------------------------------------------------
def test_iterates_match_textbook_cg_per_sample():
    A = _spd(0, 8, cond=30.0)
    rng = np.random.default_rng(1)
    b = rng.standard_normal((3, 8)) * np.array([[1.0], [10.0], [0.1]])
    x, info = cg(A, b, tol=1e-7, maxiter=50)
    refs = [_ref_pcg(A, b[i], tol=1e-7, maxiter=50) for i in range(3)]
    for i, (xr, _, _) in enumerate(refs):
        np.testing.assert_allclose(x[i], xr, rtol=0, atol=1e-10)
    assert info.iterations_per_sample == [k for _, _, k in refs]
    assert all(type(k) is int for k in info.iterations_per_sample + [info.iterations])
    assert info.iterations == max(k for _, _, k in refs)
    n = info.iterations + 1
    assert len(info.history) == n
    got = np.array(info.history)  # (iterations + 1, N)
    want = np.array([_padded(h, n) for _, h, _ in refs]).T
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)
    assert info.residual == info.history[-1]
    assert info.converged is True and info.converged_per_sample == [True, True, True]
    assert info.message == f"converged in {info.iterations} iterations"
    assert isinstance(info, CGInfo) and info["iterations"] == info.iterations


def test_a_sample_that_has_converged_is_frozen_while_the_others_iterate():
    # A diagonal operator acts on each sample's elements exactly, so a batch must give each
    # sample bitwise what it gives alone: a converged sample takes no more steps.
    d = torch.tensor([1.0, 2.0, 5.0, 11.0, 23.0, 60.0], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.0, 0.0, 1.7, 0.0, 0.0],  # two eigen-directions: done in 2 steps
                      [1.0, -2.0, 0.5, 3.0, 0.25, -1.0]], dtype=torch.float64)
    x, info = cg(lambda v: v * d, b, tol=1e-9, maxiter=20)
    assert info.iterations_per_sample[0] < info.iterations_per_sample[1]
    for i in range(2):
        xi, infoi = cg(lambda v: v * d, b[i:i + 1], tol=1e-9, maxiter=20)
        assert torch.equal(x[i], xi[0]), i
        assert info.iterations_per_sample[i] == infoi.iterations
        assert [h[i] for h in info.history[:infoi.iterations + 1]] == [h[0] for h in infoi.history]


def test_preconditioned_iterates_match_textbook_pcg():
    A = _spd(2, 8, cond=100.0)
    Minv = np.diag(1.0 / np.diag(A)) + 0.01 * _spd(3, 8, cond=2.0)  # SPD, not A⁻¹
    rng = np.random.default_rng(4)
    b = rng.standard_normal((2, 8))
    calls = []

    def pre(r):  # numpy callable on numpy residuals
        calls.append(type(r))
        return r @ Minv.T

    x, info = cg(A, b, tol=1e-10, maxiter=60, preconditioner=pre)
    refs = [_ref_pcg(A, b[i], tol=1e-10, maxiter=60, Minv=Minv) for i in range(2)]
    for i, (xr, h, k) in enumerate(refs):
        np.testing.assert_allclose(x[i], xr, rtol=0, atol=1e-11)
        assert info.iterations_per_sample[i] == k
    want = np.array([_padded(h, info.iterations + 1) for _, h, _ in refs]).T
    np.testing.assert_allclose(np.array(info.history), want, rtol=1e-7, atol=1e-10)
    assert set(calls) == {np.ndarray}
    # the same preconditioner given as the torch-level M gives the very same iterates
    Mt = torch.from_numpy(Minv)
    x2, info2 = cg(A, b, tol=1e-10, maxiter=60, M=lambda r: r @ Mt.T)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-11)
    assert info2.iterations_per_sample == info.iterations_per_sample


def test_relative_tolerance_stops_at_the_first_residual_below_it():
    A = _spd(5, 10, cond=50.0)
    b = 7.0 * np.random.default_rng(6).standard_normal(10)  # ‖b‖ far from 1
    _, hist, _ = _ref_pcg(A, b, tol=1e-14, maxiter=100)
    tol = float(np.sqrt(hist[4] * hist[5]))  # strictly between the 4th and 5th residual
    x, info = cg(A, b, tol=tol, maxiter=100)
    assert info.iterations == 5 and info.converged
    assert info.history[4][0] > tol >= info.history[5][0]
    # an absolute floor above the relative one decides instead
    atol = float(np.sqrt(hist[2] * hist[3])) * np.linalg.norm(b)
    _, info = cg(A, b, tol=1e-14, atol=atol, maxiter=100)
    assert info.iterations == 3 and info.converged
    _, info = cg(A, b, tol=0.0, atol=atol, maxiter=100)
    assert info.iterations == 3
    # ... and a relative one above the absolute floor decides when it is larger
    _, info = cg(A, b, tol=tol, atol=1e-300, maxiter=100)
    assert info.iterations == 5


def test_zero_right_hand_side_uses_absolute_residuals():
    A = _spd(7, 6)
    b = np.zeros((2, 6))
    x0 = np.stack([np.zeros(6), np.ones(6)])
    x, info = cg(A, b, x0=x0, tol=1e-8, atol=1e-9, maxiter=50)
    assert info.history[0][0] == 0.0
    assert info.history[0][1] == pytest.approx(np.linalg.norm(A @ np.ones(6)), rel=1e-12)
    assert info.iterations_per_sample[0] == 0 and info.converged
    np.testing.assert_array_equal(x[0], 0.0)
    np.testing.assert_allclose(x[1], 0.0, atol=1e-8)
    _, _, k = _ref_pcg(A, b[1], x0=np.ones(6), tol=1e-8, atol=1e-9, maxiter=50)
    assert info.iterations_per_sample[1] == k


def test_warm_start_is_used_and_not_modified():
    A = _spd(8, 8, cond=40.0)
    b = np.random.default_rng(9).standard_normal((1, 8))
    sol = np.linalg.solve(A, b[0])
    x0 = (sol + 1e-3 * np.arange(8))[None]
    keep = x0.copy()
    x, info = cg(A, b, x0=x0, tol=1e-10, maxiter=50)
    xr, hist, k = _ref_pcg(A, b[0], x0=x0[0], tol=1e-10, maxiter=50)
    np.testing.assert_allclose(info.history[0][0], hist[0], rtol=1e-12)
    assert info.iterations == k
    np.testing.assert_allclose(x[0], xr, atol=1e-12)
    np.testing.assert_array_equal(x0, keep)
    # x0 of another float dtype is cast to b's
    x32, _ = cg(A, b, x0=x0.astype(np.float32), tol=1e-10, maxiter=50)
    assert x32.dtype == np.float64
    np.testing.assert_allclose(x32, x, atol=1e-9)
    # an exact warm start needs no iteration
    D = np.diag(np.arange(1.0, 9.0))  # exact in floating point
    _, info = cg(D, D @ np.ones(8), x0=np.ones(8), tol=1e-8)
    assert info.iterations == 0 and info.history == [[0.0]]


def test_maxiter_is_exact_and_the_message_lists_slow_samples():
    A = _spd(10, 10, cond=1e3)
    b = np.stack([np.zeros(10), np.random.default_rng(11).standard_normal(10)])
    x, info = cg(A, b, tol=1e-12, maxiter=3)
    xr, hist, _ = _ref_pcg(A, b[1], tol=1e-12, maxiter=3)
    np.testing.assert_allclose(x[1], xr, atol=1e-12)
    assert info.iterations == 3 and info.iterations_per_sample == [0, 3]
    assert info.converged is False and info.converged_per_sample == [True, False]
    rel = round(info.history[-1][1], 8)
    assert rel == round(hist[3], 8)
    assert info.message == (
        f"samples [1] did not reach tol=1e-12 in maxiter=3 iterations (relative residuals [{rel}])"
    )
    _, one = cg(A, b[1], tol=1e-12, maxiter=1)  # maxiter=1 is allowed and means one step
    assert one.iterations == 1 and len(one.history) == 2


def test_per_sample_breakdown_of_an_indefinite_operator():
    A0 = torch.from_numpy(_spd(12, 6))
    sign = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)[:, None]
    b = torch.from_numpy(np.random.default_rng(13).standard_normal((3, 6)))
    x, info = cg(lambda v: (v @ A0.T) * sign, b, tol=1e-10, maxiter=40)
    assert info.converged_per_sample == [True, False, True] and info.converged is False
    assert info.iterations_per_sample[1] == 0
    assert torch.equal(x[1], torch.zeros(6, dtype=torch.float64))
    for i in (0, 2):
        np.testing.assert_allclose(x[i].numpy(), np.linalg.solve(A0.numpy(), b[i].numpy()), atol=1e-8)
    assert info.message == "samples [1] broke down (pᵀAp ≤ 0: A is not positive definite)"


def test_breakdown_of_the_preconditioner_at_the_start_and_later():
    A = _spd(14, 6)
    b = np.random.default_rng(15).standard_normal((2, 6))
    sign = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    x, info = cg(A, b, tol=1e-10, M=lambda r: r * sign)
    assert info.converged_per_sample == [True, False]
    assert info.iterations_per_sample == [info.iterations, 0]
    assert info.message == "samples [1] broke down (rᵀMr ≤ 0: the preconditioner is not positive definite)"
    np.testing.assert_array_equal(x[1], 0.0)
    # SPD for the first residual, negative afterwards: stops after one step
    calls = [0]

    def flip(r):
        calls[0] += 1
        return r if calls[0] == 1 else -r

    x, info = cg(A, b[:1], tol=1e-10, M=flip)
    assert info.iterations == 1 and info.iterations_per_sample == [1] and not info.converged
    assert "preconditioner is not positive definite" in info.message
    assert "A is not positive definite" not in info.message
    xr, _, _ = _ref_pcg(A, b[0], maxiter=1)
    np.testing.assert_allclose(x[0], xr, atol=1e-12)  # the first step is kept


def test_breakdown_with_both_causes_lists_both():
    A0 = torch.from_numpy(_spd(16, 5))
    sign_a = torch.tensor([[1.0], [-1.0], [1.0]], dtype=torch.float64)
    sign_m = torch.tensor([[1.0], [1.0], [-1.0]], dtype=torch.float64)
    b = torch.ones(3, 5, dtype=torch.float64)
    _, info = cg(lambda v: (v @ A0.T) * sign_a, b, tol=1e-10, M=lambda r: r * sign_m)
    assert info.message == (
        "samples [1] broke down (pᵀAp ≤ 0: A is not positive definite); "
        "samples [2] broke down (rᵀMr ≤ 0: the preconditioner is not positive definite)"
    )
    assert info.converged_per_sample == [True, False, False]


def test_nan_from_the_operator_or_the_preconditioner_raises():
    A = _spd(17, 4)
    b = np.ones((1, 4))
    with pytest.raises(ValueError, match=r"^A\(x0\) produced NaN or Inf values$"):
        cg(lambda v: v * np.nan, b, x0=np.ones((1, 4)))
    calls = [0]

    def late_nan(v):  # fine at x0, NaN inside the iteration
        calls[0] += 1
        return v @ A.T if calls[0] < 3 else v * np.nan

    with pytest.raises(ValueError, match=r"^A produced NaN or Inf values during conjugate gradients$"):
        cg(late_nan, b, x0=np.zeros((1, 4)), tol=1e-14)
    with pytest.raises(ValueError, match=r"^A produced NaN or Inf values during conjugate gradients$"):
        cg(lambda v: v * np.inf, b)
    with pytest.raises(ValueError, match=r"^the preconditioner produced NaN or Inf values$"):
        cg(A, b, preconditioner=lambda r: r * np.nan)
    calls2 = [0]

    def late_bad_m(r):
        calls2[0] += 1
        return r if calls2[0] == 1 else r * np.nan

    with pytest.raises(ValueError, match=r"^the preconditioner produced NaN or Inf values$"):
        cg(A, b, tol=1e-14, M=late_bad_m)


# -- operator and preconditioner forms -------------------------------------------------------
def test_operator_matrix_and_callable_forms():
    rng = np.random.default_rng(18)
    K = Convolution(rng.random((3, 3)), "replicate")
    b = torch.from_numpy(rng.standard_normal((2, 1, 4, 5)))
    n = 20
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, 4, 5)
    KtK = torch.stack([K._adjoint(K._forward(e))[0].reshape(-1) for e in eye], 1).numpy()
    A = KtK + 0.5 * np.eye(n)
    ref = np.linalg.solve(A, b.reshape(2, -1).numpy().T).T.reshape(b.shape)
    from pnpdeblur.operators import Identity

    x, info = cg(K.T @ K + 0.5 * Identity(), b, tol=1e-12, maxiter=100)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float64
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-9)
    # a torch matrix acts on the last axis; float32 b makes the matrix float32
    M = torch.from_numpy(_spd(19, 5))
    b2 = torch.from_numpy(rng.standard_normal((3, 5)))
    x2, _ = cg(M, b2, tol=1e-12)
    np.testing.assert_allclose(x2.numpy(), np.linalg.solve(M.numpy(), b2.numpy().T).T, atol=1e-9)
    x3, _ = cg(M.numpy(), b2.float(), tol=1e-6)
    assert x3.dtype == torch.float32
    np.testing.assert_allclose(x3.numpy(), x2.numpy(), atol=1e-4)
    # a numpy callable gets numpy arrays; float32 results are cast back to b's dtype
    seen = []

    def f(v):
        seen.append((type(v), v.dtype))
        return (v @ M.numpy().T).astype(np.float32)

    x4, _ = cg(f, b2.numpy(), tol=1e-5)
    assert isinstance(x4, np.ndarray) and x4.dtype == np.float64
    assert set(seen) == {(np.ndarray, np.dtype(np.float64))}
    np.testing.assert_allclose(x4, x2.numpy(), atol=1e-4)


def test_preconditioner_outputs_are_checked_and_cast():
    A = _spd(20, 5)
    b = torch.from_numpy(np.random.default_rng(21).standard_normal((2, 5)))
    Minv = torch.from_numpy(np.linalg.inv(A))
    # a torch callable returning numpy of another dtype is converted and cast
    x, info = cg(A, b, tol=1e-12, preconditioner=lambda r: (r @ Minv.T).numpy().astype(np.float32))
    assert x.dtype == torch.float64 and info.converged
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b.numpy().T).T, atol=1e-9)
    with pytest.raises(ValueError, match=r"^preconditioner\(r\) returned shape \(2, 4\), expected r's shape \(2, 5\)$"):
        cg(A, b, preconditioner=lambda r: r[:, :4])
    with pytest.raises(ValueError, match=r"^preconditioner\(r\) returned shape \(4,\), expected r's shape \(5,\)$"):
        cg(A, b[0].numpy(), preconditioner=lambda r: r[:4])


def test_one_dimensional_b_with_preconditioner_and_matrix():
    A = _spd(22, 7)
    b = np.random.default_rng(23).standard_normal(7)
    D = np.diag(1.0 / np.diag(A))
    x, info = cg(A, b, tol=1e-11, preconditioner=lambda r: D @ r, x0=np.zeros(7))
    xr, hist, k = _ref_pcg(A, b, tol=1e-11, Minv=D)
    assert x.shape == (7,) and info.iterations == k
    np.testing.assert_allclose(x, xr, atol=1e-12)
    xm, infom = cg(A, b, tol=1e-11, M=lambda r: r @ torch.from_numpy(D).T)
    np.testing.assert_allclose(xm, xr, atol=1e-12)
    assert infom.iterations == k


# -- implicit differentiation ---------------------------------------------------------------
def _param_problem():
    torch.manual_seed(0)
    n = 4
    M0 = torch.randn(n, n, dtype=torch.float64)
    base = M0 @ M0.T + n * torch.eye(n, dtype=torch.float64)
    return n, base


def test_implicit_gradient_matches_the_closed_form():
    n, base = _param_problem()
    theta = torch.rand(n, dtype=torch.float64, requires_grad=True)
    phi = torch.rand(n, dtype=torch.float64)  # used by A but not differentiated
    unused = torch.rand(n, dtype=torch.float64, requires_grad=True)  # not used by A
    b = torch.randn(2, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, n, dtype=torch.float64)
    x, info = cg(lambda v: v @ base.T + v * theta.exp() + v * phi, b, tol=1e-13, maxiter=50,
                 params=[phi, theta, unused])
    assert "ImplicitCG" in type(x.grad_fn).__name__
    assert isinstance(info, CGInfo) and info.converged
    (x * w).sum().backward()
    # closed form: x = A⁻¹ b, dL/db = A⁻¹ w, dL/dθ_j = −Σ_samples λ_j e^θ_j x_j
    Ad = (base + torch.diag(theta.exp() + phi)).detach()
    lam = torch.linalg.solve(Ad, w.T).T
    xd = torch.linalg.solve(Ad, b.detach().T).T
    np.testing.assert_allclose(b.grad, lam, atol=1e-10, rtol=0)
    np.testing.assert_allclose(theta.grad, -(lam * theta.exp().detach() * xd).sum(0), atol=1e-10, rtol=0)
    assert unused.grad is None and phi.grad is None


def test_implicit_backward_uses_the_preconditioner_and_warm_start():
    n, base = _param_problem()
    Minv = torch.linalg.inv(base)
    b = torch.randn(1, n, dtype=torch.float64, requires_grad=True)
    calls = [0]

    def pre(r):
        calls[0] += 1
        return r @ Minv.T

    x, info = cg(base, b, tol=1e-12, maxiter=50, preconditioner=pre)
    assert info.iterations == 1  # exact preconditioner: one step
    forward_calls = calls[0]
    x.sum().backward()
    assert calls[0] > forward_calls  # the adjoint solve is preconditioned too
    np.testing.assert_allclose(b.grad, torch.linalg.solve(base, torch.ones(n, 1, dtype=torch.float64)).T,
                               atol=1e-10, rtol=0)
    sol = torch.linalg.solve(base, b.detach().T).T
    _, warm = cg(base, b, x0=sol, tol=1e-10, maxiter=50)
    assert warm.iterations == 0


def test_implicit_grad_switch():
    n, base = _param_problem()
    b = torch.randn(1, n, dtype=torch.float64, requires_grad=True)
    x, _ = cg(base, b, tol=1e-12, implicit_grad=False)
    assert x.grad_fn is not None and "ImplicitCG" not in type(x.grad_fn).__name__
    x, _ = cg(base, b, tol=1e-12, implicit_grad=True)
    assert "ImplicitCG" in type(x.grad_fn).__name__
    x, _ = cg(base, b.detach(), tol=1e-12)
    assert x.grad_fn is None
    with torch.no_grad():
        x, _ = cg(base, b, tol=1e-12)
    assert x.grad_fn is None
    theta = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    x, _ = cg(lambda v: v @ base.T + v * theta, b.detach(), tol=1e-12, params=[theta])
    assert "ImplicitCG" in type(x.grad_fn).__name__


# -- argument checks ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(b=np.float64(1.0)), TypeError, r"^b must be an array"),
        (dict(b=np.array(1.0)), ValueError, r"^b must have at least one axis, got a scalar$"),
        (dict(b=np.ones(2), tol=-1.0), ValueError,
         r"^tol must be a finite non-negative number \(with tol or atol > 0\), got -1\.0$"),
        (dict(b=np.ones(2), tol="1e-3"), ValueError, r"^tol must be a finite non-negative number .*got '1e-3'$"),
        (dict(b=np.ones(2), tol=0.0), ValueError, r"^tol must be a finite non-negative number .*got 0\.0$"),
        (dict(b=np.ones(2), tol=float("inf")), ValueError, r"^tol must be a finite non-negative number .*got inf$"),
        (dict(b=np.ones(2), maxiter=0), ValueError, r"^maxiter must be a positive int, got 0$"),
        (dict(b=np.ones(2), maxiter=2.0), ValueError, r"^maxiter must be a positive int, got 2\.0$"),
        (dict(b=np.ones((1, 2)), x0=np.ones(2)), ValueError, r"^x0 has shape \(2,\), expected b's shape \(1, 2\)$"),
        (dict(b=np.ones(2), x0=np.ones(3)), ValueError, r"^x0 has shape \(1, 3\), expected b's shape \(1, 2\)$"),
        (dict(b=np.ones(2), x0=np.zeros(2, dtype=np.int32)), TypeError, r"^x0 must be float32 or float64"),
        (dict(b=np.ones(2), x0=np.array([0.0, np.inf])), ValueError, r"^x0 contains NaN or Inf values$"),
        (dict(b=np.ones(2), x0=[0.0, 0.0]), TypeError, r"^x0 must be an array"),
        (dict(b=np.array([1, 2])), TypeError, r"^b must be float32 or float64"),
        (dict(b=np.array([1.0, np.nan])), ValueError, r"^b contains NaN or Inf values$"),
        (dict(b=np.ones(2), M=3), TypeError, r"^M must be a callable M\(r\) -> z, got int$"),
        (dict(b=np.ones(2), preconditioner="jacobi"), TypeError,
         r"^preconditioner must be a callable preconditioner\(r\) -> z approximating A⁻¹ r \(or None\), got str$"),
        (dict(b=np.ones(2), M=lambda r: r, preconditioner=lambda r: r), ValueError,
         r"^give the preconditioner as preconditioner= or M=, not both$"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cg(np.eye(2), **kwargs)


def test_bad_operators_are_refused():
    with pytest.raises(ValueError, match=r"^a matrix A must be square with size matching the last axis of b "
                                         r"\(2\), got shape \(2, 3\)$"):
        cg(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"^a matrix A must be square .*got shape \(3, 3\)$"):
        cg(np.eye(3), np.ones(2))
    with pytest.raises(ValueError, match=r"^a matrix A must be square .*got shape \(4,\)$"):
        cg(torch.ones(4), torch.ones(4))
    with pytest.raises(TypeError, match=r"^A must be a LinearOperator, a callable or a square matrix, got str$"):
        cg("eye", np.ones(2))
    # a callable whose output is not x's shape: broadcasting would have hidden a (1,)-shaped result
    with pytest.raises(ValueError, match=r"^A\(x\) returned shape \(2,\), expected x's shape \(4,\)$"):
        cg(lambda v: v[:2], np.ones(4))
    with pytest.raises(ValueError, match=r"^A\(x\) returned shape \(1,\), expected x's shape \(4,\)$"):
        cg(lambda v: v.sum(keepdims=True), np.ones(4))
    with pytest.raises(ValueError, match=r"^A\(x\) returned shape \(1, 3, 4\), expected x's shape \(3, 4\)$"):
        cg(lambda v: v[None], torch.ones(3, 4))


def test_zero_tol_with_an_absolute_floor_is_allowed():
    x, info = cg(2.0 * np.eye(3), np.ones(3), tol=0, atol=1e-12)
    np.testing.assert_allclose(x, 0.5, atol=1e-12)
    assert info.converged and info.iterations == 1
    assert re.fullmatch(r"converged in 1 iterations", info.message)


def test_a_zero_preconditioner_is_a_preconditioner_breakdown():
    # rᵀMr = 0 for r ≠ 0: M is not positive definite (blaming A would mislead)
    x, info = cg(_spd(24, 4), np.ones((1, 4)), M=lambda r: r * 0)
    assert info.message == "samples [0] broke down (rᵀMr ≤ 0: the preconditioner is not positive definite)"
    assert info.iterations == 0 and not info.converged


def test_a_singular_direction_is_a_breakdown_not_a_division_by_zero():
    # pᵀAp = 0 with p ≠ 0 (A only semi-definite): stop the sample and say why
    A = np.diag([1.0, 0.0])
    x, info = cg(A, np.array([[0.0, 1.0], [1.0, 0.0]]), tol=1e-12)
    assert info.converged_per_sample == [False, True]
    assert info.message == "samples [0] broke down (pᵀAp ≤ 0: A is not positive definite)"
    np.testing.assert_array_equal(x, [[0.0, 0.0], [1.0, 0.0]])


def test_a_residual_equal_to_the_threshold_stops():
    # b = 0: threshold 0; 2I from x0 = 1 reaches r = 0 exactly in one step, which meets
    # ‖r‖ ≤ 0 and must stop there (iterating on would divide 0 by 0 and report a breakdown)
    x, info = cg(2.0 * np.eye(3), np.zeros((1, 3)), x0=np.ones((1, 3)), tol=1e-6)
    assert info.converged and info.iterations == 1 and info.history[-1] == [0.0]
    np.testing.assert_array_equal(x, 0.0)


def test_a_preconditioner_returning_a_non_array_is_named():
    A = np.eye(2)
    for b in (np.ones(2), torch.ones(2, dtype=torch.float64)):
        with pytest.raises(TypeError, match=r"^preconditioner\(r\) must be an array"):
            cg(A, b, preconditioner=lambda r: [1.0, 1.0])


def test_matrix_shape_rules_on_higher_dimensional_b():
    # a matrix acts on the LAST axis of b, whatever b's rank; it must be square
    A = _spd(25, 4)
    b = np.random.default_rng(26).standard_normal((2, 3, 4))
    x, info = cg(A, b, tol=1e-12)
    np.testing.assert_allclose(x, np.linalg.solve(A, b.reshape(-1, 4).T).T.reshape(b.shape), atol=1e-10)
    with pytest.raises(ValueError, match=r"^a matrix A must be square with size matching the last axis of b "
                                         r"\(4\), got shape \(3, 3\)$"):
        cg(np.eye(3), b)
    with pytest.raises(ValueError, match=r"^a matrix A must be square .*\(2\), got shape \(3, 2\)$"):
        cg(np.ones((3, 2)), np.ones(2))


def test_a_callable_returning_a_non_array_is_named():
    with pytest.raises(TypeError, match=r"^A\(x\) must be an array"):
        cg(lambda v: v.tolist(), np.ones(2))


def test_default_maxiter_is_100():
    # 150 distinct, widely spread eigenvalues: CG needs more than 100 steps for 1e-14
    A = np.diag(np.geomspace(1.0, 1e6, 150))
    x, info = cg(A, np.ones(150), tol=1e-14)
    assert info.iterations == 100 and not info.converged
    assert "in maxiter=100 iterations" in info.message


def test_a_callable_of_another_dtype_keeps_x_in_bs_dtype():
    # a torch callable returning float64 for a float32 b made x float64 (numpy ones were cast)
    b = torch.ones(3)
    x, info = cg(lambda v: v.double() * 2, b)
    assert x.dtype == torch.float32 and info.converged
    np.testing.assert_allclose(x.numpy(), 0.5, atol=1e-6)
    x, _ = cg(lambda v: v.astype(np.float64) * 2, b.numpy())
    assert x.dtype == np.float32


def test_an_operator_takes_b_in_the_layouts_of_its_own_calls():
    # (H, W), (H, W, C) numpy and (C, H, W) torch reached the unchecked _forward as they were:
    # a numba typing error or a wrong solve, instead of the solve of each channel
    from pnpdeblur.operators import Identity

    rng = np.random.default_rng(30)
    K = Convolution(rng.random((3, 3)), "replicate")
    A_op = K.T @ K + 0.5 * Identity()
    n = 20
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, 4, 5)
    A = np.stack([A_op._forward(e)[0].reshape(-1).numpy() for e in eye], 1)  # dense, per channel
    hwc = rng.standard_normal((4, 5, 3))
    ref = np.stack([np.linalg.solve(A, hwc[..., c].reshape(-1)).reshape(4, 5) for c in range(3)], 2)
    x, info = cg(A_op, hwc, tol=1e-12)
    assert isinstance(x, np.ndarray) and x.shape == (4, 5, 3) and info.converged
    np.testing.assert_allclose(x, ref, atol=1e-9)
    x_t, _ = cg(A_op, torch.from_numpy(hwc.transpose(2, 0, 1).copy()), tol=1e-12)
    assert x_t.shape == (3, 4, 5)
    np.testing.assert_allclose(x_t.numpy().transpose(1, 2, 0), ref, atol=1e-9)
    x_g, _ = cg(A_op, hwc[..., 0], tol=1e-12)
    assert x_g.shape == (4, 5)
    np.testing.assert_allclose(x_g, ref[..., 0], atol=1e-9)
    # a warm start in the same layout is used: started at the answer, nothing to do
    _, info0 = cg(A_op, hwc, x0=ref, tol=1e-8)
    assert info0.iterations == 0
    from pnpdeblur.operators import MotionBlur

    M = MotionBlur(np.full((2, 4, 5), 1.5))
    with pytest.raises(ValueError, match=r"^b has spatial size \(5, 4\), but .* was built for \(H, W\) = \(4, 5\)$"):
        cg(M.T @ M + 0.5 * Identity(), rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match=r"^b must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(20,\)$"):
        cg(A_op, rng.standard_normal(20))


def test_the_report_prints_in_one_line_without_the_history():
    info = CGInfo(converged=False, iterations=100, residual=[1.23456e-3, 2e-7], history=[[1.0, 1.0]] * 101,
                  converged_per_sample=[False, True], iterations_per_sample=[100, 40], message="1 of 2 did not")
    assert repr(info) == ("CGInfo(converged=False, iterations=100, residual=[0.001235, 2e-07], "
                          "message='1 of 2 did not')")


def test_a_callable_that_mixes_the_batch_is_refused_and_batched_false_solves_one_system():
    # lambda z: Kᵀ K z + βz on one (H, W, C) numpy image: the first axis is a row of pixels, and
    # a per-row CG (each row its own step sizes) returned a wrong answer without a word
    rng = np.random.default_rng(31)
    K = Convolution(rng.random((3, 3)), "replicate")
    hwc = rng.standard_normal((4, 5, 3))
    mix = lambda z: K.T(K(z)) + 0.5 * z  # noqa: E731
    calls = []

    def counted(z):
        calls.append(z.shape)
        return mix(z)

    with pytest.raises(ValueError, match=r"^A mixes the samples along b's first axis \(b has shape \(4, 5, 3\)\): "
                                         r"cg treats .* Pass batched=False to solve b as one system"):
        cg(counted, hwc)
    assert calls == [(4, 5, 3)]  # one probe, no iteration
    # batched=False: the dense solve of the whole image (K acts on each channel of (H, W, C))
    n = 20
    eye = np.eye(n).reshape(n, 4, 5)
    dense = np.stack([np.asarray(mix(e[..., None]))[..., 0].reshape(-1) for e in eye], 1)
    ref = np.stack([np.linalg.solve(dense, hwc[..., c].reshape(-1)).reshape(4, 5) for c in range(3)], 2)
    x, info = cg(mix, hwc, tol=1e-12, batched=False)
    assert isinstance(x, np.ndarray) and x.shape == (4, 5, 3) and info.converged and len(info.residual) == 1
    np.testing.assert_allclose(x, ref, atol=1e-9)
    # and the same through torch, with a warm start in b's own shape
    xt, info_t = cg(lambda z: torch.from_numpy(mix(z.numpy())), torch.from_numpy(hwc), x0=torch.from_numpy(ref),
                    tol=1e-8, batched=False)
    assert xt.shape == (4, 5, 3) and info_t.iterations == 0
    with pytest.raises(TypeError, match=r"^batched must be True or False, got 1$"):
        cg(mix, hwc, batched=1)


def test_a_callable_acting_per_sample_passes_the_probe_and_solves_each_sample():
    # block-diagonal A (a different SPD matrix per sample, applied by a callable): the batched
    # CG is each sample's own CG; float32 round-off in the probe is not taken for mixing
    mats = np.stack([_spd(s, n=6) for s in (40, 41, 42)])
    b = np.random.default_rng(43).standard_normal((3, 6))
    per_sample = lambda v: np.einsum("nij,nj->ni", mats.astype(v.dtype), v)  # noqa: E731
    x, info = cg(per_sample, b, tol=1e-12)
    assert info.converged and len(info.residual) == 3
    for i in range(3):
        np.testing.assert_allclose(x[i], np.linalg.solve(mats[i], b[i]), atol=1e-9)
    x32, info32 = cg(per_sample, b.astype(np.float32), tol=1e-5)
    assert x32.dtype == np.float32 and info32.converged
    # a callable mixing only a little beyond round-off is still caught
    leak = lambda v: per_sample(v) + 1e-3 * v.sum(0, keepdims=True)  # noqa: E731
    with pytest.raises(ValueError, match=r"^A mixes the samples"):
        cg(leak, b)
    # at any scale of A
    with pytest.raises(ValueError, match=r"^A mixes the samples"):
        cg(lambda v: 1e-9 * leak(v), b)
    # two samples are a batch too
    with pytest.raises(ValueError, match=r"^A mixes the samples"):
        cg(lambda v: v + 1e-3 * v.sum(0, keepdims=True), b[:2])
    # NaN from A is named by the iterations, not taken for mixing
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        cg(lambda v: np.full_like(v, np.nan), b)
