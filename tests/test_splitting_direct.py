"""HQS, ADMM and their shared loop on a 12-pixel problem with a dense operator.

The blur is a random dense matrix wrapped as a :class:`LinearOperator` (so one operator
call costs microseconds), the prior is the ridge shrinkage ``v / (1 + w σ²)`` whose
every iterate has a closed form, and the references below are written from the
docstrings' formulas with ``numpy.linalg.solve``. Every test runs in well under a second;
they pin the iterates, the history entries, the settings, the prior's context, the
callback, ``x0``, the CG bookkeeping and the helpers of ``solvers/_common.py``.
"""
import math
import os
import re
import warnings

import numpy as np
import pytest
import torch

from pnpdeblur.operators.base import Identity
from pnpdeblur.operators.convolution import Convolution, UniformBlur
from pnpdeblur.solvers._common import (
    XStep,
    check_image_range,
    check_noise_level,
    operator_tensors,
    prepare_like,
    prepare_observation,
    prior_caller,
    relative_residual,
)
from pnpdeblur.solvers.admm import admm
from pnpdeblur.solvers.hqs import hqs
from pnpdeblur.solvers.schedules import DEFAULT_LAMBDA

from _operators import Dense  # tests/_operators.py (tests/ is on sys.path under pytest)

SHAPE = (1, 3, 4)  # (C, H, W)
N_PIX = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


def _problem(seed=0, n=1):
    rng = np.random.default_rng(seed)
    A = 0.6 * np.eye(N_PIX) + 0.4 * rng.random((N_PIX, N_PIX)) / N_PIX * 3
    y = rng.random((n,) + SHAPE)
    return Dense(A), A, y


class Ridge:
    """Exact prox of (wσ²/2)‖·‖² that records σ and the context of each call."""

    def __init__(self, w=3.0):
        self.w = w
        self.calls = []

    def __call__(self, z, sigma, *, context=None):
        self.calls.append((sigma, dict(context)))
        return z / (1.0 + self.w * sigma**2)

    def __repr__(self):
        return f"Ridge({self.w})"


def _shrink(v, s, w):
    return v / (1.0 + w * s**2)


def _hqs_ref(A, y, betas, sigmas, w, z0=None):
    Aty = y.reshape(len(y), -1) @ A
    z = (y if z0 is None else z0).reshape(len(y), -1).copy()
    zs, xs = [], []
    for b, s in zip(betas, sigmas):
        x = np.linalg.solve(A.T @ A + b * np.eye(N_PIX), (b * z + Aty).T).T
        z = _shrink(x, s, w) if s > 0 else x
        zs.append(z.reshape(y.shape))
        xs.append(x.reshape(y.shape))
    return zs, xs


def _admm_ref(A, y, rhos, sigmas, w):
    Aty = y.reshape(len(y), -1) @ A
    z = y.reshape(len(y), -1).copy()
    u = np.zeros_like(z)
    prev = None
    zs, xs, us = [], [], []
    for r, s in zip(rhos, sigmas):
        if prev is not None:
            u = u * (prev / r)
        prev = r
        x = np.linalg.solve(A.T @ A + r * np.eye(N_PIX), (Aty + r * (z - u)).T).T
        z = _shrink(x + u, s, w)
        u = u + x - z
        zs.append(z.reshape(y.shape))
        xs.append(x.reshape(y.shape))
        us.append(u.reshape(y.shape))
    return zs, xs, us


TIGHT = dict(cg_iters=100, cg_tol=1e-13, progress=False)
BETAS = [0.05, 0.3, 2.0, 9.0]
SIGMAS = [0.3, 0.15, 0.07, 0.03]


# -- the iterations ---------------------------------------------------------------------------
def test_hqs_every_iterate_history_and_settings():
    K, A, y = _problem(0, n=2)
    ref = np.random.default_rng(9).random(y.shape)
    prior = Ridge(3.0)
    seen = []
    res = hqs(y, K, prior, noise_level=0.02, betas=BETAS, sigmas=SIGMAS, reference=ref,
              callback=lambda e, z: seen.append(z.clone()), **TIGHT)
    zs, xs = _hqs_ref(A, y, BETAS, SIGMAS, 3.0)
    assert len(seen) == 4 and res.iterations == 4
    for k in range(4):
        np.testing.assert_allclose(seen[k].numpy(), zs[k], atol=1e-11, rtol=0)
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)
    np.testing.assert_allclose(res.aux, xs[-1], atol=1e-11, rtol=0)
    for k, h in enumerate(res.history):
        assert h["iteration"] == k and h["beta"] == BETAS[k] and h["sigma"] == SIGMAS[k]
        Kz = zs[k].reshape(2, -1) @ A.T
        assert h["residual"] == pytest.approx(np.linalg.norm(Kz - y.reshape(2, -1)) / np.linalg.norm(y), rel=1e-9)
        assert h["cg_converged"] is True and 1 <= h["cg_iterations"] <= N_PIX + 2
        mse = ((zs[k] - ref) ** 2).reshape(2, -1).mean(1)
        assert h["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-8)
        assert "primal_residual" not in h
    times = [h["time"] for h in res.history]
    assert times == sorted(times) and times[0] >= 0
    assert list(res.history[0]) == ["iteration", "beta", "sigma", "residual", "cg_iterations",
                                    "cg_converged", "time", "psnr"]
    assert res.converged is True
    assert res.settings == {
        "noise_level": 0.02, "betas": BETAS, "sigmas": SIGMAS, "cg_iters": 100, "cg_tol": 1e-13,
        "lam": DEFAULT_LAMBDA, "x_step": "cg", "prior": "Ridge(3.0)", "preconditioner": None, "weighted": False,
    }
    # the prior saw x_{k+1} (the x-step solution) at σ_k, with the context of iteration k
    assert [s for s, _ in prior.calls] == SIGMAS
    for k, (_, ctx) in enumerate(prior.calls):
        assert set(ctx) == {"y", "K", "iteration", "beta", "x"}
        assert ctx["iteration"] == k and ctx["beta"] == BETAS[k] and ctx["K"] is K
        np.testing.assert_array_equal(ctx["y"].numpy(), y)
        np.testing.assert_allclose(ctx["x"].numpy(), xs[k], atol=1e-11, rtol=0)


def test_admm_every_iterate_dual_and_primal_residual():
    K, A, y = _problem(1)
    prior = Ridge(2.0)
    seen = []
    res = admm(y, K, prior, noise_level=0.02, rhos=BETAS, sigmas=SIGMAS,
               callback=lambda e, z: seen.append(z.clone()), **TIGHT)
    zs, xs, us = _admm_ref(A, y, BETAS, SIGMAS, 2.0)
    for k in range(4):
        np.testing.assert_allclose(seen[k].numpy(), zs[k], atol=1e-11, rtol=0)
        h = res.history[k]
        assert h["rho"] == BETAS[k] and h["sigma"] == SIGMAS[k] and h["iteration"] == k
        assert h["primal_residual"] == pytest.approx(
            np.linalg.norm(xs[k] - zs[k]) / np.linalg.norm(zs[k]), rel=1e-9)
        np.testing.assert_allclose(prior.calls[k][1]["x"].numpy(), xs[k], atol=1e-11, rtol=0)
        assert prior.calls[k][1]["beta"] == BETAS[k]  # the context always says 'beta'
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)
    np.testing.assert_allclose(res.aux, xs[-1], atol=1e-11, rtol=0)
    assert list(res.history[0]) == ["iteration", "rho", "sigma", "residual", "primal_residual",
                                    "cg_iterations", "cg_converged", "time"]
    assert res.settings["rhos"] == BETAS and "betas" not in res.settings
    # the prior is applied to x + u: its input differs from the x-step solution after step 1
    assert np.abs(us[0]).max() > 1e-3


def test_admm_dual_with_a_fixed_penalty_and_zero_z():
    # ρ constant (no rescaling), a prior returning 0: z_0 = y, then z = 0 and u_k = Σ x_j,
    # x_k = (AᵀA+ρI)⁻¹(Aᵀy + ρ(z_{k−1} − u_{k−1}))
    K, A, y = _problem(2)
    rho = 0.7
    res = admm(y, K, lambda z, s: torch.zeros_like(z), rhos=[rho] * 3, sigmas=[0.1] * 3, **TIGHT)
    Aty = y.reshape(-1) @ A
    u, z = np.zeros(N_PIX), y.reshape(-1)
    for _ in range(3):
        x = np.linalg.solve(A.T @ A + rho * np.eye(N_PIX), Aty + rho * (z - u))
        u, z = u + x, np.zeros(N_PIX)
    np.testing.assert_allclose(res.aux.reshape(-1), x, atol=1e-11, rtol=0)
    np.testing.assert_array_equal(res.x, 0.0)
    assert res.history[-1]["primal_residual"] == pytest.approx(np.linalg.norm(x) / 1e-30, rel=1e-9)


def test_zero_sigma_skips_the_prior_and_x0_starts_z():
    K, A, y = _problem(3)
    prior = Ridge(5.0)
    z0 = np.full(y.shape, 0.25)
    res = hqs(y, K, prior, betas=[0.5, 1.0], sigmas=[0.2, 0.0], x0=z0, **TIGHT)
    zs, xs = _hqs_ref(A, y, [0.5, 1.0], [0.2, 0.0], 5.0, z0=z0)
    assert len(prior.calls) == 1
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)
    np.testing.assert_allclose(res.x, res.aux, atol=0, rtol=0)
    res_y = hqs(y, K, Ridge(5.0), betas=[0.5, 1.0], sigmas=[0.2, 0.0], **TIGHT)
    assert np.abs(res_y.x - res.x).max() > 1e-4  # x0 matters


def test_default_schedule_from_the_noise_level():
    from pnpdeblur.solvers.schedules import dpir_schedule

    K, A, y = _problem(4)
    res = hqs(y, K, Ridge(), noise_level=0.03, n_iter=3, lam=0.3, sigma_start=0.2, **TIGHT)
    sig, bet = dpir_schedule(0.03, 3, 0.2, 0.3)
    assert res.settings["sigmas"] == list(sig) and res.settings["betas"] == list(bet)
    assert res.settings["lam"] == 0.3 and res.settings["noise_level"] == 0.03
    zs, _ = _hqs_ref(A, y, bet, sig, 3.0)
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)


def test_context_items_and_callback_stop():
    K, A, y = _problem(5)
    prior = Ridge()
    stops = []

    def cb(entry, z):
        stops.append(entry["iteration"])
        return entry["iteration"] == 1

    res = admm(y, K, prior, rhos=BETAS, sigmas=SIGMAS, context={"extra": 7, "beta": -1.0},
               callback=cb, **TIGHT)
    assert stops == [0, 1] and res.iterations == 2
    assert [c[1]["extra"] for c in prior.calls] == [7, 7]
    assert [c[1]["beta"] for c in prior.calls] == [-1.0, -1.0]  # the caller's context wins
    zs, _, _ = _admm_ref(A, y, BETAS[:2], SIGMAS[:2], 3.0)
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)
    prior = Ridge()
    hqs(y, K, prior, betas=BETAS[:2], sigmas=SIGMAS[:2], context={"extra": 8}, **TIGHT)
    assert [c[1]["extra"] for c in prior.calls] == [8, 8]


def test_unconverged_cg_is_reported():
    K, A, y = _problem(6)
    res = hqs(y, K, Ridge(), betas=[0.01, 0.02], sigmas=[0.1, 0.1], cg_iters=1, cg_tol=1e-12, progress=False)
    assert res.converged is False
    assert [h["cg_iterations"] for h in res.history] == [1, 1]
    assert [h["cg_converged"] for h in res.history] == [False, False]
    # one CG step from the warm start: x = x0 + α r, the textbook first step
    Aty = y.reshape(-1) @ A
    M = A.T @ A + 0.01 * np.eye(N_PIX)
    x0 = y.reshape(-1)
    r = 0.01 * x0 + Aty - M @ x0
    x1 = x0 + (r @ r) / (r @ M @ r) * r
    z1 = _shrink(x1, 0.1, 3.0)
    assert res.history[0]["residual"] == pytest.approx(
        np.linalg.norm(A @ z1 - y.reshape(-1)) / np.linalg.norm(y), rel=1e-9)


def test_fft_x_step_matches_the_dense_periodic_solve():
    rng = np.random.default_rng(7)
    k = rng.random((3, 3))
    K = UniformBlur(k / k.sum())
    y = rng.random((5, 6))
    A = np.stack([np.asarray(K(e.reshape(5, 6))).reshape(-1) for e in np.eye(30)], 1)
    prior = Ridge()
    res = hqs(y, K, prior, betas=[0.1, 1.0], sigmas=[0.2, 0.05], progress=False)
    z = y.reshape(-1)
    for b, s in zip([0.1, 1.0], [0.2, 0.05]):
        x = np.linalg.solve(A.T @ A + b * np.eye(30), A.T @ y.reshape(-1) + b * z)
        z = _shrink(x, s, 3.0)
    assert res.x.shape == (5, 6)
    np.testing.assert_allclose(res.x.reshape(-1), z, atol=1e-11, rtol=0)
    assert res.settings["x_step"] == "fft" and "cg_iterations" not in res.history[0]
    assert res.converged is True
    res_cg = hqs(y, K, Ridge(), betas=[0.1, 1.0], sigmas=[0.2, 0.05], x_step="cg", **TIGHT)
    assert res_cg.settings["x_step"] == "cg"
    np.testing.assert_allclose(res_cg.x, res.x, atol=1e-10)


def test_layouts_and_array_types_come_back():
    K, A, y = _problem(8)
    r_np = hqs(y[0, 0], K, Ridge(), betas=[1.0], sigmas=[0.1], **TIGHT)
    assert isinstance(r_np.x, np.ndarray) and r_np.x.shape == (3, 4) and r_np.aux.shape == (3, 4)
    r_t = hqs(torch.from_numpy(y[0]), K, Ridge(), betas=[1.0], sigmas=[0.1], **TIGHT)
    assert isinstance(r_t.x, torch.Tensor) and r_t.x.shape == (1, 3, 4) and isinstance(r_t.aux, torch.Tensor)
    np.testing.assert_allclose(r_t.x.numpy()[0], r_np.x, atol=1e-13)


def test_differentiable_keeps_the_graph_only_when_asked():
    K, A, y = _problem(9)
    yt = torch.from_numpy(y).requires_grad_(True)
    x0 = torch.full_like(yt, 0.3).requires_grad_(True)
    res = hqs(yt, K, Ridge(), betas=[0.5], sigmas=[0.1], x0=x0, differentiable=True, **TIGHT)
    res.x.sum().backward()
    # z = s (AᵀA + βI)⁻¹(Aᵀy + β z0): dL/dy = s A M⁻¹ 1, dL/dz0 = s β M⁻¹ 1
    s = 1 / (1 + 3.0 * 0.01)
    Minv1 = np.linalg.solve(A.T @ A + 0.5 * np.eye(N_PIX), np.ones(N_PIX))
    np.testing.assert_allclose(yt.grad.numpy().reshape(-1), s * A @ Minv1, atol=1e-10)
    np.testing.assert_allclose(x0.grad.numpy().reshape(-1), s * 0.5 * Minv1, atol=1e-10)
    plain = hqs(yt, K, Ridge(), betas=[0.5], sigmas=[0.1], x0=x0, **TIGHT)
    assert plain.x.grad_fn is None and plain.aux.grad_fn is None
    with torch.no_grad():
        off = hqs(yt, K, Ridge(), betas=[0.5], sigmas=[0.1], differentiable=True, **TIGHT)
    assert off.x.grad_fn is None


def test_preconditioner_setting_and_use():
    K, A, y = _problem(10)
    Minv = torch.from_numpy(np.linalg.inv(A.T @ A + 0.5 * np.eye(N_PIX)))
    betas_seen = []

    def P(r, beta):
        betas_seen.append(beta)
        return (r.flatten(1) @ Minv.T).reshape(r.shape)

    res = hqs(y, K, Ridge(), betas=[0.5, 0.5], sigmas=[0.1, 0.1], preconditioner=P, **TIGHT)
    assert set(betas_seen) == {0.5}
    assert [h["cg_iterations"] for h in res.history] == [1, 1]  # exact preconditioner
    assert res.settings["preconditioner"] == repr(P)
    zs, _ = _hqs_ref(A, y, [0.5, 0.5], [0.1, 0.1], 3.0)
    np.testing.assert_allclose(res.x, zs[-1], atol=1e-11, rtol=0)


# -- _common helpers --------------------------------------------------------------------------
def test_prepare_observation_and_prepare_like():
    K, _, y = _problem(11)
    with pytest.raises(TypeError, match=r"^K must be a pnpdeblur LinearOperator \(e\.g\. MotionBlur, UniformBlur\), got ndarray$"):
        prepare_observation(y, np.eye(3))
    with pytest.raises(TypeError, match=r"^y must be float32 or float64"):
        prepare_observation(np.ones((3, 4), dtype=np.int64), K)
    with pytest.raises(ValueError, match=r"^y contains NaN"):
        prepare_observation(np.full((3, 4), np.nan), K)
    yt, kind, restore = prepare_observation(np.ones((3, 4, 2)), K)
    assert kind == "numpy" and yt.shape == (1, 2, 3, 4) and restore(yt).shape == (3, 4, 2)
    yt = torch.ones(1, 1, 3, 4, dtype=torch.float64)
    assert prepare_like(None, yt, "x0") is None
    v = torch.full((1, 1, 3, 4), 0.5, dtype=torch.float32, requires_grad=True)
    t = prepare_like(v, yt, "x0")
    assert t.dtype == torch.float64 and not t.requires_grad
    assert prepare_like(v, yt, "x0", detach=False).requires_grad
    assert prepare_like(np.zeros((3, 4)), yt, "x0").shape == (1, 1, 3, 4)
    with pytest.raises(ValueError, match=r"^reference has shape \(1, 1, 3, 5\) \(as N, C, H, W\), expected \(1, 1, 3, 4\)$"):
        prepare_like(np.zeros((3, 5)), yt, "reference")
    with pytest.raises(TypeError, match=r"^x0 must be float32 or float64"):
        prepare_like(np.zeros((3, 4), dtype=np.int32), yt, "x0")
    with pytest.raises(ValueError, match=r"^x0 contains NaN or Inf values$"):
        prepare_like(np.full((3, 4), np.inf), yt, "x0")


def test_noise_level_and_image_range_warnings():
    assert check_noise_level(None) is None
    assert check_noise_level(np.float32(0.5)) == pytest.approx(0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_noise_level(1) == 1.0
        check_image_range(torch.tensor([-0.5, 1.5]))
    with pytest.warns(UserWarning) as rec:
        check_noise_level(5.1)
    assert str(rec[0].message) == (
        "noise_level=5.1 is larger than the whole [0, 1] image range: it is the noise std of images "
        "in [0, 1] (for 8-bit grey levels divide by 255: 0.02)"
    )
    with pytest.raises(TypeError, match=r"^noise_level must be a real number, got str$"):
        check_noise_level("0.1")
    with pytest.raises(ValueError, match=r"^noise_level must be a finite non-negative number \(noise std for images in \[0, 1\]\), got -1$"):
        check_noise_level(-1)
    for bad in ([0.0, 1.51], [-0.51, 1.0]):
        with pytest.warns(UserWarning) as rec:
            check_image_range(torch.tensor(bad), name="img")
        lo, hi = min(bad), max(bad)
        assert str(rec[0].message) == (
            f"img has values in [{lo:.3g}, {hi:.3g}]; the priors and schedules assume images in [0, 1] "
            "(divide 8-bit images by 255), so results will be poor"
        )
    with pytest.warns(UserWarning, match=r"^y has values"):
        check_image_range(torch.tensor([300.0]))


def test_prior_caller_signatures_outputs_and_errors():
    z = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^prior must be callable as prior\(z, sigma, context=\.\.\.\), got int$"):
        prior_caller(3)
    from pnpdeblur.priors import TV

    # the class for an instance: calling it built TV(weight=z), and the error spoke of a weight
    with pytest.raises(TypeError, match=r"^prior must be a prior instance, got the class TV; pass TV\(\) instead$"):
        prior_caller(TV)
    got = []
    prior_caller(lambda v, s, context=None: got.append(("ctx", context)) or v)(z, 0.1, {"a": 1})
    prior_caller(lambda v, s, **kw: got.append(("kw", kw)) or v)(z, 0.1, {"b": 2})
    prior_caller(lambda v, s: got.append(("plain", s)) or v)(z, 0.1, {"c": 3})
    assert got == [("ctx", {"a": 1}), ("kw", {"context": {"b": 2}}), ("plain", 0.1)]
    out = prior_caller(lambda v, s: np.full((1, 1, 2, 2), 2.0, dtype=np.float32))(z, 0.1, {})
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and float(out.sum()) == 8.0
    with pytest.raises(ValueError, match=r"^the prior returned shape \(1, 1, 2\), expected the input shape \(1, 1, 2, 2\)$"):
        prior_caller(lambda v, s: v[..., 0])(z, 0.1, {})
    with pytest.raises(ValueError, match=r"^the prior's output contains NaN or Inf values$"):
        prior_caller(lambda v, s: v * np.inf)(z, 0.1, {})

    class NoSignature:  # a callable inspect cannot read is called with context=
        __signature__ = "not a signature"

        def __call__(self, v, s, **kw):
            got.append(("nosig", kw))
            return v

    prior_caller(NoSignature())(z, 0.1, {"d": 4})
    assert got[-1] == ("nosig", {"context": {"d": 4}})


def test_xstep_checks_and_closed_forms():
    K, A, y = _problem(12)
    yt = torch.from_numpy(y)
    with pytest.raises(ValueError, match=r"^x_step must be 'auto', 'cg' or 'fft', got 'lu'$"):
        XStep(K, yt, 10, 1e-6, "lu")
    with pytest.raises(ValueError, match=r"^cg_iters must be a positive int, got 0$"):
        XStep(K, yt, 0, 1e-6, "cg")
    with pytest.raises(ValueError, match=r"^cg_iters must be a positive int, got 2\.0$"):
        XStep(K, yt, 2.0, 1e-6, "cg")
    with pytest.raises(ValueError, match=r"^cg_tol must be positive, got 0\.0$"):
        XStep(K, yt, 10, 0.0, "cg")
    with pytest.raises(ValueError, match=r"^x_step='fft' needs a periodic uniform blur, got "):
        XStep(K, yt, 10, 1e-6, "fft")
    step = XStep(K, yt, 1, 1e-6, "cg")  # cg_iters=1 is allowed
    assert step.method == "cg" and not step.use_fft
    step = XStep(K, yt, 100, 1e-13, "auto")
    assert step.method == "cg"
    v = torch.full_like(yt, 0.2)
    x, info = step(v, 0.4, v)
    want = np.linalg.solve(A.T @ A + 0.4 * np.eye(N_PIX), A.T @ y.reshape(-1) + 0.4 * 0.2)
    np.testing.assert_allclose(x.numpy().reshape(-1), want, atol=1e-12)
    assert info.converged
    U = UniformBlur(np.full((3, 3), 1 / 9))
    yu = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    for method in ("auto", "fft"):
        s = XStep(U, yu, 10, 1e-6, method)
        assert s.method == "fft"
        xf, none = s(yu, 0.3, yu)
        assert none is None
    xc, _ = XStep(U, yu, 200, 1e-13, "cg")(yu, 0.3, yu)
    np.testing.assert_allclose(xf, xc, atol=1e-10, rtol=0)
    assert XStep(Convolution(np.ones((3, 3)) / 9, "periodic"), yu, 10, 1e-6, "auto").method == "fft"
    assert XStep(Convolution(np.ones((3, 3)) / 9, "replicate"), yu, 10, 1e-6, "auto").method == "cg"


def test_xstep_preconditioner_binding():
    K, A, y = _problem(13)
    yt = torch.from_numpy(y)
    seen = []

    def P(r, beta):
        seen.append((beta, torch.is_grad_enabled()))
        return r.float()  # another dtype: cast back to r's

    step = XStep(K, yt, 50, 1e-12, "cg", preconditioner=P)
    x, info = step(yt, 0.7, yt)
    assert x.dtype == torch.float64 and info.converged
    assert seen and {b for b, _ in seen} == {0.7} and not any(g for _, g in seen)
    bad = XStep(K, yt, 50, 1e-12, "cg", preconditioner=lambda r, b: r[..., :2])
    with pytest.raises(ValueError, match=r"^preconditioner\(r, beta\) returned shape \(1, 1, 3, 2\), expected r's shape \(1, 1, 3, 4\)$"):
        bad(yt, 0.7, yt)
    with pytest.raises(ValueError, match=r"^preconditioner must be None"):
        XStep(K, yt, 50, 1e-12, "cg", preconditioner="ilu")
    with pytest.raises(TypeError, match=r"^preconditioner='jacobi' needs a MotionBlur"):  # a known name, wrong operator
        XStep(K, yt, 50, 1e-12, "cg", preconditioner="jacobi")


def test_xstep_differentiable_reaches_operator_tensors():
    rng = np.random.default_rng(14)
    A = torch.from_numpy(0.6 * np.eye(N_PIX) + 0.1 * rng.random((N_PIX, N_PIX))).requires_grad_(True)
    K = Dense(A.detach())
    K.A = A  # an operator tensor that requires grad
    yt = torch.from_numpy(rng.random((1,) + SHAPE))
    step = XStep(K, yt, 100, 1e-13, "cg", differentiable=True)
    assert len(step.params) == 1 and step.params[0] is A
    assert XStep(K, yt, 100, 1e-13, "cg").params == []
    v = torch.zeros_like(yt)
    x, info = step(v, 0.5, v)
    assert "ImplicitCG" in type(x.grad_fn).__name__ and info.converged
    x.sum().backward()
    # x = M⁻¹Aᵀy, M = AᵀA + βI: dL/dA = y λᵀ − A(λ xᵀ + x λᵀ) with λ = M⁻¹ 1
    Ad = A.detach().numpy()
    M = Ad.T @ Ad + 0.5 * np.eye(N_PIX)
    yv = yt.numpy().reshape(-1)
    xv = np.linalg.solve(M, Ad.T @ yv)
    lam = np.linalg.solve(M, np.ones(N_PIX))
    want = np.outer(yv, lam) - Ad @ (np.outer(lam, xv) + np.outer(xv, lam))
    np.testing.assert_allclose(A.grad.numpy(), want, atol=1e-9)


def test_operator_tensors_and_relative_residual():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    K1, K2 = Dense(np.eye(2)), Dense(np.eye(2))
    K1.w, K1.c = a, torch.ones(2)
    K2.w = b
    comp = (K1 @ K2) + K1  # K1 appears twice: counted once
    assert operator_tensors(comp) == [a, b]
    assert operator_tensors(Identity()) == []
    assert operator_tensors(3.0) == []
    K, A, y = _problem(15)
    yt = torch.from_numpy(y)
    x = torch.full_like(yt, 0.4)
    want = np.linalg.norm(A @ x.numpy().reshape(-1) - y.reshape(-1)) / np.linalg.norm(y)
    assert relative_residual(K, x, yt) == pytest.approx(want, rel=1e-12)
    assert relative_residual(K, x, yt, Kx=yt) == 0.0
    zero = torch.zeros_like(yt)
    assert relative_residual(K, x, zero) == pytest.approx(np.linalg.norm(A @ x.numpy().reshape(-1)), rel=1e-12)


def test_splitting_rejects_bad_inputs():
    K, A, y = _problem(16)
    with pytest.raises(TypeError, match=r"^K must be a pnpdeblur LinearOperator"):
        hqs(y, A, Ridge(), noise_level=0.01, **TIGHT)
    with pytest.raises(TypeError, match=r"^prior must be callable"):
        admm(y, K, "tv", noise_level=0.01, **TIGHT)
    with pytest.raises(ValueError, match=r"^x0 has shape"):
        hqs(y, K, Ridge(), noise_level=0.01, x0=np.zeros((2, 2)), **TIGHT)
    with pytest.raises(ValueError, match=r"^reference has shape"):
        admm(y, K, Ridge(), noise_level=0.01, reference=np.zeros((2, 2)), **TIGHT)
    with pytest.raises(ValueError, match=r"^cg_iters must be a positive int"):
        hqs(y, K, Ridge(), noise_level=0.01, cg_iters=0, progress=False)
    with pytest.warns(UserWarning, match=r"^noise_level=3 is larger"):
        hqs(y, K, Ridge(), noise_level=3.0, n_iter=1, **TIGHT)
    with pytest.warns(UserWarning, match=r"^y has values in"):
        admm(y * 255, K, Ridge(), noise_level=0.01, n_iter=1, **TIGHT)
    assert re.match(r"^hqs$", hqs.__name__)
    assert math.isfinite(DEFAULT_LAMBDA)


def test_converged_means_every_x_step_converged():
    # the first x-step cannot converge in one CG step, the last one does (exact
    # preconditioner for its β): the result must still say "not converged"
    K, A, y = _problem(17)
    exact = torch.from_numpy(np.linalg.inv(A.T @ A + 0.9 * np.eye(N_PIX)))

    def P(r, beta):
        return (r.flatten(1) @ exact.T).reshape(r.shape) if beta == 0.9 else r

    res = hqs(y, K, Ridge(), betas=[0.5, 0.9], sigmas=[0.1, 0.1], cg_iters=1, cg_tol=1e-10,
              preconditioner=P, progress=False)
    assert [h["cg_converged"] for h in res.history] == [False, True]
    assert res.converged is False


@pytest.mark.parametrize("solver", [hqs, admm])
def test_the_prior_runs_without_autograd_unless_differentiable(solver):
    # a learned prior must not build a graph (memory) in a plain solve, even when the
    # caller has autograd on; with differentiable=True it must
    K, A, y = _problem(18)
    seen = []

    def prior(z, sigma):
        seen.append(torch.is_grad_enabled())
        return z / (1 + sigma)

    solver(y, K, prior, noise_level=0.02, n_iter=2, **TIGHT)
    solver(y, K, prior, noise_level=0.02, n_iter=2, differentiable=True, **TIGHT)
    assert seen == [False, False, True, True]


def test_progress_bar_names_the_solver_and_counts_iterations(capsys):
    K, A, y = _problem(19)
    hqs(y, K, Ridge(), betas=BETAS, sigmas=SIGMAS, cg_iters=50, cg_tol=1e-10, progress=True)
    err = capsys.readouterr().err
    assert "hqs: " in err and " 0/4 [" in err  # tqdm refreshes lazily: the first frame shows the total
    admm(y, K, Ridge(), rhos=BETAS[:3], sigmas=SIGMAS[:3], cg_iters=50, cg_tol=1e-10, progress=True)
    err = capsys.readouterr().err
    assert "admm: " in err and " 0/3 [" in err
    hqs(y, K, Ridge(), betas=BETAS, sigmas=SIGMAS, **TIGHT)  # progress=False: silent
    hqs(y, K, Ridge(), betas=BETAS, sigmas=SIGMAS, cg_iters=50)  # None: only on a terminal
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("solver", [hqs, admm])
def test_documented_defaults(solver):
    K, A, y = _problem(20)
    res = solver(y, K, Ridge(), noise_level=0.02, n_iter=3, progress=False)
    s = res.settings
    assert (s["cg_iters"], s["cg_tol"], s["x_step"], s["preconditioner"]) == (30, 1e-4, "cg", None)
    assert res.iterations == 3 and len(s["sigmas"]) == 3


def test_admm_x0_preconditioner_and_warm_start():
    K, A, y = _problem(21)
    z0 = np.full(y.shape, 0.3)
    prior = Ridge(2.0)
    calls = []

    def P(r, beta):
        calls.append(beta)
        return r

    res = admm(y, K, prior, rhos=[0.4, 0.8], sigmas=[0.2, 0.1], x0=z0, cg_iters=1, cg_tol=1e-12,
               preconditioner=P, progress=False)
    assert set(calls) == {0.4, 0.8} and res.settings["preconditioner"] == repr(P)
    # reference: scaled ADMM whose x-step is ONE CG step warm-started at the previous x
    # (x starts at z0), as the solver runs it with cg_iters=1
    Aty = y.reshape(-1) @ A
    z, u, x, prev = z0.reshape(-1).copy(), np.zeros(N_PIX), z0.reshape(-1).copy(), None
    for rho, s in zip([0.4, 0.8], [0.2, 0.1]):
        if prev is not None:
            u = u * (prev / rho)
        prev = rho
        M = A.T @ A + rho * np.eye(N_PIX)
        r = Aty + rho * (z - u) - M @ x
        x = x + (r @ r) / (r @ M @ r) * r
        z = _shrink(x + u, s, 2.0)
        u = u + x - z
    np.testing.assert_allclose(res.aux.reshape(-1), x, atol=1e-12, rtol=0)
    np.testing.assert_allclose(res.x.reshape(-1), z, atol=1e-12, rtol=0)


def test_xstep_bind_checks_and_casts_the_preconditioner_output():
    r = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    out = XStep._bind(lambda v, beta: (v * beta).float(), 0.5)(r)
    assert out.dtype == torch.float64 and float(out.sum()) == 2.0
    out = XStep._bind(lambda v, beta: v.numpy() * beta, 2.0)(r)
    assert isinstance(out, torch.Tensor) and float(out.sum()) == 8.0
    with pytest.raises(TypeError, match=r"^preconditioner\(r, beta\) must be an array"):
        XStep._bind(lambda v, beta: [1.0], 0.5)(r)


@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ,
                    reason="mutmut's trampolines add stack frames, so stacklevel cannot be checked there")
@pytest.mark.parametrize("solver", [hqs, admm])
def test_unit_warnings_point_at_the_callers_line(solver):
    # stacklevel must skip check_* <- run_splitting <- hqs/admm (it pointed into hqs.py/admm.py)
    K, A, y = _problem(22)
    with pytest.warns(UserWarning) as rec:
        solver(y, K, Ridge(), noise_level=1.5, n_iter=1, **TIGHT)
        solver(y * 255, K, Ridge(), noise_level=0.01, n_iter=1, **TIGHT)
    assert len(rec) == 2 and [w.filename for w in rec] == [__file__, __file__]
    assert str(rec[0].message).startswith("noise_level=1.5 is larger than the whole [0, 1] image range")
    assert str(rec[0].message).endswith("(for 8-bit grey levels divide by 255: 0.005882)")


def test_observation_and_image_arguments_are_named():
    K, A, y = _problem(23)
    with pytest.raises(TypeError, match=r"^y must be an array"):
        hqs(y.tolist(), K, Ridge(), noise_level=0.01, **TIGHT)
    with pytest.raises(ValueError, match=r"^y must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(12,\)$"):
        hqs(y.reshape(-1), K, Ridge(), noise_level=0.01, **TIGHT)
    with pytest.raises(TypeError, match=r"^x0 must be an array"):
        admm(y, K, Ridge(), noise_level=0.01, x0=y.tolist(), **TIGHT)
    with pytest.raises(ValueError, match=r"^x0 must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(12,\)$"):
        admm(y, K, Ridge(), noise_level=0.01, x0=y.reshape(-1), **TIGHT)
    # a torch 3-D x0 is (C, H, W), a numpy one (H, W, C), whatever y's type
    yt = torch.ones(1, 2, 3, 4, dtype=torch.float64)
    v = torch.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(prepare_like(v, yt, "x0"), v[None].double())
    np.testing.assert_array_equal(prepare_like(v.permute(1, 2, 0).numpy(), yt, "x0"), v[None].double())


def test_a_prior_returning_a_non_array_is_named():
    z = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"^prior output must be an array"):
        prior_caller(lambda v, s: v.tolist())(z, 0.1, {})


def test_xstep_uniform_preconditioner_and_float32_fft():
    from pnpdeblur.solvers.preconditioners import UniformPreconditioner

    U = UniformBlur(np.full((3, 3), 1 / 9))
    y32 = torch.rand(1, 1, 5, 6, dtype=torch.float32)
    step = XStep(Convolution(np.full((3, 3), 1 / 9), "replicate"), y32, 10, 1e-6, "cg", preconditioner="uniform")
    assert isinstance(step.precond, UniformPreconditioner) and step.precond.shape == (5, 6)
    assert step.precond.power.dtype == torch.float32
    x, _ = XStep(U, y32, 10, 1e-6, "fft")(y32, 0.3, y32)
    assert x.dtype == torch.float32  # the transfer function and |R|² follow y's dtype
    res = hqs(y32.numpy()[0, 0], U, Ridge(), betas=[0.3], sigmas=[0.1], progress=False)
    assert res.x.dtype == np.float32 and res.aux.dtype == np.float32


def test_xstep_builds_no_graph_unless_differentiable():
    K, A, y = _problem(24)
    yt = torch.from_numpy(y).requires_grad_(True)
    x, _ = XStep(K, yt, 50, 1e-12, "cg")(torch.zeros_like(yt), 0.5, torch.zeros_like(yt))
    assert x.grad_fn is None  # Kᵀy was computed without a graph


def test_differentiable_xstep_uses_the_warm_start_and_the_preconditioner():
    K, A, y = _problem(25)
    yt = torch.from_numpy(y).requires_grad_(True)
    M = A.T @ A + 0.5 * np.eye(N_PIX)
    v = torch.full_like(yt, 0.2)
    sol = torch.from_numpy(np.linalg.solve(M, A.T @ y.reshape(-1) + 0.5 * 0.2)).reshape(yt.shape)
    step = XStep(K, yt, 50, 1e-10, "cg", differentiable=True)
    x, info = step(v, 0.5, sol)
    assert info.iterations == 0 and "ImplicitCG" in type(x.grad_fn).__name__
    Minv = torch.from_numpy(np.linalg.inv(M))
    calls = []

    def P(r, beta):
        calls.append(beta)
        return (r.flatten(1) @ Minv.T).reshape(r.shape)

    x, info = XStep(K, yt, 50, 1e-10, "cg", differentiable=True, preconditioner=P)(v, 0.5, v)
    assert info.iterations == 1 and calls and set(calls) == {0.5}
    np.testing.assert_allclose(x.detach().numpy(), sol.numpy(), atol=1e-12)


def test_hqs_passes_the_callers_context():
    K, A, y = _problem(26)
    prior = Ridge()
    hqs(y, K, prior, betas=BETAS[:2], sigmas=SIGMAS[:2], context={"extra": 9}, **TIGHT)
    assert [c[1]["extra"] for c in prior.calls] == [9, 9]


def test_a_noise_level_between_1_and_2_warns():
    with pytest.warns(UserWarning, match=r"^noise_level=1\.5 is larger than the whole \[0, 1\] image range"):
        check_noise_level(1.5)
