"""The CuPy launcher's plumbing on the CPU, against the CUDA source's own signatures.

``pnpdeblur.operators._cupy`` is mostly plain Python: argument checks, the segment
geometry, kernel loading and caching, and the launches (kernel name, grid, block,
argument order and types, stream and device contexts, output allocation). A stand-in
``cupy`` module records every launch and checks it against the parameter lists of the
``extern "C"`` kernels parsed from ``_cuda/segment_blur.cu`` itself (an independent
reference for the argument order: names, pointer element types, ``int``/``double``
scalars) and against the layouts in that file's header. The kernels' maths is not
emulated here (tests/test_gpu.py runs the source compiled for the host, and on a GPU);
the stand-in kernel writes a recognisable pattern into its output parameters so the
tests can see which buffers come back and how they are reduced.
"""
from __future__ import annotations

import ctypes
import importlib.abc
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import pnpdeblur.operators as ops_pkg
from pnpdeblur.operators import _cupy

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)

CU_PATH = Path(ops_pkg.__file__).parent / "_cuda" / "segment_blur.cu"
T_DTYPES = {"float": torch.float32, "double": torch.float64}


# ------------------------------------------------------------------ the .cu signatures
def _parse_kernels():
    """{kernel name: [(ctype, name), ...]} from the source's PNP_INSTANTIATE macro."""
    src = CU_PATH.read_text()
    flat = src.replace("\\\n", " ")
    macro = flat[flat.index("#define PNP_INSTANTIATE(T, SUF)") :]
    macro = macro[: macro.index("\n")]
    sigs = re.findall(r'extern "C" __global__ void segment_(\w+?)_##SUF\(([^)]*)\)', macro)
    insts = re.findall(r"^PNP_INSTANTIATE\((\w+), (\w+)\)", src, re.M)
    assert len(sigs) == 3 and len(insts) == 2
    kernels = {}
    for t, suf in insts:
        for op, params in sigs:
            out = []
            for p in params.split(","):
                words = p.replace("*", " * ").split()
                name = words[-1]
                ptr = "*" in words
                base = [w for w in words[:-1] if w not in ("const", "__restrict__", "*")][0]
                base = t if base == "T" else base
                out.append((("const " if "const" in words else "") + base + ("*" if ptr else ""), name))
            kernels[f"segment_{op}_{suf}"] = out
    return kernels


KERNELS = _parse_kernels()


def test_kernel_names_are_the_sources_extern_c_kernels():
    assert sorted(_cupy.KERNEL_NAMES.values()) == sorted(KERNELS)
    for (op, dtype), name in _cupy.KERNEL_NAMES.items():
        assert name.startswith(f"segment_{op}_")
        # the kernel's image pointers have the dtype's element type
        first = KERNELS[name][0][0]
        assert T_DTYPES[first.replace("const ", "").rstrip("*")] == dtype, (name, first)
    assert {op for op, _ in _cupy.KERNEL_NAMES} == {"forward", "adjoint", "param_grad"}
    assert {dt for _, dt in _cupy.KERNEL_NAMES} == {torch.float32, torch.float64}


def test_source_is_the_shipped_cu_file():
    assert _cupy.SOURCE_PATH.resolve() == CU_PATH.resolve()
    assert _cupy.source() == CU_PATH.read_text()
    # the header says the file needs C++17: the options must select it for NVRTC
    assert "C++17" in _cupy.source() and "--std=c++17" in _cupy.NVRTC_OPTIONS


def test_block_fits_the_hardware():
    bx, by, bz = _cupy.BLOCK
    assert bz == 1  # the grid's z axis is the batch: one thread per (pixel, image)
    assert bx * by <= 1024 and (bx * by) % 32 == 0  # CUDA's limit; whole warps
    assert bx % 32 == 0  # a warp runs along a row: coalesced loads


# ------------------------------------------------------------------ a recording stand-in cupy
class _Recorder:
    def __init__(self):
        self.events = []  # ("enter"/"exit", what) and ("module", ...), ("launch", ...)
        self.launches = []
        self.modules = []
        self.depth = {"device": None, "in_device": False}
        self.external = []  # what each Stream.from_external / ExternalStream call was given
        # Read the pointer arguments back as tensors (off for launches on stand-in buffers
        # smaller than the sizes the launch names: the grid-limit and stream tests).
        self.views = True


def _layout(pname: str, s: dict) -> tuple:
    """The header's C-contiguous layout of each pointer parameter, from the launch's ints."""
    img = (s["N"], s["C"], s["H"], s["W"])
    return {"x": img, "g": img, "y": img, "out": img,
            "vec": (s["Nf"], s["S"], 2, s["H"], s["W"]), "mass": (s["Nf"], s["S"], s["H"], s["W"]),
            "gvec": (s["N"], s["S"], 2, s["H"], s["W"]), "gmass": (s["N"], s["S"], s["H"], s["W"])}[pname]


def _view(ptr: int, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """The memory at a raw (host) pointer as a tensor of ``shape``: writes reach the caller's buffer."""
    n = math.prod(shape)
    if n == 0:
        return torch.empty(shape, dtype=dtype, device="cpu")
    ctype = ctypes.c_float if dtype == torch.float32 else ctypes.c_double
    buf = (ctype * n).from_address(int(ptr))
    return torch.from_numpy(np.ctypeslib.as_array(buf).reshape(shape))  # CPU whatever the default device


def _stand_in_stream(monkeypatch, current_stream) -> None:
    """torch's current stream comes from ``current_stream(device)`` (the raw-handle getter of
    CUDA builds of torch is hidden, so that the launcher reads the stand-in)."""
    monkeypatch.setattr(torch.cuda, "current_stream", current_stream)
    monkeypatch.delattr(torch._C, "_cuda_getCurrentRawStream", raising=False)


class _Kernel:
    def __init__(self, rec: _Recorder, name: str, device):
        self.rec, self.name, self.device = rec, name, device

    def __call__(self, grid, block, args, stream=None):
        rec = self.rec
        assert rec.depth["in_device"], "launch outside the device context"
        assert stream is not None, "launch without an explicit stream (CuPy's current one, not torch's)"
        params = KERNELS[self.name]
        assert isinstance(args, tuple) and len(args) == len(params), (self.name, len(args))
        ints = {}
        for (ctype, pname), a in zip(params, args):
            if ctype.endswith("*"):
                assert type(a) is np.uint64, (pname, type(a))  # a raw device pointer, 8 bytes
            elif ctype == "int":
                assert type(a) is np.int32, (pname, type(a))
                ints[pname] = int(a)
            elif ctype == "double":
                assert type(a) is np.float64, (pname, type(a))
            else:  # pragma: no cover - a new parameter type in the source
                raise AssertionError(ctype)
        named = {}
        for (ctype, pname), a in zip(params, args):
            if ctype.endswith("*") and rec.views:
                a = _view(a, T_DTYPES[ctype.replace("const ", "").rstrip("*")], _layout(pname, ints))
                if ctype.startswith("const"):  # the values at launch (a temporary may be freed after)
                    a = a.clone()
            named[pname] = a
        if rec.views:
            if "adjoint" in self.name:  # the header: "The output must be zeroed by the caller"
                assert torch.all(named["out"] == 0)
            # every output parameter gets a recognisable pattern (no maths emulated)
            for ctype, pname in params:
                if ctype.endswith("*") and not ctype.startswith("const"):
                    a = named[pname]
                    a.copy_(torch.arange(a.numel(), dtype=a.dtype, device="cpu").reshape(a.shape) + 1)
        rec.launches.append(
            dict(name=self.name, grid=tuple(grid), block=tuple(block), args=named,
                 device=self.device, stream=stream.what, on_device=rec.depth["device"])
        )


def _make_cupy(rec: _Recorder, *, from_external=True, fail=None):
    class _Device:
        def __init__(self, index=None):
            self.index = index

        def __enter__(self):
            rec.events.append(("enter", "device", self.index))
            rec.depth["device"] = self.index
            rec.depth["in_device"] = True
            return self

        def __exit__(self, *exc):
            rec.events.append(("exit", "device", self.index))
            rec.depth["device"] = None
            rec.depth["in_device"] = False
            return False

    class _Stream:
        def __init__(self, what):
            self.what = what
            rec.external.append(what)

    class _Module:
        def __init__(self, code=None, options=None):
            if fail is not None:
                raise fail
            rec.modules.append(dict(code=code, options=options, device=rec.depth["device"]))
            self.device = rec.depth["device"]

        def get_function(self, name):
            assert rec.depth["device"] == self.device
            if name not in KERNELS:
                raise KeyError(name)
            return _Kernel(rec, name, self.device)

    rec.external.clear()
    stream_ns = types.SimpleNamespace(null=_Stream(("null",)))
    if from_external:
        stream_ns.from_external = lambda s: _Stream(("from_external", s.__cuda_stream__()))
    fake = types.ModuleType("cupy")
    fake.__version__ = "0.0-recording"
    fake.RawModule = _Module
    fake.cuda = types.SimpleNamespace(
        Device=_Device,
        Stream=stream_ns,
        ExternalStream=lambda handle, index: _Stream(("external", handle, index)),
    )
    return fake


@pytest.fixture
def rec(monkeypatch):
    """A recording cupy; CPU tensors accepted as 'CUDA' ones; torch's stream is the null one."""
    r = _Recorder()
    monkeypatch.setitem(sys.modules, "cupy", _make_cupy(r))
    monkeypatch.setattr(_cupy, "_DEVICE_TYPES", ("cuda", "cpu", "meta"))
    r.stream_calls = []

    def current_stream(device=None):
        r.stream_calls.append(device)
        return types.SimpleNamespace(cuda_stream=0)

    _stand_in_stream(monkeypatch, current_stream)
    _cupy._kernels.clear()
    _cupy._streams.clear()
    yield r
    _cupy._kernels.clear()
    _cupy._streams.clear()


def _geom(n=2, nf=1, s=2, h=5, w=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    vec = (torch.rand(nf, s, 2, h, w, generator=g, dtype=torch.float64) * 6 - 3).to(dtype)
    mass = torch.rand(nf, s, h, w, generator=g, dtype=torch.float64).to(dtype)
    return vec, mass


def _img(n=2, c=3, h=5, w=6, seed=1, dtype=torch.float64):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _pattern(shape, dtype):
    return torch.arange(math.prod(shape), dtype=dtype).reshape(shape) + 1


# ------------------------------------------------------------------ run
@pytest.mark.parametrize("dtype, suf", [(torch.float32, "f32"), (torch.float64, "f64")])
@pytest.mark.parametrize("transpose", [False, True])
def test_run_launches_the_right_kernel_with_the_sources_argument_order(rec, dtype, suf, transpose):
    n, c, h, w, nf, s = 2, 3, 11, 37, 1, 2
    vec, mass = _geom(n, nf, s, h, w, dtype=torch.float32)  # float32 geometry: made float64
    x = _img(n, c, h, w, dtype=dtype)
    out = _cupy.run(x, vec, mass, 0.25, transpose)
    op = "adjoint" if transpose else "forward"
    assert [L["name"] for L in rec.launches] == [f"segment_{op}_{suf}"]
    L = rec.launches[0]
    bx, by, _ = _cupy.BLOCK
    assert L["block"] == _cupy.BLOCK
    assert L["grid"] == (math.ceil(w / bx), math.ceil(h / by), n)
    a = L["args"]
    img_in, img_out = ("g", "out") if transpose else ("x", "y")
    torch.testing.assert_close(a[img_in], x, atol=0, rtol=0)
    torch.testing.assert_close(a["vec"], vec.double(), atol=0, rtol=0)
    torch.testing.assert_close(a["mass"], mass.double(), atol=0, rtol=0)
    assert (a["N"], a["C"], a["H"], a["W"], a["Nf"], a["S"]) == (n, c, h, w, nf, s)
    assert a["beta"] == 0.25
    # the buffer the kernel wrote is the result (no copy)
    assert out.shape == x.shape and out.dtype == dtype
    torch.testing.assert_close(out, _pattern(x.shape, dtype), atol=0, rtol=0)
    assert out.data_ptr() == a[img_out].data_ptr()
    # CPU tensors have no index: device 0; torch's current stream of that device
    assert L["device"] == 0 and set(_cupy._kernels) == {0}
    assert rec.stream_calls == [0]


def test_run_makes_inputs_contiguous_and_detached(rec):
    n, c, h, w = 2, 2, 6, 5
    x = _img(n, c, w, h).transpose(2, 3).requires_grad_(True)  # (n, c, h, w), not contiguous
    assert not x.is_contiguous()
    vec, mass = _geom(n, n, 1, h, w)
    vec = vec.clone().requires_grad_(True)
    out = _cupy.run(x, vec, mass, 0.0, False)
    a = rec.launches[0]["args"]
    torch.testing.assert_close(a["x"], x.detach(), atol=0, rtol=0)
    assert a["Nf"] == n and not out.requires_grad


@pytest.mark.parametrize("transpose", [False, True])
def test_run_on_empty_input_launches_nothing(rec, transpose):
    vec, mass = _geom(1, 1, 1, 5, 6)
    out = _cupy.run(torch.zeros(0, 2, 5, 6), vec, mass, 0.0, transpose)
    assert out.shape == (0, 2, 5, 6)
    x = _img(1, 2, 5, 6)
    out = _cupy.run(x, vec[:, :0], mass[:, :0], 0.0, transpose)  # no segments: K = 0
    assert rec.launches == [] and rec.modules == []
    assert out.shape == x.shape and torch.all(out == 0)


def test_kernels_are_built_once_per_device_inside_its_context(rec):
    x = _img(1, 1, 4, 4)
    vec, mass = _geom(1, 1, 1, 4, 4)
    _cupy.run(x, vec, mass, 0.0, False)
    _cupy.run(x, vec, mass, 0.0, True)
    assert len(rec.modules) == 1
    mod = rec.modules[0]
    assert mod["code"] == CU_PATH.read_text() and tuple(mod["options"]) == _cupy.NVRTC_OPTIONS
    assert mod["device"] == 0  # compiled with device 0 current
    ks = _cupy.load(0)
    assert sorted(ks) == sorted(KERNELS) and all(k.name == n for n, k in ks.items())
    assert _cupy.load(0) is ks and len(rec.modules) == 1
    k1 = _cupy.load(1)
    assert len(rec.modules) == 2 and rec.modules[1]["device"] == 1
    assert all(k.device == 1 for k in k1.values()) and _cupy.load(1) is k1
    assert rec.events[-2:] == [("enter", "device", 1), ("exit", "device", 1)]


# ------------------------------------------------------------------ param_grad
@pytest.mark.parametrize("dtype, suf", [(torch.float32, "f32"), (torch.float64, "f64")])
@pytest.mark.parametrize("n, nf", [(2, 1), (2, 2), (1, 1), (3, 1)])
def test_param_grad_launch_and_batch_reduction(rec, dtype, suf, n, nf):
    c, h, w, s = 2, 9, 33, 2
    x, g = _img(n, c, h, w, seed=2, dtype=dtype), _img(n, c, h, w, seed=3, dtype=dtype)
    vec, mass = _geom(n, nf, s, h, w, dtype=dtype)
    gv, gm = _cupy.param_grad(x, g, vec, mass, 0.5)
    assert [L["name"] for L in rec.launches] == [f"segment_param_grad_{suf}"]
    L = rec.launches[0]
    assert L["grid"] == (math.ceil(w / _cupy.BLOCK[0]), math.ceil(h / _cupy.BLOCK[1]), n)
    a = L["args"]
    torch.testing.assert_close(a["x"], x, atol=0, rtol=0)
    torch.testing.assert_close(a["g"], g, atol=0, rtol=0)
    torch.testing.assert_close(a["vec"], vec.double(), atol=0, rtol=0)
    torch.testing.assert_close(a["mass"], mass.double(), atol=0, rtol=0)
    # the header's layouts: gvec (N, S, 2, H, W), gmass (N, S, H, W), double
    assert a["gvec"].shape == (n, s, 2, h, w) and a["gmass"].shape == (n, s, h, w)
    assert (a["N"], a["C"], a["H"], a["W"], a["Nf"], a["S"], a["beta"]) == (n, c, h, w, nf, s, 0.5)
    # per-image gradients, summed over the batch for a shared flow, in vec's/mass's dtype
    ref_v = _pattern((n, s, 2, h, w), torch.float64)
    ref_m = _pattern((n, s, h, w), torch.float64)
    if nf == 1:
        ref_v, ref_m = ref_v.sum(0, keepdim=True), ref_m.sum(0, keepdim=True)
    assert gv.dtype == vec.dtype and gm.dtype == mass.dtype
    torch.testing.assert_close(gv, ref_v.to(dtype), atol=0, rtol=0)
    torch.testing.assert_close(gm, ref_m.to(dtype), atol=0, rtol=0)


def test_param_grad_without_segments_or_pixels_launches_nothing(rec):
    x = _img(2, 1, 4, 5)
    vec, mass = _geom(2, 1, 0, 4, 5)
    gv, gm = _cupy.param_grad(x, x, vec, mass, 0.0)
    assert gv.shape == (1, 0, 2, 4, 5) and gm.shape == (1, 0, 4, 5)
    vec, mass = _geom(0, 1, 1, 4, 5)
    e = torch.zeros(0, 1, 4, 5, dtype=torch.float64)
    gv, gm = _cupy.param_grad(e, e, vec, mass, 0.0)
    assert rec.launches == []
    assert gv.shape == (0, 1, 2, 4, 5) and gm.shape == (0, 1, 4, 5)


def test_param_grad_checks_g(rec):
    x = _img(2, 3, 5, 6)
    vec, mass = _geom(2, 1, 1, 5, 6)
    with pytest.raises(TypeError, match=r"^g must be a torch\.Tensor, got ndarray$"):
        _cupy.param_grad(x, x.numpy(), vec, mass, 0.0)
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor, got ndarray$"):
        _cupy.param_grad(x.numpy(), x, vec, mass, 0.0)
    msg = r"^g must match x \(shape \(2, 3, 5, 6\), torch\.float64, cpu\), got %s$"
    with pytest.raises(ValueError, match=msg % r"\(2, 3, 5, 5\), torch\.float64, cpu"):
        _cupy.param_grad(x, x[..., :5], vec, mass, 0.0)
    with pytest.raises(ValueError, match=msg % r"\(2, 3, 5, 6\), torch\.float32, cpu"):
        _cupy.param_grad(x, x.float(), vec, mass, 0.0)
    with pytest.raises(ValueError, match=msg % r"\(2, 3, 5, 6\), torch\.float64, meta"):
        _cupy.param_grad(x, x.to("meta"), vec, mass, 0.0)
    with pytest.raises(ValueError, match=r"^vec must have shape"):
        _cupy.param_grad(x, x, vec[..., :5], mass, 0.0)
    assert rec.launches == []


# ------------------------------------------------------------------ checks and geometry
def test_check_messages(rec):
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor, got list$"):
        _cupy._check([1.0], "x")
    with pytest.raises(TypeError, match=r"^g must be float32 or float64, got dtype torch\.float16$"):
        _cupy._check(torch.zeros(1, 1, 2, 2, dtype=torch.float16), "g")
    with pytest.raises(TypeError, match=r"^x must be float32 or float64, got dtype torch\.int64$"):
        _cupy._check(torch.zeros(1, 1, 2, 2, dtype=torch.int64), "x")
    for shape in [(2, 2, 2), (1, 1, 1, 2, 2)]:
        with pytest.raises(ValueError, match=r"^x must have shape \(N, C, H, W\), got %s$" % re.escape(str(shape))):
            _cupy._check(torch.zeros(shape), "x")
    for dt in (torch.float32, torch.float64):
        assert _cupy._check(torch.zeros(1, 1, 2, 2, dtype=dt), "x") is None


class _OnCuda(torch.Tensor):
    """A CPU tensor that reports a CUDA device (the check only reads ``.device``)."""

    @property
    def device(self):
        return torch.device("cuda", 0)


def test_check_accepts_cuda_and_refuses_cpu_by_default():
    assert _cupy._DEVICE_TYPES == ("cuda",)
    assert _cupy._check(torch.Tensor._make_subclass(_OnCuda, torch.zeros(1, 1, 2, 2)), "x") is None
    with pytest.raises(ValueError, match=r"^x must be a CUDA tensor for the cupy path, got device cpu$"):
        _cupy._check(torch.zeros(1, 1, 2, 2), "x")
    with pytest.raises(ValueError, match=r"^g must be a CUDA tensor for the cupy path, got device meta$"):
        _cupy._check(torch.zeros(1, 1, 2, 2, device="meta"), "g")


def test_geometry_shapes_are_checked():
    x = torch.zeros(2, 3, 5, 6)
    msg = r"^vec must have shape \(1 or 2, S, 2, 5, 6\), got %s$"
    bad = [(2, 1, 2, 5), (2, 1, 2, 5, 6, 1), (2, 1, 3, 5, 6), (2, 1, 1, 5, 6), (2, 1, 2, 6, 6),
           (2, 1, 2, 5, 7), (2, 1, 2, 4, 6), (3, 1, 2, 5, 6), (0, 1, 2, 5, 6)]
    for shape in bad:
        with pytest.raises(ValueError, match=msg % re.escape(str(shape))):
            _cupy._geometry(x, torch.zeros(shape), torch.zeros(shape[:2] + (5, 6)))
    mmsg = r"^mass must have shape \(2, 4, 5, 6\) to match vec, got %s$"
    for shape in [(2, 3, 5, 6), (1, 4, 5, 6), (2, 4, 6, 5), (2, 4, 5, 6, 1), (2, 4, 5, 7)]:
        with pytest.raises(ValueError, match=mmsg % re.escape(str(shape))):
            _cupy._geometry(x, torch.zeros(2, 4, 2, 5, 6), torch.zeros(shape))


@pytest.mark.parametrize("nf", [1, 2])
def test_geometry_is_contiguous_detached_float64_on_xs_device(nf):
    x = torch.zeros(2, 3, 5, 6, dtype=torch.float32)
    vec, mass = _geom(2, nf, 3, 6, 5, dtype=torch.float32)
    vec = vec.transpose(3, 4).requires_grad_(True)  # (nf, 3, 2, 5, 6), not contiguous
    mass = mass.transpose(2, 3)
    v, m = _cupy._geometry(x, vec, mass)
    for got, ref in ((v, vec), (m, mass)):
        assert got.dtype == torch.float64 and got.is_contiguous() and not got.requires_grad
        assert got.device == x.device
        torch.testing.assert_close(got, ref.detach().double(), atol=0, rtol=0)
    v, m = _cupy._geometry(x.to("meta"), vec, mass)  # moved to x's device
    assert v.device.type == "meta" and m.device.type == "meta"


# ------------------------------------------------------------------ _launch: grid limits, device, stream
class _Arr:
    """An array on a chosen CUDA device: ``_launch`` only reads ``.device`` and ``data_ptr()``."""

    def __init__(self, t, device):
        self.t, self.device = t, device

    def data_ptr(self):
        return self.t.data_ptr()

    @property
    def dtype(self):
        return self.t.dtype

    def is_contiguous(self):
        return self.t.is_contiguous()


def _fake_arrays(index, dtype=torch.float64, n=1, c=1, h=2, w=3):
    dev = torch.device("cuda", index)
    x = torch.zeros(n, c, h, w, dtype=dtype)
    return [_Arr(x, dev), _Arr(torch.zeros(1, 1, 2, h, w, dtype=torch.float64), dev),
            _Arr(torch.zeros(1, 1, h, w, dtype=torch.float64), dev), _Arr(torch.zeros_like(x), dev)]


def test_launch_grid_limits(rec):
    rec.views = False  # the stand-in buffers are smaller than the launches name
    by = _cupy.BLOCK[1]
    arrays = _fake_arrays(0)
    ok = [(65535, 1), (1, 65535 * by)]
    for n, h in ok:
        _cupy._launch("segment_forward_f64", arrays, n, 1, h, 3, 1, 1, 0.0)
    assert [L["grid"][1:] for L in rec.launches] == [(1, 65535), (65535, 1)]
    with pytest.raises(ValueError, match=r"^x of shape \(65536, 1, 1, 3\) exceeds the CUDA grid "
                                         r"\(N <= 65535, H <= %d\)$" % (65535 * by)):
        _cupy._launch("segment_forward_f64", arrays, 65536, 1, 1, 3, 1, 1, 0.0)
    with pytest.raises(ValueError, match=r"^x of shape \(1, 1, %d, 3\) exceeds the CUDA grid" % (65535 * by + 1)):
        _cupy._launch("segment_forward_f64", arrays, 1, 1, 65535 * by + 1, 3, 1, 1, 0.0)
    assert len(rec.launches) == 2


def test_launch_on_a_second_device_uses_its_kernels_stream_and_context(rec, monkeypatch):
    rec.views = False
    calls = []

    def current_stream(device=None):
        calls.append(device)
        return types.SimpleNamespace(cuda_stream=0)

    _stand_in_stream(monkeypatch, current_stream)
    arrays = _fake_arrays(1)
    _cupy._launch("segment_adjoint_f64", arrays, 1, 1, 2, 3, 1, 1, 0.0)
    L = rec.launches[0]
    assert L["device"] == 1 and L["on_device"] == 1 and L["stream"] == ("null",)
    assert set(_cupy._kernels) == {1} and rec.modules[0]["device"] == 1
    assert calls == [1]


@pytest.mark.parametrize("odd", [0, 1, 2, 3])
def test_launch_refuses_buffers_on_another_device(rec, odd):
    rec.views = False
    arrays = _fake_arrays(0)
    arrays[odd] = _Arr(arrays[odd].t, torch.device("cuda", 1))
    first, other = ("cuda:1", "cuda:0") if odd == 0 else ("cuda:0", "cuda:1")
    with pytest.raises(ValueError, match=rf"^every buffer of segment_forward_f64 must be on {first}, got one on {other}$"):
        _cupy._launch("segment_forward_f64", arrays, 1, 1, 2, 3, 1, 1, 0.0)
    assert rec.launches == []


@pytest.mark.parametrize("name, dtypes", [
    ("segment_forward_f32", [torch.float32, torch.float64, torch.float64, torch.float32]),
    ("segment_adjoint_f64", [torch.float64] * 4),
    ("segment_param_grad_f32", [torch.float32, torch.float32] + [torch.float64] * 4),
])
def test_launch_checks_each_buffers_dtype_and_layout(rec, name, dtypes):
    rec.views = False
    dev = torch.device("cuda", 0)
    good = [_Arr(torch.zeros(2, 3, dtype=dt), dev) for dt in dtypes]
    _cupy._launch(name, good, 1, 1, 2, 3, 1, 1, 0.0)  # the right types: launched
    assert len(rec.launches) == 1
    for k, dt in enumerate(dtypes):
        other = torch.float64 if dt == torch.float32 else torch.float32
        bad = list(good)
        bad[k] = _Arr(torch.zeros(2, 3, dtype=other), dev)
        with pytest.raises(ValueError, match=rf"^buffer {k} of {name} must be a contiguous {dt} tensor, got {other}$"):
            _cupy._launch(name, bad, 1, 1, 2, 3, 1, 1, 0.0)
        bad[k] = _Arr(torch.zeros(3, 2, dtype=dt).t(), dev)
        with pytest.raises(ValueError, match=rf"^buffer {k} of {name} must be a contiguous {dt} tensor, got {dt}, "
                                             r"not contiguous$"):
            _cupy._launch(name, bad, 1, 1, 2, 3, 1, 1, 0.0)
    assert len(rec.launches) == 1


def test_raw_stream_reads_torchs_handle_without_a_stream_object(monkeypatch):
    asked = []
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda i: asked.append(i) or 4321, raising=False)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: pytest.fail("made a Stream object"))
    assert _cupy._raw_stream(2) == 4321 and asked == [2]
    monkeypatch.delattr(torch._C, "_cuda_getCurrentRawStream")
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda device=None: asked.append(("stream", device)) or types.SimpleNamespace(cuda_stream=77))
    assert _cupy._raw_stream(1) == 77 and asked[-1] == ("stream", 1)  # torch builds without the raw getter


def test_launch_passes_each_buffers_own_pointer(rec):
    rec.views = False
    arrays = _fake_arrays(0)
    _cupy._launch("segment_forward_f64", arrays, 1, 1, 2, 3, 1, 1, 0.0)
    a = rec.launches[0]["args"]
    assert [int(a[k]) for k in ("x", "vec", "mass", "y")] == [t.data_ptr() for t in arrays]
    assert len({int(a[k]) for k in ("x", "vec", "mass", "y")}) == 4


@pytest.mark.parametrize("from_external", [True, False])
def test_launch_runs_on_torchs_current_stream(monkeypatch, from_external):
    r = _Recorder()
    r.views = False
    monkeypatch.setitem(sys.modules, "cupy", _make_cupy(r, from_external=from_external))
    calls = []

    def current_stream(device=None):
        calls.append(device)
        return types.SimpleNamespace(cuda_stream=1234)

    _stand_in_stream(monkeypatch, current_stream)
    _cupy._kernels.clear()
    _cupy._streams.clear()
    try:
        for _ in range(3):
            _cupy._launch("segment_forward_f32", _fake_arrays(2, torch.float32), 1, 1, 2, 3, 1, 1, 0.0)
        cached = dict(_cupy._streams)
    finally:
        _cupy._kernels.clear()
        _cupy._streams.clear()
    got = [L["stream"] for L in r.launches]
    if from_external:  # CuPy >= 14 wraps the handle through the CUDA stream protocol
        want = ("from_external", (0, 1234))
    else:  # older CuPy: the raw handle on the tensor's device
        want = ("external", 1234, 2)
    assert got == [want] * 3 and r.launches[0]["on_device"] == 2
    # the stream object is made once per (device, handle), not once per launch
    assert r.external == [("null",), want] and list(cached) == [(2, 1234)]
    assert calls == [2, 2, 2]


def test_a_non_default_stream_handle_is_not_the_null_stream(rec, monkeypatch):
    rec.views = False
    for handle, expect in ((0, ("null",)), (1, ("from_external", (0, 1))), (7, ("from_external", (0, 7))),
                           (0, ("null",)), (1, ("from_external", (0, 1)))):
        _stand_in_stream(monkeypatch, lambda device=None: types.SimpleNamespace(cuda_stream=handle))
        _cupy._launch("segment_forward_f64", _fake_arrays(0), 1, 1, 2, 3, 1, 1, 0.0)
        assert rec.launches[-1]["stream"] == expect
    assert rec.external.count(("from_external", (0, 1))) == 1  # cached


def test_a_cupy_that_refuses_the_handle_object_gets_the_raw_handle(rec, monkeypatch):
    rec.views = False

    def refuse(obj):
        raise TypeError("expected a cupy-compatible stream")

    monkeypatch.setattr(sys.modules["cupy"].cuda.Stream, "from_external", refuse)
    _stand_in_stream(monkeypatch, lambda device=None: types.SimpleNamespace(cuda_stream=99))
    _cupy._launch("segment_forward_f64", _fake_arrays(3), 1, 1, 2, 3, 1, 1, 0.0)
    assert rec.launches[-1]["stream"] == ("external", 99, 3)


def test_stream_cache_is_bounded(rec, monkeypatch):
    rec.views = False
    for handle in range(1, _cupy._MAX_STREAMS + 6):
        _stand_in_stream(monkeypatch, lambda device=None: types.SimpleNamespace(cuda_stream=handle))
        _cupy._launch("segment_forward_f64", _fake_arrays(0), 1, 1, 2, 3, 1, 1, 0.0)
        assert rec.launches[-1]["stream"] == ("from_external", (0, handle))
        assert 0 < len(_cupy._streams) <= _cupy._MAX_STREAMS


# ------------------------------------------------------------------ load errors
def test_load_argument_type():
    for bad, name in ((True, "bool"), ("0", "str"), (0.0, "float"), (None, "NoneType")):
        with pytest.raises(TypeError, match=r"^device_index must be an int, got %s$" % name):
            _cupy.load(bad)


def test_load_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    _cupy._kernels.clear()
    msg = r"^CuPy is not importable \((ModuleNotFound|Import)Error: import of cupy halted"
    with pytest.raises(_cupy.CupyUnavailableError, match=msg) as info:
        _cupy.load(0)
    assert isinstance(info.value.__cause__, ImportError)
    assert isinstance(info.value, RuntimeError)


class _BrokenFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "cupy":
            raise OSError("libcudart.so.12: cannot open shared object file")
        return None


def test_load_with_a_broken_cupy_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_BrokenFinder()] + sys.meta_path)
    _cupy._kernels.clear()
    msg = r"^CuPy is not importable \(OSError: libcudart\.so\.12: cannot open shared object file\)$"
    with pytest.raises(_cupy.CupyUnavailableError, match=msg):
        _cupy.load(0)


def test_load_build_failure_is_reported_and_not_cached(monkeypatch):
    r = _Recorder()
    monkeypatch.setitem(sys.modules, "cupy", _make_cupy(r, fail=RuntimeError("nvrtc: error: invalid option")))
    _cupy._kernels.clear()
    try:
        with pytest.raises(_cupy.CupyUnavailableError,
                           match=r"^could not build the CUDA kernels of segment_blur\.cu on device 3 "
                                 r"\(RuntimeError: nvrtc: error: invalid option\)$") as info:
            _cupy.load(3)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert _cupy._kernels == {}
        assert r.events == [("enter", "device", 3), ("exit", "device", 3)]  # tried on that device
        monkeypatch.setitem(sys.modules, "cupy", _make_cupy(r))
        assert sorted(_cupy.load(3)) == sorted(KERNELS)  # a later call retries
    finally:
        _cupy._kernels.clear()


# ------------------------------------------------------------------ segment_blur_cupy and autograd
def test_segment_blur_cupy_forward_adjoint_and_backward_launches(rec):
    x = _img(2, 2, 4, 5).requires_grad_(True)
    vec, mass = _geom(2, 2, 1, 4, 5)
    vec.requires_grad_(True)
    mass.requires_grad_(True)
    y = _cupy.segment_blur_cupy(x, vec, mass, 0)  # transpose defaults to False; int beta
    assert [L["name"] for L in rec.launches] == ["segment_forward_f64"]
    assert type(rec.launches[0]["args"]["beta"]) is np.float64
    y.sum().backward()
    names = [L["name"] for L in rec.launches]
    assert names[0] == "segment_forward_f64" and sorted(names[1:]) == ["segment_adjoint_f64", "segment_param_grad_f64"]
    # the image gradient is the adjoint kernel's output buffer, the flow ones param_grad's
    torch.testing.assert_close(x.grad, _pattern(x.shape, torch.float64), atol=0, rtol=0)
    torch.testing.assert_close(mass.grad, _pattern((2, 1, 4, 5), torch.float64), atol=0, rtol=0)
    rec.launches.clear()
    yt = _cupy.segment_blur_cupy(x.detach(), vec.detach(), mass.detach(), 0.5, transpose=1)
    assert [L["name"] for L in rec.launches] == ["segment_adjoint_f64"] and yt.shape == x.shape
    assert _cupy._CupyKernels.run is _cupy.run and _cupy._CupyKernels.param_grad is _cupy.param_grad


# ------------------------------------------------------------------ survivors of the first mutation run
@pytest.mark.parametrize("w, h", [(64, 16), (31, 7), (32, 8), (33, 9), (1, 1)])
def test_grid_is_one_thread_per_pixel_rounded_up_to_whole_blocks(rec, w, h):
    bx, by, _ = _cupy.BLOCK
    vec, mass = _geom(2, 1, 1, h, w)
    _cupy.run(_img(2, 1, h, w), vec, mass, 0.0, False)
    _cupy.param_grad(_img(2, 1, h, w), _img(2, 1, h, w), vec, mass, 0.0)
    for L in rec.launches:
        gx, gy, gz = L["grid"]
        assert (gx - 1) * bx < w <= gx * bx and (gy - 1) * by < h <= gy * by and gz == 2, (w, h, L["grid"])


def test_run_names_x_in_its_errors():
    x = torch.zeros(1, 1, 4, 4)
    v, m = torch.zeros(1, 1, 2, 4, 4), torch.ones(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"^x must be a CUDA tensor for the cupy path, got device cpu$"):
        _cupy.run(x, v, m, 0.0, False)
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor, got ndarray$"):
        _cupy.run(x.numpy(), v, m, 0.0, True)


@pytest.mark.parametrize("transpose", [False, True])
def test_run_passes_the_segment_count(rec, transpose):
    for s in (1, 3, 4):  # S = 2 would hide reading the vector axis (always 2)
        vec, mass = _geom(2, 2, s, 5, 6)
        _cupy.run(_img(2, 1, 5, 6), vec, mass, 0.0, transpose)
        assert rec.launches[-1]["args"]["S"] == s and rec.launches[-1]["args"]["Nf"] == 2


def test_outputs_are_allocated_on_xs_device_not_the_default_one(rec):
    # With another default device, every buffer handed to the kernel must still be on x's.
    x, g = _img(2, 1, 4, 5, seed=4), _img(2, 1, 4, 5, seed=5)
    vec, mass = _geom(2, 1, 3, 4, 5)
    with torch.device("meta"):
        _cupy.run(x, vec, mass, 0.0, False)
        _cupy.run(x, vec, mass, 0.0, True)
        gv, gm = _cupy.param_grad(x, g, vec, mass, 0.0)
    for L in rec.launches:
        for name, a in L["args"].items():
            if isinstance(a, torch.Tensor):
                assert a.device == x.device, (L["name"], name, a.device)
    assert gv.device == x.device and gm.device == x.device


def test_segment_blur_cupy_passes_beta_as_a_float(rec):
    vec, mass = _geom(1, 1, 1, 4, 5)
    for beta in (0.5, 1, np.float32(0.25)):
        _cupy.segment_blur_cupy(_img(1, 1, 4, 5), vec, mass, beta)
        b = rec.launches[-1]["args"]["beta"]
        assert type(b) is np.float64 and b == float(beta)
