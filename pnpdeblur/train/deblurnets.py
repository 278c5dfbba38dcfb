"""One training recipe for the end-to-end nets: ``pnpdeblur train deepdeblur|deblurnet|dvd|deblurgan|flownets``.

Every net goes through the shared :class:`~pnpdeblur.train.Trainer` with the same data
choices and logs; what differs per net is its :class:`NetSpec` (class, input kind, loss,
paper schedule, small CPU configuration).

Data (``--data``)
    ``video``  GOPRO-style frame averaging (:class:`pnpdeblur.data.SyntheticVideoDataset`:
               7–13 frames under a gamma-2.2 CRF) on the training corpus — the default;
    ``flow``   Gong-style per-pixel flows through ``MotionBlur``
               (:class:`pnpdeblur.data.SyntheticBlurDataset`, ``--preset 23|46``) — the
               data of SEN and of the generalisation experiment;
    ``gopro``  a GOPRO-layout folder (:class:`pnpdeblur.data.GoProDataset`, ``--root``).
    DVD trains on clips of ``--frames`` blurred frames (video only); FlowNetS on pairs of
    consecutive sharp frames with their true flow (video only).

Losses
    image nets: multi-scale MSE over the net's outputs (Nah et al. eq. 2, Noroozi et al.),
    plus the paper's adversarial term when ``--adv-weight`` > 0 — a standard GAN with
    DeepDeblur's discriminator (weight 1e-4), WGAN-GP with DeblurGAN's critic (content
    weight 100 ⇔ adversarial weight 1/100 here) — trained in one optimiser step by
    :class:`~pnpdeblur.train.AdversarialPair`; FlowNetS: multi-scale end-point error.

The defaults of ``--steps``, ``--lr``, ``--batch``, ``--crop`` and the schedule are the
paper's (see :data:`SPECS`); ``--small`` selects the CPU configuration that the shipped
weights use.
"""
from __future__ import annotations

import argparse
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from ..losses.adversarial import (
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)
from ..losses.multiscale import multiscale_mse
from ._cli import (
    NONNEGATIVE,
    POSITIVE_INT,
    _flag,
    add_engine_arguments,
    add_time_budget_argument,
    budgeted_steps,
    check_init_out,
    check_options,
    engine_options,
    initialise_from,
    parse_engine_args,
)
from .sen import HELD_OUT_SAMPLES, TRAIN_SAMPLES, held_out_samples, training_sources

__all__ = ["NetSpec", "SPECS", "build_net", "build_datasets", "make_loss_fn", "make_val_fn", "shipped_weights_for",
           "check_args", "check_crop", "main"]


@dataclass(frozen=True)
class NetSpec:
    """How one end-to-end net is built and trained.

    Attributes
    ----------
    module, cls : str
        ``pnpdeblur.nets`` submodule and class name.
    kind : {"image", "video", "flow"}
        ``image``: ``net(blurred) -> sharp``; ``video``: ``net((N, T·C, H, W) clip) ->``
        centre frame; ``flow``: ``net(frame1, frame2) -> (N, 2, H, W)`` flow.
    small : dict
        Constructor arguments of the CPU configuration (``--small``).
    adversarial : {None, "gan", "wgan-gp"}
        The paper's adversarial loss; ``discriminator`` names its class in ``module``.
    disc_small : dict
        Constructor arguments of the discriminator with ``--small``.
    disc_min_crop : int
        Smallest crop side the discriminator takes (checked up front when it trains).
    adv_weight : float
        Weight of the generator's adversarial term relative to the content loss.
    lr, steps, batch, crop, milestones, gamma, decay_from, lr_end :
        The paper's schedule: Adam ``lr``; step decay by ``gamma`` at ``milestones``
        (fractions of ``steps``); or a linear decay to ``lr_end`` from ``decay_from``.
    paper : str
        Where the settings come from.
    """

    module: str
    cls: str
    kind: str
    small: Mapping[str, Any]
    adversarial: Optional[str] = None
    discriminator: Optional[str] = None
    disc_small: Mapping[str, Any] = field(default_factory=dict)
    disc_min_crop: int = 1
    adv_weight: float = 0.0
    lr: float = 1e-4
    steps: int = 100_000
    batch: int = 16
    crop: int = 256
    milestones: Tuple[float, ...] = ()
    gamma: float = 0.1
    decay_from: Optional[float] = None
    lr_end: Optional[float] = None
    betas: Tuple[float, float] = (0.9, 0.999)
    paper: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


#: Paper settings per net (``pnpdeblur train <name>``).
SPECS: Dict[str, NetSpec] = {
    "deepdeblur": NetSpec(
        "pnpdeblur.nets.deepdeblur", "DeepDeblur", "image", small=dict(features=16, blocks=3, residual=True),
        adversarial="gan", discriminator="DeepDeblurDiscriminator", adv_weight=1e-4, disc_small=dict(base=8),
        lr=5e-5, steps=450_000, batch=4, crop=256, milestones=(1 / 3,), gamma=0.1,
        paper="Nah et al.: Adam 5e-5, ÷10 after 1.5e5 of 4.5e5 iterations, batch 4, 256² crops, "
              "adversarial weight 1e-4"),
    "deblurnet": NetSpec(
        "pnpdeblur.nets.deblurnet", "DeblurNet", "image", small=dict(n1_channels=[16, 32, 32, 32, 32, 32], width=32),
        lr=1e-3, steps=100_000, batch=10, crop=256, milestones=tuple(k / 10 for k in range(1, 10)), gamma=0.75,
        paper="Noroozi et al.: multi-scale L2, Adam (0.9, 0.999) 1e-3 times 0.75 every 10 % of the iterations, "
              "batch 10 (iterations and crop not in the paper)"),
    "dvd": NetSpec(
        "pnpdeblur.nets.dvd", "DVD", "video", small=dict(widths=[8, 16, 32, 64]),
        lr=1e-4, steps=80_000, batch=16, crop=128, decay_from=0.5, lr_end=1e-6,
        paper="Su et al. (as used by Chen et al.): 5-frame stacks, MSE to the centre frame"),
    "deblurgan": NetSpec(
        "pnpdeblur.nets.deblurgan", "DeblurGANGenerator", "image", small=dict(features=16, blocks=3, dropout=0.0),
        adversarial="wgan-gp", discriminator="DeblurGANCritic", adv_weight=1e-2, disc_small=dict(features=16),
        disc_min_crop=8,  # DeblurGANCritic.forward refuses inputs under 8×8
        lr=1e-4, steps=300_000, batch=1, crop=256, decay_from=0.5, lr_end=0.0, betas=(0.5, 0.999),
        paper="Kupyn et al.: Adam 1e-4 (β1 0.5), constant then linear decay to 0, batch 1, 256² crops, "
              "WGAN-GP (λ 10) + 100 × content"),
    "flownets": NetSpec(
        "pnpdeblur.nets.flownets", "FlowNetS", "flow", small=dict(width=8),
        lr=1e-4, steps=600_000, batch=8, crop=256, milestones=(1 / 2, 2 / 3, 5 / 6), gamma=0.5,
        paper="Dosovitskiy et al.: Adam 1e-4, halved every 1e5 iterations after 3e5, batch 8"),
}

_GP_WEIGHT = 10.0  # Gulrajani et al., DeblurGAN


def _net_class(spec: NetSpec, name: Optional[str] = None) -> type:
    return getattr(importlib.import_module(spec.module), name or spec.cls)


def shipped_weights_for(name: str) -> Path:
    """The library's own weights of net ``name`` (``--init shipped``).

    Raises ``ValueError`` when none ship for it (the nets with weights are named).
    """
    if name not in SPECS:
        raise ValueError(f"unknown net {name!r}; expected one of {sorted(SPECS)}")
    cls = _net_class(SPECS[name])
    if cls.pretrained_file is None:
        shipped = sorted(n for n, spec in SPECS.items() if _net_class(spec).pretrained_file is not None)
        raise ValueError(f"--init shipped: no {cls.__name__} weights ship with pnpdeblur; they ship for {shipped}. "
                         "Pass a safetensors path instead")
    return cls.pretrained_path()


def build_net(name: str, small: bool = False, **config: Any) -> nn.Module:
    """Construct net ``name`` (a key of :data:`SPECS`): paper config, or ``small`` for the CPU, or ``config``."""
    if name not in SPECS:
        raise ValueError(f"name must be one of {sorted(SPECS)}, got {name!r}")
    spec = SPECS[name]
    kwargs = {**(dict(spec.small) if small else {}), **config}
    return _net_class(spec)(**kwargs)


class _Multiscale(nn.Module):
    """Training view of a net: ``forward`` is its ``forward_multiscale`` (so DDP sees it)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> List[torch.Tensor]:
        return self.net.forward_multiscale(*inputs)


class _VideoItems(Dataset):
    """Clip items of :class:`SyntheticVideoDataset` re-keyed per net kind."""

    def __init__(self, clips: Dataset, kind: str):
        self.clips, self.kind = clips, kind

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        c = self.clips[i]
        if self.kind == "video":  # (T, C, H, W) → (T·C, H, W); target the centre frame
            t = c["blurred"].shape[0]
            return {"blurred": c["blurred"].reshape(-1, *c["blurred"].shape[-2:]), "sharp": c["sharp"][t // 2]}
        # flow: consecutive sharp frames and the true flow from frame 0's grid to frame 1
        return {"frame1": c["sharp"][0], "frame2": c["sharp"][1], "flow": c["flow_next"][0]}


def _clip_length(kind: str, frames: int) -> int:
    """Blurred frames per item of a video-trained net of ``kind``."""
    return frames if kind == "video" else (2 if kind == "flow" else 1)


def source_size(kind: str, data: str, crop: int, max_blur: float, frames: int) -> Optional[Tuple[int, int]]:
    """``(H, W)`` a training photo needs for :func:`build_datasets`' data (None for GOPRO's own pairs)."""
    if data == "gopro":
        return None
    if data == "flow":
        return (crop, crop)
    from ..data import SyntheticVideoDataset

    return SyntheticVideoDataset.source_size(crop, max_blur, _clip_length(kind, frames))


def build_datasets(kind: str, data: str, sources: Sequence[Any], length: int, crop: int, seed: int,
                   val_items: int, *, preset: str = "23", max_blur: float = 16.0, frames: int = 5,
                   root: Optional[str] = None, noise: float = 0.01) -> Tuple[Dataset, Dataset]:
    """Training and fixed validation sets for a net of ``kind`` from ``data`` (see the module docstring).

    Validation uses :data:`pnpdeblur.train.sen.HELD_OUT_SAMPLES` (never trained on), or the
    GOPRO ``test`` split for ``data="gopro"``.
    """
    from ..data import GoProDataset, PairAugment, SyntheticBlurDataset, SyntheticVideoDataset

    if data not in ("video", "flow", "gopro"):
        raise ValueError(f"data must be 'video', 'flow' or 'gopro', got {data!r}")
    if kind != "image" and data != "video":
        raise ValueError(f"a {kind!r} net trains on data='video' (clips with true flow), got data={data!r}")
    if data == "gopro":
        if root is None:
            raise ValueError("data='gopro' needs root (the GOPRO folder)")
        train = GoProDataset(root, split="train", transform=PairAugment(crop=crop, hflip=True, vflip=True))
        val = GoProDataset(root, split="test", transform=PairAugment(crop=crop, hflip=False))
        return train, torch.utils.data.Subset(val, range(min(val_items, len(val))))
    if data == "flow":
        common = dict(crop=crop, preset=preset, noise_sigma=(0.0, noise))
        return (SyntheticBlurDataset(list(sources), length=length, seed=seed, **common),
                SyntheticBlurDataset(held_out_samples(crop), length=val_items, seed=10_000, fixed=True,
                                     **{**common, "noise_sigma": noise / 2}))
    n = _clip_length(kind, frames)
    common = dict(crop=crop, max_blur=max_blur, n_blurred=n, noise_sigma=noise if kind != "flow" else None)
    train = SyntheticVideoDataset(list(sources), length=length, seed=seed, **common)
    val = SyntheticVideoDataset(held_out_samples(SyntheticVideoDataset.source_size(crop, max_blur, n)),
                                length=val_items, seed=10_000, fixed=True, **common)
    if kind == "image":
        return train, val
    return _VideoItems(train, kind), _VideoItems(val, kind)


def make_loss_fn(spec: NetSpec, pair: Optional[Any], adv_weight: float) -> Callable:
    """``loss_fn(model, batch)`` for the Trainer: content (+ adversarial) loss, with logged parts."""

    def loss_fn(model, batch):
        if spec.kind == "flow":
            from ..losses.epe import multiscale_epe

            preds = model(batch["frame1"], batch["frame2"])
            return multiscale_epe(preds, batch["flow"])
        outs = model(batch["blurred"])
        sharp = batch["sharp"]
        content = multiscale_mse(outs, sharp)
        if pair is None or adv_weight == 0:
            return content
        fake = outs[-1]
        if spec.adversarial == "gan":
            l_g = gan_generator_loss(pair.judge_frozen(fake))
            l_d = gan_discriminator_loss(pair.judge(sharp), pair.judge(fake.detach()))
        else:  # wgan-gp
            l_g = wgan_generator_loss(pair.judge_frozen(fake))
            l_d = (wgan_critic_loss(pair.judge(sharp), pair.judge(fake.detach()))
                   + _GP_WEIGHT * gradient_penalty(pair.discriminator, sharp, fake))
        total = content + adv_weight * l_g + l_d
        return total, {"content": float(content.detach()), "adv_g": float(l_g.detach()), "adv_d": float(l_d.detach())}

    return loss_fn


def make_val_fn(kind: str) -> Callable:
    """``val_fn(model, batch)``: PSNR/SSIM of the net's output (images) or its mean EPE (flow).

    The net is called as users call it (any size, pad and crop inside), not its training view.
    """
    from ..metrics import psnr, ssim

    @torch.no_grad()
    def val_fn(model, batch):
        net = _inner(model)
        if kind == "flow":
            from ..losses.epe import endpoint_error

            return {"epe": float(endpoint_error(net(batch["frame1"], batch["frame2"]), batch["flow"]))}
        out = net(batch["blurred"]).clamp(0, 1)
        return {"psnr": float(psnr(out, batch["sharp"])), "ssim": float(ssim(out, batch["sharp"]))}

    return val_fn


#: The data options' defaults; parse_args fills them in after noting which were typed.
DATA_DEFAULTS: Dict[str, Any] = {"preset": "23", "max_blur": 16.0, "frames": 5}


def parse_args(name: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    spec = SPECS[name]
    ap = argparse.ArgumentParser(prog=f"pnpdeblur train {name}",
                                 description=f"Train {spec.cls} ({spec.paper}).")
    ap.add_argument("--data", choices=("video", "flow", "gopro"), default="video")
    ap.add_argument("--corpus", default=None, help="folder of sharp photos (default: scikit-image photos only)")
    ap.add_argument("--preload", action="store_true", help="decode the corpus into memory once")
    ap.add_argument("--root", default=None, help="GOPRO folder for --data gopro")
    # None marks "not typed": check_args refuses a data option that the chosen --data or net never reads
    ap.add_argument("--preset", choices=("23", "46"), default=None, metavar="PRESET",
                    help=f"flow preset for --data flow (23 or 46; default {DATA_DEFAULTS['preset']})")
    ap.add_argument("--max-blur", type=float, default=None,
                    help=f"largest blur length (px) for --data video (default {DATA_DEFAULTS['max_blur']:g})")
    ap.add_argument("--frames", type=int, default=None,
                    help=f"frames per clip, DVD only (default {DATA_DEFAULTS['frames']})")
    ap.add_argument("--noise", type=float, default=0.01, help="noise std (range [0, this] for --data flow)")
    ap.add_argument("--small", action="store_true", help=f"the CPU configuration {dict(spec.small)}")
    ap.add_argument("--config", default="{}", help="JSON of constructor arguments (override --small)")
    ap.add_argument("--steps", type=int, default=spec.steps)
    ap.add_argument("--batch", type=int, default=spec.batch)
    ap.add_argument("--crop", type=int, default=spec.crop)
    ap.add_argument("--lr", type=float, default=spec.lr)
    ap.add_argument("--adv-weight", type=float, default=spec.adv_weight,
                    help="weight of the adversarial term (0: content loss only)" if spec.adversarial
                    else argparse.SUPPRESS)
    ap.add_argument("--init", default=None,
                    help=f"start from these {spec.cls} weights instead of a random initialisation (fine-tuning): a "
                         "safetensors path, or 'shipped' for the library's own (built by --small); the options must "
                         "build the same network")
    add_time_budget_argument(ap)
    add_engine_arguments(ap, run_dir=f"runs/{name}", out_name=f"{name}.safetensors", val_items=16,
                         val_every=1000, ckpt_every=1000, float32=False)
    args = parse_engine_args(ap, argv)
    args.typed_data_options = tuple(dest for dest in DATA_DEFAULTS if getattr(args, dest) is not None)
    for dest, default in DATA_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    return args


def check_args(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    """Refuse bad options of :func:`parse_args` by the names the user typed, before any work.

    ``ValueError`` naming the option (:func:`~pnpdeblur.train._cli.check_options`, and the
    recipe's own: ``--config``, ``--frames``, ``--data``, ``--root``, which only ``--data gopro``
    reads, and ``--preset``/``--max-blur``/``--frames`` typed where the chosen ``--data`` or net
    does not read them). Returns the net's constructor arguments of ``--config`` (with DVD's ``frames`` from
    ``--frames``).
    """
    kind = SPECS[name].kind
    check_options(args, files=("init",), photo_folders=("corpus",), crop=POSITIVE_INT, frames=POSITIVE_INT,
                  val_items=POSITIVE_INT, adv_weight=NONNEGATIVE, max_blur=NONNEGATIVE, noise=NONNEGATIVE)
    try:
        config = json.loads(args.config)
    except ValueError as e:
        raise ValueError(f"--config must be a JSON object of constructor arguments, got {args.config!r} "
                         f"({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"--config must be a JSON object of constructor arguments, got {args.config!r}")
    if kind == "video":  # the clips and the net take --frames frames
        if args.frames % 2 == 0:
            raise ValueError(f"--frames must be odd (the centre frame is restored), got {args.frames}")
        if config.setdefault("frames", args.frames) != args.frames:
            raise ValueError(f"--config frames={config['frames']!r} and --frames {args.frames} differ")
    if kind != "image" and args.data != "video":
        raise ValueError(f"--data {args.data}: {SPECS[name].cls} trains on --data video (clips with true flow)")
    for dest in getattr(args, "typed_data_options", ()):  # each would be ignored silently
        if dest == "frames" and kind != "video":
            raise ValueError(f"--frames is read only by `pnpdeblur train dvd` (its clips' length), got "
                             f"`pnpdeblur train {name}` (drop --frames)")
        needs = {"preset": "flow", "max_blur": "video"}.get(dest)
        if needs is not None and args.data != needs:
            raise ValueError(f"{_flag(dest)} is read only with --data {needs}, got --data {args.data} (drop "
                             f"{_flag(dest)} or pass --data {needs})")
    if args.root is not None and args.data != "gopro":  # only GoProDataset reads it: it would be ignored
        raise ValueError(f"--root is read only with --data gopro, got --data {args.data} (drop --root or pass "
                         "--data gopro)")
    if args.data == "gopro":
        from ..data import GoProDataset

        if args.root is None:
            raise ValueError("--data gopro needs --root (the GOPRO folder)")
        try:
            for split in ("train", "test"):
                GoProDataset(args.root, split=split)
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"--root {args.root}: {e}") from None
    return config


def check_crop(name: str, args: argparse.Namespace, net: nn.Module) -> None:
    """Refuse a ``--crop`` that net ``name``'s training view cannot take, before any photo is read.

    Training calls ``net.forward_multiscale``, which takes only sides that are multiples of
    ``net.stride`` (its total down-sampling: 2^(scales-1) for DeepDeblur, 4 for DeblurNet and
    DeblurGAN, 8 for DVD, 64 for FlowNetS); a net with batch norm needs two values per channel
    at that coarsest level (``--batch`` × (crop / stride)² >= 2); the paper's discriminator, when
    it trains (``--adv-weight`` > 0), needs :attr:`NetSpec.disc_min_crop`. Without this check
    each failed only at the first training step, after the photos were read.

    Raises
    ------
    ValueError
        Naming ``--crop`` (and ``--batch`` or ``--adv-weight`` where they take part) and what is needed.
    """
    spec, crop = SPECS[name], args.crop
    stride = int(net.stride)
    if crop % stride:
        raise ValueError(f"--crop must be a multiple of {spec.cls}.stride = {stride} (its down-sampling), "
                         f"got {crop}")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()) \
            and args.batch * (crop // stride) ** 2 < 2:
        raise ValueError(f"--crop {crop} with --batch {args.batch} leaves one value per channel at {spec.cls}'s "
                         "coarsest level (batch norm needs two): raise --crop or --batch")
    if spec.adversarial and getattr(args, "adv_weight", 0.0) > 0 and crop < spec.disc_min_crop:
        raise ValueError(f"--crop must be >= {spec.disc_min_crop} for {spec.discriminator} (--adv-weight "
                         f"{args.adv_weight} > 0), got {crop}")


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """``argv = [name, options…]``: train net ``name`` and export its weights; returns their path."""
    from . import TrainConfig, Trainer
    from .adversarial import AdversarialPair
    from .distributed import is_main_process

    argv = list(argv or [])
    if not argv or argv[0] not in SPECS:
        raise SystemExit(f"usage: pnpdeblur train {{{','.join(SPECS)}}} [options]; got {argv[:1]}")
    name, spec = argv[0], SPECS[argv[0]]
    args = parse_args(name, argv[1:])
    config = check_args(name, args)
    try:
        net = build_net(name, small=args.small, **config)
    except (TypeError, ValueError) as e:  # an unknown or bad constructor argument
        raise ValueError(f"--config {args.config}: {e}") from None
    check_crop(name, args, net)
    init = None
    if args.init is not None:
        init_path = shipped_weights_for(name) if args.init == "shipped" else Path(args.init)
        check_init_out(init_path, args.out)
        init = initialise_from(net, init_path, spec.cls)
    sources = training_sources(args.corpus, args.preload, min_size=source_size(spec.kind, args.data, args.crop,
                                                                               args.max_blur, args.frames))
    adv_weight = getattr(args, "adv_weight", 0.0)
    pair = None
    model: nn.Module = _Multiscale(net)
    if spec.adversarial and adv_weight > 0:
        disc_kwargs = {"in_channels": net.config.get("in_channels", 3), **(spec.disc_small if args.small else {})}
        pair = AdversarialPair(model, _net_class(spec, spec.discriminator)(**disc_kwargs))
        model = pair
    loss_fn = make_loss_fn(spec, pair, adv_weight)
    data_kw = dict(preset=args.preset, max_blur=args.max_blur, frames=args.frames, root=args.root, noise=args.noise)

    def probe_batch():
        probe, _ = build_datasets(spec.kind, args.data, sources, args.batch, args.crop, args.seed + 1, 1, **data_kw)
        return default_collate([probe[i] for i in range(args.batch)])

    steps, rate = budgeted_steps(args, model, loss_fn, probe_batch)
    train, val = build_datasets(spec.kind, args.data, sources, steps * args.batch, args.crop, args.seed,
                                args.val_items, **data_kw)
    cfg = TrainConfig(
        steps=steps, batch_size=args.batch, lr=args.lr, betas=spec.betas,
        lr_milestones=tuple(sorted({max(1, min(steps, round(f * steps))) for f in spec.milestones})),
        lr_gamma=spec.gamma,
        decay_start=None if spec.decay_from is None else int(steps * spec.decay_from),
        lr_end=None if spec.lr_end is None else spec.lr_end * args.lr / spec.lr, time_limit_s=args.time_budget,
        **engine_options(args),
    )
    t0 = time.time()
    trainer = Trainer(model, cfg, train, loss_fn, val_data=val, val_fn=make_val_fn(spec.kind))
    trainer.fit()
    out = Path(args.out)
    if not is_main_process():
        return out
    provenance = {
        "script": f"pnpdeblur train {name} (pnpdeblur.train.deblurnets)",
        "argv": list(argv),
        "data": args.data, "corpus": args.corpus, "held_out": HELD_OUT_SAMPLES,
        "skimage_photos": [s for s in sources if isinstance(s, str) and s in TRAIN_SAMPLES],  # those the crop fits
        "preset": args.preset if args.data == "flow" else None,
        "max_blur": args.max_blur if args.data == "video" else None,
        "adversarial": spec.adversarial if pair is not None else None, "adv_weight": adv_weight, "init": init,
        "time_budget_s": args.time_budget, "probe_steps_per_s": rate, "stopped_by_time": trainer.stopped_by_time,
        "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
        "device": str(trainer.device),
    }
    trainer.export(out, spec.cls, net.config, {"data": provenance, "paper": spec.paper}, module=net)
    print(json.dumps({"weights": str(out), "validation": trainer.last_validation}, default=str))
    return out


def _inner(model: nn.Module) -> nn.Module:
    """The net inside the training wrappers (pair → multiscale view → net)."""
    from .adversarial import AdversarialPair

    if isinstance(model, AdversarialPair):
        model = model.generator
    return model.net if isinstance(model, _Multiscale) else model
