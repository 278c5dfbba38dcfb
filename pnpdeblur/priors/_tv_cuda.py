"""GPU path of the TV proximal map: the dual iterations as two CUDA kernels per step.

The kernels live in ``_cuda/tv_prox.cu`` (see its header); they are the twins of
:mod:`pnpdeblur.priors._tv_numba` and compute the torch path's iterates to rounding. This
module compiles them lazily through CuPy (NVRTC, once per device) and runs them on torch
CUDA tensors, on torch's current stream, with the launcher of the segment-blur kernels
(:func:`pnpdeblur.operators._cupy.launch_on_torch_stream`). One device-to-host read per
iteration (the two sums of the stopping rule) replaces the torch loop's two.

CuPy is optional: :func:`load` raises :class:`~pnpdeblur.operators._cupy.CupyUnavailableError`
when it or NVRTC is missing, and :func:`pnpdeblur.priors.classical.tv_prox` then runs the
torch loop.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch

from ..operators import _cupy
from .classical import fgp_iterations

__all__ = ["SOURCE_PATH", "NVRTC_OPTIONS", "KERNEL_NAMES", "BLOCK", "load", "tv_prox_cuda"]

#: The CUDA source compiled at first use.
SOURCE_PATH = Path(__file__).with_name("_cuda") / "tv_prox.cu"

#: NVRTC options: no fused multiply-add, so each product is rounded as torch's passes round it.
NVRTC_OPTIONS: Tuple[str, ...] = ("--std=c++17", "--fmad=false")

#: The ``extern "C"`` kernels of the source, by step and image dtype.
KERNEL_NAMES: Dict[Tuple[str, torch.dtype], str] = {
    (op, dt): f"tv_{op}_{suf}"
    for op in ("primal", "dual_step")
    for dt, suf in ((torch.float32, "f32"), (torch.float64, "f64"))
}

#: Thread block (x over W, y over H).
BLOCK = (32, 8, 1)

_lock = threading.Lock()
_kernels: Dict[int, Dict[str, Any]] = {}  # device index -> kernel name -> kernel
_failed: Dict[int, str] = {}  # device index -> why the kernels could not be built there


def load(device_index: int) -> Dict[str, Any]:
    """Compile (first call) and return the TV kernels for one CUDA device.

    A failed build is remembered for the device (its reason is raised again without a new
    attempt: a prox runs hundreds of times per solve, and each attempt would recompile).

    Raises
    ------
    CupyUnavailableError
        CuPy does not import, has no device, or NVRTC cannot compile the source.
    """
    kernels = _kernels.get(device_index)  # built: no lock (two launches per dual iteration)
    if kernels is not None:
        return kernels
    with _lock:
        if device_index not in _kernels:
            if device_index in _failed:
                raise _cupy.CupyUnavailableError(_failed[device_index])
            try:
                _kernels[device_index] = _cupy.build_kernels(SOURCE_PATH, NVRTC_OPTIONS, KERNEL_NAMES.values(),
                                                             device_index)
            except _cupy.CupyUnavailableError as exc:
                _failed[device_index] = str(exc)
                raise
        return _kernels[device_index]


def _ptr(t: torch.Tensor) -> np.uint64:
    return np.uint64(t.data_ptr())


def tv_prox_cuda(z: torch.Tensor, tau: float, iters: int, coupled: bool, tol: float) -> torch.Tensor:
    """:func:`~pnpdeblur.priors.classical.tv_prox` of a CUDA ``(N, C, H, W)`` float32/float64
    tensor without autograd (see there for the arguments); a new tensor like ``z``."""
    if z.dtype not in (torch.float32, torch.float64) or z.dim() != 4 or z.device.type not in _cupy._DEVICE_TYPES:
        raise ValueError(f"z must be a float32/float64 (N, C, H, W) CUDA tensor, got {z.dtype} "
                         f"{tuple(z.shape)} on {z.device}")
    z = z.detach().contiguous()
    n, c, h, w = z.shape
    if z.numel() == 0:
        return torch.empty_like(z)
    index = z.device.index if z.device.index is not None else 0
    kernels = load(index)
    suf = "f32" if z.dtype == torch.float32 else "f64"
    primal, dual = kernels[f"tv_primal_{suf}"], kernels[f"tv_dual_step_{suf}"]
    scalar = np.float32 if z.dtype == torch.float32 else np.float64  # scalars in the image dtype
    if n * c > 65535 or (h + BLOCK[1] - 1) // BLOCK[1] > 65535:  # n <= n·c: both grids fit
        raise ValueError(f"z of shape {(n, c, h, w)} exceeds the CUDA grid (N·C <= 65535, H <= {65535 * BLOCK[1]})")
    gx, gy = (w + BLOCK[0] - 1) // BLOCK[0], (h + BLOCK[1] - 1) // BLOCK[1]
    dims = tuple(np.int32(v) for v in (n, c, h, w))
    # every buffer on z's device (new_*/empty_like follow z, whatever the default device)
    duals = tuple(z.new_zeros((n, 2, c, h, w)) for _ in range(4))
    x = torch.empty_like(z)
    dsq = z.new_empty((n, h, w), dtype=torch.float64)
    nsq = torch.empty_like(dsq)
    step = scalar(1.0 / (8.0 * tau))

    def run_primal(q):
        _cupy.launch_on_torch_stream(primal, index, (gx, gy, n * c), BLOCK,
                                     (_ptr(z), _ptr(q), scalar(tau), _ptr(x)) + dims)

    def run_dual(p, q, mom, pn, qn):
        _cupy.launch_on_torch_stream(
            dual, index, (gx, gy, n), BLOCK,
            (_ptr(x), _ptr(p), _ptr(q), step, scalar(mom), np.int32(bool(coupled)),
             _ptr(pn), _ptr(qn), _ptr(dsq), _ptr(nsq)) + dims)
        return torch.stack([dsq.sum(), nsq.sum()]).tolist()  # one read per iteration

    fgp_iterations(run_primal, run_dual, duals, iters, tol)
    return x
