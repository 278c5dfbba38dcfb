"""Blind deblurring benchmark (issue 10): flow accuracy, deblurring quality, time.

Sharp photos never used in training — scikit-image's held-out photos (astronaut, camera,
coffee, chelsea) and, with ``--corpus``, images of a held-out folder (e.g. BSDS500's *test*
split) — are cropped to ``--size``², blurred with Gong-style random flows (presets ±23 and
±46) through ``MotionBlur``, plus Gaussian noise σ = 0.01.

Tables:

1. **flow MSE** (Wu et al.'s table 1: mean over both components, per pixel
   ``min(|f̂ − f|², |f̂ + f|²)``) of SEN (``pd.estimate_flow``), the classical cepstrum
   baseline (``estimate_flow_classical``) and the zero flow;
2. **PSNR/SSIM** of the blurred input, ``pd.deblur`` after global iterations 1…K (same prior,
   estimated noise level), and non-blind HQS with the true flow (the upper bound);
3. **time** (``--timing``): SEN forward and ``pd.deblur`` (``--iterations`` global iterations)
   on a 1280×720 photo; ``--profile`` adds a cProfile breakdown (SEN, CG x-steps, prior);
4. **safeguard calibration** (``--calibrate``): candidate no-reference blur signals on crops of a
   *training* folder (default BSDS500 train), sharp / mild (``max_len`` 8) / ±23 / ±46, and the
   detection rates of :func:`pnpdeblur.estimation.blur_detection.blur_score` over thresholds;
   writes ``blind_calibration.json``;
5. **safeguard comparison** (``--safeguard``): on the held-out photos (never used by
   ``--calibrate``), sharp / mild / ±23 / ±46 inputs: the detector's decisions and the PSNR of
   ``pd.deblur`` with and without the safeguard; writes ``blind_safeguard.json``;
6. **solver budget** (``--budget``): one global iteration of ``pd.deblur`` (safeguard off) for
   each pair of HQS iterations (``--n-iters``) and CG iterations per x-step (``--cg-iters``) on
   crops of a *tuning* folder (default BSDS500 *val*, never a benchmark photo of table 2), ±23
   and ±46; PSNR per pair and the number of fused KᵀK products (CG iterations), from which
   ``pd.deblur``'s defaults are chosen; writes ``blind_budget.json``.

Usage::

    python benchmarks/blind.py                              # CPU, writes benchmarks/blind.json
    python benchmarks/blind.py --quick                      # 2 photos, ±23 only
    python benchmarks/blind.py --corpus .data/bsds500/test --n-corpus 8
    python benchmarks/blind.py --timing --device cuda       # timings only
    python benchmarks/blind.py --calibrate                  # detector signals on BSDS500 train
    python benchmarks/blind.py --safeguard --corpus .data/bsds500/test --n-corpus 8
    python benchmarks/blind.py --budget --tune-folder .data/bsds500/val --n-tune 8
    python benchmarks/blind.py --budget --prior drunet --noise-floor 0.03 --n-iters 4 --cg-iters 5 --tag drunet_003

``--prior`` swaps the prior (``dncnn``, ``dncnn-ensemble``, ``drunet``, ``tv``, ``default``: what
``pd.deblur`` uses when given none; ``rpgan``: the generator of ``--rpgan-weights``, default the
shipped one, with ``--rpgan-levels`` levels and its own β schedule, ``rpgan-untrained`` the same
architecture untrained), ``--noise-floor`` pd.deblur's ``noise_floor`` and
``--no-flow-ensemble`` runs SEN once per estimate (``flow_ensemble=False``) everywhere.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import pnpdeblur as pd
from pnpdeblur.data import list_images, random_motion_flow, read_image, sample_image
from pnpdeblur.estimation.blur_detection import blur_score, default_threshold, reblur_score
from pnpdeblur.estimation.classical import estimate_flow_classical
from pnpdeblur.metrics import flow_mse, psnr, ssim
from pnpdeblur.nets import SEN
from pnpdeblur.pipeline import default_prior, schedule_for
from pnpdeblur.priors import TV, DnCNNPrior, DRUNetPrior
from pnpdeblur.solvers import hqs

try:
    from _results import write_rows
except ImportError:  # run from the repository root as a module
    from benchmarks._results import write_rows

SKIMAGE_HELD_OUT = ["astronaut", "camera", "coffee", "chelsea"]


def crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"image smaller than {size}")
    r, c = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[r:r + size, c:c + size])


def photos(args) -> list:
    out = [(n, crop(sample_image(n, channels=3), args.size)) for n in SKIMAGE_HELD_OUT[: 2 if args.quick else 4]]
    if args.corpus:
        for p in list_images(args.corpus)[: args.n_corpus]:
            out.append((p.name, crop(read_image(p, 3), args.size)))
    if getattr(args, "only", None):  # a subset, e.g. to split a run over processes (seeds stay per position)
        out = [(n, img) if n in args.only else (n, None) for n, img in out]
    return out


PRIORS = {
    # the first tables of RESULTS.md ran DnCNN with its flip ensemble (DnCNNPrior's default)
    "dncnn-ensemble": DnCNNPrior,
    "default": default_prior,  # what pd.deblur uses when no prior is given
    "dncnn": lambda: DnCNNPrior(ensemble=False),
    "drunet": DRUNetPrior,
    "drunet-ensemble": lambda: DRUNetPrior(ensemble=True),
    "drunet-nocycle": lambda: DRUNetPrior(cycle=False),  # DRUNetPrior before geometric cycling
    "dncnn-cycle": lambda: DnCNNPrior(ensemble=False, cycle=True),
    "tv": TV,
}

# RP-GAN (issue 11), built from --rpgan-weights (default the shipped generator) and --rpgan-levels;
# "rpgan-untrained": the same architecture untrained, the identity z-step, i.e. no prior
RPGAN_PRIORS = ("rpgan", "rpgan-untrained")


def make_prior(args, default: str):
    """``--prior`` (else ``default``) built; RP-GAN from ``--rpgan-weights`` with ``--rpgan-levels``."""
    name = args.prior or default
    if name not in RPGAN_PRIORS:
        return PRIORS[name]()
    from pnpdeblur.nets.rpgan import RPGANGenerator
    from pnpdeblur.priors.rpgan import RPGANPrior

    g = RPGANGenerator.pretrained() if args.rpgan_weights is None else RPGANGenerator.from_checkpoint(args.rpgan_weights)
    if name == "rpgan-untrained":
        torch.manual_seed(0)
        g = RPGANGenerator(**g.config)
    return RPGANPrior(g, levels=args.rpgan_levels)


def true_flow_schedule(prior, noise_level: float) -> dict:
    """hqs's keywords for the true-flow upper bound: a prior's own schedule (RP-GAN) as pd.deblur
    gives it, else hqs's defaults for the prior at ``noise_level`` (not pd.deblur's DPIR λ)."""
    kw = schedule_for(prior, noise_level, None)
    return kw if "betas" in kw else {"noise_level": noise_level}


def deblur_kw(args) -> dict:
    """pd.deblur's ``flow_ensemble=``, ``saturation=None`` with ``--no-saturation`` and, when
    ``--noise-floor`` is given, ``noise_floor=``."""
    kw = {"flow_ensemble": args.flow_ensemble}
    if not args.saturation:
        kw["saturation"] = None
    if args.noise_floor is not None:
        kw["noise_floor"] = args.noise_floor
    return kw


def quality(args, model: SEN, device: str) -> list:
    rows = []
    prior = make_prior(args, "dncnn-ensemble")
    presets = ["23"] if args.quick else ["23", "46"]
    for preset in presets:
        for k, (name, sharp) in enumerate(photos(args)):
            rng = np.random.default_rng(1000 + k)
            flow = random_motion_flow(sharp.shape[:2], preset, rng)
            blurred = np.asarray(pd.MotionBlur(flow)(sharp), np.float32)
            blurred = np.clip(blurred + 0.01 * rng.standard_normal(blurred.shape).astype(np.float32), 0, 1)
            x = torch.from_numpy(blurred.transpose(2, 0, 1).copy()).to(device)
            t0 = time.perf_counter()
            f_sen = pd.estimate_flow(x, model, ensemble=args.flow_ensemble).cpu().numpy()
            t_sen = time.perf_counter() - t0
            f_cls = estimate_flow_classical(blurred)
            row = dict(image=name, preset=preset, mean_flow_length=float(np.hypot(*flow).mean()),
                       mse_sen=float(flow_mse(f_sen, flow)), mse_cepstrum=float(flow_mse(f_cls, flow)),
                       mse_zero=float(flow_mse(np.zeros_like(flow), flow)), t_sen=t_sen)
            row["psnr_blurred"], row["ssim_blurred"] = score(blurred, sharp)
            res = pd.deblur(x, iterations=args.iterations, prior=prior, flow_model=model, **deblur_kw(args),
                            callback=lambda e, cur: e.update(zip(("psnr", "ssim"), score(cur, sharp))))
            for e in res.history:
                row[f"psnr_it{e['iteration'] + 1}"], row[f"ssim_it{e['iteration'] + 1}"] = e["psnr"], e["ssim"]
            row["iterations_run"] = len(res.history)
            for k in range(len(res.history), args.iterations):  # the safeguard stopped: the image stays
                row[f"psnr_it{k + 1}"], row[f"ssim_it{k + 1}"] = row[f"psnr_it{k}"], row[f"ssim_it{k}"]
            row["t_deblur"] = sum(e["time"] for e in res.history)
            true = hqs(x[None], pd.MotionBlur(torch.from_numpy(flow)[None].to(device)), prior,
                       progress=False, **true_flow_schedule(prior, 0.01)).x
            row["psnr_true_flow"], row["ssim_true_flow"] = score(true, sharp)
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def score(x, sharp: np.ndarray) -> tuple:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
        x = x[0] if x.ndim == 4 else x
        x = x.transpose(1, 2, 0)
    x = np.clip(np.asarray(x, np.float64), 0, 1)
    return float(psnr(x, sharp, channel_axis=-1)), float(ssim(x, sharp, channel_axis=-1))


def timing(args, model: SEN, device: str) -> list:
    photo = sample_image("astronaut", channels=3)
    big = np.ascontiguousarray(np.tile(photo, (2, 3, 1))[:720, :1280])
    flow = random_motion_flow(big.shape[:2], "23", 0)
    blurred = np.clip(np.asarray(pd.MotionBlur(flow)(big), np.float32), 0, 1)
    x = torch.from_numpy(blurred.transpose(2, 0, 1).copy()).to(device)
    rows = []
    prior = make_prior(args, "default")
    pd.estimate_flow(x[:, :256, :256], model)  # warm-up (kernel compilation, cuDNN autotune)
    # (HQS iterations, CG iterations per x-step) to time; None: pd.deblur's defaults. Several are
    # interleaved per repeat, so that their ratio comes from one run on one machine state.
    budgets = [None] if not args.timing_budgets else [tuple(int(v) for v in b.split(",")) for b in args.timing_budgets]
    for rep, budget in ((r, b) for r in range(args.repeats) for b in budgets):
        kw = {} if budget is None else dict(n_iter=budget[0], cg_iters=budget[1])
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        pd.estimate_flow(x, model, ensemble=args.flow_ensemble)
        if device == "cuda":
            torch.cuda.synchronize()
        t_sen = time.perf_counter() - t0
        prof = None
        if args.profile and rep == 0:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        t0 = time.perf_counter()
        # safeguard off unless asked: time the whole pipeline whatever the detector would decide
        res = pd.deblur(x, iterations=args.iterations, prior=prior, flow_model=model,
                        safeguard=args.timing_safeguard, flow_ensemble=args.flow_ensemble, **kw)
        if device == "cuda":
            torch.cuda.synchronize()
        t_all = time.perf_counter() - t0
        if prof is not None:
            prof.disable()
        row = dict(size="1280x720x3", iterations=args.iterations, budget=budget, safeguard=args.timing_safeguard,
                   iterations_run=len(res.history), t_sen_forward=t_sen, t_deblur=t_all,
                   per_iteration=[e["time"] for e in res.history], psnr=score(res.x, big)[0],
                   blur_score=blur_score(x, model, ensemble=args.flow_ensemble))
        if prof is not None:
            row["profile"] = profile_summary(prof, t_all)
        rows.append(row)
        print(rows[-1], flush=True)
    return rows


# (file suffix, function name) → the part of pd.deblur it stands for; cumulative times overlap
# (the CG time includes the operator's), so each is reported as its own share of the total
PROFILE_PARTS = {
    "SEN forward (estimate_flow)": ("estimation/learned.py", "estimate_flow"),
    "HQS total": ("solvers/hqs.py", "hqs"),
    "CG x-steps (_cg_core)": ("solvers/cg.py", "_cg_core"),
    "  of which K (MotionBlur._forward)": ("operators/motion.py", "_forward"),
    "  of which Kᵀ (MotionBlur._adjoint)": ("operators/motion.py", "_adjoint"),
    "prior z-steps (DnCNN _denoise)": ("priors/learned.py", "_denoise"),
    "noise level estimate": ("pnpdeblur/pipeline.py", "estimate_noise_level"),
}


def profile_summary(prof, total: float) -> dict:
    """Cumulative seconds of the parts of pd.deblur named in :data:`PROFILE_PARTS`."""
    import pstats

    stats = pstats.Stats(prof).stats  # (file, line, name) → (cc, nc, tt, ct, callers)
    out = {}
    for label, (suffix, fn) in PROFILE_PARTS.items():
        ct = [v[3] for (f, _, name), v in stats.items() if name == fn and f.replace("\\", "/").endswith(suffix)]
        out[label] = round(max(ct), 2) if ct else None  # max: a recursive/nested entry counts once
    out["total (wall)"] = round(total, 2)
    for label, v in out.items():
        print(f"  {label:34s} {v if v is not None else '-':>8} s", flush=True)
    return out


CONDITIONS = ("sharp", "mild", "23", "46")  # mild: Gong flows with max_len 8 (mean length ~2-4 px)


def degrade(sharp: np.ndarray, cond: str, rng: np.random.Generator, noise: float = 0.01):
    """Blur ``sharp`` (H, W, 3) by a random flow of condition ``cond``, add noise → (y, flow)."""
    shape = sharp.shape[:2]
    if cond == "sharp":
        flow = np.zeros((2,) + shape, np.float32)
    elif cond == "mild":
        flow = random_motion_flow(shape, "23", rng, max_len=8)
    else:
        flow = random_motion_flow(shape, cond, rng)
    y = np.asarray(pd.MotionBlur(flow)(sharp), np.float32) if flow.any() else sharp.astype(np.float32)
    y = np.clip(y + noise * rng.standard_normal(y.shape).astype(np.float32), 0, 1)
    return y, flow


def calibrate(args, model: SEN) -> str:
    """Detector signals on *training* crops; the threshold is chosen here and nowhere else."""
    from pnpdeblur.estimation.classical import _cepstrum_estimate

    files = list_images(args.train_folder)[:: args.train_step][: args.n_train]
    rows = []
    for k, p in enumerate(files):
        sharp = crop(read_image(p, 3), args.size)
        for cond in CONDITIONS:
            rng = np.random.default_rng(5000 + k)
            y, flow = degrade(sharp, cond, rng)
            grey = y @ np.array([0.2126, 0.7152, 0.0722], np.float32)
            row = dict(image=p.name, cond=cond, true_len=float(np.hypot(*flow).mean()),
                       blur_score=blur_score(y, model, ensemble=args.flow_ensemble), reblur_score=reblur_score(y),
                       cepstrum_score=_cepstrum_estimate(grey.astype(np.float64), 64)[2])
            rows.append(row)
            print({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items()}, flush=True)
    sharp_scores = np.array([r["blur_score"] for r in rows if r["cond"] == "sharp"])
    # the threshold: the args.keep_sharp quantile of the sharp training crops' scores, to 0.5 px
    chosen = float(np.ceil(np.quantile(sharp_scores, args.keep_sharp) * 2) / 2)
    table = {}
    for name in ("blur_score", "reblur_score", "cepstrum_score"):
        vals = {c: np.array([r[name] for r in rows if r["cond"] == c]) for c in CONDITIONS}
        lo, hi = min(v.min() for v in vals.values()), max(v.max() for v in vals.values())
        # best balanced accuracy sharp vs ±23/±46 over thresholds: how well each signal separates
        best = max((0.5 * ((vals["sharp"] < t).mean() + (np.concatenate([vals["23"], vals["46"]]) >= t).mean()), t)
                   for t in np.linspace(lo, hi, 200))
        table[name] = dict(balanced_accuracy=float(best[0]), at=float(best[1]),
                           quantiles={c: np.quantile(v, [0, 0.25, 0.5, 0.75, 1]).round(3).tolist()
                                      for c, v in vals.items()})
        print(name, table[name], flush=True)
    rates = {}
    for t in sorted({chosen, default_threshold(args.flow_ensemble), 4.0, 4.5, 5.0, 6.0, 7.0, 8.0}):
        rates[str(t)] = {c: float(np.mean([r["blur_score"] >= t for r in rows if r["cond"] == c]))
                         for c in CONDITIONS}
        print(f"threshold {t}: processed fraction " + ", ".join(f"{c} {v:.2f}" for c, v in rates[str(t)].items()))
    print(f"chosen threshold ({args.keep_sharp:.0%} of sharp crops below): {chosen}")
    return write_rows("blind_calibration", "cpu", rows, signals=table, processed_fraction=rates,
                      chosen_threshold=chosen, keep_sharp=args.keep_sharp, folder=args.train_folder,
                      size=args.size)


def safeguard_compare(args, model: SEN, device: str) -> str:
    """Held-out photos: pd.deblur with vs without the safeguard, per input condition."""

    prior = make_prior(args, "default")
    rows = []
    for k, (name, sharp) in enumerate(photos(args)):
        if sharp is None:
            continue
        for cond in CONDITIONS:
            rng = np.random.default_rng(1000 + k)
            y, flow = degrade(sharp, cond, rng)
            x = torch.from_numpy(y.transpose(2, 0, 1).copy()).to(device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                res = pd.deblur(x, iterations=args.iterations, prior=prior, flow_model=model, safeguard=True,
                                **deblur_kw(args))
                first = res.history[0]["safeguard"]
                if args.iterations == 1 and first["processed"][0]:
                    plain = res  # the same computation: the safeguard only decided
                else:
                    plain = pd.deblur(x, iterations=args.iterations, prior=prior, flow_model=model,
                                      safeguard=False, **deblur_kw(args))
            row = dict(image=name, cond=cond, true_len=float(np.hypot(*flow).mean()),
                       blur_score=first["blur_score"][0], processed=bool(first["processed"][0]),
                       iterations_run=sum(e["safeguard"]["processed"][0] for e in res.history),
                       psnr_in=score(y, sharp)[0], psnr_guarded=score(res.x, sharp)[0],
                       psnr_plain=score(plain.x, sharp)[0])
            rows.append(row)
            print({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items()}, flush=True)
    summary = {}
    for cond in CONDITIONS:
        sel = [r for r in rows if r["cond"] == cond]
        if not sel:
            continue
        means = {k: float(np.mean([r[k] for r in sel])) for k in ("psnr_in", "psnr_guarded", "psnr_plain")}
        summary[cond] = dict(n=len(sel), processed=float(np.mean([r["processed"] for r in sel])), **means,
                             worse_guarded=int(sum(r["psnr_guarded"] < r["psnr_in"] - 0.01 for r in sel)),
                             worse_plain=int(sum(r["psnr_plain"] < r["psnr_in"] - 0.01 for r in sel)))
        print(cond, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary[cond].items()}, flush=True)
    stem = "blind_safeguard" + (f"_{args.tag}" if args.tag else "")
    return write_rows(stem, device, rows, summary=summary, threshold=default_threshold(args.flow_ensemble),
                      iterations=args.iterations, corpus=args.corpus, size=args.size)


def tuning_inputs(args):
    """``(preset, name, sharp, blurred, flow)`` for ``--budget`` and ``--flow-only``.

    Each of the first ``--n-tune`` photos of ``--tune-folder`` (read and cropped once), blurred at
    ±23 and then ±46 by :func:`degrade` with seed 7000 + its position, σ = 0.01.
    """
    photos = [(p.name, crop(read_image(p, 3), args.size)) for p in list_images(args.tune_folder)[: args.n_tune]]
    for preset in ("23", "46"):
        for k, (name, sharp) in enumerate(photos):
            y, flow = degrade(sharp, preset, np.random.default_rng(7000 + k))
            yield preset, name, sharp, y, flow


def budget(args, model: SEN, device: str) -> str:
    """PSNR of one global iteration per (HQS iterations, CG iterations) pair, on a tuning folder."""

    prior = make_prior(args, "default")
    rows = []
    for preset, name, sharp, y, flow in tuning_inputs(args):
        x = torch.from_numpy(y.transpose(2, 0, 1).copy()).to(device)
        row = dict(image=name, preset=preset, mean_flow_length=float(np.hypot(*flow).mean()),
                   psnr_blurred=score(y, sharp)[0])
        for n_iter in args.n_iters:
            for cg in args.cg_iters:
                t0 = time.perf_counter()
                res = pd.deblur(x, prior=prior, flow_model=model, safeguard=False, n_iter=n_iter, cg_iters=cg,
                                **deblur_kw(args))
                t = time.perf_counter() - t0
                row[f"psnr_{n_iter}_{cg}"] = score(res.x, sharp)[0]
                row[f"cg_{n_iter}_{cg}"] = int(sum(h["cg_iterations"] for h in res.history[0]["hqs"]))
                row[f"t_{n_iter}_{cg}"] = t
        rows.append(row)
        print({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items()}, flush=True)
    summary = {}
    for preset in ("23", "46"):
        sel = [r for r in rows if r["preset"] == preset]
        for n_iter in args.n_iters:
            for cg in args.cg_iters:
                key = f"{n_iter}_{cg}"
                summary[f"{preset}/{key}"] = dict(
                    gain=float(np.mean([r[f"psnr_{key}"] - r["psnr_blurred"] for r in sel])),
                    cg_products=float(np.mean([r[f"cg_{key}"] for r in sel])),
                    prior_calls=n_iter, time=float(np.mean([r[f"t_{key}"] for r in sel])))
                print(f"±{preset} n_iter {n_iter} cg {cg}: " + ", ".join(
                    f"{k2} {v:.3f}" for k2, v in summary[f"{preset}/{key}"].items()), flush=True)
    return write_rows("blind_budget" + (f"_{args.tag}" if args.tag else ""), device, rows, summary=summary,
                      folder=args.tune_folder, size=args.size, prior=args.prior or "default",
                      noise_floor=args.noise_floor, rpgan_weights=args.rpgan_weights, rpgan_levels=args.rpgan_levels)


def flow_accuracy(args) -> str:
    """SEN's flow MSE, one pass and ensemble, for each of ``--flow-weights`` on the tuning folder.

    The inputs are those of ``--budget`` (seeds 7000 + k, σ = 0.01), so that weights are chosen on
    photos that no benchmark table uses; every model sees the same inputs in one run.
    """
    names = args.flow_weights or ["shipped"]
    models = {n: SEN.pretrained() if n == "shipped" else SEN.from_checkpoint(n) for n in names}
    rows = []
    for preset, name, _, y, flow in tuning_inputs(args):
        row = dict(image=name, preset=preset, mean_flow_length=float(np.hypot(*flow).mean()))
        for n, model in models.items():
            for ens in (False, True):
                f = pd.estimate_flow(y, model, ensemble=ens)
                row[f"mse_{'ensemble' if ens else 'one_pass'}:{n}"] = float(flow_mse(f, flow))
        rows.append(row)
        print({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items()}, flush=True)
    summary = {}
    for preset in ("23", "46"):
        sel = [r for r in rows if r["preset"] == preset]
        for key in (k2 for k2 in sel[0] if k2.startswith("mse_")):
            v = [r[key] for r in sel]
            summary[f"{preset}/{key}"] = dict(mean=float(np.mean(v)), median=float(np.median(v)))
            print(f"±{preset} {key}: mean {np.mean(v):.3f}, median {np.median(v):.3f} px²", flush=True)
    return write_rows("blind_flow" + (f"_{args.tag}" if args.tag else ""), "cpu", rows, summary=summary,
                      folder=args.tune_folder, size=args.size, weights=names)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--timing", action="store_true", help="only the 1280×720 timings")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--corpus", default=None, help="held-out folder of sharp photos (e.g. BSDS500 test)")
    ap.add_argument("--n-corpus", type=int, default=8)
    ap.add_argument("--weights", default=None, help="SEN checkpoint (default: the shipped one)")
    ap.add_argument("--prior", default=None, choices=sorted([*PRIORS, *RPGAN_PRIORS]),
                    help="prior of pd.deblur (and of the true-flow HQS in the quality table); default: "
                         "dncnn-ensemble for the quality table (as in RESULTS.md), pd.deblur's own elsewhere")
    ap.add_argument("--rpgan-weights", default=None,
                    help="RPGANGenerator checkpoint for --prior rpgan / rpgan-untrained (default: the shipped one)")
    ap.add_argument("--rpgan-levels", type=int, default=3, help="recurrent levels of --prior rpgan (paper: 3)")
    ap.add_argument("--noise-floor", type=float, default=None,
                    help="pd.deblur's noise_floor in the quality table and --budget (default: pd.deblur's)")
    ap.add_argument("--no-flow-ensemble", dest="flow_ensemble", action="store_false",
                    help="SEN once per flow estimate (pd.deblur's flow_ensemble=False) instead of "
                         "its 8-symmetry ensemble")
    ap.add_argument("--no-saturation", dest="saturation", action="store_false",
                    help="pd.deblur's saturation=None: clipped pixels stay in the data term")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--calibrate", action="store_true", help="detector signals on a training folder")
    ap.add_argument("--train-folder", default=".data/bsds500/train", help="--calibrate's sharp photos (training data)")
    ap.add_argument("--n-train", type=int, default=200)
    ap.add_argument("--train-step", type=int, default=1, help="use every k-th training photo")
    # 0.99: a sharp photo deblurred by mistake lost 11-13 dB, a blurred one left alone forgoes 1-2 dB
    ap.add_argument("--keep-sharp", type=float, default=0.99, help="fraction of sharp training crops to keep")
    ap.add_argument("--safeguard", action="store_true", help="pd.deblur with vs without the safeguard (held out)")
    ap.add_argument("--profile", action="store_true", help="with --timing: cProfile of one pd.deblur")
    ap.add_argument("--timing-budgets", nargs="+", default=None, metavar="N_ITER,CG_ITERS",
                    help="with --timing: time these (HQS, CG) budgets, interleaved (default: pd.deblur's)")
    ap.add_argument("--timing-safeguard", action="store_true",
                    help="with --timing: keep the safeguard on (it may stop later global iterations)")
    ap.add_argument("--only", nargs="+", default=None, help="--safeguard: only these photos (names)")
    ap.add_argument("--tag", default="", help="suffix of the output file (--safeguard, --budget, the quality table)")
    ap.add_argument("--budget", action="store_true", help="PSNR per (HQS, CG) iteration budget (tuning folder)")
    ap.add_argument("--tune-folder", default=".data/bsds500/val", help="--budget's sharp photos (not benchmark photos)")
    ap.add_argument("--n-tune", type=int, default=8)
    ap.add_argument("--n-iters", type=int, nargs="+", default=[8, 6, 4], help="--budget: HQS iterations")
    ap.add_argument("--cg-iters", type=int, nargs="+", default=[10, 5, 3], help="--budget: CG iterations per x-step")
    ap.add_argument("--flow-only", action="store_true",
                    help="SEN's flow MSE on the tuning folder (one pass and ensemble) for each --flow-weights")
    ap.add_argument("--flow-weights", nargs="+", default=None, metavar="PATH",
                    help="--flow-only: SEN checkpoints to compare in one run ('shipped' for the library's)")
    args = ap.parse_args(argv)
    if args.flow_only:
        return flow_accuracy(args)
    model = SEN.pretrained() if args.weights is None else SEN.from_checkpoint(args.weights)
    if args.calibrate:
        return calibrate(args, model)
    if args.safeguard:
        return safeguard_compare(args, model, args.device)
    if args.budget:
        return budget(args, model, args.device)
    if args.timing:
        rows = timing(args, model, args.device)
        return write_rows("blind_timing", args.device, rows)
    rows = quality(args, model, args.device)
    summary = {}
    for preset in sorted({r["preset"] for r in rows}):
        sel = [r for r in rows if r["preset"] == preset]
        keys = [k for k in sel[0] if k.startswith(("mse_", "psnr_", "ssim_", "t_"))]
        summary[preset] = {k: float(np.mean([r[k] for r in sel])) for k in keys}
        print(f"\n±{preset}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[preset].items()))
    return write_rows("blind" + (f"_{args.tag}" if args.tag else ""), args.device, rows, summary=summary,
                      weights=str(args.weights or "shipped"), corpus=args.corpus, prior=args.prior,
                      rpgan_weights=args.rpgan_weights, rpgan_levels=args.rpgan_levels)


if __name__ == "__main__":
    main()
