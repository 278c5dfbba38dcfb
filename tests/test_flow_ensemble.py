"""The 8-symmetry test-time ensemble of pd.estimate_flow (and pd.deblur's flow_ensemble), with
stand-in networks whose answers are known: an orientation-equivariant flow must come back as it
is, an orientation-blind one cancels, and the network must see exactly the 8 flips/transposes."""
import re
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _flow_standins import StandInSEN
from pnpdeblur import pipeline
from pnpdeblur.data import canonicalize_flow
from pnpdeblur.estimation.learned import estimate_flow
from pnpdeblur.priors import TV


def _gradient_field(x):
    """10 × (∂I/∂x, ∂I/∂y) of channel 0 by central differences, replicated border.

    Equivariant under every flip and transpose: flipping the image left-right flips the field and
    negates its x component, transposing it transposes the field and swaps the components.
    """
    p = F.pad(x[:, :1], (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return 10 * torch.cat((gx, gy), 1)


def _image(h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((3, h, w)).astype(np.float32))


def _symmetries_by_numpy(img):
    """The 8 images of the dihedral group, built independently with np.rot90 and np.flip."""
    a = img.numpy()
    out = []
    for k in range(4):
        r = np.rot90(a, k, axes=(1, 2))
        out += [r, np.flip(r, 2)]
    return out


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_the_network_sees_each_of_the_8_flips_and_transposes_once(shape):
    img = _image(*shape)
    m = StandInSEN(fn=_gradient_field)
    estimate_flow(img, m)
    assert len(m.calls) == 8
    seen = [t[0].numpy() for t in m.inputs]
    want = _symmetries_by_numpy(img)
    for w in want:  # every symmetry was sent, none twice (a random image has no symmetry of its own)
        assert sum(s.shape == w.shape and np.array_equal(s, w) for s in seen) == 1
    assert any(np.array_equal(s, img.numpy()) for s in seen)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (33, 33)])
def test_an_equivariant_network_comes_back_unchanged(shape):
    """Each member is mapped back to the image's frame, vector included: a wrong sign or a missed
    u/v swap would change the answer of a network that turns with the image."""
    img = _image(*shape, seed=1)
    plain = estimate_flow(img, StandInSEN(fn=_gradient_field), ensemble=False)
    ens = estimate_flow(img, StandInSEN(fn=_gradient_field))
    want = canonicalize_flow(_gradient_field(img[None]))[0]
    assert torch.allclose(plain, _gradient_field(img[None])[0])  # ensemble=False: the network's own answer
    assert ens.shape == (2,) + shape
    assert torch.allclose(ens, want, atol=1e-4)
    assert float(want.abs().max()) > 3  # a field with real vectors in every direction
    assert float((ens[0] >= 0).float().mean()) == 1.0  # canonical u >= 0


def test_an_orientation_blind_answer_cancels():
    """A network that answers a fixed vector whatever the image's orientation: mapped back, the 8
    members have doubled angles 2θ, −2θ, 180° − 2θ and 2θ − 180°, twice each, which sum to zero."""
    img = _image(32, 48, seed=2)
    const = estimate_flow(img, StandInSEN((6.0, 2.5)))
    assert torch.allclose(const, torch.zeros_like(const), atol=1e-5)
    assert torch.allclose(estimate_flow(img, StandInSEN((6.0, 2.5)), ensemble=False)[0], torch.tensor(6.0))


def test_tiles_are_each_symmetrised():
    img = _image(40, 72, seed=3)
    m = StandInSEN(fn=_gradient_field)
    tiled = estimate_flow(img, m, tile=32, overlap=8)
    assert len(m.calls) > 8 and len(m.calls) % 8 == 0  # several tiles, 8 passes each
    assert all(max(c[0][-2:]) <= 32 for c in m.calls)
    # per tile the ensemble equals the equivariant network's answer: the blend is that of one pass
    one_pass = estimate_flow(img, StandInSEN(fn=_gradient_field), tile=32, overlap=8, ensemble=False)
    assert torch.allclose(tiled, canonicalize_flow(one_pass[None])[0], atol=1e-4)


def test_batches_scale_and_dtype_with_the_ensemble():
    img = torch.stack([_image(24, 40, seed=4), _image(24, 40, seed=5)])
    f = estimate_flow(img, StandInSEN(fn=_gradient_field))
    assert f.shape == (2, 2, 24, 40)
    for i in range(2):
        assert torch.allclose(f[i], canonicalize_flow(_gradient_field(img[i:i + 1]))[0], atol=1e-4)
    f64 = estimate_flow(img.double(), StandInSEN(fn=_gradient_field))
    assert f64.dtype == torch.float64
    half = estimate_flow(img, StandInSEN((4.0, 0.0)), scale=0.5)
    assert torch.allclose(half, torch.zeros_like(half), atol=1e-5)


def test_ensemble_must_be_a_bool():
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="^" + re.escape(f"ensemble must be True or False, got {bad!r}") + "$"):
            estimate_flow(_image(16, 16), StandInSEN(), ensemble=bad)


def test_shipped_sen_ensemble_is_finite_canonical_and_differs_from_one_pass():
    from pnpdeblur.data import random_motion_flow, sample_image
    from pnpdeblur.operators import MotionBlur

    img = sample_image("coffee", size=64)
    y = np.clip(np.asarray(MotionBlur(random_motion_flow((64, 64), "23", 5))(img)), 0, 1).astype(np.float32)
    ens, one = estimate_flow(y), estimate_flow(y, ensemble=False)
    assert ens.shape == one.shape == (2, 64, 64) and np.isfinite(ens).all()
    assert (ens[0] >= 0).all()
    assert np.abs(ens - one).max() > 0.1  # the members differ: averaging them changes the flow


# -- pd.deblur ----------------------------------------------------------------------------------

def test_deblur_runs_the_ensemble_by_default_at_every_global_iteration():
    y = _image(24, 32, seed=6).permute(1, 2, 0).numpy()
    m = StandInSEN(fn=_gradient_field)
    res = pipeline.deblur(y, iterations=2, prior=TV(), noise_level=0.05, flow_model=m, safeguard=False, n_iter=1,
                          cg_iters=1)
    assert len(m.calls) == 16 and len(res.flow) == 2
    # the first flow is the ensemble's: for this network, the canonical gradient field of the input
    want = canonicalize_flow(_gradient_field(torch.from_numpy(y.transpose(2, 0, 1).copy())[None]))[0]
    np.testing.assert_allclose(res.flow[0], want.numpy(), atol=1e-4)
    m1 = StandInSEN(fn=_gradient_field)
    pipeline.deblur(y, iterations=2, prior=TV(), noise_level=0.05, flow_model=m1, safeguard=False, n_iter=1,
                    cg_iters=1, flow_ensemble=False)
    assert len(m1.calls) == 2


def test_deblur_safeguard_scores_the_ensemble_flow():
    """An orientation-blind 6 px answer averages to zero: the photo looks sharp to the safeguard."""
    y = _image(24, 32, seed=7).permute(1, 2, 0).numpy()
    with pytest.warns(UserWarning, match="unchanged"):
        res = pipeline.deblur(y, prior=TV(), noise_level=0.05, flow_model=StandInSEN((6.0, 0.0)))
    assert res.unchanged == [True] and res.history[0]["safeguard"]["blur_score"][0] < 1e-4
    res = pipeline.deblur(y, prior=TV(), noise_level=0.05, flow_model=StandInSEN((6.0, 0.0)), flow_ensemble=False)
    assert res.unchanged == [False] and res.history[0]["safeguard"]["blur_score"][0] == pytest.approx(6.0)


def _unit_gradient_field(length):
    """``length`` × the unit gradient direction of channel 0: equivariant, every vector ``length`` px long."""
    def fn(x):
        g = _gradient_field(x)
        return length * g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-12)
    return fn


def test_deblur_threshold_and_noise_floor_follow_the_flow_mode(monkeypatch):
    """A 5 px blur score is below the ensemble's threshold (6) and above the single pass's (4.5)."""
    import pnpdeblur.solvers

    calls = []  # the noise level each HQS solve is given

    def fake_hqs(y, K, prior, noise_level, **kwargs):
        calls.append(noise_level)
        return types.SimpleNamespace(x=y.clone(), history=[])

    monkeypatch.setattr(pnpdeblur.solvers, "hqs", fake_hqs)
    y = _image(24, 32, seed=8).permute(1, 2, 0).numpy()
    with pytest.warns(UserWarning, match="blur_threshold=6 px"):
        res = pipeline.deblur(y, prior=TV(), noise_level=0.01, flow_model=StandInSEN(fn=_unit_gradient_field(5.0)))
    g = res.history[0]["safeguard"]
    assert g["threshold"] == 6.0 and g["blur_score"][0] == pytest.approx(5.0, abs=1e-3)
    assert g["processed"] == [False] and res.unchanged == [True] and calls == []
    res = pipeline.deblur(y, prior=TV(), noise_level=0.01, flow_model=StandInSEN(fn=_unit_gradient_field(5.0)),
                          flow_ensemble=False)
    g = res.history[0]["safeguard"]
    assert g["threshold"] == 4.5 and g["processed"] == [True] and res.unchanged == [False]
    assert calls == [0.03]  # one pass: its own floor
    pipeline.deblur(y, prior=TV(), noise_level=0.01, flow_model=StandInSEN(fn=_unit_gradient_field(6.5)))
    assert calls == [0.03, 0.02]  # the ensemble's floor
    # an explicit threshold or floor wins in either mode
    with pytest.warns(UserWarning, match="blur_threshold=4.8 px"):
        res = pipeline.deblur(y, prior=TV(), noise_level=0.01, flow_model=StandInSEN(fn=_unit_gradient_field(4.7)),
                              blur_threshold=4.8)
    assert res.history[0]["safeguard"]["threshold"] == 4.8 and res.unchanged == [True]
    pipeline.deblur(y, prior=TV(), noise_level=0.01, flow_model=StandInSEN(fn=_unit_gradient_field(5.5)),
                    noise_floor=0.05, flow_ensemble=False)
    assert calls == [0.03, 0.02, 0.05]


def test_deblur_flow_ensemble_must_be_a_bool():
    y = _image(16, 16).permute(1, 2, 0).numpy()
    for bad in ("no", 0, None):
        with pytest.raises(TypeError, match="^" + re.escape(f"flow_ensemble must be True or False, got {bad!r}")
                           + "$"):
            pipeline.deblur(y, prior=TV(), flow_model=StandInSEN(), flow_ensemble=bad)
