"""Plug-and-play ADMM with the same prior protocol and schedules as :func:`hqs`.

Scaled-form ADMM for ``min_x ½‖K x − y‖² + γ p(x)`` with penalty ρ_k rising along the
schedule::

    x = [KᵀK + ρ I]⁻¹ (Kᵀ y + ρ (z − u))
    z = prior(x + u, σ_k)
    u = u + x − z          (u rescaled by ρ_old/ρ_new when ρ changes)
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ..operators.base import LinearOperator
from ._splitting import SplittingUpdate, run_splitting
from .result import SolverResult
from .schedules import DEFAULT_LAMBDA, DEFAULT_SIGMA_START

__all__ = ["admm"]


def admm(
    y: Any,
    K: LinearOperator,
    prior: Callable,
    noise_level: Optional[float] = None,
    rhos: Optional[Sequence[float]] = None,
    cg_iters: int = 30,
    x0: Any = None,
    *,
    sigmas: Optional[Sequence[float]] = None,
    n_iter: Optional[int] = None,
    lam: float = DEFAULT_LAMBDA,
    sigma_start: float = DEFAULT_SIGMA_START,
    cg_tol: float = 1e-4,
    x_step: str = "auto",
    reference: Any = None,
    callback: Optional[Callable[[Dict[str, Any], torch.Tensor], Any]] = None,
    progress: Optional[bool] = None,
    context: Optional[Dict[str, Any]] = None,
    differentiable: bool = False,
    preconditioner: Any = None,
    weights: Any = None,
) -> SolverResult:
    """Deblur ``y = K x + n`` by plug-and-play ADMM.

    Parameters are those of :func:`~pnpdeblur.solvers.hqs` with ``rhos`` (the ADMM
    penalties) in place of ``betas``; the default schedule is the same DPIR-style one
    derived from ``noise_level``. ``differentiable=True`` keeps the autograd graph (CG
    x-steps differentiated implicitly), as for HQS, and ``preconditioner`` (None,
    ``'uniform'``, ``'tiles'``, ``'jacobi'`` or a callable ``P(r, beta)``) preconditions the CG x-step as for HQS.
    ``weights`` (per-pixel weights of the data term, e.g. 0 for clipped pixels) are those of
    :func:`~pnpdeblur.solvers.hqs`.

    Returns
    -------
    SolverResult
        ``x`` (last prior output), ``aux`` (last x-step solution), ``history`` (adds
        ``'primal_residual'`` = ‖x − z‖/‖z‖), ``settings``, ``converged``.
    """
    return run_splitting(
        "admm", "rho", _ADMMUpdate, y, K, prior, noise_level, rhos, sigmas, n_iter, lam, sigma_start,
        cg_iters, cg_tol, x_step, x0, reference, callback, progress, context, differentiable, preconditioner, weights,
    )


class _ADMMUpdate(SplittingUpdate):
    """Scaled ADMM: ``x = [KᵀK + ρ I]⁻¹ (Kᵀ y + ρ (z − u))``, ``z = prior(x + u, σ)``, ``u += x − z``.

    ``u`` is the dual scaled by 1/ρ, so it is rescaled by ρ_old/ρ_new when ρ changes.
    """

    def __init__(self, z0: torch.Tensor):
        self.u = torch.zeros_like(z0)
        self.prev_rho: Optional[float] = None

    def __call__(self, rho, z, x, solve, denoise):
        u = self.u
        if self.prev_rho is not None:
            u = u * (self.prev_rho / rho)
        self.prev_rho = rho
        x, info = solve(z - u, rho, x)
        z = denoise(x + u, x)
        self.u = u + x - z
        # ‖x − z‖ / ‖z‖ is a diagnostic: no graph (float() of a graph tensor warns)
        with torch.no_grad():
            primal = float(torch.linalg.vector_norm(x - z) / torch.linalg.vector_norm(z).clamp_min(1e-30))
        return x, z, info, {"primal_residual": primal}
