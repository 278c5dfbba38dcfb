"""DeblurGAN's training losses: content loss + WGAN-GP (Kupyn et al.).

Generator: ``L_G = content_weight · L_content(G(B), S) − E[D(G(B))]`` with
``content_weight = 100`` as in the paper. The paper's content loss is a perceptual loss,
the MSE between VGG-19 ``conv3_3`` feature maps of the restored and the sharp image;
pnpdeblur ships no VGG weights, so the content loss is L1 or MSE on pixels unless a
``feature_extractor`` (any module mapping images to features, e.g. a VGG-19 truncated after
``conv3_3`` that you load yourself) is given, in which case it is the MSE (or L1) between
its features (the sharp image's features are detached).

Critic: ``L_D = E[D(G(B))] − E[D(S)] + gp_weight · GP`` with Gulrajani et al.'s gradient
penalty (:func:`pnpdeblur.losses.adversarial.gradient_penalty`, weight 10); the authors
update the critic 5 times per generator step (Adam, lr 1e-4, β₁ = 0.5).

Differences from the authors' code, stated: their images live in [-1, 1] (pixel losses
there are 2× (L1) / 4× (MSE) ours on [0, 1]; :class:`~pnpdeblur.nets.deblurgan.DeblurGANCritic`
maps [0, 1] to [-1, 1] itself), and their penalty takes the gradient norm per pixel over
channels with one interpolation weight per batch, ours per sample over the whole image
(the WGAN-GP paper's definition).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from ._checks import check_finite
from .adversarial import gradient_penalty, wgan_critic_loss, wgan_generator_loss

__all__ = ["deblurgan_critic_loss", "deblurgan_generator_loss", "deblurgan_losses", "content_loss"]


def _check_pair(deblurred, sharp) -> None:
    for name, x in (("deblurred", deblurred), ("sharp", sharp)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point() or x.ndim != 4:
            raise ValueError(f"{name} must be a float (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
        check_finite(x, name)
    if deblurred.shape != sharp.shape:
        raise ValueError(f"deblurred and sharp must have the same shape, got {tuple(deblurred.shape)} "
                         f"and {tuple(sharp.shape)}")


def content_loss(deblurred: torch.Tensor, sharp: torch.Tensor, kind: str = "l1",
                 feature_extractor: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """L1 or MSE between ``deblurred`` and ``sharp`` (or between their features).

    Parameters
    ----------
    deblurred, sharp : Tensor
        ``(N, C, H, W)`` images in [0, 1] of the same shape.
    kind : {"l1", "mse"}
    feature_extractor : callable, optional
        Maps images to features (the paper: VGG-19 up to ``conv3_3`` with ``kind="mse"``);
        the sharp image's features are detached.

    Returns
    -------
    Tensor
        Scalar (mean over elements).
    """
    _check_pair(deblurred, sharp)
    if kind not in ("l1", "mse"):
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    if feature_extractor is not None:
        deblurred, sharp = feature_extractor(deblurred), feature_extractor(sharp).detach()
    return F.l1_loss(deblurred, sharp) if kind == "l1" else F.mse_loss(deblurred, sharp)


def deblurgan_critic_loss(critic: Callable[[torch.Tensor], torch.Tensor], deblurred: torch.Tensor,
                          sharp: torch.Tensor, gp_weight: float = 10.0,
                          generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
    """Critic loss ``E[D(fake)] − E[D(real)] + gp_weight · GP`` (``deblurred`` is detached).

    Returns
    -------
    dict
        ``"critic"`` (the loss to minimise), ``"wasserstein"`` (``E[D(real)] − E[D(fake)]``,
        the critic's distance estimate, detached) and ``"gradient_penalty"``.
    """
    _check_pair(deblurred, sharp)
    if not gp_weight >= 0:
        raise ValueError(f"gp_weight must be >= 0, got {gp_weight!r}")
    fake = deblurred.detach()
    w_loss = wgan_critic_loss(critic(sharp), critic(fake))
    gp = gradient_penalty(critic, sharp, fake, generator=generator)
    return {"critic": w_loss + gp_weight * gp, "wasserstein": -w_loss.detach(), "gradient_penalty": gp}


def deblurgan_generator_loss(critic: Callable[[torch.Tensor], torch.Tensor], deblurred: torch.Tensor,
                             sharp: torch.Tensor, content: str = "l1", content_weight: float = 100.0,
                             feature_extractor: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                             ) -> Dict[str, torch.Tensor]:
    """Generator loss ``content_weight · content + (−E[D(deblurred)])``.

    Returns
    -------
    dict
        ``"generator"`` (the loss to minimise), ``"content"`` and ``"adversarial"``.
        Gradients flow into ``deblurred`` (and the critic's parameters: step only the
        generator's optimiser with it).
    """
    c = content_loss(deblurred, sharp, content, feature_extractor)
    if not content_weight >= 0:
        raise ValueError(f"content_weight must be >= 0, got {content_weight!r}")
    adv = wgan_generator_loss(critic(deblurred))
    return {"generator": content_weight * c + adv, "content": c, "adversarial": adv}


def deblurgan_losses(critic: Callable[[torch.Tensor], torch.Tensor], deblurred: torch.Tensor,
                     sharp: torch.Tensor, content: str = "l1", content_weight: float = 100.0,
                     gp_weight: float = 10.0,
                     feature_extractor: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
    """Both losses at once: the union of :func:`deblurgan_critic_loss` and
    :func:`deblurgan_generator_loss` (keys ``critic``, ``wasserstein``, ``gradient_penalty``,
    ``generator``, ``content``, ``adversarial``).

    Step the critic with ``"critic"`` and the generator with ``"generator"``, each with its
    own optimiser (zero both optimisers' gradients before each backward).
    """
    out = deblurgan_critic_loss(critic, deblurred, sharp, gp_weight, generator)
    out.update(deblurgan_generator_loss(critic, deblurred, sharp, content, content_weight, feature_extractor))
    return out
