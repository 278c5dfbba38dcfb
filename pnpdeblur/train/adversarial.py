"""GAN training through the one-model :class:`pnpdeblur.train.Trainer`.

:class:`AdversarialPair` holds a generator and its discriminator (critic) as one module,
so one Adam, one scheduler, one checkpoint and exact resume cover both. Each step makes
a *simultaneous* update from one loss ``L = L_G + L_D`` whose two halves reach disjoint
parameters:

* ``L_G`` (content + adversarial term of the generator) sees the discriminator through
  :meth:`AdversarialPair.judge_frozen`, a call with *detached* discriminator parameters,
  so it moves only the generator;
* ``L_D`` (discriminator/critic loss, gradient penalty) sees generated images detached,
  so it moves only the discriminator.

This is the alternating scheme of the papers with one discriminator update per
generator update and both updated from the same snapshot (DeblurGAN used 5 critic steps
per generator step; pass ``critic_steps`` ideas to a custom loop if you need them).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

__all__ = ["AdversarialPair"]


class AdversarialPair(nn.Module):
    """A generator and a discriminator trained together by one optimiser.

    Parameters
    ----------
    generator : nn.Module
        Called by :meth:`forward` (so ``pair(x) == generator(x)``).
    discriminator : nn.Module
        Scores ``(N, …)``; logits for a standard GAN, unbounded scores for a WGAN critic.

    Notes
    -----
    Export only the generator: ``save_checkpoint(path, pair.generator, …)`` or
    ``Trainer.export(..., module=pair.generator)``.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module):
        super().__init__()
        if not isinstance(generator, nn.Module) or not isinstance(discriminator, nn.Module):
            raise TypeError("generator and discriminator must be torch.nn.Module instances, got "
                            f"{type(generator).__name__} and {type(discriminator).__name__}")
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.generator(*args, **kwargs)

    def judge(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Discriminator scores with gradients to its parameters (for ``L_D``)."""
        return self.discriminator(*inputs)

    def judge_frozen(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Discriminator scores through detached parameters (for ``L_G``).

        Gradients flow to ``inputs`` (hence to the generator) but never to the
        discriminator's parameters; buffers (e.g. BatchNorm statistics) are shared.
        """
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, frozen, inputs, strict=False)
