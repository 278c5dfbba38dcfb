"""``LinearOperator.reach`` / ``padded`` and ``pd.solvers.pad_problem``: the unknown boundary for
every operator.

The reference is the operator itself on a larger scene: blur the whole scene, crop the middle;
the same operator built on the crop, padded by its reach and applied to the scene cut to the
padded grid, must give that crop exactly (its observed pixels never read the padded grid's
border rule). The reach must also not be loose along an axis (a flow along x: one pixel less
of padding changes the result).
"""
import re

import numpy as np
import pytest
import torch

from pnpdeblur import Convolution, MotionBlur, TwoSegmentBlur, UniformBlur, WarpBlur
from pnpdeblur.operators import Identity
from pnpdeblur.operators.motion import motion_kernel
from pnpdeblur.solvers import crop_boundary, hqs, pad_boundary, pad_problem

from _operators import Dense  # tests/_operators.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)

H, W = 44, 50  # scene
R0, C0, h, w = 14, 16, 16, 18  # the crop


def _flows(seed, scale):
    rng = np.random.default_rng(seed)
    base = rng.uniform(-scale, scale, (2, 1, 1))
    return base + rng.uniform(-1.5, 1.5, (2, H, W))  # varying around one vector


def _cases():
    f1, f2 = _flows(0, 6.0), _flows(1, 5.0)
    lut = np.clip(_flows(2, 6.0), -15.5, 15.5)
    k = np.random.default_rng(3).random((5, 9))
    k /= k.sum()
    return {
        "MotionBlur": lambda s: MotionBlur(s(f1)),
        "MotionBlur.lut": lambda s: MotionBlur.lut(s(lut)),
        "TwoSegmentBlur": lambda s: TwoSegmentBlur(s(f1), s(f2), tau=0.8),
        "WarpBlur": lambda s: WarpBlur(s(f1), s(f2), n=3, tau=0.7),
        "Convolution": lambda s: Convolution(k),
        "UniformBlur": lambda s: UniformBlur(k),  # periodic: the wrap stays within the reach of the scene's edge
        "sum and multiple": lambda s: 0.5 * MotionBlur(s(f1)) + 2.0 * TwoSegmentBlur(s(f2), s(-f2)),
        "Identity": lambda s: Identity(),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_padded_operator_on_the_crop_reproduces_the_scene_blur(name):
    build = CASES[name]
    scene = np.random.default_rng(4).random((H, W, 2))
    full = np.asarray(build(lambda f: f)(scene))
    observed = full[R0:R0 + h, C0:C0 + w]
    K = build(lambda f: np.ascontiguousarray(f[:, R0:R0 + h, C0:C0 + w]))
    r = K.reach()
    assert r <= min(R0, C0, H - R0 - h, W - C0 - w)  # the scene holds the padded grid
    Kp = K.padded(r)
    x = scene[R0 - r:R0 + h + r, C0 - r:C0 + w + r]
    np.testing.assert_allclose(crop_boundary(np.asarray(Kp(x)), r), observed, atol=1e-12, rtol=0)
    assert K.padded(r + 2).reach() == r  # repeating border vectors adds no longer one


@pytest.mark.parametrize("make, reach", [
    (lambda f: MotionBlur(f), 7),  # 10 px: taps reach 5, ceil(5 + 1.5) = 7
    (lambda f: TwoSegmentBlur(f, -f), 12),  # each half 10 px from p: ceil(10 + 1.5)
    (lambda f: WarpBlur(f, -f, n=4), 11),  # samples up to 10 px, plus the bilinear neighbour
])
def test_the_reach_along_an_axis_is_tight_enough_to_matter(make, reach):
    flow = np.zeros((2, H, W))
    flow[0] = 10.0
    scene = np.random.default_rng(5).random((H, W))
    observed = np.asarray(make(flow)(scene))[R0:R0 + h, C0:C0 + w]
    K = make(np.ascontiguousarray(flow[:, R0:R0 + h, C0:C0 + w]))
    assert K.reach() == reach

    def blur_with(p):
        return crop_boundary(np.asarray(K.padded(p)(scene[R0 - p:R0 + h + p, C0 - p:C0 + w + p])), p)

    np.testing.assert_allclose(blur_with(reach), observed, atol=1e-12, rtol=0)
    assert np.abs(blur_with(reach - 3) - observed).max() > 1e-3


def test_reach_formulas_against_the_dense_line_kernel():
    for m in [(1.0, 0.0), (7.0, 0.0), (3.0, 4.0), (-12.5, 2.0), (0.0, 0.4)]:
        k = motion_kernel(m, radius=30)
        rows, cols = np.nonzero(k > 0)
        taps = max(np.abs(rows - 30).max(), np.abs(cols - 30).max())
        flow = np.broadcast_to(np.array(m).reshape(2, 1, 1), (2, 3, 3)).copy()
        assert taps <= MotionBlur(flow).reach() == int(np.ceil(np.hypot(*m) / 2 + 1.5))
    assert MotionBlur(np.zeros((2, 3, 3))).reach() == 0 and Identity().reach() == 0
    assert Convolution(np.ones((3, 7)) / 21).reach() == 3 and UniformBlur(np.ones((5, 5)) / 25).reach() == 2
    # the table interpolates between integer flows: (2.5, 0) reads (2, 0) and (3, 0) -> bound from (3, 1)
    assert MotionBlur.lut(np.full((2, 3, 3), [[[2.5]], [[0.0]]])).reach() == int(np.ceil(np.hypot(3, 1) / 2 + 1.5))
    assert MotionBlur.lut(np.full((2, 3, 3), [[[5.2]], [[-5.2]]])).reach() == 6  # from (6, 6): ceil(4.24 + 1.5)
    zero, half = np.zeros((2, 3, 3)), np.full((2, 3, 3), [[[0.5]], [[0.0]]])
    assert TwoSegmentBlur(zero, zero).reach() == 0 and WarpBlur(zero, zero).reach() == 0
    assert TwoSegmentBlur(half, -half, tau=0.5).reach() == 2  # ceil(0.25 + 1.5)
    assert WarpBlur(half, -half, tau=0.5).reach() == 2  # ceil(0.25) + 1


def test_padded_flow_operators_repeat_the_border_vectors():
    f = np.random.default_rng(6).uniform(-4, 4, (2, 5, 7))
    K = MotionBlur.lut(f).padded(3)
    assert K.lut_mode and tuple(K.flow.shape) == (1, 2, 11, 13)
    np.testing.assert_array_equal(K.flow[0].numpy(), np.pad(f, ((0, 0), (3, 3), (3, 3)), mode="edge"))
    T = TwoSegmentBlur(f, -0.5 * f, tau=0.6).padded(2)
    assert T.tau == 0.6
    np.testing.assert_array_equal(T.flow_prev[0].numpy(), np.pad(-0.5 * f, ((0, 0), (2, 2), (2, 2)), mode="edge"))
    Wb = WarpBlur(f, f, n=5, tau=0.9).padded(1)
    assert (Wb.n, Wb.tau, tuple(Wb.flow_next.shape)) == (5, 0.9, (1, 2, 7, 9))
    assert MotionBlur(f, path="torch").padded(2).path == "torch"
    assert TwoSegmentBlur(f, f, path="torch").padded(2).path == "torch"
    C = Convolution(np.ones((3, 3)) / 9)
    assert C.padded(4) is C
    assert MotionBlur(f).padded(0).flow.shape == (1, 2, 5, 7)


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
def test_padded_rejects_bad_widths(bad):
    for K in (MotionBlur(np.zeros((2, 3, 3))), Convolution(np.ones((3, 3)) / 9), Identity()):
        with pytest.raises(ValueError, match=re.escape(f"width must be an int >= 0 (pixels added on each side), "
                                                       f"got {bad!r}")):
            K.padded(bad)


def test_operators_without_a_reach_say_so():
    D = Dense(np.eye(4))
    with pytest.raises(NotImplementedError, match="Dense does not state its reach"):
        D.reach()
    with pytest.raises(NotImplementedError, match="Dense cannot be extended to a larger grid"):
        D.padded(1)
    with pytest.raises(NotImplementedError):  # composition: the inner flow would be read in the margin
        (MotionBlur(np.zeros((2, 3, 3))) @ Convolution(np.ones((3, 3)) / 9)).reach()


# -- pad_problem -----------------------------------------------------------------------------
def test_pad_problem_pads_by_the_reach_and_keeps_the_weights():
    f = np.zeros((2, 6, 8))
    f[0] = 9.0
    y = np.random.default_rng(7).random((6, 8, 3))
    w = np.ones((6, 8, 3))
    w[2, 3, 1] = 0.0
    y_pad, K_pad, w_pad, r = pad_problem(y, MotionBlur(f), weights=w)
    assert r == 6
    yp, wp = pad_boundary(y, 6, weights=w)
    np.testing.assert_array_equal(y_pad, yp)
    np.testing.assert_array_equal(w_pad, wp)
    assert isinstance(K_pad, MotionBlur) and tuple(K_pad.flow.shape) == (1, 2, 18, 20)
    assert pad_problem(y, MotionBlur(f), width=8)[3] == 8


@pytest.mark.parametrize("call, err, msg", [
    (lambda: pad_problem(np.zeros((6, 8)), np.eye(3)), TypeError, "K must be a pnpdeblur LinearOperator, got ndarray"),
    (lambda: pad_problem(np.zeros((2, 2)), Dense(np.eye(4))), TypeError,
     "K (Dense) cannot be solved with an unknown boundary: Dense does not state its reach; pad by hand with "
     "pad_boundary and an operator built on the padded grid"),
    (lambda: pad_problem(np.zeros((6, 8)), Convolution(np.ones((5, 5)) / 25), width=1), ValueError,
     "width=1 is less than the operator's reach (2 px): observed pixels would see the padded grid's border rule"),
    (lambda: pad_problem(np.zeros((6, 8)), Convolution(np.ones((5, 5)) / 25), width=-2), ValueError,
     "width must be an int >= 0"),
])
def test_pad_problem_messages(call, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        call()


def test_pad_problem_recovers_a_convolved_scene_crop_better_than_its_own_border_rule():
    """Non-blind with a known PSF, as on Levin et al.'s images: the scene convolved as a whole,
    cropped; the unknown boundary beats the operator's replicate rule near the borders."""
    from pnpdeblur.data import sample_image
    from pnpdeblur.priors import DnCNNPrior

    scene = sample_image("camera", channels=1)[100:196, 150:246, 0].astype(np.float32)
    psf = np.zeros((9, 9))
    psf[4, :] = 1.0 / 9  # 9 px horizontal
    K = Convolution(psf)
    y = np.asarray(K(scene))[18:78, 18:78]
    sharp = scene[18:78, 18:78]
    kw = dict(noise_level=0.005, n_iter=8, cg_iters=20)
    plain = np.asarray(hqs(y, K, DnCNNPrior(ensemble=False), **kw).x)
    y_pad, K_pad, w_pad, r = pad_problem(y, K)
    unknown = crop_boundary(np.asarray(hqs(y_pad, K_pad, DnCNNPrior(ensemble=False), weights=w_pad, **kw).x), r)
    band = np.zeros(y.shape, bool)
    band[:, :8] = band[:, -8:] = True
    err = lambda x, m: float(np.sqrt(np.mean((x[m] - sharp[m]) ** 2)))  # noqa: E731
    assert err(unknown, band) < 0.7 * err(plain, band)
    assert err(unknown, ~band) < 1.05 * err(plain, ~band)
