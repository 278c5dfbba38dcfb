"""TV and Tikhonov priors against dense references (fast, direct calls).

The reference for :func:`tv_prox` is Beck & Teboulle's fast gradient projection (FGP)
written again here with dense forward-difference matrices in numpy, so every iterate can
be compared at 1e-12: the step 1/(8τ), the momentum, the projection (joint over the
channels for colour TV, per channel otherwise), the stopping rule and the iteration count.
The reference for the gradient Tikhonov prior is the dense linear solve
``(I + λσ² DᵀD) x = z``.
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.priors import classical
from pnpdeblur.priors.classical import TV, Tikhonov, _grad, _grad_t, tv_norm, tv_prox


def _diff_matrices(h, w):
    """Dense forward differences on a row-major (H, W) grid, last difference 0 (Neumann)."""
    n = h * w
    dx, dy = np.zeros((n, n)), np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            k = i * w + j
            if j + 1 < w:
                dx[k, k], dx[k, k + 1] = -1.0, 1.0
            if i + 1 < h:
                dy[k, k], dy[k, k + w] = -1.0, 1.0
    return dx, dy


def _fgp_reference(z, tau, iters, coupled, tol):
    """FGP on the dual of min ½‖x − z‖² + τ TV(x) for one (C, H, W) numpy image."""
    c, h, w = z.shape
    dx, dy = _diff_matrices(h, w)
    zf = z.reshape(c, h * w)

    def grad(x):  # (C, HW) -> (2, C, HW)
        return np.stack([x @ dx.T, x @ dy.T])

    def grad_t(p):  # (2, C, HW) -> (C, HW)
        return p[0] @ dx + p[1] @ dy

    p = np.zeros((2, c, h * w))
    q, t = p, 1.0
    for _ in range(iters):
        x = zf - tau * grad_t(q)
        pn = q + grad(x) / (8.0 * tau)
        nrm = np.sqrt((pn**2).sum(axis=(0, 1), keepdims=True) if coupled else (pn**2).sum(axis=0, keepdims=True))
        pn = pn / np.maximum(nrm, 1.0)
        tn = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        q = pn + (t - 1.0) / tn * (pn - p)
        delta = np.linalg.norm(pn - p) / max(np.linalg.norm(pn), 1e-12)
        p, t = pn, tn
        if delta < tol:
            break
    return (zf - tau * grad_t(p)).reshape(c, h, w)


def _image(c=2, h=5, w=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((1, c, h, w)))


@pytest.mark.parametrize("impl", ["numba", "torch"])
@pytest.mark.parametrize("coupled", [True, False])
@pytest.mark.parametrize("iters", [1, 2, 3, 7])
def test_tv_prox_iterates_match_the_dense_fgp(coupled, iters, impl):
    z = _image()
    tau = 0.15  # large enough that the projection is active from the first step
    fn = classical._tv_prox_numba if impl == "numba" else classical._tv_prox_torch
    got = fn(z, tau, iters, coupled, 0.0)
    want = _fgp_reference(z[0].numpy(), tau, iters, coupled, tol=0.0)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("coupled", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (1, 1, 1, 7), (3, 2, 6, 1)])
def test_tv_prox_numba_and_torch_agree_on_batches_and_thin_images(coupled, shape):
    z = torch.from_numpy(np.random.default_rng(sum(shape)).random(shape))
    for tol in (0.0, 1e-3):
        a = classical._tv_prox_numba(z, 0.2, 25, coupled, tol)
        b = classical._tv_prox_torch(z, 0.2, 25, coupled, tol)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    z32 = z.float()
    a32 = classical._tv_prox_numba(z32, 0.2, 25, coupled, 0.0)
    assert a32.dtype == torch.float32
    torch.testing.assert_close(a32, classical._tv_prox_torch(z32, 0.2, 25, coupled, 0.0), rtol=0, atol=1e-5)


def test_tv_prox_picks_numba_on_the_cpu_and_torch_for_autograd(monkeypatch):
    calls = []
    real_numba, real_torch = classical._tv_prox_numba, classical._tv_prox_torch
    monkeypatch.setattr(classical, "_tv_prox_numba", lambda *a: calls.append("numba") or real_numba(*a))
    monkeypatch.setattr(classical, "_tv_prox_torch", lambda *a: calls.append("torch") or real_torch(*a))
    z = _image()
    tv_prox(z, 0.1, iters=3)
    zg = z.clone().requires_grad_()
    out = tv_prox(zg, 0.1, iters=3)
    out.sum().backward()  # the torch path keeps the graph
    assert zg.grad is not None and calls == ["numba", "torch"]
    with torch.no_grad():
        tv_prox(zg, 0.1, iters=3)
    assert calls[-1] == "numba"


def test_tv_prox_projection_is_joint_only_when_coupled():
    z = _image(c=3)
    a = tv_prox(z, 0.2, iters=5, coupled=True, tol=0.0)
    b = tv_prox(z, 0.2, iters=5, coupled=False, tol=0.0)
    assert (a - b).abs().max() > 1e-3


def test_tv_prox_defaults_are_40_iterations_and_tol_1e_4():
    z = _image(c=1, h=6, w=7, seed=1)
    tau = 0.3  # far from converged after 40 iterations: 39 or 41 give other images
    want = _fgp_reference(z[0].numpy(), tau, 40, True, tol=1e-4)
    np.testing.assert_allclose(tv_prox(z, tau)[0].numpy(), want, rtol=0, atol=1e-12)
    assert np.abs(_fgp_reference(z[0].numpy(), tau, 41, True, 0.0) - want).max() > 1e-9
    prior = TV()
    assert (prior.weight, prior.iters, prior.coupled, prior.tol) == (1.0, 40, True, 1e-4)
    np.testing.assert_allclose(prior(z, tau)[0].numpy(), want, rtol=0, atol=1e-12)


def test_tv_prox_stops_at_the_tolerance():
    z = _image(seed=2)
    one = tv_prox(z, 0.1, iters=1, tol=0.0)
    # the first change of the dual is relative change 1 (from 0): tol > 1 stops there
    torch.testing.assert_close(tv_prox(z, 0.1, iters=50, tol=1.5), one, rtol=0, atol=0)
    # a tolerance that is reached later stops exactly where the reference stops
    want = _fgp_reference(z[0].numpy(), 0.1, 500, True, tol=1e-3)
    np.testing.assert_allclose(tv_prox(z, 0.1, iters=500, tol=1e-3)[0].numpy(), want, rtol=0, atol=1e-12)
    assert np.abs(_fgp_reference(z[0].numpy(), 0.1, 30, True, tol=0.0) - want).max() > 1e-6  # it did stop early


def test_tv_prox_of_weight_zero_is_a_copy_and_keeps_dtype():
    z = _image()
    out = tv_prox(z, 0.0)
    assert out is not z and torch.equal(out, z)
    out[...] = 0
    assert z.abs().sum() > 0  # a copy, not the input's buffer
    z32 = z.float()
    assert tv_prox(z32, 0.05, iters=3).dtype == torch.float32
    # a weight below one is a real prox (not mistaken for "no smoothing")
    assert (tv_prox(z, 0.5, iters=3) - z).abs().max() > 1e-2


def test_tv_prox_of_a_constant_image_is_the_image():
    z = torch.full((1, 2, 4, 5), 0.3, dtype=torch.float64)
    torch.testing.assert_close(tv_prox(z, 0.2, iters=5, tol=0.0), z, rtol=0, atol=0)


def test_grad_and_its_transpose_by_hand():
    x = torch.tensor([[[[1.0, 2.0, 4.0], [0.0, 5.0, 3.0]]]], dtype=torch.float64)  # (1, 1, 2, 3)
    g = _grad(x)
    assert g.shape == (1, 2, 1, 2, 3)
    torch.testing.assert_close(g[0, 0, 0], torch.tensor([[1.0, 2.0, 0.0], [5.0, -2.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(g[0, 1, 0], torch.tensor([[-1.0, 3.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64))
    dx, dy = _diff_matrices(2, 3)
    p = torch.from_numpy(np.random.default_rng(3).random((1, 2, 1, 2, 3)))
    want = p[0, 0, 0].reshape(-1).numpy() @ dx + p[0, 1, 0].reshape(-1).numpy() @ dy
    np.testing.assert_allclose(_grad_t(p)[0, 0].reshape(-1).numpy(), want, rtol=0, atol=1e-14)


def test_tv_norm_per_sample():
    x = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    x[1, 0, 0, 1] = 0.5  # sample 1: one edge of 0.5 across x at (0,0), across y at (0,1)
    np.testing.assert_allclose(tv_norm(x).numpy(), [0.0, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(tv_norm(x, coupled=False).numpy(), [0.0, 1.0], rtol=0, atol=1e-15)


def test_tv_prior_scales_sigma_by_the_weight():
    z = _image()
    got = TV(weight=3.0, iters=4, tol=0.0)(z, 0.05)
    want = _fgp_reference(z[0].numpy(), 0.15, 4, True, 0.0)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-12)
    for coupled in (True, False):
        got = TV(iters=4, tol=0.0, coupled=coupled).prox(z, 0.15)
        want = _fgp_reference(z[0].numpy(), 0.15, 4, coupled, 0.0)
        np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-12)
    # prox uses the prior's tolerance: tol > 1 stops after the first iteration
    got = TV(iters=50, tol=1.5).prox(z, 0.15)
    np.testing.assert_allclose(got[0].numpy(), _fgp_reference(z[0].numpy(), 0.15, 1, True, 0.0), rtol=0, atol=1e-12)


def test_tv_constructor_checks():
    assert TV(iters=1).iters == 1
    for bad in (0, -3, 2.0):
        with pytest.raises(ValueError, match=r"^iters must be a positive int, got "):
            TV(iters=bad)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^weight must be a finite positive number, got "):
            TV(weight=bad)
    for bad in (True, "1", None):
        with pytest.raises(TypeError, match=r"^weight must be a real number, got "):
            TV(weight=bad)
    assert TV(weight=np.float32(0.5)).weight == 0.5
    assert repr(TV(weight=2.0, iters=3, coupled=False, tol=0.5)) == "TV(weight=2.0, iters=3, coupled=False, tol=0.5)"


# -- Tikhonov ---------------------------------------------------------------------------
def _tikhonov_dense(z, a):
    c, h, w = z.shape
    dx, dy = _diff_matrices(h, w)
    m = np.eye(h * w) + a * (dx.T @ dx + dy.T @ dy)
    return np.linalg.solve(m, z.reshape(c, h * w).T).T.reshape(c, h, w)


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 5, 2)])
def test_gradient_tikhonov_is_the_dense_solve(shape):
    z = torch.from_numpy(np.random.default_rng(4).random((1,) + shape))
    got = Tikhonov(50.0)(z, 0.2)
    np.testing.assert_allclose(got[0].numpy(), _tikhonov_dense(z[0].numpy(), 50.0 * 0.2**2), rtol=0, atol=1e-10)


def test_tikhonov_defaults_and_identity_closed_form():
    z = torch.from_numpy(np.random.default_rng(5).random((1, 1, 3, 4)))
    grad_default = Tikhonov()
    assert grad_default.weight == 200.0 and grad_default.operator == "gradient"
    np.testing.assert_allclose(grad_default(z, 0.1)[0].numpy(), _tikhonov_dense(z[0].numpy(), 200.0 * 0.01),
                               rtol=0, atol=1e-10)
    ident = Tikhonov(operator="identity")
    assert ident.weight == 1.0
    torch.testing.assert_close(ident(z, 0.5), z / 1.25, rtol=0, atol=1e-15)
    torch.testing.assert_close(Tikhonov(3.0, "identity")(z, 0.5), z / 1.75, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"^operator must be 'identity' or 'gradient', got 'laplace'"):
        Tikhonov(operator="laplace")
    with pytest.raises(ValueError, match=r"^weight must be a finite positive number"):
        Tikhonov(0.0)


def test_tv_prox_batch_is_per_image():
    # the projection norm keeps its batch/channel axes: a batch of two colour images is two problems
    z = torch.from_numpy(np.random.default_rng(6).random((2, 2, 4, 5)))
    for coupled in (True, False):
        got = tv_prox(z, 0.2, iters=4, coupled=coupled, tol=0.0)
        for i in range(2):
            want = _fgp_reference(z[i].numpy(), 0.2, 4, coupled, 0.0)
            np.testing.assert_allclose(got[i].numpy(), want, rtol=0, atol=1e-12)


def test_tv_prox_stopping_rule_with_a_small_dual():
    # faint texture: the dual stays far below norm 1, so the relative change is not the absolute one
    z = torch.from_numpy(0.5 + 0.002 * np.random.default_rng(7).random((1, 1, 5, 6)))
    want = _fgp_reference(z[0].numpy(), 0.1, 300, True, tol=1e-2)
    np.testing.assert_allclose(tv_prox(z, 0.1, iters=300, tol=1e-2)[0].numpy(), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(TV(iters=300, tol=1e-2)(z, 0.1)[0].numpy(), want, rtol=0, atol=1e-12)
    # TV passes its own tolerance: tol > 1 stops after one iteration
    np.testing.assert_allclose(TV(iters=50, tol=1.5)(z, 0.1)[0].numpy(), _fgp_reference(z[0].numpy(), 0.1, 1, True, 0.0),
                               rtol=0, atol=1e-12)


def test_tv_prox_keeps_float32_under_a_float64_default_dtype():
    z = _image().float()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert tv_prox(z, 0.1, iters=3).dtype == torch.float32
    finally:
        torch.set_default_dtype(old)


def test_weight_type_error_names_the_type():
    with pytest.raises(TypeError, match=r"^weight must be a real number, got str$"):
        TV(weight="1")


# ------------------------------------------------------------------ bad input is refused by name
@pytest.mark.parametrize("z, exc, pattern", [
    (np.zeros((1, 3, 4, 4)), TypeError, r"^z must be a torch\.Tensor of shape \(N, C, H, W\), got ndarray "
                                        r"\(pnpdeblur\.priors\.TV\(\)\(image, sigma\) takes numpy"),
    (torch.zeros(3, 4, 4), ValueError, r"^z must have shape \(N, C, H, W\), got shape \(3, 4, 4\)$"),
    (torch.zeros(1, 1, 1, 4, 4), ValueError, r"^z must have shape \(N, C, H, W\), got shape \(1, 1, 1, 4, 4\)$"),
    (torch.zeros(1, 1, 4, 4, dtype=torch.int64), TypeError, r"^z must be a float tensor, got dtype torch\.int64$"),
    (torch.full((1, 1, 4, 4), float("nan")), ValueError, r"^z contains NaN or Inf values$"),
    (torch.full((1, 1, 4, 4), float("inf")), ValueError, r"^z contains NaN or Inf values$"),
])
def test_tv_prox_refuses_what_is_not_a_float_batch(z, exc, pattern):
    with pytest.raises(exc, match=pattern):
        tv_prox(z, 0.1, iters=3)


def test_tv_prox_refuses_a_nan_image_even_at_weight_zero():
    with pytest.raises(ValueError, match="^z contains NaN"):
        tv_prox(torch.full((1, 1, 4, 4), float("nan")), 0.0)


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(tau=-0.1), ValueError, r"^tau must be a finite non-negative number, got -0\.1$"),
    (dict(tau=float("nan")), ValueError, r"^tau must be a finite non-negative number, got nan$"),
    (dict(tau=float("inf")), ValueError, r"^tau must be a finite non-negative number, got inf$"),
    (dict(tau="0.1"), TypeError, r"^tau must be a real number, got str$"),
    (dict(tau=0.1, tol=-1e-3), ValueError, r"^tol must be a finite non-negative number, got -0\.001$"),
    (dict(tau=0.1, iters=0), ValueError, r"^iters must be a positive int, got 0$"),
    (dict(tau=0.1, iters=2.0), ValueError, r"^iters must be a positive int, got 2\.0$"),
    (dict(tau=0.1, iters=True), ValueError, r"^iters must be a positive int, got True$"),
    (dict(tau=0.1, coupled="yes"), TypeError, r"^coupled must be True or False, got 'yes'$"),
])
def test_tv_prox_refuses_bad_parameters_by_name(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        tv_prox(torch.zeros(1, 1, 4, 4), **kwargs)


def test_tv_prox_takes_numpy_integer_iters_and_a_one_element_tensor_weight():
    z = _image()
    want = tv_prox(z, 0.2, iters=4, tol=0.0)
    torch.testing.assert_close(tv_prox(z, torch.tensor(0.2, dtype=torch.float64), iters=np.int64(4), tol=0.0), want, rtol=0, atol=0)


def test_tv_norm_refuses_a_colour_image_without_its_batch_axis():
    # (C, H, W) read as C grey images would silently be channel-by-channel TV
    with pytest.raises(ValueError, match=r"^x must have shape \(N, C, H, W\), got shape \(3, 4, 5\)$"):
        tv_norm(torch.zeros(3, 4, 5))
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor"):
        tv_norm(np.zeros((1, 3, 4, 5)))
    with pytest.raises(TypeError, match=r"^coupled must be True or False, got 1$"):
        tv_norm(torch.zeros(1, 3, 4, 5), coupled=1)
