"""``pnpdeblur.operators._segment`` called directly on tiny inputs: path choice and its
messages, the numba and torch implementations against the dense reference (forward,
adjoint, gradients), the prepared-array route, and the per-flow cache with stand-in
entries (no kernels needed)."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import _segment as seg
from pnpdeblur.operators import dense

from _operators import segment_matrix

H, W = 6, 7


def _segments(seed, n=1, s=2, scale=3.0):
    rng = np.random.default_rng(seed)
    vec = rng.uniform(-scale, scale, (n, s, 2, H, W))
    vec[:, 0, :, 1, 2] = 0.0  # a zero-length segment
    mass = rng.uniform(0.1, 1.0, (n, s, H, W))
    return vec, mass



def test_paths_on_this_machine():
    assert seg.PATHS == ("numba", "torch", "cupy")
    expected = ("numba", "torch") + (("cupy",) if seg.backend.cupy_available() else ())
    assert seg.available_paths() == expected
    assert seg._default_path("cpu") == "numba"
    assert seg._default_path("meta") == "torch"
    if not seg.backend.cupy_available():
        assert seg._default_path("cuda") == "torch"


def test_path_errors_name_the_argument():
    x = torch.zeros(1, 1, 2, 2)
    assert seg._resolve_path(x, None) == "numba"
    assert seg._resolve_path(x, "numba") == "numba"
    assert seg._resolve_path(x, "torch") == "torch"
    assert seg._resolve_path(torch.zeros(1, device="meta"), None) == "torch"
    with pytest.raises(ValueError, match=r"^path must be 'numba', 'torch', 'cupy' or None, got 'cuda'$"):
        seg._resolve_path(x, "cuda")
    with pytest.raises(ValueError, match=r"^path='numba' needs CPU tensors"):
        seg._resolve_path(torch.zeros(1, device="meta"), "numba")
    if not seg.backend.cupy_available():
        with pytest.raises(RuntimeError, match=r"^path='cupy' needs CuPy and a CUDA device: "):
            seg._resolve_path(x, "cupy")


def test_scatter_chunks_from_the_environment(monkeypatch):
    import numba

    threads = numba.get_num_threads()
    monkeypatch.delenv("PNPDEBLUR_SCATTER_CHUNKS", raising=False)
    assert seg._nchunks() == max(1, min(threads, 4))
    monkeypatch.setenv("PNPDEBLUR_SCATTER_CHUNKS", "1")
    assert seg._nchunks() == 1
    monkeypatch.setenv("PNPDEBLUR_SCATTER_CHUNKS", "0")
    assert seg._nchunks() == 1


@pytest.mark.parametrize("path", ["numba", "torch"])
@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_segment_blur_matches_dense(path, beta):
    vec, mass = _segments(int(beta * 2) + 3, n=2)
    x = np.random.default_rng(5).random((2, 3, H, W))
    xt, vt, mt = (torch.from_numpy(a) for a in (x, vec, mass))
    y = seg.segment_blur(xt, vt, mt, beta, path=path).numpy()
    yt = seg.segment_blur(xt, vt, mt, beta, transpose=True, path=path).numpy()
    for b in range(2):
        A = segment_matrix(vec[b], mass[b], beta)
        np.testing.assert_allclose(y[b : b + 1], dense.apply_matrix(A, x[b : b + 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(yt[b : b + 1], dense.apply_matrix(A.T.tocsr(), x[b : b + 1]), rtol=0, atol=1e-12)


def test_default_path_and_float32(monkeypatch):
    vec, mass = _segments(6)
    x = np.random.default_rng(7).random((3, 2, H, W))
    A = segment_matrix(vec[0], mass[0], 0.0)
    vt, mt = torch.from_numpy(vec), torch.from_numpy(mass)
    y = seg.segment_blur(torch.from_numpy(x).float(), vt.float(), mt.float(), 0)  # numba, int beta
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), dense.apply_matrix(A, x), rtol=0, atol=1e-5)
    y = seg.segment_blur(torch.from_numpy(x).float(), vt.float(), mt.float(), 0, path="torch")
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), dense.apply_matrix(A, x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 50])
def test_torch_path_in_small_chunks(monkeypatch, chunk):
    monkeypatch.setitem(seg._TORCH_CHUNK_ELEMENTS, "cpu", chunk)
    vec, mass = _segments(8, n=1, s=1)
    x = np.random.default_rng(9).random((2, 1, H, W))
    A = segment_matrix(vec[0], mass[0], 0.5)
    xt, vt, mt = (torch.from_numpy(a) for a in (x, vec, mass))
    np.testing.assert_allclose(seg._torch_segment_blur(xt, vt, mt, 0.5, False).numpy(), dense.apply_matrix(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        seg._torch_segment_blur(xt, vt, mt, 0.5, True).numpy(), dense.apply_matrix(A.T.tocsr(), x), rtol=0, atol=1e-12
    )


def test_prepared_arrays_give_the_same_numbers_and_own_their_memory():
    vec, mass = _segments(10)
    vt, mt = torch.from_numpy(vec.copy()).float(), torch.from_numpy(mass.copy()).float()
    prep = seg.prepare_numba(vt, mt)
    assert prep.vec.dtype == np.float64 and prep.mass.dtype == np.float64
    assert prep.ntaps == nk.max_taps(float(np.sqrt((vt.double().numpy() ** 2).sum(2)).max()))
    assert prep.nbytes == prep.vec.nbytes + prep.mass.nbytes == 8 * (vec.size + mass.size)
    x = torch.from_numpy(np.random.default_rng(11).random((1, 2, H, W)))
    for transpose in (False, True):
        ref = seg.segment_blur(x, vt, mt, 0.0, transpose, "numba")
        got = seg.segment_blur(x, vt, mt, 0.0, transpose, "numba", prepared=prep)
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    vt.mul_(0)  # the prepared copy does not alias the source
    assert np.abs(prep.vec).max() > 0
    f64 = torch.from_numpy(vec)
    assert not np.shares_memory(seg.prepare_numba(f64, torch.from_numpy(mass)).vec, vec)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_numba_gradients_equal_torch_autograd(transpose, shared):
    # image, vector and mass gradients of <K x, g> (or <Kᵀ x, g>) through SegmentBlurFn
    rng = np.random.default_rng(12)
    vec, mass = _segments(13, n=1 if shared else 2, scale=2.5)
    vec[:, 0, :, 1, 2] = 0.4  # no zero-length segment here: its gradient is a one-sided choice
    x, g = rng.random((2, 2, H, W)), rng.random((2, 2, H, W))
    grads = {}
    for path in ("numba", "torch"):
        xt = torch.tensor(x, requires_grad=True)
        vt = torch.tensor(vec, requires_grad=True)
        mt = torch.tensor(mass, requires_grad=True)
        (seg.segment_blur(xt, vt, mt, 0.5, transpose, path) * torch.from_numpy(g)).sum().backward()
        grads[path] = (xt.grad, vt.grad, mt.grad)
    for a, b in zip(grads["numba"], grads["torch"]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_gradient_only_for_what_requires_it_and_in_the_flows_dtype():
    vec, mass = _segments(14)
    x = torch.rand(1, 1, H, W, dtype=torch.float64, requires_grad=True)
    vt = torch.tensor(vec, dtype=torch.float32, requires_grad=True)
    mt = torch.tensor(mass, dtype=torch.float32)
    seg.segment_blur(x, vt, mt, 0.0, path="numba").sum().backward()
    assert vt.grad.dtype == torch.float32 and mt.grad is None and x.grad.dtype == torch.float64
    # d/dx sum(K x) = Kᵀ 1
    ones = torch.ones(1, 1, H, W, dtype=torch.float64)
    torch.testing.assert_close(x.grad, seg.segment_blur(ones, vt.detach().double(), mt.double(), 0.0, True, "numba"), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, default, read", [
    ("PNPDEBLUR_FLOW_CACHE_BYTES", 256 * 2**20, seg._default_cache_bytes),
    ("PNPDEBLUR_WEIGHT_TABLE_BYTES", 768 * 2**20, seg._default_table_bytes),  # the weight tables' limit
])
def test_default_cache_bytes_from_the_environment(monkeypatch, name, default, read):
    import pnpdeblur._memory as mem

    monkeypatch.setattr(mem, "machine_memory_bytes", lambda: None)  # the table's default scales with memory
    monkeypatch.delenv(name, raising=False)
    assert read() == default
    monkeypatch.setenv(name, "0")
    assert read() == 0
    monkeypatch.setenv(name, "12.5")
    with pytest.raises(ValueError, match=rf"^{name} must be an integer number of bytes, got '12.5'$"):
        read()
    monkeypatch.setenv(name, "-1")
    with pytest.raises(ValueError, match=rf"^{name} must be >= 0, got -1$"):
        read()


class _Entry:
    def __init__(self, nbytes, tag):
        self.nbytes, self.tag = nbytes, tag


def test_flow_cache_hits_versions_eviction_and_limits():
    cache = seg.FlowCache(100)
    a, b, c = torch.zeros(2), torch.zeros(3), torch.zeros(4)
    built = []

    def build(n, tag):
        def f():
            built.append(tag)
            return _Entry(n, tag)
        return f

    e = cache.get([a], ("t",), build(40, "a"))
    assert cache.get([a], ("t",), build(40, "a2")) is e and built == ["a"]
    assert (cache.hits, cache.misses, cache.nbytes, len(cache)) == (1, 1, 40, 1)
    assert cache.get([a], ("u",), build(10, "a-u")).tag == "a-u"  # another tag: another entry
    assert cache.get([a, b], ("t",), build(10, "ab")).tag == "ab"  # more sources: another entry
    assert cache.nbytes == 60 and len(cache) == 3
    a.add_(1)  # in-place change: the entry is rebuilt, not counted twice
    assert cache.get([a], ("t",), build(40, "a3")).tag == "a3"
    assert cache.nbytes == 60 and len(cache) == 3 and cache.misses == 4
    cache.get([b], ("t",), build(40, "b"))  # 100 bytes: fits exactly
    assert cache.nbytes == 100 and len(cache) == 4
    assert cache.get([a], ("t",), build(40, "no")).tag == "a3"  # hit: a/t becomes the most recent
    # 30 more bytes evict least recent first: a/u and ab (stale), then b/t; a/t stays
    cache.get([c], ("t",), build(30, "c"))
    assert cache.nbytes == 40 + 30 and len(cache) == 2
    assert cache.get([a], ("t",), build(40, "no")).tag == "a3"
    assert cache.get([b], ("t",), build(20, "b2")).tag == "b2"
    assert cache.nbytes == 90 and len(cache) == 3
    big = cache.get([c], ("big",), build(101, "big"))  # larger than the limit: returned, not stored
    assert big.tag == "big" and len(cache) == 3 and cache.nbytes == 90
    cache.max_bytes = 35  # shrinking evicts until it fits
    assert cache.nbytes <= 35 and cache.max_bytes == 35
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_flow_cache_entry_dies_with_its_source():
    cache = seg.FlowCache(1000)
    t = torch.zeros(5)
    cache.get([t], (), lambda: _Entry(8, "t"))
    assert len(cache) == 1 and cache.nbytes == 8
    del t
    gc.collect()
    assert len(cache) == 0 and cache.nbytes == 0


def test_flow_cache_limit_checks():
    with pytest.raises(TypeError, match=r"^max_bytes must be an int >= 0, got float$"):
        seg.FlowCache(1.5)
    with pytest.raises(TypeError, match=r"^max_bytes must be an int >= 0, got bool$"):
        seg.FlowCache(True)
    with pytest.raises(ValueError, match=r"^max_bytes must be >= 0, got -1$"):
        seg.FlowCache(-1)
    zero = seg.FlowCache(0)
    t = torch.zeros(1)
    zero.get([t], (), lambda: _Entry(1, "z"))
    assert len(zero) == 0


def test_available_paths_follow_numba_and_cupy(monkeypatch):
    monkeypatch.setattr(seg, "_numba_ok", lambda: False)
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: False)
    assert seg.available_paths() == ("torch",)
    assert seg._default_path("cpu") == "torch"
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: True)
    assert seg.available_paths() == ("torch", "cupy")
    monkeypatch.setattr(seg, "_numba_ok", lambda: True)
    assert seg.available_paths() == ("numba", "torch", "cupy")


def test_flow_gradients_through_prepared_arrays():
    # prepared= only replaces the conversion: gradients w.r.t. vec and mass are the same
    vec, mass = _segments(15, scale=2.5)
    vec[:, 0, :, 1, 2] = 0.4
    rng = np.random.default_rng(16)
    x, g = rng.random((1, 2, H, W)), rng.random((1, 2, H, W))
    grads = []
    for use_prep in (False, True):
        vt = torch.tensor(vec, requires_grad=True)
        mt = torch.tensor(mass, requires_grad=True)
        prep = seg.prepare_numba(vt, mt) if use_prep else None
        for transpose in (False, True):
            out = seg.segment_blur(torch.from_numpy(x), vt, mt, 0.0, transpose, "numba", prepared=prep)
            (out * torch.from_numpy(g)).sum().backward()
        grads.append((vt.grad.clone(), mt.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    assert grads[0][0].abs().max() > 0 and grads[0][1].abs().max() > 0


def test_source_dying_after_its_entry_was_evicted_is_quiet(monkeypatch):
    # the weakref callback of an evicted entry still fires when its source dies
    import sys

    raised = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: raised.append(u.exc_value))
    cache = seg.FlowCache(10)
    t = torch.zeros(3)
    cache.get([t], (), lambda: _Entry(8, "t"))
    u = torch.zeros(3)
    cache.get([u], (), lambda: _Entry(8, "u"))  # evicts t's entry
    assert len(cache) == 1
    del t
    gc.collect()
    assert raised == [] and len(cache) == 1 and cache.nbytes == 8
    cache._drop(("no such key",))  # a no-op
    assert len(cache) == 1


def test_entry_of_exactly_the_limit_is_stored():
    cache = seg.FlowCache(64)
    t = torch.zeros(1)
    cache.get([t], (), lambda: _Entry(64, "t"))
    assert len(cache) == 1 and cache.nbytes == 64


def test_two_threads_building_the_same_entry_count_it_once():
    # both miss, both build; the second insert replaces the first and its bytes
    import threading

    cache = seg.FlowCache(1000)
    t = torch.zeros(1)
    barrier = threading.Barrier(2, timeout=10)

    def build():
        barrier.wait()  # neither has inserted yet when both are building
        return _Entry(30, threading.get_ident())

    threads = [threading.Thread(target=cache.get, args=([t], ("k",), build)) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert cache.misses == 2 and len(cache) == 1 and cache.nbytes == 30


def test_default_path_without_numba_and_with_cupy(monkeypatch):
    import sys

    import pnpdeblur.operators as ops

    # the import of the kernels fails: neither the package attribute nor the module is there
    monkeypatch.delattr(ops, "_numba_kernels")
    monkeypatch.setitem(sys.modules, "pnpdeblur.operators._numba_kernels", None)
    assert seg._numba_ok() is False
    assert seg._default_path("cpu") == "torch"
    monkeypatch.undo()
    assert seg._numba_ok() is True
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: True)
    monkeypatch.setattr(seg.backend, "cupy_kernel_error", lambda: None)
    assert seg._default_path("cuda") == "cupy"
    assert seg._default_path("cpu") == "numba"
    assert seg._default_path("meta") == "torch"
    monkeypatch.setattr(seg.backend, "cupy_kernel_error", lambda: "NVRTC missing")
    assert seg._default_path("cuda") == "torch"
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: False)
    monkeypatch.setattr(seg.backend, "cupy_kernel_error", lambda: None)
    assert seg._default_path("cuda") == "torch"


def test_long_segments_through_the_numba_path():
    # the tap bound comes from the longest segment (|a| = 20 here), not a constant
    vec = np.zeros((1, 1, 2, 3, 4))
    vec[0, 0, 0] = 20.0
    vec[0, 0, :, 1, 1] = (0.0, -21.0)
    mass = np.ones((1, 1, 3, 4))
    x = torch.from_numpy(np.random.default_rng(17).random((1, 1, 3, 4)))
    vt, mt = torch.from_numpy(vec), torch.from_numpy(mass)
    for transpose in (False, True):
        torch.testing.assert_close(
            seg.segment_blur(x, vt, mt, 0.0, transpose, "numba"),
            seg.segment_blur(x, vt, mt, 0.0, transpose, "torch"),
            rtol=0,
            atol=1e-12,
        )


def test_cupy_path_messages(monkeypatch):
    x = torch.zeros(1, 1, 2, 2)
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: False)
    monkeypatch.setattr(seg.backend, "cupy_status", lambda: (False, "no CuPy here"))
    with pytest.raises(
        RuntimeError, match=r"^path='cupy' needs CuPy and a CUDA device: no CuPy here; use path=None \(automatic\) or path='torch'$"
    ):
        seg._resolve_path(x, "cupy")
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: True)
    with pytest.raises(
        ValueError, match=r"^path='cupy' needs CUDA tensors, got a tensor on cpu; move it with \.cuda\(\) or pass a cupy array$"
    ):
        seg._resolve_path(x, "cupy")
