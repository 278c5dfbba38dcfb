"""Training losses: flow regression (more to come: reblur, multi-scale, adversarial, perceptual)."""
from .flow import flow_l2_loss

__all__ = ["flow_l2_loss"]
