"""RP-GAN as an HQS prior (Wu et al., section 4.2): one generator for every z-step.

In HQS the z-step ``Z_n = argmin β/2‖I*_n − Z‖² + γ p(Z)`` is replaced by the generator,
``Z_n = G(I*_n | O)``; the restored ``Z_n`` feeds the next x-step, whose result ``I*_{n+1}``
is the input of *level* ``n + 1`` (figure 3). The generator ignores ``σ``: it learned to
read the strength of the artifacts from its input (the paper's "network could learn to
adjust the latent parameter β by itself"). What it needs besides ``I*`` is ``O``, which it
takes from the solver's ``context['y']``.

Usage::

    prior = RPGANPrior()                                   # shipped generator, 3 levels
    res = pd.solvers.hqs(y, K, prior, betas=prior.schedule(noise_level=0.01))
    prior.levels_run                                       # [1, 2, 3]
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import nn

from .._checks import check_flag, check_real
from ..solvers.schedules import DEFAULT_LAMBDA, DEFAULT_SIGMA_START, dpir_schedule
from .base import BasePrior
from .learned import resolve_device

__all__ = ["RPGANPrior", "rpgan_schedule", "DEFAULT_LEVELS"]

#: Recurrent levels of the paper ("RP-GAN contains three levels").
DEFAULT_LEVELS = 3


def rpgan_schedule(noise_level: float, levels: int = DEFAULT_LEVELS, sigma_start: float = DEFAULT_SIGMA_START,
                   lam: float = DEFAULT_LAMBDA) -> List[float]:
    """The rising β of the x-steps of ``levels`` RP-GAN levels (also used in training).

    The DPIR schedule of :func:`pnpdeblur.solvers.schedules.dpir_schedule` with ``levels``
    steps: σ_k log-uniform from ``sigma_start`` to ``noise_level``, ``β_k = λσ²/σ_k²``. The
    generator is trained on deconvolutions made with exactly these β, so use the same
    schedule (same noise level) at test time.
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive int, got {levels!r}")
    _, betas = dpir_schedule(check_real(noise_level, "noise_level"), levels, sigma_start, lam)
    return betas


class RPGANPrior(BasePrior):
    """The RP-GAN generator as a prior for :func:`pnpdeblur.solvers.hqs` (reads ``O`` from context).

    Parameters
    ----------
    generator : RPGANGenerator, str, PathLike or None
        The network, or a checkpoint path (``RPGANGenerator.from_checkpoint``). None: the
        shipped weights (:meth:`RPGANGenerator.pretrained`); when none ship, a
        ``FileNotFoundError`` says how to train them.
    levels : int
        Number of recurrent levels (paper: 3); sets the length of :meth:`schedule`. HQS
        iterations beyond ``levels`` still run the generator (recording level > ``levels``).
    clamp : bool
        Clip the output to [0, 1].
    device : 'follow', str or torch.device
        Where the generator runs: ``'follow'`` (default) the device of each input (the
        module is moved in place), or a fixed device.

    Attributes
    ----------
    level : int
        The level of the latest call (1-based): ``context['iteration'] + 1`` when the solver
        says which iteration it is, else one more than the previous call on the same ``O``.
    levels_run : list of int
        Levels of the calls since the current ``O`` arrived (reset on a new observation, or
        by :meth:`reset`).

    Notes
    -----
    Calls need ``context={'y': O}`` with ``O`` the blurred observation in the layout of
    ``z`` (HQS passes it). A grey image through an RGB generator is replicated to three
    channels and the output averaged back. Runs under ``torch.no_grad()`` unless ``z``
    requires grad; the generator is put in eval mode.
    """

    def __init__(self, generator: Union[nn.Module, str, os.PathLike, None] = None, levels: int = DEFAULT_LEVELS,
                 clamp: bool = False, device: Any = "follow"):
        from ..nets.rpgan import RPGANGenerator

        if generator is None:
            try:
                generator = RPGANGenerator.pretrained()
            except FileNotFoundError as err:
                raise FileNotFoundError(
                    f"no RP-GAN weights ship with this install ({err}). Train a generator with "
                    "`python scripts/train_rpgan.py --corpus .data/bsds500/train --out rpgan.safetensors` "
                    "(see pnpdeblur.train.rpgan) and use RPGANPrior('rpgan.safetensors'), or pass an "
                    "RPGANGenerator instance") from err
        elif isinstance(generator, (str, os.PathLike)):
            generator = RPGANGenerator.from_checkpoint(generator)
        elif not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be an RPGANGenerator, a checkpoint path or None, "
                            f"got {type(generator).__name__}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be a positive int, got {levels!r}")
        self.generator = generator.eval()
        self.levels = levels
        self.clamp = check_flag(clamp, "clamp")
        self.device = resolve_device(device)
        if self.device is not None:
            self.generator.to(self.device)
        self.channels = getattr(generator, "channels", None)
        self.level = 0
        self.levels_run: List[int] = []
        self._y_ref: Optional[Callable[[], Any]] = None  # the current O, weakly held

    def schedule(self, noise_level: float, **kwargs: Any) -> List[float]:
        """β for ``hqs(..., betas=prior.schedule(σ))``: :func:`rpgan_schedule` with ``levels`` steps."""
        return rpgan_schedule(noise_level, self.levels, **kwargs)

    def reset(self) -> None:
        """Forget the level count (the next call is level 1 unless the solver says otherwise)."""
        self.level, self.levels_run, self._y_ref = 0, [], None

    def _observation(self, z: torch.Tensor, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        if not context or "y" not in context:
            raise ValueError("RPGANPrior needs the blurred observation O: call it with context={'y': O} "
                             "(pnpdeblur.solvers.hqs does)")
        y = context["y"]
        if not isinstance(y, torch.Tensor):
            from ..backend import array_kind, to_torch
            from ..operators.base import to_nchw

            kind = array_kind(y, "context['y']")
            y, _ = to_nchw(to_torch(y, "context['y']"), kind, "context['y']")
        if y.shape != z.shape:
            raise ValueError(f"context['y'] must have the shape of z {tuple(z.shape)}, got {tuple(y.shape)}")
        if not bool(torch.isfinite(y).all()):
            raise ValueError("context['y'] contains NaN or Inf")
        return y

    def _track_level(self, y: Any, context: Dict[str, Any]) -> None:
        # A new observation starts a new recurrence. Compared by identity through a weak
        # reference: an id() alone can be reused by a new array once the old one is freed.
        if self._y_ref is None or self._y_ref() is not y:
            try:
                self._y_ref = weakref.ref(y)
            except TypeError:  # no weak references to this type: hold the object itself
                self._y_ref = lambda obj=y: obj
            self.levels_run, self.level = [], 0
        it = context.get("iteration")
        known = isinstance(it, int) and not isinstance(it, bool) and it >= 0
        self.level = it + 1 if known else self.level + 1
        self.levels_run.append(self.level)

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        y = self._observation(z, context)
        self._track_level(context["y"], context)
        p = next(self.generator.parameters())
        if self.device is None and p.device != z.device:
            self.generator.to(z.device)  # 'follow': run where the data is
            p = next(self.generator.parameters())
        t, o = z.to(dtype=p.dtype, device=p.device), y.to(dtype=p.dtype, device=p.device)
        c = t.shape[1]
        grey = self.channels == 3 and c == 1
        if grey:
            t, o = t.expand(-1, 3, -1, -1), o.expand(-1, 3, -1, -1)
        elif self.channels is not None and self.channels != c:
            raise ValueError(f"the generator takes {self.channels} channels, the image has {c}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and z.requires_grad):
            out = self.generator(t, o)
        if grey:
            out = out.mean(1, keepdim=True)
        if self.clamp:
            out = out.clamp(0, 1)
        return out.to(dtype=z.dtype, device=z.device)

    def __repr__(self) -> str:
        cfg = getattr(self.generator, "config", {})
        return f"RPGANPrior({type(self.generator).__name__}{cfg}, levels={self.levels})"
