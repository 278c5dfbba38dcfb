"""Reblur2Deblur: reblur loss, optical flow between frames, test-time fine-tuning (issue 13)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.data import sample_image, synthesize_video_sequence
from pnpdeblur.estimation.optical_flow import neighbour_flows, optical_flow
from pnpdeblur.losses.reblur import reblur, reblur_loss
from pnpdeblur.operators.motion import MotionBlur, TwoSegmentBlur
from pnpdeblur.operators.warp import WarpBlur
from pnpdeblur.train.reblur import HybridBatches, as_clip, finetune_reblur


class TinyNet(nn.Module):
    """x + conv(x), starting as the identity."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        return x + self.conv(x)


def _smooth_flow(n, h, w, amp, seed):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64)
    return amp * nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)


@pytest.fixture(scope="module")
def clip():
    """A 3-frame translation clip, 40×40, with its true sharp frames and flows."""
    img = sample_image("astronaut", size=80)
    return synthesize_video_sequence(img, 3, shape=(40, 40), n_frames=7, motion="translation", max_blur=5.0,
                                     min_blur=4.0, seed=3)


# ------------------------------------------------------------------------- reblur loss
@pytest.mark.parametrize("kernel", ["two_segment", "lut", "warp"])
@pytest.mark.parametrize("three", [False, True])
def test_reblur_loss_zero_for_the_operators_own_blur(kernel, three):
    x = torch.rand(2, 3, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = _smooth_flow(2, 20, 24, 3.0, 1)
    fp = _smooth_flow(2, 20, 24, 3.0, 2) if three else -fn
    tau = 0.7
    # The operator each kernel name stands for, built here independently of reblur().
    if kernel == "two_segment":
        op = TwoSegmentBlur(fn, fp, tau=tau)
    elif kernel == "warp":
        op = WarpBlur(fn, fp, n=8, tau=tau)
    else:
        op = MotionBlur.lut(tau * (fn - fp))  # 2-frame: 2·τ·F₊, the conventions' table index
    y = op(x)
    loss = reblur_loss(x, y, fn, fp if three else None, kernel=kernel, tau=tau)
    assert loss.ndim == 0 and float(loss) < 1e-20
    # ... and clearly not zero for another image or for other flows.
    assert float(reblur_loss(x.flip(-1), y, fn, fp if three else None, kernel=kernel, tau=tau)) > 1e-3
    assert float(reblur_loss(x, y, 2 * fn, 2 * fp if three else None, kernel=kernel, tau=tau)) > 1e-5


def test_two_frame_two_segment_is_the_line_kernel_of_twice_the_flow():
    # docs/conventions.md: F₋ = −F₊ with |τF₊| >= 1 gives the line kernel of m = 2τF₊.
    x = torch.rand(1, 3, 24, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = torch.zeros(1, 2, 24, 24, dtype=torch.float64)
    f[:, 0], f[:, 1] = 3.0, -2.0
    y = MotionBlur(2 * 0.5 * f)(x)
    assert float(reblur_loss(x, y, f, None, kernel="two_segment", tau=0.5)) < 1e-20


def test_reblur_true_sharp_frames_with_true_flows_match_the_synthetic_blur(clip):
    # Frame averaging over N of `spacing` frames between exposures = tau N/(2·spacing) = 0.5 here.
    t = 1
    sharp = torch.from_numpy(np.moveaxis(clip.sharp[t], -1, 0))[None].double()
    blurred = torch.from_numpy(np.moveaxis(clip.blurred[t], -1, 0))[None].double()
    fn = torch.from_numpy(clip.flows_next[t])[None].double()
    fp = torch.from_numpy(clip.flows_prev[t])[None].double()
    base = float(((sharp - blurred) ** 2).mean())
    for kernel in ("two_segment", "lut", "warp"):
        err = float(reblur_loss(sharp, blurred, fn, fp, kernel=kernel, tau=0.5))
        assert err < 0.25 * base, (kernel, err, base)
    # Flows 3× too long do much worse than the true ones.
    assert float(reblur_loss(sharp, blurred, 3 * fn, 3 * fp, tau=0.5)) > 2 * float(
        reblur_loss(sharp, blurred, fn, fp, tau=0.5))


@pytest.mark.parametrize("kernel", ["two_segment", "lut", "warp"])
def test_reblur_loss_gradients_reach_net_weights_and_flows(kernel):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    b = torch.rand(2, 3, 16, 16)
    fn = (torch.rand(2, 2, 16, 16) * 4 - 2).requires_grad_(True)
    fp = (torch.rand(2, 2, 16, 16) * 4 - 2).requires_grad_(True)
    loss = reblur_loss(net(b), b, fn, fp, kernel=kernel)
    loss.backward()
    for p in net.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    for f in (fn, fp):
        assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_reblur_loss_flow_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 14, 14, dtype=torch.float64, generator=g)
    b = torch.rand(1, 3, 14, 14, dtype=torch.float64, generator=g)
    fn = (_smooth_flow(1, 14, 14, 2.0, 5) + 2.3).requires_grad_(True)
    d = _smooth_flow(1, 14, 14, 1.0, 6)
    loss = reblur_loss(x, b, fn, None, kernel="two_segment")
    (grad,) = torch.autograd.grad(loss, fn)
    eps = 1e-5
    with torch.no_grad():
        num = (reblur_loss(x, b, fn + eps * d, None) - reblur_loss(x, b, fn - eps * d, None)) / (2 * eps)
    assert float((grad * d).sum()) == pytest.approx(float(num), rel=1e-4, abs=1e-10)


def test_reblur_lut_clamps_to_the_table():
    x = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    f = torch.zeros(1, 2, 40, 40, dtype=torch.float64)
    f[:, 0] = 12.0  # m = 24 px, beyond the ±16 px table
    y = reblur(x, f, kernel="lut")
    m = torch.zeros_like(f)
    m[:, 0] = 16.0  # the table's edge
    ref = MotionBlur(m)(x)
    assert torch.allclose(y, ref, atol=1e-12)


def test_reblur_loss_bad_input():
    x = torch.rand(1, 3, 8, 8)
    f = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="kernel"):
        reblur_loss(x, x, f, kernel="gauss")
    with pytest.raises(ValueError, match="blurred"):
        reblur_loss(x, x[:, :, :7], f)
    with pytest.raises(ValueError, match="flow_next"):
        reblur_loss(x, x, f[:, :, :7])
    with pytest.raises(ValueError, match="flow_prev"):
        reblur_loss(x, x, f, torch.zeros(1, 2, 8, 9))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        reblur_loss(bad, x, f)
    fbad = f.clone()
    fbad[0, 1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="flow_next.*NaN"):
        reblur_loss(x, x, fbad)
    with pytest.raises(TypeError, match="deblurred"):
        reblur_loss(x.numpy(), x, f)
    with pytest.raises(ValueError, match="tau"):
        reblur_loss(x, x, f, tau=1.5)


# ------------------------------------------------------------------------ optical flow
def test_optical_flow_sign_and_channel_order_on_a_known_translation():
    img = sample_image("camera", size=96, channels=1)[..., 0].astype(np.float64)
    # frame_b shows frame_a's content moved 3 px right and 2 px up: frame_b(p + (3, -2)) = frame_a(p).
    frame_b = np.roll(img, shift=(-2, 3), axis=(0, 1))
    f = optical_flow(img, frame_b)
    assert isinstance(f, np.ndarray) and f.shape == (2, 96, 96)
    inner = (slice(None), slice(16, 80), slice(16, 80))
    u, v = np.median(f[inner][0]), np.median(f[inner][1])
    assert u == pytest.approx(3.0, abs=0.2) and v == pytest.approx(-2.0, abs=0.2)
    # The other way round is the opposite flow; torch (C, H, W) colour in gives torch out.
    ta = torch.from_numpy(np.repeat(frame_b[None], 3, 0)).float()
    tb = torch.from_numpy(np.repeat(img[None], 3, 0)).float()
    g = optical_flow(ta, tb)
    assert isinstance(g, torch.Tensor) and g.shape == (2, 96, 96) and g.dtype == torch.float32
    assert float(g[0, 16:80, 16:80].median()) == pytest.approx(-3.0, abs=0.2)
    assert float(g[1, 16:80, 16:80].median()) == pytest.approx(2.0, abs=0.2)


def test_optical_flow_callable_and_errors():
    a = torch.rand(2, 3, 16, 16)
    calls = []

    def net(x, y):
        calls.append((x.shape, y.shape))
        return torch.ones(x.shape[0], 2, *x.shape[2:])

    assert torch.equal(optical_flow(a, a, method=net), torch.ones(2, 2, 16, 16)) and calls == [(a.shape, a.shape)]
    with pytest.raises(ValueError, match="shape"):
        optical_flow(a, a, method=lambda x, y: torch.ones(2, 3, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        optical_flow(a, a[:, :, :15])
    with pytest.raises(ValueError, match="method"):
        optical_flow(a, a, method="farneback")
    with pytest.raises(TypeError, match="method"):
        optical_flow(a, a, method=3)
    bad = a.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        optical_flow(bad, a)


def test_neighbour_flows_ends_are_nan():
    frames = torch.rand(3, 3, 8, 8)
    fn, fp = neighbour_flows(frames, method=lambda x, y: (y - x).mean(1, keepdim=True).repeat(1, 2, 1, 1))
    assert torch.isnan(fn[2]).all() and torch.isnan(fp[0]).all()
    assert torch.allclose(fn[0], (frames[1] - frames[0]).mean(0, keepdim=True).repeat(2, 1, 1))
    assert torch.allclose(fp[2], (frames[1] - frames[2]).mean(0, keepdim=True).repeat(2, 1, 1))


# ------------------------------------------------------------------------- fine-tuning
def _true_flow_spy(clip, t=1):
    """A flow 'method' returning the clip's true F₊ of frame t, recording its inputs."""
    seen = []
    f = torch.from_numpy(clip.flows_next[t])[None]

    def method(a, b):
        seen.append((a.detach().clone(), b.detach().clone()))
        return f.expand(a.shape[0], -1, -1, -1).to(a)

    return method, seen


def _frames(clip):
    return [f for f in clip.blurred]  # (H, W, C) numpy images


def test_finetune_returns_a_changed_copy_and_lowers_the_reblur_loss(clip):
    torch.manual_seed(0)
    net = TinyNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    method, seen = _true_flow_spy(clip)
    tuned = finetune_reblur(net, _frames(clip), frames=2, supervised=False, flow=method, steps=20, lr=1e-3,
                            crop=40, batch_size=2, flow_every=5, tau=0.5, progress=False, seed=1)
    assert tuned is not net and isinstance(tuned, TinyNet) and not tuned.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])  # the original is untouched
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())
    # The flows were estimated between the network's current deblurred frames: the first
    # refresh saw the untouched (identity) net's output, i.e. the blurred frames themselves.
    assert tuned.reblur_settings["flow_refreshes"] == 4 and len(seen) == 4 * 3  # 3 centres a refresh
    b = torch.from_numpy(np.moveaxis(clip.blurred, -1, 1))
    assert torch.allclose(seen[0][0], b[0:1], atol=1e-6) and torch.allclose(seen[0][1], b[1:2], atol=1e-6)
    # Reblur loss with the true flows on the full centre frame, before and after.
    fn = torch.from_numpy(clip.flows_next[1])[None]
    x = b[1:2]
    with torch.no_grad():
        l0 = float(reblur_loss(net(x), x, fn, None, tau=0.5))
        l1 = float(reblur_loss(tuned(x), x, fn, None, tau=0.5))
    assert l1 < 0.97 * l0


def test_finetune_hybrid_batches_mix_as_configured(clip):
    class Pairs(torch.utils.data.Dataset):
        # item j: blurred = j/10, sharp = j/10 + 0.05 everywhere (identifiable values)
        def __len__(self):
            return 5

        def __getitem__(self, j):
            return {"blurred": torch.full((3, 36, 36), j / 10), "sharp": torch.full((3, 36, 36), j / 10 + 0.05)}

    data = HybridBatches(4, [1, 2], (40, 40), 24, n_u=3, n_s=2, supervised=Pairs(), seed=0)
    item = data[0]
    assert item["frames"].shape == (3,) and set(item["frames"].tolist()) <= {1, 2}
    assert item["ys"].max() <= 16 and item["xs"].max() <= 16
    assert item["sup_blurred"].shape == (2, 3, 24, 24) and item["sup_sharp"].shape == (2, 3, 24, 24)
    vals = item["sup_blurred"][:, 0, 0, 0]
    assert torch.allclose(item["sup_sharp"][:, 0, 0, 0], vals + 0.05)
    assert all(abs(float(v) * 10 - round(float(v) * 10)) < 1e-6 for v in vals)
    assert torch.equal(HybridBatches(4, [1, 2], (40, 40), 24, 3, 2, Pairs(), seed=0)[0]["ys"], item["ys"])
    assert "sup_blurred" not in HybridBatches(2, [1], (40, 40), 24, 2, 0, None)[0]

    method, _ = _true_flow_spy(clip)
    alpha = 0.3
    tuned = finetune_reblur(TinyNet(), torch.from_numpy(np.moveaxis(clip.blurred, -1, 1)), frames=3,
                            supervised=Pairs(), supervised_share=0.25, batch_size=4, alpha=alpha, flow=method,
                            steps=3, crop=24, progress=False)
    s = tuned.reblur_settings
    assert (s["n_reblur"], s["n_supervised"], s["centres"]) == (3, 1, [1])
    row = tuned.reblur_history[-1]
    assert row["loss"] == pytest.approx(row["supervised"] + alpha * row["reblur"], rel=1e-6)
    # The identity net's supervised error on these pairs is 0.05² exactly (at the first step).
    assert row["supervised"] == pytest.approx(0.0025, rel=0.2)
    only = finetune_reblur(TinyNet(), _frames(clip), frames=3, supervised=False, batch_size=3, alpha=alpha,
                           flow=method, steps=2, crop=24, progress=False)
    row = only.reblur_history[-1]
    assert "supervised" not in row and row["loss"] == pytest.approx(alpha * row["reblur"], rel=1e-6)
    assert only.reblur_settings["n_reblur"] == 3


def test_finetune_default_supervised_half_is_synthesised(clip):
    tuned = finetune_reblur(TinyNet(), _frames(clip), steps=1, crop=24, batch_size=2, progress=False,
                            flow=_true_flow_spy(clip)[0], kernel="warp", group=False)
    s = tuned.reblur_settings
    assert s["hybrid"] and s["n_supervised"] == 1 and s["centres"] == [1]
    assert tuned.reblur_history[-1]["supervised"] > 0


def test_finetune_bad_input(clip):
    frames = _frames(clip)
    net = TinyNet()
    with pytest.raises(ValueError, match="same size"):
        finetune_reblur(net, [frames[0], frames[1][:30]], frames=2)
    with pytest.raises(ValueError, match="at least 2"):
        finetune_reblur(net, [frames[0]])
    with pytest.raises(ValueError, match="at least 2"):
        finetune_reblur(net, torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="frames=3"):
        finetune_reblur(net, frames[:2], frames=3)
    bad = frames[1].copy()
    bad[3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        finetune_reblur(net, [frames[0], bad, frames[2]])
    with pytest.raises(ValueError, match="target"):
        finetune_reblur(net, frames, group=False, target=0)  # 3-frame needs both neighbours
    with pytest.raises(ValueError, match="kernel"):
        finetune_reblur(net, frames, kernel="box")
    with pytest.raises(TypeError, match="net"):
        finetune_reblur(lambda x: x, frames)
    with pytest.raises(TypeError, match="blurred_frames"):
        as_clip(np.zeros((8, 8, 3)))


def test_finetune_a_library_net_with_a_flow_network(clip):
    flownets = pytest.importorskip("pnpdeblur.nets.flownets")
    deblurgan = pytest.importorskip("pnpdeblur.nets.deblurgan")
    torch.manual_seed(0)
    net = deblurgan.DeblurGANGenerator(features=4, blocks=1)
    flow_net = flownets.FlowNetS(width=4).train()
    tuned = finetune_reblur(net, _frames(clip), steps=1, crop=32, batch_size=2, supervised=False, flow=flow_net,
                            progress=False)
    assert isinstance(tuned, deblurgan.DeblurGANGenerator) and tuned is not net
    assert not flow_net.training  # used for inference only
    assert tuned.reblur_settings["flow"] == "FlowNetS" and np.isfinite(tuned.reblur_history[-1]["reblur"])
