"""Reblur2Deblur (issue 13): the reblur model, its cost, and test-time fine-tuning.

Three parts:

``model``
    The reblur model itself: GOPRO-style clips (frame averaging of ``N`` sharp frames,
    consecutive exposures without gap, :func:`pnpdeblur.data.synthesize_video_sequence`) of the
    held-out scikit-image photos; the *true* sharp middle frame, reblurred with the *true* flows
    to the neighbouring frames, is compared with the synthetic blurred frame (PSNR in dB over the
    interior: ``--border`` px excluded as in ``benchmarks/synthesis.py``, since replicated vs
    mirrored borders would dominate) for each kernel (two-segment, LUT, warp), 3-frame (F₊, F₋) and 2-frame (F₋ = −F₊). With exposures
    of N frames and neighbours N frames away, each half of the blur covers half of the flow:
    τ = 0.5 (Chen's τ = 1 is shown for comparison). Rows for linear averaging (γ = 1) isolate
    the kernel model from the camera response (γ = 2.2, GOPRO). The baseline row is the
    blurred frame vs the sharp one (no reblur).
``timing``
    Chen's table 3: time of one fine-tuning step of the reblur model, forward + backward,
    for a mini-batch of 10 RGB 128² images (gradient to the images; "+flow" also to the
    flows, as with a trainable flow network), per kernel, median of ``--repeats`` runs. With
    ``--net`` (a single-frame net), also the whole step Chen timed: the net deblurs the 10
    images, the reblur loss with fixed flows, backward through the net, one Adam update.
``flow``
    The optical flow the reblur needs: end-point error of the zero flow, scikit-image's TV-L1
    (the default) and, with ``--flownets PATH``, a FlowNetS checkpoint, on the held-out clips of
    the FlowNetS training recipe (consecutive sharp frames and their true flow).
``finetune`` (needs ``--net PATH``, a checkpoint of a shipped deblurring net)
    The paper's experiment in miniature: held-out clips with larger motion than the nets'
    training data; PSNR/SSIM of the centre frames against the true sharp frames before and
    after :func:`pnpdeblur.train.reblur.finetune_reblur`, for 2- vs 3-frame, group vs single,
    hybrid vs reblur-only.

Usage::

    nice -n 10 python benchmarks/reblur.py                       # model + timing (CPU, a few minutes)
    python benchmarks/reblur.py --parts finetune --net weights.safetensors [--device cuda]

Writes ``reblur[_<device>].json`` beside this file.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_rows  # noqa: E402

from pnpdeblur.data import sample_image, synthesize_video_sequence  # noqa: E402
from pnpdeblur.losses.reblur import REBLUR_KERNELS, reblur, reblur_loss  # noqa: E402
from pnpdeblur.metrics import psnr, ssim  # noqa: E402
from pnpdeblur.train.sen import HELD_OUT_SAMPLES  # noqa: E402

KERNEL_LABEL = {"two_segment": "two-segment", "lut": "LUT", "warp": "warp"}


def _nchw(a: np.ndarray) -> torch.Tensor:
    """(…, H, W, C) numpy → (N, C, H, W) float64 tensor."""
    t = torch.from_numpy(np.ascontiguousarray(a)).double()
    return (t[None] if t.ndim == 3 else t).permute(0, 3, 1, 2).contiguous()


def clips(size: int, n_clips: int, motion: str, max_blur: float, min_blur: float, gamma, n_blurred: int = 3,
          seed: int = 0):
    """Synthetic clips of the held-out photos (one per photo and seed offset)."""
    out = []
    for k in range(n_clips):
        name = HELD_OUT_SAMPLES[k % len(HELD_OUT_SAMPLES)]
        img = sample_image(name, size=2 * size, channels=3)
        out.append((name, synthesize_video_sequence(img, n_blurred, shape=(size, size), motion=motion,
                                                    max_blur=max_blur, min_blur=min_blur, gamma=gamma,
                                                    seed=seed + k)))
    return out


# ---------------------------------------------------------------------------------- model
def part_model(args) -> list:
    rows = []
    for gamma in (2.2, None):
        for motion in ("translation", "mixed"):
            acc = {}
            for name, q in clips(args.size, args.clips, motion, args.max_blur, min(4.0, args.max_blur), gamma):
                t = 1
                sharp, blurred = _nchw(q.sharp[t]), _nchw(q.blurred[t])
                fn = torch.from_numpy(q.flows_next[t])[None].double()
                fp = torch.from_numpy(q.flows_prev[t])[None].double()
                bd = args.border
                inner = (Ellipsis, slice(bd, sharp.shape[-2] - bd), slice(bd, sharp.shape[-1] - bd))
                acc.setdefault(("none", "-", "-"), []).append(psnr(sharp[inner], blurred[inner]))
                for kernel in REBLUR_KERNELS:
                    for frames in (3, 2):
                        for tau in (0.5, 1.0):
                            if tau == 1.0 and kernel != "two_segment":
                                continue
                            y = reblur(sharp, fn, fp if frames == 3 else None, kernel=kernel, tau=tau)
                            acc.setdefault((kernel, frames, tau), []).append(
                                psnr(y.clamp(0, 1)[inner], blurred[inner]))
            for (kernel, frames, tau), vals in acc.items():
                rows.append({"part": "model", "gamma": gamma or 1.0, "motion": motion,
                             "kernel": KERNEL_LABEL.get(kernel, "(blurred vs sharp)"), "frames": frames,
                             "tau": tau, "psnr_db": round(float(np.mean(vals)), 2), "clips": len(vals)})
    print(f"\nreblur(true sharp, true flows) vs synthetic blurred, PSNR dB ({args.border} px border excluded), "
          f"{args.size}² clips, blur <= {args.max_blur} px per exposure, mean of {args.clips} clips")
    print(f"{'gamma':>5} {'motion':>11} {'kernel':>18} {'frames':>6} {'tau':>4} {'PSNR':>7}")
    for r in rows:
        print(f"{r['gamma']:>5} {r['motion']:>11} {r['kernel']:>18} {r['frames']!s:>6} {r['tau']!s:>4} "
              f"{r['psnr_db']:>7.2f}")
    return rows


# --------------------------------------------------------------------------------- timing
def _median_time(step, prepare, repeats: int, dev: torch.device) -> float:
    """Median seconds of ``step(*prepare())`` over ``repeats`` runs after one warm-up run (compiles,
    caches), ``prepare`` untimed; the GPU is synchronised around each timed run."""
    times = []
    for r in range(repeats + 1):
        inputs = prepare()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step(*inputs)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if r:
            times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 4)


def part_timing(args) -> list:
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    n, s = 10, 128
    b = torch.rand(n, 3, s, s, generator=g).to(dev)
    coarse = torch.randn(n, 4, 4, 4, generator=g) * args.flow_amp / 2
    flows = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=True).to(dev)
    fn0, fp0 = flows[:, :2].contiguous(), flows[:, 2:].contiguous()
    rows = []
    for kernel in REBLUR_KERNELS:
        for frames in (3,):  # the 2-frame model runs the same operator (F₋ = −F₊)
            for flow_grad in (False, True):
                def prepare():
                    fp = fp0.clone().requires_grad_(flow_grad) if frames == 3 else None
                    return b.clone().requires_grad_(True), fn0.clone().requires_grad_(flow_grad), fp

                def step(d, fn, fp):
                    reblur_loss(d, b, fn, fp, kernel=kernel).backward()

                rows.append({"part": "timing", "kernel": KERNEL_LABEL[kernel], "frames": frames,
                             "grad": "image+flow" if flow_grad else "image", "batch": n, "size": s,
                             "seconds": _median_time(step, prepare, args.repeats, dev), "repeats": args.repeats})
    if args.net is not None:
        rows += _net_step_times(args, b, fn0, fp0, dev)
    base = {(r["frames"], r["grad"]): r["seconds"] for r in rows if r["kernel"] == "two-segment"}
    for r in rows:
        r["vs_two_segment"] = round(r["seconds"] / base[(r["frames"], r["grad"])], 3)
    print(f"\nreblur loss forward + backward, 10 RGB 128² images, flows ~{args.flow_amp} px, {args.device}, "
          f"median of {args.repeats}")
    print(f"{'kernel':>12} {'frames':>6} {'grad':>11} {'seconds':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['kernel']:>12} {r['frames']:>6} {r['grad']:>11} {r['seconds']:>8.3f} {r['vs_two_segment']:>6.2f}")
    return rows


def _net_step_times(args, b, fn0, fp0, dev) -> list:
    """Median time of a whole fine-tuning step per kernel: ``--net`` deblurs ``b``, the reblur loss
    with the fixed flows ``fn0``/``fp0``, backward through the net, one Adam update."""
    from pnpdeblur.cli import load_deblur_net
    from pnpdeblur.train.reblur import net_frames

    net = load_deblur_net(args.net).to(dev).train()
    if net_frames(net) != 1:
        raise SystemExit(f"--net {args.net}: the timing part takes a single-frame net")
    opt = torch.optim.Adam(net.parameters(), lr=1e-6)  # tiny: the steps leave the net almost as it was
    rows = []
    for kernel in REBLUR_KERNELS:
        def step():
            opt.zero_grad(set_to_none=True)
            reblur_loss(net(b), b, fn0, fp0, kernel=kernel).backward()
            opt.step()

        rows.append({"part": "timing", "kernel": KERNEL_LABEL[kernel], "frames": 3, "grad": f"net step ({args.net})",
                     "batch": b.shape[0], "size": b.shape[-1],
                     "seconds": _median_time(step, lambda: (), args.repeats, dev), "repeats": args.repeats})
    return rows


# ------------------------------------------------------------------------------- finetune
def _score(net, q, centres, device) -> tuple:
    from pnpdeblur.train.reblur import deblur_frames

    x = _nchw(q.blurred).float()
    out = deblur_frames(net, x.to(device)).clamp(0, 1).cpu().double()
    ref = _nchw(q.sharp)
    return (float(np.mean([psnr(out[t], ref[t], channel_axis=0) for t in centres])),
            float(np.mean([ssim(out[t], ref[t], channel_axis=0) for t in centres])))


def finetune_experiment(net, args) -> list:
    """Before/after PSNR/SSIM of ``net`` fine-tuned on held-out clips (see the module docstring)."""
    from pnpdeblur.train.reblur import finetune_reblur

    settings = [
        dict(frames=3, group=True, supervised=None, kernel="two_segment"),
        dict(frames=2, group=True, supervised=None, kernel="two_segment"),
        dict(frames=3, group=False, supervised=None, kernel="two_segment"),
        dict(frames=3, group=True, supervised=False, kernel="two_segment"),
        dict(frames=3, group=True, supervised=None, kernel="warp"),
        dict(frames=3, group=True, supervised=None, kernel="lut"),
    ]
    from pnpdeblur.train.reblur import default_supervised_set, net_frames

    device = args.device
    net = net.to(device).eval()
    crop = min(128, args.size)
    # The supervised half: like the net's own training data (blur up to --ft-sup-max-blur);
    # stacks of frames for a multi-frame net (DVD).
    sup = default_supervised_set(crop, seed=0, max_blur=args.ft_sup_max_blur, frames=net_frames(net))
    if args.ft_settings != "all":
        settings = [settings[int(i)] for i in args.ft_settings.split(",")]
    rows = []
    for name, q in clips(args.size, args.clips, "mixed", args.ft_max_blur, args.ft_max_blur / 2, 2.2,
                         n_blurred=args.ft_frames, seed=100):
        centres = list(range(1, args.ft_frames - 1))
        p0, s0 = _score(net, q, centres, device)
        for st in settings:
            t0 = time.perf_counter()
            st = dict(st, supervised=sup if st["supervised"] is None else st["supervised"])
            tuned = finetune_reblur(net, _nchw(q.blurred).float(), steps=args.ft_steps, crop=crop, tau=args.tau,
                                    margin=args.ft_margin, seed=0, progress=False, device=device, **st)
            p1, s1 = _score(tuned, q, centres, device)
            label = {k: (v if isinstance(v, (bool, int, str)) else "synthetic") for k, v in st.items()}
            rows.append({"part": "finetune", "photo": name, **label, "margin": args.ft_margin,
                         "psnr_before": round(p0, 3), "psnr_after": round(p1, 3), "gain_db": round(p1 - p0, 3),
                         "ssim_before": round(s0, 4), "ssim_after": round(s1, 4),
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(rows[-1], flush=True)
    return rows


# ----------------------------------------------------------------------------------- flow
def part_flow(args) -> list:
    """EPE of the optical-flow options on the FlowNetS recipe's held-out clips (128², the pair of
    consecutive sharp frames and the true flow between them): the zero flow, scikit-image's
    TV-L1 (the default of ``finetune_reblur``) and, with ``--flownets PATH``, a FlowNetS."""
    from pnpdeblur.estimation.optical_flow import optical_flow
    from pnpdeblur.losses.epe import endpoint_error
    from pnpdeblur.train.deblurnets import build_datasets

    _, val = build_datasets("flow", "video", HELD_OUT_SAMPLES, 1, args.size, 0, args.flow_items, max_blur=16.0)
    methods = {"zero": lambda a, b: torch.zeros(2, *a.shape[-2:]), "tvl1": lambda a, b: optical_flow(a, b)}
    if args.flownets:
        from pnpdeblur.nets.flownets import FlowNetS

        net = FlowNetS.from_checkpoint(args.flownets).to(args.device)
        methods["flownets"] = lambda a, b: optical_flow(a.to(args.device), b.to(args.device), method=net).cpu()
    epe = {m: [] for m in methods}
    with torch.no_grad():
        for i in range(len(val)):
            item = val[i]
            for m, fn in methods.items():
                est = torch.as_tensor(fn(item["frame1"], item["frame2"])).float()  # torch in, torch out
                epe[m].append(float(endpoint_error(est[None], item["flow"][None])))
    rows = [{"part": "flow", "method": m, "epe_px": round(float(np.mean(v)), 4), "items": len(v), "size": args.size}
            for m, v in epe.items()]
    print(f"\nflow EPE on {len(val)} held-out clips ({args.size}², sharp frame pairs, true flow):")
    for r in rows:
        print(f"  {r['method']:9s} {r['epe_px']:.3f} px")
    return rows


def part_finetune(args) -> list:
    if args.net is None:
        print("\nfinetune: skipped (needs --net PATH, a checkpoint of a deblurring net)")
        return []
    from pnpdeblur.cli import load_deblur_net

    return finetune_experiment(load_deblur_net(args.net), args)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="model,timing", help="comma-separated: model, timing, flow, finetune")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--clips", type=int, default=4, help="clips per setting (held-out photos)")
    ap.add_argument("--max-blur", type=float, default=12.0, help="blur per exposure of the model part, px")
    ap.add_argument("--border", type=int, default=16, help="border excluded from the model part's PSNR, px")
    ap.add_argument("--flow-amp", type=float, default=6.0, help="flow magnitude of the timing part, px")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--net", default=None,
                    help="deblurring net (name or checkpoint) for the finetune part, and timed in the timing part")
    ap.add_argument("--tag", default="", help="suffix of the output file")
    ap.add_argument("--ft-steps", type=int, default=200)
    ap.add_argument("--ft-frames", type=int, default=5, help="blurred frames per fine-tuning clip")
    ap.add_argument("--ft-max-blur", type=float, default=30.0, help="blur per exposure of the fine-tuning clips")
    ap.add_argument("--ft-sup-max-blur", type=float, default=16.0,
                    help="blur of the synthetic supervised pairs (match the net's training data)")
    ap.add_argument("--ft-settings", default="all", help="'all' or comma-separated indices into the settings")
    ap.add_argument("--tau", type=float, default=0.5, help="tau of the fine-tuning reblur (0.5: no exposure gap)")
    ap.add_argument("--ft-margin", type=lambda v: v if v == "reach" else int(v), default=0,
                    help="border of each crop left out of the reblur loss: px or 'reach' (finetune_reblur's margin)")
    ap.add_argument("--flow-items", type=int, default=32, help="held-out clips of the flow part")
    ap.add_argument("--flownets", default=None, help="FlowNetS checkpoint to add to the flow part")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    rows = []
    t0 = time.perf_counter()
    for p in parts:
        rows += {"model": part_model, "timing": part_timing, "flow": part_flow, "finetune": part_finetune}[p](args)
    write_rows("reblur" + (f"_{args.tag}" if args.tag else ""), args.device.split(":")[0], rows, parts=parts, size=args.size, clips=args.clips,
               max_blur=args.max_blur, torch=torch.__version__, threads=torch.get_num_threads(),
               seconds=round(time.perf_counter() - t0, 1))


if __name__ == "__main__":
    main()
