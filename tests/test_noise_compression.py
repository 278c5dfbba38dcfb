"""estimate_noise_level(compression=True): the JPEG test on the chroma and the coarser luma band
against closed forms, on JPEG and PNG photos against the noise added before storage, and its use
by pd.deblur and pd.deblur_shake."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import pnpdeblur as pd
import pnpdeblur.solvers
from _flow_standins import StandInSEN
from pnpdeblur import pipeline
from pnpdeblur.pipeline import COARSE_BAND_WEIGHT, YCBCR_WEIGHTS, estimate_noise_level
from test_pipeline_direct import PRIOR, RecordingHQS, deblur, monkeypatch_min_blocks

MAD = 0.6744897501960817
YCC = np.array(YCBCR_WEIGHTS)
FINE = 1e-4  # amplitude of the fine checker: each 2×2 block's diagonal detail is 2 FINE


def _hh(a: np.ndarray) -> np.ndarray:
    """|diagonal detail| of the 2×2 blocks of ``a`` (h, w) (odd edges left out), flat."""
    a = a[: a.shape[0] // 2 * 2, : a.shape[1] // 2 * 2]
    return np.abs(a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]).ravel() / 2


def _lower_median(v: np.ndarray) -> float:
    return float(np.sort(v)[(v.size - 1) // 2])  # torch's median of an even count


def _coded_like(means: np.ndarray) -> np.ndarray:
    """(3, 2h, 2w): each channel's ``means`` (3, h, w) over 2×2 blocks, plus the same fine checker
    in every channel: luma detail in the finest band, none in the chroma (whose rows sum to 0) —
    the signature of 4:2:0 coding."""
    x = np.repeat(np.repeat(means, 2, axis=-2), 2, axis=-1)
    checker = FINE * np.where((np.add.outer(np.arange(x.shape[-2]), np.arange(x.shape[-1])) % 2) == 0, 1.0, -1.0)
    return x + checker


def _coarse_luma(x: np.ndarray) -> float:
    """The coarse-band rule by hand: luma of the 2×2 block means, its diagonal detail, ×2 / gain."""
    h, w = x.shape[-2] // 4 * 4, x.shape[-1] // 4 * 4
    means = x[:, :h, :w].reshape(3, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    luma = np.tensordot(YCC[0], means, axes=1)
    return 2 * _lower_median(_hh(luma)) / MAD / np.linalg.norm(YCC[0])


def _fine(x: np.ndarray) -> float:
    return float(np.mean([_lower_median(_hh(c)) for c in x]) / MAD)


def test_the_transform_is_bt601s():
    assert YCBCR_WEIGHTS[0] == (0.299, 0.587, 0.114)
    assert np.allclose(YCC[1:].sum(axis=1), 0, atol=1e-12)  # chroma has no grey content
    assert 0 < COARSE_BAND_WEIGHT < 1 and 0 < pipeline.CHROMA_NOISE_RATIO < 1


def test_a_coded_looking_photo_gets_the_larger_of_the_fine_and_the_weighted_coarse_estimate():
    rng = np.random.default_rng(0)
    x = _coded_like(rng.random((3, 11, 15)))  # 22 × 30: the coarse band reads the first 20 × 28
    t = torch.from_numpy(x[None])
    fine = _fine(x)
    assert fine == pytest.approx(2 * FINE / MAD, rel=1e-9)
    assert estimate_noise_level(t) == pytest.approx([fine], rel=1e-12)
    expected = max(fine, COARSE_BAND_WEIGHT * _coarse_luma(x))
    assert expected > 100 * fine
    assert estimate_noise_level(t, compression=True) == pytest.approx([expected], rel=1e-12)
    # the luma's weights, not the channel mean: swapping red and blue changes the result
    swapped = torch.from_numpy(x[::-1].copy()[None])
    assert estimate_noise_level(swapped, compression=True)[0] == pytest.approx(
        COARSE_BAND_WEIGHT * _coarse_luma(x[::-1]), rel=1e-12)
    assert _coarse_luma(x[::-1]) != pytest.approx(_coarse_luma(x), rel=1e-3)


def test_the_fine_estimate_wins_when_it_is_larger():
    rng = np.random.default_rng(1)
    x = _coded_like(0.5 + 1e-5 * rng.random((3, 8, 8)))  # almost no coarse detail
    t = torch.from_numpy(x[None])
    assert COARSE_BAND_WEIGHT * _coarse_luma(x) < _fine(x)
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)


def test_the_chroma_test_against_its_threshold(monkeypatch):
    """Coded when the chroma's fine-band noise (Cb and Cr averaged, each over the std white noise
    gives it) is below CHROMA_NOISE_RATIO times the luma's; equality is not coded."""
    rng = np.random.default_rng(2)
    x = _coded_like(rng.random((3, 12, 12))) + 1e-3 * rng.standard_normal((3, 24, 24))
    ycc = np.tensordot(YCC, x, axes=1)
    fine = [_lower_median(_hh(p)) / MAD / np.linalg.norm(row) for p, row in zip(ycc, YCC)]
    ratio = (fine[1] + fine[2]) / 2 / fine[0]
    t = torch.from_numpy(x[None])
    plain = estimate_noise_level(t)
    coded = [max(plain[0], COARSE_BAND_WEIGHT * _coarse_luma(x))]
    assert coded[0] > 2 * plain[0]
    monkeypatch.setattr(pipeline, "CHROMA_NOISE_RATIO", ratio * (1 + 1e-9))
    assert estimate_noise_level(t, compression=True) == pytest.approx(coded, rel=1e-12)
    monkeypatch.setattr(pipeline, "CHROMA_NOISE_RATIO", ratio * (1 - 1e-9))
    assert estimate_noise_level(t, compression=True) == plain


def test_white_noise_in_every_channel_is_not_read_as_coded():
    rng = np.random.default_rng(3)
    x = _coded_like(rng.random((3, 16, 16))) + 0.01 * rng.standard_normal((3, 32, 32))
    t = torch.from_numpy(x[None])
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)
    assert COARSE_BAND_WEIGHT * _coarse_luma(x) > 2 * estimate_noise_level(t)[0]  # it would have mattered


def test_each_image_of_a_batch_is_judged_alone():
    rng = np.random.default_rng(4)
    coded = _coded_like(rng.random((3, 8, 8)))
    noisy = coded + 0.01 * rng.standard_normal(coded.shape)
    t = torch.from_numpy(np.stack([noisy, coded]))
    got = estimate_noise_level(t, compression=True)
    assert got == [estimate_noise_level(t[:1])[0], estimate_noise_level(t[1:], compression=True)[0]]
    assert got[1] == pytest.approx(COARSE_BAND_WEIGHT * _coarse_luma(coded), rel=1e-12)


def test_grey_other_channel_counts_and_small_images_get_the_fine_estimate():
    rng = np.random.default_rng(5)
    x = _coded_like(rng.random((3, 8, 8)))
    for t in (torch.from_numpy(x[:1][None]), torch.from_numpy(np.concatenate([x, x[:1]])[None]),
              torch.from_numpy(x[None, :, :3, :9]), torch.from_numpy(x[None, :, :9, :2])):
        assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)
    big = torch.from_numpy(x[None, :, :4, :4])  # 4×4 is enough
    assert estimate_noise_level(big, compression=True) != estimate_noise_level(big)


def test_clipped_blocks_leave_both_tests():
    """A 4×4 block with a value at or above ``saturation`` in any channel leaves the coarse median;
    the chroma test leaves out the 2×2 blocks with a clipped value in any channel."""
    rng = np.random.default_rng(6)
    x = _coded_like(0.3 + 0.4 * rng.random((3, 20, 20)))  # 40 × 40: 100 blocks of 4 × 4
    x[2, :8, :] = 1.0  # blue clipped over the first two rows of 4×4 blocks
    x[0, 9, 13] = 0.98  # one red value at the threshold clips its block (rows 8–11, columns 12–15)
    t = torch.from_numpy(x[None])
    h, w = 40, 40
    means = x.reshape(3, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    hh = _hh(np.tensordot(YCC[0], means, axes=1)).reshape(10, 10)
    kept = np.ones((10, 10), bool)
    kept[:2] = False
    kept[2, 3] = False
    assert kept.sum() == 79
    gain = np.linalg.norm(YCC[0])
    with monkeypatch_min_blocks(79):
        got = estimate_noise_level(t, saturation=0.98, compression=True)[0]
    assert got == pytest.approx(COARSE_BAND_WEIGHT * 2 * _lower_median(hh[kept]) / MAD / gain, rel=1e-12)
    with monkeypatch_min_blocks(80):  # too few unclipped 4×4 blocks: all of them are used
        every = COARSE_BAND_WEIGHT * 2 * _lower_median(hh.ravel()) / MAD / gain
        assert every != pytest.approx(got, rel=1e-3)
        assert estimate_noise_level(t, saturation=0.98, compression=True)[0] == pytest.approx(
            max(every, estimate_noise_level(t, saturation=0.98)[0]), rel=1e-12)
    # without saturation the clipped blue's flat blocks are in the chroma test too; it still reads coded
    assert estimate_noise_level(t, compression=True)[0] == pytest.approx(
        COARSE_BAND_WEIGHT * 2 * _lower_median(hh.ravel()) / MAD / gain, rel=1e-12)


def test_the_chroma_test_leaves_out_blocks_clipped_in_any_channel():
    """Where green clips, red and blue keep independent noise, which reads as noisy chroma: left
    out (``saturation``), the rest of the photo decides, and it looks coded."""
    rng = np.random.default_rng(7)
    x = _coded_like(0.3 + 0.2 * rng.random((3, 20, 20)))
    x[1, :, :30] = 1.0
    x[[0, 2], :, :30] += 0.02 * rng.standard_normal((2, 40, 30))
    t = torch.from_numpy(np.clip(x, 0, 1)[None])
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)  # noisy chroma: not coded
    with monkeypatch_min_blocks(64):
        fine = estimate_noise_level(t, saturation=0.98)[0]
        assert estimate_noise_level(t, saturation=0.98, compression=True)[0] > 5 * fine  # 0.070 against 0.008


@pytest.mark.parametrize("corner", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_one_clipped_value_takes_its_two_by_two_block_out_of_the_chroma_test(corner):
    """Green clipped at one corner of each 2×2 block of three quarters of the photo makes their
    chroma detail large; with ``saturation`` those blocks leave the test, whichever corner it is."""
    rng = np.random.default_rng(12)
    x = _coded_like(0.3 + 0.2 * rng.random((3, 20, 20)))
    x[1, corner[0]::2, corner[1]:30:2] = 1.0
    t = torch.from_numpy(x[None])
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)  # not coded
    with monkeypatch_min_blocks(64):
        assert estimate_noise_level(t, saturation=0.98, compression=True)[0] > 5 * estimate_noise_level(
            t, saturation=0.98)[0]


def test_a_batch_with_saturation_is_judged_image_by_image():
    rng = np.random.default_rng(13)
    a = _coded_like(0.3 + 0.4 * rng.random((3, 20, 20)))
    a[:, :4, :] = 1.0  # a clipped band: left out of both tests
    b = a + 0.02 * rng.standard_normal(a.shape)  # noisy chroma: not coded
    t = torch.from_numpy(np.clip(np.stack([a, b]), 0, 1))
    with monkeypatch_min_blocks(64):
        got = estimate_noise_level(t, saturation=0.98, compression=True)
        alone = [estimate_noise_level(t[i:i + 1], saturation=0.98, compression=True)[0] for i in range(2)]
        assert got == alone
        assert got[0] > 5 * estimate_noise_level(t[:1], saturation=0.98)[0]
        assert got[1] == estimate_noise_level(t[1:], saturation=0.98)[0]


def test_no_fine_band_detail_at_all_is_no_sign_of_coding():
    """Chroma and luma both without fine-band detail (equal, not below): the fine estimate, 0."""
    rng = np.random.default_rng(11)
    x = np.repeat(np.repeat(rng.random((3, 8, 8)), 2, axis=-2), 2, axis=-1)
    t = torch.from_numpy(x[None])
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t) == [0.0]
    assert _coarse_luma(x) > 0.05


def _jpeg(y: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float64) / 255


def _smooth_photo() -> np.ndarray:
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    return np.stack([0.5 + 0.2 * np.sin(3 * xx + c) * np.cos(2 * yy) for c in range(3)], axis=-1)


@pytest.mark.parametrize("quality", [75, 90])
def test_a_noisy_jpeg_is_read_near_the_noise_added_before_coding(quality):
    """A smooth (blurred-looking) photo with σ = 0.04 of noise, then JPEG (Pillow, 4:2:0): the
    finest band has lost much of the noise, the coarser band little."""
    rng = np.random.default_rng(quality)
    y = _jpeg(_smooth_photo() + 0.04 * rng.standard_normal((128, 128, 3)), quality)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    fine, aware = estimate_noise_level(t)[0], estimate_noise_level(t, compression=True)[0]
    assert fine < 0.75 * 0.04  # measured 0.22 σ (quality 75), 0.73 σ (90)
    assert 0.7 * 0.04 < aware < 1.3 * 0.04, (fine, aware)  # 0.73 σ, 1.01 σ


def test_the_same_photo_as_png_keeps_its_fine_estimate():
    rng = np.random.default_rng(8)
    y = np.round(np.clip(_smooth_photo() + 0.04 * rng.standard_normal((128, 128, 3)), 0, 1) * 255) / 255
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    assert estimate_noise_level(t, compression=True) == estimate_noise_level(t)
    assert estimate_noise_level(t)[0] == pytest.approx(0.04, rel=0.1)


def test_compression_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^compression must be True or False, got 'yes'$"):
        estimate_noise_level(torch.zeros(1, 3, 8, 8), compression="yes")


def test_deblur_estimates_with_compression_then_fine_band_only(monkeypatch):
    """The photo's own estimate may read the coarser band; a later global iteration's, on the
    deblurred result, only the finest."""
    rng = np.random.default_rng(9)
    y = _coded_like(0.3 + 0.4 * rng.random((3, 16, 20))).transpose(1, 2, 0)
    rec = RecordingHQS(out=lambda z: z)  # returns its input: the second estimate sees the same image
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    res = deblur(y, iterations=2, prior=PRIOR, flow_model=StandInSEN((6.0, 0.0)), noise_floor=0.0, safeguard=False)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    aware, fine = (estimate_noise_level(t, saturation=0.98, compression=c)[0] for c in (True, False))
    assert aware > 100 * fine
    assert res.noise_level == [pytest.approx(aware, rel=1e-6)]
    assert [c["noise_level"] for c in rec.calls] == [pytest.approx(aware, rel=1e-6), pytest.approx(fine, rel=1e-3)]


def test_deblur_shake_estimates_with_compression():
    rng = np.random.default_rng(10)
    y = _coded_like(0.3 + 0.4 * rng.random((3, 12, 12))).transpose(1, 2, 0)
    res = pd.deblur_shake(y, 5, kernel=np.full((3, 3), 1 / 9), noise_floor=0.0, safeguard=False)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    aware = estimate_noise_level(t, saturation=0.98, compression=True)[0]
    assert aware > 100 * estimate_noise_level(t)[0]
    assert res.noise_level == [pytest.approx(aware, rel=1e-6)]
