"""Non-blind deblurring of photos with a known blur: ``pd.deblur(flow=)`` and
``pd.deblur_shake(kernel=)`` with their defaults for a given blur (no noise floor, ``hqs``'s own
solve) against the blind pipelines' settings, on the same photos, blurs and noise.

1. ``--part flow``: ``--images`` photos of ``--folder`` (their central 256² crops), each blurred by
   a Gong flow (:func:`pnpdeblur.data.random_motion_flow`, |m| ≤ 23 with σ = 0.01 and |m| ≤ 46
   with σ = 0.03, seeded by the photo's position) and deblurred with the true flow by
   ``pd.deblur(flow=)`` with its defaults (``given``), with the blind noise floor 0.02
   (``floor.02``), with the blind solve's 4 HQS × 5 CG iterations (``solve4x5``), and by ``hqs``
   itself on the photo's own grid (``hqs_replicate``: the boundary rule the blur was made with).
2. ``--part kernel``: the same photos blurred as a whole by a random shake kernel
   (:func:`pnpdeblur.data.random_shake_kernel`, 19 px with σ = 0.01, 31 px with σ = 0.03),
   deblurred by ``pd.deblur_shake(kernel=)`` with the true kernel and with the kernel
   :func:`pnpdeblur.estimate_kernel` finds on the photo (a reused estimate), each with the
   defaults (``true``, ``estimated``) and with the blind floor 0.02 (``true_floor.02``,
   ``estimated_floor.02``; with the DnCNN prior, which has no schedule of its own, exactly the
   settings before given kernels were taken as exact). Scored up to a shift (``kohler_align``
   ±10 px), as ``camera_shake.py``.

Every run uses ``--prior`` (``dncnn``: the shipped DnCNN, the blind pipelines' default;
``drunet``: the shipped small DRUNet; ``default``: what the functions choose for a given blur
when no prior is passed), noise level given (the true σ). The defaults were chosen on BSDS500
*val* (``--folder .data/bsds500/val``) and confirmed on *test*; ``--no-estimate`` leaves out the
estimated kernel (the slow part).

Usage::

    python benchmarks/known_blur.py --part flow --folder .data/bsds500/test --images 6
    python benchmarks/known_blur.py --part kernel --folder .data/bsds500/test --images 6
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, random_shake_kernel, read_image
from pnpdeblur.estimation import estimate_kernel
from pnpdeblur.metrics import kohler_align, psnr
from pnpdeblur.operators import Convolution, MotionBlur
from pnpdeblur.pipeline import default_prior
from pnpdeblur.priors import DRUNetPrior
from pnpdeblur.solvers import hqs

try:
    from _results import write_rows
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows

FLOW_SETTINGS = (("23", 0.01), ("46", 0.03))
KERNEL_SETTINGS = ((19, 0.01), (31, 0.03))


def crop(img: np.ndarray, size: int = 256) -> np.ndarray:
    h, w = img.shape[:2]
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def noisy(blurred, sigma: float, rng: np.random.Generator) -> np.ndarray:
    y = np.asarray(blurred, np.float32)
    return np.clip(y + sigma * rng.standard_normal(y.shape).astype(np.float32), 0, 1)


def plain_psnr(x, sharp) -> float:
    return float(psnr(np.clip(np.asarray(x, np.float64), 0, 1), sharp, channel_axis=-1))


def aligned_psnr(x, sharp) -> float:
    return float(kohler_align(np.clip(np.asarray(x, np.float64), 0, 1), sharp, max_shift=10)[0])


def flow_rows(sharp: np.ndarray, k: int, prior) -> list:
    rows = []
    for preset, sigma in FLOW_SETTINGS:
        rng = np.random.default_rng(500 + k)
        flow = random_motion_flow(sharp.shape[:2], preset, rng)
        y = noisy(MotionBlur(flow)(sharp), sigma, rng)
        row = dict(setting=f"|m| <= {preset}, sigma {sigma}", blurred=plain_psnr(y, sharp))
        for name, kw in {"given": {}, "floor.02": dict(noise_floor=0.02),
                         "solve4x5": dict(n_iter=4, cg_iters=5)}.items():
            row[name] = plain_psnr(pd.deblur(y, flow=flow, noise_level=sigma, prior=prior, **kw).x, sharp)
        solver_prior = prior if prior is not None else pd.pipeline.given_blur_prior()
        row["hqs_replicate"] = plain_psnr(hqs(y, MotionBlur(flow), solver_prior, noise_level=sigma,
                                              progress=False).x, sharp)
        rows.append(row)
    return rows


PRIORS = {"dncnn": default_prior, "drunet": DRUNetPrior, "default": lambda: None}


def kernel_rows(sharp: np.ndarray, k: int, prior, estimate: bool = True) -> list:
    rows = []
    for size, sigma in KERNEL_SETTINGS:
        rng = np.random.default_rng(700 + k)
        kernel = random_shake_kernel(size, seed=rng)
        y = noisy(Convolution(kernel)(sharp), sigma, rng)
        row = dict(setting=f"{size} px kernel, sigma {sigma}", blurred=aligned_psnr(y, sharp))
        kernels = [("true", kernel)] + ([("estimated", estimate_kernel(y, 31))] if estimate else [])
        for name, kern in kernels:
            for suffix, kw in (("", {}), ("_floor.02", dict(noise_floor=0.02))):
                res = pd.deblur_shake(y, kernel=kern, noise_level=sigma, prior=prior, **kw)
                row[name + suffix] = aligned_psnr(res.x, sharp)
        rows.append(row)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("flow", "kernel"), required=True)
    ap.add_argument("--folder", default=".data/bsds500/test")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prior", choices=sorted(PRIORS), default="default")
    ap.add_argument("--no-estimate", action="store_true", help="kernel part: the true kernel only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = PRIORS[args.prior]()
    if args.part == "flow":
        make = flow_rows
    else:
        def make(sharp, k, prior):
            return kernel_rows(sharp, k, prior, estimate=not args.no_estimate)
    rows = []
    for k, path in enumerate(list_images(args.folder)[: args.images]):
        for row in make(crop(read_image(path, 3)), k, prior):
            rows.append(dict(image=path.name, **row))
            print({a: (round(b, 2) if isinstance(b, float) else b) for a, b in rows[-1].items()}, flush=True)
    columns = [c for c in rows[0] if c not in ("image", "setting")]
    print("| setting | " + " | ".join(columns) + " |")
    for setting in dict.fromkeys(r["setting"] for r in rows):
        sel = [r for r in rows if r["setting"] == setting]
        print(f"| {setting} | " + " | ".join(f"{np.mean([r[c] for r in sel]):.2f}" for c in columns) + " |")
    write_rows(f"known_blur_{args.part}_{args.prior}", "cpu", rows, folder=args.folder, images=args.images,
               prior=args.prior)


if __name__ == "__main__":
    main()
