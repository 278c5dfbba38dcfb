"""Parameter schedules for the splitting solvers (HQS, ADMM).

Two conventions meet here. Wu et al. write the x-step as
``[KᵀK + βI] x = β z + Kᵀ y`` with β rising over the iterations; DPIR (Zhang et al.)
parametrises the same iteration by the denoiser strength σ_k, falling log-uniformly
from a large value to the noise level σ, with ``β_k = ρ_k = λ σ² / σ_k²``. The prior
therefore receives ``σ_k = σ · sqrt(λ / β_k)``: the noise level implied by β.
"""
from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._checks import check_real

__all__ = [
    "geometric_betas",
    "dpir_schedule",
    "sigma_from_beta",
    "beta_from_sigma",
    "resolve_schedule",
    "prior_schedule",
    "DEFAULT_LAMBDA",
    "DEFAULT_SIGMA_START",
    "MIN_NOISE_LEVEL",
]

#: λ of the DPIR schedule (trade-off between data term and prior).
DEFAULT_LAMBDA = 0.23
#: Initial denoiser strength of the DPIR schedule (49 grey levels of 255).
DEFAULT_SIGMA_START = 49.0 / 255.0
#: Noise level used for the schedule when the given noise level is 0 (noise-free
#: data still need a little regularisation: the blur kernel is ill-conditioned).
MIN_NOISE_LEVEL = 2.0 / 255.0


def _check_positive(name: str, v: float, allow_zero: bool = False) -> float:

    return check_real(v, name, allow_zero=allow_zero)


def geometric_betas(beta_start: float, beta_end: float, n_iter: int) -> List[float]:
    """β rising geometrically from ``beta_start`` to ``beta_end`` over ``n_iter`` steps.

    Returns
    -------
    list of float
        ``n_iter`` values; a single step gives ``[beta_end]``.
    """
    b0 = _check_positive("beta_start", beta_start)
    b1 = _check_positive("beta_end", beta_end)
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    if n_iter == 1:
        return [b1]
    return [float(v) for v in np.geomspace(b0, b1, int(n_iter))]


def dpir_schedule(
    noise_level: float,
    n_iter: int = 8,
    sigma_start: float = DEFAULT_SIGMA_START,
    lam: float = DEFAULT_LAMBDA,
    sigma_end: Optional[float] = None,
) -> Tuple[List[float], List[float]]:
    """DPIR-style schedule: σ_k log-uniform from ``sigma_start`` to the noise level.

    Parameters
    ----------
    noise_level : float
        Standard deviation σ of the Gaussian noise in ``y`` (images in [0, 1]). Values
        below :data:`MIN_NOISE_LEVEL` are raised to it.
    n_iter : int
        Number of outer iterations.
    sigma_start : float
        Denoiser strength at the first iteration.
    lam : float
        λ in ``β_k = λ σ² / σ_k²``.
    sigma_end : float, optional
        Last denoiser strength (default: the noise level).

    Returns
    -------
    sigmas, betas : list of float
        Prior strengths σ_k (falling) and penalty parameters β_k (rising).
    """
    s = max(_check_positive("noise_level", noise_level, allow_zero=True), MIN_NOISE_LEVEL)
    lam = _check_positive("lam", lam)
    s0 = _check_positive("sigma_start", sigma_start)
    s1 = s if sigma_end is None else _check_positive("sigma_end", sigma_end)
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    s0 = max(s0, s1)
    sigmas = [float(v) for v in np.geomspace(s0, s1, int(n_iter))] if n_iter > 1 else [s1]
    betas = [beta_from_sigma(sk, s, lam) for sk in sigmas]
    return sigmas, betas


def beta_from_sigma(sigma_k: float, noise_level: float, lam: float = DEFAULT_LAMBDA) -> float:
    """``β = λ σ² / σ_k²``."""
    return lam * noise_level**2 / sigma_k**2


def sigma_from_beta(beta: float, noise_level: float, lam: float = DEFAULT_LAMBDA) -> float:
    """The prior strength implied by β: ``σ_k = σ · sqrt(λ / β)``."""
    return noise_level * math.sqrt(lam / beta)


def _as_list(name: str, v: Sequence[float]) -> List[float]:
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(v).__name__}")
    out = [_check_positive(f"{name}[{i}]", b, allow_zero=True) for i, b in enumerate(v)]
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def prior_schedule(prior: object) -> Tuple[float, float]:
    """``(λ, σ_start)`` of HQS's default schedule with ``prior``.

    A prior may carry the schedule it was tuned for as attributes ``hqs_lam`` and
    ``hqs_sigma_start`` (floats > 0, or ``None``): on BSDS500 *val* the shipped DRUNets did best
    with a smaller λ and a larger first strength than DPIR's, BM3D with the larger first
    strength (``benchmarks/RESULTS.md``, "DRUNet prior"). What a prior does not set (and every
    plain callable) gets :data:`DEFAULT_LAMBDA` / :data:`DEFAULT_SIGMA_START`, DPIR's values.

    Raises
    ------
    ValueError, TypeError
        An attribute is set but not a finite number > 0 (the message names it).
    """
    lam = getattr(prior, "hqs_lam", None)
    start = getattr(prior, "hqs_sigma_start", None)
    return (DEFAULT_LAMBDA if lam is None else _check_positive("the prior's hqs_lam", lam),
            DEFAULT_SIGMA_START if start is None else _check_positive("the prior's hqs_sigma_start", start))


def resolve_schedule(
    noise_level: Optional[float],
    betas: Optional[Sequence[float]],
    sigmas: Optional[Sequence[float]],
    n_iter: Optional[int],
    lam: float,
    sigma_start: float,
    penalties_name: str = "betas",
) -> Tuple[list, list]:
    """Turn the (optional) schedule arguments of HQS/ADMM into explicit β and σ lists.

    The one place where a solver's schedule is resolved: with neither ``betas`` nor
    ``sigmas`` the DPIR schedule of ``noise_level``; otherwise the missing list follows
    from the given one through :func:`sigma_from_beta` / :func:`beta_from_sigma` at
    ``max(noise_level, MIN_NOISE_LEVEL)``. ``penalties_name`` is what the caller calls
    ``betas`` (ADMM's ``'rhos'``), for the error messages.

    Returns
    -------
    (list of float, list of float)
        ``(betas, sigmas)``, of equal length.
    """
    lam = _check_positive("lam", lam)
    sigma_start = _check_positive("sigma_start", sigma_start)
    if n_iter is not None and (isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral) or n_iter < 1):
        raise ValueError(f"n_iter must be a positive int, got {n_iter!r}")
    if betas is None and sigmas is None:
        if noise_level is None:
            raise ValueError(
                "give noise_level (the std of the noise in y, e.g. 0.01; "
                "pnpdeblur.pipeline.estimate_noise_level(y) estimates it from y) or an explicit "
                "betas/sigmas schedule"
            )
        sig, bet = dpir_schedule(noise_level, 8 if n_iter is None else n_iter, sigma_start, lam)
        return bet, sig
    nl = MIN_NOISE_LEVEL if noise_level is None else max(noise_level, MIN_NOISE_LEVEL)
    if betas is not None:
        bet = _as_list(penalties_name, betas)
        if any(b <= 0 for b in bet):
            raise ValueError(f"{penalties_name} must be positive, got {bet}")
        if sigmas is None:
            sig = [sigma_from_beta(b, nl, lam) for b in bet]
        else:
            sig = _as_list("sigmas", sigmas)
    else:
        sig = _as_list("sigmas", sigmas)
        if any(s <= 0 for s in sig):
            raise ValueError(f"sigmas must be positive when betas are derived from them, got {sig}")
        bet = [beta_from_sigma(s, nl, lam) for s in sig]
    if len(sig) != len(bet):
        raise ValueError(f"{penalties_name} and sigmas must have the same length, got {len(bet)} and {len(sig)}")
    if n_iter is not None and n_iter != len(bet):
        raise ValueError(f"n_iter={n_iter} disagrees with the schedule length {len(bet)}")
    return bet, sig
