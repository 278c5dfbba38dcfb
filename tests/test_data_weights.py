"""Weighted data terms in HQS/ADMM and the clipped-pixel weights of ``saturation_weights``.

The solvers' x-step with weights ``W`` solves ``(KᵀWK + β I) x = KᵀW y + β v``; the references
here are written from that formula with ``numpy.linalg.solve`` on a dense matrix (and on the
exact sparse matrix of a ``MotionBlur``), independently of the library's operators.
"""
import re

import numpy as np
import pytest
import torch
from scipy.ndimage import maximum_filter

from pnpdeblur import MotionBlur, UniformBlur
from pnpdeblur.operators import dense
from pnpdeblur.priors import TV
from pnpdeblur.solvers import DEFAULT_SATURATION, admm, hqs, saturation_weights
from pnpdeblur.solvers._common import XStep, prepare_weights, relative_residual

from _operators import Dense  # tests/_operators.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)

SHAPE = (2, 3, 4)  # (C, H, W)
M = 24
TIGHT = dict(cg_iters=200, cg_tol=1e-14, progress=False)
BETAS = [0.05, 0.4, 3.0]
SIGMAS = [0.3, 0.1, 0.03]


class Ridge:
    """Exact prox of (wσ²/2)‖·‖²: every HQS/ADMM iterate has a closed form."""

    def __init__(self, w=3.0):
        self.w = w

    def __call__(self, z, sigma, *, context=None):
        return z / (1.0 + self.w * sigma**2)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    A = 0.5 * np.eye(M) + 0.5 * rng.random((M, M)) / M * 3
    y = rng.random((1,) + SHAPE)
    w = (rng.random((1,) + SHAPE) > 0.3).astype(np.float64) * rng.uniform(0.5, 2.0, (1,) + SHAPE)
    return Dense(A), A, y, w


def _hqs_ref(A, y, w, betas, sigmas, rw=3.0):
    W = np.diag(w.ravel())
    AtWy = A.T @ W @ y.ravel()
    z = y.ravel().copy()
    for b, s in zip(betas, sigmas):
        x = np.linalg.solve(A.T @ W @ A + b * np.eye(M), AtWy + b * z)
        z = x / (1 + rw * s**2)
    return z.reshape(y.shape), x.reshape(y.shape)


def _admm_ref(A, y, w, rhos, sigmas, rw=3.0):
    W = np.diag(w.ravel())
    AtWy = A.T @ W @ y.ravel()
    z = y.ravel().copy()
    u = np.zeros_like(z)
    prev = None
    for r, s in zip(rhos, sigmas):
        if prev is not None:
            u = u * (prev / r)
        prev = r
        x = np.linalg.solve(A.T @ W @ A + r * np.eye(M), AtWy + r * (z - u))
        z = (x + u) / (1 + rw * s**2)
        u = u + x - z
    return z.reshape(y.shape)


# -- the weighted solve against dense references ----------------------------------------------
def test_hqs_with_weights_solves_the_weighted_normal_equations():
    K, A, y, w = _problem(0)
    res = hqs(y, K, Ridge(), noise_level=0.02, betas=BETAS, sigmas=SIGMAS, weights=w, **TIGHT)
    z, x = _hqs_ref(A, y, w, BETAS, SIGMAS)
    np.testing.assert_allclose(res.x, z, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.aux, x, atol=1e-10, rtol=0)
    # the unweighted answer is different (the test would pass on ignored weights otherwise)
    z1, _ = _hqs_ref(A, y, np.ones_like(w), BETAS, SIGMAS)
    assert np.abs(z1 - z).max() > 1e-2
    assert res.settings["weighted"] is True
    # the history's residual is the weighted one
    Kz = A @ z.ravel()
    rw = np.sqrt(w.ravel())
    expected = np.linalg.norm(rw * (Kz - y.ravel())) / np.linalg.norm(rw * y.ravel())
    assert res.history[-1]["residual"] == pytest.approx(expected, rel=1e-9)


def test_admm_with_weights_matches_its_reference():
    K, A, y, w = _problem(1)
    res = admm(y, K, Ridge(), noise_level=0.02, rhos=BETAS, sigmas=SIGMAS, weights=w, **TIGHT)
    np.testing.assert_allclose(res.x, _admm_ref(A, y, w, BETAS, SIGMAS), atol=1e-10, rtol=0)


def test_one_channel_weights_are_shared_by_every_channel():
    K, A, y, _ = _problem(2)
    w1 = (np.random.default_rng(3).random((1, 1) + SHAPE[1:]) > 0.4).astype(np.float64)
    full = np.broadcast_to(w1, y.shape)
    res = hqs(y, K, Ridge(), noise_level=0.02, betas=BETAS, sigmas=SIGMAS, weights=w1, **TIGHT)
    np.testing.assert_allclose(res.x, _hqs_ref(A, y, full, BETAS, SIGMAS)[0], atol=1e-10, rtol=0)


def test_motion_blur_weighted_x_step_against_its_sparse_matrix():
    rng = np.random.default_rng(4)
    H, W = 7, 8
    flow = rng.uniform(-3, 3, (2, H, W))
    y = rng.random((H, W))
    w = (rng.random((H, W)) > 0.25).astype(np.float64)
    Kd = dense.motion_blur_matrix(flow).toarray()
    beta, v = 0.2, rng.random((H, W))
    step = XStep(MotionBlur(flow[None]), torch.from_numpy(y)[None, None], 300, 1e-14, "auto",
                 weights=torch.from_numpy(w)[None, None])
    x, info = step(torch.from_numpy(v)[None, None], beta, torch.zeros(1, 1, H, W, dtype=torch.float64))
    Wd = np.diag(w.ravel())
    ref = np.linalg.solve(Kd.T @ Wd @ Kd + beta * np.eye(H * W), Kd.T @ Wd @ y.ravel() + beta * v.ravel())
    assert info.converged
    np.testing.assert_allclose(x[0, 0].numpy().ravel(), ref, atol=1e-10, rtol=0)


def test_zero_weight_pixels_do_not_influence_the_result():
    """Whatever a left-out pixel holds, the solve is the same (bitwise), given the same x0."""
    rng = np.random.default_rng(5)
    H, W = 12, 13
    flow = np.stack([np.full((H, W), 2.5), np.full((H, W), -1.0)])
    K = MotionBlur(flow[None])
    y = rng.random((H, W, 3))
    w = np.ones_like(y)
    w[3:6, 4:9, 1] = 0
    w[8, :, :] = 0
    garbage = y.copy()
    garbage[w == 0] = rng.uniform(-0.4, 1.4, int((w == 0).sum()))
    kw = dict(noise_level=0.02, n_iter=3, cg_iters=20, x0=y, progress=False, weights=w)
    a = hqs(y, K, TV(), **kw)
    b = hqs(garbage, K, TV(), **kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert [h["residual"] for h in a.history] != [] and a.history[-1]["residual"] == b.history[-1]["residual"]
    # ...while without the weights the garbage changes it
    c = hqs(garbage, K, TV(), **{**kw, "weights": None})
    assert np.abs(c.x - a.x).max() > 1e-3


def test_all_ones_weights_are_the_unweighted_problem_bitwise():
    K, A, y, _ = _problem(6)
    kw = dict(noise_level=0.02, betas=BETAS, sigmas=SIGMAS, **TIGHT)
    a = hqs(y, K, Ridge(), **kw)
    b = hqs(y, K, Ridge(), weights=np.ones_like(y), **kw)
    np.testing.assert_array_equal(a.x, b.x)
    assert b.settings["weighted"] is False


def test_weights_take_cg_where_the_fft_x_step_would_be_used():
    rng = np.random.default_rng(7)
    y = rng.random((1, 1, 16, 16))
    K = UniformBlur(np.ones((3, 3)) / 9)  # periodic: the FFT x-step applies
    assert hqs(y, K, Ridge(), noise_level=0.02, n_iter=2, progress=False).settings["x_step"] == "fft"
    w = np.ones_like(y)
    w[0, 0, 2:5, 2:5] = 0
    res = hqs(y, K, Ridge(), noise_level=0.02, n_iter=2, progress=False, weights=w)
    assert res.settings["x_step"] == "cg"
    with pytest.raises(ValueError, match=re.escape("x_step='fft' cannot solve a weighted data term (KᵀWK is not "
                                                   "diagonal in Fourier); use x_step='cg' or 'auto'") + "$"):
        hqs(y, K, Ridge(), noise_level=0.02, n_iter=2, progress=False, weights=w, x_step="fft")


def test_clipped_pixels_left_out_recover_a_saturated_image_better():
    """y = clip(K x + n): dropping the clipped pixels removes the ringing they cause."""
    from pnpdeblur.data import sample_image

    x = np.clip(sample_image("camera", size=64, dtype=np.float64) * 1.5, 0, None)
    flow = np.stack([np.full((64, 64), 5.0), np.full((64, 64), 2.0)])
    K = MotionBlur(flow[None])
    y = np.clip(np.asarray(K(x)) + 0.005 * np.random.default_rng(8).standard_normal(x.shape), 0, 1)
    ref = np.clip(x, 0, 1)
    kw = dict(noise_level=0.01, n_iter=6, cg_iters=30, progress=False)
    plain = hqs(y, K, TV(), **kw).x
    masked = hqs(y, K, TV(), weights=saturation_weights(y), **kw).x

    def psnr(a):
        return 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - ref) ** 2))

    assert (y >= DEFAULT_SATURATION).mean() > 0.1  # the case does clip
    assert psnr(masked) > psnr(plain) + 2.0


# -- checks of the weights argument -----------------------------------------------------------
@pytest.mark.parametrize("bad, err, match", [
    (np.ones((1, 2, 3, 5)), ValueError, "expected y's shape"),
    (np.ones((1, 3, 3, 4)), ValueError, "expected y's shape"),
    (np.full((1, 2, 3, 4), -0.1), ValueError, ">= 0"),
    (np.full((1, 2, 3, 4), np.nan), ValueError, "NaN"),
    (np.zeros((1, 2, 3, 4)), ValueError, "all zero"),
    (np.ones((1, 2, 3, 4), dtype=np.int64), TypeError, "weights"),
    ([1.0, 0.0], TypeError, "weights"),
])
def test_bad_weights_are_refused(bad, err, match):
    y = torch.rand(1, 2, 3, 4, dtype=torch.float64)
    with pytest.raises(err, match=match):
        prepare_weights(bad, y)


def test_weights_all_zero_for_one_image_of_a_batch_are_refused():
    y = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    w = torch.ones(2, 1, 3, 4, dtype=torch.float64)
    w[1] = 0
    with pytest.raises(ValueError, match="^weights are all zero for an image: no observation would be left to "
                                         "deblur it$"):
        prepare_weights(w, y)


def test_weights_messages_name_the_argument():
    y = torch.rand(1, 2, 3, 4, dtype=torch.float32)
    with pytest.raises(ValueError, match="^weights contains NaN or Inf values$"):
        prepare_weights(np.full((1, 2, 3, 4), np.inf), y)
    with pytest.raises(TypeError, match="^weights must be float32 or float64"):
        prepare_weights(np.ones((1, 2, 3, 4), dtype=np.int16), y)
    with pytest.raises(ValueError, match="^weights must have shape"):
        prepare_weights(np.ones((1, 1, 2, 3, 4)), y)
    with pytest.raises(TypeError, match="^weights must be"):
        prepare_weights([[1.0]], y)


def test_one_weight_map_for_a_whole_batch_and_dtype_of_y():
    K, A, y, w = _problem(13)
    y2 = np.concatenate([y, y[:, ::-1].copy()])
    res = hqs(y2, K, Ridge(), noise_level=0.02, betas=BETAS, sigmas=SIGMAS, weights=w, **TIGHT)
    for i in range(2):
        np.testing.assert_allclose(res.x[i:i + 1], _hqs_ref(A, y2[i:i + 1], w, BETAS, SIGMAS)[0], atol=1e-10, rtol=0)
    t = prepare_weights(np.full((1, 1, 3, 4), 0.5), torch.rand(2, 1, 3, 4, dtype=torch.float32))
    assert t.dtype == torch.float32 and t.shape == (1, 1, 3, 4)
    with pytest.raises(ValueError, match="expected y's shape"):  # 3 weight maps for a batch of 2
        prepare_weights(np.ones((3, 1, 3, 4)), torch.rand(2, 1, 3, 4))


def test_prepare_weights_layouts_and_dtypes():
    y = torch.rand(1, 3, 4, 5, dtype=torch.float32)
    hwc = np.ones((4, 5, 3), dtype=bool)
    hwc[1, 2, 0] = False
    t = prepare_weights(hwc, y)
    assert t.shape == (1, 3, 4, 5) and t.dtype == torch.float32
    assert t[0, 0, 1, 2] == 0 and float(t.sum()) == 59
    grey = np.ones((4, 5))
    grey[0, 0] = 0.5
    t = prepare_weights(grey, y)
    assert t.shape == (1, 1, 4, 5) and t[0, 0, 0, 0] == 0.5
    assert prepare_weights(torch.ones(3, 4, 5), y) is None  # all ones: the plain problem
    assert prepare_weights(None, y) is None


def test_relative_residual_weights():
    K, A, y, w = _problem(9)
    x = np.random.default_rng(10).random(y.shape)
    yt, xt, wt = (torch.from_numpy(a) for a in (y, x, w))
    r = A @ x.ravel() - y.ravel()
    expected = np.linalg.norm(np.sqrt(w.ravel()) * r) / np.linalg.norm(np.sqrt(w.ravel()) * y.ravel())
    assert relative_residual(K, xt, yt, weights=wt) == pytest.approx(expected, rel=1e-12)
    assert relative_residual(K, xt, yt) == pytest.approx(np.linalg.norm(r) / np.linalg.norm(y), rel=1e-12)


# -- saturation_weights -----------------------------------------------------------------------
def test_saturation_weights_per_channel_numpy_layout():
    rng = np.random.default_rng(11)
    y = rng.uniform(0, 0.9, (6, 7, 3)).astype(np.float32)
    y[2, 3, 0] = 0.99
    y[4, 1, 2] = 1.0
    y[5, 6, 1] = 0.97
    w = saturation_weights(y)
    assert isinstance(w, np.ndarray) and w.shape == y.shape and w.dtype == np.float32
    expected = (y < DEFAULT_SATURATION).astype(np.float32)
    np.testing.assert_array_equal(w, expected)
    assert w[2, 3, 0] == 0 and w[2, 3, 1] == 1 and w[5, 6, 1] == 1
    assert saturation_weights(y, threshold=0.96)[5, 6, 1] == 0


def test_saturation_weights_uint8_torch_and_margin():
    rng = np.random.default_rng(12)
    y8 = rng.integers(0, 240, (3, 9, 10), dtype=np.uint8)
    y8[1, 4, 5] = 255
    y8[0, 0, 9] = 250  # 250/255 ≥ 0.98
    y8[2, 8, 0] = 249  # 249/255 < 0.98
    t = torch.from_numpy(y8)  # (C, H, W) torch
    w = saturation_weights(t, margin=1)
    assert isinstance(w, torch.Tensor) and w.shape == t.shape and w.dtype == torch.float32
    clipped = y8.astype(np.float64) / 255 >= DEFAULT_SATURATION
    ref = ~np.stack([maximum_filter(c, size=3, mode="constant") for c in clipped])
    np.testing.assert_array_equal(w.numpy(), ref.astype(np.float32))
    assert w[2, 8, 0] == 1 and float((w == 0).sum()) == 9 + 4


@pytest.mark.parametrize("kw, err, match", [
    (dict(threshold=0.0), ValueError, "threshold"),
    (dict(threshold=1.5), ValueError, "threshold"),
    (dict(threshold=True), TypeError, "threshold"),
    (dict(margin=-1), ValueError, "margin"),
    (dict(margin=1.5), ValueError, "margin"),
])
def test_saturation_weights_refuses_bad_arguments(kw, err, match):
    with pytest.raises(err, match=match):
        saturation_weights(np.zeros((4, 4)), **kw)


def test_saturation_weights_threshold_is_inclusive_and_may_be_one():
    y = np.array([[0.5, 0.49999, 1.0], [0.999, 0.2, 0.7]], dtype=np.float32)
    np.testing.assert_array_equal(saturation_weights(y, 0.5), [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(saturation_weights(y, 1.0), [[1, 1, 0], [1, 1, 1]])


def test_saturation_weights_refuses_nan_and_integer_images():
    with pytest.raises(ValueError, match="^y contains NaN or Inf values$"):
        saturation_weights(np.full((4, 4), np.nan))
    with pytest.raises(TypeError, match="^y must be an array"):
        saturation_weights([[0.5]])
    with pytest.raises(ValueError, match="^y must have shape"):
        saturation_weights(np.zeros((1, 1, 1, 4, 4)))
    with pytest.raises(TypeError, match="^threshold must be a number, got bool$"):
        saturation_weights(np.zeros((4, 4)), True)
    with pytest.raises(TypeError, match="uint8 or float"):
        saturation_weights(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(TypeError, match=r"^y must be a numeric array, got numpy dtype <U1$"):
        saturation_weights(np.array([["a", "b"], ["c", "d"]]))
