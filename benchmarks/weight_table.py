"""What the weight table's byte limit costs and saves on photos whose table is large.

From a flow's second use on, the numba operators read their kernel weights from a stored table
(``pnpdeblur.operators._segment.WEIGHT_TABLES``) when it fits under the limit
(``PNPDEBLUR_WEIGHT_TABLE_BYTES``), and compute them on every call otherwise. This script times
K+Kᵀ and KᵀK (the CG x-step's fused normal operator) of one photo with the table held and with
it over the limit, interleaved in one process (so load from other jobs hits both alike; each
figure is the minimum over ``--repeats`` rounds), and reports the table's bytes: what a larger
limit spends in memory for the speed.

    python benchmarks/weight_table.py --cases 720x1280:46:float64 3000x4000:13:float32 --threads 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _results import write_rows


def flow_of(h: int, w: int, length: float) -> np.ndarray:
    """A smooth flow whose longest vector is ``length`` px: the rotating directions of operators.py's
    ``flow_field``, but with lengths that fall from ``length`` to half of it and back down the rows
    (``flow_field`` moves every pixel by ``length``, the worst case; here the table is a mixed field's)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = 2 * np.pi * (xx / w + 0.5 * yy / h)
    scale = length * (0.5 + 0.5 * np.cos(np.pi * yy / h) ** 2)
    return np.stack([scale * np.cos(angle), scale * np.sin(angle)])


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["720x1280:46:float64", "3000x4000:13:float32"],
                    metavar="HxW:LENGTH:DTYPE")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import pnpdeblur as pd
    from pnpdeblur.operators import _segment as seg

    # "without" runs the same prepared flow as if its table were over the limit (a lowered limit would
    # evict the table, and raising it again would rebuild it inside the next timing)
    held = seg.NumbaPrepared.table
    skip = {"table": False}
    seg.NumbaPrepared.table = lambda self, beta, dtype: None if skip["table"] else held(self, beta, dtype)
    seg.WEIGHT_TABLES.max_bytes = 2**62
    rows = []
    for case in args.cases:
        size, length, dtype = case.split(":")
        h, w = map(int, size.split("x"))
        dt = getattr(torch, dtype)
        flow = torch.from_numpy(flow_of(h, w, float(length))).to(dt)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h), dtype=dt)
        K = pd.MotionBlur(flow)
        seg.WEIGHT_TABLES.clear()
        K.T(K(x))  # builds the geometry, then the table on the second use
        K._normal(x)
        table_mib = seg.WEIGHT_TABLES.nbytes / 2**20
        kkt = {True: [], False: []}
        normal = {True: [], False: []}
        for _ in range(args.repeats):  # interleaved rounds
            for with_table in (True, False):
                skip["table"] = not with_table
                kkt[with_table].append(timed(lambda: K.T(K(x))))
                normal[with_table].append(timed(lambda: K._normal(x)))
        skip["table"] = False
        row = dict(case=case, table_mib=table_mib, kkt_with=min(kkt[True]), kkt_without=min(kkt[False]),
                   normal_with=min(normal[True]), normal_without=min(normal[False]))
        rows.append(row)
        print(f"{case}: table {table_mib:.0f} MiB; K+Kᵀ {row['kkt_with']:.2f} s with it, {row['kkt_without']:.2f} s "
              f"without ({row['kkt_without'] / row['kkt_with']:.2f}×); KᵀK {row['normal_with']:.2f} / "
              f"{row['normal_without']:.2f} s ({row['normal_without'] / row['normal_with']:.2f}×)", flush=True)
        del K, x, flow
    write_rows("weight_table", "cpu", rows, threads=args.threads, repeats=args.repeats)


if __name__ == "__main__":
    main()
