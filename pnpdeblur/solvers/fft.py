"""Closed-form deconvolution for a uniform blur with a periodic boundary.

For ``K`` = :class:`~pnpdeblur.operators.UniformBlur` (or a periodic
:class:`~pnpdeblur.operators.Convolution`) every operator below is diagonal in the
Fourier basis, so regularised least squares has a one-line exact solution::

    argmin_x ‖K x − y‖² + β ‖R (x − z)‖²   =   F⁻¹[(conj(H)·Y + β |R|² Z) / (|H|² + β |R|²)]

With ``R = I`` and ``z`` the prior variable this is the HQS x-step; with ``R`` the
discrete Laplacian and ``z = 0`` it is the Wiener/Tikhonov filter of
``skimage.restoration.wiener`` (``balance`` = β).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch

from .._checks import check_real
from ..backend import array_kind, check_finite, check_float, from_torch, to_torch
from ..operators.base import LinearOperator, to_nchw
from ..operators.convolution import Convolution, UniformBlur

__all__ = ["fft_deconv", "uniform_transfer_function", "supports_fft"]

_REGS = ("identity", "laplacian", "gradient")


def supports_fft(K: Any) -> bool:
    """True when ``K`` is diagonalised by the 2-D FFT (periodic uniform blur)."""
    return isinstance(K, UniformBlur) or (
        isinstance(K, Convolution) and K.boundary == "periodic"
    )


def uniform_transfer_function(K: Any, shape: Tuple[int, int], dtype: torch.dtype,
                              device: Union[str, torch.device]) -> torch.Tensor:
    """The ``rfft2`` transfer function of a periodic uniform blur for ``shape`` = (H, W)."""
    if isinstance(K, UniformBlur):
        return K.transfer_function(shape, dtype, device)
    if isinstance(K, Convolution) and K.boundary == "periodic":
        return UniformBlur(K.kernel).transfer_function(shape, dtype, device)
    raise TypeError(
        f"K must be a UniformBlur (or a Convolution with boundary='periodic') for the "
        f"closed-form FFT solve, got {K!r}"
    )


def _reg_power(reg: str, shape, dtype, device) -> torch.Tensor:
    """|R|² on the rfft2 grid."""
    h, w = shape
    fy = torch.fft.fftfreq(h, dtype=torch.float64).reshape(-1, 1)
    fx = torch.fft.rfftfreq(w, dtype=torch.float64).reshape(1, -1)
    if reg == "identity":
        p = torch.ones(h, w // 2 + 1, dtype=torch.float64)
    else:
        # eigenvalues of the periodic forward-difference DᵀD (the 5-point Laplacian)
        lap = (2 - 2 * torch.cos(2 * torch.pi * fy)) + (2 - 2 * torch.cos(2 * torch.pi * fx))
        p = lap if reg == "gradient" else lap**2
    return p.to(dtype=dtype, device=device)


def _fft_solve(
    y: torch.Tensor,
    tf: torch.Tensor,
    beta: float,
    z: Optional[torch.Tensor],
    reg_power: torch.Tensor,
) -> torch.Tensor:
    Y = torch.fft.rfft2(y)
    num = tf.conj() * Y
    if z is not None:
        num = num + beta * reg_power * torch.fft.rfft2(z)
    den = tf.real**2 + tf.imag**2 + beta * reg_power
    return torch.fft.irfft2(num / den, s=y.shape[-2:])


def fft_deconv(
    y: Any,
    K: LinearOperator,
    balance: float = 1e-2,
    z: Any = None,
    reg: str = "identity",
) -> Any:
    """Exact regularised deconvolution for a periodic uniform blur.

    Solves ``(KᵀK + β RᵀR) x = Kᵀ y + β RᵀR z`` in the Fourier domain.

    Parameters
    ----------
    y : array
        Blurred image, ``(N, C, H, W)``, ``(H, W)`` or ``(H, W, C)`` (numpy/cupy) /
        ``(C, H, W)`` (torch); float32 or float64.
    K : UniformBlur or Convolution(boundary='periodic')
        The blur.
    balance : float
        β ≥ 0, the regularisation weight (``balance`` of ``skimage.restoration.wiener``).
        With β = 0 the plain inverse filter is returned (unstable where H vanishes).
    z : array, optional
        Prior mean / HQS auxiliary variable, same shape as ``y`` (default 0).
    reg : {'identity', 'gradient', 'laplacian'}
        ``R``: identity (Tikhonov, the HQS x-step), forward differences (``RᵀR`` = the
        5-point Laplacian), or the Laplacian itself (skimage's default Wiener ``reg``).

    Returns
    -------
    array
        Same type, layout, dtype and device as ``y``.
    """
    kind = array_kind(y, "y")
    yt, restore = to_nchw(to_torch(y, "y"), kind, "y")
    check_float(yt, "y")
    check_finite(yt, "y")
    if reg not in _REGS:
        raise ValueError(f"reg must be one of {_REGS}, got {reg!r}")

    beta = check_real(balance, "balance")
    zt = None
    if z is not None:
        zt, _ = to_nchw(to_torch(z, "z"), array_kind(z), "z")
        if zt.shape != yt.shape:
            raise ValueError(f"z has shape {tuple(zt.shape)}, expected y's shape {tuple(yt.shape)}")
        check_float(zt, "z")
        check_finite(zt, "z")
        zt = zt.to(dtype=yt.dtype, device=yt.device)
    tf = uniform_transfer_function(K, yt.shape[-2:], yt.dtype, yt.device)
    rp = _reg_power(reg, yt.shape[-2:], yt.dtype, yt.device)
    x = _fft_solve(yt, tf, beta, zt, rp)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"the deconvolution is singular: K's transfer function and the regulariser (reg={reg!r}, "
            f"balance={balance!r}) both vanish at some frequency; use a larger balance"
        )
    return from_torch(restore(x), kind)
