"""The per-batch helpers of the SEN and DRUNet recipes: ``blur_batch`` and the validation functions.

References are written out here: the symmetric flow MSE from its definition, the PSNR from
its definition, and ``blur_batch``'s noise from the same draws of a seeded RNG.
"""
import math

import pytest
import torch

from pnpdeblur.operators import MotionBlur
from pnpdeblur.train import drunet as drunet_recipe
from pnpdeblur.train import sen as sen_recipe


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _symmetric_mse(pred, flow):
    d_minus = ((pred - flow) ** 2).sum(1)
    d_plus = ((pred + flow) ** 2).sum(1)
    return float(torch.minimum(d_minus, d_plus).mean() / 2)


def test_blur_batch_is_blur_plus_per_sample_noise_clipped():
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(3, 2, 9, 11, generator=g, dtype=torch.float64)
    sharp[:, :, :2] = 0.0
    sharp[:, :, -2:] = 1.0  # saturated rows: the noise pushes them out of [0, 1] both ways
    flow = 4.0 * (torch.rand(3, 2, 9, 11, generator=g, dtype=torch.float64) - 0.5)
    torch.manual_seed(7)
    got = sen_recipe.blur_batch(sharp, flow, 0.5)
    torch.manual_seed(7)
    sigma = torch.rand(3, 1, 1, 1, dtype=torch.float64) * 0.5
    expected = (MotionBlur(flow)(sharp) + sigma * torch.randn(3, 2, 9, 11, dtype=torch.float64)).clamp(0.0, 1.0)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert (got == 0).any() and (got == 1).any()  # both clips were exercised


def test_blur_batch_without_noise_is_the_blur():
    sharp = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    flow = torch.full((2, 2, 8, 8), 1.5, dtype=torch.float64)
    torch.testing.assert_close(sen_recipe.blur_batch(sharp, flow, 0.0), MotionBlur(flow)(sharp), rtol=0, atol=0)


class _Stacks(torch.nn.Module):
    """Returns fixed per-stack flows, whatever the input."""

    def __init__(self, flows):
        super().__init__()
        self.flows = flows

    def forward(self, x):
        return list(self.flows)


def test_sen_validation_is_the_symmetric_mse_of_the_last_and_first_stack():
    g = torch.Generator().manual_seed(1)
    flow = torch.randn(2, 2, 5, 6, generator=g)
    stacks = [torch.randn(2, 2, 5, 6, generator=g) for _ in range(3)]
    stacks[1] = -flow  # sign-flipped truth: 0 under the symmetric MSE, not under the plain one
    out = sen_recipe.val_fn(_Stacks([stacks[0], stacks[2], stacks[1]]), {"blurred": None, "flow": flow})
    assert set(out) == {"flow_mse", "flow_mse_stack1"}
    assert out["flow_mse"] == pytest.approx(0.0, abs=1e-12)
    assert out["flow_mse_stack1"] == pytest.approx(_symmetric_mse(stacks[0], flow), rel=1e-6)
    two = sen_recipe.val_fn(_Stacks([stacks[0], stacks[1]]), {"blurred": None, "flow": flow})
    assert two["flow_mse_stack1"] == pytest.approx(_symmetric_mse(stacks[0], flow), rel=1e-6)
    one = sen_recipe.val_fn(_Stacks([stacks[2]]), {"blurred": None, "flow": flow})
    assert one == {"flow_mse": pytest.approx(_symmetric_mse(stacks[2], flow), rel=1e-6)}


class _Shrink(torch.nn.Module):
    """A 'denoiser' that pulls towards 0.5 by the σ it is given (so σ must reach it)."""

    def forward(self, noisy, sigma):
        return noisy + sigma.view(-1, 1, 1, 1) * (0.5 - noisy)


def _psnr(x, ref):
    mse = ((x - ref) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


def test_drunet_validation_psnr_of_output_and_of_input():
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 3, 6, 7, generator=g)
    noisy = (clean + 0.1 * torch.randn(2, 3, 6, 7, generator=g)).clamp(0, 1)
    sigma = torch.tensor([0.2, 0.6])
    out = drunet_recipe.val_fn(_Shrink(), {"noisy": noisy, "clean": clean, "sigma": sigma})
    assert set(out) == {"psnr", "psnr_noisy"}
    denoised = noisy + sigma.view(-1, 1, 1, 1) * (0.5 - noisy)
    assert out["psnr"] == pytest.approx(_psnr(denoised, clean), rel=1e-5)
    assert out["psnr_noisy"] == pytest.approx(_psnr(noisy, clean), rel=1e-5)
    assert math.isfinite(out["psnr"]) and out["psnr"] != pytest.approx(out["psnr_noisy"])
