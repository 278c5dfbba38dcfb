"""Direct tests of the classical cepstrum baseline (pnpdeblur.estimation.classical) on small
synthetic images: circular line blurs of white noise with known vectors, a loop-based
reference of the cepstral search and its evidence score, scipy's Tukey window, and the
argument checks' messages."""
import re

import numpy as np
import pytest
import scipy.signal.windows
import torch

from pnpdeblur.estimation.classical import (DEFAULT_MIN_SCORE, METHODS, _cepstrum_estimate, _grey_batch,
                                            _parabola_offset, _tukey, estimate_flow_classical,
                                            estimate_linear_motion)
from pnpdeblur.operators import motion_kernel


def _circular_blur(g, m):
    """``g`` (H, W) circularly convolved with the line kernel of ``m`` (exact zeros in the spectrum)."""
    k = motion_kernel(m)
    r = k.shape[0] // 2
    big = np.zeros_like(g)
    for a in range(k.shape[0]):
        for c in range(k.shape[1]):
            big[(a - r) % g.shape[0], (c - r) % g.shape[1]] += k[a, c]
    return np.real(np.fft.ifft2(np.fft.fft2(g) * np.fft.fft2(big)))


def _noise(shape=(48, 64), seed=0):
    return np.random.default_rng(seed).random(shape)


def _err(est, m):
    e, m = np.asarray(est, float), np.asarray(m, float)
    return float(min(np.linalg.norm(e - m), np.linalg.norm(e + m)))


def _reference(g, max_len):
    """The cepstral estimate written with loops over signed offsets (u, v, score)."""
    h, w = g.shape
    win = np.outer(scipy.signal.windows.tukey(h, 0.25), scipy.signal.windows.tukey(w, 0.25))
    power = np.abs(np.fft.fft2((g - g.mean()) * win)) ** 2
    ceps = np.real(np.fft.ifft2(np.log(power + 0.01 * np.median(power))))
    radius = min(max_len, min(h, w) / 2 - 1)
    best, disc = None, []
    for i in range(h):
        ky = i if i < h / 2 else i - h
        for j in range(w):
            kx = j if j < w / 2 else j - w
            r = np.hypot(kx, ky)
            if 2.5 < r <= radius:
                disc.append((ceps[i, j], int(r // 2)))
                if best is None or ceps[i, j] < best[0]:
                    best = (ceps[i, j], i, j, kx, ky, int(r // 2))
    c0, i, j, kx, ky, ring = best
    values = np.array([c for c, _ in disc])
    med = np.median(values)
    spread = 1.4826 * np.median([abs(c - med) for c, b in disc if b == ring])
    score = -((c0 - med) + (ceps[(2 * ky) % h, (2 * kx) % w] - med)) / spread

    def offset(cm, cp):
        den = cm - 2 * c0 + cp
        return 0.0 if den == 0 else min(0.5, max(-0.5, 0.5 * (cm - cp) / den))

    u = kx + offset(ceps[i, (j - 1) % w], ceps[i, (j + 1) % w])
    v = ky + offset(ceps[(i - 1) % h, j], ceps[(i + 1) % h, j])
    if u < 0 or (u == 0 and v < 0):
        u, v = -u, -v
    return u, v, score


# -- known blurs ------------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [(7, 0), (0, 9), (6, -4), (-5, -5), (10.5, 3.2), (3, 0), (12, 5)])
def test_recovers_a_circular_line_blur_of_white_noise(m):
    y = _circular_blur(_noise(), m)
    u, v = estimate_linear_motion(y)
    assert _err((u, v), m) < 0.35 and u >= 0
    assert isinstance(u, float) and isinstance(v, float)


@pytest.mark.parametrize("m, shape, max_len", [((7, 0), (48, 64), 64), ((6, -4), (48, 64), 64),
                                               ((5, 5), (33, 40), 9), ((12, 5), (48, 64), 13),
                                               ((0, 0), (48, 64), 64), ((9, 2), (40, 41), 5)])
def test_estimate_and_score_equal_the_loop_reference(m, shape, max_len):
    g = _noise(shape, seed=sum(shape))
    y = _circular_blur(g, m) if m != (0, 0) else g
    u, v, score = _cepstrum_estimate(y, max_len)
    ru, rv, rscore = _reference(y, max_len)
    assert (u, v) == pytest.approx((ru, rv), abs=1e-9) and score == pytest.approx(rscore, rel=1e-9)


def test_the_search_disc_is_capped_at_the_cepstrums_nyquist_limit():
    # 32×32: radius min(64, 15); a blur of 14 px is found, one of 17 px is not (aliased)
    g = _noise((32, 32), seed=3)
    assert _err(estimate_linear_motion(_circular_blur(g, (14, 0)), min_score=0), (14, 0)) < 0.5
    u, v, _ = _cepstrum_estimate(_circular_blur(g, (17, 0)), 64)
    assert np.hypot(u, v) <= 15.5
    assert (u, v) == pytest.approx(_reference(_circular_blur(g, (17, 0)), 64)[:2], abs=1e-9)


def test_evidence_threshold_is_inclusive():
    y = _circular_blur(_noise(), (7, 0))
    u, v, score = _cepstrum_estimate(y, 64)
    assert score > DEFAULT_MIN_SCORE
    assert estimate_linear_motion(y, min_score=score) == (u, v)
    assert estimate_linear_motion(y, min_score=np.nextafter(score, np.inf)) == (0.0, 0.0)
    sharp = _noise(seed=9)
    s_u, s_v, s_score = _cepstrum_estimate(sharp, 64)
    assert s_score < DEFAULT_MIN_SCORE and estimate_linear_motion(sharp) == (0.0, 0.0)
    assert estimate_linear_motion(sharp, min_score=0) == (s_u, s_v) != (0.0, 0.0)
    assert estimate_linear_motion(sharp, min_score=int(np.floor(s_score))) == (s_u, s_v)


def test_featureless_images_give_no_evidence():
    assert _cepstrum_estimate(np.full((20, 20), 0.5), 64) == (0.0, 0.0, 0.0)
    # flat images whose mean is not exact in binary (0.3, uint8 77): the mean's rounding residue
    # is no evidence (it used to be tapered into the window's spectrum and read as a 9-17 px blur)
    for size in (64, 128):
        assert _cepstrum_estimate(np.full((size, size), 0.3), 64) == (0.0, 0.0, 0.0)
        assert estimate_linear_motion(np.full((size, size), 77, np.uint8), min_score=0) == (0.0, 0.0)
        f = estimate_flow_classical(torch.full((2, 1, size, size), 0.1, dtype=torch.float64))
        assert torch.equal(f, torch.zeros(2, 2, size, size, dtype=torch.float64))
    # the smallest real variation is still measured: a faint blurred texture
    faint = 0.3 + 1e-6 * _circular_blur(_noise(), (7, 0))
    assert _err(estimate_linear_motion(faint), (7, 0)) < 0.35
    # a search disc with nothing in it (radius ≤ 2.5 px): 16 px images with max_len 2
    assert _cepstrum_estimate(_noise((16, 16)), 2) == (0.0, 0.0, 0.0)
    assert estimate_linear_motion(_noise((16, 16)), max_len=2, min_score=0) == (0.0, 0.0)


# -- helpers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 2, 3, 8, 17, 64])
def test_tukey_window_equals_scipys(n):
    np.testing.assert_allclose(_tukey(n, 0.25), scipy.signal.windows.tukey(n, 0.25), atol=1e-15)
    np.testing.assert_allclose(_tukey(n, 0.6), scipy.signal.windows.tukey(n, 0.6), atol=1e-15)


def test_parabola_offset_by_hand():
    assert _parabola_offset(1.0, 0.0, 1.0) == 0.0
    assert _parabola_offset(2.0, 0.0, 1.0) == pytest.approx(1 / 6)   # 0.5·(2 − 1)/(2 + 1)
    assert _parabola_offset(1.0, 0.0, 2.0) == pytest.approx(-1 / 6)
    assert _parabola_offset(3.0, 3.0, 3.0) == 0.0                    # flat: no curvature
    assert _parabola_offset(10.0, 0.0, -9.0) == 0.5                  # clipped to half a sample
    assert _parabola_offset(-9.0, 0.0, 10.0) == -0.5
    assert isinstance(_parabola_offset(2.0, 0.0, 1.0), float)


def test_grey_batch_layouts_luminance_and_batch_flag():
    rng = np.random.default_rng(0)
    rgb = rng.random((16, 20, 3))
    luma = rgb @ np.array([0.2125, 0.7154, 0.0721])
    g, kind, batch = _grey_batch(rgb)
    assert kind == "numpy" and batch is None and g.shape == (1, 16, 20) and g.dtype == np.float64
    np.testing.assert_allclose(g[0], luma, atol=1e-12)
    rgba = np.concatenate([rgb, rng.random((16, 20, 1))], 2)  # alpha ignored
    np.testing.assert_allclose(_grey_batch(rgba)[0][0], luma, atol=1e-12)
    t = torch.from_numpy(rgb.transpose(2, 0, 1).copy())  # torch (C, H, W)
    g_t, kind_t, batch_t = _grey_batch(t)
    assert kind_t == "torch" and batch_t is None
    np.testing.assert_allclose(g_t[0], luma, atol=1e-12)
    grey = torch.from_numpy(rng.random((3, 1, 16, 20)))  # a batch of 3 grey images
    g2, _, batch2 = _grey_batch(grey)
    assert batch2 == 3 and g2.shape == (3, 16, 20)
    np.testing.assert_array_equal(g2, grey.numpy()[:, 0])
    over = np.full((16, 16), 1.2)  # noise's overshoot is clipped, as every photo entry point does
    np.testing.assert_array_equal(_grey_batch(over)[0], 1.0)
    u8 = np.full((16, 16), 51, np.uint8)
    np.testing.assert_allclose(_grey_batch(u8)[0], 0.2, atol=1e-12)
    for dt in (torch.float16, torch.bfloat16):
        np.testing.assert_allclose(_grey_batch(torch.full((16, 16), 0.5, dtype=dt))[0], 0.5)


def test_grey_batch_messages():
    with pytest.raises(TypeError, match=r"^image must be uint8 or float, got dtype int32 \(divide 16-bit"):
        _grey_batch(np.zeros((16, 16), np.int32))
    with pytest.raises(ValueError, match=r"^image must be \(H, W\), \(H, W, C\) / \(C, H, W\) or \(N, C, H, W\), "
                                         r"got shape \(16,\)$"):
        _grey_batch(np.zeros(16, np.float32))
    with pytest.raises(ValueError, match=r"^image must be .* got shape \(1, 1, 1, 16, 16\)$"):
        _grey_batch(np.zeros((1, 1, 1, 16, 16), np.float32))
    # the rule of pd.estimate_flow and every photo entry point: grey + alpha, or 5 bands, are
    # not averaged into a luminance (alpha would darken it)
    for shape in ((16, 16, 2), (16, 16, 5), (2, 2, 16, 16)):
        with pytest.raises(ValueError, match=r"^image must have 1, 3 or 4 channels, got (2|5) "):
            _grey_batch(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match=r"^image has values in \[255, 255\]; float images must lie in \[0, 1\]"):
        _grey_batch(np.full((16, 16), 255.0))
    with pytest.raises(ValueError, match=r"^image is empty \(shape \(0, 16, 3\)\)$"):
        _grey_batch(np.zeros((0, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"^image must be at least 16x16 pixels, got \(H, W\) = \(15, 16\) "
                                         r"from shape \(15, 16\)$"):
        _grey_batch(np.zeros((15, 16), np.float32))
    with pytest.raises(ValueError, match=r"^image must be at least 16x16 pixels, got \(H, W\) = \(16, 15\)"):
        _grey_batch(np.zeros((16, 15), np.float32))
    assert _grey_batch(np.zeros((16, 16), np.float32))[0].shape == (1, 16, 16)
    for bad in (np.nan, np.inf):
        a = np.zeros((16, 16), np.float32)
        a[2, 3] = bad
        with pytest.raises(ValueError, match=r"^image contains NaN or Inf values$"):
            _grey_batch(a)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8", None])
def test_max_len_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"^max_len must be a positive int \(pixels\), got " + re.escape(repr(bad))):
        estimate_linear_motion(_noise((16, 16)), max_len=bad)


def test_max_len_accepts_numpy_ints_and_one():
    assert estimate_linear_motion(_noise((16, 16)), max_len=np.int64(1)) == (0.0, 0.0)  # empty disc


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), True, "6", None])
def test_min_score_must_be_finite_and_non_negative(bad):
    with pytest.raises(ValueError, match=r"^min_score must be a finite number >= 0, got " + re.escape(repr(bad))):
        estimate_flow_classical(_noise((16, 16)), min_score=bad)


def test_method_must_be_known():
    assert METHODS == ("cepstrum",)
    with pytest.raises(ValueError, match=r"^method must be one of \('cepstrum',\), got 'radon'$"):
        estimate_linear_motion(_noise((16, 16)), method="radon")
    with pytest.raises(ValueError, match=r"^image must be a single image, got a batch of 2 "
                                         r"\(use estimate_flow_classical for batches\)$"):
        estimate_linear_motion(np.zeros((2, 1, 16, 16), np.float32))


# -- the flow map ---------------------------------------------------------------------------------

def test_flow_map_is_the_vector_everywhere_in_the_callers_type():
    y = _circular_blur(_noise(), (7, 3))
    vec = estimate_linear_motion(y)
    f = estimate_flow_classical(y)  # float64 numpy (H, W) in, float64 (2, H, W) out
    assert isinstance(f, np.ndarray) and f.shape == (2, 48, 64) and f.dtype == np.float64
    assert np.all(f[0] == vec[0]) and np.all(f[1] == vec[1])
    t = torch.from_numpy(np.stack([y, _noise(seed=9)]))[:, None].half()  # a batch, float16 -> float32
    ft = estimate_flow_classical(t, min_score=0)
    assert isinstance(ft, torch.Tensor) and ft.dtype == torch.float32 and ft.shape == (2, 2, 48, 64)
    assert _err(ft[0, :, 7, 11], (7, 3)) < 0.5 and ft.is_contiguous()
    assert torch.all(ft[1] == ft[1, :, :1, :1]) and float(ft[1].abs().max()) > 0
    f32 = estimate_flow_classical(torch.from_numpy(y).float(), max_len=5)  # blur longer than the search
    assert f32.dtype == torch.float32 and f32.shape == (2, 48, 64)


def test_the_default_search_radius_is_64_px():
    y = _circular_blur(_noise((136, 136)), (64.9, 0))
    assert estimate_linear_motion(y) == (0.0, 0.0)  # beyond the default disc: nothing stands out
    assert _err(estimate_linear_motion(y, max_len=65), (64.9, 0)) < 0.35
    assert np.all(estimate_flow_classical(y) == 0)
    assert _err(estimate_flow_classical(y, max_len=65)[:, 0, 0], (64.9, 0)) < 0.35


def test_public_messages_name_the_image_argument():
    for fn in (estimate_linear_motion, estimate_flow_classical):
        with pytest.raises(ValueError, match=r"^image must be at least 16x16 pixels"):
            fn(np.zeros((15, 16), np.float32))
        with pytest.raises(TypeError, match=r"^image must be uint8 or float, got dtype int16"):
            fn(np.zeros((16, 16), np.int16))


def test_no_evidence_where_the_taper_leaves_nothing_or_the_level_is_large():
    # variation only on the outermost pixels (zero-sum, so the interior is the mean): the Tukey
    # window is 0 there, the tapered image is exactly 0 and its power spectrum has no floor
    g = np.full((20, 20), 0.5)
    border = np.zeros((20, 20), bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    g[border] = 0.5 + np.where(np.arange(border.sum()) % 2 == 0, 0.25, -0.25)
    assert _cepstrum_estimate(g, 64) == (0.0, 0.0, 0.0)
    assert estimate_linear_motion(g, min_score=0) == (0.0, 0.0)
    # the flatness test is relative to the image's level: a flat 1000.3 has a residue of ~2e-13
    assert _cepstrum_estimate(np.full((64, 64), 1000.3), 64) == (0.0, 0.0, 0.0)
