"""Peak memory and time of one learned-prior call on a large photo, whole against tiled.

Each (size, tile) runs in a fresh process so its peak resident memory is its own::

    python benchmarks/prior_memory.py --sizes 1500x2000 --tiles 0,1024
    python benchmarks/prior_memory.py --prior drunet --tiles 0,1024,512

prints one line per run: the image size, the tile (0: whole), the seconds of one
``DnCNNPrior(ensemble=False)`` (or ``DRUNetPrior()``) call, the peak resident memory of the
process and what the call added to it, and the largest difference from the whole-image output
when both were run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(h: int, w: int, tile: int, threads: int, out: str, prior_name: str = "dncnn") -> None:
    import numpy as np
    import torch

    import pnpdeblur as pd

    torch.set_num_threads(threads)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    if prior_name == "drunet":
        prior = pd.priors.DRUNetPrior(tile=tile or None)
    else:
        prior = pd.priors.DnCNNPrior(ensemble=False, tile=tile or None)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    y = prior(x, 0.05)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.save(out, y.numpy())
    print(json.dumps({"prior": prior_name, "size": f"{h}x{w}", "tile": tile, "seconds": round(sec, 2),
                      "peak_mb": round(peak), "added_mb": round(peak - base)}))


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1500x2000", help="HxW, comma-separated")
    ap.add_argument("--tiles", default="0,1024", help="tile sides, comma-separated (0: whole image)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prior", default="dncnn", choices=["dncnn", "drunet"])
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        h, w, tile, out = args.child
        child(int(h), int(w), int(tile), args.threads, out, args.prior)
        return []
    import tempfile

    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.split("x"))
            outs = {}
            for tile in (int(t) for t in args.tiles.split(",")):
                path = f"{tmp}/{h}x{w}_{tile}.npy"
                res = subprocess.run([sys.executable, __file__, "--threads", str(args.threads), "--prior", args.prior,
                                      "--child",
                                      str(h), str(w), str(tile), path], capture_output=True, text=True, check=True)
                row = json.loads(res.stdout.strip().splitlines()[-1])
                outs[tile] = np.load(path)
                if 0 in outs and tile != 0:
                    row["max_diff_from_whole"] = float(np.abs(outs[tile] - outs[0]).max())
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
