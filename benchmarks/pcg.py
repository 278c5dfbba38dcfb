"""CG iterations of the HQS x-step with and without preconditioning (issue 14, part 1).

Part 1 (default): for each flow and each β of the default DPIR schedule
(``dpir_schedule(0.01, 8)``) this solves ``(KᵀK + β I) x = Kᵀy + β y`` (x0 = y, as HQS's
first warm start) on a 256² grey photo (astronaut, float64 so that 1e-6 is reachable)
blurred by ``MotionBlur`` plus noise σ = 0.01, to tol 1e-6, and reads the iteration where
the relative residual first falls below 1e-4 from the same run. Methods: plain CG,
``"uniform"`` (one fitted line kernel), ``"tiles"`` with several tile sizes
(``TiledPreconditioner``), the same with a shift δ (the tiles invert ``|H_t|² + β + δ``)
and ``"jacobi"`` (exact diag(KᵀK)). CG iteration counts are
deterministic, so the machine's load does not change them; wall times do.

Part 2 (``--hqs``): whole HQS solves with TV and with the shipped DnCNN at 256² RGB
float32, the x-step's CG capped as ``pd.deblur`` caps it (``cg_iters=10, cg_tol=1e-4``),
noise level as ``pd.deblur`` passes it (``max(σ, noise_floor=0.05)``) and the true σ;
PSNR against the sharp image per preconditioner.

Usage::

    python benchmarks/pcg.py [--size 256] [--presets 23 46 uniform] [--methods plain tiles64 ...]
    python benchmarks/pcg.py --hqs [--methods plain tiles64s0.1 ...]

Writes ``pcg.json`` (part 1) or ``pcg_hqs.json`` (part 2) beside this file.
"""
from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.solvers.cg import _cg_core
from pnpdeblur.solvers.preconditioners import JacobiPreconditioner, TiledPreconditioner, UniformPreconditioner
from pnpdeblur.solvers.schedules import dpir_schedule

from _results import write_rows


def _first_below(hist, tol):
    for i, h in enumerate(hist):
        if h[0] <= tol:
            return i
    return None


def _flow(name: str, n: int) -> np.ndarray:
    if name == "uniform":  # reference: an exactly uniform flow
        return np.stack([np.full((n, n), 12.0), np.full((n, n), 9.0)])
    return random_motion_flow((n, n), preset=name, seed=0).astype(np.float64)


def _make(method: str, K, n: int, dtype):
    """One preconditioner from its label: plain, uniform, jacobi, tiles<T>[s<shift>], uniforms<shift>."""
    if method == "plain":
        return None
    if method == "uniform":
        return UniformPreconditioner(K, (n, n), dtype, "cpu")
    if method == "jacobi":
        return JacobiPreconditioner(K, (n, n), dtype, "cpu")
    m = re.fullmatch(r"(tiles(\d+)|uniform)(?:s([0-9.e-]+))?", method)
    if m is None:
        raise ValueError(f"unknown method {method!r}")
    tile = int(m.group(2)) if m.group(2) else 10**9  # one tile: the uniform kernel
    return TiledPreconditioner(K, (n, n), dtype, "cpu", tile=tile, shift=float(m.group(3) or 0.0))


def _build(K, n, dtype, methods):
    """{label: (P(r, beta) or None, set-up seconds)}."""
    out = {}
    for m in methods:
        t0 = time.perf_counter()
        P = _make(m, K, n, dtype)
        out[m] = (P, time.perf_counter() - t0)
    return out


def iterations(args) -> None:
    n = args.size
    sharp = sample_image("astronaut", size=n).mean(-1).astype(np.float64)
    x = torch.from_numpy(sharp)[None, None]
    _, betas = dpir_schedule(0.01, 8)
    rows = []
    for name in args.presets:
        K = pd.MotionBlur(torch.from_numpy(_flow(name, n)))
        rng = np.random.default_rng(0)
        y = K._forward(x) + 0.01 * torch.from_numpy(rng.standard_normal(x.shape))
        Kty = K._adjoint(y)
        pcs = _build(K, n, torch.float64, args.methods)
        labels = list(pcs)
        print(f"flow {name}: set-up (s) " + ", ".join(f"{k} {v[1]:.2f}" for k, v in pcs.items()), flush=True)
        print(f"{'beta':>8s} | " + " ".join(f"{k:>15s}" for k in labels) + "   (it 1e-4/it 1e-6/time s)")
        # largest β first: the cheap rows come in first, and partial runs are saved per row
        for beta in sorted((b for b in betas if b < args.below), reverse=True):
            A = lambda t: K._normal(t) + beta * t  # noqa: E731
            b = Kty + beta * y
            cells = []
            for label in labels:
                P = pcs[label][0]
                M = None if P is None else (lambda r, P=P: P(r, beta))
                t0 = time.perf_counter()
                _, info = _cg_core(A, b, y, 1e-6, 0.0, args.maxiter, M)
                dt = time.perf_counter() - t0
                row = dict(flow=name, beta=beta, size=n, method=label,
                           iters_1e4=_first_below(info.history, 1e-4),
                           iters_1e6=info.iterations if info.converged else None,
                           time_s=dt, setup_s=pcs[label][1])
                rows.append(row)
                cells.append(f"{row['iters_1e4']!s:>4s}/{row['iters_1e6']!s:>4s}/{dt:5.1f}")
            print(f"{beta:8.2g} | " + " ".join(f"{c:>15s}" for c in cells), flush=True)
            write_rows(args.out, "cpu", rows, note="None = not reached within maxiter", maxiter=args.maxiter)


def hqs_runs(args) -> None:
    from pnpdeblur.priors import TV
    from pnpdeblur.priors.learned import DnCNNPrior

    n = args.size
    sharp = torch.from_numpy(sample_image("astronaut", size=n).astype(np.float32)).permute(2, 0, 1)[None]
    rows = []
    for name in args.presets:
        flow = torch.from_numpy(_flow(name, n).astype(np.float32))[None]
        K = pd.MotionBlur(flow)
        g = torch.Generator().manual_seed(0)
        y = (K._forward(sharp) + 0.01 * torch.randn(sharp.shape, generator=g)).clamp(0, 1)
        for prior_name, prior in (("TV", TV()), ("DnCNN", DnCNNPrior())):
            for level in args.levels:
                for lab in args.methods:
                    t0 = time.perf_counter()
                    spec = _make(lab, K, n, torch.float32)
                    res = pd.solvers.hqs(y, K, prior, noise_level=level, n_iter=8, cg_iters=args.cg_iters,
                                         cg_tol=1e-4, preconditioner=spec)
                    dt = time.perf_counter() - t0
                    psnr = float(pd.metrics.psnr(res.x.clamp(0, 1), sharp))
                    its = sum(h["cg_iterations"] for h in res.history)
                    row = dict(flow=name, prior=prior_name, noise_level=level, method=lab, psnr=psnr,
                               cg_iterations=its, time_s=dt, cg_iters=args.cg_iters)
                    rows.append(row)
                    print(f"{name:8s} {prior_name:6s} σ={level:<5g} {lab:8s} PSNR {psnr:6.2f} dB  "
                          f"CG its {its:4d}  {dt:6.1f} s", flush=True)
    write_rows(args.out, "cpu", rows, note="PSNR of the clamped HQS output against the sharp image")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--maxiter", type=int, default=400)
    ap.add_argument("--presets", nargs="+", default=["23", "46", "uniform"])
    ap.add_argument("--methods", nargs="+",
                    default=["plain", "uniform", "tiles32", "tiles64", "tiles128", "jacobi", "tiles64s0.1"],
                    help="plain, uniform, jacobi, tiles<T> (tile T px), tiles<T>s<δ> / uniforms<δ> (shift δ)")
    ap.add_argument("--hqs", action="store_true", help="part 2: capped HQS solves, PSNR per preconditioner")
    ap.add_argument("--cg-iters", type=int, default=10, help="the x-step's CG cap in --hqs (pd.deblur: 10)")
    ap.add_argument("--levels", nargs="+", type=float, default=[0.05, 0.01],
                    help="--hqs: noise levels given to HQS (pd.deblur passes max(σ, 0.05))")
    ap.add_argument("--below", type=float, default=float("inf"), help="part 1: only the β below this")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (use 1 on a shared machine: 2 contended threads made every op 100x slower)")
    ap.add_argument("--out", default=None, help="json stem (default pcg / pcg_hqs)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.hqs:
        args.out = args.out or "pcg_hqs"
        hqs_runs(args)
    else:
        args.out = args.out or "pcg"
        iterations(args)


if __name__ == "__main__":
    main()
