"""Train the small noise-level-conditioned DnCNN shipped as pnpdeblur/weights/dncnn_small.safetensors.

CPU only, a few minutes. Training images are scikit-image's bundled photographs except
those the non-blind benchmark evaluates on (astronaut, camera, coffee, chelsea), which
are held out. Every colour channel is used as a grey training image.

Usage::

    python scripts/train_dncnn.py                      # reproduces the shipped weights
    python scripts/train_dncnn.py --steps 300 --out /tmp/dncnn.safetensors
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from pnpdeblur.data import sample_image
from pnpdeblur.nets.dncnn import PRETRAINED_PATH, DnCNN

TRAIN_IMAGES = [
    "rocket", "coins", "moon", "grass", "gravel", "brick", "immunohistochemistry",
    "hubble_deep_field", "page", "text", "colorwheel",
]
HELD_OUT = ["astronaut", "camera", "coffee", "chelsea"]


def load_planes(names):
    """Grey planes (H, W) float32 in [0, 1]: every channel of every named photo."""
    planes = []
    for n in names:
        img = sample_image(n, dtype=np.float32)
        planes += [np.ascontiguousarray(img[:, :, c]) for c in range(img.shape[2])]
    return planes


def batch(planes, rng, size, patch, max_sigma):
    out = np.empty((size, 1, patch, patch), np.float32)
    for i in range(size):
        p = planes[rng.integers(len(planes))]
        r = rng.integers(p.shape[0] - patch + 1)
        c = rng.integers(p.shape[1] - patch + 1)
        q = p[r : r + patch, c : c + patch]
        q = np.rot90(q, rng.integers(4))
        if rng.random() < 0.5:
            q = q[:, ::-1]
        out[i, 0] = q
    clean = torch.from_numpy(out)
    sigma = torch.from_numpy(rng.uniform(0, max_sigma, size).astype(np.float32))
    noisy = clean + sigma.reshape(-1, 1, 1, 1) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31))))
    return noisy, clean, sigma


def evaluate(model, sigmas=(10, 25, 50), seed=0):
    """PSNR (dB) on held-out 256² grey crops for each sigma (in grey levels of 255)."""
    rng = np.random.default_rng(seed)
    res = {}
    clean = torch.from_numpy(np.stack([sample_image(n, size=256, channels=1)[:, :, 0] for n in HELD_OUT]))[:, None]
    for s in sigmas:
        noisy = clean + (s / 255) * torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32))
        with torch.no_grad():
            den = model(noisy, s / 255)
        mse = torch.mean((den - clean) ** 2).item()
        res[f"psnr_sigma{s}"] = round(10 * math.log10(1 / mse), 3)
        res[f"psnr_noisy_sigma{s}"] = round(10 * math.log10(1 / torch.mean((noisy - clean) ** 2).item()), 3)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=40)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--max-sigma", type=float, default=60 / 255)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--depth", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=PRETRAINED_PATH)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    planes = load_planes(TRAIN_IMAGES)
    model = DnCNN(channels=1, features=args.features, depth=args.depth, noise_map=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    t0 = time.time()
    for step in range(1, args.steps + 1):
        noisy, clean, sigma = batch(planes, rng, args.batch, args.patch, args.max_sigma)
        loss = torch.mean((model(noisy, sigma) - clean) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss.item():.3e}  psnr≈{10 * math.log10(1 / max(loss.item(), 1e-12)):.2f}  {time.time() - t0:.0f}s", flush=True)
    model.eval()
    scores = evaluate(model)
    print(json.dumps(scores))
    meta = {
        "training": {
            "script": "scripts/train_dncnn.py",
            "images": TRAIN_IMAGES,
            "held_out": HELD_OUT,
            "steps": args.steps, "batch": args.batch, "patch": args.patch, "lr": args.lr,
            "max_sigma": args.max_sigma, "seed": args.seed, "seconds": round(time.time() - t0, 1),
            "torch": torch.__version__,
        },
        "eval_held_out_grey_256": scores,
        "input": "grey (N, 1, H, W) in [0, 1] plus sigma (noise std on the [0, 1] scale)",
    }
    path = model.save(args.out, meta)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
