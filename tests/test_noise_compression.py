"""estimate_noise_level(compression=True): the coarser luma band against closed forms, on JPEG
photos against the noise added before coding, and its use by pd.deblur."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import pnpdeblur.solvers
from _flow_standins import StandInSEN
from pnpdeblur import pipeline
from pnpdeblur.pipeline import COARSE_BAND_WEIGHT, LUMA_WEIGHTS, estimate_noise_level
from test_pipeline_direct import PRIOR, RecordingHQS, deblur, monkeypatch_min_blocks

MAD = 0.6744897501960817


def _constant_blocks(means: np.ndarray) -> np.ndarray:
    """Each value of ``means`` (..., h, w) repeated over a 2×2 block: no finest-band detail at all."""
    return np.repeat(np.repeat(means, 2, axis=-2), 2, axis=-1)


def _coarse_hh(means: np.ndarray) -> np.ndarray:
    """|diagonal detail| of the 2×2 blocks of ``means`` (h, w), as a flat array."""
    m = means[: means.shape[0] // 2 * 2, : means.shape[1] // 2 * 2]
    return np.abs(m[0::2, 0::2] - m[0::2, 1::2] - m[1::2, 0::2] + m[1::2, 1::2]).ravel() / 2


def _lower_median(v: np.ndarray) -> float:
    return float(np.sort(v)[(v.size - 1) // 2])  # torch's median of an even count


def test_the_weights_are_bt601s():
    assert LUMA_WEIGHTS == (0.299, 0.587, 0.114) and 0 < COARSE_BAND_WEIGHT < 1


def test_grey_closed_form_where_the_finest_band_is_empty():
    rng = np.random.default_rng(0)
    means = rng.random((9, 11))  # odd: the last row and column of blocks are left out
    x = _constant_blocks(means)[None, None]
    t = torch.from_numpy(x)
    assert estimate_noise_level(t) == [0.0]
    # block means carry σ/2 of white noise, hence the factor 2
    coarse = 2 * _lower_median(_coarse_hh(means)) / MAD
    assert estimate_noise_level(t, compression=True) == pytest.approx([COARSE_BAND_WEIGHT * coarse], rel=1e-12)


def test_rgb_reads_the_luma_and_scales_by_its_noise_gain():
    rng = np.random.default_rng(1)
    means = rng.random((3, 8, 8))
    t = torch.from_numpy(_constant_blocks(means)[None])
    w = np.array(LUMA_WEIGHTS)
    luma = np.tensordot(w, means, axes=1)  # (8, 8)
    coarse = 2 * _lower_median(_coarse_hh(luma)) / MAD / np.linalg.norm(w)
    assert estimate_noise_level(t, compression=True) == pytest.approx([COARSE_BAND_WEIGHT * coarse], rel=1e-12)
    # the luma, not the channel mean: swapping the channels changes the result
    swapped = torch.from_numpy(_constant_blocks(means[::-1].copy())[None])
    assert estimate_noise_level(swapped, compression=True)[0] != pytest.approx(
        estimate_noise_level(t, compression=True)[0], rel=1e-3)


@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_read_the_channel_mean(channels):
    rng = np.random.default_rng(channels)
    means = rng.random((channels, 8, 6))
    t = torch.from_numpy(_constant_blocks(means)[None])
    coarse = 2 * _lower_median(_coarse_hh(means.mean(axis=0))) / MAD * np.sqrt(channels)
    assert estimate_noise_level(t, compression=True) == pytest.approx([COARSE_BAND_WEIGHT * coarse], rel=1e-12)


def test_the_larger_of_the_two_bands_per_image_of_a_batch():
    rng = np.random.default_rng(2)
    smooth = _constant_blocks(0.3 * rng.random((1, 1, 16, 16)))  # coarse band only
    noisy = 0.5 + 0.05 * rng.standard_normal((1, 1, 32, 32))     # white: the fine band wins
    t = torch.from_numpy(np.concatenate([smooth, noisy]))
    fine = estimate_noise_level(t)
    both = estimate_noise_level(t, compression=True)
    coarse_smooth = estimate_noise_level(t[:1], compression=True)[0]
    assert fine[0] == 0.0 and both[0] == coarse_smooth > 0
    assert both[1] == fine[1]  # 0.9 × the coarse estimate of white noise stays below the fine one
    assert estimate_noise_level(t[1:], compression=True) == [both[1]]


def test_white_noise_reads_the_same_in_both_bands():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(0.03 * rng.standard_normal((1, 3, 128, 128)))
    fine = estimate_noise_level(x)[0]
    w = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype).view(1, 3, 1, 1)
    means = torch.nn.functional.avg_pool2d((x * w).sum(1, keepdim=True), 2)[0, 0].numpy()
    coarse = 2 * _lower_median(_coarse_hh(means)) / MAD / float(w.norm())
    assert fine == pytest.approx(0.03, rel=0.08) and coarse == pytest.approx(0.03, rel=0.15)
    assert estimate_noise_level(x, compression=True)[0] == pytest.approx(max(fine, COARSE_BAND_WEIGHT * coarse),
                                                                       rel=1e-12)


def _jpeg(y: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float64) / 255


@pytest.mark.parametrize("quality", [75, 90])
def test_a_noisy_jpeg_is_read_near_the_noise_added_before_coding(quality):
    """A smooth (blurred-looking) photo with σ = 0.04 of noise, then JPEG: the finest band has
    lost much of the noise, the coarser band little (at quality 75, a fifth of it)."""
    rng = np.random.default_rng(quality)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    clean = np.stack([0.5 + 0.2 * np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)], axis=-1)
    y = _jpeg(clean + 0.04 * rng.standard_normal(clean.shape), quality)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    fine, aware = estimate_noise_level(t)[0], estimate_noise_level(t, compression=True)[0]
    assert fine < 0.75 * 0.04  # measured 0.22 σ (quality 75), 0.73 σ (90)
    assert 0.7 * 0.04 < aware < 1.3 * 0.04, (fine, aware)  # 0.73 σ, 1.01 σ


def test_clipped_four_by_four_blocks_leave_the_coarse_median():
    rng = np.random.default_rng(4)
    means = 0.4 + 0.1 * rng.random((20, 20))
    x = _constant_blocks(means)  # 40 × 40: 100 blocks of 4 × 4
    x[:8, :] = 1.0  # the first two rows of 4×4 blocks clipped
    x[9, 13] = 0.98  # one pixel at the threshold clips its 4×4 block (rows 8–11, columns 12–15)
    t = torch.from_numpy(x[None, None])
    m = x.reshape(20, 2, 20, 2).mean(axis=(1, 3))  # the 2×2 block means
    hh = _coarse_hh(m).reshape(10, 10)
    kept = np.ones((10, 10), bool)
    kept[:2] = False
    kept[2, 3] = False
    assert kept.sum() == 79
    with monkeypatch_min_blocks(79):
        got = estimate_noise_level(t, saturation=0.98, compression=True)[0]
    assert got == pytest.approx(COARSE_BAND_WEIGHT * 2 * _lower_median(hh[kept]) / MAD, rel=1e-12)
    assert got != pytest.approx(COARSE_BAND_WEIGHT * 2 * _lower_median(hh.ravel()) / MAD, rel=1e-3)
    with monkeypatch_min_blocks(80):  # too few unclipped blocks: all of them are used
        assert estimate_noise_level(t, saturation=0.98, compression=True)[0] == pytest.approx(
            COARSE_BAND_WEIGHT * 2 * _lower_median(hh.ravel()) / MAD, rel=1e-12)


def test_a_channel_clipped_alone_leaves_the_luma_block_out():
    rng = np.random.default_rng(5)
    means = 0.3 + 0.2 * rng.random((3, 20, 20))
    x = _constant_blocks(means)
    x[2, :12, :] = 1.0  # blue clipped in the first three rows of 4×4 blocks
    t = torch.from_numpy(x[None])
    luma = np.tensordot(np.array(LUMA_WEIGHTS), x[:, 0::2, 0::2], axes=1)
    hh = _coarse_hh(luma).reshape(10, 10)
    expected = 2 * _lower_median(hh[3:].ravel()) / MAD / np.linalg.norm(LUMA_WEIGHTS)
    with monkeypatch_min_blocks(64):
        assert estimate_noise_level(t, saturation=0.98, compression=True)[0] == pytest.approx(
            COARSE_BAND_WEIGHT * expected, rel=1e-12)


def test_images_under_four_by_four_get_the_fine_estimate():
    rng = np.random.default_rng(6)
    for shape in ((1, 3, 3, 9), (1, 1, 9, 2), (2, 1, 2, 2)):
        t = torch.from_numpy(rng.random(shape))
        assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)


def test_compression_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^compression must be True or False, got 'yes'$"):
        estimate_noise_level(torch.zeros(1, 1, 8, 8), compression="yes")


def test_deblur_estimates_with_compression_then_fine_band_only(monkeypatch):
    """The photo's own estimate reads the coarser band too; a later global iteration's, on the
    deblurred result, only the finest."""
    rng = np.random.default_rng(7)
    y = _constant_blocks(0.3 + 0.4 * rng.random((3, 16, 20))).transpose(1, 2, 0).astype(np.float32)
    rec = RecordingHQS(out=lambda z: z)  # returns its input: the second estimate sees the same image
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    res = deblur(y, iterations=2, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0, safeguard=False)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    aware = estimate_noise_level(t, saturation=0.98, compression=True)[0]
    assert aware > 0 and estimate_noise_level(t, saturation=0.98)[0] == pytest.approx(0.0, abs=1e-7)
    assert res.noise_level == [pytest.approx(aware, rel=1e-6)]
    assert [c["noise_level"] for c in rec.calls] == [pytest.approx(aware, rel=1e-6), pytest.approx(0.0, abs=1e-7)]


def test_deblur_shake_estimates_with_compression(monkeypatch):
    import pnpdeblur as pd

    rng = np.random.default_rng(8)
    y = _constant_blocks(0.3 + 0.4 * rng.random((24, 24)))
    res = pd.deblur_shake(y, 5, kernel=np.full((3, 3), 1 / 9), noise_floor=0.0, safeguard=False)
    t = torch.from_numpy(y)[None, None]
    assert res.noise_level == [pytest.approx(estimate_noise_level(t, saturation=0.98, compression=True)[0])]
    assert res.noise_level[0] > 0 == estimate_noise_level(t)[0]

