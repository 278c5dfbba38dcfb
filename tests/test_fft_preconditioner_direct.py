"""Closed-form FFT deconvolution and the 'uniform' CG preconditioner vs dense references.

The references are dense matrices built by applying the (separately tested) periodic
blur to unit images, and numpy's dense solve / inverse: no FFT division is shared with
the code under test. Images are at most 7×8, so every test takes milliseconds.
"""
import math

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.operators.base import Identity
from pnpdeblur.operators.convolution import Convolution, UniformBlur
from pnpdeblur.operators.motion import motion_kernel
from pnpdeblur.solvers.fft import _reg_power, fft_deconv, supports_fft, uniform_transfer_function
from pnpdeblur.solvers.preconditioners import (
    PRECONDITIONERS,
    UniformPreconditioner,
    _crop_to,
    fitted_motion_vector,
    make_preconditioner,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


def _dense(op, h, w):
    """Matrix of a (periodic) operator on (h, w) images, float64."""
    eye = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, 1, h, w)
    return torch.stack([op._forward(e)[0, 0].reshape(-1) for e in eye], 1).numpy()


def _periodic_laplacian(h, w):
    """DᵀD for periodic forward differences, built from shifts (independent of any FFT)."""
    n = h * w
    idx = np.arange(n).reshape(h, w)
    L = np.zeros((n, n))
    for shift, axis in ((1, 0), (1, 1)):
        D = np.zeros((n, n))
        D[idx.reshape(-1), np.roll(idx, -shift, axis=axis).reshape(-1)] += 1.0
        D[idx.reshape(-1), idx.reshape(-1)] -= 1.0
        L += D.T @ D
    return L


def _kernel(seed, shape=(3, 3)):
    k = np.random.default_rng(seed).random(shape) + 0.1
    return k / k.sum()


# -- fft_deconv -------------------------------------------------------------------------------
@pytest.mark.parametrize("reg", ["identity", "gradient", "laplacian"])
def test_fft_deconv_solves_the_regularised_normal_equations(reg):
    h, w = 6, 7
    K = UniformBlur(_kernel(0))
    A = _dense(K, h, w)
    rng = np.random.default_rng(1)
    y, z = rng.random((h, w)), rng.random((h, w))
    L = _periodic_laplacian(h, w)
    RtR = {"identity": np.eye(h * w), "gradient": L, "laplacian": L @ L}[reg]
    beta = 0.07
    for zz in (None, z):
        rhs = A.T @ y.reshape(-1) + (0 if zz is None else beta * RtR @ zz.reshape(-1))
        want = np.linalg.solve(A.T @ A + beta * RtR, rhs).reshape(h, w)
        got = fft_deconv(y, K, balance=beta, z=zz, reg=reg)
        assert isinstance(got, np.ndarray) and got.shape == (h, w) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, atol=1e-11, rtol=0)


def test_fft_deconv_inverse_filter_layouts_and_periodic_convolution():
    h, w = 5, 6
    k = np.zeros((3, 3))
    k[1, 1], k[1, 2] = 0.7, 0.3  # |H| ≥ 0.4: invertible
    K = Convolution(k, "periodic")
    A = _dense(K, h, w)
    rng = np.random.default_rng(2)
    y = rng.random((h, w, 2))  # (H, W, C) numpy
    got = fft_deconv(y, K, balance=0.0)
    assert got.shape == (h, w, 2)
    for c in range(2):
        np.testing.assert_allclose(got[..., c].reshape(-1), np.linalg.solve(A, y[..., c].reshape(-1)), atol=1e-11)
    yt = torch.from_numpy(np.moveaxis(y, -1, 0)).float()  # (C, H, W) torch float32
    gt = fft_deconv(yt, K, balance=0.0, z=torch.zeros_like(yt, dtype=torch.float64))
    assert isinstance(gt, torch.Tensor) and gt.shape == (2, h, w) and gt.dtype == torch.float32
    np.testing.assert_allclose(gt.numpy(), np.moveaxis(got, -1, 0), atol=1e-5)


def test_fft_deconv_argument_errors():
    K = UniformBlur(np.full((3, 3), 1 / 9))
    y = np.random.default_rng(3).random((6, 6))
    with pytest.raises(ValueError, match=r"^reg must be one of \('identity', 'laplacian', 'gradient'\), got 'tv'$"):
        fft_deconv(y, K, reg="tv")
    # one scalar check for every solver argument (issue 16 §3): a string or bool balance
    # was accepted (float("0.1")) while hqs(noise_level="0.1") raised
    with pytest.raises(TypeError, match=r"^balance must be a real number, got str$"):
        fft_deconv(y, K, balance="0.1")
    with pytest.raises(TypeError, match=r"^balance must be a real number, got bool$"):
        fft_deconv(y, K, balance=True)
    with pytest.raises(TypeError, match=r"^balance must be a real number, got NoneType$"):
        fft_deconv(y, K, balance=None)
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"^balance must be a finite non-negative number, got "):
            fft_deconv(y, K, balance=bad)
    with pytest.raises(ValueError, match=r"^z has shape \(1, 1, 6, 5\), expected y's shape \(1, 1, 6, 6\)$"):
        fft_deconv(y, K, z=np.zeros((6, 5)))
    with pytest.raises(TypeError, match=r"^z must be float32 or float64"):
        fft_deconv(y, K, z=np.zeros((6, 6), dtype=np.int16))
    with pytest.raises(ValueError, match=r"^z contains NaN or Inf values$"):
        fft_deconv(y, K, z=np.full((6, 6), np.nan))
    with pytest.raises(TypeError, match=r"^y must be float32 or float64"):
        fft_deconv(np.ones((6, 6), dtype=np.uint8), K)
    with pytest.raises(ValueError, match=r"^y contains NaN or Inf values$"):
        fft_deconv(np.full((6, 6), np.inf), K)
    with pytest.raises(TypeError, match=r"^K must be a UniformBlur \(or a Convolution with boundary='periodic'\) "
                                        r"for the closed-form FFT solve, got "):
        fft_deconv(y, Convolution(np.full((3, 3), 1 / 9), "replicate"))
    k = np.zeros((3, 3))
    k[1, 0] = k[1, 2] = 0.5  # H = cos(2πf) vanishes at f = 1/4
    with pytest.raises(ValueError) as err:
        fft_deconv(np.random.default_rng(4).random((8, 8)), UniformBlur(k), balance=0)
    assert str(err.value) == (
        "the deconvolution is singular: K's transfer function and the regulariser (reg='identity', "
        "balance=0) both vanish at some frequency; use a larger balance"
    )


def test_transfer_functions_and_regulariser_powers():
    k = _kernel(5)
    U = UniformBlur(k)
    assert supports_fft(U) and supports_fft(Convolution(k, "periodic"))
    assert not supports_fft(Convolution(k, "replicate")) and not supports_fft(Identity())
    tf = uniform_transfer_function(U, (5, 6), torch.float32, "cpu")
    assert tf.dtype == torch.complex64 and tf.shape == (5, 4)
    tfc = uniform_transfer_function(Convolution(k, "periodic"), (5, 6), torch.float64, "cpu")
    np.testing.assert_allclose(tfc.numpy(), U.transfer_function((5, 6), torch.float64, "cpu").numpy(), atol=1e-15)
    with pytest.raises(TypeError, match=r"^K must be a UniformBlur"):
        uniform_transfer_function(Identity(), (5, 6), torch.float64, "cpu")
    # |R|² on the rfft2 grid: the DFT of the periodic stencils
    h, w = 5, 6
    lap = np.zeros((h, w))
    lap[0, 0] = 4.0
    lap[0, 1] = lap[0, -1] = lap[1, 0] = lap[-1, 0] = -1.0
    want = np.fft.rfft2(lap).real
    g = _reg_power("gradient", (h, w), torch.float32, "cpu")
    assert g.dtype == torch.float32 and g.shape == (h, w // 2 + 1)
    np.testing.assert_allclose(g.numpy(), want, atol=1e-5)
    np.testing.assert_allclose(_reg_power("laplacian", (h, w), torch.float64, "cpu").numpy(), want**2, atol=1e-12)
    ident = _reg_power("identity", (h, w), torch.float64, "cpu")
    assert ident.shape == (h, w // 2 + 1) and bool((ident == 1).all())


# -- the 'uniform' preconditioner ----------------------------------------------------------------
def test_fitted_motion_vector_closed_forms():
    def flow_of(vectors, h=2, w=2):
        f = torch.zeros(1, 2, h, w, dtype=torch.float64)
        flat = f.view(1, 2, -1)
        for i, (u, v) in enumerate(vectors):
            flat[0, 0, i], flat[0, 1, i] = u, v
        return f

    np.testing.assert_allclose(fitted_motion_vector(flow_of([(3, -2)] * 4))[0], [3, -2], atol=1e-12)
    np.testing.assert_allclose(fitted_motion_vector(flow_of([(-3, 2)] * 4))[0], [3, -2], atol=1e-12)
    # (3, 4) and −(3, 4): the doubled angles agree, so the mean is (3, 4), not 0
    np.testing.assert_allclose(fitted_motion_vector(flow_of([(3, 4), (-3, -4)] * 2))[0], [3, 4], atol=1e-12)
    # (4, 0) and (0, 2): c = (4 − 2)/2 = 1, s = 0 -> along x, length mean(4, 2) = 3
    np.testing.assert_allclose(fitted_motion_vector(flow_of([(4, 0), (0, 2)] * 2))[0], [3, 0], atol=1e-12)
    # zero vectors count in the mean length and nowhere else
    np.testing.assert_allclose(fitted_motion_vector(flow_of([(0, 4), (0, 0)] * 2))[0], [0, 2], atol=1e-12)
    # (1, 1) and (2, 0): c = (0 + 2)/2 = 1, s = (2/√2 + 0)/2 = 1/√2; θ = ½ atan2(s, c)
    theta = 0.5 * math.atan2(1 / math.sqrt(2), 1.0)
    L = (math.sqrt(2) + 2) / 2
    np.testing.assert_allclose(fitted_motion_vector(flow_of([(1, 1), (2, 0)] * 2))[0],
                               [L * math.cos(theta), L * math.sin(theta)], atol=1e-12)
    batch = torch.cat([flow_of([(1, 0)] * 4), flow_of([(0, -5)] * 4)]).float().requires_grad_(True)
    got = fitted_motion_vector(batch)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (2, 2)
    np.testing.assert_allclose(np.abs(got), [[1, 0], [0, 5]], atol=1e-6)


def _dense_uniform_inverse(kernel, h, w, pad, beta):
    """Cᵀ (HᵀH + βI)⁻¹ C with H the periodic blur on the padded domain, C the embedding."""
    he, we = h + 2 * pad, w + 2 * pad
    H = _dense(UniformBlur(kernel), he, we)
    inv = np.linalg.inv(H.T @ H + beta * np.eye(he * we))
    keep = np.zeros((he, we), dtype=bool)
    keep[pad:pad + h, pad:pad + w] = True
    keep = keep.reshape(-1)
    return inv[np.ix_(keep, keep)]


def test_uniform_preconditioner_is_the_padded_fourier_inverse():
    h, w, beta = 4, 5, 0.05
    k = _kernel(6, (3, 5))
    P = UniformPreconditioner(UniformBlur(k), (h, w), torch.float64, "cpu")
    assert P.pad == 8 and P.shape == (h, w) and P.power.shape == (1, 1, h + 16, (w + 16) // 2 + 1)
    want = _dense_uniform_inverse(k, h, w, 8, beta)
    r = torch.from_numpy(np.random.default_rng(7).standard_normal((2, 3, h, w)))
    got = P(r, beta)
    ref = (r.reshape(6, -1).numpy() @ want.T).reshape(r.shape)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-12)
    # float32 residuals stay float32
    P32 = UniformPreconditioner(Convolution(k, "replicate"), (h, w), torch.float32, "cpu")
    out = P32(r.float(), beta)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError, match=r"^r has spatial shape \(4, 4\), the preconditioner was built for \(4, 5\)$"):
        P(r[..., :4], beta)


def test_uniform_preconditioner_pads_by_the_kernel_radius_and_uses_one_kernel_per_flow():
    k = np.zeros((1, 21))
    k[0, 5:16] = 1 / 11
    assert UniformPreconditioner(UniformBlur(k), (3, 4), torch.float64, "cpu").pad == 10
    assert UniformPreconditioner(UniformBlur(k.T.copy()), (3, 4), torch.float64, "cpu").pad == 10
    # a batch of two uniform flows: sample i is preconditioned with the kernel of flow i
    h, w, beta = 3, 4, 0.2
    flow = np.zeros((2, 2, h, w))
    flow[0, 0] = 2.0
    flow[1, 1] = -3.0
    K = pd.MotionBlur(flow)
    P = UniformPreconditioner(K, (h, w), torch.float64, "cpu")
    assert P.power.shape[0] == 2 and P.pad == 8
    r = torch.from_numpy(np.random.default_rng(8).standard_normal((2, 1, h, w)))
    got = P(r, beta)
    for i, m in enumerate([(2.0, 0.0), (0.0, 3.0)]):
        D = _dense_uniform_inverse(motion_kernel(m), h, w, 8, beta)
        np.testing.assert_allclose(got[i, 0].numpy().reshape(-1), D @ r[i, 0].numpy().reshape(-1), atol=1e-12)


def test_crop_to_keeps_kernels_odd_centred_and_normalised():
    k = np.arange(1.0, 82.0).reshape(9, 9)
    assert _crop_to(k, 20, 20) is k
    c = _crop_to(k, 6, 5)  # 6 -> 5 rows (odd), 5 columns
    np.testing.assert_allclose(c, k[2:7, 2:7] / k[2:7, 2:7].sum())
    c = _crop_to(k, 4, 9)
    np.testing.assert_allclose(c, k[3:6, :] / k[3:6, :].sum())
    c = _crop_to(k, 9, 7)
    np.testing.assert_allclose(c, k[:, 1:8] / k[:, 1:8].sum())


def test_make_preconditioner_resolves_the_argument():
    K = UniformBlur(np.full((3, 3), 1 / 9))
    y = torch.zeros(1, 1, 4, 5, dtype=torch.float32)
    assert make_preconditioner(None, K, y) is None
    P = make_preconditioner("uniform", K, y)
    assert isinstance(P, UniformPreconditioner) and P.shape == (4, 5) and P.power.dtype == torch.float32
    f = lambda r, b: r  # noqa: E731
    assert make_preconditioner(f, K, y) is f
    assert PRECONDITIONERS == ("uniform", "tiles", "jacobi")
    with pytest.raises(ValueError) as err:
        make_preconditioner("nope", K, y)
    assert str(err.value) == (
        "preconditioner must be None, a callable P(r, beta) or one of ('uniform', 'tiles', 'jacobi'), got 'nope'"
    )
    with pytest.raises(TypeError) as err:
        make_preconditioner(3, K, y)
    assert str(err.value) == (
        "preconditioner must be None, a callable P(r, beta) or one of ('uniform', 'tiles', 'jacobi'), got int"
    )
    with pytest.raises(TypeError, match=r"^preconditioner='uniform' needs a MotionBlur, UniformBlur or Convolution operator, got "):
        make_preconditioner("uniform", Identity(), y)


def test_fitted_motion_vector_short_vectors_and_batches():
    # vectors shorter than 1 px divide by their own length too: (0.3, 0.4) and (1, 0) give
    # c = ((0.09 − 0.16)/0.5 + 1)/2 = 0.43, s = (0.24/0.5)/2 = 0.24, L = 0.75
    f = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    f[0, :, 0, 0] = torch.tensor([0.3, 0.4])
    f[0, :, 0, 1] = torch.tensor([1.0, 0.0])
    theta = 0.5 * math.atan2(0.24, 0.43)
    np.testing.assert_allclose(fitted_motion_vector(f)[0], [0.75 * math.cos(theta), 0.75 * math.sin(theta)],
                               atol=1e-12)
    # a batch is fitted sample by sample
    g = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    g[0, 0] = 3.0
    g[0, 1] = 4.0
    both = fitted_motion_vector(torch.cat([f, g]))
    np.testing.assert_allclose(both[0], fitted_motion_vector(f)[0], atol=1e-12)
    np.testing.assert_allclose(both[1], [3.0, 4.0], atol=1e-12)


def test_crop_to_an_even_width():
    k = np.arange(1.0, 82.0).reshape(9, 9)
    c = _crop_to(k, 9, 6)  # 6 columns -> 5 (odd, centred)
    np.testing.assert_allclose(c, k[:, 2:7] / k[:, 2:7].sum())


def test_fft_deconv_default_balance_and_argument_names():
    K = UniformBlur(_kernel(9))
    y = np.random.default_rng(10).random((6, 7))
    np.testing.assert_array_equal(fft_deconv(y, K), fft_deconv(y, K, balance=0.01))
    with pytest.raises(TypeError, match=r"^y must be an array"):
        fft_deconv(y.tolist(), K)
    with pytest.raises(ValueError, match=r"^y must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(42,\)$"):
        fft_deconv(y.reshape(-1), K)
    with pytest.raises(TypeError, match=r"^z must be an array"):
        fft_deconv(y, K, z=y.tolist())
    with pytest.raises(ValueError, match=r"^z must have shape \(N, C, H, W\), \(H, W\) or a 3-D image, got shape \(42,\)$"):
        fft_deconv(y, K, z=y.reshape(-1))
