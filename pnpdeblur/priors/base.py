"""The :class:`Prior` protocol and a base class that does the array bookkeeping.

A prior is any callable ``prior(z, sigma, *, context=None) -> z'``: a denoiser for
additive white Gaussian noise of standard deviation ``sigma`` (images in [0, 1]) or,
equivalently for HQS/ADMM, a proximal map whose strength is set by ``sigma``. The
output has the shape, dtype, device and array type of ``z``; ``sigma = 0`` returns
``z`` unchanged. ``context`` is an optional dict from the solver (``'y'``, ``'K'``,
``'iteration'``, ``'beta'`` ...) that learned priors may use and others ignore.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, runtime_checkable

import torch

from .._checks import check_real
from ..backend import array_kind, check_finite, check_float, from_torch, to_torch
from ..operators.base import to_nchw

__all__ = ["Prior", "BasePrior", "check_sigma", "check_real"]


@runtime_checkable
class Prior(Protocol):
    """Structural type of a prior: ``prior(z, sigma, *, context=None) -> z'``."""

    def __call__(self, z: Any, sigma: float, *, context: Optional[Dict[str, Any]] = None) -> Any:
        ...


def check_sigma(sigma: Any) -> float:
    """Return ``sigma`` as a float, raising for negative, non-finite or non-numeric values."""
    return check_real(sigma, "sigma", what=" (noise std)")


def refuse_grad(z: torch.Tensor, prior: str, engine: str) -> None:
    """Raise ``ValueError`` for a ``z`` that requires grad in grad mode, for priors that run ``engine``
    on numpy arrays: their result could carry no gradient, and a solve asked for one
    (``differentiable=True``) would silently skip every prior step."""
    if z.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"z requires grad, but {prior} runs {engine} on numpy arrays and gives no gradient: "
                         "pass z.detach() or call it under torch.no_grad() (with hqs/admm differentiable=True, "
                         "use a differentiable prior such as TV)")


class BasePrior:
    """Base class: converts ``z`` to a checked ``(N, C, H, W)`` torch tensor and back.

    Subclasses implement :meth:`_denoise` on torch tensors; it is only called with
    ``sigma > 0``. Layouts accepted at the boundary are those of the operators:
    ``(N, C, H, W)``, ``(H, W)``, numpy/cupy ``(H, W, C)``, torch ``(C, H, W)``.

    Attributes
    ----------
    hqs_lam, hqs_sigma_start : float or None
        The λ and first strength σ_1 of the schedule that :func:`~pnpdeblur.solvers.hqs` uses
        with this prior when it is given none; ``None`` (the default) leaves DPIR's 0.23 and
        49/255 (see :func:`~pnpdeblur.solvers.schedules.prior_schedule`).
    """

    hqs_lam: Optional[float] = None
    hqs_sigma_start: Optional[float] = None

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
        if t.numel() == 0:
            raise ValueError(f"z must not be empty, got shape {tuple(t.shape)}")
        if context is None:  # a direct call: the solvers check their data once, and their iterates may ring
            from ..solvers._common import check_image_range

            check_image_range(t, "z")
        if s == 0:
            return from_torch(restore(t.clone()), kind)
        out = self._denoise(t, s, context)
        return from_torch(restore(out.to(dtype=t.dtype, device=t.device)), kind)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
