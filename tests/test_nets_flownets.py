"""FlowNetS (pixel-unit contract, official loaders) and the EPE losses."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.epe import FLOWNET_WEIGHTS, endpoint_error, multiscale_epe
from pnpdeblur.nets.deblurgan import DeblurGANGenerator
from pnpdeblur.nets.flownets import PINARD_MEAN, FlowNetS




def small(**kw):
    torch.manual_seed(0)
    cfg = dict(width=4)
    cfg.update(kw)
    return FlowNetS(**cfg)


def official_shapes(w=64, c=3, head_bias=False):
    """Key → shape of FlowNetS's state dict in the official ports, written from the layer list."""
    enc = [("conv1", 2 * c, w, 7), ("conv2", w, 2 * w, 5), ("conv3", 2 * w, 4 * w, 5), ("conv3_1", 4 * w, 4 * w, 3),
           ("conv4", 4 * w, 8 * w, 3), ("conv4_1", 8 * w, 8 * w, 3), ("conv5", 8 * w, 8 * w, 3),
           ("conv5_1", 8 * w, 8 * w, 3), ("conv6", 8 * w, 16 * w, 3), ("conv6_1", 16 * w, 16 * w, 3)]
    shapes = {}
    for name, cin, cout, k in enc:
        shapes[f"{name}.0.weight"] = (cout, cin, k, k)
        shapes[f"{name}.0.bias"] = (cout,)
    # concatenations: skip features + deconvolved features + 2 flow channels
    cat5, cat4, cat3, cat2 = 8 * w + 8 * w + 2, 8 * w + 4 * w + 2, 4 * w + 2 * w + 2, 2 * w + w + 2
    for name, cin, cout in (("deconv5", 16 * w, 8 * w), ("deconv4", cat5, 4 * w), ("deconv3", cat4, 2 * w),
                            ("deconv2", cat3, w)):
        shapes[f"{name}.0.weight"] = (cin, cout, 4, 4)  # ConvTranspose2d: (in, out, k, k)
        if head_bias:
            shapes[f"{name}.0.bias"] = (cout,)
    for k, cin in ((6, 16 * w), (5, cat5), (4, cat4), (3, cat3), (2, cat2)):
        shapes[f"predict_flow{k}.weight"] = (2, cin, 3, 3)
        if head_bias:
            shapes[f"predict_flow{k}.bias"] = (2,)
    for k in (6, 5, 4, 3):
        shapes[f"upsampled_flow{k}_to_{k - 1}.weight"] = (2, 2, 4, 4)
    return shapes


def random_state(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=gen) * (0.3 / math.sqrt(max(1, np.prod(s[1:])))) for k, s in shapes.items()}


def reference_flow2(sd, x):
    """Pinard's forward, written from the layer list with functional ops: flow2 (internal units)."""
    def c(name, h, stride):
        wgt = sd[f"{name}.0.weight"]
        return F.leaky_relu(F.conv2d(h, wgt, sd[f"{name}.0.bias"], stride=stride, padding=(wgt.shape[-1] - 1) // 2),
                            0.1)
    c2 = c("conv2", c("conv1", x, 2), 2)
    c3 = c("conv3_1", c("conv3", c2, 2), 1)
    c4 = c("conv4_1", c("conv4", c3, 2), 1)
    c5 = c("conv5_1", c("conv5", c4, 2), 1)
    c6 = c("conv6_1", c("conv6", c5, 2), 1)
    feat, flow = c6, F.conv2d(c6, sd["predict_flow6.weight"], sd.get("predict_flow6.bias"), padding=1)
    for k, skip in ((5, c5), (4, c4), (3, c3), (2, c2)):
        up_f = F.conv_transpose2d(flow, sd[f"upsampled_flow{k + 1}_to_{k}.weight"], stride=2, padding=1)
        up_x = F.leaky_relu(F.conv_transpose2d(feat, sd[f"deconv{k}.0.weight"], sd.get(f"deconv{k}.0.bias"),
                                               stride=2, padding=1), 0.1)
        feat = torch.cat((skip, up_x, up_f), 1)
        flow = F.conv2d(feat, sd[f"predict_flow{k}.weight"], sd.get(f"predict_flow{k}.bias"), padding=1)
    return flow


# ------------------------------------------------------------------ architecture
def test_parameter_count_from_the_layer_list():
    expected = sum(int(np.prod(s)) for s in official_shapes(64).values())
    m = FlowNetS()
    n = sum(p.numel() for p in m.parameters())
    assert n == expected
    assert abs(n - 38.7e6) < 0.05e6  # the paper's ≈ 38.7 M
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == official_shapes(64)
    # the paper's concatenation widths
    assert [getattr(m, f"predict_flow{k}").in_channels for k in (5, 4, 3, 2)] == [1026, 770, 386, 194]
    assert m.stride == 64 and m.config["div_flow"] == 20.0


def test_odd_sizes_return_the_input_size():
    m = small(width=8)
    with torch.no_grad():
        a, b = torch.rand(1, 3, 250, 333), torch.rand(1, 3, 250, 333)
        assert m(a, b).shape == (1, 2, 250, 333)
        assert m(a[..., :5, :7], b[..., :5, :7]).shape == (1, 2, 5, 7)
        # the paper's configuration on a small odd frame
        assert FlowNetS().eval()(a[..., :50, :67], b[..., :50, :67]).shape == (1, 2, 50, 67)


def test_pixel_unit_contract():
    """Force the predictions to constants c (internal units = full-res px / div_flow)."""
    m = small(head_bias=True, div_flow=20.0).eval()
    with torch.no_grad():
        m.predict_flow2.weight.zero_()
        m.predict_flow2.bias.copy_(torch.tensor([0.3, -0.15]))
        m.predict_flow6.weight.zero_()
        m.predict_flow6.bias.copy_(torch.tensor([0.5, 0.25]))
        a, b = torch.rand(2, 3, 70, 45), torch.rand(2, 3, 70, 45)
        flow = m(a, b)
        assert flow.shape == (2, 2, 70, 45)
        torch.testing.assert_close(flow[:, 0], torch.full((2, 70, 45), 6.0))  # 0.3 × 20 px
        torch.testing.assert_close(flow[:, 1], torch.full((2, 70, 45), -3.0))
        ms = m.forward_multiscale(torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128))
        assert [tuple(f.shape[-2:]) for f in ms] == [(1, 2), (2, 4), (4, 8), (8, 16), (16, 32)]
        # each scale in pixels of its own grid: × div_flow / 2**k
        torch.testing.assert_close(ms[-1][:, 0], torch.full((2, 16, 32), 6.0 / 4))
        torch.testing.assert_close(ms[-1][:, 1], torch.full((2, 16, 32), -3.0 / 4))
        torch.testing.assert_close(ms[0][:, 0], torch.full((2, 1, 2), 10.0 / 64))
        torch.testing.assert_close(ms[0][:, 1], torch.full((2, 1, 2), 5.0 / 64))
    # div_flow scales the pixels linearly
    m.config["div_flow"] = 10.0
    with torch.no_grad():
        torch.testing.assert_close(m(a, b)[:, 0], torch.full((2, 70, 45), 3.0))


def test_full_resolution_output_is_the_finest_scale_upsampled():
    m = small().eval()
    a, b = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        fine = m.forward_multiscale(a, b)[-1]  # pixels of the 1/4 grid
        expected = F.interpolate(fine * 4, size=(64, 128), mode="bilinear", align_corners=False)
        torch.testing.assert_close(m(a, b), expected)


def test_bad_input():
    m = small()
    a = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="frame1 and frame2 must have the same shape"):
        m(a, torch.rand(1, 3, 64, 60))
    with pytest.raises(ValueError, match=r"frame2 must have shape \(N, 3, H, W\)"):
        m(a, torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"frame1 must have shape"):
        m(torch.rand(3, 64, 64), a)
    bad = a.clone()
    bad[0, 1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="frame2 holds NaN or Inf"):
        m(a, bad)
    with pytest.raises(ValueError, match="multiples of 64"):
        m.forward_multiscale(a[..., :48], a[..., :48])
    with pytest.raises(ValueError, match="input_mean"):
        FlowNetS(input_mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="div_flow"):
        FlowNetS(div_flow=0)


# ------------------------------------------------------------------ losses
def test_endpoint_error_hand_computed():
    pred = torch.zeros(2, 2, 3, 4)
    target = torch.zeros(2, 2, 3, 4)
    target[:, 0], target[:, 1] = 3.0, 4.0
    target[1, :, 0, 0] = 0.0  # one pixel right: 23 errors of 5 and one of 0 over 24 pixels
    torch.testing.assert_close(endpoint_error(pred, target), torch.tensor(5.0 * 23 / 24))
    with pytest.raises(ValueError, match="same shape"):
        endpoint_error(pred, target[..., :2])
    with pytest.raises(ValueError, match=r"pred must have shape \(N, 2, H, W\)"):
        endpoint_error(torch.zeros(2, 3, 3, 4), target)
    target[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="target holds NaN"):
        endpoint_error(pred, target)


def test_multiscale_epe_hand_computed():
    # target on 4×4: u = column index, v = 2; predictions at 1×1 (1/4) and 2×2 (1/2), zero
    target = torch.zeros(1, 2, 4, 4)
    target[0, 0] = torch.arange(4.0).expand(4, 4)
    target[0, 1] = 2.0
    p1, p2 = torch.zeros(1, 2, 1, 1), torch.zeros(1, 2, 2, 2)
    # block means: 1×1 → u 1.5, v 2; 2×2 → u (0.5, 2.5) per column, v 2
    # own-grid pixels: × 1/4 and × 1/2; "full" divides back: EPE in full-resolution pixels
    e1_full = math.hypot(1.5, 2.0)
    e2_full = (math.hypot(0.5, 2.0) + math.hypot(2.5, 2.0)) / 2
    got = multiscale_epe([p1, p2], target, weights=(0.32, 0.08))
    torch.testing.assert_close(got, torch.tensor(0.32 * e1_full + 0.08 * e2_full))
    got = multiscale_epe([p1, p2], target, weights=(0.32, 0.08), units="scale")
    torch.testing.assert_close(got, torch.tensor(0.32 * e1_full / 4 + 0.08 * e2_full / 2))
    # a prediction equal to the pooled, rescaled target costs nothing
    exact = torch.tensor([[[[0.25, 1.25]] * 2, [[1.0, 1.0]] * 2]])
    torch.testing.assert_close(multiscale_epe(exact, target, weights=[1.0]), torch.tensor(0.0))
    # the default weights are FlowNet's, coarse → fine
    assert FLOWNET_WEIGHTS == (0.32, 0.08, 0.02, 0.01, 0.005)
    with pytest.raises(ValueError, match="one entry per prediction"):
        multiscale_epe([p1, p2], target)
    with pytest.raises(ValueError, match="units"):
        multiscale_epe([p1], target, weights=[1], units="px")
    with pytest.raises(ValueError, match=r"preds\[0\]"):
        multiscale_epe([torch.zeros(2, 2, 1, 1)], target, weights=[1])


def test_multiscale_epe_matches_flownet_units():
    """units='full' equals FlowNet's loss on internal units (targets / 20, pooled, unscaled) × 20."""
    m = small()
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    target = torch.randn(1, 2, 64, 64) * 3
    with torch.no_grad():
        preds = m.forward_multiscale(a, b)
        raw = m._predict(m._stack(a, b))  # internal units
    ours = multiscale_epe(preds, target)
    flownet = sum(w * torch.linalg.vector_norm(r - F.avg_pool2d(target / 20, 64 // r.shape[-1]), dim=1).mean()
                  for w, r in zip(FLOWNET_WEIGHTS, raw))
    torch.testing.assert_close(ours, 20 * flownet)


# ------------------------------------------------------------------ training
def translation_pair(n=2, size=64, shift=(2, 1), seed=0):
    """frame2 = frame1 moved by (u, v) = shift px: frame2(p + f) = frame1(p), f = shift."""
    g = torch.Generator().manual_seed(seed)
    f1 = F.avg_pool2d(torch.rand(n, 3, size + 2, size + 2, generator=g), 3, stride=1)
    f2 = torch.roll(f1, shifts=(shift[1], shift[0]), dims=(2, 3))
    flow = torch.zeros(n, 2, size, size)
    flow[:, 0], flow[:, 1] = float(shift[0]), float(shift[1])
    return f1, f2, flow


def test_gradients_reach_every_parameter():
    m = small(head_bias=True, batch_norm=True)
    f1, f2, flow = translation_pair()
    multiscale_epe(m.forward_multiscale(f1, f2), flow).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing


def test_adam_lowers_the_multiscale_epe_on_a_translation_pair():
    m = small()
    f1, f2, flow = translation_pair()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = multiscale_epe(m.forward_multiscale(f1, f2), flow)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # Adam on a constant target oscillates a little: judge the mean of the last steps
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    m = small(input_mean="pair").eval()
    path = m.save(tmp_path / "f.safetensors")
    m2 = FlowNetS.from_checkpoint(path)
    assert m2.config == m.config
    a, b = torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40)
    with torch.no_grad():
        torch.testing.assert_close(m2(a, b), m(a, b))
    with pytest.raises(CheckpointError, match="FlowNetS"):
        DeblurGANGenerator.from_checkpoint(path)
    gpath = DeblurGANGenerator(features=4, blocks=1).save(tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="DeblurGANGenerator"):
        FlowNetS.from_checkpoint(gpath)


def test_from_official_pinard_layout(tmp_path):
    sd = random_state(official_shapes(w=4))
    torch.save({"epoch": 3, "arch": "flownets", "state_dict": sd, "best_EPE": 1.951, "div_flow": 20},
               tmp_path / "flownets_EPE1.951.pth.tar")
    m = FlowNetS.from_official(tmp_path / "flownets_EPE1.951.pth.tar")
    assert not m.training
    assert m.config == dict(in_channels=3, width=4, batch_norm=False, head_bias=False, div_flow=20.0,
                            input_mean=list(PINARD_MEAN))
    ours = m.state_dict()
    assert set(ours) == set(sd)
    for k, v in sd.items():
        assert torch.equal(ours[k], v), k
    # the loaded net computes Pinard's function: mean-subtracted frames, flow2 × 20, bilinear × 4
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    mean = torch.tensor(PINARD_MEAN).view(1, 3, 1, 1)
    ref = F.interpolate(20 * reference_flow2(sd, torch.cat((a - mean, b - mean), 1)), size=(64, 64),
                        mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(m(a, b), ref, rtol=1e-4, atol=1e-5)


def test_from_official_nvidia_and_bn_layouts(tmp_path):
    sd = random_state(official_shapes(w=4, head_bias=True), seed=1)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "nv.pth.tar")
    m = FlowNetS.from_official(tmp_path / "nv.pth.tar")
    assert m.config["head_bias"] and m.config["input_mean"] == "pair"
    for k, v in sd.items():
        assert torch.equal(m.state_dict()[k], v), k
    a, b = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    mean = (a.mean((2, 3), keepdim=True) + b.mean((2, 3), keepdim=True)) / 2
    ref = F.interpolate(20 * reference_flow2(sd, torch.cat((a - mean, b - mean), 1)), size=(64, 64),
                        mode="bilinear", align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(m(a, b), ref, rtol=1e-4, atol=1e-5)

    # flownets_bn: conv without bias, then BatchNorm (PyTorch 0.3 files lack num_batches_tracked)
    bn = {}
    for k, s in official_shapes(w=4).items():
        if k.startswith("conv") and k.endswith(".0.bias"):
            name = k.split(".")[0]
            for p in ("weight", "bias", "running_mean", "running_var"):
                bn[f"{name}.1.{p}"] = torch.rand(s)
        else:
            bn[k] = torch.randn(s)
    torch.save({"arch": "flownets_bn", "state_dict": bn, "div_flow": 20.0}, tmp_path / "bn.pth.tar")
    m = FlowNetS.from_official(tmp_path / "bn.pth.tar")
    assert m.config["batch_norm"] and not m.config["head_bias"]
    for k, v in bn.items():
        assert torch.equal(m.state_dict()[k], v), k


def test_from_official_rejects_foreign_dicts(tmp_path):
    sd = random_state(official_shapes(w=4))
    torch.save({"arch": "flownetc", "state_dict": sd}, tmp_path / "c.pth.tar")
    with pytest.raises(CheckpointError, match="flownetc"):
        FlowNetS.from_official(tmp_path / "c.pth.tar")
    torch.save({"model.1.weight": torch.zeros(8, 3, 7, 7)}, tmp_path / "G.pth")
    with pytest.raises(CheckpointError, match="not a FlowNetS"):
        FlowNetS.from_official(tmp_path / "G.pth")
    missing = {k: v for k, v in sd.items() if k != "predict_flow3.weight"}
    torch.save({"state_dict": missing}, tmp_path / "m.pth.tar")
    with pytest.raises(CheckpointError, match="predict_flow3.weight"):
        FlowNetS.from_official(tmp_path / "m.pth.tar")
    wrong = dict(sd, **{"deconv3.0.weight": torch.zeros(10, 8, 4, 4)})
    torch.save({"state_dict": wrong}, tmp_path / "w.pth.tar")
    with pytest.raises(CheckpointError, match="deconv3.0.weight"):
        FlowNetS.from_official(tmp_path / "w.pth.tar")
