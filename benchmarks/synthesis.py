"""Synthesis check (issue 5): does reblurring the sharp middle frame with the true flows
reproduce the frame-averaged blur?

For each camera motion kind, CRF (linear averaging, gamma 2.2) and photo, a GOPRO-style pair is
synthesised with :func:`pnpdeblur.data.synthesize_video_blur`; the sharp middle frame is then
reblurred with

* ``MotionBlur(exposure_flow)`` (line kernel of the motion during the exposure), and
* ``TwoSegmentBlur(flow_next, flow_prev, tau=0.5)`` (Reblur2Deblur kernel from the flows to the
  neighbouring blurred frames' middle frames),

in the observed (gamma-encoded) values, and, for the gamma case, also in linear intensity
(``g(K g⁻¹(sharp))``). PSNR against the averaged blurred frame is measured on the interior
(a border of ``max_blur`` px is excluded). "no reblur" is PSNR(sharp, blurred), the floor.
Also reports statistics of the Gong-style flow presets.

Usage: ``python benchmarks/synthesis.py [--quick] [--json benchmarks/synthesis.json]``
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from pnpdeblur.data import random_motion_flow, sample_image, synthesize_video_blur
from pnpdeblur.metrics import psnr
from pnpdeblur.operators import MotionBlur, TwoSegmentBlur


def reblur_scores(photo, motion, gamma, n_frames, seed, max_blur, foreground=False):
    s = synthesize_video_blur(photo, n_frames=n_frames, motion=motion, max_blur=max_blur,
                              min_blur=max_blur / 2, gamma=gamma, foreground=foreground, seed=seed)
    m = int(np.ceil(max_blur))

    def crop(z):
        return np.asarray(z)[m:-m, m:-m]

    mb = MotionBlur(s.exposure_flow)
    ts = TwoSegmentBlur(s.flow_next, s.flow_prev, tau=0.5)
    out = {
        "no_reblur": psnr(crop(s.sharp), crop(s.blurred)),
        "motionblur": psnr(crop(mb(s.sharp)), crop(s.blurred)),
        "twosegment": psnr(crop(ts(s.sharp)), crop(s.blurred)),
    }
    if gamma:
        lin = s.sharp.astype(np.float64) ** gamma
        enc = lambda z: np.clip(np.asarray(z), 0, 1) ** (1 / gamma)  # noqa: E731
        out["motionblur_linear"] = psnr(crop(enc(mb(lin))), crop(s.blurred))
        out["twosegment_linear"] = psnr(crop(enc(ts(lin))), crop(s.blurred))
    return out


def flow_stats(preset, n, shape=(256, 256)):
    t = time.perf_counter()
    flows = [random_motion_flow(shape, preset, seed=k) for k in range(n)]
    dt = (time.perf_counter() - t) / n
    f = np.stack(flows)
    mag = np.hypot(f[:, 0], f[:, 1])
    varying = np.mean([len(np.unique(x.reshape(2, -1), axis=1).T) > 1 for x in f])
    return {
        "max_abs": float(np.abs(f).max()), "mean_len": float(mag.mean()), "p95_len": float(np.percentile(mag, 95)),
        "min_u": float(f[:, 0].min()), "integer": bool(np.all(f == np.rint(f))),
        "spatially_varying_frac": float(varying), "ms_per_flow": 1000 * dt,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer photos and seeds")
    ap.add_argument("--json", default="benchmarks/synthesis.json")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    photos = ["astronaut", "coffee"] if args.quick else ["astronaut", "coffee", "chelsea", "rocket"]
    seeds = [0] if args.quick else [0, 1, 2]
    max_blur = 16.0
    cases = [("translation", None, False), ("translation", 2.2, False), ("rotation", None, False),
             ("rotation", 2.2, False), ("zoom", None, False), ("zoom", 2.2, False), ("mixed", None, False),
             ("mixed", 2.2, False), ("translation", None, True)]
    rows = []
    t0 = time.perf_counter()
    for motion, gamma, fg in cases:
        for n_frames in (7, 13):
            scores = []
            for name in photos:
                photo = sample_image(name, args.size + 2 * int(max_blur), channels=3).astype(np.float64)
                for seed in seeds:
                    scores.append(reblur_scores(photo, motion, gamma, n_frames, seed, max_blur, fg))
            keys = scores[0].keys()
            row = {"motion": motion + ("+foreground" if fg else ""), "gamma": gamma or 1.0, "n_frames": n_frames,
                   "samples": len(scores)}
            for k in keys:
                vals = np.array([s[k] for s in scores])
                row[k] = float(vals.mean())
                row[k + "_min"] = float(vals.min())
            rows.append(row)
    elapsed = time.perf_counter() - t0
    hdr = f"{'motion':24s} {'gamma':>5s} {'N':>3s} {'no reblur':>9s} {'MotionBlur':>10s} {'(min)':>6s} " \
          f"{'TwoSeg':>7s} {'(min)':>6s} {'MB lin':>7s} {'TS lin':>7s}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lin_mb = f"{r['motionblur_linear']:7.2f}" if "motionblur_linear" in r else f"{'':7s}"
        lin_ts = f"{r['twosegment_linear']:7.2f}" if "twosegment_linear" in r else f"{'':7s}"
        print(f"{r['motion']:24s} {r['gamma']:5.1f} {r['n_frames']:3d} {r['no_reblur']:9.2f} {r['motionblur']:10.2f} "
              f"{r['motionblur_min']:6.2f} {r['twosegment']:7.2f} {r['twosegment_min']:6.2f} {lin_mb} {lin_ts}")
    stats = {p: flow_stats(p, 10 if args.quick else 50) for p in ("23", "46")}
    print("\nflow presets (256x256):")
    for p, s in stats.items():
        print(f"  preset {p}: max|u|,|v| {s['max_abs']:.0f}  mean |m| {s['mean_len']:.1f}  p95 |m| {s['p95_len']:.1f}  "
              f"min u {s['min_u']:.0f}  integer {s['integer']}  varying {s['spatially_varying_frac']:.2f}  "
              f"{s['ms_per_flow']:.1f} ms/flow")
    print(f"\n{len(photos)} photos x {len(seeds)} seeds, {args.size}x{args.size}, max blur {max_blur:.0f} px; "
          f"{elapsed:.1f} s; {platform.processor() or platform.machine()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "flow_presets": stats, "photos": photos, "seeds": seeds, "size": args.size,
                       "max_blur": max_blur, "machine": platform.platform()}, fh, indent=1)


if __name__ == "__main__":
    main()
