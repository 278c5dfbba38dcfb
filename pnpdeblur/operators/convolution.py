"""Spatially uniform blur: one point-spread function for the whole image.

Two operators share the kernel convention:

* :class:`UniformBlur` -- periodic (circular) boundary, applied through the FFT; its
  transfer function is exposed (:meth:`UniformBlur.transfer_function`) so that the
  closed-form solvers in :mod:`pnpdeblur.solvers.fft` can invert ``KᵀK + βI`` exactly.
* :class:`Convolution` -- spatial convolution with a padded boundary (``'replicate'``,
  ``'reflect'``, ``'zero'`` or ``'periodic'``); same-size output, exact adjoint.

Kernel convention
-----------------
The kernel ``h`` is a 2-D array of shape ``(kh, kw)`` with odd sizes, centred at
``(kh // 2, kw // 2)``. The blur is a **convolution**, not a correlation::

    y[i, j] = Σ_{a, b} h[a, b] · x[i - (a - kh//2), j - (b - kw//2)]

which is what ``scipy.ndimage.convolve(x, h)`` computes. A kernel is not required to
sum to one. It is stored as a float64 torch tensor and cast to the image's dtype and
device at apply time.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import torch
import torch.nn.functional as F

from ..backend import array_kind, to_torch
from .base import LinearOperator, check_width

__all__ = ["UniformBlur", "Convolution", "as_kernel"]

_BOUNDARIES = ("replicate", "reflect", "zero", "periodic")


def as_kernel(kernel: Any, name: str = "kernel") -> torch.Tensor:
    """Validate a PSF and return it as a contiguous float64 CPU torch tensor.

    Parameters
    ----------
    kernel : numpy.ndarray, torch.Tensor or cupy.ndarray
        Real floating-point array of shape ``(kh, kw)`` with odd ``kh`` and ``kw``.
    name : str
        Argument name used in error messages.

    Raises
    ------
    TypeError
        If ``kernel`` is not an array or not of a floating dtype.
    ValueError
        If it is not 2-D, has an even size, or holds NaN/Inf.
    """
    try:
        array_kind(kernel)
    except TypeError:
        raise TypeError(
            f"{name} must be a 2-D float array (numpy, torch or cupy), got {type(kernel).__name__}"
        ) from None
    t = to_torch(kernel, name).detach()
    if not t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must have a real floating dtype, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape (kh, kw), got shape {tuple(t.shape)}")
    kh, kw = t.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"{name} must have odd sizes so that it has a centre, got shape {tuple(t.shape)}"
        )
    t = t.to(device="cpu", dtype=torch.float64).contiguous()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


class _KernelOperator(LinearOperator):
    """Common storage of the kernel and its per-dtype/device casts."""

    def __init__(self, kernel: Any):
        self.kernel = as_kernel(kernel)
        self._cast: Dict[Tuple, torch.Tensor] = {}

    @property
    def kernel_size(self) -> Tuple[int, int]:
        """``(kh, kw)``."""
        return tuple(self.kernel.shape)

    def reach(self) -> int:
        """Half the kernel's larger side: ``max(kh, kw) // 2``."""
        return max(self.kernel_size) // 2

    def padded(self, width: int) -> "_KernelOperator":
        """The operator itself: one PSF applies to any image size."""
        check_width(width)
        return self

    def _kernel_as(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        k = self._cast.get(key)
        if k is None:
            k = self.kernel.to(dtype=x.dtype, device=x.device)
            self._cast[key] = k
        return k


class UniformBlur(_KernelOperator):
    """Convolution with one PSF under a periodic boundary, computed with the FFT.

    Parameters
    ----------
    kernel : array of shape (kh, kw)
        Odd-sized, centred PSF (see the module docstring for the convolution
        convention). numpy, torch or cupy; stored as float64.

    Notes
    -----
    ``K x = F⁻¹(H · F x)`` with ``H`` the FFT of the kernel zero-padded to the image
    size and rolled so that its centre sits at pixel ``(0, 0)``; the adjoint uses
    ``conj(H)`` and is exact. Works on any ``(N, C, H, W)`` image at least as large as
    the kernel; transfer functions are cached per size, dtype and device.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> K = pd.UniformBlur(np.ones((5, 5)) / 25)     # a 5×5 box blur
    >>> x = np.random.default_rng(0).random((64, 64))
    >>> y = K(x)                                     # (H, W) numpy in, numpy out
    >>> y.shape, y.dtype
    ((64, 64), dtype('float64'))
    >>> round(float(y[10, 10]), 4), round(float(x[8:13, 8:13].mean()), 4)  # the 5×5 mean around it
    (0.4587, 0.4587)
    >>> bool(np.isclose(y[0, 0], np.roll(x, (2, 2), axis=(0, 1))[:5, :5].mean()))  # periodic border
    True
    """

    def __init__(self, kernel: Any):
        super().__init__(kernel)
        self._tf: Dict[Tuple, torch.Tensor] = {}

    def transfer_function(
        self, shape: Tuple[int, int], dtype: torch.dtype = torch.float64, device: Any = "cpu"
    ) -> torch.Tensor:
        """Return the ``rfft2`` of the kernel for images of spatial ``shape`` = (H, W).

        Returns
        -------
        torch.Tensor
            Complex tensor of shape ``(H, W // 2 + 1)`` (complex64 for float32,
            complex128 for float64) on ``device``.
        """
        h, w = int(shape[0]), int(shape[1])
        kh, kw = self.kernel.shape
        if kh > h or kw > w:
            raise ValueError(
                f"kernel of shape {(kh, kw)} is larger than the image (H, W) = {(h, w)}"
            )
        key = (h, w, dtype, torch.device(device))
        tf = self._tf.get(key)
        if tf is None:
            pad = torch.zeros(h, w, dtype=torch.float64)
            pad[:kh, :kw] = self.kernel
            pad = torch.roll(pad, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
            tf = torch.fft.rfft2(pad).to(device=device)
            tf = tf.to(torch.complex64 if dtype == torch.float32 else torch.complex128)
            self._tf[key] = tf
        return tf

    def _apply_tf(self, x: torch.Tensor, conj: bool) -> torch.Tensor:
        tf = self.transfer_function(x.shape[-2:], x.dtype, x.device)
        if conj:
            tf = tf.conj()
        if x.numel() == 0:  # an empty batch, as the other operators return it (MKL's FFT refuses one)
            return x.clone()
        return torch.fft.irfft2(torch.fft.rfft2(x) * tf, s=x.shape[-2:])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_tf(x, conj=False)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply_tf(y, conj=True)

    def __repr__(self) -> str:
        return f"UniformBlur(kernel_size={self.kernel_size})"


def _pad_amounts(kernel_size: Tuple[int, int]) -> Tuple[int, int, int, int]:
    kh, kw = kernel_size
    return (kw // 2, kw // 2, kh // 2, kh // 2)  # F.pad order: left, right, top, bottom


def _unpad_axis(p: torch.Tensor, before: int, after: int, n: int, mode: str, dim: int) -> torch.Tensor:
    """Adjoint of padding ``before``/``after`` entries along ``dim`` (padded length n+before+after)."""
    if before == 0 and after == 0:
        return p
    centre = p.narrow(dim, before, n)
    if mode == "zero":
        return centre
    out = centre.clone()
    top = p.narrow(dim, 0, before)
    bottom = p.narrow(dim, before + n, after)
    if mode == "replicate":
        out.narrow(dim, 0, 1).add_(top.sum(dim, keepdim=True))
        out.narrow(dim, n - 1, 1).add_(bottom.sum(dim, keepdim=True))
    elif mode == "reflect":
        # padded index before-1-j holds x[j+1]; padded index before+n+j holds x[n-2-j]
        if before:
            out.narrow(dim, 1, before).add_(top.flip(dim))
        if after:
            out.narrow(dim, n - 1 - after, after).add_(bottom.flip(dim))
    elif mode == "periodic":
        # padded index j < before holds x[n-before+j]; padded index before+n+j holds x[j]
        if before:
            out.narrow(dim, n - before, before).add_(top)
        if after:
            out.narrow(dim, 0, after).add_(bottom)
    else:  # pragma: no cover - validated in __init__
        raise ValueError(mode)
    return out


class Convolution(_KernelOperator):
    """Spatial convolution with one PSF and a padded boundary; same-size output.

    Parameters
    ----------
    kernel : array of shape (kh, kw)
        Odd-sized, centred PSF; convolution convention (``scipy.ndimage.convolve``).
    boundary : {'replicate', 'reflect', 'zero', 'periodic'}
        How the image is extended beyond its border: ``'replicate'`` repeats the edge
        pixel (scipy ``'nearest'``), ``'reflect'`` mirrors without repeating the edge
        (scipy ``'mirror'``), ``'zero'`` pads with zeros (scipy ``'constant'``),
        ``'periodic'`` wraps around (scipy ``'wrap'``).
    method : {'auto', 'direct', 'fft'}
        The computation: ``'direct'`` uses ``conv2d``; ``'fft'`` convolves the padded image
        with an FFT of the padded size (the same numbers up to rounding, much faster for large
        kernels and for float64 on CPU); ``'auto'`` (default) picks ``'fft'`` for kernels with
        more than 25 taps.

    Notes
    -----
    The forward pads the image by ``(kh//2, kw//2)`` and computes a valid correlation
    with the flipped kernel (``torch.nn.functional.conv2d``, depthwise). The adjoint is
    written out exactly: a transposed convolution followed by the transpose of the
    padding (border contributions are folded back onto the pixels they were copied
    from). ``'reflect'`` and ``'periodic'`` need the image to be larger than half the
    kernel.
    """

    def __init__(self, kernel: Any, boundary: str = "replicate", method: str = "auto"):
        super().__init__(kernel)
        if boundary not in _BOUNDARIES:
            raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
        if method not in ("auto", "direct", "fft"):
            raise ValueError(f"method must be 'auto', 'direct' or 'fft', got {method!r}")
        self.boundary = boundary
        self._pads = _pad_amounts(self.kernel_size)
        kh, kw = self.kernel_size
        self.method = ("fft" if kh * kw > 25 else "direct") if method == "auto" else method
        self._tf: Dict[Tuple, torch.Tensor] = {}

    def _padded_tf(self, x: torch.Tensor) -> torch.Tensor:
        """rfft2 of the kernel (top-left aligned) on the padded grid."""
        kh, kw = self.kernel_size
        ph, pw = x.shape[-2] + kh - 1, x.shape[-1] + kw - 1
        key = (ph, pw, x.dtype, x.device)
        tf = self._tf.get(key)
        if tf is None:
            tf = torch.fft.rfft2(self.kernel, s=(ph, pw)).to(device=x.device)
            tf = tf.to(torch.complex64 if x.dtype == torch.float32 else torch.complex128)
            self._tf[key] = tf
        return tf

    def _weight(self, x: torch.Tensor) -> torch.Tensor:
        # conv2d correlates; flip to convolve. One kernel for every channel (depthwise).
        k = self._kernel_as(x).flip((0, 1))
        c = x.shape[1]
        return k[None, None].expand(c, 1, *k.shape)

    def _check_size(self, x: torch.Tensor) -> None:
        kh, kw = self.kernel_size
        h, w = x.shape[-2:]
        if self.boundary in ("reflect", "periodic") and (kh // 2 >= h or kw // 2 >= w):
            raise ValueError(
                f"boundary={self.boundary!r} needs an image larger than half the kernel "
                f"{(kh, kw)}, got (H, W) = {(h, w)}"
            )

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        if self.boundary == "zero":
            xp = F.pad(x, self._pads)
        else:
            mode = "circular" if self.boundary == "periodic" else self.boundary
            xp = F.pad(x, self._pads, mode=mode)
        if self.method == "fft":
            # circular convolution on the padded grid; the valid part never wraps
            kh, kw = self.kernel_size
            full = torch.fft.irfft2(torch.fft.rfft2(xp) * self._padded_tf(x), s=xp.shape[-2:])
            return full[..., kh - 1 :, kw - 1 :]
        return F.conv2d(xp, self._weight(x), groups=x.shape[1])

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_size(y)
        if self.method == "fft":
            kh, kw = self.kernel_size
            yp = F.pad(y, (kw - 1, 0, kh - 1, 0))
            p = torch.fft.irfft2(torch.fft.rfft2(yp) * self._padded_tf(y).conj(), s=yp.shape[-2:])
        else:
            p = F.conv_transpose2d(y, self._weight(y), groups=y.shape[1])
        left, right, top, bottom = self._pads
        h, w = y.shape[-2:]
        p = _unpad_axis(p, top, bottom, h, self.boundary, dim=2)
        return _unpad_axis(p, left, right, w, self.boundary, dim=3)

    def __repr__(self) -> str:
        return (
            f"Convolution(kernel_size={self.kernel_size}, boundary={self.boundary!r}, "
            f"method={self.method!r})"
        )
