"""Direct tests of pnpdeblur.estimation.optical_flow on tiny frames: scikit-image's TV-L1 called
by hand as the reference (argument order, channel swap, luminance), recording callables, and
the messages of every check."""
import re

import numpy as np
import pytest
import torch
from skimage.registration import optical_flow_tvl1

from pnpdeblur.estimation.optical_flow import FLOW_METHODS, neighbour_flows, optical_flow

LUMA = np.array([0.2125, 0.7154, 0.0721])


def _frames(seed=0, shape=(2, 3, 16, 20)):
    return torch.from_numpy(np.random.default_rng(seed).random(shape))


def _skimage_flow(a, b, **kw):
    """(u, v) from scikit-image's (row, col) flow with reference a and moving b (grey (H, W))."""
    vu = optical_flow_tvl1(a, b, **kw)
    return np.stack([vu[1], vu[0]])


def test_tvl1_is_scikit_images_flow_with_channels_swapped_on_the_luminance():
    a, b = _frames(1), _frames(2)
    f = optical_flow(a, b, num_iter=3, num_warp=2)
    assert isinstance(f, torch.Tensor) and f.shape == (2, 2, 16, 20) and f.dtype == torch.float64
    for i in range(2):
        ga = np.tensordot(LUMA, a[i].numpy(), axes=1)
        gb = np.tensordot(LUMA, b[i].numpy(), axes=1)
        np.testing.assert_allclose(f[i].numpy(), _skimage_flow(ga, gb, num_iter=3, num_warp=2), atol=1e-6)
    # the kwargs reach scikit-image: other settings, another answer
    assert not torch.allclose(f, optical_flow(a, b, num_iter=1, num_warp=1))


def test_tvl1_on_grey_and_uint8_frames():
    rng = np.random.default_rng(3)
    a, b = rng.random((16, 20)), rng.random((16, 20))
    f = optical_flow(a, b, num_iter=2, num_warp=1)  # numpy (H, W) float64: numpy (2, H, W)
    assert isinstance(f, np.ndarray) and f.shape == (2, 16, 20)
    np.testing.assert_allclose(f, _skimage_flow(a, b, num_iter=2, num_warp=1), atol=1e-6)
    a8, b8 = (np.round(a * 255).astype(np.uint8), np.round(b * 255).astype(np.uint8))
    f8 = optical_flow(a8[..., None].repeat(3, 2), b8[..., None].repeat(3, 2), num_iter=2, num_warp=1)
    assert f8.dtype == np.float32 and f8.shape == (2, 16, 20)
    ref = _skimage_flow(a8 / 255.0 * LUMA.sum(), b8 / 255.0 * LUMA.sum(), num_iter=2, num_warp=1)
    np.testing.assert_allclose(f8, ref, atol=1e-4)


def test_a_translation_has_the_library_sign():
    # frame_b(p + (2, 1)) = frame_a(p): content moved 2 px right, 1 px down
    yy, xx = np.mgrid[0:32, 0:32]
    a = 0.5 + 0.25 * np.sin(xx / 2.5) * np.cos(yy / 3.0)
    b = np.roll(a, shift=(1, 2), axis=(0, 1))
    f = optical_flow(a, b)
    assert np.median(f[0, 8:24, 8:24]) == pytest.approx(2.0, abs=0.2)
    assert np.median(f[1, 8:24, 8:24]) == pytest.approx(1.0, abs=0.2)


def test_a_callable_gets_both_batches_as_frame_as_dtype_and_kwargs():
    seen = []

    def net(x, y, scale=1.0):
        seen.append((x.clone(), y.clone(), scale))
        return scale * (y - x)[:, :2]

    a = _frames(4)
    b = _frames(5).float()  # another dtype: converted to frame_a's
    f = optical_flow(a, b, method=net, scale=2.0)
    x, y, scale = seen[0]
    assert x.dtype == y.dtype == torch.float64 and torch.equal(x, a) and torch.equal(y, b.double())
    assert scale == 2.0 and torch.equal(f, 2.0 * (b.double() - a)[:, :2])
    # one numpy (H, W, C) pair: the net sees (1, C, H, W), the caller gets (2, H, W) numpy
    an, bn = a[0].numpy().transpose(1, 2, 0), b[0].numpy().transpose(1, 2, 0)
    g = optical_flow(an, bn, method=net)
    assert seen[-1][0].shape == (1, 3, 16, 20) and isinstance(g, np.ndarray) and g.shape == (2, 16, 20)


def test_a_callable_that_returns_the_wrong_thing_is_named():
    a = _frames(6)
    with pytest.raises(TypeError, match=r"^the flow method returned ndarray, expected a torch.Tensor "
                                        r"\(N, 2, H, W\)$"):
        optical_flow(a, a, method=lambda x, y: np.zeros((2, 2, 16, 20)))
    with pytest.raises(ValueError, match=r"^the flow method returned shape \(2, 2, 16, 19\), expected "
                                         r"\(2, 2, 16, 20\)$"):
        optical_flow(a, a, method=lambda x, y: torch.zeros(2, 2, 16, 19))
    with pytest.raises(ValueError, match=r"expected \(2, 2, 16, 20\)$"):
        optical_flow(a, a, method=lambda x, y: torch.zeros(1, 2, 16, 20))
    for bad in (float("nan"), float("inf")):
        def net(x, y, bad=bad):
            f = torch.zeros(2, 2, 16, 20, requires_grad=True) * 1.0
            return f.index_put((torch.tensor([1]), torch.tensor([0]), torch.tensor([3]), torch.tensor([4])),
                               torch.tensor(bad))

        with pytest.raises(ValueError, match=r"^the flow method returned NaN or Inf values$"):
            optical_flow(a, a, method=net)


def test_method_checks():
    a = _frames(7)
    assert FLOW_METHODS == ("tvl1",)
    with pytest.raises(ValueError, match=re.escape("method must be one of ('tvl1',) or a callable "
                                                   "net(frame_a, frame_b), got 'farneback'")):
        optical_flow(a, a, method="farneback")
    with pytest.raises(TypeError, match=re.escape("method must be 'tvl1' or a callable net(frame_a, frame_b) "
                                                  "-> (N, 2, H, W), got int")):
        optical_flow(a, a, method=3)
    with pytest.raises(ValueError, match="^method must be one of"):
        neighbour_flows(a, method="farneback")
    with pytest.raises(TypeError, match="^method must be 'tvl1'"):
        neighbour_flows(a, method=None)


def test_frames_must_match():
    a = _frames(8)
    with pytest.raises(ValueError, match=r"^frame_a and frame_b must have the same shape, got \(2, 3, 16, 20\) "
                                         r"and \(2, 3, 16, 19\)$"):
        optical_flow(a, a[..., :19])
    with pytest.raises(ValueError, match="^frame_b"):
        optical_flow(a, torch.full_like(a, float("nan")))
    with pytest.raises(TypeError, match="^frame_a"):
        optical_flow([[0.0]], a)


# -- neighbour_flows ----------------------------------------------------------------------------

def _recording():
    seen = []

    def net(x, y, k=1.0):
        seen.append((x.clone(), y.clone()))
        return k * (y - x)[:, 1:3]

    return net, seen


def test_neighbour_flows_next_and_previous_with_nan_at_the_ends():
    frames = _frames(9, (4, 3, 8, 10))
    net, seen = _recording()
    fn, fp = neighbour_flows(frames, method=net, k=3.0)
    assert fn.shape == fp.shape == (4, 2, 8, 10) and fn.dtype == frames.dtype
    for t in range(4):
        if t + 1 < 4:
            assert torch.allclose(fn[t], 3.0 * (frames[t + 1] - frames[t])[1:3])
        else:
            assert torch.isnan(fn[t]).all()
        if t >= 1:
            assert torch.allclose(fp[t], 3.0 * (frames[t - 1] - frames[t])[1:3])
        else:
            assert torch.isnan(fp[t]).all()
    assert len(seen) == 6 and all(x.shape == (1, 3, 8, 10) for x, _ in seen)
    # two frames: one flow each way
    fn2, fp2 = neighbour_flows(frames[:2], method=net)
    assert torch.allclose(fn2[0], (frames[1] - frames[0])[1:3]) and torch.isnan(fn2[1]).all()
    assert torch.allclose(fp2[1], (frames[0] - frames[1])[1:3]) and torch.isnan(fp2[0]).all()


def test_neighbour_flows_only_for_the_indices_asked():
    frames = _frames(10, (5, 3, 8, 10))
    net, seen = _recording()
    fn, fp = neighbour_flows(frames, method=net, indices=[3, 1, 3])
    assert len(seen) == 4  # frames 1 and 3, each both ways, once
    asked = {1, 3}
    for t in range(5):
        assert torch.isnan(fn[t]).all() == (t not in asked)
        assert torch.isnan(fp[t]).all() == (t not in asked)
    assert torch.allclose(fp[1], (frames[0] - frames[1])[1:3])
    # ends asked for: only the existing neighbour is computed
    net2, seen2 = _recording()
    fn, fp = neighbour_flows(frames, method=net2, indices=(0, 4))
    assert len(seen2) == 2 and not torch.isnan(fn[0]).any() and not torch.isnan(fp[4]).any()
    assert torch.isnan(fp[0]).all() and torch.isnan(fn[4]).all()


def test_neighbour_flows_tvl1_per_frame():
    frames = _frames(11, (3, 1, 16, 16))
    fn, fp = neighbour_flows(frames, indices=[1], num_iter=2, num_warp=1)
    g = frames[:, 0].numpy()
    np.testing.assert_allclose(fn[1].numpy(), _skimage_flow(g[1], g[2], num_iter=2, num_warp=1), atol=1e-6)
    np.testing.assert_allclose(fp[1].numpy(), _skimage_flow(g[1], g[0], num_iter=2, num_warp=1), atol=1e-6)
    # two channels (neither grey nor RGB) are refused, as optical_flow refuses them
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) channels"):
        neighbour_flows(_frames(12, (2, 2, 16, 16)), num_iter=2, num_warp=1)


def test_neighbour_flows_checks():
    net, _ = _recording()
    with pytest.raises(ValueError, match=r"^frames must be a \(T, C, H, W\) tensor, got \(3, 8, 8\)$"):
        neighbour_flows(torch.zeros(3, 8, 8), method=net)
    with pytest.raises(ValueError, match=r"^frames must be a \(T, C, H, W\) tensor, got ndarray$"):
        neighbour_flows(np.zeros((3, 3, 8, 8)), method=net)
    with pytest.raises(ValueError, match=r"^frames must hold at least 2 frames, got 1$"):
        neighbour_flows(torch.zeros(1, 3, 8, 8), method=net)
    for bad in (3, -1):
        with pytest.raises(ValueError, match=rf"^indices must lie in \[0, 3\), got {bad}$"):
            neighbour_flows(torch.zeros(3, 3, 8, 8), method=net, indices=[0, bad])
    nan = torch.zeros(3, 3, 8, 8)
    nan[2, 0, 1, 1] = float("nan")  # the result marks missing neighbours with NaN: NaN frames must not pass
    for frames in (nan, nan.double(), nan.to(torch.bfloat16)):
        with pytest.raises(ValueError, match=r"^frames contains NaN or Inf"):
            neighbour_flows(frames, method=net)
    with pytest.raises(TypeError, match=r"^frames must be a float tensor \(values in \[0, 1\]\), got dtype "
                                        r"torch.uint8$"):
        neighbour_flows(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), method=net)
    for h, w in ((1, 8), (8, 1)):
        with pytest.raises(ValueError, match=rf"^frames must be at least 2×2 pixels for an optical flow, got "
                                             rf"\(H, W\) = \({h}, {w}\)$"):
            neighbour_flows(torch.zeros(3, 3, h, w), method=net)
        with pytest.raises(ValueError, match=r"^frame_a must be at least 2×2 pixels"):
            optical_flow(np.zeros((h, w)), np.zeros((h, w)))
    assert optical_flow(np.zeros((2, 2)), np.zeros((2, 2))).shape == (2, 2, 2)


def test_neighbour_flows_of_bfloat16_frames():
    # numpy has no bfloat16: the luminance must be taken in float64 (and the flow comes back bfloat16)
    frames = _frames(13, (2, 3, 16, 16))
    fn, fp = neighbour_flows(frames.to(torch.bfloat16), num_iter=2, num_warp=1)
    assert fn.dtype == torch.bfloat16
    g = np.tensordot(LUMA, frames.to(torch.bfloat16).double().numpy(), axes=([0], [1]))
    ref = _skimage_flow(g[0], g[1], num_iter=2, num_warp=1)
    np.testing.assert_allclose(fn[0].double().numpy(), ref, atol=0.02 * np.abs(ref).max() + 1e-3)
