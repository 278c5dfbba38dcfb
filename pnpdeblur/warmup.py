"""Compile the CPU kernels ahead of their first use, several at a time.

The CPU kernels are numba functions: each is compiled the first time it meets a new
combination of argument types, and the machine code is cached on disk (beside the package,
or in ``NUMBA_CACHE_DIR``). On a 2-core machine the first K, Kᵀ and KᵀK of a photo cost
10–30 s each (``benchmarks/RESULTS.md``, "What the first use costs in compilation"), paid
one after the other by the first solve. :func:`warm_kernels` makes those first calls on a
tiny problem in separate processes instead, so that the compilations run side by side (one
per core), and every later process loads them from the cache. Use it once after installing,
when building a container image, or on a fresh GPU machine before the tests that compare
the GPU with the CPU.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["WARM_TASKS", "WARM_DTYPES", "warm_kernels"]

#: What :func:`warm_kernels` compiles: the operator K, its adjoint, the fused KᵀK of the CG
#: x-step (each without and with the weight table that repeated applications read), the
#: gradients with respect to the image and the flow, and the TV prox of HQS + TV.
WARM_TASKS: Tuple[str, ...] = ("forward", "adjoint", "normal", "gradient", "tv")

#: Image dtypes compiled by default (numba compiles each separately).
WARM_DTYPES: Tuple[str, ...] = ("float32", "float64")

#: Tasks whose kernels also specialise on the flow's dtype (float32 or float64 segments).
_FLOW_DTYPE_TASKS = ("forward", "adjoint", "normal")


def _run_task(task: str, dtype: str, flow_dtype: str) -> Tuple[float, int]:
    """One warm-up job in this process: ``(seconds, process id)``."""
    t0 = time.perf_counter()
    import numpy as np
    import torch

    import pnpdeblur as pd

    torch.set_num_threads(1)
    dt, fdt = getattr(torch, dtype), getattr(torch, flow_dtype)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.random((1, 3, 24, 24)), dtype=dt)
    flow = torch.tensor(rng.uniform(-4, 4, (1, 2, 24, 24)), dtype=fdt)
    if task == "tv":
        pd.priors.TV()(x, 0.1)
    elif task == "gradient":
        xg, fg = x.clone().requires_grad_(True), flow.clone().requires_grad_(True)
        pd.MotionBlur(fg)(xg).sum().backward()
    else:
        K = pd.MotionBlur(flow)
        apply = {"forward": K, "adjoint": K.T, "normal": K.normal}[task]
        apply(x)
        apply(x)  # the second application reads the flow's weight table: its own specialisation
    return time.perf_counter() - t0, os.getpid()


def _jobs(tasks: Sequence[str], dtypes: Sequence[str]) -> list:
    jobs = []
    for task in tasks:
        for dtype in dtypes:
            flows = WARM_DTYPES if task in _FLOW_DTYPE_TASKS else (dtype,)
            jobs += [(task, dtype, f) for f in flows]
    return jobs


def warm_kernels(
    tasks: Sequence[str] = WARM_TASKS,
    dtypes: Sequence[str] = WARM_DTYPES,
    processes: Optional[int] = None,
) -> Dict[Tuple[str, str, str], Tuple[float, int]]:
    """Compile the CPU kernels now, in parallel processes, into numba's on-disk cache.

    Parameters
    ----------
    tasks : sequence of str
        Any of :data:`WARM_TASKS` (default all).
    dtypes : sequence of str
        Image dtypes, any of ``"float32"``, ``"float64"`` (default both). K, Kᵀ and KᵀK are
        compiled for float32 and float64 flows with each.
    processes : int, optional
        Worker processes (default: one per job, at most ``os.cpu_count()``).

    Returns
    -------
    dict
        ``{(task, image dtype, flow dtype): (seconds, worker process id)}``: each job's time
        in its worker, import included (short once the cache holds the kernels).

    Notes
    -----
    Workers are started with ``spawn`` (a fresh interpreter each: no thread pools inherited
    from this process). The cache is shared: a kernel compiled by one job is loaded, not
    compiled again, by the jobs that start after it.
    """
    if isinstance(tasks, str) or not all(t in WARM_TASKS for t in tasks) or not len(tasks):
        raise ValueError(f"tasks must be a non-empty sequence of {WARM_TASKS}, got {tasks!r}")
    if isinstance(dtypes, str) or not all(d in WARM_DTYPES for d in dtypes) or not len(dtypes):
        raise ValueError(f"dtypes must be a non-empty sequence of {WARM_DTYPES}, got {dtypes!r}")
    if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
        raise ValueError(f"processes must be an int >= 1 or None, got {processes!r}")
    import multiprocessing

    jobs = _jobs(list(dict.fromkeys(tasks)), list(dict.fromkeys(dtypes)))
    workers = processes or max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {job: pool.submit(_run_task, *job) for job in jobs}
        return {job: fut.result() for job, fut in futures.items()}
