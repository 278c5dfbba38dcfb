"""GPU path of the segment blur: CUDA kernels compiled by NVRTC through CuPy.

The kernels live in ``_cuda/segment_blur.cu`` (see its header for the definition,
the thread layout and why the adjoint is an atomic scatter). This module

* compiles that source lazily with :class:`cupy.RawModule` (NVRTC) on first use,
  once per CUDA device, and caches the kernels;
* launches them on **torch** CUDA tensors without copies: every tensor is passed to
  the kernel as its raw device pointer (no DLPack view per call), outputs are
  allocated by torch (so they live in torch's caching allocator) and filled in
  place, and kernels run on torch's current stream for the tensor's device;
* wires forward, adjoint and the gradients w.r.t. the image, the segment vectors
  and the masses into torch autograd through the Function the numba path uses
  (:class:`pnpdeblur.operators._segment.SegmentBlurFn`).

CuPy is optional: importing this module never imports CuPy; :func:`load` raises
:class:`CupyUnavailableError` with the reason when CuPy, a device or NVRTC is
missing, and :mod:`pnpdeblur.operators._segment` falls back to the torch path.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

__all__ = [
    "CupyUnavailableError",
    "KERNEL_NAMES",
    "NVRTC_OPTIONS",
    "SOURCE_PATH",
    "BLOCK",
    "source",
    "load",
    "run",
    "param_grad",
    "segment_blur_cupy",
    "launch_on_torch_stream",
    "build_kernels",
]

#: The CUDA source compiled at first use.
SOURCE_PATH = Path(__file__).with_name("_cuda") / "segment_blur.cu"

#: NVRTC options (the tests compile the same source with nvcc and these options).
NVRTC_OPTIONS: Tuple[str, ...] = ("--std=c++17",)

#: The ``extern "C"`` kernels of the source, by operation and image dtype.
KERNEL_NAMES: Dict[Tuple[str, torch.dtype], str] = {
    (op, dt): f"segment_{op}_{suf}"
    for op in ("forward", "adjoint", "param_grad")
    for dt, suf in ((torch.float32, "f32"), (torch.float64, "f64"))
}

#: The dtype of each pointer argument of each kernel, in order (the source's signatures):
#: forward/adjoint (x, vec, mass, y), param_grad (x, g, vec, mass, gvec, gmass).
_BUFFER_DTYPES: Dict[str, Tuple[torch.dtype, ...]] = {
    name: ((dt, torch.float64, torch.float64, dt) if op != "param_grad" else (dt, dt) + (torch.float64,) * 4)
    for (op, dt), name in KERNEL_NAMES.items()
}

#: Thread block (x over W, y over H); the grid's z axis runs over the batch.
BLOCK = (32, 8, 1)

#: Tensor device types the launcher accepts (the tests widen it to run the launcher
#: against the CUDA source compiled for the host).
_DEVICE_TYPES: Tuple[str, ...] = ("cuda",)

_lock = threading.Lock()
_kernels: Dict[int, Dict[str, Any]] = {}  # device index -> kernel name -> cupy.RawKernel


class CupyUnavailableError(RuntimeError):
    """CuPy, a CUDA device or NVRTC is missing, or the kernels failed to compile."""


def source() -> str:
    """The CUDA source text of the segment-blur kernels."""
    return SOURCE_PATH.read_text()


def _cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken install raising anything
        raise CupyUnavailableError(f"CuPy is not importable ({type(exc).__name__}: {exc})") from exc
    return cupy


def load(device_index: int) -> Dict[str, Any]:
    """Compile (first call) and return the kernels for one CUDA device.

    Parameters
    ----------
    device_index : int
        The CUDA device ordinal (``tensor.device.index``).

    Returns
    -------
    dict
        Kernel name -> :class:`cupy.RawKernel`, loaded on that device.

    Raises
    ------
    CupyUnavailableError
        CuPy does not import, has no device, or NVRTC cannot compile the source.
    """
    if isinstance(device_index, bool) or not isinstance(device_index, int):
        raise TypeError(f"device_index must be an int, got {type(device_index).__name__}")
    kernels = _kernels.get(device_index)  # built: no lock (a solve launches thousands of times)
    if kernels is not None:
        return kernels
    with _lock:
        if device_index not in _kernels:
            _kernels[device_index] = build_kernels(SOURCE_PATH, NVRTC_OPTIONS, KERNEL_NAMES.values(), device_index)
        return _kernels[device_index]


def build_kernels(path: Path, options: Tuple[str, ...], names, device_index: int) -> Dict[str, Any]:
    """Compile the CUDA source at ``path`` with NVRTC on one device; kernel name -> kernel.

    Raises
    ------
    CupyUnavailableError
        CuPy does not import, has no device, or NVRTC cannot compile the source.
    """
    cupy = _cupy()
    try:
        with cupy.cuda.Device(device_index):
            module = cupy.RawModule(code=path.read_text(), options=options)
            return {name: module.get_function(name) for name in names}
    except Exception as exc:  # no device/driver, NVRTC missing, compile error
        raise CupyUnavailableError(
            f"could not build the CUDA kernels of {path.name} on device {device_index} ({type(exc).__name__}: {exc})"
        ) from exc


def _check(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type not in _DEVICE_TYPES:
        raise ValueError(f"{name} must be a CUDA tensor for the cupy path, got device {x.device}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")


def _geometry(x: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor):
    """Segment vectors and masses as contiguous float64 on x's device, shapes checked."""
    N, _, H, W = x.shape
    if vec.dim() != 5 or vec.shape[2] != 2 or tuple(vec.shape[3:]) != (H, W) or vec.shape[0] not in (1, N):
        raise ValueError(f"vec must have shape (1 or {N}, S, 2, {H}, {W}), got {tuple(vec.shape)}")
    if tuple(mass.shape) != (vec.shape[0], vec.shape[1], H, W):
        raise ValueError(
            f"mass must have shape {(vec.shape[0], vec.shape[1], H, W)} to match vec, got {tuple(mass.shape)}"
        )
    v = vec.detach().to(device=x.device, dtype=torch.float64).contiguous()
    m = mass.detach().to(device=x.device, dtype=torch.float64).contiguous()
    return v, m


class _StreamHandle:
    """A raw CUDA stream handle in the CUDA stream protocol (what ``Stream.from_external`` reads)."""

    __slots__ = ("handle",)

    def __init__(self, handle: int):
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


_streams: Dict[Tuple[int, int], Any] = {}  # (device index, raw handle) -> CuPy stream object
_MAX_STREAMS = 64


def _raw_stream(index: int) -> int:
    """torch's current stream on CUDA device ``index``, as the raw ``cudaStream_t`` handle."""
    get = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # no Stream object per call
    if get is not None:
        return int(get(index))
    return int(torch.cuda.current_stream(index).cuda_stream)


def _cupy_stream(cupy, handle: int, index: int):
    """The CuPy stream object for a raw handle, made once per (device, handle) and kept."""
    if handle == 0:  # torch's default stream is the legacy null stream: CuPy's Stream.null
        return cupy.cuda.Stream.null
    key = (index, handle)
    s = _streams.get(key)
    if s is None:
        if len(_streams) >= _MAX_STREAMS:
            _streams.clear()
        if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14 (ExternalStream is deprecated)
            try:
                s = cupy.cuda.Stream.from_external(_StreamHandle(handle))
            except (TypeError, AttributeError, ValueError):  # a CuPy that wants a richer object
                s = None
        if s is None:
            s = cupy.cuda.ExternalStream(handle, index)
        _streams[key] = s
    return s


def _launch(name: str, arrays, N: int, C: int, H: int, W: int, Nf: int, S: int, beta: float) -> None:
    """Launch one kernel on torch's current stream of the tensors' device.

    The tensors are passed as raw device pointers (``data_ptr()``, 8-byte values where the
    kernel takes ``T*``): no DLPack views are made per call, which was most of a small
    image's call time. The caller guarantees that every tensor is C-contiguous, on one
    device, of the kernel's element type, and alive until the launch is queued; torch's
    caching allocator then keeps the memory until work queued later on the same stream.
    """
    import numpy as np

    if N > 65535 or (H + BLOCK[1] - 1) // BLOCK[1] > 65535:
        raise ValueError(f"x of shape {(N, C, H, W)} exceeds the CUDA grid (N <= 65535, H <= {65535 * BLOCK[1]})")
    dev = arrays[0].device
    for a in arrays[1:]:
        if a.device != dev:  # a pointer into another device's memory would be read as garbage
            raise ValueError(f"every buffer of {name} must be on {dev}, got one on {a.device}")
    # A raw pointer carries no type or layout: check them here, or a wrong buffer is read or
    # written past its end without an error.
    for k, (a, dt) in enumerate(zip(arrays, _BUFFER_DTYPES[name])):
        if a.dtype != dt or not a.is_contiguous():
            raise ValueError(f"buffer {k} of {name} must be a contiguous {dt} tensor, got {a.dtype}"
                             f"{'' if a.is_contiguous() else ', not contiguous'}")
    index = dev.index if dev.index is not None else 0
    kernel = load(index)[name]
    grid = ((W + BLOCK[0] - 1) // BLOCK[0], (H + BLOCK[1] - 1) // BLOCK[1], N)
    args = tuple(np.uint64(a.data_ptr()) for a in arrays) + tuple(np.int32(v) for v in (N, C, H, W, Nf, S)) \
        + (np.float64(beta),)
    launch_on_torch_stream(kernel, index, grid, BLOCK, args)


def launch_on_torch_stream(kernel, index: int, grid: tuple, block: tuple, args: tuple) -> None:
    """Launch a CuPy kernel on device ``index``, on torch's current stream of that device.

    ``args`` hold raw pointers (``numpy.uint64(t.data_ptr())``) and numpy scalars. Queued on
    torch's stream, the kernel runs after torch's pending work on those tensors, and
    torch's caching allocator keeps their memory until work queued after it.
    """
    cupy = _cupy()
    with cupy.cuda.Device(index):
        kernel(grid, block, args, stream=_cupy_stream(cupy, _raw_stream(index), index))


def run(x: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor, beta: float, transpose: bool) -> torch.Tensor:
    """``K x`` (or ``Kᵀ x``) on the GPU without autograd.

    Parameters
    ----------
    x : Tensor, (N, C, H, W), float32 or float64, CUDA
    vec : Tensor, (Nf, S, 2, H, W), Nf in {1, N}
    mass : Tensor, (Nf, S, H, W)
    beta : float
        0 for the centred line kernel, 0.5 for half segments from p to p + a.
    transpose : bool
        Apply the exact adjoint (atomic scatter) instead of the forward gather.

    Returns
    -------
    Tensor
        Same shape, dtype and device as ``x``.
    """
    _check(x, "x")
    v, m = _geometry(x, vec, mass)
    x = x.detach().contiguous()
    N, C, H, W = x.shape
    if transpose:
        out = torch.zeros_like(x)
        op = "adjoint"
    else:
        out = torch.empty_like(x)
        op = "forward"
    if x.numel() == 0 or v.shape[1] == 0:
        return out.zero_()
    _launch(KERNEL_NAMES[(op, x.dtype)], (x, v, m, out), N, C, H, W, v.shape[0], v.shape[1], beta)
    return out


def param_grad(
    x: torch.Tensor, g: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor, beta: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``<K x, g>`` w.r.t. ``vec`` and ``mass`` (summed over a shared flow's batch).

    Returns
    -------
    (Tensor, Tensor)
        Shaped and typed like ``vec`` and ``mass``.
    """
    _check(x, "x")
    _check(g, "g")
    if g.shape != x.shape or g.dtype != x.dtype or g.device != x.device:
        raise ValueError(
            f"g must match x (shape {tuple(x.shape)}, {x.dtype}, {x.device}), "
            f"got {tuple(g.shape)}, {g.dtype}, {g.device}"
        )
    v, m = _geometry(x, vec, mass)
    x = x.detach().contiguous()
    g = g.detach().contiguous()
    N, C, H, W = x.shape
    S = v.shape[1]
    gv = torch.zeros((N, S, 2, H, W), dtype=torch.float64, device=x.device)
    gm = torch.zeros((N, S, H, W), dtype=torch.float64, device=x.device)
    if x.numel() and S:
        _launch(KERNEL_NAMES[("param_grad", x.dtype)], (x, g, v, m, gv, gm), N, C, H, W, v.shape[0], S, beta)
    if vec.shape[0] == 1 and N > 1:
        gv, gm = gv.sum(0, keepdim=True), gm.sum(0, keepdim=True)
    return gv.to(vec.dtype), gm.to(mass.dtype)


def segment_blur_cupy(
    x: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor, beta: float, transpose: bool = False
) -> torch.Tensor:
    """Differentiable segment blur on CUDA tensors (see :func:`run` for the arguments)."""
    from ._segment import SegmentBlurFn

    return SegmentBlurFn.apply(x, vec, mass, float(beta), bool(transpose), _CupyKernels)


class _CupyKernels:
    run = staticmethod(run)
    param_grad = staticmethod(param_grad)
