"""pnpdeblur: plug-and-play motion deblurring.

The core is the per-pixel motion-flow blur operator and the HQS/CG deconvolution
solvers; learned components plug in as operators, priors or losses.

Subpackages (imported on first use): ``operators``, ``solvers``, ``priors``, ``nets``,
``losses``, ``estimation``, ``data``, ``metrics``, ``viz``; blind deblurring:
:func:`estimate_flow` and :func:`deblur`; camera shake: :func:`deblur_shake`; either, chosen per
photo: :func:`deblur_auto`.
"""
import importlib as _importlib

from . import backend
from .operators import (
    Convolution,
    LinearOperator,
    MotionBlur,
    TwoSegmentBlur,
    UniformBlur,
    WarpBlur,
)

__version__ = "0.1.0"

_SUBMODULES = ("operators", "solvers", "priors", "nets", "losses", "estimation", "data", "metrics", "viz", "train")
# Blind deblurring entry points, imported on first use (they pull in the networks).
_LAZY_FUNCTIONS = {"estimate_flow": "estimation", "blur_score": "estimation", "is_blurred": "estimation",
                   "deblur": "pipeline", "deblur_shake": "camera_shake", "estimate_kernel": "estimation",
                   "deblur_auto": "auto"}

__all__ = [
    "backend",
    "LinearOperator",
    "MotionBlur",
    "TwoSegmentBlur",
    "WarpBlur",
    "UniformBlur",
    "Convolution",
    *_SUBMODULES,
    *_LAZY_FUNCTIONS,
]


def __getattr__(name):
    # Lazy subpackages: `import pnpdeblur` stays light (no matplotlib) until viz is used.
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    if name in _LAZY_FUNCTIONS:
        return getattr(_importlib.import_module(f".{_LAZY_FUNCTIONS[name]}", __name__), name)
    raise AttributeError(f"module 'pnpdeblur' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES) | set(_LAZY_FUNCTIONS))
