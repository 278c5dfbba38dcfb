"""Preconditioners for the x-step system ``(KᵀK + β I) x = b`` of HQS and ADMM.

A preconditioner here is a callable ``P(r, beta) -> z`` with ``z ≈ (KᵀK + β I)⁻¹ r``,
symmetric positive definite for every β > 0. It only changes how fast conjugate
gradients converges; the system solved (and so the answer, to CG's tolerance) is the
same with or without it.

``"uniform"`` fits one spatially-invariant kernel to the blur and inverts
``|H|² + β`` in the Fourier domain (on a zero-padded domain). For a motion flow this
is the line kernel of the flow's mean motion vector. Since m and −m give the same
kernel, the mean direction is taken in the doubled-angle representation
``L (cos 2θ, sin 2θ)`` (so m and −m add instead of cancelling) and the length is the mean
``|m|``.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
import torch

from ..operators.base import LinearOperator
from ..operators.convolution import Convolution, UniformBlur
from ..operators.motion import MotionBlur, motion_kernel

__all__ = ["UniformPreconditioner", "fitted_motion_vector", "make_preconditioner", "PRECONDITIONERS"]

PRECONDITIONERS = ("uniform",)

PreconditionerFn = Callable[[torch.Tensor, float], torch.Tensor]


def fitted_motion_vector(flow: torch.Tensor) -> np.ndarray:
    """Mean motion vector of each flow of a batch, treating m and −m as the same blur.

    Parameters
    ----------
    flow : torch.Tensor, shape (N, 2, H, W)
        Motion vectors (u right, v down) in pixels.

    Returns
    -------
    numpy.ndarray, float64, shape (N, 2)
        ``(u, v)`` of length mean ``|m|`` along the mean doubled-angle direction.
    """
    f = flow.detach().to(device="cpu", dtype=torch.float64)
    u, v = f[:, 0].flatten(1), f[:, 1].flatten(1)
    L = torch.hypot(u, v)
    safe = torch.where(L > 0, L, torch.ones_like(L))
    # L·(cos 2θ, sin 2θ) = ((u² − v²)/L, 2uv/L): invariant under m -> −m
    c = ((u * u - v * v) / safe).mean(1)
    s = (2 * u * v / safe).mean(1)
    theta = 0.5 * torch.atan2(s, c)
    length = L.mean(1)
    return torch.stack([length * torch.cos(theta), length * torch.sin(theta)], 1).numpy()


def _fitted_kernels(K: LinearOperator) -> list:
    """One float64 2-D kernel per flow sample (a list of length 1 for a uniform blur)."""
    if isinstance(K, MotionBlur):
        return [motion_kernel(m) for m in fitted_motion_vector(K.flow)]
    if isinstance(K, (UniformBlur, Convolution)):
        return [K.kernel.detach().cpu().to(torch.float64).numpy()]
    raise TypeError(
        f"preconditioner='uniform' needs a MotionBlur, UniformBlur or Convolution operator, got {K!r}"
    )


class UniformPreconditioner:
    """``(|H|² + β)⁻¹`` applied by FFT, H the transfer function of a fitted uniform kernel.

    Parameters
    ----------
    K : MotionBlur, UniformBlur or Convolution
        The blur; a ``MotionBlur`` with a batch of N flows gets one fitted kernel per flow.
    shape : (int, int)
        Image ``(H, W)``.
    dtype : torch.dtype
        float32 or float64 (the residuals' dtype).
    device : torch.device or str
        Where the residuals live.

    Notes
    -----
    The operator ``F⁻¹ diag(1 / (|H|² + β)) F`` is real, symmetric and positive definite
    (H is the transfer function of a real kernel, so ``|H|²`` is real, non-negative and
    conjugate-symmetric), as CG requires. The inverse is taken on the image zero-padded by
    the kernel radius (at least 8 px) and cropped back, ``Cᵀ D C``, which stays SPD and
    keeps the FFT's wrap-around away from the clamped borders of the operators.
    """

    def __init__(self, K: LinearOperator, shape: Tuple[int, int], dtype: torch.dtype, device: Any):
        h, w = int(shape[0]), int(shape[1])
        kernels = _fitted_kernels(K)
        # The operators clamp at the border while the FFT wraps around; inverting on a
        # domain zero-padded by the kernel radius keeps the wrap-around away from the image
        # (measured: 2× fewer iterations than the plain periodic inverse at small β).
        # Cᵀ D C with C the zero-padding embedding is still SPD.
        self.pad = max(8, max(max(k.shape) for k in kernels) // 2)
        he, we = h + 2 * self.pad, w + 2 * self.pad
        power = []
        for k in kernels:
            k = _crop_to(k, he, we)
            tf = UniformBlur(k).transfer_function((he, we), torch.float64, "cpu")
            power.append(tf.real**2 + tf.imag**2)
        # (N or 1, 1, H, W//2+1): broadcasts over channels (and over the batch for one kernel)
        self.power = torch.stack(power)[:, None].to(dtype=dtype, device=device)
        self.shape = (h, w)

    def __call__(self, r: torch.Tensor, beta: float) -> torch.Tensor:
        """Apply ``Cᵀ (|H|² + β)⁻¹ C`` to ``r`` of shape (N, C, H, W) (C: zero-padding)."""
        p, (h, w) = self.pad, self.shape
        if tuple(r.shape[-2:]) != (h, w):
            raise ValueError(f"r has spatial shape {tuple(r.shape[-2:])}, the preconditioner was built for {(h, w)}")
        rp = torch.nn.functional.pad(r, (p, p, p, p))
        z = torch.fft.irfft2(torch.fft.rfft2(rp) / (self.power + beta), s=rp.shape[-2:])
        return z[..., p:p + h, p:p + w]


def _crop_to(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """Crop a centred odd kernel to fit an (h, w) image (keeps it odd and centred)."""
    kh, kw = k.shape
    ch = min(kh, h if h % 2 else h - 1)
    cw = min(kw, w if w % 2 else w - 1)
    if (ch, cw) == (kh, kw):
        return k
    a, b = (kh - ch) // 2, (kw - cw) // 2
    k = k[a:a + ch, b:b + cw]
    return k / k.sum()


def make_preconditioner(
    spec: Union[None, str, Callable], K: LinearOperator, y: torch.Tensor
) -> Optional[PreconditionerFn]:
    """Resolve the ``preconditioner=`` argument of HQS/ADMM into ``P(r, beta) -> z`` or None.

    Parameters
    ----------
    spec : None, str or callable
        None (plain CG), a name from :data:`PRECONDITIONERS` or a callable
        ``P(r, beta)`` on torch tensors ``(N, C, H, W)`` returning an SPD approximation
        of ``(KᵀK + β I)⁻¹ r`` of the same shape.
    K : LinearOperator
        The blur.
    y : torch.Tensor, shape (N, C, H, W)
        The observation (fixes size, dtype and device).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "uniform":
            return UniformPreconditioner(K, y.shape[-2:], y.dtype, y.device)
        raise ValueError(f"preconditioner must be None, a callable P(r, beta) or one of {PRECONDITIONERS}, got {spec!r}")
    if not callable(spec):
        raise TypeError(
            "preconditioner must be None, a callable P(r, beta) or one of "
            f"{PRECONDITIONERS}, got {type(spec).__name__}"
        )
    return spec
