"""``pnpdeblur finetune``: Reblur2Deblur test-time fine-tuning of a deblurring network on a video's
frames, then the frames deblurred by it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._device import _resolve_device
from ._files import _overwrite_conflicts, plan_outputs, sorted_frames
from ._image_io import _imsave, _read, _to_storage
from ._nets import load_deblur_net
from ._status import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _err

__all__ = ["_load_flow", "_run_finetune"]


def _load_flow(spec: str) -> Any:
    if spec == "tvl1":
        return "tvl1"
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--flow {spec!r} is neither 'tvl1' nor a checkpoint file")
    from ..nets.flownets import FlowNetS

    return FlowNetS.from_checkpoint(path)


def _run_finetune(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import torch

    prog = "pnpdeblur finetune"
    try:
        files = sorted_frames(args.frames_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    outdir: Path = args.output
    if outdir.exists() and not outdir.is_dir():
        print(f"{prog}: error: output {outdir} exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    plans = plan_outputs(files, outdir)
    conflicts = _overwrite_conflicts(plans, files)
    if conflicts:
        for o, i in conflicts:
            print(f"{prog}: error: output {o} would overwrite the input {i}", file=sys.stderr)
        return EXIT_USAGE
    if args.train_flow and args.flow == "tvl1":
        print(f"{prog}: error: --train-flow needs --flow PATH (a FlowNetS checkpoint); TV-L1 has nothing to train",
              file=sys.stderr)
        return EXIT_USAGE
    need = 3 if args.frames == 3 else 2
    if len(files) < need:
        print(f"{prog}: error: --frames {args.frames} needs at least {need} frames in {args.frames_dir}, "
              f"found {len(files)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        device = _resolve_device(args.device, False)
        frames = [_read(f) for f in files]
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    shapes = {img.shape[:2] for img, _ in frames}
    if len(shapes) > 1:
        print(f"{prog}: error: the frames must all have the same size, found {sorted(shapes)}", file=sys.stderr)
        return EXIT_USAGE
    grey = [img.shape[2] == 1 for img, _ in frames]
    clip = torch.stack([torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.repeat(img, 3 // img.shape[2], 2), -1, 0)))
                        for img, _ in frames])
    try:
        net = load_deblur_net(args.net)
        flow = _load_flow(args.flow)
        supervised = None
        if args.reblur_only:
            supervised = False
        elif args.pairs is not None:
            from ..data import PairAugment, PairedFolderDataset

            supervised = PairedFolderDataset(*args.pairs, transform=PairAugment(crop=min(args.crop, *clip.shape[2:])),
                                             seed=args.seed)
    except Exception as e:  # missing weights, foreign checkpoint, bad pairs folder
        _err(f"{prog}: error: cannot load the network or the data: {e}")
        return EXIT_FAILED
    from ..train.reblur import deblur_frames, finetune_reblur

    if device is not None:
        net = net.to(device)
    opts = dict(frames=args.frames, kernel=args.kernel, tau=args.tau, margin=args.margin, steps=args.steps, lr=args.lr,
                alpha=args.alpha, supervised=supervised, flow=flow, flow_every=args.flow_every,
                train_flow=args.train_flow, crop=args.crop,
                batch_size=args.batch, seed=args.seed, progress=not args.no_progress)
    usable = list(range(1, len(files) - 1)) if args.frames == 3 else list(range(len(files)))
    try:
        if args.single:
            # One fine-tuned copy per frame; the end frames of the 3-frame model (no two
            # neighbours) take their nearest usable frame's network.
            out = torch.empty_like(clip)
            for t in usable:
                tuned = finetune_reblur(net, clip, group=False, target=t, **opts)
                todo = [t] + ([0] if t == usable[0] and t > 0 else []) + \
                    ([len(files) - 1] if t == usable[-1] and t < len(files) - 1 else [])
                for u in todo:
                    out[u] = deblur_frames(tuned, clip[u:u + 1])[0].cpu()
            tuned = None
        else:
            tuned = finetune_reblur(net, clip, group=True, **opts)
            out = deblur_frames(tuned, clip).cpu()
    except Exception as e:
        _err(f"{prog}: error: fine-tuning failed: {type(e).__name__}: {e}")
        return EXIT_FAILED
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        for pl, x, g, (_, sixteen) in zip(plans, out, grey, frames):
            img = x.clamp(0, 1).permute(1, 2, 0).numpy()
            if g:
                img = img.mean(2, keepdims=True)
            _imsave(pl.image, _to_storage(img, sixteen))
        if args.save_net is not None:
            if tuned is None:
                _err(f"{prog}: note: --save-net is ignored with --single (one network per frame)")
            else:
                from ..checkpoints import save_checkpoint

                meta = {"finetune": {k: (v if isinstance(v, (int, float, str, bool, list)) else str(v))
                                     for k, v in tuned.reblur_settings.items()},
                        "frames": [f.name for f in files]}
                save_checkpoint(args.save_net, tuned, type(tuned).__name__, getattr(tuned, "config", {}), meta)
                flow_net = getattr(tuned, "reblur_flow_net", None)
                if flow_net is not None:  # --train-flow: the jointly tuned FlowNetS goes beside it
                    flow_path = args.save_net.with_name(f"{args.save_net.stem}_flownets{args.save_net.suffix}")
                    flow_net.save(flow_path, meta)
                    _err(f"{prog}: saved the fine-tuned flow network to {flow_path}")
    except (OSError, ValueError, TypeError) as e:
        _err(f"{prog}: error: cannot write the results: {e}")
        return EXIT_FAILED
    return EXIT_OK
