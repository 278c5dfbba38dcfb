"""Metrics: every option against scikit-image or a value computed by hand, every message.

Small images (≤ 16×16) so that the file runs in about a second; complements
tests/test_metrics.py (which checks the defaults on random images and hypothesis cases).
"""
import math
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from pnpdeblur.metrics import _check_range, _int_limits, flow_epe, flow_mse, kohler_align, kohler_psnr, psnr, ssim

from _fakes import FakeCupyArray


def _pair(seed, shape, noise=0.1):
    rng = np.random.default_rng(seed)
    ref = rng.random(shape)
    return np.clip(ref + noise * rng.standard_normal(shape), 0, 1), ref


# -- PSNR ---------------------------------------------------------------------------------------
def test_psnr_closed_forms_reductions_and_layouts():
    ref = np.zeros((2, 1, 4, 4))
    x = ref.copy()
    x[0] += 0.1  # 20 dB
    x[1] += 0.01  # 40 dB
    np.testing.assert_allclose(psnr(x, ref, reduction="none"), [20.0, 40.0], atol=1e-9)
    assert isinstance(psnr(x, ref, reduction="none"), np.ndarray)
    assert psnr(x, ref) == pytest.approx(30.0, abs=1e-9) and isinstance(psnr(x, ref), float)
    assert psnr(x * 4, ref, data_range=4.0, reduction="none")[0] == pytest.approx(20.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"^reduction must be 'mean' or 'none', got 'sum'$"):
        psnr(x, ref, reduction="sum")
    # torch 3-D is (C, H, W), numpy 3-D is (H, W, C); channel_axis overrides
    a, b = _pair(0, (3, 5, 6))
    want = sk_psnr(b, a, data_range=1)
    assert psnr(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(want, abs=1e-12)
    assert psnr(a, b, channel_axis=0) == pytest.approx(want, abs=1e-12)
    assert psnr(np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1)) == pytest.approx(want, abs=1e-12)
    keep = a.copy()
    psnr(a, b)
    np.testing.assert_array_equal(a, keep)


def test_psnr_shape_error_names_both_layouts():
    with pytest.raises(ValueError) as err:
        psnr(np.zeros((4, 5)), np.zeros((4, 6)))
    assert str(err.value) == (
        "x and ref must have the same shape, got (4, 5) and (4, 6) (as (N, C, H, W): (1, 1, 4, 5) and "
        "(1, 1, 4, 6); 3-D numpy/cupy images are (H, W, C), torch ones (C, H, W))"
    )


def test_default_data_range_from_dtypes():
    u8 = np.zeros((2, 2), dtype=np.uint8)
    assert _int_limits(u8) == (0, 255)
    assert _int_limits(np.zeros(2, dtype=np.int16)) == (-32768, 32767)
    assert _int_limits(np.zeros(2, dtype=bool)) == (0, 1)
    assert _int_limits(np.zeros(2)) is None and _int_limits([1, 2]) is None
    assert _int_limits(torch.zeros(2, dtype=torch.bool)) == (0, 1)
    assert _int_limits(torch.zeros(2, dtype=torch.int16)) == (-32768, 32767)
    assert _int_limits(torch.zeros(2)) is None and _int_limits(torch.zeros(2, dtype=torch.complex64)) is None
    assert _check_range(None, np.zeros(2), np.zeros(2)) == 1.0
    i16 = np.array([0, 5], dtype=np.int16)
    assert _check_range(None, i16, i16, signed_full_range=False) == 32767.0  # ref ≥ 0: dtype max
    neg = np.array([-1, 5], dtype=np.int16)
    assert _check_range(None, neg, neg, signed_full_range=False) == 65535.0  # negatives: max − min
    assert _check_range(None, i16, i16) == 65535.0  # SSIM: always max − min
    assert _check_range(None, u8, u8, signed_full_range=False) == 255.0
    assert _check_range(2, u8, u8) == 2.0 and isinstance(_check_range(2, u8, u8), float)
    msg = ("x and ref have different dtypes, one of them integer: pass data_range "
           "(e.g. 255 for 8-bit images, 1 for floats in [0, 1])")
    for x, ref in ((u8, np.zeros(2)), (np.zeros(2), u8), (u8, np.zeros(2, dtype=np.uint16))):
        with pytest.raises(ValueError) as err:
            _check_range(None, x, ref)
        assert str(err.value) == msg
    for bad in (0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match=r"^data_range must be a positive finite number, got "):
            _check_range(bad, u8, u8)
    assert _check_range(1e-9, u8, u8) == 1e-9
    # bool images: range 1, like float images of 0/1
    m = np.zeros((8, 8), dtype=bool)
    m[:4] = True
    assert psnr(m, ~m) == pytest.approx(0.0, abs=1e-12)


# -- SSIM ---------------------------------------------------------------------------------------
def test_ssim_options_match_skimage():
    x, ref = _pair(1, (13, 15))
    for kw in (dict(win_size=3), dict(win_size=9), dict(K1=0.05, K2=0.1), dict(use_sample_covariance=False)):
        want = sk_ssim(ref, x, data_range=1, **kw)
        assert ssim(x, ref, **kw) == pytest.approx(want, abs=1e-10), kw
    g = sk_ssim(ref, x, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(x, ref, gaussian_weights=True) == pytest.approx(g, abs=1e-10)
    g2 = sk_ssim(ref, x, data_range=1, gaussian_weights=True, sigma=1.0, use_sample_covariance=True)
    assert ssim(x, ref, gaussian_weights=True, sigma=1.0, use_sample_covariance=True) == pytest.approx(g2, abs=1e-10)
    assert ssim(x, ref, data_range=2.0) == pytest.approx(sk_ssim(ref, x, data_range=2.0), abs=1e-10)
    # per image, mean over channels, then over the batch
    xb, rb = _pair(2, (2, 2, 9, 10))
    per = [np.mean([sk_ssim(rb[i, c], xb[i, c], data_range=1) for c in range(2)]) for i in range(2)]
    np.testing.assert_allclose(ssim(xb, rb, reduction="none"), per, atol=1e-10)
    assert ssim(xb, rb) == pytest.approx(np.mean(per), abs=1e-10)


def test_ssim_window_checks():
    x = np.zeros((10, 10))
    for bad in (4, 1, 2, 7.0, "7"):
        with pytest.raises(ValueError, match=r"^win_size must be an odd int >= 3, got "):
            ssim(x, x, win_size=bad)
    assert ssim(x + 0.5, x + 0.5, win_size=3) == pytest.approx(1.0)
    for bad in (0, -1.0, "1.5"):
        with pytest.raises(ValueError, match=r"^sigma must be positive, got "):
            ssim(x, x, gaussian_weights=True, sigma=bad)
    with pytest.raises(ValueError) as err:
        ssim(np.zeros((6, 9)), np.zeros((6, 9)))
    assert str(err.value) == "images of size (6, 9) are smaller than the 7x7 SSIM window"
    ssim(np.zeros((7, 7)), np.zeros((7, 7)))  # exactly the window: allowed
    # the Gaussian window of σ = 1.5 truncated at 3.5σ is 11×11; σ = 1 gives 2·4 + 1 = 9
    with pytest.raises(ValueError, match=r"smaller than the 11x11 SSIM window$"):
        ssim(np.zeros((10, 12)), np.zeros((10, 12)), gaussian_weights=True)
    with pytest.raises(ValueError, match=r"smaller than the 9x9 SSIM window$"):
        ssim(np.zeros((8, 12)), np.zeros((8, 12)), gaussian_weights=True, sigma=1.0)
    ssim(np.zeros((9, 9)), np.zeros((9, 9)), gaussian_weights=True, sigma=1.0)


def test_ssim_of_constant_images_by_hand():
    # constant images a, b: variances 0, so SSIM = (2ab + c1) / (a² + b² + c1) everywhere
    a, b = 0.2, 0.6
    c1 = (0.01 * 1.0) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((8, 8), a), np.full((8, 8), b)) == pytest.approx(want, rel=1e-12)
    c1 = (0.02 * 3.0) ** 2
    want = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((8, 8), a), np.full((8, 8), b), data_range=3.0, K1=0.02) == pytest.approx(want, rel=1e-12)


# -- flows --------------------------------------------------------------------------------------
def test_flow_errors_by_hand():
    gt = np.zeros((2, 2, 2, 2))
    gt[:, 0] = 1.0  # (1, 0) everywhere
    est = gt.copy()
    est[0, :, 0, 0] = (-1.0, 0.0)  # the negation: error 0 when symmetric, 2 otherwise
    est[1, :, 1, 1] = (4.0, 4.0)  # ‖(3, 4)‖ = 5, ‖(5, 4)‖ = √41
    np.testing.assert_allclose(flow_epe(est, gt, reduction="none"), [0.0, 5 / 4], atol=1e-12)
    np.testing.assert_allclose(flow_epe(est, gt, symmetric=False, reduction="none"), [2 / 4, 5 / 4], atol=1e-12)
    np.testing.assert_allclose(flow_mse(est, gt, reduction="none"), [0.0, 25 / 4 / 2], atol=1e-12)
    np.testing.assert_allclose(flow_mse(est, gt, symmetric=False, reduction="none"), [4 / 8, 25 / 8], atol=1e-12)
    assert flow_epe(est, gt) == pytest.approx(5 / 8) and flow_mse(est, gt) == pytest.approx(25 / 16)
    assert flow_epe(torch.from_numpy(est[1]), torch.from_numpy(gt[1])) == pytest.approx(5 / 4)
    with pytest.raises(ValueError, match=r"^est and gt must have the same shape, got \(2, 3, 3\) and \(2, 3, 4\)$"):
        flow_epe(np.zeros((2, 3, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"^flows must be \(2, H, W\) or \(N, 2, H, W\), got \(1, 3, 4, 4\)$"):
        flow_mse(np.zeros((3, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match=r"^flows must be \(2, H, W\) or \(N, 2, H, W\), got \(4, 4\)$"):
        flow_epe(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"^reduction must be 'mean' or 'none'"):
        flow_epe(gt, gt, reduction="max")


# -- Köhler protocol ------------------------------------------------------------------------------
def test_kohler_align_by_hand_and_messages():
    rng = np.random.default_rng(3)
    x = rng.random((9, 10))
    ref = 0.5 * np.roll(x, (-1, 2), axis=(0, 1))  # ref[p] = 0.5 x[p + (1, -2)]
    val, shift, alpha = kohler_align(x, ref, max_shift=2)
    assert shift == (1, -2) and alpha == pytest.approx(0.5, abs=1e-12) and val == math.inf
    noisy = ref + 0.01 * rng.standard_normal(ref.shape)
    val, shift, alpha = kohler_align(x, noisy, max_shift=2)
    g = noisy[2:-2, 2:-2]
    xs = x[3:8, 0:6]
    a = np.sum(xs * g) / np.sum(xs * xs)
    assert shift == (1, -2) and alpha == pytest.approx(a, abs=1e-12)
    assert val == pytest.approx(10 * np.log10(1 / np.mean((a * xs - g) ** 2)), abs=1e-9)
    # max_shift = 0: plain least-squares-scaled PSNR
    val0, shift0, alpha0 = kohler_align(x, 2 * x, max_shift=0)
    assert shift0 == (0, 0) and alpha0 == pytest.approx(2.0) and val0 == math.inf
    # a black image: no scale can help, alpha = 1
    val, shift, alpha = kohler_align(np.zeros((6, 6)), np.full((6, 6), 0.1), max_shift=1)
    assert alpha == 1.0 and shift == (-1, -1) and val == pytest.approx(20.0)
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match=r"^max_shift must be a non-negative int, got "):
            kohler_align(x, ref, max_shift=bad)
    with pytest.raises(ValueError, match=r"^max_shift=5 is too large for images of size \(9, 10\)$"):
        kohler_align(x, ref, max_shift=5)
    with pytest.raises(ValueError, match=r"^max_shift=4 is too large for images of size \(8, 10\)$"):
        kohler_align(x[:8], ref[:8], max_shift=4)  # h = 2s: no interior left
    with pytest.raises(ValueError, match=r"^max_shift=4 is too large for images of size \(9, 8\)$"):
        kohler_align(x[:, :8], ref[:, :8], max_shift=4)
    kohler_align(x, ref, max_shift=4)  # h = 2s + 1: one interior row
    with pytest.raises(ValueError, match=r"^x and the sharp frames must have the same shape, got \(9, 10, 1\) and \(9, 9, 1\)$"):
        kohler_align(x, ref[:, :9])
    with pytest.raises(ValueError, match=r"^x must be one image \(H, W\), \(H, W, C\), \(C, H, W\) or \(1, C, H, W\), got shape \(2, 1, 9, 10\)$"):
        kohler_align(np.stack([x, x])[:, None], ref)
    # channel_axis is passed through: (C, H, W) numpy with channel_axis=0
    xc = np.stack([x, x])
    v1 = kohler_align(xc, np.stack([noisy, noisy]), max_shift=2, channel_axis=0)
    v2 = kohler_align(x, noisy, max_shift=2)
    assert v1[1] == v2[1] and v1[2] == pytest.approx(v2[2]) and v1[0] == pytest.approx(v2[0])


def test_kohler_psnr_picks_the_best_frame():
    rng = np.random.default_rng(4)
    x = rng.random((10, 10))
    frames = [rng.random((10, 10)), 0.9 * x + 0.02 * rng.random((10, 10)), 0.9 * x + 0.05 * rng.random((10, 10))]
    vals = [kohler_align(x, f, max_shift=1)[0] for f in frames]
    best, (idx, shift, alpha) = kohler_psnr(x, frames, max_shift=1, return_details=True)
    assert idx == int(np.argmax(vals)) == 1 and best == vals[1]
    assert (shift, alpha) == kohler_align(x, frames[1], max_shift=1)[1:]
    assert kohler_psnr(x, frames, max_shift=1) == best
    assert kohler_psnr(x, np.stack(frames), max_shift=1) == best  # an array with a frame axis
    assert kohler_psnr(x, frames[:1], max_shift=1) == vals[0]  # one frame, however bad
    # ties keep the first frame
    _, (idx, _, _) = kohler_psnr(x, [frames[1], frames[1]], max_shift=1, return_details=True)
    assert idx == 0
    xc = np.stack([x, x])
    assert kohler_psnr(xc, [np.stack([f, f]) for f in frames], max_shift=1, channel_axis=0) == pytest.approx(best)
    with pytest.raises(ValueError, match=r"^sharp_frames must contain at least one image$"):
        kohler_psnr(x, [])


def test_kohler_psnr_reads_one_image_as_one_frame():
    # Iterating an (H, W[, C]) array would compare x with its rows.
    rng = np.random.default_rng(5)
    for shape in [(12, 11), (12, 11, 3)]:
        x = rng.random(shape)
        ref = np.clip(x + 0.03 * rng.standard_normal(shape), 0, 1)
        want = kohler_align(x, ref, max_shift=2)[0]
        assert kohler_psnr(x, ref, max_shift=2) == want
        assert kohler_psnr(x, ref[None], max_shift=2) == want  # a stack of one frame
    xt = torch.from_numpy(np.moveaxis(x, -1, 0).copy())
    rt = torch.from_numpy(np.moveaxis(ref, -1, 0).copy())
    assert kohler_psnr(xt, rt, max_shift=2) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match=r"same shape, got \(12, 11, 3\) and \(13, 11, 3\)$"):
        kohler_psnr(x, rng.random((13, 11, 3)), max_shift=2)


def test_flow_arguments_are_named_and_the_symmetric_mse_squares():
    gt = np.zeros((2, 3, 3))
    with pytest.raises(TypeError, match=r"^est must be "):
        flow_epe(gt.tolist(), gt)
    with pytest.raises(TypeError, match=r"^gt must be "):
        flow_mse(gt, gt.tolist())
    # −m is closer: ‖e + g‖² = 0.25 (not its cube 0.125), averaged over the 2 components
    e, g = np.zeros((2, 1, 1)), np.zeros((2, 1, 1))
    e[0], g[0] = -0.5, 1.0
    assert flow_mse(e, g) == pytest.approx(0.25 / 2, abs=1e-15)
    assert flow_epe(e, g) == pytest.approx(0.5, abs=1e-15)


def test_kohler_psnr_default_search_is_five_pixels():
    rng = np.random.default_rng(6)
    x = rng.random((11, 12))
    ref = np.roll(x, (5, -5), axis=(0, 1))  # ref[p] = x[p − (5, −5)]: found with max_shift 5
    val, (idx, shift, alpha) = kohler_psnr(x, [ref], return_details=True)
    assert shift == (-5, 5) and idx == 0 and alpha == pytest.approx(1.0) and val == math.inf


# -- what the mutation run of metrics.py showed (2026-11-26, sixth session) ----------------------
class _ArrayLike:
    """An object with ``__array__`` and no ``.shape`` (like a PIL image)."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def test_shape_error_reports_the_shape_of_array_likes():
    with pytest.raises(ValueError, match=r"^x and ref must have the same shape, got \(4, 5\) and \(4, 6\) "):
        psnr(_ArrayLike(np.zeros((4, 5))), _ArrayLike(np.zeros((4, 6))))
    with pytest.raises(ValueError, match=r"^x must be one image .*, got shape \(2, 1, 9, 10\)$"):
        kohler_align(_ArrayLike(np.zeros((2, 1, 9, 10))), np.zeros((9, 10)))
    # and they are read like the array they stand for
    a, b = _pair(9, (8, 9, 3))
    assert psnr(_ArrayLike(a), _ArrayLike(b)) == pytest.approx(sk_psnr(b, a, data_range=1), abs=1e-12)


@pytest.mark.parametrize("fn", [psnr, ssim, lambda x, ref: kohler_align(x, ref, max_shift=1)])
def test_bad_values_name_the_argument(fn):
    good = np.full((8, 8), 0.5)
    bad = good.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"^x contains NaN or Inf$"):
        fn(bad, good)
    with pytest.raises(ValueError, match=r"^ref contains NaN or Inf$"):
        fn(good, bad)
    with pytest.raises(ValueError, match=r"^x is empty \(shape \(0, 8\)\)$"):
        fn(good[:0], good)
    with pytest.raises(ValueError, match=r"^ref is empty \(shape \(0, 8\)\)$"):
        fn(good, good[:0])


def test_channel_axis_is_checked_and_used_by_psnr_and_ssim():
    a, b = _pair(10, (3, 9, 10))  # numpy (C, H, W): needs channel_axis=0
    with pytest.raises(ValueError, match=r"^channel_axis=3 is out of range for x with shape \(3, 9, 10\)$"):
        psnr(a, b, channel_axis=3)
    with pytest.raises(ValueError, match=r"^channel_axis must be None for a 2-D \(grey\) x, got 0$"):
        psnr(a[0], b[0], channel_axis=0)
    with pytest.raises(TypeError, match=r"^channel_axis must be an int or None, got float$"):
        ssim(a, b, channel_axis=0.0)
    want = sk_ssim(b, a, data_range=1, channel_axis=0)
    assert ssim(a, b, channel_axis=0) == pytest.approx(want, abs=1e-12)
    assert ssim(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(want, abs=1e-12)
    # numpy (H, W, C) read with an explicit channel axis -1: the same planes
    assert ssim(np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1), channel_axis=-1) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_psnr_signed_integer_range_follows_skimage(dtype):
    # scikit-image's PSNR: dtype max when the reference has no negative values, else max − min
    rng = np.random.default_rng(11)
    info = np.iinfo(dtype)
    ref = rng.integers(0, 100, (9, 10)).astype(dtype)
    x = (ref + rng.integers(-5, 6, ref.shape)).clip(0, 100).astype(dtype)
    want = 10 * np.log10(float(info.max) ** 2 / np.mean((x.astype(float) - ref) ** 2))
    assert psnr(x, ref) == pytest.approx(want, abs=1e-10)
    assert psnr(x, ref) == pytest.approx(sk_psnr(ref, x), abs=1e-10)
    neg = ref.copy()
    neg[0, 0] = -3  # one negative value: the full span of the dtype
    want = 10 * np.log10((float(info.max) - info.min) ** 2 / np.mean((x.astype(float) - neg) ** 2))
    assert psnr(x, neg) == pytest.approx(want, abs=1e-10)
    assert psnr(x, neg) == pytest.approx(sk_psnr(neg, x), abs=1e-10)


def _kohler_brute(x, ref, s):
    """Every shift in a Python loop: least-squares scale, mean squared residual (first minimum)."""
    h, w = ref.shape
    g = ref[s:h - s, s:w - s]
    best = None
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            xs = x[s + dy:h - s + dy, s + dx:w - s + dx]
            den = np.sum(xs * xs)
            a = np.sum(xs * g) / den if den > 0 else 1.0
            err = np.mean((a * xs - g) ** 2)
            if best is None or err < best[0] - 1e-15:
                best = (err, (dy, dx), a)
    return best


def test_kohler_align_scales_dark_images():
    # x is a dark (×0.02) shifted copy of a bright ramp-with-texture: without the least-squares
    # scale, the brighter side of the ramp would win ((2, 2) instead of (−1, 2)), and every
    # shifted window has <x_d, x_d> < 1, so a scale guard of "> 1" would drop the scale too
    rng = np.random.default_rng(7)
    h, w, s = 12, 13, 2
    base = 0.6 * np.arange(w)[None, :] / w + 0.3 * rng.random((h, w))
    x = 0.02 * base
    ref = np.roll(base, (1, -2), axis=(0, 1))  # ref[p] = base[p − (1, −2)]
    err, shift, alpha = _kohler_brute(x, ref, s)
    assert shift == (-1, 2) and alpha == pytest.approx(50.0, rel=1e-12)
    val, got_shift, got_alpha = kohler_align(x, ref, max_shift=s)
    assert got_shift == shift and got_alpha == pytest.approx(50.0, rel=1e-12) and val > 250
    # noisy: the scale and the PSNR of the brute-force search
    noisy = ref + 0.01 * rng.standard_normal(ref.shape)
    err, shift, alpha = _kohler_brute(x, noisy, s)
    val, got_shift, got_alpha = kohler_align(x, noisy, max_shift=s)
    assert got_shift == shift == (-1, 2) and got_alpha == pytest.approx(alpha, rel=1e-12)
    assert val == pytest.approx(10 * np.log10(1 / err), abs=1e-9)


def test_kohler_align_black_regions_give_no_warning_and_no_nan():
    # x is black except its last two rows and columns: for the shifts whose window is all black,
    # <x_d, x_d> is exactly 0 while the FFT correlation is ±1e-16, and the reference has black
    # pixels; this must neither warn (RuntimeWarnings are errors for pnpdeblur, setup.cfg) nor
    # turn the errors into NaN (np.argmin would pick the first NaN shift)
    rng = np.random.default_rng(0)
    x = np.zeros((12, 12))
    x[10:] = rng.random((2, 12))
    x[:, 10:] = rng.random((12, 2))
    ref = np.roll(x, (-1, -1), axis=(0, 1))  # ref[p] = x[p + (1, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        val, shift, alpha = kohler_align(x, ref, max_shift=2)
    assert shift == (1, 1) == _kohler_brute(x, ref, 2)[1] and alpha == pytest.approx(1.0) and val == math.inf


def test_kohler_align_default_search_is_five_pixels():
    # 11×11 leaves a 1×1 interior with 5 px; 6 px would be too large for this size
    rng = np.random.default_rng(12)
    x = rng.random((11, 11))
    ref = 0.7 * np.roll(x, (-3, 4), axis=(0, 1))
    assert kohler_align(x, ref) == kohler_align(x, ref, max_shift=5)
    with pytest.raises(ValueError, match=r"^max_shift=6 is too large for images of size \(11, 11\)$"):
        kohler_align(x, ref, max_shift=6)


def test_shape_error_of_device_arrays_uses_their_shape():
    # cupy arrays refuse np.asarray: the message must read their .shape, not convert them
    with pytest.raises(ValueError, match=r"^x and ref must have the same shape, got \(4, 5\) and \(4, 6\) "):
        psnr(FakeCupyArray(np.zeros((4, 5))), FakeCupyArray(np.zeros((4, 6))))
    with pytest.raises(ValueError, match=r"^x must be one image .*, got shape \(2, 1, 9, 10\)$"):
        kohler_align(FakeCupyArray(np.zeros((2, 1, 9, 10))), np.zeros((9, 10)))


def test_kohler_align_refuses_an_overflow_instead_of_returning_nan():
    x = np.full((12, 12), 1e200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warnings on the way
        with pytest.raises(ValueError, match=r"^kohler_align overflowed \(squared error"):
            kohler_align(x, 3 * x, max_shift=1)
    val, shift, alpha = kohler_align(x * 1e-200, 3e-200 * x, max_shift=1)  # the same images, scaled
    assert shift == (-1, -1) and alpha == pytest.approx(3.0) and val == float("inf")


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_float_images_on_another_scale_need_their_data_range(metric):
    rng = np.random.default_rng(4)
    ref = rng.random((16, 16))
    x = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
    with pytest.raises(ValueError, match=r"^x has values in \[.*\]; float images must lie in \[0, 1\] "
                                         r"\(pass data_range for another scale, e.g\. 255\)$"):
        metric(255 * x, ref)  # psnr gave about -40 dB against a peak of 1; scikit-image raises
    with pytest.raises(ValueError, match=r"^ref has values in \[-0\.5\d+, "):
        metric(x, ref - 0.6)
    assert metric(255 * x, 255 * ref, data_range=255) == pytest.approx(metric(x, ref), rel=1e-9)
    assert np.isfinite(metric(1.4 * x, ref))  # overshoot of a solver's output stays scored
    u8 = (255 * ref).astype(np.uint8)
    assert np.isfinite(metric(u8, u8.copy()) if metric is ssim else metric(u8, np.clip(u8.astype(int) + 1, 0, 255)
                                                                              .astype(np.uint8)))
