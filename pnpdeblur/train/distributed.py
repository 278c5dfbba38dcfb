"""Thin helpers around :mod:`torch.distributed` for torchrun / DDP training.

Everything works (and is a no-op) in a single process: ``world_size() == 1``,
``rank() == 0``, ``is_main_process()`` is true and ``shard(seq)`` returns all of ``seq``.
Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) :class:`~pnpdeblur.train.Trainer`
calls :func:`init_distributed` itself.
"""
from __future__ import annotations

import atexit
import datetime
import os
from typing import Any, List, Optional, Sequence

import torch
import torch.distributed as dist

__all__ = [
    "init_distributed",
    "init_for_device",
    "is_distributed",
    "is_main_process",
    "world_size",
    "rank",
    "local_rank",
    "barrier",
    "shard",
    "all_reduce_sum",
    "all_gather_objects",
    "rank0_value",
    "env_world_size",
]


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (torchrun sets it), 1 if absent."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ValueError(f"WORLD_SIZE environment variable is not an int: {os.environ['WORLD_SIZE']!r}") from None


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def init_distributed(
    backend: Optional[str] = None,
    rank: Optional[int] = None,
    world_size: Optional[int] = None,
    timeout_s: float = 1800.0,
) -> bool:
    """Initialise the default process group from the torchrun environment.

    Parameters
    ----------
    backend : str, optional
        ``"nccl"`` or ``"gloo"``; default nccl when CUDA is available, else gloo.
    rank, world_size : int, optional
        Override ``RANK`` / ``WORLD_SIZE`` from the environment (``MASTER_ADDR`` and
        ``MASTER_PORT`` must still be set, as torchrun does).
    timeout_s : float
        Collective timeout.

    Returns
    -------
    bool
        Whether a process group is (now) initialised; False for a single process. A group
        made here is destroyed when the interpreter exits (unless the caller destroyed it).
    """
    if is_distributed():
        return True
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this build of PyTorch")
    ws = env_world_size() if world_size is None else int(world_size)
    rk = int(os.environ.get("RANK", "0")) if rank is None else int(rank)
    if ws <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        # One GPU per process: bind it before NCCL creates its communicators.
        torch.cuda.set_device(local_rank())
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        raise RuntimeError("init_distributed: MASTER_PORT is not set (launch with torchrun)")
    dist.init_process_group(
        backend=backend, rank=rk, world_size=ws, timeout=datetime.timedelta(seconds=timeout_s)
    )
    # A group left alive at exit lets the interpreter end with gloo's threads still running,
    # and the process can abort ("terminate called without an active exception": a non-zero
    # exit after a finished run, 3 of 45 two-rank runs under load). Take it down first.
    global _EXIT_HOOK
    if not _EXIT_HOOK:
        atexit.register(_destroy_at_exit)
        _EXIT_HOOK = True
    return True


#: Whether :func:`_destroy_at_exit` is registered with :mod:`atexit` (once per process).
_EXIT_HOOK = False


#: How long the exit hook waits for the other ranks before tearing its group down anyway.
EXIT_BARRIER_TIMEOUT_S = 60.0


def _destroy_at_exit() -> None:
    """Destroy the default process group if it is still there (registered by :func:`init_distributed`).

    Every rank first waits (at most :data:`EXIT_BARRIER_TIMEOUT_S`) for the others to reach
    their exit too: a rank that tears its connections down while a peer still finishes its
    last collective can make that peer abort. A peer that is gone or late is not waited for.
    """
    if not is_distributed():
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=EXIT_BARRIER_TIMEOUT_S), wait_all_ranks=True)
        else:
            dist.barrier()
    except Exception:  # a crashed or hung peer: exit anyway, the run's own error says why
        pass
    dist.destroy_process_group()


def init_for_device(device: torch.device) -> bool:
    """:func:`init_distributed` with the backend for ``device`` (NCCL on CUDA, else gloo),
    when this process is one of several (torchrun's ``WORLD_SIZE > 1``); returns
    :func:`is_distributed`."""
    if is_distributed() or env_world_size() > 1:
        return init_distributed(backend="nccl" if torch.device(device).type == "cuda" else "gloo")
    return False


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    """Rank on this machine (``LOCAL_RANK``, set by torchrun; 0 if absent)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def shard(seq: Sequence[Any]) -> List[Any]:
    """This rank's share of ``seq``: every ``world_size()``-th item starting at ``rank()``.

    Used to split input files across processes; the union over ranks is ``seq`` and the
    shards are disjoint.
    """
    return list(seq)[rank() :: world_size()]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op in a single process); returns ``t``."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any) -> List[Any]:
    """Picklable ``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank0_value(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank (``obj`` itself in a single process).

    For what every rank must agree on but measures on its own, such as a step count sized
    from a timed probe: ranks that trained different numbers of steps would leave one of
    them waiting in a collective.
    """
    return all_gather_objects(obj)[0]
