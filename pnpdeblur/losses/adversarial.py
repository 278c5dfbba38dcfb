"""Adversarial losses shared by every GAN in pnpdeblur.

Two families, on discriminator outputs of any shape (per-image scores ``(N,)``/``(N, 1)``
or PatchGAN maps ``(N, 1, h, w)``; every function averages over all elements):

* the standard GAN (Goodfellow et al.) on **logits** ``l`` (no sigmoid inside the
  discriminator; ``sigmoid`` is applied here in a numerically stable way):
  discriminator ``−E[log σ(l_real)] − E[log(1 − σ(l_fake))]``, non-saturating generator
  ``−E[log σ(l_fake)]`` — DeepDeblur's adversarial term and RP-GAN's cGAN term;
* the Wasserstein GAN (Arjovsky et al.) on unbounded **scores** ``s``: critic
  ``E[s_fake] − E[s_real]``, generator ``−E[s_fake]``, with Gulrajani et al.'s gradient
  penalty ``E[(‖∇_x̂ D(x̂)‖₂ − 1)²]`` on random interpolates ``x̂`` keeping the critic
  near 1-Lipschitz — DeblurGAN's critic and RP-GAN's artifact critic D_p.

Losses are minimised; the discriminator/critic and the generator each minimise their own.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._checks import check_finite

__all__ = [
    "gan_discriminator_loss",
    "gan_generator_loss",
    "wgan_critic_loss",
    "wgan_generator_loss",
    "gradient_penalty",
]


def _check_scores(x: torch.Tensor, name: str, finite: bool = True) -> torch.Tensor:
    # ``finite=False`` for the gradient penalty's samples: they are images, not scores, and a
    # NaN in them reaches the critic's scores, which the critic's loss checks.
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    # A NaN score would make the loss NaN and spread through the weights by the gradient.
    return check_finite(x, name) if finite else x


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Standard GAN discriminator loss ``−E[log σ(l_real)] − E[log(1 − σ(l_fake))]``.

    Parameters
    ----------
    real_logits, fake_logits : Tensor
        Discriminator logits (before any sigmoid) on real and generated samples, any shape;
        each term is the mean over its elements.

    Returns
    -------
    Tensor
        Scalar. ``2·log 2 ≈ 1.386`` when both logits are 0 (a discriminator that cannot tell).
    """
    real = _check_scores(real_logits, "real_logits")
    fake = _check_scores(fake_logits, "fake_logits")
    return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN generator loss ``−E[log σ(l_fake)]`` (a scalar)."""
    fake = _check_scores(fake_logits, "fake_logits")
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss ``E[s_fake] − E[s_real]`` (minimised by the critic; a scalar).

    Its negative estimates the Wasserstein-1 distance when the critic is 1-Lipschitz
    (keep it so with :func:`gradient_penalty` or spectral normalisation).
    """
    real = _check_scores(real_scores, "real_scores")
    fake = _check_scores(fake_scores, "fake_scores")
    return fake.mean() - real.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Wasserstein generator loss ``−E[s_fake]`` (a scalar)."""
    return -_check_scores(fake_scores, "fake_scores").mean()


def gradient_penalty(
    critic: Callable[..., torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *condition: torch.Tensor,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Gulrajani et al.'s penalty ``E[(‖∇_x̂ D(x̂, *condition)‖₂ − 1)²]``.

    ``x̂ = ε·real + (1 − ε)·fake`` with one ``ε ~ U[0, 1]`` per sample. The gradient norm
    is taken per sample over all of ``x̂``'s elements (not over ``condition``). The result
    is differentiable in the critic's parameters (``create_graph=True``); multiply it by
    the paper's weight (10 in WGAN-GP and DeblurGAN) yourself.

    Parameters
    ----------
    critic : callable
        ``critic(x, *condition) -> scores`` of any shape with a leading batch axis.
    real, fake : Tensor
        ``(N, C, H, W)`` samples of the same shape; ``fake`` is detached here.
    *condition : Tensor
        Extra critic inputs (e.g. the blurred image of a conditional critic), passed as is.
    generator : torch.Generator, optional
        Source of ``ε`` for reproducibility.

    Returns
    -------
    Tensor
        Scalar.
    """
    real = _check_scores(real, "real", finite=False)
    fake = _check_scores(fake, "fake", finite=False)
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    draw_on = generator.device if generator is not None else real.device
    eps = torch.rand(shape, generator=generator, dtype=real.dtype, device=draw_on).to(real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed, *condition)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = grad.flatten(1).norm(dim=1)
    return ((norms - 1) ** 2).mean()
