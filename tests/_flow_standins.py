"""Stand-in flow networks for the direct tests of estimate_flow, blur detection and deblur (not a test module).

Each is a :class:`pnpdeblur.nets.SEN` (the smallest one: ``estimate_flow`` checks the type and
reads ``stride`` and ``config``) whose :meth:`estimate` is replaced by a known function, so the
tests know exactly which flow the library code received and what it must make of it.
"""
import torch

from pnpdeblur.data import canonicalize_flow
from pnpdeblur.nets.sen import SEN

__all__ = ["StandInSEN"]


class StandInSEN(SEN):
    """``estimate(x)`` = ``fn(x)`` (default: the constant ``vector``); records every call.

    ``calls`` holds ``(shape, training)`` of each call; ``inputs`` the input tensors.
    """

    def __init__(self, vector=(6.0, 0.0), fn=None, in_channels=3):
        super().__init__(in_channels=in_channels, width=1, levels=1, stacks=1)  # stride 8
        self.vector, self.fn = vector, fn
        self.calls, self.inputs = [], []

    @torch.no_grad()
    def estimate(self, x):
        self.calls.append((tuple(x.shape), self.training))
        self.inputs.append(x.clone())
        if self.fn is not None:
            return self.fn(x)
        f = torch.tensor(self.vector, dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
        return canonicalize_flow(f.expand(x.shape[0], 2, *x.shape[-2:]).clone())
