"""DeepDeblur (Nah et al., section 3, Fig. 4, Table 1) against its layer list, layer by layer.

Independent references: parameter counts and state-dict keys from the layer lists written out
here by hand; a functional forward (``torch.nn.functional`` convolutions, the pixel shuffle as
a reshape, the transposed convolution as zero insertion + a plain convolution with the flipped
kernel, reflection padding by indexing) on the shipped weights and on seeded random ones; the
discriminator's strides and fully connected logit written out the same way; the authors'
``MSResNet`` key layout mapped by hand.

Layer list (``c`` channels, ``F`` features, ``B`` blocks, ``S`` scales, ``k`` kernel; every
convolution "same" zero-padded, with a bias)::

    scale s (0 = coarsest)  head  conv k (c or 2c for s > 0 → F)
                            B × ResBlock: x + conv k F→F (ReLU (conv k F→F x))
                            tail  conv k F → c
    up-convolution s        pixelshuffle: conv k c → 4c, pixel shuffle 2
                            transposed:   transposed conv k c → c, stride 2 (H → 2H)
    scale s input           [pyramid level s, up(output of scale s − 1)], images as (x − ½)·rgb_range
    output                  every scale's output / rgb_range + ½ (+ its input level when residual)

    discriminator           10 × [bias-free conv 5, LeakyReLU 0.2], widths b·(1,2,2,4,4,8,8,16,16,32),
                            strides 2,1,2,1,2,1,4,1,4,2; global mean; linear 32b → 1
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.multiscale import image_pyramid
from pnpdeblur.nets.deepdeblur import DeepDeblur, DeepDeblurDiscriminator, ResBlock
from _nets import transposed_conv2x as _transposed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEFAULT = dict(in_channels=3, features=64, blocks=19, scales=3, kernel_size=5, upsample="pixelshuffle",
               rgb_range=1.0, residual=False)


# --------------------------------------------------------------------------------------------
# the layer list, by hand


def _conv(prefix, k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0), [f"{prefix}.weight"] + ([f"{prefix}.bias"] if bias else [])


def layer_list(in_channels, features, blocks, scales, kernel_size, upsample, **_):
    c, f, k = in_channels, features, kernel_size
    parts = []
    for s in range(scales):
        parts.append(_conv(f"nets.{s}.head", k, c if s == 0 else 2 * c, f))
        for i in range(blocks):
            parts += [_conv(f"nets.{s}.body.{i}.conv1", k, f, f), _conv(f"nets.{s}.body.{i}.conv2", k, f, f)]
        parts.append(_conv(f"nets.{s}.tail", k, f, c))
    for s in range(scales - 1):
        parts.append(_conv(f"ups.{s}.0", k, c, 4 * c) if upsample == "pixelshuffle" else _conv(f"ups.{s}", k, c, c))
    return sum(p for p, _ in parts), [key for _, ks in parts for key in ks]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", [dict(), dict(features=16, blocks=3, residual=True),
                                 dict(features=2, blocks=0, scales=1, kernel_size=1),
                                 dict(in_channels=1, features=3, blocks=2, scales=4, kernel_size=3, upsample="transposed"),
                                 dict(features=5, blocks=1, scales=2, rgb_range=255)])
def test_parameter_count_and_keys_follow_the_layer_list(cfg):
    with torch.device("meta"):
        m = DeepDeblur(**cfg)
    full = dict(DEFAULT, **cfg)
    full["rgb_range"] = float(full["rgb_range"])
    assert m.config == full and type(m.config["rgb_range"]) is float
    total, keys = layer_list(**full)
    assert n_params(m) == total and m.num_parameters() == total
    assert list(m.state_dict()) == keys


def test_layer_hyperparameters():
    m = DeepDeblur(features=2, blocks=1, scales=2, kernel_size=3, upsample="transposed")
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert all(c.padding == (1, 1) and c.stride == (1, 1) and c.bias is not None for c in convs)
    up = m.ups[0]
    assert type(up) is torch.nn.ConvTranspose2d
    assert (up.stride, up.padding, up.output_padding, up.kernel_size) == ((2, 2), (1, 1), (1, 1), (3, 3))
    p = DeepDeblur(features=2, blocks=1, scales=2, kernel_size=5).ups[0]
    assert type(p[1]) is torch.nn.PixelShuffle and p[1].upscale_factor == 2 and p[0].padding == (2, 2)


def test_num_parameters_counts_only_trainable_ones():
    m = DeepDeblur(features=2, blocks=0, scales=1, kernel_size=3)
    m.nets[0].head.weight.requires_grad_(False)
    assert m.num_parameters() == n_params(m) - 2 * 3 * 9


@pytest.mark.parametrize("scales, stride", [(1, 1), (2, 2), (3, 4), (4, 8)])
def test_stride_is_two_to_the_scales_minus_one(scales, stride):
    with torch.device("meta"):
        assert DeepDeblur(features=1, blocks=0, scales=scales).stride == stride


def test_discriminator_layer_list_and_strides():
    d = DeepDeblurDiscriminator(in_channels=2, base=1, kernel_size=3, negative_slope=0.1)
    widths = [2, 1, 2, 2, 4, 4, 8, 8, 16, 16, 32]
    assert [(c.in_channels, c.out_channels) for c in d.convs] == list(zip(widths[:-1], widths[1:]))
    assert [c.stride[0] for c in d.convs] == [2, 1, 2, 1, 2, 1, 4, 1, 4, 2]
    assert all(c.bias is None and c.padding == (1, 1) and c.kernel_size == (3, 3) for c in d.convs)
    assert n_params(d) == sum(9 * a * b for a, b in zip(widths[:-1], widths[1:])) + 32 + 1
    assert list(d.state_dict()) == [f"convs.{i}.weight" for i in range(10)] + ["fc.weight", "fc.bias"]
    assert d.config == dict(in_channels=2, base=1, kernel_size=3, negative_slope=0.1)
    with torch.device("meta"):
        full = DeepDeblurDiscriminator()
    assert full.config == dict(in_channels=3, base=32, kernel_size=5, negative_slope=0.2)
    assert type(DeepDeblurDiscriminator(base=1, negative_slope=0).config["negative_slope"]) is float


# --------------------------------------------------------------------------------------------
# a functional forward, written from the layer list


def _c(x, sd, p, bias=True):
    w = sd[f"{p}.weight"]
    return F.conv2d(x, w, sd[f"{p}.bias"] if bias else None, padding=w.shape[-1] // 2)


def _pixel_shuffle(y):
    n, c4, h, w = y.shape
    c = c4 // 4
    return y.reshape(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, 2 * h, 2 * w)


def functional_deepdeblur(x, sd, cfg):
    r, S = cfg["rgb_range"], cfg["scales"]
    pyr = [(p - 0.5) * r for p in image_pyramid(x, S)]
    outs = []
    for s in range(S):
        if s == 0:
            inp = pyr[0]
        elif cfg["upsample"] == "pixelshuffle":
            inp = torch.cat((pyr[s], _pixel_shuffle(_c(outs[-1], sd, f"ups.{s - 1}.0"))), 1)
        else:
            inp = torch.cat((pyr[s], _transposed(outs[-1], sd[f"ups.{s - 1}.weight"], sd[f"ups.{s - 1}.bias"])), 1)
        h = _c(inp, sd, f"nets.{s}.head")
        for i in range(cfg["blocks"]):
            h = h + _c(_c(h, sd, f"nets.{s}.body.{i}.conv1").clamp_min(0), sd, f"nets.{s}.body.{i}.conv2")
        out = _c(h, sd, f"nets.{s}.tail")
        outs.append(out + pyr[s] if cfg["residual"] else out)
    return [o / r + 0.5 for o in outs]


def _reflect(x, ph, pw):
    h, w = x.shape[-2:]
    rows = list(range(h)) + [h - 2 - i for i in range(ph)]
    cols = list(range(w)) + [w - 2 - i for i in range(pw)]
    return x[..., rows, :][..., cols]


def _randomise(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in m.parameters():
            t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) / (t[0].numel() ** 0.5 if t.ndim > 1 else 5))
    return m


def test_shipped_weights_match_the_functional_forward():
    m = DeepDeblur.pretrained().double()
    assert m.config == dict(DEFAULT, features=16, blocks=3, residual=True)
    assert not m.training
    total, keys = layer_list(**m.config)
    assert n_params(m) == total and list(m.state_dict()) == keys
    sd = {k: v.double() for k, v in m.state_dict().items()}
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 20, dtype=torch.float64)
    with torch.no_grad():
        got = m.forward_multiscale(x)
        full = m(x[..., :15, :18])
    want = functional_deepdeblur(x, sd, m.config)
    assert [tuple(g.shape) for g in got] == [(1, 3, 4, 5), (1, 3, 8, 10), (1, 3, 16, 20)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)
    # any size: reflection-padded to the stride (15 × 18 → 16 × 20), cropped back
    want_full = functional_deepdeblur(_reflect(x[..., :15, :18], 1, 2), sd, m.config)[-1][..., :15, :18]
    torch.testing.assert_close(full, want_full, rtol=1e-9, atol=1e-9)
    assert float((want[-1] - x).abs().max()) > 1e-2  # the trained correction is not zero


@pytest.mark.parametrize("cfg, size", [
    (dict(features=3, blocks=2, scales=3, kernel_size=5, upsample="pixelshuffle", rgb_range=2.0), (8, 12)),
    (dict(in_channels=1, features=2, blocks=1, scales=3, kernel_size=3, upsample="transposed", residual=True), (12, 8)),
    (dict(features=2, blocks=1, scales=2, kernel_size=5, upsample="transposed", rgb_range=255.0), (6, 10)),
    (dict(features=2, blocks=0, scales=1, kernel_size=3, residual=True, rgb_range=0.5), (5, 7)),
])
def test_random_weights_match_the_functional_forward(cfg, size):
    torch.manual_seed(1)
    m = _randomise(DeepDeblur(**cfg).double().eval(), 2)
    x = torch.rand(2, cfg.get("in_channels", 3), *size, dtype=torch.float64)
    with torch.no_grad():
        got = m.forward_multiscale(x)
    want = functional_deepdeblur(x, m.state_dict(), m.config)
    assert len(got) == cfg["scales"]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(m(x), want[-1], rtol=1e-9, atol=1e-9)


def test_forward_pads_by_reflection_to_the_stride_and_crops():
    torch.manual_seed(3)
    m = _randomise(DeepDeblur(features=2, blocks=1, scales=3, kernel_size=3), 4).double().eval()
    x = torch.rand(1, 3, 13, 10, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)
    want = functional_deepdeblur(_reflect(x, 3, 2), m.state_dict(), m.config)[-1][..., :13, :10]
    assert got.shape == (1, 3, 13, 10)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_resblock_closed_form_and_zero_tail_residual_identity():
    torch.manual_seed(5)
    b = ResBlock(3, 3).double()
    with torch.no_grad():
        b.conv2.weight.zero_()
        b.conv2.bias.fill_(0.25)
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(b(x), x + 0.25)
    assert b.conv1.padding == (1, 1)
    m = DeepDeblur(features=2, blocks=1, scales=2, kernel_size=3, residual=True, rgb_range=4.0).double()
    with torch.no_grad():
        for s in m.nets:
            s.tail.weight.zero_()
            s.tail.bias.fill_(0.4)  # + 0.4 / rgb_range = + 0.1 in image units
    x = torch.rand(1, 3, 8, 6, dtype=torch.float64)
    for out, level in zip(m.forward_multiscale(x), image_pyramid(x, 2)):
        torch.testing.assert_close(out, level + 0.1)


def test_discriminator_matches_the_functional_forward():
    torch.manual_seed(6)
    d = _randomise(DeepDeblurDiscriminator(in_channels=2, base=1, kernel_size=3, negative_slope=0.3), 7).double()
    x = torch.rand(2, 2, 72, 40, dtype=torch.float64)
    h = x
    for i, s in enumerate([2, 1, 2, 1, 2, 1, 4, 1, 4, 2]):
        h = F.conv2d(h, d.state_dict()[f"convs.{i}.weight"], None, s, 1)
        h = torch.where(h > 0, h, 0.3 * h)
    want = h.mean(dim=(2, 3)) @ d.fc.weight.T + d.fc.bias
    got = d(x)
    assert got.shape == (2, 1)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------------
# validation messages, from their start


@pytest.mark.parametrize("name, lo", [("in_channels", 1), ("features", 1), ("blocks", 0), ("scales", 1),
                                      ("kernel_size", 1)])
@pytest.mark.parametrize("kind", ["low", "float", "bool", "str"])
def test_integer_arguments_are_checked(name, lo, kind):
    bad = {"low": lo - 1, "float": float(lo + 1), "bool": True, "str": "3"}[kind]
    with pytest.raises(ValueError, match=rf"^{name} must be an int >= {lo}, got {re.escape(repr(bad))}$"):
        DeepDeblur(**{name: bad})


def test_smallest_valid_configuration_builds_and_runs():
    m = DeepDeblur(in_channels=1, features=1, blocks=0, scales=1, kernel_size=1)
    assert m(torch.rand(1, 1, 3, 2)).shape == (1, 1, 3, 2)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True, "1", None])
def test_rgb_range_is_checked(bad):
    with pytest.raises(ValueError, match=rf"^rgb_range must be a finite positive number, got {re.escape(repr(bad))}$"):
        DeepDeblur(features=1, blocks=0, rgb_range=bad)


def test_other_arguments_are_checked():
    with pytest.raises(ValueError, match=r"^kernel_size must be odd \(same padding\), got 4$"):
        DeepDeblur(kernel_size=4)
    with pytest.raises(ValueError, match=r"^upsample must be one of \('pixelshuffle', 'transposed'\), got 'nearest'$"):
        DeepDeblur(upsample="nearest")
    with pytest.raises(TypeError, match=r"^residual must be True or False, got 1$"):
        DeepDeblur(residual=1)
    with pytest.raises(ValueError, match=r"^kernel_size must be odd, got 2$"):
        DeepDeblurDiscriminator(kernel_size=2)
    for name in ("in_channels", "base", "kernel_size"):
        with pytest.raises(ValueError, match=rf"^{name} must be an int >= 1, got 0$"):
            DeepDeblurDiscriminator(**{name: 0})


@pytest.mark.parametrize("bad", [-0.1, 1, 1.0, True, "0.2", None])
def test_discriminator_negative_slope_is_checked(bad):
    with pytest.raises(ValueError, match=rf"^negative_slope must be a number in \[0, 1\), got {re.escape(repr(bad))}$"):
        DeepDeblurDiscriminator(base=1, negative_slope=bad)


def test_forward_inputs_are_checked():
    m = DeepDeblur(features=1, blocks=0, scales=3)
    with pytest.raises(ValueError, match=r"^x's H and W must be multiples of DeepDeblur\.stride = 4 in forward_multiscale, "
                                         r"got \(8, 6\)"):
        m.forward_multiscale(torch.rand(1, 3, 8, 6))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 3, H, W\), got \(1, 2, 8, 8\)$"):
        m.forward_multiscale(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 3, H, W\), got \(1, 2, 8, 8\)$"):
        m(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 1, H, W\), got \(1, 3, 8, 8\)$"):
        DeepDeblurDiscriminator(in_channels=1, base=1)(torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------------------------
# the authors' MSResNet keys


def official_state(c=3, feats=2, blocks=2, scales=3, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1
    sd = {}
    for s in range(scales):  # theirs: 0 = finest
        cin = c if s == scales - 1 else 2 * c
        sd[f"body_models.{s}.body.0.weight"], sd[f"body_models.{s}.body.0.bias"] = r(feats, cin, k, k), r(feats)
        for i in range(1, blocks + 1):
            for j in (0, 2):
                sd[f"body_models.{s}.body.{i}.body.{j}.weight"] = r(feats, feats, k, k)
                sd[f"body_models.{s}.body.{i}.body.{j}.bias"] = r(feats)
        sd[f"body_models.{s}.body.{blocks + 1}.weight"], sd[f"body_models.{s}.body.{blocks + 1}.bias"] = \
            r(c, feats, k, k), r(c)
    for s in range(1, scales):
        sd[f"conv_end_models.{s}.uppath.0.weight"] = r(4 * c, c, k, k)
        sd[f"conv_end_models.{s}.uppath.0.bias"] = r(4 * c)
    return sd


def _ours(sd, scales, blocks):
    """Their keys → ours, written out by hand: scale s (theirs, 0 = finest) is ours scales-1-s."""
    out = {}
    for s in range(scales):
        o = scales - 1 - s
        out[f"nets.{o}.head.weight"] = sd[f"body_models.{s}.body.0.weight"]
        out[f"nets.{o}.head.bias"] = sd[f"body_models.{s}.body.0.bias"]
        for i in range(blocks):
            for j, n in ((0, 1), (2, 2)):
                for p in ("weight", "bias"):
                    out[f"nets.{o}.body.{i}.conv{n}.{p}"] = sd[f"body_models.{s}.body.{i + 1}.body.{j}.{p}"]
        for p in ("weight", "bias"):
            out[f"nets.{o}.tail.{p}"] = sd[f"body_models.{s}.body.{blocks + 1}.{p}"]
    for s in range(1, scales):
        for p in ("weight", "bias"):
            out[f"ups.{scales - 1 - s}.0.{p}"] = sd[f"conv_end_models.{s}.uppath.0.{p}"]
    return out


@pytest.mark.parametrize("c, feats, blocks, scales, k", [(3, 2, 2, 3, 3), (1, 3, 1, 2, 5), (2, 1, 0, 1, 1)])
def test_from_official_maps_every_key_and_reads_the_configuration(c, feats, blocks, scales, k):
    sd = official_state(c, feats, blocks, scales, k)
    net = DeepDeblur.from_official(sd, rgb_range=2.0)
    assert net.config == dict(in_channels=c, features=feats, blocks=blocks, scales=scales, kernel_size=k,
                              upsample="pixelshuffle", rgb_range=2.0, residual=False)
    assert not net.training
    mine = net.state_dict()
    want = _ours(sd, scales, blocks)
    assert set(mine) == set(want)
    for key, v in want.items():
        assert torch.equal(mine[key], v), key
    assert net.config == DeepDeblur.from_official(sd).config | {"rgb_range": 2.0}
    assert DeepDeblur.from_official(sd).config["rgb_range"] == 255.0


def test_from_official_accepts_training_files_and_prefixes(tmp_path):
    sd = official_state()
    ref = DeepDeblur.from_official(sd).state_dict()
    for variant in ({"G": sd, "D": {"x": torch.zeros(1)}}, {"G": {"module." + k: v for k, v in sd.items()}},
                    {"model.G." + k: v for k, v in sd.items()}, {"module.model.G." + k: v for k, v in sd.items()}):
        got = DeepDeblur.from_official(variant).state_dict()
        assert all(torch.equal(got[k], ref[k]) for k in ref)
    path = tmp_path / "model.pt"
    torch.save({"G": sd}, path)
    got = DeepDeblur.from_official(path).state_dict()
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    torch.save({"G": sd}, str(tmp_path / "str.pt"))
    assert DeepDeblur.from_official(str(tmp_path / "str.pt")).config["blocks"] == 2


def test_from_official_messages(tmp_path):
    sd = official_state()
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"^expected a state dict, got list$"):
        DeepDeblur.from_official(tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"^not a DeepDeblur-PyTorch MSResNet state dict \(no 'body_models\.\*' "
                                              r"keys; first keys: \['a', 'b'\]\)$"):
        DeepDeblur.from_official({"a": 1, "b": 2})
    no_head = {k: v for k, v in sd.items() if k != "body_models.0.body.0.weight"}
    with pytest.raises(CheckpointError, match=r"^not a DeepDeblur-PyTorch MSResNet state dict"):
        DeepDeblur.from_official(no_head)
    with pytest.raises(CheckpointError, match=r"^body_models\.0\.body\.0\.weight must be a 4-d conv weight$"):
        DeepDeblur.from_official(dict(sd, **{"body_models.0.body.0.weight": torch.zeros(2, 6, 3)}))
    with pytest.raises(CheckpointError, match=r"^body_models\.0\.body\.0\.weight must be a 4-d conv weight$"):
        DeepDeblur.from_official(dict(sd, **{"body_models.0.body.0.weight": [1.0]}))
    no_coarse = {k: v for k, v in sd.items() if k != "body_models.2.body.0.weight"}
    with pytest.raises(CheckpointError, match=r"^body_models\.2\.body\.0\.weight is missing$"):
        DeepDeblur.from_official(no_coarse)
    even = official_state(k=4)
    with pytest.raises(CheckpointError, match=r"^the official state dict implies an invalid configuration: "
                                              r"kernel_size must be odd"):
        DeepDeblur.from_official(even)
    with pytest.raises(CheckpointError, match=r"^the official state dict implies an invalid configuration: "
                                              r"rgb_range must be"):
        DeepDeblur.from_official(sd, rgb_range=0.0)
    for key in ("body_models.0.body.7.weight", "conv_end_models.0.uppath.0.weight", "conv_end_models.3.uppath.0.bias",
                "body_models.1.body.0.body.0.weight", "body_models.1.body.3.body.2.bias",
                "body_models.1.body.1.body.0.scale"):
        with pytest.raises(CheckpointError, match=rf"^unexpected key {re.escape(repr(key))} for a DeepDeblur-PyTorch "
                                                  r"MSResNet with 3 scales and 2 ResBlocks$"):
            DeepDeblur.from_official(dict(sd, **{key: torch.zeros(1)}))
    wrong = dict(sd, **{"body_models.1.body.1.body.0.weight": torch.zeros(2, 2, 5, 5)})
    with pytest.raises(CheckpointError, match=r"^the official state dict does not fit DeepDeblur\{'in_channels': 3, "):
        DeepDeblur.from_official(wrong)
    nan = dict(sd, **{"body_models.1.body.0.bias": torch.tensor([0.0, float("inf")])})
    with pytest.raises(CheckpointError, match=r"^official tensor for 'nets\.1\.head\.bias' holds NaN or Inf$"):
        DeepDeblur.from_official(nan)


def test_from_official_file_messages_name_the_format_and_missing_keys_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match=r"^DeepDeblur-PyTorch checkpoint not found: "):
        DeepDeblur.from_official(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"is not a readable torch checkpoint \(corrupt or not a DeepDeblur-PyTorch file\?\)"):
        DeepDeblur.from_official(tmp_path / "junk.pt")
    seven = {f"k{i}": i for i in range(7)}
    with pytest.raises(CheckpointError, match=r"first keys: \['k0', 'k1', 'k2', 'k3', 'k4'\]\)$"):
        DeepDeblur.from_official(seven)
    sd = official_state()
    del sd["body_models.1.body.2.body.2.bias"]  # loading must be strict: a missing tensor is an error
    with pytest.raises(CheckpointError, match=r"(?s)^the official state dict does not fit DeepDeblur.*Missing key"):
        DeepDeblur.from_official(sd)
