"""LinearOperator algebra and the errors every operator raises on bad input."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pnpdeblur as pd
from pnpdeblur.operators import MAX_FLOW, Identity, LinearOperator


class Diagonal(LinearOperator):
    """A test operator with a known dense matrix: x -> d * x (elementwise)."""

    def __init__(self, d):
        self.d = torch.as_tensor(d)
        self.image_shape = (None, self.d.shape[-2], self.d.shape[-1])

    def _forward(self, x):
        return self.d * x

    _adjoint = _forward


def test_algebra_matches_matrices():
    rng = np.random.default_rng(0)
    f1 = rng.uniform(-5, 5, (1, 2, 7, 8))
    f2 = rng.uniform(-5, 5, (1, 2, 7, 8))
    A, B = pd.MotionBlur(f1), pd.MotionBlur(f2)
    x = rng.random((1, 2, 7, 8))
    y = rng.random((1, 2, 7, 8))
    np.testing.assert_allclose((A @ B)(x), A(B(x)), atol=1e-14)
    np.testing.assert_allclose((A @ B).T(y), B.T(A.T(y)), atol=1e-14)
    np.testing.assert_allclose((A + B)(x), A(x) + B(x), atol=1e-14)
    np.testing.assert_allclose((A - B)(x), A(x) - B(x), atol=1e-14)
    np.testing.assert_allclose((2.5 * A)(x), 2.5 * A(x), atol=1e-14)
    np.testing.assert_allclose((A * 2.5).T(y), 2.5 * A.T(y), atol=1e-14)
    np.testing.assert_allclose((-A)(x), -A(x), atol=1e-14)
    np.testing.assert_allclose(A.T.T(x), A(x), atol=1e-14)
    np.testing.assert_allclose(A.normal(x), A.T(A(x)), atol=1e-14)
    np.testing.assert_allclose(A @ x, A(x), atol=1e-14)
    np.testing.assert_allclose((A @ Identity())(x), A(x), atol=1e-14)
    d = rng.random((7, 8))
    np.testing.assert_allclose((Diagonal(d) @ A).T(y), A.T(d * y), atol=1e-14)


def test_composition_checks_sizes():
    A = pd.MotionBlur(np.zeros((1, 2, 7, 8)))
    B = pd.MotionBlur(np.zeros((1, 2, 7, 9)))
    with pytest.raises(ValueError, match="W differs"):
        A @ B
    with pytest.raises(TypeError):
        A + 1.0
    with pytest.raises(TypeError):
        A * "a"


def test_torch_cuda_path_selected_for_cuda_or_forced():
    # the torch path runs on any device; forcing numba on a CUDA tensor is an error
    from pnpdeblur.operators._segment import _resolve_path

    x = torch.zeros(1, 1, 2, 2)
    assert _resolve_path(x, None) == "numba"
    assert _resolve_path(x, "torch") == "torch"
    with pytest.raises(ValueError, match="path"):
        _resolve_path(x, "cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_through_torch_path():
    rng = np.random.default_rng(1)
    f = torch.tensor(rng.uniform(-20, 20, (1, 2, 16, 16)))
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    y = pd.MotionBlur(f.cuda())(x.cuda())
    assert y.is_cuda and y.dtype == torch.float64
    torch.testing.assert_close(y.cpu(), pd.MotionBlur(f)(x), atol=1e-12, rtol=0)


# ------------------------------------------------------------------ bad input
def test_flow_errors_name_the_argument():
    ok = np.zeros((1, 2, 6, 6))
    with pytest.raises(ValueError, match="flow.*shape"):
        pd.MotionBlur(np.zeros((1, 3, 6, 6)))
    with pytest.raises(ValueError, match="flow.*shape"):
        pd.MotionBlur(np.zeros((2, 6)))
    with pytest.raises(TypeError, match="flow.*float"):
        pd.MotionBlur(ok.astype(np.int32))
    with pytest.raises(TypeError, match="flow"):
        pd.MotionBlur([[0.0]])
    bad = ok.copy()
    bad[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="flow.*NaN"):
        pd.MotionBlur(bad)
    bad[0, 0, 1, 1] = np.inf
    with pytest.raises(ValueError, match="flow.*NaN or Inf"):
        pd.MotionBlur(bad)
    with pytest.raises(ValueError, match="flow.*at most 64"):
        pd.MotionBlur(ok + MAX_FLOW + 1)
    with pytest.raises(ValueError, match="flow.*at most 16"):
        pd.MotionBlur.lut(ok + 16.5)
    with pytest.raises(ValueError, match="flow_next and flow_prev"):
        pd.TwoSegmentBlur(ok, np.zeros((1, 2, 6, 7)))
    with pytest.raises(ValueError, match="tau"):
        pd.TwoSegmentBlur(ok, ok, tau=0.0)
    with pytest.raises(ValueError, match="n must be"):
        pd.WarpBlur(ok, ok, n=0)


def test_image_errors_name_the_argument():
    K = pd.MotionBlur(np.zeros((2, 2, 6, 6)))
    with pytest.raises(ValueError, match="x has spatial size"):
        K(np.zeros((2, 1, 6, 7)))
    with pytest.raises(ValueError, match="x has batch size 3"):
        K(np.zeros((3, 1, 6, 6)))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        K(np.zeros((2, 1, 6, 6), dtype=np.uint8))
    with pytest.raises(ValueError, match="y contains NaN"):
        K.adjoint(np.full((2, 1, 6, 6), np.nan))
    with pytest.raises(ValueError, match="x must have shape"):
        K(np.zeros((1, 2, 1, 6, 6)))
    with pytest.raises(TypeError, match="x must be an array"):
        K(3.0)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3),
    c=st.integers(1, 4),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    lim=st.floats(0, 46),
    seed=st.integers(0, 2**16),
)
def test_any_shape_keeps_shape_dtype_and_constants(n, c, h, w, lim, seed):
    rng = np.random.default_rng(seed)
    f = rng.uniform(-lim, lim, (n, 2, h, w)).astype(np.float32)
    x = rng.random((n, c, h, w)).astype(np.float32)
    K = pd.MotionBlur(f)
    y = K(x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(K(np.ones_like(x)), 1.0, atol=1e-5)
    lhs = float(np.vdot(y.astype(np.float64), x))
    rhs = float(np.vdot(x.astype(np.float64), K.T(x).astype(np.float64)))
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=6),
    bad_value=st.sampled_from([np.nan, np.inf, -np.inf, 1e3]),
)
def test_bad_flow_shapes_and_values_raise(shape, bad_value):
    shape = tuple(shape)
    good = len(shape) in (3, 4) and shape[-3] == 2 and 0 not in shape
    f = np.zeros(shape)
    if good:
        f.flat[0] = bad_value
    with pytest.raises(ValueError, match="flow"):
        pd.MotionBlur(f)


@pytest.mark.parametrize("a", [float("nan"), float("inf"), -np.inf])
def test_scaling_by_a_non_finite_number_raises(a):
    K = pd.UniformBlur(np.ones((3, 3)) / 9)
    with pytest.raises(ValueError, match="finite"):
        a * K
    with pytest.raises(ValueError, match="finite"):
        K * a


@pytest.mark.parametrize("cls", [pd.MotionBlur, pd.MotionBlur.lut])
def test_empty_flow_batch_raises_value_error(cls):
    # an (0, 2, H, W) flow used to raise a RuntimeError from max() of an empty tensor
    with pytest.raises(ValueError, match="flow must have a non-empty batch"):
        cls(np.zeros((0, 2, 4, 4)))


def test_identity_returns_a_copy_and_numpy_scalars_are_accepted():
    x = np.random.default_rng(2).random((1, 1, 4, 4))
    y = Identity()(x)
    np.testing.assert_array_equal(y, x)
    y[0, 0, 0, 0] = -1.0
    assert x[0, 0, 0, 0] != -1.0
    f = np.zeros((1, 2, 4, 4))
    K = pd.WarpBlur(f, f, n=np.int64(2), tau=np.float32(0.5))
    assert K.n == 2 and K.tau == 0.5
    assert pd.TwoSegmentBlur(f, f, tau=np.float64(0.25)).tau == 0.25


@pytest.mark.parametrize("method", ["apply", "adjoint", "normal", "__call__"])
def test_check_finite_false_skips_only_the_nan_scan(method, monkeypatch):
    rng = np.random.default_rng(3)
    flow = rng.uniform(-4, 4, (1, 2, 9, 11))
    K = pd.MotionBlur(flow)
    x = rng.random((9, 11, 3))
    call = getattr(K, method)
    checked = call(x)
    fast = call(x, check_finite=False)
    np.testing.assert_array_equal(fast, checked)  # same values, same layout
    # the NaN scan is what is skipped: a NaN pixel goes through and spreads along its kernels
    bad = x.copy()
    bad[4, 5, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        call(bad)
    out = call(bad, check_finite=False)
    assert np.isnan(out[..., 1]).any() and not np.isnan(out[..., 0]).any()
    # ...and nothing else: shapes are still checked, and the scan is not run at all
    import pnpdeblur.operators.base as base

    scans = []
    monkeypatch.setattr(base, "_check_finite", lambda t, name: scans.append(name))
    call(x, check_finite=False)
    assert scans == []
    call(x)
    assert len(scans) == 1
    with pytest.raises(ValueError, match="spatial size"):
        call(rng.random((8, 11, 3)), check_finite=False)
    with pytest.raises(TypeError, match="check_finite must be True or False"):
        call(x, check_finite=0)


def test_check_image_scans_for_nan_by_default():
    """The solvers check y through K.check_image(y, "y"): the scan must be its default."""
    K = pd.MotionBlur(np.zeros((1, 2, 5, 6)))
    bad = torch.zeros(1, 1, 5, 6)
    bad[0, 0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match="^y contains NaN or Inf values$"):
        K.check_image(bad, "y")
    K.check_image(bad, "y", check_finite=False)  # shape and dtype are fine: no error
    with pytest.raises(ValueError, match="y contains NaN or Inf"):
        pd.solvers.hqs(bad, K, prior=pd.priors.TV(), noise_level=0.01, progress=False)
