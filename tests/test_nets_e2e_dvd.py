"""DVD (Su et al.): layer list, centre-frame output, shapes, training, official weights, errors."""
import numpy as np
import pytest
import torch

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.multiscale import multiscale_mse
from pnpdeblur.nets.deepdeblur import DeepDeblur
from pnpdeblur.nets.dvd import DVD

SMALL = dict(widths=(4, 8, 8, 8))

# The authors' model2_symskip_nngraph2_deeper.lua, in definition order: (kind, in, out, kernel)
LUA_LAYERS = (
    [("c", 15, 64, 5), ("c", 64, 64, 3), ("c", 64, 128, 3), ("c", 128, 128, 3), ("c", 128, 256, 3)]
    + [("c", 256, 256, 3)] * 3 + [("c", 256, 512, 3)] + [("c", 512, 512, 3)] * 3
    + [("u", 512, 256, 4)] + [("c", 256, 256, 3)] * 3
    + [("u", 256, 128, 4), ("c", 128, 128, 3), ("c", 128, 64, 3)]
    + [("u", 64, 64, 4), ("c", 64, 15, 3), ("c", 15, 3, 3)]
)




def small_net(seed=0):
    torch.manual_seed(seed)
    return DVD(**SMALL)


def layer_params(cin, cout, k):
    return cout * cin * k * k + cout + 2 * cout  # weight, bias, BN γ and β


def test_default_parameter_count_from_the_authors_layer_list():
    expect = sum(layer_params(i, o, k) for _, i, o, k in LUA_LAYERS)
    with torch.device("meta"):
        net = DVD()
    assert net.num_parameters() == expect
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 22 and all(b.eps == 1e-3 for b in bns)


def test_output_is_sigmoid_of_centre_frame_plus_residual():
    net = small_net().eval()
    with torch.no_grad():
        net.f15.bn.weight.zero_()
        net.f15.bn.bias.zero_()
    frames = torch.stack([torch.full((2, 3, 16, 16), v) for v in (0.1, 0.2, 0.7, 0.4, 0.5)], 1).flatten(1, 2)
    frames = frames + 0.01 * torch.rand_like(frames)
    with torch.no_grad():
        out = net(frames)
    assert torch.allclose(out, torch.sigmoid(frames[:, 6:9]))
    with torch.no_grad():
        net.f15.bn.bias.fill_(0.3)
        assert torch.allclose(net(frames), torch.sigmoid(frames[:, 6:9] + 0.3))


def test_forward_any_size_and_multiscale():
    net = small_net().eval()
    x = torch.rand(1, 15, 50, 67)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 50, 67) and torch.isfinite(y).all()
    outs = net.forward_multiscale(torch.rand(2, 15, 16, 24))
    assert len(outs) == 1 and outs[0].shape == (2, 3, 16, 24)
    assert net.stride == 8
    with pytest.raises(ValueError, match="multiples of DVD.stride = 8"):
        net.forward_multiscale(torch.rand(1, 15, 16, 12))
    grey3 = DVD(in_channels=1, frames=3, widths=(4, 4, 4, 4))
    assert grey3(torch.rand(1, 3, 9, 11)).shape == (1, 1, 9, 11)


def test_gradients_reach_every_parameter():
    net = small_net()
    x, s = torch.rand(2, 15, 16, 16), torch.rand(2, 3, 16, 16)
    multiscale_mse(net.forward_multiscale(x), [s]).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_adam_steps_lower_loss():
    net = small_net(seed=1)
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 16, 16, generator=g)
    frames = (sharp.repeat(1, 5, 1, 1) + 0.1 * torch.randn(2, 15, 16, 16, generator=g)).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = multiscale_mse(net.forward_multiscale(frames), [sharp])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    net = small_net(seed=2)
    net(torch.rand(2, 15, 16, 16))  # train mode: BN statistics move
    net.eval()
    path = net.save(tmp_path / "dvd.safetensors")
    back = DVD.from_checkpoint(path)
    assert back.config == net.config
    x = torch.rand(1, 15, 12, 9)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    with pytest.raises(CheckpointError, match="DVD"):
        DeepDeblur.from_checkpoint(path)
    other = DeepDeblur(features=4, blocks=0).save(tmp_path / "dd.safetensors")
    with pytest.raises(CheckpointError, match="DeepDeblur"):
        DVD.from_checkpoint(other)


# ----------------------------------------------------------------------------- official weights
def synthetic_release(seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(layer_params(i, o, k) for _, i, o, k in LUA_LAYERS)
    flat = torch.randn(n, generator=g) * 0.01
    means = [torch.randn(o, generator=g) for _, _, o, _ in LUA_LAYERS]
    variances = [torch.rand(o, generator=g) + 0.5 for _, _, o, _ in LUA_LAYERS]
    return flat, means, variances


def test_from_official_maps_the_flat_vector_in_layer_order(tmp_path):
    flat, means, variances = synthetic_release()
    np.save(tmp_path / "param.npy", flat.numpy())
    np.savez(tmp_path / "bn.npz", **{f"mean_{i}": m.numpy() for i, m in enumerate(means)},
             **{f"var_{i}": v.numpy() for i, v in enumerate(variances)})
    net = DVD.from_official(tmp_path / "param.npy", tmp_path / "bn.npz")
    assert not net.training
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = flat[pos:pos + n].reshape(shape)
        pos += n
        return out

    for (kind, cin, cout, k), conv, bn, m, v in zip(LUA_LAYERS, convs, bns, means, variances):
        # Torch7: SpatialConvolution (out, in, k, k), SpatialFullConvolution (in, out, k, k)
        assert isinstance(conv, torch.nn.ConvTranspose2d) == (kind == "u")
        w = take(cout, cin, k, k) if kind == "c" else take(cin, cout, k, k)
        assert torch.equal(conv.weight, w)
        assert torch.equal(conv.bias, take(cout))
        assert torch.equal(bn.weight, take(cout)) and torch.equal(bn.bias, take(cout))
        assert torch.equal(bn.running_mean, m) and torch.equal(bn.running_var, v)
    assert pos == flat.numel() and len(convs) == len(LUA_LAYERS)
    # the same through torch files and in-memory objects
    torch.save(flat, tmp_path / "param.pt")
    torch.save([means, variances], tmp_path / "bn.pt")
    net2 = DVD.from_official(tmp_path / "param.pt", tmp_path / "bn.pt")
    net3 = DVD.from_official(flat.numpy(), (means, variances))
    x = torch.rand(1, 15, 8, 8)
    with torch.no_grad():
        assert torch.equal(net2(x), net(x)) and torch.equal(net3(x), net(x))


def test_from_official_rejects_wrong_files(tmp_path):
    flat, means, variances = synthetic_release()
    with pytest.raises(CheckpointError, match="must hold"):
        DVD.from_official(flat[:-1], (means, variances))
    bad = flat.clone()
    bad[5] = float("nan")
    with pytest.raises(CheckpointError, match="NaN"):
        DVD.from_official(bad, (means, variances))
    with pytest.raises(CheckpointError, match="22 batch-norm"):
        DVD.from_official(flat, (means[:-1], variances[:-1]))
    with pytest.raises(CheckpointError, match="f0"):
        DVD.from_official(flat, ([torch.zeros(3)] + means[1:], variances))
    with pytest.raises(CheckpointError, match="negative"):
        DVD.from_official(flat, (means, [-v for v in variances]))
    with pytest.raises(CheckpointError, match="not found"):
        DVD.from_official(tmp_path / "nope.npy", (means, variances))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable"):
        DVD.from_official(junk, (means, variances))
    t7 = tmp_path / "param.t7"
    t7.write_bytes(b"\0")
    try:
        import torchfile  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torchfile"):
            DVD.from_official(t7, (means, variances))


def test_bad_input_and_config():
    net = small_net()
    with pytest.raises(ValueError, match="frames must have shape \\(N, 15, H, W\\)"):
        net(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="frames must have shape"):
        net(torch.rand(15, 16, 16))
    x = torch.rand(1, 15, 16, 16)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        net(x)
    with pytest.raises(TypeError, match="floating-point"):
        net(torch.zeros(1, 15, 16, 16, dtype=torch.int64))
    for kw, word in ((dict(frames=4), "frames"), (dict(widths=(4, 4, 4)), "widths"),
                     (dict(widths=(4, 4, 4, -1)), "widths"), (dict(in_channels=0), "in_channels")):
        with pytest.raises(ValueError, match=word):
            DVD(**kw)
