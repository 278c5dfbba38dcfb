"""Training recipe for SEN (Wu et al.'s motion-flow estimator) on the shared engine.

Data: random 256² crops of sharp colour photos (a corpus folder, e.g. BSDS500's *train*
split, plus scikit-image's photos except the benchmark's), Gong-style flows of the "23" and
"46" presets in equal parts (:func:`pnpdeblur.data.random_motion_flow`), blurred **on the
training device** by :class:`pnpdeblur.MotionBlur` (the CUDA kernels on a GPU) with Gaussian
noise of a random σ ∈ [0, ``max_noise``], then clipped to [0, 1]. With ``--max-gain G
--highlight-prob P`` a fraction P of the crops is brightened by a gain in [1, G] before the blur,
so that the clip saturates highlights as in real photos: the shipped SEN never saw clipping and
its flows on such photos are poor (``benchmarks/RESULTS.md``, "Saturated pixels"). Off by
default. Every item is a pure function of (seed, index), so a resumed run sees the same data.

Loss: every stack's output is supervised (intermediate supervision) with
:func:`pnpdeblur.losses.flow_l2_loss`; ``--loss canonical`` is the paper's eq. 1 on ``u >= 0``
labels, ``--loss symmetric`` (default) is invariant to ``m → -m`` per pixel (see that function
for why). Schedule: Adam β = (0.9, 0.99), ε = 1e-8, lr 1.25e-3 constant for 50/90 of the steps
then linear to 1.25e-5 (the paper's 50 + 40 epochs, compressed to ``--steps``).

Usage::

    python scripts/train_sen.py --corpus .data/bsds500/train --steps 6000 --device cuda --amp
    python scripts/train_sen.py --steps 20 --batch 4 --crop 64 --width 4 --levels 2   # CPU smoke run
    # fine-tune the shipped weights on your own photos (a lower, decaying learning rate)
    python scripts/train_sen.py --corpus my_photos/ --init shipped --lr 2e-4 --lr-end 2e-6 --decay-from 0 \
        --steps 1500 --device cuda --amp --out my_sen.safetensors
    pnpdeblur train sen --help
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import ConcatDataset, default_collate

from ..data import FLOW_PRESETS, SyntheticBlurDataset, list_images, read_image, sample_image, sample_images
from ..losses import flow_l2_loss
from ..nets.sen import SEN, SEN_PRETRAINED_PATH
from ._cli import (NONNEGATIVE, POSITIVE_INT, add_engine_arguments, add_time_budget_argument, budgeted_steps,
                   check_init_out, check_options, device_name, engine_options, export_weights, parse_engine_args)
from ._cli import initialise_from as _initialise_from
from .engine import LossFn

__all__ = ["TRAIN_SAMPLES", "HELD_OUT_SAMPLES", "samples_at_least", "training_sources", "held_out_samples",
           "build_datasets", "blur_batch",
           "make_loss_fn", "val_fn", "initialise_from", "main"]

#: scikit-image photos used for training (colour and grey, ≥ 256 px on each side).
TRAIN_SAMPLES = ["rocket", "coins", "moon", "grass", "gravel", "brick", "immunohistochemistry",
                 "hubble_deep_field", "colorwheel"]
#: scikit-image photos kept for validation and the benchmarks.
HELD_OUT_SAMPLES = ["astronaut", "camera", "coffee", "chelsea"]


def samples_at_least(names: Sequence[str], size: Union[int, Tuple[int, int], None]) -> List[str]:
    """The scikit-image sample photos of ``names`` that hold a ``size`` crop (all of them for None)."""
    names = [n for n in names if n in sample_images()]
    if size is None:
        return names
    h, w = (size, size) if isinstance(size, int) else size
    shapes = {n: sample_image(n, channels=3).shape for n in names}
    return [n for n in names if shapes[n][0] >= h and shapes[n][1] >= w]


def training_sources(corpus: Optional[str], preload: bool = False,
                     min_size: Union[int, Tuple[int, int], None] = None) -> List[Any]:
    """Images of ``corpus`` (recursively) plus the :data:`TRAIN_SAMPLES` names.

    With ``preload`` the corpus is decoded once into float32 ``(H, W, 3)`` arrays (DataLoader
    workers share them after the fork), else it is listed as paths and read per item.

    ``min_size``: the ``(H, W)`` (or side) each photo must hold. The library's own sample photos
    smaller than it are left out; a corpus file smaller than it is the user's to remove, and with
    ``preload`` it is named here, from the headers, before anything is decoded (the data sets name
    files they read themselves).
    """
    from ..data.datasets import _fit_sources

    sources: List[Any] = []
    if corpus is not None:
        paths = list_images(corpus, recursive=True)  # raises ValueError if the folder holds no image
        if preload and min_size is not None:
            need = (min_size, min_size) if isinstance(min_size, int) else tuple(min_size)
            _fit_sources(paths, [str(p) for p in paths], need, default=False)
        sources += [read_image(p, 3) for p in paths] if preload else [str(p) for p in paths]
    sources += samples_at_least(TRAIN_SAMPLES, min_size)
    if not sources:
        raise ValueError(f"no training photo holds a {min_size} crop (the largest scikit-image sample is "
                         "872 × 1000 px): give a corpus of larger photos or lower the crop")
    return sources


def held_out_samples(size: Union[int, Tuple[int, int]]) -> List[str]:
    """The :data:`HELD_OUT_SAMPLES` that hold a ``size`` crop, for validation; ``ValueError`` if none."""
    names = samples_at_least(HELD_OUT_SAMPLES, size)
    if not names:
        raise ValueError(f"no held-out sample photo ({', '.join(HELD_OUT_SAMPLES)}; at most 512 px) holds a "
                         f"{size} validation crop: lower the crop")
    return names


def build_datasets(corpus: Optional[str], length: int, crop: int, presets: Sequence[str], seed: int,
                   val_items: int, preload: bool = False,
                   sources: Optional[Sequence[Any]] = None) -> Tuple[ConcatDataset, ConcatDataset]:
    """Training set (sharp + flow, blurred later on the device) and a fixed validation set.

    ``sources``: the training photos already listed (or decoded) by :func:`training_sources`;
    default: list them from ``corpus`` here.
    """
    if sources is None:
        sources = training_sources(corpus, preload, min_size=crop)
    per = -(-length // len(presets))
    train = ConcatDataset([
        SyntheticBlurDataset(sources, length=per, crop=crop, preset=p, seed=seed + 7919 * k, fixed=True, blur=False)
        for k, p in enumerate(presets)
    ])
    val = ConcatDataset([
        SyntheticBlurDataset(held_out_samples(crop), length=max(1, val_items // len(presets)), crop=crop, preset=p,
                             noise_sigma=0.01, seed=10_000 + k, fixed=True)
        for k, p in enumerate(presets)
    ])
    return train, val


@torch.no_grad()
def blur_batch(sharp: torch.Tensor, flow: torch.Tensor, max_noise: float, max_gain: float = 1.0,
               highlight_prob: float = 0.0) -> torch.Tensor:
    """Blur ``sharp`` ``(N, C, H, W)`` by ``flow`` ``(N, 2, H, W)`` on their device, add noise, clip.

    The noise std of each sample is uniform in ``[0, max_noise]`` (torch's RNG of the device).
    With ``max_gain > 1``, a sample is brightened first with probability ``highlight_prob``, by
    a gain uniform in ``[1, max_gain]``, so that the final clip saturates its highlights as a
    sensor does (``K(g x) = g K x``; the flow label is unchanged). With ``max_gain = 1`` no extra
    random numbers are drawn: the batches are those of a run without the option.
    """
    from ..operators import MotionBlur

    blurred = MotionBlur(flow)(sharp)
    if max_gain > 1 and highlight_prob > 0:
        n = sharp.shape[0]
        pick = torch.rand(n, 1, 1, 1, device=sharp.device, dtype=sharp.dtype) < highlight_prob
        gain = 1 + (max_gain - 1) * torch.rand(n, 1, 1, 1, device=sharp.device, dtype=sharp.dtype)
        blurred = blurred * torch.where(pick, gain, torch.ones_like(gain))
    sigma = torch.rand(sharp.shape[0], 1, 1, 1, device=sharp.device, dtype=sharp.dtype) * max_noise
    return (blurred + sigma * torch.randn_like(blurred)).clamp_(0.0, 1.0)


def make_loss_fn(symmetric: bool, max_noise: float, max_gain: float = 1.0,
                 highlight_prob: float = 0.0) -> LossFn:
    """``loss_fn(model, batch)`` for :class:`pnpdeblur.train.Trainer`: mean over stacks of the flow loss
    (the blurred input made by :func:`blur_batch` with these settings)."""

    def loss_fn(model, batch):
        flow = batch["flow"]
        blurred = blur_batch(batch["sharp"], flow, max_noise, max_gain, highlight_prob)
        outs = model(blurred)
        losses = [flow_l2_loss(o.float(), flow, symmetric=symmetric) for o in outs]
        if symmetric:  # the last stack's loss is already the logged metric
            mse = losses[-1].detach()
        else:
            with torch.no_grad():
                mse = flow_l2_loss(outs[-1].float(), flow, symmetric=True)
        return sum(losses) / len(losses), {"flow_mse": float(mse)}

    return loss_fn


@torch.no_grad()
def val_fn(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Sign-invariant flow MSE (px², Wu et al.'s table 1) of the last and the first stack."""
    outs = model(batch["blurred"])
    out = {"flow_mse": float(flow_l2_loss(outs[-1].float(), batch["flow"], symmetric=True))}
    if len(outs) > 1:
        out["flow_mse_stack1"] = float(flow_l2_loss(outs[0].float(), batch["flow"], symmetric=True))
    return out


def initialise_from(model: SEN, path: Path) -> Dict[str, Any]:
    """Load the SEN weights at ``path`` into ``model`` (a warm start); returns their provenance.

    The checkpoint's config must equal ``model.config`` (``flow_scale`` included: it scales the
    output, so weights trained for other presets would be off by a factor); see
    :func:`pnpdeblur.train._cli.initialise_from`.
    """
    return _initialise_from(model, path, "SEN")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pnpdeblur train sen", description="Train SEN, the motion-flow estimator.")
    ap.add_argument("--corpus", default=None, help="folder of sharp photos (default: scikit-image photos only)")
    ap.add_argument("--preload", action="store_true", help="decode the corpus into memory once")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16, help="global batch size (paper: 16)")
    ap.add_argument("--crop", type=int, default=256, help="training crop size (paper: 256)")
    ap.add_argument("--presets", default="23,46", help="flow presets mixed in equal parts")
    ap.add_argument("--max-noise", type=float, default=0.02, help="noise std drawn in [0, this]")
    ap.add_argument("--max-gain", type=float, default=1.0,
                    help="brighten some crops by a gain in [1, this] before the blur, so that the clip "
                         "saturates their highlights as in real photos (default 1: off)")
    ap.add_argument("--highlight-prob", type=float, default=0.0,
                    help="fraction of crops brightened (with --max-gain > 1)")
    ap.add_argument("--width", type=int, default=16, help="first-layer width (paper: 64)")
    ap.add_argument("--stacks", type=int, default=2)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--loss", choices=("symmetric", "canonical"), default="symmetric")
    ap.add_argument("--lr", type=float, default=1.25e-3,
                    help="peak learning rate (paper: 1.25e-3). If the loss stays flat near the "
                         "zero-flow error for ~1000 steps (SEN returns one flow for every input), "
                         "lower it: on a CPU in float32, 3e-4 left that plateau in 300 steps where "
                         "1.25e-3 stayed on it for 2000 (benchmarks/RESULTS.md)")
    ap.add_argument("--lr-end", type=float, default=1.25e-5)
    ap.add_argument("--decay-from", type=float, default=50 / 90, help="fraction of steps at constant lr")
    ap.add_argument("--init", default=None,
                    help="start from these SEN weights instead of a random initialisation: a safetensors "
                         "path, or 'shipped' for the library's own (same width/stacks/levels/presets)")
    add_time_budget_argument(ap)
    add_engine_arguments(ap, run_dir="runs/sen", out_name="sen.safetensors", val_items=64)
    return parse_engine_args(ap, argv)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Train SEN as ``argv`` says and export its weights; returns the weights' path."""
    from . import TrainConfig, Trainer
    from .distributed import is_main_process

    args = parse_args(argv)
    check_options(args, files=("init",), photo_folders=("corpus",), crop=POSITIVE_INT, width=POSITIVE_INT,
                  stacks=POSITIVE_INT, levels=POSITIVE_INT, lr_end=NONNEGATIVE)
    if not (math.isfinite(args.max_gain) and args.max_gain >= 1):
        raise ValueError(f"--max-gain must be a number >= 1, got {args.max_gain}")
    if not 0 <= args.highlight_prob <= 1:
        raise ValueError(f"--highlight-prob must be in [0, 1], got {args.highlight_prob}")
    if not (math.isfinite(args.max_noise) and args.max_noise >= 0):  # NaN noise trained on NaN images
        raise ValueError(f"--max-noise must be a finite noise std >= 0, got {args.max_noise}")
    if not 0 <= args.decay_from <= 1:
        raise ValueError(f"--decay-from must be a fraction of the steps in [0, 1], got {args.decay_from}")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if not presets or any(p not in FLOW_PRESETS for p in presets):
        raise ValueError(f"--presets must be a comma-separated list of {sorted(FLOW_PRESETS)}, got {args.presets!r}")
    model = SEN(in_channels=3, width=args.width, stacks=args.stacks, levels=args.levels,
                flow_scale=float(max(int(p) for p in presets)) / 2)
    stride = model.stride  # SEN's input sides: the training crops must fit its down-samplings
    if args.crop % stride:
        raise ValueError(f"--crop must be a multiple of SEN's stride 4·2^levels = {stride} (--levels {args.levels}), "
                         f"got {args.crop}")
    if args.batch * (args.crop // stride) ** 2 < 2:  # batch norm needs two values per channel at the bottom
        raise ValueError(f"--crop {args.crop} with --batch {args.batch} leaves one value per channel at SEN's "
                         "coarsest level (batch norm needs two): raise --crop or --batch")
    init = None
    if args.init is not None:
        init_path = Path(SEN_PRETRAINED_PATH if args.init == "shipped" else args.init)
        check_init_out(init_path, args.out)
        init = initialise_from(model, init_path)
    loss_fn = make_loss_fn(args.loss == "symmetric", args.max_noise, args.max_gain, args.highlight_prob)
    sources = training_sources(args.corpus, args.preload, min_size=args.crop)

    def probe_batch():
        probe = SyntheticBlurDataset(sources, length=args.batch, crop=args.crop, preset=presets[0],
                                     seed=args.seed + 1, fixed=True, blur=False)
        return default_collate([probe[i] for i in range(args.batch)])

    steps, rate = budgeted_steps(args, model, loss_fn, probe_batch)
    train, val = build_datasets(args.corpus, steps * args.batch, args.crop, presets, args.seed, args.val_items,
                                sources=sources)
    cfg = TrainConfig(
        steps=steps, batch_size=args.batch, lr=args.lr, betas=(0.9, 0.99), eps=1e-8,
        decay_start=int(steps * args.decay_from), lr_end=args.lr_end, time_limit_s=args.time_budget,
        **engine_options(args),
    )
    t0 = time.time()
    trainer = Trainer(model, cfg, train, loss_fn, val_data=val, val_fn=val_fn)
    trainer.fit()
    out = Path(args.out)
    if not is_main_process():
        return out
    corpus_files = [] if args.corpus is None else [p.name for p in list_images(args.corpus, recursive=True)]
    provenance = {
        "script": "scripts/train_sen.py (pnpdeblur.train.sen)",
        "argv": list(argv) if argv is not None else None,
        "corpus": args.corpus,
        "corpus_files": corpus_files,
        "skimage_photos": [s for s in sources if isinstance(s, str) and s in TRAIN_SAMPLES],  # those the crop fits
        "held_out": HELD_OUT_SAMPLES,
        "init": init,
        "flow_presets": presets, "max_noise": args.max_noise, "loss": args.loss,
        "max_gain": args.max_gain, "highlight_prob": args.highlight_prob,
        "time_budget_s": args.time_budget, "probe_steps_per_s": rate, "stopped_by_time": trainer.stopped_by_time,
        "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
        # the device the trainer resolved (``auto`` → cuda or cpu; cuda:1 names that card)
        "device": device_name(trainer.device),
    }
    meta = {"data": provenance, "output": "flow (N, 2, H, W) in pixels, u right, v down; canonical u >= 0"}
    export_weights(trainer, out, "SEN", model.config, meta, float32=args.float32,
                   stored_dtype="float16 weights, float32 BatchNorm statistics")
    print(json.dumps({"weights": str(out), "validation": trainer.history[-1] if trainer.history else None},
                     default=str))
    return out
