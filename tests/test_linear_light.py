"""``pd.deblur(gamma=...)``: deconvolving the linearised photo (blur adds light before the camera's
tone curve), and ``pnpdeblur.pipeline.linearize``."""
import re

import numpy as np
import pytest
import torch

import pnpdeblur.solvers
from _fakes import unused_prior
from _flow_standins import StandInSEN
from pnpdeblur import MotionBlur, pipeline
from pnpdeblur.data import sample_image
from pnpdeblur.metrics import psnr
from pnpdeblur.pipeline import linearize
from pnpdeblur.priors import DnCNNPrior

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


def test_linearize_is_the_power_and_carries_the_noise_by_the_mean_slope():
    y = torch.tensor([[[[0.0, 0.0005, 0.25, 0.5, 1.0, -0.1]]]], dtype=torch.float64)
    lin, level = linearize(y, 2.2, 0.02)
    expect = np.array([0.0, 0.0005, 0.25, 0.5, 1.0, 0.0]) ** 2.2
    np.testing.assert_allclose(lin.numpy().ravel(), expect, rtol=1e-12, atol=0)
    slopes = 2.2 * np.maximum([0.0, 0.0005, 0.25, 0.5, 1.0, 0.0], 1e-3) ** 1.2  # negatives count as 0
    assert level == pytest.approx(0.02 * slopes.mean(), rel=1e-12)
    same, level1 = linearize(y, 1.0, 0.02)
    assert torch.equal(same, y.clamp(min=0)) and level1 == pytest.approx(0.02)


class RecordingHQS:
    def __init__(self):
        self.calls = []

    def __call__(self, y, K, prior, **kwargs):
        self.calls.append(dict(y=y.clone(), **kwargs))
        return type("R", (), dict(x=0.5 * y + 0.1, history=[]))()


@pytest.fixture
def fake_hqs(monkeypatch):
    rec = RecordingHQS()
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    return rec


def test_deblur_solves_the_linearised_photo_and_reencodes_the_result(fake_hqs):
    y = 0.9 * np.random.default_rng(0).random((9, 11, 3)).astype(np.float32)
    res = pipeline.deblur(y, prior=unused_prior, noise_level=0.01, noise_floor=0.02, flow_model=StandInSEN((6.0, 0.0)),
                          flow_ensemble=False, safeguard=False, boundary="replicate", gamma=2.2)
    (call,) = fake_hqs.calls
    t = torch.from_numpy(y.transpose(2, 0, 1))[None]
    lin, level = linearize(t, 2.2, 0.02)  # the floor first, then the curve's slope
    torch.testing.assert_close(call["y"], lin, rtol=1e-6, atol=0)  # float32 pow: vectorised or not
    assert call["noise_level"] == pytest.approx(level, rel=1e-12)
    np.testing.assert_allclose(res.x, np.clip(0.5 * y.astype(np.float64) ** 2.2 + 0.1, 0, 1) ** (1 / 2.2), atol=1e-5)


def test_without_gamma_nothing_is_linearised(fake_hqs):
    y = 0.9 * np.random.default_rng(1).random((9, 11, 3)).astype(np.float32)
    res = pipeline.deblur(y, prior=unused_prior, noise_level=0.03, flow_model=StandInSEN((6.0, 0.0)),
                          flow_ensemble=False, safeguard=False, boundary="replicate")
    (call,) = fake_hqs.calls
    assert torch.equal(call["y"], torch.from_numpy(y.transpose(2, 0, 1))[None]) and call["noise_level"] == 0.03
    np.testing.assert_allclose(res.x, 0.5 * y + 0.1, atol=1e-6)


@pytest.mark.parametrize("bad, err", [(0.5, ValueError), (4.5, ValueError), (float("nan"), ValueError),
                                      ("2.2", TypeError)])
def test_gamma_is_checked(bad, err):
    with pytest.raises(err, match="^gamma "):
        pipeline.deblur(np.zeros((8, 8, 3), np.float32), gamma=bad, flow_model=StandInSEN())


@pytest.mark.parametrize("gamma", [1.0, 1.5, 4.0])
def test_gamma_range_is_inclusive(fake_hqs, gamma):
    y = 0.9 * np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), flow_ensemble=False,
                    safeguard=False, gamma=gamma)
    (call,) = fake_hqs.calls
    assert call["noise_level"] == pytest.approx(linearize(torch.from_numpy(y.transpose(2, 0, 1))[None], gamma,
                                                          0.03)[1], rel=1e-6)


def test_negative_solver_output_is_not_a_nan(monkeypatch):
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", lambda y, K, prior, **kw: type("R", (), dict(x=y - 0.5, history=[]))())
    y = 0.9 * np.random.default_rng(3).random((8, 8, 3)).astype(np.float32)
    x = pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), flow_ensemble=False,
                        safeguard=False, boundary="replicate", gamma=2.2).x
    expect = np.clip(y.astype(np.float64) ** 2.2 - 0.5, 0, None) ** (1 / 2.2)
    np.testing.assert_allclose(x, expect, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 0, -2.2, float("nan"), float("inf"), 4.5])
def test_gamma_range_message(gamma):
    # a negative, NaN or infinite gamma says the range too (it said "a finite non-negative number")
    with pytest.raises(ValueError, match=re.escape("gamma must be in [1, 4] (2.2 for a typical camera curve) or "
                                                   f"None, got {gamma!r}") + "$"):
        pipeline.deblur(np.zeros((8, 8, 3), np.float32), gamma=gamma, flow_model=StandInSEN())
    with pytest.raises(TypeError, match=r"^gamma must be a real number, got str$"):
        pipeline.deblur(np.zeros((8, 8, 3), np.float32), gamma="2.2", flow_model=StandInSEN())


def test_a_photo_blurred_in_linear_light_is_recovered_better_linearised():
    """The scene blurred in linear light and encoded with a 2.2 curve (as GOPRO's data): with the
    true flow (a stand-in network) the linearised solve is clearly better than the one in the
    encoded values."""
    sharp = np.ascontiguousarray(sample_image("camera", channels=3)[120:184, 180:244]).astype(np.float32)
    flow = np.zeros((2, 64, 64), np.float32)
    flow[0] = 9.0
    y = (np.asarray(MotionBlur(flow)(sharp.astype(np.float64) ** 2.2)) ** (1 / 2.2)).astype(np.float32)
    out = {}
    for g in (None, 2.2):
        out[g] = pipeline.deblur(y, prior=DnCNNPrior(ensemble=False), noise_level=0.005, noise_floor=0.0,
                                 flow_model=StandInSEN((9.0, 0.0)), flow_ensemble=False, safeguard=False, gamma=g,
                                 n_iter=8, cg_iters=20).x
    assert psnr(out[2.2], sharp, channel_axis=-1) > psnr(out[None], sharp, channel_axis=-1) + 1.0
