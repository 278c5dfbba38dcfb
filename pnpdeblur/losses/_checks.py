"""Input checks the losses share."""
from __future__ import annotations

import torch

__all__ = ["check_finite"]


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or Inf, else return ``x``.

    A loss of NaN inputs would be NaN and its gradient would spread NaN through the network's
    weights; naming the input at the loss says which one went wrong.
    """
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} holds NaN or Inf")
    return x
