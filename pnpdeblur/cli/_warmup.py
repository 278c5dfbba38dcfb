"""``pnpdeblur warmup``: compile the CPU kernels into numba's on-disk cache now."""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from ._status import EXIT_OK

__all__ = ["_run_warmup"]


def _run_warmup(args: argparse.Namespace, extra: Sequence[str]) -> int:
    if extra:
        args.sub_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from ..warmup import warm_kernels

    t0 = time.perf_counter()
    times = warm_kernels(args.tasks, args.dtypes, args.processes)
    for (task, dtype, flow_dtype), (seconds, _) in times.items():
        print(f"{task:<9} image {dtype:<8} flow {flow_dtype:<8} {seconds:7.1f} s")
    print(f"compiled {len(times)} kernel sets in {time.perf_counter() - t0:.1f} s")
    return EXIT_OK
