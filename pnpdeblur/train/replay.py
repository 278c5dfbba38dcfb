"""Experience replay for recurrent priors: RP-GAN's buffer of deconvolutions (Wu et al., 4.2).

RP-GAN's input at level ``n + 1`` depends on its own output at level ``n``. Training on each
new deconvolution at once makes the inputs chase the weights (heavy oscillation, the paper
says), so deconvolutions of several levels are made by a *frozen* copy of the generator,
kept in a buffer (1000 images: 50 % level 1, 30 % level 2, 20 % level 3), trained on for a
few epochs in random order, and only then remade by a new frozen copy — experience replay
with fixed targets, as in deep Q-learning.

:class:`ReplayBuffer` is a map-style dataset for :class:`pnpdeblur.train.Trainer`: the
engine calls ``set_epoch(epoch)`` at the start of every epoch and the buffer refills itself
every ``refresh_every`` epochs through its ``producer``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence

import torch
from torch.utils.data import Dataset

from .state import has_state

__all__ = ["ReplayBuffer", "level_counts", "PAPER_PROPORTIONS"]

#: Wu et al.'s buffer: 50 % level-1, 30 % level-2, 20 % level-3 deconvolutions.
PAPER_PROPORTIONS = (0.5, 0.3, 0.2)

#: ``producer(counts, round) -> {"level": (n,) long tensor, <name>: (n, ...) tensor, ...}``
Producer = Callable[[List[int], int], Dict[str, torch.Tensor]]


def level_counts(capacity: int, proportions: Sequence[float]) -> List[int]:
    """Items per level: ``capacity · proportions`` rounded by largest remainder (sum = capacity).

    Parameters
    ----------
    capacity : int
        Total number of items (≥ 1).
    proportions : sequence of float
        Non-negative shares of levels 1, 2, …; normalised to sum 1.

    Returns
    -------
    list of int
        ``counts[k]`` items of level ``k + 1``; ties in the remainders go to the earlier
        (more influential) level.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"capacity must be a positive int, got {capacity!r}")
    if isinstance(proportions, (str, bytes)) or not hasattr(proportions, "__len__") or len(proportions) == 0:
        raise ValueError(f"proportions must be a non-empty sequence of numbers, got {proportions!r}")
    p = []
    for i, v in enumerate(proportions):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"proportions[{i}] must be a finite number >= 0, got {v!r}")
        p.append(float(v))
    total = sum(p)
    if total <= 0:
        raise ValueError(f"proportions must not all be zero, got {list(proportions)!r}")
    exact = [capacity * v / total for v in p]
    counts = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(p)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: capacity - sum(counts)]:
        counts[k] += 1
    return counts


class ReplayBuffer(Dataset):
    """A fixed-size, periodically refilled dataset of samples of several recurrent levels.

    Parameters
    ----------
    producer : callable
        ``producer(counts, round) -> dict`` makes ``counts[k]`` samples of level ``k + 1``
        (with the frozen network of this round) and returns batched tensors: a ``"level"``
        ``(n,)`` integer tensor (values 1…L) and any other ``(n, …)`` tensors
        (e.g. ``"deconv"``, ``"blurred"``, ``"sharp"``), ``n = sum(counts)``.
    capacity : int
        Number of samples held (paper: 1000).
    proportions : sequence of float
        Share of each level (paper: ``(0.5, 0.3, 0.2)``).
    refresh_every : int
        Epochs trained on one filling before the next (paper: 3).
    fill_now : bool
        Make the first filling at construction (default True); False waits for the first
        :meth:`set_epoch`.

    Attributes
    ----------
    counts : list of int
        Samples per level (:func:`level_counts`).
    round : int
        Index of the current filling (``epoch // refresh_every``); -1 before the first.
    refills : int
        Fillings made so far by this object.

    Notes
    -----
    Items are dicts of the producer's tensors at one index (CPU tensors: the buffer is moved
    to the CPU so that the engine's DataLoader can collate it). The first filling happens at
    construction (``fill_now=True``) or at the first ``set_epoch``.

    Exact resume: :meth:`state_dict` is what the training engine saves in ``last.pt``. When
    the producer has ``state_dict()``/``load_state_dict()`` (as RP-GAN's does: the frozen
    generator of the current round) only that is saved, a few MB, and the buffer is remade
    from it at the next ``set_epoch`` — the same samples as before the interruption for a
    deterministic producer. Otherwise the stored samples themselves are saved.
    """

    def __init__(self, producer: Producer, capacity: int = 1000, proportions: Sequence[float] = PAPER_PROPORTIONS,
                 refresh_every: int = 3, fill_now: bool = True):
        if not callable(producer):
            raise TypeError(f"producer must be callable as producer(counts, round), got {type(producer).__name__}")
        if isinstance(refresh_every, bool) or not isinstance(refresh_every, int) or refresh_every < 1:
            raise ValueError(f"refresh_every must be a positive int, got {refresh_every!r}")
        self.producer = producer
        self.capacity = capacity
        self.counts = level_counts(capacity, proportions)
        self.proportions = tuple(float(v) for v in proportions)
        self.refresh_every = refresh_every
        self.round = -1
        self.refills = 0
        self._data: Dict[str, torch.Tensor] = {}
        if fill_now:
            self.refill(0)

    def __len__(self) -> int:
        return self.capacity

    def refill(self, round: int) -> None:
        """Replace every sample with the producer's output for ``round``."""
        data = self.producer(list(self.counts), int(round))
        if not isinstance(data, dict) or "level" not in data:
            raise TypeError("producer must return a dict of tensors with a 'level' entry")
        n = self.capacity
        for k, v in data.items():
            if not isinstance(v, torch.Tensor) or v.ndim < 1 or v.shape[0] != n:
                raise ValueError(f"producer's {k!r} must be a tensor with {n} rows, got "
                                 f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise ValueError(f"producer's {k!r} holds NaN or Inf")
        got = torch.bincount(data["level"].long().cpu(), minlength=len(self.counts) + 1)[1:].tolist()
        if got[: len(self.counts)] != self.counts or sum(got) != n:
            raise ValueError(f"producer returned level counts {got}, expected {self.counts}")
        self._data = {k: v.detach().cpu() for k, v in data.items()}
        self.round = int(round)
        self.refills += 1

    def set_epoch(self, epoch: int) -> None:
        """Called by the engine at each epoch start: refill when a new round begins."""
        r = int(epoch) // self.refresh_every
        if r != self.round:
            self.refill(r)

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint needs to bring this buffer back: the round and the producer's
        state, or the samples when the producer keeps no state."""
        if has_state(self.producer):
            return {"round": int(self.round), "producer": self.producer.state_dict()}
        return {"round": int(self.round), "data": dict(self._data)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (the inverse; see the class notes)."""
        if not isinstance(state, dict) or "round" not in state or not ("producer" in state or "data" in state):
            raise ValueError("state must be a dict from ReplayBuffer.state_dict() "
                             "(keys 'round' and 'producer' or 'data')")
        if "producer" in state:
            if not has_state(self.producer):
                raise ValueError("state holds a producer state but this buffer's producer has no load_state_dict")
            self.producer.load_state_dict(state["producer"])
            self._data, self.round = {}, -1  # remade by the next set_epoch, from the restored producer
            return
        data = state["data"]
        if data and any(not isinstance(v, torch.Tensor) or v.shape[:1] != (self.capacity,) for v in data.values()):
            raise ValueError(f"state's samples must be tensors with {self.capacity} rows (the buffer's capacity)")
        self._data = {k: v.detach().cpu() for k, v in data.items()}
        self.round = int(state["round"]) if data else -1

    def level_of(self) -> torch.Tensor:
        """The level of every stored sample, ``(capacity,)`` long."""
        if not self._data:
            raise RuntimeError("the buffer is empty: call refill() or set_epoch() first")
        return self._data["level"].long()

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not self._data:
            raise RuntimeError("the buffer is empty: call refill() or set_epoch() first")
        if not -self.capacity <= index < self.capacity:
            raise IndexError(f"index {index} out of range for a buffer of {self.capacity}")
        return {k: v[index] for k, v in self._data.items()}

    def __repr__(self) -> str:
        return (f"ReplayBuffer(capacity={self.capacity}, counts={self.counts}, refresh_every={self.refresh_every}, "
                f"round={self.round})")
