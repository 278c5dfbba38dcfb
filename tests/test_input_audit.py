"""Bad arguments to public functions raise a TypeError/ValueError that names the argument.

Cases found by fuzzing the public API (wrong types, NaN/Inf, out-of-range sizes) that used to
pass silently, fail deep inside, or blame another argument.
"""
import numpy as np
import pytest
import torch

from pnpdeblur import priors


# -- priors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make, arg", [
    (lambda v: priors.SkimageTV(scale=v), "scale"),
    (lambda v: priors.NLMeans(h_scale=v), "h_scale"),
    (lambda v: priors.Bilateral(color_scale=v), "color_scale"),
    (lambda v: priors.Bilateral(sigma_spatial=v), "sigma_spatial"),
    (lambda v: priors.TV(tol=v), "tol"),
])
@pytest.mark.parametrize("value, error", [(float("nan"), ValueError), (float("inf"), ValueError),
                                          (-1.0, ValueError), ("1", TypeError), (True, TypeError)])
def test_prior_scalars_are_checked_when_made(make, arg, value, error):
    with pytest.raises(error, match=arg):
        make(value)


def test_bilateral_sigma_spatial_must_be_positive():
    with pytest.raises(ValueError, match="sigma_spatial"):
        priors.Bilateral(sigma_spatial=0.0)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_tv_coupled_must_be_bool(value):
    with pytest.raises(TypeError, match="coupled"):
        priors.TV(coupled=value)


def test_tv_iters_refuses_bool():
    with pytest.raises(ValueError, match="iters"):
        priors.TV(iters=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_tv_norm_refuses_nonfinite(bad):
    x = torch.rand(1, 3, 8, 8)
    x[0, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="x contains NaN or Inf"):
        priors.tv_norm(x)
