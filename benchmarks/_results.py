"""Where the benchmark scripts write their rows: ``<stem>[_<device>].json`` beside them."""
from __future__ import annotations

import json
import os
import platform
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def write_rows(stem: str, device: str, rows: list, **meta) -> str:
    """Write ``{"meta": ..., "rows": rows}`` with the date, machine and device; return the path.

    A CPU run goes to ``<stem>.json``, any other device to ``<stem>_<device>.json``.
    """
    meta = dict(date=time.strftime("%Y-%m-%d"), machine=platform.platform(), cpus=os.cpu_count(), device=device,
                **meta)
    path = os.path.join(HERE, f"{stem}{'' if device == 'cpu' else '_' + device}.json")
    with open(path, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1)
    print(f"wrote {path}")
    return path
