"""The :class:`Prior` protocol and a base class that does the array bookkeeping.

A prior is any callable ``prior(z, sigma, *, context=None) -> z'``: a denoiser for
additive white Gaussian noise of standard deviation ``sigma`` (images in [0, 1]) or,
equivalently for HQS/ADMM, a proximal map whose strength is set by ``sigma``. The
output has the shape, dtype, device and array type of ``z``; ``sigma = 0`` returns
``z`` unchanged. ``context`` is an optional dict from the solver (``'y'``, ``'K'``,
``'iteration'``, ``'beta'`` ...) that learned priors may use and others ignore.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Protocol, runtime_checkable

import torch

from ..backend import array_kind, check_finite, check_float, from_torch, to_torch
from ..operators.base import to_nchw

__all__ = ["Prior", "BasePrior", "check_sigma"]


@runtime_checkable
class Prior(Protocol):
    """Structural type of a prior: ``prior(z, sigma, *, context=None) -> z'``."""

    def __call__(self, z: Any, sigma: float, *, context: Optional[Dict[str, Any]] = None) -> Any:
        ...


def check_sigma(sigma: Any) -> float:
    """Return ``sigma`` as a float, raising for negative, non-finite or non-numeric values."""
    if isinstance(sigma, torch.Tensor):
        if sigma.numel() != 1:
            raise ValueError(f"sigma must be a scalar, got a tensor of shape {tuple(sigma.shape)}")
        sigma = float(sigma)
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real):
        raise TypeError(f"sigma must be a real number, got {type(sigma).__name__}")
    s = float(sigma)
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite non-negative number (noise std), got {sigma!r}")
    return s


class BasePrior:
    """Base class: converts ``z`` to a checked ``(N, C, H, W)`` torch tensor and back.

    Subclasses implement :meth:`_denoise` on torch tensors; it is only called with
    ``sigma > 0``. Layouts accepted at the boundary are those of the operators:
    ``(N, C, H, W)``, ``(H, W)``, numpy/cupy ``(H, W, C)``, torch ``(C, H, W)``.
    """

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, z: Any, sigma: Any, *, context: Optional[Dict[str, Any]] = None) -> Any:
        """Denoise ``z`` at noise level ``sigma``.

        Parameters
        ----------
        z : array
            Image(s), float32 or float64, values nominally in [0, 1].
        sigma : float
            Noise standard deviation / prior strength, ``>= 0``.
        context : dict, optional
            Solver state (ignored by classical priors).

        Returns
        -------
        array
            Same type, shape, dtype and device as ``z``.
        """
        s = check_sigma(sigma)
        kind = array_kind(z, "z")
        t, restore = to_nchw(to_torch(z, "z"), kind, "z")
        if t.ndim != 4:
            raise ValueError(f"z must be an image, got shape {tuple(t.shape)}")
        check_float(t, "z")
        check_finite(t, "z")
        if s == 0:
            return from_torch(restore(t.clone()), kind)
        out = self._denoise(t, s, context)
        return from_torch(restore(out.to(dtype=t.dtype, device=t.device)), kind)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
