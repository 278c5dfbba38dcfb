"""WarpBlur (``pnpdeblur.operators.warp``) on tiny images: hand-computed cases, the dense
reference of ``pnpdeblur.operators.dense``, its bilinear taps and its argument checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpdeblur.operators import dense
from pnpdeblur.operators.warp import WarpBlur, _bilinear_taps

# every test: a warning is an error (torch warns once per process, e.g. for torch.meshgrid
# without indexing=, so only the first call in a process would show it to test_no_warnings)
pytestmark = pytest.mark.filterwarnings("error")


def _const_flow(u, v, h, w, n=1):
    f = np.zeros((n, 2, h, w))
    f[:, 0], f[:, 1] = u, v
    return f


def test_integer_shifts_by_hand():
    # next = +1 px right, prev = -1 px: y(p) = (x(p) + x(p+1) + x(p-1)) / 3, border replicated
    x = np.array([[[[1.0, 2.0, 4.0, 8.0]]]])
    K = WarpBlur(_const_flow(1, 0, 1, 4), _const_flow(-1, 0, 1, 4), n=1)
    np.testing.assert_allclose(K(x)[0, 0, 0], [(1 + 2 + 1) / 3, (2 + 4 + 1) / 3, (4 + 8 + 2) / 3, (8 + 8 + 4) / 3], rtol=0, atol=1e-15)
    # the adjoint scatters the same weights: rows [2,1,0,0]/3, [1,1,1,0]/3, [0,1,1,1]/3, [0,0,1,2]/3
    g = np.array([[[[1.0, 10.0, 100.0, 1000.0]]]])
    np.testing.assert_allclose(K.T(g)[0, 0, 0], [4.0, 37.0, 370.0, 700.0], rtol=0, atol=1e-12)


def test_two_samples_and_tau_by_hand():
    # n = 2, tau = 0.5, next = (0, +2) down: samples at +0.5 px and +1 px along the column
    x = np.array([[[[1.0], [3.0], [7.0]]]])  # H = 3, W = 1
    K = WarpBlur(_const_flow(0, 2, 3, 1), _const_flow(0, 0, 3, 1), n=2, tau=0.5)
    y = K(x)[0, 0, :, 0]
    # row 0: x0 + [0.5 x0 + 0.5 x1] + x1 + 2 x0 (prev flow 0) over 5
    np.testing.assert_allclose(y[0], (1 + 2 + 3 + 2) / 5, rtol=0, atol=1e-15)
    np.testing.assert_allclose(y[1], (3 + 5 + 7 + 6) / 5, rtol=0, atol=1e-15)
    np.testing.assert_allclose(y[2], (7 + 7 + 7 + 14) / 5, rtol=0, atol=1e-15)


@pytest.mark.parametrize("n, tau, h, w", [(1, 1.0, 5, 6), (3, 0.7, 6, 5), (2, 0.4, 1, 5), (2, 1.0, 4, 1)])
def test_matches_dense_both_ways(n, tau, h, w):
    rng = np.random.default_rng(n * 10 + h)
    fn = rng.uniform(-4, 4, (2, 2, h, w))
    fp = rng.uniform(-4, 4, (2, 2, h, w))
    x = rng.random((2, 2, h, w))
    K = WarpBlur(fn, fp, n=n, tau=tau)
    y, yt = K(x), K.T(x)
    for b in range(2):
        A = dense.warp_blur_matrix(fn[b], fp[b], n=n, tau=tau)
        np.testing.assert_allclose(y[b : b + 1], dense.apply_matrix(A, x[b : b + 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(yt[b : b + 1], dense.apply_matrix(A.T.tocsr(), x[b : b + 1]), rtol=0, atol=1e-12)


def test_one_flow_for_a_batch_float32_and_defaults():
    rng = np.random.default_rng(3)
    fn, fp = rng.uniform(-3, 3, (1, 2, 4, 5)), rng.uniform(-3, 3, (2, 4, 5))
    x = rng.random((3, 1, 4, 5))
    K = WarpBlur(fn, fp)
    assert K.n == 8 and K.tau == 1.0 and K.image_shape == (1, 4, 5)
    A = dense.warp_blur_matrix(fn[0], fp, n=8, tau=1.0)
    np.testing.assert_allclose(K(x), dense.apply_matrix(A, x), rtol=0, atol=1e-12)
    y32 = K(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, dense.apply_matrix(A, x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"^x has batch size 2, but the flows have 3$"):
        WarpBlur(np.zeros((3, 2, 4, 5)), np.zeros((3, 2, 4, 5)), n=1)._forward(torch.zeros(2, 1, 4, 5))


def test_bilinear_taps_clamp_and_sum_to_one():
    f = torch.tensor(_const_flow(0.25, -0.5, 3, 4))
    index, weight = _bilinear_taps(f, 2.0)  # samples at p + (0.5, -1)
    assert len(index) == len(weight) == 4
    total = sum(weight)
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-15)
    # pixel (row 1, col 3): x = 3.5 is clamped to 3 = W-1, y = 0: all weight on (0, 3)
    p = 1 * 4 + 3
    dense_row = torch.zeros(12, dtype=torch.float64)
    for i, wt in zip(index, weight):
        dense_row.index_add_(0, i[0, p : p + 1], wt[0, p : p + 1])
    expected = torch.zeros(12, dtype=torch.float64)
    expected[3] = 1.0
    torch.testing.assert_close(dense_row, expected, rtol=0, atol=1e-15)
    # pixel (row 2, col 1): x = 1.5, y = 1: half on (1, 1), half on (1, 2)
    p = 2 * 4 + 1
    dense_row.zero_()
    for i, wt in zip(index, weight):
        dense_row.index_add_(0, i[0, p : p + 1], wt[0, p : p + 1])
    expected.zero_()
    expected[5] = expected[6] = 0.5
    torch.testing.assert_close(dense_row, expected, rtol=0, atol=1e-15)


def test_flow_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    fn = torch.tensor(rng.uniform(-1.5, 1.5, (1, 2, 4, 4)), requires_grad=True)
    fp = torch.tensor(rng.uniform(-1.5, 1.5, (1, 2, 4, 4)))
    x = torch.tensor(rng.random((1, 1, 4, 4)))
    assert torch.autograd.gradcheck(lambda f: WarpBlur(f, fp, n=2)._forward(x), (fn,), eps=1e-6, atol=1e-6)


def test_argument_errors_name_the_argument():
    f = np.zeros((1, 2, 3, 3))
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match=r"^n must be an int >= 1, got"):
            WarpBlur(f, f, n=bad)
    with pytest.raises(ValueError, match=r"^n must be >= 1, got 0$"):
        WarpBlur(f, f, n=0)
    assert WarpBlur(f, f, n=1).n == 1
    with pytest.raises(ValueError, match=r"^tau must be in"):
        WarpBlur(f, f, n=1, tau=1.5)
    with pytest.raises(ValueError, match=r"^flow_prev"):
        WarpBlur(f, np.zeros((1, 3, 3, 3)))


def test_samples_on_the_last_row_or_column_take_the_inner_derivative():
    # p + f = W-1 exactly: the lower corner is W-2 with weight 0, so d y / d u is the
    # one-sided difference x[W-1] - x[W-2] (not 0), also for W = 2 (and likewise for v, H)
    x = torch.tensor([[[[1.0, 4.0], [2.0, 9.0]]]], dtype=torch.float64)
    zero = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    fn = zero.clone()
    fn[0, 0, 0, 0] = 1.0  # (row 0, col 0) samples col 1 = W-1
    fn[0, 1, 0, 1] = 1.0  # (row 0, col 1) samples row 1 = H-1
    fn.requires_grad_(True)
    y = WarpBlur(fn, zero, n=1)._forward(x)
    (y[0, 0, 0, 0] + y[0, 0, 0, 1]).backward()
    assert float(fn.grad[0, 0, 0, 0]) == pytest.approx((4.0 - 1.0) / 3, abs=1e-15)
    assert float(fn.grad[0, 1, 0, 1]) == pytest.approx((9.0 - 4.0) / 3, abs=1e-15)


def test_no_warnings():
    import warnings

    f = np.random.default_rng(5).uniform(-2, 2, (1, 2, 4, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch.meshgrid without indexing= warns
        K = WarpBlur(f, -f, n=2)
        K.T(K(np.ones((1, 1, 4, 5))))


def test_n_type_error_names_the_given_type():
    f = np.zeros((1, 2, 3, 3))
    with pytest.raises(TypeError, match=r"^n must be an int >= 1, got bool$"):
        WarpBlur(f, f, n=True)
    with pytest.raises(TypeError, match=r"^n must be an int >= 1, got float$"):
        WarpBlur(f, f, n=2.0)
