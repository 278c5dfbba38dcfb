"""DeblurNet (Noroozi et al.): layer list, residual pyramid, shapes, training, checkpoints, errors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.multiscale import image_pyramid, multiscale_mse
from pnpdeblur.nets.deblurnet import DeblurNet
from pnpdeblur.nets.deepdeblur import DeepDeblur

SMALL = dict(n1_channels=(8, 8, 8, 8, 8, 8), width=8)




def small_net(seed=0):
    torch.manual_seed(seed)
    return DeblurNet(**SMALL)


def test_default_parameter_count_from_table_1():
    # Table 1: N1 convs 11,7,7,7,3,3,3 → 96,256,384,384,256,256,3; N2, N3: four 5×5 convs of 256
    # then a 5×5 deconv to 3. BN (γ, β) after all but the last layer of each subgraph, whose
    # convolutions then carry no bias; the three output layers have a bias.
    def cbr(cin, cout, k):
        return cout * cin * k * k + 2 * cout

    n1_w, n1_k = [3, 96, 256, 384, 384, 256, 256, 3], [11, 7, 7, 7, 3, 3, 3]
    n1 = sum(cbr(n1_w[i], n1_w[i + 1], n1_k[i]) for i in range(6)) + (3 * 256 * 9 + 3)
    n23 = cbr(3, 256, 5) + 3 * cbr(256, 256, 5) + (256 * 3 * 25 + 3)
    with torch.device("meta"):
        net = DeblurNet()
    assert net.num_parameters() == n1 + 2 * n23
    # 17 layers in all (Table 1's columns): 15 convolutions + 2 deconvolutions
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 15 and len(deconvs) == 2
    assert [m.stride[0] for m in net.n1 if isinstance(m, torch.nn.Conv2d)] == [1]  # last N1 layer
    assert sum(m.stride[0] == 2 for m in convs) == 2  # N1 reaches 1/4 with two stride-2 layers


def test_each_level_is_a_residual_on_the_downsampled_input():
    net = small_net().eval()
    # zero the three output layers: every level must then return the pyramid of the input
    for layer in (net.n1[-1], net.n2[-1], net.n3[-1]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        outs = net.forward_multiscale(x)
    for o, p in zip(outs, image_pyramid(x, 3)):
        assert torch.equal(o, p)
    # and a bias on N1's residual reaches every finer level only through N2/N3 (not added twice)
    with torch.no_grad():
        net.n1[-1].bias.fill_(0.25)
        outs = net.forward_multiscale(x)
    pyr = image_pyramid(x, 3)
    assert torch.allclose(outs[0], pyr[0] + 0.25)
    assert torch.allclose(outs[1], pyr[1]) and torch.allclose(outs[2], pyr[2])


def test_forward_any_size_and_multiscale_shapes():
    net = small_net().eval()
    x = torch.rand(1, 3, 50, 67)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    outs = net.forward_multiscale(torch.rand(2, 3, 16, 24))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 4, 6), (2, 3, 8, 12), (2, 3, 16, 24)]
    assert net.stride == 4
    with pytest.raises(ValueError, match="multiples of DeblurNet.stride = 4"):
        net.forward_multiscale(torch.rand(1, 3, 16, 18))


def test_gradients_reach_every_parameter():
    net = small_net()
    x, s = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    multiscale_mse(net.forward_multiscale(x), s).backward()
    for name, p in net.named_parameters():
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


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    net = small_net(seed=2)
    net.train()
    net(torch.rand(2, 3, 16, 16))  # move the BN running statistics away from their init
    net.eval()
    path = net.save(tmp_path / "dbn.safetensors")
    back = DeblurNet.from_checkpoint(path)
    assert back.config == net.config
    x = torch.rand(1, 3, 13, 10)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    with pytest.raises(CheckpointError, match="DeblurNet"):
        DeepDeblur.from_checkpoint(path)
    other = DeepDeblur(features=4, blocks=0).save(tmp_path / "dd.safetensors")
    with pytest.raises(CheckpointError, match="DeepDeblur"):
        DeblurNet.from_checkpoint(other)


def test_bad_input_and_config():
    net = small_net()
    with pytest.raises(ValueError, match="x must have shape \\(N, 3, H, W\\)"):
        net(torch.rand(1, 16, 16))
    with pytest.raises(ValueError, match="x must have shape \\(N, 3, H, W\\)"):
        net(torch.rand(1, 2, 16, 16))
    x = torch.rand(1, 3, 16, 16)
    x[..., 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        net(x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        net(np.zeros((1, 3, 16, 16)))
    for kw, word in ((dict(n1_channels=(8, 8)), "n1_channels"), (dict(n1_channels=(8, 8, 8, 8, 8, 0)), "n1_channels"),
                     (dict(width=0), "width"), (dict(kernel_size=4), "kernel_size"), (dict(depth=0), "depth")):
        with pytest.raises(ValueError, match=word):
            DeblurNet(**kw)
