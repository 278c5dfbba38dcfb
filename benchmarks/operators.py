"""Speed and memory of the motion-flow operator K and its adjoint.

For each image size and maximum flow length, runs K then Kᵀ in a fresh subprocess and
reports the time of each and the extra peak resident memory (as a multiple of the
image's bytes). Baselines in the same run: the dense sparse-matrix reference (where it
fits), and a straightforward torch implementation that loops over every offset of the
kernel's bounding box. Prints a table and writes ``operators.json`` beside this file.

With ``--device cuda`` the fast paths are the torch CUDA path and the CuPy kernels
(issue 6; skipped with a note when CuPy has no device), and a "copy" row times a
plain device copy of the image per K and per Kᵀ: the floor set by reading and
writing the same bytes. Results go to ``operators_cuda.json``.

With ``--compare REV`` (CPU; issue 14 part 2) it instead times this checkout against
the library at git revision ``REV`` (checked out into a temporary ``git worktree``)
*in the same run*: three long-lived worker processes (REV, this checkout, this
checkout with the per-flow cache off) load the operators once and are then asked
for one repeat each in turn, so load from other jobs hits all of them alike; each
figure is the minimum over ``--repeats`` rounds. It covers the line kernel at
1280×720 and 256², the LUT variant and ``TwoSegmentBlur`` (each in float32 and float64),
and ``WarpBlur``. Besides K and Kᵀ it times ``K._normal(x)`` (KᵀK as the CG x-step
applies it: one fused pass on the numba path since the fused normal operator; on a
revision without ``_normal``, the composition ``Kᵀ(K x)``). ``--cases`` restricts the
run to the cases whose name contains one of the given strings. Results go to
``operators_compare.json``.

Usage::

    python benchmarks/operators.py [--device cpu|cuda] [--quick]
    python benchmarks/operators.py --compare HEAD~3 [--repeats 5] [--cases "line 720p" LUT]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

from _results import write_rows


def flow_field(h: int, w: int, length: float) -> np.ndarray:
    """Every pixel moves by exactly ``length`` px in a smoothly turning direction (worst case)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    theta = 2 * np.pi * (xx / max(w, 1) + 0.5 * yy / max(h, 1))
    return (length * np.stack([np.cos(theta), np.sin(theta)]))[None].astype(np.float32)


def tap_by_tap(x, flow):
    """Baseline: loop over all offsets of the bounding box, weights from the formula."""
    import torch

    n, c, h, w = x.shape
    u, v = flow[:, 0], flow[:, 1]
    L = torch.sqrt(u * u + v * v)
    Ls = torch.where(L == 0, torch.ones_like(L), L)
    ux, uy = u / Ls, v / Ls
    R = int(math.ceil(float(L.max()) / 2 + 1.5))
    iy = torch.arange(h).view(1, h, 1)
    ix = torch.arange(w).view(1, 1, w)
    acc = torch.zeros_like(x)
    tot = torch.zeros_like(L)
    for ky in range(-R, R + 1):
        for kx in range(-R, R + 1):
            t = kx * ux + ky * uy
            s = (kx * uy - ky * ux).abs()
            wgt = torch.relu(1 - s) * torch.clamp(0.5 * L + 0.5 - t.abs(), 0, 1)
            wgt = torch.where(L == 0, torch.full_like(L, float(kx == 0 and ky == 0)), wgt)
            src = x[:, :, torch.clamp(iy + ky, 0, h - 1), torch.clamp(ix + kx, 0, w - 1)][:, :, 0]
            acc += wgt[:, None] * src
            tot += wgt
    return acc / tot[:, None]


def _worker(cfg: dict) -> dict:
    """Run one configuration; called in a fresh process so peak RSS is its own."""
    import torch

    import pnpdeblur as pd

    torch.set_num_threads(os.cpu_count() or 1)
    h, w, length, method, device = cfg["h"], cfg["w"], cfg["length"], cfg["method"], cfg["device"]
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32)).to(device)
    flow = torch.from_numpy(flow_field(h, w, length)).to(device)
    small = (x[..., :16, :16].contiguous(), flow[..., :16, :16].contiguous())
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    if method == "cupy":
        from pnpdeblur import backend

        ok, reason = backend.cupy_status()
        if not (ok and device == "cuda"):
            return {"skipped": reason if not ok else "the cupy path needs --device cuda"}
        out["cuda_path_default"] = backend.info()["cuda_path"]
    if method in ("numba", "torch", "cupy"):
        pd.MotionBlur(small[1], path=method).normal(small[0])  # compile / warm up
        K = pd.MotionBlur(flow, path=method)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base_gpu = torch.cuda.memory_allocated()
        reps = cfg.get("reps", 10 if device == "cuda" else 3)
        tf, ta = [], []
        for _ in range(reps):
            sync(); t0 = time.perf_counter()
            y = K._forward(x)
            sync(); t1 = time.perf_counter()
            K._adjoint(y)
            sync(); t2 = time.perf_counter()
            tf.append(t1 - t0); ta.append(t2 - t1)
        out["forward_s"], out["adjoint_s"] = min(tf), min(ta)
        if device == "cuda":
            out["peak_extra_bytes"] = torch.cuda.max_memory_allocated() - base_gpu
        else:
            out["peak_extra_bytes"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024
        if method == "cupy":  # the GPU result against the CPU kernels at this size
            y_cpu = pd.MotionBlur(flow.cpu(), path="numba")._forward(x.cpu())
            out["max_abs_diff_vs_numba"] = float((y.cpu() - y_cpu).abs().max())
    elif method == "copy":
        # bandwidth floor: read the image and write one of the same size, once per K and once per Kᵀ
        y = x.clone()
        tc = []
        for _ in range(cfg.get("reps", 10)):
            sync(); t0 = time.perf_counter()
            y.copy_(x)
            sync(); tc.append(time.perf_counter() - t0)
        out["forward_s"] = out["adjoint_s"] = min(tc)
    elif method == "tap_by_tap":
        t0 = time.perf_counter()
        y = tap_by_tap(x, flow)
        sync()
        out["forward_s"] = time.perf_counter() - t0
        y_fast = pd.MotionBlur(flow, path="numba" if device == "cpu" else "torch")._forward(x)
        out["max_abs_diff_vs_fast"] = float((y - y_fast).abs().max())
    elif method == "dense":
        from pnpdeblur.operators import dense

        t0 = time.perf_counter()
        A = dense.motion_blur_matrix(flow[0].double().cpu().numpy())
        out["build_s"] = time.perf_counter() - t0
        xn = x.double().cpu().numpy()
        t0 = time.perf_counter()
        y = dense.apply_matrix(A, xn)
        out["forward_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense.apply_matrix(A.T.tocsr(), y)
        out["adjoint_s"] = time.perf_counter() - t0
        y_fast = pd.MotionBlur(flow.double())._forward(x.double())
        out["max_abs_diff_vs_fast"] = float(np.abs(y - y_fast.cpu().numpy()).max())
    out["image_bytes"] = x.numel() * x.element_size()
    return out


#: Configurations of ``--compare``: (name, H, W, |m|, dtype, operator).
COMPARE_CASES = [
    ("line 720p f32", 720, 1280, 46.0, "float32", "line"),
    ("line 720p f64", 720, 1280, 46.0, "float64", "line"),
    ("line 256² f32", 256, 256, 46.0, "float32", "line"),
    ("line 256² f64", 256, 256, 46.0, "float64", "line"),
    ("LUT 720p f32", 720, 1280, 16.0, "float32", "lut"),
    ("LUT 720p f64", 720, 1280, 16.0, "float64", "lut"),
    ("two-segment 720p f32", 720, 1280, 23.0, "float32", "two_segment"),
    ("two-segment 720p f64", 720, 1280, 23.0, "float64", "two_segment"),
    ("WarpBlur 256² f32", 256, 256, 23.0, "float32", "warp"),
    # grey images (one channel; an optional 7th field, default 3)
    ("grey line 720p f32", 720, 1280, 46.0, "float32", "line", 1),
    ("grey line 720p f64", 720, 1280, 46.0, "float64", "line", 1),
    # the flow as a numpy array or an inference-mode tensor (an optional 8th field, default "torch")
    ("numpy-flow line 720p f32", 720, 1280, 46.0, "float32", "line", 3, "numpy"),
    ("numpy-flow line 256² f32", 256, 256, 46.0, "float32", "line", 3, "numpy"),
    ("numpy-flow two-segment 720p f32", 720, 1280, 23.0, "float32", "two_segment", 3, "numpy"),
    ("inference-flow line 720p f32", 720, 1280, 46.0, "float32", "line", 3, "inference"),
]


def _compare_worker() -> None:
    """Persistent worker: reads one JSON case per line, answers one timed repeat per line."""
    import torch

    import pnpdeblur as pd

    torch.set_num_threads(os.cpu_count() or 1)
    ops = {}
    for line in sys.stdin:
        name, h, w, length, dtype, kind, *rest = json.loads(line)
        channels = rest[0] if rest else 3
        flow_kind = rest[1] if len(rest) > 1 else "torch"
        if name not in ops:
            dt = getattr(torch, dtype)
            rng = np.random.default_rng(0)
            x = torch.from_numpy(rng.random((1, channels, h, w))).to(dt)
            f = torch.from_numpy(flow_field(h, w, length)).to(dt)
            if flow_kind == "numpy":
                f = f.numpy()
            elif flow_kind == "inference":
                with torch.inference_mode():
                    f = f.clone()
            if kind == "line":
                K = pd.MotionBlur(f)
            elif kind == "lut":
                K = pd.MotionBlur.lut(f)
            elif kind == "two_segment":
                K = pd.TwoSegmentBlur(f, -f, tau=0.5)
            else:
                K = pd.WarpBlur(f, -f, n=8, tau=0.5)
            y = K._adjoint(K._forward(x))  # warm-up: numba compilation, caches
            if hasattr(K, "_normal"):
                K._normal(x)
            ops[name] = (K, x)
        K, x = ops[name]
        t0 = time.perf_counter()
        y = K._forward(x)
        t1 = time.perf_counter()
        xt = K._adjoint(y)
        t2 = time.perf_counter()
        # KᵀK as the CG x-step applies it (a revision without _normal: the composition)
        normal = getattr(K, "_normal", None) or (lambda t: K._adjoint(K._forward(t)))
        t3 = time.perf_counter()
        z = normal(x)
        t4 = time.perf_counter()
        print(json.dumps({"forward_s": t1 - t0, "adjoint_s": t2 - t1, "normal_s": t4 - t3,
                          "checksum": float(xt.double().sum()), "checksum_normal": float(z.double().sum()),
                          "module": os.path.dirname(pd.__file__)}), flush=True)


def compare(rev: str, repeats: int, cases=COMPARE_CASES) -> list:
    """Time this checkout against revision ``rev``, interleaved (see the module docstring)."""
    import tempfile

    here = os.path.dirname(os.path.abspath(__file__))
    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True,
                          check=True).stdout.strip()
    sha = subprocess.run(["git", "rev-parse", rev], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    tree = tempfile.mkdtemp(prefix=f"pnpdeblur-{sha[:8]}-")
    subprocess.run(["git", "worktree", "add", "--detach", tree, sha], cwd=root, capture_output=True, check=True)
    rows = []
    try:
        variants = {
            f"{rev} ({sha[:8]})": dict(PYTHONPATH=tree),
            "this checkout": dict(PYTHONPATH=root),
            "this checkout, flow cache off": dict(PYTHONPATH=root, PNPDEBLUR_FLOW_CACHE_BYTES="0"),
        }
        workers = {}
        for label, extra in variants.items():
            env = {**os.environ, **extra}
            workers[label] = subprocess.Popen([sys.executable, __file__, "--compare-worker"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True, env=env, cwd=here)
        for case in cases:
            times = {label: ([], [], []) for label in workers}
            sums, modules = {}, {}
            for _ in range(repeats):
                for label, proc in workers.items():  # interleaved: one repeat of each in turn
                    proc.stdin.write(json.dumps(case) + "\n")
                    proc.stdin.flush()
                    r = json.loads(proc.stdout.readline())
                    times[label][0].append(r["forward_s"])
                    times[label][1].append(r["adjoint_s"])
                    times[label][2].append(r["normal_s"])
                    sums[label] = (r["checksum"], r["checksum_normal"])
                    modules[label] = r["module"]
            base = None
            for label, (tf, ta, tn) in times.items():
                row = dict(case=case[0], version=label, forward_s=min(tf), adjoint_s=min(ta),
                           pair_s=min(a + b for a, b in zip(tf, ta)), normal_s=min(tn), checksum=sums[label][0],
                           checksum_normal=sums[label][1], module=modules[label])
                base = base or row
                row["speedup_pair"] = base["pair_s"] / row["pair_s"]
                # the x-step's KᵀK against the base revision's K+Kᵀ (what a CG iteration costs)
                row["speedup_normal"] = base["pair_s"] / row["normal_s"]
                rows.append(row)
                print(f"{case[0]:22s} {label:32s} K {row['forward_s']:7.3f} s  Kᵀ {row['adjoint_s']:7.3f} s  "
                      f"K+Kᵀ {row['pair_s']:7.3f} s  x{row['speedup_pair']:5.2f}  "
                      f"KᵀK via _normal {row['normal_s']:7.3f} s  x{row['speedup_normal']:5.2f}  "
                      f"(Σ KᵀKx = {row['checksum']:.9g} / {row['checksum_normal']:.9g})",
                      flush=True)
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=root, capture_output=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="only 256² and 1280×720 at 46 px")
    ap.add_argument("--compare", metavar="REV", help="time this checkout against git revision REV, interleaved")
    ap.add_argument("--repeats", type=int, default=5, help="rounds of --compare (minimum is reported)")
    ap.add_argument("--cases", nargs="+", metavar="NAME",
                    help="with --compare: only the cases whose name contains one of these strings")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--compare-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    if args.compare_worker:
        _compare_worker()
        return
    if args.compare:
        cases = COMPARE_CASES
        if args.cases:
            cases = [c for c in COMPARE_CASES if any(k in c[0] for k in args.cases)]
            if not cases:
                ap.error(f"--cases {args.cases} matches none of: {', '.join(c[0] for c in COMPARE_CASES)}")
        rows = compare(args.compare, args.repeats, cases)
        write_rows("operators_compare", "cpu", rows, baseline=args.compare)
        return
    sizes = [(256, 256), (512, 512), (720, 1280)]
    lengths = [23.0, 46.0]
    fast = ["numba", "torch"] if args.device == "cpu" else ["torch", "cupy", "copy"]
    rows = []
    for h, w in sizes:
        for length in lengths:
            if args.quick and (length != 46.0 or (h, w) == (512, 512)):
                continue
            methods = list(fast)
            if h * w <= 256 * 256:
                methods.append("dense")
            if length == 46.0 or h * w <= 512 * 512:
                methods.append("tap_by_tap")
            for method in methods:
                cfg = dict(h=h, w=w, length=length, method=method, device=args.device)
                res = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True
                )
                if res.returncode != 0:
                    print(res.stderr[-2000:], file=sys.stderr)
                    continue
                r = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append({**cfg, **r})
                if "skipped" in r:
                    print(f"{w:5d}x{h:<4d} |m|={length:4.0f}  {method:11s} skipped: {r['skipped']}", flush=True)
                    continue
                fwd, adj = r.get("forward_s"), r.get("adjoint_s")
                mem = r.get("peak_extra_bytes")
                # GPU times are in milliseconds, CPU times in seconds
                scale, unit = (1e3, "ms") if args.device == "cuda" else (1.0, "s")
                print(
                    f"{w:5d}x{h:<4d} |m|={length:4.0f}  {method:11s} K {fwd * scale:8.3f} {unit}"
                    + (f"  Kᵀ {adj * scale:8.3f} {unit}  K+Kᵀ {(fwd + adj) * scale:8.3f} {unit}" if adj is not None else "")
                    + (f"  peak +{mem / r['image_bytes']:5.1f}x image" if mem is not None else ""),
                    flush=True,
                )
    write_rows("operators", args.device, rows)


if __name__ == "__main__":
    main()
