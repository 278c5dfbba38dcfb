"""Flow synthesis, deterministic pieces against exact values (fast, direct calls).

* ``CameraMotion.continuous_flow`` / ``flow``: pure translation, acceleration, rotation
  and zoom fields at known pixels (closed forms of the module docstring), on frames of
  1 and 2 pixels where the normalisation ``max(W - 1, 1)`` matters;
* ``sample_camera_motion``: the parameters computed from the model of the module
  docstring and the 14 uniform draws it documents ("fixed number of draws per call"), in
  their order; plus the ranges of every parameter over many seeds;
* argument checks: every message is matched from its start (it must name the argument);
* ``random_motion_flows``: sample ``i`` is ``random_motion_flow`` with the ``i``-th
  child seed, the keyword arguments reach every sample.
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.data.flows import (
    FLOW_PRESETS,
    CameraMotion,
    _farthest_corner,
    canonicalize_flow,
    random_motion_flow,
    random_motion_flows,
    sample_camera_motion,
)


def _motion(**kw):
    base = dict(translation=(0.0, 0.0), accel_dir=(1.0, 0.0), accel=0.0, angle=0.0, rot_center=(0.0, 0.0),
                zoom=0.0, zoom_center=(0.0, 0.0), max_len=1000)
    base.update(kw)
    return CameraMotion(**base)


# -- the field of given parameters ---------------------------------------------------------
def test_acceleration_along_an_oblique_direction():
    # d = (0.6, 0.8); p̂ = (x/(W-1) − ½, y/(H-1) − ½); m_T = t (1 + a <d, p̂>)
    m = _motion(translation=(3.0, -2.0), accel_dir=(0.6, 0.8), accel=0.5)
    f = m.continuous_flow((3, 5))
    y, x = np.mgrid[0:3, 0:5]
    scale = 1 + 0.5 * (0.6 * (x / 4 - 0.5) + 0.8 * (y / 2 - 0.5))
    np.testing.assert_allclose(f[0], 3.0 * scale, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f[1], -2.0 * scale, rtol=0, atol=1e-12)
    assert f.shape == (2, 3, 5) and f.dtype == np.float64


@pytest.mark.parametrize("shape, last", [((2, 2), 1.35), ((1, 1), 0.65), ((1, 2), 0.95), ((2, 1), 1.05)])
def test_acceleration_on_tiny_frames(shape, last):
    # a 2-pixel side has p̂ = -1/2, +1/2; a 1-pixel side p̂ = -1/2 (W - 1 = 0 is read as 1), so the
    # scale 1 + a <d, p̂> at the last pixel is 1 + 0.5 (±0.3 ± 0.4) and 0.65 at the first
    m = _motion(translation=(2.0, 4.0), accel_dir=(0.6, 0.8), accel=0.5)
    f = m.continuous_flow(shape)
    np.testing.assert_allclose(f[:, -1, -1], [2.0 * last, 4.0 * last], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f[:, 0, 0], [2.0 * 0.65, 4.0 * 0.65], rtol=0, atol=1e-12)


@pytest.mark.parametrize("w", [0.3, 1.0])
def test_rotation_about_a_centre(w):
    m = _motion(angle=w, rot_center=(2.0, 1.5))
    f = m.continuous_flow((4, 6))
    y, x = np.mgrid[0:4, 0:6].astype(float)
    dx, dy = x - 2.0, y - 1.5
    np.testing.assert_allclose(f[0], math.cos(w) * dx - math.sin(w) * dy - dx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(f[1], math.sin(w) * dx + math.cos(w) * dy - dy, rtol=0, atol=1e-12)


@pytest.mark.parametrize("s", [-0.25, 1.0])
def test_zoom_and_translation_add(s):
    m = _motion(translation=(1.0, 2.0), zoom=s, zoom_center=(1.0, 3.0))
    f = m.continuous_flow((5, 3))
    y, x = np.mgrid[0:5, 0:3]
    np.testing.assert_allclose(f[0], 1.0 + s * (x - 1.0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(f[1], 2.0 + s * (y - 3.0), rtol=0, atol=1e-12)


def test_flow_labels_round_bound_and_canonicalise():
    m = _motion(translation=(-2.4, 1.6), max_len=5)
    np.testing.assert_allclose(m.flow((1, 2), integer=False, canonical=False)[:, 0, 0], [-2.4, 1.6], atol=1e-12)
    np.testing.assert_array_equal(m.flow((1, 2), canonical=False)[:, 0, 0], [-2.0, 2.0])
    np.testing.assert_array_equal(m.flow((1, 2))[:, 0, 0], [2.0, -2.0])
    np.testing.assert_allclose(m.flow((1, 2), integer=False)[:, 0, 0], [2.4, -1.6], atol=1e-12)
    # a vector on the bound is kept; beyond it, shrunk to the bound with the direction kept
    on = _motion(translation=(5.0, -3.0), max_len=5).flow((1, 1), integer=False, canonical=False)
    np.testing.assert_allclose(on[:, 0, 0], [5.0, -3.0], atol=1e-12)
    long = _motion(translation=(-3.0, -10.0), max_len=5).flow((1, 1), integer=False, canonical=False)
    np.testing.assert_allclose(long[:, 0, 0], [-1.5, -5.0], atol=1e-12)
    np.testing.assert_array_equal(_motion(translation=(-3.0, -10.0), max_len=5).flow((1, 1))[:, 0, 0], [2.0, 5.0])
    zero = _motion(translation=(-0.2, -0.3), max_len=5).flow((1, 1))  # rounds to −0: no negative zeros
    assert not np.signbit(zero).any()
    zero = _motion(translation=(-0.2, -0.3), max_len=5).flow((1, 1), canonical=False)
    assert not zero.any() and not np.signbit(zero).any()  # also without canonicalisation


def test_farthest_corner():
    assert _farthest_corner((0.0, 0.0), 3, 5) == pytest.approx(math.hypot(4, 2))
    assert _farthest_corner((4.0, 2.0), 3, 5) == pytest.approx(math.hypot(4, 2))
    assert _farthest_corner((1.0, 0.5), 3, 5) == pytest.approx(math.hypot(3, 1.5))
    assert _farthest_corner((0.0, 0.0), 1, 1) == 0.0


# -- sampling --------------------------------------------------------------------------------
def _reference_motion(shape, max_len, seed, rotation_prob=0.5, zoom_prob=0.5, acceleration=0.3):
    """The module docstring's model from the 14 documented uniform draws."""
    h, w = shape
    (t_len, t_ang, a_dir, a_val, r_on, r_len, r_sign, r_cx, r_cy,
     z_on, z_len, z_sign, z_cx, z_cy) = np.random.default_rng(seed).random(14)
    t = (t_len * max_len * math.cos(2 * math.pi * t_ang), t_len * max_len * math.sin(2 * math.pi * t_ang))
    d = (math.cos(2 * math.pi * a_dir), math.sin(2 * math.pi * a_dir))
    accel = acceleration * (2 * a_val - 1)
    corners = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]
    rc = (r_cx * (w - 1), r_cy * (h - 1))
    angle = 0.0
    if r_on < rotation_prob and max_len > 0:
        far = max(max(math.dist(rc, c) for c in corners), 1.0)
        # chord of the farthest corner 2·far·sin(|ω|/2) equals the drawn displacement (at most the diameter)
        angle = 2 * math.asin(min(r_len * max_len, 2 * far) / (2 * far)) * (1 if r_sign < 0.5 else -1)
    zc = ((0.25 + 0.5 * z_cx) * (w - 1), (0.25 + 0.5 * z_cy) * (h - 1))
    zoom = 0.0
    if z_on < zoom_prob and max_len > 0:
        far = max(max(math.dist(zc, c) for c in corners), 1.0)
        zoom = z_len * max_len / far * (1 if z_sign < 0.5 else -1)
    return dict(translation=t, accel_dir=d, accel=accel, angle=angle, rot_center=rc, zoom=zoom, zoom_center=zc,
                max_len=max_len)


@pytest.mark.parametrize("shape, max_len, kw", [
    ((24, 32), 23, {}),
    ((9, 5), 46, dict(rotation_prob=1.0, zoom_prob=1.0, acceleration=1.5)),
    ((2, 3), 64, dict(rotation_prob=1.0, zoom_prob=1.0)),   # the rotation is capped at the diameter
    ((1, 1), 23, dict(rotation_prob=1.0, zoom_prob=1.0)),   # far = 0 → 1
    ((16, 16), 0, dict(rotation_prob=1.0, zoom_prob=1.0)),  # max_len 0: nothing moves
    ((6, 7), 1, dict(rotation_prob=1.0, zoom_prob=1.0)),    # the smallest bound that moves
])
def test_sampled_parameters_follow_the_documented_model(shape, max_len, kw):
    for seed in range(25):
        got = sample_camera_motion(shape, max_len, seed=seed, **kw)
        want = _reference_motion(shape, max_len, seed, **kw)
        for k, v in want.items():
            np.testing.assert_allclose(getattr(got, k), v, rtol=1e-12, atol=1e-12, err_msg=f"{k} seed {seed}")
        assert type(got.max_len) is int and type(got.angle) is float and type(got.zoom) is float


def test_rotation_capped_at_half_a_turn_on_a_tiny_frame():
    angles = [abs(sample_camera_motion((2, 2), 46, seed=s, rotation_prob=1.0).angle) for s in range(60)]
    assert max(angles) == pytest.approx(math.pi) and min(angles) < math.pi  # most draws exceed the diameter


def test_parameter_ranges_over_seeds():
    h, w, L, a = 20, 30, 23, 0.3
    ms = [sample_camera_motion((h, w), L, seed=s, acceleration=a) for s in range(400)]
    acc = np.array([m.accel for m in ms])
    assert np.all(np.abs(acc) <= a) and acc.max() > 0.95 * a and acc.min() < -0.95 * a
    assert all(math.hypot(*m.accel_dir) == pytest.approx(1.0) for m in ms)
    rc = np.array([m.rot_center for m in ms])
    assert rc[:, 0].min() < 0.05 * (w - 1) and rc[:, 0].max() > 0.95 * (w - 1)
    assert rc[:, 1].min() < 0.05 * (h - 1) and rc[:, 1].max() > 0.95 * (h - 1)
    zc = np.array([m.zoom_center for m in ms])
    assert np.all(zc[:, 0] >= 0.25 * (w - 1)) and np.all(zc[:, 0] <= 0.75 * (w - 1))
    assert zc[:, 0].min() < 0.27 * (w - 1) and zc[:, 0].max() > 0.73 * (w - 1)
    assert np.all(zc[:, 1] >= 0.25 * (h - 1)) and np.all(zc[:, 1] <= 0.75 * (h - 1))
    assert zc[:, 1].min() < 0.27 * (h - 1) and zc[:, 1].max() > 0.73 * (h - 1)
    # with the default probabilities ½, about half have a rotation / a zoom (4.5 standard errors)
    for frac in (np.mean([m.angle != 0 for m in ms]), np.mean([m.zoom != 0 for m in ms])):
        assert abs(frac - 0.5) < 4.5 * math.sqrt(0.25 / len(ms))


def test_probabilities_zero_and_one():
    for s in range(20):
        none = sample_camera_motion((8, 8), 23, seed=s, rotation_prob=0, zoom_prob=0)
        assert none.angle == 0.0 and none.zoom == 0.0
        both = sample_camera_motion((8, 8), 23, seed=s, rotation_prob=1, zoom_prob=1)
        assert both.angle != 0.0 and both.zoom != 0.0
        # the same stream whatever the probabilities: translation and centres agree
        assert none.translation == both.translation and none.rot_center == both.rot_center
    assert sample_camera_motion((8, 8), 23, seed=0, acceleration=0).accel == 0.0


def test_sample_camera_motion_argument_checks():
    for nm in ("rotation_prob", "zoom_prob"):
        for bad in (-0.1, 1.01, "0.5", None):
            with pytest.raises(ValueError, match=rf"^{nm} must be a probability in \[0, 1\], got "):
                sample_camera_motion((8, 8), 23, **{nm: bad})
    for bad in (-0.1, 2.0, "0.1"):
        with pytest.raises(ValueError, match=r"^acceleration must be a float in \[0, 2\), got "):
            sample_camera_motion((8, 8), 23, acceleration=bad)
    sample_camera_motion((8, 8), 23, rotation_prob=1.0, zoom_prob=0.0, acceleration=1.99)
    with pytest.raises(ValueError, match=r"^shape must be a pair"):
        sample_camera_motion((8,), 23)


# -- random_motion_flow ----------------------------------------------------------------------
def test_max_len_and_preset_checks():
    assert FLOW_PRESETS == {"23": 23, "46": 46}
    for bad in (-1, 2.0, True, "5"):
        with pytest.raises(ValueError, match=r"^max_len must be a non-negative int, got "):
            random_motion_flow((8, 8), max_len=bad)
    with pytest.raises(ValueError, match=r"^max_len must be at most 64 px \(the operators' limit MAX_FLOW\), got 65$"):
        random_motion_flow((8, 8), max_len=65)
    assert np.abs(random_motion_flow((8, 8), max_len=64, seed=1, rotation_prob=1, zoom_prob=1)).max() <= 64
    with pytest.raises(ValueError, match=r"^preset must be one of \['23', '46'\] \(or pass max_len\), got '12'$"):
        random_motion_flow((8, 8), preset="12")
    # max_len 0 is allowed (no motion); numpy ints count as ints
    assert not random_motion_flow((8, 8), max_len=0, seed=0, rotation_prob=1, zoom_prob=1).any()
    np.testing.assert_array_equal(random_motion_flow((8, 8), max_len=np.int64(46), seed=3),
                                  random_motion_flow((8, 8), preset=46, seed=3))
    np.testing.assert_array_equal(random_motion_flow((8, 8), seed=3), random_motion_flow((8, 8), "23", seed=3))


def test_random_motion_flow_is_the_sampled_motion():
    kw = dict(rotation_prob=0.7, zoom_prob=0.2, acceleration=0.5)
    for seed in range(5):
        m = sample_camera_motion((10, 12), 46, seed=seed, **kw)
        for integer in (True, False):
            for canonical in (True, False):
                for dt in (np.float32, np.float64):
                    got = random_motion_flow((10, 12), "46", seed, integer=integer, canonical=canonical, dtype=dt, **kw)
                    assert got.dtype == dt
                    np.testing.assert_array_equal(got, m.flow((10, 12), integer, canonical).astype(dt))
    # the documented defaults are those of sample_camera_motion (probabilities ½, acceleration 0.3)
    for seed in range(3):
        np.testing.assert_array_equal(random_motion_flow((10, 12), "46", seed),
                                      sample_camera_motion((10, 12), 46, seed=seed).flow((10, 12)).astype(np.float32))
    with pytest.raises(TypeError, match=r"^dtype must be numpy.float32 or numpy.float64, got 'nonsense'$"):
        random_motion_flow((8, 8), dtype="nonsense")
    with pytest.raises(TypeError, match=r"^dtype must be numpy.float32 or numpy.float64, got int32$"):
        random_motion_flow((8, 8), dtype=np.int32)


def test_random_motion_flows_children_and_kwargs():
    n, shape = 3, (6, 7)
    kw = dict(max_len=9, rotation_prob=1.0, zoom_prob=0.0, acceleration=0.0)
    got = random_motion_flows(n, shape, "46", seed=21, **kw)
    children = np.random.SeedSequence(21).spawn(n)
    want = np.stack([random_motion_flow(shape, "46", np.random.default_rng(c), dtype=np.float64, **kw) for c in children])
    assert got.dtype == torch.float32 and got.shape == (n, 2) + shape and got.device.type == "cpu"
    np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
    assert np.abs(want).max() <= 9
    # a Generator: one child seed per sample drawn from it (and the caller's stream advances)
    # (seed 3: child seeds drawn from [1, 2**63 - 1) instead would differ for two of the three)
    g, ref = np.random.default_rng(3), np.random.default_rng(3)
    got = random_motion_flows(3, shape, "23", seed=g, dtype=torch.float64, device="cpu")
    seeds = [ref.integers(0, 2**63 - 1) for _ in range(3)]
    want = np.stack([random_motion_flow(shape, "23", np.random.default_rng(s), dtype=np.float64) for s in seeds])
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), want)
    assert g.random() == ref.random()
    # float64 all the way: real-valued labels are not rounded through float32
    got = random_motion_flows(2, shape, "23", seed=7, dtype=torch.float64, integer=False)
    want = np.stack([random_motion_flow(shape, "23", np.random.default_rng(c), dtype=np.float64, integer=False)
                     for c in np.random.SeedSequence(7).spawn(2)])
    np.testing.assert_array_equal(got.numpy(), want)
    assert np.any(want != want.astype(np.float32))
    # the device argument places the batch (meta: visible without a GPU)
    assert random_motion_flows(2, shape, seed=0, device="meta").device.type == "meta"
    # no seed: fresh randomness each call
    assert not torch.equal(random_motion_flows(2, shape), random_motion_flows(2, shape))


def test_random_motion_flows_checks():
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=r"^n must be a positive int, got "):
            random_motion_flows(bad, (8, 8))
    assert random_motion_flows(1, (8, 8), seed=0).shape == (1, 2, 8, 8)
    with pytest.raises(TypeError, match=r"^dtype must be torch.float32 or torch.float64, got torch.int32$"):
        random_motion_flows(2, (8, 8), dtype=torch.int32)
    assert random_motion_flows(2, (8, 8), seed=0, dtype=torch.float32).dtype == torch.float32


# -- canonicalize_flow -----------------------------------------------------------------------
def test_canonicalize_flow_batches_and_errors():
    f = torch.tensor([[[[-1.0, 0.0]], [[2.0, -3.0]]], [[[0.0, 4.0]], [[0.0, -1.0]]]])  # (2, 2, 1, 2)
    want = torch.tensor([[[[1.0, 0.0]], [[-2.0, 3.0]]], [[[0.0, 4.0]], [[0.0, -1.0]]]])
    out = canonicalize_flow(f)
    assert torch.equal(out, want) and not torch.signbit(out[out == 0]).any()
    for bad, got in ((np.zeros((2, 4)), r"\(2, 4\)"), (np.zeros((3, 2, 2)), r"\(3, 2, 2\)"),
                     (torch.zeros(1, 3, 2, 2), r"\(1, 3, 2, 2\)")):
        with pytest.raises(ValueError, match=r"^flow must have shape \(\.\.\., 2, H, W\), got " + got + "$"):
            canonicalize_flow(bad)
    with pytest.raises(TypeError, match=r"^flow must be a numpy array or torch tensor, got list$"):
        canonicalize_flow([[[0.0]], [[0.0]]])
    for value in (float("nan"), float("inf"), -float("inf")):
        for bad in (np.full((2, 1, 3), value), torch.full((1, 2, 1, 3), value)):
            with pytest.raises(ValueError, match=r"^flow contains NaN or Inf values$"):
                canonicalize_flow(bad)
    ints = np.array([[[-2, 0]], [[1, -3]]])  # integer flows (Gong's labels) keep their dtype
    out = canonicalize_flow(ints)
    assert out.dtype == ints.dtype and out.tolist() == [[[2, 0]], [[-1, 3]]]
    half = np.array([[[0.0, 0.0, 0.0]], [[0.5, -0.5, 0.0]]])  # u = 0: the sign of v decides, 0 stays
    np.testing.assert_array_equal(canonicalize_flow(half), [[[0.0, 0.0, 0.0]], [[0.5, 0.5, 0.0]]])
    assert not np.signbit(canonicalize_flow(half)).any()

    class NotAnArray:
        ndim, shape = 3, (2, 1, 1)

        def __getitem__(self, key):
            return np.zeros((1, 1))

    with pytest.raises(TypeError, match=r"^flow must be a numpy array or torch tensor, got NotAnArray$"):
        canonicalize_flow(NotAnArray())
