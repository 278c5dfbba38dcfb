"""``pnpdeblur.operators.motion`` and its dense reference ``pnpdeblur.operators.dense`` on
tiny inputs: kernels by hand, the LUT's corner weights, the per-flow cache's keys, and
the reference matrices on cases small enough to write out."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pnpdeblur.operators import dense
from pnpdeblur.operators import _segment as seg
from pnpdeblur.operators._segment import FLOW_CACHE
from pnpdeblur.operators.warp import WarpBlur
from pnpdeblur.operators.motion import (
    LUT_RANGE,
    MotionBlur,
    TwoSegmentBlur,
    _lut_segments,
    _segment_kernel,
    motion_kernel,
    motion_kernel_table,
)


def test_kernel_sizes_follow_the_support():
    # radius ceil(L (beta + 1/2) + 3/2)
    assert motion_kernel((6, 0)).shape == (11, 11)
    assert motion_kernel((3, 4)).shape == (9, 9)
    assert _segment_kernel((3, 4), 0.5).shape == (15, 15)
    assert motion_kernel((2, 0), radius=4).shape == (9, 9)
    np.testing.assert_array_equal(motion_kernel((0.0, 0.0), radius=1), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(motion_kernel((0.0, 0.0)), [[1.0]])  # L = 0 needs no radius
    with pytest.raises(ValueError, match=r"^radius=1 is too small for a segment of length 0\.8; need 2$"):
        motion_kernel((0.8, 0.0), radius=1)  # ceil(0.4 + 1.5): short segments are checked too
    with pytest.raises(ValueError, match=r"^radius=2 is too small for a segment of length 5; need 4$"):
        motion_kernel((3, 4), radius=2)
    assert motion_kernel((3, 4), radius=4).shape == (9, 9)


def test_motion_kernel_takes_any_two_number_vector_and_refuses_the_rest():
    want = motion_kernel((3, -4))
    for m in ([3, -4], np.array([3.0, -4.0]), torch.tensor([3.0, -4.0]), (np.float32(3), np.int64(-4))):
        np.testing.assert_array_equal(motion_kernel(m), want)
    np.testing.assert_array_equal(motion_kernel((3, -4), radius=np.int64(6)), motion_kernel((3, -4), 6))
    for bad in (5.0, "ab", None):
        with pytest.raises(TypeError, match=r"^m must be a motion vector \(u, v\) of 2 real numbers, got "):
            motion_kernel(bad)
    for bad in ((1, 2, 3), (1,), np.zeros((2, 1))):
        with pytest.raises(ValueError, match=r"^m must be a motion vector \(u, v\) of 2 real numbers, got shape "):
            motion_kernel(bad)
    for bad in ((math.nan, 0), (0, math.inf), (-math.inf, 1)):
        with pytest.raises(ValueError, match=r"^m must be finite, got "):
            motion_kernel(bad)
    with pytest.raises(TypeError, match=r"^radius must be an int or None, got 2\.5$"):
        motion_kernel((1, 0), radius=2.5)
    with pytest.raises(TypeError, match=r"^radius must be an int or None, got True$"):
        motion_kernel((1, 0), radius=True)
    with pytest.raises(ValueError, match=r"^radius must be >= 0, got -1$"):
        motion_kernel((0, 0), radius=-1)
    np.testing.assert_array_equal(motion_kernel((0, 0), radius=0), [[1.0]])  # 0 is a radius
    with pytest.raises(ValueError, match=r"^radius must be >= 0, got -1$"):
        motion_kernel_table(-1)
    with pytest.raises(TypeError, match=r"^radius must be an int, got None$"):
        motion_kernel_table(None)


def test_oblique_kernel_weights_by_hand():
    # m = (3, 4), L = 5, u = (0.6, 0.8): w(k) = (1 - |k x u|) clip(3 - |k . u|, 0, 1)
    K = motion_kernel((3, 4))
    r = K.shape[0] // 2
    w = lambda kx, ky: K[r + ky, r + kx] / K[r, r]  # noqa: E731  (w(0, 0) = 1)
    assert w(1, 1) == pytest.approx(0.8, abs=1e-12)  # t = 1.4, s = 0.2
    assert w(2, 2) == pytest.approx(0.6 * 0.2, abs=1e-12)  # t = 2.8, s = 0.4
    assert w(-2, -2) == pytest.approx(0.6 * 0.2, abs=1e-12)
    assert w(1, 0) == pytest.approx(0.2, abs=1e-12)  # t = 0.6, s = 0.8
    assert w(0, 1) == pytest.approx(0.4, abs=1e-12)  # t = 0.8, s = 0.6
    assert w(3, 4) == 0.0 and w(1, -1) == 0.0  # beyond the end; across the line
    assert K.sum() == pytest.approx(1.0, abs=1e-14)


def test_half_segment_kernel_by_hand():
    # beta = 1/2, a = (4, 0): t - 2 within h = 2.5 -> taps 0..4 full, -1/5 half... none (clip 0)
    K = _segment_kernel((4, 0), 0.5)
    r = K.shape[0] // 2
    row = K[r, r - 1 : r + 6] * 4.0
    np.testing.assert_allclose(row, [0, 0.5, 1, 1, 1, 0.5, 0], rtol=0, atol=1e-14)
    assert np.count_nonzero(K) == 5


def test_table_entries_are_line_kernels():
    table = motion_kernel_table()
    assert table.shape == (2 * LUT_RANGE + 1, 2 * LUT_RANGE + 1, 27, 27) and LUT_RANGE == 16
    for u, v in ((0, 0), (-16, 16), (5, -3), (16, 16), (-16, -16)):
        np.testing.assert_array_equal(table[v + 16, u + 16], motion_kernel((u, v), 13))


def test_lut_corners_and_weights_by_hand():
    f = torch.tensor([[[[1.25, 16.0, -16.0]], [[-2.5, 0.0, 3.0]]]], dtype=torch.float64)  # (1, 2, 1, 3)
    vec, mass = _lut_segments(f)
    assert tuple(vec.shape) == (1, 4, 2, 1, 3) and tuple(mass.shape) == (1, 4, 1, 3)
    # pixel 0: (1.25, -2.5) -> corners (1,-3), (2,-3), (1,-2), (2,-2); fractions (0.25, 0.5)
    np.testing.assert_array_equal(vec[0, :, :, 0, 0].numpy(), [[1, -3], [2, -3], [1, -2], [2, -2]])
    np.testing.assert_allclose(mass[0, :, 0, 0].numpy(), [0.375, 0.125, 0.375, 0.125], rtol=0, atol=1e-15)
    # u = 16: the lower corner is clamped to 15 so that the table covers it with fraction 1
    np.testing.assert_array_equal(vec[0, :, 0, 0, 1].numpy(), [15, 16, 15, 16])
    np.testing.assert_allclose(mass[0, :, 0, 1].numpy(), [0, 1, 0, 0], rtol=0, atol=1e-15)
    # u = -16: lower corner -16, fraction 0
    np.testing.assert_array_equal(vec[0, :, 0, 0, 2].numpy(), [-16, -15, -16, -15])
    np.testing.assert_allclose(mass[0, :, 0, 2].numpy(), [1, 0, 0, 0], rtol=0, atol=1e-15)


def test_motion_blur_matrix_by_hand():
    # m = (2, 0): kernel [1/4, 1/2, 1/4] along x; borders replicated (clamped taps summed)
    f = np.zeros((2, 1, 4))
    f[0] = 2.0
    A = dense.motion_blur_matrix(f).toarray()
    np.testing.assert_allclose(
        A, [[0.75, 0.25, 0, 0], [0.25, 0.5, 0.25, 0], [0, 0.25, 0.5, 0.25], [0, 0, 0.25, 0.75]], rtol=0, atol=1e-15
    )
    g = np.zeros((2, 3, 1))
    g[1] = -2.0  # vertical
    np.testing.assert_allclose(
        dense.motion_blur_matrix(g).toarray(), [[0.75, 0.25, 0], [0.25, 0.5, 0.25], [0, 0.25, 0.75]], rtol=0, atol=1e-15
    )


def test_two_segment_and_warp_matrices_by_hand():
    # next = (+2, 0), prev = (0, 0), tau = 1/2: half on [x(p), x(p+1)] halves, half on x(p)
    fn = np.zeros((2, 1, 3))
    fn[0] = 2.0
    fp = np.zeros((2, 1, 3))
    A = dense.two_segment_matrix(fn, fp, tau=0.5).toarray()
    # segment p -> p + (1, 0), beta 1/2: taps 0 and 1 with weight 1/2 each
    np.testing.assert_allclose(A, [[0.75, 0.25, 0], [0, 0.75, 0.25], [0, 0, 1.0]], rtol=0, atol=1e-15)
    B = dense.warp_blur_matrix(fn, fp, n=1, tau=0.5).toarray()  # (x(p) + x(p+1) + x(p)) / 3
    np.testing.assert_allclose(B, [[2 / 3, 1 / 3, 0], [0, 2 / 3, 1 / 3], [0, 0, 1.0]], rtol=0, atol=1e-15)
    assert np.allclose(dense.two_segment_matrix(fn, fp).toarray(), dense.two_segment_matrix(fn, fp, tau=1.0).toarray())
    assert np.allclose(dense.warp_blur_matrix(fn, fp, 1).toarray(), dense.warp_blur_matrix(fn, fp, 1, 1.0).toarray())


def test_lut_matrix_blends_the_table_at_fractional_flows():
    f = np.zeros((2, 3, 3))
    f[0], f[1] = 1.5, -0.25  # corners (1,-1), (2,-1), (1,0), (2,0); fractions (0.5, 0.75)
    A = dense.lut_blur_matrix(f)
    ref = sum(
        w * dense.motion_blur_matrix(np.broadcast_to(np.array([u, v], float)[:, None, None], (2, 3, 3)).copy())
        for (u, v), w in (((1, -1), 0.125), ((2, -1), 0.125), ((1, 0), 0.375), ((2, 0), 0.375))
    )
    np.testing.assert_allclose(A.toarray(), ref.toarray(), rtol=0, atol=1e-14)


def test_apply_matrix_per_channel_and_image():
    A = dense.motion_blur_matrix(np.stack([np.full((1, 4), 2.0), np.zeros((1, 4))]))
    x = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 1, 4)
    y = dense.apply_matrix(A, x)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(y[n, c, 0], A.toarray() @ x[n, c, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("path", ["numba", "torch"])
def test_operators_match_the_matrices_above(path):
    rng = np.random.default_rng(0)
    f = rng.uniform(-3, 3, (1, 2, 5, 6))
    fl = rng.uniform(-3, 3, (1, 2, 5, 6))
    x = rng.random((1, 2, 5, 6))
    np.testing.assert_allclose(MotionBlur(f, path=path)(x), dense.apply_matrix(dense.motion_blur_matrix(f[0]), x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(MotionBlur.lut(fl, path=path).T(x), dense.apply_matrix(dense.lut_blur_matrix(fl[0]).T.tocsr(), x), rtol=0, atol=1e-12)
    K = TwoSegmentBlur(f, fl, tau=0.8, path=path)
    np.testing.assert_allclose(K(x), dense.apply_matrix(dense.two_segment_matrix(f[0], fl[0], 0.8), x), rtol=0, atol=1e-12)


def test_constructor_state_and_repr():
    f = np.zeros((2, 2, 3, 4))
    K = MotionBlur(f)
    assert K.image_shape == (2, 3, 4) and K.lut_mode is False and K.path is None and K.beta == 0.0
    assert repr(K) == "MotionBlur(flow of shape (2, 2, 3, 4))"
    L = MotionBlur.lut(torch.zeros(1, 2, 3, 4), path="torch")
    assert L.lut_mode is True and L.path == "torch" and L._flows_are_torch
    assert repr(L) == "MotionBlur.lut(flow of shape (1, 2, 3, 4))"
    assert MotionBlur(f + 17.0).image_shape == (2, 3, 4)  # the line kernel takes up to 64 px
    with pytest.raises(ValueError, match=r"^flow has a component of 17 px; at most 16 px"):
        MotionBlur.lut(f + 17.0)
    T = TwoSegmentBlur(torch.zeros(3, 2, 4, 5), np.zeros((3, 2, 4, 5)), path="numba")
    assert T.tau == 1.0 and T.beta == 0.5 and T.path == "numba" and T.image_shape == (3, 4, 5)
    assert not T._flows_are_torch and TwoSegmentBlur(torch.zeros(2, 4, 5), torch.zeros(2, 4, 5))._flows_are_torch
    with pytest.raises(ValueError, match=r"^x has batch size 2, but the flow has batch size 3 \(expected 1 or 2\)$"):
        T._forward(torch.zeros(2, 1, 4, 5, dtype=torch.float64))


def test_cache_keys_separate_what_changes_the_segments():
    # the same flow tensors through operators whose segments differ must not share entries
    FLOW_CACHE.clear()
    rng = np.random.default_rng(1)
    f = torch.tensor(rng.uniform(-3, 3, (1, 2, 5, 6)))
    g = torch.tensor(rng.uniform(-3, 3, (1, 2, 5, 6)))
    x = torch.tensor(rng.random((1, 1, 5, 6)))
    x32 = x.float()
    for K, A in (
        (MotionBlur(f), dense.motion_blur_matrix(f[0].numpy())),
        (MotionBlur.lut(f), dense.lut_blur_matrix(f[0].numpy())),
        (TwoSegmentBlur(f, g, tau=0.5), dense.two_segment_matrix(f[0].numpy(), g[0].numpy(), 0.5)),
        (TwoSegmentBlur(f, g, tau=1.0), dense.two_segment_matrix(f[0].numpy(), g[0].numpy(), 1.0)),
    ):
        for _ in range(2):  # second call: from the cache
            np.testing.assert_allclose(K(x).numpy(), dense.apply_matrix(A, x.numpy()), rtol=0, atol=1e-12)
            np.testing.assert_allclose(K(x32).numpy(), dense.apply_matrix(A, x.numpy()), rtol=0, atol=1e-5)
    assert len(FLOW_CACHE) == 8  # 4 operators x 2 dtypes
    FLOW_CACHE.clear()


def test_cache_is_used_only_where_it_is_valid():
    FLOW_CACHE.clear()
    rng = np.random.default_rng(2)
    fnp = rng.uniform(-3, 3, (1, 2, 4, 4))
    x = torch.tensor(rng.random((1, 1, 4, 4)))
    # the operators stay alive while the cache is inspected (an entry dies with its flow)
    ops = [MotionBlur(torch.tensor(fnp), path="torch")]  # not the numba path
    fg = torch.tensor(fnp, requires_grad=True)
    ops.append(MotionBlur(fg))  # gradient w.r.t. the flow recorded
    for K in ops:
        K(x)
        K.T(x)
    assert len(FLOW_CACHE) == 0
    with torch.no_grad():
        MotionBlur(fg)(x)
    assert len(FLOW_CACHE) == 1
    misses = FLOW_CACHE.misses
    hits = FLOW_CACHE.hits
    K = MotionBlur(torch.tensor(fnp), path="numba")
    K(x)
    K.T(x)
    assert (FLOW_CACHE.misses, FLOW_CACHE.hits) == (misses + 1, hits + 1)
    FLOW_CACHE.clear()


@pytest.mark.parametrize("make", ["numpy", "one numpy", "inference"])
def test_flows_torch_cannot_version_are_cached_by_value(make):
    """numpy flows (whose edits torch's version counter does not see) and inference-mode flows
    (which have none) are cached against a copy of their values: an unchanged flow hits, and an
    in-place change — through numpy, or under inference mode — rebuilds the segments."""
    FLOW_CACHE.clear()
    rng = np.random.default_rng(3)
    fnp = rng.uniform(-3, 3, (1, 2, 6, 7))
    gnp = rng.uniform(-3, 3, (1, 2, 6, 7))
    x = torch.tensor(rng.random((1, 2, 6, 7)))
    if make == "numpy":
        K = MotionBlur(fnp)
    elif make == "one numpy":
        K = TwoSegmentBlur(torch.tensor(gnp), fnp)
    else:
        with torch.inference_mode():
            f_inf = torch.tensor(fnp)
        K = MotionBlur(f_inf)

    def dense_now():
        if make == "one numpy":
            return dense.two_segment_matrix(gnp[0], fnp[0], 1.0)
        return dense.motion_blur_matrix((f_inf.clone() if make == "inference" else torch.tensor(fnp))[0].numpy())

    misses, hits = FLOW_CACHE.misses, FLOW_CACHE.hits  # the counters run over the process's tests
    for _ in range(2):
        np.testing.assert_allclose(K(x).numpy(), dense.apply_matrix(dense_now(), x.numpy()), rtol=0, atol=1e-12)
    assert (FLOW_CACHE.misses - misses, FLOW_CACHE.hits - hits, len(FLOW_CACHE)) == (1, 1, 1)
    if make == "inference":
        with torch.inference_mode():
            f_inf[0, 1, 4, 5] = 2.5
    else:
        fnp[0, 1, 4, 5] = 2.5  # an edit through numpy: torch's version counter stays
    np.testing.assert_allclose(K(x).numpy(), dense.apply_matrix(dense_now(), x.numpy()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K.T(x).numpy(), dense.apply_matrix(dense_now().T, x.numpy()), rtol=0, atol=1e-12)
    assert (FLOW_CACHE.misses - misses, FLOW_CACHE.hits - hits, len(FLOW_CACHE)) == (2, 2, 1)
    entry_bytes = FLOW_CACHE.nbytes
    assert entry_bytes > fnp.nbytes * (2 if make == "one numpy" else 1)  # the copy is counted
    FLOW_CACHE.clear()


def test_by_value_copies_are_compared_bit_for_bit():
    """A -0.0 where the copy holds 0.0 (equal as numbers) rebuilds: the entry is valid only for
    exactly the bits it was built from."""
    cache = seg.FlowCache(10_000)
    built = []
    t = torch.zeros(3, dtype=torch.float64)
    value = np.zeros(1)
    for _ in range(2):
        cache.get((t,), ("bits",), lambda: built.append(1) or value, by_value=True)
    assert len(built) == 1
    t[1] = -0.0
    cache.get((t,), ("bits",), lambda: built.append(1) or value, by_value=True)
    assert len(built) == 2
    assert cache.nbytes == value.nbytes + t.numel() * 8


def test_one_flow_blurs_every_image_of_a_batch_both_ways():
    rng = np.random.default_rng(3)
    f = rng.uniform(-3, 3, (1, 2, 4, 5))
    x = rng.random((3, 2, 4, 5))
    A = dense.motion_blur_matrix(f[0])
    for flow in (f, torch.tensor(f)):  # numpy: converted per call; torch: through the cache
        K = MotionBlur(flow)
        np.testing.assert_allclose(np.asarray(K(x)), dense.apply_matrix(A, x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(K.T(x)), dense.apply_matrix(A.T.tocsr(), x), rtol=0, atol=1e-12)
    FLOW_CACHE.clear()


def test_cached_adjoint_is_the_adjoint():
    FLOW_CACHE.clear()
    rng = np.random.default_rng(4)
    f, g = torch.tensor(rng.uniform(-3, 3, (1, 2, 5, 4))), torch.tensor(rng.uniform(-3, 3, (1, 2, 5, 4)))
    x = torch.tensor(rng.random((1, 2, 5, 4)))
    K = TwoSegmentBlur(f, g, tau=0.7)
    A = dense.two_segment_matrix(f[0].numpy(), g[0].numpy(), 0.7)
    K(x)  # fills the cache
    for _ in range(2):
        np.testing.assert_allclose(K.T(x).numpy(), dense.apply_matrix(A.T.tocsr(), x.numpy()), rtol=0, atol=1e-12)
    assert len(FLOW_CACHE) == 1
    FLOW_CACHE.clear()


def test_float32_flows_are_cast_to_the_images_dtype_first():
    # LUT fractions and tau * flow are computed in the image's dtype (float64 here), so
    # the result is the reference of the float32 flow's values to 1e-12
    rng = np.random.default_rng(5)
    f32 = rng.uniform(-3, 3, (1, 2, 5, 6)).astype(np.float32)
    g32 = rng.uniform(-3, 3, (1, 2, 5, 6)).astype(np.float32)
    x = rng.random((1, 1, 5, 6))
    f64, g64 = f32[0].astype(np.float64), g32[0].astype(np.float64)
    for path in ("numba", "torch"):
        np.testing.assert_allclose(
            MotionBlur.lut(f32, path=path)(x), dense.apply_matrix(dense.lut_blur_matrix(f64), x), rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(
            TwoSegmentBlur(f32, g32, tau=0.3, path=path)(x),
            dense.apply_matrix(dense.two_segment_matrix(f64, g64, 0.3), x),
            rtol=0,
            atol=1e-12,
        )


def test_a_forced_path_is_the_path_taken(monkeypatch):
    from pnpdeblur.operators import _segment

    calls = []
    real = _segment._torch_segment_blur

    def spy(*args):
        calls.append("torch")
        return real(*args)

    monkeypatch.setattr(_segment, "_torch_segment_blur", spy)
    f = np.random.default_rng(6).uniform(-2, 2, (1, 2, 4, 4))
    x = np.random.default_rng(7).random((1, 1, 4, 4))
    MotionBlur(f, path="torch")(x)
    TwoSegmentBlur(torch.tensor(f), torch.tensor(-f), path="torch").T(x)
    assert calls == ["torch", "torch"]
    MotionBlur(f)(x)
    MotionBlur(torch.tensor(f), path="numba").T(x)
    assert calls == ["torch", "torch"]
    FLOW_CACHE.clear()


def test_dense_defaults_are_the_operators_defaults_on_a_flow_where_tau_matters():
    rng = np.random.default_rng(7)
    fn = rng.uniform(-2, 2, (2, 6, 7))
    fp = rng.uniform(-2, 2, (2, 6, 7))
    x = rng.random((1, 1, 6, 7))
    for A, A_half, op in (
        (dense.warp_blur_matrix(fn, fp, 3), dense.warp_blur_matrix(fn, fp, 3, 0.5), WarpBlur(fn[None], fp[None], n=3)),
        (dense.two_segment_matrix(fn, fp), dense.two_segment_matrix(fn, fp, 0.5), TwoSegmentBlur(fn[None], fp[None])),
    ):
        np.testing.assert_allclose(dense.apply_matrix(A, x), op(x), rtol=0, atol=1e-12)
        assert np.abs((A - A_half).toarray()).max() > 1e-3  # tau changes this matrix


def test_lut_matrix_clamps_flows_at_the_table_edge_like_the_operator():
    # flows at the table's edge (±LUT_RANGE, the largest the operator accepts) and just inside
    # it: the lower corner index is clamped to LUT_RANGE - 1, so u = LUT_RANGE blends corners
    # 15 and 16 with fraction 1
    f = np.zeros((2, 2, 3))
    f[0] = [[LUT_RANGE, LUT_RANGE - 0.5, -LUT_RANGE], [LUT_RANGE - 0.75, -LUT_RANGE + 0.5, 3.25]]
    f[1] = [[-LUT_RANGE, 0.5, LUT_RANGE - 0.25], [LUT_RANGE, 2.0, -LUT_RANGE]]
    x = np.random.default_rng(8).random((1, 3, 2, 3))
    ref = dense.apply_matrix(dense.lut_blur_matrix(f), x)
    np.testing.assert_allclose(MotionBlur.lut(f[None])(x), ref, rtol=0, atol=1e-12)
    A = dense.lut_blur_matrix(f).toarray()
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=0, atol=1e-12)  # still a blur: rows sum to 1
