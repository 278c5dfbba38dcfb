"""End-to-end nets against plug-and-play on blur larger than training (issue 12).

Wu et al. argue that the plug-and-play pipeline (flow estimation + HQS with a prior)
degrades less than end-to-end deblurring nets when the motion exceeds what was seen in
training. Here the end-to-end nets are trained on Gong-style flows up to ±23 px
(``pnpdeblur train <net> --data flow --preset 23``) and every method is scored on
held-out photos blurred with flows at ±23 and at ±46 px (+ noise σ = 0.01), the same
synthesis as ``benchmarks/blind.py``:

* ``blurred``: the input;
* each end-to-end net given by ``--net NAME=PATH`` (a pnpdeblur checkpoint) or shipped;
* ``pnp``: ``pd.deblur`` (SEN flow → HQS/CG with the DnCNN prior, one global iteration);
* ``pnp_NAME``: the same with the SEN checkpoint given by ``--sen NAME=PATH`` — for the
  controlled experiment, a SEN trained on ±23 only (``pnpdeblur train sen --presets 23``);
  with ``--sen-scale S`` also ``pnp_NAME_xS``: that SEN run on the photo scaled by ``S``
  (``pd.deblur(flow_scale=S)``; the deconvolution stays at full size) — what a user who knows
  the blur is larger than the network's range can do, and an end-to-end net cannot;
* ``true_flow``: non-blind HQS with the true flow (the upper bound of the pipeline).

PSNR/SSIM per method and preset, time per image, and a picture grid (``--figure``).

Usage::

    python benchmarks/generalisation.py --net deepdeblur=runs/deepdeblur.safetensors
    python benchmarks/generalisation.py --quick                   # 2 photos, shipped nets only
    python benchmarks/generalisation.py --sen sen23=runs/sen23/sen.safetensors
    python benchmarks/generalisation.py --corpus .data/bsds500/test --n-corpus 6 --figure docs/images/generalisation.png
"""
from __future__ import annotations

import argparse
import time
from typing import Dict, List

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.checkpoints import read_header
from pnpdeblur.data import random_motion_flow
from pnpdeblur.metrics import flow_mse
from pnpdeblur.nets import SEN
from pnpdeblur.pipeline import default_prior
from pnpdeblur.solvers import hqs

try:
    from _results import write_rows
    from blind import photos, score
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows
    from benchmarks.blind import photos, score

#: Nets tried with their shipped weights when no ``--net`` is given.
SHIPPED = ("DeepDeblur", "DeblurGANGenerator")


def load_nets(specs: List[str]) -> Dict[str, torch.nn.Module]:
    """``NAME=PATH`` items → nets (any pnpdeblur checkpoint of a net in ``pd.nets``); else the shipped ones."""
    nets = {}
    for item in specs:
        name, _, path = item.partition("=")
        if not path:
            raise ValueError(f"--net expects NAME=PATH, got {item!r}")
        arch = read_header(path)["architecture"]
        nets[name] = getattr(pd.nets, arch).from_checkpoint(path)
    if not specs:
        for arch in SHIPPED:
            cls = getattr(pd.nets, arch, None)
            try:
                nets[arch] = cls.pretrained()
            except (AttributeError, FileNotFoundError) as e:
                print(f"skipping {arch}: {e}")
    return nets


def load_sens(specs: List[str]) -> Dict[str, SEN]:
    """``NAME=PATH`` items → SEN checkpoints, run by ``pd.deblur`` under the label ``pnp_NAME``."""
    sens = {}
    for item in specs:
        name, _, path = item.partition("=")
        if not name or not path:
            raise ValueError(f"--sen expects NAME=PATH, got {item!r}")
        sens[f"pnp_{name}"] = SEN.from_checkpoint(path).eval()
    return sens


@torch.no_grad()
def run_net(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net(x[None])[0].clamp(0, 1)


def evaluate(args) -> tuple:
    nets = load_nets(args.net)
    sens = load_sens(args.sen)
    # label -> (SEN, flow_scale); None: the shipped SEN
    flow_models = {"pnp": (None, 1.0), **{lbl: (sen, 1.0) for lbl, sen in sens.items()}}
    for scale in args.sen_scale:
        flow_models.update({f"{lbl}_x{scale:g}": (sen, scale) for lbl, sen in sens.items()})
    prior = default_prior()
    rows, gallery = [], {}
    for preset in (["23"] if args.quick else ["23", "46"]):
        for k, (name, sharp) in enumerate(photos(args)):
            rng = np.random.default_rng(1000 + k)  # the same flows and noise as benchmarks/blind.py
            flow = random_motion_flow(sharp.shape[:2], preset, rng)
            blurred = np.asarray(pd.MotionBlur(flow)(sharp), np.float32)
            blurred = np.clip(blurred + 0.01 * rng.standard_normal(blurred.shape).astype(np.float32), 0, 1)
            x = torch.from_numpy(blurred.transpose(2, 0, 1).copy())
            outs = {"blurred": (x, 0.0)}
            for label, net in nets.items():
                t0 = time.perf_counter()
                outs[label] = (run_net(net, x), time.perf_counter() - t0)
            row = dict(image=name, preset=preset, mean_flow_length=float(np.hypot(*flow).mean()))
            for label, (sen, scale) in flow_models.items():
                t0 = time.perf_counter()
                res = pd.deblur(x, iterations=1, prior=prior, flow_model=sen, flow_scale=scale)
                outs[label] = (res.x, time.perf_counter() - t0)
                # the safeguard may return the photo untouched: say so beside the score
                row[f"processed_{label}"] = bool(res.history[0]["safeguard"]["processed"][0])
                row[f"flow_mse_{label}"] = float(flow_mse(res.flow[0], flow))
            t0 = time.perf_counter()
            true = hqs(x[None], pd.MotionBlur(torch.from_numpy(flow)[None]), prior, noise_level=0.01,
                       progress=False).x[0]
            outs["true_flow"] = (true, time.perf_counter() - t0)
            for label, (img, secs) in outs.items():
                row[f"psnr_{label}"], row[f"ssim_{label}"] = score(img, sharp)
                row[f"t_{label}"] = secs
            rows.append(row)
            if k == 0:
                gallery[preset] = (sharp, {lbl: img for lbl, (img, _) in outs.items()})
            print({kk: (round(v, 3) if isinstance(v, float) else v) for kk, v in row.items()}, flush=True)
    return rows, gallery


def figure(gallery: dict, path: str) -> None:
    """One row per preset (the same first photo): every method's output, then the sharp image."""
    from pnpdeblur.viz import comparison_figure

    images, titles = [], []
    for preset, (sharp, outs) in gallery.items():
        for label, img in outs.items():
            images.append(img)
            titles.append(f"±{preset} {label}")
        images.append(sharp)
        titles.append("sharp")
    sharp = next(iter(gallery.values()))[0]
    comparison_figure(images, titles, reference=sharp, path=path, ncols=len(images) // len(gallery))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", action="append", default=[], help="NAME=PATH of an end-to-end net checkpoint")
    ap.add_argument("--sen", action="append", default=[],
                    help="NAME=PATH of a SEN checkpoint: pd.deblur with it is scored as pnp_NAME")
    ap.add_argument("--sen-scale", type=float, action="append", default=[],
                    help="also score each --sen SEN with pd.deblur(flow_scale=this) (repeatable)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--corpus", default=None, help="held-out folder of sharp photos (e.g. BSDS500 test)")
    ap.add_argument("--n-corpus", type=int, default=6)
    ap.add_argument("--figure", default=None, help="write the picture grid here")
    args = ap.parse_args(argv)
    rows, gallery = evaluate(args)
    summary = {}
    for preset in sorted({r["preset"] for r in rows}):
        sel = [r for r in rows if r["preset"] == preset]
        keys = [k for k in sel[0] if k.startswith(("psnr_", "ssim_", "t_"))]
        summary[preset] = {k: float(np.mean([r[k] for r in sel])) for k in keys}
        print(f"\n±{preset}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[preset].items()))
    if args.figure:
        figure(gallery, args.figure)
    return write_rows("generalisation", "cpu", rows, summary=summary, nets=args.net or "shipped", sens=args.sen, corpus=args.corpus)


if __name__ == "__main__":
    main()
