"""The ``pnpdeblur`` command line (also ``python -m pnpdeblur``).

Subcommands
-----------
``pnpdeblur deblur IN… -o OUTDIR``
    Blind deblurring of photos with :func:`pnpdeblur.deblur` (SEN flow → HQS/CG with a
    prior, global iterations). Unreadable inputs are reported and skipped (exit status 1 at
    the end); an input file is never overwritten (exit status 2 before any work). Under
    ``torchrun`` the files are split across the processes. ``--net NAME|PATH`` runs an end-to-end
    network of :data:`DEBLUR_NETS` (``.restore(photo)``) instead, with the same files, names and
    statuses; it refuses the pipelines' options (exit status 2), and a network that cannot be
    loaded fails every input (exit status 1), as the pipelines' models do.
``pnpdeblur train <model> [args…]``
    Forwards ``args`` to the model's training recipe (:data:`TRAINERS`: ``sen``, ``rpgan``,
    ``deepdeblur``, ``deblurnet``, ``dvd``, ``deblurgan``, ``flownets``, ``drunet``, ``dncnn``).
    A recipe's refusal (a bad option, a missing folder, a ``ValueError`` deep in a run) is one
    line and exit status 1; with the environment variable ``PNPDEBLUR_DEBUG`` set (to anything
    but ``0``) the exception is raised instead, with its traceback.
``pnpdeblur finetune FRAMES_DIR --net NAME|PATH -o OUTDIR``
    Reblur2Deblur test-time fine-tuning (:func:`pnpdeblur.train.reblur.finetune_reblur`) of a
    deblurring network on the blurred video frames of a folder (temporal order = natural sort
    of the file names), then writes the deblurred frames. ``--net NAME`` loads the shipped
    weights of :data:`FINETUNE_NETS`; ``--net PATH`` any pnpdeblur checkpoint of one of those
    architectures (named in its header).
``pnpdeblur warmup``
    Compiles the CPU kernels now, several at a time (:func:`pnpdeblur.warmup.warm_kernels`),
    into numba's on-disk cache, so that the first solve does not compile them one by one.

:func:`main` takes an argument list and returns the exit status, so the command line can be
driven in-process (tests, notebooks); the console script passes it to ``sys.exit``.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["main", "build_parser", "TRAINERS", "PRIORS", "FINETUNE_NETS", "DEBLUR_NETS", "OutputPlan",
           "plan_outputs", "collect_inputs", "load_deblur_net", "sorted_frames"]

# Exit statuses: 1 = some inputs failed (the others were written), 2 = usage error / refused.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# pd.deblur's n_iter and cg_iters with an estimated flow and with a given one (None: hqs's default
# length, 8), written out so that `--help` needs no torch import (tests/test_cli_direct.py keeps
# them equal to pipeline.ESTIMATED_FLOW_SOLVE and GIVEN_FLOW_SOLVE)
DEBLUR_HQS_ITERS, DEBLUR_CG_ITERS = 4, 5
GIVEN_FLOW_HQS_ITERS, GIVEN_FLOW_CG_ITERS = 8, 30
DEBLUR_SATURATION = 0.98  # pd.solvers.DEFAULT_SATURATION (a literal: --help loads no torch)


def _train_sen(argv: Sequence[str]) -> Any:
    from .train.sen import main as sen_main

    return sen_main(list(argv))


def _train_rpgan(argv: Sequence[str]) -> Any:
    from .train.rpgan import main as rpgan_main

    return rpgan_main(list(argv))


def _train_drunet(argv: Sequence[str]) -> Any:
    from .train.drunet import main as drunet_main

    return drunet_main(list(argv))


def _train_dncnn(argv: Sequence[str]) -> Any:
    from .train.dncnn import main as dncnn_main

    return dncnn_main(list(argv))


def _deblurnet_trainer(name: str) -> Callable[[Sequence[str]], Any]:
    def train(argv: Sequence[str]) -> Any:
        from .train.deblurnets import main as deblurnets_main

        return deblurnets_main([name, *argv])

    return train


#: ``pnpdeblur train <name> args…`` calls ``TRAINERS[name](args)``; add a model by adding an entry.
TRAINERS: Dict[str, Callable[[Sequence[str]], Any]] = {
    "sen": _train_sen,
    "rpgan": _train_rpgan,
    "drunet": _train_drunet,
    "dncnn": _train_dncnn,
    **{name: _deblurnet_trainer(name) for name in ("deepdeblur", "deblurnet", "dvd", "deblurgan", "flownets")},
}


def _prior_dncnn():
    from .pipeline import default_prior

    return default_prior()  # the same DnCNN set-up as pd.deblur's default


def _prior_tv():
    from .priors import TV

    return TV()


def _prior_drunet():
    from .priors import DRUNetPrior

    return DRUNetPrior()


def _prior_drunet_medium():
    from .priors import DRUNetPrior

    return DRUNetPrior(variant="medium")


#: ``--prior`` choices → factory of the HQS prior.
PRIORS: Dict[str, Callable[[], Any]] = {"dncnn": _prior_dncnn, "tv": _prior_tv, "drunet": _prior_drunet,
                                        "drunet-medium": _prior_drunet_medium}


def _prior_with_weights(kind: str) -> Callable[[Path], Any]:
    def make(path: Path):
        from .priors import prior_from_weights

        # the DnCNN set up as pd.deblur's default (no flip ensemble)
        return prior_from_weights(kind, path, **({"ensemble": False} if kind == "dncnn" else {}))

    return make


#: ``--prior NAME --prior-weights PATH`` → factory of the prior with those weights (``ffdnet`` and
#: ``ircnn`` ship none: they need the authors' file).
PRIOR_WEIGHTS: Dict[str, Callable[[Path], Any]] = {k: _prior_with_weights(k) for k in ("dncnn", "drunet", "ffdnet",
                                                                                       "ircnn")}

#: ``finetune --net NAME`` → the deblurring network class (a class, or ``"module:Class"``
#: imported on use). ``--net PATH`` accepts a checkpoint of any of these classes.
FINETUNE_NETS: Dict[str, Any] = {
    "deepdeblur": "pnpdeblur.nets.deepdeblur:DeepDeblur",
    "deblurgan": "pnpdeblur.nets.deblurgan:DeblurGANGenerator",
    "deblurnet": "pnpdeblur.nets.deblurnet:DeblurNet",
    "dvd": "pnpdeblur.nets.dvd:DVD",  # no shipped weights: --net PATH of a DVD checkpoint
}

#: ``deblur --net NAME`` → the single-image deblurring networks (those with ``.restore(photo)``); DVD
#: restores a frame from a stack of frames and stays with ``finetune``.
DEBLUR_NETS: Dict[str, Any] = {k: FINETUNE_NETS[k] for k in ("deepdeblur", "deblurgan", "deblurnet")}


_DEBLUR_EPILOG = """\
examples:
  pnpdeblur deblur photo.jpg -o out/                 # writes out/photo.png
  pnpdeblur deblur shots/ -o out/ --recursive --device cuda
  pnpdeblur deblur a.png b.jpg -o out/ --iterations 2 --save-flow --flow-npy
  pnpdeblur deblur noisy.png -o out/ --noise-level 0.02 --prior tv
  pnpdeblur deblur shaky.jpg -o out/ --shake --kernel-size 41   # hand-held camera shake
  pnpdeblur deblur unknown.jpg -o out/ --auto      # shake or per-pixel motion, chosen per photo
  pnpdeblur deblur photo.jpg -o out/ --prior drunet --prior-weights drunet_color.pth   # DPIR's DRUNet
  pnpdeblur deblur frame2.png -o out/ --kernel out/frame1_kernel.npy   # a known kernel (non-blind)
  pnpdeblur deblur photo.png -o out/ --flow photo_flow.npy   # a known per-pixel flow
  pnpdeblur deblur shots/ -o out/ --net deepdeblur   # an end-to-end network (Nah et al.)
  torchrun --nproc_per_node 4 -m pnpdeblur deblur shots/ -o out/ --device cuda

outputs: OUTDIR/<stem>.png per input (8-bit; 16-bit PNG or TIFF inputs give 16-bit PNGs; grey
stays grey, an alpha channel is dropped). Inputs that share a stem get <stem>_1.png, ...
(a note on stderr says which). Existing files in OUTDIR are replaced, but an output that
would be one of the inputs is refused (exit status 2).

exit status: 0 all written; 1 some inputs could not be read or deblurred (each is named
on stderr; the others are written); 2 usage error or refused output directory.
"""

_FINETUNE_EPILOG = """\
examples:
  pnpdeblur finetune clip/ --net deepdeblur -o out/             # 3-frame, group, hybrid loss
  pnpdeblur finetune clip/ --net my_deblurgan.safetensors -o out/ --frames 2 --kernel warp
  pnpdeblur finetune clip/ --net deblurgan -o out/ --reblur-only --steps 100 --device cuda
  pnpdeblur finetune clip/ --net deepdeblur -o out/ --pairs train/blur train/sharp --save-net tuned.safetensors

frames: the images of FRAMES_DIR in natural order of their names (frame2 before frame10),
consecutive frames of one video, all the same size. outputs: OUTDIR/<stem>.png per frame
(8-bit; 16-bit PNG or TIFF inputs give 16-bit PNGs; grey stays grey).

exit status: 0 written; 1 the network could not be loaded, fine-tuning or writing failed;
2 usage error (bad frames folder, frames of different sizes, output over an input).
"""

_TOP_EPILOG = """\
examples:
  pnpdeblur deblur blurred.jpg -o out/
  pnpdeblur finetune video_frames/ --net deepdeblur -o out/
  pnpdeblur deblur photos/ -o out/ --recursive --device cuda --save-flow
  pnpdeblur train sen --help
  pnpdeblur warmup
  torchrun --nproc_per_node 2 -m pnpdeblur deblur photos/ -o out/ --device cuda

run 'pnpdeblur <command> --help' for a command's options.
"""


def _wrap(text: str) -> str:
    # The epilogs are pre-formatted (RawDescriptionHelpFormatter), so descriptions are wrapped here.
    return textwrap.fill(text, width=88)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pnpdeblur`` (subcommands ``deblur``, ``finetune``, ``train``, ``warmup``)."""
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(
        prog="pnpdeblur",
        description=_wrap("Plug-and-play motion deblurring: blind deblurring of photos with a learned "
                          "motion-flow estimator (SEN) and HQS/CG deconvolution with a denoising prior."),
        epilog=_TOP_EPILOG, formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "deblur", help="deblur photos (files or folders) into an output folder",
        description=_wrap("Blind motion deblurring of photos: estimate the per-pixel motion flow with "
                          "SEN, deconvolve by HQS/CG with a prior, and repeat on the result "
                          "(global iterations, Wu et al.). With --flow or --kernel, non-blind "
                          "deblurring with a known blur."),
        epilog=_DEBLUR_EPILOG, formatter_class=fmt)
    d.add_argument("inputs", nargs="+", metavar="IN", type=Path,
                   help="image files or folders of images (%s)" % " ".join(_image_extensions()))
    d.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                   help="output folder (created if needed)")
    d.add_argument("-r", "--recursive", action="store_true", help="search folders recursively")
    d.add_argument("--iterations", type=_positive_int, default=1, metavar="N",
                   help="global iterations: flow re-estimated on the previous result (default: 1)")
    d.add_argument("--prior", choices=sorted(set(PRIORS) | set(PRIOR_WEIGHTS)), default=None,
                   help="HQS prior: the shipped DnCNN or DRUNet denoiser, or total variation; ffdnet and ircnn "
                        "need --prior-weights (default: dncnn; drunet with --flow or --kernel)")
    d.add_argument("--noise-level", type=_nonneg_float, default=None, metavar="S",
                   help="noise std of the photos on the [0, 1] scale (default: estimated per image)")
    d.add_argument("--noise-floor", type=_nonneg_float, default=None, metavar="S",
                   help="lowest noise level HQS solves with, so that an estimated blur's errors do not ring "
                        "(default: 0.02 for an estimated flow or kernel, 0.03 with --no-flow-ensemble; 0 for "
                        "--flow or --kernel, which are taken as exact: give 0.02 when they are estimates "
                        "themselves)")
    d.add_argument("--flow-scale", type=_flow_scale, default=1.0, metavar="F",
                   help="estimate the flow at this scale (<= 1) for blur beyond SEN's range "
                        "of about 46 px (default: 1)")
    d.add_argument("--device", default=None,
                   help="torch device, e.g. 'cuda' or 'cuda:1' (default: cpu); under torchrun "
                        "'cuda' means cuda:LOCAL_RANK")
    d.add_argument("--save-flow", action="store_true",
                   help="also write <stem>_flow.png, the colour-coded flow of the last iteration")
    d.add_argument("--flow-npy", action="store_true",
                   help="also write <stem>_flow.npy, the raw flow (2, H, W) float32 in pixels "
                        "(u right, v down); implies --save-flow")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--no-safeguard", action="store_true",
                   help="deblur every photo, even those that look sharp (by default a photo whose "
                        "estimated blur is below --blur-threshold is written unchanged)")
    d.add_argument("--blur-threshold", type=_nonneg_float, default=None, metavar="PX",
                   help="median flow length (px; with --shake, the estimated kernel's length, 7 px by "
                        "default) from which a photo counts as blurred (default: the "
                        "calibrated value of the shipped SEN, 6 px, or 4.5 px with --no-flow-ensemble; "
                        "recalibrate for other --flow-weights)")
    sat = d.add_mutually_exclusive_group()
    sat.add_argument("--saturation", type=_unit_float, default=DEBLUR_SATURATION, metavar="S",
                     help=f"channel values at or above S (0-1 scale; default {DEBLUR_SATURATION:g}, i.e. "
                          "250-255 in 8 bits) count as "
                          "clipped by the sensor and are left out of the deconvolution, so that blurred "
                          "lights and highlights do not ring")
    sat.add_argument("--no-saturation", action="store_true",
                     help="fit every pixel, clipped or not")
    d.add_argument("--boundary", choices=("unknown", "replicate"), default="unknown",
                   help="what lies beyond the photo's edges: 'unknown' (a crop of a larger scene: solve on a "
                        "grid larger by the blur's reach and leave the margin out of the data term) or "
                        "'replicate' (the border pixels repeated; exact only for images blurred that way) "
                        "(default: unknown)")
    d.add_argument("--gamma", type=_gamma, default=None, metavar="G",
                   help="the photos' tone curve as a power law (e.g. 2.2 for sRGB-like camera output): "
                        "deconvolve in linear light, where blur adds up, and re-encode (default: none, "
                        "the blur is taken to hold in the stored values)")
    shk = d.add_argument_group("camera shake (one kernel for the whole photo)")
    model = shk.add_mutually_exclusive_group()
    model.add_argument("--shake", action="store_true",
                     help="estimate one curved camera-shake kernel for the whole photo (classical, "
                          "pd.deblur_shake) instead of SEN's per-pixel straight motion: for a hand-held "
                          "photo of a static, distant scene. Not with the flow options (--iterations, "
                          "--flow-scale, --flow-weights, --save-flow, --flow-npy, --hqs-iters, --cg-iters, "
                          "--no-flow-ensemble); the safeguard then measures the kernel's length (default "
                          "threshold 7 px)")
    model.add_argument("--auto", action="store_true",
                       help="run both blur models, SEN's per-pixel flow and one camera-shake kernel "
                            "(pd.deblur_auto), and keep for each photo the result whose blur explains the "
                            "photo better: for photos whose kind of blur you do not know. Twice the time; "
                            "the flow options apply to the flow half; not with --blur-threshold")
    shk.add_argument("--kernel-size", type=_odd_int, default=None, metavar="PX",
                     help="with --shake or --auto: odd bound on the blur's extent in pixels (default: 31, at most "
                          "the photo's shorter side / 6; a larger one warns)")
    shk.add_argument("--save-kernel", action="store_true",
                     help="with --shake or --auto: also write <stem>_kernel.png, the estimated kernel scaled "
                          "to its largest value (white)")
    shk.add_argument("--kernel-npy", action="store_true",
                     help="with --shake or --auto: also write <stem>_kernel.npy, the kernel's weights (float64, "
                          "sum 1) for --kernel to read back exactly; implies --save-kernel")
    known = d.add_argument_group("known blur (non-blind: nothing is estimated)")
    given = known.add_mutually_exclusive_group()
    given.add_argument("--flow", type=Path, default=None, metavar="FILE.npy",
                       help="deblur every input with this per-pixel motion flow instead of SEN's: a .npy "
                            "array (2, H, W) in pixels, channel 0 u (right), channel 1 v (down), the line "
                            "kernel of motion vector (u, v) at each pixel (what --flow-npy writes); every input "
                            "must be H x W. Not with --shake, --auto or the flow-estimation options "
                            "(--iterations, --flow-scale, --flow-weights, --no-flow-ensemble, --blur-threshold)")
    given.add_argument("--kernel", type=Path, default=None, metavar="FILE",
                       help="deblur every input with this blur kernel (PSF) instead of estimating one: an "
                            "image (e.g. a --save-kernel PNG; grey, white = largest weight) or a .npy 2-D "
                            "array, in the convolution convention (MATLAB's conv2; turn a correlation PSF "
                            "by 180 degrees), scaled to sum 1; an even size is padded by a zero row/column. "
                            "Implies --shake; not with --auto or --kernel-size")
    e2e = d.add_argument_group("end-to-end network (instead of the plug-and-play pipeline)")
    e2e.add_argument("--net", default=None, metavar="NAME|PATH",
                     help="run this end-to-end deblurring network on each photo instead: %s (shipped "
                          "weights; deblurnet has none) or a pnpdeblur checkpoint of one. With -o, -r, --device "
                          "and --no-progress only. A photo goes through whole, not in tiles: on the CPU about "
                          "0.4 KB a pixel with the shipped deepdeblur (4.5 GiB at 12 megapixels), 1.5 KB with "
                          "the paper's size" % ", ".join(DEBLUR_NETS))
    adv = d.add_argument_group("advanced (speed / quality trade-offs)")
    adv.add_argument("--hqs-iters", type=_positive_int, default=None, metavar="N",
                     help=f"HQS iterations per global iteration (default: {DEBLUR_HQS_ITERS}; "
                          f"{GIVEN_FLOW_HQS_ITERS} with --flow)")
    adv.add_argument("--cg-iters", type=_positive_int, default=None, metavar="N",
                     help=f"conjugate-gradient budget of each HQS x-step (default: {DEBLUR_CG_ITERS}; "
                          f"{GIVEN_FLOW_CG_ITERS} with --flow)")
    adv.add_argument("--no-flow-ensemble", action="store_true",
                     help="run SEN once per flow estimate instead of averaging it over the 8 flips and "
                          "transposes of the photo (8x faster flow estimation, a less accurate flow)")
    adv.add_argument("--flow-weights", type=Path, default=None, metavar="PATH",
                     help="SEN checkpoint to use instead of the shipped one (e.g. written by "
                          "'pnpdeblur train sen --out PATH')")
    adv.add_argument("--prior-weights", type=Path, default=None, metavar="PATH",
                     help="weights for --prior dncnn, drunet, ffdnet or ircnn: a pnpdeblur checkpoint "
                          "(.safetensors) or, under any other name, the authors' file (KAIR's dncnn_25.pth, "
                          "dncnn_color_blind.pth, ffdnet_color.pth, ircnn_color.pth; DPIR's drunet_color.pth)")
    d.set_defaults(handler=_run_deblur, sub_parser=d)

    ft = sub.add_parser(
        "finetune", help="Reblur2Deblur: fine-tune a deblurring net on a video's blurred frames and deblur them",
        description=_wrap("Self-supervised test-time fine-tuning (Chen et al., Reblur2Deblur): deblur "
                          "consecutive frames with a network, estimate the optical flow between the "
                          "deblurred frames, reblur them with the per-pixel kernel of the flows and "
                          "fine-tune the network so that the reblurred frames match the input (plus a "
                          "supervised term on synthetic or given pairs); then write the frames deblurred "
                          "by the fine-tuned network."),
        epilog=_FINETUNE_EPILOG, formatter_class=fmt)
    ft.add_argument("frames_dir", type=Path, metavar="FRAMES_DIR", help="folder of consecutive blurred frames")
    ft.add_argument("--net", required=True, metavar="NAME|PATH",
                    help="network (%s; dvd has no shipped weights) or a pnpdeblur checkpoint of one" %
                         ", ".join(FINETUNE_NETS))
    ft.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                    help="output folder (created if needed)")
    ft.add_argument("--frames", type=int, choices=(2, 3), default=3,
                    help="blur model from 2 frames (F- = -F+) or 3 (both neighbours) (default: 3)")
    ft.add_argument("--kernel", choices=("two_segment", "lut", "warp"), default="two_segment",
                    help="reblur model: per-pixel two-segment kernel, its look-up table, or warping "
                         "(default: two_segment)")
    ft.add_argument("--tau", type=_unit_float, default=1.0,
                    help="exposure cycle in (0, 1] (default: 1, as Chen et al.; 0.5 for exposures without gap)")
    ft.add_argument("--margin", type=_margin, default=0, metavar="PX|reach",
                    help="border of each crop left out of the reblur loss: pixels, or 'reach' for the blur's "
                         "own reach (default: 0, as Chen et al.)")
    ft.add_argument("--steps", type=_positive_int, default=200, help="fine-tuning steps (default: 200)")
    ft.add_argument("--lr", type=_positive_float, default=1e-4, help="Adam learning rate (default: 1e-4)")
    ft.add_argument("--alpha", type=_nonneg_float, default=0.1, help="weight of the reblur loss (default: 0.1)")
    sup = ft.add_mutually_exclusive_group()
    sup.add_argument("--reblur-only", action="store_true",
                     help="no supervised term (the paper found this to degenerate)")
    sup.add_argument("--pairs", nargs=2, type=Path, metavar=("BLUR_DIR", "SHARP_DIR"), default=None,
                     help="supervised (blurred, sharp) pairs matched by file name (default: the "
                          "library's synthetic pairs)")
    ft.add_argument("--single", action="store_true",
                    help="fine-tune one copy per frame (Chen's 'individual'); default: one for the group")
    ft.add_argument("--flow", default="tvl1", metavar="tvl1|PATH",
                    help="optical flow: scikit-image TV-L1 or a FlowNetS checkpoint (default: tvl1)")
    ft.add_argument("--flow-every", type=_positive_int, default=20, metavar="K",
                    help="re-estimate the flows every K steps (default: 20)")
    ft.add_argument("--train-flow", action="store_true",
                    help="fine-tune the --flow FlowNetS together with the deblurring net (Chen's footnote; "
                         "flows are then estimated on every step's crops and --flow-every does not apply)")
    ft.add_argument("--crop", type=_positive_int, default=128, help="training crop size (default: 128)")
    ft.add_argument("--batch", type=_positive_int, default=8,
                    help="images per step, half reblur crops and half supervised pairs (default: 8)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--device", default=None, help="torch device, e.g. 'cuda' (default: cpu)")
    ft.add_argument("--save-net", type=Path, default=None, metavar="PATH",
                    help="also save the fine-tuned network as a checkpoint (group mode); with --train-flow the "
                         "fine-tuned FlowNetS goes beside it as STEM_flownets.SUFFIX")
    ft.add_argument("--no-progress", action="store_true", help="no progress bars")
    ft.set_defaults(handler=_run_finetune, sub_parser=ft)

    t = sub.add_parser(
        "train", add_help=False,  # '--help' after the model name belongs to the model's recipe
        help="train a network: 'pnpdeblur train <model> [args…]' (see 'pnpdeblur train -h')",
        usage="pnpdeblur train {%s} [args…]" % ",".join(TRAINERS),
        description=_wrap("Train a network; the arguments after the model name go to its training "
                          "recipe ('pnpdeblur train <model> --help' lists them)."),
        epilog="example:\n  pnpdeblur train sen --corpus photos/ --steps 6000 --device cuda --amp",
        formatter_class=fmt)
    t.add_argument("model", nargs="?", metavar="MODEL", help="one of: " + ", ".join(TRAINERS))
    t.set_defaults(handler=_run_train, sub_parser=t)

    from .warmup import WARM_DTYPES, WARM_TASKS

    w = sub.add_parser(
        "warmup", help="compile the CPU kernels now, several at a time (numba caches them on disk)",
        description=_wrap("Compile the CPU kernels ahead of their first use: each is compiled in its own "
                          "process, side by side, into numba's on-disk cache, so that the first deblur "
                          "does not spend its first minute compiling them one after the other. Run it "
                          "once after installing, or when building a container image."),
        formatter_class=fmt)
    w.add_argument("--tasks", nargs="+", choices=WARM_TASKS, default=list(WARM_TASKS), metavar="TASK",
                   help="what to compile: %s (default: all)" % ", ".join(WARM_TASKS))
    w.add_argument("--dtypes", nargs="+", choices=WARM_DTYPES, default=list(WARM_DTYPES), metavar="DTYPE",
                   help="image dtypes: %s (default: both)" % ", ".join(WARM_DTYPES))
    w.add_argument("--processes", type=_positive_int, default=None, metavar="N",
                   help="worker processes (default: one per job, at most the number of CPUs)")
    w.set_defaults(handler=_run_warmup, sub_parser=w)
    return ap


# -- argument types ----------------------------------------------------------------------
def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _margin(s: str):
    """``--margin``: ``reach`` or an integer >= 0."""
    if s == "reach":
        return s
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'reach', got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'reach', got {s!r}")
    return v


def _odd_int(s: str) -> int:
    v = _positive_int(s)
    if v < 3 or v % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd integer >= 3, got {s!r}")
    return v


def _finite_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def _nonneg_float(s: str) -> float:
    v = _finite_float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    v = _finite_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s!r}")
    return v


def _unit_float(s: str) -> float:
    v = _finite_float(s)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def _gamma(s: str) -> float:
    v = _finite_float(s)
    if not 1 <= v <= 4:
        raise argparse.ArgumentTypeError(f"expected a number in [1, 4] (2.2 for a typical camera curve), got {s!r}")
    return v


def _flow_scale(s: str) -> float:
    v = _finite_float(s)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def _image_extensions() -> Tuple[str, ...]:
    from .data.datasets import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


# -- planning: inputs → outputs ------------------------------------------------------------
def _err(msg: str) -> None:
    # tqdm.write keeps progress bars intact; resolve sys.stderr at call time (captured in tests)
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


def collect_inputs(inputs: Sequence[Path], recursive: bool = False) -> Tuple[List[Path], List[Tuple[Path, str]]]:
    """Expand the ``IN`` arguments into image files.

    Parameters
    ----------
    inputs : sequence of Path
        Files (taken as given, whatever their extension) and folders (their files with an
        image extension, see :data:`pnpdeblur.data.IMAGE_EXTENSIONS`).
    recursive : bool
        Search folders recursively.

    Returns
    -------
    files : list of Path
        In argument order (folders sorted), each file once (compared by resolved path).
    problems : list of (Path, str)
        Arguments that give nothing: missing paths and folders without images.
    """
    from .data.datasets import list_images

    files: List[Path] = []
    seen = set()
    problems: List[Tuple[Path, str]] = []
    for p in inputs:
        if p.is_dir():
            try:
                found = list_images(p, recursive=recursive)
            except (ValueError, FileNotFoundError, OSError) as e:
                problems.append((p, str(e)))
                continue
        elif p.exists():
            found = [p]
        else:
            problems.append((p, "no such file or folder"))
            continue
        for f in found:
            key = os.path.normcase(str(f.resolve()))
            if key not in seen:  # a file named twice (or inside a named folder) is done once
                seen.add(key)
                files.append(f)
    return files, problems


@dataclass
class OutputPlan:
    """Where one input's results go."""

    source: Path                 #: the input file
    image: Path                  #: deblurred picture
    flow_png: Optional[Path]     #: colour-coded flow (``--save-flow``)
    flow_npy: Optional[Path]     #: raw flow (``--flow-npy``)
    renamed: bool = False        #: the stem clashed with an earlier input's outputs
    kernel_png: Optional[Path] = None  #: the estimated camera-shake kernel (``--save-kernel``)
    kernel_npy: Optional[Path] = None  #: the same kernel's weights (``--kernel-npy``)


def plan_outputs(files: Sequence[Path], outdir: Path, save_flow: bool = False,
                 flow_npy: bool = False, save_kernel: bool = False, kernel_npy: bool = False) -> List[OutputPlan]:
    """Output paths for ``files``: ``<stem>.png`` (+ ``<stem>_flow.png`` / ``.npy``, or
    ``<stem>_kernel.png`` / ``.npy``), no clashes.

    A file whose names are already taken by an earlier file (same stem, or ``x_flow.png``
    next to ``x.png`` with ``--save-flow``) gets ``<stem>_1``, ``<stem>_2``, … Names are
    compared case-insensitively (case-insensitive file systems). The plan depends only on
    ``files`` and the options, so every torchrun rank computes the same one.
    """
    taken = set()
    plans = []
    for f in files:
        stem, k = f.stem, 0
        while True:
            base = stem if k == 0 else f"{stem}_{k}"
            names = [base + ".png"]
            if save_flow or flow_npy:
                names.append(base + "_flow.png")
            if flow_npy:
                names.append(base + "_flow.npy")
            if save_kernel or kernel_npy:
                names.append(base + "_kernel.png")
            if kernel_npy:
                names.append(base + "_kernel.npy")
            if not any(n.casefold() in taken for n in names):
                break
            k += 1
        taken.update(n.casefold() for n in names)
        named = {n[len(base):]: outdir / n for n in names[1:]}  # by suffix
        plans.append(OutputPlan(
            f, outdir / names[0], named.get("_flow.png"), named.get("_flow.npy"),
            renamed=k > 0, kernel_png=named.get("_kernel.png"), kernel_npy=named.get("_kernel.npy")))
    return plans


def _same_file(a: Path, b: Path) -> bool:
    if os.path.normcase(str(a.resolve())) == os.path.normcase(str(b.resolve())):
        return True
    try:  # hard links and other aliases the path text does not show
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _overwrite_conflicts(plans: Sequence[OutputPlan], inputs: Sequence[Path]) -> List[Tuple[Path, Path]]:
    """(output, input) pairs where writing the output would replace an input file."""
    by_key = {os.path.normcase(str(p.resolve())): p for p in inputs}
    out = []
    for pl in plans:
        for o in (pl.image, pl.flow_png, pl.flow_npy, pl.kernel_png, pl.kernel_npy):
            if o is None:
                continue
            hit = by_key.get(os.path.normcase(str(o.resolve())))
            if hit is None and o.exists():
                hit = next((p for p in inputs if _same_file(o, p)), None)
            if hit is not None:
                out.append((o, hit))
    return out


# -- image I/O -------------------------------------------------------------------------------
def _is_16bit_png(path: Path) -> bool:
    """True for a PNG whose IHDR says 16 bits per sample (read from the header only)."""
    from .data._png import png_header

    header = png_header(path)
    return header is not None and header["bit_depth"] == 16


def _is_16bit_tiff(path: Path) -> bool:
    """True for a TIFF whose first page holds 16-bit unsigned samples, or 32-bit integers (how
    Pillow stores 16-bit images; ``read_image`` reads them as 16-bit data) (header only)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            dtype = np.dtype(tif.pages[0].dtype)
            return dtype == np.uint16 or (dtype.kind in "iu" and dtype.itemsize == 4)
    except Exception:  # not a TIFF, or unreadable: read_image reports it
        return False


def _read(path: Path) -> Tuple[np.ndarray, bool]:
    """Image as float32 ``(H, W, C)`` (C = 1 or 3, as stored) and whether it has 16-bit samples
    (a PNG or a TIFF), so that its output is written with 16 bits too."""
    from .data.datasets import read_image

    img = read_image(path, channels=None)  # keeps grey grey, drops alpha; raises for bad files
    return img, _is_16bit_png(path) or _is_16bit_tiff(path)


def _to_storage(x: np.ndarray, sixteen: bool) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    x = np.round(x * 65535.0).astype(np.uint16) if sixteen else np.round(x * 255.0).astype(np.uint8)
    return x[..., 0] if x.ndim == 3 and x.shape[2] == 1 else x


def _atomic_save(path: Path, write: Callable[[Path], None]) -> None:
    # Write next to the target and rename: an interrupted run never leaves a truncated output.
    tmp = path.with_name(f".{path.stem}.part{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _png16_bytes(arr: np.ndarray) -> bytes:
    """A 16-bit grey or RGB PNG of ``arr`` (uint16 ``(H, W)`` or ``(H, W, 3)``).

    Pillow (behind ``skimage.io.imsave``) cannot write 16-bit colour PNGs, and the format is
    simple: IHDR, one zlib stream of rows each prefixed by filter type 0, IEND.
    """
    import struct
    import zlib

    h, w = arr.shape[:2]
    colour_type = 0 if arr.ndim == 2 else 2  # grey / RGB
    rows = np.ascontiguousarray(arr, dtype=">u2").reshape(h, -1).view(np.uint8)  # big-endian samples
    raw = np.concatenate((np.zeros((h, 1), np.uint8), rows), axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    from .data._png import PNG_SIGNATURE

    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _imsave(path: Path, arr: np.ndarray) -> None:
    if arr.dtype == np.uint16:
        data = _png16_bytes(arr)
        _atomic_save(path, lambda p: p.write_bytes(data))
        return
    from skimage import io

    _atomic_save(path, lambda p: io.imsave(str(p), arr, check_contrast=False))


# -- commands --------------------------------------------------------------------------------
def _resolve_device(spec: Optional[str], distributed: bool) -> Optional[str]:
    if spec is None:
        return None
    import torch

    if distributed and spec == "cuda":
        from .train.distributed import local_rank

        spec = f"cuda:{local_rank()}"  # one GPU per process
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--device {spec!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec!r}: CUDA is not available")
    return str(dev)


# flow-model options that --shake cannot honour, and --shake's own options
_FLOW_ONLY = ("iterations", "flow_scale", "save_flow", "flow_npy", "hqs_iters", "cg_iters", "no_flow_ensemble",
              "flow_weights")
_SHAKE_ONLY = ("kernel_size", "save_kernel", "kernel_npy")


# what a given flow (--flow) or kernel (--kernel) leaves nothing to do for: options of the estimates
_GIVEN_FLOW_EXCLUDES = ("shake", "auto", "iterations", "flow_scale", "flow_weights", "no_flow_ensemble",
                        "blur_threshold") + _SHAKE_ONLY
_GIVEN_KERNEL_EXCLUDES = ("auto", "kernel_size", "blur_threshold")


# what still applies with --net (an end-to-end network); every other deblur option sets up the
# plug-and-play pipelines and is refused with it, options added later included
_NET_KEEPS = ("help", "inputs", "output", "recursive", "device", "no_progress", "net")


def _given(args: argparse.Namespace, names: Sequence[str]) -> List[str]:
    """The options among ``names`` given away from the parser's defaults, as flags."""
    return ["--" + k.replace("_", "-") for k in names if getattr(args, k) != args.sub_parser.get_default(k)]


def _shake_conflicts(args: argparse.Namespace) -> List[str]:
    """The options given (away from the parser's defaults) that do not go with --shake / --auto,
    or that need one of them."""
    return _given(args, _FLOW_ONLY if args.shake else ("blur_threshold",) if args.auto else _SHAKE_ONLY)


def _model_conflicts(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the blur-model options together, in words; None when they fit. A
    ``--kernel`` turns ``--shake`` on."""
    if getattr(args, "net", None) is not None:
        clash = _given(args, [a.dest for a in args.sub_parser._actions if a.dest not in _NET_KEEPS])
        return (f"{', '.join(clash)} cannot be used with --net (an end-to-end network has no blur model, "
                "prior or solver to set)") if clash else None
    if args.flow is not None:
        clash = _given(args, _GIVEN_FLOW_EXCLUDES)
        return f"{', '.join(clash)} cannot be used with --flow (the flow is given, not estimated)" if clash else None
    if args.kernel is not None:
        clash = _given(args, _GIVEN_KERNEL_EXCLUDES)
        if clash:
            return f"{', '.join(clash)} cannot be used with --kernel (the kernel is given, not estimated)"
        args.shake = True
    conflicts = _shake_conflicts(args)
    if not conflicts:
        return None
    mode = "--kernel" if args.kernel is not None else "--shake"
    return ", ".join(conflicts) + (f" cannot be used with {mode} (it has no flow)" if args.shake else
                                   " cannot be used with --auto (its two models measure blur in different ways)"
                                   if args.auto else " needs --shake or --auto")


def _read_given_blur(args: argparse.Namespace) -> Optional[str]:
    """Read ``--flow`` / ``--kernel`` into ``args.given_flow`` / ``args.given_kernel``; the error in
    words, or None."""
    from .data.blur_files import read_flow, read_kernel

    args.given_flow = args.given_kernel = None
    try:
        if args.flow is not None:
            args.given_flow = read_flow(args.flow)
        if args.kernel is not None:
            args.given_kernel = read_kernel(args.kernel)
    except (OSError, ValueError) as e:
        return f"--{'flow' if args.flow is not None else 'kernel'}: {e}"
    return None


def _prior_problem(args: argparse.Namespace) -> Optional[str]:
    """Fill in the default ``--prior`` and check it against ``--prior-weights``; the error in words, or
    None. With ``--net`` there is no prior (``_model_conflicts`` refused both options)."""
    if args.net is not None:
        return None
    if args.prior is None:  # the library's choice: the DRUNet for a given blur, the DnCNN for estimated ones
        args.prior = "drunet" if args.flow is not None or args.kernel is not None else "dncnn"
    if args.prior_weights is not None and args.prior not in PRIOR_WEIGHTS:
        return f"--prior-weights needs --prior {', '.join(sorted(PRIOR_WEIGHTS))}, got --prior {args.prior}"
    if args.prior_weights is None and args.prior not in PRIORS:
        return f"--prior {args.prior} needs --prior-weights PATH (no weights ship for it)"
    return None


def _run_deblur(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from .train import distributed as dist

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
        from .nets.sen import SEN

        flow_model = SEN.from_checkpoint(args.flow_weights)
    else:
        from .estimation.learned import default_flow_model

        flow_model = default_flow_model()
    return prior, flow_model


def _load_net(spec: str, device: Optional[str]) -> Any:
    """The network of ``deblur --net``: a :data:`DEBLUR_NETS` name or checkpoint (see
    :func:`load_deblur_net`), on ``device``; ValueError for a network without ``.restore``."""
    net = load_deblur_net(spec, DEBLUR_NETS, kind="a single-image deblurring network")
    if not callable(getattr(net, "restore", None)):
        raise ValueError(f"{type(net).__name__} has no restore(photo): not a single-image deblurring network")
    return net if device is None else net.to(device)


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

    from .train.distributed import rank, world_size

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
    from .auto import deblur_auto
    from .camera_shake import check_shake_kernel_size, deblur_shake
    from .pipeline import deblur

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
            from .viz import flow_to_color

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
        else:
            guard = res.history[0]["safeguard"]
            score, threshold = guard["blur_score"][0], guard["threshold"]
        _err(f"pnpdeblur: {pl.source} looks sharp (estimated blur {score:.2f} px < {threshold:g} px): written "
             "unchanged (--no-safeguard deblurs it anyway)")


# -- finetune ----------------------------------------------------------------------------------
def _clipped_everywhere(res: Any) -> bool:
    """Whether a deblur or deblur_shake result's first image was left as given for being clipped
    everywhere (its ``clipped_fraction`` is 1)."""
    if not getattr(res, "unchanged", None) or not res.unchanged[0] or not getattr(res, "history", None):
        return False
    clipped = res.history[0].get("clipped_fraction")
    return (clipped[0] if isinstance(clipped, list) else clipped) == 1.0


def _net_class(spec: Any) -> type:
    """A :data:`FINETUNE_NETS` entry → the class (``"module:Class"`` strings are imported here)."""
    if isinstance(spec, type):
        return spec
    import importlib

    module, _, name = str(spec).partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise FileNotFoundError(f"{name} is not available in this installation of pnpdeblur ({e})") from None


def load_deblur_net(spec: str, nets: Optional[Dict[str, Any]] = None,
                    kind: str = "a deblurring network that can be fine-tuned") -> Any:
    """The network of ``finetune --net`` (or ``deblur --net``): a registry name or a checkpoint path.

    Parameters
    ----------
    spec : str
        A name (its class's ``pretrained()`` weights) or the path of a pnpdeblur checkpoint
        whose header names one of the registry's architectures.
    nets : dict, optional
        The registry, name → class or ``"module:Class"`` (default: :data:`FINETUNE_NETS`;
        ``deblur --net`` passes :data:`DEBLUR_NETS`).
    kind : str
        What the registry's networks are, for the error on a checkpoint of another architecture.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    FileNotFoundError
        No shipped weights for the name, a missing path, or a class not in this installation.
    ValueError
        A checkpoint of another architecture (e.g. SEN), or a corrupt one
        (:class:`pnpdeblur.checkpoints.CheckpointError`).
    """
    nets = FINETUNE_NETS if nets is None else nets
    key = spec.lower()
    if key in nets:
        cls = _net_class(nets[key])
        try:
            return cls.pretrained()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"no shipped weights for {cls.__name__} ({e}); pass a checkpoint with "
                                    f"--net PATH") from None
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--net {spec!r} is neither a known network ({', '.join(nets)}) "
                                "nor a checkpoint file")
    from .checkpoints import read_header

    arch = read_header(path)["architecture"]
    for entry in nets.values():
        name = entry.__name__ if isinstance(entry, type) else str(entry).rpartition(":")[2]
        if name == arch:
            return _net_class(entry).from_checkpoint(path)
    known = [e.__name__ if isinstance(e, type) else str(e).rpartition(":")[2] for e in nets.values()]
    raise ValueError(f"{path} holds a {arch!r} checkpoint, not {kind} ({', '.join(known)})")


def _natural_key(p: Path) -> Tuple:
    import re

    parts = re.split(r"(\d+)", p.name.casefold())
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in parts)


def sorted_frames(folder: Path) -> List[Path]:
    """The images of ``folder`` in natural order of their names (``f2`` before ``f10``)."""
    from .data.datasets import list_images

    return sorted(list_images(folder), key=_natural_key)


def _load_flow(spec: str) -> Any:
    if spec == "tvl1":
        return "tvl1"
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--flow {spec!r} is neither 'tvl1' nor a checkpoint file")
    from .nets.flownets import FlowNetS

    return FlowNetS.from_checkpoint(path)


def _run_finetune(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import torch

    prog = "pnpdeblur finetune"
    try:
        files = sorted_frames(args.frames_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    outdir: Path = args.output
    if outdir.exists() and not outdir.is_dir():
        print(f"{prog}: error: output {outdir} exists and is not a folder", file=sys.stderr)
        return EXIT_USAGE
    plans = plan_outputs(files, outdir)
    conflicts = _overwrite_conflicts(plans, files)
    if conflicts:
        for o, i in conflicts:
            print(f"{prog}: error: output {o} would overwrite the input {i}", file=sys.stderr)
        return EXIT_USAGE
    if args.train_flow and args.flow == "tvl1":
        print(f"{prog}: error: --train-flow needs --flow PATH (a FlowNetS checkpoint); TV-L1 has nothing to train",
              file=sys.stderr)
        return EXIT_USAGE
    need = 3 if args.frames == 3 else 2
    if len(files) < need:
        print(f"{prog}: error: --frames {args.frames} needs at least {need} frames in {args.frames_dir}, "
              f"found {len(files)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        device = _resolve_device(args.device, False)
        frames = [_read(f) for f in files]
    except (ValueError, OSError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    shapes = {img.shape[:2] for img, _ in frames}
    if len(shapes) > 1:
        print(f"{prog}: error: the frames must all have the same size, found {sorted(shapes)}", file=sys.stderr)
        return EXIT_USAGE
    grey = [img.shape[2] == 1 for img, _ in frames]
    clip = torch.stack([torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.repeat(img, 3 // img.shape[2], 2), -1, 0)))
                        for img, _ in frames])
    try:
        net = load_deblur_net(args.net)
        flow = _load_flow(args.flow)
        supervised = None
        if args.reblur_only:
            supervised = False
        elif args.pairs is not None:
            from .data import PairAugment, PairedFolderDataset

            supervised = PairedFolderDataset(*args.pairs, transform=PairAugment(crop=min(args.crop, *clip.shape[2:])),
                                             seed=args.seed)
    except Exception as e:  # missing weights, foreign checkpoint, bad pairs folder
        _err(f"{prog}: error: cannot load the network or the data: {e}")
        return EXIT_FAILED
    from .train.reblur import deblur_frames, finetune_reblur

    if device is not None:
        net = net.to(device)
    opts = dict(frames=args.frames, kernel=args.kernel, tau=args.tau, margin=args.margin, steps=args.steps, lr=args.lr,
                alpha=args.alpha, supervised=supervised, flow=flow, flow_every=args.flow_every,
                train_flow=args.train_flow, crop=args.crop,
                batch_size=args.batch, seed=args.seed, progress=not args.no_progress)
    usable = list(range(1, len(files) - 1)) if args.frames == 3 else list(range(len(files)))
    try:
        if args.single:
            # One fine-tuned copy per frame; the end frames of the 3-frame model (no two
            # neighbours) take their nearest usable frame's network.
            out = torch.empty_like(clip)
            for t in usable:
                tuned = finetune_reblur(net, clip, group=False, target=t, **opts)
                todo = [t] + ([0] if t == usable[0] and t > 0 else []) + \
                    ([len(files) - 1] if t == usable[-1] and t < len(files) - 1 else [])
                for u in todo:
                    out[u] = deblur_frames(tuned, clip[u:u + 1])[0].cpu()
            tuned = None
        else:
            tuned = finetune_reblur(net, clip, group=True, **opts)
            out = deblur_frames(tuned, clip).cpu()
    except Exception as e:
        _err(f"{prog}: error: fine-tuning failed: {type(e).__name__}: {e}")
        return EXIT_FAILED
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        for pl, x, g, (_, sixteen) in zip(plans, out, grey, frames):
            img = x.clamp(0, 1).permute(1, 2, 0).numpy()
            if g:
                img = img.mean(2, keepdims=True)
            _imsave(pl.image, _to_storage(img, sixteen))
        if args.save_net is not None:
            if tuned is None:
                _err(f"{prog}: note: --save-net is ignored with --single (one network per frame)")
            else:
                from .checkpoints import save_checkpoint

                meta = {"finetune": {k: (v if isinstance(v, (int, float, str, bool, list)) else str(v))
                                     for k, v in tuned.reblur_settings.items()},
                        "frames": [f.name for f in files]}
                save_checkpoint(args.save_net, tuned, type(tuned).__name__, getattr(tuned, "config", {}), meta)
                flow_net = getattr(tuned, "reblur_flow_net", None)
                if flow_net is not None:  # --train-flow: the jointly tuned FlowNetS goes beside it
                    flow_path = args.save_net.with_name(f"{args.save_net.stem}_flownets{args.save_net.suffix}")
                    flow_net.save(flow_path, meta)
                    _err(f"{prog}: saved the fine-tuned flow network to {flow_path}")
    except (OSError, ValueError, TypeError) as e:
        _err(f"{prog}: error: cannot write the results: {e}")
        return EXIT_FAILED
    return EXIT_OK


def _debug() -> bool:
    """Whether ``PNPDEBLUR_DEBUG`` asks for tracebacks (set, and neither empty nor ``0``)."""
    return os.environ.get("PNPDEBLUR_DEBUG", "") not in ("", "0")


def _run_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if args.model is None:
        args.sub_parser.print_help(sys.stdout if {"-h", "--help"} & set(extra) else sys.stderr)
        return EXIT_OK if {"-h", "--help"} & set(extra) else EXIT_USAGE
    if args.model not in TRAINERS:
        print(f"pnpdeblur train: error: unknown model {args.model!r} (choose from {', '.join(TRAINERS)})",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        TRAINERS[args.model](list(extra))
    except (ValueError, TypeError, FileNotFoundError) as e:
        # a recipe's refusal of an option (--steps -1, --lr nan, a missing --corpus or --init checkpoint) is
        # one line, as argparse's own errors are, not a traceback; PNPDEBLUR_DEBUG keeps the traceback of
        # an error raised deep inside a long run
        if _debug():
            raise
        print(f"pnpdeblur train {args.model}: error: {e} (PNPDEBLUR_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _run_warmup(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if extra:
        args.sub_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .warmup import warm_kernels

    t0 = time.perf_counter()
    times = warm_kernels(args.tasks, args.dtypes, args.processes)
    for (task, dtype, flow_dtype), (seconds, _) in times.items():
        print(f"{task:<9} image {dtype:<8} flow {flow_dtype:<8} {seconds:7.1f} s")
    print(f"compiled {len(times)} kernel sets in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _exit_code(code: Any) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # SystemExit("message") convention
    return EXIT_FAILED


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name.

    Returns
    -------
    int
        0 success, 1 some inputs failed (or a training run / model load failed), 2 usage
        error or refused output. ``--help`` and ``--version`` return 0 instead of exiting.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        # parse_known_args: what follows 'train <model>' belongs to the model's own parser
        args, extra = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if args.command == "finetune":
            args, extra = args.sub_parser.parse_args(argv[argv.index("finetune") + 1:]), []
        elif args.command == "deblur":
            # again, intermixed: 'deblur a.png -o out b.png' has inputs on both sides of -o
            args, extra = args.sub_parser.parse_intermixed_args(argv[argv.index("deblur") + 1:]), []
        return args.handler(args, extra)
    except SystemExit as e:  # argparse (ours or a recipe's): --help, --version, usage errors
        return _exit_code(e.code)
    except KeyboardInterrupt:
        print("pnpdeblur: interrupted", file=sys.stderr)
        return 130
