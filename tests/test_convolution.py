"""UniformBlur and Convolution against scipy.ndimage.convolve and dense matrices."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from pnpdeblur.operators.convolution import Convolution, UniformBlur

SCIPY_MODE = {"replicate": "nearest", "reflect": "mirror", "zero": "constant", "periodic": "wrap"}


def _ref(x, k, mode):
    """scipy reference, per image and channel, for (N, C, H, W) numpy input."""
    return np.stack([np.stack([ndi.convolve(c, k, mode=mode) for c in im]) for im in x])


def _dense(op, shape):
    """Dense matrix of op acting on images of ``shape`` (columns = op(e_i))."""
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).reshape((n,) + shape)
    cols = torch.stack([op(e[None])[0].reshape(-1) for e in eye], dim=1)
    return cols.numpy()


@pytest.mark.parametrize("boundary", list(SCIPY_MODE))
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_convolution_matches_scipy(boundary, method, rng):
    x = rng.random((2, 3, 13, 10))
    k = rng.random((5, 3))  # asymmetric: catches correlation-vs-convolution mistakes
    K = Convolution(k, boundary, method=method)
    np.testing.assert_allclose(K(x), _ref(x, k, SCIPY_MODE[boundary]), atol=1e-12)


def test_uniform_blur_matches_periodic_scipy(rng):
    x = rng.random((1, 2, 12, 15))
    k = rng.random((7, 5))
    np.testing.assert_allclose(UniformBlur(k)(x), _ref(x, k, "wrap"), atol=1e-12)


def test_uniform_blur_equals_periodic_convolution(rng):
    x = torch.from_numpy(rng.random((2, 1, 16, 16)))
    k = rng.random((3, 5))
    torch.testing.assert_close(UniformBlur(k)(x), Convolution(k, "periodic")(x))


@pytest.mark.parametrize("boundary", list(SCIPY_MODE))
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_adjoint_is_the_dense_transpose(boundary, method, rng):
    k = rng.random((5, 3))
    K = Convolution(k, boundary, method=method)
    shape = (1, 7, 6)
    A = _dense(K._forward, shape)
    At = _dense(K._adjoint, shape)
    np.testing.assert_allclose(At, A.T, atol=1e-12)


def test_uniform_adjoint_is_the_dense_transpose(rng):
    K = UniformBlur(rng.random((3, 5)))
    A = _dense(K._forward, (1, 6, 7))
    np.testing.assert_allclose(_dense(K._adjoint, (1, 6, 7)), A.T, atol=1e-12)


@pytest.mark.parametrize("op", ["uniform", "conv"])
def test_dtype_layout_and_types_preserved(op, rng):
    k = np.ones((3, 3)) / 9
    K = UniformBlur(k) if op == "uniform" else Convolution(k)
    x64 = rng.random((8, 9, 3))  # (H, W, C) numpy
    y = K(x64)
    assert isinstance(y, np.ndarray) and y.shape == x64.shape and y.dtype == np.float64
    x32 = torch.rand(3, 8, 9)  # (C, H, W) torch
    y32 = K(x32)
    assert isinstance(y32, torch.Tensor) and y32.dtype == torch.float32 and y32.shape == x32.shape
    np.testing.assert_allclose(
        y32.numpy(), K(x32.double()).numpy(), atol=1e-5
    )
    assert K.kernel.dtype == torch.float64


def test_kernel_types_accepted(rng):
    k = rng.random((3, 3))
    x = rng.random((1, 1, 8, 8))
    a = Convolution(k)(x)
    b = Convolution(torch.from_numpy(k).float())(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize(
    "kernel, exc, words",
    [
        (np.ones((4, 3)), ValueError, "odd"),
        (np.ones((3,)), ValueError, "2-D"),
        (np.ones((3, 3, 3)), ValueError, "2-D"),
        (np.ones((3, 3), dtype=np.int64), TypeError, "float"),
        (np.array([[0.0, np.nan, 0.0]]), ValueError, "NaN"),
        ([[1.0]], TypeError, "kernel"),
    ],
)
def test_bad_kernels_raise(kernel, exc, words):
    for cls in (UniformBlur, Convolution):
        with pytest.raises(exc, match=words):
            cls(kernel)
        with pytest.raises(exc, match="kernel"):
            cls(kernel)


def test_bad_boundary_and_inputs(rng):
    with pytest.raises(ValueError, match="boundary"):
        Convolution(np.ones((3, 3)), boundary="mirror")
    K = Convolution(np.ones((3, 3)) / 9)
    x = rng.random((1, 1, 8, 8))
    x[0, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        K(x)
    with pytest.raises(ValueError, match="larger"):
        UniformBlur(np.ones((9, 9)))(np.zeros((1, 1, 5, 5)))


def test_gradients_flow_through_operator():
    K = Convolution(np.ones((3, 3)) / 9, "reflect")
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: K._forward(t), (x,))
    assert torch.autograd.gradcheck(lambda t: K._adjoint(t), (x,))
