"""The fast CPU paths of the per-pixel operators (issue 14, part 2) and the per-flow cache.

The numba kernels take different code paths for interior pixels (flat offsets, no
clamping) and border pixels (clamped taps), for C = 1, C = 3 and any other C, for
zero-length segments and for segments of zero mass (LUT corners at integer flows).
Each path is checked against the dense sparse-matrix reference of
``pnpdeblur.operators.dense`` in float64 at 1e-12, forward and adjoint. The cache
tests check that results are bitwise identical with and without it, that an
in-place change of the flow invalidates it, and that it stays within its byte limit.
"""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import dense
from pnpdeblur.operators._segment import FLOW_CACHE, FlowCache, _default_cache_bytes
from pnpdeblur.operators.motion import MotionBlur, TwoSegmentBlur

H, W = 30, 34  # |m| <= 9: interior pixels exist (radius ceil(L/2) + 4 <= 9) and so do borders


def _flow(seed: int, scale: float = 9.0, zeros: bool = True) -> np.ndarray:
    """A smooth-ish random flow (2, H, W) with every direction, some pixels exactly 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    ang = 2 * np.pi * (xx + 0.7 * yy) + rng.uniform(0, 2 * np.pi)
    length = scale * (0.3 + 0.7 * rng.random((H, W)))
    f = np.stack([length * np.cos(ang), length * np.sin(ang)])
    if zeros:
        f[:, rng.random((H, W)) < 0.1] = 0.0
    return f


def _dense_apply(A, x, transpose=False):
    M = A.T.tocsr() if transpose else A
    return dense.apply_matrix(M, x)


@pytest.mark.parametrize("C", [1, 2, 3, 4])
def test_line_kernel_matches_dense_every_channel_path(C):
    f = _flow(C)
    A = dense.motion_blur_matrix(f)
    x = np.random.default_rng(10 + C).random((1, C, H, W))
    K = MotionBlur(torch.from_numpy(f), path="numba")
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(K._forward(xt).numpy(), _dense_apply(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K._adjoint(xt).numpy(), _dense_apply(A, x, True), rtol=0, atol=1e-12)


def test_kernel_takes_both_interior_and_border_paths():
    # guards the fixture above: with |m| <= 9 some pixels are interior, most are not
    R = nk._radius(9.0, 0.0)
    assert 0 < H - 2 * R and 0 < W - 2 * R


def test_two_segment_and_batched_flows_match_dense():
    fn, fp = _flow(5, 6.0), _flow(6, 6.0)
    fn2, fp2 = _flow(7, 6.0), _flow(8, 6.0)
    x = np.random.default_rng(3).random((2, 3, H, W))
    K = TwoSegmentBlur(torch.from_numpy(np.stack([fn, fn2])), torch.from_numpy(np.stack([fp, fp2])), tau=0.7, path="numba")
    y = K._forward(torch.from_numpy(x)).numpy()
    yt = K._adjoint(torch.from_numpy(x)).numpy()
    for b, (a, p) in enumerate([(fn, fp), (fn2, fp2)]):
        A = dense.two_segment_matrix(a, p, tau=0.7)
        np.testing.assert_allclose(y[b : b + 1], _dense_apply(A, x[b : b + 1]), rtol=0, atol=1e-12)
        np.testing.assert_allclose(yt[b : b + 1], _dense_apply(A, x[b : b + 1], True), rtol=0, atol=1e-12)


def test_lut_with_zero_mass_corners_matches_dense():
    f = _flow(9, 8.0)
    f[:, :, ::3] = np.round(f[:, :, ::3])  # integer flows: three of the four corners have mass 0
    A = dense.lut_blur_matrix(f)
    x = np.random.default_rng(4).random((1, 3, H, W))
    K = MotionBlur.lut(torch.from_numpy(f), path="numba")
    np.testing.assert_allclose(K._forward(torch.from_numpy(x)).numpy(), _dense_apply(A, x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(K._adjoint(torch.from_numpy(x)).numpy(), _dense_apply(A, x, True), rtol=0, atol=1e-12)


def test_adjoint_is_deterministic_and_independent_of_chunking():
    f = _flow(11)
    vec = f[None, None].copy()
    mass = np.ones((1, 1, H, W))
    g = np.random.default_rng(5).random((1, 3, H, W))
    ntaps = nk.max_taps(float(np.hypot(f[0], f[1]).max()))
    one = nk.adjoint(g, vec, mass, 0.0, ntaps, 1)
    for chunks in (2, 3, 7):
        a = nk.adjoint(g, vec, mass, 0.0, ntaps, chunks)
        np.testing.assert_allclose(a, one, rtol=0, atol=1e-13)
        assert np.array_equal(a, nk.adjoint(g, vec, mass, 0.0, ntaps, chunks))  # bitwise repeatable


def test_float32_image_keeps_float64_geometry():
    # float32 images: same weights as float64 (geometry in float64), only the image rounding differs
    f = _flow(12)
    x = np.random.default_rng(6).random((1, 3, H, W)).astype(np.float32)
    K = MotionBlur(torch.from_numpy(f.astype(np.float32)), path="numba")
    y32 = K._forward(torch.from_numpy(x)).numpy()
    y64 = _dense_apply(dense.motion_blur_matrix(f.astype(np.float32).astype(np.float64)), x.astype(np.float64))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=0, atol=2e-7)


# ---------------------------------------------------------------------------- cache
@pytest.fixture
def fresh_cache():
    old = FLOW_CACHE.max_bytes
    FLOW_CACHE.clear()
    yield FLOW_CACHE
    FLOW_CACHE.max_bytes = old
    FLOW_CACHE.clear()


def test_cached_results_equal_uncached_bitwise(fresh_cache):
    f = torch.from_numpy(_flow(13))
    x = torch.from_numpy(np.random.default_rng(7).random((2, 3, H, W)))
    for make in (lambda t: MotionBlur(t), lambda t: MotionBlur.lut(t), lambda t: TwoSegmentBlur(t, -0.5 * t, tau=0.5)):
        fresh_cache.max_bytes = 0  # disabled: converted on every call
        ref_f, ref_a = make(f)._forward(x), make(f)._adjoint(x)
        assert len(fresh_cache) == 0
        fresh_cache.max_bytes = 2**30
        K = make(f)
        misses = fresh_cache.misses
        for _ in range(2):
            assert torch.equal(K._forward(x), ref_f)
            assert torch.equal(K._adjoint(x), ref_a)
        assert fresh_cache.misses == misses + 1  # built once, reused three times
    # float32 images get their own entry (the flow is cast to the image dtype first)
    y32 = MotionBlur(f)._forward(x.float())
    fresh_cache.max_bytes = 0
    assert torch.equal(y32, MotionBlur(f)._forward(x.float()))


class _CudaLike(torch.Tensor):
    """CPU memory that reports CUDA device 1 (``_cached_cupy`` reads ``.device`` only)."""

    @property
    def device(self):
        return torch.device("cuda", 1)


def test_cupy_geometry_is_cached_only_where_the_cupy_path_runs(fresh_cache, monkeypatch):
    """When ``_cached_cupy`` serves the CuPy path the flow's float64 segments (on the CPU here:
    the gating is what is checked; tests/test_gpu.py runs it on a device)."""
    from pnpdeblur.operators import _cupy, motion

    loads = []
    monkeypatch.setattr(_cupy, "load", lambda i: loads.append(i) or {})
    monkeypatch.setattr(motion, "_resolve_path", lambda x, path: "cupy" if path in (None, "cupy") else path)
    rng = np.random.default_rng(4)
    f = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 7)), dtype=torch.float32)
    x = torch.Tensor._make_subclass(_CudaLike, torch.rand(1, 3, 6, 7))
    K = MotionBlur(f)
    monkeypatch.setattr(K, "_segments", lambda like: (f[:, None].double(), torch.ones(1, 1, 6, 7, dtype=torch.float64)))
    hits = fresh_cache.hits  # the counters run over the process's tests
    g = K._cached_cupy(x)
    assert g is not None and loads == [1] and len(fresh_cache) == 1
    torch.testing.assert_close(g.vec, f[:, None].double(), rtol=0, atol=0)
    assert K._cached_cupy(x) is g and fresh_cache.hits == hits + 1  # reused
    tag = next(iter(fresh_cache._entries))[0]
    assert "cuda:1" in tag and torch.float32 in tag  # per device and image dtype
    # not applicable: a CPU image, a forced torch path, a flow that needs a gradient, and
    # kernels that cannot be built
    assert K._cached_cupy(torch.rand(1, 3, 6, 7)) is None
    assert MotionBlur(f, path="torch")._cached_cupy(x) is None
    assert MotionBlur(f, path="numba")._cached_cupy(x) is None
    Kg = MotionBlur(f.clone().requires_grad_(True))
    assert Kg._cached_cupy(x) is None
    with torch.no_grad():  # no gradient recorded: cached again
        monkeypatch.setattr(Kg, "_segments", K._segments)
        assert Kg._cached_cupy(x) is not None
    Kn = MotionBlur(f.numpy().copy())  # a numpy flow: cached against a copy of its values
    monkeypatch.setattr(Kn, "_segments", K._segments)
    assert Kn._cached_cupy(x) is not None and Kn._cached_cupy(x) is Kn._cached_cupy(x)

    def unavailable(i):
        raise _cupy.CupyUnavailableError("NVRTC missing")

    monkeypatch.setattr(_cupy, "load", unavailable)
    K2 = MotionBlur(f.clone())
    monkeypatch.setattr(K2, "_segments", K._segments)
    assert K2._cached_cupy(x) is None


def test_cache_invalidated_by_in_place_flow_change(fresh_cache):
    f = torch.from_numpy(_flow(14))
    x = torch.from_numpy(np.random.default_rng(8).random((1, 3, H, W)))
    K = MotionBlur(f)
    before = K._forward(x)
    f.mul_(-0.5)  # in place: same tensor object, new version
    after = K._forward(x)
    expected = MotionBlur(f.clone())._forward(x)
    assert not torch.allclose(after, before)
    assert torch.equal(after, expected)
    f[0, 3, 4] = 2.0  # indexed assignment (through the (1, 2, H, W) view K holds) bumps it too
    assert torch.equal(K._adjoint(x), MotionBlur(f.clone())._adjoint(x))


def test_numpy_flows_are_cached_by_value(fresh_cache):
    # in-place numpy edits are invisible to torch's version counter: the entry keeps a copy
    f = _flow(15)
    x = np.random.default_rng(9).random((1, 3, H, W))
    K = MotionBlur(f)
    K(x)
    assert len(fresh_cache) == 1
    f *= 0.5
    np.testing.assert_allclose(K(x), _dense_apply(dense.motion_blur_matrix(f), x), rtol=0, atol=1e-12)
    assert len(fresh_cache) == 1  # rebuilt in place of the stale entry


def test_flow_gradients_bypass_the_cache_and_match(fresh_cache):
    f0 = _flow(16, 5.0, zeros=False)
    x = torch.from_numpy(np.random.default_rng(10).random((1, 2, H, W)))
    grads = []
    for use in (True, False):
        f = torch.from_numpy(f0.copy()).requires_grad_(True)
        if not use:
            fresh_cache.max_bytes = 0
        MotionBlur(f)._forward(x).square().sum().backward()
        grads.append(f.grad)
    assert len(fresh_cache) == 0
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_image_gradient_through_cached_operator(fresh_cache):
    f = torch.from_numpy(_flow(17))
    x = torch.from_numpy(np.random.default_rng(11).random((1, 3, H, W))).requires_grad_(True)
    g = torch.from_numpy(np.random.default_rng(12).random((1, 3, H, W)))
    K = MotionBlur(f)
    (K._forward(x) * g).sum().backward()
    assert len(fresh_cache) == 1
    A = dense.motion_blur_matrix(f.numpy())
    np.testing.assert_allclose(x.grad.numpy(), _dense_apply(A, g.numpy(), True), rtol=0, atol=1e-12)


class _Blob:
    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_cache_never_exceeds_its_limit_and_evicts_lru():
    cache = FlowCache(1000)
    ts = [torch.zeros(3) for _ in range(6)]
    for k, t in enumerate(ts):
        cache.get((t,), ("a",), lambda: _Blob(300))
        assert cache.nbytes <= 1000
        assert cache.nbytes == 300 * len(cache)
    assert len(cache) == 3  # 3 x 300 fit, a 4th would not
    # the most recent three survive; touching ts[3] makes ts[4] the oldest
    cache.get((ts[3],), ("a",), lambda: pytest.fail("ts[3] should be cached"))
    cache.get((ts[0],), ("a",), lambda: _Blob(300))
    cache.get((ts[3],), ("a",), lambda: pytest.fail("ts[3] should still be cached"))
    built = []
    cache.get((ts[4],), ("a",), lambda: built.append(1) or _Blob(300))
    assert built == [1]
    # an entry over the limit is returned but not stored
    big = cache.get((ts[5],), ("b",), lambda: _Blob(1001))
    assert big.nbytes == 1001 and cache.nbytes <= 1000
    # lowering the limit evicts at once
    cache.max_bytes = 350
    assert cache.nbytes <= 350 and len(cache) == 1
    with pytest.raises(ValueError, match="max_bytes"):
        cache.max_bytes = -1
    with pytest.raises(TypeError, match="max_bytes"):
        cache.max_bytes = 1.5


def test_prepare_cupy_makes_owned_contiguous_float64_copies():
    from pnpdeblur.operators._segment import CupyGeometry, prepare_cupy

    base = torch.rand(1, 1, 2, 7, 9, dtype=torch.float64)
    for vec, mass in ((base, torch.ones(1, 1, 7, 9, dtype=torch.float64)),  # nothing to convert: still copies
                      (base.float().transpose(3, 4).contiguous().transpose(3, 4).requires_grad_(True),
                       torch.rand(1, 1, 9, 7).transpose(2, 3))):  # float32, not contiguous, with grad
        g = prepare_cupy(vec, mass)
        assert isinstance(g, CupyGeometry)
        for got, src in ((g.vec, vec), (g.mass, mass)):
            assert got.dtype == torch.float64 and got.is_contiguous() and not got.requires_grad
            assert got.shape == src.shape and got.data_ptr() != src.data_ptr()
            torch.testing.assert_close(got, src.detach().double(), rtol=0, atol=0)
        assert g.nbytes == 8 * (vec.numel() + mass.numel())
    g0 = prepare_cupy(base, torch.ones(1, 1, 7, 9, dtype=torch.float64))
    before = base.clone()
    base.add_(1.0)  # the flow changes in place: the prepared copy (a cache entry) does not
    assert torch.equal(g0.vec, before) and not torch.equal(g0.vec, base)


def test_cache_discard_drops_one_entry():
    cache = FlowCache(10**6)
    a, b = torch.zeros(2), torch.zeros(2)
    cache.get((a,), ("x",), lambda: _Blob(100))
    cache.get((a,), ("y",), lambda: _Blob(200))
    cache.get((b,), ("x",), lambda: _Blob(300))
    cache.discard((a,), ("x",))
    assert len(cache) == 2 and cache.nbytes == 500
    cache.discard((a,), ("x",))  # absent: nothing happens
    cache.discard((b,), ("y",))
    assert len(cache) == 2 and cache.nbytes == 500
    built = []
    cache.get((a,), ("x",), lambda: built.append(1) or _Blob(100))
    cache.get((a,), ("y",), lambda: pytest.fail("(a, y) should still be cached"))
    cache.get((b,), ("x",), lambda: pytest.fail("(b, x) should still be cached"))
    assert built == [1] and cache.nbytes == 600


def test_cache_entry_dies_with_its_flow():
    cache = FlowCache(10**6)
    t = torch.zeros(4)
    cache.get((t,), ("a",), lambda: _Blob(100))
    assert len(cache) == 1
    del t
    gc.collect()
    assert len(cache) == 0 and cache.nbytes == 0


def test_cache_limit_from_environment(monkeypatch):
    monkeypatch.setenv("PNPDEBLUR_FLOW_CACHE_BYTES", "12345")
    assert _default_cache_bytes() == 12345
    monkeypatch.setenv("PNPDEBLUR_FLOW_CACHE_BYTES", "lots")
    with pytest.raises(ValueError, match="PNPDEBLUR_FLOW_CACHE_BYTES"):
        _default_cache_bytes()
    monkeypatch.setenv("PNPDEBLUR_FLOW_CACHE_BYTES", "-1")
    with pytest.raises(ValueError, match="PNPDEBLUR_FLOW_CACHE_BYTES"):
        _default_cache_bytes()
