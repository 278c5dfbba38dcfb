"""``pnpdeblur.operators.convolution`` details on tiny inputs: method choice, size limits,
transfer functions and their caches, the padding adjoint by hand, and every message."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from pnpdeblur.operators.convolution import Convolution, UniformBlur, _pad_amounts, _unpad_axis, as_kernel


def test_method_auto_switches_to_fft_above_25_taps():
    assert Convolution(np.ones((5, 5))).method == "direct"
    assert Convolution(np.ones((3, 9))).method == "fft"
    assert Convolution(np.ones((1, 27))).method == "fft"
    assert Convolution(np.ones((9, 3)), method="direct").method == "direct"
    assert Convolution(np.ones((1, 1)), method="fft").method == "fft"
    assert Convolution(np.ones((3, 3))).boundary == "replicate"


def test_pad_amounts_order():
    assert _pad_amounts((5, 3)) == (1, 1, 2, 2)  # left, right, top, bottom


@pytest.mark.parametrize("boundary", ["replicate", "reflect", "zero", "periodic"])
def test_unpad_is_the_transpose_of_padding(boundary):
    # <pad(x), p> == <x, unpad(p)> on one axis, with before != after
    rng = np.random.default_rng(0)
    n, before, after = 5, 2, 3
    x = torch.tensor(rng.random((1, 1, n)))  # 3-D: F.pad's non-constant modes pad the last axis
    p = torch.tensor(rng.random((1, 1, n + before + after)))
    mode = {"periodic": "circular", "zero": "constant"}.get(boundary, boundary)
    padded = torch.nn.functional.pad(x, (before, after), mode=mode)
    lhs = float((padded * p).sum())
    rhs = float((x * _unpad_axis(p, before, after, n, boundary, dim=2)).sum())
    assert lhs == pytest.approx(rhs, abs=1e-13)
    # only the "before" side, and no padding at all
    padded = torch.nn.functional.pad(x, (before, 0), mode=mode)
    q = p[..., : n + before]
    assert float((padded * q).sum()) == pytest.approx(float((x * _unpad_axis(q, before, 0, n, boundary, 2)).sum()), abs=1e-13)
    padded = torch.nn.functional.pad(x, (0, after), mode=mode)
    q = p[..., : n + after]
    assert float((padded * q).sum()) == pytest.approx(float((x * _unpad_axis(q, 0, after, n, boundary, 2)).sum()), abs=1e-13)
    assert _unpad_axis(x, 0, 0, n, boundary, 2) is x


@pytest.mark.parametrize("boundary", ["replicate", "reflect", "zero", "periodic"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_wide_kernel_on_a_small_image_and_its_adjoint(boundary, method):
    # kernel 3 x 7: horizontal half-size 3 < W = 5, vertical 1 < H = 3; odd W (an FFT that
    # forgets the output size returns an even width) and H != C (the grouped convolution
    # must take its groups from the channel axis)
    rng = np.random.default_rng(1)
    k = rng.random((3, 7))
    x = rng.random((1, 2, 3, 5))
    g = rng.random((1, 2, 3, 5))
    K = Convolution(k, boundary, method=method)
    mode = {"replicate": "nearest", "reflect": "mirror", "zero": "constant", "periodic": "wrap"}[boundary]
    ref = np.stack([np.stack([ndi.convolve(c, k, mode=mode) for c in im]) for im in x])
    np.testing.assert_allclose(K(x), ref, rtol=0, atol=1e-12)
    assert float(np.vdot(K(x), g)) == pytest.approx(float(np.vdot(x, K.T(g))), abs=1e-12)


def test_reflect_and_periodic_need_more_than_half_the_kernel():
    k = np.ones((5, 3))
    for boundary in ("reflect", "periodic"):
        K = Convolution(k, boundary)
        assert K(np.zeros((1, 1, 3, 2))).shape == (1, 1, 3, 2)  # 5 // 2 < 3, 3 // 2 < 2
        with pytest.raises(ValueError, match=rf"^boundary='{boundary}' needs an image larger than half the kernel \(5, 3\), got \(H, W\) = \(2, 2\)$"):
            K(np.zeros((1, 1, 2, 2)))
        with pytest.raises(ValueError, match=rf"^boundary='{boundary}' needs"):
            K.T(np.zeros((1, 1, 3, 1)))
        with pytest.raises(ValueError, match=rf"^boundary='{boundary}' needs an image larger than half the kernel \(3, 5\)"):
            Convolution(k.T, boundary)(np.zeros((1, 1, 3, 2)))  # 5 // 2 = 2 >= W = 2
    for boundary in ("replicate", "zero"):
        assert Convolution(k, boundary)(np.ones((1, 1, 1, 1))).shape == (1, 1, 1, 1)


def test_uniform_blur_is_circular_convolution_on_odd_sizes():
    # a 5 x 7 kernel (centre offset 2 rows, 3 columns) on a 7 x 9 image: odd sizes in both axes
    rng = np.random.default_rng(3)
    k = rng.random((5, 7))
    x = rng.random((1, 2, 7, 9))
    g = rng.random((1, 2, 7, 9))
    K = UniformBlur(k)
    ref = np.stack([np.stack([ndi.convolve(c, k, mode="wrap") for c in im]) for im in x])
    np.testing.assert_allclose(K(x), ref, rtol=0, atol=1e-12)
    ref_t = np.stack([np.stack([ndi.correlate(c, k, mode="wrap") for c in im]) for im in g])
    np.testing.assert_allclose(K.T(g), ref_t, rtol=0, atol=1e-12)


def test_transfer_function_shape_dtype_and_cache():
    k = np.zeros((3, 3))
    k[1, 2] = 1.0  # x[i, j-1]: a shift right by one pixel
    K = UniformBlur(k)
    tf = K.transfer_function((4, 6))
    assert tf.shape == (4, 4) and tf.dtype == torch.complex128
    assert K.transfer_function((4, 6)) is tf  # cached
    tf32 = K.transfer_function((4, 6), torch.float32)
    assert tf32.dtype == torch.complex64 and tf32 is not tf
    x = np.arange(24, dtype=float).reshape(1, 1, 4, 6)
    np.testing.assert_allclose(K(x), np.roll(x, 1, axis=3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K.T(x), np.roll(x, -1, axis=3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K(x.astype(np.float32)), np.roll(x, 1, axis=3), rtol=0, atol=1e-5)
    assert K(x.astype(np.float32)).dtype == np.float32
    assert K.transfer_function((3, 3)).shape == (3, 2)  # kernel as large as the image
    with pytest.raises(ValueError, match=r"^kernel of shape \(3, 3\) is larger than the image \(H, W\) = \(2, 3\)$"):
        K.transfer_function((2, 3))
    with pytest.raises(ValueError, match=r"^kernel of shape \(3, 3\) is larger than the image \(H, W\) = \(3, 2\)$"):
        K.transfer_function((3, 2))


def test_fft_method_float32_and_cached_casts():
    rng = np.random.default_rng(2)
    k = rng.random((5, 7))
    x = rng.random((1, 1, 6, 9))
    K = Convolution(k, "zero", method="fft")
    y64 = K(x)
    y32 = K(x.astype(np.float32))
    assert y32.dtype == np.float32 and len(K._tf) == 2
    np.testing.assert_allclose(y32, y64, rtol=0, atol=1e-5)
    np.testing.assert_allclose(y64, ndi.convolve(x[0, 0], k, mode="constant")[None, None], rtol=0, atol=1e-12)
    D = Convolution(k, "zero", method="direct")
    D(x.astype(np.float32))
    D(x.astype(np.float32))
    assert list(D._cast) == [(torch.float32, torch.device("cpu"))]
    assert D._cast[(torch.float32, torch.device("cpu"))].dtype == torch.float32


def test_kernel_validation_messages():
    t = as_kernel(np.ones((3, 5), np.float32), "psf")
    assert t.dtype == torch.float64 and t.shape == (3, 5) and t.is_contiguous()
    with pytest.raises(TypeError, match=r"^psf must be a 2-D float array \(numpy, torch or cupy\), got list$"):
        as_kernel([[1.0]], "psf")
    with pytest.raises(TypeError, match=r"^psf must have a real floating dtype, got dtype torch.int64$"):
        as_kernel(np.ones((3, 3), np.int64), "psf")
    with pytest.raises(TypeError, match=r"^psf must have a real floating dtype, got dtype torch.complex128$"):
        as_kernel(np.ones((3, 3), np.complex128), "psf")
    with pytest.raises(ValueError, match=r"^psf must be 2-D with shape \(kh, kw\), got shape \(3,\)$"):
        as_kernel(np.ones(3), "psf")
    with pytest.raises(ValueError, match=r"^psf must have odd sizes so that it has a centre, got shape \(3, 4\)$"):
        as_kernel(np.ones((3, 4)), "psf")
    with pytest.raises(ValueError, match=r"^psf must have odd sizes"):
        as_kernel(np.ones((2, 3)), "psf")
    with pytest.raises(ValueError, match=r"^psf contains NaN or Inf values$"):
        as_kernel(np.full((1, 1), np.inf), "psf")
    with pytest.raises(TypeError, match=r"^kernel must be a 2-D float array"):
        Convolution("k")
    with pytest.raises(ValueError, match=r"^boundary must be one of \('replicate', 'reflect', 'zero', 'periodic'\), got 'wrap'$"):
        Convolution(np.ones((3, 3)), "wrap")
    with pytest.raises(ValueError, match=r"^method must be 'auto', 'direct' or 'fft', got 'spatial'$"):
        Convolution(np.ones((3, 3)), method="spatial")


def test_reprs_and_kernel_size():
    assert repr(UniformBlur(np.ones((3, 5)))) == "UniformBlur(kernel_size=(3, 5))"
    assert repr(Convolution(np.ones((3, 5)), "zero")) == "Convolution(kernel_size=(3, 5), boundary='zero', method='direct')"
    assert UniformBlur(np.ones((3, 5))).kernel_size == (3, 5)


@pytest.mark.parametrize("channels", [1, 3])
def test_an_empty_batch_gives_an_empty_result_as_for_the_other_operators(channels):
    """UniformBlur, like Convolution, maps an (0, C, H, W) batch to an empty one of the same shape
    (torch's MKL FFT refuses an empty input)."""
    k = np.ones((3, 3)) / 9.0
    x = torch.zeros(0, channels, 16, 16, dtype=torch.float64)
    for op in (UniformBlur(k), Convolution(k)):
        assert op.apply(x).shape == x.shape and op.adjoint(x).shape == x.shape
