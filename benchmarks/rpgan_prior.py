"""RP-GAN against classical and learned priors in the same HQS, with the same SEN flows.

Held-out photos (BSDS500 *val* by default: never used for training), centre-cropped to
``--size``², blurred by a random Gong flow of preset ±23 through ``MotionBlur``, Gaussian
noise σ = 0.01. SEN (shipped) estimates each flow once; every prior then deblurs with that
flow:

* ``tv`` / ``dncnn``: HQS as ``pd.deblur`` ran it before its 4 × 5 budget (8 iterations, DPIR schedule at
  ``max(σ, 0.05)``, 10 CG iterations);
* ``rpgan``: the generator of ``--weights`` in HQS with its own schedule
  (:func:`pnpdeblur.priors.rpgan.rpgan_schedule`, 3 levels), PSNR after every level;
* ``rpgan-untrained``: the same architecture untrained (the residual small generator starts at
  the identity, i.e. HQS with no prior at all);
* ``--compare NAME=PATH …``: further generators run as ``rpgan`` is (e.g. the ablations
  trained without D_p or without the replay buffer), PSNR after every level.

``--figure PATH`` draws the first photo: blurred, then RP-GAN levels 1, 2, 3 (Wu et al.'s
figure 4), then the sharp image; one more row per ``--compare`` generator.

Usage::

    python benchmarks/rpgan_prior.py --weights runs/rpgan/rpgan_small.safetensors --n 4 --size 128
    python benchmarks/rpgan_prior.py --weights pnpdeblur/weights/rpgan_small.safetensors \
        --compare no-D_p=runs/abl/nodp/rpgan_nodp.safetensors --figure docs/images/rpgan_levels.png
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, read_image
from pnpdeblur.metrics import psnr
from pnpdeblur.nets.rpgan import RPGANGenerator
from pnpdeblur.pipeline import default_prior
from pnpdeblur.priors.rpgan import RPGANPrior
from pnpdeblur.solvers import hqs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, help="RPGANGenerator checkpoint")
    ap.add_argument("--photos", default=".data/bsds500/val")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--preset", default="23")
    ap.add_argument("--cg-iters", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--flow-ensemble", action="store_true",
                    help="estimate the flows with SEN's 8-symmetry ensemble (pd.deblur's default); by default one "
                         "SEN pass, as the RESULTS.md tables were measured")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--compare", nargs="*", default=[], metavar="NAME=PATH",
                    help="further RPGANGenerator checkpoints, run as --weights is")
    ap.add_argument("--figure", default=None, help="write the levels picture of the first photo here (PNG)")
    args = ap.parse_args(argv)
    extra = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            ap.error(f"--compare takes NAME=PATH, got {item!r}")
        extra[name] = RPGANGenerator.from_checkpoint(path)

    paths = list_images(args.photos)[: args.n]
    trained = RPGANGenerator.from_checkpoint(args.weights)
    torch.manual_seed(0)
    untrained = RPGANGenerator(**trained.config).eval()
    rows = []
    gallery = None  # the first photo's levels, for --figure
    for k, path in enumerate(paths):
        img = read_image(path, 3)
        h, w = img.shape[:2]
        s = args.size
        sharp = np.ascontiguousarray(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s])
        rng = np.random.default_rng(args.seed + k)
        flow = random_motion_flow((s, s), args.preset, rng)
        blurred = np.clip(pd.MotionBlur(flow)(sharp) + args.noise * rng.standard_normal(sharp.shape), 0, 1)
        blurred = blurred.astype(np.float32)
        est = pd.estimate_flow(blurred, ensemble=args.flow_ensemble)
        K = pd.MotionBlur(est)
        row = {"photo": path.name, "blurred": float(psnr(blurred, sharp))}
        for name, prior in (("tv", pd.priors.TV()), ("dncnn", default_prior())):
            t0 = time.perf_counter()
            res = hqs(blurred, K, prior, noise_level=max(args.noise, 0.05), n_iter=8, cg_iters=args.cg_iters,
                      progress=False)
            row[name] = float(psnr(np.clip(res.x, 0, 1), sharp))
            row[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        level_images = {}
        for name, g in (("rpgan", trained), ("rpgan-untrained", untrained), *extra.items()):
            prior = RPGANPrior(g)
            t0 = time.perf_counter()
            snaps = []
            res = hqs(blurred, K, prior, betas=prior.schedule(args.noise), cg_iters=args.cg_iters, progress=False,
                      reference=sharp, callback=lambda entry, z: snaps.append(z[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)))
            level_images[name] = snaps
            levels = [round(float(e["psnr"]), 2) for e in res.history]
            row[name] = float(psnr(np.clip(res.x, 0, 1), sharp))
            row[f"{name}_levels"] = levels
            row[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        if gallery is None:
            gallery = (blurred, sharp, level_images)
        print(json.dumps(row), flush=True)
    keys = ["blurred", "tv", "dncnn", "rpgan", "rpgan-untrained", *extra]
    mean = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in keys}
    for name in ("rpgan", *extra):
        mean[f"{name}_levels"] = [round(float(v), 2) for v in np.mean([r[f"{name}_levels"] for r in rows], axis=0)]
    if args.figure:
        figure(gallery, ["rpgan", *extra], args.figure)
    print("mean PSNR (dB):", json.dumps(mean))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "mean": mean, "settings": vars(args)}, f, indent=1)
    return rows, mean


def figure(gallery, names, path: str) -> None:
    """One row per generator: blurred, its HQS levels 1…L, sharp (PSNR in the titles)."""
    from pnpdeblur.viz import comparison_figure

    blurred, sharp, level_images = gallery
    images, titles = [], []
    for name in names:
        label = "RP-GAN" if name == "rpgan" else name
        images.append(blurred)
        titles.append("blurred")
        for i, z in enumerate(level_images[name]):
            images.append(np.clip(z, 0, 1))
            titles.append(f"{label}, level {i + 1}")
        images.append(sharp)
        titles.append("sharp")
    comparison_figure(images, titles, reference=sharp, path=path, ncols=len(images) // len(names))


if __name__ == "__main__":
    main()
