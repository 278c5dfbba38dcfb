"""Flow-vector lengths (pnpdeblur._vectors) against numpy's hypot, and where the library uses them."""
import numpy as np
import pytest
import torch

from pnpdeblur import _vectors
from pnpdeblur._vectors import longest_vector, vector_length
from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import _segment


@pytest.mark.parametrize("shape, dim", [((3, 2, 5, 7), 1), ((2, 5, 7), 0), ((1, 4, 2, 6, 3), 2), ((5, 3, 2), -1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vector_length_matches_hypot(shape, dim, dtype):
    v = torch.from_numpy(np.random.default_rng(1).normal(0, 20, shape)).to(dtype)
    got = vector_length(v, dim)
    vn = v.double().numpy()
    ref = np.hypot(np.take(vn, 0, axis=dim), np.take(vn, 1, axis=dim))
    assert got.dtype == dtype and got.shape == ref.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=tol)


def test_vector_length_of_three_components():
    v = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0]]).T  # components along dim 0
    np.testing.assert_allclose(vector_length(v, 0).numpy(), [3.0, 5.0])


def test_vector_length_gradient_is_zero_not_nan_at_zero():
    v = torch.tensor([[0.0, 3.0], [0.0, 4.0]], dtype=torch.float64, requires_grad=True)  # (2 comps, 2 vecs)
    vector_length(v, 0).sum().backward()
    # d|v|/dv = v/|v| for the (3, 4) vector, 0 for the zero vector
    np.testing.assert_allclose(v.grad.numpy(), [[0.0, 0.6], [0.0, 0.8]])


def test_longest_vector_is_the_largest_float64_length():
    rng = np.random.default_rng(2)
    v = rng.uniform(-20, 20, (2, 3, 2, 9, 11))
    v[1, 2, :, 4, 5] = [-30.5, 41.25]  # the longest one, somewhere inside
    got = longest_vector(torch.from_numpy(v), dim=2)
    assert got == float(np.sqrt(v[1, 2, 0, 4, 5] ** 2 + v[1, 2, 1, 4, 5] ** 2))
    assert got == float(np.sqrt((v[:, :, 0] ** 2 + v[:, :, 1] ** 2).max()))
    # float32 input is read as its float64 values
    v32 = torch.from_numpy(v).float()
    assert longest_vector(v32, dim=2) == float(np.sqrt((v32.double()[:, :, 0] ** 2 + v32.double()[:, :, 1] ** 2)
                                                       .max().item()))


def test_longest_vector_empty_and_wrong_size():
    assert longest_vector(torch.zeros(0, 1, 2, 4, 4), dim=2) == 0.0
    with pytest.raises(ValueError, match="2-vectors along dim 1, got 3"):
        longest_vector(torch.zeros(1, 3, 4, 4), dim=1)


def test_numba_paths_size_their_buffers_from_longest_vector(monkeypatch):
    """The tap bound of every numba entry point comes from the flows' longest vector."""
    seen = []
    real = _vectors.longest_vector

    def spy(v, dim=1):
        out = real(v, dim)
        seen.append(out)
        return out

    monkeypatch.setattr(_segment, "longest_vector", spy)
    vec = torch.zeros(1, 1, 2, 6, 7, dtype=torch.float64)
    vec[0, 0, :, 2, 3] = torch.tensor([3.0, -4.0])
    mass = torch.ones(1, 1, 6, 7, dtype=torch.float64)
    x = torch.rand(1, 2, 6, 7, dtype=torch.float64)
    _segment._run_numba(x, vec, mass, 0.0, False)
    _segment._param_grad(x, x, vec, mass, 0.0)
    prep = _segment.prepare_numba(vec, mass)
    assert seen == [5.0, 5.0, 5.0]
    assert prep.ntaps == nk.max_taps(5.0)


def test_default_axis_is_one_the_flow_channels():
    f = torch.zeros(2, 2, 3, 4, dtype=torch.float64)  # (N, 2, H, W)
    f[1, 0, 2, 3], f[1, 1, 2, 3] = 6.0, 8.0
    assert vector_length(f).shape == (2, 3, 4) and float(vector_length(f)[1, 2, 3]) == 10.0
    assert longest_vector(f) == 10.0
