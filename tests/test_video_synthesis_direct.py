"""Direct checks of the synthetic-data helpers on tiny inputs, against closed forms.

Covers ``pnpdeblur.data.video`` (GOPRO / WILD frame averaging under a gamma-2.2 camera
response, Nah et al. eq. 2-3; the camera path and its exact flows), ``pnpdeblur.data.synthetic``
(Gong-style flow blur) and ``pnpdeblur.data._utils`` (seeds, shape checks). Every reference
is written here independently of the library: frame averages from hand-made crops, the camera
model from rotation matrices, the line kernel of an integer flow as a 3-tap box.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pnpdeblur.data._utils import as_generator, check_shape2
from pnpdeblur.data.synthetic import FlowBlurSample, synthesize_flow_blur
from pnpdeblur.data.video import (
    MOTION_KINDS,
    CameraPath,
    VideoBlurSample,
    VideoSequenceSample,
    _Foreground,
    average_frames,
    random_camera_path,
    render_frames,
    synthesize_video_blur,
    synthesize_video_sequence,
)

GAMMA = 2.2


def _photo(h=24, w=30, c=3, seed=0):
    """A smooth-ish random photo in [0.05, 0.95] (no clipping at the gamma curve's ends)."""
    rng = np.random.default_rng(seed)
    return 0.05 + 0.9 * rng.random((h, w, c))


def _crop(photo, ox, oy, h, w):
    return photo[oy:oy + h, ox:ox + w]


def _rot(th):
    return np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])


def _grid(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([x, y])  # (2, H, W), channel 0 = x


def _q_ref(path, shape, tau):
    """q(p, τ) − o = r + s(τ) R(ωτ)(p − r) + vτ + aτ²/2, with a rotation matrix."""
    p = _grid(*shape).reshape(2, -1)
    r = np.array(path.center)[:, None]
    t = np.array(path.velocity)[:, None] * tau + 0.5 * np.array(path.acceleration)[:, None] * tau ** 2
    q = r + math.exp(path.zeta * tau) * _rot(path.omega * tau) @ (p - r) + t
    return q.reshape((2,) + tuple(shape))


def _p_ref(path, shape, tau, q=None):
    """p'(τ) = r + R(ωτ)ᵀ (q − r − T(τ)) / s(τ), q = p by default."""
    q = _grid(*shape) if q is None else q
    qf = q.reshape(2, -1)
    r = np.array(path.center)[:, None]
    t = np.array(path.velocity)[:, None] * tau + 0.5 * np.array(path.acceleration)[:, None] * tau ** 2
    p = r + _rot(path.omega * tau).T @ (qf - r - t) / math.exp(path.zeta * tau)
    return p.reshape((2,) + tuple(shape))


PATH = CameraPath(velocity=(0.7, -0.4), acceleration=(0.1, 0.3), omega=0.03, zeta=-0.02, center=(3.0, 5.0))


# --------------------------------------------------------------------------- _utils


def test_as_generator_streams():
    g = np.random.default_rng(5)
    assert as_generator(g) is g  # the caller's stream advances
    assert as_generator(7).random() == np.random.default_rng(7).random()
    assert as_generator(np.int64(7)).random() == np.random.default_rng(7).random()
    ss = np.random.SeedSequence(11)
    assert as_generator(ss).random() == np.random.default_rng(np.random.SeedSequence(11)).random()
    assert as_generator(0).random() == np.random.default_rng(0).random()
    assert isinstance(as_generator(None), np.random.Generator)
    assert as_generator(None).random() != as_generator(None).random()  # fresh entropy


@pytest.mark.parametrize("bad,exc,msg", [
    (-1, ValueError, r"^seed must be a non-negative int, got -1$"),
    (True, TypeError, r"^seed must be None, an int, a numpy.random.Generator or a torch.Generator, got bool$"),
    (1.5, TypeError, r"^seed must be None, an int, a numpy.random.Generator or a torch.Generator, got float$"),
    ("3", TypeError, r"^seed must be None, an int, a numpy.random.Generator or a torch.Generator, got str$"),
])
def test_as_generator_errors(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        as_generator(bad)


def test_as_generator_names_the_argument():
    with pytest.raises(ValueError, match=r"^rng must be a non-negative int, got -2$"):
        as_generator(-2, name="rng")
    with pytest.raises(TypeError, match=r"^rng must be None"):
        as_generator(2.0, "rng")


def test_check_shape2():
    out = check_shape2((np.int64(3), 4))
    assert out == (3, 4) and all(type(v) is int for v in out)
    assert check_shape2([1, 1]) == (1, 1)
    for bad in [(0, 4), (3, 0), (-1, 2), (3,), (3, 4, 5), 5, None, (True, 2), (2, False), (2.0, 2), "ab"]:
        with pytest.raises(ValueError, match=r"^shape must be a pair \(H, W\) of positive ints, got "):
            check_shape2(bad)
    with pytest.raises(ValueError, match=r"^size must be a pair \(H, W\) of positive ints, got \(0, 1\)$"):
        check_shape2((0, 1), name="size")


# --------------------------------------------------------------------------- camera path


def test_camera_path_defaults_are_the_identity():
    p = CameraPath()
    assert p.velocity == (0.0, 0.0) and p.acceleration == (0.0, 0.0)
    assert p.omega == 0.0 and p.zeta == 0.0 and p.center == (0.0, 0.0)
    np.testing.assert_array_equal(p.source_coords((3, 4), 2.5), _grid(3, 4))
    np.testing.assert_array_equal(p.flow((3, 4), -1.5), 0.0)


def test_source_coords_closed_form():
    shape = (5, 7)
    for tau in (-2.5, 0.0, 1.0, 3.0):
        q = PATH.source_coords(shape, tau)
        assert q.shape == (2, 5, 7) and q.dtype == np.float64
        np.testing.assert_allclose(q, _q_ref(PATH, shape, tau), rtol=0, atol=1e-12)
    # a hand value: pure translation, tau = 2: T = v*2 + a*4/2 = (2 + 1, 4 - 2)
    p = CameraPath(velocity=(1.0, 2.0), acceleration=(0.5, -1.0))
    q = p.source_coords((2, 3), 2.0)
    np.testing.assert_allclose(q[0], _grid(2, 3)[0] + 3.0)
    np.testing.assert_allclose(q[1], _grid(2, 3)[1] + 2.0)
    # a hand value: rotation by +90 degrees about (1, 1): (2, 1) -> (1, 2) (x right, y down)
    r = CameraPath(omega=math.pi / 2, center=(1.0, 1.0)).source_coords((3, 3), 1.0)
    np.testing.assert_allclose(r[:, 1, 2], [1.0, 2.0], atol=1e-12)
    # zoom by e about (0, 0): coordinates scale by e
    z = CameraPath(zeta=1.0).source_coords((2, 2), 1.0)
    np.testing.assert_allclose(z, math.e * _grid(2, 2))


def test_scene_position_and_flow_closed_form():
    shape = (4, 6)
    for tau in (-3.0, 0.5, 2.0):
        pp = PATH.scene_position(shape, tau)
        np.testing.assert_allclose(pp, _p_ref(PATH, shape, tau), rtol=0, atol=1e-12)
        np.testing.assert_allclose(PATH.flow(shape, tau), pp - _grid(*shape), rtol=0, atol=1e-12)
        # the inverse of q(., tau): q(p'(tau), tau) = p = q(p, 0)
        qq = _q_ref(PATH, shape, tau).reshape(2, -1) * 0  # shape holder
        r = np.array(PATH.center)[:, None]
        t = np.array(PATH.velocity)[:, None] * tau + 0.5 * np.array(PATH.acceleration)[:, None] * tau ** 2
        qq = r + math.exp(PATH.zeta * tau) * _rot(PATH.omega * tau) @ (pp.reshape(2, -1) - r) + t
        np.testing.assert_allclose(qq.reshape(pp.shape), _grid(*shape), atol=1e-12)
    np.testing.assert_allclose(PATH.flow(shape, 0.0), 0.0, atol=1e-12)
    # hand values: translation only, the content moves by -T(tau)
    p = CameraPath(velocity=(1.0, 2.0), acceleration=(0.5, -1.0))
    f = p.flow((2, 2), 2.0)
    np.testing.assert_allclose(f[0], -3.0)
    np.testing.assert_allclose(f[1], -2.0)
    # zoom by e about (0, 0): p' = p / e
    np.testing.assert_allclose(CameraPath(zeta=1.0).scene_position((2, 2), 1.0), _grid(2, 2) / math.e)


def test_flow_between_closed_form():
    shape = (4, 5)
    for t0, t1 in ((0.0, 2.0), (1.5, -2.0), (-3.0, -1.0), (2.0, 2.0)):
        q = _q_ref(PATH, shape, t0)
        want = _p_ref(PATH, shape, t1, q=q) - _grid(*shape)
        fb = PATH.flow_between(shape, t0, t1)
        assert fb.shape == (2, 4, 5) and fb.dtype == np.float64
        np.testing.assert_allclose(fb, want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(PATH.flow_between(shape, 0.0, 1.5), PATH.flow(shape, 1.5), atol=1e-12)
    np.testing.assert_allclose(PATH.flow_between(shape, 1.0, 1.0), 0.0, atol=1e-12)
    # translation with acceleration: -(T(t1) - T(t0)), T(t) = v t + a t^2 / 2
    p = CameraPath(velocity=(1.0, -2.0), acceleration=(0.5, 0.25))
    fb = p.flow_between((2, 3), 1.0, 3.0)
    np.testing.assert_allclose(fb[0], -(1.0 * 2 + 0.5 * (9 - 1) / 2))
    np.testing.assert_allclose(fb[1], -(-2.0 * 2 + 0.25 * (9 - 1) / 2))


# --------------------------------------------------------------------------- random_camera_path


def test_random_camera_path_is_seeded():
    a = random_camera_path((16, 20), 7, "mixed", seed=3)
    b = random_camera_path((16, 20), 7, "mixed", seed=3)
    c = random_camera_path((16, 20), 7, "mixed", seed=4)
    assert a == b and a != c
    g = np.random.default_rng(3)
    assert random_camera_path((16, 20), 7, "mixed", seed=g) == a
    assert random_camera_path((16, 20), 7, "mixed", seed=g) != a  # the Generator advanced
    for p in (a, c):
        assert all(type(v) is float for v in (p.omega, p.zeta, *p.center))


def test_random_camera_path_translation_budget():
    n, b = 7, 6.0
    speeds = set()
    for seed in range(6):
        p = random_camera_path((16, 20), n, "translation", max_blur=b, min_blur=b, seed=seed)
        assert p.omega == 0.0 and p.zeta == 0.0
        assert p.acceleration == (0.0, 0.0)  # no acceleration by default for translation
        np.testing.assert_allclose(math.hypot(*p.velocity) * n, b, rtol=1e-12)
        assert 0 <= p.center[0] <= 19 and 0 <= p.center[1] <= 15
        speeds.add(p.velocity)
    assert len(speeds) == 6  # the direction is random
    lo, hi = 2.0, 9.0
    blurs = [math.hypot(*random_camera_path((16, 20), n, "translation", hi, lo, seed=s).velocity) * n
             for s in range(40)]
    assert lo <= min(blurs) and max(blurs) <= hi
    assert min(blurs) < lo + 1.5 and max(blurs) > hi - 1.5  # uniform over the whole range


def test_random_camera_path_acceleration():
    n, b = 9, 6.0
    speed = b / n
    for seed in range(8):
        p = random_camera_path((16, 20), n, "translation", b, b, acceleration=0.4, seed=seed)
        amag = math.hypot(*p.acceleration)
        assert 0.5 * 0.4 * speed / (n / 2) - 1e-12 <= amag <= 0.4 * speed / (n / 2) + 1e-12
        # mixed: default relative acceleration 0.2 of its own translation speed
        m = random_camera_path((16, 20), n, "mixed", b, b, seed=seed)
        sp = math.hypot(*m.velocity)
        am = math.hypot(*m.acceleration)
        assert 0.5 * 0.2 * sp / (n / 2) - 1e-12 <= am <= 0.2 * sp / (n / 2) + 1e-12
        assert am > 0
    # n = 1: the speed is divided by max(n / 2, 1) = 1, not by 1/2
    amags = [math.hypot(*random_camera_path((8, 8), 1, "translation", 4.0, 4.0, 1.0, seed=s).acceleration)
             for s in range(10)]
    assert all(2.0 - 1e-12 <= a <= 4.0 + 1e-12 for a in amags)


def _far(center, h, w):
    return max(max(math.hypot(cx - center[0], cy - center[1]) for cx in (0, w - 1) for cy in (0, h - 1)), 1.0)


def test_random_camera_path_rotation_and_zoom_rates():
    n, b, h, w = 7, 5.0, 16, 24
    signs_o, signs_z = set(), set()
    for seed in range(10):
        r = random_camera_path((h, w), n, "rotation", b, b, seed=seed)
        assert r.velocity == (0.0, 0.0) and r.zeta == 0.0
        assert 0 <= r.center[0] <= w - 1 and 0 <= r.center[1] <= h - 1
        np.testing.assert_allclose(abs(r.omega), b / _far(r.center, h, w) / n, rtol=1e-12)
        signs_o.add(math.copysign(1, r.omega))
        z = random_camera_path((h, w), n, "zoom", b, b, seed=seed)
        assert z.velocity == (0.0, 0.0) and z.omega == 0.0
        assert 0.25 * (w - 1) <= z.center[0] <= 0.75 * (w - 1)
        assert 0.25 * (h - 1) <= z.center[1] <= 0.75 * (h - 1)
        np.testing.assert_allclose(abs(z.zeta), b / _far(z.center, h, w) / n, rtol=1e-12)
        signs_z.add(math.copysign(1, z.zeta))
    assert signs_o == {1.0, -1.0} and signs_z == {1.0, -1.0}
    # a 1 x 1 frame: the farthest corner is 0 px away, raised to 1
    r = random_camera_path((1, 1), n, "rotation", b, b, seed=0)
    assert r.center == (0.0, 0.0)
    np.testing.assert_allclose(abs(r.omega), b / n, rtol=1e-12)


def test_random_camera_path_mixed_splits_the_budget():
    n, b, h, w = 9, 8.0, 12, 18
    for seed in range(6):
        p = random_camera_path((h, w), n, "mixed", b, b, seed=seed)
        far = _far(p.center, h, w)
        parts = (math.hypot(*p.velocity) * n / b, abs(p.omega) * far * n / b, abs(p.zeta) * far * n / b)
        np.testing.assert_allclose(sum(parts), 1.0, rtol=1e-12)  # Dirichlet weights sum to 1
        assert all(0 < v < 1 for v in parts)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(shape=(0, 4)), ValueError, r"^shape must be a pair \(H, W\) of positive ints"),
    (dict(motion="shake"), ValueError,
     r"^motion must be one of \('translation', 'rotation', 'zoom', 'mixed'\), got 'shake'$"),
    (dict(max_blur=-1.0), ValueError, r"^max_blur must be a non-negative finite number, got -1.0$"),
    (dict(max_blur=float("nan")), ValueError, r"^max_blur must be a non-negative finite number, got nan$"),
    (dict(max_blur=float("inf")), ValueError, r"^max_blur must be a non-negative finite number, got inf$"),
    (dict(max_blur=True), ValueError, r"^max_blur must be a non-negative finite number, got True$"),
    (dict(max_blur="5"), ValueError, r"^max_blur must be a non-negative finite number, got '5'$"),
    (dict(min_blur=-0.5), ValueError, r"^min_blur must be a non-negative finite number, got -0.5$"),
    (dict(min_blur=5.0, max_blur=4.0), ValueError, r"^min_blur \(5.0\) must not exceed max_blur \(4.0\)$"),
    (dict(n_frames=0), ValueError, r"^n_frames must be a positive int, got 0$"),
    (dict(n_frames=True), ValueError, r"^n_frames must be a positive int, got True$"),
    (dict(n_frames=3.0), ValueError, r"^n_frames must be a positive int, got 3.0$"),
    (dict(acceleration=-0.1), ValueError, r"^acceleration must be a non-negative finite number, got -0.1$"),
    (dict(acceleration=float("nan")), ValueError, r"^acceleration must be a non-negative finite number"),
    (dict(seed=-1), ValueError, r"^seed must be a non-negative int"),
])
def test_random_camera_path_errors(kwargs, exc, msg):
    args = dict(shape=(8, 8), n_frames=3, motion="translation", max_blur=4.0, min_blur=1.0, seed=0)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        random_camera_path(**args)


def test_random_camera_path_edge_values_accepted():
    # zero blur, zero acceleration and min_blur == max_blur are valid
    p = random_camera_path((8, 8), 1, "translation", 0.0, 0.0, acceleration=0.0, seed=0)
    assert p.velocity == (0.0, 0.0) and p.acceleration == (0.0, 0.0)
    assert MOTION_KINDS == ("translation", "rotation", "zoom", "mixed")
    for motion in MOTION_KINDS:
        assert isinstance(random_camera_path((8, 8), 3, motion, 2, 2, seed=1), CameraPath)


# --------------------------------------------------------------------------- render / average


def test_render_frames_integer_translation_is_shifted_crops():
    photo = _photo(12, 16)
    path = CameraPath(velocity=(1.0, 2.0))
    for order in (1, 2, 3):
        fr = render_frames(photo, (6, 8), path, [-1, 0, 1], origin=(4, 3), order=order)
        assert fr.shape == (3, 6, 8, 3) and fr.dtype == np.float64
        for k, t in enumerate((-1, 0, 1)):
            np.testing.assert_allclose(fr[k], _crop(photo, 4 + t, 3 + 2 * t, 6, 8), atol=1e-9)


def test_render_frames_default_origin_is_centred():
    photo = _photo(13, 20)
    fr = render_frames(photo, (6, 9), CameraPath(), [0.0])
    np.testing.assert_allclose(fr[0], _crop(photo, (20 - 9) // 2, (13 - 6) // 2, 6, 9), atol=1e-12)


def test_render_frames_mirrors_the_border():
    # a ramp along x; sampling 2 px beyond the right edge reads the mirrored pixels
    photo = np.tile(np.linspace(0.1, 0.9, 6)[None, :, None], (3, 1, 1))
    fr = render_frames(photo, (3, 2), CameraPath(velocity=(2.0, 0.0)), [1.0], origin=(4, 0), order=1)
    # columns 6, 7 of the photo mirror to 4, 3 (scipy "mirror": edge pixel not repeated)
    np.testing.assert_allclose(fr[0, 0, :, 0], photo[0, [4, 3], 0], atol=1e-12)


def test_render_frames_half_pixel_is_linear_interpolation_at_order_1():
    photo = _photo(6, 8, c=1)
    fr = render_frames(photo, (4, 4), CameraPath(velocity=(0.5, 0.0)), [1.0], origin=(1, 1), order=1)
    want = 0.5 * (_crop(photo, 1, 1, 4, 4) + _crop(photo, 2, 1, 4, 4))
    np.testing.assert_allclose(fr[0], want, atol=1e-12)


def test_render_frames_clips_spline_overshoot():
    photo = np.zeros((8, 8, 1))
    photo[:, 4:] = 1.0  # a step: cubic splines over- and undershoot between the samples
    fr = render_frames(photo, (8, 8), CameraPath(velocity=(0.5, 0.0)), [1.0], origin=(0, 0), order=3)
    assert fr.min() == 0.0 and fr.max() == 1.0
    fr1 = render_frames(photo, (8, 8), CameraPath(velocity=(0.5, 0.0)), [1.0], origin=(0, 0), order=1)
    assert fr1.min() == 0.0 and fr1.max() == 1.0


def test_foreground_layer_composites_with_alpha():
    photo = _photo(10, 10)
    tex = np.full((2, 3, 3), 0.5)
    tex[..., 1] = 0.25
    alpha = np.array([[1.0, 0.5, 0.0], [0.25, 1.0, 1.0]])
    fg = _Foreground(tex, alpha, position=(2.0, 1.0), velocity=(1.0, 0.0))
    col, a = fg.layer((6, 7), 0.0, 1)
    assert col.shape == (6, 7, 3) and a.shape == (6, 7)
    want_a = np.zeros((6, 7))
    want_a[1:3, 2:5] = alpha
    np.testing.assert_allclose(a, want_a, atol=1e-12)
    np.testing.assert_allclose(col[1:3, 2:5], tex, atol=1e-12)
    assert np.all(col[0] == 0) and np.all(col[:, :2] == 0)  # constant 0 outside
    # at tau = 2 the layer has moved 2 px to the right (screen space)
    _, a2 = fg.layer((6, 7), 2.0, 1)
    np.testing.assert_allclose(a2[1:3, 4:7], alpha, atol=1e-12)
    # alpha is clipped to [0, 1] (a cubic texture may overshoot, alpha never does)
    fg_big = _Foreground(tex, np.full((2, 3), 1.5), (2.0, 1.0), (0.0, 0.0))
    assert fg_big.layer((6, 7), 0.0, 3)[1].max() == 1.0
    # composited into the frame: (1 - a) * background + a * colour
    fr = render_frames(photo, (6, 7), CameraPath(), [0.0, 2.0], origin=(0, 0), foreground=fg, order=1)
    bg = photo[:6, :7]
    np.testing.assert_allclose(fr[0], (1 - want_a[..., None]) * bg + want_a[..., None] * col, atol=1e-12)
    col2, _ = fg.layer((6, 7), 2.0, 1)
    np.testing.assert_allclose(fr[1], (1 - a2[..., None]) * bg + a2[..., None] * col2, atol=1e-12)


def test_foreground_layer_uses_the_spline_order():
    tex = _photo(4, 4, seed=3)
    fg = _Foreground(tex, np.ones((4, 4)), (1.0, 1.0), (0.5, 0.0))
    c1, _ = fg.layer((6, 6), 1.0, 1)
    c3, _ = fg.layer((6, 6), 1.0, 3)
    # order 1 at a half pixel: the mean of the two neighbours
    np.testing.assert_allclose(c1[2, 2], 0.5 * (tex[1, 0] + tex[1, 1]), atol=1e-12)
    assert np.abs(c3[2, 2] - c1[2, 2]).max() > 1e-3
    # prefiltered cubic splines interpolate: integer positions give the texture exactly
    c3i, _ = _Foreground(tex, np.ones((4, 4)), (1.0, 1.0), (0.0, 0.0)).layer((6, 6), 1.0, 3)
    np.testing.assert_allclose(c3i[1:5, 1:5], tex, atol=1e-9)


def test_photo_inputs():
    photo = _photo(8, 8)
    path, sh = CameraPath(), (4, 4)
    ref = render_frames(photo, sh, path, [0.0])
    t = torch.from_numpy(np.moveaxis(photo, -1, 0).copy()).float()  # torch (C, H, W)
    np.testing.assert_allclose(render_frames(t, sh, path, [0.0]), ref, atol=1e-6)
    u8 = (photo * 255).round().astype(np.uint8)
    np.testing.assert_allclose(render_frames(u8, sh, path, [0.0]), render_frames(u8 / 255.0, sh, path, [0.0]),
                               atol=1e-12)
    u16 = (photo * 65535).round().astype(np.uint16)
    np.testing.assert_allclose(render_frames(u16, sh, path, [0.0]), ref, atol=1e-5)
    grey = render_frames(photo[..., 0], sh, path, [0.0])
    assert grey.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(grey[0, ..., 0], ref[0, ..., 0], atol=1e-12)
    tg = render_frames(torch.from_numpy(photo[..., 0].copy()), sh, path, [0.0])  # torch 2-D: one grey image
    np.testing.assert_allclose(tg, grey, atol=1e-12)
    # edge values 0 and 1 are valid
    assert render_frames(np.zeros((4, 4)), (2, 2), path, [0.0]).max() == 0.0
    assert render_frames(np.ones((4, 4)), (2, 2), path, [0.0]).min() == 1.0


@pytest.mark.parametrize("image,exc,msg", [
    ([[0.5]], TypeError, r"^image must be a numpy array or torch tensor, got list$"),
    (np.zeros((4, 4), bool), TypeError, r"^image must be numeric, got dtype bool$"),
    (np.zeros((1, 4, 4, 1)), ValueError, r"^image must be \(H, W\) or \(H, W, C\), got shape \(1, 4, 4, 1\)$"),
    (np.zeros(4), ValueError, r"^image must be \(H, W\) or \(H, W, C\), got shape \(4,\)$"),
    (np.full((4, 4), np.nan), ValueError, r"^image contains NaN or Inf$"),
    (np.full((4, 4), np.inf), ValueError, r"^image contains NaN or Inf$"),
    (np.full((4, 4), 1.5), ValueError, r"^image values must lie in \[0, 1\], got \[1.5, 1.5\]$"),
    (np.full((4, 4), -0.25), ValueError, r"^image values must lie in \[0, 1\], got \[-0.25, -0.25\]$"),
    (np.array([[0.0, 1.0], [1.0, 1.0 + 1e-9]]), ValueError, r"^image values must lie in \[0, 1\]"),
    (np.array([[0.5, 1.0], [-1e-9, 0.5]]), ValueError, r"^image values must lie in \[0, 1\]"),
])
def test_photo_errors(image, exc, msg):
    with pytest.raises(exc, match=msg):
        render_frames(image, (2, 2), CameraPath(), [0.0])
    with pytest.raises(exc, match=msg):
        synthesize_video_blur(image, shape=(2, 2), n_frames=1, path=CameraPath())


def test_average_frames_closed_form():
    rng = np.random.default_rng(1)
    fr = rng.random((3, 4, 5, 2))
    g = lambda z: z ** (1 / GAMMA)  # noqa: E731  camera response
    g_inv = lambda z: z ** GAMMA  # noqa: E731
    want = g((g_inv(fr[0]) + g_inv(fr[1]) + g_inv(fr[2])) / 3)
    out = average_frames(fr, gamma=GAMMA)
    assert out.shape == (4, 5, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out, want, rtol=1e-12)
    np.testing.assert_allclose(average_frames(fr), want, rtol=1e-12)  # gamma 2.2 by default
    np.testing.assert_allclose(average_frames(fr, gamma=None), (fr[0] + fr[1] + fr[2]) / 3, rtol=1e-12)
    np.testing.assert_allclose(average_frames(fr, gamma=1), (fr[0] + fr[1] + fr[2]) / 3, rtol=1e-12)
    np.testing.assert_allclose(average_frames(fr, gamma=1.0), (fr[0] + fr[1] + fr[2]) / 3, rtol=1e-12)
    np.testing.assert_allclose(average_frames(fr, gamma=2), np.sqrt((fr ** 2).mean(0)), rtol=1e-12)
    # lists and float32 are read as float64
    assert average_frames(fr.astype(np.float32).tolist(), gamma=GAMMA).dtype == np.float64
    # one frame: returned as is
    np.testing.assert_allclose(average_frames(fr[:1], gamma=GAMMA), fr[0], rtol=1e-12)


def test_average_frames_clips_under_the_gamma_curve():
    # overshoot up to 0.5 beyond [0, 1] (noise) is clipped under the curve
    fr = np.stack([np.full((1, 1, 1), -0.5), np.full((1, 1, 1), 1.0), np.full((1, 1, 1), 1.5)])
    np.testing.assert_allclose(average_frames(fr, gamma=GAMMA), (2 / 3) ** (1 / GAMMA), rtol=1e-12)
    fr2 = np.stack([np.full((1, 1, 1), 0.0), np.full((1, 1, 1), 1.0)])
    np.testing.assert_allclose(average_frames(fr2, gamma=GAMMA), 0.5 ** (1 / GAMMA), rtol=1e-12)


@pytest.mark.parametrize("frames,gamma,exc,msg", [
    # 0-255 floats would be clipped white under the curve (and averaged on the wrong scale without it)
    (np.full((2, 2, 2, 1), 255.0), 2.2, ValueError, r"^frames has values in \[255, 255\]; float images must lie in "
                                                    r"\[0, 1\] \(divide 8-bit data by 255"),
    (np.full((2, 2, 2, 1), 2.0), None, ValueError, r"^frames has values in \[2, 2\]"),
    (np.full((2, 2, 2, 1), -0.75), 2.2, ValueError, r"^frames has values in \[-0\.75, -0\.75\]"),
    (np.zeros((2, 2, 2)), 2.2, ValueError, r"^frames must be \(N, H, W, C\), got shape \(2, 2, 2\)$"),
    (np.zeros((1, 2, 2, 2, 1)), 2.2, ValueError, r"^frames must be \(N, H, W, C\), got shape \(1, 2, 2, 2, 1\)$"),
    (np.zeros((2, 2, 2, 1)), 0.0, ValueError, r"^gamma must be a positive finite number, got 0.0$"),
    (np.zeros((2, 2, 2, 1)), -2.2, ValueError, r"^gamma must be a positive finite number, got -2.2$"),
    (np.zeros((2, 2, 2, 1)), float("nan"), ValueError, r"^gamma must be a positive finite number, got nan$"),
    (np.zeros((2, 2, 2, 1)), "2.2", ValueError, r"^gamma must be a positive finite number, got '2.2'$"),
])
def test_average_frames_errors(frames, gamma, exc, msg):
    with pytest.raises(exc, match=msg):
        average_frames(frames, gamma=gamma)


@pytest.mark.parametrize("gamma", [2.2, None])
def test_average_frames_refuses_nan_and_no_frames(gamma):
    fr = np.full((2, 2, 2, 1), 0.5)
    fr[1, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^frames contain NaN or Inf$"):
        average_frames(fr, gamma=gamma)
    fr[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^frames contain NaN or Inf$"):
        average_frames(fr, gamma=gamma)
    with pytest.raises(ValueError, match=r"^frames must hold at least one frame, got shape \(0, 2, 2, 1\)$"):
        average_frames(np.zeros((0, 2, 2, 1)), gamma=gamma)


@pytest.mark.parametrize("gamma", [2.2, None])
def test_average_frames_reads_unsigned_frames_on_their_full_range(gamma):
    # decoded video is uint8 (or uint16); clipping 0..255 to [0, 1] made every frame white
    rng = np.random.default_rng(2)
    fr8 = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    np.testing.assert_allclose(average_frames(fr8, gamma=gamma), average_frames(fr8 / 255.0, gamma=gamma),
                               rtol=1e-12)
    fr16 = rng.integers(0, 65536, (2, 3, 3, 1), dtype=np.uint16)
    np.testing.assert_allclose(average_frames(list(fr16), gamma=gamma),
                               average_frames(fr16 / 65535.0, gamma=gamma), rtol=1e-12)
    for bad in (fr8.astype(np.int64), fr8 > 0, np.full((1, 2, 2, 1), "a")):
        with pytest.raises(TypeError, match=r"^frames must be float \(on the \[0, 1\] scale\) or unsigned "
                                            r"integers, got dtype "):
            average_frames(bad, gamma=gamma)


def test_average_frames_names_frames_of_different_sizes():
    with pytest.raises(ValueError, match=r"^frames must all have one shape \(H, W, C\), got shapes "
                                         r"\[\(2, 2, 3\), \(2, 3, 3\)\]$"):
        average_frames([np.zeros((2, 2, 3)), np.zeros((2, 3, 3))])


# --------------------------------------------------------------------------- synthesize_video_blur


def _gopro(crops, gamma):
    """Nah et al. eq. 3 from gamma-encoded crops Ŝ[i]: g(mean g⁻¹(Ŝ[i])), g(x) = x^(1/γ)."""
    if gamma is None:
        return sum(crops) / len(crops)
    return (sum(c ** gamma for c in crops) / len(crops)) ** (1 / gamma)


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("gamma", [GAMMA, None])
def test_video_blur_is_the_gopro_average_of_shifted_crops(n, gamma):
    photo = _photo(14, 22)
    h, w = 6, 8
    ox, oy = (22 - w) // 2, (14 - h) // 2
    path = CameraPath(velocity=(1.0, 0.0))  # 1 px/frame: every frame is an exact crop
    s = synthesize_video_blur(photo, shape=(h, w), n_frames=n, path=path, gamma=gamma, return_frames=True,
                              order=1, seed=0)
    assert isinstance(s, VideoBlurSample)
    shifts = range(-(n // 2), n // 2 + 1)  # frames at tau = -(N-1)/2 .. (N-1)/2
    crops = [_crop(photo, ox + k, oy, h, w) for k in shifts]
    np.testing.assert_allclose(s.blurred, _gopro(crops, gamma), atol=2e-6)
    np.testing.assert_allclose(s.sharp, _crop(photo, ox, oy, h, w), atol=2e-6)  # the middle frame
    assert s.frames.shape == (n, h, w, 3)
    for f, c in zip(s.frames, crops):
        np.testing.assert_allclose(f, c, atol=2e-6)
    for z in (s.blurred, s.sharp, s.frames, s.flow_next, s.flow_prev, s.exposure_flow):
        assert z.dtype == np.float32
    assert s.blurred.shape == s.sharp.shape == (h, w, 3)
    assert s.n_frames == n and s.gamma == gamma and s.path is path
    assert s.meta == {"origin": (ox, oy), "spacing": n, "motion": "mixed"}
    assert s.foreground_mask is None


def test_video_blur_gamma_one_is_linear_and_no_frames_by_default():
    photo = _photo(12, 12)
    path = CameraPath(velocity=(1.0, 0.5))
    a = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path, gamma=1, order=1)
    b = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path, gamma=None, order=1)
    c = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path, order=1)  # gamma 2.2 by default
    assert a.gamma is None and c.gamma == GAMMA and a.frames is None
    np.testing.assert_array_equal(a.blurred, b.blurred)
    assert np.abs(c.blurred - a.blurred).max() > 1e-3
    np.testing.assert_allclose(c.sharp, a.sharp, atol=2e-6)


def test_video_blur_clips_in_linear_intensity():
    # a step photo under cubic resampling overshoots; the stored values stay in [0, 1]
    photo = np.zeros((12, 12, 1))
    photo[:, 6:] = 1.0
    for gamma in (GAMMA, None):
        s = synthesize_video_blur(photo, shape=(8, 8), n_frames=3, path=CameraPath(velocity=(0.5, 0.0)),
                                  gamma=gamma, return_frames=True, order=3)
        for z in (s.blurred, s.sharp, s.frames):
            assert z.min() >= 0.0 and z.max() <= 1.0


def test_video_blur_flows_closed_form():
    photo = _photo(16, 16)
    v, a = (0.5, -0.25), (0.1, 0.05)
    path = CameraPath(velocity=v, acceleration=a)
    for n, spacing in ((3, None), (5, 2)):
        s = synthesize_video_blur(photo, shape=(8, 8), n_frames=n, spacing=spacing, path=path, order=1)
        d = n if spacing is None else spacing
        assert s.meta["spacing"] == d
        for c in (0, 1):
            # the content moves by -T(tau): T(±D) = ±v D + a D² / 2
            np.testing.assert_allclose(s.flow_next[c], -(v[c] * d + a[c] * d * d / 2), atol=1e-6)
            np.testing.assert_allclose(s.flow_prev[c], -(-v[c] * d + a[c] * d * d / 2), atol=1e-6)
            # exposure from -N/2 to +N/2: the acceleration terms cancel
            np.testing.assert_allclose(s.exposure_flow[c], -v[c] * n, atol=1e-6)
    # rotation / zoom: the flows are the path's closed forms
    s = synthesize_video_blur(photo, shape=(8, 8), n_frames=3, spacing=4, path=PATH, order=1)
    np.testing.assert_allclose(s.flow_next, _p_ref(PATH, (8, 8), 4.0) - _grid(8, 8), atol=1e-5)
    np.testing.assert_allclose(s.flow_prev, _p_ref(PATH, (8, 8), -4.0) - _grid(8, 8), atol=1e-5)
    np.testing.assert_allclose(s.exposure_flow, _p_ref(PATH, (8, 8), 1.5) - _p_ref(PATH, (8, 8), -1.5), atol=1e-5)


def test_video_blur_default_shape_and_n_frames():
    photo = _photo(30, 40)
    s = synthesize_video_blur(photo, max_blur=5, min_blur=1, seed=2, order=1)
    assert s.sharp.shape == (30 - 10, 40 - 10, 3)  # a margin of ceil(max_blur) on each side
    s = synthesize_video_blur(photo, max_blur=2.5, min_blur=1, seed=2, order=1)
    assert s.sharp.shape == (30 - 6, 40 - 6, 3)
    ns = {synthesize_video_blur(photo, max_blur=2, min_blur=1, seed=k, order=0).n_frames for k in range(10)}
    assert ns <= {7, 9, 11, 13} and len(ns) > 1
    # max_blur 12 leaves 30 - 24 = 6 rows: too small
    with pytest.raises(ValueError, match=r"^photo of shape \(30, 40\) is too small for max_blur=12$"):
        synthesize_video_blur(photo, max_blur=12, seed=0)
    s = synthesize_video_blur(photo, max_blur=11, min_blur=1, shape=(8, 8), n_frames=1, seed=0, order=0)
    assert s.sharp.shape == (8, 8, 3)
    # exactly 8 rows left is enough
    s = synthesize_video_blur(_photo(28, 28), max_blur=10, min_blur=1, n_frames=1, seed=0, order=0)
    assert s.sharp.shape == (8, 8, 3)


def test_video_blur_is_seeded():
    photo = _photo(20, 20)
    kw = dict(shape=(10, 10), n_frames=3, max_blur=3, min_blur=1, order=1, foreground=True)
    a = synthesize_video_blur(photo, seed=1, **kw)
    b = synthesize_video_blur(photo, seed=1, **kw)
    c = synthesize_video_blur(photo, seed=2, **kw)
    for f in ("blurred", "sharp", "flow_next", "flow_prev", "exposure_flow", "foreground_mask"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.path == b.path and a.path != c.path
    assert np.abs(a.blurred - c.blurred).max() > 1e-3
    s = synthesize_video_blur(photo, seed=np.random.default_rng(1), **kw)
    np.testing.assert_array_equal(s.blurred, a.blurred)
    # the motion kind reaches the path: translation has no rotation, zoom no velocity
    t = synthesize_video_blur(photo, shape=(10, 10), n_frames=3, motion="translation", seed=0, order=0)
    assert t.path.omega == 0 and t.path.zeta == 0 and t.meta["motion"] == "translation"
    z = synthesize_video_blur(photo, shape=(10, 10), n_frames=3, motion="zoom", seed=0, order=0)
    assert z.path.velocity == (0.0, 0.0) and z.path.zeta != 0


def test_video_blur_passes_its_settings_to_the_path():
    photo = _photo(20, 20)
    for seed in range(4):
        s = synthesize_video_blur(photo, shape=(9, 11), n_frames=5, motion="translation", max_blur=6,
                                  min_blur=6, acceleration=0.5, seed=seed, order=0)
        speed = math.hypot(*s.path.velocity)
        np.testing.assert_allclose(speed * 5, 6.0, rtol=1e-6)
        am = math.hypot(*s.path.acceleration)
        assert 0.25 * speed / 2.5 - 1e-9 <= am <= 0.5 * speed / 2.5 + 1e-9 and am > 0
        # the path was drawn for the output size: its centre lies in the 9 x 11 frame
        assert 0 <= s.path.center[0] <= 10 and 0 <= s.path.center[1] <= 8
    # the draw is the one random_camera_path makes from the same Generator
    rng = np.random.default_rng(8)
    want = random_camera_path((9, 11), 5, "rotation", 6, 6, None, rng)
    s = synthesize_video_blur(photo, shape=(9, 11), n_frames=5, motion="rotation", max_blur=6, min_blur=6,
                              seed=8, order=0)
    assert s.path == want


def test_video_blur_foreground():
    photo = _photo(40, 40)
    seen = 0
    for seed in range(4):
        s = synthesize_video_blur(photo, shape=(30, 30), n_frames=3, spacing=5, path=CameraPath(velocity=(0.5, 0)),
                                  foreground=True, return_frames=True, seed=seed, order=1)
        m = s.foreground_mask
        assert m.shape == (30, 30) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
        sel = m > 0.5
        if not sel.any():
            continue
        seen += 1
        assert sel.mean() < 0.5
        fn, fp, fe = s.flow_next[:, sel], s.flow_prev[:, sel], s.exposure_flow[:, sel]
        # inside the layer: its own constant screen-space velocity u, times 5, -5, 3 frames
        u = fn[:, :1] / 5
        assert np.abs(u).max() > 0
        np.testing.assert_allclose(fn, np.broadcast_to(5 * u, fn.shape), atol=1e-5)
        np.testing.assert_allclose(fp, np.broadcast_to(-5 * u, fp.shape), atol=1e-5)
        np.testing.assert_allclose(fe, np.broadcast_to(3 * u, fe.shape), atol=1e-5)
        # outside: the camera's flows
        out = m == 0
        np.testing.assert_allclose(s.flow_next[0][out], -2.5, atol=1e-6)
        np.testing.assert_allclose(s.exposure_flow[0][out], -1.5, atol=1e-6)
        # the layer changes the sharp frame where it is opaque
        assert np.abs(s.sharp[sel] - photo[5:35, 5:35][sel]).max() > 1e-3
        np.testing.assert_allclose(s.sharp[m == 0], photo[5:35, 5:35][m == 0], atol=2e-6)
    assert seen >= 2


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(n_frames=4), ValueError, r"^n_frames must be a positive odd int \(7-13 in GOPRO\), got 4$"),
    (dict(n_frames=0), ValueError, r"^n_frames must be a positive odd int"),
    (dict(n_frames=-3), ValueError, r"^n_frames must be a positive odd int"),
    (dict(n_frames=True), ValueError, r"^n_frames must be a positive odd int \(7-13 in GOPRO\), got True$"),
    (dict(n_frames=3.0), ValueError, r"^n_frames must be a positive odd int \(7-13 in GOPRO\), got 3.0$"),
    (dict(spacing=0), ValueError, r"^spacing must be a positive int, got 0$"),
    (dict(spacing=2.0), ValueError, r"^spacing must be a positive int, got 2.0$"),
    (dict(spacing=True), ValueError, r"^spacing must be a positive int, got True$"),
    (dict(order=6), ValueError, r"^order must be an int in 0..5, got 6$"),
    (dict(order=-1), ValueError, r"^order must be an int in 0..5, got -1$"),
    (dict(order=None), ValueError, r"^order must be an int in 0..5, got None$"),
    (dict(shape=(21, 8)), ValueError, r"^shape \(21, 8\) is larger than the photo \(20, 24\)$"),
    (dict(shape=(8, 25)), ValueError, r"^shape \(8, 25\) is larger than the photo \(20, 24\)$"),
    (dict(shape=(0, 8)), ValueError, r"^shape must be a pair \(H, W\) of positive ints"),
    (dict(gamma=0.0), ValueError, r"^gamma must be a positive finite number, got 0.0$"),
    (dict(gamma=-2.2), ValueError, r"^gamma must be a positive finite number, got -2.2$"),
    (dict(gamma=float("nan")), ValueError, r"^gamma must be a positive finite number, got nan$"),
    (dict(max_blur=-1.0, shape=(8, 8)), ValueError, r"^max_blur must be a non-negative finite number, got -1.0$"),
    (dict(max_blur=float("nan")), ValueError, r"^max_blur must be a non-negative finite number, got nan$"),
    (dict(path="x"), TypeError, r"^path must be a CameraPath, got str$"),
    (dict(motion="shake"), ValueError, r"^motion must be one of"),
    (dict(seed=-1), ValueError, r"^seed must be a non-negative int"),
])
def test_video_blur_errors(kwargs, exc, msg):
    args = dict(shape=(8, 8), n_frames=3, max_blur=2.0, min_blur=1.0, order=1, seed=0)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        synthesize_video_blur(_photo(20, 24), **args)
    args.pop("spacing", None)
    with pytest.raises(exc, match=msg):
        synthesize_video_sequence(_photo(20, 24), 2, spacing=kwargs.get("spacing"), **args)


def test_video_blur_shape_equal_to_the_photo_is_allowed():
    photo = _photo(8, 9)
    s = synthesize_video_blur(photo, shape=(8, 9), n_frames=1, path=CameraPath(), order=1)
    np.testing.assert_allclose(s.sharp, photo, atol=2e-6)
    assert s.meta["origin"] == (0, 0)


# --------------------------------------------------------------------------- synthesize_video_sequence


@pytest.mark.parametrize("gamma", [GAMMA, None])
def test_video_sequence_is_consecutive_gopro_averages(gamma):
    photo = _photo(12, 40)
    h, w, n, k_out, spacing = 4, 6, 3, 3, 4
    ox, oy = (40 - w) // 2, (12 - h) // 2
    path = CameraPath(velocity=(1.0, 0.0))
    seq = synthesize_video_sequence(photo, k_out, shape=(h, w), n_frames=n, spacing=spacing, path=path,
                                    gamma=gamma, order=1)
    assert isinstance(seq, VideoSequenceSample)
    assert seq.blurred.shape == seq.sharp.shape == (k_out, h, w, 3)
    for k in range(k_out):
        tk = (k - (k_out - 1) / 2) * spacing  # -4, 0, 4: centred on the clip's middle
        crops = [_crop(photo, ox + int(tk) + j, oy, h, w) for j in (-1, 0, 1)]
        np.testing.assert_allclose(seq.blurred[k], _gopro(crops, gamma), atol=2e-6)
        np.testing.assert_allclose(seq.sharp[k], crops[1], atol=2e-6)
    assert seq.n_frames == n and seq.spacing == spacing and seq.gamma == gamma and seq.path is path
    assert seq.foreground_masks is None
    for z in (seq.blurred, seq.sharp, seq.flows_next, seq.flows_prev, seq.exposure_flows):
        assert z.dtype == np.float32


def test_video_sequence_flows_closed_form():
    photo = _photo(20, 20)
    v, a = (0.5, -0.25), (0.2, 0.1)
    path = CameraPath(velocity=v, acceleration=a)
    n, spacing, k_out = 3, 2, 4
    seq = synthesize_video_sequence(photo, k_out, shape=(6, 6), n_frames=n, spacing=spacing, path=path, order=0)
    assert seq.flows_next.shape == (k_out, 2, 6, 6)
    T = lambda t, c: v[c] * t + a[c] * t * t / 2  # noqa: E731
    for k in range(k_out):
        tk = (k - (k_out - 1) / 2) * spacing
        for c in (0, 1):
            np.testing.assert_allclose(seq.flows_next[k, c], -(T(tk + spacing, c) - T(tk, c)), atol=1e-6)
            np.testing.assert_allclose(seq.flows_prev[k, c], -(T(tk - spacing, c) - T(tk, c)), atol=1e-6)
            np.testing.assert_allclose(seq.exposure_flows[k, c], -(T(tk + n / 2, c) - T(tk - n / 2, c)), atol=1e-6)
    # rotation / zoom: the path's flow_between
    seq = synthesize_video_sequence(photo, 2, shape=(6, 6), n_frames=3, spacing=3, path=PATH, order=0)
    for k, tk in enumerate((-1.5, 1.5)):
        np.testing.assert_allclose(seq.flows_next[k], PATH.flow_between((6, 6), tk, tk + 3), atol=1e-5)
        np.testing.assert_allclose(seq.flows_prev[k], PATH.flow_between((6, 6), tk, tk - 3), atol=1e-5)
        want = PATH.flow_between((6, 6), tk, tk + 1.5) - PATH.flow_between((6, 6), tk, tk - 1.5)
        np.testing.assert_allclose(seq.exposure_flows[k], want, atol=1e-5)


def test_video_sequence_defaults():
    photo = _photo(40, 40)
    seq = synthesize_video_sequence(photo, max_blur=3, min_blur=1, n_frames=1, seed=0, order=0)
    assert seq.blurred.shape[0] == 3  # three blurred frames by default
    assert seq.sharp.shape[1:3] == (40 - 12, 40 - 12)  # margin ceil(3 * (3 + 1) / 2) = 6 per side
    assert seq.spacing == 1 and seq.gamma == GAMMA
    seq = synthesize_video_sequence(photo, 1, max_blur=3, min_blur=1, n_frames=3, seed=0, order=0)
    assert seq.sharp.shape[1:3] == (40 - 6, 40 - 6) and seq.spacing == 3
    seq = synthesize_video_sequence(photo, 2, n_frames=1, seed=0, order=0)  # max_blur 10 by default
    assert seq.sharp.shape[1:3] == (40 - 30, 40 - 30)
    ns = {synthesize_video_sequence(photo, 1, shape=(4, 4), max_blur=2, min_blur=1, seed=s, order=0).n_frames
          for s in range(10)}
    assert ns <= {7, 9, 11, 13} and len(ns) > 1
    with pytest.raises(ValueError, match=r"^photo of shape \(40, 40\) is too small for max_blur=9 and n_blurred=3$"):
        synthesize_video_sequence(photo, 3, max_blur=9, seed=0)  # margin 18: 4 rows left
    with pytest.raises(ValueError, match=r"^photo of shape \(20, 20\) is too small for max_blur=7$"):
        synthesize_video_sequence(_photo(20, 20), 1, max_blur=7, seed=0)


def test_video_sequence_seeded_and_foreground():
    photo = _photo(30, 30)
    kw = dict(shape=(20, 20), n_frames=3, max_blur=2, min_blur=1, order=1, foreground=True)
    a = synthesize_video_sequence(photo, 2, seed=3, **kw)
    b = synthesize_video_sequence(photo, 2, seed=3, **kw)
    c = synthesize_video_sequence(photo, 2, seed=4, **kw)
    np.testing.assert_array_equal(a.blurred, b.blurred)
    np.testing.assert_array_equal(a.flows_next, b.flows_next)
    assert a.path == b.path and a.path != c.path
    found = False
    for s in (a, c, synthesize_video_sequence(photo, 2, seed=5, **kw)):
        m = s.foreground_masks
        assert m.shape == (2, 20, 20) and m.dtype == np.float32
        sel = m[0] > 0.5
        if not sel.any():
            continue
        found = True
        fn = s.flows_next[0][:, sel]
        u = fn[:, :1] / 3  # spacing 3 = n_frames
        assert np.abs(u).max() > 0
        np.testing.assert_allclose(fn, np.broadcast_to(3 * u, fn.shape), atol=1e-5)
        np.testing.assert_allclose(s.flows_prev[0][:, sel], np.broadcast_to(-3 * u, fn.shape), atol=1e-5)
        np.testing.assert_allclose(s.exposure_flows[0][:, sel], np.broadcast_to(3 * u, fn.shape), atol=1e-5)
        # the layer moves: its mask in frame 1 is the one of frame 0 shifted by 3 u
        assert not np.array_equal(m[0], m[1])
    assert found


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_video_sequence_n_blurred_errors(bad):
    with pytest.raises(ValueError, match=r"^n_blurred must be a positive int, got "):
        synthesize_video_sequence(_photo(10, 10), bad, shape=(4, 4), n_frames=1, seed=0)


# --------------------------------------------------------------------------- synthesize_flow_blur


def _box3_x(x):
    """The line kernel of m = (3, 0): three taps of 1/3 along x, replicated borders."""
    xp = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    return (xp[:, :-2] + xp[:, 1:-1] + xp[:, 2:]) / 3


def test_flow_blur_closed_form():
    x = _photo(6, 7, c=2).astype(np.float32)
    flow = np.zeros((2, 6, 7), np.float32)
    flow[0] = 3.0
    s = synthesize_flow_blur(x, flow=flow, seed=0)
    assert isinstance(s, FlowBlurSample)
    assert s.blurred.shape == (6, 7, 2) and s.blurred.dtype == np.float32
    np.testing.assert_allclose(s.blurred, _box3_x(x), atol=1e-6)
    np.testing.assert_array_equal(s.sharp, x)
    np.testing.assert_array_equal(s.flow, flow)
    assert s.flow.dtype == np.float32 and s.noise_sigma == 0.0
    # zero flow is the identity; a 2-D grey image comes back (H, W, 1); float64 in, float32 out
    g = synthesize_flow_blur(x[..., 0].astype(np.float64), flow=np.zeros((2, 6, 7)), seed=0)
    assert g.blurred.shape == g.sharp.shape == (6, 7, 1) and g.sharp.dtype == np.float32 and g.flow.dtype == np.float32
    np.testing.assert_allclose(g.blurred, x[..., :1], atol=1e-7)


def test_flow_blur_noise_and_clip():
    x = np.full((16, 16, 1), 0.5, np.float32)
    zero = np.zeros((2, 16, 16), np.float32)
    s = synthesize_flow_blur(x, noise_sigma=0.1, flow=zero, clip=False, seed=1)
    n = s.blurred - 0.5
    assert s.noise_sigma == 0.1
    assert 0.07 < n.std() < 0.13 and abs(n.mean()) < 0.03
    want = 0.1 * np.random.default_rng(1).standard_normal((16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(n, want, atol=1e-6)  # Gaussian noise from the seed's stream
    big = synthesize_flow_blur(x, noise_sigma=2.0, flow=zero, clip=False, seed=1)
    assert big.blurred.min() < 0 and big.blurred.max() > 1
    clipped = synthesize_flow_blur(x, noise_sigma=2.0, flow=zero, seed=1)  # clip=True by default
    np.testing.assert_array_equal(clipped.blurred, np.clip(big.blurred, 0, 1))
    assert clipped.blurred.min() == 0.0 and clipped.blurred.max() == 1.0
    assert not np.array_equal(synthesize_flow_blur(x, noise_sigma=0.1, flow=zero, seed=2).blurred, s.blurred)


def test_flow_blur_noise_range():
    x = np.full((4, 4), 0.5, np.float32)
    zero = np.zeros((2, 4, 4), np.float32)
    sig = [synthesize_flow_blur(x, noise_sigma=(0.01, 0.05), flow=zero, seed=k).noise_sigma for k in range(30)]
    assert all(0.01 <= v <= 0.05 for v in sig) and max(sig) - min(sig) > 0.02
    assert all(type(v) is float for v in sig)
    assert synthesize_flow_blur(x, noise_sigma=[0.02, 0.02], flow=zero, seed=0).noise_sigma == 0.02
    assert synthesize_flow_blur(x, noise_sigma=(0.0, 0.0), flow=zero, seed=0).noise_sigma == 0.0
    assert synthesize_flow_blur(x, noise_sigma=0, flow=zero, seed=0).noise_sigma == 0.0


def test_flow_blur_random_flow_is_seeded_and_canonical():
    from pnpdeblur.data.flows import random_motion_flow

    x = _photo(12, 12, c=1).astype(np.float32)
    a = synthesize_flow_blur(x, seed=3, max_len=4)
    b = synthesize_flow_blur(x, seed=3, max_len=4)
    c = synthesize_flow_blur(x, seed=4, max_len=4)
    np.testing.assert_array_equal(a.flow, b.flow)
    np.testing.assert_array_equal(a.blurred, b.blurred)
    assert not np.array_equal(a.flow, c.flow)
    assert a.flow.shape == (2, 12, 12) and a.flow.dtype == np.float32
    # the flow is the one random_motion_flow draws from the same stream, with the kwargs passed on
    np.testing.assert_array_equal(a.flow, random_motion_flow((12, 12), "23", np.random.default_rng(3), max_len=4))
    assert np.abs(a.flow).max() <= 4
    d = synthesize_flow_blur(x, preset="46", seed=3, rotation_prob=0.0)
    np.testing.assert_array_equal(d.flow, random_motion_flow((12, 12), "46", np.random.default_rng(3),
                                                             rotation_prob=0.0))


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(sharp=[[0.5]]), TypeError, r"^sharp must be a float numpy array, got list"),
    (dict(sharp=np.zeros((4, 4), np.uint8)), TypeError, r"^sharp must be a float numpy array, got ndarray uint8$"),
    (dict(sharp=torch.zeros(4, 4)), TypeError, r"^sharp must be a float numpy array, got Tensor"),
    (dict(sharp=np.zeros((1, 4, 4, 1))), ValueError, r"^sharp must be \(H, W\) or \(H, W, C\), got shape \(1, 4, 4, 1\)$"),
    (dict(sharp=np.zeros(4)), ValueError, r"^sharp must be \(H, W\) or \(H, W, C\), got shape \(4,\)$"),
    (dict(sharp=np.full((4, 4), np.nan)), ValueError, r"^sharp contains NaN or Inf$"),
    (dict(sharp=np.full((4, 4), -np.inf)), ValueError, r"^sharp contains NaN or Inf$"),
    (dict(noise_sigma=-0.1), ValueError, r"^noise_sigma must be a non-negative float or a \(lo, hi\) range, got -0.1$"),
    (dict(noise_sigma=float("nan")), ValueError, r"^noise_sigma must be a non-negative float"),
    (dict(noise_sigma="0.1"), ValueError, r"^noise_sigma must be a non-negative float"),
    (dict(noise_sigma=(0.1,)), ValueError, r"^noise_sigma range must be \(lo, hi\) with 0 <= lo <= hi, got \(0.1,\)$"),
    (dict(noise_sigma=(0.1, 0.2, 0.3)), ValueError, r"^noise_sigma range must be \(lo, hi\)"),
    (dict(noise_sigma=(0.2, 0.1)), ValueError, r"^noise_sigma range must be \(lo, hi\) with 0 <= lo <= hi, got \(0.2, 0.1\)$"),
    (dict(noise_sigma=(-0.1, 0.1)), ValueError, r"^noise_sigma range must be \(lo, hi\)"),
    (dict(flow=np.zeros((2, 4, 5))), ValueError, r"^flow must have shape \(2, 4, 4\), got \(2, 4, 5\)$"),
    (dict(flow=np.zeros((1, 2, 4, 4))), ValueError, r"^flow must have shape \(2, 4, 4\), got \(1, 2, 4, 4\)$"),
    (dict(seed=-1), ValueError, r"^seed must be a non-negative int"),
])
def test_flow_blur_errors(kwargs, exc, msg):
    args = dict(sharp=np.full((4, 4), 0.5), flow=np.zeros((2, 4, 4)), seed=0)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        synthesize_flow_blur(**args)


# --------------------------------------------------------------------------- the foreground layer


def _make_fg(photo, shape, n=3, max_blur=6.0, seed=0):
    from pnpdeblur.data.video import _make_foreground

    return _make_foreground(photo, shape, n, max_blur, np.random.default_rng(seed))


def _find_patch(photo, tex):
    """(y0, x0, perm) such that tex = photo[y0:y0+fh, x0:x0+fw][::-1, ::-1][..., perm], or None."""
    from itertools import permutations

    fh, fw = tex.shape[:2]
    for y0 in range(photo.shape[0] - fh + 1):
        for x0 in range(photo.shape[1] - fw + 1):
            patch = photo[y0:y0 + fh, x0:x0 + fw][::-1, ::-1]
            for perm in permutations(range(photo.shape[2])):
                if np.array_equal(patch[..., list(perm)], tex):
                    return y0, x0, perm
    return None


def test_foreground_size_range():
    photo = _photo(40, 40)
    # (33, 34): heights in [33 // 5, 33 // 2) = [6, 16), widths in [34 // 5, 34 // 2) = [6, 17)
    fhs, fws = set(), set()
    for seed in range(300):
        fg = _make_fg(photo, (33, 34), seed=seed)
        fhs.add(fg.texture.shape[0])
        fws.add(fg.texture.shape[1])
        assert fg.alpha.shape == fg.texture.shape[:2]
    assert fhs == set(range(6, 16)) and fws == set(range(6, 17))
    # a 10 x 10 frame: at least 4 px, below max(5, 10 // 2) = 5
    for seed in range(20):
        assert _make_fg(photo, (10, 10), seed=seed).texture.shape == (4, 4, 3)


def test_foreground_texture_is_a_flipped_colour_permuted_patch():
    photo = _photo(12, 14, seed=5)  # distinct values: the patch is found at one place only
    perms, starts = set(), set()
    for seed in range(40):
        fg = _make_fg(photo, (10, 10), seed=seed)
        assert fg.texture.shape == (4, 4, 3) and fg.texture.flags.c_contiguous
        found = _find_patch(photo, fg.texture)
        assert found is not None, seed
        y0, x0, perm = found
        assert 0 <= y0 < 12 - 4 and 0 <= x0 < 14 - 4
        perms.add(perm)
        starts.add((y0, x0))
    assert len(perms) > 3 and (0, 0) in {(y, 0) for y, _ in starts} | {(0, x) for _, x in starts}
    assert min(y for y, _ in starts) == 0 and min(x for _, x in starts) == 0
    assert max(y for y, _ in starts) >= 6 and max(x for _, x in starts) >= 8


def test_foreground_texture_of_a_small_photo():
    # a photo 1 px larger than the patch: the only start is (0, 0)
    photo = _photo(5, 5, seed=2)
    for seed in range(10):
        fg = _make_fg(photo, (10, 10), seed=seed)
        assert _find_patch(photo, fg.texture)[:2] == (0, 0)
    # a photo smaller than the patch: the flipped photo is tiled (np.resize) to the patch size
    photo = _photo(3, 3, seed=3)
    from itertools import permutations

    for seed in range(5):
        fg = _make_fg(photo, (10, 10), seed=seed)
        assert fg.texture.shape == (4, 4, 3)
        tiled = np.resize(photo[::-1, ::-1], (4, 4, 3))
        assert any(np.array_equal(tiled[..., list(p)], fg.texture) for p in permutations(range(3)))


def test_foreground_alpha_is_a_soft_ellipse():
    photo = _photo(40, 40)
    # 4 x 4: normalised radius² at the corners is 2 (3/4)² = 1.125 -> 0, elsewhere <= 0.625 -> 1
    want = np.ones((4, 4))
    want[[0, 0, -1, -1], [0, -1, 0, -1]] = 0.0
    np.testing.assert_array_equal(_make_fg(photo, (10, 10)).alpha, want)
    soft = 0
    for seed in range(30):
        a = _make_fg(photo, (33, 34), seed=seed).alpha
        fh, fw = a.shape
        u = (2 * np.arange(fh)[:, None] - (fh - 1)) / fh  # -> ±1 at the outer pixel edges
        v = (2 * np.arange(fw)[None, :] - (fw - 1)) / fw
        np.testing.assert_allclose(a, np.clip(8 * (1 - u ** 2 - v ** 2), 0, 1), rtol=0, atol=1e-12)
        np.testing.assert_array_equal(a, a[::-1, ::-1])
        assert a.min() == 0.0 and a.max() == 1.0
        soft += a[(a > 0) & (a < 1)].size
    assert soft > 0  # a soft edge


def test_foreground_position_and_velocity():
    photo = _photo(40, 40)
    n, max_blur = 5, 6.0
    xs, ys, signs = [], [], set()
    for seed in range(200):
        fg = _make_fg(photo, (10, 12), n=n, max_blur=max_blur, seed=seed)
        fh, fw = fg.texture.shape[:2]
        x, y = fg.position
        assert 0 <= x <= 12 - fw and 0 <= y <= 10 - fh
        xs.append(x / (12 - fw))
        ys.append(y / (10 - fh))
        speed = math.hypot(*fg.velocity)
        assert 0.3 * max_blur / n - 1e-12 <= speed <= max_blur / n + 1e-12
        signs.add((np.sign(fg.velocity[0]), np.sign(fg.velocity[1])))
        assert all(type(v) is float for v in (*fg.position, *fg.velocity))
    assert min(xs) < 0.1 and max(xs) > 0.9 and min(ys) < 0.1 and max(ys) > 0.9  # uniform over the frame
    assert len(signs) == 4  # every direction
    speeds = [math.hypot(*_make_fg(photo, (10, 12), n, max_blur, s).velocity) * n / max_blur for s in range(100)]
    assert min(speeds) < 0.4 and max(speeds) > 0.9
    a, b = _make_fg(photo, (10, 12), seed=7), _make_fg(photo, (10, 12), seed=7)
    assert a.position == b.position and a.velocity == b.velocity and np.array_equal(a.texture, b.texture)


def test_foreground_layer_vertical_motion_order_2_and_alpha_interpolation():
    tex = _photo(4, 4, seed=4)
    alpha = np.array([[0.0, 1.0, 0.5, 1.0]] * 4)
    fg = _Foreground(tex, alpha, (1.0, 1.0), (0.0, 1.0))
    # moving down 1 px/frame: at tau = 2 the layer starts at row 3
    col, a = fg.layer((8, 6), 2.0, 1)
    np.testing.assert_allclose(col[3:7, 1:5], tex, atol=1e-12)
    np.testing.assert_allclose(a[3:7, 1:5], alpha, atol=1e-12)
    # order 2 splines are prefiltered too: integer positions give the texture exactly
    col2, _ = fg.layer((8, 6), 2.0, 2)
    np.testing.assert_allclose(col2[3:7, 1:5], tex, atol=1e-9)
    # alpha is always linearly interpolated (whatever the colour order): half a pixel right
    half = _Foreground(tex, alpha, (1.5, 1.0), (0.0, 0.0))
    for order in (1, 3):
        _, ah = half.layer((6, 6), 0.0, order)
        np.testing.assert_allclose(ah[1:5, 2:5], 0.5 * (alpha[:, :3] + alpha[:, 1:]), atol=1e-12)
    # alpha outside [0, 1] is clipped from below too
    neg = _Foreground(tex, np.full((4, 4), -0.5), (1.0, 1.0), (0.0, 0.0))
    assert neg.layer((6, 6), 0.0, 1)[1].min() == 0.0


def test_average_frames_reads_float32_arrays_as_float64():
    fr = np.random.default_rng(2).random((3, 2, 2, 1)).astype(np.float32)
    for gamma in (GAMMA, None):
        out = average_frames(fr, gamma=gamma)
        assert out.dtype == np.float64
        want = _gopro(list(fr.astype(np.float64)), gamma)
        np.testing.assert_allclose(out, want, rtol=1e-12)


def test_video_sequence_passes_its_settings():
    photo = _photo(20, 20)
    # default min_blur 2: with max_blur 2 the blur is exactly 2 px
    seq = synthesize_video_sequence(photo, 1, shape=(6, 6), n_frames=3, motion="translation", max_blur=2,
                                    seed=0, order=0)
    np.testing.assert_allclose(math.hypot(*seq.path.velocity) * 3, 2.0, rtol=1e-12)
    for seed in range(4):
        seq = synthesize_video_sequence(photo, 1, shape=(6, 6), n_frames=5, motion="translation", max_blur=4,
                                        min_blur=4, acceleration=0.5, seed=seed, order=0)
        speed, am = math.hypot(*seq.path.velocity), math.hypot(*seq.path.acceleration)
        assert 0.25 * speed / 2.5 - 1e-12 <= am <= 0.5 * speed / 2.5 + 1e-12 and am > 0
    # the default spline order is 3
    path = CameraPath(velocity=(0.5, 0.25))
    d = synthesize_video_sequence(photo, 2, shape=(6, 6), n_frames=3, path=path)
    for order, same in ((3, True), (4, False), (1, False)):
        o = synthesize_video_sequence(photo, 2, shape=(6, 6), n_frames=3, path=path, order=order)
        assert np.array_equal(d.blurred, o.blurred) == same, order


def test_documented_defaults_of_the_path_and_the_video():
    for seed in range(3):
        assert random_camera_path((9, 10), 5, seed=seed) == random_camera_path((9, 10), 5, "mixed", 20.0, 2.0,
                                                                                None, seed)
    photo = _photo(50, 50)
    path = CameraPath(velocity=(0.5, 0.25))
    d = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path)
    for order, same in ((3, True), (4, False)):
        o = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path, order=order)
        assert np.array_equal(d.blurred, o.blurred) == same, order
    a = synthesize_video_blur(photo, n_frames=3, seed=4, order=0)
    b = synthesize_video_blur(photo, n_frames=3, seed=4, order=0, motion="mixed", max_blur=20.0, min_blur=2.0)
    assert a.path == b.path and a.sharp.shape == (10, 10, 3)


@pytest.mark.parametrize("gamma", [GAMMA, None])
def test_video_blur_half_pixel_motion_at_order_1(gamma):
    # 0.5 px/frame: the outer frames are linear interpolations of two crops (order 1 honoured)
    photo = _photo(10, 14)
    h, w, ox, oy = 4, 6, 4, 3
    s = synthesize_video_blur(photo, shape=(h, w), n_frames=3, path=CameraPath(velocity=(0.5, 0.0)), gamma=gamma,
                              order=1)
    lin = (lambda z: z ** gamma) if gamma else (lambda z: z)  # noqa: E731  linear intensity
    c = {k: lin(_crop(photo, ox + k, oy, h, w)) for k in (-1, 0, 1)}
    frames = [0.5 * (c[-1] + c[0]), c[0], 0.5 * (c[0] + c[1])]  # interpolated in linear intensity
    want = sum(frames) / 3
    want = want ** (1 / gamma) if gamma else want
    np.testing.assert_allclose(s.blurred, want, atol=2e-6)
    seq = synthesize_video_sequence(photo, 1, shape=(h, w), n_frames=3, path=CameraPath(velocity=(0.5, 0.0)),
                                    gamma=gamma, order=1)
    np.testing.assert_allclose(seq.blurred[0], want, atol=2e-6)


def test_video_sequence_middle_frame_of_five():
    photo = _photo(10, 40)
    h, w, n, spacing = 4, 6, 5, 5
    ox, oy = (40 - w) // 2, (10 - h) // 2
    seq = synthesize_video_sequence(photo, 2, shape=(h, w), n_frames=n, path=CameraPath(velocity=(1.0, 0.0)),
                                    gamma=GAMMA, order=1)
    for k, tk in enumerate((-2.5, 2.5)):
        # frames at tk + (-2 .. 2): the middle one (tk) is at a half pixel
        j0 = math.floor(tk - 2)  # the first frame, tk - 2, lies between shifts j0 and j0 + 1
        crops = [_crop(photo, ox + j, oy, h, w) ** GAMMA for j in range(j0, j0 + 6)]
        frames = [0.5 * (crops[i] + crops[i + 1]) for i in range(5)]
        np.testing.assert_allclose(seq.sharp[k], frames[2] ** (1 / GAMMA), atol=2e-6)
        np.testing.assert_allclose(seq.blurred[k], (sum(frames) / 5) ** (1 / GAMMA), atol=2e-6)
    assert seq.spacing == spacing


def _spy_foreground(monkeypatch):
    """Record the foreground layers the synthesisers draw."""
    import pnpdeblur.data.video as V

    made, real = [], V._make_foreground

    def spy(*args):
        made.append(real(*args))
        return made[-1]

    monkeypatch.setattr(V, "_make_foreground", spy)
    return made


def test_foreground_flows_are_the_layer_motion(monkeypatch):
    made = _spy_foreground(monkeypatch)
    photo = _photo(44, 44)
    checked = 0
    for seed in range(6):
        seq = synthesize_video_sequence(photo, 2, shape=(36, 36), n_frames=3, spacing=2, max_blur=4, min_blur=1,
                                        motion="rotation", foreground=True, seed=seed, order=1)
        fg = made[-1]
        vel = np.array(fg.velocity)
        for k, tk in enumerate((-1.0, 1.0)):
            _, a = fg.layer((36, 36), tk, 1)
            np.testing.assert_allclose(seq.foreground_masks[k], a, atol=1e-7)  # the layer at time tk
            sel, out = a > 0.5, a <= 0.5
            cam_n = seq.path.flow_between((36, 36), tk, tk + 2)
            cam_p = seq.path.flow_between((36, 36), tk, tk - 2)
            cam_e = seq.path.flow_between((36, 36), tk, tk + 1.5) - seq.path.flow_between((36, 36), tk, tk - 1.5)
            for c in (0, 1):
                # inside: the layer's own velocity times 2 (spacing), -2, 3 (exposure) frames
                np.testing.assert_allclose(seq.flows_next[k, c][sel], vel[c] * 2, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(seq.flows_prev[k, c][sel], -vel[c] * 2, rtol=1e-6, atol=1e-6)
                np.testing.assert_allclose(seq.exposure_flows[k, c][sel], vel[c] * 3, rtol=1e-6, atol=1e-6)
                # outside: the camera's (rotation) flows
                np.testing.assert_allclose(seq.flows_next[k, c][out], cam_n[c][out], atol=1e-5)
                np.testing.assert_allclose(seq.flows_prev[k, c][out], cam_p[c][out], atol=1e-5)
                np.testing.assert_allclose(seq.exposure_flows[k, c][out], cam_e[c][out], atol=1e-5)
            checked += bool(sel.any())
        # the layer is drawn into the frames
        sel, out = seq.foreground_masks[0] > 0.5, seq.foreground_masks[0] == 0
        bg = synthesize_video_sequence(photo, 2, shape=(36, 36), n_frames=3, spacing=2, path=seq.path, order=1)
        if sel.any():
            assert np.abs(seq.sharp[0][sel] - bg.sharp[0][sel]).max() > 1e-3
        np.testing.assert_allclose(seq.sharp[0][out], bg.sharp[0][out], atol=1e-6)
        # the single-frame synthesis: the same rules at tau = 0
        s = synthesize_video_blur(photo, shape=(36, 36), n_frames=3, spacing=2, max_blur=4, min_blur=1,
                                  motion="rotation", foreground=True, seed=seed, order=1)
        fg = made[-1]
        vel = np.array(fg.velocity)
        _, a = fg.layer((36, 36), 0.0, 1)
        np.testing.assert_allclose(s.foreground_mask, a, atol=1e-7)
        sel, out = a > 0.5, a <= 0.5
        for c in (0, 1):
            np.testing.assert_allclose(s.flow_next[c][sel], vel[c] * 2, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(s.flow_prev[c][sel], -vel[c] * 2, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(s.exposure_flow[c][sel], vel[c] * 3, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(s.flow_next[c][out], s.path.flow((36, 36), 2.0)[c][out], atol=1e-5)
        checked += bool(sel.any())
    assert checked >= 12


def _angle(vx, vy):
    return math.atan2(vy, vx) % (2 * math.pi)


def test_random_camera_path_distributions():
    # seeded draws, so these checks are deterministic; the bounds are several standard errors wide
    n, b, h, w = 5, 4.0, 9, 12
    parts, ang, acc_ang, acc_frac = [], [], [], []
    for seed in range(400):
        p = random_camera_path((h, w), n, "mixed", b, b, seed=seed)
        far = _far(p.center, h, w)
        parts.append((math.hypot(*p.velocity) * n / b, abs(p.omega) * far * n / b, abs(p.zeta) * far * n / b))
        ang.append(_angle(*p.velocity))
        acc_ang.append(_angle(*p.acceleration))
        speed = math.hypot(*p.velocity)
        acc_frac.append(math.hypot(*p.acceleration) / (0.2 * speed / (n / 2)))
    # budget split ~ Dirichlet(2, 1, 1): mean (1/2, 1/4, 1/4)
    np.testing.assert_allclose(np.mean(parts, axis=0), [0.5, 0.25, 0.25], atol=0.04)
    for a in (np.array(ang), np.array(acc_ang)):  # directions uniform on [0, 2 pi)
        assert a.min() < 0.1 and a.max() > 2 * math.pi - 0.1
        assert abs(np.mean(a < math.pi) - 0.5) < 0.08
        assert abs(np.mean((a > math.pi / 2) & (a < 3 * math.pi / 2)) - 0.5) < 0.08
    acc_frac = np.array(acc_frac)  # the acceleration's magnitude ~ U(0.5, 1) of its bound
    assert 0.5 - 1e-9 <= acc_frac.min() < 0.55 and 0.95 < acc_frac.max() <= 1 + 1e-9
    # zoom centres fill the central half of a small frame
    cx = [random_camera_path((5, 5), 3, "zoom", 2, 2, seed=s).center for s in range(100)]
    cx = np.array(cx)
    assert cx.max(axis=0).min() > 0.7 * 4 and cx.min(axis=0).max() < 0.3 * 4


def test_random_n_frames_are_the_gopro_odd_counts():
    photo = _photo(8, 8)
    ns = [synthesize_video_blur(photo, shape=(2, 2), path=CameraPath(), seed=s, order=0).n_frames
          for s in range(40)]
    assert set(ns) == {7, 9, 11, 13}
    ns = [synthesize_video_sequence(photo, 1, shape=(2, 2), path=CameraPath(), seed=s, order=0).n_frames
          for s in range(40)]
    assert set(ns) == {7, 9, 11, 13}


def test_every_spline_order_is_accepted_and_render_default_is_cubic():
    photo = _photo(10, 10)
    path = CameraPath(velocity=(0.5, 0.25))
    outs = []
    for order in range(6):
        s = synthesize_video_blur(photo, shape=(6, 6), n_frames=3, path=path, order=order)
        q = synthesize_video_sequence(photo, 1, shape=(6, 6), n_frames=3, path=path, order=order)
        np.testing.assert_allclose(q.blurred[0], s.blurred, atol=1e-6)
        outs.append(s.blurred)
    assert all(np.abs(outs[i] - outs[j]).max() > 1e-6 for i in range(6) for j in range(i))
    d = render_frames(photo, (6, 6), path, [1.0])
    np.testing.assert_array_equal(d, render_frames(photo, (6, 6), path, [1.0], order=3))
    assert np.abs(d - render_frames(photo, (6, 6), path, [1.0], order=4)).max() > 1e-6


def test_odd_margins_give_an_integer_origin():
    photo = _photo(13, 20)
    s = synthesize_video_blur(photo, shape=(6, 9), n_frames=1, path=CameraPath(), order=3)
    assert s.meta["origin"] == (5, 3) and all(type(v) is int for v in s.meta["origin"])
    np.testing.assert_allclose(s.sharp, photo[3:9, 5:14], atol=2e-6)
    q = synthesize_video_sequence(photo, 1, shape=(6, 9), n_frames=1, path=CameraPath(), order=3)
    np.testing.assert_allclose(q.sharp[0], photo[3:9, 5:14], atol=2e-6)


def test_too_small_message_names_two_blurred_frames():
    with pytest.raises(ValueError, match=r"^photo of shape \(20, 20\) is too small for max_blur=5 and n_blurred=2$"):
        synthesize_video_sequence(_photo(20, 20), 2, max_blur=5, seed=0)  # margin ceil(7.5) = 8: 4 rows left


def test_flow_blur_default_preset_and_rng_use():
    from pnpdeblur.data.flows import random_motion_flow

    x = _photo(10, 10, c=1).astype(np.float32)
    s = synthesize_flow_blur(x, seed=5)
    np.testing.assert_array_equal(s.flow, random_motion_flow((10, 10), "23", np.random.default_rng(5)))
    # with a given flow and no noise nothing is drawn from the caller's Generator
    g = np.random.default_rng(0)
    synthesize_flow_blur(x, flow=np.zeros((2, 10, 10)), seed=g)
    assert g.random() == np.random.default_rng(0).random()
    # noise keeps float32
    n = synthesize_flow_blur(x, noise_sigma=0.05, flow=np.zeros((2, 10, 10)), clip=False, seed=1)
    assert n.blurred.dtype == np.float32 and n.blurred.shape == (10, 10, 1)


def test_foreground_direction_is_uniform():
    photo = _photo(20, 20)
    a = np.array([_angle(*_make_fg(photo, (10, 10), seed=s).velocity) for s in range(300)])
    assert a.min() < 0.1 and a.max() > 2 * math.pi - 0.1
    assert abs(np.mean(a < math.pi) - 0.5) < 0.08
    assert abs(np.mean((a > math.pi / 2) & (a < 3 * math.pi / 2)) - 0.5) < 0.08


@pytest.mark.parametrize("bad", [float("inf"), True, (0.0, float("inf")), (float("nan"), 0.1), (0.0, "0.1"),
                                 (False, 0.1)])
def test_flow_blur_refuses_infinite_and_bool_noise(bad):
    # inf noise used to give +-inf pixels (clip=False) and a bool was read as sigma = 1
    with pytest.raises(ValueError, match=r"^noise_sigma (range )?must be"):
        synthesize_flow_blur(np.full((4, 4), 0.5), noise_sigma=bad, flow=np.zeros((2, 4, 4)), clip=False, seed=0)


def test_gamma_true_is_refused_not_read_as_linear():
    from pnpdeblur.data.video import average_frames

    frames = np.full((2, 3, 3, 1), 0.25)
    with pytest.raises(ValueError, match=r"^gamma must be a positive finite number, got True$"):
        average_frames(frames, gamma=True)
    assert np.allclose(average_frames(frames, gamma=1), 0.25) and np.allclose(average_frames(frames, gamma=None), 0.25)
    assert np.allclose(average_frames(np.stack([np.zeros((1, 1, 1)), np.ones((1, 1, 1))]), gamma=2.0), 0.5 ** 0.5)


def test_samples_and_paths_print_shapes_and_plain_numbers():
    # the default dataclass repr printed every pixel of each array, and the path's velocity read
    # as (np.float64(...), ...)
    from pnpdeblur.data import sample_image

    img = sample_image("coffee", size=64)
    path = random_camera_path((64, 64), 7, "mixed", seed=0)
    assert all(type(v) is float for v in (*path.velocity, *path.acceleration, path.omega, path.zeta, *path.center))
    assert "np.float64" not in repr(path)
    s = synthesize_flow_blur(img, noise_sigma=0.01, seed=0)
    assert repr(s) == ("FlowBlurSample(blurred=ndarray (64, 64, 3) float32, sharp=ndarray (64, 64, 3) float32, "
                       "flow=ndarray (2, 64, 64) float32, noise_sigma=0.01)")
    v = synthesize_video_blur(img, seed=0)
    assert repr(v).startswith(f"VideoBlurSample(blurred=ndarray {v.blurred.shape} float32, sharp=ndarray ")
    assert "[[" not in repr(v) and f"path={v.path!r}" in repr(v)
    q = synthesize_video_sequence(img, 2, seed=0)
    assert repr(q).startswith(f"VideoSequenceSample(blurred=ndarray {q.blurred.shape} float32, ")
    assert "[[" not in repr(q)
