"""Array-module dispatch: numpy / torch / cupy in, torch inside, the caller's type out.

Every operator and solver computes on ``torch.Tensor``. Public entry points call
:func:`to_torch` on their inputs (zero-copy for numpy and, through DLPack, for
cupy) and :func:`from_torch` on their outputs so that numpy in gives numpy out,
torch in gives torch out on the same device, and cupy in gives cupy out.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Any, Callable

import numpy as np
import torch

__all__ = [
    "to_torch",
    "from_torch",
    "array_kind",
    "check_finite",
    "check_float",
    "cupy_available",
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

    Python scalars and lists are not accepted: the library never guesses a dtype.
    """
    kind = array_kind(x, name)
    if kind == "torch":
        return x
    if kind == "numpy":
        if not x.flags.writeable or not (x.flags.c_contiguous or x.flags.f_contiguous):
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


def as_caller(fn: Callable[..., torch.Tensor]) -> Callable[..., Any]:
    """Decorator: convert the first argument to torch and the result back to its kind."""

    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        kind = array_kind(x)
        return from_torch(fn(to_torch(x), *args, **kwargs), kind)

    return wrapper


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True when CuPy imports *and* a CUDA device answers (CuPy without a device falls back)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy installed without a driver or device raises many types
        return False


def info() -> dict:
    """Describe the compute paths in use.

    Returns
    -------
    dict
        ``torch`` version, whether CUDA is visible to torch, whether CuPy kernels
        can run, whether the numba CPU kernels are available, and which path a
        numpy/CPU call and a CUDA call take.
    """
    numba_ok = importlib.util.find_spec("numba") is not None
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "torch_cuda": cuda,
        "cupy": cupy_available(),
        "numba": numba_ok,
        "cpu_path": "numba" if numba_ok else "torch",
        "cuda_path": ("cupy" if cupy_available() else "torch") if cuda else None,
    }
