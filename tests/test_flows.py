"""Motion-flow synthesis: presets, integer labels, canonical sign, determinism, model."""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.data import (
    CameraMotion,
    canonicalize_flow,
    random_motion_flow,
    random_motion_flows,
    sample_camera_motion,
    sample_image,
    sample_images,
)


@pytest.mark.parametrize("preset,bound", [("23", 23), ("46", 46), (23, 23)])
def test_presets_ranges_integer_canonical(preset, bound):
    reached = 0.0
    for seed in range(40):
        f = random_motion_flow((48, 64), preset=preset, seed=seed)
        assert f.shape == (2, 48, 64) and f.dtype == np.float32
        assert np.all(np.isfinite(f))
        assert np.array_equal(f, np.rint(f))
        assert np.abs(f).max() <= bound
        u, v = f
        assert np.all(u >= 0)
        assert np.all(v[u == 0] >= 0)
        reached = max(reached, np.abs(f).max())
    # the range is actually used, not just respected
    assert reached >= 0.8 * bound


def test_max_len_overrides_preset():
    f = random_motion_flow((32, 32), preset="46", max_len=5, seed=3)
    assert np.abs(f).max() <= 5


def test_same_seed_same_sample_different_seed_differs():
    a = random_motion_flow((40, 50), "46", seed=11)
    b = random_motion_flow((40, 50), "46", seed=11)
    c = random_motion_flow((40, 50), "46", seed=12)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(random_motion_flow((8, 8), seed=g1), random_motion_flow((8, 8), seed=g2))


def test_pure_translation_is_constant():
    f = random_motion_flow((30, 40), "23", seed=2, rotation_prob=0, zoom_prob=0, acceleration=0)
    m = sample_camera_motion((30, 40), 23, seed=2, rotation_prob=0, zoom_prob=0, acceleration=0)
    t = np.array(m.translation)
    if t[0] < 0 or (t[0] == 0 and t[1] < 0):
        t = -t
    assert np.all(f[0] == np.rint(t[0])) and np.all(f[1] == np.rint(t[1]))


def test_rotation_closed_form():
    # 90 degrees about (0, 0): (x, y) -> (-y, x), displacement (-y - x, x - y)
    m = CameraMotion((0.0, 0.0), (1.0, 0.0), 0.0, math.pi / 2, (0.0, 0.0), 0.0, (0.0, 0.0), 1000)
    f = m.continuous_flow((4, 5))
    y, x = np.mgrid[0:4, 0:5]
    np.testing.assert_allclose(f[0], -y - x, atol=1e-12)
    np.testing.assert_allclose(f[1], x - y, atol=1e-12)


def test_zoom_and_acceleration_closed_form():
    m = CameraMotion((2.0, 0.0), (1.0, 0.0), 0.5, 0.0, (0.0, 0.0), 0.1, (2.0, 1.0), 1000)
    f = m.continuous_flow((3, 5))
    y, x = np.mgrid[0:3, 0:5]
    xn = x / 4 - 0.5
    np.testing.assert_allclose(f[0], 2.0 * (1 + 0.5 * xn) + 0.1 * (x - 2.0), atol=1e-12)
    np.testing.assert_allclose(f[1], 0.1 * (y - 1.0), atol=1e-12)


def test_shrink_keeps_direction():
    m = CameraMotion((60.0, 30.0), (1.0, 0.0), 0.0, 0.0, (0.0, 0.0), 0.0, (0.0, 0.0), 20)
    f = m.flow((2, 2), integer=False, canonical=False)
    np.testing.assert_allclose(f[:, 0, 0], [20.0, 10.0])


def test_flows_vary_spatially_with_rotation():
    f = random_motion_flow((64, 64), "46", seed=0, rotation_prob=1, zoom_prob=0)
    assert len(np.unique(f.reshape(2, -1), axis=1).T) > 10


def test_canonicalize_numpy_and_torch():
    f = np.array([[-3.0, 0.0, 0.0, 2.0], [1.0, -2.0, 4.0, -5.0]]).reshape(2, 1, 4)
    want = np.array([[3.0, 0.0, 0.0, 2.0], [-1.0, 2.0, 4.0, -5.0]]).reshape(2, 1, 4)
    np.testing.assert_array_equal(canonicalize_flow(f), want)
    t = canonicalize_flow(torch.tensor(f[None], dtype=torch.float64))
    assert t.shape == (1, 2, 1, 4)
    np.testing.assert_array_equal(t[0].numpy(), want)
    with pytest.raises(ValueError):
        canonicalize_flow(np.zeros((3, 4, 4)))


def test_batch_helper_reproducible_and_bounded():
    a = random_motion_flows(3, (16, 20), "46", seed=4)
    b = random_motion_flows(5, (16, 20), "46", seed=4)
    assert a.shape == (3, 2, 16, 20) and a.dtype == torch.float32
    assert torch.equal(a, b[:3])
    assert not torch.equal(a[0], a[1])
    assert a.abs().max() <= 46 and (a[:, 0] >= 0).all()


@pytest.mark.parametrize("kwargs,exc", [
    (dict(preset="12"), ValueError),
    (dict(max_len=-1), ValueError),
    (dict(shape=(0, 4)), ValueError),
    (dict(seed="x"), TypeError),
    (dict(rotation_prob=1.5), ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        random_motion_flow(**{"shape": (8, 8), **kwargs})


def test_sample_images():
    names = sample_images()
    assert {"astronaut", "camera", "coffee"} <= set(names)
    a = sample_image("astronaut")
    assert a.shape == (512, 512, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.1
    c = sample_image("camera", size=(40, 60))
    assert c.shape == (40, 60, 1)
    assert sample_image("camera", size=32, channels=3).shape == (32, 32, 3)
    assert sample_image("coffee", channels=1).shape[2] == 1
    with pytest.raises(ValueError):
        sample_image("nope")
    with pytest.raises(ValueError):
        sample_image("camera", size=(0, 3))


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 40), w=st.integers(1, 40),
       preset=st.sampled_from(["23", "46"]), rot=st.floats(0, 1), zoom=st.floats(0, 1))
def test_property_preset_bounds(seed, h, w, preset, rot, zoom):
    f = random_motion_flow((h, w), preset, seed=seed, rotation_prob=rot, zoom_prob=zoom)
    assert f.shape == (2, h, w)
    assert np.abs(f).max() <= int(preset)
    assert np.array_equal(f, np.rint(f))
    assert np.all((f[0] > 0) | ((f[0] == 0) & (f[1] >= 0)))
    assert not np.signbit(f).any() or np.all(f[np.signbit(f)] < 0)  # no negative zeros


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_canonicalize_flow_keeps_the_dtype(dtype):
    # integer labels used to come back as float64 (numpy) / float32 (torch)
    f = np.array([[[0, -1, 4]], [[-2, 3, 0]]], dtype=dtype)
    want = np.array([[[0, 1, 4]], [[2, -3, 0]]], dtype=dtype)
    out = canonicalize_flow(f)
    assert out.dtype == f.dtype
    np.testing.assert_array_equal(out, want)
    assert not np.signbit(out[out == 0]).any()  # no negative zeros
    t = canonicalize_flow(torch.from_numpy(f))
    assert t.dtype == torch.from_numpy(f).dtype
    np.testing.assert_array_equal(t.numpy(), want)
