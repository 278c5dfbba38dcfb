"""Small shared helpers of :mod:`pnpdeblur.data` (seeds, argument checks)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["as_generator", "check_channels", "check_shape2", "is_finite_real"]


def is_finite_real(value) -> bool:
    """A real number that is neither a bool nor NaN/Inf (an Inf noise level would pass silently)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def as_generator(seed: int | np.random.Generator | torch.Generator | None,
                 name: str = "seed") -> np.random.Generator:
    """Turn ``seed`` (None, int, numpy Generator or SeedSequence, torch Generator) into a numpy one.

    A numpy Generator is returned as is (so the caller's stream advances). A ``torch.Generator``
    (DESIGN.md: every generator takes a seed, a numpy or a torch Generator) gives one 63-bit draw
    that seeds a new numpy Generator: the same torch state gives the same result, and the torch
    stream advances as a numpy one would."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, torch.Generator):
        draw = torch.randint(0, 2**63 - 1, (1,), generator=seed, device=seed.device, dtype=torch.int64)
        return np.random.default_rng(int(draw))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if int(seed) < 0:
            raise ValueError(f"{name} must be a non-negative int, got {seed}")
        return np.random.default_rng(int(seed))
    raise TypeError(f"{name} must be None, an int, a numpy.random.Generator or a torch.Generator, "
                    f"got {type(seed).__name__}")


def check_shape2(shape, name: str = "shape") -> tuple[int, int]:
    """Validate an ``(H, W)`` pair of positive ints."""
    try:
        h, w = shape
        ok = all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) >= 1 for s in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a pair (H, W) of positive ints, got {shape!r}")
    return int(h), int(w)


def check_channels(channels) -> int | None:
    """``channels`` if it is None, 1 or 3 (an int, not True or 1.0), else ``ValueError`` naming it."""
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, numbers.Integral)
                                 or channels not in (1, 3)):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    return None if channels is None else int(channels)
