"""Linear light: deblurring photos whose blur happened before the camera's tone curve.

Blur adds light, so a camera records ``curve(K · light)``, not ``K · curve(light)``; Nah et al.'s
GOPRO data are made that way (frames averaged in linear light under a gamma-2.2 curve). The
library's other benchmarks blur the displayed values themselves. This one blurs held-out photos
both ways and solves each both ways:

- ``linear`` data: ``y = (K · x^2.2)^(1/2.2) + n``; ``display`` data: ``y = K · x + n``
  (σ = 0.01, Gong flows ±23, central 256² crops of BSDS500 *test* photos);
- non-blind HQS (shipped DnCNN, true flow, noise level 0.01) on ``y`` as given, and on the
  linearised ``y^2.2`` with the noise level carried over by the curve's mean slope
  (``pnpdeblur.pipeline.linearize``), re-encoded after;
- blind ``pd.deblur`` (safeguard off) with ``gamma=None`` and ``gamma=2.2``.

Usage::

    python benchmarks/gamma.py --corpus .data/bsds500/test --n-corpus 8
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, read_image
from pnpdeblur.metrics import psnr
from pnpdeblur.pipeline import linearize
from pnpdeblur.priors import DnCNNPrior
from pnpdeblur.solvers import hqs

try:
    from _results import write_rows
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows

GAMMA = 2.2


def centre(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def nonblind(y: np.ndarray, K, gamma) -> np.ndarray:
    prior = DnCNNPrior(ensemble=False)
    if gamma is None:
        return np.clip(np.asarray(hqs(y, K, prior, noise_level=0.01).x), 0, 1)
    y_lin, level = linearize(torch.from_numpy(y), gamma, 0.01)
    x = hqs(y_lin.numpy(), K, prior, noise_level=level).x
    return np.clip(np.asarray(x), 0, 1) ** (1 / gamma)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=".data/bsds500/test")
    ap.add_argument("--n-corpus", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for k, p in enumerate(list_images(args.corpus)[: args.n_corpus]):
        sharp = centre(read_image(p, 3), args.size)
        for data in ("linear", "display"):
            rng = np.random.default_rng(5000 + k)
            flow = random_motion_flow(sharp.shape[:2], "23", rng)
            K = pd.MotionBlur(flow)
            clean = np.asarray(K(sharp ** GAMMA)) ** (1 / GAMMA) if data == "linear" else np.asarray(K(sharp))
            y = np.clip(clean + 0.01 * rng.standard_normal(clean.shape), 0, 1).astype(np.float32)
            row = dict(image=p.name, data=data, psnr_blurred=float(psnr(y, sharp, channel_axis=-1)))
            for name, g in (("as_given", None), ("linearised", GAMMA)):
                row[f"psnr_true_{name}"] = float(psnr(nonblind(y, K, g), sharp, channel_axis=-1))
                row[f"psnr_blind_{name}"] = float(psnr(pd.deblur(y, safeguard=False, gamma=g).x, sharp,
                                                       channel_axis=-1))
            rows.append(row)
            print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    keys = [c for c in rows[0] if c.startswith("psnr_")]
    summary = {}
    for data in ("linear", "display"):
        sel = [r for r in rows if r["data"] == data]
        summary[data] = {c: float(np.mean([r[c] for r in sel])) for c in keys}
        for m in ("true", "blind"):
            d = [r[f"psnr_{m}_linearised"] - r[f"psnr_{m}_as_given"] for r in sel]
            summary[data][f"{m}_gain"] = float(np.mean(d))
            summary[data][f"{m}_worse"] = int(sum(v < -0.05 for v in d))
        print(data, {c: round(v, 2) for c, v in summary[data].items()}, flush=True)
    print(write_rows("gamma", "cpu", rows, summary=summary, corpus=args.corpus, size=args.size, gamma=GAMMA))


if __name__ == "__main__":
    main()
