"""RP-GAN's three networks against Wu et al.'s appendix A and the module docstring, layer by layer.

Independent references: parameter counts and state-dict keys from the layer lists written out
here by hand; a functional forward (``torch.nn.functional`` convolutions, batch norm by its
formula, the transposed convolutions as zero insertion + an ordinary convolution with the
flipped kernel, replicate padding by index clamping, layer norm by its formula) run on the
shipped generator weights and on seeded random weights.

Layer lists ("CBR k c:s" = bias-free k×k convolution, BatchNorm, ReLU; width ``w``, ``c``
image channels, ``f`` = final_width)::

    generator  encoder   CBR 7 w:1 on [I*, O] (2c), CBR 3 2w:2, CBR 3 4w:2
               blocks    n_res × Res1 4w  (CBR 3 4w → CBR 3 4w, plus the input)
               decoder   CBR 3 4w:½, CBR 3 2w:½ (transposed, 2× up-sampling), CBR 7 w:1
               head      on [features, I*, O] (w + 2c): CBR 3 f → CBR 3 f → conv 3 c (bias)
                         plus a 3×3 conv (bias) projection of the head's input
               output    head (+ I* when residual)
    critics    CBR 4 w:2, CBR 4 2w:2, CBR 4 4w:2, CBR 4 8w:2, CBR 4 8w:1 (padding 1),
               conv 4 1:1 (bias, padding 1); D_cGAN sees [x, O] with BatchNorm,
               D_p sees x with per-sample layer norm; inputs replicate-padded to 48² at least
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets.rpgan import (
    MIN_CRITIC_SIZE,
    RPGAN_PRETRAINED_PATH,
    SMALL_GENERATOR,
    ArtifactCritic,
    ConditionalDiscriminator,
    OutputRes2,
    Res1,
    RPGANGenerator,
    _cbr,
)
from _nets import randomise_state as _randomise

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# --------------------------------------------------------------------------------------------
# the layer lists, by hand


def _cbr_list(prefix: str, k: int, cin: int, cout: int, norm: str = "batch"):
    """(parameter count, state keys) of one CBR (bias-free conv + norm)."""
    keys = [f"{prefix}.0.weight"]
    keys += [f"{prefix}.1.{t}" for t in (BN if norm == "batch" else ("weight", "bias"))]
    return k * k * cin * cout + 2 * cout, keys


def _conv_list(prefix: str, k: int, cin: int, cout: int):
    return k * k * cin * cout + cout, [f"{prefix}.weight", f"{prefix}.bias"]


def generator_list(channels: int, width: int, n_res: int, final_width: int):
    c2, w = 2 * channels, width
    parts = [_cbr_list("encoder.0", 7, c2, w), _cbr_list("encoder.1", 3, w, 2 * w),
             _cbr_list("encoder.2", 3, 2 * w, 4 * w)]
    for i in range(n_res):
        parts += [_cbr_list(f"blocks.{i}.body.0", 3, 4 * w, 4 * w), _cbr_list(f"blocks.{i}.body.1", 3, 4 * w, 4 * w)]
    parts += [_cbr_list("decoder.0", 3, 4 * w, 4 * w), _cbr_list("decoder.1", 3, 4 * w, 2 * w),
              _cbr_list("decoder.2", 7, 2 * w, w)]
    parts += [_cbr_list("head.body.0", 3, w + c2, final_width), _cbr_list("head.body.1", 3, final_width, final_width),
              _conv_list("head.body.2", 3, final_width, channels), _conv_list("head.skip", 3, w + c2, channels)]
    return sum(p for p, _ in parts), [k for _, ks in parts for k in ks]


def critic_list(cin: int, width: int, norm: str):
    chans = [cin, width, 2 * width, 4 * width, 8 * width, 8 * width]
    parts = [_cbr_list(f"net.body.{i}", 4, chans[i], chans[i + 1], norm) for i in range(5)]
    parts.append(_conv_list("net.out", 4, 8 * width, 1))
    return sum(p for p, _ in parts), [k for _, ks in parts for k in ks]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", [dict(), SMALL_GENERATOR, dict(width=2, n_res=0, final_width=1),
                                 dict(channels=1, width=3, n_res=2, final_width=5, residual=True),
                                 dict(width=5, n_res=1)])
def test_generator_parameter_count_and_keys_follow_the_layer_list(cfg):
    with torch.device("meta"):
        m = RPGANGenerator(**cfg)
    full = dict(channels=3, width=64, n_res=6, final_width=None, residual=False)
    full.update(cfg)
    if full["final_width"] is None:
        full["final_width"] = max(full["width"] // 2, 1)
    assert m.config == full
    total, keys = generator_list(full["channels"], full["width"], full["n_res"], full["final_width"])
    assert n_params(m) == total
    assert list(m.state_dict()) == keys


def test_paper_and_small_generator_sizes_by_hand():
    """Paper: ≈ 8.8 M parameters; SMALL_GENERATOR (the shipped rpgan_small) ≈ 0.26 M."""
    def cbr(k, a, b):
        return k * k * a * b + 2 * b

    def by_hand(w, n_res, f):  # appendix A at width w, n_res Res1 blocks, a final Res2 of width f
        return (cbr(7, 6, w) + cbr(3, w, 2 * w) + cbr(3, 2 * w, 4 * w) + 2 * n_res * cbr(3, 4 * w, 4 * w)
                + cbr(3, 4 * w, 4 * w) + cbr(3, 4 * w, 2 * w) + cbr(7, 2 * w, w)
                + cbr(3, w + 6, f) + cbr(3, f, f) + (9 * f * 3 + 3) + (9 * (w + 6) * 3 + 3))

    paper = by_hand(64, 6, 32)
    with torch.device("meta"):
        assert n_params(RPGANGenerator()) == paper
        small = n_params(RPGANGenerator(**SMALL_GENERATOR))
    shipped = RPGANGenerator.pretrained()
    assert shipped.config == {"channels": 3, **SMALL_GENERATOR}
    shipped = n_params(shipped)
    assert 8.7e6 < paper < 8.9e6
    assert SMALL_GENERATOR == {"width": 16, "n_res": 2, "final_width": 8, "residual": True}
    assert small == by_hand(16, 2, 8) == shipped and 0.25e6 < small < 0.27e6


@pytest.mark.parametrize("width, expected", [(64, 32), (16, 8), (3, 1), (2, 1), (1, 1)])
def test_default_final_width_is_half_the_width_at_least_one(width, expected):
    with torch.device("meta"):
        assert RPGANGenerator(width=width, n_res=0).config["final_width"] == expected


@pytest.mark.parametrize("cls, cin, norm", [(ConditionalDiscriminator, 6, "batch"), (ArtifactCritic, 3, "layer")])
@pytest.mark.parametrize("cfg", [dict(), dict(width=3, channels=1), dict(width=1, channels=2, relu_slope=0.2)])
def test_critic_parameter_count_and_keys_follow_the_layer_list(cls, cin, norm, cfg):
    with torch.device("meta"):
        m = cls(**cfg)
    full = dict(channels=3, width=64, relu_slope=0.0)
    full.update(cfg)
    assert m.config == full and type(m.config["relu_slope"]) is float
    total, keys = critic_list(cin // 3 * full["channels"], full["width"], norm)
    assert n_params(m) == total
    assert list(m.state_dict()) == keys


def test_layer_hyperparameters_follow_appendix_a():
    g = RPGANGenerator(width=2, n_res=1, final_width=3)
    for layer, (k, s, a, b, tr) in zip(list(g.encoder) + list(g.decoder),
                                       [(7, 1, 6, 2, False), (3, 2, 2, 4, False), (3, 2, 4, 8, False),
                                        (3, 2, 8, 8, True), (3, 2, 8, 4, True), (7, 1, 4, 2, False)]):
        conv, bn, act = layer
        assert isinstance(conv, torch.nn.ConvTranspose2d if tr else torch.nn.Conv2d)
        assert type(conv) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        assert (conv.kernel_size, conv.stride, conv.padding) == ((k, k), (s, s), ((k - 1) // 2,) * 2)
        assert conv.bias is None and (conv.in_channels, conv.out_channels, bn.num_features) == (a, b, b)
        assert type(bn) is torch.nn.BatchNorm2d and type(act) is torch.nn.ReLU
        if tr:
            assert conv.output_padding == (1, 1)
    head = g.head
    assert [c[0].kernel_size for c in head.body[:2]] == [(3, 3)] * 2
    assert head.body[2].padding == (1, 1) and head.skip.padding == (1, 1) and head.skip.kernel_size == (3, 3)
    d = ConditionalDiscriminator(width=1, relu_slope=0.25)
    for i, layer in enumerate(d.net.body):
        conv, norm, act = layer
        assert (conv.kernel_size, conv.stride, conv.padding) == ((4, 4), (2, 2) if i < 4 else (1, 1), (1, 1))
        assert type(norm) is torch.nn.BatchNorm2d and type(act) is torch.nn.LeakyReLU
        assert act.negative_slope == 0.25
    c = ArtifactCritic(width=1)
    for layer in c.net.body:
        assert type(layer[1]) is torch.nn.GroupNorm and layer[1].num_groups == 1 and type(layer[2]) is torch.nn.ReLU
    assert (c.net.out.kernel_size, c.net.out.stride, c.net.out.padding) == ((4, 4), (1, 1), (1, 1))


# --------------------------------------------------------------------------------------------
# a functional forward, written from the layer lists


def _bn(x, sd, p):
    shape = (1, -1, 1, 1)
    return ((x - sd[f"{p}.running_mean"].view(shape)) / torch.sqrt(sd[f"{p}.running_var"].view(shape) + 1e-5)
            * sd[f"{p}.weight"].view(shape) + sd[f"{p}.bias"].view(shape))


def _up2(x, w):
    """Transposed 3×3 convolution, stride 2, padding 1, output padding 1, written as zero
    insertion (H → 2H − 1), padding 1 top/left and 2 bottom/right, and a plain convolution
    with the spatially flipped kernel whose in/out axes are swapped: exactly H → 2H."""
    n, c, h, wd = x.shape
    z = x.new_zeros(n, c, 2 * h - 1, 2 * wd - 1)
    z[..., ::2, ::2] = x
    z = F.pad(z, (1, 2, 1, 2))
    return F.conv2d(z, w.transpose(0, 1).flip(-1, -2))


def _g_cbr(x, sd, p, stride=1, up=False):
    w = sd[f"{p}.0.weight"]
    x = _up2(x, w) if up else F.conv2d(x, w, None, stride, (w.shape[-1] - 1) // 2)
    return _bn(x, sd, f"{p}.1").clamp_min(0)


def _reflect_pad_bottom_right(x, ph, pw):
    """Reflection (without the edge) at the bottom/right by indexing."""
    h, w = x.shape[-2:]
    rows = list(range(h)) + [h - 2 - i for i in range(ph)]
    cols = list(range(w)) + [w - 2 - i for i in range(pw)]
    return x[..., rows, :][..., cols]


def functional_generator(deconv, blurred, sd, cfg):
    x = torch.cat((deconv, blurred), 1)
    h, w = x.shape[-2:]
    xp = _reflect_pad_bottom_right(x, -h % 4, -w % 4)
    f = _g_cbr(xp, sd, "encoder.0")
    f = _g_cbr(f, sd, "encoder.1", 2)
    f = _g_cbr(f, sd, "encoder.2", 2)
    for i in range(cfg["n_res"]):
        f = f + _g_cbr(_g_cbr(f, sd, f"blocks.{i}.body.0"), sd, f"blocks.{i}.body.1")
    f = _g_cbr(f, sd, "decoder.0", up=True)
    f = _g_cbr(f, sd, "decoder.1", up=True)
    f = _g_cbr(f, sd, "decoder.2")
    hin = torch.cat((f, xp), 1)
    body = _g_cbr(_g_cbr(hin, sd, "head.body.0"), sd, "head.body.1")
    out = (F.conv2d(body, sd["head.body.2.weight"], sd["head.body.2.bias"], padding=1)
           + F.conv2d(hin, sd["head.skip.weight"], sd["head.skip.bias"], padding=1))[..., :h, :w]
    return deconv + out if cfg["residual"] else out


def _replicate_to(x, size):
    h, w = x.shape[-2:]
    rows = torch.arange(max(h, size)).clamp(max=h - 1)
    cols = torch.arange(max(w, size)).clamp(max=w - 1)
    return x[..., rows, :][..., cols]


def _layer_norm(x, sd, p):
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * sd[f"{p}.weight"].view(1, -1, 1, 1) + sd[f"{p}.bias"].view(1, -1, 1, 1)


def functional_critic(x, sd, norm, slope):
    h = _replicate_to(x, 48)
    for i in range(5):
        h = F.conv2d(h, sd[f"net.body.{i}.0.weight"], None, 2 if i < 4 else 1, 1)
        h = _bn(h, sd, f"net.body.{i}.1") if norm == "batch" else _layer_norm(h, sd, f"net.body.{i}.1")
        h = torch.where(h > 0, h, slope * h)
    return F.conv2d(h, sd["net.out.weight"], sd["net.out.bias"], 1, 1)


def _sd(m):
    return {k: v.double() if v.is_floating_point() else v for k, v in m.state_dict().items()}


def test_shipped_generator_matches_the_functional_forward():
    m = RPGANGenerator.pretrained().double()
    assert RPGAN_PRETRAINED_PATH.is_file()
    assert m.config == {"channels": 3, "width": 16, "n_res": 2, "final_width": 8, "residual": True}
    assert not m.training
    total, keys = generator_list(3, 16, 2, 8)
    assert n_params(m) == total and list(m.state_dict()) == keys
    torch.manual_seed(0)
    deconv = torch.rand(1, 3, 22, 29, dtype=torch.float64)
    blurred = torch.rand(1, 3, 22, 29, dtype=torch.float64)
    with torch.no_grad():
        got = m(deconv, blurred)
    want = functional_generator(deconv, blurred, _sd(m), m.config)
    assert got.shape == (1, 3, 22, 29) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    assert float((want - deconv).abs().max()) > 1e-2  # the trained correction is not zero


@pytest.mark.parametrize("cfg, size", [(dict(width=2, n_res=2, final_width=3, residual=False), (13, 18)),
                                       (dict(channels=1, width=3, n_res=1, final_width=2, residual=True), (16, 11)),
                                       (dict(width=2, n_res=0, final_width=1, residual=False), (8, 12))])
def test_random_generator_matches_the_functional_forward(cfg, size):
    torch.manual_seed(1)
    m = _randomise(RPGANGenerator(**cfg).double().eval(), 2)
    c = cfg.get("channels", 3)
    deconv = torch.rand(2, c, *size, dtype=torch.float64)
    blurred = torch.rand(2, c, *size, dtype=torch.float64)
    with torch.no_grad():
        got = m(deconv, blurred)
    want = functional_generator(deconv, blurred, m.state_dict(), m.config)
    assert got.shape == (2, c, *size)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls, norm", [(ConditionalDiscriminator, "batch"), (ArtifactCritic, "layer")])
@pytest.mark.parametrize("slope, size", [(0.0, (20, 53)), (0.2, (50, 67))])
def test_random_critics_match_the_functional_forward(cls, norm, slope, size):
    torch.manual_seed(3)
    m = _randomise(cls(channels=2, width=2, relu_slope=slope).double().eval(), 4)
    x = torch.rand(2, 2, *size, dtype=torch.float64)
    o = torch.rand(2, 2, *size, dtype=torch.float64)
    with torch.no_grad():
        got = m(x, o) if cls is ConditionalDiscriminator else m(x)
    inp = torch.cat((x, o), 1) if cls is ConditionalDiscriminator else x
    want = functional_critic(inp, m.state_dict(), norm, slope)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    if cls is ArtifactCritic:
        torch.testing.assert_close(m.score(x), want.mean(dim=(1, 2, 3)), rtol=1e-12, atol=1e-12)
        assert m.score(x).shape == (2,)


@pytest.mark.parametrize("size, out", [((9, 13), (1, 1)), ((48, 47), (1, 1)), ((49, 64), (1, 2)), ((80, 97), (3, 4))])
def test_critic_pads_to_48_and_the_patch_map_size(size, out):
    """48 → 24 → 12 → 6 → 3 → 2 → 1 (four stride-2 and two stride-1 4×4 layers, padding 1)."""
    assert MIN_CRITIC_SIZE == 48
    c = ArtifactCritic(channels=1, width=1)
    seen = {}
    c.net.body[0][0].register_forward_hook(lambda mod, inp, o: seen.update(x=inp[0]))
    x = torch.rand(1, 1, *size)
    assert c(x).shape == (1, 1, *out)
    torch.testing.assert_close(seen["x"], _replicate_to(x, 48))


def test_training_mode_batch_norm_and_the_critics_layer_norm():
    """In train mode the generator's BN uses the batch statistics; D_p's norm is per sample."""
    torch.manual_seed(5)
    block = _cbr(2, 3, 3)
    block.double().train()
    x = torch.rand(2, 2, 6, 7, dtype=torch.float64)
    z = F.conv2d(x, block[0].weight, None, 1, 1)
    mu, var = z.mean(dim=(0, 2, 3), keepdim=True), z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    torch.testing.assert_close(block(x), ((z - mu) / torch.sqrt(var + 1e-5)).clamp_min(0), rtol=1e-9, atol=1e-9)
    c = _randomise(ArtifactCritic(width=1).double().train(), 6)
    x = torch.rand(3, 3, 48, 48, dtype=torch.float64)
    torch.testing.assert_close(c(x)[1:2], c(x[1:2]), rtol=1e-9, atol=1e-9)


def test_cbr_options_and_its_norm_check():
    up = _cbr(2, 3, 3, stride=2, transpose=True, norm="none")
    assert type(up[0]) is torch.nn.ConvTranspose2d and up[0].bias is not None and len(up) == 2
    assert up(torch.rand(1, 2, 5, 7)).shape == (1, 3, 10, 14)
    down = _cbr(2, 3, 4, stride=2, padding=1, relu_slope=0.1)
    assert down[0].padding == (1, 1) and down[0].bias is None and down[2].negative_slope == 0.1
    assert _cbr(2, 3, 5)[0].padding == (2, 2)
    with pytest.raises(ValueError, match=r"^norm must be 'batch', 'layer' or 'none', got 'instance'$"):
        _cbr(2, 3, 3, norm="instance")


def test_res_blocks_closed_forms():
    torch.manual_seed(7)
    r = Res1(3).double().eval()
    with torch.no_grad():  # last BN scale and shift 0: the body is ReLU(0) = 0, Res1 is the identity
        r.body[1][1].weight.zero_()
        r.body[1][1].bias.zero_()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(r(x), x)
    o = OutputRes2(4, 2, 3).double().eval()
    with torch.no_grad():
        o.body[2].weight.zero_()
        o.body[2].bias.fill_(0.5)
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(o(x), F.conv2d(x, o.skip.weight, o.skip.bias, padding=1) + 0.5)
    assert [c[0].out_channels for c in o.body[:2]] == [3, 3] and o.body[2].out_channels == 2


def test_residual_generator_starts_at_identity_with_zero_output_layers():
    g = RPGANGenerator(width=2, n_res=1, final_width=2, residual=True)
    for conv in (g.head.body[-1], g.head.skip):
        assert not conv.weight.any() and not conv.bias.any()
    x = torch.rand(1, 3, 9, 10)
    torch.testing.assert_close(g(x, torch.rand_like(x)), x)
    torch.manual_seed(0)
    plain = RPGANGenerator(width=2, n_res=1, final_width=2)
    assert plain.head.skip.weight.any() and plain.head.body[-1].weight.any()
    # the untrained plain generator does not return I*
    assert not torch.allclose(plain.eval()(x, x), x)


def test_generator_output_depends_on_both_inputs_everywhere_near():
    """Both I* and O reach the output (the concatenation), also through the head's skip."""
    torch.manual_seed(8)
    g = _randomise(RPGANGenerator(width=2, n_res=1, final_width=2).double().eval(), 9)
    d = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    o = torch.rand(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    g(d, o)[0, 0, 8, 8].backward()
    assert float(d.grad[0, :, 8, 8].abs().min()) > 0 and float(o.grad[0, :, 8, 8].abs().min()) > 0
    rows = torch.nonzero(d.grad.abs().sum(dim=(0, 1)).sum(dim=1)).flatten()
    assert int(rows.max() - rows.min()) >= 12  # the stride-4 encoder's context, far beyond the head's 3×3


# --------------------------------------------------------------------------------------------
# validation messages, from their start


@pytest.mark.parametrize("name, low", [("channels", 1), ("width", 1), ("n_res", 0), ("final_width", 1)])
@pytest.mark.parametrize("delta", [-1, "float", "bool", "str", "none"])
def test_generator_integer_arguments_are_checked(name, low, delta):
    bad = {-1: low - 1, "float": float(low + 1), "bool": True, "str": "2", "none": None}[delta]
    if name == "final_width" and bad is None:
        return  # None means the default
    kw = dict(width=1, n_res=0)
    kw[name] = bad
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= {low}, got {re.escape(repr(bad))}$"):
        RPGANGenerator(**kw)


def test_generator_smallest_valid_arguments_build():
    g = RPGANGenerator(channels=1, width=1, n_res=0, final_width=1)
    assert g.config == {"channels": 1, "width": 1, "n_res": 0, "final_width": 1, "residual": False}
    assert len(g.blocks) == 0 and g(torch.rand(1, 1, 5, 6), torch.rand(1, 1, 5, 6)).shape == (1, 1, 5, 6)


def test_generator_residual_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^residual must be True or False, got 1$"):
        RPGANGenerator(width=1, residual=1)


@pytest.mark.parametrize("cls", [ConditionalDiscriminator, ArtifactCritic])
@pytest.mark.parametrize("name", ["channels", "width"])
@pytest.mark.parametrize("bad", [0, -2, 1.0, False, "3"])
def test_critic_integer_arguments_are_checked(cls, name, bad):
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got {re.escape(repr(bad))}$"):
        cls(**{name: bad})


def test_generator_inputs_are_checked():
    g = RPGANGenerator(channels=2, width=1, n_res=0)
    x = torch.rand(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"^deconv must have shape \(N, 2, H, W\), got \(1, 3, 8, 8\)$"):
        g(torch.rand(1, 3, 8, 8), x)
    with pytest.raises(ValueError, match=r"^blurred must have shape \(N, 2, H, W\), got \(1, 2, 8\)$"):
        g(x, torch.rand(1, 2, 8))
    with pytest.raises(TypeError, match=r"^deconv must be a torch.Tensor of shape \(N, 2, H, W\), got ndarray$"):
        g(x.numpy(), x)
    with pytest.raises(TypeError, match=r"^blurred must be a floating-point tensor with values in \[0, 1\], got dtype torch.int64$"):
        g(x, torch.ones(1, 2, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^deconv and blurred must have the same shape, got \(1, 2, 8, 8\) "
                                         r"and \(1, 2, 8, 9\)$"):
        g(x, torch.rand(1, 2, 8, 9))


def test_critic_inputs_are_checked():
    d, c = ConditionalDiscriminator(channels=1, width=1), ArtifactCritic(channels=1, width=1)
    x = torch.rand(2, 1, 9, 9)
    with pytest.raises(ValueError, match=r"^x and blurred must have the same shape, got \(2, 1, 9, 9\) and \(1, 1, 9, 9\)$"):
        d(x, x[:1])
    with pytest.raises(ValueError, match=r"^blurred must have shape \(N, 1, H, W\), got \(2, 2, 9, 9\)$"):
        d(x, torch.rand(2, 2, 9, 9))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 1, H, W\), got \(2, 3, 9, 9\)$"):
        d(torch.rand(2, 3, 9, 9), x)
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 1, H, W\), got \(1, 9, 9\)$"):
        c(torch.rand(1, 9, 9))
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor with values in \[0, 1\], got dtype torch.uint8$"):
        c(torch.ones(1, 1, 9, 9, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"^x must be a torch.Tensor of shape \(N, 1, H, W\), got list$"):
        c([[1.0]])


def test_checkpoints_round_trip_and_other_architectures_refused(tmp_path):
    torch.manual_seed(10)
    g = _randomise(RPGANGenerator(channels=1, width=2, n_res=1, final_width=3, residual=True).eval(), 11)
    d = _randomise(ConditionalDiscriminator(channels=1, width=1, relu_slope=0.1).eval(), 12)
    c = _randomise(ArtifactCritic(channels=1, width=1).eval(), 13)
    x = torch.rand(1, 1, 10, 11)
    for m, args in ((g, (x, x)), (d, (x, x)), (c, (x,))):
        m2 = type(m).from_checkpoint(m.save(tmp_path / f"{type(m).__name__}.safetensors"))
        assert m2.config == m.config and not m2.training
        with torch.no_grad():
            torch.testing.assert_close(m2(*args), m(*args))
    with pytest.raises(CheckpointError, match="ArtifactCritic"):
        ConditionalDiscriminator.from_checkpoint(tmp_path / "ArtifactCritic.safetensors")
    with pytest.raises(CheckpointError, match="ConditionalDiscriminator"):
        RPGANGenerator.from_checkpoint(tmp_path / "ConditionalDiscriminator.safetensors")


def test_cbr_explicit_padding_wins_and_an_unnormalised_conv_has_a_bias():
    """``padding`` overrides the "same" default; without a norm the convolution carries a bias."""
    block = _cbr(2, 3, 3, padding=0)
    assert block[0].padding == (0, 0) and block(torch.rand(1, 2, 6, 7)).shape == (1, 3, 4, 5)
    assert _cbr(2, 3, 5, padding=3)[0].padding == (3, 3)
    plain = _cbr(2, 3, 3, norm="none")
    assert type(plain[0]) is torch.nn.Conv2d and plain[0].bias is not None and plain[0].bias.shape == (3,)
    assert len(plain) == 2 and type(plain[1]) is torch.nn.ReLU
    for norm in ("batch", "layer"):
        assert _cbr(2, 3, 3, norm=norm)[0].bias is None


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_generator_and_critics_refuse_non_finite_and_empty_input(bad):
    torch.manual_seed(0)
    g, d, c = RPGANGenerator(**SMALL_GENERATOR).eval(), ConditionalDiscriminator(3, 4), ArtifactCritic(3, 4)
    x, o = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    x[0, 2, 11, 11] = bad  # the last value
    with pytest.raises(ValueError, match=r"^deconv holds NaN or Inf values$"):
        g(x, o)
    with pytest.raises(ValueError, match=r"^blurred holds NaN or Inf values$"):
        g(o, x)
    with pytest.raises(ValueError, match=r"^x holds NaN or Inf values$"):
        d(x, o)
    with pytest.raises(ValueError, match=r"^x holds NaN or Inf values$"):
        c(x)
    with pytest.raises(ValueError, match=r"^deconv must not be empty, got shape \(0, 3, 12, 12\)$"):
        g(torch.rand(0, 3, 12, 12), torch.rand(0, 3, 12, 12))
    with pytest.raises(ValueError, match=r"^x must not be empty, got shape \(1, 3, 0, 12\)$"):
        c(torch.rand(1, 3, 0, 12))
