"""The ``LinearOperator`` base (``pnpdeblur.operators.base``) against dense matrices.

A small operator given by an explicit, non-symmetric matrix per image row makes every
algebra result checkable against a matrix product (independent of the blur operators),
and the layout, size and batch checks are exercised directly with their messages.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pnpdeblur.operators.base import Identity, LinearOperator, to_nchw

H, W = 3, 4


class Matrix(LinearOperator):
    """x -> M x on each flattened (H*W) channel; adjoint M^T. image_shape set by the caller."""

    def __init__(self, M, image_shape=(None, H, W)):
        self.M = torch.as_tensor(M)
        self.image_shape = image_shape

    def _forward(self, x):
        n, c, h, w = x.shape
        return (x.reshape(n, c, h * w) @ self.M.T).reshape(n, c, h, w)

    def _adjoint(self, y):
        n, c, h, w = y.shape
        return (y.reshape(n, c, h * w) @ self.M).reshape(n, c, h, w)


def _dense(op, n=1, c=1):
    """The matrix of op's forward on one (1, 1, H, W) channel, column by column."""
    cols = []
    for k in range(H * W):
        e = torch.zeros(n, c, H * W, dtype=torch.float64)
        e[..., k] = 1.0
        cols.append(op._forward(e.reshape(n, c, H, W)).reshape(n, c, H * W)[0, 0])
    return torch.stack(cols, 1).numpy()


@pytest.fixture
def mats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(H * W, H * W)), rng.normal(size=(H * W, H * W))


def test_algebra_is_matrix_algebra(mats):
    A_, B_ = mats
    A, B = Matrix(A_), Matrix(B_)
    cases = {
        "A @ B": (A @ B, A_ @ B_),
        "A + B": (A + B, A_ + B_),
        "A - B": (A - B, A_ - B_),
        "2.5 * A": (2.5 * A, 2.5 * A_),
        "A * -3": (A * -3, -3 * A_),
        "-A": (-A, -A_),
        "A.T": (A.T, A_.T),
        "A.H": (A.H, A_.T),
        "(A @ B).T": ((A @ B).T, B_.T @ A_.T),
        "(A - B).T": ((A - B).T, (A_ - B_).T),
        "(2 * A).T": ((2 * A).T, 2 * A_.T),
        "A.T.T": (A.T.T, A_),
        "A.T @ B": (A.T @ B, A_.T @ B_),
        "Identity": (Identity(), np.eye(H * W)),
    }
    for name, (op, ref) in cases.items():
        np.testing.assert_allclose(_dense(op), ref, rtol=0, atol=1e-12, err_msg=name)
        # the adjoint of every combination is the transpose of its matrix
        np.testing.assert_allclose(_dense(op.T), ref.T, rtol=0, atol=1e-12, err_msg=name + " adjoint")
    assert A.T.T is A


def test_apply_adjoint_normal_and_matmul_on_arrays(mats):
    A_, _ = mats
    A = Matrix(A_)
    x = np.random.default_rng(1).random((2, 3, H, W))
    flat = x.reshape(2, 3, H * W)
    np.testing.assert_allclose(A(x), (flat @ A_.T).reshape(x.shape), rtol=0, atol=1e-12)
    np.testing.assert_allclose(A.apply(x), A(x), rtol=0, atol=0)
    np.testing.assert_allclose(A @ x, A(x), rtol=0, atol=0)
    np.testing.assert_allclose(A.adjoint(x), (flat @ A_).reshape(x.shape), rtol=0, atol=1e-12)
    np.testing.assert_allclose(A.normal(x), (flat @ (A_.T @ A_).T).reshape(x.shape), rtol=0, atol=1e-12)


def test_layouts_round_trip_by_array_type(mats):
    A_, _ = mats
    A = Matrix(A_)
    rng = np.random.default_rng(2)
    img = rng.random((H, W))
    ref = (A_ @ img.ravel()).reshape(H, W)
    np.testing.assert_allclose(A(img), ref, rtol=0, atol=1e-12)  # 2-D: one grey image
    hwc = np.stack([img, 2 * img], -1)  # numpy 3-D: (H, W, C)
    out = A(hwc)
    assert out.shape == (H, W, 2)
    np.testing.assert_allclose(out[..., 1], 2 * ref, rtol=0, atol=1e-12)
    chw = torch.from_numpy(np.stack([img, 2 * img]))  # torch 3-D: (C, H, W)
    out = A(chw)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, H, W)
    np.testing.assert_allclose(out[1].numpy(), 2 * ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(A.adjoint(img), (A_.T @ img.ravel()).reshape(H, W), rtol=0, atol=1e-12)


def test_to_nchw_shapes_and_restore():
    t = torch.zeros(3, 5, 2)
    for kind, shape in (("numpy", (1, 2, 3, 5)), ("torch", (1, 3, 5, 2))):
        x, restore = to_nchw(t, kind)
        assert tuple(x.shape) == shape and tuple(restore(x).shape) == (3, 5, 2)
    x, restore = to_nchw(torch.zeros(3, 5), "numpy")
    assert tuple(x.shape) == (1, 1, 3, 5) and tuple(restore(x).shape) == (3, 5)
    x4 = torch.zeros(2, 1, 3, 5)
    x, restore = to_nchw(x4, "torch")
    assert x is x4 and restore(x) is x4
    with pytest.raises(ValueError, match=r"^img must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(5,\)$"):
        to_nchw(torch.zeros(5), "torch", "img")
    with pytest.raises(ValueError, match=r"^x must have shape"):
        to_nchw(torch.zeros(1, 1, 1, 1, 1), "torch")


def test_size_messages_name_the_operator_expression_not_private_classes(mats):
    A, B = Matrix(mats[0], image_shape=(2, H, W)), Matrix(mats[1], image_shape=(2, H, W))
    wrong = np.zeros((2, 1, H, W + 1))
    for op, label in ((A.T, "Matrix.T"), (A @ B, "(Matrix @ Matrix)"), (A + B, "(Matrix + Matrix)"),
                      (A - B.T, "(Matrix + -1.0 * Matrix.T)"), (2.5 * A, "2.5 * Matrix"),
                      (A.T @ A + 0.5 * B, "((Matrix.T @ Matrix) + 0.5 * Matrix)")):
        with pytest.raises(ValueError, match=r"^x has spatial size \(3, 5\), but " + re.escape(label)
                           + r" was built for \(H, W\) = \(3, 4\)$"):
            op(wrong)
        with pytest.raises(ValueError, match=r"^x has batch size 3, but " + re.escape(label) + " was built for N = 2"):
            op(np.zeros((3, 1, H, W)))


def test_check_image_size_batch_and_names(mats):
    A = Matrix(mats[0], image_shape=(2, H, W))
    A(np.zeros((2, 1, H, W)))
    with pytest.raises(ValueError, match=r"^x has spatial size \(3, 5\), but Matrix was built for \(H, W\) = \(3, 4\)$"):
        A(np.zeros((2, 1, H, W + 1)))
    with pytest.raises(ValueError, match=r"^y has spatial size \(4, 4\)"):
        A.adjoint(np.zeros((2, 1, H + 1, W)))
    with pytest.raises(ValueError, match=r"^x has batch size 3, but Matrix was built for N = 2"):
        A(np.zeros((3, 1, H, W)))
    with pytest.raises(TypeError, match=r"^y must be float32 or float64"):
        A.adjoint(np.zeros((2, 1, H, W), np.int32))
    with pytest.raises(ValueError, match=r"^x contains NaN or Inf"):
        A.normal(np.full((2, 1, H, W), np.nan))
    with pytest.raises(TypeError, match=r"^y must be an array"):
        A.adjoint([1.0])
    one = Matrix(mats[0], image_shape=(1, H, W))  # N = 1 applies to any batch
    assert one(np.zeros((5, 1, H, W))).shape == (5, 1, H, W)
    anyn = Matrix(mats[0], image_shape=(None, None, W))  # None: any size on that axis
    assert anyn(np.zeros((4, 1, H, W))).shape == (4, 1, H, W)
    with pytest.raises(ValueError, match=r"^z must have shape \(N, C, H, W\), got shape \(3, 4\)$"):
        A.check_image(torch.zeros(H, W), "z")


def test_combining_checks_sizes_and_merges_batches(mats):
    A_, B_ = mats
    A = Matrix(A_, (2, H, W))
    B = Matrix(B_, (1, H, W))
    assert (A @ B).image_shape == (2, H, W)
    assert (B + A).image_shape == (2, H, W)
    assert (Matrix(A_, (None, None, W)) + Matrix(B_, (3, H, None))).image_shape == (3, H, W)
    with pytest.raises(ValueError, match=r"^cannot combine .*: N differs \(2 vs 3\)$"):
        A @ Matrix(B_, (3, H, W))
    with pytest.raises(ValueError, match=r"^cannot combine .*: H differs \(3 vs 5\)$"):
        A + Matrix(B_, (2, 5, W))
    with pytest.raises(ValueError, match=r"^cannot combine .*: W differs \(4 vs 1\)$"):
        A - Matrix(B_, (2, H, 1))
    # shapes pass to adjoints and scaled operators
    assert A.T.image_shape == (-A).image_shape == (3.0 * A).image_shape == (2, H, W)


def test_scalars_and_non_operators(mats):
    A = Matrix(mats[0])
    with pytest.raises(TypeError):
        A + 1.0
    with pytest.raises(TypeError):
        A - np.eye(3)
    with pytest.raises(TypeError):
        A * "2"
    with pytest.raises(TypeError):
        True * A  # a bool is not a scale
    np.testing.assert_allclose(_dense(np.float32(2.0) * A), 2.0 * mats[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(_dense(A * 3), 3.0 * mats[0], rtol=0, atol=1e-12)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^an operator can only be scaled by a finite number, got"):
            A * bad


def test_identity_copies_and_reprs():
    x = torch.rand(1, 1, H, W, dtype=torch.float64)
    y = Identity()(x)
    assert torch.equal(y, x) and y.data_ptr() != x.data_ptr()
    z = Identity().adjoint(x)
    assert torch.equal(z, x) and z.data_ptr() != x.data_ptr()
    A = Matrix(np.eye(H * W), (1, H, W))
    B = Identity()
    assert repr(A) == "Matrix(image_shape=(1, 3, 4))"
    assert repr(A.T) == "Matrix(image_shape=(1, 3, 4)).T"
    assert repr(A @ B) == "(Matrix(image_shape=(1, 3, 4)) @ Identity(image_shape=(None, None, None)))"
    assert repr(A + B) == "(Matrix(image_shape=(1, 3, 4)) + Identity(image_shape=(None, None, None)))"
    assert repr(2 * A) == "2.0 * Matrix(image_shape=(1, 3, 4))"
    assert repr(A - B) == "(Matrix(image_shape=(1, 3, 4)) + -1.0 * Identity(image_shape=(None, None, None)))"


def test_base_class_methods_must_be_implemented():
    op = LinearOperator()
    with pytest.raises(NotImplementedError):
        op._forward(torch.zeros(1, 1, 2, 2))
    with pytest.raises(NotImplementedError):
        op._adjoint(torch.zeros(1, 1, 2, 2))


def test_layout_errors_name_the_argument(mats):
    A = Matrix(mats[0])
    with pytest.raises(ValueError, match=r"^y must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(1, 1, 1, 3, 4\)$"):
        A.adjoint(np.zeros((1, 1, 1, H, W)))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(12,\)$"):
        A(torch.zeros(H * W, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, C, H, W\), got shape \(3, 4\)$"):
        A.check_image(torch.zeros(H, W))  # the default name
