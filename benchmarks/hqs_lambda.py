"""HQS's DPIR schedule (λ, first strength σ_1), per prior, on BSDS500 *val* crops (issue 15).

DPIR (Zhang et al.) ties the x-step's weight to the denoiser's strength, ``β_k = λσ²/σ_k²``,
σ_k falling geometrically from σ_1 = 49/255 to the noise level σ, with λ = 0.23: values tuned for
its own network. A different denoiser may prefer others. This script runs HQS with the *true*
flow on centre crops (256²) of the first ``--crops`` images of BSDS500's *val* split — never
trained on, and not the held-out photos that ``benchmarks/nonblind.py`` reports on — for every
(λ, iterations) pair of ``--grid`` and every σ_1 of ``--sigma-start``, and prints the mean PSNR
per setting. ``pd.priors.drunet.SHIPPED_HQS_LAMBDA`` and ``SHIPPED_HQS_SIGMA_START`` come from
these runs. Note that CBSD68 is part of BSDS500 *val*: the first six val images by name are also
CBSD68's first six, so ``nonblind.py --folder CBSD68`` should leave them out (``--skip 6``) when it
reports on images that no tuning saw.

Usage::

    python benchmarks/hqs_lambda.py --prior drunet-medium --grid 0.15x8,0.18x8,0.23x8,0.3x8
    python benchmarks/hqs_lambda.py --prior drunet-medium --grid 0.18x8 --sigma-start 49,64,100,128
    python benchmarks/hqs_lambda.py --prior bm3d --crops 3 --grid 0.18x8,0.23x8

Rows go to ``benchmarks/hqs_lambda.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from pnpdeblur.data import list_images, random_motion_flow, read_image
from pnpdeblur.metrics import psnr
from pnpdeblur.operators import MotionBlur
from pnpdeblur.solvers import hqs

from denoise import BSDS_VAL, centre_crop  # the same val images and crops as the denoising benchmark



def make_prior(name: str):
    """``drunet`` / ``drunet-medium`` / ``dncnn`` / ``bm3d`` → a prior."""
    from pnpdeblur.priors import DnCNNPrior
    from pnpdeblur.priors.drunet import DRUNetPrior

    if name == "drunet":
        return DRUNetPrior()
    if name == "drunet-medium":
        return DRUNetPrior(variant="medium")
    if name == "dncnn":
        return DnCNNPrior()
    if name == "bm3d":
        from pnpdeblur.priors.bm3d import BM3D

        return BM3D()
    raise SystemExit(f"--prior: unknown {name!r} (drunet, drunet-medium, dncnn, bm3d)")


def parse_grid(text: str):
    """``"0.18x8,0.23x16"`` → ``[(0.18, 8), (0.23, 16)]``."""
    try:
        grid = [(float(a), int(b)) for a, b in (p.split("x") for p in text.split(",") if p.strip())]
    except ValueError:
        raise SystemExit(f"--grid: expected λxN pairs such as 0.18x8, got {text!r}") from None
    if not grid or any(lam <= 0 or n < 1 for lam, n in grid):
        raise SystemExit(f"--grid: λ must be > 0 and N ≥ 1, got {text!r}")
    return grid


def main(argv=None):
    ap = argparse.ArgumentParser(description="HQS's λ per prior on BSDS500 val crops, true flow")
    ap.add_argument("--prior", default="drunet-medium")
    ap.add_argument("--grid", default="0.15x8,0.18x8,0.23x8,0.3x8", help="λxN pairs: λ and HQS iterations")
    ap.add_argument("--sigma-start", default="49", help="σ_1 values, grey levels of 255, comma-separated")
    ap.add_argument("--settings", default="23:0.01,46:0.03", help="flow preset:noise σ pairs")
    ap.add_argument("--crops", type=int, default=6, help="the first N val images (sorted by name)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("hqs_lambda.json"))
    args = ap.parse_args(argv)
    grid = parse_grid(args.grid)
    try:
        starts = [float(v) for v in args.sigma_start.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--sigma-start: expected numbers such as 49,100, got {args.sigma_start!r}") from None
    if not starts or any(v <= 0 for v in starts):
        raise SystemExit(f"--sigma-start: values must be > 0, got {args.sigma_start!r}")
    settings = [(p.split(":")[0], float(p.split(":")[1])) for p in args.settings.split(",") if p.strip()]
    if not BSDS_VAL.is_dir():
        raise SystemExit(f"no {BSDS_VAL}: fetch BSDS500 first (docs/model_cards/drunet_small.md says how)")
    torch.set_num_threads(args.threads)
    prior = make_prior(args.prior)
    paths = list_images(BSDS_VAL)[:args.crops]
    rows = []
    for preset, noise in settings:
        for i, path in enumerate(paths):
            x = centre_crop(read_image(path, 3), args.size).astype(np.float32)
            flow = random_motion_flow((args.size, args.size), preset, seed=500 + i)
            K = MotionBlur(flow[None])
            rng = np.random.default_rng(50 + i)
            y = (np.asarray(K(x)) + noise * rng.standard_normal(x.shape)).astype(np.float32)
            for (lam, n_iter), start in itertools.product(grid, starts):
                t = time.perf_counter()
                out = hqs(y, K, prior=prior, noise_level=noise, lam=lam, n_iter=n_iter, sigma_start=start / 255.0,
                          progress=False).x
                dt = time.perf_counter() - t
                p = float(psnr(np.clip(out, 0, 1), x, channel_axis=-1))
                rows.append(dict(preset=preset, noise=noise, image=path.stem, lam=lam, n_iter=n_iter,
                                 sigma_start=start, psnr=p, time=dt))
                print(f"  |m|≤{preset} σ={noise} {path.stem} λ={lam} N={n_iter} σ_1={start:g}/255: {p:.3f} dB "
                      f"({dt:.1f} s)", flush=True)
    means = defaultdict(list)
    for r in rows:
        means[(r["preset"], r["noise"], r["lam"], r["n_iter"], r["sigma_start"])].append(r["psnr"])
    print(f"\n{args.prior}, {len(paths)} BSDS500 val crops of {args.size}²: mean PSNR (dB)")
    print("| max |m| | σ | λ | iterations | σ_1 (/255) | PSNR |\n|---|---|---|---|---|---|")
    for (preset, noise, lam, n_iter, start), v in sorted(means.items()):
        print(f"| {preset} | {noise} | {lam} | {n_iter} | {start:g} | {np.mean(v):.3f} |")
    args.out.write_text(json.dumps(dict(prior=args.prior, crops=len(paths), rows=rows), indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
