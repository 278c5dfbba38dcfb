"""FlowNetS against independent references: a functional forward written from the layer list of
Dosovitskiy et al. (table/figure of FlowNetSimple; Pinard's and NVIDIA's PyTorch layouts) for
every layout (batch norm, head biases, each input normalisation), parameter counts from the
layer list, hand-computed input stacking, argument checks and the official loader's choices.

Width 2, float64, 64×128 and odd 37×53 frames: each test well under a second.
"""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets.flownets import PINARD_MEAN, FlowNetS
from _nets import randomise_state


def randomise(net, seed=0):
    return randomise_state(net, seed, scale=0.2)


# (name, cin multiple (None: 2·C), cout multiple, kernel, stride) from the paper's figure
ENCODER = [("conv1", None, 1, 7, 2), ("conv2", 1, 2, 5, 2), ("conv3", 2, 4, 5, 2), ("conv3_1", 4, 4, 3, 1),
           ("conv4", 4, 8, 3, 2), ("conv4_1", 8, 8, 3, 1), ("conv5", 8, 8, 3, 2), ("conv5_1", 8, 8, 3, 1),
           ("conv6", 8, 16, 3, 2), ("conv6_1", 16, 16, 3, 1)]


def reference_internal(net, x):
    """[flow6 … flow2] in internal units, from the layer list with functional ops (eval mode)."""
    sd = net.state_dict()
    bn = net.config["batch_norm"]

    def enc(name, h, k, s):
        h = F.conv2d(h, sd[f"{name}.0.weight"], sd.get(f"{name}.0.bias"), stride=s, padding=(k - 1) // 2)
        if bn:
            h = F.batch_norm(h, sd[f"{name}.1.running_mean"], sd[f"{name}.1.running_var"], sd[f"{name}.1.weight"],
                             sd[f"{name}.1.bias"], training=False, eps=1e-5)
        return F.leaky_relu(h, 0.1)

    feats = {}
    h = x
    for name, _, _, k, s in ENCODER:
        h = feats[name] = enc(name, h, k, s)
    feat = h
    flow = F.conv2d(feat, sd["predict_flow6.weight"], sd.get("predict_flow6.bias"), padding=1)
    flows = [flow]
    for k, skip in ((5, "conv5_1"), (4, "conv4_1"), (3, "conv3_1"), (2, "conv2")):
        up_flow = F.conv_transpose2d(flow, sd[f"upsampled_flow{k + 1}_to_{k}.weight"], stride=2, padding=1)
        up_feat = F.leaky_relu(F.conv_transpose2d(feat, sd[f"deconv{k}.0.weight"], sd.get(f"deconv{k}.0.bias"),
                                                  stride=2, padding=1), 0.1)
        feat = torch.cat((feats[skip], up_feat, up_flow), 1)
        flow = F.conv2d(feat, sd[f"predict_flow{k}.weight"], sd.get(f"predict_flow{k}.bias"), padding=1)
        flows.append(flow)
    return flows


def stacked(a, b, mean):
    if mean == "pair":
        m = (a.mean((2, 3), keepdim=True) + b.mean((2, 3), keepdim=True)) / 2
    elif mean is None:
        m = 0.0
    else:
        m = torch.tensor(mean, dtype=a.dtype).view(1, -1, 1, 1)
    return torch.cat((a - m, b - m), 1)


LAYOUTS = [dict(), dict(batch_norm=True, input_mean="pair"), dict(head_bias=True, input_mean=None, div_flow=5.0),
           dict(batch_norm=True, head_bias=True, input_mean=(0.2, 0.5, 0.7), div_flow=1.0)]


@pytest.mark.parametrize("kw", LAYOUTS)
def test_multiscale_matches_the_functional_forward(kw):
    net = randomise(FlowNetS(width=2, **kw).double()).eval()
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(2, 3, 64, 128, generator=g, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        got = net.forward_multiscale(a, b)
    ref = reference_internal(net, stacked(a, b, net.config["input_mean"]))
    assert len(got) == 5
    div = net.config["div_flow"]
    for k, (g_, r) in zip((6, 5, 4, 3, 2), zip(got, ref)):
        assert g_.shape == (2, 2, 64 // 2 ** k, 128 // 2 ** k)
        # pixels of the 1/2**k grid: internal × div_flow / 2**k, u and v alike
        torch.testing.assert_close(g_, r * div / 2 ** k)


@pytest.mark.parametrize("kw", LAYOUTS[:2])
def test_full_resolution_on_an_odd_size_matches_the_reference(kw):
    """Normalise, reflect-pad to 64, flow2 × div_flow, bilinear to the padded size, crop."""
    net = randomise(FlowNetS(width=2, **kw).double(), seed=3).eval()
    a, b = torch.rand(1, 3, 37, 53, dtype=torch.float64), torch.rand(1, 3, 37, 53, dtype=torch.float64)
    x = stacked(a, b, net.config["input_mean"])  # the pair mean of the frames, not of the padding
    rows = list(range(37)) + [35 - i for i in range(27)]
    cols = list(range(53)) + [51 - i for i in range(11)]
    xp = x[:, :, rows][..., cols]
    flow2 = reference_internal(net, xp)[-1]
    ref = F.interpolate(flow2 * net.config["div_flow"], size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        out = net(a, b)
    torch.testing.assert_close(out, ref[..., :37, :53])


def test_stacking_subtracts_the_mean_by_hand():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).view(2, 3, 2, 2) / 30
    b = torch.flip(a, dims=(0,)) * 0.5
    net = FlowNetS(width=1, input_mean="pair")
    # per sample and channel: (mean of a + mean of b) / 2
    ma = a.mean((2, 3), keepdim=True)
    mb = b.mean((2, 3), keepdim=True)
    torch.testing.assert_close(net._stack(a, b), torch.cat((a - (ma + mb) / 2, b - (ma + mb) / 2), 1))
    assert torch.equal(FlowNetS(width=1, input_mean=None)._stack(a, b), torch.cat((a, b), 1))
    got = FlowNetS(width=1)._stack(a, b)
    assert got.dtype == torch.float64
    for ch, m in enumerate(PINARD_MEAN):
        torch.testing.assert_close(got[:, ch], a[:, ch] - m)
        torch.testing.assert_close(got[:, 3 + ch], b[:, ch] - m)
    assert PINARD_MEAN == (0.411, 0.432, 0.45)


# ------------------------------------------------------------------ parameter counts
def layer_list_count(w, c=3, batch_norm=False, head_bias=False):
    n = 0
    for _, cin, cout, k, _ in ENCODER:
        cin = 2 * c if cin is None else cin * w
        n += cin * cout * w * k * k + (2 * cout * w if batch_norm else cout * w)  # bias, or BN γ and β
    cats = {5: 16 * w + 2, 4: 12 * w + 2, 3: 6 * w + 2, 2: 3 * w + 2}
    for (cin, cout) in ((16 * w, 8 * w), (cats[5], 4 * w), (cats[4], 2 * w), (cats[3], w)):
        n += cin * cout * 16 + (cout if head_bias else 0)
    for cin in (16 * w, cats[5], cats[4], cats[3], cats[2]):
        n += cin * 2 * 9 + (2 if head_bias else 0)
    return n + 4 * 2 * 2 * 16


def test_parameter_counts_from_the_layer_list(monkeypatch):
    # meta tensors, and no Kaiming draw (its first call on meta costs seconds)
    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", lambda t, *a, **k: t)
    with torch.device("meta"):
        for kw, documented in ((dict(), 38_675_536), (dict(head_bias=True), 38_676_506)):
            m = FlowNetS(**kw)
            assert sum(p.numel() for p in m.parameters()) == layer_list_count(64, **kw) == documented
        m = FlowNetS(batch_norm=True, in_channels=1, input_mean=None)
        assert sum(p.numel() for p in m.parameters()) == layer_list_count(64, c=1, batch_norm=True)
    m = FlowNetS(width=8)
    assert sum(p.numel() for p in m.parameters()) == layer_list_count(8) == 615_528
    assert [getattr(m, n)[0].stride for n, *_ in ENCODER] == [(s, s) for *_, s in ENCODER]
    assert all(isinstance(getattr(m, n)[-1], torch.nn.LeakyReLU) and getattr(m, n)[-1].negative_slope == 0.1
               for n, *_ in ENCODER)
    assert m.stride == 64


def test_pinard_initialisation():
    """Kaiming normal for LeakyReLU(0.1): std = sqrt(2 / (1 + 0.1²) / fan_in); zero biases."""
    torch.manual_seed(0)
    m = FlowNetS(width=8, head_bias=True)
    for name in ("conv2.0", "conv4_1.0", "predict_flow2", "deconv3.0"):
        w = m.get_submodule(name).weight
        fan_in = w[0].numel()
        expected = math.sqrt(2 / (1 + 0.01) / fan_in)
        assert abs(float(w.detach().std()) / expected - 1) < 0.05, name
        assert abs(float(w.detach().mean())) < 0.1 * expected
        assert torch.equal(m.get_submodule(name).bias, torch.zeros_like(m.get_submodule(name).bias))


def test_one_channel_frames_and_the_smallest_width():
    net = randomise(FlowNetS(in_channels=1, width=1, input_mean=[0.25]).double()).eval()
    assert net.config == dict(in_channels=1, width=1, batch_norm=False, head_bias=False, div_flow=20.0,
                              input_mean=[0.25])
    a, b = torch.rand(1, 1, 64, 64, dtype=torch.float64), torch.rand(1, 1, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net.forward_multiscale(a, b)[-1],
                                   reference_internal(net, torch.cat((a - 0.25, b - 0.25), 1))[-1] * 5)


# ------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("kw, msg", [
    (dict(in_channels=0), r"^in_channels must be an int >= 1, got 0$"),
    (dict(in_channels=True), r"^in_channels must be an int >= 1, got True$"),
    (dict(width=0), r"^width must be an int >= 1, got 0$"),
    (dict(width=2.0), r"^width must be an int >= 1, got 2.0$"),
    (dict(div_flow=0), r"^div_flow must be a positive finite number, got 0$"),
    (dict(div_flow=-1.0), r"^div_flow must be a positive finite number, got -1.0$"),
    (dict(div_flow=float("inf")), r"^div_flow must be a positive finite number, got inf$"),
    (dict(div_flow=float("nan")), r"^div_flow must be a positive finite number, got nan$"),
    (dict(div_flow=True), r"^div_flow must be a positive finite number, got True$"),
    (dict(div_flow="20"), r"^div_flow must be a positive finite number, got '20'$"),
    (dict(input_mean="mean"), r"^input_mean must be a sequence of 3 floats, 'pair' or None, got 'mean'$"),
    (dict(input_mean=(0.5, 0.5)), r"^input_mean must have 3 entries \(one per channel\), got \[0.5, 0.5\]$"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        FlowNetS(**kw)


def test_small_finite_div_flow_is_accepted():
    assert FlowNetS(width=1, div_flow=1e-3).config["div_flow"] == 1e-3
    assert FlowNetS(width=1, div_flow=7).config["div_flow"] == 7.0


def test_pair_and_multiple_errors():
    net = FlowNetS(width=1)
    a = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match=re.escape("frame1 and frame2 must have the same shape, got (1, 3, 64, 64) "
                                                   "and (2, 3, 64, 64)") + "$"):
        net(a, torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"^frame1 must have shape \(N, 3, H, W\)"):
        net(torch.rand(1, 2, 64, 64), a)
    msg = re.escape("frame1's H and W must be multiples of 64, got (64, 96); call the network itself for any size")
    with pytest.raises(ValueError, match=f"^{msg}$"):
        net.forward_multiscale(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96))
    with pytest.raises(ValueError, match=re.escape("got (96, 64)")):
        net.forward_multiscale(torch.rand(1, 3, 96, 64), torch.rand(1, 3, 96, 64))


# ------------------------------------------------------------------ official checkpoints
def official_state(net):
    return {k: v.clone().float() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("arch", ["FlowNetS", "flownets_bn", "FlowNet2S"])
def test_from_official_accepts_the_flownets_arch_names(tmp_path, arch):
    src = randomise(FlowNetS(width=1))
    torch.save({"arch": arch, "state_dict": official_state(src), "div_flow": torch.tensor(10.0)},
               tmp_path / "f.pth.tar")
    m = FlowNetS.from_official(tmp_path / "f.pth.tar")
    assert m.config["div_flow"] == 10.0 and m.config["input_mean"] == list(PINARD_MEAN)
    m = FlowNetS.from_official(tmp_path / "f.pth.tar", input_mean="pair", div_flow=4.0)
    assert m.config["div_flow"] == 4.0 and m.config["input_mean"] == "pair"


def test_from_official_defaults_and_overrides(tmp_path):
    src = randomise(FlowNetS(width=1, head_bias=True))
    torch.save(official_state(src), tmp_path / "nv.pth")  # a bare state dict: no meta, div_flow 20
    m = FlowNetS.from_official(tmp_path / "nv.pth")
    assert m.config["div_flow"] == 20.0 and m.config["input_mean"] == "pair" and m.config["head_bias"]
    assert FlowNetS.from_official(tmp_path / "nv.pth", input_mean=None).config["input_mean"] is None
    # a 1-channel checkpoint cannot use the RGB mean: a CheckpointError naming the file
    grey = randomise(FlowNetS(in_channels=1, width=1, input_mean=None))
    torch.save({"arch": "flownets", "state_dict": official_state(grey)}, tmp_path / "grey.pth")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "grey.pth")) + ": input_mean must have 1"):
        FlowNetS.from_official(tmp_path / "grey.pth")
    m = FlowNetS.from_official(tmp_path / "grey.pth", input_mean=[0.5])
    assert m.config["in_channels"] == 1 and m.config["input_mean"] == [0.5]


def test_from_official_batch_norm_counters_and_errors(tmp_path):
    src = randomise(FlowNetS(width=1, batch_norm=True))
    sd = {k: v for k, v in official_state(src).items() if not k.endswith("num_batches_tracked")}
    torch.save({"arch": "flownets_bn", "state_dict": sd}, tmp_path / "bn.pth")
    m = FlowNetS.from_official(tmp_path / "bn.pth")
    assert m.config["batch_norm"]
    assert all(int(v) == 0 for k, v in m.state_dict().items() if k.endswith("num_batches_tracked"))
    for k, v in sd.items():
        assert torch.equal(m.state_dict()[k], v), k
    # odd input channels of conv1, and the arch named in the error
    odd = dict(sd, **{"conv1.0.weight": torch.zeros(1, 3, 7, 7)})
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "odd.pth")) + ": not a FlowNetS state dict"):
        FlowNetS.from_official(tmp_path / "odd.pth")
    torch.save({"arch": "flownetc", "state_dict": sd}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'c.pth'} holds a 'flownetc' checkpoint, "
                                                        "expected FlowNetS ('flownets')")):
        FlowNetS.from_official(tmp_path / "c.pth")


def test_from_official_error_messages_name_the_file_and_keys(tmp_path):
    foreign = {f"layer{i}.weight": torch.zeros(1) for i in range(6)}
    torch.save(foreign, tmp_path / "foreign.pth")
    keys = re.escape("keys start ['layer0.weight', 'layer1.weight', 'layer2.weight', 'layer3.weight'])")
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 'foreign.pth'}: not a FlowNetS state dict "
                                                              "(no 'conv1.0.weight' with an even number of input "
                                                              "channels; ") + keys + "$"):
        FlowNetS.from_official(tmp_path / "foreign.pth")
    sd = official_state(randomise(FlowNetS(width=1)))
    del sd["predict_flow4.weight"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 'missing.pth'} does not fit FlowNetS")):
        FlowNetS.from_official(tmp_path / "missing.pth")


def test_initialisation_uses_the_leaky_slope_0_1():
    """Pooled over every weight of a width-16 net (2.4 M draws), std / Kaiming's std for slope 0.1 is 1
    within 0.25 %; slope 0 or 0.01 would give 1.005."""
    torch.manual_seed(1)
    m = FlowNetS(width=16)
    z = torch.cat([(mod.weight.detach() / math.sqrt(2 / 1.01 / mod.weight[0].numel())).flatten()
                   for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert z.numel() > 2_000_000
    assert abs(float(z.double().pow(2).mean().sqrt()) - 1) < 0.0025


def test_stack_keeps_the_frames_dtype_and_exact_mean():
    a = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    b = torch.rand(1, 3, 4, 4, dtype=torch.float64)
    got = FlowNetS(width=1, input_mean=(0.411, 0.432, 0.45))._stack(a, b)
    for ch, m in enumerate((0.411, 0.432, 0.45)):  # float64 arithmetic with the Python floats, bit for bit
        assert torch.equal(got[:, ch], a[:, ch] - m) and torch.equal(got[:, 3 + ch], b[:, ch] - m)
    half = FlowNetS(width=1)._stack(a.bfloat16(), b.bfloat16())
    assert half.dtype == torch.bfloat16


def test_stack_builds_the_mean_on_the_frames_device():
    """The meta device stands in for a GPU: a mean left on the CPU cannot be subtracted there."""
    a = torch.empty(2, 3, 8, 8, device="meta")
    out = FlowNetS(width=1)._stack(a, a)
    assert out.device.type == "meta" and out.shape == (2, 6, 8, 8)
