"""Parameter schedules for the splitting solvers (HQS, ADMM).

Two conventions meet here. Wu et al. write the x-step as
``[KᵀK + βI] x = β z + Kᵀ y`` with β rising over the iterations; DPIR (Zhang et al.)
parametrises the same iteration by the denoiser strength σ_k, falling log-uniformly
from a large value to the noise level σ, with ``β_k = ρ_k = λ σ² / σ_k²``. The prior
therefore receives ``σ_k = σ · sqrt(λ / β_k)``: the noise level implied by β.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "geometric_betas",
    "dpir_schedule",
    "sigma_from_beta",
    "beta_from_sigma",
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
    from ..priors.base import check_real  # the one scalar check of priors and solvers

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
