"""``pnpdeblur.operators._segment``'s dispatch and its two CPU implementations, called
directly on tiny images, where a wrong choice cannot hide behind equal numbers.

The numba and torch paths compute the same numbers, so a check of values alone cannot
tell which one ran, how many taps the torch path enumerated beyond the support, how large
its gather chunks were, or which tap bound the compiled kernels were given (too small a
bound is an out-of-bounds write in compiled code, which nothing observes). Here:

* both paths against the dense reference matrices (``operators.dense``'s kernel formula) at
  1e-12 in float64 on uniform flows chosen so that the *outermost* tap position the torch
  path enumerates carries weight (the extent bound is then tight), 1-pixel-high/-wide images,
  segments along H and along W, zero-length segments, any ``beta``;
* which path ran, and which arrays the compiled kernels received (a spy on the kernels);
* the tap bound handed to the kernels, against the longest segment computed in numpy;
* ``_param_grad``'s shapes and dtypes (a flow shared by a batch) against torch autograd;
* the torch path's chunk size against its element budget, its dtype handling, its
  independence of torch's default device;
* the CuPy dispatch and its fallback with stand-ins for the CuPy module (no GPU needed);
* ``_nchunks`` with more threads than this machine's test processes have.
"""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import _segment as seg
from pnpdeblur.operators import dense

from _operators import segment_matrix



def _uniform(a, S, H, W, n=1):
    """Every pixel gets the segment vector ``a`` (S copies, masses 1 and 0.5, 0.25 ...)."""
    vec = np.broadcast_to(np.asarray(a, dtype=np.float64).reshape(1, 1, 2, 1, 1), (n, S, 2, H, W)).copy()
    mass = np.broadcast_to((0.5 ** np.arange(S)).reshape(1, S, 1, 1), (n, S, H, W)).copy()
    return vec, mass


def _longest(vec: np.ndarray) -> float:
    """Length of the longest segment, computed in numpy (0 for no segments at all)."""
    return float(np.sqrt((np.asarray(vec, dtype=np.float64) ** 2).sum(2)).max(initial=0.0))


def _check_paths_against_dense(vec, mass, beta, N=3, C=2, seed=0):
    """Both paths, forward and transpose, at 1e-12 against the dense matrices (per flow)."""
    Nf, S, _, H, W = vec.shape
    x = np.random.default_rng(seed).random((N, C, H, W))
    xt, vt, mt = (torch.from_numpy(a) for a in (x, vec, mass))
    mats = [segment_matrix(vec[f], mass[f], beta) for f in range(Nf)]
    for path in ("numba", "torch"):
        for transpose in (False, True):
            got = seg.segment_blur(xt, vt, mt, beta, transpose, path).numpy()
            for n in range(N):
                A = mats[n if Nf > 1 else 0]
                ref = dense.apply_matrix(A.T.tocsr() if transpose else A, x[n : n + 1])
                np.testing.assert_allclose(got[n : n + 1], ref, rtol=0, atol=1e-12, err_msg=f"{path} transpose={transpose} n={n}")


# Uniform flows whose extreme enumerated tap carries weight: a torch path that enumerates
# one tap position fewer along the major axis (or drops the minor-axis term of its extent
# bound) misses a tap of every pixel. Found by scanning segment vectors with the dense kernel.
_EDGE_CASES = [
    ((0.8530862061374389, 1.8359724878719872), 0.5),  # the last tap j = ceil(extent) is needed
    ((1.3649953175490426, 1.1775160925940007), 0.5),
    ((5.990210924076776, -5.403785037740372), 0.5),  # needs the |a_min| term of the extent
    ((-6.586895903128529, -6.282365863471122), 0.9299362584321136),  # any beta
    ((-2.4104656340838355, -2.55512353760117), 0.7904823647892285),
]


@pytest.mark.parametrize("a,beta", _EDGE_CASES)
def test_uniform_flows_whose_outermost_tap_counts_match_dense(a, beta):
    vec, mass = _uniform(a, 1, 4, 5)
    _check_paths_against_dense(vec, mass, beta, N=1, C=1)


def test_one_flow_shared_by_a_batch_of_three_with_two_segments():
    # one flow (Nf = 1) for three images, two segments of unequal masses per pixel
    rng = np.random.default_rng(1)
    H, W = 8, 9
    vec = rng.uniform(-2.5, 2.5, (1, 2, 2, H, W))
    vec[0, 0, :, 2, 3] = 0.0  # a zero-length segment
    vec[0, 1, :, 5, 1] = (0.0, 2.2)  # along H only
    vec[0, 1, :, 6, 7] = (-1.7, 0.0)  # along W only
    mass = rng.uniform(0.2, 1.0, (1, 2, H, W))
    _check_paths_against_dense(vec, mass, 0.5, N=3, C=2)
    _check_paths_against_dense(vec, mass, 0.0, N=3, C=1, seed=1)


@pytest.mark.parametrize("H,W", [(1, 9), (9, 1), (1, 1), (2, 1)])
def test_one_pixel_high_or_wide_images(H, W):
    # segments along H and along W, diagonal ones and zero-length ones, per image (Nf = N = 2)
    rng = np.random.default_rng(H * 10 + W)
    vec = rng.uniform(-3, 3, (2, 2, 2, H, W))
    vec[0, 0, 0] = 0.0  # first flow, first segment: along H only
    vec[1, 0, 1] = 0.0  # second flow: along W only
    vec[0, 1, :, 0, 0] = 0.0  # zero length
    vec[1, 1, :, -1, -1] = (2.0, -2.0)  # diagonal: the major-axis tie
    mass = rng.uniform(0.3, 1.0, (2, 2, H, W))
    for beta in (0.0, 0.5):
        _check_paths_against_dense(vec, mass, beta, N=2, C=2, seed=H + W)


def test_empty_images_pass_through_both_paths():
    # H = 0 or W = 0: no pixel, no segment; the tap bound falls back to zero-length segments
    for H, W in ((0, 4), (3, 0)):
        x = torch.zeros(2, 1, H, W, dtype=torch.float64)
        vec = torch.zeros(1, 1, 2, H, W, dtype=torch.float64)
        mass = torch.ones(1, 1, H, W, dtype=torch.float64)
        for path in ("numba", "torch"):
            for transpose in (False, True):
                out = seg.segment_blur(x, vec, mass, 0.5, transpose, path)
                assert out.shape == (2, 1, H, W) and out.dtype == torch.float64
        assert seg.prepare_numba(vec, mass).ntaps == nk.max_taps(0.0)


# ---------------------------------------------------------------- what the kernels receive
class _KernelSpy:
    """Stands in for ``forward``/``adjoint``/``param_grad`` of the numba kernels.

    Records every call and checks the tap bound *before* the compiled kernel runs: a
    bound below the longest segment's would write past the kernels' tap buffers.
    """

    def __init__(self, monkeypatch, longest: float):
        self.calls = []
        self.ntaps = nk.max_taps(longest)
        real = {name: getattr(nk, name) for name in ("forward", "adjoint", "param_grad")}
        ntaps_at = {"forward": 4, "adjoint": 4, "param_grad": 5}
        for name, fn in real.items():

            def spy(*args, _name=name, _fn=fn):
                self.calls.append((_name, args))
                assert args[ntaps_at[_name]] == self.ntaps, f"{_name} got ntaps={args[ntaps_at[_name]]}, want {self.ntaps}"
                return _fn(*args)

            monkeypatch.setattr(nk, name, spy)

    def names(self):
        return [c[0] for c in self.calls]


def _flow_tensors(seed, shape=(1, 2, 2, 3, 5), scale=2.0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    vec = torch.from_numpy(rng.uniform(-scale, scale, shape)).to(dtype)
    mass = torch.from_numpy(rng.uniform(0.2, 1.0, shape[:2] + shape[3:])).to(dtype)
    return vec, mass


def test_the_chosen_path_is_the_one_that_runs(monkeypatch):
    vec, mass = _flow_tensors(2)
    x = torch.rand(2, 1, 3, 5, dtype=torch.float64)
    spy = _KernelSpy(monkeypatch, _longest(vec.numpy()))
    for path, expected in (("numba", ["forward"]), (None, ["forward"]), ("torch", [])):
        spy.calls.clear()
        seg.segment_blur(x, vec, mass, 0.5, False, path)
        assert spy.names() == expected, path
    for path, expected in (("numba", ["adjoint"]), (None, ["adjoint"]), ("torch", [])):
        spy.calls.clear()
        seg.segment_blur(x, vec, mass, 0.5, True, path)
        assert spy.names() == expected, path


def test_cpu_paths_never_touch_cupy(monkeypatch):
    import warnings

    from pnpdeblur.operators import _cupy

    monkeypatch.setattr(seg.backend, "_CUPY_KERNEL_ERROR", None)  # restored afterwards
    monkeypatch.setattr(_cupy, "load", lambda device_index: pytest.fail("CuPy kernels loaded for CPU tensors"))
    vec, mass = _flow_tensors(9)
    x = torch.rand(1, 1, 3, 5, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs = [seg.segment_blur(x, vec, mass, 0.5, t, p) for p in ("torch", "numba", None) for t in (False, True)]
    assert seg.backend.cupy_kernel_error() is None
    for a, b in zip(outs[2:], outs[:2] * 2):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_prepared_arrays_are_the_ones_the_kernels_read(monkeypatch):
    vec, mass = _flow_tensors(3, dtype=torch.float32)
    x = torch.rand(1, 2, 3, 5, dtype=torch.float64)
    prep = seg.prepare_numba(vec, mass)
    spy = _KernelSpy(monkeypatch, _longest(vec.numpy()))
    for transpose in (False, True):
        seg.segment_blur(x, vec, mass, 0.0, transpose, "numba", prepared=prep)
    assert spy.names() == ["forward", "adjoint"]
    for _, args in spy.calls:  # no per-call conversion: the prepared arrays themselves
        assert args[1] is prep.vec and args[2] is prep.mass


def test_prepared_normal_is_the_adjoint_of_the_forward():
    # K^T K x in one pass, bitwise equal to the two passes, for both image dtypes
    vec, mass = _flow_tensors(10, shape=(1, 2, 2, 4, 5))
    prep = seg.prepare_numba(vec, mass)
    x64 = torch.rand(2, 2, 4, 5, dtype=torch.float64)
    for x in (x64, x64.float()):
        for beta in (0.5, 0):  # an int beta too
            ref = prep.run(prep.run(x, vec, mass, float(beta), False), vec, mass, float(beta), True)
            got = prep.normal(x, beta)
            assert got.dtype == x.dtype and got.shape == x.shape
            torch.testing.assert_close(got, ref, rtol=0, atol=0)
    assert (prep.normal(x64, 0.5) - x64).abs().max() > 0.01  # not the identity


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 2, 1, 6), (2, 2, 2, 1, 4), (1, 2, 2, 3, 1), (2, 1, 2, 4, 5)],
    ids=["1-high", "1-high-batch", "1-wide", "square"],
)
def test_the_tap_bound_is_the_longest_segment(monkeypatch, shape):
    # the bound is taken over (u, v) of each pixel: a norm over H (or over everything)
    # under- (or over-)estimates it; 1-pixel-high images make |u|, |v| <= |a| strict
    vec, mass = _flow_tensors(4 + shape[3], shape=shape, scale=3.0)
    vec[0, 0, :, 0, 0] = torch.tensor([2.9, -2.9], dtype=vec.dtype)  # a long diagonal one
    N = shape[0]
    x = torch.rand(N, 1, shape[3], shape[4], dtype=torch.float64)
    spy = _KernelSpy(monkeypatch, _longest(vec.numpy()))
    for transpose in (False, True):
        seg.segment_blur(x, vec, mass, 0.5, transpose, "numba")
    gv, gm = seg._param_grad(x, torch.rand_like(x), vec, mass, 0.5)
    assert spy.names() == ["forward", "adjoint", "param_grad"]
    assert seg.prepare_numba(vec, mass).ntaps == spy.ntaps


def test_the_tap_bound_of_an_empty_flow(monkeypatch):
    x = torch.zeros(1, 1, 0, 3, dtype=torch.float64)
    vec = torch.zeros(1, 1, 2, 0, 3, dtype=torch.float64)
    mass = torch.ones(1, 1, 0, 3, dtype=torch.float64)
    spy = _KernelSpy(monkeypatch, 0.0)
    for transpose in (False, True):
        seg.segment_blur(x, vec, mass, 0.0, transpose, "numba")
    assert spy.names() == ["forward", "adjoint"]


# ---------------------------------------------------------------- _param_grad
@pytest.mark.parametrize("N,S", [(3, 2), (2, 1), (3, 1)])
def test_param_grad_of_a_shared_flow_has_its_shape_and_dtype(N, S):
    # gradients w.r.t. a flow shared by the batch are summed over the batch and returned in
    # the flow's shape and dtype (the kernels' protocol; the CuPy path shares it)
    H, W = 3, 4
    rng = np.random.default_rng(N * 10 + S)
    vec64 = rng.uniform(-2, 2, (1, S, 2, H, W))
    mass64 = rng.uniform(0.2, 1.0, (1, S, H, W))
    x, g = torch.from_numpy(rng.random((N, 2, H, W))), torch.from_numpy(rng.random((N, 2, H, W)))
    vec, mass = torch.from_numpy(vec64).float(), torch.from_numpy(mass64).float()
    gv, gm = seg._param_grad(x, g, vec, mass, 0.5)
    assert gv.shape == vec.shape and gm.shape == mass.shape
    assert gv.dtype == torch.float32 and gm.dtype == torch.float32
    # against torch autograd through the torch path (float64 at the float32 flow's values)
    vt = vec.double().requires_grad_(True)
    mt = mass.double().requires_grad_(True)
    (seg._torch_segment_blur(x, vt, mt, 0.5, False) * g).sum().backward()
    torch.testing.assert_close(gv, vt.grad.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm, mt.grad.float(), rtol=1e-5, atol=1e-5)
    assert vt.grad.abs().max() > 0.01 and mt.grad.abs().max() > 0.01


def test_param_grad_of_per_image_flows_is_per_image():
    rng = np.random.default_rng(20)
    vec = torch.from_numpy(rng.uniform(-2, 2, (2, 1, 2, 3, 4)))
    mass = torch.from_numpy(rng.uniform(0.2, 1.0, (2, 1, 3, 4)))
    x, g = torch.from_numpy(rng.random((2, 1, 3, 4))), torch.from_numpy(rng.random((2, 1, 3, 4)))
    gv, gm = seg._param_grad(x, g, vec, mass, 0.0)
    assert gv.shape == vec.shape and gv.dtype == torch.float64
    for n in range(2):
        gv1, gm1 = seg._param_grad(x[n : n + 1], g[n : n + 1], vec[n : n + 1], mass[n : n + 1], 0.0)
        torch.testing.assert_close(gv[n : n + 1], gv1, rtol=0, atol=1e-14)
        torch.testing.assert_close(gm[n : n + 1], gm1, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- the torch path itself
def test_torch_path_computes_in_the_images_dtype():
    vec, mass = _flow_tensors(5, shape=(1, 2, 2, 4, 5))
    x64 = torch.rand(2, 1, 4, 5, dtype=torch.float64)
    # float32 flows with a float64 image: the geometry in float64, equal to the numba path
    for transpose in (False, True):
        ref = seg.segment_blur(x64, vec.float(), mass.float(), 0.5, transpose, "numba")
        got = seg.segment_blur(x64, vec.float(), mass.float(), 0.5, transpose, "torch")
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    # float64 flows with a float32 image: a float32 result
    for transpose in (False, True):
        got = seg.segment_blur(x64.float(), vec, mass, 0.5, transpose, "torch")
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, seg.segment_blur(x64, vec, mass, 0.5, transpose, "torch").float(), rtol=0, atol=1e-5)


def test_torch_path_ignores_the_default_device():
    # a script that set torch's default device (to CUDA, say) still blurs CPU tensors;
    # "meta" stands in for another device here
    vec, mass = _flow_tensors(6, shape=(1, 2, 2, 3, 4))
    x = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    ref = [seg._torch_segment_blur(x, vec, mass, 0.5, t) for t in (False, True)]
    with torch.device("meta"):
        got = [seg._torch_segment_blur(x, vec, mass, 0.5, t) for t in (False, True)]
    for a, b in zip(got, ref):
        assert a.device.type == "cpu"
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "N,C,H,W,taps_per_chunk",
    [(2, 3, 4, 5, 1), (2, 3, 4, 5, 2), (1, 3, 2, 5, 4), (1, 1, 1, 1, 3)],
)
def test_torch_path_chunks_follow_the_cpu_budget(monkeypatch, N, C, H, W, taps_per_chunk):
    # CPU tensors take the CPU budget (the other one is huge here): a chunk holds
    # budget // (N*C*H*W) tap positions, at least one
    vec, mass = _flow_tensors(7, shape=(1, 2, 2, H, W))
    x = torch.rand(N, C, H, W, dtype=torch.float64)
    ref = [seg._torch_segment_blur(x, vec, mass, 0.5, t) for t in (False, True)]
    budget = taps_per_chunk * N * C * H * W + (N * C * H * W) // 2  # not a multiple
    monkeypatch.setattr(seg, "_TORCH_CHUNK_ELEMENTS", {"cpu": budget, "other": 2**40})
    sizes = []
    gather, scatter_add = torch.gather, torch.Tensor.scatter_add

    def spy_gather(inp, dim, idx, *args, **kw):
        sizes.append(idx.shape[dim])
        return gather(inp, dim, idx, *args, **kw)

    def spy_scatter_add(self, dim, idx, src):
        sizes.append(idx.shape[dim])
        return scatter_add(self, dim, idx, src)

    monkeypatch.setattr(torch, "gather", spy_gather)
    monkeypatch.setattr(torch.Tensor, "scatter_add", spy_scatter_add)
    for transpose in (False, True):
        sizes.clear()
        got = seg._torch_segment_blur(x, vec, mass, 0.5, transpose)
        torch.testing.assert_close(got, ref[transpose], rtol=0, atol=1e-12)
        taps = [s // (H * W) for s in sizes]
        assert all(s % (H * W) == 0 for s in sizes)
        assert len(taps) > 2 * 2  # several chunks per segment (2 segments)
        # every chunk but a segment's last is full; none is larger
        assert max(taps) == taps_per_chunk and taps.count(taps_per_chunk) >= len(taps) - 2, taps


# ---------------------------------------------------------------- CuPy dispatch, no GPU
def _x_vec_mass():
    vec, mass = _flow_tensors(8, shape=(1, 1, 2, 3, 4))
    return torch.rand(2, 1, 3, 4, dtype=torch.float64), vec, mass


def test_cupy_kernels_that_fail_to_build_fall_back_to_torch_once(monkeypatch):
    from pnpdeblur.operators import _cupy

    monkeypatch.setattr(seg.backend, "_CUPY_KERNEL_ERROR", None)  # restored afterwards
    monkeypatch.setattr(seg, "_default_path", lambda device_type: "cupy")  # as on a CUDA device
    loads = []

    def load(device_index):
        caller = sys._getframe(2)  # load <- segment_blur <- segment_blur's caller
        loads.append((device_index, caller.f_code.co_filename, caller.f_lineno))
        raise _cupy.CupyUnavailableError("NVRTC is missing here")

    monkeypatch.setattr(_cupy, "load", load)
    x, vec, mass = _x_vec_mass()
    with pytest.warns(UserWarning) as record:
        got = seg.segment_blur(x, vec, mass, 1, transpose=True)  # an int beta
    assert len(record) == 1
    assert str(record[0].message) == "pnpdeblur: CuPy kernels unavailable, using the torch path (NVRTC is missing here)"
    # the warning points at segment_blur's caller: this test (or, where segment_blur is
    # wrapped, e.g. by mutmut's trampoline, the wrapper), at the line of the call
    assert [d for d, _, _ in loads] == [0]  # a device without an index is device 0
    assert (record[0].filename, record[0].lineno) == loads[0][1:]
    if not hasattr(seg.segment_blur, "__wrapped__"):
        assert record[0].filename == __file__
    assert seg.backend.cupy_kernel_error() == "NVRTC is missing here"
    torch.testing.assert_close(got, seg._torch_segment_blur(x, vec, mass, 1.0, True), rtol=0, atol=0)
    assert not torch.allclose(got, seg._torch_segment_blur(x, vec, mass, 1.0, False))
    # an explicit path='cupy' does not fall back: it raises
    monkeypatch.setattr(seg, "_resolve_path", lambda x, path: "cupy")
    with pytest.raises(_cupy.CupyUnavailableError, match=r"^NVRTC is missing here$"):
        seg.segment_blur(x, vec, mass, 0.5, path="cupy")


def test_cupy_dispatch_hands_its_arguments_to_the_cupy_kernels(monkeypatch):
    from pnpdeblur.operators import _cupy

    monkeypatch.setattr(seg, "_default_path", lambda device_type: "cupy")
    loads, calls = [], []
    monkeypatch.setattr(_cupy, "load", lambda device_index: loads.append(device_index) or {})

    def recorder(kind):
        def fn(x, vec, mass, beta, transpose):
            calls.append((kind, x, vec, mass, beta, transpose))
            return x
        return fn

    monkeypatch.setattr(_cupy, "segment_blur_cupy", recorder("autograd"))
    monkeypatch.setattr(_cupy, "run", recorder("run"))
    x, vec, mass = _x_vec_mass()
    assert seg.segment_blur(x, vec, mass, 1, transpose=True) is x
    assert seg.segment_blur(x, vec, mass, 0.5) is x
    assert loads == [0, 0]
    (k1, x1, v1, m1, b1, t1), (k2, _, _, _, b2, t2) = calls
    assert x1 is x and v1 is vec and m1 is mass
    assert (type(b1), b1, t1) == (float, 1.0, True) and (b2, t2) == (0.5, False)
    # no gradient to record: the kernels directly; a gradient w.r.t. any input: the autograd Function
    assert (k1, k2) == ("run", "run")
    for i in range(3):
        args = [x, vec, mass]
        args[i] = args[i].clone().requires_grad_(True)
        calls.clear()
        seg.segment_blur(*args, 1, transpose=1)
        kind, *got = calls[0]
        assert kind == "autograd", i
        assert all(g is a for g, a in zip(got[:3], args)) and got[3:] == [1.0, True]
        assert type(got[3]) is float and type(got[4]) is bool
        with torch.no_grad():
            seg.segment_blur(*args, 0.0)
        assert calls[1][0] == "run", i


def test_cupy_path_accepts_cuda_tensors(monkeypatch):
    # only x.device is read: a stand-in for a CUDA tensor
    monkeypatch.setattr(seg.backend, "cupy_available", lambda: True)
    monkeypatch.setattr(seg.backend, "cupy_kernel_error", lambda: None)
    cuda_x = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert seg._resolve_path(cuda_x, "cupy") == "cupy"
    assert seg._resolve_path(cuda_x, None) == "cupy"
    assert seg._resolve_path(cuda_x, "torch") == "torch"


# ---------------------------------------------------------------- scatter chunks
def test_scatter_chunks_with_more_threads(monkeypatch):
    # the test processes may run with one numba thread, where min(threads, ...) hides the
    # setting; the thread count is faked here
    import numba

    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)
    monkeypatch.delenv("PNPDEBLUR_SCATTER_CHUNKS", raising=False)
    assert seg._nchunks() == 4  # the default
    for raw, expected in (("2", 2), ("6", 6), ("16", 8), ("0", 1)):
        monkeypatch.setenv("PNPDEBLUR_SCATTER_CHUNKS", raw)
        assert seg._nchunks() == expected, raw
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    monkeypatch.delenv("PNPDEBLUR_SCATTER_CHUNKS")
    assert seg._nchunks() == 3
