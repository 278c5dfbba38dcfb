"""pnpdeblur: plug-and-play motion deblurring.

The core is the per-pixel motion-flow blur operator and the HQS/CG deconvolution
solvers; learned components plug in as operators, priors or losses.
"""
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

__all__ = [
    "backend",
    "LinearOperator",
    "MotionBlur",
    "TwoSegmentBlur",
    "WarpBlur",
    "UniformBlur",
    "Convolution",
]
