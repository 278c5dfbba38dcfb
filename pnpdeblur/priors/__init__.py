"""Priors for the splitting solvers: ``prior(z, sigma, *, context=None) -> z'``.

Classical (Tikhonov, TV), scikit-image denoisers, BM3D (optional extra) and learned
denoisers (any torch module; the shipped small DnCNN and DRUNet; the authors' DnCNN, DRUNet,
FFDNet and IRCNN weights by :func:`prior_from_weights`) and Wu et al.'s recurrent RP-GAN prior
(it reads the blurred observation from the solver's ``context``). Any of them can be passed as
``prior=`` to :func:`pnpdeblur.solvers.hqs` or :func:`pnpdeblur.solvers.admm`.
"""
from .base import BasePrior, Prior, check_sigma
from .bm3d import BM3D, bm3d_available
from .drunet import DRUNetPrior
from .classical import TV, Tikhonov, tv_norm, tv_prox
from .learned import DenoiserPrior, DnCNNPrior
from .from_file import WEIGHT_KINDS, prior_from_weights
from .rpgan import RPGANPrior, rpgan_schedule
from .skimage import Bilateral, NLMeans, SkimageDenoiser, SkimageTV, Wavelet

__all__ = [
    "Prior",
    "BasePrior",
    "check_sigma",
    "Tikhonov",
    "TV",
    "tv_prox",
    "tv_norm",
    "SkimageDenoiser",
    "SkimageTV",
    "Wavelet",
    "NLMeans",
    "Bilateral",
    "BM3D",
    "bm3d_available",
    "DenoiserPrior",
    "DnCNNPrior",
    "DRUNetPrior",
    "prior_from_weights",
    "WEIGHT_KINDS",
    "RPGANPrior",
    "rpgan_schedule",
]
