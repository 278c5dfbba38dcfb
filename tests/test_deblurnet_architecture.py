"""DeblurNet (Noroozi et al., Table 1 and eq. 1) against its layer list, layer by layer.

Independent references: parameter counts and state-dict keys from the layer list written out
here by hand; a functional forward (``torch.nn.functional`` convolutions, batch norm by its
formula, the transposed convolutions as zero insertion + a plain convolution with the flipped
kernel, reflection padding by indexing) on seeded random weights (no weights ship).

Layer list (``c`` channels, ``n = n1_channels``, ``w`` width, ``d`` depth, ``k`` kernel;
"CBR k a→b:s" = bias-free convolution, BatchNorm, ReLU; all "same" padded)::

    N1   CBR 11 c→n0:2, CBR 7 n0→n1, CBR 7 n1→n2:2, CBR 7 n2→n3, CBR 3 n3→n4, CBR 3 n4→n5,
         conv 3 n5→c (bias)                          L1 = D4(g) + N1(g)
    N2   d × CBR k (c→w, then w→w), transposed conv k w→c stride 2 (bias, H → 2H)
                                                     L2 = D2(g) + N2(L1)
    N3   as N2                                       L3 = g + N3(L2)
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.multiscale import image_pyramid
from pnpdeblur.nets.deblurnet import DeblurNet
from _nets import randomise_state as _randomise, transposed_conv2x as _transposed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
N1_K = (11, 7, 7, 7, 3, 3, 3)
N1_S = (2, 1, 2, 1, 1, 1, 1)


def layer_list(in_channels, n1_channels, width, depth, kernel_size):
    c, k = in_channels, kernel_size
    total, keys = 0, []
    widths = [c] + list(n1_channels)
    for i in range(6):
        total += N1_K[i] ** 2 * widths[i] * widths[i + 1] + 2 * widths[i + 1]
        keys += [f"n1.{i}.0.weight"] + [f"n1.{i}.1.{t}" for t in BN]
    total += 9 * widths[6] * c + c
    keys += ["n1.6.weight", "n1.6.bias"]
    for net in ("n2", "n3"):
        for i in range(depth):
            a = c if i == 0 else width
            total += k * k * a * width + 2 * width
            keys += [f"{net}.{i}.0.weight"] + [f"{net}.{i}.1.{t}" for t in BN]
        total += k * k * width * c + c
        keys += [f"{net}.{depth}.weight", f"{net}.{depth}.bias"]
    return total, keys


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", [dict(), dict(n1_channels=(16, 32, 32, 32, 32, 32), width=32),
                                 dict(in_channels=1, n1_channels=[1, 2, 3, 4, 5, 6], width=2, depth=1, kernel_size=3),
                                 dict(n1_channels=(2,) * 6, width=3, depth=2, kernel_size=1)])
def test_parameter_count_and_keys_follow_the_layer_list(cfg):
    with torch.device("meta"):
        m = DeblurNet(**cfg)
    full = dict(in_channels=3, n1_channels=(96, 256, 384, 384, 256, 256), width=256, depth=4, kernel_size=5)
    full.update(cfg)
    assert m.config == dict(full, n1_channels=list(full["n1_channels"]))
    assert type(m.config["n1_channels"]) is list
    total, keys = layer_list(**full)
    assert n_params(m) == total and m.num_parameters() == total
    assert list(m.state_dict()) == keys


def test_paper_and_small_sizes():
    with torch.device("meta"):
        assert 24.6e6 < DeblurNet().num_parameters() < 24.7e6
        assert 0.30e6 < DeblurNet(n1_channels=(16, 32, 32, 32, 32, 32), width=32).num_parameters() < 0.32e6


def test_layer_hyperparameters_follow_table_1():
    m = DeblurNet(n1_channels=(1, 2, 3, 4, 5, 6), width=2, depth=2, kernel_size=3)
    for i in range(6):
        conv, bn, act = m.n1[i]
        assert (conv.kernel_size[0], conv.stride[0], conv.padding[0]) == (N1_K[i], N1_S[i], N1_K[i] // 2)
        assert conv.bias is None and type(bn) is torch.nn.BatchNorm2d and type(act) is torch.nn.ReLU
    assert m.n1[6].kernel_size == (3, 3) and m.n1[6].padding == (1, 1) and m.n1[6].stride == (1, 1)
    for net in (m.n2, m.n3):
        assert [layer[0].padding for layer in net[:2]] == [(1, 1)] * 2
        up = net[2]
        assert type(up) is torch.nn.ConvTranspose2d
        assert (up.stride, up.padding, up.output_padding) == ((2, 2), (1, 1), (1, 1))


def test_stride_and_num_parameters_counts_only_trainable_ones():
    m = DeblurNet(n1_channels=(1,) * 6, width=1, depth=1, kernel_size=1)
    assert m.stride == 4
    m.n1[6].bias.requires_grad_(False)
    assert m.num_parameters() == n_params(m) - 3


# --------------------------------------------------------------------------------------------
# a functional forward, written from the layer list


def _bn(x, sd, p):
    s = (1, -1, 1, 1)
    return ((x - sd[f"{p}.running_mean"].view(s)) / torch.sqrt(sd[f"{p}.running_var"].view(s) + 1e-5)
            * sd[f"{p}.weight"].view(s) + sd[f"{p}.bias"].view(s))


def _cbr(x, sd, p, stride=1):
    w = sd[f"{p}.0.weight"]
    return _bn(F.conv2d(x, w, None, stride, w.shape[-1] // 2), sd, f"{p}.1").clamp_min(0)


def _up(x, sd, net, depth):
    for i in range(depth):
        x = _cbr(x, sd, f"{net}.{i}")
    return _transposed(x, sd[f"{net}.{depth}.weight"], sd[f"{net}.{depth}.bias"])


def functional_deblurnet(x, sd, depth):
    g4, g2, g1 = image_pyramid(x, 3)
    h = g1
    for i in range(6):
        h = _cbr(h, sd, f"n1.{i}", N1_S[i])
    l1 = g4 + F.conv2d(h, sd["n1.6.weight"], sd["n1.6.bias"], padding=1)
    l2 = g2 + _up(l1, sd, "n2", depth)
    l3 = g1 + _up(l2, sd, "n3", depth)
    return [l1, l2, l3]


@pytest.mark.parametrize("cfg, size", [(dict(n1_channels=(2, 3, 2, 3, 2, 3), width=2, depth=2, kernel_size=3), (12, 16)),
                                       (dict(in_channels=1, n1_channels=(1, 2, 1, 2, 1, 2), width=3, depth=1,
                                             kernel_size=5), (16, 8))])
def test_random_weights_match_the_functional_forward(cfg, size):
    torch.manual_seed(1)
    m = _randomise(DeblurNet(**cfg).double().eval(), 2)
    x = torch.rand(2, cfg.get("in_channels", 3), *size, dtype=torch.float64)
    with torch.no_grad():
        got = m.forward_multiscale(x)
    want = functional_deblurnet(x, m.state_dict(), cfg["depth"])
    h, w = size
    assert [tuple(g.shape[-2:]) for g in got] == [(h // 4, w // 4), (h // 2, w // 2), (h, w)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_forward_pads_by_reflection_to_four_and_crops():
    torch.manual_seed(3)
    m = _randomise(DeblurNet(n1_channels=(2,) * 6, width=2, depth=1, kernel_size=3), 4).double().eval()
    x = torch.rand(1, 3, 13, 10, dtype=torch.float64)
    rows, cols = list(range(13)) + [11, 10, 9], list(range(10)) + [8, 7]
    with torch.no_grad():
        got = m(x)
    want = functional_deblurnet(x[..., rows, :][..., cols], m.state_dict(), 1)[-1][..., :13, :10]
    assert got.shape == (1, 3, 13, 10)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_zero_output_layers_give_the_pyramid_plus_the_biases():
    """Eq. 1's residual levels: zero output weights leave D4(g) + b1, D2(g) + b2, g + b3."""
    m = DeblurNet(n1_channels=(1,) * 6, width=1, depth=1, kernel_size=3).double().eval()
    with torch.no_grad():
        for layer, b in ((m.n1[6], 0.1), (m.n2[1], -0.2), (m.n3[1], 0.3)):
            layer.weight.zero_()
            layer.bias.fill_(b)
    x = torch.rand(1, 3, 8, 12, dtype=torch.float64)
    for out, level, b in zip(m.forward_multiscale(x), image_pyramid(x, 3), (0.1, -0.2, 0.3)):
        torch.testing.assert_close(out, level + b)


# --------------------------------------------------------------------------------------------
# validation messages, from their start


@pytest.mark.parametrize("name", ["in_channels", "width", "depth", "kernel_size"])
@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_integer_arguments_are_checked(name, bad):
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got {re.escape(repr(bad))}$"):
        DeblurNet(**{name: bad})


@pytest.mark.parametrize("bad", ["abcdef", b"abcdef", (1, 2, 3, 4, 5), [1] * 7, 6, None, {1, 2, 3, 4, 5, 6}])
def test_n1_channels_must_be_six_ints(bad):
    with pytest.raises(ValueError, match=rf"^n1_channels must be a sequence of 6 ints, got {re.escape(repr(bad))}$"):
        DeblurNet(n1_channels=bad)


def test_n1_channel_entries_are_checked_by_index():
    with pytest.raises(ValueError, match=r"^n1_channels\[3\] must be an int >= 1, got 0$"):
        DeblurNet(n1_channels=(1, 1, 1, 0, 1, 1))
    with pytest.raises(ValueError, match=r"^n1_channels\[0\] must be an int >= 1, got 1.5$"):
        DeblurNet(n1_channels=(1.5, 1, 1, 1, 1, 1))


def test_kernel_size_must_be_odd_and_inputs_are_checked():
    with pytest.raises(ValueError, match=r"^kernel_size must be odd, got 4$"):
        DeblurNet(kernel_size=4)
    m = DeblurNet(n1_channels=(1,) * 6, width=1, depth=1, kernel_size=1)
    with pytest.raises(ValueError, match=r"^x's H and W must be multiples of DeblurNet\.stride = 4 in forward_multiscale, "
                                         r"got \(8, 10\)"):
        m.forward_multiscale(torch.rand(1, 3, 8, 10))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 3, H, W\), got \(1, 1, 8, 8\)$"):
        m.forward_multiscale(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 3, H, W\), got \(1, 1, 7, 7\)$"):
        m(torch.rand(1, 1, 7, 7))


def test_checkpoint_round_trip_and_no_shipped_weights(tmp_path):
    m = _randomise(DeblurNet(n1_channels=(1, 2, 1, 2, 1, 2), width=2, depth=1, kernel_size=3), 5).eval()
    back = DeblurNet.from_checkpoint(m.save(tmp_path / "d.safetensors"))
    assert back.config == m.config
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x))
    with pytest.raises(FileNotFoundError, match=r"^no weights ship for DeblurNet"):
        DeblurNet.pretrained()
    from pnpdeblur.nets.deepdeblur import DeepDeblur

    other = DeepDeblur(features=1, blocks=0).save(tmp_path / "o.safetensors")
    with pytest.raises(CheckpointError, match="DeepDeblur"):
        DeblurNet.from_checkpoint(other)
