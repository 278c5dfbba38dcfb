"""Regression losses for motion-flow estimation (Wu et al., eq. 1)."""
from __future__ import annotations

import numpy as np
import torch

from .._checks import check_flag
from ._checks import check_finite

__all__ = ["flow_l2_loss"]


def flow_l2_loss(pred: torch.Tensor, target: torch.Tensor, symmetric: bool = False) -> torch.Tensor:
    r"""Mean squared error between flows, optionally invariant to the sign of each motion vector.

    ``symmetric=False`` is Wu et al.'s eq. 1, :math:`\frac1N \|U^* - U^l\|_2^2` over all
    ``N`` elements (both components), for labels canonicalised to ``u >= 0``.
    ``symmetric=True`` takes, per pixel, the better of ``pred`` and ``-pred``
    (``min(|f̂ - f|², |f̂ + f|²) / 2``), since ``m`` and ``-m`` are the same line blur: the network is
    then free to output either representative, and near-vertical motions (where the canonical
    label flips sign as ``u`` crosses 0) are not averaged to zero.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, 2, H, W)`` flows in pixels, same shape.
    symmetric : bool

    Returns
    -------
    torch.Tensor
        0-d tensor, in px² per flow component (the unit of Wu et al.'s table 1).

    Raises
    ------
    TypeError
        ``pred``/``target`` not float tensors, ``symmetric`` not a bool.
    ValueError
        Shapes other than the same ``(N, 2, H, W)``, NaN or Inf.
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"pred and target must be torch tensors, got {type(pred).__name__}, {type(target).__name__}")
    for name, t in (("pred", pred), ("target", target)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a float tensor (pixels), got dtype {t.dtype}")
    symmetric = check_flag(symmetric, "symmetric")
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"pred and target must both be (N, 2, H, W), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    check_finite(pred, "pred")
    check_finite(target, "target")
    if not symmetric:
        return (pred - target).square().mean()
    minus = (pred - target).square().sum(1)
    plus = (pred + target).square().sum(1)
    return torch.minimum(minus, plus).mean() / 2
