"""Metrics against scikit-image and closed forms."""
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from pnpdeblur.metrics import flow_epe, flow_mse, kohler_align, kohler_psnr, psnr, ssim


def _pair(rng, shape, noise=0.1):
    ref = rng.random(shape)
    x = np.clip(ref + noise * rng.standard_normal(shape), 0, 1)
    return x, ref


@pytest.mark.parametrize("shape", [(33, 40), (33, 40, 3), (24, 24, 1)])
def test_single_numpy_matches_skimage(rng, shape):
    x, ref = _pair(rng, shape)
    kw = dict(channel_axis=-1) if len(shape) == 3 else {}
    assert abs(psnr(x, ref) - sk_psnr(ref, x, data_range=1)) < 1e-6
    assert abs(ssim(x, ref) - sk_ssim(ref, x, data_range=1, **kw)) < 1e-6
    g = sk_ssim(ref, x, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kw)
    assert abs(ssim(x, ref, gaussian_weights=True) - g) < 1e-6
    assert abs(ssim(x, ref, win_size=5) - sk_ssim(ref, x, data_range=1, win_size=5, **kw)) < 1e-6


def test_batch_torch_per_image_mean(rng):
    x, ref = _pair(rng, (3, 3, 30, 36), noise=0.05)
    x[1] = np.clip(ref[1] + 0.2 * rng.standard_normal(ref[1].shape), 0, 1)
    per_p = [sk_psnr(ref[i], x[i], data_range=1) for i in range(3)]
    per_s = [sk_ssim(ref[i], x[i], data_range=1, channel_axis=0) for i in range(3)]
    xt, rt = torch.tensor(x, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64)
    np.testing.assert_allclose(psnr(xt, rt, reduction="none"), per_p, atol=1e-6)
    np.testing.assert_allclose(ssim(xt, rt, reduction="none"), per_s, atol=1e-6)
    assert abs(psnr(xt, rt) - np.mean(per_p)) < 1e-6
    assert abs(ssim(x, ref) - np.mean(per_s)) < 1e-6
    # torch 3-D is (C, H, W)
    assert abs(ssim(xt[0], rt[0]) - per_s[0]) < 1e-6


def test_psnr_closed_form_and_identity():
    ref = np.zeros((8, 8))
    x = ref + 0.1
    assert abs(psnr(x, ref) - 20.0) < 1e-9
    assert abs(psnr(x * 2, ref * 2, data_range=2.0) - 20.0) < 1e-9
    assert psnr(ref, ref) == np.inf
    assert abs(ssim(ref + 0.3, ref + 0.3) - 1.0) < 1e-12


def test_bad_inputs():
    a = np.zeros((16, 16))
    with pytest.raises(ValueError):
        psnr(a, np.zeros((16, 15)))
    with pytest.raises(ValueError):
        psnr(np.full((16, 16), np.nan), a)
    with pytest.raises(TypeError):
        psnr([[0.0]], a)
    with pytest.raises(ValueError):
        psnr(a, a, data_range=0)
    with pytest.raises(ValueError):
        ssim(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError):
        ssim(a, a, win_size=4)


def test_flow_errors_respect_sign_ambiguity(rng):
    gt = rng.normal(size=(2, 2, 6, 7)) * 5
    assert flow_epe(-gt, gt) == 0.0 and flow_mse(-gt, gt) == 0.0
    assert flow_epe(-gt, gt, symmetric=False) > 1.0
    est = gt + np.array([3.0, 4.0]).reshape(1, 2, 1, 1)
    e_plain = np.sqrt(((est - gt) ** 2).sum(1))
    e_flip = np.sqrt(((est + gt) ** 2).sum(1))
    assert abs(flow_epe(est, gt) - np.minimum(e_plain, e_flip).mean()) < 1e-12
    assert abs(flow_epe(est, gt, symmetric=False) - 5.0) < 1e-12
    assert abs(flow_mse(est, gt, symmetric=False) - 25.0 / 2) < 1e-12
    t = torch.tensor(gt[0])
    assert flow_epe(t, -t) == 0.0
    with pytest.raises(ValueError):
        flow_epe(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)))


def test_kohler_finds_shift_and_scale(rng):
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(rng.random((60, 70)), 1.5)
    # distinct frames: the scene plus a frame-specific texture
    frames = [base + 0.3 * gaussian_filter(rng.random((60, 70)), 2.0) for _ in range(4)]
    # restored image: frame 2 shifted by (dy, dx) = (2, -3) and darkened by 0.8
    x = 0.8 * np.roll(frames[2], (2, -3), axis=(0, 1))
    val, (idx, shift, alpha) = kohler_psnr(x, frames, max_shift=4, return_details=True)
    assert idx == 2 and shift == (2, -3)
    assert abs(alpha - 1 / 0.8) < 1e-9
    assert val > 100
    # unaligned plain PSNR is far lower
    assert psnr(x, frames[2]) < 30
    v2, s2, a2 = kohler_align(x[:, :, None].repeat(3, 2), frames[2][:, :, None].repeat(3, 2), max_shift=4)
    assert s2 == (2, -3) and abs(a2 - 1.25) < 1e-9
    with pytest.raises(ValueError):
        kohler_psnr(x, [], max_shift=2)
    with pytest.raises(ValueError):
        kohler_align(x, frames[0], max_shift=40)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(7, 30), w=st.integers(7, 30), c=st.sampled_from([1, 3]),
       noise=st.floats(0.001, 0.5))
def test_property_matches_skimage(seed, h, w, c, noise):
    r = np.random.default_rng(seed)
    x, ref = _pair(r, (h, w, c), noise)
    assert abs(psnr(x, ref) - sk_psnr(ref, x, data_range=1)) < 1e-6
    assert abs(ssim(x, ref) - sk_ssim(ref, x, data_range=1, channel_axis=-1)) < 1e-6
    if min(h, w) >= 11:
        g = sk_ssim(ref, x, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                    use_sample_covariance=False)
        assert abs(ssim(x, ref, gaussian_weights=True) - g) < 1e-6


def test_kohler_align_matches_brute_force(rng):
    x = rng.random((30, 26, 3))
    ref = 0.7 * np.roll(x, (1, 2), axis=(0, 1)) + 0.1 * rng.random((30, 26, 3))
    s = 3
    g = ref[s:-s, s:-s]
    best = None
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            xs = x[s + dy:30 - s + dy, s + dx:26 - s + dx]
            a = np.sum(xs * g) / np.sum(xs * xs)
            e = np.mean((a * xs - g) ** 2)
            if best is None or e < best[0]:
                best = (e, (dy, dx), a)
    val, shift, alpha = kohler_align(x, ref, max_shift=s)
    assert shift == best[1] == (-1, -2)
    assert abs(alpha - best[2]) < 1e-9
    assert abs(val - 10 * np.log10(1 / best[0])) < 1e-9


class _FakeCupyArray:
    """Stands in for cupy.ndarray: implicit conversion raises, .get() copies to the host."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

    def get(self):
        return self._a.copy()


def test_metrics_accept_cupy_arrays_through_get():
    rng = np.random.default_rng(0)
    a, b = rng.random((16, 16)), rng.random((16, 16))
    assert psnr(_FakeCupyArray(a), _FakeCupyArray(b)) == pytest.approx(psnr(a, b))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_integer_images_use_the_dtype_range_like_skimage(rng, dtype):
    # uint8 with the old default data_range=1 gave -9.5 dB where scikit-image gives 38.6 dB
    info = np.iinfo(dtype)
    lo = 0 if info.min == 0 else -1000  # int16 with negative values: PSNR uses max - min
    ref = rng.integers(lo, lo + 256, (32, 36)).astype(dtype)
    x = np.clip(ref.astype(np.int64) + rng.integers(-3, 4, ref.shape), info.min, info.max).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage asks for an explicit range beyond uint8
        want_p, want_s = sk_psnr(ref, x), sk_ssim(ref, x)
    assert psnr(x, ref) == pytest.approx(want_p, abs=1e-9)
    assert ssim(x, ref) == pytest.approx(want_s, abs=1e-9)
    if dtype != np.uint16:  # torch has no general uint16 arithmetic
        xt, rt = torch.from_numpy(x), torch.from_numpy(ref)
        assert psnr(xt, rt) == pytest.approx(want_p, abs=1e-9)


def test_uint8_photos_score_like_their_float_version(rng):
    ref = rng.integers(0, 256, (24, 28, 3)).astype(np.uint8)
    x = np.clip(ref.astype(int) + rng.integers(-5, 6, ref.shape), 0, 255).astype(np.uint8)
    assert psnr(x, ref) == pytest.approx(psnr(x / 255.0, ref / 255.0), abs=1e-9)
    assert ssim(x, ref) == pytest.approx(ssim(x / 255.0, ref / 255.0), abs=1e-9)
    assert psnr(x, ref, data_range=1) < 0  # an explicit range is used as given


def test_mixed_integer_and_float_inputs_need_a_data_range(rng):
    ref = rng.integers(0, 256, (16, 16)).astype(np.uint8)
    with pytest.raises(ValueError, match="data_range"):
        psnr(ref / 255.0, ref)
    with pytest.raises(ValueError, match="data_range"):
        ssim(ref, ref / 255.0)
    assert psnr(ref / 255.0, ref, data_range=255) < 10  # allowed when explicit (and wrong)


@pytest.mark.parametrize("shape", [(0, 5), (1, 3, 0, 8), (0,)])
def test_empty_inputs_raise(shape):
    # an empty image gave NaN (mean of nothing)
    a = np.zeros(shape)
    with pytest.raises(ValueError, match="empty"):
        psnr(a, a)
    with pytest.raises(ValueError, match="empty"):
        ssim(a, a)
