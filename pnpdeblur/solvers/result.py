"""The :class:`SolverResult` returned by the iterative solvers, and shared helpers."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

from .._checks import check_flag

__all__ = ["SolverResult", "psnr_torch"]


def psnr_torch(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of ``(N, C, H, W)`` ``x`` against ``ref``: per image, then the batch mean.

    The definition of :func:`pnpdeblur.metrics.psnr` (``reduction="mean"``), so a solver's
    history and the metric agree (pooling the MSE over the batch gave a different figure).
    """
    mse = torch.mean((x.detach().to(ref.dtype) - ref) ** 2, dim=tuple(range(1, ref.ndim)))
    vals = [math.inf if m == 0.0 else 10.0 * math.log10(data_range**2 / m) for m in mse.tolist()]
    return float(sum(vals) / len(vals))


@dataclass
class SolverResult:
    """What an iterative deblurring solver returns.

    Attributes
    ----------
    x : array
        The restored image, in the caller's array type, layout, dtype and device.
    history : list of dict
        One entry per outer iteration with at least ``'iteration'`` and ``'time'``
        (seconds since the start); solvers add ``'residual'`` (relative data residual
        ``‖Kx − y‖ / ‖y‖``), ``'psnr'`` (dB, when a reference was given; per image, then
        averaged, as :func:`pnpdeblur.metrics.psnr`) and their own
        quantities (``'beta'``, ``'sigma'``, ``'cg_iterations'``, ``'cg_converged'`` ...).
    settings : dict
        The parameters the solver actually used (schedules resolved to lists).
    converged : bool
        For HQS/ADMM: whether every inner CG solve reached its tolerance. For
        Richardson–Lucy always True (it runs a fixed number of iterations).
    aux : array or None
        The other split variable at the end where the solver has one (for HQS and
        ADMM: the last data-step solution; ``x`` is the last prior output).
    """

    x: Any
    history: List[Dict[str, Any]] = field(default_factory=list)
    settings: Dict[str, Any] = field(default_factory=dict)
    converged: bool = True
    aux: Any = None

    @property
    def iterations(self) -> int:
        """Number of outer iterations run."""
        return len(self.history)

    def __repr__(self) -> str:
        last = self.history[-1] if self.history else {}
        extra = ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float))
        return (
            f"SolverResult(iterations={self.iterations}, converged={self.converged}"
            + (f", last: {extra}" if extra else "")
            + ")"
        )


class _Recorder:
    """Bookkeeping shared by the solvers: timing, PSNR against a reference, callback, tqdm."""

    def __init__(
        self,
        n_iter: int,
        reference: Optional[torch.Tensor],
        callback: Optional[Callable[[Dict[str, Any], torch.Tensor], Any]],
        progress: Optional[bool],
        desc: str,
    ):
        from tqdm.auto import tqdm

        self.t0 = time.perf_counter()
        self.reference = reference
        self.callback = callback
        self.history: List[Dict[str, Any]] = []
        # None lets tqdm decide (off when not a terminal); a string such as "no" would show the bar
        disable = None if progress is None else (not check_flag(progress, "progress"))
        self.bar = tqdm(total=n_iter, desc=desc, disable=disable, leave=False)

    def record(self, entry: Dict[str, Any], x: torch.Tensor) -> bool:
        """Store an entry; return True if the callback asked to stop (returned True)."""
        entry["time"] = time.perf_counter() - self.t0
        if self.reference is not None:
            entry["psnr"] = psnr_torch(x, self.reference)
        self.history.append(entry)
        self.bar.update(1)
        if "psnr" in entry:
            self.bar.set_postfix(psnr=f"{entry['psnr']:.2f}")
        stop = False
        if self.callback is not None:
            stop = bool(self.callback(entry, x))
        return stop

    def close(self) -> None:
        self.bar.close()
