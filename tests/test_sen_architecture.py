"""SEN's architecture against Wu et al.'s appendix A and the module docstring, layer by layer.

Independent references: parameter counts and state-dict keys from a layer list written out
here by hand; a functional forward (``torch.nn.functional`` convolutions, batch norm and ReLU,
max-pooling and nearest up-sampling by reshaping, the bilinear head up-sampling from
``tests/_operators.bilinear_resize``) run on the shipped weights and on seeded random ones.

The layer list (one stack, width ``w``, ``L`` levels; every "CBR k c" is a bias-free k×k
convolution, BatchNorm (weight, bias) and ReLU; "Res2 a→b" is CBR 3 b/2 → CBR 3 b/2 → CBR 3 b
plus the input, projected by a CBR 3 b when a ≠ b):

    front      CBR 7 w (dilation d0), CBR 5 2w stride 2 (d1), CBR 5 4w stride 2 (d2)
    encoder    L × [maxpool 2, Res2]: 4w→8w, then 8w→8w
    bottom     Res2 8w→8w
    decoder    L × [Res2, nearest up 2, + encoder input of that scale]: 8w→8w ..., last 8w→4w
    tail       Res2 4w→2w, Res2 2w→w
    head       1×1 conv w→2 (with bias), bilinear up-sampling to the input size

Deviations from the paper's listing, which the shipped weights are trained with (the head is
the module docstring's; the rest is read off the code): the paper's first encoder block keeps
256 (4w) channels, its decoder is four up-sampled Res2 blocks (512, 512, 256, 128) with no extra
bottom block, and its last block is "Res2 2"; here the hourglass is symmetric (Newell et al.),
with a bottom block, and the head is a linear 1×1 convolution (a flow is signed; a ReLU'd
output could not be).
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.data.flows import canonicalize_flow
from pnpdeblur.nets.sen import SEN, SEN_PRETRAINED_PATH, Res2
from tests._operators import bilinear_resize

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# --------------------------------------------------------------------------------------------
# the layer list, by hand


def _cbr(prefix: str, k: int, cin: int, cout: int):
    """(parameter count, buffer count, state keys) of one CBR."""
    keys = [f"{prefix}.0.weight", f"{prefix}.1.weight", f"{prefix}.1.bias", f"{prefix}.1.running_mean",
            f"{prefix}.1.running_var", f"{prefix}.1.num_batches_tracked"]
    return k * k * cin * cout + 2 * cout, keys


def _res2(prefix: str, cin: int, cout: int):
    half = max(cout // 2, 1)
    parts = [_cbr(f"{prefix}.body.0", 3, cin, half), _cbr(f"{prefix}.body.1", 3, half, half),
             _cbr(f"{prefix}.body.2", 3, half, cout)]
    if cin != cout:
        parts.append(_cbr(f"{prefix}.skip", 3, cin, cout))
    return sum(p for p, _ in parts), [k for _, ks in parts for k in ks]


def stack_layers(cin: int, w: int, levels: int):
    """The stack's blocks in order: (kind, key prefix, in, out[, k])."""
    layers = [("cbr", "front.0", cin, w, 7), ("cbr", "front.1", w, 2 * w, 5), ("cbr", "front.2", 2 * w, 4 * w, 5)]
    enc = [4 * w] + [8 * w] * levels  # widths of the scales 1/4, 1/8, ...
    layers += [("res2", f"hourglass.down.{i}", enc[i], enc[i + 1]) for i in range(levels)]
    layers.append(("res2", "hourglass.bottom", 8 * w, 8 * w))
    # decoder block j works at scale levels - j and returns the width of the scale above
    layers += [("res2", f"hourglass.up.{j}", enc[levels - j], enc[levels - j - 1]) for j in range(levels)]
    layers += [("res2", "tail.0", 4 * w, 2 * w), ("res2", "tail.1", 2 * w, w)]
    return layers


def expected_params_and_keys(in_channels: int, width: int, stacks: int, levels: int):
    total, keys = 0, []
    for s in range(stacks):
        cin = in_channels + (2 if s else 0)  # later stacks also see the previous flow
        for kind, prefix, a, b, *k in stack_layers(cin, width, levels):
            p, ks = _cbr(f"stacks.{s}.{prefix}", k[0], a, b) if kind == "cbr" else _res2(f"stacks.{s}.{prefix}", a, b)
            total += p
            keys += ks
        total += width * 2 + 2  # 1×1 head with bias
        keys += [f"stacks.{s}.head.weight", f"stacks.{s}.head.bias"]
    return total, keys


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", [dict(), dict(width=16), dict(width=2, levels=1, stacks=1),
                                 dict(width=1, levels=2, stacks=3, in_channels=1),
                                 dict(width=3, levels=3, stacks=2, in_channels=2)])
def test_parameter_count_and_keys_follow_the_layer_list(cfg):
    with torch.device("meta"):  # the paper's network has ~10⁸ parameters: no memory, no init
        m = SEN(**cfg)
    full = dict(in_channels=3, width=64, stacks=2, levels=4)
    full.update(cfg)
    total, keys = expected_params_and_keys(full["in_channels"], full["width"], full["stacks"], full["levels"])
    assert n_params(m) == total
    assert list(m.state_dict().keys()) == keys
    assert not any(p.shape == () for p in m.parameters())


def test_paper_network_size_by_hand():
    """Width 64, 4 levels, 2 stacks, RGB: the count written out block by block."""
    def cbr(k, a, b):
        return k * k * a * b + 2 * b

    def res2(a, b):
        return cbr(3, a, b // 2) + cbr(3, b // 2, b // 2) + cbr(3, b // 2, b) + (cbr(3, a, b) if a != b else 0)

    def stack(cin):
        return (cbr(7, cin, 64) + cbr(5, 64, 128) + cbr(5, 128, 256)
                + res2(256, 512) + 3 * res2(512, 512)        # encoder
                + res2(512, 512)                              # bottom
                + 3 * res2(512, 512) + res2(512, 256)        # decoder
                + res2(256, 128) + res2(128, 64)              # tail
                + 64 * 2 + 2)                                 # head

    with torch.device("meta"):
        m = SEN()
    assert n_params(m) == stack(3) + stack(5)


def test_config_is_the_constructor_arguments_as_json():
    m = SEN(in_channels=2, width=3, stacks=1, levels=2, dilations=(2, 1, 4), flow_scale=5)
    assert m.config == dict(in_channels=2, width=3, stacks=1, levels=2, dilations=[2, 1, 4], flow_scale=5.0)
    assert type(m.config["flow_scale"]) is float and type(m.config["dilations"]) is list
    with torch.device("meta"):
        d = SEN()
    assert d.config == dict(in_channels=3, width=64, stacks=2, levels=4, dilations=[1, 2, 3], flow_scale=23.0)
    assert len(d.stacks) == 2


@pytest.mark.parametrize("levels, stride", [(1, 8), (2, 16), (3, 32), (4, 64)])
def test_stride_is_four_times_two_to_the_levels(levels, stride):
    with torch.device("meta"):
        m = SEN(width=1, stacks=1, levels=levels)
    assert m.stride == stride


def test_layer_hyperparameters_follow_appendix_a():
    m = SEN(width=2, levels=1, stacks=2, dilations=(2, 3, 4))
    for s, cin in ((0, 3), (1, 5)):
        front = m.stacks[s].front
        for j, (k, stride, d, a, b) in enumerate([(7, 1, 2, cin, 2), (5, 2, 3, 2, 4), (5, 2, 4, 4, 8)]):
            conv, bn, act = front[j]
            assert (conv.kernel_size, conv.stride, conv.dilation) == ((k, k), (stride, stride), (d, d))
            assert conv.padding == (d * (k - 1) // 2,) * 2 and conv.bias is None
            assert (conv.in_channels, conv.out_channels, bn.num_features) == (a, b, b)
            assert isinstance(act, torch.nn.ReLU)
        head = m.stacks[s].head
        assert head.kernel_size == (1, 1) and head.bias is not None and head.out_channels == 2
    block = Res2(3, 3)
    assert isinstance(block.skip, torch.nn.Identity)
    assert [c[0].kernel_size for c in block.body] == [(3, 3)] * 3
    assert [c[0].padding for c in block.body] == [(1, 1)] * 3


# --------------------------------------------------------------------------------------------
# a functional forward, written from the layer list


def _f_cbr(x, sd, p, stride=1, dilation=1):
    w = sd[f"{p}.0.weight"]
    pad = dilation * (w.shape[-1] - 1) // 2
    x = F.conv2d(x, w, None, stride, pad, dilation)
    x = F.batch_norm(x, sd[f"{p}.1.running_mean"], sd[f"{p}.1.running_var"], sd[f"{p}.1.weight"],
                     sd[f"{p}.1.bias"], training=False, eps=1e-5)
    return x.clamp_min(0)


def _f_res2(x, sd, p, project):
    y = _f_cbr(_f_cbr(_f_cbr(x, sd, f"{p}.body.0"), sd, f"{p}.body.1"), sd, f"{p}.body.2")
    return y + (_f_cbr(x, sd, f"{p}.skip") if project else x)


def _maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).amax(dim=(3, 5))


def _nearest2(x):
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


def _f_stack(x, sd, s, w, levels, dil):
    p = f"stacks.{s}"
    h = _f_cbr(x, sd, f"{p}.front.0", 1, dil[0])
    h = _f_cbr(h, sd, f"{p}.front.1", 2, dil[1])
    h = _f_cbr(h, sd, f"{p}.front.2", 2, dil[2])
    enc = [4 * w] + [8 * w] * levels
    skips = []
    for i in range(levels):
        skips.append(h)
        h = _f_res2(_maxpool2(h), sd, f"{p}.hourglass.down.{i}", enc[i] != enc[i + 1])
    h = _f_res2(h, sd, f"{p}.hourglass.bottom", False)
    for j in range(levels):
        a, b = enc[levels - j], enc[levels - j - 1]
        h = _nearest2(_f_res2(h, sd, f"{p}.hourglass.up.{j}", a != b)) + skips[levels - 1 - j]
    h = _f_res2(h, sd, f"{p}.tail.0", True)
    h = _f_res2(h, sd, f"{p}.tail.1", True)
    out = F.conv2d(h, sd[f"{p}.head.weight"], sd[f"{p}.head.bias"])
    up = bilinear_resize(out.numpy(), x.shape[-2], x.shape[-1])
    return torch.from_numpy(up).to(x.dtype)


def functional_sen(x, sd, cfg):
    outs, inp = [], x
    for s in range(cfg["stacks"]):
        f = _f_stack(inp, sd, s, cfg["width"], cfg["levels"], cfg["dilations"])
        outs.append(f * cfg["flow_scale"])
        inp = torch.cat((x, f), dim=1)  # the next stack sees the flow / flow_scale
    return outs


def _randomise(m: SEN, seed: int) -> SEN:
    """Random BN affine parameters and running statistics (the defaults make BN the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g, dtype=t.dtype))
                elif name.endswith(("running_mean", "1.bias", "head.bias")):
                    t.copy_(0.3 * torch.randn(t.shape, generator=g, dtype=t.dtype))
                elif name.endswith("1.weight"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g, dtype=t.dtype))
    return m


def test_shipped_weights_match_the_functional_forward():
    m = SEN.pretrained().double()
    assert m.config == dict(in_channels=3, width=16, stacks=2, levels=4, dilations=[1, 2, 3], flow_scale=23.0)
    assert not m.training
    total, keys = expected_params_and_keys(3, 16, 2, 4)
    assert n_params(m) == total and list(m.state_dict()) == keys
    sd = {k: v.double() if v.is_floating_point() else v for k, v in m.state_dict().items()}
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
    want = functional_sen(x, sd, m.config)
    assert len(got) == 2
    for g, w in zip(got, want):
        assert g.shape == (1, 2, 64, 64) and g.dtype == torch.float64
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)
    assert float(want[-1].abs().max()) > 0.5  # a flow in pixels, not a near-zero output


@pytest.mark.parametrize("cfg", [dict(width=2, levels=1, stacks=2, in_channels=3, dilations=(2, 3, 1), flow_scale=3.0),
                                 dict(width=1, levels=2, stacks=2, in_channels=1, dilations=(1, 1, 2), flow_scale=0.5)])
def test_random_weights_match_the_functional_forward(cfg):
    torch.manual_seed(1)
    m = _randomise(SEN(**cfg).double().eval(), 2)
    x = torch.rand(2, cfg["in_channels"], 8 * 2 ** cfg["levels"], 4 * 2 ** cfg["levels"], dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
    want = functional_sen(x, m.state_dict(), m.config)
    assert len(got) == cfg["stacks"]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)


def test_training_mode_batch_norm_uses_the_batch_statistics():
    """In train mode BN normalises with the batch's statistics (the training recipes rely on it)."""
    torch.manual_seed(3)
    m = SEN(width=2, levels=1, stacks=1).double().train()
    block = m.stacks[0].front[0]
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    y = block(x)
    z = F.conv2d(x, block[0].weight, None, 1, 3)
    mu, var = z.mean(dim=(0, 2, 3), keepdim=True), z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, ((z - mu) / torch.sqrt(var + 1e-5)).clamp_min(0), rtol=1e-9, atol=1e-9)


def test_zero_head_gives_the_head_bias_as_flow_and_later_stacks_see_it():
    """Zero 1×1 head weights: stack s returns its bias (times flow_scale) everywhere, the next
    stack's input carries the previous flow divided by flow_scale (channels 3 and 4)."""
    torch.manual_seed(4)
    m = SEN(width=2, levels=1, stacks=2, flow_scale=7.0).double().eval()
    with torch.no_grad():
        for s in m.stacks:
            s.head.weight.zero_()
        m.stacks[0].head.bias.copy_(torch.tensor([0.5, -0.25]))
        m.stacks[1].head.bias.copy_(torch.tensor([2.0, 3.0]))
        outs = m(torch.rand(1, 3, 16, 24, dtype=torch.float64))
    torch.testing.assert_close(outs[0], torch.tensor([3.5, -1.75], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 16, 24))
    torch.testing.assert_close(outs[1], torch.tensor([14.0, 21.0], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 16, 24))
    # the second stack's first convolution gets the image and the unscaled first flow
    seen = {}
    m.stacks[1].front[0][0].register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    x = torch.rand(1, 3, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        m(x)
    torch.testing.assert_close(seen["x"][:, :3], x)
    torch.testing.assert_close(seen["x"][:, 3:], torch.tensor([0.5, -0.25], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, 16, 24))


def test_res2_zero_body_is_the_identity_or_the_projection():
    torch.manual_seed(5)
    same, proj = Res2(4, 4).double().eval(), Res2(4, 6).double().eval()
    for b in (same, proj):
        with torch.no_grad():
            b.body[2][1].weight.zero_()  # last BN scale and bias 0: the body returns ReLU(0) = 0
            b.body[2][1].bias.zero_()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(same(x), x)
        torch.testing.assert_close(proj(x), proj.skip(x))
    assert proj(x).shape == (2, 6, 5, 7)
    assert [c[0].out_channels for c in proj.body] == [3, 3, 6]
    assert [c[0].out_channels for c in Res2(3, 1).body] == [1, 1, 1]  # at least one channel


# --------------------------------------------------------------------------------------------
# sizes, estimate


def test_estimate_pads_by_reflection_crops_and_canonicalises():
    torch.manual_seed(6)
    m = _randomise(SEN(width=2, levels=1, stacks=2), 7).double().eval()
    x = torch.rand(2, 3, 13, 21, dtype=torch.float64)
    got = m.estimate(x)
    assert got.shape == (2, 2, 13, 21) and not got.requires_grad
    padded = F.pad(x, (0, 3, 0, 3), mode="reflect")  # 13, 21 → 16, 24 (stride 8)
    with torch.no_grad():
        want = canonicalize_flow(functional_sen(padded, m.state_dict(), m.config)[-1][..., :13, :21])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    u, v = got[:, 0], got[:, 1]
    assert bool(((u > 0) | ((u == 0) & (v >= 0))).all())
    # the raw flow had both signs: canonicalisation did something
    raw = functional_sen(padded, m.state_dict(), m.config)[-1][..., :13, :21]
    assert bool((raw[:, 0] < 0).any())
    # a size already a multiple of the stride is not padded
    y = torch.rand(1, 3, 16, 8, dtype=torch.float64)
    torch.testing.assert_close(m.estimate(y), canonicalize_flow(functional_sen(y, m.state_dict(), m.config)[-1]),
                               rtol=1e-9, atol=1e-9)


def test_estimate_refuses_a_grey_image_for_an_rgb_net():
    """Grey replication is estimate_flow's job; the net's estimate checks the channels."""
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 3, H, W\), got \(1, 1, 8, 8\)$"):
        SEN(width=1, levels=1, stacks=1).estimate(torch.rand(1, 1, 8, 8))


def test_estimate_runs_without_autograd_and_keeps_the_mode():
    m = SEN(width=1, levels=1, stacks=1)
    x = torch.rand(1, 3, 9, 9, requires_grad=True)
    f = m.estimate(x)
    assert f.grad_fn is None and not f.requires_grad
    assert m.training  # estimate does not switch modes


def test_output_pixels_see_a_wide_receptive_field():
    """The dilated front and the hourglass give each output pixel context far beyond 7×7."""
    torch.manual_seed(8)
    m = _randomise(SEN(width=2, levels=2, stacks=1), 9).double().eval()
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    m(x)[-1][0, 0, 32, 32].backward()
    rows = torch.nonzero(x.grad.abs().sum(dim=(0, 1)).sum(dim=1)).flatten()
    assert int(rows.max() - rows.min()) >= 40


# --------------------------------------------------------------------------------------------
# validation messages, from their start


@pytest.mark.parametrize("name", ["in_channels", "width", "stacks", "levels"])
@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "2", None])
def test_integer_arguments_are_checked(name, bad):
    kw = dict(width=1, levels=1, stacks=1)
    kw[name] = bad
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got {re.escape(repr(bad))}$"):
        SEN(**kw)


def test_smallest_valid_sizes_build():
    m = SEN(in_channels=1, width=1, stacks=1, levels=1).eval()
    assert m.config["in_channels"] == 1 and len(m.stacks) == 1
    assert m(torch.rand(1, 1, 8, 8))[0].shape == (1, 2, 8, 8)


@pytest.mark.parametrize("bad", [(1, 2), (1, 2, 3, 4), (0, 1, 1), (1, 1, -1)])
def test_dilations_are_checked(bad):
    with pytest.raises(ValueError, match=rf"^dilations must be three ints >= 1, got {re.escape(repr(tuple(bad)))}$"):
        SEN(width=1, levels=1, stacks=1, dilations=bad)
    assert SEN(width=1, levels=1, stacks=1, dilations=[1, 1, 1]).config["dilations"] == [1, 1, 1]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_flow_scale_is_checked(bad):
    with pytest.raises(ValueError, match=rf"^flow_scale must be a finite positive number, got {re.escape(repr(bad))}$"):
        SEN(width=1, levels=1, stacks=1, flow_scale=bad)


def test_forward_input_is_checked():
    m = SEN(width=1, levels=1, stacks=1, in_channels=2)
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 2, H, W\), got \(1, 3, 8, 8\)$"):
        m(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 2, H, W\), got \(2, 8, 8\)$"):
        m(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"^x's H and W must be multiples of 8, got \(12, 8\); use SEN\.estimate"):
        m(torch.rand(1, 2, 12, 8))
    with pytest.raises(ValueError, match=r"^x's H and W must be multiples of 8, got \(8, 12\); use SEN\.estimate"):
        m(torch.rand(1, 2, 8, 12))


def test_checkpoint_round_trip_and_another_architecture_refused(tmp_path):
    from pnpdeblur.nets.dncnn import DnCNN

    m = _randomise(SEN(width=1, levels=1, stacks=2, in_channels=1, flow_scale=4.0), 10).eval()
    back = SEN.from_checkpoint(m.save(tmp_path / "s.safetensors"))
    assert back.config == m.config and not back.training
    x = torch.rand(1, 1, 8, 16)
    assert all(torch.equal(a, b) for a, b in zip(back(x), m(x)))
    with pytest.raises(CheckpointError, match="DnCNN"):
        SEN.from_checkpoint(DnCNN(features=2, depth=2).save(tmp_path / "d.safetensors"))
    assert SEN.pretrained_path() == SEN_PRETRAINED_PATH and SEN_PRETRAINED_PATH.name == "sen_small.safetensors"
    assert SEN.training_command == "python scripts/train_sen.py"
