"""Non-blind deblurring quality benchmark (issue 4).

Sharp scikit-image photographs (cropped/resized to 256², held out from the DnCNN
training set) are blurred with the true per-pixel motion flow (Gong-style random
flows, |m| ≤ 23 and ≤ 46 px) through ``MotionBlur`` and corrupted with Gaussian noise
σ = 0.01 and 0.03 (and 0 at |m| ≤ 23). Each solver/prior pair restores them with the *true*
operator; the table reports PSNR/SSIM (outputs clipped to [0, 1]) and wall time. Priors
inside HQS: TV, the shipped DnCNN, the shipped small DRUNet (issue 15) and BM3D (the
optional ``bm3d`` package; slow, limit it with ``--methods`` / ``--images``).

A second table checks the classical baselines against scikit-image on the same
problem with a uniform kernel (``UniformBlur`` / ``Convolution(boundary='zero')``).

Usage::

    python benchmarks/nonblind.py            # full run, writes benchmarks/nonblind.json
    python benchmarks/nonblind.py --quick    # 2 images, σ = 0.01, |m| ≤ 23 only
    python benchmarks/nonblind.py --part motion --methods hqs-dncnn,hqs-drunet,hqs-bm3d --images 2
    python benchmarks/nonblind.py --part motion --folder testsets/CBSD68 --images 8 --out cbsd.json

``--folder DIR`` replaces the four photos with the first ``--images`` images of ``DIR`` (sorted by
name; ``--skip K`` starts at the (K+1)-th), each centre-cropped to 256² without resizing (a
standard test set, e.g. CBSD68, whose images are 481×321); flows and noise are seeded by the
image's position in the folder, so ``--skip 10 --images 6`` continues ``--images 10``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pnpdeblur.data import list_images, random_motion_flow, read_image, sample_image
from pnpdeblur.metrics import psnr, ssim
from pnpdeblur.operators import Convolution, MotionBlur, UniformBlur
from pnpdeblur.priors import TV, WEIGHT_KINDS, DnCNNPrior, prior_from_weights
from pnpdeblur.priors.from_file import parse_weights_spec
from pnpdeblur.priors.drunet import DRUNetPrior
from pnpdeblur.solvers import admm, fft_deconv, hqs, richardson_lucy

from denoise import centre_crop  # the crops of the denoising and schedule benchmarks

IMAGES = ["astronaut", "camera", "coffee", "chelsea"]


def metrics(x, ref):
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    ref = np.asarray(ref, dtype=np.float64)
    ax = -1 if ref.ndim == 3 else None
    return float(psnr(x, ref, channel_axis=ax)), float(ssim(x, ref, channel_axis=ax))


#: ``--methods`` keys → table names.
METHODS = {"hqs-tv": "HQS + TV", "hqs-dncnn": "HQS + DnCNN", "hqs-drunet": "HQS + DRUNet",
           "hqs-bm3d": "HQS + BM3D", "admm-tv": "ADMM + TV", "rl": "Richardson–Lucy (30 it)"}
#: Variants run only when named in ``--methods`` (DRUNetPrior's geometric cycling off / the 4-flip ensemble).
EXTRA_METHODS = {"hqs-drunet-nocycle": "HQS + DRUNet, no cycling", "hqs-drunet-ensemble": "HQS + DRUNet, 4-flip ensemble",
                 "hqs-drunet-weights": "HQS + DRUNet, --drunet-weights", "hqs-drunet-medium": "HQS + DRUNet medium"}


def methods(noise, keys=tuple(METHODS), drunet_weights=None, lam=None, sigma_start=None, prior_files=()):
    def prior(key):
        if key == "hqs-tv":
            return TV()
        if key == "hqs-dncnn":
            return DnCNNPrior()
        if key == "hqs-drunet":
            return DRUNetPrior()
        if key == "hqs-drunet-nocycle":
            return DRUNetPrior(cycle=False)
        if key == "hqs-drunet-ensemble":
            return DRUNetPrior(ensemble=True)
        if key == "hqs-drunet-medium":
            return DRUNetPrior(variant="medium")
        if key == "hqs-drunet-weights":
            if drunet_weights is None:
                raise SystemExit("--methods hqs-drunet-weights needs --drunet-weights PATH")
            return DRUNetPrior(str(drunet_weights))
        from pnpdeblur.priors.bm3d import BM3D

        return BM3D()

    out = {}
    schedule = {k: v for k, v in (("lam", lam), ("sigma_start", sigma_start)) if v is not None}
    for key in keys:
        if key.startswith("hqs-"):
            out[{**METHODS, **EXTRA_METHODS}[key]] = (
                lambda p: lambda y, K: hqs(y, K, prior=p, noise_level=noise, progress=False, **schedule).x)(prior(key))
        elif key == "admm-tv":
            out[METHODS[key]] = lambda y, K: admm(y, K, prior=TV(), noise_level=noise, progress=False).x
        elif key == "rl":
            out[METHODS[key]] = lambda y, K: richardson_lucy(y, K, iters=30, progress=False).x
    for kind, path in prior_files:  # e.g. the authors' weights: --prior-file drunet:drunet_color.pth
        out[f"HQS + {kind} ({Path(path).name})"] = (
            lambda p: lambda y, K: hqs(y, K, prior=p, noise_level=noise, progress=False, **schedule).x
        )(prior_from_weights(kind, path))
    return out


#: (flow preset, noise σ) of the full run.
SETTINGS = [("23", 0.01), ("46", 0.01), ("23", 0.03), ("46", 0.03), ("23", 0.0)]


def load_photos(quick, n_images=None, folder=None, skip=0):
    """``[(position, name, sharp 256² float32 image)]``: the four photos, or ``n_images`` of
    ``folder`` from its (``skip`` + 1)-th image on."""
    if folder is None:
        names = IMAGES[:2] if quick else IMAGES[:n_images]
        return [(i, name, sample_image(name, size=256, dtype=np.float32)) for i, name in enumerate(names)]
    files = list_images(folder)
    files = files[skip:skip + (2 if quick else n_images or len(files))]
    if not files:
        raise SystemExit(f"--folder {folder}: no images found (after skipping {skip})")
    return [(skip + i, p.stem, centre_crop(read_image(p, 3), 256).astype(np.float32)) for i, p in enumerate(files)]


def motion_cases(quick, n_images=None, settings=None, folder=None, skip=0):
    settings = [("23", 0.01)] if quick else (settings or SETTINGS)
    photos = load_photos(quick, n_images, folder, skip)
    for preset, noise in settings:
        for i, name, x in photos:
            yield name, x, i, preset, noise


def run_motion(quick, keys=tuple(METHODS), n_images=None, settings=None, drunet_weights=None, lam=None,
               sigma_start=None, prior_files=(), folder=None, skip=0):
    rows = []
    for name, x, i, preset, noise in motion_cases(quick, n_images, settings, folder, skip):
        flow = random_motion_flow((256, 256), preset, seed=100 + i)
        K = MotionBlur(flow[None])
        rng = np.random.default_rng(i)
        y = (np.asarray(K(x)) + noise * rng.standard_normal(x.shape)).astype(np.float32)
        bp, bs = metrics(y, x)
        row = dict(image=name, preset=preset, max_m=float(np.hypot(flow[0], flow[1]).max()), noise=noise,
                   channels=int(x.shape[2]), blurred_psnr=bp, blurred_ssim=bs, results={})
        for mname, fn in methods(noise, keys, drunet_weights, lam, sigma_start, prior_files).items():
            t = time.perf_counter()
            out = fn(y, K)
            dt = time.perf_counter() - t
            p, s = metrics(out, x)
            row["results"][mname] = dict(psnr=p, ssim=s, time=dt)
            print(f"  {name:9s} |m|≤{preset} σ={noise:<5} {mname:24s} {p:6.2f} dB (blurred {bp:5.2f})  {dt:6.1f} s", flush=True)
        rows.append(row)
    return rows


def run_uniform():
    """Same problem through UniformBlur/Convolution: our baselines vs scikit-image."""
    from skimage import restoration

    x = sample_image("camera", size=256, channels=1, dtype=np.float64)[:, :, 0]
    psf = np.ones((9, 9)) / 81.0
    noise = 0.01
    rng = np.random.default_rng(0)
    out = {}
    # Richardson–Lucy, zero boundary (skimage's convolution convention), noise-free
    Kz = Convolution(psf, "zero")
    y0 = np.clip(np.asarray(Kz(x)), 0, None)
    t = time.perf_counter()
    ours = richardson_lucy(y0, Kz, iters=30, normalize=False, progress=False).x
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = restoration.richardson_lucy(y0, psf, num_iter=30, clip=False)
    t_ref = time.perf_counter() - t
    normalized = richardson_lucy(y0, Kz, iters=30, normalize=True, progress=False).x
    out["richardson_lucy"] = dict(
        max_abs_diff=float(np.abs(ours - ref).max()), psnr_ours=metrics(ours, x)[0], psnr_skimage=metrics(ref, x)[0],
        psnr_ours_normalized=metrics(normalized, x)[0],
        blurred_psnr=metrics(y0, x)[0], time_ours=t_ours, time_skimage=t_ref,
    )
    # Wiener / Tikhonov closed form vs skimage.restoration.wiener, periodic blur, σ = 0.01
    Ku = UniformBlur(psf)
    y = np.asarray(Ku(x)) + noise * rng.standard_normal(x.shape)
    ours = fft_deconv(y, Ku, balance=0.05, reg="laplacian")
    ref = restoration.wiener(y, psf, balance=0.05, clip=False)
    out["wiener"] = dict(max_abs_diff=float(np.abs(ours - ref).max()), psnr_ours=metrics(ours, x)[0],
                         psnr_skimage=metrics(ref, x)[0], blurred_psnr=metrics(y, x)[0])
    # HQS on the same periodic problem (exact FFT x-step) vs the best skimage baselines
    t = time.perf_counter()
    h_tv = hqs(y, Ku, prior=TV(), noise_level=noise, progress=False).x
    t_h = time.perf_counter() - t
    h_dn = hqs(y, Ku, prior=DnCNNPrior(), noise_level=noise, progress=False).x
    uw, _ = restoration.unsupervised_wiener(y, psf, clip=False, rng=0)
    out["hqs_uniform"] = dict(psnr_hqs_tv=metrics(h_tv, x)[0], psnr_hqs_dncnn=metrics(h_dn, x)[0],
                              psnr_skimage_unsupervised_wiener=metrics(uw, x)[0], time_hqs_tv=t_h,
                              blurred_psnr=metrics(y, x)[0])
    return out


def summarise(rows):
    groups = {}
    for r in rows:
        key = (r["preset"], r["noise"])
        g = groups.setdefault(key, {"blurred": [], "blurred_ssim": []})
        g["blurred"].append(r["blurred_psnr"])
        g["blurred_ssim"].append(r["blurred_ssim"])
        for m, v in r["results"].items():
            g.setdefault(m, []).append((v["psnr"], v["ssim"], v["time"]))
    table = []
    for (preset, noise), g in groups.items():
        b, bs = float(np.mean(g["blurred"])), float(np.mean(g["blurred_ssim"]))
        for m, vals in g.items():
            if m.startswith("blurred"):
                continue
            a = np.array(vals)
            table.append(dict(preset=preset, noise=noise, method=m, n=len(vals), blurred_psnr=b, blurred_ssim=bs,
                              psnr=float(a[:, 0].mean()), ssim=float(a[:, 1].mean()),
                              gain=float(a[:, 0].mean() - b), time=float(a[:, 2].mean())))
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description="Non-blind deblurring benchmark (issue 4)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded 2-core VM)")
    ap.add_argument("--part", choices=["all", "motion", "uniform"], default="all",
                    help="run only one table (the other is kept from an existing JSON)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of: " + ", ".join({**METHODS, **EXTRA_METHODS}) + " (default: all "
                    "but " + ", ".join(EXTRA_METHODS) + "; --quick and a missing 'bm3d' package leave hqs-bm3d out)")
    ap.add_argument("--images", type=int, default=None, help="use only the first N of the four photos (or of --folder)")
    ap.add_argument("--folder", type=Path, default=None,
                    help="photos from this folder (sorted; 256² centre crops) instead of the four scikit-image ones")
    ap.add_argument("--skip", type=int, default=0, help="with --folder: leave out its first K images")
    ap.add_argument("--settings", default=None,
                    help="comma-separated preset:sigma pairs (default: " + ",".join(f"{p}:{n}" for p, n in SETTINGS) + ")")
    ap.add_argument("--drunet-weights", type=Path, default=None,
                    help="a DRUNet checkpoint for the method hqs-drunet-weights (a candidate before shipping, "
                         "or DPIR's drunet_color.pth)")
    ap.add_argument("--prior-file", action="append", default=[], metavar="KIND:PATH",
                    help="also run HQS with this prior: KIND one of " + ", ".join(WEIGHT_KINDS) + ", PATH a "
                         "checkpoint or the authors' file (e.g. drunet:drunet_color.pth; repeatable)")
    ap.add_argument("--lam", type=float, default=None,
                    help="the HQS methods' λ (β = λ·σ²/σ_k²; default: the prior's hqs_lam, else DEFAULT_LAMBDA)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("nonblind.json"))
    ap.add_argument("--sigma-start", type=float, default=None,
                    help="the HQS methods' first σ_k, in grey levels of 255 (default: the prior's hqs_sigma_start, "
                    "else 49)")
    args = ap.parse_args(argv)
    if args.skip < 0 or (args.skip and args.folder is None):
        ap.error(f"--skip must be >= 0 and needs --folder, got {args.skip}")
    if args.lam is not None and not args.lam > 0:
        ap.error(f"--lam must be > 0, got {args.lam}")
    if args.sigma_start is not None and not args.sigma_start > 0:
        ap.error(f"--sigma-start must be > 0, got {args.sigma_start}")
    sigma_start = None if args.sigma_start is None else args.sigma_start / 255.0
    if args.methods is None:
        from pnpdeblur.priors.bm3d import bm3d_available

        keys = [k for k in METHODS if k != "hqs-bm3d" or (bm3d_available() and not args.quick)]
    else:
        keys = [k.strip() for k in args.methods.split(",") if k.strip()]
    settings = None
    if args.settings:
        try:
            settings = [(p.split(":")[0], float(p.split(":")[1])) for p in args.settings.split(",") if p.strip()]
        except (IndexError, ValueError):
            ap.error(f"--settings: expected preset:sigma pairs such as 23:0.01, got {args.settings!r}")
    try:
        prior_files = [parse_weights_spec(spec) for spec in args.prior_file]
    except ValueError as e:
        ap.error(f"--prior-file: {e}")
    unknown = sorted(set(keys) - set(METHODS) - set(EXTRA_METHODS))
    if unknown:
        ap.error(f"--methods: unknown {unknown} (choose from {', '.join({**METHODS, **EXTRA_METHODS})})")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    result = json.loads(args.out.read_text()) if args.part != "all" and args.out.is_file() else {}
    result["machine"] = dict(platform=platform.platform(), processor=platform.processor(), torch=torch.__version__,
                             threads=args.threads, cpus=__import__("os").cpu_count())
    result["quick"] = args.quick
    result["methods"], result["images"], result["lam"], result["sigma_start"] = keys, args.images, args.lam, sigma_start
    result["folder"], result["skip"] = (None if args.folder is None else str(args.folder)), args.skip
    if args.part in ("all", "motion"):
        rows = run_motion(args.quick, keys, args.images, settings, args.drunet_weights, args.lam, sigma_start,
                          prior_files, args.folder, args.skip)
        result["per_image"], result["summary"] = rows, summarise(rows)
        args.out.write_text(json.dumps(result, indent=2))
    if "summary" in result:
        print_table(result["summary"])
    if args.part in ("all", "uniform"):
        result["uniform"] = run_uniform()
    print("\nUniform 9×9 box blur, camera 256² grey (ours vs scikit-image):")
    print(json.dumps(result.get("uniform"), indent=2))
    result["seconds"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out} ({result['seconds']} s)")


def print_table(table):
    print("\n| max |m| | σ | method | images | blurred PSNR / SSIM | PSNR / SSIM | gain (dB) | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for t in table:
        print(f"| {t['preset']} | {t['noise']} | {t['method']} | {t['n']} | {t['blurred_psnr']:.2f} / {t['blurred_ssim']:.3f} "
              f"| {t['psnr']:.2f} / {t['ssim']:.3f} | {t['gain']:+.2f} | {t['time']:.1f} |")


if __name__ == "__main__":
    main()
