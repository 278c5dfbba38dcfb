"""The argument parser of ``pnpdeblur``: its subcommands, options, help texts and defaults.

The defaults that mirror the library's (solve lengths, saturation level) are literals here, so that
building the parser imports neither the pipeline nor a network; the handlers and registries it
names import theirs only when they run.
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import Tuple

from ._arg_types import (_flow_scale, _gamma, _margin, _nonneg_float, _odd_int, _positive_float, _positive_int,
                         _unit_float)
from ._deblur import _run_deblur
from ._finetune import _run_finetune
from ._nets import DEBLUR_NETS, FINETUNE_NETS
from ._priors import PRIOR_WEIGHTS, PRIORS
from ._train import TRAINERS, _run_train
from ._warmup import _run_warmup

__all__ = ["build_parser", "DEBLUR_HQS_ITERS", "DEBLUR_CG_ITERS", "GIVEN_FLOW_HQS_ITERS", "GIVEN_FLOW_CG_ITERS",
           "DEBLUR_SATURATION", "_DEBLUR_EPILOG", "_FINETUNE_EPILOG", "_TOP_EPILOG", "_wrap", "_image_extensions"]


# pd.deblur's n_iter and cg_iters with an estimated flow and with a given one (None: hqs's default
# length, 8), written out so that `--help` needs no torch import (tests/test_cli_direct.py keeps
# them equal to pipeline.ESTIMATED_FLOW_SOLVE and GIVEN_FLOW_SOLVE)
DEBLUR_HQS_ITERS, DEBLUR_CG_ITERS = 4, 5
GIVEN_FLOW_HQS_ITERS, GIVEN_FLOW_CG_ITERS = 8, 30
DEBLUR_SATURATION = 0.98  # pd.solvers.DEFAULT_SATURATION (a literal: --help loads no torch)


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


def _image_extensions() -> Tuple[str, ...]:
    from ..data.image_files import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pnpdeblur`` (subcommands ``deblur``, ``finetune``, ``train``, ``warmup``)."""
    from .. import __version__

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
                        "estimated blur is below --blur-threshold is written unchanged, and with --shake "
                        "or --auto one whose kernel estimate failed: its result overshoots [0, 1])")
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

    from ..warmup import WARM_DTYPES, WARM_TASKS

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
