"""Array-module dispatch: numpy / torch / cupy in, torch inside, the caller's type out.

Every operator and solver computes on ``torch.Tensor``. Public entry points call
:func:`to_torch` on their inputs (zero-copy for numpy and, through DLPack, for
cupy) and :func:`from_torch` on their outputs so that numpy in gives numpy out,
torch in gives torch out on the same device, and cupy in gives cupy out.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from typing import Any, Optional, Tuple

import numpy as np
import torch

__all__ = [
    "to_torch",
    "from_torch",
    "array_kind",
    "check_finite",
    "check_float",
    "resolve_device",
    "cupy_available",
    "cupy_status",
    "cupy_kernel_error",
    "info",
    "image_channel_axis",
    "to_host_numpy",
    "host_image_batch",
]


def array_kind(x: Any, name: str = "x") -> str:
    """Return ``'numpy'``, ``'torch'`` or ``'cupy'`` for a supported array, else raise TypeError."""
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    module = type(x).__module__.split(".")[0]
    if module == "cupy":
        return "cupy"
    # the two things a user most often hands over for a photo, and the way to an array
    hint = ""
    if isinstance(x, (str, os.PathLike)):
        hint = "; to use an image file, read it with pnpdeblur.data.read_image(path)"
    elif module == "PIL":
        hint = "; convert a PIL image with numpy.asarray(img)"
    raise TypeError(
        f"{name} must be an array (numpy.ndarray, torch.Tensor or cupy.ndarray), got {type(x).__name__}{hint}"
    )


def check_float(x: torch.Tensor, name: str, image: bool = True) -> None:
    """Raise TypeError unless ``x`` is a float32 or float64 tensor.

    The message names the dtype as numpy, torch and cupy all spell it (``uint8``, not
    ``torch.uint8``: the caller may have passed a numpy array) and says how to convert the
    dtypes users most often hand over (8-bit photos, half precision). ``image=False`` (a flow,
    weights) leaves out the advice to divide 8-bit images by 255.
    """
    if x.dtype not in (torch.float32, torch.float64):
        hint = ""
        if x.dtype in (torch.float16, torch.bfloat16):
            hint = " (convert half precision to float32 first)"
        elif not x.dtype.is_floating_point and not x.dtype.is_complex:
            hint = " (convert it to float32 first" + ("; an 8-bit image also needs dividing by 255)" if image else ")")
        raise TypeError(f"{name} must be float32 or float64, got dtype {str(x.dtype).removeprefix('torch.')}{hint}")


def resolve_device(device: Any, name: str = "device") -> Optional[torch.device]:
    """``device`` (a ``str`` such as ``"cuda:1"``, a :class:`torch.device` or None) as a usable device.

    None stays None (compute where the input lies). Raises ``TypeError`` for another type and
    ``ValueError`` naming ``name`` for a string torch does not parse, a CUDA device when torch
    sees none or an index beyond the visible ones, and MPS where it is unavailable — before any
    work is done, instead of torch's assertion deep inside the first transfer.
    """
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a str such as 'cpu' or 'cuda', a torch.device or None, "
                        f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"{name}={device!r} is not a torch device ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}={device!r}: CUDA is not available to this torch ({torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{name}={device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r}: MPS is not available")
    return dev


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def to_torch(x: Any, name: str = "x") -> torch.Tensor:
    """View ``x`` as a torch tensor without copying (numpy via ``from_numpy``, cupy via DLPack).

    Read-only numpy arrays are copied (torch has no read-only tensors), as are
    non-contiguous, negative-stride and non-native byte-order ones. Python scalars and lists are not
    accepted: the library never guesses a dtype; nor are numpy arrays of strings, objects
    or dates (TypeError naming ``name``).
    """
    kind = array_kind(x, name)
    if kind == "torch":
        return x
    if kind == "numpy":
        if x.dtype.kind not in "biufc":
            # strings, objects (e.g. a ragged list of photos), dates: torch's own error names
            # neither the argument nor what was expected
            raise TypeError(f"{name} must be a numeric array, got numpy dtype {x.dtype}")
        if not x.flags.writeable:
            # torch cannot mark a tensor read-only and warns on every from_numpy of one;
            # ascontiguousarray would return a contiguous read-only array unchanged
            x = np.array(x, order="C", copy=True)
        elif not (x.flags.c_contiguous or x.flags.f_contiguous) or any(s < 0 for s in x.strides):
            # numpy calls a flipped axis of length 1 contiguous, but torch refuses any negative
            # stride (and ascontiguousarray would hand such an array back unchanged)
            x = np.array(x, order="C", copy=True)
        if x.dtype.byteorder not in ("=", "|"):
            x = x.astype(x.dtype.newbyteorder("="))
        return torch.from_numpy(x)
    return torch.from_dlpack(x)


def from_torch(t: torch.Tensor, kind: str) -> Any:
    """Return ``t`` as the array type named by ``kind`` (the inverse of :func:`to_torch`)."""
    if kind == "torch":
        return t
    if kind == "numpy":
        return t.detach().cpu().numpy()
    if kind == "cupy":
        import cupy

        return cupy.from_dlpack(t.detach())
    raise ValueError(f"unknown array kind {kind!r}")


def image_channel_axis(kind: str) -> int:
    """Channel axis of a 3-D image of the given array kind (the library's one layout rule).

    ``0`` for torch (``(C, H, W)``), ``-1`` for numpy and cupy (``(H, W, C)``). The rule
    depends on the array type only, never on the sizes. 2-D arrays are grey ``(H, W)``
    images and 4-D ones ``(N, C, H, W)`` batches for every kind.
    """
    if kind == "torch":
        return 0
    if kind in ("numpy", "cupy"):
        return -1
    raise ValueError(f"kind must be 'numpy', 'torch' or 'cupy', got {kind!r}")


def _host_kind(x: Any, name: str) -> str:
    """:func:`array_kind`, plus objects with ``__array__`` (read as numpy)."""
    if isinstance(x, (torch.Tensor, np.ndarray)) or type(x).__module__.split(".")[0] == "cupy":
        return array_kind(x, name)
    if hasattr(x, "__array__"):
        return "numpy"
    raise TypeError(f"{name} must be a numpy array, torch tensor or cupy array, got {type(x).__name__}")


def to_host_numpy(x: Any, name: str = "x") -> np.ndarray:
    """A host numpy array of ``x`` for CPU-side analysis (metrics, pictures), checked.

    Torch tensors are detached and moved to the CPU (floating ones become float64, integer
    and bool ones keep their dtype), cupy arrays are copied with ``.get()``, other objects
    with ``__array__`` go through ``np.asarray``. Integer dtypes are kept so that callers
    can apply their dtype's range. The result may share memory with a numpy ``x``: do not
    write to it.

    Raises
    ------
    TypeError
        For other objects, and for dtypes other than bool, integer and real float.
    ValueError
        For an empty array and for NaN/Inf values.
    """
    kind = _host_kind(x, name)
    if kind == "torch":
        t = x.detach().to("cpu")
        if t.is_complex():
            raise TypeError(f"{name} must have a real numeric dtype, got {t.dtype}")
        a = (t.double() if t.is_floating_point() else t).resolve_neg().numpy()
    elif kind == "cupy":
        a = x.get()  # cupy refuses implicit conversion by np.asarray
    else:
        a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a real numeric dtype, got {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def host_image_batch(x: Any, name: str = "x", channel_axis: Optional[int] = None) -> np.ndarray:
    """An image or batch as a host numpy ``(N, C, H, W)`` array, by the library's layout rule.

    Parameters
    ----------
    x : numpy, torch or cupy array
        ``(H, W)`` grey image; 3-D image laid out per :func:`image_channel_axis`
        (numpy/cupy ``(H, W, C)``, torch ``(C, H, W)``); ``(N, C, H, W)`` batch.
    name : str
        Argument name for error messages.
    channel_axis : int, optional
        Overrides where the channels are, for 3-D and 4-D inputs (for 4-D the batch axis
        stays first). Must be None for 2-D inputs.

    Returns
    -------
    numpy.ndarray
        ``(N, C, H, W)``, in the dtype :func:`to_host_numpy` gives (float64 or the
        integer dtype); possibly a view of ``x``.
    """
    kind = _host_kind(x, name)
    a = to_host_numpy(x, name)
    if channel_axis is not None and (isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer))):
        raise TypeError(f"channel_axis must be an int or None, got {type(channel_axis).__name__}")
    if a.ndim == 4:
        if channel_axis is None:
            return a
        if not -4 <= channel_axis < 4 or channel_axis % 4 == 0:
            raise ValueError(f"channel_axis={channel_axis} is not a non-batch axis of {name} with shape {a.shape}")
        return np.moveaxis(a, channel_axis, 1)
    if a.ndim == 3:
        ax = image_channel_axis(kind) if channel_axis is None else channel_axis
        if not -3 <= ax < 3:
            raise ValueError(f"channel_axis={ax} is out of range for {name} with shape {a.shape}")
        return np.moveaxis(a, ax, 0)[None]
    if a.ndim == 2:
        if channel_axis is not None:
            raise ValueError(f"channel_axis must be None for a 2-D (grey) {name}, got {channel_axis}")
        return a[None, None]
    raise ValueError(f"{name} must be (H, W), a 3-D image or (N, C, H, W), got shape {a.shape}")


@functools.lru_cache(maxsize=1)
def cupy_status() -> Tuple[bool, str]:
    """Whether CuPy can run kernels here, and why (not).

    CuPy may be installed on a machine without a driver or device: it imports, then
    raises at its first CUDA call. That, a failed import and a device count of zero
    all report ``False`` (never raise), so callers fall back to the torch path.

    Returns
    -------
    (bool, str)
        ``(True, "CuPy <version>, <n> device(s)")`` or ``(False, <reason>)``.
        Cached; ``cupy_status.cache_clear()`` re-probes.
    """
    if "cupy" not in sys.modules:
        try:
            if importlib.util.find_spec("cupy") is None:
                return False, "CuPy is not installed"
        except (ImportError, ValueError) as exc:
            return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        import cupy
    except Exception as exc:  # a broken install can raise anything at import
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CuPy without a driver or device raises many types
        return False, f"CuPy found no usable CUDA device ({type(exc).__name__}: {exc})"
    if n <= 0:
        return False, "CuPy found no CUDA device"
    return True, f"CuPy {getattr(cupy, '__version__', '?')}, {n} device(s)"


def cupy_available() -> bool:
    """True when CuPy imports *and* a CUDA device answers (CuPy without a device falls back)."""
    return cupy_status()[0]


cupy_available.cache_clear = cupy_status.cache_clear  # type: ignore[attr-defined]

_CUPY_KERNEL_ERROR: Optional[str] = None


def cupy_kernel_error() -> Optional[str]:
    """Why the CuPy kernels could not be built in this process (NVRTC missing, ...), or None.

    Set by the first automatic dispatch that fails to build them; from then on CUDA
    tensors take the torch path.
    """
    return _CUPY_KERNEL_ERROR


def _set_cupy_kernel_error(reason: Optional[str]) -> None:
    global _CUPY_KERNEL_ERROR
    _CUPY_KERNEL_ERROR = reason


def info() -> dict:
    """Describe the compute paths in use.

    Returns
    -------
    dict
        ``torch`` version, whether CUDA is visible to torch (``torch_cuda``), whether
        CuPy kernels can run (``cupy``) and why not (``cupy_reason``), whether the
        numba CPU kernels are available, and which path the motion-flow operators
        take for CPU tensors (``cpu_path``) and CUDA tensors (``cuda_path``: ``"cupy"``
        or ``"torch"``; None when torch sees no CUDA device).
    """
    numba_ok = importlib.util.find_spec("numba") is not None
    cuda = torch.cuda.is_available()
    cupy_ok, reason = cupy_status()
    kernel_error = cupy_kernel_error()
    if cupy_ok and kernel_error is not None:
        cupy_ok, reason = False, f"CuPy kernels could not be built: {kernel_error}"
    return {
        "torch": torch.__version__,
        "torch_cuda": cuda,
        "cupy": cupy_ok,
        "cupy_reason": reason,
        "numba": numba_ok,
        "cpu_path": "numba" if numba_ok else "torch",
        "cuda_path": ("cupy" if cupy_ok else "torch") if cuda else None,
    }
