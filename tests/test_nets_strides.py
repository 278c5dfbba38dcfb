"""Networks of any depth accept any image size, and SEN.estimate returns the last stack's flow.

The strides (``2**(scales-1)`` for DeepDeblur, ``4 · 2**levels`` for SEN) agree with their
linear look-alikes at the shipped depths (scales 2-3, levels 1-2), so these tests use the
depths where a wrong formula pads to the wrong multiple and the decoder's sizes stop matching.
"""
import pytest
import torch

from pnpdeblur.data.flows import canonicalize_flow
from pnpdeblur.nets.deepdeblur import DeepDeblur
from pnpdeblur.nets.sen import SEN


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.mark.parametrize("scales", [1, 4])
def test_deepdeblur_of_any_depth_takes_any_size(scales):
    torch.manual_seed(0)
    net = DeepDeblur(features=4, blocks=0, scales=scales, kernel_size=3).eval()
    x = torch.rand(1, 3, 19, 26)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert net.stride == 2 ** (scales - 1)  # the documented padding multiple (docstring)


@pytest.mark.parametrize("levels", [1, 3])
def test_sen_of_any_depth_estimates_any_size(levels):
    torch.manual_seed(0)
    net = SEN(width=4, stacks=1, levels=levels).eval()
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        flow = net.estimate(x)
    assert flow.shape == (1, 2, 37, 45) and torch.isfinite(flow).all()


def test_sen_estimate_is_the_last_stacks_flow_canonicalised():
    torch.manual_seed(0)
    net = SEN(width=4, stacks=3, levels=1).eval()
    x = torch.rand(1, 3, 16, 24)  # a multiple of the stride (8): no padding
    with torch.no_grad():
        stacks = net(x)
        flow = net.estimate(x)
    # estimate runs the stacks with the batch norms folded in (SEN._inference_stacks): float rounding apart
    torch.testing.assert_close(flow, canonicalize_flow(stacks[-1]), rtol=0, atol=1e-5)
    for earlier in stacks[:-1]:
        assert not torch.allclose(flow, canonicalize_flow(earlier))
