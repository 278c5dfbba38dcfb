"""RP-GAN's losses (Wu et al., section 4.2, eqs. 5–7).

Notation: ``I*`` the HQS deconvolution (artifact-corrupted), ``O`` the blurred observation,
``I_s`` the sharp image, ``G(I*|O)`` the generator's output, ``D_cGAN`` the conditional
discriminator (logits), ``D_p`` the artifact critic (unbounded scores).

* content ``L_c(G)``: :func:`content_loss` (a perceptual loss; see :mod:`.perceptual`);
* conditional GAN (eq. 5): :func:`cgan_discriminator_loss` for ``D_cGAN``,
  :func:`cgan_generator_loss` for ``G``;
* artifact critic (eq. 6): :func:`artifact_critic_loss` for ``D_p``;
* artifact penalty (eq. 7): :func:`artifact_penalty`, ``L_p = (D_p(G(I*|O)) − D_p(I_s))₊``;
* total: :func:`rpgan_generator_loss`, ``L = L_c + γ L_cGAN + λ L_p``.

The generic GAN/WGAN pieces come from :mod:`pnpdeblur.losses.adversarial`. Every function
takes ``(N, C, H, W)`` images / ``(N, …)`` scores and returns a scalar tensor.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import torch

from ._checks import check_finite
from .adversarial import gan_discriminator_loss, gan_generator_loss, gradient_penalty, wgan_critic_loss
from .perceptual import LaplacianPyramidLoss

__all__ = [
    "DEFAULT_GAMMA",
    "DEFAULT_LAMBDA_P",
    "DEFAULT_GP_WEIGHT",
    "content_loss",
    "cgan_discriminator_loss",
    "cgan_generator_loss",
    "artifact_critic_loss",
    "artifact_penalty",
    "rpgan_generator_loss",
]

#: γ, weight of the cGAN term (the paper gives no value; chosen so that the adversarial
#: terms are about a tenth of the content loss early in training).
DEFAULT_GAMMA = 0.01
#: λ, weight of the artifact penalty (no value in the paper; same reasoning as γ).
DEFAULT_LAMBDA_P = 0.01
#: Weight of D_p's gradient penalty (Gulrajani et al.'s 10).
DEFAULT_GP_WEIGHT = 10.0

_DEFAULT_CONTENT = LaplacianPyramidLoss(levels=3)


def _tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty (N, ...) tensor, got shape {tuple(x.shape)}")
    return check_finite(x, name)


def _weight(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 <= float(v) < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def content_loss(output: torch.Tensor, sharp: torch.Tensor,
                 perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """Content loss ``L_c(G)`` between the generator's output and the sharp image.

    The paper's ``L_c = 1/(C·H·W) Σ (φ(G(I*|O)) − φ(I_s))²`` with ``φ`` VGG16 ``relu2_2``:
    pass ``perceptual=PerceptualLoss(vgg_weights_file)``. Default: the offline substitute
    :class:`~pnpdeblur.losses.perceptual.LaplacianPyramidLoss` (3 levels; L1 over the
    band-pass levels and the low-pass residual), used by the shipped training.

    Parameters
    ----------
    output, sharp : Tensor
        ``(N, C, H, W)``, same shape.
    perceptual : callable, optional
        ``perceptual(output, sharp) -> scalar``.
    """
    _tensor(output, "output")
    _tensor(sharp, "sharp")
    if output.shape != sharp.shape:
        raise ValueError(f"output and sharp must have the same shape, got {tuple(output.shape)} and "
                         f"{tuple(sharp.shape)}")
    return (_DEFAULT_CONTENT if perceptual is None else perceptual)(output, sharp)


def cgan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D_cGAN's loss, the negative of eq. 5's objective (minimised by the discriminator).

    ``−E[log D(I_s|O)] − E[log(1 − D(G(I*|O)|O))]`` with ``D = σ(logits)``; ``real_logits``
    are ``D_cGAN(I_s, O)``, ``fake_logits`` ``D_cGAN(G(I*|O).detach(), O)``.
    """
    return gan_discriminator_loss(_tensor(real_logits, "real_logits"), _tensor(fake_logits, "fake_logits"))


def cgan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's cGAN term ``L_cGAN``, non-saturating: ``−E[log D(G(I*|O)|O)]``.

    The paper writes the saturating ``log(1 − D(G(I*|O)|O))``; both have the same fixed
    point, and the non-saturating form (Goodfellow et al.) gives the generator useful
    gradients while the discriminator still wins easily, early in training.
    """
    return gan_generator_loss(_tensor(fake_logits, "fake_logits"))


def artifact_critic_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    deconv: torch.Tensor,
    blurred: torch.Tensor,
    gp_weight: float = DEFAULT_GP_WEIGHT,
    generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """D_p's loss (eq. 6): ``E[D_p(O)] − E[D_p(I*)] + w·GP``.

    Minimising it maximises eq. 6's ``E_{x∼P_data}[D_p(x)] − E_{y∼P_o}[D_p(y)]`` with
    ``P_data`` the artifact-corrupted deconvolutions ``I*`` and ``P_o`` the blurred
    observations ``O``: the critic scores artifacts high and blur low. The 1-Lipschitz
    constraint ``‖D_p‖ ≤ 1`` is Gulrajani et al.'s gradient penalty
    ``E[(‖∇D_p(x̂)‖₂ − 1)²]`` on random interpolates of ``I*`` and ``O``.

    Parameters
    ----------
    critic : callable
        ``critic(x) -> scores (N, …)`` (e.g. :class:`pnpdeblur.nets.rpgan.ArtifactCritic`).
    deconv, blurred : Tensor
        ``I*`` and ``O``, ``(N, C, H, W)``, same shape (detached here: only the critic learns).
    gp_weight : float
        ``w`` (default 10).
    generator : torch.Generator, optional
        Source of the interpolation weights.

    Returns
    -------
    loss : Tensor
        Scalar.
    parts : dict
        ``wasserstein`` (the estimate ``E[D_p(I*)] − E[D_p(O)]``, detached) and ``gp``.
    """
    _tensor(deconv, "deconv")
    _tensor(blurred, "blurred")
    if deconv.shape != blurred.shape:
        raise ValueError(f"deconv and blurred must have the same shape, got {tuple(deconv.shape)} and "
                         f"{tuple(blurred.shape)}")
    w = _weight(gp_weight, "gp_weight")
    deconv, blurred = deconv.detach(), blurred.detach()
    wl = wgan_critic_loss(critic(deconv), critic(blurred))  # "real" = I* (scored high), "fake" = O
    gp = gradient_penalty(critic, deconv, blurred, generator=generator) if w > 0 else wl.new_zeros(())
    return wl + w * gp, {"wasserstein": -wl.detach(), "gp": gp.detach()}


def artifact_penalty(generated_scores: torch.Tensor, sharp_scores: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``L_p = (D_p(G(I*|O)) − D_p(I_s))₊``, averaged over the batch.

    Each image's score is the mean of its score map; the positive part is taken per image,
    so the generator is punished only for outputs that the critic places nearer the
    artifact end than the sharp image, and by how much.

    Parameters
    ----------
    generated_scores, sharp_scores : Tensor
        ``D_p`` of the generator's outputs and of the sharp images, ``(N,)`` or ``(N, …)``
        (maps are averaged per image), same shape.

    Returns
    -------
    torch.Tensor
        0-d tensor, ``L_p``.
    """
    g = _tensor(generated_scores, "generated_scores")
    s = _tensor(sharp_scores, "sharp_scores")
    if g.shape != s.shape:
        raise ValueError(f"generated_scores and sharp_scores must have the same shape, got {tuple(g.shape)} and "
                         f"{tuple(s.shape)}")
    g, s = g.reshape(g.shape[0], -1).mean(1), s.reshape(s.shape[0], -1).mean(1)
    return torch.clamp(g - s, min=0).mean()


def rpgan_generator_loss(
    content: torch.Tensor,
    cgan: Optional[torch.Tensor] = None,
    penalty: Optional[torch.Tensor] = None,
    gamma: float = DEFAULT_GAMMA,
    lam: float = DEFAULT_LAMBDA_P,
) -> torch.Tensor:
    """RP-GAN's generator objective ``L = L_c + γ L_cGAN + λ L_p`` (section 4.2.3).

    Parameters
    ----------
    content : Tensor
        ``L_c`` (:func:`content_loss`).
    cgan : Tensor, optional
        ``L_cGAN`` (:func:`cgan_generator_loss`); None leaves the term out (no D_cGAN).
    penalty : Tensor, optional
        ``L_p`` (:func:`artifact_penalty`); None leaves it out (the "without D_p" ablation).
    gamma, lam : float
        γ and λ (≥ 0).

    Returns
    -------
    torch.Tensor
        0-d tensor, ``L``.

    Raises
    ------
    TypeError
        A term that is not a one-element float tensor.
    ValueError
        A term holding NaN or Inf (its gradient would spread NaN through the networks), or a bad
        ``gamma``/``lam``.
    """
    gamma, lam = _weight(gamma, "gamma"), _weight(lam, "lam")
    total = _scalar(content, "content")
    if cgan is not None:
        total = total + gamma * _scalar(cgan, "cgan")
    if penalty is not None:
        total = total + lam * _scalar(penalty, "penalty")
    return total


def _scalar(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() != 1:
        raise TypeError(f"{name} must be a scalar float tensor, got "
                        f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")
    return check_finite(x, name).reshape(())
