"""Size a training run to a time budget: measure the step rate, then choose the steps.

A lent GPU comes for minutes, not days, and the learning-rate schedule of a recipe is
defined over its number of steps (decays at fractions of it). Cutting a long run at a
deadline would skip those decays; instead a short probe measures how many optimiser steps
a second this model, batch and device reach, and the run is given the steps that fit.
:attr:`pnpdeblur.train.TrainConfig.time_limit_s` stays as the safety net.
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
from typing import Any, Callable

import torch
from torch import nn

from .engine import _to_device

__all__ = ["measure_step_rate", "steps_for_budget", "steps_with_refills"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_rate(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Any],
    batch: Any,
    *,
    device: str = "auto",
    amp: bool = False,
    steps: int = 20,
    warmup: int = 5,
    lr: float = 1e-4,
) -> float:
    """Optimiser steps per second of ``model`` on one ``batch``, data loading excluded.

    The probe trains a deep copy of ``model`` with Adam (``model`` itself is left as it
    was), ``warmup`` untimed steps first (kernel selection, allocator), then ``steps`` timed
    ones between two device synchronisations.

    Parameters
    ----------
    model : torch.nn.Module
        The network to be trained (copied, never changed).
    loss_fn : callable
        ``loss_fn(model, batch) -> loss`` or ``(loss, extras)``, as for
        :class:`pnpdeblur.train.Trainer`.
    batch : Any
        One collated batch (tensors, or dicts/lists of them), the run's batch size.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` ...
    amp : bool
        Autocast to bf16 (fp16 where bf16 is unsupported) on CUDA, as the run will.
    steps, warmup : int
        Timed and untimed steps (``steps >= 1``, ``warmup >= 0``).
    lr : float
        The probe's Adam learning rate (its value hardly changes the time).

    Returns
    -------
    float
        Steps per second (> 0).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(model, batch) -> loss")
    for name, v, low in (("steps", steps, 1), ("warmup", warmup, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    probe = copy.deepcopy(model).to(dev).train()
    params = [p for p in probe.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr)
    batch = _to_device(batch, dev)
    dtype = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = amp and dev.type == "cuda"
    # fp16 needs loss scaling (bf16 does not): a scaler keeps the probe's steps like the run's.
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)

    def one_step() -> None:
        ctx = torch.autocast(device_type="cuda", dtype=dtype) if use_amp else contextlib.nullcontext()
        with ctx:
            out = loss_fn(probe, batch)
        loss = out[0] if isinstance(out, tuple) else out
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss.reshape(())).backward()
        scaler.step(opt)
        scaler.update()
        float(loss.detach())  # the engine reads the loss back every step: so does the probe

    for _ in range(warmup):
        one_step()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    _sync(dev)
    return steps / max(time.perf_counter() - t0, 1e-9)


def steps_for_budget(seconds: float, rate: float, *, fill: float = 0.9, minimum: int = 1) -> int:
    """Steps that fill ``fill`` of ``seconds`` at ``rate`` steps per second.

    ``fill < 1`` leaves room for what the probe does not time: data loading, validation
    passes, checkpoints and logging.

    Parameters
    ----------
    seconds : float
        Training time available (> 0).
    rate : float
        Steps per second, e.g. from :func:`measure_step_rate` (> 0).
    fill : float
        Fraction of ``seconds`` to plan for, in (0, 1].
    minimum : int
        Fewest steps returned (>= 1).

    Returns
    -------
    int
        ``max(minimum, floor(seconds * rate * fill))``.
    """
    for name, v in (("seconds", seconds), ("rate", rate)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    if isinstance(fill, bool) or not isinstance(fill, (int, float)) or not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill!r}")
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ValueError(f"minimum must be an int >= 1, got {minimum!r}")
    return max(minimum, int(math.floor(seconds * rate * fill)))


def steps_with_refills(
    seconds: float,
    rate: float,
    refill_seconds: float,
    steps_per_refill: int,
    *,
    fill: float = 0.9,
    minimum: int = 1,
) -> int:
    """Steps that fit ``fill`` of ``seconds`` when the data are remade every ``steps_per_refill`` steps.

    For a dataset that is refilled as training goes, such as RP-GAN's replay buffer
    (:class:`pnpdeblur.train.ReplayBuffer`): the first filling is already made, and each
    later block of ``steps_per_refill`` steps starts with a refill of ``refill_seconds``.
    ``n`` steps then take ``n / rate + refill_seconds * (ceil(n / steps_per_refill) - 1)``
    seconds; the largest ``n`` within ``fill * seconds`` is returned.

    Parameters
    ----------
    seconds : float
        Training time available (> 0), the first filling excluded.
    rate : float
        Optimiser steps per second (> 0), e.g. from :func:`measure_step_rate`.
    refill_seconds : float
        Time of one refill (>= 0), e.g. the time the first filling took.
    steps_per_refill : int
        Steps trained on one filling (>= 1): ``refresh_every`` epochs of the buffer.
    fill : float
        Fraction of ``seconds`` to plan for, in (0, 1] (as in :func:`steps_for_budget`).
    minimum : int
        Fewest steps returned (>= 1).

    Returns
    -------
    int
        The step count; :func:`steps_for_budget`'s when ``refill_seconds == 0``.
    """
    steps_for_budget(seconds, rate, fill=fill, minimum=minimum)  # the shared argument checks
    if (isinstance(refill_seconds, bool) or not isinstance(refill_seconds, (int, float))
            or not math.isfinite(refill_seconds) or refill_seconds < 0):
        raise ValueError(f"refill_seconds must be a finite number >= 0, got {refill_seconds!r}")
    if isinstance(steps_per_refill, bool) or not isinstance(steps_per_refill, int) or steps_per_refill < 1:
        raise ValueError(f"steps_per_refill must be an int >= 1, got {steps_per_refill!r}")
    total = seconds * rate * fill  # the budget in steps, as steps_for_budget counts it
    per_refill = refill_seconds * rate  # a refill's cost in steps

    def best_with(blocks: int) -> int:
        # ``blocks`` fillings: at most blocks·steps_per_refill steps, and blocks − 1 refills paid
        return min(blocks * steps_per_refill, int(math.floor(total - (blocks - 1) * per_refill)))

    # best_with rises with ``blocks`` (the first bound) until the refills' cost (the second)
    # takes over: the optimum is at one of the two whole block counts around where they cross.
    below = max(1, int(math.floor((total + per_refill) / (steps_per_refill + per_refill))))
    return max(minimum, best_with(below), best_with(below + 1))
