"""DRUNetPrior on tiny DRUNets: construction, grey → colour at σ·√3, channel checks, flags.

Direct and fast (a few milliseconds per call): the network is a tiny random DRUNet (or
a subclass that records what it is called with); the references are the network itself
called by hand, so the prior's plumbing is checked independently of what the weights do.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pnpdeblur.nets.drunet import DRUNet
from pnpdeblur.priors.drunet import DRUNetPrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)

TINY = dict(features=(2, 3, 4, 5), blocks=1, residual=True)


def _scramble(net: DRUNet) -> DRUNet:
    # residual DRUNets start as the identity (zero tail): random weights everywhere make
    # the output depend on the input's layout, the noise level and the flips
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.4 * torch.randn(p.shape))
    return net.eval()


def _net(channels: int = 3, seed: int = 0) -> DRUNet:
    torch.manual_seed(seed)
    return _scramble(DRUNet(channels=channels, **TINY))


class _Recording(DRUNet):
    """A tiny DRUNet that records the shape and noise level of every call."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = []

    def forward(self, x, sigma):
        self.calls.append((tuple(x.shape), float(sigma)))
        return super().forward(x, sigma)


def _recording(channels: int = 3) -> _Recording:
    torch.manual_seed(1)
    return _scramble(_Recording(channels=channels, **TINY))


def _z(n=2, c=3, h=7, w=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64)


# ------------------------------------------------------------------------ construction
def test_a_drunet_is_used_as_given():
    net = _net()
    prior = DRUNetPrior(net)
    assert prior.net is net and prior.channels == 3
    assert prior.ensemble is False and prior.clamp is False and prior.device is None


def test_none_loads_the_shipped_weights():
    prior = DRUNetPrior()
    ref = DRUNet.pretrained()
    assert isinstance(prior.net, DRUNet) and prior.net.config == ref.config
    a, b = prior.net.state_dict(), ref.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_path_loads_that_checkpoint(tmp_path):
    net = _net(seed=5)
    path = net.save(tmp_path / "tiny.safetensors")
    for p in (path, str(path)):
        prior = DRUNetPrior(p)
        assert isinstance(prior.net, DRUNet) and prior.net is not net
        assert prior.net.config == net.config
        a, b = prior.net.state_dict(), net.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_other_modules_are_a_type_error():
    with pytest.raises(TypeError, match=r"^net must be a DRUNet, a checkpoint path or None, got Conv2d$"):
        DRUNetPrior(torch.nn.Conv2d(3, 3, 1))


def test_flags_reach_the_denoiser_prior():
    net = _net()
    prior = DRUNetPrior(net, ensemble=True, clamp=True, device="cpu")
    assert prior.ensemble is True and prior.clamp is True and prior.device == torch.device("cpu")
    assert prior.cycle is False  # the ensemble turns cycling off
    assert DRUNetPrior(net).cycle is True and DRUNetPrior(net, cycle=False).cycle is False
    with pytest.raises(TypeError, match="cycle must be True or False"):
        DRUNetPrior(net, cycle=1)


def test_repr():
    assert repr(DRUNetPrior(_net())) == (
        "DRUNetPrior(channels=3, ensemble=False, cycle=True, hqs_lam=None, hqs_sigma_start=None, device='follow')")
    assert repr(DRUNetPrior(_net(1), ensemble=True, device="cpu", hqs_lam=0.3, hqs_sigma_start=0.4)) == (
        "DRUNetPrior(channels=1, ensemble=True, cycle=False, hqs_lam=0.3, hqs_sigma_start=0.4, device='cpu')"
    )


# ------------------------------------------------------------------------ denoising
def test_colour_input_goes_to_the_network_at_sigma():
    net = _recording()
    z = _z()
    out = DRUNetPrior(net)(z, 0.07)
    assert net.calls == [((2, 3, 7, 9), 0.07)]
    with torch.no_grad():
        ref = net(z.float(), 0.07).double()
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


def test_grey_input_is_replicated_denoised_at_sigma_sqrt3_and_averaged():
    net = _recording()
    z = _z(n=2, c=1, seed=3)  # a batch of 2: the mean must run over channels, not images
    out = DRUNetPrior(net)(z, 0.05)
    assert out.shape == (2, 1, 7, 9) and out.dtype == torch.float64
    assert net.calls[0][0] == (2, 3, 7, 9)
    assert net.calls[0][1] == pytest.approx(0.05 * math.sqrt(3.0), rel=1e-15)
    t = z.float().repeat(1, 3, 1, 1)  # three equal channels
    with torch.no_grad():
        full = net(t, 0.05 * 3**0.5)
    ref = (full[:, 0:1] + full[:, 1:2] + full[:, 2:3]).double() / 3
    torch.testing.assert_close(out, ref, atol=0, rtol=1e-5)  # float32 summation order
    # the network adds a little chroma: the channel mean is not any single channel
    assert not torch.allclose(full[:, 0:1], full[:, 1:2], atol=1e-7)


def test_grey_input_of_a_grey_network_is_not_replicated():
    net = _recording(channels=1)
    z = _z(n=2, c=1, seed=4)
    out = DRUNetPrior(net)(z, 0.05)
    assert net.calls == [((2, 1, 7, 9), 0.05)]
    with torch.no_grad():
        ref = net(z.float(), 0.05).double()
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


@pytest.mark.parametrize("c", [2, 4])
def test_other_channel_counts_of_a_colour_network_are_refused(c):
    with pytest.raises(ValueError, match=r"^z must have 3 channels \(or 1\) for this colour DRUNet, got %d$" % c):
        DRUNetPrior(_net())(_z(c=c), 0.1)


def test_a_grey_network_denoises_two_channels_one_by_one():
    net = _recording(channels=1)
    z = _z(n=2, c=2, seed=7)
    out = DRUNetPrior(net)(z, 0.06)
    assert net.calls == [((4, 1, 7, 9), 0.06)]  # the channels folded into the batch, sigma as given
    with torch.no_grad():
        ref = torch.cat([net(z[:, k:k + 1].float(), 0.06) for k in range(2)], dim=1).double()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_a_grey_network_denoises_rgb_in_the_opponent_colour_space():
    net = _net(1, seed=8)
    z = _z(n=1, c=3, seed=9)
    out = DRUNetPrior(net)(z, 0.08)
    s3, s2, s6 = 3**-0.5, 2**-0.5, 6**-0.5  # luminance, red-blue, green-magenta (orthonormal)
    M = torch.tensor([[s3, s3, s3], [s2, 0.0, -s2], [s6, -2 * s6, s6]], dtype=torch.float64)
    M = M.float()  # the network runs in float32, and so does the transform around it
    planes = torch.einsum("ij,njhw->nihw", M, z.float())
    with torch.no_grad():
        den = torch.cat([net(planes[:, k:k + 1], 0.08) for k in range(3)], dim=1)
    ref = torch.einsum("ij,nihw->njhw", M, den).double()  # back with Mᵀ = M⁻¹
    assert out.shape == z.shape
    # the scrambled network's outputs reach ~10³: float32 rounding relative to that scale
    torch.testing.assert_close(out, ref, atol=1e-6 * float(ref.abs().max()), rtol=0)


def test_ensemble_averages_the_four_flips():
    net = _net()
    z = _z(n=1, seed=6)
    out = DRUNetPrior(net, ensemble=True)(z, 0.1)
    t = z.float()
    with torch.no_grad():
        ref = sum(net(t.flip(d), 0.1).flip(d) if d else net(t, 0.1) for d in ((), (-1,), (-2,), (-2, -1))) / 4
        plain = net(t, 0.1)
    torch.testing.assert_close(out, ref.double(), atol=1e-6, rtol=0)
    assert (out - plain.double()).abs().max() > 1e-4  # ensembling changes the result


def test_clamp_clips_to_the_unit_interval():
    net = _net()
    z = 3 * _z(n=1, seed=7) - 1  # far outside [0, 1]: the residual net keeps it there
    inside = {}  # as inside a solver, whose iterates may ring: a direct call would warn about the range
    raw = DRUNetPrior(net)(z, 0.1, context=inside)
    assert raw.min() < 0 and raw.max() > 1
    torch.testing.assert_close(DRUNetPrior(net, clamp=True)(z, 0.1, context=inside), raw.clamp(0, 1), atol=0, rtol=0)


def test_numpy_grey_image_round_trips():
    net = _net()
    img = np.random.default_rng(2).random((7, 9)).astype(np.float32)
    out = DRUNetPrior(net)(img, 0.05)
    assert isinstance(out, np.ndarray) and out.shape == (7, 9) and out.dtype == np.float32
    with torch.no_grad():
        ref = net(torch.from_numpy(img)[None, None].expand(1, 3, -1, -1), 0.05 * math.sqrt(3)).mean(1)[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-7, rtol=0)


def test_nan_and_bad_sigma_are_refused():
    prior = DRUNetPrior(_net())
    z = _z(n=1)
    with pytest.raises(ValueError, match=r"^sigma must be a finite non-negative number"):
        prior(z, float("nan"))
    with pytest.raises(ValueError, match=r"^sigma must be a finite non-negative number"):
        prior(z, -0.1)
    bad = z.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^z "):
        prior(bad, 0.1)


def test_zero_sigma_is_the_identity_without_calling_the_network():
    net = _recording()
    z = _z(n=1, c=1)
    torch.testing.assert_close(DRUNetPrior(net)(z, 0.0), z, atol=0, rtol=0)
    assert net.calls == []


@pytest.mark.parametrize("c", [1, 3])
def test_the_solver_context_reaches_the_denoiser_prior(monkeypatch, c):
    # DenoiserPrior ignores it today; a prior that uses it (recurrent ones) must get it
    # from both branches (grey replicated, colour as is).
    from pnpdeblur.priors.learned import DenoiserPrior

    seen = []
    base = DenoiserPrior._denoise

    def spy(self, z, sigma, context):
        seen.append(context)
        return base(self, z, sigma, context)

    monkeypatch.setattr(DenoiserPrior, "_denoise", spy)
    ctx = {"iteration": 3}
    DRUNetPrior(_net())(_z(n=1, c=c), 0.1, context=ctx)
    assert len(seen) == 1 and seen[0] is ctx


def test_the_tuned_schedule_goes_with_the_shipped_weights_only():
    from pnpdeblur.priors.drunet import SHIPPED_HQS_LAMBDA, SHIPPED_HQS_SIGMA_START
    from pnpdeblur.solvers.schedules import prior_schedule

    assert (SHIPPED_HQS_LAMBDA, SHIPPED_HQS_SIGMA_START) == (0.18, 100 / 255)
    for prior in (DRUNetPrior(), DRUNetPrior(variant="medium")):
        assert (prior.hqs_lam, prior.hqs_sigma_start) == (0.18, 100 / 255)
        assert prior_schedule(prior) == (0.18, 100 / 255)
    # a network of the user's: DPIR's schedule (None), unless given
    mine = DRUNetPrior(_net())
    assert (mine.hqs_lam, mine.hqs_sigma_start) == (None, None) and prior_schedule(mine) == (0.23, 49 / 255)
    mine = DRUNetPrior(_net(), hqs_lam=0.3, hqs_sigma_start=np.float64(0.5))
    assert (mine.hqs_lam, mine.hqs_sigma_start) == (0.3, 0.5)
    assert (DRUNetPrior(hqs_lam=0.25).hqs_lam, DRUNetPrior(hqs_lam=0.25).hqs_sigma_start) == (0.25, 100 / 255)
    for name in ("hqs_lam", "hqs_sigma_start"):
        for bad, exc in ((0.0, ValueError), (-1.0, ValueError), (float("inf"), ValueError), ("0.2", TypeError)):
            with pytest.raises(exc, match=rf"^{name} must be a"):
                DRUNetPrior(_net(), **{name: bad})
