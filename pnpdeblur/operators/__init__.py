"""Linear operators: the motion-flow blur K and its relatives, all with exact adjoints."""
from .base import Identity, LinearOperator
from .convolution import Convolution, UniformBlur
from .dottest import dot_test
from .interop import to_scipy
from .motion import MAX_FLOW, MotionBlur, TwoSegmentBlur, motion_kernel, motion_kernel_table
from .warp import WarpBlur
from ._segment import FLOW_CACHE, FlowCache

__all__ = [
    "LinearOperator",
    "Identity",
    "MotionBlur",
    "TwoSegmentBlur",
    "WarpBlur",
    "UniformBlur",
    "Convolution",
    "MAX_FLOW",
    "motion_kernel",
    "motion_kernel_table",
    "FlowCache",
    "FLOW_CACHE",
    "dot_test",
    "to_scipy",
]
