"""Reblur2Deblur helpers called directly: ``deblur_frames`` and ``ReblurObjective.refresh``.

Stand-ins make every value checkable by hand: a network ``a·x + b`` that records its inputs,
and a flow "method" ``F(a, b)`` built from the two frames it is given (so the test can tell
which frame pair, in which order, produced each stored flow), large enough to hit the
operators' ±MAX_FLOW clip. The 'meta' device stands in for a GPU: inputs must be moved to the
network's device and the flows must end up there.
"""
import pytest
import torch
from torch import nn

from pnpdeblur.operators._flow import MAX_FLOW
from pnpdeblur.train.reblur import ReblurObjective, deblur_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Affine(nn.Module):
    """``a·x + b`` (a a parameter), recording every input batch."""

    def __init__(self, a=4.0, b=-1.5, device=None):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64, device=device))
        self.b = b
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.a * x + self.b


class _Spy(nn.Module):
    """A parameterless module returning its input, recording every input batch."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        return x


def _clip(t=4, c=3, h=6, w=7, seed=0):
    return torch.rand(t, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- deblur_frames
def test_deblur_frames_one_frame_at_a_time_by_default_unclipped():
    clip = _clip(3)
    net = _Affine()
    out = deblur_frames(net, clip)
    assert [tuple(x.shape) for x in net.seen] == [(1, 3, 6, 7)] * 3
    torch.testing.assert_close(out, 4.0 * clip - 1.5, atol=1e-12, rtol=0)  # no clamp: values in [-1.5, 2.5]
    assert float(out.min()) < 0 and float(out.max()) > 1


def test_deblur_frames_in_chunks_covers_every_frame_once_in_order():
    clip = _clip(5)
    net = _Affine()
    out = deblur_frames(net, clip, chunk=2)
    assert [x.shape[0] for x in net.seen] == [2, 2, 1]
    assert torch.equal(torch.cat(net.seen), clip)
    assert out.shape == clip.shape
    torch.testing.assert_close(out, 4.0 * clip - 1.5, atol=1e-12, rtol=0)
    # a chunk larger than the clip: one call
    net = _Affine()
    torch.testing.assert_close(deblur_frames(net, clip, chunk=8), 4.0 * clip - 1.5, atol=1e-12, rtol=0)
    assert len(net.seen) == 1


def test_deblur_frames_moves_frames_to_the_networks_device():
    clip = _clip(3)
    net = _Affine(device="meta")
    out = deblur_frames(net, clip, chunk=2)
    assert [x.device.type for x in net.seen] == ["meta", "meta"]
    assert out.device.type == "meta" and out.shape == clip.shape


def test_deblur_frames_parameterless_network_stays_on_the_frames_device():
    clip = _clip(3)
    net = _Spy()
    out = deblur_frames(net, clip)
    assert torch.equal(out, clip) and len(net.seen) == 3
    meta = torch.empty(3, 3, 6, 7, device="meta")
    assert deblur_frames(_Spy(), meta).device.type == "meta"


# ------------------------------------------------------------------------ refresh's flows
def _pair_flow(a, b):
    """F(a, b): u = 200·(mean b − mean a) (antisymmetric, beyond ±MAX_FLOW), v = mean a + 2·mean b."""
    ma, mb = a.mean(1), b.mean(1)
    return torch.stack([200.0 * (mb - ma), ma + 2.0 * mb], 1)


class _FlowSpy:
    def __init__(self, fixed=None):
        self.pairs = []
        self.fixed = fixed

    def __call__(self, a, b):
        self.pairs.append((a.detach().clone(), b.detach().clone()))
        if self.fixed is not None:  # a CPU flow whatever the inputs' device
            return torch.full((a.shape[0], 2) + tuple(a.shape[2:]), self.fixed, dtype=torch.float64)
        return _pair_flow(a, b)


def _objective(clip, centres, frames, flow):
    return ReblurObjective(clip, centres, frames, kernel="two_segment", tau=0.5, alpha=0.1, crop=4, flow=flow,
                           flow_every=1)


def _deblurred(clip):
    return (4.0 * clip - 1.5).clamp(0.0, 1.0)


def _clipped(f):
    return f.clamp(-MAX_FLOW, MAX_FLOW)


def test_refresh_two_frames_flows_to_the_next_frame_and_negated_for_the_last():
    clip = _clip(4)  # T = 4 frames of C = 3 channels
    net = _Affine().train()
    flow = _FlowSpy()
    obj = _objective(clip, [0, 1, 2, 3], 2, flow)
    obj.refresh(net)
    # every frame deblurred exactly once, one at a time, in order; training mode restored
    assert len(net.seen) == 4 and all(torch.equal(s, clip[t:t + 1]) for t, s in enumerate(net.seen))
    assert net.training
    deb = _deblurred(clip)
    assert float((4.0 * clip - 1.5).max()) > 2 and float((4.0 * clip - 1.5).min()) < 0  # the clamp matters
    want = [(0, 1), (1, 2), (2, 3), (3, 2)]
    assert len(flow.pairs) == 4
    for (a, b), (ta, tb) in zip(flow.pairs, want):
        torch.testing.assert_close(a, deb[ta:ta + 1], atol=1e-12, rtol=0)
        torch.testing.assert_close(b, deb[tb:tb + 1], atol=1e-12, rtol=0)
    ref = torch.cat([_pair_flow(deb[t:t + 1], deb[t + 1:t + 2]) for t in range(3)]
                    + [-_pair_flow(deb[3:4], deb[2:3])])
    assert float(ref.max()) > MAX_FLOW and float(ref.min()) < -MAX_FLOW  # the ±MAX_FLOW clip matters
    torch.testing.assert_close(obj.flow_next, _clipped(ref), atol=1e-10, rtol=0)
    assert obj.flow_prev is None and obj.refreshes == 1


def test_refresh_three_frames_flows_to_both_neighbours():
    clip = _clip(4)
    net = _Affine()
    flow = _FlowSpy()
    obj = _objective(clip, [2, 1], 3, flow)
    obj.refresh(net)
    assert len(net.seen) == 4  # frames 0..3 are all someone's neighbour
    deb = _deblurred(clip)
    want = [(1, 2), (1, 0), (2, 3), (2, 1)]  # centres sorted; F₊ then F₋ for each
    assert len(flow.pairs) == 4
    for (a, b), (ta, tb) in zip(flow.pairs, want):
        torch.testing.assert_close(a, deb[ta:ta + 1], atol=1e-12, rtol=0)
        torch.testing.assert_close(b, deb[tb:tb + 1], atol=1e-12, rtol=0)
    fn = torch.cat([_pair_flow(deb[t:t + 1], deb[t + 1:t + 2]) for t in (1, 2)])
    fp = torch.cat([_pair_flow(deb[t:t + 1], deb[t - 1:t]) for t in (1, 2)])
    assert float(fp.max()) > MAX_FLOW and float(fp.min()) < -MAX_FLOW
    torch.testing.assert_close(obj.flow_next, _clipped(fn), atol=1e-10, rtol=0)
    torch.testing.assert_close(obj.flow_prev, _clipped(fp), atol=1e-10, rtol=0)


def test_refresh_deblurs_only_the_centres_and_their_neighbours():
    clip = _clip(5)
    net = _Affine()
    obj = _objective(clip, [1], 3, _FlowSpy())
    obj.refresh(net)
    assert len(net.seen) == 3 and all(torch.equal(s, clip[t:t + 1]) for t, s in zip((0, 1, 2), net.seen))
    net = _Affine()
    obj = _objective(clip, [4], 2, _FlowSpy())  # the last frame: itself and its previous frame
    obj.refresh(net)
    assert len(net.seen) == 2 and torch.equal(net.seen[0], clip[3:4]) and torch.equal(net.seen[1], clip[4:5])


@pytest.mark.parametrize("value", [100.0, -100.0])
def test_refresh_flows_clip_to_max_flow_both_ways(value):
    clip = _clip(3)
    obj = _objective(clip, [1], 3, _FlowSpy(fixed=value))
    obj.refresh(_Affine())
    assert torch.equal(obj.flow_next, torch.full((1, 2, 6, 7), MAX_FLOW if value > 0 else -MAX_FLOW,
                                                 dtype=torch.float64))
    assert torch.equal(obj.flow_prev, obj.flow_next)


def test_refresh_runs_on_the_models_device():
    clip = _clip(3)
    net = _Affine(device="meta")
    flow = _FlowSpy(fixed=1.0)
    obj = _objective(clip, [1], 3, flow)
    obj.refresh(net)
    assert [s.device.type for s in net.seen] == ["meta"] * 3
    assert {p.device.type for pair in flow.pairs for p in pair} == {"meta"}
    assert obj.flow_next.device.type == "meta" and obj.flow_prev.device.type == "meta"


def test_refresh_parameterless_model_uses_the_clips_device():
    net = _Spy()
    obj = _objective(_clip(3), [1], 3, _FlowSpy(fixed=1.0))
    obj.refresh(net)
    assert obj.flow_next.device.type == "cpu" and len(net.seen) == 3
    meta = torch.empty(3, 3, 6, 7, device="meta")
    obj = _objective(meta, [1], 3, _FlowSpy(fixed=1.0))  # the flow method answers on the CPU
    obj.refresh(_Spy())
    assert obj.flow_next.device.type == "meta" and obj.flow_prev.device.type == "meta"


class _PlainModel:
    """A callable with train/eval but no parameters (not an nn.Module)."""

    def __init__(self):
        self.training = True
        self.modes = []

    def eval(self):
        self.training = False
        self.modes.append("eval")

    def train(self, mode=True):
        self.training = mode
        self.modes.append(("train", mode))

    def __call__(self, x):
        return x


def test_refresh_accepts_a_model_that_is_not_a_module():
    clip = _clip(3)
    model = _PlainModel()
    obj = _objective(clip, [1], 3, _FlowSpy())
    obj.refresh(model)
    assert model.modes == ["eval", ("train", True)] and model.training
    fn = _pair_flow(clip[1:2], clip[2:3])
    torch.testing.assert_close(obj.flow_next, _clipped(fn), atol=1e-10, rtol=0)


def test_refresh_counts_and_maps_each_centre_to_its_flow_row():
    from pnpdeblur.losses.reblur import reblur_loss

    clip = _clip(4, h=8, w=8)
    obj = _objective(clip, [2, 1], 3, _FlowSpy())
    net = _Affine(a=1.0, b=0.0)  # the identity: deblurred = blurred
    obj.refresh(net)
    obj.refresh(net)
    assert obj.refreshes == 2
    # reblur_term reads centre 2's flows from row 1 (centres are sorted), at the crop's window
    ys, xs = torch.tensor([3]), torch.tensor([1])
    got = obj.reblur_term(net, torch.tensor([2]), ys, xs)
    win = (slice(None), slice(3, 7), slice(1, 5))
    crop = clip[2][win][None]
    want = reblur_loss(crop.float(), crop.float(), obj.flow_next[1][win][None].float(),
                       obj.flow_prev[1][win][None].float(), kernel="two_segment", tau=0.5)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    other = reblur_loss(crop.float(), crop.float(), obj.flow_next[0][win][None].float(),
                        obj.flow_prev[0][win][None].float(), kernel="two_segment", tau=0.5)
    assert abs(float(other) - float(want)) > 1e-4  # row 0 (centre 1) would give another value


def test_joint_two_frame_term_pairs_each_crop_with_its_next_frame_clamped_by_hand():
    """2 frames, a clip of 4 frames (T ≠ C): the last frame's crop pairs with the previous frame,
    negated; the deblurred crops reach the flow network clipped to [0, 1], and its flows are
    clipped to the operators' range before the reblur loss."""
    import pnpdeblur.train.reblur as RB
    from pnpdeblur.losses.reblur import reblur_loss
    from pnpdeblur.operators._flow import MAX_FLOW

    class Shift(nn.Module):  # a 'deblurring' net whose outputs leave [0, 1]
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.tensor(-0.3))

        def forward(self, x):
            return 1.6 * x + self.b

    class Huge(nn.Module):  # a 'flow network' far beyond the operators' range, recording its inputs
        def __init__(self):
            super().__init__()
            self.g = nn.Parameter(torch.tensor(1.0))
            self.seen = []

        def forward(self, a, b):
            self.seen.append((a.detach().clone(), b.detach().clone()))
            f = torch.zeros(a.shape[0], 2, *a.shape[-2:])
            f[:, 0] = 10 * MAX_FLOW * self.g * (b - a).mean(dim=(1, 2, 3)).sign().view(-1, 1, 1)
            f[:, 1] = 0.3 * self.g
            return f

    torch.manual_seed(3)
    clip = torch.rand(4, 3, 12, 12)
    model = RB.JointNets(Shift(), Huge())
    obj = RB.ReblurObjective(clip, [0, 1, 2, 3], frames=2, kernel="two_segment", tau=1.0, alpha=1.0, crop=8,
                             flow="tvl1", flow_every=1, joint=True)
    frames, ys, xs = torch.tensor([2, 3]), torch.tensor([1, 4]), torch.tensor([3, 0])
    got = obj.joint_reblur_term(model, frames, ys, xs)

    crop = lambda t, y, x: clip[t, :, y:y + 8, x:x + 8]  # noqa: E731
    with torch.no_grad():
        out = torch.stack([model.deblur(crop(2, 1, 3)), model.deblur(crop(3, 4, 0))])
        nxt = torch.stack([model.deblur(crop(3, 1, 3)), model.deblur(crop(2, 4, 0))])  # frame 3 is last: frame 2
    a, b = model.flow.seen[-1]
    assert torch.equal(a, out.clamp(0, 1)) and torch.equal(b, nxt.clamp(0, 1))
    assert float(out.min()) < 0 < 1 < float(out.max())  # the clipping mattered
    with torch.no_grad():
        f = model.flow.forward(out.clamp(0, 1), nxt.clamp(0, 1)) * torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        want = reblur_loss(out, torch.stack([crop(2, 1, 3), crop(3, 4, 0)]), f.clamp(-MAX_FLOW, MAX_FLOW), None,
                           kernel="two_segment", tau=1.0)
    assert float(f.abs().max()) > MAX_FLOW  # the flows' clipping mattered
    torch.testing.assert_close(got.detach(), want, rtol=1e-5, atol=1e-7)
