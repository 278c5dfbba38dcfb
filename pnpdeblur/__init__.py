"""pnpdeblur: plug-and-play motion deblurring.

The core is the per-pixel motion-flow blur operator and the HQS/CG deconvolution
solvers; learned components plug in as operators, priors or losses.

Subpackages (imported on first use): ``operators``, ``solvers``, ``priors``, ``nets``,
``data``, ``metrics``, ``viz``.
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

_SUBMODULES = ("operators", "solvers", "priors", "nets", "data", "metrics", "viz")

__all__ = [
    "backend",
    "LinearOperator",
    "MotionBlur",
    "TwoSegmentBlur",
    "WarpBlur",
    "UniformBlur",
    "Convolution",
    *_SUBMODULES,
]


def __getattr__(name):
    # Lazy subpackages: `import pnpdeblur` stays light (no matplotlib) until viz is used.
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pnpdeblur' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
