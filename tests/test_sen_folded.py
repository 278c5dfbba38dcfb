"""SEN.estimate in eval mode runs the stacks with each batch norm folded into its convolution.

The reference is the plain network (``SEN.forward``, batch norm as its own layer) in the same
mode: the folded path must be the same function (to float rounding), follow every change of
the weights and running statistics, and leave training mode and the module's state alone.
"""
from __future__ import annotations

import pytest
import torch

from pnpdeblur.data.flows import canonicalize_flow
from pnpdeblur.nets import SEN
from pnpdeblur.nets._base import crop_to, pad_to_multiple

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(seed=0, dtype=torch.float64) -> SEN:
    """A small SEN whose batch norms are far from the identity (random affine and running stats)."""
    torch.manual_seed(seed)
    net = SEN(width=4, stacks=2, levels=1).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.3, 0.3)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.2, 3.0)
    return net.eval()


def _plain(net: SEN, x: torch.Tensor) -> torch.Tensor:
    """What SEN.estimate computed before the folding: the module's own forward."""
    with torch.no_grad():
        xp, size = pad_to_multiple(x, net.stride)
        return canonicalize_flow(crop_to(net(xp)[-1], size))


def _sign_free_gap(a, b):
    # m and -m are the same blur: canonicalisation may pick either sign where u ≈ 0
    return float(torch.minimum((a - b).abs().sum(1), (a + b).abs().sum(1)).max())


def test_the_folded_estimate_is_the_network_in_float64():
    net = _tiny()
    x = torch.rand(2, 3, 19, 37, dtype=torch.float64)
    got, want = net.estimate(x), _plain(net, x)
    assert got.shape == want.shape == (2, 2, 19, 37)
    assert _sign_free_gap(got, want) < 1e-10
    folded = net.__dict__["_folded"][1]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())  # it did fold


def test_the_shipped_sen_folded_agrees_with_the_plain_network():
    net = SEN.pretrained().eval()
    x = torch.rand(1, 3, 100, 140, generator=torch.Generator().manual_seed(3))
    assert _sign_free_gap(net.estimate(x), _plain(net, x)) < 1e-3  # pixels; float32 rounding


def test_the_fold_is_reused_and_rebuilt_when_a_weight_or_statistic_changes():
    net = _tiny(1)
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    first = net.estimate(x)
    folded = net.__dict__["_folded"][1]
    net.estimate(x)
    assert net.__dict__["_folded"][1] is folded  # reused
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        bn.running_mean.add_(0.7)  # a running statistic changed in place
    after = net.estimate(x)
    assert _sign_free_gap(after, _plain(net, x)) < 1e-10 and _sign_free_gap(after, first) > 1e-6
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight.mul_(1.5)  # a weight changed in place
    assert _sign_free_gap(net.estimate(x), _plain(net, x)) < 1e-10
    net.load_state_dict(_tiny(2).state_dict())  # other weights loaded
    assert _sign_free_gap(net.estimate(x), _plain(net, x)) < 1e-10


def test_training_mode_keeps_the_batch_statistics_and_the_state_dict_is_untouched():
    net = _tiny(4)
    keys = set(net.state_dict())
    x = torch.rand(3, 3, 16, 24, dtype=torch.float64)
    net.estimate(x)  # builds the fold
    assert set(net.state_dict()) == keys and "_folded" not in dict(net.named_modules())
    net.train()
    means = [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    got = net.estimate(x)
    net2 = _tiny(4).train()
    with torch.no_grad():
        xp, size = pad_to_multiple(x, net2.stride)
        want = canonicalize_flow(crop_to(net2(xp)[-1], size))  # batch statistics, as forward in training
    assert _sign_free_gap(got, want) < 1e-10
    assert _sign_free_gap(got, _tiny(4).estimate(x)) > 1e-6  # not the eval-mode (folded) function
    after = [m.running_mean for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert any(not torch.equal(a, b) for a, b in zip(means, after))  # training mode updated them, as before


def test_nan_input_is_still_refused_on_the_folded_path():
    net = _tiny()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net.estimate(x)


def test_weights_made_under_inference_mode_are_folded_afresh_each_call():
    # inference tensors have no version counter: an in-place edit could not be seen, so nothing is kept
    with torch.inference_mode():
        net = _tiny(5)
        x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
        first = net.estimate(x)
        assert _sign_free_gap(first, _plain(net, x)) < 1e-10 and "_folded" not in net.__dict__
        bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var.mul_(4.0)
        after = net.estimate(x)
        assert _sign_free_gap(after, _plain(net, x)) < 1e-10 and _sign_free_gap(after, first) > 1e-6
