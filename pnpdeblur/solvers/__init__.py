"""Deconvolution solvers: CG, HQS, ADMM, closed-form FFT, Richardson–Lucy.

Every solver takes any :class:`~pnpdeblur.operators.LinearOperator` and (for HQS/ADMM)
any prior following :class:`pnpdeblur.priors.Prior`, so operator and prior can be
swapped independently::

    from pnpdeblur import solvers, priors
    res = solvers.hqs(y, K, prior=priors.TV(), noise_level=0.01)
"""
from . import schedules
from .admm import admm
from .cg import CGInfo, cg
from .fft import fft_deconv
from .hqs import hqs
from .preconditioners import JacobiPreconditioner, TiledPreconditioner, UniformPreconditioner
from .result import SolverResult
from .richardson_lucy import richardson_lucy
from .schedules import dpir_schedule, geometric_betas
from .weights import DEFAULT_SATURATION, crop_boundary, motion_blur_width, pad_boundary, pad_problem, saturation_weights

__all__ = [
    "cg",
    "CGInfo",
    "hqs",
    "admm",
    "fft_deconv",
    "richardson_lucy",
    "SolverResult",
    "schedules",
    "geometric_betas",
    "dpir_schedule",
    "UniformPreconditioner",
    "TiledPreconditioner",
    "JacobiPreconditioner",
    "saturation_weights",
    "DEFAULT_SATURATION",
    "pad_problem",
    "pad_boundary",
    "crop_boundary",
    "motion_blur_width",
]
