"""Checks of scalar arguments shared by every package (priors, solvers, nets, losses, pipelines).

They live here, below every package, so that a network or a loss need not import a prior's
module to check a number.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["check_real", "check_flag"]


def check_real(value: Any, name: str, *, allow_zero: bool = True, what: str = "") -> float:
    """Return a real scalar argument as a float, or raise naming it.

    The one check for scalar arguments of priors and solvers (``sigma``, ``noise_level``,
    schedule parameters): Python/numpy real numbers and one-element tensors pass; strings,
    bools and other types raise ``TypeError``; NaN, Inf, negative values (and zero unless
    ``allow_zero``) raise ``ValueError``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise ValueError(f"{name} must be a real scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a finite {kind} number{what}, got {value!r}")
    return v


def check_flag(value: Any, name: str) -> bool:
    """Return a yes/no argument as a Python ``bool``, or raise ``TypeError`` naming it.

    ``True``/``False`` and numpy's ``bool_`` pass. Anything else — ``"no"``, ``0``, ``None`` —
    raises rather than being read by its truth value: ``clip="no"`` would otherwise clip.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
