"""pd.operators.to_scipy: the scipy operator is the reference matrix, its rmatvec the transpose, and
scipy's solvers give the library's answers."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow
from pnpdeblur.operators import dense, to_scipy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _dense(A):
    """Columns of a scipy operator: A applied to each unit vector."""
    m = A.shape[1]
    return np.stack([A.matvec(e) for e in np.eye(m, dtype=A.dtype)], 1)


def test_matvec_is_the_reference_matrix_per_channel_and_rmatvec_its_transpose():
    flow = random_motion_flow((7, 9), max_len=6, seed=0)
    ref = dense.motion_blur_matrix(flow.astype(np.float64)).toarray()
    A = to_scipy(pd.MotionBlur(flow), (1, 2, 7, 9))
    assert A.shape == (126, 126) and A.dtype == np.float64
    want = sp.block_diag([ref, ref]).toarray()  # (N, C, H, W) flattened in C order: channel-major
    np.testing.assert_allclose(_dense(A), want, atol=1e-12)
    np.testing.assert_allclose(np.stack([A.rmatvec(e) for e in np.eye(126)], 1), want.T, atol=1e-12)
    # scipy's own adjoint and products go through rmatvec / matvec
    y = np.random.default_rng(1).standard_normal(126)
    np.testing.assert_allclose(A.H @ y, want.T @ y, atol=1e-12)
    np.testing.assert_allclose((A.T @ A) @ y, want.T @ (want @ y), atol=1e-12)
    # a column vector, as scipy passes them, comes back as a column
    assert A.matvec(y[:, None]).shape == (126, 1)


def test_scipys_least_squares_agree_with_the_librarys_cg():
    flow = random_motion_flow((12, 14), max_len=8, seed=2)
    K = pd.MotionBlur(flow)
    rng = np.random.default_rng(3)
    y = rng.random((12, 14))
    beta = 0.05
    A = to_scipy(K, (1, 1, 12, 14))
    x_lsqr = spla.lsqr(A, y.ravel(), damp=np.sqrt(beta), atol=1e-14, btol=1e-14, iter_lim=2000)[0]
    x_cg, info = pd.solvers.cg(K.T @ K + beta * pd.operators.Identity(), np.asarray(K.T(y)), tol=1e-12,
                               maxiter=2000)
    assert info.converged
    np.testing.assert_allclose(x_lsqr.reshape(12, 14), x_cg, atol=1e-8)


def test_float32_and_the_default_shape():
    flow = random_motion_flow((6, 8), max_len=5, seed=4)
    A = to_scipy(pd.MotionBlur(np.stack([flow, -flow])))  # a batch of two flows: N = 2, C = 3
    assert A.shape == (2 * 3 * 6 * 8,) * 2
    A32 = to_scipy(pd.MotionBlur(flow), dtype=np.float32)
    v = np.random.default_rng(5).standard_normal(A32.shape[1]).astype(np.float32)
    out = A32 @ v
    assert out.dtype == np.float32
    assert A32.matvec(v.astype(np.float64)).dtype == np.float32  # computed in the operator's dtype
    x = torch.from_numpy(v.reshape(1, 3, 6, 8))
    np.testing.assert_allclose(out, pd.MotionBlur(flow)(x).numpy().ravel(), rtol=1e-6)


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: to_scipy(np.eye(3)), TypeError, r"^K must be a pnpdeblur LinearOperator, got ndarray$"),
    (lambda: to_scipy(pd.MotionBlur(np.ones((2, 4, 5))), dtype=np.int64), TypeError,
     r"^dtype must be float32 or float64, got int64$"),
    (lambda: to_scipy(pd.MotionBlur(np.ones((2, 4, 5))), dtype="nonsense"), TypeError,
     r"^dtype must be float32 or float64, got 'nonsense'$"),
    (lambda: to_scipy(pd.Convolution(np.ones((3, 3)) / 9, "zero")), ValueError,
     r"^Convolution works on images of any size: pass shape"),
    (lambda: to_scipy(pd.MotionBlur(np.ones((2, 4, 5))), (1, 1, 4, 5)).matvec(np.ones(21)), ValueError,
     r"^dimension mismatch$"),  # scipy's own check
    (lambda: to_scipy(pd.MotionBlur(np.ones((2, 4, 5))), (1, 1, 4, 5)).rmatvec(np.ones(19)), ValueError,
     r"^dimension mismatch$"),
    (lambda: to_scipy(pd.MotionBlur(np.ones((2, 4, 5))), (1, 1, 4, 5)).matvec(np.full(20, np.nan)), ValueError,
     r"^x contains NaN or Inf"),
])
def test_bad_arguments_are_named(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
