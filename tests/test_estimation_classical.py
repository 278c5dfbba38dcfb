"""Classical blind estimate of a global linear motion blur (2-D power cepstrum).

Tolerances come from measurement (σ = 0.005 noise, 256² and 200×300 crops): on the
photos below every case is recovered within 0.1 px (sub-pixel 12.5, 4.3: 0.2-0.4 px); 1.0 px per case
still fails for swapped u/v, a wrong sign of v relative to u, or a length off by a factor.
"""
import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.data import sample_image
from pnpdeblur.estimation.classical import estimate_flow_classical, estimate_linear_motion

SIGMA = 0.005


def _blur(img: np.ndarray, m, seed: int = 0) -> np.ndarray:
    h, w = img.shape[:2]
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = m
    y = pd.MotionBlur(flow)(img) if tuple(m) != (0, 0) else img.copy()
    noise = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    return np.clip(y + SIGMA * noise, 0.0, 1.0)


def _err(est, m) -> float:
    """End-point error with m ≡ -m (same line kernel)."""
    e, m = np.asarray(est, float), np.asarray(m, float)
    return float(min(np.linalg.norm(e - m), np.linalg.norm(e + m)))


_IMAGES = {}


def _image(name, size):
    key = (name, size)
    if key not in _IMAGES:
        _IMAGES[key] = sample_image(name, size, channels=3)
    return _IMAGES[key]


CASES = [(15, 0), (0, 12), (10, -10), (20, 7)]
PHOTOS = [("astronaut", 256), ("camera", 256), ("coffee", 256), ("coffee", (200, 300))]


@pytest.mark.parametrize("name,size", PHOTOS)
def test_recovers_uniform_motion(name, size):
    img = _image(name, size)
    errs = []
    for i, m in enumerate(CASES):
        u, v = estimate_linear_motion(_blur(img, m, seed=i))
        assert isinstance(u, float) and isinstance(v, float)
        assert u >= 0  # canonical
        errs.append(_err((u, v), m))
    assert max(errs) < 1.0, errs
    assert np.mean(errs) < 0.5, errs


def test_sign_axis_and_length_are_exact():
    img = _image("astronaut", 256)
    # (10, -10): the sign of v relative to u matters; (-10, 10) is the same kernel
    u, v = estimate_linear_motion(_blur(img, (-10, 10)))
    assert abs(u - 10) < 1 and abs(v + 10) < 1
    # u/v not swapped, length not scaled
    u, v = estimate_linear_motion(_blur(img, (15, 0)))
    assert abs(u - 15) < 1 and abs(v) < 1
    u, v = estimate_linear_motion(_blur(img, (0, -12)))  # near u = 0 either sign of v is canonical
    assert 0 <= u < 1 and abs(abs(v) - 12) < 1


def test_subpixel_and_odd_even_lengths():
    img = _image("camera", 256)
    assert _err(estimate_linear_motion(_blur(img, (12.5, 4.3))), (12.5, 4.3)) < 0.5
    # docs/conventions.md kernels: (7, 0) is 7 taps of 1/7, (6, 0) is [.5 1 1 1 1 1 .5]/6 -> |m| exactly
    assert _err(estimate_linear_motion(_blur(img, (7, 0))), (7, 0)) < 0.5
    assert _err(estimate_linear_motion(_blur(img, (6, 0))), (6, 0)) < 0.5


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_no_blur_gives_near_zero(name):
    u, v = estimate_linear_motion(_blur(_image(name, 256), (0, 0), seed=7))
    assert np.hypot(u, v) < 1.5


def test_min_score_zero_returns_strongest_peak():
    y = _blur(_image("camera", 256), (0, 0), seed=7)
    u, v = estimate_linear_motion(y, min_score=0)
    assert np.hypot(u, v) > 2.5  # some peak, never inside the excluded origin


def test_max_len_caps_search():
    y = _blur(_image("astronaut", 256), (30, 0))
    assert _err(estimate_linear_motion(y), (30, 0)) < 1.0
    u, v = estimate_linear_motion(y, max_len=20)
    assert np.hypot(u, v) <= 20.5


def test_layouts_types_and_dtypes():
    img = _image("astronaut", 256)
    y = _blur(img, (15, 0))
    ref = estimate_linear_motion(y)

    # numpy (H, W, C) -> numpy (2, H, W), constant, float32
    f = estimate_flow_classical(y)
    assert isinstance(f, np.ndarray) and f.shape == (2, 256, 256) and f.dtype == np.float32
    assert np.all(f[0] == ref[0]) and np.all(f[1] == ref[1])

    # torch (C, H, W) float64 -> torch (2, H, W) float64, same estimate
    t = torch.from_numpy(y.transpose(2, 0, 1).copy()).double()
    ft = estimate_flow_classical(t)
    assert isinstance(ft, torch.Tensor) and ft.shape == (2, 256, 256) and ft.dtype == torch.float64
    assert _err(ft[:, 0, 0].numpy(), ref) < 1e-4
    assert _err(estimate_linear_motion(t), ref) < 1e-4

    # grey (H, W) and uint8
    grey = y @ np.array([0.2125, 0.7154, 0.0721], np.float32)
    assert _err(estimate_linear_motion(grey), (15, 0)) < 1.0
    u8 = np.round(y * 255).astype(np.uint8)
    assert _err(estimate_linear_motion(u8), (15, 0)) < 1.0
    fu8 = estimate_flow_classical(u8)
    assert fu8.dtype == np.float32 and fu8.shape == (2, 256, 256)


def test_batch_is_per_image():
    img = _image("coffee", 256)
    ms = [(15, 0), (0, 12)]
    batch = torch.stack([torch.from_numpy(_blur(img, m, seed=i).transpose(2, 0, 1).copy())
                         for i, m in enumerate(ms)])
    f = estimate_flow_classical(batch)
    assert isinstance(f, torch.Tensor) and f.shape == (2, 2, 256, 256) and f.dtype == torch.float32
    for i, m in enumerate(ms):
        assert _err(f[i, :, 5, 9].numpy(), m) < 1.0
        assert torch.all(f[i] == f[i, :, :1, :1])
    # single-vector function refuses a batch of several, accepts a batch of one
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(batch)
    assert _err(estimate_linear_motion(batch[:1]), ms[0]) < 1.0
    assert estimate_flow_classical(batch[:1]).shape == (1, 2, 256, 256)


def test_bad_input():
    good = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    bad = good.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(bad)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="image"):
        estimate_flow_classical(bad)
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(np.zeros((0, 32), np.float32))
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(np.zeros(64, np.float32))
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(np.zeros((1, 1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="image"):
        estimate_linear_motion(np.zeros((8, 8), np.float32))  # too small
    with pytest.raises(TypeError, match="image"):
        estimate_linear_motion(good.tolist())
    with pytest.raises(TypeError, match="image"):
        estimate_linear_motion(good.astype(np.int64))
    with pytest.raises(ValueError, match="max_len"):
        estimate_linear_motion(good, max_len=0)
    with pytest.raises(ValueError, match="max_len"):
        estimate_linear_motion(good, max_len=2.5)
    with pytest.raises(ValueError, match="method"):
        estimate_linear_motion(good, method="radon")
    with pytest.raises(ValueError, match="min_score"):
        estimate_flow_classical(good, min_score=float("nan"))


def test_constant_image_is_unblurred():
    assert estimate_linear_motion(np.full((64, 64), 0.5, np.float32)) == (0.0, 0.0)
