"""Training recipe for DRUNet (Zhang et al.'s noise-level-aware denoiser) on the shared engine.

Data: random square crops of sharp colour photos — a folder (e.g. BSDS500's *train*
split; never its *val*/*test* splits, which hold CBSD68) plus scikit-image's photos
except the benchmark's four (:data:`HELD_OUT_SAMPLES`) — with random flips and 90°
rotations. Every item is a pure function of (seed, index), so a resumed run sees the same
data. The last ``--val-images`` files of the folder (sorted by name) are held out of
training and give the validation crops (fixed noise σ ∈ {15, 25, 50}/255, seeded).

Noise: each training sample gets its own σ ~ U[0, 50/255] (the paper's range), drawn on
the training device with torch's RNG: ``noisy = clean + σ · N(0, 1)`` (not clipped, as
in the paper). Loss: L1 between the network's output and the clean crop (the paper's).
Optimiser: Adam, learning rate constant then halved at 1/2, 3/4 and 7/8 of the steps
(the paper halves every 100k iterations; compressed to ``--steps``).

Usage::

    pnpdeblur train drunet --data .data/bsds500/train --small --steps 2000 --threads 2
    pnpdeblur train drunet --data photos/ --steps 800000 --batch 16 --crop 128 --device cuda --amp  # paper
    pnpdeblur train drunet --data photos/ --features 32,64,128,256 --blocks 2 --time-budget 600 --amp  # 10 min
    pnpdeblur train drunet --data photos/ --features 32,64,128,256 --blocks 2 --residual no \
        --init shipped --lr 1e-4 --time-budget 600 --amp   # go on from the shipped medium weights
    pnpdeblur train drunet --help
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..data import list_images, read_image, sample_image, sample_images
from ..nets.drunet import PAPER_CONFIG, PRETRAINED_VARIANTS, SMALL_CONFIG, DRUNet
from ._cli import (COUNT, NONNEGATIVE, POSITIVE_INT, UNIT, Rule, add_engine_arguments, add_time_budget_argument,
                   at_least, budgeted_steps, check_init_out, check_options, engine_options, export_weights,
                   initialise_from, parse_engine_args, parse_fractions, photo_files)
from .engine import LossFn, Trainer

__all__ = ["HELD_OUT_SAMPLES", "MAX_SIGMA", "VAL_SIGMAS", "CleanCropDataset", "NoisyValDataset",
           "training_photos", "fit_on_crops", "crop_run_provenance", "make_loss_fn", "val_fn", "psnr_batch",
           "shipped_weights_for", "parse_args", "check_crop_options", "main"]

#: scikit-image photos kept for the benchmarks (never trained on).
HELD_OUT_SAMPLES = ("astronaut", "camera", "coffee", "chelsea")
#: Largest training noise std (the paper's 50/255).
MAX_SIGMA = 50.0 / 255.0
#: Noise levels of the validation crops, in turn.
VAL_SIGMAS = (15.0 / 255.0, 25.0 / 255.0, 50.0 / 255.0)


def _as_uint8(img: np.ndarray) -> np.ndarray:
    # uint8 keeps a 200-photo corpus near 100 MB in memory (float32 would be 4×).
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def training_photos(data: Optional[str], val_images: int = 0,
                    skimage: bool = True) -> Tuple[List[Tuple[str, np.ndarray]], List[Tuple[str, np.ndarray]]]:
    """Decode the training and validation photos as uint8 ``(H, W, 3)`` arrays.

    Parameters
    ----------
    data : str or None
        Folder of photos (searched recursively); ``None``: scikit-image photos only.
    val_images : int
        How many of the folder's last files (sorted) to hold out for validation.
    skimage : bool
        Add scikit-image's photos except :data:`HELD_OUT_SAMPLES` to the training set.

    Returns
    -------
    train, val : list of (name, array)
    """
    if isinstance(val_images, bool) or not isinstance(val_images, int) or val_images < 0:
        raise ValueError(f"val_images must be an int >= 0, got {val_images!r}")
    train: List[Any] = []
    val: List[Any] = []
    if data is not None:
        paths = list_images(data, recursive=True)
        if val_images >= len(paths):
            raise ValueError(f"val_images ({val_images}) must be smaller than the {len(paths)} images of {data}")
        cut = len(paths) - val_images
        train += [(p.name, _as_uint8(read_image(p, 3))) for p in paths[:cut]]
        val += [(p.name, _as_uint8(read_image(p, 3))) for p in paths[cut:]]
    if skimage:
        train += [(n, _as_uint8(sample_image(n, channels=3))) for n in sample_images() if n not in HELD_OUT_SAMPLES]
    if not train:
        raise ValueError("no training photos: give --data or keep the scikit-image photos")
    return train, val


def _crop(img: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    if h < crop or w < crop:  # small photo: reflect-pad up to the crop
        img = np.pad(img, ((0, max(0, crop - h)), (0, max(0, crop - w)), (0, 0)), mode="reflect")
        h, w = img.shape[:2]
    i, j = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return img[i : i + crop, j : j + crop]


def _to_chw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class CleanCropDataset(Dataset):
    """Random ``crop``² patches of photos with random flips / 90° rotations.

    Item ``i`` is ``{"clean": (3, crop, crop) float32 in [0, 1]}``, a pure function of
    ``(seed, i)``; ``length`` items (an "epoch" is ``length`` random crops).
    """

    def __init__(self, photos: Sequence[Any], length: int, crop: int, seed: int = 0):
        if not photos:
            raise ValueError("photos must not be empty")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8:
            raise ValueError(f"crop must be an int >= 8, got {crop!r}")
        self.photos = [p[1] if isinstance(p, tuple) else p for p in photos]
        self.length, self.crop, self.seed = length, crop, int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, int(index)])
        img = self.photos[int(rng.integers(len(self.photos)))]
        patch = _crop(img, self.crop, rng)
        patch = np.rot90(patch, int(rng.integers(4)))
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return {"clean": _to_chw(patch)}


class NoisyValDataset(Dataset):
    """Fixed validation crops with fixed noise: ``{"clean", "noisy", "sigma"}``.

    Item ``i`` is the centre-ish ``crop``² of photo ``i % len(photos)`` (offset by ``i``'s
    seed), noise std ``VAL_SIGMAS[i % 3]``, noise seeded by ``(seed, i)``.
    """

    def __init__(self, photos: Sequence[Any], items: int, crop: int, seed: int = 10_000):
        if not photos:
            raise ValueError("photos must not be empty")
        self.photos = [p[1] if isinstance(p, tuple) else p for p in photos]
        self.items, self.crop, self.seed = int(items), int(crop), int(seed)

    def __len__(self) -> int:
        return self.items

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        clean = _to_chw(_crop(self.photos[index % len(self.photos)], self.crop, rng))
        sigma = VAL_SIGMAS[index % len(VAL_SIGMAS)]
        g = torch.Generator().manual_seed(self.seed * 1000 + int(index))
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        return {"clean": clean, "noisy": noisy, "sigma": torch.tensor(sigma, dtype=torch.float32)}


def psnr_batch(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, peak 1) of ``x`` against ``ref``, both ``(N, C, H, W)``; ``x`` clipped to [0, 1]."""
    mse = (x.clamp(0, 1) - ref).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def make_loss_fn(max_sigma: float = MAX_SIGMA) -> LossFn:
    """``loss_fn(model, batch)`` for :class:`pnpdeblur.train.Trainer`: L1 at σ ~ U[0, max_sigma] per sample."""
    if not 0 < max_sigma <= 1:
        raise ValueError(f"max_sigma must be in (0, 1], got {max_sigma!r}")

    def loss_fn(model, batch):
        clean = batch["clean"]
        sigma = torch.rand(clean.shape[0], device=clean.device, dtype=clean.dtype) * max_sigma
        noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn_like(clean)
        out = model(noisy, sigma)
        loss = (out.float() - clean.float()).abs().mean()
        with torch.no_grad():
            p = float(psnr_batch(out.detach().float(), clean.float()).mean())
        return loss, {"psnr": p}

    return loss_fn


@torch.no_grad()
def val_fn(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean PSNR (dB) of the denoised validation crops and of the noisy input."""
    out = model(batch["noisy"], batch["sigma"])
    return {"psnr": float(psnr_batch(out, batch["clean"]).mean()),
            "psnr_noisy": float(psnr_batch(batch["noisy"], batch["clean"]).mean())}


def shipped_weights_for(config: Dict[str, Any]) -> Path:
    """The shipped DRUNet weights (small or medium) whose network ``config`` builds.

    Raises ``ValueError`` naming the shipped variants' configs when none matches.
    """
    from ..checkpoints import read_header

    found = {}
    for variant, path in PRETRAINED_VARIANTS.items():
        found[variant] = read_header(path)["config"]
        if found[variant] == dict(config):
            return Path(path)
    raise ValueError(f"--init shipped: no shipped DRUNet has the options' config {dict(config)}; shipped: "
                     + "; ".join(f"{v}: {c}" for v, c in found.items()))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pnpdeblur train drunet",
                                 description="Train DRUNet, the noise-level-aware denoiser prior (DPIR).")
    ap.add_argument("--data", default=None, help="folder of sharp colour photos, e.g. .data/bsds500/train "
                    "(default: scikit-image photos only)")
    ap.add_argument("--no-skimage", action="store_true", help="do not add scikit-image's photos")
    ap.add_argument("--small", action="store_true",
                    help="the small CPU configuration (features 16-128, 1 block, global residual)")
    ap.add_argument("--features", default=None, help="four comma-separated widths (overrides --small)")
    ap.add_argument("--blocks", type=int, default=None, help="residual blocks per level")
    ap.add_argument("--residual", choices=("yes", "no"), default=None, help="global residual (output = x + net)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16, help="batch size (paper: 16)")
    ap.add_argument("--crop", type=int, default=128, help="training crop (paper: 128)")
    ap.add_argument("--max-sigma", type=float, default=MAX_SIGMA, help="σ drawn in [0, this] (paper: 50/255)")
    ap.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="linear lr warm-up: a number of steps, or a fraction of the steps if < 1 (default none)")
    ap.add_argument("--halve-at", default="0.5,0.75,0.875", help="fractions of the steps where lr halves")
    ap.add_argument("--val-images", type=int, default=8, help="last files of --data held out for validation")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--init", default=None,
                    help="start from these DRUNet weights instead of a random initialisation: a safetensors path, "
                         "or 'shipped' for the library's own of the same configuration (--small, or the medium "
                         "one's --features 32,64,128,256 --blocks 2 --residual no)")
    add_time_budget_argument(ap)
    add_engine_arguments(ap, run_dir="runs/drunet", out_name="drunet.safetensors", val_items=24, log_every=25,
                         val_every=250, ckpt_every=50, grad_clip=False)
    return parse_engine_args(ap, argv)


def check_crop_options(args: argparse.Namespace, **rules: Rule) -> None:
    """Refuse the bad options of a denoiser recipe (this one or :mod:`pnpdeblur.train.dncnn`) by name, before any work.

    The options both have (``--crop --max-sigma --threads --val-images --halve-at --data --init``
    and the shared ones, :func:`~pnpdeblur.train._cli.check_options`) plus the recipe's ``rules``;
    ``--val-images`` must leave ``--data`` a photo to train on. Raises ``ValueError`` naming the option.
    """
    check_options(args, files=("init",), crop=at_least(8), max_sigma=UNIT, threads=POSITIVE_INT, val_images=COUNT,
                  **rules)
    parse_fractions("--halve-at", args.halve_at)
    if args.data is not None:
        n = len(photo_files("--data", args.data))
        if args.val_images >= n:
            raise ValueError(f"--val-images ({args.val_images}) must be smaller than the {n} photos of --data "
                             f"{args.data}")


def fit_on_crops(args: argparse.Namespace, model: torch.nn.Module, loss_fn: Any, val_fn: Any,
                 train_photos: Sequence[Any], val_photos: Sequence[Any],
                 warmup: float = 0.0) -> Tuple[Trainer, Optional[float]]:
    """Train a denoiser on random crops of ``train_photos`` with the shared engine; returns ``(trainer, rate)``.

    The part the denoiser recipes (this one and :mod:`pnpdeblur.train.dncnn`) share: the step
    count (``args.steps``, or what fits ``args.time_budget``; ``rate`` is the probe's steps/s or
    None), :class:`CleanCropDataset` of ``args.crop``² crops, :class:`NoisyValDataset` of
    ``args.val_items`` crops of ``val_photos`` (none when there are none), Adam (0.9, 0.999) at
    ``args.lr`` halved at the ``args.halve_at`` fractions of the steps, a linear warm-up of
    ``warmup`` steps (a fraction of the steps if < 1), and the engine options of ``args``.
    """
    from . import TrainConfig, Trainer

    def probe_batch():
        probe = CleanCropDataset(train_photos, args.batch, args.crop, seed=args.seed + 1)
        return default_collate([probe[i] for i in range(args.batch)])

    steps, rate = budgeted_steps(args, model, loss_fn, probe_batch)
    train = CleanCropDataset(train_photos, steps * args.batch, args.crop, seed=args.seed)
    val = NoisyValDataset(val_photos, args.val_items, args.crop) if val_photos else None
    warmup_steps = min(steps, int(round(warmup * steps)) if warmup < 1 else int(warmup))
    milestones = tuple(sorted({int(steps * float(f)) for f in args.halve_at.split(",") if f.strip()} - {0}))
    cfg = TrainConfig(
        steps=steps, batch_size=args.batch, lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
        lr_milestones=milestones, lr_gamma=0.5, time_limit_s=args.time_budget, warmup_steps=warmup_steps,
        **{**engine_options(args), "val_every": args.val_every if val is not None else 0},
    )
    trainer = Trainer(model, cfg, train, loss_fn, val_data=val, val_fn=val_fn if val is not None else None)
    trainer.fit()
    return trainer, rate


def crop_run_provenance(recipe: str, args: argparse.Namespace, argv: Optional[Sequence[str]],
                        train_photos: Sequence[Any], val_photos: Sequence[Any], init: Optional[Dict[str, Any]],
                        trainer: Any, rate: Optional[float], seconds: float, **extra: Any) -> Dict[str, Any]:
    """The ``data`` entry of a denoiser recipe's weights header after :func:`fit_on_crops`.

    The recipe, its ``argv`` (None when read from ``sys.argv``), the photos trained and validated
    on, the held-out samples, the warm start, ``extra`` (the recipe's own: its loss, …), the noise
    range and crop, the run's ``seconds`` (wall time from the time-budget probe on, so a little
    more than the budget), torch version and device, and the time budget's figures.
    """
    return {
        "recipe": recipe,
        "argv": list(argv) if argv is not None else None,
        "data": args.data,
        "train_files": [n for n, _ in train_photos],
        "val_files": [n for n, _ in val_photos],
        "held_out": list(HELD_OUT_SAMPLES),
        "init": init,
        **extra,
        "max_sigma": args.max_sigma, "crop": args.crop,
        "seconds": round(seconds, 1), "torch": torch.__version__,
        "device": str(trainer.device),
        "time_budget_s": args.time_budget, "probe_steps_per_s": rate, "stopped_by_time": trainer.stopped_by_time,
    }


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Train DRUNet as ``argv`` says and export its weights; returns the weights' path."""
    from .distributed import is_main_process

    args = parse_args(argv)
    check_crop_options(args, blocks=POSITIVE_INT, warmup=NONNEGATIVE)
    if args.features is not None:
        try:
            features = tuple(int(f) for f in args.features.split(","))
        except ValueError:
            features = ()
        if len(features) != 4 or min(features) < 1:
            raise ValueError(f"--features must be 4 comma-separated ints >= 1, got {args.features!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = dict(SMALL_CONFIG if args.small else PAPER_CONFIG)
    if args.features is not None:
        config["features"] = features
    if args.blocks is not None:
        config["blocks"] = args.blocks
    if args.residual is not None:
        config["residual"] = args.residual == "yes"
    model = DRUNet(**config)
    init = None
    if args.init is not None:
        init_path = shipped_weights_for(model.config) if args.init == "shipped" else Path(args.init)
        check_init_out(init_path, args.out)
        init = initialise_from(model, init_path, "DRUNet")
    train_photos, val_photos = training_photos(args.data, args.val_images if args.data else 0,
                                               skimage=not args.no_skimage)
    loss_fn = make_loss_fn(args.max_sigma)
    t0 = time.time()
    trainer, rate = fit_on_crops(args, model, loss_fn, val_fn, train_photos, val_photos, warmup=args.warmup)
    out = Path(args.out)
    if not is_main_process():
        return out
    provenance = crop_run_provenance("pnpdeblur.train.drunet", args, argv, train_photos, val_photos, init, trainer,
                                     rate, time.time() - t0, loss="L1")
    meta = {"data": provenance, "input": "noisy (N, C, H, W) in [0, 1] and sigma on the [0, 1] scale",
            "output": "clean image (N, C, H, W)"}
    export_weights(trainer, out, "DRUNet", model.config, meta, float32=args.float32)
    print(json.dumps({"weights": str(out), "validation": trainer.last_validation}, default=str))
    return out


if __name__ == "__main__":  # pragma: no cover
    main()
