"""Blind deblurring benchmark (issue 10): flow accuracy, deblurring quality, time.

Sharp photos never used in training — scikit-image's held-out photos (astronaut, camera,
coffee, chelsea) and, with ``--corpus``, images of a held-out folder (e.g. BSDS500's *test*
split) — are cropped to ``--size``², blurred with Gong-style random flows (presets ±23 and
±46) through ``MotionBlur``, plus Gaussian noise σ = 0.01.

Tables:

1. **flow MSE** (Wu et al.'s table 1: mean over both components, per pixel
   ``min(|f̂ − f|², |f̂ + f|²)``) of SEN (``pd.estimate_flow``), the classical cepstrum
   baseline (``estimate_flow_classical``) and the zero flow;
2. **PSNR/SSIM** of the blurred input, ``pd.deblur`` after global iterations 1…K (same prior,
   estimated noise level), and non-blind HQS with the true flow (the upper bound);
3. **time** (``--timing``): SEN forward and ``pd.deblur`` (``--iterations`` global iterations)
   on a 1280×720 photo.

Usage::

    python benchmarks/blind.py                              # CPU, writes benchmarks/blind.json
    python benchmarks/blind.py --quick                      # 2 photos, ±23 only
    python benchmarks/blind.py --corpus .data/bsds500/test --n-corpus 8
    python benchmarks/blind.py --timing --device cuda       # timings only
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, read_image, sample_image
from pnpdeblur.estimation.classical import estimate_flow_classical
from pnpdeblur.metrics import flow_mse, psnr, ssim
from pnpdeblur.nets import SEN
from pnpdeblur.priors import DnCNNPrior
from pnpdeblur.solvers import hqs

try:
    from _results import write_rows
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows

SKIMAGE_HELD_OUT = ["astronaut", "camera", "coffee", "chelsea"]


def crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image smaller than {size}")
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def photos(args) -> list:
    out = [(n, crop(sample_image(n, channels=3), args.size)) for n in SKIMAGE_HELD_OUT[: 2 if args.quick else 4]]
    if args.corpus:
        for p in list_images(args.corpus)[: args.n_corpus]:
            out.append((p.name, crop(read_image(p, 3), args.size)))
    return out


def quality(args, model: SEN, device: str) -> list:
    rows = []
    prior = DnCNNPrior()
    presets = ["23"] if args.quick else ["23", "46"]
    for preset in presets:
        for k, (name, sharp) in enumerate(photos(args)):
            rng = np.random.default_rng(1000 + k)
            flow = random_motion_flow(sharp.shape[:2], preset, rng)
            blurred = np.asarray(pd.MotionBlur(flow)(sharp), np.float32)
            blurred = np.clip(blurred + 0.01 * rng.standard_normal(blurred.shape).astype(np.float32), 0, 1)
            x = torch.from_numpy(blurred.transpose(2, 0, 1).copy()).to(device)
            t0 = time.perf_counter()
            f_sen = pd.estimate_flow(x, model).cpu().numpy()
            t_sen = time.perf_counter() - t0
            f_cls = estimate_flow_classical(blurred)
            row = dict(image=name, preset=preset, mean_flow_length=float(np.hypot(*flow).mean()),
                       mse_sen=float(flow_mse(f_sen, flow)), mse_cepstrum=float(flow_mse(f_cls, flow)),
                       mse_zero=float(flow_mse(np.zeros_like(flow), flow)), t_sen=t_sen)
            row["psnr_blurred"], row["ssim_blurred"] = score(blurred, sharp)
            res = pd.deblur(x, iterations=args.iterations, prior=prior, flow_model=model,
                            callback=lambda e, cur: e.update(zip(("psnr", "ssim"), score(cur, sharp))))
            for e in res.history:
                row[f"psnr_it{e['iteration'] + 1}"], row[f"ssim_it{e['iteration'] + 1}"] = e["psnr"], e["ssim"]
            row["t_deblur"] = sum(e["time"] for e in res.history)
            true = hqs(x[None], pd.MotionBlur(torch.from_numpy(flow)[None].to(device)), prior,
                       noise_level=0.01, progress=False).x
            row["psnr_true_flow"], row["ssim_true_flow"] = score(true, sharp)
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def score(x, sharp: np.ndarray) -> tuple:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
        x = x[0] if x.ndim == 4 else x
        x = x.transpose(1, 2, 0)
    x = np.clip(np.asarray(x, np.float64), 0, 1)
    return float(psnr(x, sharp, channel_axis=-1)), float(ssim(x, sharp, channel_axis=-1))


def timing(args, model: SEN, device: str) -> list:
    photo = sample_image("astronaut", channels=3)
    big = np.ascontiguousarray(np.tile(photo, (2, 3, 1))[:720, :1280])
    flow = random_motion_flow(big.shape[:2], "23", 0)
    blurred = np.clip(np.asarray(pd.MotionBlur(flow)(big), np.float32), 0, 1)
    x = torch.from_numpy(blurred.transpose(2, 0, 1).copy()).to(device)
    rows = []
    pd.estimate_flow(x[:, :256, :256], model)  # warm-up (kernel compilation, cuDNN autotune)
    for rep in range(args.repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        pd.estimate_flow(x, model)
        if device == "cuda":
            torch.cuda.synchronize()
        t_sen = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = pd.deblur(x, iterations=args.iterations, flow_model=model)
        if device == "cuda":
            torch.cuda.synchronize()
        t_all = time.perf_counter() - t0
        rows.append(dict(size="1280x720x3", iterations=args.iterations, t_sen_forward=t_sen, t_deblur=t_all,
                         per_iteration=[e["time"] for e in res.history], psnr=score(res.x, big)[0]))
        print(rows[-1], flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timing", action="store_true", help="only the 1280×720 timings")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--corpus", default=None, help="held-out folder of sharp photos (e.g. BSDS500 test)")
    ap.add_argument("--n-corpus", type=int, default=8)
    ap.add_argument("--weights", default=None, help="SEN checkpoint (default: the shipped one)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    model = SEN.pretrained() if args.weights is None else SEN.from_checkpoint(args.weights)
    if args.timing:
        rows = timing(args, model, args.device)
        return write_rows("blind_timing", args.device, rows)
    rows = quality(args, model, args.device)
    summary = {}
    for preset in sorted({r["preset"] for r in rows}):
        sel = [r for r in rows if r["preset"] == preset]
        keys = [k for k in sel[0] if k.startswith(("mse_", "psnr_", "ssim_", "t_"))]
        summary[preset] = {k: float(np.mean([r[k] for r in sel])) for k in keys}
        print(f"\n±{preset}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[preset].items()))
    return write_rows("blind", args.device, rows, summary=summary,
                      weights=str(args.weights or "shipped"), corpus=args.corpus)


if __name__ == "__main__":
    main()
