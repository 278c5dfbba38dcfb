"""Wall time of a whole non-blind deblur (HQS with the CG x-step) per device and path.

Blurs a sample photo (resized to the requested size, RGB, float32) with a Gong-style
per-pixel motion flow (|m| ≤ 46 px), adds noise σ = 0.01 and runs
``pd.solvers.hqs`` with the default schedule (8 outer iterations, up to 30 CG
iterations each) and a TV or the shipped DnCNN prior. Reports the time of the solve
(after one warm-up solve on a small crop, so JIT/NVRTC compilation is excluded), the
number of K/Kᵀ pairs it applied (CG iterations + 1 per outer step) and the PSNR gain,
so that the time per operator pair can be set against ``operators.py``.

Usage::

    python benchmarks/solver_speed.py [--device cpu|cuda] [--size 720x1280] [--priors TV,DnCNN] [--repeats 1]
                                      [--flow-kind torch|numpy|inference]

``--flow-kind`` gives the operator its flow as a torch tensor (default), as a numpy array (the
README's usual way), or as a tensor made under ``torch.inference_mode()`` (whose in-place changes
no version counter records): the flow cache checks the last two by value.

To compare library versions (issue 14), run this script with ``PYTHONPATH`` pointing
at a ``git worktree`` of the older revision and at this checkout, alternately.

Writes ``solver_speed[_cuda].json`` beside this file.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.metrics import psnr

from _results import write_rows


def _problem(h: int, w: int, device: str):
    sharp = sample_image("astronaut", size=(h, w))  # (H, W, 3) float32
    flow = random_motion_flow((h, w), preset="46", seed=0)
    x = torch.from_numpy(sharp.transpose(2, 0, 1).copy())[None].to(device)
    f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))[None].to(device)
    rng = np.random.default_rng(0)
    y = pd.MotionBlur(f)(x) + 0.01 * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32)).to(device)
    return x, f, y


def _as_kind(f: torch.Tensor, kind: str):
    """The flow as the operator receives it (``--flow-kind``)."""
    if kind == "numpy":
        return f[0].cpu().numpy().copy()
    if kind == "inference":
        with torch.inference_mode():
            return f.clone()
    return f


def _solve(y, f, path, prior):
    K = pd.MotionBlur(f, path=path)
    return pd.solvers.hqs(y, K, prior=prior, noise_level=0.01, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", default="720x1280", help="HxW")
    ap.add_argument("--priors", default="TV,DnCNN", help="comma-separated subset of TV,DnCNN")
    ap.add_argument("--repeats", type=int, default=1, help="solves per configuration (the fastest is reported)")
    ap.add_argument("--flow-kind", default="torch", choices=["torch", "numpy", "inference"],
                    help="how the operator receives the flow (default: torch)")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    dev = args.device
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    paths = ["cupy", "torch"] if dev == "cuda" else ["numba"]
    if dev == "cuda" and not pd.backend.cupy_available():
        paths = ["torch"]
    makers = {"TV": lambda: pd.priors.TV(), "DnCNN": lambda: pd.priors.DnCNNPrior()}
    wanted = [p.strip() for p in args.priors.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in makers]
    if unknown or not wanted:
        ap.error(f"--priors must name some of {', '.join(makers)}, got {args.priors!r}")
    priors = {name: makers[name]() for name in wanted}
    x, f, y = _problem(h, w, dev)
    base = psnr(y.clamp(0, 1), x)
    rows = []
    for path in paths:
        for name, prior in priors.items():
            warm = _as_kind(f[..., :32, :32].contiguous(), args.flow_kind)
            _solve(y[..., :32, :32].contiguous(), warm, path, prior)  # warm-up
            dt = float("inf")
            for _ in range(max(1, args.repeats)):
                given = _as_kind(f, args.flow_kind)  # a new flow per solve: nothing cached before it
                sync()
                t0 = time.perf_counter()
                res = _solve(y, given, path, prior)
                sync()
                dt = min(dt, time.perf_counter() - t0)
            pairs = sum(e.get("cg_iterations", 0) + 1 for e in res.history)
            gain = psnr(res.x.clamp(0, 1), x) - base
            rows.append(dict(path=path, prior=name, flow_kind=args.flow_kind, seconds=dt, operator_pairs=pairs,
                             psnr_gain_db=gain))
            print(f"{w}x{h}x3  {args.flow_kind:9s} {path:6s} {name:6s} {dt:8.2f} s  {pairs:4d} K/Kᵀ pairs  "
                  f"{1e3 * dt / pairs:8.2f} ms/pair  gain {gain:+.2f} dB", flush=True)
    write_rows("solver_speed", dev, rows, gpu=torch.cuda.get_device_name() if dev == "cuda" else None, size=[h, w],
               library=os.path.dirname(pd.__file__))


if __name__ == "__main__":
    main()
