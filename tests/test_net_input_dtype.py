"""Every network refuses an input whose dtype (or device) is not that of its weights, by name.

A float64 image (numpy's default) into a float32 network made torch fail deep inside a layer
with "Input type (double) and bias type (float) should be the same"; the nets now say which
argument and what to do. Under autocast the dtypes differ by design and must still pass.
"""
from __future__ import annotations

import re

import pytest
import torch

from pnpdeblur import nets

# class -> (small constructor, inputs(dtype) in forward order, argument names); all 32×32, batch 1
_X = lambda c: (lambda dt: (torch.rand(1, c, 32, 32, dtype=dt),))  # noqa: E731
NETS = {
    "DnCNN": (lambda: nets.DnCNN(features=4, depth=2), _X(1), ("x",)),
    "DRUNet": (lambda: nets.DRUNet(features=(4, 4, 4, 4), blocks=1), _X(3), ("x",)),
    "FFDNet": (lambda: nets.FFDNet(features=4, depth=2), _X(1), ("x",)),
    "IRCNNBank": (lambda: nets.IRCNNBank(features=4, levels=(0.01,)), _X(1), ("x",)),
    "SEN": (lambda: nets.SEN(width=4, stacks=1, levels=1), _X(3), ("x",)),
    "RPGANGenerator": (lambda: nets.RPGANGenerator(width=4, n_res=1),
                       lambda dt: (torch.rand(1, 3, 32, 32, dtype=dt), torch.rand(1, 3, 32, 32, dtype=dt)),
                       ("deconv", "blurred")),
    "ConditionalDiscriminator": (lambda: nets.ConditionalDiscriminator(width=4),
                                 lambda dt: (torch.rand(1, 3, 32, 32, dtype=dt), torch.rand(1, 3, 32, 32, dtype=dt)),
                                 ("x", "blurred")),
    "ArtifactCritic": (lambda: nets.ArtifactCritic(width=4), _X(3), ("x",)),
    "DeepDeblur": (lambda: nets.DeepDeblur(features=4, blocks=1, scales=2), _X(3), ("x",)),
    "DeepDeblurDiscriminator": (lambda: nets.DeepDeblurDiscriminator(base=4), _X(3), ("x",)),
    "DeblurNet": (lambda: nets.DeblurNet(n1_channels=(4, 4, 4, 4, 4, 4), width=4, depth=1), _X(3), ("x",)),
    "DVD": (lambda: nets.DVD(frames=3, widths=(4, 4, 4, 4)),
            lambda dt: (torch.rand(1, 9, 32, 32, dtype=dt),), ("frames",)),
    "DeblurGANGenerator": (lambda: nets.DeblurGANGenerator(features=4, blocks=1), _X(3), ("x",)),
    "DeblurGANCritic": (lambda: nets.DeblurGANCritic(features=4, layers=1), _X(3), ("x",)),
    "FlowNetS": (lambda: nets.FlowNetS(width=1),
                 lambda dt: (torch.rand(1, 3, 32, 32, dtype=dt), torch.rand(1, 3, 32, 32, dtype=dt)),
                 ("frame1", "frame2")),
}


def test_every_public_net_is_covered():
    assert sorted(NETS) == sorted(nets.__all__)


@pytest.mark.parametrize("name", sorted(NETS))
def test_float64_input_into_a_float32_net_is_named(name):
    make, inputs, names = NETS[name]
    net = make().eval()
    with torch.no_grad():
        out = net(*inputs(torch.float32))  # the float32 input runs
        assert all(torch.isfinite(o).all() for o in (out if isinstance(out, (list, tuple)) else [out]))
        # IRCNNBank's check is made by the IRCNN of the level it picks
        owner = "IRCNN" if name == "IRCNNBank" else name
        msg = f"{names[0]} has dtype torch.float64 but {owner}'s weights are torch.float32; convert with"
        with pytest.raises(TypeError, match="^" + re.escape(msg)):
            net(*inputs(torch.float64))
        # and a float64 net takes float64 input, refusing float32 the same way
        net = net.double()
        net(*inputs(torch.float64))
        with pytest.raises(TypeError, match=re.escape(f"has dtype torch.float32 but {owner}'s weights are "
                                                      "torch.float64")):
            net(*inputs(torch.float32))


@pytest.mark.parametrize("name", ["DnCNN", "SEN", "RPGANGenerator", "FlowNetS"])
def test_autocast_inputs_of_another_dtype_pass(name):
    # under autocast a layer's bf16 output feeds the next network (e.g. the deblurred frames into
    # the flow net of Reblur2Deblur): the check must not refuse it
    make, inputs, _ = NETS[name]
    net = make().eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(*inputs(torch.bfloat16))
    first = out[0] if isinstance(out, (list, tuple)) else out
    assert torch.isfinite(first.float()).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["DnCNN", "SEN", "FlowNetS"])
def test_input_on_another_device_is_named(name):
    make, inputs, names = NETS[name]
    net = make().eval()
    with torch.no_grad(), pytest.raises(ValueError, match=f"^{names[0]} is on cuda:0 but {name}'s weights are on cpu"):
        net(*(t.cuda() for t in inputs(torch.float32)))
