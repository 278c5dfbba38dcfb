"""Phantom blur on clipped skies: does leaving clipped pixels out of the safeguard's score help?

``pd.deblur``'s safeguard scores a photo by SEN's median flow length over all pixels
(:func:`pnpdeblur.estimation.blur_detection.flow_blur_score`). A large flat clipped region (an
overexposed sky) has no texture to read a blur from, and SEN reports flow there and around it.
This measures, on centre 256² crops of BSDS500 *train* photos (every 4th, the first 40), each as
sharp / mild / ±23 / ±46 input (``blind.degrade``, σ = 0.01, the calibration's seeds 5000 + k),
with and without a "sky" (the top 40 % of rows set to 1.0 after blurring), SEN's median flow
length over all pixels and over the unclipped ones (every channel below 0.98, the pipelines'
saturation threshold), and the share of inputs at or above the default threshold.

Usage::

    python benchmarks/clipped_sky.py [--folder .data/bsds500/train] [--step 4] [--n 40]

Writes ``clipped_sky.json`` beside this file.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _results import write_rows
from blind import crop, degrade
from pnpdeblur.data import list_images, read_image
from pnpdeblur.estimation import estimate_flow
from pnpdeblur.estimation.blur_detection import DEFAULT_THRESHOLD
from pnpdeblur.nets import SEN

CONDITIONS = ("sharp", "mild", "23", "46")


def scores(y: np.ndarray, model: SEN) -> dict:
    """SEN's median flow length over all pixels and over the unclipped ones, and the clipped share."""
    f = np.asarray(estimate_flow(y, model))
    length = np.hypot(f[0], f[1])
    clipped = y.max(-1) >= 0.98
    unclipped = float(np.median(length[~clipped])) if (~clipped).any() else None
    return dict(clipped=float(clipped.mean()), all=float(np.median(length)), unclipped=unclipped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default=".data/bsds500/train", help="sharp photos (training data only)")
    ap.add_argument("--step", type=int, default=4, help="use every k-th photo")
    ap.add_argument("--n", type=int, default=40, help="number of photos")
    ap.add_argument("--sky", type=float, default=0.4, help="share of rows (from the top) set to white")
    args = ap.parse_args()
    model = SEN.pretrained()
    rows, t0 = [], time.time()
    for k, path in enumerate(list_images(args.folder)[:: args.step][: args.n]):
        sharp = crop(read_image(path, 3), 256)
        for cond in CONDITIONS:
            y, _ = degrade(sharp, cond, np.random.default_rng(5000 + k))
            for sky in (False, True):
                z = y.copy()
                if sky:
                    z[: int(args.sky * z.shape[0])] = 1.0
                rows.append(dict(image=path.name, cond=cond, sky=sky, **scores(z, model)))
        print(f"{k + 1} photos, {time.time() - t0:.0f} s", flush=True)
    summary = {}
    for sky in (False, True):
        for cond in CONDITIONS:
            sel = [r for r in rows if r["cond"] == cond and r["sky"] == sky]
            a = np.array([r["all"] for r in sel])
            u = np.array([r["unclipped"] for r in sel])
            key = f"{cond}{' + sky' if sky else ''}"
            summary[key] = dict(n=len(sel), above_all=float(np.mean(a >= DEFAULT_THRESHOLD)),
                                above_unclipped=float(np.mean(u >= DEFAULT_THRESHOLD)),
                                median_all=float(np.median(a)), median_unclipped=float(np.median(u)))
            print(key, {k2: round(v, 2) for k2, v in summary[key].items()}, flush=True)
    write_rows("clipped_sky", "cpu", rows, summary=summary, threshold=DEFAULT_THRESHOLD, folder=args.folder,
               step=args.step, n=args.n, sky=args.sky)


if __name__ == "__main__":
    main()
