"""The prior base class, the scalar check and DenoiserPrior, against computations by hand.

DenoiserPrior is compared with calling the network by hand: channel folding into the batch,
the orthonormal opponent colour transform (checked against its definition), the flip
ensemble with a network that is not flip-equivariant, clamping and the gradient switch.
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.nets.dncnn import DnCNN
from pnpdeblur.priors.base import BasePrior, check_real, check_sigma
from pnpdeblur.priors.learned import _OPPONENT, DenoiserPrior, DnCNNPrior, resolve_device


# -- check_real / check_sigma ------------------------------------------------------------
def test_check_real_accepts_real_scalars_and_returns_floats():
    for v, want in ((0.25, 0.25), (3, 3.0), (np.float32(0.5), 0.5), (torch.tensor(0.75), 0.75),
                    (torch.tensor([1.5], dtype=torch.float64), 1.5), (0, 0.0)):
        got = check_real(v, "x")
        assert type(got) is float and got == want
    assert check_sigma(0.0) == 0.0


def test_check_real_messages_name_the_argument():
    with pytest.raises(ValueError, match=r"^x must be a real scalar, got a tensor of shape \(2,\)$"):
        check_real(torch.ones(2), "x")
    with pytest.raises(ValueError, match=r"^x must be a real scalar, got a tensor of shape \(\)$"):
        check_real(torch.tensor(1 + 1j), "x")
    with pytest.raises(TypeError, match=r"^lam must be a real number, got bool$"):
        check_real(True, "lam")
    with pytest.raises(TypeError, match=r"^lam must be a real number, got str$"):
        check_real("0.1", "lam")
    for bad in (-0.5, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=r"^beta must be a finite non-negative number, got "):
            check_real(bad, "beta")
    with pytest.raises(ValueError, match=r"^beta must be a finite positive number, got 0$"):
        check_real(0, "beta", allow_zero=False)
    assert check_real(1e-300, "beta", allow_zero=False) == 1e-300
    with pytest.raises(ValueError, match=r"^beta must be a finite positive number \(why\), got -1$"):
        check_real(-1, "beta", allow_zero=False, what=" (why)")
    with pytest.raises(ValueError, match=r"^sigma must be a finite non-negative number \(noise std\), got -0.1$"):
        check_sigma(-0.1)
    with pytest.raises(TypeError, match=r"^sigma must be a real number, got NoneType$"):
        check_sigma(None)


# -- BasePrior ---------------------------------------------------------------------------
class _Double(BasePrior):
    """2·z in float32, recording its calls (a prior that changes the dtype on purpose)."""

    def __init__(self):
        self.calls = []
        self.scale = 2.0
        self._hidden = "not in repr"

    def _denoise(self, z, sigma, context):
        self.calls.append((tuple(z.shape), sigma, context))
        return (self.scale * z).float()


def test_base_prior_casts_back_and_passes_nchw_sigma_and_context():
    p = _Double()
    z = torch.rand(3, 4, 5, dtype=torch.float64)  # torch (C, H, W)
    ctx = {"iteration": 2}
    out = p(z, np.float64(0.3), context=ctx)
    assert p.calls == [((1, 3, 4, 5), 0.3, ctx)] and type(p.calls[0][1]) is float
    assert out.dtype == torch.float64 and out.shape == z.shape
    torch.testing.assert_close(out, (2 * z).float().double(), rtol=0, atol=0)
    hwc = np.random.default_rng(0).random((4, 5, 3))
    np.testing.assert_allclose(p(hwc, 0.1), 2 * hwc, rtol=1e-6)


def test_base_prior_sigma_zero_is_a_copy_without_calling_the_denoiser():
    p = _Double()
    z = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    out = p(z, 0)
    assert p.calls == [] and torch.equal(out, z) and out.dtype == z.dtype
    out += 1
    assert z.max() <= 1  # not the caller's buffer
    assert p(z, 1e-12).sub(2 * z.float().double()).abs().max() == 0  # any sigma > 0 denoises


def test_base_prior_rejects_bad_images():
    p = _Double()
    with pytest.raises(TypeError, match=r"^z must be an array"):
        p([[0.5]], 0.1)
    with pytest.raises(ValueError, match=r"^z must have shape"):
        p(torch.zeros(1, 1, 1, 4, 4), 0.1)
    with pytest.raises(TypeError, match=r"^z must be float32 or float64"):
        p(torch.zeros(4, 4, dtype=torch.int32), 0.1)
    with pytest.raises(ValueError, match=r"^z contains NaN or Inf"):
        p(torch.full((4, 4), float("inf")), 0.1)
    with pytest.raises(NotImplementedError):
        BasePrior()(torch.zeros(4, 4), 0.1)


def test_base_prior_repr_lists_public_attributes():
    assert repr(_Double()) == "_Double(calls=[], scale=2.0)"


# -- resolve_device ------------------------------------------------------------------------
def test_resolve_device():
    assert resolve_device("follow") is None
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("meta")) == torch.device("meta")
    for bad in ("nowhere", 2.5, None):
        with pytest.raises(ValueError, match=r"^device must be 'follow', a device name or a torch.device, got "):
            resolve_device(bad)


# -- DenoiserPrior -------------------------------------------------------------------------
class _Net(torch.nn.Module):
    """A grey 'denoiser' that is neither linear nor flip-equivariant: x + x²/4 + ramp · σ."""

    def __init__(self, channels=1, dtype=torch.float32):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=dtype))
        self.config = {"channels": channels}
        self.inputs = []

    @staticmethod
    def ramp(h, w, dtype):
        y, x = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
        return x + 10 * y

    def forward(self, x, sigma=1.0):
        self.inputs.append(x.detach().clone())
        h, w = x.shape[-2:]
        return self.w * (x + x**2 / 4) + self.ramp(h, w, x.dtype) * sigma


def _f(x, sigma):
    h, w = x.shape[-2:]
    return x + x**2 / 4 + _Net.ramp(h, w, x.dtype) * sigma


def test_opponent_transform_is_the_orthonormal_luminance_chroma_basis():
    m = _OPPONENT.numpy()
    want = np.array([[1, 1, 1] / np.sqrt(3), [1, 0, -1] / np.sqrt(2), [1, -2, 1] / np.sqrt(6)])
    np.testing.assert_allclose(m, want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(m @ m.T, np.eye(3), rtol=0, atol=1e-15)


@pytest.mark.parametrize("color", ["auto", "opponent"])
def test_grey_net_on_colour_image_runs_in_the_opponent_space(color):
    net = _Net(dtype=torch.float64)
    z = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    out = DenoiserPrior(net, color=color)(z, 0.1)
    m = _OPPONENT
    opp = torch.einsum("ij,njhw->nihw", m, z)
    # folded: one grey image per opponent channel, batch-major
    torch.testing.assert_close(net.inputs[0], opp.reshape(6, 1, 4, 5), rtol=0, atol=1e-15)
    want = torch.einsum("ij,nihw->njhw", m, _f(opp, 0.1))
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)


def test_grey_net_on_colour_image_per_rgb_channel():
    net = _Net(dtype=torch.float64)
    z = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    out = DenoiserPrior(net, color="rgb")(z, 0.2)
    torch.testing.assert_close(net.inputs[0], z.reshape(6, 1, 4, 5), rtol=0, atol=0)
    torch.testing.assert_close(out, _f(z, 0.2), rtol=0, atol=1e-12)


class _BlindColourNet(_Net):
    """A colour 'denoiser' that takes no σ: records its input, returns x + x²/4."""

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.w * (x + x**2 / 4)


def _blind_colour_dncnn():
    return DnCNN(channels=3, features=4, depth=3, noise_map=False).double()


@pytest.mark.parametrize("how", ["takes_sigma=False", "blind DnCNN"])
def test_grey_image_through_a_blind_colour_net_gets_white_chroma_noise_of_std_sqrt3_sigma(how):
    sigma, (n, h, w) = 0.1, (2, 96, 80)
    z = torch.rand(n, 1, h, w, dtype=torch.float64)
    if how == "takes_sigma=False":
        net = _BlindColourNet(channels=3, dtype=torch.float64)
        prior = DenoiserPrior(net, takes_sigma=False)
        seen = lambda: net.inputs[-1]  # noqa: E731
    else:  # told σ (the default), but a DnCNN without a noise map ignores it: blind from its config
        net = _blind_colour_dncnn()
        inputs = []
        net.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach().clone()))
        prior = DenoiserPrior(net)
        seen = lambda: inputs[-1]  # noqa: E731
    out = prior(z, sigma)
    t = seen()
    assert t.shape == (n, 3, h, w)
    # the channel mean is the image itself: the added noise has no luminance
    torch.testing.assert_close(t.mean(1, keepdim=True), z, rtol=0, atol=1e-12)
    opp = torch.einsum("ij,njhw->nihw", _OPPONENT, t)
    torch.testing.assert_close(opp[:, :1], math.sqrt(3) * z, rtol=0, atol=1e-12)
    chroma = opp[:, 1:]
    # white Gaussian noise of std √3·σ in each chroma direction, independent of each other and of the image
    std = math.sqrt(3) * sigma
    for c in range(2):  # zero mean within 4 standard errors; the std within 3 %
        assert abs(chroma[:, c].mean().item()) < 4 * std / math.sqrt(n * h * w)
        assert chroma[:, c].std().item() == pytest.approx(std, rel=0.03)
    a, b = chroma[:, 0].flatten(), chroma[:, 1].flatten()
    assert abs(float(((a - a.mean()) * (b - b.mean())).mean()) / (a.std() * b.std()).item()) < 0.03
    shifted = chroma[..., 1:].flatten(), chroma[..., :-1].flatten()  # neighbours: white, not smooth
    assert abs(float(np.corrcoef(shifted[0].numpy(), shifted[1].numpy())[0, 1])) < 0.03
    # the output is the channel mean of the network's output on that input
    ref = (t + t**2 / 4) if how == "takes_sigma=False" else net(t)
    torch.testing.assert_close(out, ref.detach().mean(1, keepdim=True), rtol=0, atol=1e-12)
    # the same draw on every call (a solver's iterations see a fixed prior), so the prior is deterministic
    prior(z, sigma)
    torch.testing.assert_close(seen(), t, rtol=0, atol=0)


def test_a_colour_net_told_sigma_gets_the_plain_replica_and_sqrt3_sigma():
    z = torch.rand(1, 1, 8, 9, dtype=torch.float64)
    told = _Net(channels=3, dtype=torch.float64)  # a non-blind colour net is told √3·σ instead
    out = DenoiserPrior(told)(z, 0.1)
    torch.testing.assert_close(told.inputs[-1], z.expand(-1, 3, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(out, _f(z.expand(-1, 3, -1, -1), 0.1 * math.sqrt(3)).mean(1, keepdim=True),
                               rtol=0, atol=1e-12)
    # a noise-map DnCNN is told σ too
    nm = DnCNN(channels=3, features=4, depth=3, noise_map=True).double()
    calls = []
    real = nm.forward
    nm.forward = lambda x, s=0.0: calls.append((x.detach().clone(), s)) or real(x, s)
    DenoiserPrior(nm)(z, 0.1)
    torch.testing.assert_close(calls[-1][0], z.expand(-1, 3, -1, -1), rtol=0, atol=0)
    assert calls[-1][1] == pytest.approx(0.1 * math.sqrt(3), rel=1e-15)


def test_dncnn_prior_tells_sigma_only_to_a_noise_map_dncnn(tmp_path):
    blind = _blind_colour_dncnn().float().save(tmp_path / "blind.safetensors")
    told = DnCNN(channels=3, features=4, depth=3, noise_map=True).save(tmp_path / "told.safetensors")
    assert DnCNNPrior(blind).takes_sigma is False and DnCNNPrior(told).takes_sigma is True
    assert DnCNNPrior().takes_sigma is True  # the shipped one has a noise map


def test_grey_net_on_two_channels_folds_without_colour_transform():
    net = _Net(dtype=torch.float64)
    z = torch.rand(1, 2, 4, 5, dtype=torch.float64)
    out = DenoiserPrior(net)(z, 0.2)
    assert net.inputs[0].shape == (2, 1, 4, 5)
    torch.testing.assert_close(out, _f(z, 0.2), rtol=0, atol=1e-12)


def test_colour_net_gets_the_colour_image_and_channel_count_is_checked():
    net = _Net(channels=3, dtype=torch.float64)
    z = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    prior = DenoiserPrior(net)
    assert prior.channels == 3
    torch.testing.assert_close(prior(z, 0.1), _f(z, 0.1), rtol=0, atol=1e-12)
    torch.testing.assert_close(net.inputs[0], z, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^the network takes 3 channels, the image has 2$"):
        prior(z[:, :2], 0.1)
    # a grey image goes through the colour network replicated, with σ√3, and comes back averaged
    g = z[:, :1]
    want = _f(g.expand(-1, 3, -1, -1), 0.1 * np.sqrt(3)).mean(dim=1, keepdim=True)
    torch.testing.assert_close(prior(g, 0.1), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(net.inputs[-1], g.expand(-1, 3, -1, -1), rtol=0, atol=0)
    # channels given explicitly win over the config; a 1-channel image is not folded
    assert DenoiserPrior(net, channels=1).channels == 1
    grey = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(DenoiserPrior(_Net(dtype=torch.float64))(grey, 0.1), _f(grey, 0.1), rtol=0, atol=1e-12)


def test_net_without_config_takes_any_channel_count():
    net = _Net(dtype=torch.float64)
    del net.config
    prior = DenoiserPrior(net)
    assert prior.channels is None
    z = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(prior(z, 0.1), _f(z, 0.1), rtol=0, atol=1e-12)
    assert net.inputs[0].shape == (1, 3, 4, 5)
    net.config = "not a dict"
    assert DenoiserPrior(net).channels is None


def test_ensemble_averages_the_four_flips():
    net = _Net(dtype=torch.float64)
    z = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    prior = DenoiserPrior(net, ensemble=np.True_)
    assert prior.ensemble is True
    out = prior(z, 0.5)
    want = sum(_f(z.flip(d), 0.5).flip(d) if d else _f(z, 0.5) for d in ((), (-1,), (-2,), (-2, -1))) / 4
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    assert (out - _f(z, 0.5)).abs().max() > 1  # the ramp tells the flips apart
    assert len(net.inputs) == 4
    torch.testing.assert_close(net.inputs[3], z.flip((-2, -1)), rtol=0, atol=0)


def _turned(t, k):
    """Written out: rotate by k·90° (counter-clockwise, torch.rot90's sense) then, for k ≥ 4, mirror."""
    a = t.numpy()
    a = np.rot90(a, k % 4, axes=(-2, -1))
    return torch.from_numpy(np.ascontiguousarray(a[..., ::-1] if k >= 4 else a))


@pytest.mark.parametrize("k", range(10))
def test_cycle_turns_the_image_by_the_iteration_and_back(k):
    net = _Net(dtype=torch.float64)
    z = torch.rand(1, 1, 4, 5, dtype=torch.float64)  # not square: a quarter turn swaps H and W
    prior = DenoiserPrior(net, cycle=True)
    out = prior(z, 0.5, context={"iteration": k})
    seen = _turned(z, k % 8)
    torch.testing.assert_close(net.inputs[-1], seen, rtol=0, atol=0)
    # the output is the network's output on the turned image, turned back (mirror first, then rotate back)
    a = _f(seen, 0.5).numpy()
    a = a[..., ::-1] if k % 8 >= 4 else a
    a = np.rot90(a, -(k % 4), axes=(-2, -1))
    torch.testing.assert_close(out, torch.from_numpy(np.ascontiguousarray(a)), rtol=0, atol=1e-12)
    assert out.shape == z.shape
    if k % 8:
        assert (out - _f(z, 0.5)).abs().max() > 1e-3  # the ramp network tells the turns apart


def test_cycle_without_an_iteration_does_not_turn():
    net = _Net(dtype=torch.float64)
    z = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    prior = DenoiserPrior(net, cycle=True)
    for ctx in (None, {}, {"iteration": None}, {"iteration": True}, {"y": z}):
        torch.testing.assert_close(prior(z, 0.5, context=ctx), _f(z, 0.5), rtol=0, atol=1e-12)
    off = DenoiserPrior(net)
    assert off.cycle is False
    torch.testing.assert_close(off(z, 0.5, context={"iteration": 3}), _f(z, 0.5), rtol=0, atol=1e-12)


def test_cycle_checks():
    with pytest.raises(ValueError, match="^cycle and ensemble are exclusive: the ensemble already averages over flips "
                                         "at every call$"):
        DenoiserPrior(_Net(), cycle=True, ensemble=True)
    with pytest.raises(TypeError, match="^cycle must be True or False, got 'yes'$"):
        DenoiserPrior(_Net(), cycle="yes")


def test_cycle_with_a_grey_net_on_a_colour_image_and_in_hqs():
    """The turn commutes with the opponent transform; in HQS each iteration gets its own turn."""
    from pnpdeblur.operators.base import Identity
    from pnpdeblur.solvers import hqs

    net = _Net(dtype=torch.float64)
    z = torch.rand(1, 3, 4, 6, dtype=torch.float64)
    plain = DenoiserPrior(net)
    cyc = DenoiserPrior(net, cycle=True)
    want = torch.rot90(plain(torch.rot90(z, 3, dims=(-2, -1)), 0.2), -3, dims=(-2, -1))
    torch.testing.assert_close(cyc(z, 0.2, context={"iteration": 3}), want, rtol=0, atol=1e-12)
    net.inputs.clear()
    hqs(z, Identity(), cyc, noise_level=0.02, n_iter=3, progress=False)
    assert [tuple(t.shape) for t in net.inputs] == [(3, 1, 4, 6), (3, 1, 6, 4), (3, 1, 4, 6)]


def test_takes_sigma_false_calls_the_net_with_the_image_only():
    seen = []

    def net(x, *rest):
        seen.append(len(rest))
        return x * 0.5

    z = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(DenoiserPrior(net, takes_sigma=False)(z, 0.1), z * 0.5)
    torch.testing.assert_close(DenoiserPrior(net, takes_sigma=False, ensemble=True)(z, 0.1), z * 0.5)
    torch.testing.assert_close(DenoiserPrior(net)(z, 0.1), z * 0.5)
    assert seen == [0, 0, 0, 0, 0, 1]


def test_clamp_clips_to_the_unit_interval():
    net = _Net(dtype=torch.float64)
    z = torch.tensor([[[[0.0, 0.9], [0.5, 0.1]]]], dtype=torch.float64)
    raw = _f(z, 0.1)  # 1 + 0.9 + ... > 1 at the second pixel
    assert raw.max() > 1
    torch.testing.assert_close(DenoiserPrior(net, clamp=True)(z, 0.1), raw.clamp(0, 1), rtol=0, atol=1e-15)
    neg = DenoiserPrior(lambda x, s: x - 2.0, clamp=True)(z, 0.1)
    assert torch.equal(neg, torch.zeros_like(z))


def test_net_dtype_and_result_dtype():
    net = _Net(dtype=torch.float32)
    z = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    out = DenoiserPrior(net)(z, 0.1)
    assert net.inputs[0].dtype == torch.float32 and out.dtype == torch.float64
    torch.testing.assert_close(out, _f(z.float(), 0.1).double(), rtol=0, atol=0)


def test_gradients_flow_only_when_the_input_asks():
    net = _Net(dtype=torch.float64)
    prior = DenoiserPrior(net)
    z = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    assert not prior(z, 0.1).requires_grad  # no graph through the parameters at test time
    zg = z.clone().requires_grad_(True)
    prior(zg, 0.1).sum().backward()
    torch.testing.assert_close(zg.grad, 1 + z / 2, rtol=0, atol=1e-12)
    with torch.no_grad():
        assert not prior(zg, 0.1).requires_grad


def test_constructor_checks_and_repr():
    with pytest.raises(TypeError, match=r"^net must be a torch.nn.Module or callable, got int$"):
        DenoiserPrior(5)
    with pytest.raises(ValueError, match=r"^color must be 'auto', 'rgb' or 'opponent', got 'lab'$"):
        DenoiserPrior(_Net(), color="lab")
    assert repr(DenoiserPrior(_Net())) == "DenoiserPrior(_Net, channels=1, cycle=False, device='follow')"
    assert repr(DenoiserPrior(_Net(), device="cpu", cycle=True)) == \
        "DenoiserPrior(_Net, channels=1, cycle=True, device='cpu')"
    # a pinned device moves the module at construction (meta: visible without a GPU)
    net = _Net()
    prior = DenoiserPrior(net, device="meta")
    assert prior.device == torch.device("meta") and net.w.device.type == "meta"
    # a plain callable is never moved
    assert DenoiserPrior(lambda x, s: x, device="cpu").device == torch.device("cpu")
    d = DenoiserPrior(_Net())
    assert (d.takes_sigma, d.clamp, d.color, d.ensemble, d.device) == (True, False, "auto", False, None)


def test_dncnn_prior_arguments_reach_the_denoiser_prior(tmp_path):
    torch.manual_seed(0)
    net = DnCNN(features=4, depth=2)
    path = net.save(tmp_path / "d.safetensors")
    p = DnCNNPrior(path, ensemble=False, color="rgb", clamp=True, device="cpu")
    assert isinstance(p.net, DnCNN) and p.net.config == net.config
    assert (p.ensemble, p.color, p.clamp, p.device, p.channels) == (False, "rgb", True, torch.device("cpu"), 1)
    for a, b in zip(p.net.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    q = DnCNNPrior(path)
    assert (q.ensemble, q.color, q.clamp, q.device) == (True, "auto", False, None)
    z = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        want = sum(net(z.flip(d), 0.1).flip(d) for d in ((), (-1,), (-2,), (-2, -1))) / 4
    torch.testing.assert_close(q(z, 0.1), want, rtol=0, atol=1e-6)
    assert math.isfinite(float(q(z, 0.1).sum()))


def test_cpu_runs_channels_last_with_the_same_values_and_parameters():
    import copy

    torch.manual_seed(0)
    net = DnCNN(channels=1, depth=3, features=8, noise_map=True).eval()
    reference = copy.deepcopy(net)
    params = [id(p) for p in net.parameters()]
    prior = DenoiserPrior(net, channels=1, color="rgb")
    z = torch.rand(2, 3, 12, 10)
    out = prior(z, 0.1)
    with torch.no_grad():
        expected = reference(z.reshape(6, 1, 12, 10), 0.1).reshape(2, 3, 12, 10)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert out.is_contiguous() and out.dtype == z.dtype
    assert [id(p) for p in net.parameters()] == params  # converted in place: an optimiser still holds them
    assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_other_networks_keep_their_layout():
    class Flat(torch.nn.Module):  # views its input: would break on channels-last strides
        def forward(self, x):
            return x.view(x.shape[0], -1).view(x.shape)

    out = DenoiserPrior(Flat(), takes_sigma=False)(torch.rand(1, 3, 5, 4), 0.1)
    assert out.shape == (1, 3, 5, 4)


def test_following_the_input_off_the_cpu_restores_the_usual_layout():
    # the meta device stands in for a GPU: the module moves there, shapes propagate
    torch.manual_seed(0)
    net = DnCNN(channels=1, depth=3, features=8, noise_map=True).eval()
    prior = DenoiserPrior(net, channels=1)
    prior(torch.rand(1, 1, 8, 8), 0.1)
    assert net.body[0].weight.is_contiguous(memory_format=torch.channels_last)  # on the CPU
    out = prior._denoise(torch.rand(1, 1, 8, 8, device="meta"), 0.1, None)  # no value checks on meta
    w = net.body[0].weight
    assert out.device.type == "meta" and w.device.type == "meta"
    assert w.is_contiguous() and not w.is_contiguous(memory_format=torch.channels_last)


def test_following_keeps_the_layout_of_other_networks():
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).to(memory_format=torch.channels_last)
    prior = DenoiserPrior(torch.nn.Sequential(conv), channels=2, takes_sigma=False)
    out = prior._denoise(torch.rand(1, 2, 6, 6, device="meta"), 0.1, None)
    assert out.device.type == "meta" and conv.weight.device.type == "meta"
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)  # as the user left it
