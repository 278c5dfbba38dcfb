"""Distribution of the Gong-style flow synthesis (issue 16, part 1).

The bound and integer checks of test_flows.py hold for any distribution inside the
bounds; a halved zoom or a rotation that always turns one way passes them. These tests
measure each component *from the generated displacement field* (not from the sampled
parameters, so a bug in either place shows), over many seeds, and compare with the model
of the module docstring:

* rotation: curl of m_R = (R(ω) − I)(p − c) is 2 sin ω, so its sign is the direction;
  P(ω > 0) = ½ and the largest displacement is U(0, max_len) (capped at 2·R, not reached
  for the frame used here);
* zoom: divergence of m_Z = s (p − c_z) is 2s; P(s > 0) = ½ and the largest displacement
  is U(0, max_len);
* translation: |t| ~ U(0, max_len) with a uniform direction.

Tolerances: with n independent draws, a mean of U(0, 1) has standard error
sqrt(1/12 / n) and a frequency with p = ½ has sqrt(¼ / n); the tests allow 4.5 standard
errors (a false alarm rate below 1e-5 per check, and the seeds are fixed anyway), while
the bugs they target move the statistic by more than 15 of them.
"""
import math

import numpy as np
import pytest

from pnpdeblur.data import random_motion_flow, sample_camera_motion

N = 1200
SHAPE = (24, 32)
L = 23
Z = 4.5  # standard errors allowed
SE_MEAN_U01 = math.sqrt(1 / 12 / N)
SE_HALF = math.sqrt(0.25 / N)


def _component(kind, seed):
    """Field of the rotation or zoom alone (translation removed; no acceleration)."""
    rot, zoom = (1.0, 0.0) if kind == "rotation" else (0.0, 1.0)
    m = sample_camera_motion(SHAPE, L, seed=seed, rotation_prob=rot, zoom_prob=zoom, acceleration=0.0)
    f = m.continuous_flow(SHAPE)
    f[0] -= m.translation[0]
    f[1] -= m.translation[1]
    return m, f


def _curl_div(f):
    u, v = f
    dudx, dvdy = np.diff(u, axis=1).mean(), np.diff(v, axis=0).mean()
    dvdx, dudy = np.diff(v, axis=1).mean(), np.diff(u, axis=0).mean()
    return dvdx - dudy, dudx + dvdy


@pytest.fixture(scope="module")
def rotations():
    out = []
    for s in range(N):
        _, f = _component("rotation", s)
        curl, div = _curl_div(f)
        out.append((curl, np.hypot(f[0], f[1]).max() / L))
    return np.array(out)


@pytest.fixture(scope="module")
def zooms():
    out = []
    for s in range(N):
        _, f = _component("zoom", 10_000 + s)
        curl, div = _curl_div(f)
        assert abs(curl) < 1e-9  # a zoom does not turn
        out.append((div, np.hypot(f[0], f[1]).max() / L))
    return np.array(out)


def test_rotation_turns_both_ways_equally_often(rotations):
    pos = np.mean(rotations[:, 0] > 0)
    assert abs(pos - 0.5) < Z * SE_HALF, pos


def test_rotation_strength_is_uniform_up_to_max_len(rotations):
    d = rotations[:, 1]
    assert d.max() <= 1 + 1e-9
    assert abs(d.mean() - 0.5) < Z * SE_MEAN_U01, d.mean()
    # same law in both directions (each half holds about N/2 draws)
    for half in (d[rotations[:, 0] > 0], d[rotations[:, 0] < 0]):
        assert abs(half.mean() - 0.5) < Z * math.sqrt(1 / 12 / len(half)), half.mean()
    # the median of U(0, 1) is ½ (catches a law with the right mean and the wrong shape)
    assert abs(np.mean(d < 0.5) - 0.5) < Z * SE_HALF


def test_zoom_goes_in_and_out_equally_often(zooms):
    out = np.mean(zooms[:, 0] > 0)
    assert abs(out - 0.5) < Z * SE_HALF, out


def test_zoom_strength_is_uniform_up_to_max_len(zooms):
    d = zooms[:, 1]
    assert d.max() <= 1 + 1e-9
    assert abs(d.mean() - 0.5) < Z * SE_MEAN_U01, d.mean()  # mean largest displacement max_len/2
    assert abs(np.mean(d < 0.5) - 0.5) < Z * SE_HALF
    for half in (d[zooms[:, 0] > 0], d[zooms[:, 0] < 0]):
        assert abs(half.mean() - 0.5) < Z * math.sqrt(1 / 12 / len(half)), half.mean()


def test_translation_length_and_direction_are_uniform():
    t = np.array([
        random_motion_flow((4, 4), max_len=L, seed=s, rotation_prob=0, zoom_prob=0, acceleration=0,
                           integer=False, canonical=False)[:, 0, 0]
        for s in range(N)
    ])
    r = np.hypot(t[:, 0], t[:, 1]) / L
    assert abs(r.mean() - 0.5) < Z * SE_MEAN_U01
    # a uniform direction: E[cos θ] = E[sin θ] = 0 with variance ½ each
    for c in (t[:, 0] / np.maximum(r * L, 1e-12), t[:, 1] / np.maximum(r * L, 1e-12)):
        assert abs(c.mean()) < Z * math.sqrt(0.5 / N)


@pytest.mark.parametrize("kind, kw", [("rotation", "rotation_prob"), ("zoom", "zoom_prob")])
def test_component_probabilities(kind, kw):
    # P(component present) = the given probability: count fields that turn / scale
    p = 0.3
    hits = 0
    for s in range(N // 2):
        m = sample_camera_motion(SHAPE, L, seed=s, acceleration=0.0,
                                 **{"rotation_prob": 0.0, "zoom_prob": 0.0, kw: p})
        f = m.continuous_flow(SHAPE)
        curl, div = _curl_div(f)
        hits += abs(curl if kind == "rotation" else div) > 1e-12
    n = N // 2
    assert abs(hits / n - p) < Z * math.sqrt(p * (1 - p) / n)


def test_flows_the_operators_cannot_use_are_refused():
    # max_len=10**9 returned ±8.6e8 px flows and float16 was accepted; MotionBlur refuses both
    import torch

    from pnpdeblur import MotionBlur
    from pnpdeblur.data import random_motion_flows
    from pnpdeblur.operators._flow import MAX_FLOW

    with pytest.raises(ValueError, match="max_len must be at most 64"):
        random_motion_flow((8, 8), max_len=10**9)
    with pytest.raises(ValueError, match="max_len"):
        random_motion_flow((8, 8), max_len=int(MAX_FLOW) + 1)
    f = random_motion_flow((16, 16), max_len=int(MAX_FLOW), seed=0, rotation_prob=1, zoom_prob=1)
    MotionBlur(f)  # the largest allowed bound gives an accepted flow
    for dt in (np.float16, np.longdouble, np.int32, "complex128"):
        with pytest.raises(TypeError, match="dtype must be numpy.float32 or numpy.float64"):
            random_motion_flow((8, 8), dtype=dt)
    with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
        random_motion_flows(2, (8, 8), dtype=torch.float16)
    assert random_motion_flows(2, (8, 8), seed=0, dtype=torch.float64).dtype == torch.float64
