"""Priors against hand-computed cases (issue 16, part 1 and 2).

Colour TV couples the channels: the gradient magnitude at a pixel is taken jointly over
them. On a two-pixel image the TV prox reduces to a soft threshold of the difference
vector d = x[1] − x[0] ∈ R^C, which gives closed forms for both the coupled and the
channel-by-channel prox.
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.priors import TV, tv_norm, tv_prox


def _two_pixel(d0, axis):
    """(1, C, 1, 2) or (1, C, 2, 1) image with channel means m_c and differences d0_c."""
    d0 = np.asarray(d0, dtype=np.float64)
    m = 0.5 + 0.1 * np.arange(len(d0))
    a, b = m - d0 / 2, m + d0 / 2
    z = np.stack([a, b], axis=-1)  # (C, 2)
    z = z[:, None, :] if axis == "x" else z[:, :, None]
    return torch.from_numpy(z[None].copy()), m


def _from_diff(m, d, axis):
    z = np.stack([m - d / 2, m + d / 2], axis=-1)
    return (z[:, None, :] if axis == "x" else z[:, :, None])[None]


# For x = (m − d/2, m + d/2) per channel: ½‖x − z‖² = ¼‖d − d0‖² and TV(x) = ‖d‖ (coupled)
# or Σ|d_c| (per channel). So prox_τTV keeps m and maps d0 to
#   coupled:   d = d0 · max(0, 1 − 2τ/‖d0‖)       (group soft threshold at 2τ)
#   separate:  d_c = sign(d0_c) · max(0, |d0_c| − 2τ)
@pytest.mark.parametrize("axis", ["x", "y"])
def test_coupled_colour_tv_prox_matches_the_group_soft_threshold(axis):
    d0 = np.array([0.3, 0.4])  # ‖d0‖ = 0.5
    tau = 0.05
    z, m = _two_pixel(d0, axis)
    coupled = _from_diff(m, d0 * (1 - 2 * tau / np.linalg.norm(d0)), axis)  # d = (0.24, 0.32)
    separate = _from_diff(m, np.sign(d0) * np.maximum(np.abs(d0) - 2 * tau, 0), axis)  # (0.2, 0.3)
    assert np.abs(coupled - separate).max() > 0.01  # the case tells them apart
    kw = dict(iters=2000, tol=1e-12)
    np.testing.assert_allclose(tv_prox(z, tau, **kw).numpy(), coupled, atol=1e-6)
    np.testing.assert_allclose(tv_prox(z, tau, coupled=False, **kw).numpy(), separate, atol=1e-6)
    # the prior: τ = weight · σ, coupled by default (documented)
    np.testing.assert_allclose(TV(**kw)(z, tau).numpy(), coupled, atol=1e-6)
    np.testing.assert_allclose(TV(weight=2.0, coupled=True, **kw)(z, tau / 2).numpy(), coupled, atol=1e-6)
    np.testing.assert_allclose(TV(coupled=False, **kw)(z, tau).numpy(), separate, atol=1e-6)
    np.testing.assert_allclose(TV(**kw).prox(z, tau).numpy(), coupled, atol=1e-6)
    # numpy (H, W, C) at the public boundary: same channels coupled
    hwc = z[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(TV(**kw)(hwc, tau), coupled[0].transpose(1, 2, 0), atol=1e-6)


def test_coupled_tv_prox_keeps_the_colour_of_an_edge():
    # 2τ = 0.38 lies between the channel edges 0.3 and 0.4 and below ‖d0‖ = 0.5: per
    # channel, the weaker edge vanishes and the stronger one nearly does; coupled, both
    # shrink by the same factor 1 − 0.38/0.5 (the colour of the edge is kept).
    d0 = np.array([0.3, 0.4])
    tau = 0.19
    z, m = _two_pixel(d0, "x")
    got = tv_prox(z, tau, iters=3000, tol=1e-13).numpy()
    np.testing.assert_allclose(got, _from_diff(m, d0 * (1 - 2 * tau / 0.5), "x"), atol=1e-6)
    got_sep = tv_prox(z, tau, coupled=False, iters=3000, tol=1e-13).numpy()
    np.testing.assert_allclose(got_sep, _from_diff(m, np.array([0.0, 0.4 - 2 * tau]), "x"), atol=1e-6)


def test_tv_norm_coupled_and_separate_by_hand():
    # one colour edge of (0.3, 0.4) across x and (0.0, 0.12) across y at pixel (0, 0)
    x = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 1], x[0, 1, 0, 1] = 0.3, 0.4
    x[0, 1, 1, 0] = 0.12
    # pixel (0,0): gx = (0.3, 0.4), gy = (0, 0.12); pixel (0,1): gy = (-0.3, -0.4); pixel (1,0): gx = (0, -0.12)
    coupled = math.sqrt(0.09 + 0.16 + 0.0144) + 0.5 + 0.12
    separate = 0.3 + math.hypot(0.4, 0.12) + 0.3 + 0.4 + 0.12
    assert float(tv_norm(x)) == pytest.approx(coupled, rel=1e-12)
    assert float(tv_norm(x, coupled=False)) == pytest.approx(separate, rel=1e-12)
