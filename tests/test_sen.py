"""SEN network, flow losses, checkpoints and the SEN training data."""
import json

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.data import SyntheticBlurDataset
from pnpdeblur.losses import flow_l2_loss
from pnpdeblur.nets import SEN, DnCNN


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(width=4, levels=2, stacks=2)
    cfg.update(kw)
    return SEN(**cfg)


def test_shapes_and_stride():
    m = tiny()
    assert m.stride == 16
    outs = m(torch.rand(2, 3, 32, 48))
    assert len(outs) == 2 and all(o.shape == (2, 2, 32, 48) for o in outs)
    with pytest.raises(ValueError, match="multiples of 16"):
        m(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        m(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="width"):
        SEN(width=0)
    with pytest.raises(ValueError, match="dilations"):
        SEN(dilations=(1, 2))


def test_paper_configuration_is_the_default():
    m = SEN()
    assert m.config["width"] == 64 and m.config["stacks"] == 2 and m.config["levels"] == 4
    # appendix A: 7×7 front layer with 64 channels, 5×5 stride-2 layers with 128 and 256
    front = m.stacks[0].front
    assert front[0][0].kernel_size == (7, 7) and front[0][0].out_channels == 64
    assert front[1][0].stride == (2, 2) and front[1][0].out_channels == 128
    assert front[2][0].kernel_size == (5, 5) and front[2][0].out_channels == 256
    # the second stack sees the image and the first flow
    assert m.stacks[1].front[0][0].in_channels == 5


def test_estimate_any_size_is_canonical():
    m = tiny().eval()
    f = m.estimate(torch.rand(1, 3, 37, 53))
    assert f.shape == (1, 2, 37, 53)
    u, v = f[:, 0], f[:, 1]
    assert bool(((u > 0) | ((u == 0) & (v >= 0))).all())
    # tiny images (smaller than the padding) still work
    assert m.estimate(torch.rand(1, 3, 5, 7)).shape == (1, 2, 5, 7)


def test_gradient_reaches_every_parameter():
    m = tiny()
    outs = m(torch.rand(2, 3, 32, 32))
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_overfits_a_tiny_batch():
    """Loss on a fixed batch of blurred crops drops by 10× within a few hundred cheap steps."""
    ds = SyntheticBlurDataset(["astronaut"], length=2, crop=32, preset="23", noise_sigma=0.0, seed=1, fixed=True)
    batch = [ds[i] for i in range(2)]
    x = torch.stack([b["blurred"] for b in batch])
    f = torch.stack([b["flow"] for b in batch])
    m = tiny(flow_scale=10.0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        loss = sum(flow_l2_loss(o, f) for o in m(x)) / 2
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first / 10


def test_flow_l2_loss_closed_forms():
    pred = torch.zeros(1, 2, 1, 2)
    pred[0, :, 0, 0] = torch.tensor([1.0, 2.0])
    pred[0, :, 0, 1] = torch.tensor([-3.0, 0.0])
    tgt = torch.zeros(1, 2, 1, 2)
    tgt[0, :, 0, 0] = torch.tensor([1.0, 0.0])
    tgt[0, :, 0, 1] = torch.tensor([3.0, 0.0])
    # eq. 1: mean over the four elements of (0, 2, -6, 0)² = (4 + 36) / 4
    assert float(flow_l2_loss(pred, tgt)) == pytest.approx(10.0)
    # per pixel min(|p - t|², |p + t|²) / 2: pixel 0 min(4, 4+16) = 4, pixel 1 min(36, 0) = 0 → (4 + 0)/2/2
    assert float(flow_l2_loss(pred, tgt, symmetric=True)) == pytest.approx(1.0)
    # and equals the library's sign-invariant metric (mean over both components)
    assert float(flow_l2_loss(pred, tgt, symmetric=True)) == pytest.approx(
        float(pd.metrics.flow_mse(pred, tgt)))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        flow_l2_loss(pred, tgt[:, :, :, :1])
    with pytest.raises(TypeError):
        flow_l2_loss(pred.numpy(), tgt)


def test_checkpoint_round_trip_and_rejections(tmp_path):
    m = tiny().eval()
    path = m.save(tmp_path / "sen.safetensors", {"note": "test"})
    back = SEN.from_checkpoint(path)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(back(x)[-1], m(x)[-1])
    assert back.header["note"] == "test" and back.config == m.config
    # another architecture
    other = DnCNN(features=4, depth=2).save(tmp_path / "dncnn.safetensors")
    with pytest.raises(CheckpointError, match="DnCNN"):
        SEN.from_checkpoint(other)
    # corrupt bytes
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        SEN.from_checkpoint(bad)
    # a config the weights do not fit
    from pnpdeblur.checkpoints import save_checkpoint

    wrong = save_checkpoint(tmp_path / "wrong.safetensors", m, "SEN", dict(m.config, width=8))
    with pytest.raises(CheckpointError, match="does not fit"):
        SEN.from_checkpoint(wrong)
    # NaN weights are garbage, not a model
    state = {k: v.clone() for k, v in m.state_dict().items()}
    state["stacks.0.head.weight"][0, 0, 0, 0] = float("nan")
    nan = save_checkpoint(tmp_path / "nan.safetensors", state, "SEN", m.config)
    with pytest.raises(CheckpointError, match="NaN"):
        SEN.from_checkpoint(nan)


def test_pretrained_weights_load_and_give_a_finite_flow():
    from pnpdeblur.nets.sen import SEN_PRETRAINED_PATH

    m = SEN.pretrained()
    assert not m.training
    header = json.loads(SEN_PRETRAINED_PATH.with_suffix(".json").read_text())
    assert header["architecture"] == "SEN" and header["config"] == m.config
    assert "validation" in header and "data" in header
    f = m.estimate(torch.rand(1, 3, 64, 64))
    assert f.shape == (1, 2, 64, 64) and bool(torch.isfinite(f).all())


def test_unblurred_dataset_matches_the_blurring_one():
    """blur=False gives the same crops and flows as the blurring dataset (fixed noise level)."""
    a = SyntheticBlurDataset(["rocket"], length=3, crop=48, seed=3, fixed=True, noise_sigma=0.01)
    b = SyntheticBlurDataset(["rocket"], length=3, crop=48, seed=3, fixed=True, noise_sigma=0.01, blur=False)
    for i in range(3):
        x, y = a[i], b[i]
        assert "blurred" not in y
        assert torch.equal(x["flow"], y["flow"]) and torch.equal(x["sharp"], y["sharp"])
        # blurring y's pair with its flow gives x's blurred image up to the noise
        yb = pd.MotionBlur(y["flow"][None])(y["sharp"][None])[0]
        assert float((yb - x["blurred"]).std()) == pytest.approx(0.01, rel=0.2)


def test_training_recipe_runs_and_exports_half_weights(tmp_path):
    """Two CPU steps of scripts/train_sen.py's recipe: float16 weights, float32 BN statistics, header."""
    from safetensors import safe_open

    from pnpdeblur.train.sen import main

    out = main(["--steps", "2", "--batch", "2", "--crop", "32", "--width", "2", "--levels", "1",
                "--val-items", "2", "--val-every", "0", "--ckpt-every", "0", "--no-progress",
                "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "sen.safetensors")])
    model = SEN.from_checkpoint(out)
    assert model.header["steps"] == 2 and model.header["data"]["loss"] == "symmetric"
    assert "flow_mse" in model.header["validation"]
    with safe_open(str(out), framework="pt") as f:
        dtypes = {k: f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes["stacks.0.head.weight"] == torch.float16
    assert dtypes["stacks.0.front.0.1.running_var"] == torch.float32
    assert not (tmp_path / "sen.f32.safetensors").exists()


def test_half_state_keeps_batchnorm_statistics_and_halve_checkpoint_keeps_the_header(tmp_path):
    from pnpdeblur.checkpoints import half_state, halve_checkpoint, load_checkpoint

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    net[1].running_var.fill_(1e6)  # beyond float16's range (65504)
    half = half_state(net.state_dict())
    assert half["0.weight"].dtype == torch.float16 and half["1.weight"].dtype == torch.float16
    assert half["1.running_var"].dtype == torch.float32 and float(half["1.running_var"][0]) == 1e6
    assert half["1.num_batches_tracked"].dtype == torch.int64
    torch.testing.assert_close(half["0.weight"].float(), net[0].weight.detach(), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match=r"^0\.weight is not finite in float16"):
        half_state({"0.weight": torch.tensor([1e6])})

    sen = SEN(width=2, stacks=1, levels=1)
    src = sen.save(tmp_path / "f32.safetensors", {"note": "kept"})
    dst = halve_checkpoint(src, tmp_path / "f16.safetensors", "SEN", {"stored_dtype": "float16"})
    state, header = load_checkpoint(dst, "SEN")
    assert header["config"] == sen.config and header["note"] == "kept" and header["stored_dtype"] == "float16"
    assert all(v.dtype == torch.float16 for k, v in state.items()
               if v.is_floating_point() and not k.endswith(("running_mean", "running_var")))
