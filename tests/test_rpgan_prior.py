"""RPGANPrior and rpgan_schedule called directly (fast): a stand-in generator with a known
formula shows what the prior feeds it (z, the observation O from the context, the dtype,
grey-to-RGB replication) and how it counts levels; the schedule is checked against the
closed form σ_k log-uniform, β_k = λσ²/σ_k².
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.nets.rpgan import RPGANGenerator
from pnpdeblur.priors.rpgan import DEFAULT_LEVELS, RPGANPrior, rpgan_schedule


class _Gen(torch.nn.Module):
    """G(t, o) = w·t·(1, 2, 3) + o/2 per channel (channel-asymmetric, so averaging shows)."""

    def __init__(self, channels=3, dtype=torch.float32):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=dtype))
        if channels is not None:
            self.channels = channels
        self.config = {"width": 1}
        self.seen = []

    def forward(self, t, o):
        self.seen.append((t.detach().clone(), o.detach().clone()))
        c = t.shape[1]
        k = torch.arange(1, c + 1, dtype=t.dtype).view(1, c, 1, 1)
        return self.w * t * k + o / 2


def _g(t, o):
    c = t.shape[1]
    return t * torch.arange(1, c + 1, dtype=t.dtype).view(1, c, 1, 1) + o / 2


# -- schedule ---------------------------------------------------------------------------
def test_rpgan_schedule_is_the_closed_form():
    s0, s, lam = 49 / 255, 0.01, 0.23
    sig = [s0, math.sqrt(s0 * s), s]  # log-uniform, three levels
    want = [lam * s**2 / sk**2 for sk in sig]
    assert DEFAULT_LEVELS == 3
    np.testing.assert_allclose(rpgan_schedule(0.01), want, rtol=1e-12)
    np.testing.assert_allclose(rpgan_schedule(0.01, 2, sigma_start=0.1, lam=0.5), [0.005, 0.5], rtol=1e-12)
    np.testing.assert_allclose(rpgan_schedule(0.01, 1), [lam], rtol=1e-12)
    prior = RPGANPrior(_Gen(), levels=2)
    assert prior.schedule(0.01, sigma_start=0.1, lam=0.5) == rpgan_schedule(0.01, 2, sigma_start=0.1, lam=0.5)
    assert len(prior.schedule(0.02)) == 2


def test_rpgan_schedule_checks_its_arguments():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match=r"^levels must be a positive int, got "):
            rpgan_schedule(0.01, bad)
    with pytest.raises(TypeError, match=r"^noise_level must be a real number, got str$"):
        rpgan_schedule("0.01")


# -- construction -----------------------------------------------------------------------
def test_constructor_defaults_and_checks():
    g = _Gen().train()
    p = RPGANPrior(g)
    assert p.generator is g and not g.training  # eval mode
    assert (p.levels, p.clamp, p.device, p.channels, p.level, p.levels_run) == (3, False, None, 3, 0, [])
    assert RPGANPrior(_Gen(), clamp=np.True_).clamp is True
    assert RPGANPrior(_Gen(channels=None)).channels is None
    with pytest.raises(TypeError, match=r"^generator must be an RPGANGenerator, a checkpoint path or None, got int$"):
        RPGANPrior(generator=3)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match=r"^levels must be a positive int, got "):
            RPGANPrior(_Gen(), levels=bad)
    assert RPGANPrior(_Gen(), levels=1).levels == 1
    g2 = _Gen()
    assert RPGANPrior(g2, device="meta").device == torch.device("meta") and g2.w.device.type == "meta"
    assert repr(RPGANPrior(_Gen(), levels=2)) == "RPGANPrior(_Gen{'width': 1}, levels=2)"
    bare = _Gen()
    del bare.config
    assert repr(RPGANPrior(bare)) == "RPGANPrior(_Gen{}, levels=3)"


def test_generator_from_a_path_or_the_shipped_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    g = RPGANGenerator(width=4, n_res=1, final_width=4)
    path = g.save(tmp_path / "g.safetensors")
    for p in (path, str(path)):
        got = RPGANPrior(p).generator
        assert isinstance(got, RPGANGenerator) and got.config == g.config
        assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), g.state_dict().values()))
    monkeypatch.setattr(RPGANGenerator, "pretrained", classmethod(lambda cls: g))
    assert RPGANPrior().generator is g

    def missing(cls):
        raise FileNotFoundError("no file here")

    monkeypatch.setattr(RPGANGenerator, "pretrained", classmethod(missing))
    with pytest.raises(FileNotFoundError, match=r"^no RP-GAN weights ship with this install \(no file here\)\. "
                                                r"Train a generator with `python scripts/train_rpgan.py "
                                                r"--corpus \.data/bsds500/train --out rpgan\.safetensors` "
                                                r"\(see pnpdeblur\.train\.rpgan\) and use RPGANPrior\('rpgan\.safetensors'\), "
                                                r"or pass an RPGANGenerator instance$"):
        RPGANPrior()


# -- calls ------------------------------------------------------------------------------
def test_output_is_the_generator_of_z_and_the_observation():
    g = _Gen(dtype=torch.float64)
    p = RPGANPrior(g)
    z, y = torch.rand(2, 3, 4, 5, dtype=torch.float64), torch.rand(2, 3, 4, 5, dtype=torch.float64)
    out = p(z, 0.1, context={"y": y})
    torch.testing.assert_close(out, _g(z, y), rtol=0, atol=1e-15)
    torch.testing.assert_close(g.seen[0][1], y, rtol=0, atol=0)
    assert not out.requires_grad


def test_numpy_observation_in_the_image_layout():
    g = _Gen(dtype=torch.float64)
    z = np.random.default_rng(0).random((4, 5, 3))
    y = np.random.default_rng(1).random((4, 5, 3))
    out = RPGANPrior(g)(z, 0.1, context={"y": y})
    zt, yt = (torch.from_numpy(a).permute(2, 0, 1)[None] for a in (z, y))
    np.testing.assert_allclose(out, _g(zt, yt)[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-15)


def test_dtype_goes_to_the_generator_and_back():
    g = _Gen(dtype=torch.float32)
    z, y = torch.rand(1, 3, 4, 4, dtype=torch.float64), torch.rand(1, 3, 4, 4, dtype=torch.float64)
    out = RPGANPrior(g)(z, 0.1, context={"y": y})
    assert g.seen[0][0].dtype == torch.float32 and g.seen[0][1].dtype == torch.float32
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _g(z.float(), y.float()).double(), rtol=0, atol=0)


def test_grey_image_through_an_rgb_generator_is_replicated_and_averaged():
    g = _Gen(dtype=torch.float64)
    z, y = torch.rand(2, 1, 4, 5, dtype=torch.float64), torch.rand(2, 1, 4, 5, dtype=torch.float64)
    out = RPGANPrior(g)(z, 0.1, context={"y": y})
    assert g.seen[0][0].shape == (2, 3, 4, 5) and g.seen[0][1].shape == (2, 3, 4, 5)
    torch.testing.assert_close(out, 2 * z + y / 2, rtol=0, atol=1e-15)  # mean of (1, 2, 3)·z + y/2
    with pytest.raises(ValueError, match=r"^the generator takes 3 channels, the image has 2$"):
        RPGANPrior(g)(torch.rand(1, 2, 4, 4), 0.1, context={"y": torch.rand(1, 2, 4, 4)})
    # a generator without a channel count takes the image as it is
    free = _Gen(channels=None, dtype=torch.float64)
    z2, y2 = torch.rand(1, 2, 4, 4, dtype=torch.float64), torch.rand(1, 2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(RPGANPrior(free)(z2, 0.1, context={"y": y2}), _g(z2, y2), rtol=0, atol=1e-15)


def test_clamp():
    g = _Gen(dtype=torch.float64)
    z, y = torch.full((1, 3, 2, 2), 0.6, dtype=torch.float64), torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    raw = _g(z, y - 2.0)  # channels 0.6 - 1, 1.2 - 1, 1.8 - 1: below 0, inside, inside
    out = RPGANPrior(g, clamp=True)(z, 0.1, context={"y": y - 2.0})
    torch.testing.assert_close(out, raw.clamp(0, 1), rtol=0, atol=0)
    out = RPGANPrior(g, clamp=True)(z, 0.1, context={"y": y + 1.0})  # 1.1, 1.7, 2.3: all above 1
    assert torch.equal(out, torch.ones_like(z))


def test_gradients_flow_only_when_z_asks():
    g = _Gen(dtype=torch.float64)
    z = torch.rand(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    RPGANPrior(g)(z, 0.1, context={"y": y}).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 2, 2))


def test_observation_errors_name_the_context():
    p = RPGANPrior(_Gen())
    z = torch.rand(1, 3, 8, 8)
    msg = r"^RPGANPrior needs the blurred observation O: call it with context=\{'y': O\} \(pnpdeblur.solvers.hqs does\)$"
    for ctx in (None, {}, {"iteration": 0}):
        with pytest.raises(ValueError, match=msg):
            p(z, 0.1, context=ctx)
    with pytest.raises(ValueError, match=r"^context\['y'\] must have the shape of z \(1, 3, 8, 8\), got \(1, 3, 8, 4\)$"):
        p(z, 0.1, context={"y": z[..., :4]})
    with pytest.raises(ValueError, match=r"^context\['y'\] contains NaN or Inf$"):
        p(z, 0.1, context={"y": torch.full_like(z, float("inf"))})
    with pytest.raises(TypeError, match=r"^context\['y'\] must be an array"):
        p(z, 0.1, context={"y": [[0.0]]})
    with pytest.raises(ValueError, match=r"^context\['y'\] must have shape"):
        p(z, 0.1, context={"y": np.zeros((1, 1, 1, 8, 8))})


def test_level_counting():
    p = RPGANPrior(_Gen())
    z, y = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    for _ in range(3):
        p(z, 0.1, context={"y": y})
    assert p.levels_run == [1, 2, 3] and p.level == 3
    # the solver's iteration wins; bools, negatives and floats are not iterations
    p(z, 0.1, context={"y": y, "iteration": 6})
    p(z, 0.1, context={"y": y, "iteration": True})
    p(z, 0.1, context={"y": y, "iteration": -1})
    p(z, 0.1, context={"y": y, "iteration": 2.0})
    p(z, 0.1, context={"y": y, "iteration": 0})
    assert p.levels_run == [1, 2, 3, 7, 8, 9, 10, 1]
    # a new observation restarts the count
    y2 = y.clone()
    p(z, 0.1, context={"y": y2})
    assert p.levels_run == [1] and p.level == 1
    p(z, 0.1, context={"y": y2})
    assert p.levels_run == [1, 2]
    p.reset()
    assert (p.level, p.levels_run, p._y_ref) == (0, [], None)
    p(z, 0.1, context={"y": y2})  # after a reset the same observation starts again at level 1
    assert p.levels_run == [1]


def test_a_new_observation_at_a_freed_ones_address_still_restarts_the_count():
    # CPython reuses a freed object's address (and so its id()) for the next object of the same
    # size; each new observation must still start at level 1 (a CI run caught the id-based check)
    p = RPGANPrior(_Gen())
    z = torch.rand(1, 3, 8, 8)
    for _ in range(20):
        y = torch.rand(1, 3, 8, 8)
        p(z, 0.1, context={"y": y})
        p(z, 0.1, context={"y": y})
        assert p.levels_run == [1, 2] and p.level == 2
        del y


def test_an_observation_without_weak_references_is_held_and_compared_by_identity():
    class Observation(list):  # a list subclass without __weakref__ slots
        __slots__ = ()

    p = RPGANPrior(_Gen())
    z = torch.rand(1, 3, 4, 4)
    o = Observation()
    with pytest.raises(TypeError):
        __import__("weakref").ref(o)
    p._track_level(o, {})
    p._track_level(o, {})
    assert p.levels_run == [1, 2]
    p._track_level(Observation(), {})
    assert p.levels_run == [1]
