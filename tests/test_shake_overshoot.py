"""The overshoot check of pd.deblur_shake: a failed kernel estimate rings far beyond [0, 1]."""
import inspect

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

import pnpdeblur as pd
from pnpdeblur import camera_shake as cs
from pnpdeblur.camera_shake import OVERSHOOT_THRESHOLD, overshoot


def _reference(result, photo, reach, high):
    """The same count by scipy: (H, W, C) arrays, dilation by a (2 reach + 1)² square per channel."""
    clipped = (photo <= 0) | (photo >= high)
    near = binary_dilation(clipped, np.ones((2 * reach + 1, 2 * reach + 1, 1), bool)) if reach else clipped
    return float((((result <= 0) | (result >= 1)) & ~near).mean())


def _case(seed=0, shape=(40, 48, 3)):
    rng = np.random.default_rng(seed)
    photo = np.clip(rng.normal(0.5, 0.2, shape), 0, 1)
    photo[5:8, 30:33] = 1.0  # a clipped highlight
    photo[30, 4] = 0.985     # above the default saturation, below 1
    result = rng.normal(0.5, 0.45, shape)  # overshoots in places
    return result, photo


@pytest.mark.parametrize("reach", [0, 1, 4, 7])
@pytest.mark.parametrize("saturation", [0.98, None, 0.5])
def test_overshoot_matches_a_dilation_reference(reach, saturation):
    result, photo = _case()
    high = 1.0 if saturation is None else saturation
    expected = _reference(result, photo, reach, high)
    assert overshoot(result, photo, reach, saturation) == pytest.approx(expected, abs=1e-7)
    # the same on torch (C, H, W) and on an (N, C, H, W) batch of two
    rt, pt = torch.from_numpy(result).permute(2, 0, 1), torch.from_numpy(photo).permute(2, 0, 1)
    assert overshoot(rt, pt, reach, saturation) == pytest.approx(expected, abs=1e-7)
    r2, p2 = _case(seed=1)
    both = overshoot(torch.stack([rt, torch.from_numpy(r2).permute(2, 0, 1)]),
                     torch.stack([pt, torch.from_numpy(p2).permute(2, 0, 1)]), reach, saturation)
    assert both == pytest.approx((expected + _reference(r2, p2, reach, high)) / 2, abs=1e-7)


def test_overshoot_counts_only_far_from_the_photos_clipping():
    photo = np.full((21, 21), 0.5)
    result = np.full((21, 21), 0.5)
    result[10, 10] = 1.2  # one overshooting value of 441
    assert overshoot(result, photo, 3) == pytest.approx(1 / 441)
    photo[10, 13] = 1.0  # a clipped value 3 px away: within reach, no longer counted
    assert overshoot(result, photo, 3) == 0.0
    assert overshoot(result, photo, 2) == pytest.approx(1 / 441)
    photo[10, 13] = 0.0  # dark clipping counts as clipping too
    assert overshoot(result, photo, 3) == 0.0
    result[10, 10] = -0.3
    assert overshoot(result, photo, 2) == pytest.approx(1 / 441)
    # values at exactly 0 or 1 count (the result clipped); uint8 photos are read on [0, 1]
    assert overshoot(np.ones((4, 4)), np.full((4, 4), 128, np.uint8), 1) == 1.0
    assert overshoot(np.zeros((4, 4)), np.full((4, 4), 128, np.uint8), 1) == 1.0
    # the photo's own values in [0, 1] do not: a result equal to an unclipped photo scores 0
    assert overshoot(photo * 0 + 0.3, photo * 0 + 0.3) == 0.0


def test_overshoot_bad_input():
    result, photo = _case()
    with pytest.raises(ValueError, match="result must have the photo's shape"):
        overshoot(result[:, :-1], photo)
    with pytest.raises(ValueError, match="result contains NaN"):
        overshoot(np.where(result > 1.4, np.nan, result), photo)
    with pytest.raises(TypeError, match="result must be a float array"):
        overshoot(np.zeros(photo.shape, np.uint8), photo)
    for reach in (-1, 1.5, True):
        with pytest.raises(ValueError, match="reach must be an int >= 0"):
            overshoot(result, photo, reach)
    with pytest.raises(ValueError, match="photo"):
        overshoot(result, photo * 255)


def _cloud_kernel(size=15):
    """What a failed estimate looks like: mass spread over the whole support."""
    k = np.random.default_rng(3).random((size, size))
    return k / k.sum()


def test_deblur_shake_leaves_an_overshooting_result_unchanged(monkeypatch):
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: _cloud_kernel(size)[None])
    y = np.clip(pd.data.sample_image("camera", 96)[..., 0].astype(np.float64), 0, 1)
    free = pd.deblur_shake(y, 15, prior=pd.priors.TV(), safeguard=False)
    value = free.history[0]["overshoot"]
    assert value > OVERSHOOT_THRESHOLD and free.unchanged == [False]  # the cloud rings far out of range
    assert free.history[0]["overshoot_threshold"] is None
    with pytest.warns(UserWarning, match=r"image\(s\) \[0\] unchanged: .*overshoot_threshold") as record:
        line = inspect.currentframe().f_lineno + 1
        res = pd.deblur_shake(y, 15, prior=pd.priors.TV())
    assert (record[0].filename, record[0].lineno) == (__file__, line)
    assert not any("blur_threshold" in str(w.message) for w in record)  # not the length safeguard's words
    assert res.unchanged == [True] and np.array_equal(res.x, y)
    entry = res.history[0]
    assert entry["overshoot"] == pytest.approx(value) and entry["overshoot_threshold"] == OVERSHOOT_THRESHOLD
    assert entry["hqs"] is not None  # it was solved, then judged
    # a threshold at the value or above lets it through (only values above it are flagged)
    for limit in (value, min(1.0, value + 0.01)):
        res = pd.deblur_shake(y, 15, prior=pd.priors.TV(), overshoot_threshold=limit)
        assert res.unchanged == [False] and not np.array_equal(res.x, y)
    # a given kernel is used as given (its own schedule), its overshoot recorded
    res = pd.deblur_shake(y, prior=pd.priors.TV(), kernel=_cloud_kernel())
    assert res.unchanged == [False] and res.history[0]["overshoot"] > OVERSHOOT_THRESHOLD
    assert res.history[0]["overshoot_threshold"] is None


@pytest.mark.parametrize("gamma", [None, 2.2])
def test_the_overshoot_is_judged_on_the_cropped_result_before_registration(monkeypatch, gamma):
    seen = []

    def spy(result, photo, reach, saturation):
        seen.append((result.clone(), photo.clone(), reach, saturation))
        return 1.0

    k = np.zeros((9, 9))
    k[4, 1:8] = 1 / 7  # long enough for the length safeguard, centroid whole
    k[5, 7] = 0.5 / 7  # ... then not: a registration shift
    k /= k.sum()
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: k[None])
    monkeypatch.setattr(cs, "_overshoot", spy)
    y = np.random.default_rng(0).random((40, 36, 3))
    with pytest.warns(UserWarning, match="overshoot"):
        res = pd.deblur_shake(y, 9, prior=pd.priors.TV(), saturation=0.9, noise_level=0.02, gamma=gamma)
    assert res.unchanged == [True] and res.history[0]["overshoot"] == 1.0
    result, photo, reach, saturation = seen[0]
    assert reach == 4 and saturation == 0.9
    torch.testing.assert_close(photo, torch.from_numpy(y).permute(2, 0, 1)[None])
    assert result.shape == photo.shape  # the unknown boundary's padding cropped
    assert float(result.min()) < 0 or float(result.max()) > 1  # before clipping
    # the result judged is the one register=False returns (what deblur_auto scores), unclipped, on the
    # photo's scale (gamma: back from linear light)
    monkeypatch.setattr(cs, "_overshoot", lambda *a: 0.0)
    unregistered = pd.deblur_shake(y, 9, prior=pd.priors.TV(), saturation=0.9, noise_level=0.02, register=False,
                                   gamma=gamma)
    torch.testing.assert_close(result.clamp(0, 1)[0].permute(1, 2, 0), torch.from_numpy(unregistered.x))


@pytest.mark.filterwarnings("ignore:pd.deblur_shake estimates the kernel on a")  # a small photo
def test_a_sharp_estimate_is_not_flagged(monkeypatch):
    """The true kernel of a shaken photo: its result stays in range, and it is deblurred."""
    k = pd.data.random_shake_kernel(11, seed=2)
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: k[None])
    sharp = pd.data.sample_image("camera", 96)[..., 0].astype(np.float64)
    y = np.clip(pd.Convolution(k)(sharp) + np.random.default_rng(0).normal(0, 0.01, sharp.shape), 0, 1)
    res = pd.deblur_shake(y, 11)
    assert res.unchanged == [False] and res.history[0]["overshoot"] < OVERSHOOT_THRESHOLD / 3
    assert pd.metrics.psnr(res.x, sharp) > pd.metrics.psnr(y, sharp) + 2


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                                        ("0.1", TypeError)])
def test_overshoot_threshold_is_checked(bad, error):
    with pytest.raises(error, match="overshoot_threshold"):
        pd.deblur_shake(np.zeros((40, 40)), 9, overshoot_threshold=bad)


def test_deblur_auto_does_not_keep_a_kernel_result_that_overshoots(monkeypatch):
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: _cloud_kernel(size)[None])
    y = np.clip(pd.data.sample_image("camera", 96)[..., 0].astype(np.float64), 0, 1)
    with pytest.warns(UserWarning, match="overshoot_threshold"):
        res = pd.deblur_auto(y, prior=pd.priors.TV(), kernel_size=15, flow_options=dict(iterations=1))
    shake = res.shake_result
    assert shake.unchanged == [True] and shake.history[0]["overshoot"] > OVERSHOOT_THRESHOLD
    assert res.model[0] in ("flow", "none") and np.isnan(res.residual_shake[0])


def test_in_a_batch_only_the_overshooting_image_comes_back_as_given(monkeypatch):
    long = np.zeros((15, 15))
    long[7, 2:13] = 1 / 11  # an 11 px streak: the photo's own blur, solved cleanly
    kernels = iter([_cloud_kernel(), long])
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: next(kernels)[None])
    sharp = torch.from_numpy(pd.data.sample_image("camera", 96)[..., 0].astype(np.float32))
    y = torch.stack([sharp, pd.Convolution(long)(sharp)])[:, None].clamp(0, 1)
    with pytest.warns(UserWarning, match=r"image\(s\) \[0\] unchanged: .*overshoot_threshold"):
        res = pd.deblur_shake(y, 15, prior=pd.priors.TV())
    assert res.unchanged == [True, False]
    assert res.history[0]["overshoot"] > OVERSHOOT_THRESHOLD >= res.history[1]["overshoot"]
    torch.testing.assert_close(res.x[0], y[0], rtol=0, atol=0)  # the photo itself, not its failed result
    assert not torch.equal(res.x[1], y[1])


def test_a_registered_result_goes_back_from_linear_light_too(monkeypatch):
    """With the registration's shift made the identity, register=True returns what register=False
    does, gamma round trip included (the two paths build the result apart)."""
    k = np.zeros((9, 9))
    k[4, 1:8] = 1 / 7
    k[5, 7] = 0.5 / 7
    k /= k.sum()
    monkeypatch.setattr(cs, "estimate_kernel", lambda image, size: k[None])
    moves = []
    monkeypatch.setattr(cs, "shift_image", lambda x, dy, dx: moves.append((dy, dx)) or x)
    y = np.random.default_rng(1).random((40, 36, 3)) * 0.8 + 0.1
    kw = dict(prior=pd.priors.TV(), noise_level=0.02, gamma=2.2, overshoot_threshold=1.0)
    registered = pd.deblur_shake(y, 9, **kw)
    assert moves and moves[0] != (0.0, 0.0)  # the registered path ran
    np.testing.assert_array_equal(registered.x, pd.deblur_shake(y, 9, register=False, **kw).x)
