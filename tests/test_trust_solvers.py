"""HQS/ADMM against independent references (issue 16, part 1).

Each test here pins one thing the older quality tests let through: the σ ↔ β relation
of explicit schedules, the use of ``noise_level`` by explicit schedules, which σ the
prior gets at which iteration, and the ADMM updates. The references are written from
the formulas in the docstrings (dense linear algebra on a tiny problem with a prior
whose proximal map is known in closed form), never from the solvers' own output.
"""
import inspect
import math
import warnings

import numpy as np
import pytest
import torch

from pnpdeblur.operators.convolution import Convolution
from pnpdeblur.priors import Tikhonov
from pnpdeblur.solvers import admm, dpir_schedule, geometric_betas, hqs
from pnpdeblur.solvers.hqs import resolve_schedule
from pnpdeblur.solvers.schedules import DEFAULT_LAMBDA, MIN_NOISE_LEVEL, beta_from_sigma, sigma_from_beta

SHAPE = (1, 5, 6)  # (C, H, W) of the tiny problem


def _dense(op, shape):
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).reshape((n,) + shape)
    return torch.stack([op(e[None])[0].reshape(-1) for e in eye], dim=1).numpy()


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    k = rng.random((3, 3)) + 0.2
    K = Convolution(k / k.sum(), "replicate")
    A = _dense(K._forward, SHAPE)
    y = rng.random((1,) + SHAPE)
    return K, A, y


class _Recording:
    """Ridge prior ``z / (1 + w σ²)`` (the prox of (wσ²/2)‖·‖², exact) that logs its calls."""

    def __init__(self, weight=3.0):
        self.weight = weight
        self.calls = []

    def __call__(self, z, sigma, *, context=None):
        self.calls.append((float(sigma), float(context["beta"]), int(context["iteration"])))
        return z / (1.0 + self.weight * sigma**2)


def _ridge(v, sigma, w):
    return v / (1.0 + w * sigma**2)


def _hqs_reference(A, y, betas, sigmas, w):
    """x_k = (AᵀA + β_k I)⁻¹(β_k z + Aᵀy), z = prox(x_k, σ_k), z_0 = y (hqs docstring)."""
    n = A.shape[1]
    Aty = A.T @ y.reshape(-1)
    z = y.reshape(-1).copy()
    for b, s in zip(betas, sigmas):
        x = np.linalg.solve(A.T @ A + b * np.eye(n), b * z + Aty)
        z = _ridge(x, s, w)
    return z.reshape(y.shape), x.reshape(y.shape)


def _admm_reference(A, y, rhos, sigmas, w):
    """Scaled ADMM of the admm docstring: x = (AᵀA + ρI)⁻¹(Aᵀy + ρ(z − u)), z = prox(x + u),
    u ← u + x − z, with u rescaled by ρ_old/ρ_new when ρ changes; z_0 = y, u_0 = 0."""
    n = A.shape[1]
    Aty = A.T @ y.reshape(-1)
    z = y.reshape(-1).copy()
    u = np.zeros_like(z)
    prev = None
    for r, s in zip(rhos, sigmas):
        if prev is not None:
            u = u * (prev / r)
        prev = r
        x = np.linalg.solve(A.T @ A + r * np.eye(n), Aty + r * (z - u))
        z = _ridge(x + u, s, w)
        u = u + x - z
    return z.reshape(y.shape), x.reshape(y.shape)


TIGHT = dict(cg_iters=200, cg_tol=1e-13, progress=False)


# -- the σ ↔ β relation of explicit schedules -----------------------------------------
@pytest.mark.parametrize("noise_level", [0.03, 0.01])
def test_sigma_implied_by_explicit_betas_is_the_closed_form(noise_level):
    # σ_k = σ · sqrt(λ / β_k): a larger β (later iteration) means a weaker prior
    betas = geometric_betas(1e-2, 10.0, 5)
    _, sig = resolve_schedule(noise_level, betas, None, None, DEFAULT_LAMBDA, 0.2)
    want = [noise_level * math.sqrt(DEFAULT_LAMBDA / b) for b in betas]
    np.testing.assert_allclose(sig, want, rtol=1e-12)
    assert all(np.diff(sig) < 0)


@pytest.mark.parametrize("noise_level", [0.03, 0.01])
def test_betas_implied_by_explicit_sigmas_is_the_closed_form(noise_level):
    sigmas = [0.2, 0.1, 0.05, 0.02]
    bet, sig = resolve_schedule(noise_level, None, sigmas, None, DEFAULT_LAMBDA, 0.2)
    np.testing.assert_allclose(bet, [DEFAULT_LAMBDA * noise_level**2 / s**2 for s in sigmas], rtol=1e-12)
    assert sig == sigmas


def test_explicit_schedules_round_trip_the_dpir_schedule():
    # the DPIR schedule gives (σ_k, β_k); feeding either list back must return the other
    nl, lam = 0.03, 0.4
    sig, bet = dpir_schedule(nl, n_iter=6, lam=lam)
    b2, s2 = resolve_schedule(nl, bet, None, None, lam, 0.2)
    np.testing.assert_allclose(s2, sig, rtol=1e-12)
    b3, s3 = resolve_schedule(nl, None, sig, None, lam, 0.2)
    np.testing.assert_allclose(b3, bet, rtol=1e-12)
    # and the public helpers are inverse to each other
    for s in sig:
        assert sigma_from_beta(beta_from_sigma(s, nl, lam), nl, lam) == pytest.approx(s, rel=1e-12)


def test_explicit_schedules_use_the_noise_level():
    # σ_k ∝ noise_level for given betas, β_k ∝ noise_level² for given sigmas
    betas = [0.01, 0.1, 1.0]
    _, s1 = resolve_schedule(0.01, betas, None, None, DEFAULT_LAMBDA, 0.2)
    _, s3 = resolve_schedule(0.03, betas, None, None, DEFAULT_LAMBDA, 0.2)
    np.testing.assert_allclose(np.array(s3) / np.array(s1), 3.0, rtol=1e-12)
    b1, _ = resolve_schedule(0.01, None, [0.1, 0.05], None, DEFAULT_LAMBDA, 0.2)
    b3, _ = resolve_schedule(0.03, None, [0.1, 0.05], None, DEFAULT_LAMBDA, 0.2)
    np.testing.assert_allclose(np.array(b3) / np.array(b1), 9.0, rtol=1e-12)
    # noise-free data: the documented floor MIN_NOISE_LEVEL stands in for σ
    _, s0 = resolve_schedule(0.0, betas, None, None, DEFAULT_LAMBDA, 0.2)
    np.testing.assert_allclose(s0, [MIN_NOISE_LEVEL * math.sqrt(DEFAULT_LAMBDA / b) for b in betas])


# -- which σ the prior gets, end to end -------------------------------------------------
@pytest.mark.parametrize("solver", ["hqs", "admm"])
@pytest.mark.parametrize("schedule", ["default", "betas", "sigmas"])
def test_prior_gets_the_sigma_of_its_own_iteration(solver, schedule):
    K, A, y = _problem()
    nl = 0.03
    if schedule == "default":
        sig, bet = dpir_schedule(nl, n_iter=5)
        kw = dict(n_iter=5)
    elif schedule == "betas":
        bet = geometric_betas(0.05, 20.0, 5)
        sig = [nl * math.sqrt(DEFAULT_LAMBDA / b) for b in bet]
        kw = {"betas" if solver == "hqs" else "rhos": bet}
    else:
        sig = [0.2, 0.12, 0.07, 0.04, nl]
        bet = [DEFAULT_LAMBDA * nl**2 / s**2 for s in sig]
        kw = dict(sigmas=sig)
    prior = _Recording()
    run = hqs if solver == "hqs" else admm
    res = run(y, K, prior, noise_level=nl, **kw, **TIGHT)
    got_sig, got_beta, got_it = zip(*prior.calls)
    assert list(got_it) == list(range(5))
    np.testing.assert_allclose(got_sig, sig, rtol=1e-12)
    np.testing.assert_allclose(got_beta, bet, rtol=1e-12)
    np.testing.assert_allclose([h["sigma"] for h in res.history], sig, rtol=1e-12)


# -- whole iterations against the dense reference --------------------------------------
@pytest.mark.parametrize("schedule", ["default", "betas", "sigmas"])
def test_hqs_matches_the_dense_reference_iteration(schedule):
    K, A, y = _problem(1)
    nl, w = 0.03, 3.0
    if schedule == "default":
        sig, bet = dpir_schedule(nl, n_iter=6)
        kw = dict(n_iter=6)
    elif schedule == "betas":
        bet = geometric_betas(0.05, 20.0, 6)
        sig = [nl * math.sqrt(DEFAULT_LAMBDA / b) for b in bet]
        kw = dict(betas=bet)
    else:
        sig = [0.3, 0.2, 0.1, 0.06, 0.04, nl]
        bet = [DEFAULT_LAMBDA * nl**2 / s**2 for s in sig]
        kw = dict(sigmas=sig)
    z_ref, x_ref = _hqs_reference(A, y, bet, sig, w)
    res = hqs(y, K, Tikhonov(weight=w, operator="identity"), noise_level=nl, **kw, **TIGHT)
    np.testing.assert_allclose(res.x, z_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.aux, x_ref, rtol=0, atol=1e-10)
    # the σ/β pairing matters: the reference with the σ list shifted by one differs
    z_shift, _ = _hqs_reference(A, y, bet, sig[1:] + sig[-1:], w)
    assert np.abs(z_shift - z_ref).max() > 1e-4


@pytest.mark.parametrize("schedule", ["default", "rhos"])
def test_admm_matches_the_dense_reference_iteration(schedule):
    K, A, y = _problem(2)
    nl, w = 0.03, 3.0
    if schedule == "default":
        sig, rho = dpir_schedule(nl, n_iter=6)
        kw = dict(n_iter=6)
    else:
        rho = geometric_betas(0.05, 20.0, 6)
        sig = [nl * math.sqrt(DEFAULT_LAMBDA / r) for r in rho]
        kw = dict(rhos=rho)
    z_ref, x_ref = _admm_reference(A, y, rho, sig, w)
    res = admm(y, K, Tikhonov(weight=w, operator="identity"), noise_level=nl, **kw, **TIGHT)
    np.testing.assert_allclose(res.x, z_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.aux, x_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        [h["primal_residual"] for h in res.history][-1],
        np.linalg.norm(x_ref - z_ref) / np.linalg.norm(z_ref), rtol=1e-8,
    )


def test_admm_with_a_fixed_penalty_converges_to_the_regularised_minimiser():
    # With constant ρ and σ the ridge prox is that of g(x) = (ρ w σ²/2)‖x‖², so ADMM
    # converges to argmin ½‖Ax − y‖² + g(x) = (AᵀA + ρwσ² I)⁻¹ Aᵀy (a fixed point that
    # does not depend on the update details, only on their being a correct ADMM).
    K, A, y = _problem(3)
    rho, sigma, w = 0.5, 0.4, 3.0
    n = A.shape[1]
    want = np.linalg.solve(A.T @ A + rho * w * sigma**2 * np.eye(n), A.T @ y.reshape(-1)).reshape(y.shape)
    res = admm(y, K, Tikhonov(weight=w, operator="identity"), rhos=[rho] * 150, sigmas=[sigma] * 150, **TIGHT)
    np.testing.assert_allclose(res.x, want, atol=1e-8)
    np.testing.assert_allclose(res.aux, want, atol=1e-8)


# -- scalar arguments and units (issue 16, part 3) ---------------------------------------
@pytest.mark.parametrize("solver", [hqs, admm])
@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(noise_level="0.01"), TypeError, "noise_level must be a real number"),
        (dict(noise_level=True), TypeError, "noise_level must be a real number"),
        (dict(noise_level=float("nan")), ValueError, "noise_level"),
        (dict(noise_level=0.01, lam=float("nan"), sigmas=[0.1, 0.05]), ValueError, "lam"),
        (dict(noise_level=0.01, lam="0.2"), TypeError, "lam"),
        (dict(noise_level=0.01, sigma_start=-1.0), ValueError, "sigma_start"),
        (dict(noise_level=0.01, sigmas=["0.1", 0.05]), TypeError, r"sigmas\[0\]"),
        (dict(noise_level=0.01, sigmas="0.1"), TypeError, "sigmas must be a sequence"),
        (dict(noise_level=0.01, n_iter=2.0), ValueError, "n_iter"),
    ],
)
def test_scalar_arguments_are_checked_like_the_priors_sigma(solver, kwargs, exc, words):
    # hqs(noise_level="0.01") ran while prior(z, "0.1") raised: one check for both now
    K, _, y = _problem()
    with pytest.raises(exc, match=words):
        solver(y, K, Tikhonov(), progress=False, **kwargs)


def test_scalar_arguments_accept_numpy_and_tensor_scalars():
    K, _, y = _problem()
    a = hqs(y, K, Tikhonov(), noise_level=0.02, n_iter=3, progress=False).x
    b = hqs(y, K, Tikhonov(), noise_level=np.float64(0.02), n_iter=3, progress=False).x
    c = hqs(y, K, Tikhonov(), noise_level=torch.tensor(0.02, dtype=torch.float64), n_iter=3, progress=False).x
    np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(c, a)
    hqs(y, K, Tikhonov(), noise_level=np.float32(0.02), n_iter=3, progress=False)


@pytest.mark.parametrize("solver", [hqs, admm])
def test_grey_level_units_warn(solver):
    # images in 0-255 or a noise_level in grey levels made HQS 5-12 dB worse, silently
    K, _, y = _problem()
    with pytest.warns(UserWarning, match="noise_level=5 is larger than") as record:
        line = inspect.currentframe().f_lineno + 1
        solver(y, K, Tikhonov(), noise_level=5.0, n_iter=2, progress=False)
    assert (record[0].filename, record[0].lineno) == (__file__, line)  # at the caller's line
    with pytest.warns(UserWarning, match=r"y has values in \[.*\]; .* \[0, 1\]") as record:
        line = inspect.currentframe().f_lineno + 1
        solver(y * 255.0, K, Tikhonov(), noise_level=0.01, n_iter=2, progress=False)
    assert (record[0].filename, record[0].lineno) == (__file__, line)
    # a noisy image in [0, 1] (values slightly outside) does not warn
    noisy = y + 0.2 * np.random.default_rng(0).standard_normal(y.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solver(noisy, K, Tikhonov(), noise_level=0.2, n_iter=2, progress=False)


# -- one PSNR (issue 16, part 4) -----------------------------------------------------------
@pytest.mark.parametrize("solver", ["hqs", "admm", "rl"])
def test_history_psnr_is_the_metrics_psnr_for_a_batch(solver):
    # the history pooled the MSE over the batch (29.33 dB) where pd.metrics.psnr averages
    # per image (31.13 dB) for the same result
    from pnpdeblur.metrics import psnr
    from pnpdeblur.solvers import richardson_lucy

    rng = np.random.default_rng(5)
    ref = rng.random((2, 1, 12, 14))
    ref[1] = 0.5 + 0.1 * (ref[1] - 0.5)  # low contrast: a much smaller error than image 0
    K = Convolution(np.full((3, 3), 1 / 9), "replicate")
    y = np.asarray(K(ref))
    y[1] += 0.1 * rng.standard_normal(y[1].shape)  # the two images end at very different PSNRs
    y = np.clip(y, 0, 1)
    if solver == "rl":
        res = richardson_lucy(y, K, iters=3, reference=ref, progress=False)
    else:
        run = hqs if solver == "hqs" else admm
        res = run(y, K, Tikhonov(), noise_level=0.05, n_iter=3, reference=ref, progress=False)
    per_image = psnr(res.x, ref, reduction="none")
    assert abs(per_image[0] - per_image[1]) > 1.0  # pooled and averaged PSNR differ here
    assert res.history[-1]["psnr"] == pytest.approx(float(np.mean(per_image)), abs=1e-9)
    assert res.history[-1]["psnr"] == pytest.approx(psnr(res.x, ref), abs=1e-9)
