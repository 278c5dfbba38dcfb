"""Blind motion-flow estimation: SEN (learned) and a classical global linear-motion baseline."""
from .classical import estimate_flow_classical, estimate_linear_motion
from .learned import default_flow_model, estimate_flow

__all__ = ["estimate_flow", "default_flow_model", "estimate_flow_classical", "estimate_linear_motion"]
