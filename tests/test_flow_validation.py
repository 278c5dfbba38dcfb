"""Validation of flow fields and of ``tau`` (``pnpdeblur.operators._flow``), called directly.

Every error must name the argument it is about (messages are matched from their start),
the limits are inclusive where documented (|component| <= max_abs, 0 < tau <= 1), and
accepted input comes back as an ``(N, 2, H, W)`` tensor holding the same values.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpdeblur.operators._flow import MAX_FLOW, as_flow, as_flow_pair, check_tau


def test_max_flow_is_64_pixels():
    assert MAX_FLOW == 64.0


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_three_dimensional_flow_gets_a_batch_axis_and_keeps_its_values(kind):
    f = np.random.default_rng(0).uniform(-3, 3, (2, 4, 5))
    given = torch.from_numpy(f) if kind == "torch" else f
    out = as_flow(given)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, 4, 5)
    np.testing.assert_array_equal(out[0].numpy(), f)
    batch = np.stack([f, -f])
    out = as_flow(batch)
    assert tuple(out.shape) == (2, 2, 4, 5) and out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), batch)


def test_limit_is_inclusive_and_applies_to_negative_components():
    f = np.zeros((1, 2, 3, 3))
    f[0, 1, 2, 2] = -MAX_FLOW
    assert float(as_flow(f).min()) == -MAX_FLOW  # exactly the limit is accepted
    f[0, 1, 2, 2] = -MAX_FLOW - 0.5
    with pytest.raises(ValueError, match=r"^flow has a component of 64\.5 px; at most 64 px is supported$"):
        as_flow(f)
    g = np.zeros((1, 2, 3, 3))
    g[0, 0, 0, 0] = 2.5
    assert float(as_flow(g, "m", max_abs=2.5).max()) == 2.5
    with pytest.raises(ValueError, match=r"^m has a component of 2\.5 px; at most 2 px is supported$"):
        as_flow(g, "m", max_abs=2.0)


@pytest.mark.parametrize(
    "shape", [(2, 5), (1, 2, 3, 3, 1), (1, 3, 4, 4), (1, 1, 4, 4), (3, 4, 4)]
)
def test_wrong_shapes_name_the_argument(shape):
    with pytest.raises(ValueError, match=r"^motion must have shape \(N, 2, H, W\) or \(2, H, W\) with channels \(u, v\), got shape"):
        as_flow(np.zeros(shape), "motion")
    with pytest.raises(ValueError, match=r"^flow must have shape"):
        as_flow(np.zeros(shape))


@pytest.mark.parametrize("shape", [(0, 2, 3, 3), (1, 2, 0, 3), (1, 2, 3, 0), (2, 0, 3)])
def test_empty_flows_name_the_argument(shape):
    with pytest.raises(ValueError, match=r"^flow must have a non-empty batch and image grid, got shape"):
        as_flow(np.zeros(shape))


def test_dtype_and_non_finite_values_name_the_argument():
    with pytest.raises(TypeError, match=r"^flow_x"):
        as_flow(np.zeros((1, 2, 3, 3), np.int64), "flow_x")
    with pytest.raises(TypeError, match=r"^flow_x"):
        as_flow([[0.0]], "flow_x")
    bad = np.zeros((1, 2, 3, 3))
    bad[0, 0, 1, 1] = np.inf
    with pytest.raises(ValueError, match=r"^flow_x contains NaN or Inf"):
        as_flow(bad, "flow_x")


def test_flow_pair_names_each_flow_and_checks_shapes():
    ok = np.zeros((1, 2, 4, 4))
    fn, fp = as_flow_pair(ok + 1.0, np.zeros((2, 4, 4)) - 2.0)
    assert tuple(fn.shape) == tuple(fp.shape) == (1, 2, 4, 4)
    assert float(fn.max()) == 1.0 and float(fp.min()) == -2.0
    with pytest.raises(ValueError, match=r"^flow_next must have shape"):
        as_flow_pair(np.zeros((1, 3, 4, 4)), ok)
    with pytest.raises(ValueError, match=r"^flow_prev must have shape"):
        as_flow_pair(ok, np.zeros((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"^flow_prev has a component"):
        as_flow_pair(ok, ok + 65.0)
    with pytest.raises(
        ValueError,
        match=r"^flow_next and flow_prev must have the same shape, got \(1, 2, 4, 4\) and \(1, 2, 4, 5\)$",
    ):
        as_flow_pair(ok, np.zeros((1, 2, 4, 5)))
    with pytest.raises(ValueError, match=r"^flow_next and flow_prev must have the same shape"):
        as_flow_pair(ok, np.zeros((2, 2, 4, 4)))


def test_tau_accepts_the_half_open_interval_and_returns_a_float():
    assert check_tau(1) == 1.0 and type(check_tau(1)) is float
    assert check_tau(np.float32(0.25)) == 0.25 and type(check_tau(np.float32(0.25))) is float
    assert check_tau(1e-9) == 1e-9
    for bad in (0.0, -0.5, 1.0 + 1e-12, float("nan")):
        with pytest.raises(ValueError, match=r"^tau must be in \(0, 1\], got"):
            check_tau(bad)
    for bad in (True, "0.5", None, 0.5j):
        with pytest.raises(TypeError, match=r"^tau must be a float in \(0, 1\], got"):
            check_tau(bad)


@pytest.mark.parametrize("shape", [(1, 2, 1, 5), (1, 2, 4, 1), (2, 1, 1), (1, 2, 1, 1)])
def test_one_pixel_high_or_wide_flows_are_accepted(shape):
    # a 1-pixel row or column is a valid image grid (only empty ones are refused)
    f = np.full(shape, 0.5)
    out = as_flow(f)
    assert tuple(out.shape) == ((1,) + shape if len(shape) == 3 else shape)


def test_tau_type_error_names_the_given_type():
    with pytest.raises(TypeError, match=r"^tau must be a float in \(0, 1\], got bool$"):
        check_tau(False)
    with pytest.raises(TypeError, match=r"^tau must be a float in \(0, 1\], got str$"):
        check_tau("1")
