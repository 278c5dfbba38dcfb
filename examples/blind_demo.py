"""Blind deblurring of a photo: SEN flow estimate, then HQS with the DnCNN prior (``pd.deblur``).

The comparison with the true flow uses the DRUNet prior, the stronger one when the flow is known.

Blurs a held-out scikit-image photo with a random Gong-style flow (so the answer is known), then
forgets the flow and deblurs blind. Writes to ``--out`` (default ``out/blind``): ``blurred.png``,
``deblurred.png``, ``flow_true.png`` / ``flow_estimated.png`` (colour code with m ≡ −m) and
``comparison.png`` (blurred / blind / true-flow HQS / sharp, PSNR in the titles).
"""
from __future__ import annotations

import argparse
import os

import numpy as np
from skimage.io import imsave

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.viz import comparison_figure, flow_to_color


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join("out", "blind"))
    ap.add_argument("--image", default="astronaut")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--preset", default="23", choices=["23", "46"])
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    sharp = sample_image(args.image, size=args.size, channels=3)
    flow = random_motion_flow(sharp.shape[:2], preset=args.preset, seed=rng)
    blurred = np.clip(np.asarray(pd.MotionBlur(flow)(sharp)) + 0.01 * rng.standard_normal(sharp.shape), 0, 1)
    blurred = blurred.astype(np.float32)

    res = pd.deblur(blurred)                              # blind: no flow given
    est = res.flow[-1]
    true_flow = pd.solvers.hqs(blurred, pd.MotionBlur(flow), pd.priors.DRUNetPrior(), noise_level=0.01).x
    print(f"flow MSE {pd.metrics.flow_mse(est, flow):.2f} px² (zero flow: {pd.metrics.flow_mse(0 * flow, flow):.2f})")
    print(f"PSNR blurred {pd.metrics.psnr(blurred, sharp):.2f} dB, blind {pd.metrics.psnr(res.x, sharp):.2f} dB, "
          f"true flow {pd.metrics.psnr(np.clip(true_flow, 0, 1), sharp):.2f} dB")

    def png(name, img):
        imsave(os.path.join(args.out, name), (np.clip(img, 0, 1) * 255).round().astype(np.uint8), check_contrast=False)

    png("blurred.png", blurred)
    png("deblurred.png", res.x)
    top = float(np.hypot(*flow).max())
    imsave(os.path.join(args.out, "flow_true.png"), flow_to_color(flow, max_norm=top, symmetric=True), check_contrast=False)
    imsave(os.path.join(args.out, "flow_estimated.png"), flow_to_color(est, max_norm=top, symmetric=True),
           check_contrast=False)
    comparison_figure([blurred, res.x, np.clip(true_flow, 0, 1), sharp],
                      ["blurred", "pd.deblur (blind)", "HQS, true flow", "sharp"], reference=3,
                      path=os.path.join(args.out, "comparison.png"))
    print(f"wrote {args.out}/")


if __name__ == "__main__":
    main()
