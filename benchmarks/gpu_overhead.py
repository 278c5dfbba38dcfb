"""Per-call overhead, batch throughput and a profile of a whole solve on a CUDA device (issue 14, part 3).

Four measurements, all on the default (CuPy) path for CUDA tensors, float32 RGB, flow of
constant length |m| (as in ``operators.py``):

``calls``
    Time per ``K(x)``, ``Kᵀ(y)`` and ``KᵀK(x)`` call through the public operator (which
    checks its input for NaN/Inf: one device read per call), through the public operator with
    ``check_finite=False`` (no scan, no read) and through the internal
    ``K._forward``/``_adjoint``/``_normal`` that the solvers call, as the mean over
    ``--calls`` back-to-back calls with one synchronisation at the end, against the kernels alone: the same launches through the bare launcher
    (``pnpdeblur.operators._cupy.run``, no checks) queued behind a sleeping kernel and
    timed with one pair of CUDA events around them. Overhead = call − kernel.
``batch``
    K + Kᵀ of 16 images of 256² in one call (N = 16, one flow per image) against 16 calls
    of one image each: images per second of both and their ratio, with the public calls'
    NaN/Inf scan on and off (``check_finite``).
``solve``
    A whole ``hqs`` solve with TV of a 1280×720 photo (as ``solver_speed.py``), timed
    after a warm-up.
``profile``
    The same solve under :mod:`cProfile` (the top functions by own time) and
    :mod:`torch.profiler` (the top CUDA kernels by GPU time).

Usage::

    PYTHONPATH=. python benchmarks/gpu_overhead.py [--parts calls,batch,solve,profile] [--calls 200]

Writes ``gpu_overhead_cuda.json`` beside this file (the profiles go to stdout).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pnpdeblur as pd  # noqa: E402
from pnpdeblur.data import random_motion_flow, sample_image  # noqa: E402
from pnpdeblur.operators import _cupy  # noqa: E402

from _results import write_rows  # noqa: E402


def _flow(n: int, h: int, w: int, length: float, dev) -> torch.Tensor:
    ang = torch.linspace(0, np.pi, h * w, dtype=torch.float64).reshape(h, w)
    f = torch.stack([length * torch.cos(ang), length * torch.sin(ang)])[None].repeat(n, 1, 1, 1)
    return f.float().to(dev)


def _per_call(fn, x, calls: int) -> float:
    for _ in range(5):
        fn(x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(x)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls


def _kernel_time(fn, x, calls: int) -> float:
    """GPU time per call, from CUDA events around ``calls`` calls queued back to back.

    ``fn`` must not synchronise (the raw launcher, not the checked public call).
    """
    for _ in range(5):
        fn(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    # Queue the calls behind a long kernel so the GPU never waits for the host: the
    # events then bracket the kernels alone.
    torch.cuda._sleep(int(2e8))
    start.record()
    for _ in range(calls):
        fn(x)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / calls


def part_calls(args, dev) -> list:
    rows = []
    for h, w in ((256, 256), (720, 1280)):
        x = torch.rand(1, 3, h, w, device=dev)
        K = pd.MotionBlur(_flow(1, h, w, args.length, dev))
        vec = K.flow[:, None].double().contiguous()
        mass = torch.ones_like(vec[:, :, 0])
        raw = {"K": lambda t: _cupy.run(t, vec, mass, 0.0, False),
               "Kt": lambda t: _cupy.run(t, vec, mass, 0.0, True)}
        raw["KtK"] = lambda t: raw["Kt"](raw["K"](t))
        ops = (("K", K.apply), ("Kt", K.adjoint), ("KtK", K.normal),
               # public calls without the NaN/Inf scan (no device read, no wait for the GPU)
               ("K unchecked", lambda t: K.apply(t, check_finite=False)),
               ("Kt unchecked", lambda t: K.adjoint(t, check_finite=False)),
               ("KtK unchecked", lambda t: K.normal(t, check_finite=False)),
               # what the solvers call: no array conversion, no NaN/Inf check (no device read)
               ("K internal", K._forward), ("Kt internal", K._adjoint), ("KtK internal", K._normal))
        raw.update({op + suffix: raw[op] for op in ("K", "Kt", "KtK") for suffix in (" internal", " unchecked")})
        for op, fn in ops:
            calls = args.calls if h == 256 else max(20, args.calls // 4)
            call = _per_call(fn, x, calls)
            kern = _kernel_time(raw[op], x, calls)
            rows.append(dict(part="calls", size=f"{w}x{h}", op=op, call_ms=1e3 * call, gpu_ms=1e3 * kern,
                             overhead_ms=1e3 * max(call - kern, 0.0)))
            print(f"{w}x{h} {op:12s} per call {1e3 * call:7.3f} ms   GPU {1e3 * kern:7.3f} ms", flush=True)
    return rows


def part_batch(args, dev) -> list:
    n, s = 16, 256
    x = torch.rand(n, 3, s, s, device=dev)
    f = _flow(n, s, s, args.length, dev) * torch.linspace(0.5, 1.0, n, device=dev).view(n, 1, 1, 1)
    Kb = pd.MotionBlur(f)
    singles = [pd.MotionBlur(f[i:i + 1].contiguous()) for i in range(n)]

    rows = []
    for check in (True, False):  # public calls with and without the NaN/Inf scan

        def batched(_):
            Kb.adjoint(Kb.apply(x, check_finite=check), check_finite=check)

        def separate(_):
            for i, K in enumerate(singles):
                K.adjoint(K.apply(x[i:i + 1], check_finite=check), check_finite=check)

        reps = max(10, args.calls // 10)
        tb = _per_call(batched, None, reps)
        ts = _per_call(separate, None, reps)
        print(f"batch of {n} {s}², check_finite={check}: one call {1e3 * tb:.3f} ms, {n} calls {1e3 * ts:.3f} ms, "
              f"ratio {ts / tb:.2f}×", flush=True)
        rows.append(dict(part="batch", n=n, size=s, check_finite=check, one_call_ms=1e3 * tb,
                         separate_calls_ms=1e3 * ts, ratio=ts / tb))
    return rows


def _solve_problem(dev):
    h, w = 720, 1280
    sharp = sample_image("astronaut", size=(h, w))
    flow = random_motion_flow((h, w), preset="46", seed=0)
    x = torch.from_numpy(sharp.transpose(2, 0, 1).copy())[None].to(dev)
    f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))[None].to(dev)
    g = torch.Generator().manual_seed(0)
    y = pd.MotionBlur(f)(x) + 0.01 * torch.randn(x.shape, generator=g).to(dev)
    return x, f, y


def _hqs(y, f):
    return pd.solvers.hqs(y, pd.MotionBlur(f), prior=pd.priors.TV(), noise_level=0.01, progress=False)


def part_solve(args, dev) -> list:
    x, f, y = _solve_problem(dev)
    _hqs(y[..., :64, :64].contiguous(), f[..., :64, :64].contiguous())
    best = float("inf")
    for _ in range(args.repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = _hqs(y, f)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    pairs = sum(e.get("cg_iterations", 0) + 1 for e in res.history)
    gain = pd.metrics.psnr(res.x.clamp(0, 1), x) - pd.metrics.psnr(y.clamp(0, 1), x)
    print(f"HQS+TV 1280x720: {best:.3f} s, {pairs} K/Kt pairs, gain {gain:+.2f} dB", flush=True)
    return [dict(part="solve", seconds=best, operator_pairs=pairs, psnr_gain_db=gain)]


def part_profile(args, dev) -> list:
    x, f, y = _solve_problem(dev)
    _hqs(y, f)
    torch.cuda.synchronize()
    prof = cProfile.Profile()
    prof.enable()
    _hqs(y, f)
    torch.cuda.synchronize()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
    print(s.getvalue(), flush=True)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        _hqs(y, f)
        torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=25), flush=True)
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="calls,batch,solve", help="comma-separated: calls, batch, solve, profile")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--length", type=float, default=46.0, help="|m| of the calls/batch flows, px")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        ap.error("needs a CUDA device")
    dev = torch.device("cuda")
    parts = {"calls": part_calls, "batch": part_batch, "solve": part_solve, "profile": part_profile}
    rows = []
    for p in (q.strip() for q in args.parts.split(",") if q.strip()):
        if p not in parts:
            ap.error(f"--parts must name some of {', '.join(parts)}, got {p!r}")
        rows += parts[p](args, dev)
    write_rows("gpu_overhead", "cuda", rows, gpu=torch.cuda.get_device_name(), library=os.path.dirname(pd.__file__),
               backend=pd.backend.info() if hasattr(pd.backend, "info") else None)


if __name__ == "__main__":
    main()
