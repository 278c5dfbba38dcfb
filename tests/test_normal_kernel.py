"""The fused numba kernel ``normal`` (KᵀK x in one pass) on small images, interior and border.

Small enough to run with the kernels as plain Python (``MUTATION_NUMBA_PYTHON=1``). The
references are the two passes ``adjoint(forward(x))`` (bitwise: ``normal`` rounds ``K x``
to the image dtype per pixel and scatters in the adjoint's row chunks) and the dense
matrices of ``pnpdeblur.operators.dense``.
"""
import math

import numpy as np
import pytest

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import dense

H, W = 14, 13
LONGEST = 3.0  # radius ceil(3/2) + 4 = 6: rows 6..7 and column 6 are interior


def _segments(seed, n_flows=1, segments=1):
    rng = np.random.default_rng(seed)
    ang = rng.uniform(0, 2 * np.pi, (n_flows, segments, H, W))
    length = LONGEST * rng.uniform(0.3, 1.0, (n_flows, segments, H, W))
    vec = np.stack([length * np.cos(ang), length * np.sin(ang)], 2)
    s = 0.9 * LONGEST
    vec[:, 0, :, 6, 6] = (s, 0.4)  # interior: x-major, y-major, diagonal tie
    vec[:, 0, :, 7, 6] = (-0.3, s)
    vec[:, 0, :, 6, 7] = (s / math.sqrt(2), -s / math.sqrt(2))
    vec[:, 0, :, 7, 7] = (0.8 * LONGEST, 0.0)  # axis-aligned: one zero component, not zero-length
    vec[:, 0, :, 3, 5] = (0.0, -0.6 * LONGEST)
    vec[:, 0, :, 0, 3] = 0.0  # zero-length segments, on the border and in the interior,
    vec[:, -1, :, 6, 6] = 0.0  # the latter in the last segment (after others have added up)
    mass = rng.uniform(0.2, 1.0, (n_flows, segments, H, W))
    mass[:, 0, 2, 2] = 0.0  # a zero-mass segment
    return np.ascontiguousarray(vec), np.ascontiguousarray(mass)


def _ntaps(vec):
    return nk.max_taps(float(np.sqrt((vec**2).sum(2)).max()))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("beta", [0.0, 0.5])
@pytest.mark.parametrize("n_flows, segments", [(2, 1), (1, 2), (2, 3)])  # Nf != S; one flow for a batch
def test_normal_is_bitwise_the_adjoint_of_the_forward(dtype, beta, n_flows, segments):
    vec, mass = _segments(1, n_flows=n_flows, segments=segments)
    x = np.random.default_rng(2).random((2, 3, H, W)).astype(dtype)
    nt = _ntaps(vec)
    for chunks in (1, 3):
        got = nk.normal(x, vec, mass, beta, nt, chunks)
        ref = nk.adjoint(nk.forward(x, vec, mass, beta, nt), vec, mass, beta, nt, chunks)
        assert got.dtype == dtype and got.shape == x.shape
        np.testing.assert_array_equal(got, ref)


def test_normal_matches_the_dense_normal_matrix():
    vec, mass = _segments(3)
    f = vec[0, 0]
    A = dense.motion_blur_matrix(f)  # line kernel, mass 1
    x = np.random.default_rng(4).random((1, 1, H, W))
    got = nk.normal(x, vec, np.ones_like(mass), 0.0, _ntaps(vec), 2)
    ref = dense.apply_matrix(A.T.tocsr(), dense.apply_matrix(A, x))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
