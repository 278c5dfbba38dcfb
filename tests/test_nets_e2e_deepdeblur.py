"""DeepDeblur (Nah et al.), its discriminator, and the multi-scale loss / pyramid."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.multiscale import gaussian_downsample, image_pyramid, multiscale_mse
from pnpdeblur.nets.deepdeblur import DeepDeblur, DeepDeblurDiscriminator

SMALL = dict(features=8, blocks=1)




def conv_params(cin, cout, k, bias=True):
    return cout * cin * k * k + (cout if bias else 0)


def small_net(seed=0, **kw):
    torch.manual_seed(seed)
    return DeepDeblur(**{**SMALL, **kw})


# ----------------------------------------------------------------------------- loss and pyramid
def test_image_pyramid_matches_skimage_pyramid_gaussian():
    from skimage.transform import pyramid_gaussian

    torch.manual_seed(0)
    for h, w in ((16, 12), (15, 11)):
        x = torch.rand(2, 3, h, w, dtype=torch.float64)
        ours = image_pyramid(x, 3)
        assert [tuple(p.shape[-2:]) for p in ours] == [(-(-h // 4), -(-w // 4)), (-(-h // 2), -(-w // 2)), (h, w)]
        assert torch.equal(ours[-1], x)
        for n in range(2):
            ref = list(pyramid_gaussian(x[n].permute(1, 2, 0).numpy(), 2, channel_axis=-1))[::-1]
            for a, b in zip(ours, ref):
                np.testing.assert_allclose(a[n].permute(1, 2, 0).numpy(), b, atol=1e-12)


def test_gaussian_downsample_hand_values():
    # constant stays constant; a single column step is blurred symmetrically then 2x2-averaged
    x = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    assert torch.allclose(gaussian_downsample(x), torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64))
    x = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x[..., 0] = 1.0  # left column
    k = torch.exp(-0.5 * (torch.arange(-3, 4, dtype=torch.float64) / (2 / 3)) ** 2)
    k = k / k.sum()
    # symmetric extension of the row [1 0 0 0]: ... 0 0 1 | 1 0 0 0 | 0 0 0 ...
    row = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0, 0, 0], dtype=torch.float64)
    blurred = torch.stack([(row[i:i + 7] * k).sum() for i in range(4)])
    expect = torch.stack([(blurred[0] + blurred[1]) / 2, (blurred[2] + blurred[3]) / 2])
    got = gaussian_downsample(x)
    assert got.shape == (1, 1, 2, 2)
    assert torch.allclose(got[0, 0, 0], expect) and torch.allclose(got[0, 0, 1], expect)


def test_multiscale_mse_hand_computed():
    outs = [torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 2, 2)]
    tgts = [torch.tensor([[[[1.0, 3.0]]]]), torch.ones(1, 1, 2, 2)]
    # scale 1: (1 + 9) / 2 = 5, scale 2: 1 → mean 3
    assert multiscale_mse(outs, tgts).item() == pytest.approx(3.0)
    # a sharp image as target means its pyramid
    sharp = torch.rand(1, 3, 8, 8)
    pred = [torch.rand(1, 3, 2, 2), torch.rand(1, 3, 4, 4), torch.rand(1, 3, 8, 8)]
    pyr = image_pyramid(sharp, 3)
    expect = sum(((p - t) ** 2).mean() for p, t in zip(pred, pyr)) / 3
    assert torch.allclose(multiscale_mse(pred, sharp), expect)
    with pytest.raises(ValueError, match="outputs\\[0\\]"):
        multiscale_mse([torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 3, 3)])
    with pytest.raises(ValueError, match="one tensor per output"):
        multiscale_mse(outs, tgts[:1])
    with pytest.raises(TypeError, match="outputs"):
        multiscale_mse(torch.zeros(1, 1, 2, 2), tgts)


# ----------------------------------------------------------------------------- architecture
def test_default_parameter_count_from_layer_list():
    c, f, b, k = 3, 64, 19, 5
    per_scale = lambda cin: conv_params(cin, f, k) + b * 2 * conv_params(f, f, k) + conv_params(f, c, k)
    expect = per_scale(c) + 2 * per_scale(2 * c) + 2 * conv_params(c, 4 * c, k)  # 2 sub-pixel up-convs
    with torch.device("meta"):
        net = DeepDeblur()
        transposed = DeepDeblur(upsample="transposed")
    assert net.num_parameters() == expect
    assert 11.6e6 < expect < 11.8e6  # the paper/issue's ≈ 11.7 M
    # 3 scales × (head + 2·19 + tail) = 120 convolutions (the paper's count) + 2 up-convolutions
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 120 + 2
    assert transposed.num_parameters() == expect - 2 * conv_params(c, 4 * c, k) + 2 * (c * c * k * k + c)


def test_discriminator_parameter_count_and_strides():
    widths = [3, 32, 64, 64, 128, 128, 256, 256, 512, 512, 1024]  # Table 1
    expect = sum(conv_params(widths[i], widths[i + 1], 5, bias=False) for i in range(10)) + 1024 + 1
    with torch.device("meta"):
        d = DeepDeblurDiscriminator()
    assert sum(p.numel() for p in d.parameters()) == expect
    # a 256² crop shrinks to 1×1 through the strides 2,1,2,1,2,1,4,1,4,2
    small = DeepDeblurDiscriminator(base=2)
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = tuple(output.shape)

    small.convs[-1].register_forward_hook(hook)
    out = small(torch.rand(2, 3, 256, 256))
    assert seen["shape"] == (2, 64, 1, 1) and out.shape == (2, 1)


def test_forward_any_size_and_multiscale_shapes():
    net = small_net().eval()
    x = torch.rand(1, 3, 50, 67)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    outs = net.forward_multiscale(torch.rand(2, 3, 16, 24))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 6), (2, 3, 8, 12), (2, 3, 16, 24)]
    assert net.stride == 4 and DeepDeblur(scales=2, **SMALL).stride == 2
    with pytest.raises(ValueError, match="multiples of DeepDeblur.stride = 4"):
        net.forward_multiscale(torch.rand(1, 3, 18, 16))
    # forward = finest output of forward_multiscale on the reflection-padded input
    x = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        ref = net.forward_multiscale(F.pad(x, (0, 2, 0, 3), mode="reflect"))[-1][..., :13, :10]
        assert torch.allclose(net(x), ref)


def test_coarse_output_feeds_finer_scale():
    # changing only the coarsest sub-network must change the finest output (the up-conv path exists)
    net = small_net().eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        a = net(x)
        net.nets[0].tail.bias.add_(0.5)
        b = net(x)
    assert (a - b).abs().max() > 1e-4


def test_gradients_reach_every_parameter():
    net = small_net()
    x, s = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    multiscale_mse(net.forward_multiscale(x), s).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    d = DeepDeblurDiscriminator(base=2)
    d(torch.rand(2, 3, 32, 32)).sum().backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_adam_steps_lower_multiscale_loss():
    net = small_net(seed=1)
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 16, 16, generator=g)
    blurred = F.avg_pool2d(F.pad(sharp, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = multiscale_mse(net.forward_multiscale(blurred), sharp)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    net = small_net(seed=3, upsample="transposed", rgb_range=2.0).eval()
    path = net.save(tmp_path / "dd.safetensors")
    back = DeepDeblur.from_checkpoint(path)
    assert back.config == net.config
    x = torch.rand(1, 3, 12, 9)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    with pytest.raises(CheckpointError, match="DeepDeblur"):
        DeepDeblurDiscriminator.from_checkpoint(path)
    dpath = DeepDeblurDiscriminator(base=2).save(tmp_path / "d.safetensors")
    with pytest.raises(CheckpointError, match="DeepDeblurDiscriminator"):
        DeepDeblur.from_checkpoint(dpath)
    assert DeepDeblurDiscriminator.from_checkpoint(dpath).config["base"] == 2


# ----------------------------------------------------------------------------- official weights
def official_state(feats=8, blocks=2, scales=3, k=5, seed=0):
    """Random tensors with DeepDeblur-PyTorch's MSResNet key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.05
    sd = {}
    for s in range(scales):
        cin = 3 if s == scales - 1 else 6  # body_models[-1] is the coarsest
        sd[f"body_models.{s}.body.0.weight"], sd[f"body_models.{s}.body.0.bias"] = r(feats, cin, k, k), r(feats)
        for i in range(1, blocks + 1):
            for j in (0, 2):
                sd[f"body_models.{s}.body.{i}.body.{j}.weight"] = r(feats, feats, k, k)
                sd[f"body_models.{s}.body.{i}.body.{j}.bias"] = r(feats)
        sd[f"body_models.{s}.body.{blocks + 1}.weight"] = r(3, feats, k, k)
        sd[f"body_models.{s}.body.{blocks + 1}.bias"] = r(3)
    for s in range(1, scales):
        sd[f"conv_end_models.{s}.uppath.0.weight"], sd[f"conv_end_models.{s}.uppath.0.bias"] = r(12, 3, k, k), r(12)
    return sd


def official_forward(sd, x255, scales=3, blocks=2):
    """Their MSResNet.forward written out with F.conv2d on their keys; pyramid from skimage."""
    from skimage.transform import pyramid_gaussian

    def conv(t, key):
        w = sd[key + ".weight"]
        return F.conv2d(t, w, sd[key + ".bias"], padding=w.shape[-1] // 2)

    img = x255[0].permute(1, 2, 0).double().numpy()
    pyr = [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1)[None].float()
           for p in pyramid_gaussian(img, scales - 1, channel_axis=-1)]  # 0: fine
    pyr = [p - 127.5 for p in pyr]
    outs = [None] * scales
    inp = pyr[-1]
    for s in range(scales - 1, -1, -1):
        h = conv(inp, f"body_models.{s}.body.0")
        for i in range(1, blocks + 1):
            h = h + conv(F.relu(conv(h, f"body_models.{s}.body.{i}.body.0")), f"body_models.{s}.body.{i}.body.2")
        outs[s] = conv(h, f"body_models.{s}.body.{blocks + 1}")
        if s > 0:
            inp = torch.cat((pyr[s - 1], F.pixel_shuffle(conv(outs[s], f"conv_end_models.{s}.uppath.0"), 2)), 1)
    return [o + 127.5 for o in outs]  # 0: fine


def test_from_official_matches_their_forward(tmp_path):
    sd = official_state()
    path = tmp_path / "model-1.pt"
    torch.save({"G": sd, "D": {"conv_layers.0.weight": torch.zeros(16, 3, 5, 5)}}, path)
    net = DeepDeblur.from_official(path)
    assert not net.training
    assert net.config == dict(in_channels=3, features=8, blocks=2, scales=3, kernel_size=5,
                              upsample="pixelshuffle", rgb_range=255.0, residual=False)
    # key-by-key: ours coarse → fine, theirs fine (0) → coarse (2)
    assert torch.equal(net.nets[0].head.weight, sd["body_models.2.body.0.weight"])
    assert torch.equal(net.nets[2].body[1].conv2.bias, sd["body_models.0.body.2.body.2.bias"])
    assert torch.equal(net.nets[1].tail.weight, sd["body_models.1.body.3.weight"])
    assert torch.equal(net.ups[0][0].weight, sd["conv_end_models.2.uppath.0.weight"])
    assert torch.equal(net.ups[1][0].bias, sd["conv_end_models.1.uppath.0.bias"])
    torch.manual_seed(0)
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        ours = net.forward_multiscale(x)
    theirs = official_forward(sd, x * 255.0)
    for o, t in zip(ours, theirs[::-1]):
        assert torch.allclose(o, t / 255.0, atol=2e-5), (o - t / 255).abs().max()
    # DataParallel prefixes and a bare state dict load the same
    net2 = DeepDeblur.from_official({"module." + k: v for k, v in sd.items()})
    with torch.no_grad():
        assert torch.equal(net2(x), net(x))


def test_from_official_rejects_foreign_or_broken_dicts(tmp_path):
    with pytest.raises(CheckpointError, match="not a DeepDeblur-PyTorch"):
        DeepDeblur.from_official({"conv1.weight": torch.zeros(8, 3, 3, 3)})
    sd = official_state()
    extra = dict(sd, **{"body_models.0.body.9.body.0.weight": torch.zeros(8, 8, 5, 5)})
    with pytest.raises(CheckpointError):
        DeepDeblur.from_official(extra)
    missing = dict(sd)
    del missing["conv_end_models.1.uppath.0.bias"]
    with pytest.raises(CheckpointError, match="does not fit"):
        DeepDeblur.from_official(missing)
    bad_shape = dict(sd, **{"body_models.1.body.1.body.0.weight": torch.zeros(8, 8, 3, 3)})
    with pytest.raises(CheckpointError):
        DeepDeblur.from_official(bad_shape)
    nan = dict(sd, **{"body_models.1.body.0.bias": torch.full((8,), float("nan"))})
    with pytest.raises(CheckpointError, match="NaN"):
        DeepDeblur.from_official(nan)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        DeepDeblur.from_official(junk)
    with pytest.raises(CheckpointError, match="not found"):
        DeepDeblur.from_official(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- bad input
def test_bad_input_and_config():
    net = small_net()
    with pytest.raises(ValueError, match="x must have shape \\(N, 3, H, W\\)"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="x must have shape \\(N, 3, H, W\\)"):
        net(torch.rand(1, 1, 16, 16))
    x = torch.rand(1, 3, 16, 16)
    x[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(x)
    with pytest.raises(ValueError, match="NaN"):
        net.forward_multiscale(x)
    with pytest.raises(TypeError, match="floating-point"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor"):
        net(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ValueError, match="x must have shape"):
        DeepDeblurDiscriminator(base=2)(torch.rand(1, 4, 16, 16))
    for kw, word in ((dict(features=0), "features"), (dict(kernel_size=4), "kernel_size"),
                     (dict(upsample="bilinear"), "upsample"), (dict(rgb_range=-1.0), "rgb_range"),
                     (dict(blocks=1.5), "blocks")):
        with pytest.raises(ValueError, match=word):
            DeepDeblur(**kw)


def test_residual_option_adds_each_input_level():
    from pnpdeblur.losses.multiscale import image_pyramid

    torch.manual_seed(0)
    net = DeepDeblur(features=4, blocks=1, residual=True)
    plain = DeepDeblur(features=4, blocks=1)
    plain.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 16, 20)
    pyr = image_pyramid(x, 3)
    # the coarsest scale sees the same input in both nets: same body, plus its centred input level
    # (finer scales then differ through the up-convolved coarser output)
    torch.testing.assert_close(net.forward_multiscale(x)[0], plain.forward_multiscale(x)[0] + pyr[0] - 0.5)
    with torch.no_grad():  # a zero tail makes every scale the identity on its level
        for s in net.nets:
            s.tail.weight.zero_()
            s.tail.bias.zero_() if s.tail.bias is not None else None
    for a, p in zip(net.forward_multiscale(x), pyr):
        torch.testing.assert_close(a, p)
    with pytest.raises(TypeError, match="residual"):
        DeepDeblur(residual=1)
