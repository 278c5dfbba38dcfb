"""Exit statuses of the command line and its messages on stderr, shared by every subcommand."""
from __future__ import annotations

import sys

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "_err"]


# Exit statuses: 1 = some inputs failed (the others were written), 2 = usage error / refused.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _err(msg: str) -> None:
    # tqdm.write keeps progress bars intact; resolve sys.stderr at call time (captured in tests)
    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)
