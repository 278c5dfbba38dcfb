"""The CUDA kernels of the TV proximal map (``priors/_cuda/tv_prox.cu``) and their launcher.

On the CPU the source is compiled as host C++ with a small shim (blockIdx/threadIdx as
globals, one "thread" at a time over the launch grid) and driven by the real launcher,
:func:`pnpdeblur.priors._tv_cuda.tv_prox_cuda`, through a stand-in ``cupy`` that hands the
launches (raw pointers and scalars, as on a GPU) to the emulated kernels. The results are
compared with the dense FGP reference of ``tests/test_tv_prox.py`` and with the torch loop.
On a machine with a GPU the same comparisons run on the device (marked ``gpu``).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur import backend
from pnpdeblur.operators import _cupy
from pnpdeblur.priors import _tv_cuda, classical

sys.path.insert(0, os.path.dirname(__file__))
from test_tv_prox import _fgp_reference  # noqa: E402

GXX = shutil.which("g++")
NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)

_SHIM = r"""
#include <math.h>
struct pnp_dim3 { unsigned x, y, z; };
static pnp_dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#include "tv_prox.cu"

template <class F> static void launch(unsigned gx, unsigned gy, unsigned gz, F f) {
    blockDim = {BX, BY, 1};
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned by = 0; by < gy; ++by)
            for (unsigned bx = 0; bx < gx; ++bx)
                for (unsigned ty = 0; ty < BY; ++ty)
                    for (unsigned tx = 0; tx < BX; ++tx) {
                        blockIdx = {bx, by, z};
                        threadIdx = {tx, ty, 0};
                        f();
                    }
}
#define EMU(T, SUF)                                                                                     \
extern "C" void emu_tv_primal_##SUF(unsigned gx, unsigned gy, unsigned gz, const T* z, const T* q,     \
                                    T tau, T* x, int N, int C, int H, int W) {                          \
    launch(gx, gy, gz, [&] { tv_primal_##SUF(z, q, tau, x, N, C, H, W); });                             \
}                                                                                                       \
extern "C" void emu_tv_dual_step_##SUF(unsigned gx, unsigned gy, unsigned gz, const T* x, const T* p,  \
                                       const T* q, T step, T mom, int coupled, T* pn, T* qn,            \
                                       double* dsq, double* nsq, int N, int C, int H, int W) {          \
    launch(gx, gy, gz, [&] { tv_dual_step_##SUF(x, p, q, step, mom, coupled, pn, qn, dsq, nsq,          \
                                                N, C, H, W); });                                        \
}
EMU(float, f32)
EMU(double, f64)
"""


def _gpu_ready() -> bool:
    return torch.cuda.is_available() and backend.cupy_available()


requires_gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA device visible to torch and CuPy")


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """tv_prox.cu built as a host shared library (g++), loaded with ctypes."""
    if GXX is None:
        pytest.skip("g++ not found: cannot emulate the CUDA kernels on the CPU")
    d = tmp_path_factory.mktemp("tv_emu")
    (d / "shim.cpp").write_text(_SHIM)
    lib = d / "libtvemu.so"
    cmd = [GXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-ffp-contract=off",
           f"-DBX={_tv_cuda.BLOCK[0]}u", f"-DBY={_tv_cuda.BLOCK[1]}u",
           f"-I{_tv_cuda.SOURCE_PATH.parent}", str(d / "shim.cpp"), "-o", str(lib)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr, res.stderr
    return ctypes.CDLL(str(lib))


_CTYPES = {np.uint64: ctypes.c_void_p, np.int32: ctypes.c_int, np.float32: ctypes.c_float,
           np.float64: ctypes.c_double}


@pytest.fixture
def host_cupy(emulated, monkeypatch):
    """Run ``_tv_cuda``'s launcher on CPU tensors against the host-compiled CUDA source."""
    launches = []

    class _Kernel:
        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args, stream=None):
            assert stream is not None and tuple(block) == _tv_cuda.BLOCK
            launches.append((self.name, tuple(grid), tuple(type(a) for a in args)))
            getattr(emulated, f"emu_{self.name}")(*(ctypes.c_uint(g) for g in grid),
                                                  *(_CTYPES[type(a)](a.item()) for a in args))

    class _Module:
        def __init__(self, code, options):
            assert code == _tv_cuda.SOURCE_PATH.read_text() and options == _tv_cuda.NVRTC_OPTIONS

        def get_function(self, name):
            return _Kernel(name)

    fake = types.ModuleType("cupy")
    fake.RawModule = _Module
    fake.cuda = types.SimpleNamespace(Device=contextlib.nullcontext, Stream=types.SimpleNamespace(null=object()))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_cupy, "_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))
    monkeypatch.delattr(torch._C, "_cuda_getCurrentRawStream", raising=False)
    monkeypatch.setattr(_tv_cuda, "_failed", {})
    _tv_cuda._kernels.clear()
    _cupy._streams.clear()
    yield launches
    _tv_cuda._kernels.clear()
    _cupy._streams.clear()


def _image(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(shape))


@pytest.mark.parametrize("coupled", [True, False])
@pytest.mark.parametrize("iters", [1, 2, 3, 7])
def test_emulated_kernels_match_the_dense_fgp(host_cupy, coupled, iters):
    z = _image((1, 2, 5, 6))
    got = _tv_cuda.tv_prox_cuda(z, 0.15, iters, coupled, 0.0)
    want = _fgp_reference(z[0].numpy(), 0.15, iters, coupled, tol=0.0)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-12)
    # two launches per iteration and one last primal step
    assert [name for name, _, _ in host_cupy] == ["tv_primal_f64", "tv_dual_step_f64"] * iters + ["tv_primal_f64"]
    assert list(_tv_cuda._kernels) == [0]  # a tensor without a device index: device 0


@pytest.mark.parametrize("coupled", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 9, 37), (1, 1, 1, 7), (3, 2, 10, 1)])
def test_emulated_kernels_agree_with_the_torch_loop(host_cupy, coupled, shape):
    z = _image(shape, seed=sum(shape))
    for tol in (0.0, 1e-3):
        a = _tv_cuda.tv_prox_cuda(z, 0.2, 25, coupled, tol)
        b = classical._tv_prox_torch(z, 0.2, 25, coupled, tol)
        assert a.shape == z.shape and a.dtype == z.dtype
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # the first step's relative change is 1 (p starts at 0): a tolerance above it stops there
    host_cupy.clear()
    _tv_cuda.tv_prox_cuda(z, 0.2, 25, coupled, 1.5)
    assert len(host_cupy) == 3
    host_cupy.clear()
    _tv_cuda.tv_prox_cuda(z, 0.2, 25, coupled, 1.0)
    assert len(host_cupy) > 3
    z32 = z.float()
    a32 = _tv_cuda.tv_prox_cuda(z32, 0.2, 25, coupled, 0.0)
    assert a32.dtype == torch.float32
    torch.testing.assert_close(a32, classical._tv_prox_torch(z32, 0.2, 25, coupled, 0.0), rtol=0, atol=1e-5)


def test_launch_geometry_and_argument_types(host_cupy):
    n, c, h, w = 2, 3, 15, 63  # one past whole blocks would show as (h + 9) // 8, (w + 33) // 32
    _tv_cuda.tv_prox_cuda(_image((n, c, h, w)).float(), 0.1, 1, True, 0.0)
    (p_name, p_grid, p_types), (d_name, d_grid, d_types), _ = host_cupy
    bx, by, _ = _tv_cuda.BLOCK
    assert p_name == "tv_primal_f32" and p_grid == (-(-w // bx), -(-h // by), n * c)
    assert d_name == "tv_dual_step_f32" and d_grid == (-(-w // bx), -(-h // by), n)
    u, i, f = np.uint64, np.int32, np.float32  # scalars in the image dtype, as torch applies them
    assert p_types == (u, u, f, u, i, i, i, i)
    assert d_types == (u, u, u, f, f, i, u, u, u, u, i, i, i, i)


def test_zero_iterations_is_the_input(host_cupy):
    z = _image((1, 3, 6, 7))
    out = _tv_cuda.tv_prox_cuda(z, 0.2, 0, True, 0.0)
    assert torch.equal(out, z) and out.data_ptr() != z.data_ptr()
    torch.testing.assert_close(out, classical._tv_prox_torch(z, 0.2, 0, True, 0.0), rtol=0, atol=0)
    assert [name for name, _, _ in host_cupy] == ["tv_primal_f64"]


def test_empty_input_launches_nothing(host_cupy):
    out = _tv_cuda.tv_prox_cuda(torch.zeros(0, 3, 4, 5), 0.1, 5, True, 0.0)
    assert out.shape == (0, 3, 4, 5) and host_cupy == []


def test_tv_prox_cuda_refuses_what_it_cannot_run(monkeypatch):
    with pytest.raises(ValueError, match=r"^z must be a float32/float64 \(N, C, H, W\) CUDA tensor, got "
                                         r"torch\.float64 \(1, 2, 3, 4\) on cpu$"):
        _tv_cuda.tv_prox_cuda(torch.zeros(1, 2, 3, 4, dtype=torch.float64), 0.1, 3, True, 0.0)
    monkeypatch.setattr(_cupy, "_DEVICE_TYPES", ("cuda", "cpu"))
    for bad in (torch.zeros(1, 2, 3, 4, dtype=torch.float16), torch.zeros(2, 3, 4), torch.zeros(1, 1, 2, 3, 4)):
        with pytest.raises(ValueError, match=r"^z must be a float32/float64 \(N, C, H, W\) CUDA tensor, got "):
            _tv_cuda.tv_prox_cuda(bad, 0.1, 3, True, 0.0)


def test_tv_prox_cuda_refuses_images_beyond_the_cuda_grid(host_cupy):
    msg = r"^z of shape %s exceeds the CUDA grid \(N·C <= 65535, H <= %d\)$"
    rows = 65535 * _tv_cuda.BLOCK[1]
    for shape in ((1, 65536, 1, 1), (65536, 1, 1, 1), (1, 1, rows + 1, 1)):
        with pytest.raises(ValueError, match=msg % (re.escape(str(shape)), rows)):
            _tv_cuda.tv_prox_cuda(torch.zeros(shape), 0.1, 1, True, 0.0)
    assert host_cupy == []
    _tv_cuda.tv_prox_cuda(torch.zeros(1, 1, rows, 1), 0.1, 1, True, 0.0)  # the largest height fits
    assert [g for _, g, _ in host_cupy][0] == (1, 65535, 1)
    host_cupy.clear()
    _tv_cuda.tv_prox_cuda(torch.zeros(1, 65535, 1, 1), 0.1, 1, True, 0.0)  # and the most planes
    assert [g for _, g, _ in host_cupy][0] == (1, 1, 65535)


class _OnDevice3(torch.Tensor):
    """CPU memory that reports CUDA device 3 (the launcher reads ``.device`` for the index)."""

    @property
    def device(self):
        return torch.device("cuda", 3)


def test_kernels_are_built_and_launched_for_the_tensors_device(host_cupy, monkeypatch):
    seen = []

    class _Device(contextlib.nullcontext):
        def __init__(self, index):
            seen.append(index)
            super().__init__()

    monkeypatch.setattr(sys.modules["cupy"].cuda, "Device", _Device)
    z = torch.Tensor._make_subclass(_OnDevice3, _image((1, 2, 5, 6)))
    out = _tv_cuda.tv_prox_cuda(z, 0.15, 2, True, 0.0)
    assert list(_tv_cuda._kernels) == [3]  # compiled for device 3
    assert seen and set(seen) == {3}  # compiled and launched inside device 3's context
    want = _fgp_reference(_image((1, 2, 5, 6))[0].numpy(), 0.15, 2, True, tol=0.0)
    np.testing.assert_allclose(out.as_subclass(torch.Tensor)[0].numpy(), want, rtol=0, atol=1e-12)


def test_kernel_build_failure_is_reported_and_not_cached(monkeypatch):
    class _Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("nvrtc: error: invalid option")

    devices = []
    fake = types.ModuleType("cupy")
    fake.RawModule = _Broken
    fake.cuda = types.SimpleNamespace(Device=lambda i: devices.append(i) or contextlib.nullcontext())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    _tv_cuda._kernels.clear()
    msg = r"^could not build the CUDA kernels of tv_prox\.cu on device 2 \(RuntimeError: nvrtc: error: invalid option\)$"
    monkeypatch.setattr(_tv_cuda, "_failed", {})
    with pytest.raises(_cupy.CupyUnavailableError, match=msg):
        _tv_cuda.load(2)
    assert _tv_cuda._kernels == {} and devices == [2]  # tried on that device
    with pytest.raises(_cupy.CupyUnavailableError, match=msg):
        _tv_cuda.load(2)
    assert devices == [2]  # remembered: not compiled again on every prox
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy gone: another device reports that, once
    with pytest.raises(_cupy.CupyUnavailableError, match=r"^CuPy is not importable"):
        _tv_cuda.load(5)
    assert 5 in _tv_cuda._failed


class _OnCuda(torch.Tensor):
    """A CPU tensor that reports a CUDA device (the dispatch only reads ``.device``)."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_tv_prox_takes_the_cuda_kernels_for_cuda_tensors_without_grad(monkeypatch):
    calls = []
    monkeypatch.setattr(classical, "_cuda_kernels_usable", lambda: True)
    monkeypatch.setattr(_tv_cuda, "tv_prox_cuda", lambda *a: calls.append(("cuda",) + a[1:]) or a[0])
    monkeypatch.setattr(classical, "_tv_prox_torch", lambda *a: calls.append(("torch",) + a[1:]) or a[0])
    z = torch.Tensor._make_subclass(_OnCuda, torch.zeros(1, 2, 3, 4))
    classical.tv_prox(z, 0.25, iters=7, coupled=False, tol=1e-3)
    assert calls == [("cuda", 0.25, 7, False, 1e-3)]
    # float16, a 3-D tensor, or CuPy unusable: the torch loop
    monkeypatch.setattr(classical, "_cuda_kernels_usable", lambda: False)
    classical.tv_prox(z, 0.25, iters=7)
    assert calls[-1][0] == "torch"
    # the kernels cannot be built: the torch loop, which computes the same
    monkeypatch.setattr(classical, "_cuda_kernels_usable", lambda: True)

    def broken(*a):
        raise _cupy.CupyUnavailableError("NVRTC missing")

    monkeypatch.setattr(_tv_cuda, "tv_prox_cuda", broken)
    monkeypatch.setattr(classical, "_WARNED", set())
    with pytest.warns(UserWarning, match=r"^pnpdeblur: the CUDA kernels of the TV prox are unavailable, "
                                         r"using the torch loop \(NVRTC missing\)$"):
        classical.tv_prox(z, 0.25, iters=7)
    assert calls[-1] == ("torch", 0.25, 7, True, 1e-4) and len(calls) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        classical.tv_prox(z, 0.25, iters=7)
    assert len(calls) == 4


def test_cuda_kernels_usable_follows_the_backend(monkeypatch):
    monkeypatch.setattr(backend, "cupy_available", lambda: True)
    monkeypatch.setattr(backend, "cupy_kernel_error", lambda: None)
    assert classical._cuda_kernels_usable()
    monkeypatch.setattr(backend, "cupy_kernel_error", lambda: "NVRTC missing")
    assert not classical._cuda_kernels_usable()
    monkeypatch.setattr(backend, "cupy_kernel_error", lambda: None)
    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    assert not classical._cuda_kernels_usable()


def test_cuda_source_is_self_contained():
    src = _tv_cuda.SOURCE_PATH.read_text()
    assert not any(line.lstrip().startswith("#include") for line in src.splitlines())
    assert sorted(_tv_cuda.KERNEL_NAMES.values()) == sorted(
        f"tv_{op}_{s}" for op in ("primal", "dual_step") for s in ("f32", "f64"))
    for name in _tv_cuda.KERNEL_NAMES.values():
        assert f"tv_{name.split('_', 1)[1].rsplit('_', 1)[0]}_##SUF" in src


@pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH or at /usr/local/bin/nvcc")
@pytest.mark.gpu
def test_cuda_source_compiles_with_nvcc(tmp_path):
    out = tmp_path / "tv.ptx"
    res = subprocess.run([NVCC, "-std=c++17", "--fmad=false", "-arch=sm_90", "--ptx", "-x", "cu",
                          str(_tv_cuda.SOURCE_PATH), "-o", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    assert all(name in ptx for name in _tv_cuda.KERNEL_NAMES.values())


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("coupled", [True, False])
def test_gpu_tv_prox_matches_the_cpu(dtype, coupled):
    z = _image((2, 3, 45, 70), seed=5).to(dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for stop in (0.0, 1e-3):
        got = classical.tv_prox(z.cuda(), 0.2, iters=30, coupled=coupled, tol=stop)
        assert got.is_cuda and got.dtype == dtype
        torch.testing.assert_close(got.cpu(), classical._tv_prox_numba(z, 0.2, 30, coupled, stop), rtol=0, atol=tol)
        torch.testing.assert_close(got, classical._tv_prox_torch(z.cuda(), 0.2, 30, coupled, stop), rtol=0, atol=tol)
    assert 0 in _tv_cuda._kernels  # the kernels ran, not the torch loop
    assert pd.priors.TV()(z.cuda(), 0.1).is_cuda
