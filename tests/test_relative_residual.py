"""``solvers._common.relative_residual``: ‖K x − y‖ / ‖y‖, absolute where y = 0."""
import math

import torch

from pnpdeblur.operators import Identity
from pnpdeblur.solvers._common import relative_residual


def test_relative_for_any_nonzero_norm_including_below_one():
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    for scale in (0.3, 1.0, 7.0):  # ‖y‖ = 2·scale: below, at and above 1
        y = torch.full_like(x, scale)
        assert math.isclose(relative_residual(Identity(), x, y), 1.0, rel_tol=1e-15)
    y = torch.tensor([[[[0.3, 0.0], [0.0, 0.4]]]], dtype=torch.float64)  # ‖y‖ = 0.5
    x = torch.tensor([[[[0.3, 0.1], [0.0, 0.4]]]], dtype=torch.float64)
    assert math.isclose(relative_residual(Identity(), x, y), 0.1 / 0.5, rel_tol=1e-12)


def test_absolute_where_y_is_zero_and_kx_reused():
    x = torch.tensor([[[[3.0, 4.0]]]], dtype=torch.float64)
    y = torch.zeros_like(x)
    assert relative_residual(Identity(), x, y) == 5.0
    # a given Kx is used as it is (here deliberately not K x)
    assert relative_residual(Identity(), x, y, Kx=torch.ones_like(x)) == math.sqrt(2.0)
