"""Training losses: flow regression, multi-scale content, end-point error, adversarial, reblur."""
from .adversarial import (
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from .deblurgan import deblurgan_critic_loss, deblurgan_generator_loss, deblurgan_losses
from .epe import endpoint_error, multiscale_epe
from .flow import flow_l2_loss
from .multiscale import image_pyramid, multiscale_mse
from .reblur import reblur, reblur_loss

__all__ = [
    "flow_l2_loss",
    "image_pyramid",
    "multiscale_mse",
    "endpoint_error",
    "multiscale_epe",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "wgan_critic_loss",
    "wgan_generator_loss",
    "gradient_penalty",
    "deblurgan_critic_loss",
    "deblurgan_generator_loss",
    "deblurgan_losses",
    "reblur",
    "reblur_loss",
]
