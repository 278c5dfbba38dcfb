"""How much memory this process may use: the machine's, or its container's limit when lower.

For byte limits that scale with the machine (the operators' weight tables), so that a
workstation keeps more in memory than a laptop without anyone setting a variable.
"""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["machine_memory_bytes", "processes_on_this_machine"]

# the control-group files that hold a container's memory limit (v2, then v1)
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _physical_bytes() -> Optional[int]:
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return None
    return pages * page if pages > 0 and page > 0 else None


def _cgroup_bytes() -> Optional[int]:
    for path in CGROUP_LIMIT_FILES:
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) > 0:  # "max" (v2) means no limit
            return int(raw)
    return None


def machine_memory_bytes() -> Optional[int]:
    """The memory this process may use, in bytes: the machine's physical memory, or the
    container's (control group's) limit where that is lower; None where neither can be read.

    A control group without a limit reports "max" (v2) or a number near 2⁶³ (v1); the
    physical memory is then the answer.

    Examples
    --------
    >>> from pnpdeblur._memory import machine_memory_bytes
    >>> m = machine_memory_bytes()
    >>> m is None or m > 0
    True
    """
    known = [b for b in (_physical_bytes(), _cgroup_bytes()) if b is not None]
    return min(known) if known else None


def processes_on_this_machine() -> int:
    """How many processes of one ``torchrun`` job share this machine's memory (its
    ``LOCAL_WORLD_SIZE``); 1 outside torchrun or where the variable is not a positive integer.

    A per-process limit that scales with the machine's memory divides by this, so that
    ``torchrun --nproc_per_node 8`` does not claim eight times the share of one process.
    """
    raw = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1
