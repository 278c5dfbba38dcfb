"""Gaussian denoising alone (issue 15): DRUNet vs DnCNN vs BM3D on held-out photos.

Images: the four benchmark scikit-image photos (astronaut, camera, coffee, chelsea; never
trained on) resized to 256², plus the first ``--bsds`` images (sorted by name) of BSDS500's
*val* split (never trained on) centre-cropped to 256². ``camera`` is grey and is denoised as
a grey image (DRUNet replicates it to three channels and averages back; DnCNN is grey
anyway; BM3D grey). Noise: σ = 15, 25, 50 (/255), seeded per image and σ, not clipped.
Reported: PSNR (dB, output clipped to [0, 1]) of the noisy input and of each denoiser, and
its wall time per image (torch threads: ``--threads``).

``--folder DIR`` replaces those images with every image in ``DIR``, whole (no crop): the
published protocol on a standard test set such as CBSD68 or BSD68 (evaluation sets: never train
on them). ``--grey`` converts them to luminance (BSD68's protocol for grey denoisers).
``--shipped`` picks which of the library's own denoisers run beside ``--prior-file``'s (those run
one pass each, without the flip ensemble, as their papers report them).

Usage::

    python benchmarks/denoise.py               # full run, writes benchmarks/denoise.json
    python benchmarks/denoise.py --quick       # 2 images, σ = 25 only
    python benchmarks/denoise.py --no-bm3d     # skip BM3D
    python benchmarks/denoise.py --prior-file drunet:drunet_color.pth --prior-file ffdnet:ffdnet_color.pth
    python benchmarks/denoise.py --folder testsets/CBSD68 --shipped drunet-medium --prior-file dncnn:dncnn_color_blind.pth
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from pnpdeblur.data import list_images, read_image, sample_image
from pnpdeblur.metrics import psnr
from pnpdeblur.priors.learned import DnCNNPrior
from pnpdeblur.priors.drunet import DRUNetPrior
from pnpdeblur.priors.from_file import WEIGHT_KINDS, parse_weights_spec, prior_from_weights

__all__ = ["SIGMAS", "SKIMAGE", "load_images", "main"]

SIGMAS = (15, 25, 50)
SKIMAGE = ("astronaut", "camera", "coffee", "chelsea")
BSDS_VAL = Path(__file__).resolve().parent.parent / ".data" / "bsds500" / "val"


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size × size`` window of an ``(H, W[, C])`` image (also used by hqs_lambda.py and nonblind.py)."""
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise SystemExit(f"an image of {h}×{w} is smaller than the crop {size}")
    i, j = (h - size) // 2, (w - size) // 2
    return img[i : i + size, j : j + size]


def load_images(bsds: int, quick: bool, skimage: int = 4) -> Dict[str, np.ndarray]:
    """Name → float32 ``(256, 256, C)`` image in [0, 1] (C = 1 for camera, else 3)."""
    images = {n: sample_image(n, size=256, dtype=np.float32) for n in SKIMAGE[: 2 if quick else skimage]}
    if not quick and bsds > 0:
        if not BSDS_VAL.is_dir():
            print(f"(no {BSDS_VAL}: BSDS500 val images skipped)")
        else:
            for p in list_images(BSDS_VAL)[:bsds]:
                images[f"bsds_val/{p.stem}"] = centre_crop(read_image(p, 3), 256)
    return images


def load_folder(folder: Path, grey: bool) -> Dict[str, np.ndarray]:
    """Name → every image of ``folder`` (sorted by name), whole, float32 ``(H, W, C)`` in [0, 1]."""
    files = list_images(folder)
    if not files:
        raise SystemExit(f"--folder {folder}: no images found")
    return {f"{folder.name}/{p.stem}": read_image(p, 1 if grey else 3) for p in files}


#: The library's own denoisers by ``--shipped`` name.
SHIPPED = {
    "dncnn-ensemble": ("DnCNN (shipped, ensemble)", DnCNNPrior),
    "dncnn": ("DnCNN (shipped)", lambda: DnCNNPrior(ensemble=False)),
    "drunet": ("DRUNet small (shipped)", DRUNetPrior),
    "drunet-ensemble": ("DRUNet small (shipped, ensemble)", lambda: DRUNetPrior(ensemble=True)),
    "drunet-medium": ("DRUNet medium (shipped)", lambda: DRUNetPrior(variant="medium")),
}


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    return float(psnr(x, np.asarray(ref, dtype=np.float64), channel_axis=-1))


def _sigma(text: str):
    """A noise level of ``--sigmas`` (/255): an int when whole (the earlier tables' seeds), else a float."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise SystemExit(f"--sigmas: noise levels must be > 0, got {text!r}")
    return int(value) if value.is_integer() else value


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="Denoising benchmark: DRUNet vs DnCNN vs BM3D (issue 15)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--bsds", type=int, default=6, help="BSDS500 val images to add (0: none)")
    ap.add_argument("--skimage", type=int, default=4, help="how many of the four scikit-image photos")
    ap.add_argument("--no-bm3d", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigmas", default=",".join(map(str, SIGMAS)), help="noise levels (/255), comma-separated")
    ap.add_argument("--drunet-weights", type=Path, action="append", default=[],
                    help="also run DRUNetPrior with these weights (a .safetensors checkpoint, or the authors' drunet_color.pth; repeatable)")
    ap.add_argument("--prior-file", action="append", default=[], metavar="KIND:PATH",
                    help="also run this denoiser: KIND one of " + ", ".join(WEIGHT_KINDS) + ", PATH a checkpoint "
                         "or the authors' file (e.g. ffdnet:ffdnet_color.pth; repeatable)")
    ap.add_argument("--folder", type=Path, default=None,
                    help="denoise every image of this folder, whole, instead of the default photos (e.g. CBSD68)")
    ap.add_argument("--grey", action="store_true", help="with --folder: convert every image to luminance (e.g. BSD68)")
    ap.add_argument("--shipped", default="dncnn-ensemble,drunet,drunet-ensemble",
                    help="the library's denoisers to run, comma-separated, from " + ", ".join(SHIPPED)
                         + " (empty: none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("denoise.json"))
    args = ap.parse_args(argv)
    try:
        extra = [parse_weights_spec(spec) for spec in args.prior_file]
    except ValueError as e:
        ap.error(f"--prior-file: {e}")
    shipped = [k.strip() for k in args.shipped.split(",") if k.strip()]
    unknown = sorted(set(shipped) - set(SHIPPED))
    if unknown:
        ap.error(f"--shipped: unknown {', '.join(unknown)}; choose from {', '.join(SHIPPED)}")
    torch.set_num_threads(args.threads)
    priors = {SHIPPED[k][0]: SHIPPED[k][1]() for k in shipped}
    for path in args.drunet_weights:  # candidates, e.g. a new training run before it ships
        priors[f"DRUNet {path}"] = DRUNetPrior(path)
    for kind, path in extra:  # e.g. the authors' weights, one pass each as their papers report
        priors[f"{kind} ({path.name})"] = prior_from_weights(kind, path, ensemble=False)
    if not args.no_bm3d:
        from pnpdeblur.priors.bm3d import BM3D

        priors["BM3D"] = BM3D()
    if args.folder is not None:
        images = load_folder(args.folder, args.grey)
    else:
        if args.grey:
            ap.error("--grey goes with --folder")
        images = load_images(args.bsds, args.quick, args.skimage)
    sigmas = (25,) if args.quick else tuple(_sigma(s) for s in args.sigmas.split(",") if s.strip())
    rows: List[dict] = []
    t0 = time.time()
    for s in sigmas:
        for k, (name, x) in enumerate(images.items()):
            # whole levels keep the seeds of the earlier tables; a fractional one gets its own
            rng = np.random.default_rng([s, k] if isinstance(s, int) else [int(round(s * 1000)), k, 1])
            y = (x + s / 255.0 * rng.standard_normal(x.shape)).astype(np.float32)
            row = dict(image=name, sigma=s, noisy=_psnr(y, x), results={})
            for pname, prior in priors.items():
                t = time.perf_counter()
                out = prior(y, s / 255.0)
                dt = time.perf_counter() - t
                row["results"][pname] = dict(psnr=_psnr(out, x), time=dt)
            rows.append(row)
            print(f"σ={s:>4g} {name:18s} noisy {row['noisy']:5.2f} "
                  + " ".join(f"| {p} {v['psnr']:5.2f} ({v['time']:.2f} s)" for p, v in row["results"].items()),
                  flush=True)
    summary = []
    for s in sigmas:
        sel = [r for r in rows if r["sigma"] == s]
        for pname in priors:
            summary.append(dict(sigma=s, method=pname, n=len(sel), noisy=float(np.mean([r["noisy"] for r in sel])),
                                psnr=float(np.mean([r["results"][pname]["psnr"] for r in sel])),
                                time=float(np.mean([r["results"][pname]["time"] for r in sel]))))
    result = dict(machine=dict(platform=platform.platform(), torch=torch.__version__, threads=args.threads,
                               cpus=__import__("os").cpu_count()),
                  quick=args.quick, folder=None if args.folder is None else str(args.folder), grey=args.grey,
                  images=list(images), per_image=rows, summary=summary,
                  seconds=round(time.time() - t0, 1))
    args.out.write_text(json.dumps(result, indent=2))
    print("\n| σ (/255) | method | images | noisy PSNR | PSNR | time / image (s) |")
    print("|---|---|---|---|---|---|")
    for t in summary:
        print(f"| {t['sigma']} | {t['method']} | {t['n']} | {t['noisy']:.2f} | {t['psnr']:.2f} | {t['time']:.2f} |")
    print(f"\nwrote {args.out} ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main()
