"""Training recipe for the noise-level-conditioned grey DnCNN (the prior of ``pd.deblur``) on the shared engine.

The network is grey: :class:`pnpdeblur.priors.DenoiserPrior` denoises a colour image with
it one plane of the orthonormal opponent colour space at a time (luminance, red-blue,
green-magenta). This recipe trains it on exactly those planes: every colour crop of the
photos gives its three opponent planes, each a training sample of its own. An orthonormal
transform keeps white noise white with the same σ, so a plane gets ``σ · N(0, 1)`` like the
image would. The luminance plane lies in [0, √3] and the chroma planes around 0, which
grey photos in [0, 1] (the first ``dncnn_small``'s data) never show the network. Grey images
reach the network as they are (a grey photo, and the grey copy that
:func:`pnpdeblur.estimate_kernel` denoises before it estimates a kernel), so a share of the
crops (``--grey-share``) is given as its grey luminance instead: one plane in [0, 1] with
scikit-image's ``rgb2gray`` weights.

Data: the photos of the DRUNet recipe (:func:`pnpdeblur.train.drunet.training_photos`: a
folder such as BSDS500's *train* split, never its *val*/*test* splits, plus scikit-image's
photos except the benchmark's four) as random crops with flips and 90° rotations; every item
is a pure function of (seed, index). Noise: σ ~ U[0, ``--max-sigma``] per plane (default
60/255, the range the HQS schedules ask of it). Loss: mean squared error, as Zhang et al.'s
DnCNN (residual learning). Optimiser: Adam, lr constant then halved at the ``--halve-at``
fractions of the steps. Validation: colour crops at σ = 15, 25, 50 (/255) denoised through
the opponent planes, as the prior does.

Usage::

    # the shipped weights: colour planes, then a fine-tune with half the crops grey (DnCNN.training_command)
    pnpdeblur train dncnn --data .data/bsds500/train --time-budget 3600 --threads 2 --float32 \
        --run-dir runs/dncnn --out runs/dncnn/colour.safetensors
    pnpdeblur train dncnn --data .data/bsds500/train --init runs/dncnn/colour.safetensors --grey-share 0.5 \
        --lr 5e-4 --time-budget 2400 --threads 2 --float32 --run-dir runs/dncnn_grey
    pnpdeblur train dncnn --steps 20 --crop 32 --batch 4    # a smoke test
    pnpdeblur train dncnn --help
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

# the library's grey conversion (rgb2gray's weights): estimate_kernel denoises such a grey copy with this net
from .._images import GREY_WEIGHTS
from ..nets.dncnn import PRETRAINED_PATH, DnCNN
from ..priors.learned import _OPPONENT
from ._cli import (FRACTION, POSITIVE_INT, add_engine_arguments, add_time_budget_argument, check_init_out,
                   export_weights, initialise_from, parse_engine_args)
from .drunet import check_crop_options, crop_run_provenance, fit_on_crops, psnr_batch, training_photos
from .engine import LossFn

__all__ = ["MAX_SIGMA", "GREY_WEIGHTS", "opponent_planes", "colour_from_planes", "grey_planes", "training_planes",
           "make_loss_fn", "val_fn", "parse_args", "main"]

#: Largest training noise std: the shipped DnCNN's range (60/255).
MAX_SIGMA = 60.0 / 255.0


def opponent_planes(rgb: torch.Tensor) -> torch.Tensor:
    """The opponent-colour planes of ``rgb`` ``(N, 3, H, W)`` as grey images ``(3N, 1, H, W)``.

    Plane ``3n + k`` is row ``k`` of the orthonormal opponent transform applied to image ``n``
    (k = 0 luminance (R+G+B)/√3, 1 (R−B)/√2, 2 (R−2G+B)/√6): the planes
    :class:`~pnpdeblur.priors.DenoiserPrior` gives a grey network for a colour image.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape (N, 3, H, W), got {tuple(rgb.shape)}")
    n, _, h, w = rgb.shape
    m = _OPPONENT.to(dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,njhw->nihw", m, rgb).reshape(n * 3, 1, h, w)


def colour_from_planes(planes: torch.Tensor) -> torch.Tensor:
    """Invert :func:`opponent_planes`: ``(3N, 1, H, W)`` opponent planes → ``(N, 3, H, W)`` RGB."""
    if planes.ndim != 4 or planes.shape[1] != 1 or planes.shape[0] % 3:
        raise ValueError(f"planes must have shape (3N, 1, H, W), got {tuple(planes.shape)}")
    h, w = planes.shape[-2:]
    m = _OPPONENT.to(dtype=planes.dtype, device=planes.device)
    return torch.einsum("ji,njhw->nihw", m, planes.reshape(-1, 3, h, w))


def grey_planes(rgb: torch.Tensor) -> torch.Tensor:
    """The grey luminance of ``rgb`` ``(N, 3, H, W)`` (:data:`GREY_WEIGHTS`) as ``(N, 1, H, W)``, in [0, 1]."""
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape (N, 3, H, W), got {tuple(rgb.shape)}")
    w = torch.tensor(GREY_WEIGHTS, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("c,nchw->nhw", w, rgb)[:, None]


def training_planes(rgb: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
    """The grey training samples of colour crops ``rgb`` ``(N, 3, H, W)``: ``(3(N − G) + G, 1, H, W)``.

    Crops where the boolean ``grey`` ``(N,)`` is False give their three opponent planes
    (:func:`opponent_planes`), in order; the ``G`` crops where it is True follow, each as one
    grey plane (:func:`grey_planes`).
    """
    if grey.shape != rgb.shape[:1] or grey.dtype != torch.bool:
        raise ValueError(f"grey must be a bool tensor of shape ({rgb.shape[0]},), got {grey.dtype} {tuple(grey.shape)}")
    return torch.cat([opponent_planes(rgb[~grey]), grey_planes(rgb[grey])])


def make_loss_fn(max_sigma: float = MAX_SIGMA, grey_share: float = 0.0) -> LossFn:
    """``loss_fn(model, batch)`` for :class:`pnpdeblur.train.Trainer`: MSE on noisy grey planes.

    ``batch["clean"]`` holds colour crops ``(N, 3, H, W)``; each crop is, with probability
    ``grey_share``, one grey plane, and otherwise its three opponent planes
    (:func:`training_planes`). Each plane gets its own σ ~ U[0, ``max_sigma``]. The logged
    ``psnr`` is that of the planes (peak 1).
    """
    if not 0 < max_sigma <= 1:
        raise ValueError(f"max_sigma must be in (0, 1], got {max_sigma!r}")
    if not 0 <= grey_share <= 1:
        raise ValueError(f"grey_share must be in [0, 1], got {grey_share!r}")

    def loss_fn(model, batch):
        rgb = batch["clean"]
        # drawn on the CPU generator only when used: grey_share = 0 keeps the colour-only run's random stream
        grey = (torch.rand(rgb.shape[0]) < grey_share if grey_share > 0
                else torch.zeros(rgb.shape[0], dtype=torch.bool)).to(rgb.device)
        clean = training_planes(rgb, grey)
        sigma = torch.rand(clean.shape[0], device=clean.device, dtype=clean.dtype) * max_sigma
        noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn_like(clean)
        out = model(noisy, sigma)
        mse = (out.float() - clean.float()).pow(2).mean()
        return mse, {"psnr": float(-10.0 * torch.log10(mse.detach().clamp_min(1e-12)))}

    return loss_fn


@torch.no_grad()
def val_fn(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean PSNR (dB) of the validation crops denoised through their opponent planes (``psnr``), of the
    noisy input, and of their grey luminance denoised as a grey image (``psnr_grey``).

    The grey crop's noise is the red channel's draw, so its std is the crop's σ.
    """
    clean, noisy, sigma = batch["clean"], batch["noisy"], batch["sigma"]
    out = colour_from_planes(model(opponent_planes(noisy), sigma.repeat_interleave(3)))
    grey = grey_planes(clean)
    grey_out = model(grey + (noisy - clean)[:, :1], sigma)
    return {"psnr": float(psnr_batch(out, clean).mean()),
            "psnr_noisy": float(psnr_batch(noisy, clean).mean()),
            "psnr_grey": float(psnr_batch(grey_out, grey).mean())}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pnpdeblur train dncnn",
                                 description="Train the grey noise-level-conditioned DnCNN (pd.deblur's prior) "
                                             "on the opponent-colour planes of colour photos.")
    ap.add_argument("--data", default=None, help="folder of sharp colour photos, e.g. .data/bsds500/train "
                    "(default: scikit-image photos only)")
    ap.add_argument("--no-skimage", action="store_true", help="do not add scikit-image's photos")
    ap.add_argument("--features", type=int, default=32, help="channels of the hidden layers (shipped: 32)")
    ap.add_argument("--depth", type=int, default=7, help="convolution layers (shipped: 7)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32, help="colour crops per batch (3 planes each)")
    ap.add_argument("--crop", type=int, default=48, help="training crop")
    ap.add_argument("--max-sigma", type=float, default=MAX_SIGMA, help="σ drawn in [0, this] (default 60/255)")
    ap.add_argument("--grey-share", type=float, default=0.0,
                    help="probability that a crop is given as its grey luminance (one plane in [0, 1]) instead of "
                         "its three opponent planes (default 0)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--halve-at", default="0.5,0.75,0.875", help="fractions of the steps where lr halves")
    ap.add_argument("--val-images", type=int, default=8, help="last files of --data held out for validation")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--init", default=None,
                    help="start from these DnCNN weights: a safetensors path, or 'shipped' for the library's own")
    add_time_budget_argument(ap)
    add_engine_arguments(ap, run_dir="runs/dncnn", out_name="dncnn.safetensors", val_items=24, log_every=50,
                         val_every=500, ckpt_every=200, grad_clip=False)
    return parse_engine_args(ap, argv)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Train the DnCNN as ``argv`` says and export its weights; returns the weights' path."""
    from .distributed import is_main_process

    args = parse_args(argv)
    check_crop_options(args, features=POSITIVE_INT, depth=POSITIVE_INT, grey_share=FRACTION)
    if args.depth < 2:
        raise ValueError(f"--depth must be >= 2 (a first and a last convolution), got {args.depth}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = DnCNN(channels=1, features=args.features, depth=args.depth, noise_map=True)
    init = None
    if args.init is not None:
        init_path = PRETRAINED_PATH if args.init == "shipped" else Path(args.init)
        check_init_out(init_path, args.out)
        init = initialise_from(model, init_path, "DnCNN")
    train_photos, val_photos = training_photos(args.data, args.val_images if args.data else 0,
                                               skimage=not args.no_skimage)
    t0 = time.time()
    loss_fn = make_loss_fn(args.max_sigma, args.grey_share)
    trainer, rate = fit_on_crops(args, model, loss_fn, val_fn, train_photos, val_photos)
    out = Path(args.out)
    if not is_main_process():
        return out
    provenance = crop_run_provenance("pnpdeblur.train.dncnn", args, argv, train_photos, val_photos, init, trainer,
                                     rate, time.time() - t0, loss="MSE",
                                     planes="orthonormal opponent colour planes of RGB crops",
                                     grey_share=args.grey_share, grey_weights=list(GREY_WEIGHTS))
    meta = {"data": provenance,
            "input": "grey (N, 1, H, W) (an opponent-colour plane of a [0, 1] RGB image, or a grey image) "
                     "plus sigma (noise std on the [0, 1] scale)",
            "output": "clean plane (N, 1, H, W)"}
    export_weights(trainer, out, "DnCNN", model.config, meta, float32=args.float32)
    print(json.dumps({"weights": str(out), "validation": trainer.last_validation}, default=str))
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
