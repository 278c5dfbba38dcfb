"""Line-kernel properties for oblique motion (issue 16, part 2).

The dense reference, the numba, torch and CUDA kernels transcribe the same formula, so
they can agree on a wrong one; the design examples pin only axis-aligned motion. These
checks come from what the kernel *means* (the average of the sharp image over the
segment p − m/2 .. p + m/2, x right and y down), not from the formula:

exact : mass 1; w(k) = w(−k) (zero centroid); m and −m give the same kernel; (u, −v)
        gives the vertically mirrored kernel, (v, u) the transposed one; no weight
        farther than 1 px from the segment's line or beyond its ends (+ ½ px);
        the x–y covariance has the sign of u·v (y points down).
approx: the second moment along m is that of a uniform segment, L²/12, and the spread
        across m is that of the 1-px anti-aliasing tent (1/6 in the continuum).
        Lattice sampling moves both: over random directions the along-moment stays
        within 0.2 px² of L²/12 for short segments and within a few % of it for long
        ones near rational directions (e.g. −5.5 % at m = (20, 21)), and the across
        moment stays below 0.23. The bounds used (15 % + 0.3 px², and 0.3 px²) leave a
        margin over that and still fail on a kernel of the wrong length (a factor 2 in L
        is 4× in the moment) or the wrong width.
"""
import numpy as np
import pytest

import pnpdeblur as pd
from pnpdeblur.operators import motion_kernel

_rng = np.random.default_rng(16)
_RANDOM = [tuple(L * np.array([np.cos(a), np.sin(a)])) for L, a in
           zip(_rng.uniform(0.5, 40, 10), _rng.uniform(0, 2 * np.pi, 10))]
MOTIONS = [(3.0, 4.0), (-5.0, 12.0), (10.3, -4.7), (0.6, 0.3), (1.5, 1.5), (20.0, 21.0), (2.2, 0.1)] + _RANDOM


def _kernel(m, path):
    """w(k) on offsets −r..r read off the operator: K δ_q at p is w(q − p)."""
    L = float(np.hypot(*m))
    r = int(np.ceil(L / 2)) + 3
    n = 2 * r + 1
    x = np.zeros((1, 1, n, n))
    x[0, 0, r, r] = 1.0
    flow = np.empty((1, 2, n, n))
    flow[:, 0], flow[:, 1] = m
    K = pd.MotionBlur(flow, path=path)
    w = np.asarray(K(x))[0, 0][::-1, ::-1]
    wt = np.asarray(K.T(x))[0, 0]  # the adjoint scatters w(p − q)
    np.testing.assert_allclose(wt, w, atol=1e-12)
    k = np.arange(-r, r + 1, dtype=np.float64)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    return w, kx, ky, L


@pytest.mark.parametrize("path", ["numba", "torch"])
@pytest.mark.parametrize("m", MOTIONS, ids=lambda m: f"{m[0]:.2f},{m[1]:.2f}")
def test_oblique_line_kernel_properties(m, path):
    w, kx, ky, L = _kernel(m, path)
    e = np.array(m) / L
    t = kx * e[0] + ky * e[1]  # along m
    s = kx * e[1] - ky * e[0]  # across m
    assert w.min() >= 0
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-12)  # w(k) = w(−k): zero centroid
    assert abs((w * kx).sum()) < 1e-12 and abs((w * ky).sum()) < 1e-12
    # support: within 1 px of the line, within L/2 + 1/2 of the centre along it
    assert np.all(w[np.abs(s) >= 1 - 1e-12] == 0)
    assert np.all(w[np.abs(t) >= L / 2 + 0.5 - 1e-12] == 0)
    # moments (tolerances derived in the module docstring)
    along, across = (w * t * t).sum(), (w * s * s).sum()
    assert abs(along - L**2 / 12) <= 0.15 * L**2 / 12 + 0.3, (along, L**2 / 12)
    assert across <= 0.3
    # orientation: y points down, so u·v > 0 means the kernel runs top-left to bottom-right
    cov = (w * kx * ky).sum()
    if abs(m[0] * m[1]) > 1e-9 and min(abs(m[0]), abs(m[1])) > 0.5:
        assert np.sign(cov) == np.sign(m[0] * m[1])


@pytest.mark.parametrize("m", MOTIONS[:7], ids=lambda m: f"{m[0]:.2f},{m[1]:.2f}")
def test_line_kernel_symmetries(m):
    u, v = m
    k = motion_kernel((u, v))
    np.testing.assert_allclose(motion_kernel((-u, -v)), k, atol=1e-15)  # m ≡ −m
    np.testing.assert_allclose(motion_kernel((u, -v)), k[::-1, :], atol=1e-15)  # mirror in y
    np.testing.assert_allclose(motion_kernel((v, u)), k.T, atol=1e-15)  # swap x and y
    # and the function agrees with the operator's kernel (same rows = y, columns = x)
    w, *_ = _kernel(m, "numba")
    r, rw = k.shape[0] // 2, w.shape[0] // 2
    big = np.zeros((2 * max(r, rw) + 1,) * 2)
    c = big.shape[0] // 2
    big[c - r:c + r + 1, c - r:c + r + 1] += k
    big[c - rw:c + rw + 1, c - rw:c + rw + 1] -= w
    assert np.abs(big).max() < 1e-12
