"""Training losses: flow regression, multi-scale content, end-point error, adversarial, perceptual,
RP-GAN, reblur."""
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
from .perceptual import LaplacianPyramidLoss, PerceptualLoss, VGG16Features, laplacian_pyramid
from .rpgan import (
    artifact_critic_loss,
    artifact_penalty,
    cgan_discriminator_loss,
    cgan_generator_loss,
    rpgan_generator_loss,
)
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
    "PerceptualLoss",
    "VGG16Features",
    "LaplacianPyramidLoss",
    "laplacian_pyramid",
    "cgan_discriminator_loss",
    "cgan_generator_loss",
    "artifact_critic_loss",
    "artifact_penalty",
    "rpgan_generator_loss",
    "reblur",
    "reblur_loss",
]
