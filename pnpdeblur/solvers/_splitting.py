"""The loop HQS and ADMM share: checks, schedule, x-step, prior calls, history, result.

A splitting solver alternates an x-step ``[KᵀK + ρ_k I]⁻¹ (Kᵀ y + ρ_k v)`` with a
prior (denoiser) step at strength σ_k along a rising penalty schedule ρ_k. What differs
between HQS and ADMM is only the update inside one iteration (which ``v`` the x-step
gets, what the prior is applied to, ADMM's scaled dual); that part is a
:class:`SplittingUpdate` and everything else lives in :func:`run_splitting`.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch

from ..backend import from_torch
from ..operators.base import LinearOperator
from ._common import (
    XStep,
    check_image_range,
    check_noise_level,
    prepare_like,
    prepare_observation,
    prepare_weights,
    prior_caller,
    relative_residual,
)
from .cg import CGInfo
from .result import SolverResult, _Recorder
from .schedules import resolve_schedule

__all__ = ["Denoise", "SplittingUpdate", "run_splitting"]

#: ``denoise(v, x)``: the prior at this iteration's σ applied to ``v`` (``v`` itself when
#: σ = 0); ``x`` is the x-step solution the prior sees as ``context['x']``.
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SplittingUpdate:
    """One iteration of a splitting scheme; subclasses hold the scheme's own state.

    :meth:`__call__` gets the iteration's penalty ``rho``, the current ``z`` (last prior
    output) and ``x`` (last x-step solution, CG's warm start), the x-step ``solve`` and
    ``denoise``; it returns the new ``x``, the new ``z``, the CG info of the x-step
    (None for the FFT x-step) and extra history items (added after ``'residual'``).
    """

    def __call__(
        self, rho: float, z: torch.Tensor, x: torch.Tensor, solve: XStep, denoise: Denoise
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[CGInfo], Dict[str, Any]]:
        raise NotImplementedError


def run_splitting(
    name: str,
    penalty_name: str,
    make_update: Callable[[torch.Tensor], SplittingUpdate],
    y: Any,
    K: LinearOperator,
    prior: Callable,
    noise_level: Optional[float],
    penalties: Optional[Sequence[float]],
    sigmas: Optional[Sequence[float]],
    n_iter: Optional[int],
    lam: float,
    sigma_start: float,
    cg_iters: int,
    cg_tol: float,
    x_step: str,
    x0: Any,
    reference: Any,
    callback: Optional[Callable[[Dict[str, Any], torch.Tensor], Any]],
    progress: Optional[bool],
    context: Optional[Dict[str, Any]],
    differentiable: bool,
    preconditioner: Any,
    weights: Any = None,
) -> SolverResult:
    """Run a splitting solver (the arguments are those of :func:`~pnpdeblur.solvers.hqs`).

    Parameters
    ----------
    name : str
        Solver name (progress bar label).
    penalty_name : str
        Name of the penalty in the history (``'beta'``, ``'rho'``); the resolved
        schedule appears in ``settings`` under that name plus ``'s'``.
    make_update : callable
        ``make_update(z0) -> SplittingUpdate``, called once with the initial ``z``
        (``x0``, default ``y``), as a torch ``(N, C, H, W)`` tensor.
    penalties : sequence of float, optional
        The explicit penalty schedule (``betas`` / ``rhos``).

    Returns
    -------
    SolverResult
        ``x`` the last prior output ``z``, ``aux`` the last x-step solution, both in the
        caller's array type and layout; ``history`` with ``'iteration'``, the penalty,
        ``'sigma'``, ``'residual'`` (of ``z``), the update's extras, ``'cg_iterations'``
        and ``'cg_converged'`` for CG x-steps, ``'time'`` and ``'psnr'``.
    """
    yt, kind, restore = prepare_observation(y, K)
    check_image_range(yt)
    noise_level = check_noise_level(noise_level)
    pens, sig = resolve_schedule(noise_level, penalties, sigmas, n_iter, lam, sigma_start, penalty_name + "s")
    call_prior = prior_caller(prior)
    ref = prepare_like(reference, yt, "reference")
    z = prepare_like(x0, yt, "x0", detach=not differentiable)
    z = yt.clone() if z is None else z
    update = make_update(z)
    w = prepare_weights(weights, yt)
    solve = XStep(K, yt, cg_iters, cg_tol, x_step, differentiable, preconditioner, w)
    rec = _Recorder(len(pens), ref, callback, progress, name)
    x = z
    all_conv = True
    try:
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            for k, (rho, sigma) in enumerate(zip(pens, sig)):

                def denoise(v: torch.Tensor, x_k: torch.Tensor) -> torch.Tensor:
                    # the prior's context always says 'beta', whatever the solver calls it
                    ctx = {"y": yt, "K": K, "iteration": k, "beta": rho, "x": x_k}
                    if context:
                        ctx.update(context)
                    return call_prior(v, sigma, ctx) if sigma > 0 else v

                x, z, info, extra = update(rho, z, x, solve, denoise)
                entry: Dict[str, Any] = {
                    "iteration": k,
                    penalty_name: rho,
                    "sigma": sigma,
                    "residual": relative_residual(K, z, yt, weights=w),
                    **extra,
                }
                if info is not None:
                    entry["cg_iterations"] = info.iterations
                    entry["cg_converged"] = info.converged
                    all_conv &= info.converged
                if rec.record(entry, z):
                    break
    finally:
        rec.close()
    settings = {
        "noise_level": noise_level, penalty_name + "s": pens, "sigmas": sig, "cg_iters": cg_iters,
        "cg_tol": cg_tol, "lam": lam, "x_step": solve.method, "prior": repr(prior),
        "preconditioner": preconditioner if preconditioner is None or isinstance(preconditioner, str)
        else repr(preconditioner),
        "weighted": w is not None,
    }
    return SolverResult(
        x=from_torch(restore(z), kind),
        history=rec.history,
        settings=settings,
        converged=all_conv,
        aux=from_torch(restore(x), kind),
    )
