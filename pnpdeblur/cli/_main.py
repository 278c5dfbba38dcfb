"""The entry point: parse the arguments, run the subcommand's handler, and turn argparse's exits
and Ctrl-C into exit statuses."""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from ._parser import build_parser
from ._status import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["main", "_exit_code"]


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
