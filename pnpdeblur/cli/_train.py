"""``pnpdeblur train <model> [args…]``: the registry of training recipes and the forwarding to them."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Dict, Sequence

from ._status import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["TRAINERS", "_train_sen", "_train_rpgan", "_train_drunet", "_train_dncnn", "_deblurnet_trainer",
           "_run_train"]


def _train_sen(argv: Sequence[str]) -> Any:
    from ..train.sen import main as sen_main

    return sen_main(list(argv))


def _train_rpgan(argv: Sequence[str]) -> Any:
    from ..train.rpgan import main as rpgan_main

    return rpgan_main(list(argv))


def _train_drunet(argv: Sequence[str]) -> Any:
    from ..train.drunet import main as drunet_main

    return drunet_main(list(argv))


def _train_dncnn(argv: Sequence[str]) -> Any:
    from ..train.dncnn import main as dncnn_main

    return dncnn_main(list(argv))


def _deblurnet_trainer(name: str) -> Callable[[Sequence[str]], Any]:
    def train(argv: Sequence[str]) -> Any:
        from ..train.deblurnets import main as deblurnets_main

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
