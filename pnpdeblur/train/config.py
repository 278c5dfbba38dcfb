"""Training configuration: one dataclass, validated, JSON round-trippable.

The config is saved in every training state (``last.pt``) and in the header of every
exported checkpoint, so a set of weights always says how it was trained.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

__all__ = ["TrainConfig"]

_AMP_DTYPES = (None, "bfloat16", "float16")


@dataclass
class TrainConfig:
    """Settings of one training run (see :class:`pnpdeblur.train.Trainer`).

    Parameters
    ----------
    steps : int
        Total number of optimiser steps (≥ 1).
    batch_size : int
        Global batch size; under DDP each of the ``world_size`` ranks gets
        ``batch_size // world_size`` samples (must divide).
    lr, betas, eps, weight_decay : float, (float, float), float, float
        :class:`torch.optim.Adam` arguments; ``lr`` is the peak learning rate.
    warmup_steps : int
        Linear warm-up of the learning rate over this many first steps (0: none).
    decay_start : int or None
        Step from which the learning rate decays linearly to ``lr_end`` at the last
        step; ``None`` keeps it constant (after warm-up).
    lr_milestones : tuple of int
        Steps at which the learning rate is multiplied by ``lr_gamma`` (step decay, as in
        DeepDeblur's "÷10 after 1.5·10⁵ iterations"); combines with the linear decay.
    lr_gamma : float
        Factor applied at each milestone (default 0.1).
    lr_end : float or None
        Learning rate of the last step when decaying (default: ``lr``).
    grad_clip : float or None
        Clip the global gradient norm to this value.
    amp : bool
        Mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler);
        ignored with a warning on the CPU, which always trains in fp32.
    amp_dtype : {None, "bfloat16", "float16"}
        Force the autocast dtype on CUDA (None: bf16 if supported, else fp16).
    compile : bool
        Wrap the model in :func:`torch.compile` (skipped with a warning if unavailable).
    seed : int
        Seeds parameters-free randomness: data order, augmentation RNGs, dropout.
    num_workers : int
        DataLoader worker processes (0: load in the main process).
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` ...
    log_every, val_every, ckpt_every : int
        Period in steps of a log row, a validation pass, a ``last.pt`` checkpoint
        (0: never; validation and checkpoint also happen at the end).
    out_dir : str or None
        Folder for ``log.csv``, ``log.json``, ``loss.png`` and ``last.pt`` (a ``PathLike`` is
        stored as its str; anything else is a ``ValueError``).
    progress : bool
        Show a tqdm bar (rank 0 only).
    time_limit_s : float or None
        Stop once this many seconds of training (summed over resumed runs) have passed, as
        if that step were the last: it is logged, validated and checkpointed, and
        :attr:`Trainer.stopped_by_time` is set. The learning-rate schedule stays defined over
        ``steps``, so a run cut short never reaches its last decay: size ``steps`` to the
        time (see :func:`pnpdeblur.train.budget.steps_for_budget`) and keep this as the
        safety net. ``None``: no limit.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay_start: Optional[int] = None
    lr_end: Optional[float] = None
    lr_milestones: Tuple[int, ...] = ()
    lr_gamma: float = 0.1
    grad_clip: Optional[float] = None
    amp: bool = False
    compile: bool = False
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    log_every: int = 50
    val_every: int = 0
    ckpt_every: int = 0
    out_dir: Optional[str] = None
    progress: bool = True
    amp_dtype: Optional[str] = None
    time_limit_s: Optional[float] = None

    def __post_init__(self) -> None:
        # JSON turns tuples into lists and paths are often Path objects: normalise first.
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if isinstance(self.lr_milestones, list):
            self.lr_milestones = tuple(self.lr_milestones)
        if isinstance(self.out_dir, os.PathLike):  # a Path is kept as its str (the config is saved as JSON)
            self.out_dir = os.fspath(self.out_dir)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self, world_size: int = 1) -> None:
        """Raise ``ValueError`` naming the first bad field.

        Parameters
        ----------
        world_size : int
            Number of DDP ranks; ``batch_size`` must be a multiple of it.
        """

        def integer(name: str, low: int) -> int:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"TrainConfig.{name} must be an int, got {v!r} ({type(v).__name__})")
            if v < low:
                raise ValueError(f"TrainConfig.{name} must be >= {low}, got {v}")
            return int(v)

        def real(name: str, v: Any, positive: bool) -> float:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {v!r}")
            if (v <= 0) if positive else (v < 0):
                raise ValueError(f"TrainConfig.{name} must be {'> 0' if positive else '>= 0'}, got {v}")
            return float(v)

        def flag(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be a bool, got {getattr(self, name)!r}")

        steps = integer("steps", 1)
        bs = integer("batch_size", 1)
        real("lr", self.lr, True)
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2):
            raise ValueError(f"TrainConfig.betas must be a pair of floats, got {self.betas!r}")
        for b in self.betas:
            if real("betas", b, False) >= 1:
                raise ValueError(f"TrainConfig.betas must lie in [0, 1), got {self.betas!r}")
        real("eps", self.eps, True)
        real("weight_decay", self.weight_decay, False)
        if integer("warmup_steps", 0) > steps:
            raise ValueError(f"TrainConfig.warmup_steps ({self.warmup_steps}) must be <= steps ({steps})")
        if self.decay_start is not None:
            if integer("decay_start", 0) > steps:
                raise ValueError(f"TrainConfig.decay_start ({self.decay_start}) must be <= steps ({steps})")
        if self.lr_end is not None:
            real("lr_end", self.lr_end, False)
        ms = self.lr_milestones
        if not isinstance(ms, tuple) or any(isinstance(m, bool) or not isinstance(m, numbers.Integral) for m in ms):
            raise ValueError(f"TrainConfig.lr_milestones must be a tuple of ints, got {ms!r}")
        if list(ms) != sorted(set(ms)) or any(not 0 < m <= steps for m in ms):
            raise ValueError(f"TrainConfig.lr_milestones must be increasing ints in (0, steps={steps}], got {ms!r}")
        real("lr_gamma", self.lr_gamma, True)
        if self.grad_clip is not None:
            real("grad_clip", self.grad_clip, True)
        if self.time_limit_s is not None:
            real("time_limit_s", self.time_limit_s, True)
        for name in ("amp", "compile", "progress"):
            flag(name)
        if self.amp_dtype not in _AMP_DTYPES:
            raise ValueError(f"TrainConfig.amp_dtype must be one of {_AMP_DTYPES}, got {self.amp_dtype!r}")
        integer("seed", 0)
        for name in ("num_workers", "log_every", "val_every", "ckpt_every"):
            integer(name, 0)
        if not isinstance(self.device, str):
            raise ValueError(f"TrainConfig.device must be a str, got {self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError) as e:
                raise ValueError(f"TrainConfig.device: unknown device {self.device!r} ({e})") from None
        if self.out_dir is not None and not isinstance(self.out_dir, str):
            raise ValueError(f"TrainConfig.out_dir must be a str or None, got {self.out_dir!r}")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
        if bs % world_size:
            raise ValueError(
                f"TrainConfig.batch_size ({bs}) must be divisible by the number of processes ({world_size})"
            )

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        d["lr_milestones"] = list(d["lr_milestones"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(d, Mapping):
            raise TypeError(f"TrainConfig.from_dict expects a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TrainConfig.from_dict: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**dict(d))
