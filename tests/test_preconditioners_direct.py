"""The tiled and Jacobi preconditioners and their helpers against dense references.

Every reference here is built without the code under test's FFTs or index layouts: the
tiled preconditioner is assembled as ``Σ_t S_t E_tᵀ (HᵀH + (β+δ) I)⁻¹ E_t S_t`` from numpy
matrices (H the periodic blur of the tile's kernel on the zero-padded box, built tap by tap
with index arithmetic; E_t the box embedding; S_t = diag(√w_t)), the tile kernels come from
a numpy doubled-angle fit, and ``diag(KᵀK)`` from ``‖K e_j‖²`` with K applied to unit
images. Images are at most 64×128 (the multi-band diagonal), most 12×10.
"""
import math
import re

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.operators.convolution import Convolution, UniformBlur
from pnpdeblur.operators.motion import motion_kernel
from pnpdeblur.solvers.preconditioners import (
    DEFAULT_SHIFT,
    DEFAULT_TILE,
    JacobiPreconditioner,
    TiledPreconditioner,
    fitted_motion_vectors,
    make_preconditioner,
    normal_diagonal,
    tile_partition,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)

F64 = torch.float64


# -------------------------------------------------------------------- dense references
def _periodic_blur_matrix(k, h, w):
    """Dense periodic blur on (h, w) images: (Hx)[p] = Σ_o k[r + o] x[(p + o) mod (h, w)]."""
    ry, rx = k.shape[0] // 2, k.shape[1] // 2
    yy, xx = np.mgrid[0:h, 0:w]
    rows = (yy * w + xx).ravel()
    H = np.zeros((h * w, h * w))
    for dy in range(-ry, ry + 1):
        for dx in range(-rx, rx + 1):
            c = k[ry + dy, rx + dx]
            if c != 0:
                cols = (((yy + dy) % h) * w + (xx + dx) % w).ravel()
                np.add.at(H, (rows, cols), c)
    return H


def _fit(flow, wt):
    """Weighted doubled-angle fit by hand: flow (2, H, W), weights (H, W) -> (u, v)."""
    u, v = flow
    L = np.hypot(u, v)
    ang = 2 * np.arctan2(v, u)
    c = np.sum(wt * L * np.cos(ang)) / wt.sum()
    s = np.sum(wt * L * np.sin(ang)) / wt.sum()
    theta = 0.5 * math.atan2(s, c)
    length = np.sum(wt * L) / wt.sum()
    return np.array([length * math.cos(theta), length * math.sin(theta)])


def _padded_inverse_block(k, he, we, pad, bh, bw, lam):
    """Rows/columns of the box [pad, pad+bh) × [pad, pad+bw) of (HᵀH + λI)⁻¹ on the periodic (he, we) grid.

    H is circulant, so (HᵀH + λI)⁻¹[p, q] = (1/N) Σ_f e^{2πi f·(p−q)} / (|Ĥ(f)|² + λ), with
    Ĥ(f) = Σ_o k_o e^{−2πi f·o} summed over the kernel's offsets o: explicit DFT sums, no FFT
    and no kernel placement shared with the code under test (checked against the dense
    inverse in test_padded_inverse_block_is_the_dense_inverse).
    """
    ry, rx = k.shape[0] // 2, k.shape[1] // 2
    oy, ox = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    fy = np.arange(he)[:, None, None] / he
    fx = np.arange(we)[None, :, None] / we
    Hf = (k.ravel() * np.exp(-2j * np.pi * (fy * oy.ravel() + fx * ox.ravel()))).sum(-1)  # (he, we)
    inv = 1.0 / (np.abs(Hf) ** 2 + lam)
    gy = np.exp(2j * np.pi * np.outer(np.arange(he), pad + np.arange(bh)) / he)  # (he, bh)
    gx = np.exp(2j * np.pi * np.outer(np.arange(we), pad + np.arange(bw)) / we)  # (we, bw)
    G = (gy[:, None, :, None] * gx[None, :, None, :]).reshape(he * we, bh * bw)
    return ((G.T * inv.ravel()) @ G.conj()).real / (he * we)


def _tiled_reference(kernel_of, h, w, tile, shift, beta):
    """Dense M⁻¹ = Σ_t S_t E_tᵀ (H_tᵀH_t + (β+δ)I)⁻¹ E_t S_t; kernel_of(weights (H, W)) -> kernel."""
    wy, sy, bh = tile_partition(h, tile)
    wx, sx, bw = tile_partition(w, tile)
    wy, wx = wy.numpy(), wx.numpy()
    kernels = {(a, b): kernel_of(np.outer(wy[a], wx[b])) for a in range(len(wy)) for b in range(len(wx))}
    pad = max(8, max(max(k.shape) for k in kernels.values()) // 2)
    he, we = bh + 2 * pad, bw + 2 * pad
    M = np.zeros((h * w, h * w))
    for (a, b), k in kernels.items():
        D = _padded_inverse_block(k, he, we, pad, bh, bw, beta + shift)  # E_t (·)⁻¹ E_tᵀ
        cols = ((int(sy[a]) + np.arange(bh))[:, None] * w + int(sx[b]) + np.arange(bw)).ravel()
        root = np.sqrt(np.outer(wy[a], wx[b]).ravel()[cols])
        M[np.ix_(cols, cols)] += root[:, None] * D * root[None, :]
    return M, pad


def test_padded_inverse_block_is_the_dense_inverse():
    k = np.random.default_rng(2).random((3, 5))
    k /= k.sum()
    he, we, pad, bh, bw = 9, 11, 2, 4, 6
    H = _periodic_blur_matrix(k, he, we)
    inv = np.linalg.inv(H.T @ H + 0.05 * np.eye(he * we))
    idx = ((pad + np.arange(bh))[:, None] * we + pad + np.arange(bw)).ravel()
    np.testing.assert_allclose(_padded_inverse_block(k, he, we, pad, bh, bw, 0.05), inv[np.ix_(idx, idx)],
                               rtol=0, atol=1e-12)


def _matrix_of(P, h, w, beta, sample=0, nf=1):
    """Dense matrix of P(·, β) on sample `sample`: unit images ride as channels of that sample."""
    eye = torch.eye(h * w, dtype=F64).reshape(1, h * w, h, w)
    r = torch.zeros(nf, h * w, h, w, dtype=F64)
    r[sample] = eye[0]
    z = P(r, beta)
    assert z.shape == r.shape and z.dtype == F64
    # other samples of the batch must stay exactly zero (a linear map per sample)
    assert bool((torch.cat([z[:sample], z[sample + 1:]]) == 0).all())
    return z[sample].reshape(h * w, h * w).T.numpy()


def _smooth_flow(h, w, long=False):
    """A spatially varying flow whose tiles get different fitted kernels (lengths up to ~8 or ~22)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if long:
        return np.stack([12.0 + 1.0 * xx - 0.3 * yy, 0.4 * yy - 2.0])
    return np.stack([2.0 + 0.5 * xx - 0.2 * yy, -1.0 + 0.6 * yy])


# -------------------------------------------------------------------- tiled preconditioner
@pytest.mark.parametrize("long,tile,shift", [(False, 8, 0.0), (False, 6, 0.07), (True, 8, 0.0)])
def test_tiled_equals_the_dense_sum_over_tiles(long, tile, shift):
    h, w, beta = 12, 10, 0.01
    flow = _smooth_flow(h, w, long)
    P = TiledPreconditioner(pd.MotionBlur(flow), (h, w), F64, "cpu", tile=tile, shift=shift)
    ref, pad = _tiled_reference(lambda wt: motion_kernel(_fit(flow, wt)), h, w, tile, shift, beta)
    assert P.pad == pad and pad == (11 if long else 8)
    assert P.shape == (h, w) and P.tile == tile and P.shift == shift
    assert P.n_tiles == (round(2 * h / tile), round(2 * w / tile))
    np.testing.assert_allclose(_matrix_of(P, h, w, beta), ref, rtol=0, atol=1e-12)


def test_tiled_with_a_spatially_invariant_blur_uses_its_kernel_in_every_tile():
    h, w, beta = 12, 10, 0.02
    k = np.random.default_rng(3).random((3, 5)) + 0.05
    k /= k.sum()
    ref, pad = _tiled_reference(lambda wt: k, h, w, 8, 0.05, beta)
    for K in (Convolution(k, "replicate"), UniformBlur(k)):
        P = TiledPreconditioner(K, (h, w), F64, "cpu", tile=8, shift=0.05)
        assert P.pad == pad == 8
        np.testing.assert_allclose(_matrix_of(P, h, w, beta), ref, rtol=0, atol=1e-12)


def test_tiled_batch_of_flows_and_one_flow_broadcast_over_a_batch():
    h, w, beta = 9, 10, 0.03
    flows = np.stack([_smooth_flow(h, w), -_smooth_flow(h, w)[::-1].copy()])
    P = TiledPreconditioner(pd.MotionBlur(flows), (h, w), F64, "cpu", tile=6, shift=0.0)
    for i in range(2):
        ref, _ = _tiled_reference(lambda wt: motion_kernel(_fit(flows[i], wt)), h, w, 6, 0.0, beta)
        np.testing.assert_allclose(_matrix_of(P, h, w, beta, sample=i, nf=2), ref, rtol=0, atol=1e-12)
    # one flow preconditions every sample of a residual batch with the same matrix
    one = TiledPreconditioner(pd.MotionBlur(flows[1]), (h, w), F64, "cpu", tile=6, shift=0.0)
    ref, _ = _tiled_reference(lambda wt: motion_kernel(_fit(flows[1], wt)), h, w, 6, 0.0, beta)
    r = torch.from_numpy(np.random.default_rng(4).standard_normal((3, 2, h, w)))
    z = one(r, beta)
    np.testing.assert_allclose(z.reshape(6, -1).numpy(), r.reshape(6, -1).numpy() @ ref.T, rtol=0, atol=1e-12)


def test_tiled_float32_state_and_argument_types():
    h, w = 12, 10
    K = pd.MotionBlur(_smooth_flow(h, w))
    P = TiledPreconditioner(K, (h, w), torch.float32, "cpu", tile=np.int64(8), shift=0)
    assert P.tile == 8 and type(P.tile) is int and P.shift == 0.0 and type(P.shift) is float
    assert P.power.dtype == torch.float32 and P.root.dtype == torch.float32
    assert P.index.dtype == torch.int64
    r = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 2, h, w)))
    z = P(r.float(), 0.01)
    assert z.dtype == torch.float32
    ref, _ = _tiled_reference(lambda wt: motion_kernel(_fit(K.flow[0].numpy(), wt)), h, w, 8, 0.0, 0.01)
    np.testing.assert_allclose(z.double().reshape(2, -1).numpy(), r.reshape(2, -1).numpy() @ ref.T, rtol=0, atol=2e-4)


def test_tiled_argument_messages():
    K = pd.MotionBlur(_smooth_flow(16, 16))
    for bad in (3, 2.0, 8.0, True, "64", None):
        with pytest.raises(ValueError, match=rf"^tile must be an int >= 4 \(pixels\), got {bad!r}$"):
            TiledPreconditioner(K, (16, 16), F64, "cpu", tile=bad)
    for bad in (-0.1, -1, float("nan"), float("inf"), "0", False, None):
        with pytest.raises(ValueError, match=rf"^shift must be a finite number >= 0, got {bad!r}$"):
            TiledPreconditioner(K, (16, 16), F64, "cpu", shift=bad)
    for bad in (5, None, (16,), (16, 16, 3), ("a", 16)):
        with pytest.raises(ValueError, match=rf"^shape must be \(H, W\), got {re_escape(bad)}$"):
            TiledPreconditioner(K, bad, F64, "cpu")
    for bad in ((0, 16), (16, 0), (-1, 16)):
        with pytest.raises(ValueError, match=rf"^shape must be two positive ints \(H, W\), got {re_escape(bad)}$"):
            TiledPreconditioner(K, bad, F64, "cpu")
    P = TiledPreconditioner(K, (16, 16), F64, "cpu", tile=4)
    with pytest.raises(ValueError, match=r"^r has spatial shape \(16, 15\), the preconditioner was built for \(16, 16\)$"):
        P(torch.zeros(1, 1, 16, 15, dtype=F64), 0.1)
    two = pd.TwoSegmentBlur(np.ones((2, 16, 16)), -np.ones((2, 16, 16)))
    with pytest.raises(TypeError, match=r"^preconditioner='tiles' needs a MotionBlur, UniformBlur or Convolution operator, got TwoSegmentBlur"):
        TiledPreconditioner(two, (16, 16), F64, "cpu")


def re_escape(v):
    """repr(v) as a literal regular expression (for messages that quote the argument)."""
    return re.escape(repr(v))


# -------------------------------------------------------------------- partition of unity
def test_tile_partition_by_hand():
    # n = 10, tile = 4: k = 5 windows, spacing 2, centres 0.5, 2.5, ..., 8.5; interior windows
    # cover 4 pixels (|x − c| < 2), the outer ones 3 (they are 1 towards the border)
    w, starts, size = tile_partition(10, 4)
    assert w.dtype == F64 and w.shape == (5, 10)
    assert starts.tolist() == [0, 1, 3, 5, 6] and size == 4  # the last box is clamped inside
    x = np.arange(10.0)
    for i in range(5):
        d = (x - (2 * i + 0.5)) / 2
        want = np.where(np.abs(d) < 1, np.cos(0.5 * np.pi * d) ** 2, 0.0)
        if i == 0:
            want[d <= 0] = 1.0
        if i == 4:
            want[d >= 0] = 1.0
        np.testing.assert_allclose(w[i].numpy(), want, rtol=0, atol=1e-15)
    # n = 8, tile = 8: windows over 0..5 and 2..7
    w, starts, size = tile_partition(8, 8)
    assert starts.tolist() == [0, 2] and size == 6
    # a tile at least as large as the image (and round(2n/tile) = 0) is one window of ones
    for n, tile in ((5, 100), (8, 32), (7, 14)):
        w, starts, size = tile_partition(n, tile)
        assert w.tolist() == [[1.0] * n] and starts.tolist() == [0] and size == n
    # round half to even: 2·20/16 = 2.5 -> 2 windows of spacing 10
    w, starts, size = tile_partition(20, 16)
    assert w.shape == (2, 20) and starts.tolist() == [0, 5] and size == 15


# -------------------------------------------------------------------- weighted fits
def test_fitted_motion_vectors_of_a_constant_flow_is_the_flow_up_to_sign():
    h, w = 6, 7
    rng = np.random.default_rng(6)
    wy = torch.from_numpy(rng.random((3, h)) + 0.01)
    wx = torch.from_numpy(rng.random((2, w)) + 0.01)
    for m in ((3.0, -2.0), (-3.0, 2.0), (0.0, 5.0), (0.0, 0.0)):
        flow = torch.tensor(m, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, h, w).clone().requires_grad_(True)
        got = fitted_motion_vectors(flow, wy.float(), wx)
        assert got.dtype == np.float64 and got.shape == (1, 3, 2, 2)
        for vec in got.reshape(-1, 2):
            _assert_same_line(vec, m, 1e-6)
    # the weights decide: a tile that only sees the right half gets the right half's vector
    flow = torch.zeros(2, 2, h, w, dtype=F64)
    flow[0, 0, :, :3] = 4.0  # left: (4, 0)
    flow[0, 1, :, 3:] = 6.0  # right: (0, 6)
    flow[1] = -flow[0]
    wx2 = torch.zeros(2, w, dtype=F64)
    wx2[0, :3] = 1.0
    wx2[1, 3:] = torch.arange(1.0, 5.0, dtype=F64)
    got = fitted_motion_vectors(flow, torch.ones(1, h, dtype=F64), wx2)
    for n in range(2):
        _assert_same_line(got[n, 0, 0], (4.0, 0.0), 1e-12)
        _assert_same_line(got[n, 0, 1], (0.0, 6.0), 1e-12)


def _assert_same_line(got, m, atol):
    """got = ±m (m and −m are the same blur)."""
    m = np.asarray(m, dtype=np.float64)
    err = min(np.abs(got - m).max(), np.abs(got + m).max())
    assert err <= atol, (got, m)


def test_fitted_motion_vectors_messages():
    flow = torch.zeros(1, 2, 12, 14, dtype=F64)
    good_y, good_x = torch.ones(2, 12, dtype=F64), torch.ones(3, 14, dtype=F64)
    assert fitted_motion_vectors(flow, good_y, good_x).shape == (1, 2, 3, 2)
    for wy, wx in (
        (torch.ones(12, dtype=F64), good_x),
        (torch.ones(2, 11, dtype=F64), good_x),
        (good_y, torch.ones(14, dtype=F64)),
        (good_y, torch.ones(3, 13, dtype=F64)),
    ):
        with pytest.raises(ValueError, match=(
            r"^wy and wx must have shapes \(A, 12\) and \(B, 14\), got "
            + re_escape(tuple(wy.shape)) + " and " + re_escape(tuple(wx.shape)) + "$"
        )):
            fitted_motion_vectors(flow, wy, wx)


# -------------------------------------------------------------------- Jacobi
def _diag_at(K, h, w, probes):
    """‖K e_j‖² = Σ_i K_ij² for the flat pixel indices `probes` (unit images as channels)."""
    e = torch.zeros(1, len(probes), h * w, dtype=F64)
    e[0, torch.arange(len(probes)), torch.as_tensor(probes)] = 1.0
    col = K._forward(e.reshape(1, len(probes), h, w))
    return (col**2).sum((0, 2, 3))


def test_normal_diagonal_over_several_row_bands():
    # one 90-px vector makes the row bands small (2²¹ / (taps·W) rows: 28 of 64 here), so the
    # diagonal is accumulated over three bands, the last one partial; the long row's taps
    # cross the band boundaries
    h, w = 64, 128
    rng = np.random.default_rng(7)
    flow = rng.uniform(-2.5, 2.5, (2, h, w))
    flow[:, 30, 60] = (64.0, 64.0)
    flow[:, 56, 100] = (-40.0, 20.0)
    K = pd.MotionBlur(flow)
    d = normal_diagonal(K, (h, w))
    assert d.shape == (1, 1, h, w) and d.dtype == F64
    diag_line = [(30 + t) * w + 60 + t for t in range(-32, 33) if 0 <= 30 + t < h]
    boundary = [y * w + x for y in (0, 27, 28, 29, 55, 56, 57, 63) for x in range(0, w, 5)]
    probes = sorted(set(diag_line + boundary + rng.integers(0, h * w, 120).tolist()))
    torch.testing.assert_close(d.reshape(-1)[probes], _diag_at(K, h, w, probes), rtol=1e-13, atol=1e-14)


def test_jacobi_batch_dtype_and_messages():
    h, w = 7, 9
    rng = np.random.default_rng(8)
    flows = rng.uniform(-4, 4, (2, 2, h, w))
    K = pd.MotionBlur(flows)
    J = JacobiPreconditioner(K, (h, w), torch.float32, "cpu")
    assert J.shape == (h, w) and J.diag.dtype == torch.float32 and J.diag.shape == (2, 1, h, w)
    r = torch.from_numpy(rng.standard_normal((2, 3, h, w)))
    z = J(r.float(), 0.05)
    assert z.dtype == torch.float32
    for i in range(2):
        Ki = pd.MotionBlur(flows[i])
        dref = _diag_at(Ki, h, w, list(range(h * w))).reshape(h, w)
        torch.testing.assert_close(z[i].double(), r[i] / (dref + 0.05), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"^r has spatial shape \(7, 8\), the preconditioner was built for \(7, 9\)$"):
        J(r[..., :8].float(), 0.05)
    with pytest.raises(ValueError, match=r"^shape \(7, 8\) does not match the operator's flow size \(7, 9\)$"):
        normal_diagonal(K, (7, 8))
    with pytest.raises(ValueError, match=r"^shape must be \(H, W\), got \(7,\)$"):
        JacobiPreconditioner(K, (7,), F64, "cpu")
    with pytest.raises(TypeError, match=(
        r"^preconditioner='jacobi' needs a MotionBlur, TwoSegmentBlur or UniformBlur operator, got Convolution"
    )):
        normal_diagonal(Convolution(np.ones((3, 3)) / 9, "replicate"), (h, w))


def test_normal_diagonal_of_a_uniform_blur_and_two_segments():
    k = np.random.default_rng(9).random((5, 3))
    K = UniformBlur(k)
    d = normal_diagonal(K, (4, 6))
    assert d.shape == (1, 1, 4, 6) and d.dtype == F64
    torch.testing.assert_close(d, torch.full((1, 1, 4, 6), float((k * k).sum()), dtype=F64), rtol=1e-15, atol=0)
    # two segments that overlap exactly: f_prev = f_next, tau = 1 -> one segment of mass 1
    f = np.random.default_rng(10).uniform(-3, 3, (2, 6, 5))
    two = pd.TwoSegmentBlur(f, f)
    same = normal_diagonal(two, (6, 5))
    torch.testing.assert_close(same[0, 0], _diag_at(two, 6, 5, list(range(30))).reshape(6, 5), rtol=1e-13, atol=1e-14)


# -------------------------------------------------------------------- make_preconditioner
def test_make_preconditioner_builds_the_named_ones_with_the_defaults():
    assert DEFAULT_TILE == 128 and DEFAULT_SHIFT == 0.1
    h, w = 12, 10
    K = pd.MotionBlur(_smooth_flow(h, w))
    y = torch.zeros(1, 1, h, w, dtype=torch.float32)
    T = make_preconditioner("tiles", K, y)
    assert isinstance(T, TiledPreconditioner)
    assert T.tile == DEFAULT_TILE and T.shift == DEFAULT_SHIFT and T.shape == (h, w)
    assert T.power.dtype == torch.float32 and T.n_tiles == (1, 1)
    J = make_preconditioner("jacobi", K, y)
    assert isinstance(J, JacobiPreconditioner) and J.shape == (h, w) and J.diag.dtype == torch.float32


def test_normal_diagonal_reaches_the_far_taps_of_an_off_centre_segment():
    # a TwoSegmentBlur segment runs from p to p + a (its centre a/2 is off the pixel grid);
    # for a = (3.975, 3.425) a non-zero tap lies 4 pixels along x from floor(a_x / 2), right at
    # the edge of the support's projection, so the enumeration must reach that far
    h, w = 9, 11
    rng = np.random.default_rng(11)
    f_next = rng.uniform(-0.6, 0.6, (2, h, w))
    f_next[:, 4, 5] = (3.9747525420507843, 3.424865904486325)
    f_prev = rng.uniform(-0.6, 0.6, (2, h, w))
    two = pd.TwoSegmentBlur(f_next, f_prev)
    d = normal_diagonal(two, (h, w))
    torch.testing.assert_close(d[0, 0], _diag_at(two, h, w, list(range(h * w))).reshape(h, w), rtol=1e-13, atol=1e-14)


def test_normal_diagonal_bounds_the_size_of_its_tap_tensors(monkeypatch):
    # the taps are enumerated a band of rows at a time so that the (taps × pixels) tensors
    # stay at a few MB whatever the image size: at most 2²¹ elements (16 MB in float64)
    import pnpdeblur.solvers.preconditioners as pre

    h, w = 64, 128
    flow = np.random.default_rng(12).uniform(-2.5, 2.5, (2, h, w))
    flow[:, 30, 60] = (64.0, 64.0)
    sizes, rows = [], []
    real = pre._segment_taps

    def spy(a, beta):
        out = real(a, beta)
        sizes.append(out[0].numel())
        rows.append(a.shape[1])
        return out

    monkeypatch.setattr(pre, "_segment_taps", spy)
    normal_diagonal(pd.MotionBlur(flow), (h, w))
    assert max(sizes) <= 2**21 and sum(rows) == h and len(rows) > 1


def test_fitted_motion_vectors_takes_weights_of_any_float_dtype():
    # partitions built in float32 (or on the caller's side in any float dtype) give the same fit
    h, w = 5, 6
    flow = torch.from_numpy(np.random.default_rng(13).uniform(-4, 4, (1, 2, h, w)))
    wy, _, _ = tile_partition(h, 4)
    wx, _, _ = tile_partition(w, 4)
    want = fitted_motion_vectors(flow, wy, wx)
    for ty, tx in ((torch.float32, torch.float64), (torch.float64, torch.float32), (torch.float32, torch.float32)):
        got = fitted_motion_vectors(flow.float(), wy.to(ty), wx.to(tx))
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("h,w", [(1, 7), (6, 1)])
def test_one_row_and_one_column_images(h, w):
    flow = np.random.default_rng(14).uniform(-3, 3, (2, h, w))
    K = pd.MotionBlur(flow)
    d = normal_diagonal(K, (h, w))
    torch.testing.assert_close(d[0, 0], _diag_at(K, h, w, list(range(h * w))).reshape(h, w), rtol=1e-13, atol=1e-14)
    J = JacobiPreconditioner(K, (h, w), F64, "cpu")
    assert J.shape == (h, w)
    P = TiledPreconditioner(K, (h, w), F64, "cpu", tile=4, shift=0.02)
    ref, _ = _tiled_reference(lambda wt: motion_kernel(_fit(flow, wt)), h, w, 4, 0.02, 0.1)
    np.testing.assert_allclose(_matrix_of(P, h, w, 0.1), ref, rtol=0, atol=1e-12)


def test_tile_partition_is_zero_at_exactly_one_spacing():
    # n = 9, tile = 6: spacing 3, centres 1, 4, 7; pixels exactly one spacing from a centre
    # (x = 4 for window 0, x = 1 and 7 for window 1, x = 4 for window 2) get weight 0, so the
    # boxes are as small as the windows: 5 pixels
    w, starts, size = tile_partition(9, 6)
    assert w[0, 4].item() == 0.0 and w[1, 1].item() == 0.0 and w[1, 7].item() == 0.0 and w[2, 4].item() == 0.0
    assert w[1, 2].item() == pytest.approx(0.25, abs=1e-15)  # cos²(π/3)
    assert starts.tolist() == [0, 2, 4] and size == 5
