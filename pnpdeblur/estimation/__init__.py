"""Motion estimation: blur flow by SEN (learned) or a classical global linear-motion baseline, one
camera-shake kernel for the whole photo (classical, :func:`estimate_kernel`), and
optical flow between frames (TV-L1 or a flow network) for Reblur2Deblur, and a no-reference blur
detector (is a photo blurred at all?)."""
from .blur_detection import (DEFAULT_THRESHOLD, SINGLE_PASS_THRESHOLD, blur_score, default_threshold, flow_blur_score,
                             is_blurred, reblur_score)
from .classical import estimate_flow_classical, estimate_linear_motion
from .kernel import estimate_kernel, kernel_length
from .learned import default_flow_model, estimate_flow
from .optical_flow import neighbour_flows, optical_flow

__all__ = [
    "estimate_flow",
    "default_flow_model",
    "estimate_flow_classical",
    "estimate_linear_motion",
    "estimate_kernel",
    "kernel_length",
    "optical_flow",
    "neighbour_flows",
    "blur_score",
    "is_blurred",
    "flow_blur_score",
    "reblur_score",
    "DEFAULT_THRESHOLD",
    "SINGLE_PASS_THRESHOLD",
    "default_threshold",
]
