"""Motion estimation: blur flow by SEN (learned) or a classical global linear-motion baseline, and
optical flow between frames (TV-L1 or a flow network) for Reblur2Deblur."""
from .classical import estimate_flow_classical, estimate_linear_motion
from .learned import default_flow_model, estimate_flow
from .optical_flow import neighbour_flows, optical_flow

__all__ = [
    "estimate_flow",
    "default_flow_model",
    "estimate_flow_classical",
    "estimate_linear_motion",
    "optical_flow",
    "neighbour_flows",
]
