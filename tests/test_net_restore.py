"""``net.restore(photo)``: the single-image deblurring nets on a photo in any of the library's layouts.

The reference is the network's own ``forward`` on the tensor the test builds by hand (an explicit
transpose, ÷255 and clip), in eval mode, so ``restore`` is checked for the layout, dtype and mode
bookkeeping only.
"""
import numpy as np
import pytest
import torch

from pnpdeblur import nets

from _nets import randomise_state

NETS = {
    "DeepDeblur": lambda: nets.DeepDeblur(features=4, blocks=1, scales=2),
    "DeblurNet": lambda: nets.DeblurNet(n1_channels=(4, 4, 4, 4, 4, 4), width=4, depth=1),
    "DeblurGANGenerator": lambda: nets.DeblurGANGenerator(features=4, blocks=1),  # dropout: eval matters
}


def _net(name):
    torch.manual_seed(0)
    return randomise_state(NETS[name](), seed=1, scale=0.1)


def _by_hand(net, nchw, grey=False):
    net.eval()
    with torch.no_grad():
        out = net(nchw)
    return (out.mean(1, keepdim=True) if grey else out).clamp(0, 1)


@pytest.fixture
def hwc():
    return np.random.default_rng(2).random((20, 24, 3))


@pytest.mark.parametrize("name", sorted(NETS))
def test_numpy_float_and_uint8_photos(name, hwc):
    net = _net(name)
    ref = _by_hand(net, torch.from_numpy(hwc.transpose(2, 0, 1)[None].copy()).float())[0].permute(1, 2, 0).numpy()
    net.train()
    out = net.restore(hwc)
    assert isinstance(out, np.ndarray) and out.shape == hwc.shape and out.dtype == np.float64
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert net.training  # its mode is given back
    u8 = np.round(hwc * 255).astype(np.uint8)
    ref8 = _by_hand(net, torch.from_numpy(u8.transpose(2, 0, 1)[None] / 255.0).float())[0].permute(1, 2, 0).numpy()
    out8 = net.restore(u8)
    assert out8.dtype == np.uint8 and out8.shape == u8.shape
    assert np.abs(out8.astype(int) - np.round(ref8 * 255).astype(int)).max() <= 1


@pytest.mark.parametrize("name", sorted(NETS))
def test_torch_layouts_grey_and_alpha(name, hwc):
    net = _net(name)
    chw = torch.from_numpy(hwc.transpose(2, 0, 1).copy()).float()
    ref = _by_hand(net, chw[None])[0]
    out = net.restore(chw)
    assert isinstance(out, torch.Tensor) and out.shape == chw.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    batch = torch.stack([chw, chw.flip(-1)])
    torch.testing.assert_close(net.restore(batch), _by_hand(net, batch), atol=1e-6, rtol=0)
    # grey: three equal planes through the colour net, their mean back
    grey = hwc[..., 0]
    g = torch.from_numpy(grey).float()[None, None].expand(1, 3, -1, -1)
    np.testing.assert_allclose(net.restore(grey), _by_hand(net, g, grey=True)[0, 0].numpy(), atol=1e-6)
    # RGBA: the colour planes restored, alpha opaque
    rgba = np.concatenate([hwc, np.full(hwc.shape[:2] + (1,), 0.3)], axis=-1)
    out4 = net.restore(rgba)
    np.testing.assert_allclose(out4[..., :3], net.restore(hwc), atol=1e-6)
    assert np.all(out4[..., 3] == 1.0)


def test_restore_refuses_what_forward_cannot_take():
    net = nets.DeepDeblur(in_channels=1, features=4, blocks=1, scales=2)
    with pytest.raises(ValueError, match="^image has 3 channels; DeepDeblur takes 1$"):
        net.restore(np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="NaN"):
        nets.DeblurNet(n1_channels=(4,) * 6, width=4, depth=1).restore(np.full((16, 16, 3), np.nan))
    with pytest.raises(ValueError, match="0-255|scale|255"):
        nets.DeblurNet(n1_channels=(4,) * 6, width=4, depth=1).restore(np.full((16, 16, 3), 200.0))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_restore_refuses_a_non_finite_output(name, bad, hwc):
    """A net whose output overflows (here: a last layer scaled to NaN or Inf) must not hand back a
    black uint8 photo or NaN pixels: the clip to [0, 1] would hide it."""
    net = _net(name)
    forward = net.forward
    net.forward = lambda x: forward(x) * bad
    for photo in (hwc, np.round(hwc * 255).astype(np.uint8)):
        with pytest.raises(ValueError, match=f"^{name} produced NaN or Inf values on this image"):
            net.restore(photo)
    net.forward = forward  # a finite output is answered as before
    assert np.isfinite(net.restore(hwc)).all()
