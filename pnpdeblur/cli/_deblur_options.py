"""Which ``deblur`` options go together: the blur models' (flow, ``--shake``, ``--auto``, a given
flow or kernel, ``--net``), the given blur's files, and the prior's weights. Each check returns
its error in words, reported as a usage error before any photo is read."""
from __future__ import annotations

import argparse
from typing import List, Optional, Sequence

from ._priors import PRIOR_WEIGHTS, PRIORS

__all__ = ["_model_conflicts", "_read_given_blur", "_prior_problem"]


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
    from ..data.blur_files import read_flow, read_kernel

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
