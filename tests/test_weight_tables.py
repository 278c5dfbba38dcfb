"""Weight tables of the numba segment blur (issue 14): stored weights, the same answers.

A :class:`~pnpdeblur.operators._segment.WeightTable` stores each segment's step weights once;
``forward``/``adjoint``/``normal`` given it must return *bitwise* what they return without it,
and both must match the dense reference matrices (:func:`_operators.segment_matrix`). The
table's own content is checked against the reference tap list of ``_numba_kernels._taps``;
its byte count, its budget, its lifetime (it goes with the prepared flow) and the operators'
use of it (from the second application on) are checked as well.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import pnpdeblur as pd
from _operators import segment_matrix
from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import _segment as seg

H, W = 15, 17


def _segments(S: int, Nf: int, seed: int, scale: float = 4.0):
    """Random segments (Nf, S, 2, H, W) with zero-length pixels and zero-mass rows, and masses."""
    rng = np.random.default_rng(seed)
    vec = rng.uniform(-scale, scale, (Nf, S, 2, H, W))
    vec[:, :, :, 2:4, 3:6] = 0.0  # zero length: the identity tap
    vec[:, :, 1, 7, :] = 0.0  # horizontal segments
    vec[:, :, 0, :, 8] = 0.0  # vertical segments
    mass = rng.uniform(0.1, 1.0, (Nf, S, H, W))
    mass[:, :, 11, :] = 0.0  # no mass: no contribution
    return np.ascontiguousarray(vec), mass


def _ntaps(vec) -> int:
    return nk.max_taps(float(np.sqrt((vec[:, :, 0] ** 2 + vec[:, :, 1] ** 2).max())))


CASES = [(1, 0.0), (4, 0.0), (2, 0.5)]  # line kernel, the LUT's four corners, two segments


@pytest.mark.parametrize("S, beta", CASES)
@pytest.mark.parametrize("C", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_table_gives_bitwise_the_on_the_fly_results(S, beta, C, dtype):
    for Nf, N in ((1, 2), (2, 2)):
        vec, mass = _segments(S, Nf, seed=S * 10 + C)
        vec, mass = vec.astype(dtype), mass.astype(dtype)
        x = np.random.default_rng(C).random((N, C, H, W)).astype(dtype)
        nt = _ntaps(vec)
        table = seg.build_weight_table(vec, mass, beta, nt, dtype).arrays
        assert np.array_equal(nk.forward(x, vec, mass, beta, nt, table), nk.forward(x, vec, mass, beta, nt))
        assert np.array_equal(nk.adjoint(x, vec, mass, beta, nt, 3, table), nk.adjoint(x, vec, mass, beta, nt, 3))
        assert np.array_equal(nk.normal(x, vec, mass, beta, nt, 2, table), nk.normal(x, vec, mass, beta, nt, 2))


@pytest.mark.parametrize("S, beta", CASES)
@pytest.mark.parametrize("C", [1, 3])
def test_table_results_match_the_dense_matrices(S, beta, C):
    vec, mass = _segments(S, 2, seed=40 + S)
    x = np.random.default_rng(41).random((2, C, H, W))
    nt = _ntaps(vec)
    table = seg.build_weight_table(vec, mass, beta, nt, np.float64).arrays
    y = nk.forward(x, vec, mass, beta, nt, table)
    yt = nk.adjoint(x, vec, mass, beta, nt, 2, table)
    z = nk.normal(x, vec, mass, beta, nt, 2, table)
    for b in range(2):
        A = segment_matrix(vec[b], mass[b], beta)
        for c in range(C):
            xs = x[b, c].ravel()
            np.testing.assert_allclose(y[b, c].ravel(), A @ xs, rtol=0, atol=1e-12)
            np.testing.assert_allclose(yt[b, c].ravel(), A.T @ xs, rtol=0, atol=1e-12)
            np.testing.assert_allclose(z[b, c].ravel(), A.T @ (A @ xs), rtol=0, atol=1e-12)


def test_table_holds_the_reference_taps():
    """The stored (offset, weight) pairs are ``_taps``'s list, and scale = mass / Σ weights."""
    vec, mass = _segments(2, 1, seed=3)
    beta = 0.5
    nt = _ntaps(vec)
    start, steps, kind, scale, lo, radius, major, w, r = seg.build_weight_table(vec, mass, beta, nt,
                                                                                np.float64).arrays
    kxs, kys = np.empty(nt, np.int64), np.empty(nt, np.int64)
    ws, gx, gy = np.empty(nt), np.empty(nt), np.empty(nt)
    for s, i, j in [(0, 5, 5), (1, 9, 12), (0, 7, 1), (1, 0, 8), (0, 2, 4), (1, 11, 3)]:
        ax, ay = vec[0, s, :, i, j]
        if mass[0, s, i, j] == 0.0:
            assert kind[0, s, i, j] == 0
            continue
        if ax == 0.0 and ay == 0.0:
            assert kind[0, s, i, j] == 1 and scale[0, s, i, j] == mass[0, s, i, j]
            continue
        assert kind[0, s, i, j] == 2
        n = nk._taps(ax, ay, beta, kxs, kys, ws, gx, gy, False)
        want = {(int(kxs[t]), int(kys[t])): ws[t] for t in range(n)}
        got = {}
        st, cnt = start[0, s, i, j], steps[0, s, i, j]
        for k in range(cnt):
            for d in range(3):
                wt = w[d, st + k]
                if wt > 0.0:
                    k_maj, k_min = lo[0, s, i, j] + k, int(r[st + k]) + d - 1
                    got[(k_maj, k_min) if major[0, s, i, j] else (k_min, k_maj)] = wt
        assert got == want
        assert scale[0, s, i, j] == pytest.approx(mass[0, s, i, j] / sum(want.values()), rel=1e-15)
        assert radius[0, s, i, j] == nk._radius(float(np.hypot(ax, ay)), beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nbytes_is_what_the_arrays_hold_and_the_budget_is_kept(dtype):
    vec, mass = _segments(2, 1, seed=5)
    nt = _ntaps(vec)
    table = seg.build_weight_table(vec, mass, 0.0, nt, dtype)
    assert table.nbytes == sum(a.nbytes for a in table.arrays)
    assert table.arrays[7].dtype == dtype and table.arrays[8].dtype == np.int16
    assert seg.build_weight_table(vec, mass, 0.0, nt, dtype, max_bytes=table.nbytes).arrays is not None
    too_big = seg.build_weight_table(vec, mass, 0.0, nt, dtype, max_bytes=table.nbytes - 1)
    assert too_big.arrays is None and too_big.nbytes == 0 and too_big.needed == table.nbytes
    assert table.needed == table.nbytes
    # the layout: segment after segment, each starting where the previous one's steps end
    start, steps, w, r = table.arrays[0], table.arrays[1], table.arrays[7], table.arrays[8]
    flat_start, flat_steps = start.ravel(), steps.ravel()
    assert flat_start[0] == 0 and np.array_equal(flat_start[1:], np.cumsum(flat_steps)[:-1])
    assert w.shape == (3, int(flat_steps.sum())) and r.shape == (w.shape[1],)
    assert int((flat_start + flat_steps).max()) == w.shape[1]
    with pytest.raises(ValueError, match="segments too long for a weight table"):
        seg.build_weight_table(vec, mass, 0.0, 3 * 32768, dtype)
    # int16 minor offsets hold up to 32767 steps: the largest bound still builds
    assert seg.build_weight_table(vec, mass, 0.0, 3 * 32767 + 2, dtype).arrays is not None


@pytest.fixture
def tables(monkeypatch):
    """A fresh, empty table cache in place of the library-wide one."""
    cache = seg.FlowCache(64 * 2**20)
    monkeypatch.setattr(seg, "WEIGHT_TABLES", cache)
    return cache


def test_prepared_flow_builds_its_table_on_the_second_use(tables):
    vec, mass = _segments(1, 1, seed=6)
    prep = seg.prepare_numba(torch.from_numpy(vec), torch.from_numpy(mass))
    x = torch.rand(1, 3, H, W, dtype=torch.float64)
    y1 = prep.run(x, None, None, 0.0, False)
    assert len(tables) == 0  # one application: no table
    y2 = prep.run(x, None, None, 0.0, False)
    assert len(tables) == 1 and tables.misses == 1
    yt = prep.run(x, None, None, 0.0, True)
    z = prep.normal(x, 0.0)
    assert tables.hits == 2 and len(tables) == 1  # one table serves K, Kᵀ and KᵀK
    assert torch.equal(y1, y2)
    vt, mt = torch.from_numpy(vec), torch.from_numpy(mass)
    assert torch.equal(yt, seg.segment_blur(x, vt, mt, 0.0, True, "numba"))
    assert torch.equal(z, prep.run(y2, None, None, 0.0, True))
    # another dtype or beta is another table
    prep.run(x.float(), None, None, 0.0, False)
    prep.run(x.float(), None, None, 0.0, False)
    prep.run(x, None, None, 0.5, False)
    prep.run(x, None, None, 0.5, False)
    assert len(tables) == 3
    # the tables go with the prepared flow
    del prep
    gc.collect()
    assert len(tables) == 0 and tables.nbytes == 0


def test_a_table_over_the_budget_is_not_built_and_not_recounted(tables, monkeypatch):
    vec, mass = _segments(1, 1, seed=7)
    prep = seg.prepare_numba(torch.from_numpy(vec), torch.from_numpy(mass))
    tables.max_bytes = 100  # far below this flow's table
    calls = []
    real = nk.table_steps
    monkeypatch.setattr(nk, "table_steps", lambda *a: calls.append(1) or real(*a))
    x = torch.rand(1, 1, H, W, dtype=torch.float64)
    outs = [prep.run(x, None, None, 0.0, False) for _ in range(4)]
    assert all(torch.equal(o, outs[0]) for o in outs)
    assert calls == [1]  # sized once; the "too large" record is kept (0 bytes)
    assert tables.nbytes == 0 and prep.table(0.0, np.float64) is None
    # the limit raised above the table's size: the "too large" record is retried, once
    need = seg.build_weight_table(vec, mass, 0.0, prep.ntaps, np.float64).nbytes
    assert need > 100 and calls == [1, 1]
    tables.max_bytes = need - 1
    assert prep.table(0.0, np.float64) is None and calls == [1, 1]  # still too large: not sized again
    tables.max_bytes = need
    assert prep.table(0.0, np.float64) is not None and tables.nbytes == need and calls == [1, 1, 1]
    assert torch.equal(prep.run(x, None, None, 0.0, False), outs[0])
    assert prep.table(0.0, np.float64) is not None and len(calls) == 3  # kept, not rebuilt
    tables.max_bytes = 0  # 0 turns the tables off
    fresh = seg.prepare_numba(torch.from_numpy(vec), torch.from_numpy(mass))
    assert fresh.table(0.0, np.float64) is None and fresh.table(0.0, np.float64) is None


def test_operator_answers_are_unchanged_and_follow_in_place_flow_changes(tables):
    rng = np.random.default_rng(8)
    flow = torch.from_numpy(rng.uniform(-6, 6, (1, 2, 20, 24)))
    x = torch.from_numpy(rng.random((1, 3, 20, 24)))
    K = pd.MotionBlur(flow)
    first = [K._forward(x), K._adjoint(x), K._normal(x)]
    again = [K._forward(x), K._adjoint(x), K._normal(x)]
    assert len(tables) == 1 and all(torch.equal(a, b) for a, b in zip(first, again))
    with torch.no_grad():
        flow.mul_(0.5)  # the flow cache sees the change: new segments, so a new table
    fresh = pd.MotionBlur(flow.clone())
    for _ in range(2):
        torch.testing.assert_close(K._forward(x), fresh._forward(x), rtol=0, atol=0)
        torch.testing.assert_close(K._normal(x), fresh._normal(x), rtol=0, atol=0)
    A = sp.csr_matrix(segment_matrix(flow[0, None].numpy(), np.ones((1, 20, 24)), 0.0))
    np.testing.assert_allclose(K._forward(x)[0, 1].numpy().ravel(), A @ x[0, 1].numpy().ravel(), atol=1e-12)

