"""Camera shake: synthetic shake kernels, the classical kernel estimate, and pd.deblur_shake."""
import inspect

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

import pnpdeblur as pd
from pnpdeblur.data import random_shake_kernel, sample_image
from pnpdeblur.estimation import estimate_kernel
from pnpdeblur.estimation import kernel as km
from pnpdeblur.metrics import psnr

# An asymmetric "L" path: its 180° turn is another L, so a flipped convention cannot pass.
L_KERNEL = np.zeros((9, 9))
L_KERNEL[1:7, 2] = 1.0
L_KERNEL[6, 2:8] = 1.0
L_KERNEL /= L_KERNEL.sum()


def _centred(k):
    return km._clean(k)  # centroid on the central pixel, as every estimate is


def _error_up_to_shift(a, b, max_shift=3):
    """L1 distance of two kernels of one size, minimised over integer shifts."""
    pa = np.pad(a, max_shift)
    best = np.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = np.roll(pa, (dy, dx), axis=(0, 1))[max_shift:max_shift + a.shape[0],
                                                          max_shift:max_shift + a.shape[1]]
            best = min(best, float(np.abs(shifted - b).sum()))
    return best


def _scene_crop(kernel, size=160, seed=0, sigma=0.0):
    """A crop of a blurred scene: the whole photo blurred, then its centre cut out."""
    photo = sample_image("camera", size=None).astype(np.float64)
    if photo.ndim == 3:
        photo = photo[..., 0]
    blurred = convolve(photo, kernel, mode="nearest")
    h, w = photo.shape
    sl = np.s_[(h - size) // 2:(h - size) // 2 + size, (w - size) // 2:(w - size) // 2 + size]
    noise = np.random.default_rng(seed).normal(0.0, sigma, (size, size)) if sigma else 0.0
    return blurred[sl] + noise, photo[sl]


# ---------------------------------------------------------------- random_shake_kernel

@pytest.mark.parametrize("size", [3, 9, 23])
@pytest.mark.parametrize("seed", range(6))
def test_shake_kernel_is_a_centred_psf(size, seed):
    k = random_shake_kernel(size, seed=seed)
    assert k.shape == (size, size) and k.dtype == np.float64
    assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-12)
    iy, ix = np.indices(k.shape)
    c = (size - 1) / 2
    assert (k * iy).sum() == pytest.approx(c, abs=1e-9)
    assert (k * ix).sum() == pytest.approx(c, abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_shake_kernel_extent_sets_the_paths_box(seed):
    k = random_shake_kernel(31, extent=12.0, seed=seed)
    rows, cols = np.nonzero(k)
    side = max(rows.max() - rows.min(), cols.max() - cols.min())
    # bilinear splatting widens the path's box by at most one pixel on each side; a lopsided
    # path may be drawn smaller to fit, never larger
    assert side <= 12 + 2
    # a curved path, not a point: most kernels fill their box (a very lopsided one may be shrunk)
    assert (k > 0).sum() > 12


def test_shake_kernel_zero_extent_is_the_identity_and_seeds_repeat():
    k = random_shake_kernel(7, extent=0, seed=3)
    expected = np.zeros((7, 7))
    expected[3, 3] = 1.0
    np.testing.assert_array_equal(k, expected)
    np.testing.assert_array_equal(random_shake_kernel(15, seed=4), random_shake_kernel(15, seed=4))
    assert not np.array_equal(random_shake_kernel(15, seed=4), random_shake_kernel(15, seed=5))
    rng = np.random.default_rng(9)
    assert random_shake_kernel(15, seed=rng).shape == (15, 15)


def test_shake_kernel_default_extents_and_shapes():
    """Default extents are drawn from [(size − 3)/2, size − 3]; paths are curves in 2-D, not
    lines along a diagonal (a path with x = y would give k = kᵀ)."""
    sides = []
    for seed in range(40):
        k = random_shake_kernel(31, seed=seed)
        rows, cols = np.nonzero(k)
        sides.append(max(np.ptp(rows), np.ptp(cols)))
        assert not np.allclose(k, k.T)
    assert min(sides) >= 14 and max(sides) <= 28 + 2
    assert np.std(sides) > 2  # drawn, not one fixed size


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=8), "odd int"), (dict(size=1), "odd int"), (dict(size=True), "odd int"), (dict(size=9.0), "odd int"),
    (dict(size=9, extent="3"), r"\[0, size - 3\] = \[0, 6\]"), (dict(size=9, extent=True), r"\[0, size - 3\]"),
    (dict(size=9, extent=7), r"\[0, size - 3\]"), (dict(size=9, extent=-1), r"\[0, size - 3\]"),
    (dict(size=9, extent=float("nan")), r"\[0, size - 3\]"),
])
def test_shake_kernel_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_shake_kernel(**kwargs)


# ---------------------------------------------------------------- the estimator's pieces

def test_smooth_periodic_extension_holds_the_image_and_wraps_without_a_jump():
    g = np.random.default_rng(0).random((37, 50))
    out, inside = km._smooth_periodic(g, 5)
    np.testing.assert_array_equal(out[inside], g)
    assert out.shape[0] >= 37 + 10 and out.shape[1] >= 50 + 10
    from scipy import fft
    assert all(fft.next_fast_len(n, real=True) == n for n in out.shape)
    # across the wrap, neighbours differ by no more than the blend's steps
    step = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert np.abs(out[0] - out[-1]).max() <= step + 1e-12
    assert np.abs(out[:, 0] - out[:, -1]).max() <= step + 1e-12
    outside = np.ones(out.shape, bool)
    outside[inside] = False
    rows = out[outside.any(axis=1)]
    # the blend is smooth: inside the extension, consecutive rows differ by at most
    # |last - first| * pi / (2 (extra + 1)) per column
    assert np.abs(np.diff(out[:inside[0].start], axis=0)).max() <= np.pi / 2 / 5 + 1e-12
    assert rows.size


@pytest.mark.parametrize("axis", [0, 1])
def test_smooth_periodic_extension_is_the_raised_cosine_blend(axis):
    """Closed form along one axis (the image constant along the other): the ``extra`` new samples
    go from the last line to the first as ``last + (first − last)(1 − cos(π j/(extra+1)))/2``,
    j = 1..extra, split so that at least ``margin`` lie on each side, on a fast FFT size."""
    from scipy import fft

    n, margin = 37, 6
    profile = np.linspace(0.2, 0.9, n) ** 2
    g = np.tile(profile[:, None], (1, 20)) if axis == 0 else np.tile(profile[None, :], (20, 1))
    out, inside = km._smooth_periodic(g, margin)
    size = fft.next_fast_len(n + 2 * margin, real=True)
    assert out.shape[axis] == size and out.shape[1 - axis] == fft.next_fast_len(20 + 2 * margin, real=True)
    extra = size - n
    before = inside[axis].start
    assert before >= margin and size - inside[axis].stop >= margin and before == extra // 2
    line = out[:, 0] if axis == 0 else out[0, :]
    j = np.arange(1, extra + 1)
    ext = profile[-1] + (profile[0] - profile[-1]) * (0.5 - 0.5 * np.cos(np.pi * j / (extra + 1)))
    np.testing.assert_allclose(np.roll(line, -inside[axis].stop)[:extra], ext, atol=1e-12)
    np.testing.assert_array_equal(line[inside[axis]], profile)


def test_kernel_otf_is_convolution_as_scipy_computes_it():
    x = np.random.default_rng(1).random((24, 30))
    y = np.real(np.fft.ifft2(np.fft.fft2(x) * np.fft.fft2(_otf_spatial(L_KERNEL, x.shape))))
    np.testing.assert_allclose(y, convolve(x, L_KERNEL, mode="wrap"), atol=1e-12)
    via_module = km._irfft(km._rfft(x) * km._kernel_otf(L_KERNEL, x.shape), x.shape)
    np.testing.assert_allclose(via_module, y, atol=1e-12)


def _otf_spatial(k, shape):
    kp = np.zeros(shape)
    kp[:k.shape[0], :k.shape[1]] = k
    return np.roll(kp, (-(k.shape[0] // 2), -(k.shape[1] // 2)), axis=(0, 1))


def test_kernel_step_recovers_the_kernel_from_the_true_sharp_image():
    """With the sharp image itself as the latent image, the kernel step is a least-squares fit
    that must return the kernel that blurred it (the periodic model, every pixel observed)."""
    x = sample_image("camera", size=96).astype(np.float64)
    x = x[..., 0] if x.ndim == 3 else x
    y = convolve(x, L_KERNEL, mode="wrap")
    start = np.zeros((9, 9))
    start[4, 3:5] = 0.5
    k = start
    for _ in range(20):  # warm-started CG steps, as the estimator runs them
        k = km._kernel_step(x, y, np.ones(x.shape, bool), k, 1e-6)
    assert _error_up_to_shift(k, _centred(L_KERNEL), 0) < 0.15
    assert _error_up_to_shift(k, _centred(L_KERNEL[::-1, ::-1]), 0) > 0.8


def test_latent_step_with_a_tiny_weight_inverts_the_blur():
    x = sample_image("camera", size=64).astype(np.float64)
    x = x[..., 0] if x.ndim == 3 else x
    y = convolve(x, L_KERNEL, mode="wrap")
    latent = km._latent_l0(y, L_KERNEL, 1e-9)
    assert psnr(latent, x) > 40
    # a strong weight leaves a cartoon: few non-zero gradients
    cartoon = km._latent_l0(y, L_KERNEL, 1e-2)
    assert np.mean(np.hypot(*km._gradients(cartoon)) > 1e-2) < 0.5 * np.mean(np.hypot(*km._gradients(x)) > 1e-2)


@pytest.mark.parametrize("value, odd", [(1, 3), (2.4, 3), (3, 3), (4, 5), (4.4, 5), (6.6, 7), (21.9, 23), (31, 31)])
def test_odd_rounds_to_an_odd_side_of_at_least_three(value, odd):
    assert km._odd(value) == odd


@pytest.mark.parametrize("size", [3, 5, 7, 9, 13, 31, 61])
def test_pyramid_stops_at_the_last_level_whose_kernel_is_five_pixels(size):
    n = km._n_levels(size)
    coarsest = size * km._SCALE_STEP ** (n - 1)
    assert coarsest >= km._COARSEST or n == 1
    assert size * km._SCALE_STEP ** n < km._COARSEST
    assert km._n_levels(31) == 6  # 31 → 5.5 px after five steps of 1/√2


def test_clean_cuts_specks_and_centres():
    k = np.zeros((11, 11))
    k[2, 2:6] = 1.0          # the path, off centre
    k[9, 9] = 0.2            # an isolated speck: < 10 % of the mass
    k[0, 10] = 0.01          # below 5 % of the largest value
    out = km._clean(k)
    assert out.sum() == pytest.approx(1.0)
    assert out[out > 0].size == 4
    iy, ix = np.indices(out.shape)
    assert abs((out * iy).sum() - 5) <= 0.5 and abs((out * ix).sum() - 5) <= 0.5
    identity = km._clean(-np.ones((5, 5)))
    assert identity[2, 2] == 1.0 and identity.sum() == 1.0


# ---------------------------------------------------------------- estimate_kernel

def test_estimate_kernel_finds_an_asymmetric_kernel_in_a_scene_crop():
    y, _ = _scene_crop(L_KERNEL, size=200)
    k = estimate_kernel(y, 13, denoise=False)
    truth = np.pad(L_KERNEL, 2)
    assert k.shape == (13, 13) and k.min() >= 0 and k.sum() == pytest.approx(1.0)
    # the estimate is the L drawn about 2 px thick (measured L1 error 0.58; flipped 1.09)
    err = _error_up_to_shift(k, truth)
    assert err < 0.7, err
    assert err < 0.65 * _error_up_to_shift(k, truth[::-1, ::-1])
    assert err < 0.65 * _error_up_to_shift(k, truth.T)
    delta = np.zeros((13, 13))
    delta[6, 6] = 1.0
    assert err < 0.65 * _error_up_to_shift(k, delta)


def test_estimate_kernel_layouts_agree():
    y, _ = _scene_crop(L_KERNEL, size=96)
    y = np.clip(y, 0, 1)
    k = estimate_kernel(y, 11, iterations=2, denoise=False)
    rgb = np.repeat(y[..., None], 3, axis=2)
    np.testing.assert_allclose(estimate_kernel(rgb, 11, iterations=2, denoise=False), k, atol=1e-9)
    t = torch.from_numpy(rgb).permute(2, 0, 1)
    np.testing.assert_allclose(estimate_kernel(t, 11, iterations=2, denoise=False), k, atol=1e-9)
    batch = torch.stack([t, t.flip(-1)])
    kb = estimate_kernel(batch, 11, iterations=2, denoise=False)
    assert kb.shape == (2, 11, 11)
    np.testing.assert_allclose(kb[0], k, atol=1e-9)
    u8 = np.round(y * 255).astype(np.uint8)
    assert estimate_kernel(u8, 11, iterations=2, denoise=False).shape == (11, 11)
    # the pre-denoising, image by image
    kd = estimate_kernel(batch, 11, iterations=1)
    assert kd.shape == (2, 11, 11)
    np.testing.assert_allclose(kd[0], estimate_kernel(t, 11, iterations=1), atol=1e-6)  # the net rounds in float32
    np.testing.assert_allclose(kd[1], estimate_kernel(t.flip(-1), 11, iterations=1), atol=1e-6)


def test_estimate_kernel_crops_large_photos_to_max_side():
    y, _ = _scene_crop(L_KERNEL, size=120)
    big = estimate_kernel(y, 11, iterations=2, denoise=False, max_side=64)
    centre = estimate_kernel(y[28:92, 28:92], 11, iterations=2, denoise=False)
    np.testing.assert_allclose(big, centre, atol=1e-12)


def test_estimate_kernel_denoises_with_the_default_prior_at_the_estimated_level():
    y, _ = _scene_crop(L_KERNEL, size=64, sigma=0.02, seed=1)
    from pnpdeblur.pipeline import default_prior, estimate_noise_level
    t = torch.from_numpy(np.clip(y, 0.0, 1.0))[None, None]  # photos are read clipped to [0, 1]
    level = estimate_noise_level(t)[0]
    assert level == pytest.approx(0.02, rel=0.25)
    denoised = default_prior()(t, level)[0, 0].double().numpy()
    np.testing.assert_allclose(estimate_kernel(y, 9, iterations=2),
                               estimate_kernel(denoised, 9, iterations=2, denoise=False), atol=1e-12)
    assert not np.allclose(estimate_kernel(y, 9, iterations=2), estimate_kernel(y, 9, iterations=2, denoise=False))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel_size=10), ValueError, "^kernel_size must be an odd int"),
    (dict(kernel_size=1), ValueError, "^kernel_size must be an odd int"),
    (dict(kernel_size=9.0), ValueError, "^kernel_size must be an odd int"),
    (dict(kernel_size=True), ValueError, "^kernel_size must be an odd int"),
    (dict(kernel_size=41), ValueError, r"^kernel_size 41 must not exceed the image's smaller side 40 .*"
                                       r": pass an odd kernel_size <= 39$"),
    (dict(kernel_size=9, max_side=7), ValueError, r"\(nor max_side 7\): pass an odd kernel_size <= 7$"),
    (dict(kernel_size=9, max_side=2), ValueError, r"\(nor max_side 2\): max_side leaves no room for a kernel$"),
    (dict(kernel_size=9, iterations=0), ValueError, "^iterations must be a positive int"),
    (dict(kernel_size=9, iterations=2.0), ValueError, "^iterations must be a positive int"),
    (dict(kernel_size=9, max_side=0), ValueError, "^max_side must be a positive int"),
    (dict(kernel_size=9, kernel_reg=0.0), ValueError, "^kernel_reg must be a finite number"),
    (dict(kernel_size=9, kernel_reg=float("inf")), ValueError, "^kernel_reg must be a finite number"),
    (dict(kernel_size=9, kernel_reg="1"), ValueError, "^kernel_reg must be a finite number"),
    (dict(kernel_size=9, denoise="yes"), TypeError, "denoise"),
])
def test_estimate_kernel_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        estimate_kernel(np.zeros((40, 40)), **kwargs)


@pytest.mark.parametrize("shape, size, largest", [((41, 50), 43, 41), ((50, 20), 21, 19), ((16, 16), 17, 15)])
def test_estimate_kernel_names_the_largest_size_that_fits(shape, size, largest):
    with pytest.raises(ValueError, match=f"kernel_size {size} must not exceed the image's smaller side "
                                         f"{min(shape)} .*: pass an odd kernel_size <= {largest}$"):
        estimate_kernel(np.zeros(shape), size)
    assert estimate_kernel(np.random.default_rng(0).random(shape), largest, iterations=1).shape == (largest, largest)


def test_deblur_shake_says_the_default_kernel_does_not_fit_before_any_work(monkeypatch):
    import pnpdeblur.camera_shake as cs

    monkeypatch.setattr(cs, "noise_levels", lambda *a, **k: pytest.fail("noise was estimated"))
    # the default support follows the photo (3 px here), so only a photo under 16 px cannot take it
    with pytest.raises(ValueError, match=r"^the image's smaller side 15 is too small for a kernel estimate"):
        pd.deblur_shake(np.zeros((15, 30)))
    with pytest.raises(ValueError, match=r"^kernel_size 25 must not exceed .* side 24 .*<= 23$"):
        pd.deblur_shake(np.zeros((30, 24, 3)), kernel_size=25)


def test_estimate_kernel_refuses_a_photo_below_16_pixels_whatever_the_size():
    with pytest.raises(ValueError, match=r"at least 16x16 pixels"):
        estimate_kernel(np.zeros((15, 40)), 3)


def test_estimate_kernel_limits_are_inclusive_and_defaults_documented():
    import inspect

    y, _ = _scene_crop(L_KERNEL, size=41)
    assert estimate_kernel(y, 41, iterations=1, denoise=False, max_side=41).shape == (41, 41)
    assert estimate_kernel(y, 3, iterations=1, denoise=False).shape == (3, 3)
    with pytest.raises(ValueError, match=r"smaller side 20"):
        estimate_kernel(np.zeros((20, 60)), 31)
    defaults = {k: v.default for k, v in inspect.signature(estimate_kernel).parameters.items()}
    assert (defaults["iterations"], defaults["kernel_reg"], defaults["denoise"], defaults["max_side"]) == \
        (10, 1e-3, True, 512)


def test_estimate_kernel_bad_images():
    bad = np.zeros((40, 40))
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="^image contains NaN"):
        estimate_kernel(bad, 9)
    with pytest.raises(TypeError):
        estimate_kernel([[0.0] * 40] * 40, 9)
    with pytest.raises(ValueError, match="at least"):
        estimate_kernel(np.zeros((10, 40)), 9)


# ---------------------------------------------------------------- pd.deblur_shake

def test_deblur_shake_improves_a_shaken_photo_and_keeps_the_callers_type():
    y, sharp = _scene_crop(L_KERNEL, size=160, sigma=0.005, seed=2)
    y8 = np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)
    res = pd.deblur_shake(y8, 13, reference=sharp)
    assert res.x.dtype == np.uint8 and res.x.shape == y8.shape
    assert res.kernel.shape == (13, 13) and res.kernel.sum() == pytest.approx(1.0)
    gain = psnr(res.x / 255.0, sharp) - psnr(y8 / 255.0, sharp)
    assert gain > 1.5, gain  # measured 2.6 dB (the true kernel: 4.3 dB)
    assert res.history[0]["psnr"] == pytest.approx(psnr(res.x / 255.0, sharp), abs=0.05)
    assert res.history[0]["noise_level"] >= 0.02
    from pnpdeblur.pipeline import estimate_noise_level
    t = torch.from_numpy(y8 / 255.0)[None, None]
    assert res.noise_level == pytest.approx(estimate_noise_level(t, saturation=0.98, compression=True))
    entry = res.history[0]
    assert set(entry) == {"kernel_length", "threshold", "noise_level", "clipped_fraction", "hqs", "registration",
                          "overshoot", "overshoot_threshold", "time_kernel", "time_solve", "psnr"}
    from pnpdeblur.camera_shake import OVERSHOOT_THRESHOLD
    assert 0 <= entry["overshoot"] <= entry["overshoot_threshold"] == OVERSHOOT_THRESHOLD
    from pnpdeblur.camera_shake import centroid_offset
    assert entry["registration"] == centroid_offset(res.kernel) and max(map(abs, entry["registration"])) <= 0.5
    assert entry["time_kernel"] > 0 and entry["time_solve"] > 0 and entry["kernel_length"] >= 7.0
    assert res.unchanged == [False] and entry["threshold"] == 7.0


def test_deblur_shake_with_a_given_kernel_is_hqs_on_the_padded_problem():
    """kernel= skips the estimate; the solve is exactly pad_problem + hqs + crop_boundary."""
    y, _ = _scene_crop(L_KERNEL, size=64)
    y = np.clip(y, 0, 1)
    prior = pd.priors.TV()
    res = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None)
    yp, Kp, wp, r = pd.solvers.pad_problem(y, pd.Convolution(L_KERNEL))
    ref = pd.solvers.crop_boundary(pd.solvers.hqs(yp, Kp, prior, noise_level=0.03, weights=wp).x, r)
    np.testing.assert_allclose(res.x, np.clip(ref, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(res.kernel, L_KERNEL)
    rep = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None, boundary="replicate")
    plain = pd.solvers.hqs(y, pd.Convolution(L_KERNEL), prior, noise_level=0.03).x
    np.testing.assert_allclose(rep.x, np.clip(plain, 0, 1), atol=1e-6)
    # a given kernel is taken as exact: the prior's own schedule (as hqs chooses it) and no noise floor
    for name, value in (("hqs_lam", 0.5), ("hqs_sigma_start", 0.6)):
        setattr(prior, name, value)
        again = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None,
                                boundary="replicate")
        own = pd.solvers.hqs(y, pd.Convolution(L_KERNEL), prior, noise_level=0.03).x
        assert not np.allclose(own, plain, atol=1e-3)
        np.testing.assert_allclose(again.x, np.clip(own, 0, 1), atol=1e-6)
        setattr(prior, name, None)
    low = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.005, saturation=None, boundary="replicate")
    assert low.history[0]["noise_level"] == 0.005
    np.testing.assert_allclose(low.x, np.clip(pd.solvers.hqs(y, pd.Convolution(L_KERNEL), prior,
                                                             noise_level=0.005).x, 0, 1), atol=1e-6)
    floored = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.005, saturation=None,
                              boundary="replicate", noise_floor=0.02)
    assert floored.history[0]["noise_level"] == 0.02


def test_an_estimated_kernel_keeps_dpirs_schedule_and_the_floor(monkeypatch):
    """The blind solve is not changed by a prior's own schedule, and never runs below 0.02."""
    import pnpdeblur.camera_shake as camera_shake

    y, _ = _scene_crop(L_KERNEL, size=64)
    y = np.clip(y, 0, 1)
    monkeypatch.setattr(camera_shake, "estimate_kernel", lambda img, size: np.asarray(L_KERNEL)[None])
    prior = pd.priors.TV()
    prior.hqs_lam, prior.hqs_sigma_start = 0.5, 0.6
    res = pd.deblur_shake(y, prior=prior, noise_level=0.005, saturation=None, boundary="replicate", register=False,
                          safeguard=False)
    assert res.history[0]["noise_level"] == 0.02
    dpir = pd.solvers.hqs(y, pd.Convolution(L_KERNEL), prior, noise_level=0.02, lam=0.23, sigma_start=49 / 255).x
    np.testing.assert_allclose(res.x, np.clip(dpir, 0, 1), atol=1e-6)


def test_deblur_shake_runs_a_prior_with_its_own_schedule_on_it():
    """As in pd.deblur: a prior with schedule(σ) (RP-GAN) is solved with exactly those β."""

    class TVWithSchedule(pd.priors.TV):
        def schedule(self, noise_level):
            return [0.01, 0.1, 1.0 + noise_level]

    y, _ = _scene_crop(L_KERNEL, size=64)
    y = np.clip(y, 0, 1)
    prior = TVWithSchedule()
    res = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None, boundary="replicate")
    ref = pd.solvers.hqs(y, pd.Convolution(L_KERNEL), prior, betas=[0.01, 0.1, 1.03]).x
    np.testing.assert_allclose(res.x, np.clip(ref, 0, 1), atol=1e-6)
    assert [h["beta"] for h in res.history[0]["hqs"]] == pytest.approx([0.01, 0.1, 1.03])


def test_a_rectangular_given_kernel_is_its_zero_padded_square():
    # a horizontal 1 × 7 streak is the 7 × 7 kernel with zero rows: the same blur, the same solve
    streak = np.full((1, 7), 1 / 7)
    square = np.pad(streak, ((3, 3), (0, 0)))
    y, _ = _scene_crop(square, size=48)
    y = np.clip(y, 0, 1)
    a = pd.deblur_shake(y, prior=pd.priors.TV(), kernel=streak, noise_level=0.02, saturation=None)
    b = pd.deblur_shake(y, prior=pd.priors.TV(), kernel=square, noise_level=0.02, saturation=None)
    assert a.kernel.shape == (1, 7) and b.kernel.shape == (7, 7)
    np.testing.assert_allclose(a.x, b.x, atol=1e-5)
    assert np.abs(a.x - y).mean() > 1e-3  # and it deconvolved


def test_deblur_shake_batch_and_torch():
    y, _ = _scene_crop(L_KERNEL, size=64)
    t = torch.from_numpy(np.clip(y, 0, 1)).float()[None].repeat(3, 1, 1)
    batch = torch.stack([t, t])
    res = pd.deblur_shake(batch, kernel=L_KERNEL, prior=pd.priors.TV(), noise_level=0.02)
    assert isinstance(res.x, torch.Tensor) and res.x.shape == batch.shape and res.x.dtype == torch.float32
    assert res.kernel.shape == (2, 9, 9)
    torch.testing.assert_close(res.x[0], res.x[1])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel=np.ones((4, 4))), ValueError, "odd"),
    (dict(kernel=np.ones((2, 5, 5))), ValueError, r"\(N, kh, kw\)"),
    (dict(kernel=np.full((5, 5), np.nan)), ValueError, "NaN"),
    (dict(boundary="zero"), ValueError, "^boundary must be .unknown."),
    (dict(gamma=0.5), ValueError, r"^gamma must be in \[1, 4\]"),
    (dict(saturation=1.5), ValueError, r"^saturation must be in \(0, 1\]"),
    (dict(noise_floor=-1.0), ValueError, "^noise_floor must be a finite"),
    (dict(reference=np.zeros((10, 10))), ValueError, "^reference has shape"),
    (dict(safeguard="yes"), TypeError, "^safeguard must be True or False"),
    (dict(blur_threshold=float("nan")), ValueError, "^blur_threshold must be a finite"),
])
def test_deblur_shake_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        pd.deblur_shake(np.full((40, 40), 0.5), 9, **kwargs)


def test_deblur_shake_bad_kernel_size_and_image():
    with pytest.raises(ValueError, match="^kernel_size must be an odd int"):
        pd.deblur_shake(np.full((40, 40), 0.5), 8)
    with pytest.raises(ValueError, match="^image contains NaN"):
        pd.deblur_shake(np.full((40, 40), np.nan), 9)


def test_deblur_shake_refuses_a_given_kernel_that_does_not_sum_to_one():
    img = np.random.default_rng(0).random((40, 40))
    box = np.ones((5, 5))  # e.g. read from an 8-bit PNG and not divided by its sum: a 1/25 as bright result
    with pytest.raises(ValueError, match=r"^kernel must sum to 1 \(a blur keeps the brightness\), got sum 25: "
                                         r"divide it by its sum$"):
        pd.deblur_shake(img, kernel=box)
    with pytest.raises(ValueError, match=r"^kernel\[1\] must sum to 1 .*got sum 1\.002"):
        pd.deblur_shake(np.stack([img, img])[:, None], kernel=np.stack([box / 25, box / 25 * 1.002]))
    with pytest.raises(ValueError, match=r"^kernel must sum to 1 .*got sum 0\.998"):
        pd.deblur_shake(np.stack([img, img])[:, None], kernel=box / 25 * 0.998)  # one kernel for the batch
    ok = pd.deblur_shake(img, kernel=box / 25 * 1.0009, noise_level=0.01)  # float rounding of a saved kernel
    assert ok.x.shape == img.shape and abs(ok.x.mean() - img.mean()) < 0.02


# ---------------------------------------------------------------- kernel_length and the safeguard

@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_kernel_length_of_uniform_segments(n):
    from pnpdeblur.estimation import kernel_length

    k = np.zeros((9, 9))
    k[4, :n] = 1.0
    # n taps one pixel apart: second moment (n² − 1)/12, so length sqrt(n² − 1) (0 for one tap)
    assert kernel_length(k) == pytest.approx(np.sqrt(n * n - 1), abs=1e-12)
    assert kernel_length(k.T) == pytest.approx(kernel_length(k), abs=1e-12)
    assert kernel_length(7.0 * k) == pytest.approx(kernel_length(k), abs=1e-12)


def test_kernel_length_of_a_square_and_bad_kernels():
    from pnpdeblur.estimation import kernel_length

    # 3×3 box: each axis has variance 2/3, so sqrt(12 · 4/3) = 4
    assert kernel_length(np.ones((3, 3))) == pytest.approx(4.0)
    for bad in (np.ones(5), np.zeros((3, 3)), -np.ones((3, 3)), np.full((3, 3), np.nan), np.zeros((0, 3))):
        with pytest.raises(ValueError, match="kernel"):
            kernel_length(bad)


def _fixed_kernel(monkeypatch, k):
    import pnpdeblur.camera_shake as cs

    calls = []
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: calls.append(size) or k[None])
    return calls


def test_deblur_shake_leaves_a_sharp_looking_photo_unchanged(monkeypatch):
    from pnpdeblur.camera_shake import SHAKE_THRESHOLD

    small = np.zeros((5, 5))
    small[2, 2:4] = 0.5  # two taps: length sqrt(3) px, below the threshold
    assert np.sqrt(3) < SHAKE_THRESHOLD
    calls = _fixed_kernel(monkeypatch, small)
    y = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    with pytest.warns(UserWarning, match="unchanged") as record:
        line = inspect.currentframe().f_lineno + 1
        res = pd.deblur_shake(y, 9, prior=pd.priors.TV())
    assert (record[0].filename, record[0].lineno) == (__file__, line)  # at the caller's line
    assert calls == [9]
    assert res.unchanged == [True] and res.x is not y and np.array_equal(res.x, y) and res.x.dtype == y.dtype
    assert res.history[0]["kernel_length"] == pytest.approx(np.sqrt(3)) and res.history[0]["hqs"] is None
    assert res.history[0]["threshold"] == SHAKE_THRESHOLD
    # off, or a lower threshold: deblurred
    for kw in (dict(safeguard=False), dict(blur_threshold=1.5)):
        res = pd.deblur_shake(y, 9, prior=pd.priors.TV(), **kw)
        assert res.unchanged == [False] and res.history[0]["hqs"] is not None
        assert not np.array_equal(res.x, y)
    # a given kernel is used as given
    res = pd.deblur_shake(y, prior=pd.priors.TV(), kernel=small)
    assert res.unchanged == [False] and res.history[0]["threshold"] is None


def test_deblur_shake_safeguard_per_image_of_a_batch(monkeypatch):
    import pnpdeblur.camera_shake as cs

    small, long = np.zeros((9, 9)), np.zeros((9, 9))
    small[4, 4] = 1.0
    long[4, :] = 1.0 / 9  # length sqrt(80) ≈ 8.9 px
    kernels = iter([small, long])
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: next(kernels)[None])
    y = torch.rand(2, 1, 32, 32)
    with pytest.warns(UserWarning, match=r"image\(s\) \[0\]"):
        res = pd.deblur_shake(y, 9, prior=pd.priors.TV())
    assert res.unchanged == [True, False]
    torch.testing.assert_close(res.x[0], y[0])
    assert not torch.allclose(res.x[1], y[1])
    assert res.kernel.shape == (2, 9, 9)


def test_a_flat_photo_has_no_blur_to_find():
    y = np.full((48, 48), 0.4)
    k = estimate_kernel(y, 9, denoise=False)
    expected = np.zeros((9, 9))
    expected[4, 4] = 1.0
    np.testing.assert_array_equal(k, expected)
    with pytest.warns(UserWarning, match="unchanged"):
        res = pd.deblur_shake(y, 9)
    assert res.unchanged == [True] and np.array_equal(res.x, y)


def test_deblur_shake_takes_a_torch_kernel():
    y = np.full((32, 32), 0.5)
    res = pd.deblur_shake(y, kernel=torch.from_numpy(L_KERNEL), prior=pd.priors.TV(), noise_level=0.01)
    np.testing.assert_array_equal(res.kernel, L_KERNEL)
    with pytest.raises(TypeError, match="kernel"):
        pd.deblur_shake(y, kernel=np.ones((5, 5), dtype=np.int64))
    with pytest.raises(TypeError, match="kernel"):
        pd.deblur_shake(y, kernel="box")


def test_deblur_shake_photo_options_reach_the_solve():
    """gamma linearises (the same as solving y**gamma by hand), saturation leaves clipped pixels
    out (reported in the history), device and progress run the same solve."""
    y, _ = _scene_crop(L_KERNEL, size=48)
    y = np.clip(y, 0, 1)
    y[:6, :6] = 1.0  # a clipped highlight
    prior = pd.priors.TV()
    base = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None, boundary="replicate")
    assert base.history[0]["clipped_fraction"] == 0.0
    sat = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, boundary="replicate")
    assert sat.history[0]["clipped_fraction"] == pytest.approx(36 / 48 ** 2)
    assert not np.allclose(sat.x, base.x)
    lin = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None, boundary="replicate",
                          gamma=2.2)
    from pnpdeblur.pipeline import linearize
    yl, level = linearize(torch.from_numpy(y)[None, None], 2.2, 0.03)
    by_hand = pd.solvers.hqs(yl, pd.Convolution(L_KERNEL), prior, noise_level=level).x.clamp(min=0) ** (1 / 2.2)
    np.testing.assert_allclose(lin.x, by_hand.clamp(0, 1)[0, 0].numpy(), atol=1e-6)
    again = pd.deblur_shake(y, prior=prior, kernel=L_KERNEL, noise_level=0.03, saturation=None, boundary="replicate",
                            device="cpu", progress=True)
    np.testing.assert_array_equal(again.x, base.x)


def test_deblur_shake_defaults_are_pd_deblurs():
    import inspect

    from pnpdeblur.camera_shake import DEFAULT_KERNEL_SIZE, SHAKE_THRESHOLD
    from pnpdeblur.solvers import DEFAULT_SATURATION

    shake = {k: v.default for k, v in inspect.signature(pd.deblur_shake).parameters.items()}
    flow = {k: v.default for k, v in inspect.signature(pd.deblur).parameters.items()}
    # None: DEFAULT_KERNEL_SIZE, at most the photo's shorter side / 6 (tests/test_shake_small_photos.py)
    assert shake["kernel_size"] is None and DEFAULT_KERNEL_SIZE == 31 and SHAKE_THRESHOLD == 7.0
    assert (shake["safeguard"], shake["blur_threshold"], shake["kernel"], shake["prior"], shake["noise_level"]) == \
        (True, None, None, None, None)
    # None: 0.02 (pd.deblur's) for an estimated kernel, 0 for a given one (as pd.deblur's given flow)
    assert shake["noise_floor"] is None and flow["noise_floor"] is None
    assert (pd.pipeline.DEFAULT_NOISE_FLOOR, pd.pipeline.GIVEN_BLUR_NOISE_FLOOR) == (0.02, 0.0)
    for name in ("saturation", "boundary", "gamma", "device", "reference", "progress"):
        assert shake[name] == flow[name], name
    assert (shake["saturation"], shake["boundary"], shake["gamma"], shake["progress"]) == \
        (DEFAULT_SATURATION, "unknown", None, False)


# -- registration of the result on the estimated kernel's centroid -------------------------------


def test_centroid_offset_is_the_centre_of_mass_from_the_central_pixel():
    from pnpdeblur.camera_shake import centroid_offset

    k = np.zeros((5, 7))
    k[2, 3] = 1.0
    assert centroid_offset(k) == (0.0, 0.0)
    k[1, 5] = 3.0  # mass 1 at (2, 3) and 3 at (1, 5): centroid (1.25, 4.5), centre (2, 3)
    assert centroid_offset(k) == pytest.approx((-0.75, 1.5))
    assert centroid_offset(2.0 * k) == pytest.approx((-0.75, 1.5))  # not only sum-1 kernels


def test_shift_image_moves_content_by_whole_pixels_exactly_and_reproduces_a_ramp_between_them():
    from pnpdeblur.camera_shake import shift_image

    x = torch.rand(2, 3, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = shift_image(x, 1.0, -2.0)  # what was at (i, j) is at (i + 1, j - 2)
    torch.testing.assert_close(y[..., 1:, :-2], x[..., :-1, 2:], rtol=0, atol=1e-12)
    torch.testing.assert_close(y[..., 0, :-2], x[..., 0, 2:], rtol=0, atol=1e-12)  # the border replicated
    assert shift_image(x, 0.0, 0.0) is x
    # bicubic interpolation reproduces a linear ramp: a sub-pixel move of a ramp is exact inside
    ii, jj = torch.meshgrid(torch.arange(12.0, dtype=torch.float64), torch.arange(10.0, dtype=torch.float64),
                            indexing="ij")
    ramp = (0.3 * ii - 0.2 * jj)[None, None]
    moved = shift_image(ramp, 0.25, -0.4)
    torch.testing.assert_close(moved[..., 2:-2, 2:-2], (0.3 * (ii - 0.25) - 0.2 * (jj + 0.4))[None, None][..., 2:-2, 2:-2],
                               rtol=0, atol=1e-12)
    assert shift_image(ramp.float(), 0.5, 0.5).dtype == torch.float32


def _blurred_scene(k, size=48, seed=0):
    """A smooth scene (no clipping) blurred by ``k``: (sharp, blurred), float64 (H, W)."""
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    sharp = 0.5 + 0.15 * gaussian_filter(rng.standard_normal((size, size)), 1.5) / 0.2
    sharp = np.clip(sharp, 0.2, 0.8)
    return sharp, convolve(sharp, k, mode="nearest")


def test_an_estimate_off_its_centroid_deblurs_to_the_image_the_centred_kernel_gives(monkeypatch):
    # the true blur is centred on its centroid; an "estimate" holding it one pixel to the right
    # deconvolves to the sharp image moved one pixel left: the registration moves it back, so the
    # result is the true kernel's (a whole-pixel move is exact)
    true = np.zeros((7, 7))
    true[3, 2:5] = (0.25, 0.5, 0.25)
    moved = np.roll(true, 1, axis=1)
    sharp, y = _blurred_scene(true)
    prior = pd.priors.TV()
    # the estimate's noise floor given to both (a given kernel has none by default)
    opts = dict(prior=prior, noise_level=0.01, saturation=None, boundary="replicate", safeguard=False,
                noise_floor=0.02)
    _fixed_kernel(monkeypatch, moved)
    res = pd.deblur_shake(y, 7, **opts)
    assert res.history[0]["registration"] == pytest.approx((0.0, 1.0))
    given = pd.deblur_shake(y, kernel=true, **opts)
    unregistered = pd.deblur_shake(y, kernel=moved, **opts)  # a given kernel is used as given
    assert given.history[0]["registration"] is None and unregistered.history[0]["registration"] is None
    # register=False keeps the result the kernel reblurs to the photo: the given kernel's
    kept = pd.deblur_shake(y, 7, register=False, **opts)
    assert kept.history[0]["registration"] is None
    np.testing.assert_array_equal(kept.x, unregistered.x)
    with pytest.raises(TypeError, match=r"^register must be True or False, got 'yes'$"):
        pd.deblur_shake(y, 7, register="yes", **opts)
    # the same solve, moved right by exactly one pixel (column 0 replicates the border)
    np.testing.assert_allclose(res.x[:, 1:], unregistered.x[:, :-1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.x[:, 0], unregistered.x[:, 0])
    # and, away from the borders (which the replicate rule ties to the kernel's placement), the
    # true kernel's result
    inner = np.s_[8:-8, 8:-8]
    np.testing.assert_allclose(res.x[inner], given.x[inner], atol=2e-3)
    assert psnr(res.x[inner], sharp[inner]) > psnr(unregistered.x[inner], sharp[inner]) + 5


def test_a_half_pixel_off_estimate_is_registered_on_the_unknown_boundarys_grid(monkeypatch):
    # two taps: centroid half a pixel right of the centre; the move happens before the crop
    from pnpdeblur.camera_shake import shift_image

    half = np.zeros((5, 5))
    half[2, 2:4] = 0.5
    sharp, y = _blurred_scene(half, seed=1)
    prior = pd.priors.TV()
    _fixed_kernel(monkeypatch, half)
    res = pd.deblur_shake(y, 5, prior=prior, noise_level=0.03, saturation=None, safeguard=False)  # above the floor
    assert res.history[0]["registration"] == pytest.approx((0.0, 0.5))
    yp, Kp, wp, r = pd.solvers.pad_problem(y, pd.Convolution(half))
    solved = pd.solvers.hqs(yp, Kp, prior, noise_level=0.03, weights=wp).x
    moved = shift_image(torch.from_numpy(np.asarray(solved))[None, None], 0.0, 0.5)[0, 0].numpy()
    np.testing.assert_allclose(res.x, np.clip(pd.solvers.crop_boundary(moved, r), 0, 1), atol=1e-6)
    # the kernel blurs the scene about a point half a pixel right: the registered result is that
    # scene on the blur's centre of mass (the sharp image moved by +0.5), the unregistered one the
    # sharp image as it was before the blur moved it
    centred = shift_image(torch.from_numpy(sharp)[None, None], 0.0, 0.5)[0, 0].numpy()
    plain = np.clip(pd.solvers.crop_boundary(solved, r), 0, 1)
    inner = np.s_[4:-4, 4:-4]
    assert psnr(res.x[inner], centred[inner]) > psnr(res.x[inner], sharp[inner]) + 1.5
    assert psnr(plain[inner], sharp[inner]) > psnr(plain[inner], centred[inner]) + 1.5
