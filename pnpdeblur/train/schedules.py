"""Learning-rate schedules for :class:`torch.optim.lr_scheduler.LambdaLR`."""
from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, Callable, Optional, Sequence

__all__ = ["linear_decay_lambda", "step_decay_lambda"]


def _real(value: Any) -> bool:
    """A real number (Python or numpy), not a bool, a string or None."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integral(value: Any) -> bool:
    """An int or an integral float (``6.0``); NaN and Inf are not (``int()`` would raise)."""
    return _real(value) and math.isfinite(value) and int(value) == value


def linear_decay_lambda(
    steps: int,
    lr: float,
    warmup_steps: int = 0,
    decay_start: Optional[int] = None,
    lr_end: Optional[float] = None,
) -> Callable[[int], float]:
    """Multiplier of ``lr`` for step ``s``: optional warm-up, constant, then linear decay.

    With ``s`` the 0-based index of an optimiser step (what ``LambdaLR`` passes after
    ``s`` calls of ``scheduler.step()``), the learning rate used by that step is
    ``lr * f(s)`` with

    - ``f(s) = (s + 1) / warmup_steps`` for ``s < warmup_steps`` (linear from 0, full
      ``lr`` at step ``warmup_steps - 1``; no step is wasted at lr 0),
    - ``f(s) = 1`` until ``decay_start``,
    - from ``decay_start`` linearly to ``lr_end / lr`` at the last step ``steps - 1``:
      ``f(s) = 1 + (s - decay_start) / (steps - 1 - decay_start) * (lr_end / lr - 1)``,
    - ``f(s) = lr_end / lr`` beyond the last step.

    Wu et al.'s "1.25e-3 for 50 epochs, then linearly to 1.25e-5 over 40" is
    ``linear_decay_lambda(90 * E, 1.25e-3, decay_start=50 * E, lr_end=1.25e-5)`` for
    ``E`` steps an epoch.

    Parameters
    ----------
    steps : int
        Total optimiser steps (≥ 1).
    lr : float
        Peak learning rate (> 0); only used to turn ``lr_end`` into a ratio.
    warmup_steps : int
        Warm-up length (0: none).
    decay_start : int or None
        First step of the decay (``None``: no decay; ``decay_start >= steps`` also never
        decays).
    lr_end : float or None
        Learning rate of the last step (default ``lr``).

    Returns
    -------
    callable
        ``f(step: int) -> float``.
    """
    if not _integral(steps) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not (_real(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not _integral(warmup_steps) or not 0 <= warmup_steps <= steps:
        raise ValueError(f"warmup_steps must be an int in [0, steps={steps}], got {warmup_steps!r}")
    if decay_start is not None and (not _integral(decay_start) or not 0 <= decay_start <= steps):
        raise ValueError(f"decay_start must be None or an int in [0, steps={steps}], got {decay_start!r}")
    end_ratio = 1.0 if lr_end is None else float(lr_end) / float(lr) if _real(lr_end) else math.nan
    if not (math.isfinite(end_ratio) and end_ratio >= 0):  # a string is refused, not parsed
        raise ValueError(f"lr_end must be a finite number >= 0, got {lr_end!r}")
    steps, warmup_steps = int(steps), int(warmup_steps)
    last = steps - 1

    def factor(step: int) -> float:
        f = 1.0
        if decay_start is not None and step >= decay_start and decay_start < steps:
            span = last - decay_start
            # decay_start == last: the final step alone is at lr_end.
            t = 1.0 if span <= 0 else min(1.0, (step - decay_start) / span)
            f = 1.0 + t * (end_ratio - 1.0)
        if step < warmup_steps:
            f *= (step + 1) / warmup_steps
        return f

    return factor


def step_decay_lambda(
    base: Callable[[int], float], milestones: Sequence[int] = (), gamma: float = 0.1
) -> Callable[[int], float]:
    """``base`` multiplied by ``gamma`` once for every milestone reached: ``f(s) = base(s)·γ^#{m ≤ s}``.

    Step ``s`` is 0-based as in :func:`linear_decay_lambda`, so with ``milestones=(100,)``
    steps 0–99 use the full rate and step 100 onwards ``γ`` times it (PyTorch's
    ``MultiStepLR`` convention). Nah et al.'s DeepDeblur schedule is
    ``step_decay_lambda(linear_decay_lambda(450_000, 5e-5), (150_000,), 0.1)``.
    """
    ms = sorted(int(m) for m in milestones)
    if not (_real(gamma) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    if not ms:
        return base

    def factor(step: int) -> float:
        return base(step) * gamma ** bisect.bisect_right(ms, step)

    return factor
