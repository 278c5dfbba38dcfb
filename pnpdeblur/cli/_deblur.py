"""``pnpdeblur deblur``: plan the outputs, load the models, then deblur and write each photo with
the plug-and-play pipelines (or an end-to-end ``--net``), one failure at a time, across torchrun's
processes."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._deblur_options import _model_conflicts, _prior_problem, _read_given_blur
from ._device import _resolve_device
from ._files import OutputPlan, _overwrite_conflicts, collect_inputs, plan_outputs
from ._image_io import _atomic_save, _imsave, _read, _to_storage
from ._nets import _load_net
from ._priors import PRIOR_WEIGHTS, PRIORS
from ._status import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _err

__all__ = ["_run_deblur", "_load_models"]


def _run_deblur(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from ..train import distributed as dist

    problem = _model_conflicts(args) or _read_given_blur(args) or _prior_problem(args)
    if problem:
        print(f"pnpdeblur deblur: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    files, problems = collect_inputs(args.inputs, args.recursive)
    save_flow = args.save_flow or args.flow_npy
    outdir: Path = args.output
    if outdir.exists() and not outdir.is_dir():
        print(f"pnpdeblur deblur: error: output {outdir} exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    plans = plan_outputs(files, outdir, save_flow, args.flow_npy, save_kernel=args.save_kernel,
                         kernel_npy=args.kernel_npy)
    conflicts = _overwrite_conflicts(plans, files)
    if conflicts:
        for o, i in conflicts:
            print(f"pnpdeblur deblur: error: output {o} would overwrite the input {i}", file=sys.stderr)
        print("pnpdeblur deblur: error: refusing to write; choose another output folder (-o)", file=sys.stderr)
        return EXIT_USAGE

    owns_group = not dist.is_distributed()
    try:  # a malformed WORLD_SIZE (torchrun's environment) or --device is a usage error
        distributed = dist.env_world_size() > 1 and dist.init_distributed()
        device = _resolve_device(args.device, distributed)
    except ValueError as e:
        print(f"pnpdeblur deblur: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    main_rank = dist.is_main_process()
    failed: List[str] = []
    if main_rank:  # argument-level problems are reported once, not by every rank
        for p, why in problems:
            _err(f"pnpdeblur: skipped {p}: {why}")
            failed.append(str(p))
        for pl in plans:
            if pl.renamed:
                _err(f"pnpdeblur: note: {pl.source} → {pl.image.name} (its name is taken by another input)")
    mine = dist.shard(plans)
    if mine:
        outdir.mkdir(parents=True, exist_ok=True)
        try:
            models = _load_models(args) if args.net is None else _load_net(args.net, device)
        except Exception as e:  # bad --flow-weights / --prior-weights / --net, missing or corrupt weights
            what = "the models" if args.net is None else f"--net {args.net}"
            _err(f"pnpdeblur deblur: error: cannot load {what}: {e}")
            failed += [str(pl.source) for pl in mine]  # no early return: other ranks wait below
        else:
            failed += (_deblur_files(mine, args, device, *models) if args.net is None else
                       _each_file(mine, args, models.restore, _write_image))
    if distributed:
        failed = [f for part in dist.all_gather_objects(failed) for f in part]
        if owns_group:
            import torch.distributed

            torch.distributed.destroy_process_group()
    if failed and main_rank:
        _err(f"pnpdeblur: {len(failed)} input(s) failed: {', '.join(failed)}")
    return EXIT_FAILED if failed else EXIT_OK


def _load_models(args: argparse.Namespace) -> Tuple[Any, Any]:
    prior = (PRIORS[args.prior]() if args.prior_weights is None
             else PRIOR_WEIGHTS[args.prior](args.prior_weights))
    if args.shake or args.flow is not None:  # a kernel is estimated without a network; a given flow needs none
        return prior, None
    if args.flow_weights is not None:
        from ..nets.sen import SEN

        flow_model = SEN.from_checkpoint(args.flow_weights)
    else:
        from ..estimation.learned import default_flow_model

        flow_model = default_flow_model()
    return prior, flow_model


def _write_image(pl: OutputPlan, x: Any, sixteen: bool) -> None:
    """Write a result image to ``pl.image`` (16 bits when its input had 16)."""
    _imsave(pl.image, _to_storage(x, sixteen))


def _each_file(plans: Sequence[OutputPlan], args: argparse.Namespace, solve: Callable[[np.ndarray], Any],
               write: Callable[[OutputPlan, Any, bool], None]) -> List[str]:
    """Read, process and write each planned file, under one progress bar; returns the names of those
    that failed.

    ``solve(image)`` gets the photo as :func:`_read` gives it (float32 ``(H, W, C)``, C = 1 or 3);
    ``write(plan, result, sixteen)`` says what it has to about the result and writes it. A file that
    cannot be read, solved or written is named on stderr and counted, and the next one goes on.
    """
    from tqdm.auto import tqdm

    from ..train.distributed import rank, world_size

    failed: List[str] = []
    desc = "images" if world_size() == 1 else f"images (rank {rank()})"
    for pl in tqdm(plans, desc=desc, unit="img", disable=args.no_progress, dynamic_ncols=True):
        try:
            img, sixteen = _read(pl.source)
        except (FileNotFoundError, ValueError, OSError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]  # decoders add multi-line hints
            _err(f"pnpdeblur: skipped {pl.source}: not a readable image ({why})")
            failed.append(str(pl.source))
            continue
        try:
            res = solve(img)
        except Exception as e:  # one bad photo must not stop a batch; it is named and counted
            _err(f"pnpdeblur: failed on {pl.source}: {type(e).__name__}: {e}")
            failed.append(str(pl.source))
            continue
        try:
            write(pl, res, sixteen)
        except (OSError, ValueError, TypeError) as e:  # disk full, permissions, encoder refusals
            _err(f"pnpdeblur: cannot write the result of {pl.source}: {e}")
            failed.append(str(pl.source))
    return failed


def _deblur_files(plans: Sequence[OutputPlan], args: argparse.Namespace, device: Optional[str],
                  prior: Any, flow_model: Any) -> List[str]:
    """Deblur and write each planned file with the plug-and-play pipelines; returns the names of
    those that failed."""
    from ..auto import deblur_auto
    from ..camera_shake import check_shake_kernel_size, deblur_shake
    from ..pipeline import deblur

    progress = not args.no_progress
    given_flow, given_kernel = getattr(args, "given_flow", None), getattr(args, "given_kernel", None)
    safeguard: Dict[str, Any] = {"safeguard": not args.no_safeguard}
    if args.blur_threshold is not None:
        safeguard["blur_threshold"] = args.blur_threshold

    def solve(img: np.ndarray) -> Any:
        with warnings.catch_warnings():  # _report_result says it in the CLI's words
            warnings.filterwarnings("ignore", message=r"pd\.deblur(_shake)? returned image\(s\) .* unchanged")
            warnings.filterwarnings("ignore", message=r"pd\.deblur(_shake)? left image\(s\) .* every value")
            # said below in the CLI's words (--kernel-size)
            warnings.filterwarnings("ignore", message=r"kernel_size \d+ is too large for a photo")
            common = dict(prior=prior, noise_level=args.noise_level, device=device, boundary=args.boundary,
                          saturation=None if args.no_saturation else args.saturation, gamma=args.gamma)
            flow_opts = dict(iterations=args.iterations, n_iter=args.hqs_iters, cg_iters=args.cg_iters,
                             flow_scale=args.flow_scale, flow_ensemble=not args.no_flow_ensemble)
            floor = {} if args.noise_floor is None else {"noise_floor": args.noise_floor}  # else the library's
            if (args.shake or args.auto) and given_kernel is None:  # checked here to name the flag
                check_shake_kernel_size(args.kernel_size, img.shape[:2], "--kernel-size", warn=True)
            if given_flow is not None:
                if given_flow.shape[1:] != img.shape[:2]:
                    raise ValueError(f"the photo is {img.shape[0]}x{img.shape[1]} px (H x W) and --flow "
                                     f"{args.flow} is {given_flow.shape[1]}x{given_flow.shape[2]}")
                return deblur(img, flow=given_flow, progress=progress, n_iter=args.hqs_iters,
                              cg_iters=args.cg_iters, **common, **floor)
            if given_kernel is not None:
                return deblur_shake(img, kernel=given_kernel, **common, **floor)
            if args.shake:
                return deblur_shake(img, args.kernel_size, **common, **safeguard, **floor)
            if args.auto:
                return deblur_auto(img, kernel_size=args.kernel_size, flow_model=flow_model,
                                   progress=progress, flow_options={**flow_opts, **floor},
                                   **({"shake_options": floor} if floor else {}), **common, **safeguard)
            return deblur(img, flow_model=flow_model, progress=progress, **flow_opts, **common, **safeguard,
                          **floor)

    def write(pl: OutputPlan, res: Any, sixteen: bool) -> None:
        _report_result(pl, res, args)
        _write_image(pl, res.x, sixteen)
        if pl.flow_png is not None:
            from ..viz import flow_to_color

            flow = np.asarray((res.flow_result if args.auto else res).flow[-1], dtype=np.float32)
            _imsave(pl.flow_png, flow_to_color(flow, symmetric=True))  # blur: m ≡ −m
            if pl.flow_npy is not None:
                _atomic_save(pl.flow_npy, lambda p: np.save(p, flow))
        if pl.kernel_png is not None:
            k = np.asarray((res.shake_result if args.auto else res).kernel, dtype=np.float64)
            _imsave(pl.kernel_png, np.round(255.0 * k / k.max()).astype(np.uint8))
            if pl.kernel_npy is not None:  # every weight, for --kernel to read back exactly
                _atomic_save(pl.kernel_npy, lambda p: np.save(p, k))

    return _each_file(plans, args, solve, write)


def _report_result(pl: OutputPlan, res: Any, args: argparse.Namespace) -> None:
    """Say on stderr why a pipeline left a photo as it was, or which blur model ``--auto`` chose."""
    # (a result without the pipelines' results or history, e.g. a stand-in, is not clipped)
    runs = (getattr(res, "flow_result", None), getattr(res, "shake_result", None)) if args.auto else (res,)
    if all(_clipped_everywhere(r) for r in runs):
        _err(f"pnpdeblur: {pl.source} is clipped everywhere (every value at or above --saturation "
             f"{args.saturation:g}): written unchanged (--no-saturation deblurs it anyway)")
    elif args.auto:
        model = res.model[0]
        if model == "none":
            small, failed = _support_too_small(res.shake_result), _overshot(res.shake_result)
            if failed:
                _err(f"pnpdeblur: {pl.source} looks sharp to SEN's flow, and the camera-shake kernel estimated on it "
                     f"failed ({failed}): written unchanged (--no-safeguard deblurs it anyway)")
            elif small:  # the kernel model could not have found a blur: it did not judge the photo
                _err(f"pnpdeblur: {pl.source} looks sharp to SEN's flow and is too small for the kernel model to "
                     f"judge ({small}): written unchanged (--no-safeguard deblurs it anyway)")
            else:
                _err(f"pnpdeblur: {pl.source} looks sharp to both blur models: written unchanged (--no-safeguard "
                     "deblurs it anyway)")
        else:
            said = "one camera-shake kernel" if model == "shake" else "SEN's per-pixel flow"
            # a nan residual: that model's safeguard found no blur and left the photo as it was
            fmt = lambda r: f"{r:.3g}" if r == r else "none (no blur found)"  # noqa: E731
            _err(f"pnpdeblur: note: {pl.source}: {said} explains the photo better (reblur residual "
                 f"{fmt(res.residual_shake[0])} with the kernel, {fmt(res.residual_flow[0])} with the flow)")
    elif res.unchanged and res.unchanged[0]:
        if args.shake:
            score, threshold = res.history[0]["kernel_length"], res.history[0]["threshold"]
            small, failed = _support_too_small(res), _overshot(res)
            if failed:
                _err(f"pnpdeblur: the camera-shake kernel estimated on {pl.source} failed ({failed}): written "
                     "unchanged (--no-safeguard deblurs it anyway)")
                return
            if small:
                _err(f"pnpdeblur: {pl.source} is too small to judge its blur ({small}): written "
                     "unchanged (a larger --kernel-size with --no-safeguard deblurs it anyway)")
                return
        else:
            guard = res.history[0]["safeguard"]
            score, threshold = guard["blur_score"][0], guard["threshold"]
        _err(f"pnpdeblur: {pl.source} looks sharp (estimated blur {score:.2f} px < {threshold:g} px): written "
             "unchanged (--no-safeguard deblurs it anyway)")


def _left_unchanged(res: Any) -> Optional[Dict[str, Any]]:
    """The history entry of a pipeline result's first image when that image was left as given, else
    None (also for a result without ``unchanged`` or ``history``, e.g. a stand-in)."""
    if not getattr(res, "unchanged", None) or not res.unchanged[0] or not getattr(res, "history", None):
        return None
    return res.history[0]


def _support_too_small(res: Any) -> str:
    """For a deblur_shake result whose first photo was left unchanged: why its kernel support could not
    show a blur as long as the safeguard's threshold, or ``""`` when it could (or there is no such result)."""
    entry = _left_unchanged(res)
    if entry is None or "kernel_length" not in entry or "threshold" not in entry:
        return ""
    support, threshold = int(np.shape(res.kernel)[-1]), entry["threshold"]
    if support >= threshold:
        return ""
    return (f"a {support}x{support} px kernel support, under the {threshold:g} px threshold; estimated blur "
            f"{entry['kernel_length']:.2f} px")


def _overshot(res: Any) -> str:
    """For a deblur_shake result whose first photo was solved and then left unchanged by the
    overshoot check: what its result overshot by, or ``""``."""
    entry = _left_unchanged(res)
    if entry is None:
        return ""
    value, limit = entry.get("overshoot"), entry.get("overshoot_threshold")
    if value is None or limit is None:  # never solved, or not judged: the photo was left by another check
        return ""
    return f"deblurred with it, {value:.3f} of the values overshoot [0, 1], above {limit:g}"


def _clipped_everywhere(res: Any) -> bool:
    """Whether a deblur or deblur_shake result's first image was left as given for being clipped
    everywhere (its ``clipped_fraction`` is 1)."""
    entry = _left_unchanged(res)
    if entry is None:
        return False
    clipped = entry.get("clipped_fraction")
    return (clipped[0] if isinstance(clipped, list) else clipped) == 1.0
