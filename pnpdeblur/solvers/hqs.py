"""Half-quadratic splitting (HQS) for non-blind deblurring with a swappable prior.

Following Wu et al., the problem ``min_x ½‖K x − y‖² + γ p(x)`` is split with an
auxiliary ``z`` and a penalty ``β/2 ‖x − z‖²``; the two sub-problems alternate while β
rises::

    x_{k+1} = [KᵀK + β_k I]⁻¹ (β_k z_k + Kᵀ y)         (CG, warm-started; FFT if K is periodic)
    z_{k+1} = prior(x_{k+1}, σ_k)                       (denoiser / proximal map)

with ``σ_k = σ sqrt(λ / β_k)`` the noise level implied by β (``γ = λ σ²``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence

import torch

from ..operators.base import LinearOperator
from ._splitting import SplittingUpdate, run_splitting
from .result import SolverResult
from .schedules import prior_schedule, resolve_schedule

__all__ = ["hqs", "resolve_schedule"]  # resolve_schedule lives in schedules (shared with ADMM)


def hqs(
    y: Any,
    K: LinearOperator,
    prior: Callable,
    noise_level: Optional[float] = None,
    betas: Optional[Sequence[float]] = None,
    cg_iters: int = 30,
    x0: Any = None,
    *,
    sigmas: Optional[Sequence[float]] = None,
    n_iter: Optional[int] = None,
    lam: Optional[float] = None,
    sigma_start: Optional[float] = None,
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
    """Deblur ``y = K x + n`` by half-quadratic splitting with a plug-in prior.

    Parameters
    ----------
    y : array
        Blurred, noisy image in [0, 1]: ``(N, C, H, W)``, ``(H, W)``, ``(H, W, C)``
        (numpy/cupy) or ``(C, H, W)`` (torch); float32 or float64. The result comes
        back in the same type, layout, dtype and device.
    K : LinearOperator
        The blur (``MotionBlur``, ``UniformBlur``, ``Convolution``, a composition ...).
    prior : callable
        ``prior(z, sigma, *, context=None) -> z'`` (see :mod:`pnpdeblur.priors`);
        a plain ``f(z, sigma)`` works too. Called on torch ``(N, C, H, W)`` tensors.
    noise_level : float, optional
        Standard deviation σ of the noise in ``y``. With no explicit schedule it sets
        the default DPIR-style schedule (8 iterations, σ_k from 49/255 down to σ,
        ``β_k = λσ²/σ_k²``; σ below 2/255 is raised to 2/255). It is the std of images
        in [0, 1]: a value above 1 (grey levels?) warns, as does a ``y`` far outside [0, 1].
    betas : sequence of float, optional
        Explicit rising β schedule (e.g. :func:`~pnpdeblur.solvers.schedules.geometric_betas`).
        The prior then gets ``σ_k = σ sqrt(λ/β_k)``.
    cg_iters : int
        Maximum CG iterations per x-step (ignored when the x-step is the FFT closed form).
    x0 : array, optional
        Initial ``z`` (default: ``y``, as in Wu et al.).
    sigmas : sequence of float, optional
        Explicit prior strengths (overrides the σ implied by ``betas``; alone it
        determines ``betas``).
    n_iter : int, optional
        Number of iterations of the default schedule.
    lam : float, optional
        λ of the schedule (``β_k = λσ²/σ_k²``). Default: the prior's ``hqs_lam`` when it has
        one (the shipped DRUNets: 0.18, tuned on BSDS500 *val*), else DPIR's
        :data:`~pnpdeblur.solvers.schedules.DEFAULT_LAMBDA` (0.23); see
        :func:`~pnpdeblur.solvers.schedules.prior_schedule`.
    sigma_start : float, optional
        First prior strength of the default schedule. Default: the prior's
        ``hqs_sigma_start`` when it has one (the shipped DRUNets and BM3D: 100/255), else DPIR's
        :data:`~pnpdeblur.solvers.schedules.DEFAULT_SIGMA_START` (49/255).
    cg_tol : float
        Relative tolerance of each CG solve.
    x_step : {'auto', 'cg', 'fft'}
        'auto' uses the exact FFT solve for a periodic uniform blur and CG otherwise.
    reference : array, optional
        Sharp image; adds PSNR (dB) to every history entry.
    callback : callable, optional
        ``callback(entry, x)`` after every iteration with the history entry (dict) and
        the current estimate (torch ``(N, C, H, W)``); returning True stops early.
    progress : bool, optional
        Show a tqdm bar (default: only on an interactive terminal).
    context : dict, optional
        Extra items passed to the prior's ``context`` (it always holds ``'y'``,
        ``'K'``, ``'iteration'``, ``'beta'`` and ``'x'``).
    differentiable : bool
        Keep the autograd graph so that gradients reach ``y``, ``x0``, the prior's
        parameters and tensors of ``K`` that require grad (e.g. a flow). Each CG x-step
        is differentiated implicitly (one adjoint CG solve in backward); the FFT x-step
        and the prior are differentiated by autograd. Default False: no graph.
    preconditioner : None, 'uniform', 'tiles', 'jacobi' or callable
        Preconditioner of the CG x-step ``(KᵀK + β I) x = b``; it changes the number of
        CG iterations, never the system solved. ``'uniform'``: ``(|H|² + β)⁻¹`` by FFT, H
        the transfer function of the line kernel of the flow's mean motion (m ≡ −m) for
        a ``MotionBlur``, or of the kernel itself for ``UniformBlur``/``Convolution``;
        ``'tiles'``: per-tile fitted kernels blended by a smooth partition of unity, damped
        (:class:`~pnpdeblur.solvers.preconditioners.TiledPreconditioner`); ``'jacobi'``:
        ``(diag(KᵀK) + β)⁻¹`` with the exact diagonal (see
        :mod:`pnpdeblur.solvers.preconditioners` and ``benchmarks/RESULTS.md`` for when
        each helps; none is a default). Under the ``cg_iters`` cap the x-steps stop before
        convergence in the first iterations, so a preconditioner that fits the blur badly
        changes the result: ``'uniform'`` on spatially varying flows lost 0.5–1.5 dB in HQS
        with the DRUNet at 30 iterations. A callable ``P(r, beta)`` gets
        torch ``(N, C, H, W)`` residuals and returns an SPD approximation of
        ``(KᵀK + β I)⁻¹ r``. Default None: plain CG (unused by the FFT x-step).
    weights : array, optional
        Per-pixel weights ``w ≥ 0`` of the data term, which becomes ``½ Σ w (K x − y)²``:
        y's shape and layout, or one channel shared by all; bool (a mask) or float. 0 leaves
        an observation out, e.g. a pixel the sensor clipped, which the linear model
        ``y = K x + n`` does not describe (:func:`~pnpdeblur.solvers.saturation_weights`); the
        prior then fills in what only those pixels saw. The x-step solves
        ``(KᵀWK + β I) x = KᵀW y + β z`` by CG (never by FFT). Default None: ``w ≡ 1`` (an
        all-ones array is the same problem and gives the same answer).

    Returns
    -------
    SolverResult
        ``x`` (the last prior output), ``aux`` (the last x-step solution), ``history``
        (``residual``, ``beta``, ``sigma``, ``cg_iterations``, ``cg_converged``,
        ``time``, ``psnr``; with ``weights`` the residual is weighted likewise), ``settings``
        and ``converged`` (every CG solve reached
        ``cg_tol``).

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> sharp = pd.data.sample_image("camera", 64)             # (64, 64, 1) float32 in [0, 1]
    >>> flow = np.zeros((2, 64, 64), np.float32); flow[0] = 7  # 7 px horizontal blur
    >>> K = pd.MotionBlur(flow)
    >>> noise = 0.01 * np.random.default_rng(0).standard_normal(sharp.shape)
    >>> y = (K(sharp) + noise).astype(np.float32)
    >>> res = pd.solvers.hqs(y, K, prior=pd.priors.TV(), noise_level=0.01)
    >>> res.x.shape, res.x.dtype, len(res.history)       # 8 iterations of the default schedule
    ((64, 64, 1), dtype('float32'), 8)
    >>> bool(pd.metrics.psnr(res.x, sharp) > pd.metrics.psnr(y, sharp) + 5)   # 24.2 -> 31.2 dB
    True
    """
    own_lam, own_start = prior_schedule(prior)
    lam = own_lam if lam is None else lam
    sigma_start = own_start if sigma_start is None else sigma_start
    return run_splitting(
        "hqs", "beta", lambda z0: _HQSUpdate(), y, K, prior, noise_level, betas, sigmas, n_iter, lam,
        sigma_start, cg_iters, cg_tol, x_step, x0, reference, callback, progress, context, differentiable,
        preconditioner, weights,
    )


class _HQSUpdate(SplittingUpdate):
    """``x = [KᵀK + β I]⁻¹ (Kᵀ y + β z)``, then ``z = prior(x, σ)``."""

    def __call__(self, rho, z, x, solve, denoise):
        x, info = solve(z, rho, x)
        return x, denoise(x, x), info, {}
