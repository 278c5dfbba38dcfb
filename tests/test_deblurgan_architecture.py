"""DeblurGAN generator and critic against independent references: functional forwards written
from the authors' layer lists, padding by hand, parameter counts for depths where the width
cap and the depth formulas differ, argument checks, and the official key maps.

Small nets (width 2–4) on 8²–24² images, float64 where the comparison needs it.
"""
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets.deblurgan import (DeblurGANCritic, DeblurGANGenerator, _pad_to, official_critic_keys,
                                      official_generator_keys)


def conv(cin, cout, k):
    return cin * cout * k * k + cout


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def randomise(net, seed=0):
    """Random weights and non-zero biases (the authors' init zeroes the biases, which hides them)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2)
    return net


# ------------------------------------------------------------------ padding
def test_pad_to_by_hand():
    x = torch.arange(1.0, 1 + 2 * 5 * 6).view(1, 2, 5, 6)
    # 5×6 → 8×8 (multiple 4): pads 3 and 2 < the sizes, so reflection
    y, size = _pad_to(x, 4, 8)
    assert size == (5, 6) and y.shape == (1, 2, 8, 8)
    rows = [0, 1, 2, 3, 4, 3, 2, 1]
    cols = [0, 1, 2, 3, 4, 5, 4, 3]
    assert torch.equal(y, x[:, :, rows][:, :, :, cols])
    # only W needs padding (H = 8 already): W 6 → 8 by reflection, H untouched
    x = torch.arange(48.0).view(1, 1, 8, 6)
    y, size = _pad_to(x, 4, 8)
    assert size == (8, 6) and torch.equal(y, x[..., cols])
    # only H: 6×8 → 8×8
    y, _ = _pad_to(x.transpose(-1, -2), 4, 8)
    assert torch.equal(y, x.transpose(-1, -2)[..., cols, :])
    # a pad equal to the size (4 → 8) cannot reflect: replication
    x = torch.arange(24.0).view(1, 1, 4, 6)
    y, _ = _pad_to(x, 4, 8)
    assert torch.equal(y, x[:, :, [0, 1, 2, 3, 3, 3, 3, 3]][..., [0, 1, 2, 3, 4, 5, 5, 5]])
    x = torch.arange(24.0).view(1, 1, 6, 4)
    y, _ = _pad_to(x, 4, 8)
    assert torch.equal(y, x[:, :, [0, 1, 2, 3, 4, 5, 5, 5]][..., [0, 1, 2, 3, 3, 3, 3, 3]])
    # multiples already: unchanged (the same values); larger than the minimum: only the multiple
    x = torch.rand(1, 3, 12, 16)
    y, size = _pad_to(x, 4, 8)
    assert size == (12, 16) and torch.equal(y, x)
    assert _pad_to(torch.rand(1, 1, 13, 9), 4, 8)[0].shape[-2:] == (16, 12)


def test_generator_pads_by_reflection_before_the_body():
    """G(x) on 13×10 equals G on the hand-reflected 16×12 image, cropped."""
    g = randomise(DeblurGANGenerator(features=2, blocks=1, dropout=0.0, clamp=False).double()).eval()
    x = torch.rand(1, 3, 13, 10, dtype=torch.float64)
    xp = x[:, :, list(range(13)) + [11, 10, 9]][..., list(range(10)) + [8, 7]]
    with torch.no_grad():
        torch.testing.assert_close(g(x), g(xp)[..., :13, :10])


# ------------------------------------------------------------------ generator forward
def generator_reference(net, x, training=False):
    """The authors' ResnetGenerator (learn_residual) from the layer list, on [0, 1] input."""
    p = dict(net.named_parameters())
    p_drop = net.config["dropout"] if training else 0.0

    def c(name, h, pad=0, stride=1):
        if pad:
            h = F.pad(h, (pad,) * 4, mode="reflect")
        return F.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"], stride=stride, padding=0 if pad else 1)

    def inr(h):
        return F.relu(F.instance_norm(h))

    a = 2 * x - 1
    h = inr(c("head", a, pad=3))
    h = inr(c("down1", h, stride=2))
    h = inr(c("down2", h, stride=2))
    for b in range(net.config["blocks"]):
        t = inr(c(f"blocks.{b}.conv1", h, pad=1))
        t = F.dropout(t, p_drop, training=training and p_drop > 0)
        h = h + F.instance_norm(c(f"blocks.{b}.conv2", t, pad=1))
    for name in ("up1", "up2"):
        h = inr(F.conv_transpose2d(h, p[f"{name}.weight"], p[f"{name}.bias"], stride=2, padding=1,
                                   output_padding=1))
    out = a + torch.tanh(c("tail", h, pad=3))
    if net.config["clamp"]:
        out = out.clamp(-1, 1)
    return (out + 1) / 2


def test_generator_matches_the_functional_forward():
    g = randomise(DeblurGANGenerator(features=3, blocks=2, dropout=0.0, clamp=False).double()).eval()
    x = torch.rand(2, 3, 16, 20, dtype=torch.float64)
    with torch.no_grad():
        out = g(x)
        torch.testing.assert_close(out, generator_reference(g, x))
    assert float(out.min()) < 0 or float(out.max()) > 1  # unclamped: the reference can go out of range


def test_generator_dropout_in_training_mode_matches_the_reference():
    g = randomise(DeblurGANGenerator(features=2, blocks=2, dropout=0.5, clamp=True).double())
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    torch.manual_seed(5)
    out = g.train()(x)
    torch.manual_seed(5)
    ref = generator_reference(g, x, training=True)
    torch.testing.assert_close(out, ref)
    # dropout is on in training mode: a different draw changes the output
    assert not torch.allclose(out, generator_reference(g, x, training=False))


def test_shipped_weights_compute_the_functional_forward():
    g = DeblurGANGenerator.pretrained()
    assert g.config == dict(in_channels=3, features=16, blocks=3, dropout=0.0, clamp=True)
    assert set(g.state_dict()) == set(DeblurGANGenerator(features=16, blocks=3, dropout=0.0).state_dict())
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(g(x), generator_reference(g, x), rtol=1e-4, atol=1e-5)


def test_one_channel_generator_and_minimal_widths():
    g = DeblurGANGenerator(in_channels=1, features=1, blocks=0)
    assert g.config["in_channels"] == 1 and g.config["blocks"] == 0 and len(g.blocks) == 0
    assert nparams(g) == conv(1, 1, 7) + conv(1, 2, 3) + conv(2, 4, 3) + conv(4, 2, 3) + conv(2, 1, 3) \
        + conv(1, 1, 7)
    assert g(torch.rand(1, 1, 9, 11)).shape == (1, 1, 9, 11)


# ------------------------------------------------------------------ critic
def critic_reference(net, x):
    """The authors' NLayerDiscriminator from its layer list (4×4, padding 2, LeakyReLU 0.2)."""
    convs = [m for m in net.model if isinstance(m, torch.nn.Conv2d)]
    n = net.config["layers"]
    h = F.leaky_relu(F.conv2d(2 * x - 1, convs[0].weight, convs[0].bias, stride=2, padding=2), 0.2)
    for cv in convs[1:n]:
        h = F.leaky_relu(F.instance_norm(F.conv2d(h, cv.weight, cv.bias, stride=2, padding=2)), 0.2)
    h = F.leaky_relu(F.instance_norm(F.conv2d(h, convs[n].weight, convs[n].bias, stride=1, padding=2)), 0.2)
    return F.conv2d(h, convs[n + 1].weight, convs[n + 1].bias, stride=1, padding=2)


@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_critic_matches_the_functional_forward(layers):
    d = randomise(DeblurGANCritic(features=2, layers=layers).double(), seed=layers)
    x = torch.rand(2, 3, 24, 20, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # instance norm warns when its width is not the input's
        out = d(x)
    torch.testing.assert_close(out, critic_reference(d, x))
    assert out.shape[-2:] == d.output_size(24, 20)


def test_critic_parameter_counts_for_every_depth():
    """Widths F·min(2**n, 8): 1, 2, 4, 8, 8 … for the stride-2 convs, then min(2**layers, 8)."""
    f = 2

    def count(layers):
        mults = [min(2 ** n, 8) for n in range(layers)]
        total = conv(3, f * mults[0], 4)
        for a, b in zip(mults, mults[1:]):
            total += conv(f * a, f * b, 4)
        last = min(2 ** layers, 8)
        return total + conv(f * mults[-1], f * last, 4) + conv(f * last, 1, 4)

    assert count(1) == conv(3, 2, 4) + conv(2, 4, 4) + conv(4, 1, 4)
    assert count(4) == conv(3, 2, 4) + conv(2, 4, 4) + conv(4, 8, 4) + conv(8, 16, 4) + conv(16, 16, 4) \
        + conv(16, 1, 4)
    for layers in (1, 2, 3, 4, 5):
        assert nparams(DeblurGANCritic(features=f, layers=layers)) == count(layers), layers
    assert nparams(DeblurGANCritic(features=16)) == 175_089  # the documented small configuration


def test_critic_accepts_one_channel_and_the_smallest_input():
    d = DeblurGANCritic(in_channels=1, features=1, layers=1)
    assert d.config == dict(in_channels=1, features=1, layers=1)
    assert d(torch.rand(1, 1, 8, 8)).shape == (1, 1) + d.output_size(8, 8)
    with pytest.raises(ValueError, match=r"^x must be at least 8×8 for the critic, got \(8, 7\)$"):
        d(torch.rand(1, 1, 8, 7))


# ------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("kw, msg", [
    (dict(in_channels=0), r"^in_channels must be an int >= 1, got 0$"),
    (dict(features=0), r"^features must be an int >= 1, got 0$"),
    (dict(blocks=-1), r"^blocks must be an int >= 0, got -1$"),
    (dict(dropout=False), r"^dropout must be a float in \[0, 1\), got False$"),
    (dict(dropout="0.5"), r"^dropout must be a float in \[0, 1\), got '0.5'$"),
    (dict(dropout=-0.1), r"^dropout must be a float in \[0, 1\), got -0.1$"),
])
def test_generator_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DeblurGANGenerator(**kw)


@pytest.mark.parametrize("kw, msg", [
    (dict(in_channels=0), r"^in_channels must be an int >= 1, got 0$"),
    (dict(features=0), r"^features must be an int >= 1, got 0$"),
    (dict(layers=0), r"^layers must be an int >= 1, got 0$"),
])
def test_critic_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DeblurGANCritic(**kw)


def test_forward_multiscale_checks_h_and_w():
    g = DeblurGANGenerator(features=2, blocks=0).eval()
    full = re.escape("x's H and W must be multiples of 4, got (16, 18); call the network itself for any size")
    with pytest.raises(ValueError, match=f"^{full}$"):
        g.forward_multiscale(torch.rand(1, 3, 16, 18))
    with pytest.raises(ValueError, match=re.escape("got (18, 16);")):
        g.forward_multiscale(torch.rand(1, 3, 18, 16))


# ------------------------------------------------------------------ official checkpoints
def test_official_key_maps_default_to_the_paper():
    assert official_generator_keys() == official_generator_keys(9, True)
    assert official_generator_keys()["model.18.conv_block.6.weight"] == "blocks.8.conv2.weight"
    assert official_generator_keys()["model.26.bias"] == "tail.bias"
    assert official_critic_keys() == official_critic_keys(3)
    assert sorted({k.rsplit(".", 1)[0] for k in official_critic_keys()}) == \
        ["model.0", "model.11", "model.2", "model.5", "model.8"]
    assert sorted({k.rsplit(".", 1)[0] for k in official_critic_keys(1)}) == ["model.0", "model.2", "model.5"]


def generator_state(blocks, c=3, f=2, seed=0):
    """The authors' ResnetGenerator keys and shapes (no dropout: second conv at index 5)."""
    net = randomise(DeblurGANGenerator(in_channels=c, features=f, blocks=blocks, dropout=0.0), seed)
    ours = net.state_dict()
    return {off: ours[mine].clone() for off, mine in official_generator_keys(blocks, False).items()}, net


def test_generator_from_official_without_blocks_and_with_one_channel(tmp_path):
    sd, ref = generator_state(blocks=0, c=1)
    assert "model.10.weight" in sd and "model.17.weight" in sd  # up1 and tail right after the down path
    torch.save(sd, tmp_path / "G0.pth")
    g = DeblurGANGenerator.from_official(tmp_path / "G0.pth")
    assert g.config == dict(in_channels=1, features=2, blocks=0, dropout=0.0, clamp=True)
    x = torch.rand(1, 1, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(g(x), ref.eval()(x))


def test_official_batch_norm_counters_are_ignored(tmp_path):
    sd, ref = generator_state(blocks=1)
    sd.update({"model.2.running_mean": torch.zeros(2), "model.2.running_var": torch.ones(2),
               "model.2.num_batches_tracked": torch.tensor(7)})
    torch.save(sd, tmp_path / "G.pth")
    g = DeblurGANGenerator.from_official(tmp_path / "G.pth")
    assert torch.equal(g.state_dict()["head.weight"], ref.state_dict()["head.weight"])
    crit = {k: v.clone() for k, v in randomise(DeblurGANCritic(features=2, layers=1)).state_dict().items()}
    crit["model.3.num_batches_tracked"] = torch.tensor(1)
    torch.save(crit, tmp_path / "D.pth")
    assert DeblurGANCritic.from_official(tmp_path / "D.pth").config["layers"] == 1


def test_official_errors_name_the_file_and_the_keys(tmp_path):
    sd, _ = generator_state(blocks=1)
    sd["model.4.weight"] = torch.zeros(3, 2, 3, 3)
    torch.save(sd, tmp_path / "bad_shape.pth")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "bad_shape.pth")) + ": 'model.4.weight'"):
        DeblurGANGenerator.from_official(tmp_path / "bad_shape.pth")
    foreign = {"a.weight": torch.zeros(1), "b.weight": torch.zeros(1), "c.weight": torch.zeros(1),
               "d.weight": torch.zeros(1), "e.weight": torch.zeros(1)}
    torch.save(foreign, tmp_path / "foreign.pth")
    keys = re.escape("keys start ['a.weight', 'b.weight', 'c.weight', 'd.weight'])")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "foreign.pth"))
                       + r": not a DeblurGAN ResnetGenerator state dict \(no 'model.1.weight'; " + keys + "$"):
        DeblurGANGenerator.from_official(tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "foreign.pth"))
                       + r": not a DeblurGAN NLayerDiscriminator state dict \(no 'model.0.weight'; " + keys + "$"):
        DeblurGANCritic.from_official(tmp_path / "foreign.pth")
    crit = randomise(DeblurGANCritic(features=2, layers=1)).state_dict()
    crit["model.2.weight"] = torch.zeros(4, 2, 3, 3)
    torch.save(crit, tmp_path / "bad_critic.pth")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "bad_critic.pth")) + ": 'model.2.weight'"):
        DeblurGANCritic.from_official(tmp_path / "bad_critic.pth")


@pytest.mark.parametrize("layers, c", [(1, 1), (4, 3)])
def test_critic_from_official_reads_depth_and_channels(tmp_path, layers, c):
    src = randomise(DeblurGANCritic(in_channels=c, features=2, layers=layers).double(), seed=layers).eval()
    torch.save({k: v.float() for k, v in src.state_dict().items()}, tmp_path / "D.pth")
    d = DeblurGANCritic.from_official(tmp_path / "D.pth")
    assert d.config == dict(in_channels=c, features=2, layers=layers)
    x = torch.rand(1, c, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(d(x), src.float()(x))
