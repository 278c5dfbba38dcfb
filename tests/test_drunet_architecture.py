"""DRUNet's architecture against Zhang et al. (DPIR, 2021) and the module docstring, layer by layer.

Layer list (features f0..f3, ``b`` residual blocks per level, ``c`` image channels; every
convolution bias-free unless ``bias=True``; "Res f" is ``x + conv3(relu(conv3(x)))`` at width f):

    head   conv3×3 (c+1 → f0)
    down1  b × Res f0, conv2×2 stride 2 (f0 → f1)      down2, down3 likewise (f1 → f2, f2 → f3)
    body   b × Res f3
    up3    convT2×2 stride 2 (f3 → f2), b × Res f2     up2 (f2 → f1), up1 (f1 → f0) likewise
    tail   conv3×3 (f0 → c)

with additive skips ``up3(body + x4)``, ``up2(· + x3)``, ``up1(· + x2)``, ``tail(· + x1)``; the
input is ``[x, σ-map]`` reflection-padded at the bottom/right to a multiple of 8, the output
cropped back (and ``x`` added for ``residual=True``). The references here: parameter counts and
state keys from that list, and a functional forward (``torch.nn.functional``) on the shipped
weights and on random ones, with the padding written out by hand.
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.nets.drunet import (DRUNET_PRETRAINED_PATH, PAPER_CONFIG, SMALL_CONFIG, DRUNet,
                                   noise_level_map)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def expected_params_and_keys(channels, features, blocks, bias):
    f0, f1, f2, f3 = features
    conv = []  # (key prefix, cin, cout, k)

    def res(prefix, c):
        for i in range(blocks):
            conv.extend([(f"{prefix}.{i}.conv1", c, c, 3), (f"{prefix}.{i}.conv2", c, c, 3)])

    conv.append(("head", channels + 1, f0, 3))
    for lvl, (a, b) in enumerate([(f0, f1), (f1, f2), (f2, f3)], start=1):
        res(f"down{lvl}.0", a)
        conv.append((f"down{lvl}.1", a, b, 2))
    res("body", f3)
    for lvl, (a, b) in zip((3, 2, 1), [(f3, f2), (f2, f1), (f1, f0)]):
        conv.append((f"up{lvl}.0", a, b, 2))
        res(f"up{lvl}.1", b)
    conv.append(("tail", f0, channels, 3))
    total = sum(k * k * a * b + (b if bias else 0) for _, a, b, k in conv)
    keys = [f"{p}.{t}" for p, *_ in conv for t in (("weight", "bias") if bias else ("weight",))]
    return total, keys


def _order(keys):
    """The module's registration order: head, down1..3, body, up3..1, tail."""
    rank = {"head": 0, "down1": 1, "down2": 2, "down3": 3, "body": 4, "up3": 5, "up2": 6, "up1": 7, "tail": 8}
    return sorted(keys, key=lambda k: rank[k.split(".")[0]])


@pytest.mark.parametrize("cfg", [PAPER_CONFIG, SMALL_CONFIG, dict(channels=1, features=(2, 3, 4, 5), blocks=2),
                                 dict(channels=2, features=(1, 1, 2, 3), blocks=1, bias=True)])
def test_parameter_count_and_keys_follow_the_layer_list(cfg):
    full = dict(PAPER_CONFIG)
    full.update(cfg)
    with torch.device("meta"):
        m = DRUNet(**cfg)
    total, keys = expected_params_and_keys(full["channels"], full["features"], full["blocks"], full["bias"])
    assert sum(p.numel() for p in m.parameters()) == total
    assert list(m.state_dict()) == _order(keys)
    assert m.config == dict(full, features=list(full["features"]))


def test_documented_sizes():
    """The module docstring's counts: 32,640,960 (paper, colour) and 575,472 (small)."""
    assert expected_params_and_keys(3, (64, 128, 256, 512), 4, False)[0] == 32_640_960
    assert expected_params_and_keys(3, (16, 32, 64, 128), 1, False)[0] == 575_472
    assert PAPER_CONFIG == dict(channels=3, features=(64, 128, 256, 512), blocks=4, bias=False, residual=False)
    assert SMALL_CONFIG == dict(channels=3, features=(16, 32, 64, 128), blocks=1, bias=False, residual=True)
    s = DRUNet.small()
    assert s.config == dict(SMALL_CONFIG, features=[16, 32, 64, 128])


def test_layer_hyperparameters():
    m = DRUNet(channels=2, features=(2, 3, 4, 5), blocks=1, bias=True)
    assert (m.head.kernel_size, m.head.padding, m.tail.kernel_size, m.tail.padding) == ((3, 3), (1, 1), (3, 3), (1, 1))
    for d in (m.down1[1], m.down2[1], m.down3[1]):
        assert isinstance(d, torch.nn.Conv2d) and d.kernel_size == (2, 2) and d.stride == (2, 2) and d.padding == (0, 0)
    for u in (m.up3[0], m.up2[0], m.up1[0]):
        assert isinstance(u, torch.nn.ConvTranspose2d) and u.kernel_size == (2, 2) and u.stride == (2, 2)
    blk = m.body[0]
    assert blk.conv1.kernel_size == blk.conv2.kernel_size == (3, 3) and blk.conv1.padding == (1, 1)
    assert blk.conv2.padding == (1, 1) and blk.conv1.bias is not None and blk.conv2.bias is not None
    assert DRUNet(features=(2, 3, 4, 5), blocks=1).body[0].conv1.bias is None


# ------------------------------------------------------------------------- functional forward


def _res(x, sd, prefix, blocks):
    for i in range(blocks):
        p = f"{prefix}.{i}"
        x = x + F.conv2d(F.conv2d(x, sd[f"{p}.conv1.weight"], sd.get(f"{p}.conv1.bias"), padding=1).clamp_min(0),
                         sd[f"{p}.conv2.weight"], sd.get(f"{p}.conv2.bias"), padding=1)
    return x


def _reflect_pad_bottom_right(t, ph, pw):
    """Reflection (edge not repeated) at the bottom and right, by index arithmetic."""
    h, w = t.shape[-2:]
    rows = list(range(h)) + [h - 2 - i for i in range(ph)]
    cols = list(range(w)) + [w - 2 - j for j in range(pw)]
    return t[..., rows, :][..., cols]


def functional_drunet(x, sigma_map, sd, cfg):
    b = cfg["blocks"]
    h, w = x.shape[-2:]
    inp = _reflect_pad_bottom_right(torch.cat((x, sigma_map), dim=1), -h % 8, -w % 8)

    def down(t, lvl):
        return F.conv2d(_res(t, sd, f"down{lvl}.0", b), sd[f"down{lvl}.1.weight"], sd.get(f"down{lvl}.1.bias"),
                        stride=2)

    def up(t, lvl):
        t = F.conv_transpose2d(t, sd[f"up{lvl}.0.weight"], sd.get(f"up{lvl}.0.bias"), stride=2)
        return _res(t, sd, f"up{lvl}.1", b)

    x1 = F.conv2d(inp, sd["head.weight"], sd.get("head.bias"), padding=1)
    x2 = down(x1, 1)
    x3 = down(x2, 2)
    x4 = down(x3, 3)
    y = _res(x4, sd, "body", b)
    y = up(y + x4, 3)
    y = up(y + x3, 2)
    y = up(y + x2, 1)
    y = F.conv2d(y + x1, sd["tail.weight"], sd.get("tail.bias"), padding=1)[..., :h, :w]
    return x + y if cfg["residual"] else y


def test_shipped_weights_match_the_functional_forward():
    m = DRUNet.pretrained().double()
    assert not m.training and DRUNET_PRETRAINED_PATH.name == "drunet_small.safetensors"
    total, keys = expected_params_and_keys(3, (16, 32, 64, 128), 1, False)
    assert list(m.state_dict()) == _order(keys) and sum(p.numel() for p in m.parameters()) == total
    torch.manual_seed(0)
    x = torch.rand(2, 3, 21, 30, dtype=torch.float64)
    sig = torch.tensor([0.05, 0.15], dtype=torch.float64)
    with torch.no_grad():
        got = m(x, sig)
    want = functional_drunet(x, sig.view(2, 1, 1, 1).expand(2, 1, 21, 30), m.state_dict(), m.config)
    assert got.shape == x.shape and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert float((got - x).abs().max()) > 1e-2  # the trained correction is not zero


@pytest.mark.parametrize("cfg, hw", [(dict(channels=1, features=(2, 3, 4, 5), blocks=2, bias=True, residual=False), (16, 24)),
                                     (dict(channels=2, features=(3, 2, 2, 3), blocks=1, bias=False, residual=True), (11, 19))])
def test_random_weights_match_the_functional_forward(cfg, hw):
    torch.manual_seed(1)
    m = DRUNet(**cfg).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.4)
    x = torch.rand(2, cfg["channels"], *hw, dtype=torch.float64)
    smap = torch.rand(2, 1, *hw, dtype=torch.float64) * 0.2  # a spatial map, per sample
    with torch.no_grad():
        got = m(x, smap)
    torch.testing.assert_close(got, functional_drunet(x, smap, m.state_dict(), m.config), rtol=1e-10, atol=1e-10)


def test_residual_flag_adds_the_input():
    torch.manual_seed(2)
    a = DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1, residual=False).double()
    b = DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1, residual=True).double()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 1, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(b(x, 0.1), x + a(x, 0.1))
        assert float(a(x, 0.1).abs().max()) > 0
    # the residual net starts at the identity (zero tail), the plain one does not
    fresh = DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1, residual=True)
    assert float(fresh.tail.weight.detach().abs().max()) == 0
    assert float(DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1).tail.weight.detach().abs().max()) > 0


def test_default_sigma_is_zero():
    torch.manual_seed(3)
    m = DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1).double()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x, 0.0))
        assert not torch.allclose(m(x), m(x, 0.5))


def test_any_size_keeps_the_shape_and_tiny_inputs_use_replication():
    """Below the pad size reflection is impossible: pad_to_multiple replicates instead."""
    torch.manual_seed(4)
    m = DRUNet(channels=1, features=(2, 2, 2, 2), blocks=1).double()
    x = torch.rand(1, 1, 3, 5, dtype=torch.float64)
    smap = torch.full((1, 1, 3, 5), 0.1, dtype=torch.float64)
    with torch.no_grad():
        got = m(x, 0.1)
    inp = F.pad(torch.cat((x, smap), 1), (0, 3, 0, 5), mode="replicate")
    sd = m.state_dict()
    # the functional net on the replicated input (the padding itself is pnpdeblur.nets._base's)
    h = functional_drunet(inp[:, :1], inp[:, 1:], sd, m.config)[..., :3, :5]
    torch.testing.assert_close(got, h, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------- noise_level_map


def test_noise_level_map_forms():
    x = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    for s in (0.25, 1, torch.tensor(0.25), torch.tensor([0.25]), torch.tensor([0.25, 0.25]),
              torch.full((1, 1, 4, 5), 0.25), torch.full((2, 1, 4, 5), 0.25)):
        m = noise_level_map(s, x)
        assert m.shape == (2, 1, 4, 5) and m.dtype == torch.float64
        assert torch.equal(m, torch.full((2, 1, 4, 5), float(s if not isinstance(s, torch.Tensor) else 0.25),
                                         dtype=torch.float64))
    per = noise_level_map(torch.tensor([0.1, 0.3]), x)
    assert torch.equal(per[:, 0, 2, 3], torch.tensor([0.1, 0.3], dtype=torch.float32).double())
    spatial = torch.rand(2, 1, 4, 5)
    assert torch.equal(noise_level_map(spatial, x), spatial.double())
    assert noise_level_map(0, x).abs().max() == 0  # an int zero: no noise
    import numpy as np

    assert torch.equal(noise_level_map(np.float32(0.5), x), torch.full((2, 1, 4, 5), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("bad, exc, msg", [
    (True, TypeError, "sigma must be a float, a (N,) tensor or a (N, 1, H, W) map, got bool"),
    ("0.1", TypeError, "sigma must be a float, a (N,) tensor or a (N, 1, H, W) map, got str"),
    (None, TypeError, "sigma must be a float, a (N,) tensor or a (N, 1, H, W) map, got NoneType"),
    (torch.tensor([True, False]), TypeError, "sigma must be a real tensor, got dtype torch.bool"),
    (torch.tensor([1j, 1j]), TypeError, "sigma must be a real tensor, got dtype torch.complex64"),
    (-0.1, ValueError, "sigma must be a finite non-negative noise std, got -0.1"),
    (float("nan"), ValueError, "sigma must be a finite non-negative noise std, got nan"),
    (float("inf"), ValueError, "sigma must be a finite non-negative noise std, got inf"),
    (torch.zeros(3), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (3,)"),
    (torch.zeros(2, 1), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (2, 1)"),
    (torch.zeros(2, 2, 4, 5), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (2, 2, 4, 5)"),
    (torch.zeros(3, 1, 4, 5), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (3, 1, 4, 5)"),
    (torch.zeros(2, 1, 4, 4), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (2, 1, 4, 4)"),
    (torch.zeros(2, 1, 3, 5), ValueError, "sigma must be a scalar, a (2,) tensor or a (2, 1, 4, 5) map, got shape (2, 1, 3, 5)"),
    (torch.tensor([0.1, -0.1]), ValueError, "sigma must be finite and non-negative everywhere (noise std), got NaN, Inf or < 0"),
    (torch.tensor([0.1, float("inf")]), ValueError, "sigma must be finite and non-negative everywhere"),
    (torch.tensor(float("nan")), ValueError, "sigma must be finite and non-negative everywhere"),
])
def test_noise_level_map_messages(bad, exc, msg):
    with pytest.raises(exc, match="^" + re.escape(msg)):
        noise_level_map(bad, torch.zeros(2, 3, 4, 5))


# ------------------------------------------------------------------------- config messages


@pytest.mark.parametrize("kw, msg", [
    (dict(channels=0), "channels must be a positive int, got 0"),
    (dict(channels=True), "channels must be a positive int, got True"),
    (dict(channels=2.0), "channels must be a positive int, got 2.0"),
    (dict(features=(1, 2, 3)), "features must be 4 positive ints, got (1, 2, 3)"),
    (dict(features=(1, 2, 3, 4, 5)), "features must be 4 positive ints, got (1, 2, 3, 4, 5)"),
    (dict(features=(1, 2, 0, 4)), "features must be 4 positive ints, got (1, 2, 0, 4)"),
    (dict(features=(1, True, 3, 4)), "features must be 4 positive ints, got (1, True, 3, 4)"),
    (dict(features=(1, 2, 3, 4.0)), "features must be 4 positive ints, got (1, 2, 3, 4.0)"),
    (dict(blocks=0), "blocks must be a positive int, got 0"),
    (dict(blocks=False), "blocks must be a positive int, got False"),
    (dict(blocks=1.0), "blocks must be a positive int, got 1.0"),
])
def test_config_messages(kw, msg):
    args = dict(features=(1, 1, 1, 1), blocks=1)
    args.update(kw)
    with pytest.raises(ValueError, match="^" + re.escape(msg) + "$"):
        DRUNet(**args)


@pytest.mark.parametrize("kw, msg", [  # flags are checked by check_flag, as every net's: TypeError
    (dict(bias=1), "bias must be True or False, got 1"),
    (dict(residual=None), "residual must be True or False, got None"),
])
def test_flag_messages(kw, msg):
    with pytest.raises(TypeError, match="^" + re.escape(msg) + "$"):
        DRUNet(features=(1, 1, 1, 1), blocks=1, **kw)


def test_smallest_config_builds_and_runs():
    m = DRUNet(channels=1, features=(1, 1, 1, 1), blocks=1)
    assert m.config == dict(channels=1, features=[1, 1, 1, 1], blocks=1, bias=False, residual=False)
    assert m(torch.rand(1, 1, 8, 8), 0.1).shape == (1, 1, 8, 8)


def test_forward_input_is_checked():
    m = DRUNet(channels=2, features=(1, 1, 1, 1), blocks=1)
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 2, H, W\), got \(1, 3, 8, 8\)$"):
        m(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"^sigma must be a finite non-negative noise std, got -1"):
        m(torch.rand(1, 2, 8, 8), -1)


def test_defaults_are_the_paper_configuration():
    with torch.device("meta"):
        m = DRUNet()
    assert m.config == dict(PAPER_CONFIG, features=list(PAPER_CONFIG["features"]))


def test_a_zero_noise_level_tensor_is_valid():
    x = torch.zeros(2, 3, 4, 5)
    assert torch.equal(noise_level_map(torch.zeros(2), x), torch.zeros(2, 1, 4, 5))
    assert torch.equal(noise_level_map(torch.tensor([0.0, 0.1]), x)[:, 0, 0, 0], torch.tensor([0.0, 0.1]))
    assert torch.equal(noise_level_map(torch.zeros(1, 1, 4, 5), x), torch.zeros(2, 1, 4, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_sigma_tensor_follows_x_to_the_gpu():
    x = torch.rand(2, 3, 4, 5, device="cuda")
    assert noise_level_map(torch.tensor([0.1, 0.2]), x).device == x.device


def test_checkpoint_round_trip_and_another_architecture_refused(tmp_path):
    from pnpdeblur.checkpoints import CheckpointError
    from pnpdeblur.nets.dncnn import DnCNN

    torch.manual_seed(5)
    m = DRUNet(channels=1, features=(2, 2, 3, 3), blocks=1, bias=True, residual=True)
    torch.nn.init.normal_(m.tail.weight, std=0.3)
    back = DRUNet.from_checkpoint(m.save(tmp_path / "d.safetensors"))
    assert back.config == m.config and not back.training
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        assert torch.equal(back(x, 0.1), m(x, 0.1))
    with pytest.raises(CheckpointError, match="DnCNN"):
        DRUNet.from_checkpoint(DnCNN(features=2, depth=2).save(tmp_path / "o.safetensors"))
    assert DRUNet.training_command.startswith("pnpdeblur train drunet --small") and DRUNet.channels_last_safe
