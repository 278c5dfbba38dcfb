"""Camera shake: ``pd.deblur_shake`` (one estimated kernel) against ``pd.deblur`` (SEN's flow) and
the true kernel.

1. ``--part levin``: Levin et al.'s 32 camera-shake images (4 photos × 8 recorded kernels, 255×255
   grey; SelfDeblur's public copy, ``--levin DIR``), scored as in ``boundary.py --part levin``
   (PSNR up to a shift, ``kohler_align`` ±10 px). Held out: nothing of the estimator was tuned
   on them. Methods: the blurred input, non-blind HQS (shipped DnCNN, noise level 0.01, unknown
   boundary) with the recorded kernel, ``pd.deblur`` (SEN, safeguard off) and ``pd.deblur_shake``
   (kernel support ``--kernel-size``).
2. ``--part synthetic``: photos of ``--corpus`` (default BSDS500 *test*, held out), each blurred
   as a whole by a random shake kernel (:func:`pnpdeblur.data.random_shake_kernel`, sizes 13, 19,
   23, 27 in turn, seeded) and its central ``--size``² cropped, noise σ (``--sigma``); the same
   methods, plus ``deblur_shake`` without the pre-denoising and, with ``--sharp``, unblurred crops
   (what ``deblur_shake``, which has no safeguard, does to a sharp photo). ``--corpus
   .data/bsds500/train --start 0 --n-corpus 12`` is the tuning set the estimator's constants
   were chosen on.
3. ``--part timing``: ``deblur_shake`` on a 1280×720 RGB photo (the astronaut tiled, a 23 px
   shake kernel, σ = 0.01), kernel estimate and solve timed apart, best of ``--repeats``.
4. ``--part figure``: the README's picture (scikit-image's coffee, a 23 px shake kernel, σ =
   0.01): blurred, ``pd.deblur``, ``pd.deblur_shake``, the true kernel, sharp.
5. ``--part real --figure PATH``: the real blurred photos of ``--real DIR`` (no reference),
   ``pd.deblur`` beside ``pd.deblur_shake``, as a picture for your own eyes (third-party photos:
   not committed).

6. ``--part choose``: what ``pd.deblur_auto`` decides from. Per photo, ``pd.deblur`` (1
   iteration) and ``pd.deblur_shake`` (safeguards off), their PSNR (plain, no shift search) and
   the reblur residual of each result under its own blur model (``pnpdeblur.auto
   .reblur_residual``). Cases (``--cases``): ``shake`` (a random shake kernel as in
   ``synthetic``) and Gong-style per-pixel flows ``23`` / ``46``
   (:func:`pnpdeblur.data.random_motion_flow`), each made on the whole photo and then its
   central ``--size``² cropped, σ = ``--sigma``; ``levin`` runs Levin's 32 images instead. The
   rule is then scored for a range of ratios. ``AUTO_RATIO`` was chosen with ``--corpus
   .data/bsds500/train --n-corpus 24``.

7. ``--part small``: the kernel support on small photos. Central ``--sides`` crops of
   ``--corpus`` photos (grey, each photo blurred whole by a ``random_shake_kernel`` of 7, 11, 15,
   19, 23, 27 px in turn, seeded, then cropped; σ = ``--sigma``, the noise level estimated as
   ``deblur_shake`` does by default), ``pd.deblur_shake`` with ``kernel_size`` 31 and with the
   support each ratio of ``--ratios`` gives (the largest odd size <= side / r, at most 31), scored
   as ``synthetic`` (PSNR up to a whole-pixel shift, ``kohler_align`` ±10 px). The summary applies
   the rule fixed before measuring (benchmarks/RESULTS.md, "Camera shake on small photos").
   ``--corpus .data/bsds500/train`` calibrates; *test* validates.

Usage::

    python benchmarks/camera_shake.py --part levin
    python benchmarks/camera_shake.py --part synthetic --n-corpus 12 --sharp
    python benchmarks/camera_shake.py --part timing
    python benchmarks/camera_shake.py --part figure --figure docs/images/camera_shake.png
    python benchmarks/camera_shake.py --part real --figure /tmp/camera_shake_real.png
    python benchmarks/camera_shake.py --part choose --corpus .data/bsds500/train --n-corpus 24 --size 256
    python benchmarks/camera_shake.py --part choose --cases levin
    python benchmarks/camera_shake.py --part small --corpus .data/bsds500/train --n-corpus 20
    python benchmarks/camera_shake.py --part small --corpus .data/bsds500/test --n-corpus 16 --ratios 4
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_shake_kernel, read_image, sample_image
from pnpdeblur.metrics import kohler_align, psnr
from pnpdeblur.priors import DnCNNPrior
from pnpdeblur.solvers import crop_boundary, hqs, pad_problem

try:
    from _results import write_rows
    from boundary import kernel_orientation
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows
    from benchmarks.boundary import kernel_orientation

SIZES = (13, 19, 23, 27)

# --prior: deblur_shake's prior (None: its default, the shipped DnCNN)
SHAKE_PRIORS = {"default": lambda: None, "drunet": lambda: pd.priors.DRUNetPrior()}


def true_kernel(y: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Non-blind HQS + the shipped DnCNN, noise level 0.01, unknown boundary."""
    yp, K, w, r = pad_problem(y, pd.Convolution(k))
    return np.asarray(crop_boundary(hqs(yp, K, DnCNNPrior(ensemble=False), noise_level=0.01, weights=w).x, r))


def score(x, sharp) -> float:
    return float(kohler_align(np.clip(np.asarray(x, np.float64), 0, 1), sharp, max_shift=10)[0])


def methods(y: np.ndarray, sharp: np.ndarray, k, args, extra: bool) -> dict:
    row = dict(psnr_blurred=score(y, sharp))
    if k is not None:
        row["psnr_true"] = score(true_kernel(y, k), sharp)
    t0 = time.perf_counter()
    res = pd.deblur_shake(y, args.kernel_size, prior=SHAKE_PRIORS[args.prior]())
    row["t_shake"] = time.perf_counter() - t0
    row["psnr_shake"] = score(res.x, sharp)
    # the safeguard's two checks: a short kernel, or a result that overshoots (None: never solved)
    row["shake_unchanged"], row["shake_overshoot"] = res.unchanged[0], res.history[0]["overshoot"]
    row["psnr_shake_unaligned"] = float(psnr(np.clip(np.asarray(res.x, np.float64), 0, 1), sharp, data_range=1.0))
    if extra:
        from pnpdeblur.estimation import estimate_kernel

        kn = estimate_kernel(y, args.kernel_size, denoise=False)
        # the blind solve's prior and floor: a given kernel gets the DRUNet and no floor by default
        row["psnr_shake_nodenoise"] = score(pd.deblur_shake(y, kernel=kn, prior=DnCNNPrior(ensemble=False),
                                                            noise_floor=0.02).x, sharp)
    if not args.no_sen:
        t0 = time.perf_counter()
        row["psnr_deblur"] = score(pd.deblur(y, safeguard=False).x, sharp)
        row["t_deblur"] = time.perf_counter() - t0
    return row


def summarise(rows, group) -> dict:
    keys = [c for c in rows[0] if c.startswith(("psnr_", "t_"))]
    summary = {}
    for g in sorted({r[group] for r in rows}, key=str) + ["all"]:
        sel = [r for r in rows if g == "all" or r[group] == g]
        summary[str(g)] = {c: float(np.mean([r[c] for r in sel if c in r])) for c in keys if any(c in r for r in sel)}
        print(group, g, {c: round(v, 2) for c, v in summary[str(g)].items()}, flush=True)
    return summary


def levin_images(root: Path):
    """``(name, j, sharp, blurred, kernel j)`` for Levin et al.'s 32 images, grey float64; the
    recorded kernel normalised to sum 1, in the file's orientation."""
    load = lambda p: np.asarray(read_image(p, channels=1), np.float64)[..., 0]  # noqa: E731
    for j in range(1, 9):
        k = load(root / "gt" / f"kernel{j}.png")
        k /= k.sum()
        for i in range(1, 5):
            yield f"im{i}_kernel{j}", j, load(root / "gt" / f"im{i}.png"), load(root / f"im{i}_kernel{j}_img.png"), k


def levin(args) -> str:
    rows = []
    for name, j, sharp, y, k in levin_images(Path(args.levin)):
        kk = kernel_orientation(sharp, y, k)[0]  # the file's orientation, as in boundary.py
        row = dict(image=name, kernel=j, kernel_size=k.shape[0], **methods(y, sharp, kk, args, False))
        rows.append(row)
        print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    return write_rows(f"camera_shake_levin{args.tag}", "cpu", rows, summary=summarise(rows, "kernel"),
                      folder=args.levin, kernel_size=args.kernel_size)


def scene_crops(args):
    """``(n, name, photo, crop, noise)`` for each grey photo of ``--corpus`` from ``--start``: the
    central ``--size``² slice and its seeded noise (σ = ``--sigma``), drawn in order."""
    rng = np.random.default_rng(args.seed)
    for n, p in enumerate(list_images(args.corpus)[args.start:args.start + args.n_corpus]):
        photo = np.asarray(read_image(p, channels=1), np.float64)[..., 0]
        h, w = photo.shape
        sl = np.s_[(h - args.size) // 2:(h - args.size) // 2 + args.size,
                   (w - args.size) // 2:(w - args.size) // 2 + args.size]
        yield n, p.name, photo, sl, rng.normal(0.0, args.sigma, (args.size, args.size))


def synthetic(args) -> str:
    rows = []
    for n, name, photo, sl, noise in scene_crops(args):
        s = SIZES[n % len(SIZES)]
        k = random_shake_kernel(s, seed=args.seed + 100 + n)
        sharp = photo[sl]
        y = np.clip(convolve(photo, k, mode="nearest")[sl] + noise, 0, 1)
        row = dict(image=name, kernel_size=s, case="shake", **methods(y, sharp, k, args, True))
        rows.append(row)
        print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
        if args.sharp:
            ys = np.clip(sharp + noise, 0, 1)
            row = dict(image=name, kernel_size=1, case="sharp", psnr_blurred=score(ys, sharp))
            row["psnr_shake"] = score(pd.deblur_shake(ys, args.kernel_size).x, sharp)
            rows.append(row)
            print(row, flush=True)
    return write_rows(f"camera_shake_synthetic{args.tag}", "cpu", rows, summary=summarise(rows, "case"),
                      corpus=args.corpus, start=args.start, size=args.size, sigma=args.sigma, seed=args.seed,
                      kernel_size=args.kernel_size)


def calibrate(args) -> str:
    """kernel_length of the estimates on sharp and on shaken crops of ``--corpus`` (use *train*)."""
    from pnpdeblur.estimation import estimate_kernel, kernel_length

    rows = []
    for n, name, photo, sl, noise in scene_crops(args):
        for case, s in (("sharp", 1), ("mild", 7), ("shake", SIZES[n % len(SIZES)])):
            k = np.ones((1, 1)) if s == 1 else random_shake_kernel(s, seed=args.seed + 500 + n)
            y = np.clip(convolve(photo, k, mode="nearest")[sl] + noise, 0, 1)
            est = estimate_kernel(y, args.kernel_size)
            rows.append(dict(image=name, case=case, kernel_size=s, true_length=kernel_length(k),
                             length=kernel_length(est)))
            print(rows[-1], flush=True)
    for case in ("sharp", "mild", "shake"):
        v = np.array([r["length"] for r in rows if r["case"] == case])
        print(case, "median %.2f  99th pct %.2f  max %.2f  min %.2f" % (np.median(v), np.percentile(v, 99), v.max(),
                                                                          v.min()), flush=True)
    return write_rows(f"camera_shake_calibrate{args.tag}", "cpu", rows, corpus=args.corpus, start=args.start,
                      size=args.size, sigma=args.sigma, kernel_size=args.kernel_size)


def timing(args) -> str:
    photo = sample_image("astronaut", channels=3)
    big = np.ascontiguousarray(np.tile(photo, (2, 3, 1))[:720, :1280]).astype(np.float32)
    k = random_shake_kernel(23, seed=1)
    rng = np.random.default_rng(0)
    y = np.stack([convolve(big[..., c], k.astype(np.float32), mode="nearest") for c in range(3)], axis=-1)
    y = np.clip(y + 0.01 * rng.standard_normal(y.shape).astype(np.float32), 0, 1)
    rows = []
    for rep in range(args.repeats):
        t0 = time.perf_counter()
        res = pd.deblur_shake(y, args.kernel_size)
        rows.append(dict(repeat=rep, time=time.perf_counter() - t0, time_kernel=res.history[0]["time_kernel"],
                         time_solve=res.history[0]["time_solve"], psnr_blurred=score(y.mean(-1), big.mean(-1)),
                         psnr=score(np.asarray(res.x).mean(-1), big.mean(-1))))
        print(rows[-1], flush=True)
    return write_rows("camera_shake_timing", "cpu", rows, kernel_size=args.kernel_size)


def figure(args) -> str:
    """The README's picture: a scikit-image photo shaken by a recorded-like kernel, deblurred both ways."""
    from pnpdeblur.viz import comparison_figure

    photo = sample_image("coffee", channels=3).astype(np.float64)
    k = random_shake_kernel(23, seed=3)
    h, w = photo.shape[:2]
    c = 256
    sl = np.s_[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
    blurred = np.stack([convolve(photo[..., i], k, mode="nearest") for i in range(3)], axis=-1)[sl]
    y = np.clip(blurred + np.random.default_rng(0).normal(0, 0.01, blurred.shape), 0, 1).astype(np.float32)
    sharp = photo[sl]
    shake = pd.deblur_shake(y, args.kernel_size)
    images = [y, pd.deblur(y, safeguard=False).x, shake.x, true_kernel(y, k), sharp]
    titles = ["blurred", "pd.deblur (SEN)", "pd.deblur_shake", "true kernel", "sharp"]
    comparison_figure(images, titles=titles, reference=4, path=args.figure)
    print("kernel length true %.1f px, estimated %.1f px" % (pd.estimation.kernel_length(k),
                                                               shake.history[0]["kernel_length"]))
    return args.figure


def real(args) -> str:
    """The real blurred photos of ``--real`` side by side, written to ``--figure`` (not committed:
    those photos are not the project's)."""
    from pnpdeblur.viz import comparison_figure

    images, titles = [], []
    for p in list_images(args.real):
        y = np.asarray(read_image(p, channels=3), np.float32)
        h, w = y.shape[:2]
        c = min(h, w, args.size)  # whole photos are deblurred; the panels show their centres
        sl = np.s_[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        t0 = time.perf_counter()
        shake = pd.deblur_shake(y, args.kernel_size)
        t1 = time.perf_counter()
        sen = pd.deblur(y, safeguard=False)
        print(p.name, (h, w), f"deblur_shake {t1 - t0:.1f} s, deblur {time.perf_counter() - t1:.1f} s", flush=True)
        images += [y[sl], np.asarray(sen.x)[sl], np.asarray(shake.x)[sl]]
        titles += [f"{p.name}: blurred", "pd.deblur (SEN)", "pd.deblur_shake"]
    comparison_figure(images, titles=titles, ncols=3, path=args.figure)
    return args.figure


def choice_row(sharp: np.ndarray, y: np.ndarray, **info) -> dict:
    """``pd.deblur_auto`` on ``y`` (safeguards off): both results' PSNR against ``sharp``, and the
    reblur residuals it decides from."""
    y = np.clip(y, 0, 1).astype(np.float32)
    res = pd.deblur_auto(y, safeguard=False)
    rf, rs = res.flow_result, res.shake_result
    psnr = lambda x: float(pd.metrics.psnr(np.clip(np.asarray(x, np.float64), 0, 1), sharp))  # noqa: E731
    row = dict(info, psnr_blurred=psnr(y), psnr_flow=psnr(rf.x), psnr_shake=psnr(rs.x),
               residual_flow=res.residual_flow[0], residual_shake=res.residual_shake[0], model=res.model[0],
               kernel_length=float(pd.estimation.kernel_length(rs.kernel)),
               t_flow=sum(e["time"] for e in rf.history),
               t_shake=rs.history[0]["time_kernel"] + rs.history[0]["time_solve"])
    print({a: (round(v, 6) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    return row


def choose_summary(rows, ratios=(0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5)) -> dict:
    """Mean gain over the blurred input per case: always flow, always kernel, the oracle, and the
    residual rule at each ratio (with how many photos it sent to the kernel and the worst gain)."""
    out = {}
    for case in sorted({r["case"] for r in rows}):
        rs = [r for r in rows if r["case"] == case]
        gain = lambda pick: [(r["psnr_shake"] if pick(r) else r["psnr_flow"]) - r["psnr_blurred"] for r in rs]  # noqa: E731
        rules = {"flow": lambda r: False, "shake": lambda r: True,
                 "oracle": lambda r: r["psnr_shake"] > r["psnr_flow"]}
        rules.update({f"ratio {q:g}": (lambda r, q=q: r["residual_shake"] < q * r["residual_flow"]) for q in ratios})
        out[case] = {name: dict(gain=float(np.mean(gain(rule))), worst=float(np.min(gain(rule))),
                                kernel=int(sum(rule(r) for r in rs)), n=len(rs)) for name, rule in rules.items()}
        for name, v in out[case].items():
            print(f"{case:6s} {name:10s} gain {v['gain']:+.2f} dB  worst {v['worst']:+.2f}  kernel {v['kernel']}/{v['n']}")
    return out


def choose(args) -> str:
    rows = []
    cases = args.cases.split(",")
    if cases == ["levin"]:
        for name, _, sharp, y, _ in levin_images(Path(args.levin)):
            rows.append(choice_row(sharp, y, image=name, case="levin"))
    else:
        for n, name, photo, sl, noise in scene_crops(args):
            h, w = photo.shape
            for case in cases:
                if case == "shake":
                    k = random_shake_kernel((13, 19, 23, 31)[n % 4], seed=args.seed + 300 + args.start + n)
                    y = convolve(photo, k, mode="nearest")[sl]
                else:
                    flow = pd.data.random_motion_flow((h, w), case, np.random.default_rng(args.seed + 2000 + args.start + n))
                    y = np.asarray(pd.MotionBlur(flow)(photo))[sl]
                rows.append(choice_row(photo[sl], y + noise, image=name, case=case))
    return write_rows(f"camera_shake_choose{args.tag}", "cpu", rows, summary=choose_summary(rows),
                      corpus=args.corpus if cases != ["levin"] else args.levin, start=args.start,
                      size=args.size, sigma=args.sigma, seed=args.seed)


SMALL_SIZES = (7, 11, 15, 19, 23, 27)


def ratio_support(side: int, r: float, largest: int = 31) -> int:
    """The largest odd size <= ``side / r``, at most ``largest`` (at least 3)."""
    s = min(largest, int(side / r + 1e-9))
    s -= 1 - s % 2
    return max(3, s)


def small(args) -> str:
    """``deblur_shake`` on small central crops with kernel_size 31 and with each ratio's support."""
    import warnings

    torch.set_num_threads(1)
    sides = [int(v) for v in args.sides.split(",")]
    ratios = [float(v) for v in args.ratios.split(",")]
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)", flush=True)
    for n, p in enumerate(list_images(args.corpus)[args.start:args.start + args.n_corpus]):
        photo = np.asarray(read_image(p, channels=1), np.float64)[..., 0]
        L = SMALL_SIZES[n % len(SMALL_SIZES)]
        k = random_shake_kernel(L, seed=args.seed + 700 + args.start + n)
        blurred = convolve(photo, k, mode="nearest")
        h, w = photo.shape
        for side in sides:
            sl = np.s_[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
            noise = np.random.default_rng(args.seed + 10 * side + args.start + n).normal(0.0, args.sigma, (side, side))
            sharp = photo[sl]
            y = np.clip(blurred[sl] + noise, 0, 1).astype(np.float32)
            base = score(y, sharp)
            for support in sorted({31, *(ratio_support(side, r) for r in ratios)}, reverse=True):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = pd.deblur_shake(y, support)
                row = dict(image=p.name, n=n, side=side, L=L, true_length=float(pd.estimation.kernel_length(k)),
                           support=support, psnr_blurred=base, psnr_shake=score(res.x, sharp),
                           psnr_shake_unaligned=float(psnr(np.clip(np.asarray(res.x, np.float64), 0, 1), sharp,
                                                           data_range=1.0)),
                           kernel_length=res.history[0]["kernel_length"], unchanged=bool(res.unchanged[0]),
                           t_shake=time.perf_counter() - t0)
                rows.append(row)
                print({a: (round(v, 2) if isinstance(v, float) else v) for a, v in row.items()}, flush=True)
    return write_rows(f"camera_shake_small{args.tag}", "cpu", rows, summary=small_summary(rows, ratios),
                      corpus=args.corpus, start=args.start, sides=sides, ratios=ratios, sigma=args.sigma,
                      seed=args.seed, torch=torch.__version__)


def small_summary(rows, ratios, lose=0.5, share=0.05, slack=0.2, unchanged_from=192) -> dict:
    """Per side, kernel_size 31 and each ratio's support: mean PSNR and gain, crops losing more than
    ``lose`` dB against the blurred input, the worst gain. The rule (benchmarks/RESULTS.md): a ratio
    is *acceptable* at a side when at most ``share`` of the crops lose more than ``lose`` dB and its
    mean gain is within ``slack`` dB of the best ratio's there; a side under ``unchanged_from`` is
    *reliable* when some ratio is acceptable there. The ratio: the smallest acceptable at every
    reliable side, and among those the unreliable sides pick by pooled mean gain (within ``slack``
    of the best, the smallest); with no reliable side, the smallest ratio whose pooled mean gain
    over the sides under ``unchanged_from`` is within ``slack`` of the best. deblur_shake warns below
    the smallest side from which every side under ``unchanged_from`` is reliable."""
    out = {}
    sides = sorted({r["side"] for r in rows})

    def stats(sel):
        g = np.array([r["psnr_shake"] - r["psnr_blurred"] for r in sel])
        return dict(n=len(sel), blurred=float(np.mean([r["psnr_blurred"] for r in sel])),
                    shake=float(np.mean([r["psnr_shake"] for r in sel])), gain=float(g.mean()),
                    losing=int((g < -lose).sum()), worst=float(g.min()),
                    unaligned=float(np.mean([r["psnr_shake_unaligned"] for r in sel])),
                    left=int(sum(r["unchanged"] for r in sel)))

    for side in sides:
        here = [r for r in rows if r["side"] == side]
        per = {"31": stats([r for r in here if r["support"] == 31])}
        for q in ratios:
            s = ratio_support(side, q)
            per[f"r={q:g}"] = dict(support=s, **stats([r for r in here if r["support"] == s]))
        best = max(v["gain"] for k, v in per.items() if k.startswith("r="))
        for k, v in per.items():
            if k.startswith("r="):
                v["acceptable"] = bool(v["losing"] <= share * v["n"] and v["gain"] >= best - slack)
        out[str(side)] = per
        for k, v in per.items():
            print(f"side {side:4d} {k:6s} support {v.get('support', 31):2d}: blurred {v['blurred']:.2f} "
                  f"shake {v['shake']:.2f} gain {v['gain']:+.2f} losing>{lose:g}dB {v['losing']}/{v['n']} "
                  f"worst {v['worst']:+.2f} unchanged {v['left']} acceptable {v.get('acceptable', '-')}", flush=True)
    judged = [s for s in sides if s < unchanged_from]
    reliable = [s for s in judged if any(out[str(s)][f"r={q:g}"]["acceptable"] for q in ratios)]
    candidates = [q for q in ratios if all(out[str(s)][f"r={q:g}"]["acceptable"] for s in reliable)]
    pooled = {q: float(np.mean([out[str(s)][f"r={q:g}"]["gain"] for s in judged if s not in reliable]))
              for q in candidates} if len(reliable) < len(judged) else {}
    if pooled:
        candidates = [q for q in candidates if pooled[q] >= max(pooled.values()) - slack]
    warn_below = min([s for s in judged if all(t in reliable for t in judged if t >= s)] + [unchanged_from])
    out["rule"] = dict(ratio=min(candidates) if candidates else None, reliable=reliable, pooled_gain=pooled,
                       warn_below=warn_below)
    print("rule:", out["rule"], flush=True)
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("levin", "synthetic", "calibrate", "timing", "figure", "real", "choose",
                                       "small"), required=True)
    ap.add_argument("--cases", default="shake,23,46", help="--part choose: shake, 23, 46 (comma-separated) or levin")
    ap.add_argument("--levin", default=".data/selfdeblur/datasets/levin")
    ap.add_argument("--real", default=".data/selfdeblur/datasets/real")
    ap.add_argument("--figure", default="docs/images/camera_shake.png")
    ap.add_argument("--corpus", default=".data/bsds500/test")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n-corpus", type=int, default=12)
    ap.add_argument("--size", type=int, default=255)
    ap.add_argument("--sigma", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sharp", action="store_true", help="--part synthetic: also unblurred crops")
    ap.add_argument("--no-sen", action="store_true", help="leave pd.deblur out")
    ap.add_argument("--kernel-size", type=int, default=31)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tag", default="")
    ap.add_argument("--sides", default="64,96,128,160,192,256", help="--part small: crop sides (px)")
    ap.add_argument("--ratios", default="3,4,5,6", help="--part small: side / support ratios")
    ap.add_argument("--prior", choices=sorted(SHAKE_PRIORS), default="default",
                    help="--part levin / synthetic: pd.deblur_shake's prior")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    parts = {"levin": levin, "synthetic": synthetic, "calibrate": calibrate, "timing": timing, "figure": figure,
             "real": real, "choose": choose, "small": small}
    print(parts[args.part](args))


if __name__ == "__main__":
    main()
