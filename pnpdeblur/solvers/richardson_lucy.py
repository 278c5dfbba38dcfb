"""Richardson–Lucy deconvolution for any non-negative blur operator."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch

from .._checks import check_flag, check_real
from ..backend import from_torch
from ..operators.base import LinearOperator
from ._common import prepare_like, prepare_observation, relative_residual
from .result import SolverResult, _Recorder

__all__ = ["richardson_lucy"]


def richardson_lucy(
    y: Any,
    K: LinearOperator,
    iters: int = 30,
    x0: Any = None,
    *,
    normalize: bool = True,
    eps: float = 1e-12,
    clip: bool = False,
    reference: Any = None,
    callback: Optional[Callable[[Dict[str, Any], torch.Tensor], Any]] = None,
    progress: Optional[bool] = None,
) -> SolverResult:
    """Richardson–Lucy (EM for Poisson noise): ``x ← x · Kᵀ(y / K x) / Kᵀ1``.

    Parameters
    ----------
    y : array
        Blurred image, non-negative (negative values, e.g. from Gaussian noise, are
        clamped to 0), in any layout accepted by the operators; float32/float64.
    K : LinearOperator
        A blur with non-negative weights (``MotionBlur``, ``UniformBlur``,
        ``Convolution`` with a non-negative kernel ...).
    iters : int
        Number of iterations (RL has no stopping rule; early stopping regularises).
    x0 : array, optional
        Positive starting image (default: 0.5 everywhere, as scikit-image).
    normalize : bool
        Divide by ``Kᵀ1`` (correct near borders where the blur loses mass). With
        ``normalize=False``, ``x0`` = 0.5 and ``Convolution(psf, 'zero')`` this is
        exactly ``skimage.restoration.richardson_lucy``.
    eps : float
        Added to ``K x`` before dividing; finite and > 0.
    clip : bool
        Clip the result to [0, 1].
    reference, callback, progress
        As for :func:`~pnpdeblur.solvers.hqs`.

    Returns
    -------
    SolverResult
        ``x`` and a per-iteration ``history`` (``residual``, ``time``, ``psnr``).
    """
    yt, kind, restore = prepare_observation(y, K)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    normalize, clip = check_flag(normalize, "normalize"), check_flag(clip, "clip")

    # eps ≤ 0 divides by zero where K x vanishes (dark regions): NaN or Inf in x
    eps = check_real(eps, "eps", allow_zero=False)
    kern = getattr(K, "kernel", None)
    if isinstance(kern, torch.Tensor) and bool((kern < 0).any()):
        raise ValueError("richardson_lucy needs a non-negative blur; K's kernel has negative entries")
    x = prepare_like(x0, yt, "x0")
    if x is not None and bool((x < 0).any()):
        raise ValueError("x0 must be non-negative for Richardson–Lucy")
    x = torch.full_like(yt, 0.5) if x is None else x.clone()
    ref = prepare_like(reference, yt, "reference")
    rec = _Recorder(iters, ref, callback, progress, "richardson_lucy")
    with torch.no_grad():
        yp = yt.clamp_min(0)
        if normalize:
            norm = K._adjoint(torch.ones_like(yt)).clamp_min(1e-12)
        try:
            Kx = K._forward(x)
            for k in range(iters):
                ratio = yp / (Kx + eps)
                x = x * K._adjoint(ratio)
                if normalize:
                    x = x / norm
                Kx = K._forward(x)  # for the residual and the next iteration's ratio
                entry = {"iteration": k, "residual": relative_residual(K, x, yt, Kx)}
                if rec.record(entry, x):
                    break
        finally:
            rec.close()
    if clip:
        x = x.clamp(0, 1)
    settings = dict(iters=iters, normalize=normalize, eps=eps, clip=clip)
    return SolverResult(x=from_torch(restore(x), kind), history=rec.history, settings=settings)
