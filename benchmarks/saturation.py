"""Deblurring photos with clipped highlights: clipped pixels left out of the data term, or fitted.

A sharp photo is brightened by ``gain`` (1.0, 1.3, 1.6) so that its highlights exceed the
sensor's range, blurred with a Gong flow (|m| ≤ 23), given Gaussian noise (σ = 0.01) and then
clipped to [0, 1] as a sensor does: ``y = clip(K(gain·x) + n)``. It is stored as a float, as
an 8-bit PNG or as an 8-bit JPEG (quality 90, as cameras and phones write), and deblurred

* non-blind, by HQS + the shipped DRUNet with the true flow, and
* blind, by ``pd.deblur`` (SEN flow, HQS + the shipped DnCNN; its defaults),

with ``saturation`` off (every pixel fitted), at 1.0 (only values at the top of the range
left out) and at the default 0.98. PSNR against ``clip(gain·x)``, the photo a sensor of the
same range would have taken without the blur. Gain 1.0 is the control: a photo with (almost)
no clipped pixel should not lose anything.

Usage::

    python benchmarks/saturation.py [--images 4] [--threads 2] [--parts nonblind,blind]
    python benchmarks/saturation.py --parts none --figure docs/images/saturation.png

Writes ``saturation.json`` beside this file; ``--figure`` also draws the astronaut at gain 1.6
(8-bit PNG, true flow): the blurred photo, HQS fitting every pixel, HQS leaving the clipped ones
out, and the sharp photo.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pnpdeblur as pd  # noqa: E402
from pnpdeblur.data import random_motion_flow, sample_image  # noqa: E402
from pnpdeblur.priors import DRUNetPrior  # noqa: E402
from pnpdeblur.solvers import DEFAULT_SATURATION, hqs, saturation_weights  # noqa: E402

from _results import write_rows  # noqa: E402

IMAGES = ["astronaut", "camera", "coffee", "chelsea"]
GAINS = (1.0, 1.3, 1.6)
FORMATS = ("float", "png8", "jpeg90")
SATURATIONS = {"off": None, "1.0": 1.0, f"{DEFAULT_SATURATION:g} (default)": DEFAULT_SATURATION}


def stored(y: np.ndarray, fmt: str) -> np.ndarray:
    """``y`` (H, W, C) in [0, 1] as read back from the given storage, float32.

    ``fmt``: ``"float"``, ``"png8"`` (8-bit, lossless) or ``"jpegQ"`` (8-bit JPEG of quality Q,
    Pillow's encoder with its default 4:2:0 chroma subsampling, as cameras and phones write).
    """
    if fmt == "float":
        return y.astype(np.float32)
    y8 = np.round(np.clip(y, 0, 1) * 255).astype(np.uint8)
    if fmt.startswith("jpeg"):
        import imageio.v3 as iio

        grey = y8.ndim == 3 and y8.shape[-1] == 1  # a grey JPEG is written (H, W)
        y8 = iio.imread(iio.imwrite("<bytes>", y8[..., 0] if grey else y8, extension=".jpg",
                                    quality=int(fmt[len("jpeg"):])))
        y8 = y8[..., None] if grey else y8
    elif fmt != "png8":
        raise ValueError(f"fmt must be 'float', 'png8' or 'jpegQ' (Q the quality), got {fmt!r}")
    return y8.astype(np.float32) / 255


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(ref, np.clip(np.asarray(x, np.float64), 0, 1), data_range=1.0))


def problem(i: int, gain: float):
    """Photo ``i`` brightened by ``gain``, blurred, noisy, clipped (before storage): (y, K, reference)."""
    sharp = sample_image(IMAGES[i], size=256, dtype=np.float64)
    flow = random_motion_flow((256, 256), "23", seed=100 + i)
    K = pd.MotionBlur(flow[None])
    noise = 0.01 * np.random.default_rng(i).standard_normal(sharp.shape)
    y_lin = np.clip(np.asarray(K(gain * sharp)) + noise, 0, 1)
    return y_lin, K, np.clip(gain * sharp, 0, 1)


def figure(path: str, prior) -> None:
    from pnpdeblur.viz import comparison_figure

    y_lin, K, ref = problem(0, 1.6)
    y = stored(y_lin, "png8")
    fitted = hqs(y, K, prior, noise_level=0.01, progress=False).x
    left_out = hqs(y, K, prior, noise_level=0.01, progress=False, weights=saturation_weights(y)).x
    comparison_figure([y, np.clip(fitted, 0, 1), np.clip(left_out, 0, 1), ref],
                      [f"blurred, {(y >= DEFAULT_SATURATION).mean():.0%} of values clipped", "HQS, every pixel fitted",
                       "HQS, clipped pixels left out", "sharp (clipped)"], reference=3, path=path)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=len(IMAGES), help="use the first N of the four photos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parts", default="nonblind,blind", help="nonblind, blind, both or none")
    ap.add_argument("--figure", default=None, metavar="PATH", help="also draw the picture here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    drunet = DRUNetPrior()
    if args.figure:
        figure(args.figure, drunet)
    if not {"nonblind", "blind"} & set(parts):
        return
    rows = []
    for gain in GAINS:
        for i, name in enumerate(IMAGES[:args.images]):
            y_lin, K, ref = problem(i, gain)  # one blurred photo, stored three ways
            for fmt in FORMATS:
                y = stored(y_lin, fmt)
                row = dict(image=name, gain=gain, format=fmt, clipped=float((y >= DEFAULT_SATURATION).mean()),
                           blurred=psnr(y, ref), results={})
                for label, sat in SATURATIONS.items():
                    if "nonblind" in parts:
                        w = None if sat is None else saturation_weights(y, sat)
                        t = time.perf_counter()
                        out = hqs(y, K, drunet, noise_level=0.01, progress=False, weights=w).x
                        row["results"][f"nonblind {label}"] = dict(psnr=psnr(out, ref), time=time.perf_counter() - t)
                    if "blind" in parts:
                        t = time.perf_counter()
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            out = pd.deblur(y, saturation=sat).x
                        row["results"][f"blind {label}"] = dict(psnr=psnr(out, ref), time=time.perf_counter() - t)
                rows.append(row)
                res = "  ".join(f"{k} {v['psnr']:.2f}" for k, v in row["results"].items())
                print(f"gain {gain} {name:9s} {fmt:6s} clipped {row['clipped']:.3f} blurred {row['blurred']:.2f}  "
                      f"{res}", flush=True)
    print("\nmean PSNR (dB) over the photos")
    keys = list(rows[0]["results"])
    for gain in GAINS:
        for fmt in FORMATS:
            sel = [r for r in rows if r["gain"] == gain and r["format"] == fmt]
            means = "  ".join(f"{k} {np.mean([r['results'][k]['psnr'] for r in sel]):.2f}" for k in keys)
            print(f"gain {gain} {fmt:6s} clipped {np.mean([r['clipped'] for r in sel]):.3f} blurred "
                  f"{np.mean([r['blurred'] for r in sel]):.2f}  {means}")
    write_rows("saturation", "cpu", rows, threads=args.threads, noise=0.01, preset="23")


if __name__ == "__main__":
    main()
