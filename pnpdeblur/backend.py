"""Array-module dispatch: numpy / torch / cupy in, torch inside, the caller's type out.

Every operator and solver computes on ``torch.Tensor``. Public entry points call
:func:`to_torch` on their inputs (zero-copy for numpy and, through DLPack, for
cupy) and :func:`from_torch` on their outputs so that numpy in gives numpy out,
torch in gives torch out on the same device, and cupy in gives cupy out.
"""
from __future__ import annotations

import functools
import importlib.util
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
    "cupy_available",
    "cupy_status",
    "cupy_kernel_error",
    "info",
]


def array_kind(x: Any, name: str = "x") -> str:
    """Return ``'numpy'``, ``'torch'`` or ``'cupy'`` for a supported array, else raise TypeError."""
    if isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    if type(x).__module__.split(".")[0] == "cupy":
        return "cupy"
    raise TypeError(
        f"{name} must be an array (numpy.ndarray, torch.Tensor or cupy.ndarray), got {type(x).__name__}"
    )


def check_float(x: torch.Tensor, name: str) -> None:
    """Raise TypeError unless ``x`` is a float32 or float64 tensor."""
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Raise ValueError if ``x`` holds NaN or Inf."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def to_torch(x: Any, name: str = "x") -> torch.Tensor:
    """View ``x`` as a torch tensor without copying (numpy via ``from_numpy``, cupy via DLPack).

    Read-only numpy arrays are copied (torch has no read-only tensors), as are
    non-contiguous and non-native byte-order ones. Python scalars and lists are not
    accepted: the library never guesses a dtype.
    """
    kind = array_kind(x, name)
    if kind == "torch":
        return x
    if kind == "numpy":
        if not x.flags.writeable:
            # torch cannot mark a tensor read-only and warns on every from_numpy of one;
            # ascontiguousarray would return a contiguous read-only array unchanged
            x = np.array(x, order="C", copy=True)
        elif not (x.flags.c_contiguous or x.flags.f_contiguous):
            x = np.ascontiguousarray(x)
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
