"""Unknown boundaries: deblurring photos that are crops of a larger blurred scene.

A real photo's border pixels hold light that the blur brought in from outside the frame. The
operators replicate the border instead, which is exact only for images blurred with that very
rule (the "inverse crime" of the other benchmarks). This benchmark compares the replicate
boundary with the unknown boundary (a larger sharp grid, padding left out of the data term:
``pd.solvers.pad_boundary``, ``pd.deblur(boundary="unknown")``) on

1. ``--part levin``: Levin et al.'s 32 camera-shake images (4 photos × 8 recorded kernels,
   255×255 grey, with sharp references; the copy in SelfDeblur's repository,
   ``--levin DIR``). Non-blind HQS (shipped DnCNN, noise level 0.01) with the recorded kernel
   through ``pd.Convolution``, and blind ``pd.deblur``. Levin's protocol scores up to a shift:
   ``kohler_align`` (best integer shift within ±10 px and intensity scale, interior). The kernel
   files of that copy are not all stored in one orientation: each kernel is used as stored or
   rotated by 180°, whichever reproduces the blurred image from the sharp one better (the
   orientation is a property of the file, not a tuning choice; it is printed per kernel).
2. ``--part crops``: held-out photos (``--corpus``, default BSDS500 *test*), a Gong flow
   (±23 / ±46) drawn on the whole photo, the whole photo blurred and the central
   ``--size``² cropped (``scene``), against blurring the crop itself with the replicate rule
   (``inverse-crime``); noise σ = 0.01. Non-blind HQS with the true flow and blind
   ``pd.deblur`` (safeguard off), each with both boundaries.

3. ``--part timing``: ``pd.deblur`` (one global iteration, safeguard off) on a 1280×720 photo
   (the astronaut tiled, a ±23 Gong flow, σ = 0.01) with each boundary, alternated
   ``--repeats`` times in one process, with the padding width SEN's flow asked for.

Usage::

    python benchmarks/boundary.py --part levin
    python benchmarks/boundary.py --part crops --corpus .data/bsds500/test --n-corpus 8
    python benchmarks/boundary.py --part timing --repeats 2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, read_image, sample_image
from pnpdeblur.metrics import kohler_align, psnr
from pnpdeblur.priors import DnCNNPrior
from pnpdeblur.solvers import crop_boundary, hqs, motion_blur_width, pad_boundary

try:
    from _results import write_rows
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows

BOUNDARIES = ("replicate", "unknown")


def nonblind(y: np.ndarray, K_of_shape, width: int, boundary: str, noise_level: float = 0.01) -> np.ndarray:
    """HQS with the shipped DnCNN; ``K_of_shape(pad)`` builds the operator for a grid padded by ``pad``."""
    prior = DnCNNPrior(ensemble=False)
    if boundary == "replicate":
        return np.asarray(hqs(y, K_of_shape(0), prior, noise_level=noise_level).x)
    y_pad, weights = pad_boundary(y, width)
    x = hqs(y_pad, K_of_shape(width), prior, noise_level=noise_level, weights=weights).x
    return np.asarray(crop_boundary(x, width))


def kernel_orientation(sharp: np.ndarray, blurred: np.ndarray, k: np.ndarray) -> tuple:
    """The stored kernel or its 180° rotation, whichever reproduces ``blurred`` from ``sharp``
    better (PSNR up to a shift over the interior); returns (kernel, 'stored' | 'rotated', psnr)."""
    best = None
    for name, kk in (("stored", k), ("rotated", k[::-1, ::-1].copy())):
        p = kohler_align(np.asarray(pd.Convolution(kk)(sharp)), blurred, max_shift=4)[0]
        if best is None or p > best[2]:
            best = (kk, name, p)
    return best


def levin(args) -> str:
    root = Path(args.levin)
    load = lambda p: np.asarray(read_image(p, channels=1), np.float32)[..., 0]  # noqa: E731
    rows = []
    for j in range(1, 9):
        k = np.asarray(read_image(root / "gt" / f"kernel{j}.png", channels=1), np.float64)[..., 0]
        k /= k.sum()
        for i in range(1, 5):
            sharp = load(root / "gt" / f"im{i}.png").astype(np.float64)
            y = load(root / f"im{i}_kernel{j}_img.png")
            kk, orient, fit = kernel_orientation(sharp, y.astype(np.float64), k)
            width = max(kk.shape) // 2
            row = dict(image=f"im{i}_kernel{j}", kernel=j, kernel_size=k.shape[0], orientation=orient, fit_psnr=fit,
                       psnr_blurred=kohler_align(y, sharp, max_shift=10)[0])
            for b in BOUNDARIES:
                x = nonblind(y, lambda pad: pd.Convolution(kk), width, b)
                row[f"psnr_true_{b}"] = kohler_align(np.clip(x, 0, 1), sharp, max_shift=10)[0]
            for b in BOUNDARIES:
                t0 = time.perf_counter()
                res = pd.deblur(y, safeguard=False, boundary=b)
                row[f"t_deblur_{b}"] = time.perf_counter() - t0
                row[f"psnr_deblur_{b}"] = kohler_align(np.asarray(res.x, np.float64), sharp, max_shift=10)[0]
            rows.append(row)
            print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    keys = [c for c in rows[0] if c.startswith("psnr_")]
    summary = {f"kernel{j}": {c: float(np.mean([r[c] for r in rows if r["kernel"] == j])) for c in keys}
               for j in range(1, 9)}
    summary["all"] = {c: float(np.mean([r[c] for r in rows])) for c in keys}
    for name, s in summary.items():
        print(name, {c: round(v, 2) for c, v in s.items()}, flush=True)
    return write_rows("boundary_levin", "cpu", rows, summary=summary, folder=str(root))


def scene_pair(photo: np.ndarray, preset: str, size: int, rng: np.random.Generator, scene: bool):
    """(sharp crop, blurred crop, flow of the crop). ``scene``: blur the whole photo, then crop."""
    h, w = photo.shape[:2]
    r, c = (h - size) // 2, (w - size) // 2
    if scene:
        flow = random_motion_flow((h, w), preset, rng)
        blurred = np.asarray(pd.MotionBlur(flow)(photo), np.float32)[r:r + size, c:c + size]
        flow = np.ascontiguousarray(flow[:, r:r + size, c:c + size])
    else:
        flow = random_motion_flow((size, size), preset, rng)
        blurred = np.asarray(pd.MotionBlur(flow)(photo[r:r + size, c:c + size]), np.float32)
    sharp = np.ascontiguousarray(photo[r:r + size, c:c + size])
    blurred = np.clip(blurred + 0.01 * rng.standard_normal(blurred.shape).astype(np.float32), 0, 1)
    return sharp, blurred, flow


def crops(args) -> str:
    files = list_images(args.corpus)[: args.n_corpus]
    rows = []
    for preset in ("23", "46"):
        for k, p in enumerate(files):
            photo = read_image(p, 3).astype(np.float32)
            if min(photo.shape[:2]) < args.size + 2 * 32:
                raise ValueError(f"{p.name} is too small for --size {args.size} with a 32 px margin")
            for variant in ("scene", "inverse-crime"):
                sharp, y, flow = scene_pair(photo, preset, args.size, np.random.default_rng(9000 + k), variant == "scene")
                row = dict(image=p.name, preset=preset, variant=variant,
                           psnr_blurred=float(psnr(y, sharp, channel_axis=-1)))
                width = motion_blur_width(flow)
                padded = lambda pad: pd.MotionBlur(np.pad(flow, ((0, 0), (pad, pad), (pad, pad)), mode="edge"))  # noqa: E731
                for b in BOUNDARIES:
                    x = nonblind(y, padded, width, b)
                    row[f"psnr_true_{b}"] = float(psnr(np.clip(x, 0, 1), sharp, channel_axis=-1))
                for b in BOUNDARIES:
                    t0 = time.perf_counter()
                    res = pd.deblur(y, safeguard=False, boundary=b)
                    row[f"t_deblur_{b}"] = time.perf_counter() - t0
                    row[f"psnr_deblur_{b}"] = float(psnr(np.asarray(res.x), sharp, channel_axis=-1))
                rows.append(row)
                print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    keys = [c for c in rows[0] if c.startswith(("psnr_", "t_"))]
    summary = {}
    for preset in ("23", "46"):
        for variant in ("scene", "inverse-crime"):
            sel = [r for r in rows if r["preset"] == preset and r["variant"] == variant]
            summary[f"{preset}/{variant}"] = {c: float(np.mean([r[c] for r in sel])) for c in keys}
            print(f"±{preset} {variant}", {c: round(v, 2) for c, v in summary[f"{preset}/{variant}"].items()}, flush=True)
    return write_rows("boundary_crops", "cpu", rows, summary=summary, corpus=args.corpus, size=args.size)


def timing(args) -> str:
    photo = sample_image("astronaut", channels=3)
    big = np.ascontiguousarray(np.tile(photo, (2, 3, 1))[:720, :1280]).astype(np.float32)
    rng = np.random.default_rng(0)
    flow = random_motion_flow(big.shape[:2], "23", rng)
    y = np.asarray(pd.MotionBlur(flow)(big), np.float32)
    y = np.clip(y + 0.01 * rng.standard_normal(y.shape).astype(np.float32), 0, 1)
    rows = []
    for rep in range(args.repeats):
        for b in BOUNDARIES:
            t0 = time.perf_counter()
            res = pd.deblur(y, safeguard=False, boundary=b)
            t = time.perf_counter() - t0
            width = motion_blur_width(res.flow[0]) if b == "unknown" else 0
            rows.append(dict(repeat=rep, boundary=b, time=t, width=width, psnr=float(psnr(res.x, big, channel_axis=-1)),
                             hqs_time=res.history[0]["time"]))
            print(rows[-1], flush=True)
    best = {b: min(r["time"] for r in rows if r["boundary"] == b) for b in BOUNDARIES}
    print("best of", args.repeats, best, "ratio unknown/replicate", round(best["unknown"] / best["replicate"], 3))
    return write_rows("boundary_timing", "cpu", rows, best=best)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("levin", "crops", "timing"), required=True)
    ap.add_argument("--levin", default=".data/selfdeblur/datasets/levin",
                    help="folder with im{i}_kernel{j}_img.png and gt/ (SelfDeblur's copy of Levin et al.)")
    ap.add_argument("--corpus", default=".data/bsds500/test", help="held-out sharp photos (--part crops)")
    ap.add_argument("--n-corpus", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2, help="--part timing: alternated runs per boundary")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    print({"levin": levin, "crops": crops, "timing": timing}[args.part](args))


if __name__ == "__main__":
    main()
