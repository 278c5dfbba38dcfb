"""GPU path of the motion-flow operators (issue 6): CUDA sources, CuPy dispatch, fallback.

Runs without a GPU:

* the CUDA source compiles with nvcc for sm_80 and sm_90 (skipped when nvcc is absent)
  and with NVRTC, the compiler CuPy uses (skipped when libnvrtc is absent);
* the CUDA source, compiled as host C++ with a small shim (blockIdx/threadIdx as
  globals, atomicAdd as a plain add), runs every kernel on the CPU over the same grid
  a GPU launch uses, and agrees with the numba kernels (skipped without g++);
* the launcher of ``_cupy.py`` (argument lists, launch grid, output allocation, the
  autograd Function, gradcheck) on CPU tensors, against those emulated kernels;
* the dispatch: CuPy missing, or installed without a device (a fake module whose
  ``getDeviceCount`` raises), gives the torch path and ``info()`` says so; forcing
  ``path="cupy"`` without a device is a clear error; kernels that fail to build fall
  back with one warning.

Marked ``gpu`` (skipped without CUDA and CuPy): the CuPy path against the numba path,
dot tests, gradcheck, cupy arrays in and out, torch streams and zero-copy DLPack views;
on any CUDA device also the torch CUDA path, ``WarpBlur``, CG/HQS on CUDA tensors and cupy
arrays, and learned priors following their input's device.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur import backend
from pnpdeblur.operators import _cupy, _segment
from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators.motion import _lut_segments

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
NVCC = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if os.path.exists("/usr/local/bin/nvcc") else None)
GXX = shutil.which("g++")


def _gpu_ready() -> bool:
    return torch.cuda.is_available() and backend.cupy_available()


requires_gpu = pytest.mark.skipif(not _gpu_ready(), reason="needs a CUDA device visible to torch and CuPy")


@pytest.fixture(scope="module", autouse=True)
def _cpu_kernels_compiled_side_by_side():
    """On a GPU machine, compile the CPU reference kernels first, all at once.

    The GPU tests compare against the numba kernels; on a fresh machine numba compiles each of
    them on first use, one after the other (minutes in all), and a run with a time limit ran out
    before the last tests (the eighteenth session's device run stopped at test 30 of 42).
    :func:`pnpdeblur.warmup.warm_kernels` compiles them in parallel worker processes into the
    disk cache instead. Without a GPU (CI) nothing is done: the marked tests are skipped.
    """
    if _gpu_ready():
        from pnpdeblur.warmup import warm_kernels

        warm_kernels()
    yield


# ------------------------------------------------------------------ segments of the three kernels
def _segments(kind: str, rng, n: int, h: int, w: int, lim: float, nf=None):
    """(vec, mass, beta) float64 tensors for the line, LUT and two-segment kernels."""
    nf = n if nf is None else nf
    f = rng.uniform(-lim, lim, (nf, 2, h, w))
    mask = rng.random((nf, 1, h, w))
    f = np.where(mask < 0.2, np.round(f), f)  # some integer flows
    f = np.where(mask > 0.9, 0.0, f)  # some zero flows
    f = torch.tensor(f)
    if kind == "line":
        return f[:, None].clone(), torch.ones(nf, 1, h, w, dtype=torch.float64), 0.0
    if kind == "lut":
        vec, mass = _lut_segments(f)
        return vec, mass, 0.0
    if kind == "two":
        g = torch.tensor(rng.uniform(-lim, lim, (nf, 2, h, w)))
        vec = 0.7 * torch.stack([f, g], 1)
        return vec, torch.full_like(vec[:, :, 0], 0.5), 0.5
    raise ValueError(kind)


# ------------------------------------------------------------------ (a) nvcc compiles the source
@pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH or at /usr/local/bin/nvcc")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cuda_source_compiles_with_nvcc(arch, tmp_path):
    out = tmp_path / f"segment_blur_{arch}.ptx"
    cmd = [NVCC, *_cupy.NVRTC_OPTIONS, "--ptx", f"-arch={arch}", str(_cupy.SOURCE_PATH), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    # the extern "C" names are exactly those the CuPy launcher looks up (no C++ mangling)
    for name in _cupy.KERNEL_NAMES.values():
        assert f".entry {name}(" in ptx, name


def _find_nvrtc():
    """Path of a loadable libnvrtc (system CUDA or the nvidia-cuda-nvrtc wheel), or None."""
    import ctypes.util
    import glob

    cands = []
    for root in [os.environ.get("CUDA_PATH"), "/usr/local/cuda"]:
        if root:
            cands += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    for entry in sys.path:
        cands += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
        cands += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    if found:
        cands.append(found)
    for c in cands:
        if "alt" in os.path.basename(c) or "builtins" in os.path.basename(c):
            continue
        try:
            return ctypes.CDLL(c)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_cuda_source_compiles_with_nvrtc(arch):
    # The compiler CuPy's RawModule uses, called directly (it needs no GPU), with the
    # launcher's options plus the -ftz=true CuPy adds.
    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found (install nvidia-cuda-nvrtc-cu12 or a CUDA toolkit)")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), _cupy.source().encode(), b"segment_blur.cu", 0, None, None) == 0
    try:
        opts = [o.encode() for o in _cupy.NVRTC_OPTIONS + (f"--gpu-architecture={arch}", "-ftz=true")]
        rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        assert rc == 0, log.value.decode(errors="replace")
        assert "warning" not in log.value.decode(errors="replace")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(prog, ptx)
        for name in _cupy.KERNEL_NAMES.values():
            assert f".entry {name}(" in ptx.value.decode(), name
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def test_cuda_source_is_self_contained():
    # That the source ships in the wheel is checked by building one: tests/test_package_data.py.
    assert _cupy.SOURCE_PATH.is_file()
    src = _cupy.source()
    # NVRTC compiles it without host headers
    assert not any(line.lstrip().startswith("#include") for line in src.splitlines())


# ------------------------------------------------------------------ (a) the kernels, emulated on the CPU
_SHIM = r"""
// Host emulation of the CUDA kernels: one "thread" at a time over the launch grid.
#include <math.h>
struct pnp_dim3 { unsigned x, y, z; };
static pnp_dim3 blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
template <class T> static T atomicAdd(T* a, T v) { T old = *a; *a = old + v; return old; }
#include "segment_blur.cu"

template <class F> static void launch(int N, int H, int W, F f) {
    blockDim = {BX, BY, 1};
    for (unsigned z = 0; z < (unsigned)N; ++z)
        for (unsigned by = 0; by < (H + BY - 1) / BY; ++by)
            for (unsigned bx = 0; bx < (W + BX - 1) / BX; ++bx)
                for (unsigned ty = 0; ty < BY; ++ty)
                    for (unsigned tx = 0; tx < BX; ++tx) {
                        blockIdx = {bx, by, z};
                        threadIdx = {tx, ty, 0};
                        f();
                    }
}
#define EMU(T, SUF)                                                                                     \
extern "C" void emu_forward_##SUF(const T* x, const double* v, const double* m, T* y, int N, int C,     \
                                   int H, int W, int Nf, int S, double b) {                             \
    launch(N, H, W, [&] { segment_forward_##SUF(x, v, m, y, N, C, H, W, Nf, S, b); });                  \
}                                                                                                       \
extern "C" void emu_adjoint_##SUF(const T* g, const double* v, const double* m, T* o, int N, int C,     \
                                   int H, int W, int Nf, int S, double b) {                             \
    launch(N, H, W, [&] { segment_adjoint_##SUF(g, v, m, o, N, C, H, W, Nf, S, b); });                  \
}                                                                                                       \
extern "C" void emu_param_grad_##SUF(const T* x, const T* g, const double* v, const double* m,          \
                                      double* gv, double* gm, int N, int C, int H, int W, int Nf,        \
                                      int S, double b) {                                                \
    launch(N, H, W, [&] { segment_param_grad_##SUF(x, g, v, m, gv, gm, N, C, H, W, Nf, S, b); });       \
}
EMU(float, f32)
EMU(double, f64)
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """The .cu source built as a host shared library (g++), loaded with ctypes."""
    if GXX is None:
        pytest.skip("g++ not found: cannot emulate the CUDA kernels on the CPU")
    d = tmp_path_factory.mktemp("cuda_emu")
    (d / "shim.cpp").write_text(_SHIM)
    lib = d / "libsegemu.so"
    cmd = [
        GXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wno-unknown-pragmas",
        f"-DBX={_cupy.BLOCK[0]}u", f"-DBY={_cupy.BLOCK[1]}u",
        f"-I{_cupy.SOURCE_PATH.parent}", str(d / "shim.cpp"), "-o", str(lib),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr, res.stderr
    return ctypes.CDLL(str(lib))


def _ptr(a):
    if isinstance(a, ctypes.c_void_p):  # already a raw pointer (the launcher's arguments)
        return a
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


def _emu_call(lib, op, suf, arrays, N, C, H, W, Nf, S, beta):
    fn = getattr(lib, f"emu_{op}_{suf}")
    ints = [ctypes.c_int(v) for v in (N, C, H, W, Nf, S)]
    fn(*[_ptr(a) for a in arrays], *ints, ctypes.c_double(beta))


@pytest.mark.parametrize("kind", ["line", "lut", "two"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shared_flow", [False, True])
def test_cuda_kernels_emulated_on_cpu_match_numba(emulated, kind, dtype, shared_flow):
    rng = np.random.default_rng(hash((kind, dtype.__name__, shared_flow)) % 2**32)
    n, c, h, w = 2, 5, 37, 41  # C = 5 > the kernel's channel block; W, H not multiples of the block
    lim = 16.0 if kind == "lut" else 46.0
    vec, mass, beta = _segments(kind, rng, n, h, w, lim, nf=1 if shared_flow else n)
    v = np.ascontiguousarray(vec.numpy())
    m = np.ascontiguousarray(mass.numpy())
    nf, s = v.shape[0], v.shape[1]
    x = rng.random((n, c, h, w)).astype(dtype)
    g = rng.random((n, c, h, w)).astype(dtype)
    suf = "f32" if dtype == np.float32 else "f64"
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ntaps = nk.max_taps(float(np.sqrt((v ** 2).sum(2)).max()))

    y = np.full_like(x, np.nan)
    _emu_call(emulated, "forward", suf, (x, v, m, y), n, c, h, w, nf, s, beta)
    np.testing.assert_allclose(y, nk.forward(x, v, m, beta, ntaps), atol=tol, rtol=0)

    xt = np.zeros_like(g)
    _emu_call(emulated, "adjoint", suf, (g, v, m, xt), n, c, h, w, nf, s, beta)
    np.testing.assert_allclose(xt, nk.adjoint(g, v, m, beta, ntaps, 2), atol=tol * 10, rtol=0)

    gv = np.full((n, s, 2, h, w), np.nan)
    gm = np.full((n, s, h, w), np.nan)
    _emu_call(emulated, "param_grad", suf, (x, g, v, m, gv, gm), n, c, h, w, nf, s, beta)
    gv_ref, gm_ref = nk.param_grad(x, g, v, m, beta, ntaps)
    scale = max(1.0, float(np.abs(gv_ref).max()))
    np.testing.assert_allclose(gv, gv_ref, atol=tol * scale * 10, rtol=0)
    np.testing.assert_allclose(gm, gm_ref, atol=tol * 10, rtol=0)


def test_emulated_kernels_single_channel_and_zero_flow(emulated):
    # L = 0 everywhere: the identity, with zero flow gradient
    n, c, h, w = 1, 1, 9, 70
    v = np.zeros((1, 1, 2, h, w))
    m = np.ones((1, 1, h, w))
    x = np.random.default_rng(3).random((n, c, h, w))
    y = np.zeros_like(x)
    _emu_call(emulated, "forward", "f64", (x, v, m, y), n, c, h, w, 1, 1, 0.0)
    np.testing.assert_array_equal(y, x)
    gv = np.full((n, 1, 2, h, w), np.nan)
    gm = np.full((n, 1, h, w), np.nan)
    _emu_call(emulated, "param_grad", "f64", (x, x, v, m, gv, gm), n, c, h, w, 1, 1, 0.0)
    assert np.all(gv == 0.0)


# ------------------------------------------------------------------ (a) the launcher, on the emulated kernels
class _Ctx:
    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def host_cupy(emulated, monkeypatch):
    """Run ``_cupy``'s launcher on CPU tensors against the host-compiled CUDA source.

    A stand-in ``cupy``: ``from_dlpack`` gives a numpy view of the (CPU) tensor, so the
    kernels write into torch's memory as they do on a GPU; ``RawModule.get_function``
    returns a callable that checks the launch geometry and the argument list against
    the kernel signature, then runs the emulated kernel.
    """
    launches = []

    class _Kernel:
        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args, stream=None):
            assert stream is not None  # torch's stream, never CuPy's current one
            n_arrays = 6 if "param_grad" in self.name else 4
            arrays, scalars = args[:n_arrays], args[n_arrays:]
            assert all(type(a) is np.uint64 for a in arrays)  # raw pointers into torch's buffers
            arrays = [ctypes.c_void_p(int(a)) for a in arrays]
            assert [type(v) for v in scalars] == [np.int32] * 6 + [np.float64]
            N, C, H, W, Nf, S, beta = (v.item() for v in scalars)
            assert tuple(block) == _cupy.BLOCK
            assert tuple(grid) == (-(-W // block[0]), -(-H // block[1]), N)
            suf = self.name.rsplit("_", 1)[1]
            op = self.name[len("segment_") : -len(suf) - 1]
            launches.append(self.name)
            _emu_call(emulated, op, suf, arrays, N, C, H, W, Nf, S, beta)

    class _Module:
        def __init__(self, code, options):
            assert code == _cupy.source() and options == _cupy.NVRTC_OPTIONS

        def get_function(self, name):
            return _Kernel(name)

    fake = types.ModuleType("cupy")
    fake.__version__ = "0.0-host"
    fake.RawModule = _Module
    fake.cuda = types.SimpleNamespace(
        Device=_Ctx,
        ExternalStream=_Ctx,
        Stream=types.SimpleNamespace(null=_Ctx()),
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_cupy, "_DEVICE_TYPES", ("cuda", "cpu"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: types.SimpleNamespace(cuda_stream=0))
    monkeypatch.delattr(torch._C, "_cuda_getCurrentRawStream", raising=False)  # read the stand-in
    _cupy._kernels.clear()
    _cupy._streams.clear()
    yield launches
    _cupy._kernels.clear()
    _cupy._streams.clear()


@pytest.mark.parametrize("kind", ["line", "lut", "two"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_launcher_on_emulated_kernels_matches_numba(host_cupy, kind, dtype):
    rng = np.random.default_rng(21)
    vec, mass, beta = _segments(kind, rng, 2, 19, 35, 16.0 if kind == "lut" else 46.0, nf=1)
    x = torch.tensor(rng.random((2, 3, 19, 35)), dtype=dtype)
    for transpose in (False, True):
        ref = _segment.segment_blur(x, vec, mass, beta, transpose, path="numba")
        out = _cupy.segment_blur_cupy(x, vec.to(dtype), mass.to(dtype), beta, transpose)
        assert out.dtype == dtype and out.shape == x.shape
        torch.testing.assert_close(out, ref, atol=TOL[dtype] * 10, rtol=0)
    suf = "f32" if dtype == torch.float32 else "f64"
    assert host_cupy == [f"segment_forward_{suf}", f"segment_adjoint_{suf}"]


@pytest.mark.parametrize("transpose", [False, True])
def test_launcher_autograd_on_emulated_kernels(host_cupy, transpose):
    rng = np.random.default_rng(22)
    x = torch.tensor(rng.random((2, 2, 6, 7)), requires_grad=True)
    f = torch.tensor(rng.uniform(-6, 6, (2, 2, 6, 7)), requires_grad=True)
    g = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 7)), requires_grad=True)  # shared by the batch

    def line(x, f):
        return _cupy.segment_blur_cupy(x, f[:, None], torch.ones_like(f[:, :1]), 0.0, transpose)

    def lut(x, g):
        vec, mass = _lut_segments(g)
        return _cupy.segment_blur_cupy(x, vec, mass, 0.0, transpose)

    def two(x, f, g):
        vec = 0.7 * torch.stack([f, g.expand_as(f)], 1)
        return _cupy.segment_blur_cupy(x, vec, torch.full_like(vec[:, :, 0], 0.5), 0.5, transpose)

    check = lambda fn, inp: torch.autograd.gradcheck(fn, inp, eps=1e-7, atol=1e-6, rtol=1e-4)  # noqa: E731
    assert check(line, (x, f))
    assert check(lut, (x, g))
    assert check(two, (x, f, g))
    assert any("param_grad" in name for name in host_cupy)
    # the same gradients as the numba path
    for fn_cupy, path_fn in ((line, lambda x, f: pd.MotionBlur(f, path="numba")),):
        y = fn_cupy(x, f)
        gx, gf = torch.autograd.grad((y * y).sum(), (x, f))
        K = path_fn(x, f)
        y2 = (K.T if transpose else K)(x)
        gx2, gf2 = torch.autograd.grad((y2 * y2).sum(), (x, f))
        torch.testing.assert_close(gx, gx2, atol=1e-12, rtol=0)
        torch.testing.assert_close(gf, gf2, atol=1e-10, rtol=1e-12)


def test_launcher_empty_and_bad_shapes(host_cupy):
    x = torch.zeros(1, 2, 5, 6)
    with pytest.raises(ValueError, match="vec must have shape"):
        _cupy.run(x, torch.zeros(1, 1, 2, 5, 7), torch.ones(1, 1, 5, 7), 0.0, False)
    with pytest.raises(ValueError, match="mass must have shape"):
        _cupy.run(x, torch.zeros(1, 1, 2, 5, 6), torch.ones(1, 2, 5, 6), 0.0, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        _cupy.run(x.to(torch.float16), torch.zeros(1, 1, 2, 5, 6), torch.ones(1, 1, 5, 6), 0.0, False)
    out = _cupy.run(torch.zeros(0, 2, 5, 6), torch.zeros(1, 1, 2, 5, 6), torch.ones(1, 1, 5, 6), 0.0, True)
    assert out.shape == (0, 2, 5, 6) and host_cupy == []


# ------------------------------------------------------------------ (a) dispatch and fallback
def _fake_cupy(devices):
    """A stand-in ``cupy`` module: ``devices`` is a count, or an exception to raise."""

    def get_device_count():
        if isinstance(devices, BaseException):
            raise devices
        return devices

    class _NoKernels:
        def __init__(self, *a, **k):
            raise RuntimeError("NVRTC (libnvrtc.so) not found")

    class _Device:
        def __init__(self, index=0):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    mod = types.ModuleType("cupy")
    mod.__version__ = "0.0-fake"
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count), Device=_Device)
    mod.RawModule = _NoKernels
    return mod


@pytest.fixture
def fresh_backend():
    """Re-probe CuPy before and after the test; undo any recorded kernel failure."""
    backend.cupy_status.cache_clear()
    backend._set_cupy_kernel_error(None)
    _cupy._kernels.clear()
    yield
    backend.cupy_status.cache_clear()
    backend._set_cupy_kernel_error(None)
    _cupy._kernels.clear()


def _flow_and_image(rng=None):
    rng = rng or np.random.default_rng(5)
    return rng.uniform(-9, 9, (1, 2, 12, 14)), rng.random((1, 3, 12, 14))


def test_real_cupy_probe_never_raises(fresh_backend):
    # whatever is installed here (nothing, CuPy without a driver, or a real GPU)
    ok, reason = backend.cupy_status()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    assert backend.cupy_available() is ok
    if not ok:
        assert _segment._default_path("cuda") == "torch"
        assert backend.info()["cupy"] is False


def test_cupy_missing_means_torch_path(fresh_backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # "import cupy" raises ImportError
    assert backend.cupy_available() is False
    assert "not importable" in backend.cupy_status()[1]
    assert _segment._default_path("cuda") == "torch"
    assert _segment._default_path("cpu") == "numba"
    assert "cupy" not in _segment.available_paths()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    info = backend.info()
    assert info["cupy"] is False and info["cuda_path"] == "torch" and info["cpu_path"] == "numba"


def test_cupy_without_device_falls_back_to_torch(fresh_backend, monkeypatch):
    class CUDARuntimeError(RuntimeError):
        pass

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device")))
    assert backend.cupy_available() is False
    assert "no usable CUDA device" in backend.cupy_status()[1]
    assert _segment._default_path("cuda") == "torch"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    info = backend.info()
    assert info["cupy"] is False and info["cuda_path"] == "torch"
    assert "cudaErrorNoDevice" in info["cupy_reason"]
    # the CPU path is untouched and operators still work
    f, x = _flow_and_image()
    np.testing.assert_allclose(pd.MotionBlur(f)(x), pd.MotionBlur(f, path="torch")(x), atol=1e-12)


def test_zero_devices_is_not_available(fresh_backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    assert backend.cupy_available() is False
    assert _segment._default_path("cuda") == "torch"


def test_cupy_with_device_is_the_cuda_default(fresh_backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    assert backend.cupy_available() is True
    assert _segment._default_path("cuda") == "cupy"
    assert _segment._default_path("cpu") == "numba"  # CPU tensors keep the numba path
    assert "cupy" in _segment.available_paths()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert backend.info()["cuda_path"] == "cupy"


def test_forcing_cupy_without_device_is_a_clear_error(fresh_backend, monkeypatch):
    f, x = _flow_and_image()
    for fake in (None, _fake_cupy(RuntimeError("no CUDA-capable device is detected"))):
        backend.cupy_status.cache_clear()
        monkeypatch.setitem(sys.modules, "cupy", fake)
        with pytest.raises(RuntimeError, match=r"path='cupy' needs CuPy and a CUDA device"):
            pd.MotionBlur(f, path="cupy")(x)
        with pytest.raises(RuntimeError, match=r"path='cupy'"):
            pd.TwoSegmentBlur(f, -f, path="cupy").adjoint(x)


def test_forcing_cupy_on_cpu_tensor_is_a_value_error(fresh_backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    f, x = _flow_and_image()
    with pytest.raises(ValueError, match=r"path='cupy' needs CUDA tensors"):
        pd.MotionBlur(f, path="cupy")(x)
    with pytest.raises(ValueError, match="path must be"):
        pd.MotionBlur(f, path="gpu")(x)


def test_kernel_build_failure_falls_back_once_with_warning(fresh_backend, monkeypatch):
    # CuPy sees a device but NVRTC is missing: the automatic choice warns once, records
    # the reason for info(), and computes with the torch path.
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    monkeypatch.setattr(_segment, "_default_path", lambda device_type: "cupy")  # as for a CUDA tensor
    f, x = _flow_and_image()
    xt, ft = torch.tensor(x), torch.tensor(f)
    vec, mass = ft[:, None], torch.ones(1, 1, 12, 14, dtype=torch.float64)
    with pytest.warns(UserWarning, match="CuPy kernels unavailable.*NVRTC"):
        y = _segment.segment_blur(xt, vec, mass, 0.0)
    torch.testing.assert_close(y, _segment.segment_blur(xt, vec, mass, 0.0, path="numba"), atol=1e-12, rtol=0)
    assert "NVRTC" in backend.cupy_kernel_error()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    info = backend.info()
    assert info["cupy"] is False and info["cuda_path"] == "torch" and "NVRTC" in info["cupy_reason"]
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(1))
    assert _segment._default_path("cuda") == "torch"  # remembered for the process
    # forcing the path surfaces the build error instead of hiding it
    with pytest.raises(_cupy.CupyUnavailableError, match="NVRTC"):
        monkeypatch.setattr(_segment, "_resolve_path", lambda x, path: "cupy")
        _segment.segment_blur(xt, vec, mass, 0.0, path="cupy")


def test_cupy_module_checks_arguments():
    x = torch.zeros(1, 1, 4, 4)
    v, m = torch.zeros(1, 1, 2, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match="x must be a CUDA tensor"):
        _cupy.run(x, v, m, 0.0, False)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        _cupy.run(np.zeros((1, 1, 4, 4)), v, m, 0.0, False)
    with pytest.raises(TypeError, match="device_index"):
        _cupy.load("0")


# ------------------------------------------------------------------ (b) on a GPU
@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("kind", ["line", "lut", "two"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transpose", [False, True])
def test_gpu_segment_blur_matches_numba(kind, dtype, transpose):
    rng = np.random.default_rng(11)
    n, c, h, w = 2, 5, 45, 67
    vec, mass, beta = _segments(kind, rng, n, h, w, 16.0 if kind == "lut" else 46.0)
    x = torch.tensor(rng.random((n, c, h, w)), dtype=dtype)
    ref = _segment.segment_blur(x, vec, mass, beta, transpose, path="numba")
    out = _segment.segment_blur(x.cuda(), vec.cuda(), mass.cuda(), beta, transpose, path="cupy")
    assert out.is_cuda and out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.cpu(), ref, atol=TOL[dtype] * (10 if transpose else 1), rtol=0)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gpu_operators_match_numba_and_default_to_cupy(dtype):
    rng = np.random.default_rng(12)
    f = torch.tensor(rng.uniform(-46, 46, (2, 2, 40, 52)), dtype=dtype)
    f16 = torch.tensor(rng.uniform(-16, 16, (2, 2, 40, 52)), dtype=dtype)
    x = torch.tensor(rng.random((2, 3, 40, 52)), dtype=dtype)
    assert _segment._resolve_path(x.cuda(), None) == "cupy"
    assert backend.info()["cuda_path"] == "cupy"
    ops = {
        "line": lambda p, d: pd.MotionBlur(f.to(d), path=p),
        "lut": lambda p, d: pd.MotionBlur.lut(f16.to(d), path=p),
        "two": lambda p, d: pd.TwoSegmentBlur(f16.to(d), f.to(d), tau=0.6, path=p),
    }
    for name, make in ops.items():
        Kc, Kn = make(None, "cuda"), make("numba", "cpu")
        torch.testing.assert_close(Kc(x.cuda()).cpu(), Kn(x), atol=TOL[dtype], rtol=0, msg=name)
        torch.testing.assert_close(Kc.T(x.cuda()).cpu(), Kn.T(x), atol=10 * TOL[dtype], rtol=0, msg=name)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("kind", ["line", "lut", "two"])
def test_gpu_dot_test(kind):
    rng = np.random.default_rng(13)
    vec, mass, beta = _segments(kind, rng, 1, 50, 60, 16.0 if kind == "lut" else 46.0)
    vec, mass = vec.cuda(), mass.cuda()
    x = torch.rand(1, 3, 50, 60, dtype=torch.float64, device="cuda")
    y = torch.rand(1, 3, 50, 60, dtype=torch.float64, device="cuda")
    kx = _segment.segment_blur(x, vec, mass, beta, False, path="cupy")
    kty = _segment.segment_blur(y, vec, mass, beta, True, path="cupy")
    lhs, rhs = float((kx * y).sum()), float((x * kty).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    ones = torch.ones_like(x)
    torch.testing.assert_close(_segment.segment_blur(ones, vec, mass, beta, path="cupy"), ones, atol=1e-12, rtol=0)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("transpose", [False, True])
def test_gpu_gradcheck_image_and_flow(transpose):
    rng = np.random.default_rng(14)
    opts = dict(device="cuda", dtype=torch.float64, requires_grad=True)
    x = torch.tensor(rng.random((2, 2, 6, 7)), **opts)
    f = torch.tensor(rng.uniform(-6, 6, (2, 2, 6, 7)), **opts)
    g = torch.tensor(rng.uniform(-5, 5, (2, 2, 6, 7)), **opts)
    f16 = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 7)), **opts)  # shared across the batch

    def line(x, f):
        K = pd.MotionBlur(f, path="cupy")
        return (K.T if transpose else K)(x)

    def lut(x, f):
        K = pd.MotionBlur.lut(f, path="cupy")
        return (K.T if transpose else K)(x)

    def two(x, a, b):
        K = pd.TwoSegmentBlur(a, b, tau=0.7, path="cupy")
        return (K.T if transpose else K)(x)

    # nondet_tol: the atomic-scatter adjoint may sum in a different order on each backward pass
    check = lambda fn, inp: torch.autograd.gradcheck(  # noqa: E731
        fn, inp, eps=1e-7, atol=1e-6, rtol=1e-4, nondet_tol=1e-12
    )
    assert check(line, (x, f))
    assert check(lut, (x, f16))
    assert check(two, (x, f, g))


@pytest.mark.gpu
@requires_gpu
def test_gpu_gradients_match_numba():
    rng = np.random.default_rng(15)
    xs = rng.random((2, 3, 20, 24))
    fs = rng.uniform(-20, 20, (1, 2, 20, 24))
    grads = {}
    for dev, path in (("cpu", "numba"), ("cuda", "cupy")):
        x = torch.tensor(xs, device=dev, requires_grad=True)
        f = torch.tensor(fs, device=dev, requires_grad=True)
        y = pd.MotionBlur(f, path=path)(x)
        (y * torch.arange(y.numel(), device=dev, dtype=y.dtype).reshape(y.shape)).sum().backward()
        grads[path] = (x.grad.cpu(), f.grad.cpu())
    for a, b in zip(grads["numba"], grads["cupy"]):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-10)


@pytest.mark.gpu
@requires_gpu
def test_gpu_cupy_arrays_in_cupy_arrays_out():
    import cupy

    rng = np.random.default_rng(16)
    f = rng.uniform(-30, 30, (2, 48, 64))
    img = rng.random((48, 64, 3))
    K = pd.MotionBlur(cupy.asarray(f))
    y = K(cupy.asarray(img))
    assert isinstance(y, cupy.ndarray) and y.shape == img.shape and y.dtype == img.dtype
    np.testing.assert_allclose(cupy.asnumpy(y), pd.MotionBlur(f)(img), atol=1e-12, rtol=0)
    yt = K.adjoint(cupy.asarray(img.astype(np.float32)))
    assert isinstance(yt, cupy.ndarray) and yt.dtype == np.float32


@pytest.mark.gpu
@requires_gpu
def test_gpu_runs_on_torchs_current_stream():
    rng = np.random.default_rng(17)
    f = torch.tensor(rng.uniform(-46, 46, (1, 2, 256, 256)), device="cuda")
    x = torch.rand(1, 3, 256, 256, dtype=torch.float64, device="cuda")
    ref = pd.MotionBlur(f, path="cupy")(x)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())  # x and f were made on the default stream
    with torch.cuda.stream(s):
        x2 = x * 1.0  # enqueued on s; the kernel must see it
        y = pd.MotionBlur(f, path="cupy")(x2)
    torch.cuda.current_stream().wait_stream(s)
    torch.testing.assert_close(y, ref, atol=0, rtol=0)


# ------------------------------------------------------------------ (c) the rest of the library on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["line", "lut", "two"])
@pytest.mark.parametrize("transpose", [False, True])
def test_gpu_torch_path_matches_numba(kind, transpose):
    """The vectorised torch path (the CUDA fallback without CuPy) on a real device."""
    rng = np.random.default_rng(18)
    vec, mass, beta = _segments(kind, rng, 2, 33, 41, 16.0 if kind == "lut" else 46.0)
    x = torch.tensor(rng.random((2, 3, 33, 41)))
    ref = _segment.segment_blur(x, vec, mass, beta, transpose, path="numba")
    out = _segment.segment_blur(x.cuda(), vec.cuda(), mass.cuda(), beta, transpose, path="torch")
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), ref, atol=1e-12, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_warp_blur_matches_cpu_and_is_adjoint():
    rng = np.random.default_rng(19)
    fn = torch.tensor(rng.uniform(-6, 6, (1, 2, 30, 36)))
    fp = torch.tensor(rng.uniform(-6, 6, (1, 2, 30, 36)))
    x = torch.tensor(rng.random((1, 3, 30, 36)))
    y = torch.tensor(rng.random((1, 3, 30, 36)))
    Kc, Kg = pd.WarpBlur(fn, fp, n=5), pd.WarpBlur(fn.cuda(), fp.cuda(), n=5)
    torch.testing.assert_close(Kg(x.cuda()).cpu(), Kc(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(Kg.T(y.cuda()).cpu(), Kc.T(y), atol=1e-12, rtol=0)
    lhs = float((Kg(x.cuda()) * y.cuda()).sum())
    rhs = float((x.cuda() * Kg.T(y.cuda())).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def _gpu_problem(dtype=torch.float64):
    rng = np.random.default_rng(20)
    x = torch.tensor(pd.data.sample_image("camera", size=64)[..., 0], dtype=dtype)[None, None]
    f = torch.tensor(rng.uniform(-8, 8, (1, 2, 64, 64)), dtype=dtype)
    y = pd.MotionBlur(f)(x) + 0.01 * torch.tensor(rng.standard_normal(x.shape), dtype=dtype)
    return x, f, y


def _hqs_tv(y, K, **kw):
    """Three HQS + TV iterations at noise level 0.01 (the GPU tests' CPU-vs-GPU solve)."""
    return pd.solvers.hqs(y, K, prior=pd.priors.TV(), noise_level=0.01, n_iter=3, **kw)


@pytest.mark.gpu
@requires_gpu
def test_gpu_cg_and_hqs_tv_match_cpu():
    x, f, y = _gpu_problem()
    K, Kg = pd.MotionBlur(f), pd.MotionBlur(f.cuda())
    sol, info = pd.solvers.cg(K.normal, K.T(y), maxiter=20, tol=1e-10)
    solg, infog = pd.solvers.cg(Kg.normal, Kg.T(y.cuda()), maxiter=20, tol=1e-10)
    assert solg.is_cuda and infog.iterations == info.iterations
    torch.testing.assert_close(solg.cpu(), sol, atol=1e-8, rtol=0)
    res, resg = _hqs_tv(y, K), _hqs_tv(y.cuda(), Kg)
    assert resg.x.is_cuda and resg.x.dtype == torch.float64
    torch.testing.assert_close(resg.x.cpu(), res.x, atol=1e-6, rtol=0)


@pytest.mark.gpu
@requires_gpu
def test_gpu_unchecked_calls_and_weighted_hqs_match_cpu():
    x, f, y = _gpu_problem()
    K, Kg = pd.MotionBlur(f), pd.MotionBlur(f.cuda())
    xg = x.cuda()
    torch.testing.assert_close(Kg(xg, check_finite=False), Kg(xg), atol=0, rtol=0)
    torch.testing.assert_close(Kg.normal(xg, check_finite=False).cpu(), K.normal(x), atol=1e-8, rtol=0)
    bad = xg.clone()
    bad[..., 3, 4] = float("nan")
    assert torch.isnan(Kg.adjoint(bad, check_finite=False)).any()
    w = pd.solvers.saturation_weights(y, 0.6)
    assert float(w.mean()) < 1
    res, resg = _hqs_tv(y, K, weights=w), _hqs_tv(y.cuda(), Kg, weights=w.cuda())
    assert resg.x.is_cuda and resg.settings["weighted"]
    torch.testing.assert_close(resg.x.cpu(), res.x, atol=1e-6, rtol=0)


@pytest.mark.gpu
@requires_gpu
def test_gpu_unknown_boundary_solve_matches_cpu():
    x, f, y = _gpu_problem()
    K, Kg = pd.MotionBlur(f), pd.MotionBlur(f.cuda())
    yp, Kp, w, r = pd.solvers.pad_problem(y, K)
    ypg, Kpg, wg, rg = pd.solvers.pad_problem(y.cuda(), Kg)
    assert rg == r > 0 and ypg.is_cuda and wg.is_cuda and Kpg.flow.is_cuda
    res, resg = _hqs_tv(yp, Kp, weights=w), _hqs_tv(ypg, Kpg, weights=wg)
    out = pd.solvers.crop_boundary(resg.x, r)
    assert out.is_cuda and out.shape == y.shape
    torch.testing.assert_close(out.cpu(), pd.solvers.crop_boundary(res.x, r), atol=1e-6, rtol=0)


@pytest.mark.gpu
@requires_gpu
def test_gpu_hqs_dncnn_on_cupy_arrays():
    import cupy

    x, f, y = _gpu_problem(torch.float32)
    y_np, f_np = y[0, 0].numpy(), f[0].numpy()
    res = pd.solvers.hqs(y_np, pd.MotionBlur(f_np), prior=pd.priors.DnCNNPrior(), noise_level=0.01, n_iter=3)
    resg = pd.solvers.hqs(
        cupy.asarray(y_np), pd.MotionBlur(cupy.asarray(f_np)), prior=pd.priors.DnCNNPrior(), noise_level=0.01, n_iter=3
    )
    assert isinstance(resg.x, cupy.ndarray) and resg.x.shape == y_np.shape and resg.x.dtype == np.float32
    # float32 CG on two devices: summation order differs, so compare loosely but meaningfully
    np.testing.assert_allclose(cupy.asnumpy(resg.x), res.x, atol=2e-3, rtol=0)
    assert pd.metrics.psnr(cupy.asnumpy(resg.x), x[0, 0].numpy()) > pd.metrics.psnr(y_np, x[0, 0].numpy()) + 2


@pytest.mark.gpu
@requires_gpu
def test_gpu_kernels_take_torchs_buffers_without_views(monkeypatch):
    """The kernels read and write torch's own buffers through raw pointers (no DLPack view
    per call), and cupy inputs become torch views."""
    import cupy

    seen = []
    real = cupy.from_dlpack

    def spy(t):
        view = real(t)
        seen.append((t.data_ptr(), view.data.ptr))
        return view

    monkeypatch.setattr(cupy, "from_dlpack", spy)
    x = torch.rand(1, 3, 32, 40, device="cuda")
    f = torch.rand(1, 2, 32, 40, device="cuda", dtype=torch.float64) * 20
    y = pd.MotionBlur(f, path="cupy")(x)
    assert seen == []
    torch.testing.assert_close(y.cpu(), pd.MotionBlur(f.cpu(), path="numba")(x.cpu()), atol=1e-5, rtol=0)
    arr = cupy.random.random((2, 32, 40))
    assert backend.to_torch(arr, "x").data_ptr() == arr.data.ptr


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("where", ["cuda", "cpu"])
def test_gpu_flow_geometry_is_cached_and_invalidated(where):
    """A solve's repeated calls reuse the flow's float64 segments on the device; an in-place
    change of the flow rebuilds them; the results are bitwise those of the uncached path."""
    rng = np.random.default_rng(23)
    f = torch.tensor(rng.uniform(-30, 30, (1, 2, 40, 52)), dtype=torch.float32, device=where)
    x = torch.rand(2, 3, 40, 52, device="cuda")
    K = pd.MotionBlur(f)
    _segment.FLOW_CACHE.clear()
    h0, m0 = _segment.FLOW_CACHE.hits, _segment.FLOW_CACHE.misses
    y1, y2, yt = K(x), K(x), K.T(x)
    assert _segment.FLOW_CACHE.misses - m0 == 1 and _segment.FLOW_CACHE.hits - h0 == 2
    assert len(_segment.FLOW_CACHE) == 1
    entry = next(iter(_segment.FLOW_CACHE._entries.values()))[3]
    assert isinstance(entry, _segment.CupyGeometry) and entry.vec.is_cuda and entry.vec.dtype == torch.float64
    # uncached: a flow that needs a gradient takes the autograd Function and converts per call
    fg = f.clone().requires_grad_(True)
    Kg = pd.MotionBlur(fg)
    torch.testing.assert_close(y1, Kg(x).detach(), atol=0, rtol=0)
    # the adjoint's atomic scatter orders its float32 additions differently from run to run
    torch.testing.assert_close(yt, Kg.T(x).detach(), atol=2e-6, rtol=0)
    torch.testing.assert_close(y2, y1, atol=0, rtol=0)
    f.mul_(0.5)  # in place: the cached segments are stale
    torch.testing.assert_close(K(x), pd.MotionBlur(f.clone())(x), atol=0, rtol=0)
    assert not torch.equal(K(x), y1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_learned_prior_follows_the_data():
    z = torch.rand(1, 3, 40, 48)
    ref = pd.priors.DnCNNPrior()(z, 0.05)
    follow = pd.priors.DnCNNPrior()
    out = follow(z.cuda(), 0.05)
    assert out.is_cuda and next(follow.net.parameters()).is_cuda  # the network moved to the data
    torch.testing.assert_close(out.cpu(), ref, atol=1e-4, rtol=0)
    pinned = pd.priors.DnCNNPrior(device="cpu")
    out = pinned(z.cuda(), 0.05)
    assert out.is_cuda and not next(pinned.net.parameters()).is_cuda
    torch.testing.assert_close(out.cpu(), ref, atol=0, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_noise_estimate_matches_the_cpu():
    """pd.deblur's noise estimate on CUDA tensors (the YCbCr matrix and the pooling follow the data),
    for a photo read as JPEG-coded (the same fine checker in every channel) and one that is not."""
    from pnpdeblur.pipeline import estimate_noise_level

    rng = np.random.default_rng(0)
    means = np.repeat(np.repeat(rng.random((1, 3, 12, 16)), 2, axis=-2), 2, axis=-1)
    checker = 1e-4 * np.where(np.add.outer(np.arange(24), np.arange(32)) % 2 == 0, 1.0, -1.0)
    coded = torch.from_numpy(means + checker)
    noisy = coded + 0.02 * torch.from_numpy(rng.standard_normal(coded.shape))
    x = torch.cat([coded, noisy]).clamp(0, 1)
    cpu = estimate_noise_level(x, saturation=0.98, compression=True)
    assert cpu[0] > 10 * estimate_noise_level(x[:1])[0]  # the coded photo took the coarse band
    assert estimate_noise_level(x.cuda(), saturation=0.98, compression=True) == pytest.approx(cpu, rel=1e-9)
