"""Blurred photos stored as JPEG: what lossy coding does to the noise estimate of ``pd.deblur``.

JPEG quantises away most of the noise in the finest frequencies, where the wavelet (MAD) rule
of :func:`pnpdeblur.pipeline.estimate_noise_level` measures it, so the fine-band estimate of a
noisy JPEG is far too low and HQS under-regularises. With ``compression=True`` (what
``pd.deblur`` uses) a colour photo whose chroma has lost its fine-band noise (4:2:0 coding) is
measured an octave coarser, on the luma, where the coding keeps the noise.

Each sharp photo of ``--folder`` (its centre ``--size``²) is blurred by a Gong flow of each
preset, given Gaussian noise of each σ and stored as 8-bit PNG or JPEG of each quality
(``--formats``, Pillow's encoder, 4:2:0 chroma). ``pd.deblur`` (its defaults, safeguard off, so
that every input is deconvolved) then runs with the noise level given by

* ``fine``: the finest band alone (``estimate_noise_level(..., compression=False)``),
* ``compression``: the rule ``pd.deblur`` uses (``compression=True``), with each weight of
  ``--weights`` for its coarser band (``COARSE_BAND_WEIGHT`` is the library's),
* ``true``: the σ of the noise added before storage (an oracle),

each floored at ``pd.deblur``'s noise floor as ``pd.deblur`` floors its own estimate; runs
whose floored levels agree are shared. ``--grid`` adds fixed levels, to see which one was
best. PSNR against the sharp photo. Seeds: ``--seed`` + the photo's position.

Usage::

    # tuning (the weight), then held out; the runs of benchmarks/RESULTS.md, "Compressed photos"
    python benchmarks/compression.py --folder .data/bsds500/val --n 6 --sigmas 0,0.01,0.04,0.06 \\
        --weights 0.8,0.9,1.0 --tag val
    python benchmarks/compression.py --folder .data/bsds500/test --n 10 --seed 1000 --sigmas 0,0.01,0.04 --tag test
    python benchmarks/compression.py --grid 0.02,0.03,0.04,0.05,0.06,0.08 --tag grid   # fixed levels too

Writes ``compression[_TAG].json`` beside this file; ``python benchmarks/compression.py --summarise
FILE`` recomputes a written file's summary from its rows.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pnpdeblur as pd  # noqa: E402
import pnpdeblur.pipeline as pipeline  # noqa: E402
from pnpdeblur.data import list_images, random_motion_flow, read_image  # noqa: E402
from pnpdeblur.metrics import psnr  # noqa: E402

from _results import write_rows  # noqa: E402
from blind import crop  # noqa: E402
from saturation import stored  # noqa: E402


def estimate(y: np.ndarray, weight: float | None) -> float:
    """The noise estimate of (H, W, C) ``y``: fine band alone (``weight`` None), else the
    compression-aware rule with that weight for the coarser band."""
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())[None]
    if weight is None:
        return pipeline.estimate_noise_level(t, saturation=pd.solvers.DEFAULT_SATURATION)[0]
    default = pipeline.COARSE_BAND_WEIGHT
    pipeline.COARSE_BAND_WEIGHT = weight
    try:
        return pipeline.estimate_noise_level(t, saturation=pd.solvers.DEFAULT_SATURATION, compression=True)[0]
    finally:
        pipeline.COARSE_BAND_WEIGHT = default


def chroma_ratio(y: np.ndarray) -> float:
    """The JPEG test's statistic for (H, W, 3) ``y`` as ``pd.deblur`` computes it: the chroma's
    fine-band noise over the luma's (read as coded below ``CHROMA_NOISE_RATIO``)."""
    t = torch.from_numpy(y.transpose(2, 0, 1).astype(np.float64))[None]
    t = t[..., : t.shape[-2] // 2 * 2, : t.shape[-1] // 2 * 2]
    fine = pipeline._fine_ycbcr_sigma(t, pd.solvers.DEFAULT_SATURATION)[0]
    return float(fine[1:].mean() / fine[0]) if fine[0] > 0 else float("nan")


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default=".data/bsds500/val", help="sharp photos (not training photos)")
    ap.add_argument("--n", type=int, default=6, help="first N photos of the folder (by name)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7000, help="seed of photo k: SEED + k")
    ap.add_argument("--presets", default="23,46")
    ap.add_argument("--sigmas", default="0.01,0.04", help="noise std added before storage")
    ap.add_argument("--formats", default="png8,jpeg90,jpeg75")
    ap.add_argument("--weights", default=f"{pipeline.COARSE_BAND_WEIGHT:g}",
                    help="weights of the coarser band to compare (default: the library's)")
    ap.add_argument("--grid", default="", help="fixed noise levels to run as well, e.g. 0.02,0.04")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    floor = pipeline.DEFAULT_NOISE_FLOOR
    weights = [float(w) for w in args.weights.split(",")]
    grid = [float(g) for g in args.grid.split(",") if g]
    rows = []
    for preset in args.presets.split(","):
        for sigma in (float(s) for s in args.sigmas.split(",")):
            for k, path in enumerate(list_images(args.folder)[: args.n]):
                sharp = crop(read_image(path, 3), args.size)
                rng = np.random.default_rng(args.seed + k)
                flow = random_motion_flow(sharp.shape[:2], preset, rng)
                y = np.asarray(pd.MotionBlur(flow)(sharp), np.float32)
                y = np.clip(y + sigma * rng.standard_normal(y.shape).astype(np.float32), 0, 1)
                for fmt in args.formats.split(","):
                    yq = stored(y, fmt)
                    levels = {"fine": estimate(yq, None), "true": sigma}
                    levels.update({f"compression_{w:g}": estimate(yq, w) for w in weights})
                    levels.update({f"fixed_{g:g}": g for g in grid})
                    row = dict(image=path.name, preset=preset, sigma=sigma, format=fmt,
                               psnr_blurred=float(psnr(yq, sharp, channel_axis=-1)), chroma_ratio=chroma_ratio(yq))
                    done: dict = {}
                    for name, level in levels.items():
                        key = round(max(level, floor), 6)
                        if key not in done:
                            t0 = time.perf_counter()
                            res = pd.deblur(yq, noise_level=key, safeguard=False)
                            done[key] = (float(psnr(np.clip(res.x, 0, 1), sharp, channel_axis=-1)),
                                         time.perf_counter() - t0)
                        row[f"level_{name}"] = level
                        row[f"psnr_{name}"] = done[key][0]
                    rows.append(row)
                    print({a: (round(b, 4) if isinstance(b, float) else b) for a, b in row.items()}, flush=True)
    return write_rows("compression" + (f"_{args.tag}" if args.tag else ""), "cpu", rows, summary=summarise(rows),
                      folder=args.folder, n=args.n, size=args.size, seed=args.seed, noise_floor=floor,
                      default_weight=pipeline.COARSE_BAND_WEIGHT)


def summarise(rows: list) -> dict:
    """Mean gain over the blurred input and mean level per rule, for each (preset, σ, format), and
    the chroma test's range and count. An input identical to its sharp photo (a zero flow drawn
    and no noise: infinite PSNR) has no gain and is left out; ``n`` counts the rest."""
    summary = {}
    names = [c[len("psnr_"):] for c in rows[0] if c.startswith("psnr_") and c != "psnr_blurred"]
    for key in dict.fromkeys((r["preset"], r["sigma"], r["format"]) for r in rows):
        sel = [r for r in rows if (r["preset"], r["sigma"], r["format"]) == key and np.isfinite(r["psnr_blurred"])]
        label = f"±{key[0]} σ={key[1]:g} {key[2]}"
        entry = {n: dict(gain=float(np.mean([r[f"psnr_{n}"] - r["psnr_blurred"] for r in sel])),
                         level=float(np.mean([r[f"level_{n}"] for r in sel]))) for n in names}
        ratios = [r["chroma_ratio"] for r in sel]
        entry["chroma_ratio"] = dict(min=float(np.nanmin(ratios)), max=float(np.nanmax(ratios)),
                                     coded=int(sum(v < pipeline.CHROMA_NOISE_RATIO for v in ratios)))
        entry["n"] = len(sel)
        summary[label] = entry
        print(label + ": " + ", ".join(f"{n} {entry[n]['gain']:+.2f} dB (σ̂ {entry[n]['level']:.4f})" for n in names)
              + f"; chroma ratio {entry['chroma_ratio']['min']:.2f}–{entry['chroma_ratio']['max']:.2f}, read as "
              f"coded: {entry['chroma_ratio']['coded']} of {len(sel)}", flush=True)
    return summary


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--summarise":  # re-summarise a written file's rows
        import json

        with open(sys.argv[2]) as fh:
            data = json.load(fh)
        data["meta"]["summary"] = summarise(data["rows"])
        with open(sys.argv[2], "w") as fh:
            json.dump(data, fh, indent=1)
    else:
        main()
