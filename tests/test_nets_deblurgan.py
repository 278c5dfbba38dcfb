"""DeblurGAN generator and critic, their official-checkpoint loaders and the DeblurGAN losses."""
import math

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.deblurgan import (content_loss, deblurgan_critic_loss, deblurgan_generator_loss,
                                        deblurgan_losses)
from pnpdeblur.nets.deblurgan import DeblurGANCritic, DeblurGANGenerator




def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def small(**kw):
    torch.manual_seed(0)
    cfg = dict(features=8, blocks=2)
    cfg.update(kw)
    return DeblurGANGenerator(**cfg)


# ------------------------------------------------------------------ architecture
def test_paper_parameter_counts_from_the_layer_lists():
    # generator: 7×7 conv, two 3×3 stride-2 convs, 9 blocks of two 3×3 convs at 256, two 3×3
    # transposed convs, 7×7 conv to RGB; every conv has a bias (instance norm has no affine)
    g = conv(3, 64, 7) + conv(64, 128, 3) + conv(128, 256, 3) + 9 * 2 * conv(256, 256, 3) \
        + conv(256, 128, 3) + conv(128, 64, 3) + conv(64, 3, 7)
    assert nparams(DeblurGANGenerator()) == g == 11_378_179
    # critic: 4×4 convs 3→64→128→256 (stride 2), 256→512 (stride 1), 512→1
    d = conv(3, 64, 4) + conv(64, 128, 4) + conv(128, 256, 4) + conv(256, 512, 4) + conv(512, 1, 4)
    assert nparams(DeblurGANCritic()) == d
    # small CPU configuration documented in the module
    assert nparams(DeblurGANGenerator(features=16, blocks=3)) == conv(3, 16, 7) + conv(16, 32, 3) \
        + conv(32, 64, 3) + 3 * 2 * conv(64, 64, 3) + conv(64, 32, 3) + conv(32, 16, 3) + conv(16, 3, 7)


def test_paper_configuration_is_the_default():
    g = DeblurGANGenerator()
    assert g.config == dict(in_channels=3, features=64, blocks=9, dropout=0.5, clamp=True)
    assert len(g.blocks) == 9 and g.blocks[0].dropout.p == 0.5
    assert g.down1.stride == (2, 2) and g.up1.output_padding == (1, 1) and g.head.kernel_size == (7, 7)
    assert g.head.padding_mode == "reflect" and g.blocks[0].conv1.padding_mode == "reflect"
    assert g.stride == 4
    d = DeblurGANCritic()
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())
    assert isinstance(d.model[-1], torch.nn.Conv2d) and d.model[-1].out_channels == 1


def test_odd_sizes_return_the_input_size():
    g = DeblurGANGenerator(features=16, blocks=3)
    with torch.no_grad():
        y = g(torch.rand(1, 3, 250, 333))
    assert y.shape == (1, 3, 250, 333) and float(y.min()) >= 0 and float(y.max()) <= 1
    assert g(torch.rand(2, 3, 5, 3)).shape == (2, 3, 5, 3)  # smaller than the padding
    with torch.no_grad():
        assert DeblurGANGenerator().eval()(torch.rand(1, 3, 50, 67)).shape == (1, 3, 50, 67)


def test_global_skip_and_value_mapping():
    """G(x) = clamp(x + tanh(body(2x - 1)) / 2, 0, 1): force the body's output to a constant."""
    g = small().eval()
    x = torch.rand(2, 3, 19, 22) * 0.6 + 0.2
    with torch.no_grad():
        g.tail.weight.zero_()
        g.tail.bias.zero_()
        assert torch.equal(g(x), x) or torch.allclose(g(x), x, atol=1e-7)
        g.tail.bias.fill_(math.atanh(0.5))  # residual 0.5 in [-1, 1] units = 0.25 in [0, 1]
        torch.testing.assert_close(g(x), (x + 0.25).clamp(0, 1))
        g.tail.bias.fill_(math.atanh(-0.9))  # −0.45: clamped at 0 where x < 0.45
        torch.testing.assert_close(g(x), (x - 0.45).clamp(0, 1))


def test_forward_multiscale_contract():
    g = small().eval()
    x = torch.rand(1, 3, 16, 24)
    out = g.forward_multiscale(x)
    assert isinstance(out, list) and len(out) == 1
    torch.testing.assert_close(out[0], g(x))
    with pytest.raises(ValueError, match="multiples of 4"):
        g.forward_multiscale(torch.rand(1, 3, 18, 24))


def test_bad_input():
    g = small()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3, H, W\)"):
        g(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3, H, W\)"):
        g(torch.rand(1, 1, 16, 16))
    bad = torch.rand(1, 3, 16, 16)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="x holds NaN"):
        g(bad)
    with pytest.raises(TypeError, match="floating-point"):
        g(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least 8"):
        DeblurGANCritic(features=4)(torch.rand(1, 3, 7, 20))
    with pytest.raises(ValueError, match="blocks"):
        DeblurGANGenerator(blocks=-1)
    with pytest.raises(ValueError, match="dropout"):
        DeblurGANGenerator(dropout=1.0)


# ------------------------------------------------------------------ training
def test_gradients_reach_every_parameter():
    g = small()
    d = DeblurGANCritic(features=4)
    x = torch.rand(2, 3, 16, 16) * 0.5 + 0.25  # away from the clamp
    losses = deblurgan_losses(d, g(x), torch.rand(2, 3, 16, 16))
    (losses["generator"] + losses["critic"]).backward()
    for net in (g, d):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing, missing


def test_adam_lowers_the_content_loss_on_a_fixed_batch():
    g = small(dropout=0.0)
    torch.manual_seed(1)
    sharp = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
    blurred = F.avg_pool2d(F.pad(sharp, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    opt = torch.optim.Adam(g.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        loss = content_loss(g(blurred), sharp, "l1")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


# ------------------------------------------------------------------ critic and losses
def test_critic_output_shape_for_odd_sizes():
    d = DeblurGANCritic(features=4)
    for h, w in ((37, 45), (8, 9), (64, 65)):
        eh, ew = h, w
        for _ in range(3):  # 4×4, stride 2, padding 2: floor((n + 4 - 4) / 2) + 1
            eh, ew = (eh + 4 - 4) // 2 + 1, (ew + 4 - 4) // 2 + 1
        eh, ew = eh + 2, ew + 2  # two stride-1 4×4 convs with padding 2 add one each
        assert d(torch.rand(2, 3, h, w)).shape == (2, 1, eh, ew)
        assert d.output_size(h, w) == (eh, ew)


def test_critic_scores_are_unbounded():
    d = DeblurGANCritic(features=4)
    with torch.no_grad():
        d.model[-1].bias.fill_(5.0)
    with torch.no_grad():
        assert float(d(torch.rand(1, 3, 16, 16)).min()) > 1.0  # no sigmoid


def test_losses_against_hand_computed_values_with_a_linear_critic():
    """D(x) = Σ a·x per sample: ∇D = a, so GP = (‖a‖ − 1)² whatever the interpolation."""
    torch.manual_seed(0)
    a = torch.randn(1, 3, 4, 5) * 0.1
    critic = lambda x: (x * a).flatten(1).sum(1)  # noqa: E731
    fake = torch.rand(2, 3, 4, 5, requires_grad=True)
    real = torch.rand(2, 3, 4, 5)
    out = deblurgan_critic_loss(critic, fake, real, gp_weight=10.0)
    d_real = (real * a).flatten(1).sum(1).mean()
    d_fake = (fake.detach() * a).flatten(1).sum(1).mean()
    gp = (a.norm() - 1) ** 2
    torch.testing.assert_close(out["gradient_penalty"], gp)
    torch.testing.assert_close(out["critic"], d_fake - d_real + 10 * gp)
    torch.testing.assert_close(out["wasserstein"], d_real - d_fake)
    gen = deblurgan_generator_loss(critic, fake, real, content="mse", content_weight=100.0)
    torch.testing.assert_close(gen["content"], ((fake - real) ** 2).mean())
    torch.testing.assert_close(gen["generator"], 100 * ((fake - real) ** 2).mean() - d_fake)
    # a feature extractor replaces the pixels: features x ↦ 2x give 4× the MSE
    feat = deblurgan_generator_loss(critic, fake, real, content="mse", feature_extractor=lambda x: 2 * x)
    torch.testing.assert_close(feat["content"], 4 * ((fake - real) ** 2).mean())
    # the critic loss does not reach the generator's output (the critic has no parameters here)
    assert not out["critic"].requires_grad and gen["generator"].requires_grad


def test_gradient_penalty_runs_on_the_critic():
    d = DeblurGANCritic(features=4)
    g = small()
    sharp = torch.rand(2, 3, 20, 24)
    out = deblurgan_critic_loss(d, g(torch.rand(2, 3, 20, 24)), sharp, generator=torch.Generator().manual_seed(3))
    assert bool(torch.isfinite(out["critic"])) and float(out["gradient_penalty"].detach()) >= 0
    out["critic"].backward()
    assert all(p.grad is not None for p in d.parameters())
    assert all(p.grad is None for p in g.parameters())
    with pytest.raises(ValueError, match="deblurred and sharp"):
        deblurgan_critic_loss(d, torch.rand(1, 3, 20, 24), sharp)
    with pytest.raises(ValueError, match="kind"):
        content_loss(sharp, sharp, "l3")


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    g = small().eval()
    path = g.save(tmp_path / "g.safetensors")
    g2 = DeblurGANGenerator.from_checkpoint(path)
    assert g2.config == g.config
    x = torch.rand(1, 3, 17, 21)
    torch.testing.assert_close(g2(x), g(x))
    with pytest.raises(CheckpointError, match="DeblurGANGenerator"):
        DeblurGANCritic.from_checkpoint(path)
    d = DeblurGANCritic(features=4)
    dpath = d.save(tmp_path / "d.safetensors")
    torch.testing.assert_close(DeblurGANCritic.from_checkpoint(dpath)(x), d.eval()(x))
    with pytest.raises(CheckpointError):
        DeblurGANGenerator.from_checkpoint(dpath)
    with pytest.raises(FileNotFoundError, match="DeblurGANCritic"):
        DeblurGANCritic.pretrained()  # no critic weights ship
    shipped = DeblurGANGenerator.pretrained()  # the CPU demonstration weights
    assert not shipped.training and shipped.header["architecture"] == "DeblurGANGenerator"
    assert shipped(x).shape == x.shape


def official_generator_state(f=8, blocks=9, dropout=True, c=3, seed=0):
    """Random tensors under the authors' ResnetGenerator key names and shapes (hand-listed)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen) * 0.05  # noqa: E731
    sd = {"model.1.weight": r(f, c, 7, 7), "model.1.bias": r(f),
          "model.2.running_mean": torch.zeros(f), "model.2.running_var": torch.ones(f),  # PyTorch 0.3 IN buffers
          "model.4.weight": r(2 * f, f, 3, 3), "model.4.bias": r(2 * f),
          "model.7.weight": r(4 * f, 2 * f, 3, 3), "model.7.bias": r(4 * f)}
    second = 6 if dropout else 5
    for b in range(blocks):
        for j in (1, second):
            sd[f"model.{10 + b}.conv_block.{j}.weight"] = r(4 * f, 4 * f, 3, 3)
            sd[f"model.{10 + b}.conv_block.{j}.bias"] = r(4 * f)
    # ConvTranspose2d weights are (in, out, k, k)
    sd.update({f"model.{10 + blocks}.weight": r(4 * f, 2 * f, 3, 3), f"model.{10 + blocks}.bias": r(2 * f),
               f"model.{13 + blocks}.weight": r(2 * f, f, 3, 3), f"model.{13 + blocks}.bias": r(f),
               f"model.{17 + blocks}.weight": r(c, f, 7, 7), f"model.{17 + blocks}.bias": r(c)})
    return sd


def reference_forward(sd, a, blocks, second):
    """The authors' learn_residual forward, written from their layer list, on [-1, 1] input."""
    def cbr(h, i, relu=True, pad=0, stride=1):
        if pad:
            h = F.pad(h, (pad,) * 4, mode="reflect")
        h = F.instance_norm(F.conv2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"], stride=stride,
                                     padding=0 if pad else 1))
        return F.relu(h) if relu else h

    h = cbr(a, 1, pad=3)
    h = cbr(h, 4, stride=2)
    h = cbr(h, 7, stride=2)
    for b in range(blocks):
        k = f"model.{10 + b}.conv_block"
        t = F.relu(F.instance_norm(F.conv2d(F.pad(h, (1,) * 4, mode="reflect"), sd[f"{k}.1.weight"],
                                            sd[f"{k}.1.bias"])))
        t = F.instance_norm(F.conv2d(F.pad(t, (1,) * 4, mode="reflect"), sd[f"{k}.{second}.weight"],
                                     sd[f"{k}.{second}.bias"]))
        h = h + t
    for i in (10 + blocks, 13 + blocks):
        h = F.relu(F.instance_norm(F.conv_transpose2d(h, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"],
                                                      stride=2, padding=1, output_padding=1)))
    i = 17 + blocks
    h = torch.tanh(F.conv2d(F.pad(h, (3,) * 4, mode="reflect"), sd[f"model.{i}.weight"], sd[f"model.{i}.bias"]))
    return torch.clamp(a + h, -1, 1)


def test_from_official_maps_every_tensor(tmp_path):
    sd = official_generator_state()
    path = tmp_path / "G.pth"
    torch.save(sd, path)
    g = DeblurGANGenerator.from_official(path)
    assert not g.training
    assert g.config == dict(in_channels=3, features=8, blocks=9, dropout=0.5, clamp=True)
    expected = {"model.1": "head", "model.4": "down1", "model.7": "down2", "model.19": "up1", "model.22": "up2",
                "model.26": "tail"}
    for b in range(9):
        expected[f"model.{10 + b}.conv_block.1"] = f"blocks.{b}.conv1"
        expected[f"model.{10 + b}.conv_block.6"] = f"blocks.{b}.conv2"
    ours = g.state_dict()
    assert len(ours) == 2 * len(expected)
    for off, mine in expected.items():
        for p in ("weight", "bias"):
            assert torch.equal(ours[f"{mine}.{p}"], sd[f"{off}.{p}"]), (off, mine)
    # and the network computes the authors' function on [0, 1] images
    x = torch.rand(1, 3, 16, 20)
    torch.testing.assert_close(g(x), (reference_forward(sd, 2 * x - 1, 9, 6) + 1) / 2, rtol=1e-4, atol=1e-5)


def test_from_official_variants_and_foreign_dicts(tmp_path):
    # no dropout (second conv at index 5), DataParallel prefix, wrapped in {'state_dict': ...}
    sd = official_generator_state(blocks=2, dropout=False, seed=1)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "a.pth")
    g = DeblurGANGenerator.from_official(tmp_path / "a.pth")
    assert g.config["blocks"] == 2 and g.config["dropout"] == 0.0
    assert torch.equal(g.state_dict()["blocks.1.conv2.weight"], sd["model.11.conv_block.5.weight"])
    assert torch.equal(g.state_dict()["tail.bias"], sd["model.19.bias"])
    x = torch.rand(1, 3, 12, 8)
    torch.testing.assert_close(g(x), (reference_forward(sd, 2 * x - 1, 2, 5) + 1) / 2, rtol=1e-4, atol=1e-5)

    bad = dict(sd)
    bad["model.4.weight"] = torch.zeros(5, 8, 3, 3)
    torch.save(bad, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="model.4.weight"):
        DeblurGANGenerator.from_official(tmp_path / "b.pth")
    extra = dict(sd, **{"model.30.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="unexpected"):
        DeblurGANGenerator.from_official(tmp_path / "c.pth")
    torch.save({"conv1.0.weight": torch.zeros(8, 6, 7, 7)}, tmp_path / "flownet.pth")
    with pytest.raises(CheckpointError, match="not a DeblurGAN"):
        DeblurGANGenerator.from_official(tmp_path / "flownet.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="readable"):
        DeblurGANGenerator.from_official(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not found"):
        DeblurGANGenerator.from_official(tmp_path / "missing.pth")


def test_critic_from_official(tmp_path):
    gen = torch.Generator().manual_seed(2)
    f = 4
    shapes = {0: (f, 3), 2: (2 * f, f), 5: (4 * f, 2 * f), 8: (8 * f, 4 * f), 11: (1, 8 * f)}
    sd = {}
    for i, (o, c) in shapes.items():
        sd[f"model.{i}.weight"] = torch.randn(o, c, 4, 4, generator=gen)
        sd[f"model.{i}.bias"] = torch.randn(o, generator=gen)
    torch.save(sd, tmp_path / "D.pth")
    d = DeblurGANCritic.from_official(tmp_path / "D.pth")
    assert d.config == dict(in_channels=3, features=4, layers=3)
    for k, v in sd.items():
        assert torch.equal(d.state_dict()[k], v)
    torch.save(official_generator_state(blocks=1), tmp_path / "G.pth")
    with pytest.raises(CheckpointError):
        DeblurGANCritic.from_official(tmp_path / "G.pth")
