"""CG iterations of the HQS x-step with and without the "uniform" preconditioner (issue 14).

For each flow and each β of the default DPIR schedule (``dpir_schedule(0.01, 8)``) this
solves ``(KᵀK + β I) x = Kᵀy + β y`` (x0 = y, as HQS's first warm start) on a 256² grey
photo (astronaut, float64 so that 1e-6 is reachable) blurred by ``MotionBlur`` plus
noise σ = 0.01, to tol 1e-6, and reads the iteration where the relative residual first
falls below 1e-4 from the same run. Wall time is that of the 1e-6 solve (the
preconditioner's set-up, done once per solve in HQS, is reported separately).

Usage::

    python benchmarks/pcg.py [--size 256]

Writes ``pcg.json`` beside this file.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.solvers.cg import _cg_core
from pnpdeblur.solvers.preconditioners import UniformPreconditioner
from pnpdeblur.solvers.schedules import dpir_schedule

from _results import write_rows


def _first_below(hist, tol):
    for i, h in enumerate(hist):
        if h[0] <= tol:
            return i
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--maxiter", type=int, default=1000)
    args = ap.parse_args()
    n = args.size
    torch.set_num_threads(2)
    sharp = sample_image("astronaut", size=n).mean(-1).astype(np.float64)
    x = torch.from_numpy(sharp)[None, None]
    _, betas = dpir_schedule(0.01, 8)
    flows = {
        "preset 23": random_motion_flow((n, n), preset="23", seed=0),
        "preset 46": random_motion_flow((n, n), preset="46", seed=0),
        "uniform (12, 9)": np.stack([np.full((n, n), 12.0), np.full((n, n), 9.0)]),  # reference
    }
    rows = []
    print(f"{'flow':16s} {'beta':>8s} | {'it1e-4':>6s} {'pc':>5s} | {'it1e-6':>6s} {'pc':>5s} | "
          f"{'t plain':>8s} {'t pc':>8s}")
    for name, flow in flows.items():
        K = pd.MotionBlur(flow.astype(np.float64))
        rng = np.random.default_rng(0)
        y = K._forward(x) + 0.01 * torch.from_numpy(rng.standard_normal(x.shape))
        Kty = K._adjoint(y)
        t0 = time.perf_counter()
        P = UniformPreconditioner(K, (n, n), torch.float64, "cpu")
        t_setup = time.perf_counter() - t0
        for beta in betas:
            A = lambda t: K._adjoint(K._forward(t)) + beta * t  # noqa: E731
            b = Kty + beta * y
            res = {}
            for label, M in (("plain", None), ("uniform", lambda r: P(r, beta))):
                t0 = time.perf_counter()
                _, info = _cg_core(A, b, y, 1e-6, 0.0, args.maxiter, M)
                res[label] = (time.perf_counter() - t0, _first_below(info.history, 1e-4),
                              info.iterations if info.converged else None)
            row = dict(flow=name, beta=beta, size=n,
                       iters_1e4_plain=res["plain"][1], iters_1e4_uniform=res["uniform"][1],
                       iters_1e6_plain=res["plain"][2], iters_1e6_uniform=res["uniform"][2],
                       time_plain_s=res["plain"][0], time_uniform_s=res["uniform"][0],
                       setup_uniform_s=t_setup)
            rows.append(row)
            print(f"{name:16s} {beta:8.2g} | {row['iters_1e4_plain']!s:>6s} {row['iters_1e4_uniform']!s:>5s} | "
                  f"{row['iters_1e6_plain']!s:>6s} {row['iters_1e6_uniform']!s:>5s} | "
                  f"{row['time_plain_s']:8.2f} {row['time_uniform_s']:8.2f}", flush=True)
    write_rows("pcg", "cpu", rows, note="None = not reached within maxiter", maxiter=args.maxiter)


if __name__ == "__main__":
    main()
