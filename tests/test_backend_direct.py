"""Array-module dispatch (``pnpdeblur.backend``) called directly on tiny arrays.

Every public function is checked against hand-built expectations: which arrays share memory
(zero-copy views) and which are copies, the dtype and layout each returns, each error message
from its start (so that an error names the right argument), and the CuPy probes through
stand-in modules (no CuPy or GPU here).
"""
import importlib.util
import re
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from pnpdeblur import backend
from pnpdeblur.backend import (
    _host_kind,
    _set_cupy_kernel_error,
    array_kind,
    check_finite,
    check_float,
    cupy_available,
    cupy_kernel_error,
    cupy_status,
    from_torch,
    host_image_batch,
    image_channel_axis,
    info,
    to_host_numpy,
    to_torch,
)

from _fakes import FakeCupyArray


class DLPackCupyArray:
    """Stands in for a ``cupy.ndarray`` that torch reads through DLPack (host memory here)."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _fake_cupy(n_devices=1, count_error=None, version="13.0"):
    """A stand-in ``cupy`` module: ``cuda.runtime.getDeviceCount`` and ``from_dlpack``."""
    mod = types.ModuleType("cupy")

    def count():
        if count_error is not None:
            raise count_error
        return n_devices

    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    mod.from_dlpack = lambda t: ("cupy-from-dlpack", t)
    if version is not None:
        mod.__version__ = version
    return mod


@pytest.fixture
def fresh_status():
    cupy_status.cache_clear()
    yield
    cupy_status.cache_clear()


# -- array_kind / _host_kind -----------------------------------------------------------


def test_array_kind_names_each_type():
    assert array_kind(torch.zeros(1)) == "torch"
    assert array_kind(np.zeros(1)) == "numpy"
    assert array_kind(FakeCupyArray(np.zeros(1))) == "cupy"


@pytest.mark.parametrize("bad, tname", [([1.0], "list"), (1.5, "float"), (None, "NoneType")])
def test_array_kind_rejects_non_arrays(bad, tname):
    with pytest.raises(TypeError, match=rf"^img must be an array \(numpy\.ndarray, torch\.Tensor or "
                                        rf"cupy\.ndarray\), got {tname}$"):
        array_kind(bad, "img")
    with pytest.raises(TypeError, match=rf"^x must be an array .*got {tname}$"):
        array_kind(bad)


def test_array_kind_reads_the_top_level_module_only():
    class NotCupy:
        __module__ = "mycupy.core"  # 'cupy' must be the first dotted part, not a substring

    with pytest.raises(TypeError, match=r"^x must be an array"):
        array_kind(NotCupy())


def test_host_kind_accepts_array_likes_as_numpy():
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.ones((2, 2))

    assert _host_kind(ArrayLike(), "img") == "numpy"
    assert _host_kind(torch.zeros(1), "img") == "torch"
    assert _host_kind(np.zeros(1), "img") == "numpy"
    # a cupy array's __array__ raises, so it must be recognised before the __array__ branch
    assert _host_kind(FakeCupyArray(np.zeros(1)), "img") == "cupy"
    with pytest.raises(TypeError, match=r"^img must be a numpy array, torch tensor or cupy array, got list$"):
        _host_kind([1.0], "img")


# -- check_float / check_finite --------------------------------------------------------


def test_check_float_accepts_float32_and_float64_only():
    check_float(torch.zeros(1, dtype=torch.float32), "w")
    check_float(torch.zeros(1, dtype=torch.float64), "w")
    half = " (convert half precision to float32 first)"
    integer = " (convert it to float32 first; an 8-bit image also needs dividing by 255)"
    for dt, name, hint in ((torch.float16, "float16", half), (torch.bfloat16, "bfloat16", half),
                           (torch.int64, "int64", integer), (torch.uint8, "uint8", integer),
                           (torch.bool, "bool", integer), (torch.complex64, "complex64", "")):
        with pytest.raises(TypeError, match=f"^w must be float32 or float64, got dtype {re.escape(name + hint)}$"):
            check_float(torch.zeros(1, dtype=dt), "w")


def test_solvers_and_operators_name_a_numpy_dtype_as_numpy_spells_it():
    import pnpdeblur as pd
    from pnpdeblur import priors, solvers

    K = pd.MotionBlur(np.zeros((2, 6, 7), np.float32))
    photo = np.zeros((6, 7, 3), np.uint8)
    for call, name in ((lambda: K(photo), "x"), (lambda: solvers.hqs(photo, K, priors.TV(), 0.01), "y")):
        with pytest.raises(TypeError, match=rf"^{name} must be float32 or float64, got dtype uint8 \(convert it to "
                                            r"float32 first; an 8-bit image also needs dividing by 255\)$"):
            call()
    with pytest.raises(TypeError, match=r"^flow must be float32 or float64, got dtype int64 \(convert it"):
        pd.MotionBlur(np.zeros((2, 6, 7), np.int64))


def test_a_flow_or_weights_of_integers_are_not_told_to_divide_by_255():
    # a flow is in pixels and weights are in [0, 1] by definition: the 8-bit image advice would mislead
    import pnpdeblur as pd
    from pnpdeblur import priors, solvers

    with pytest.raises(TypeError, match=r"^flow must be float32 or float64, got dtype int32 \(convert it to float32 "
                                        r"first\)$"):
        pd.MotionBlur(np.zeros((2, 6, 7), np.int32))
    K = pd.MotionBlur(np.zeros((2, 6, 7), np.float32))
    y = np.zeros((6, 7, 3), np.float32)
    with pytest.raises(TypeError, match=r"^weights must be float32 or float64, got dtype uint8 \(convert it to "
                                        r"float32 first\)$"):
        solvers.hqs(y, K, priors.TV(), 0.01, weights=np.ones((6, 7, 3), np.uint8))
    with pytest.raises(TypeError, match=r"^w must be float32 or float64, got dtype int64 \(convert it to float32 "
                                        r"first\)$"):
        check_float(torch.zeros(1, dtype=torch.int64), "w", image=False)


def test_check_finite():
    check_finite(torch.tensor([0.0, -1e300, 1e300], dtype=torch.float64), "w")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match=r"^w contains NaN or Inf values$"):
            check_finite(torch.tensor([0.0, bad]), "w")


# -- to_torch / from_torch -------------------------------------------------------------


def test_to_torch_returns_a_torch_tensor_itself():
    t = torch.zeros(2)
    assert to_torch(t) is t


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
@pytest.mark.parametrize("order", ["C", "F"])
def test_to_torch_views_writeable_contiguous_numpy(dtype, order):
    a = np.zeros((3, 4), dtype=dtype, order=order)
    t = to_torch(a)
    a[1, 2] = 7  # a view: the tensor sees the caller's write
    assert t[1, 2].item() == 7
    assert t.shape == (3, 4) and t.numpy().dtype == np.dtype(dtype)


def test_to_torch_copies_read_only_numpy_to_a_contiguous_writeable_tensor():
    a = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on from_numpy of a read-only array
        t = to_torch(a)
    assert not np.shares_memory(t.numpy(), a)
    assert t.is_contiguous()  # order="C": a C-contiguous copy
    np.testing.assert_array_equal(t.numpy(), a)
    t[0, 0] = 5.0  # writeable
    assert a[0, 0] == 0.0


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.complex64])
def test_to_torch_keeps_every_numeric_numpy_dtype(dtype):
    a = np.ones((2, 3), dtype=dtype)
    t = to_torch(a)
    assert t.numpy().dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("dtype", ["U1", object, "datetime64[s]", "timedelta64[s]", "V4", "S2"])
def test_to_torch_refuses_non_numeric_numpy_naming_the_argument(dtype):
    a = np.zeros((2, 3), dtype=dtype)
    with pytest.raises(TypeError, match="^" + re.escape(f"img must be a numeric array, got numpy dtype {a.dtype}") + "$"):
        to_torch(a, "img")


def test_to_torch_copies_non_contiguous_numpy():
    base = np.arange(20.0).reshape(4, 5)
    a = base[::-1, ::2]  # negative strides: torch.from_numpy refuses them
    t = to_torch(a)
    np.testing.assert_array_equal(t.numpy(), a)
    assert t.is_contiguous()


def test_to_torch_converts_non_native_byte_order():
    a = np.arange(6.0).reshape(2, 3).astype(">f8" if sys.byteorder == "little" else "<f8")
    t = to_torch(a, "img")
    assert t.dtype == torch.float64
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3))


def test_to_torch_reads_cupy_through_dlpack():
    a = np.arange(6.0).reshape(2, 3)
    t = to_torch(DLPackCupyArray(a), "img")
    a[0, 1] = 9.0  # zero-copy
    assert isinstance(t, torch.Tensor) and t[0, 1].item() == 9.0


def test_to_torch_rejects_lists_naming_the_argument():
    with pytest.raises(TypeError, match=r"^img must be an array"):
        to_torch([1.0], "img")
    with pytest.raises(TypeError, match=r"^x must be an array"):
        to_torch([1.0])


def test_from_torch_by_kind(monkeypatch):
    t = torch.arange(4.0, requires_grad=True) * 2  # needs detach for numpy
    assert from_torch(t, "torch") is t
    a = from_torch(t, "numpy")
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, [0.0, 2.0, 4.0, 6.0])
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy())
    tag, passed = from_torch(t, "cupy")
    assert tag == "cupy-from-dlpack" and not passed.requires_grad
    torch.testing.assert_close(passed, t.detach())
    with pytest.raises(ValueError, match=r"^unknown array kind 'jax'$"):
        from_torch(t, "jax")


# -- image_channel_axis / to_host_numpy / host_image_batch -----------------------------


def test_image_channel_axis_message():
    with pytest.raises(ValueError, match=r"^kind must be 'numpy', 'torch' or 'cupy', got 'jax'$"):
        image_channel_axis("jax")
    assert image_channel_axis("cupy") == -1


def test_to_host_numpy_dtypes_and_sources():
    a = np.arange(6, dtype=np.int16)
    assert to_host_numpy(a) is a or np.shares_memory(to_host_numpy(a), a)
    out = to_host_numpy(torch.tensor([1.5, 2.5], dtype=torch.float16))
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.5]
    out = to_host_numpy(torch.tensor([True, False]))
    assert out.dtype == np.bool_ and out.tolist() == [True, False]
    out = to_host_numpy(torch.tensor([3, 250], dtype=torch.uint8))
    assert out.dtype == np.uint8 and out.tolist() == [3, 250]
    out = to_host_numpy(FakeCupyArray(np.array([[1.0, 2.0]])))  # .get(), never np.asarray
    assert out.tolist() == [[1.0, 2.0]]

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.array([4, 5], dtype=np.int32)

    out = to_host_numpy(ArrayLike())
    assert out.dtype == np.int32 and out.tolist() == [4, 5]


def test_to_host_numpy_resolves_a_negative_view():
    # the imaginary part of a conjugate view carries torch's neg bit; numpy() refuses it
    z = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex128).conj()
    im = z.imag
    assert im.is_neg() and im.dtype == torch.float64  # .double() is then a no-op
    np.testing.assert_array_equal(to_host_numpy(im), [-2.0, 1.0])


@pytest.mark.parametrize("bad, dt", [
    (np.array([1 + 1j]), "complex128"),
    (np.array(["a"]), "<U1"),
    (np.array([None]), "object"),
    (np.array([1], dtype="m8[s]"), "timedelta64\\[s\\]"),
])
def test_to_host_numpy_rejects_non_real_dtypes(bad, dt):
    with pytest.raises(TypeError, match=rf"^img must have a real numeric dtype, got {dt}$"):
        to_host_numpy(bad, "img")


def test_to_host_numpy_messages():
    with pytest.raises(TypeError, match=r"^img must have a real numeric dtype, got torch\.complex64$"):
        to_host_numpy(torch.ones(2, dtype=torch.complex64), "img")
    with pytest.raises(ValueError, match=r"^img is empty \(shape \(0, 3\)\)$"):
        to_host_numpy(np.zeros((0, 3)), "img")
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match=r"^img contains NaN or Inf$"):
            to_host_numpy(np.array([0.0, bad], dtype=np.float32), "img")
    with pytest.raises(TypeError, match=r"^x must be a numpy array"):
        to_host_numpy([1.0])
    # integers and bools have no NaN: accepted whatever their values
    assert to_host_numpy(np.array([-5, 7])).tolist() == [-5, 7]


def _hand_nchw(hwc):
    h, w, c = hwc.shape
    out = np.empty((1, c, h, w), hwc.dtype)
    for k in range(c):
        out[0, k] = hwc[:, :, k]
    return out


def test_host_image_batch_by_kind_and_override():
    hwc = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)  # H=2, W=3, C=4 (all distinct)
    ref = _hand_nchw(hwc)
    np.testing.assert_array_equal(host_image_batch(hwc), ref)
    np.testing.assert_array_equal(host_image_batch(FakeCupyArray(hwc)), ref)
    chw = torch.from_numpy(ref[0].copy())
    np.testing.assert_array_equal(host_image_batch(chw), ref)
    for ax in (0, -3):
        np.testing.assert_array_equal(host_image_batch(ref[0], channel_axis=ax), ref)
    for ax in (2, -1):
        np.testing.assert_array_equal(host_image_batch(chw.permute(1, 2, 0), channel_axis=ax), ref)
    np.testing.assert_array_equal(host_image_batch(hwc, channel_axis=np.int64(-1)), ref)
    # channel axis 1 of a 3-D array: (H, C, W)
    hcw = np.ascontiguousarray(hwc.transpose(0, 2, 1))
    np.testing.assert_array_equal(host_image_batch(hcw, channel_axis=1), ref)


def test_host_image_batch_4d_and_2d():
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    assert host_image_batch(nchw) is nchw or np.shares_memory(host_image_batch(nchw), nchw)
    np.testing.assert_array_equal(host_image_batch(nchw), nchw)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
    for ax in (3, -1):
        np.testing.assert_array_equal(host_image_batch(nhwc, channel_axis=ax), nchw)
    nhcw = np.ascontiguousarray(nchw.transpose(0, 2, 1, 3))
    for ax in (2, -2):
        np.testing.assert_array_equal(host_image_batch(nhcw, channel_axis=ax), nchw)
    for ax in (1, -3):
        np.testing.assert_array_equal(host_image_batch(nchw, channel_axis=ax), nchw)
    grey = np.arange(6.0).reshape(2, 3)
    out = host_image_batch(grey)
    assert out.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(out[0, 0], grey)


@pytest.mark.parametrize("ax", [0, -4, 4, -5, 8])
def test_host_image_batch_4d_rejects_the_batch_axis(ax):
    with pytest.raises(ValueError, match=rf"^channel_axis={ax} is not a non-batch axis of img with shape "
                                         rf"\(2, 3, 4, 5\)$"):
        host_image_batch(np.zeros((2, 3, 4, 5)), "img", channel_axis=ax)


@pytest.mark.parametrize("ax", [3, -4])
def test_host_image_batch_3d_rejects_out_of_range(ax):
    with pytest.raises(ValueError, match=rf"^channel_axis={ax} is out of range for img with shape \(3, 4, 5\)$"):
        host_image_batch(np.zeros((3, 4, 5)), "img", channel_axis=ax)


def test_host_image_batch_messages():
    with pytest.raises(TypeError, match=r"^channel_axis must be an int or None, got bool$"):
        host_image_batch(np.zeros((3, 4, 5)), "img", channel_axis=True)
    with pytest.raises(TypeError, match=r"^channel_axis must be an int or None, got float$"):
        host_image_batch(np.zeros((3, 4, 5)), "img", channel_axis=1.0)
    with pytest.raises(TypeError, match=r"^channel_axis must be an int or None, got float$"):
        host_image_batch(np.zeros((4, 5)), "img", channel_axis=1.0)  # checked before the 2-D rule
    with pytest.raises(ValueError, match=r"^channel_axis must be None for a 2-D \(grey\) img, got 0$"):
        host_image_batch(np.zeros((4, 5)), "img", channel_axis=0)
    for shape in [(5,), (1, 1, 1, 1, 1)]:
        with pytest.raises(ValueError, match=r"^img must be \(H, W\), a 3-D image or \(N, C, H, W\), got shape "
                                             + rf"\({shape[0]},"):
            host_image_batch(np.zeros(shape), "img")
    with pytest.raises(ValueError, match=r"^x is empty"):
        host_image_batch(np.zeros((0, 4)))
    with pytest.raises(TypeError, match=r"^x must be a numpy array"):
        host_image_batch([[1.0]])


# -- CuPy probes -----------------------------------------------------------------------


def test_cupy_status_not_installed(monkeypatch, fresh_status):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert cupy_status() == (False, "CuPy is not installed")
    assert cupy_available() is False


def test_cupy_status_find_spec_error(monkeypatch, fresh_status):
    def boom(name, *a):
        raise ValueError("cupy.__spec__ is None")

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", boom)
    assert cupy_status() == (False, "CuPy is not importable (ValueError: cupy.__spec__ is None)")


def test_cupy_status_import_error(monkeypatch, fresh_status):
    monkeypatch.setitem(sys.modules, "cupy", None)  # in sys.modules, but `import cupy` raises
    ok, reason = cupy_status()
    assert ok is False and reason == ("CuPy is not importable (ModuleNotFoundError: "
                                  "import of cupy halted; None in sys.modules)")


def test_cupy_status_import_error_after_find_spec(monkeypatch, fresh_status):
    # installed (find_spec answers) but broken: the import raises
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__

    def fake_import(name, *a, **k):
        if name == "cupy":
            raise RuntimeError("CUDA driver mismatch")
        return real_import(name, *a, **k)

    monkeypatch.setattr("builtins.__import__", fake_import)
    assert cupy_status() == (False, "CuPy is not importable (RuntimeError: CUDA driver mismatch)")


def test_cupy_status_device_count_error(monkeypatch, fresh_status):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(count_error=RuntimeError("no driver")))
    assert cupy_status() == (False, "CuPy found no usable CUDA device (RuntimeError: no driver)")


@pytest.mark.parametrize("n", [0, -1])
def test_cupy_status_no_device(monkeypatch, fresh_status, n):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(n_devices=n))
    assert cupy_status() == (False, "CuPy found no CUDA device")


def test_cupy_status_ready(monkeypatch, fresh_status):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(n_devices=1, version="13.1"))
    assert cupy_status() == (True, "CuPy 13.1, 1 device(s)")
    assert cupy_available() is True
    cupy_available.cache_clear()  # the same cache: re-probes
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(n_devices=2, version=None))
    assert cupy_status() == (True, "CuPy ?, 2 device(s)")


def test_cupy_kernel_error_is_set_and_cleared():
    assert cupy_kernel_error() is None
    try:
        _set_cupy_kernel_error("NVRTC missing")
        assert cupy_kernel_error() == "NVRTC missing"
        assert backend._CUPY_KERNEL_ERROR == "NVRTC missing"
    finally:
        _set_cupy_kernel_error(None)
    assert cupy_kernel_error() is None


@pytest.mark.parametrize("numba_ok", [True, False])
@pytest.mark.parametrize("cuda", [True, False])
@pytest.mark.parametrize("cupy_ok", [True, False])
def test_info_paths(monkeypatch, numba_ok, cuda, cupy_ok):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if numba_ok else None) if name == "numba"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(backend, "cupy_status",
                        lambda: (True, "CuPy 13, 1 device(s)") if cupy_ok else (False, "CuPy is not installed"))
    d = info()
    assert d == {
        "torch": torch.__version__,
        "torch_cuda": cuda,
        "cupy": cupy_ok,
        "cupy_reason": "CuPy 13, 1 device(s)" if cupy_ok else "CuPy is not installed",
        "numba": numba_ok,
        "cpu_path": "numba" if numba_ok else "torch",
        "cuda_path": ("cupy" if cupy_ok else "torch") if cuda else None,
    }


def test_info_after_a_kernel_build_failure(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend, "cupy_status", lambda: (True, "CuPy 13, 1 device(s)"))
    monkeypatch.setattr(backend, "_CUPY_KERNEL_ERROR", "NVRTC missing")
    d = info()
    assert d["cupy"] is False and d["cuda_path"] == "torch"
    assert d["cupy_reason"] == "CuPy kernels could not be built: NVRTC missing"
    # a kernel error with no CuPy keeps CuPy's own reason
    monkeypatch.setattr(backend, "cupy_status", lambda: (False, "CuPy is not installed"))
    assert info()["cupy_reason"] == "CuPy is not installed"


# -- what the first mutation run of this module showed ----------------------------------


def test_to_torch_copies_a_read_only_c_contiguous_array():
    # np.array(..., copy=None) would return the read-only array itself (torch warns, shares it)
    a = np.arange(6.0).reshape(2, 3)
    a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_torch(a)
    assert not np.shares_memory(t.numpy(), a)
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("dt", [">f4", ">u2", ">i8"])
def test_to_torch_byte_order_keeps_the_dtype(dt):
    dt = np.dtype(dt)
    if sys.byteorder == "big":
        dt = dt.newbyteorder("<")
    a = np.array([[1, 2, 300]]).astype(dt)
    t = to_torch(a)
    native = dt.newbyteorder("=")
    assert t.numpy().dtype == native  # same kind and width, native byte order
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 300]])


def test_host_image_batch_names_the_argument_in_value_errors():
    with pytest.raises(ValueError, match=r"^img is empty \(shape \(0, 4\)\)$"):
        host_image_batch(np.zeros((0, 4)), "img")
    with pytest.raises(ValueError, match=r"^img contains NaN or Inf$"):
        host_image_batch(np.array([[np.nan, 0.0]]), "img")
    with pytest.raises(TypeError, match=r"^img must have a real numeric dtype, got complex128$"):
        host_image_batch(np.zeros((2, 2), complex), "img")


def test_cupy_status_asks_for_cupy_by_name(monkeypatch, fresh_status):
    # only the name "cupy" is "not installed"; any other name would find a module and go on
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cupy" else object())
    assert cupy_status() == (False, "CuPy is not installed")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_come_to_the_host():
    # on a CPU-only machine `.to("cpu")` → `.to(None)` cannot be told apart; on a GPU it can
    t = torch.tensor([[1.0, 2.0]], device="cuda")
    a = to_host_numpy(t)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.tolist() == [[1.0, 2.0]]
    b = from_torch(t, "numpy")
    assert isinstance(b, np.ndarray) and b.tolist() == [[1.0, 2.0]]
    assert from_torch(t, "torch").device.type == "cuda"


# -- resolve_device ------------------------------------------------------------------------
def test_resolve_device_keeps_none_and_parses_names():
    assert backend.resolve_device(None) is None
    assert backend.resolve_device("cpu") == torch.device("cpu")
    assert backend.resolve_device(torch.device("meta")) == torch.device("meta")


@pytest.mark.parametrize("device, exc, pattern", [
    ("gpu", ValueError, r"^device='gpu' is not a torch device \("),
    (5, TypeError, r"^device must be a str such as 'cpu' or 'cuda', a torch\.device or None, got int$"),
    (["cpu"], TypeError, r"^device must be a str .* got list$"),
])
def test_resolve_device_refuses_what_is_not_a_device(device, exc, pattern):
    with pytest.raises(exc, match=pattern):
        backend.resolve_device(device)


def test_resolve_device_refuses_cuda_without_cuda_and_an_index_beyond_the_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0", torch.device("cuda", 1)):
        with pytest.raises(ValueError, match=r"CUDA is not available to this torch \(" + re.escape(torch.__version__)):
            backend.resolve_device(spec, "where")
    with pytest.raises(ValueError, match=r"^where='cuda': "):
        backend.resolve_device("cuda", "where")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert backend.resolve_device("cuda") == torch.device("cuda")
    assert backend.resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"^device='cuda:2': only 2 CUDA device\(s\) are visible$"):
        backend.resolve_device("cuda:2")


def test_resolve_device_refuses_mps_where_it_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device='mps': MPS is not available$"):
        backend.resolve_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert backend.resolve_device("mps") == torch.device("mps")


def test_a_path_or_a_pil_image_is_refused_with_the_way_to_an_array():
    from pathlib import Path

    from PIL import Image

    for path in ("photo.png", Path("photo.png")):
        with pytest.raises(TypeError, match=r"^image must be an array \(numpy\.ndarray, torch\.Tensor or cupy\.ndarray\), "
                                            r"got \w+; to use an image file, read it with "
                                            r"pnpdeblur\.data\.read_image\(path\)$"):
            array_kind(path, "image")
    with pytest.raises(TypeError, match=r"^image must be an array .*, got Image; convert a PIL image with "
                                        r"numpy\.asarray\(img\)$"):
        array_kind(Image.new("RGB", (4, 4)), "image")
