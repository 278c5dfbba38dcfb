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

from ..backend import from_torch
from ..operators.base import LinearOperator
from ._common import (
    XStep,
    check_image_range,
    check_noise_level,
    prepare_like,
    prepare_observation,
    prior_caller,
    relative_residual,
)
from .result import SolverResult, _Recorder
from .schedules import DEFAULT_LAMBDA, DEFAULT_SIGMA_START, resolve_schedule

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
) -> SolverResult:
    """Deblur ``y = K x + n`` by plug-and-play ADMM.

    Parameters are those of :func:`~pnpdeblur.solvers.hqs` with ``rhos`` (the ADMM
    penalties) in place of ``betas``; the default schedule is the same DPIR-style one
    derived from ``noise_level``. ``differentiable=True`` keeps the autograd graph (CG
    x-steps differentiated implicitly), as for HQS, and ``preconditioner`` (None,
    ``'uniform'`` or a callable ``P(r, beta)``) preconditions the CG x-step as for HQS.

    Returns
    -------
    SolverResult
        ``x`` (last prior output), ``aux`` (last x-step solution), ``history`` (adds
        ``'primal_residual'`` = ‖x − z‖/‖z‖), ``settings``, ``converged``.
    """
    yt, kind, restore = prepare_observation(y, K)
    check_image_range(yt)
    noise_level = check_noise_level(noise_level)
    rho_list, sig = resolve_schedule(noise_level, rhos, sigmas, n_iter, lam, sigma_start)
    call_prior = prior_caller(prior)
    ref = prepare_like(reference, yt, "reference")
    z = prepare_like(x0, yt, "x0", detach=not differentiable)
    z = yt.clone() if z is None else z
    u = torch.zeros_like(z)
    solve = XStep(K, yt, cg_iters, cg_tol, x_step, differentiable, preconditioner)
    rec = _Recorder(len(rho_list), ref, callback, progress, "admm")
    x = z
    all_conv = True
    prev_rho = None
    try:
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            for k, (rho, sigma) in enumerate(zip(rho_list, sig)):
                if prev_rho is not None:
                    u = u * (prev_rho / rho)
                prev_rho = rho
                x, info = solve(z - u, rho, x)
                ctx = {"y": yt, "K": K, "iteration": k, "beta": rho, "x": x}
                if context:
                    ctx.update(context)
                v = x + u
                z = call_prior(v, sigma, ctx) if sigma > 0 else v
                u = u + x - z
                entry: Dict[str, Any] = {
                    "iteration": k,
                    "rho": rho,
                    "sigma": sigma,
                    "residual": relative_residual(K, z, yt),
                    "primal_residual": float(
                        torch.linalg.vector_norm(x - z) / torch.linalg.vector_norm(z).clamp_min(1e-30)
                    ),
                }
                if info is not None:
                    entry["cg_iterations"] = info.iterations
                    entry["cg_converged"] = info.converged
                    all_conv &= info.converged
                if rec.record(entry, z):
                    break
    finally:
        rec.close()
    settings = dict(
        noise_level=noise_level, rhos=rho_list, sigmas=sig, cg_iters=cg_iters, cg_tol=cg_tol,
        lam=lam, x_step=solve.method, prior=repr(prior),
        preconditioner=preconditioner if preconditioner is None or isinstance(preconditioner, str)
        else repr(preconditioner),
    )
    return SolverResult(
        x=from_torch(restore(z), kind),
        history=rec.history,
        settings=settings,
        converged=all_conv,
        aux=from_torch(restore(x), kind),
    )
