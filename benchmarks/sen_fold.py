"""SEN with its batch norms folded into the convolutions (eval mode) against the plain network.

Both paths are timed in one process, interleaved, on the same input: the plain one is
``SEN.forward`` (what :meth:`~pnpdeblur.nets.SEN.estimate` ran before), the folded one the
stacks of :meth:`~pnpdeblur.nets.SEN._inference_stacks`. Also reports the largest flow difference
(pixels) and, with ``--estimate-flow``, the whole ``pd.estimate_flow`` (8-symmetry ensemble) of a
photo with either path.

    python benchmarks/sen_fold.py --sizes 256,512,768 --repeats 7 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from _results import write_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512,768", help="square input sides (multiples of SEN's stride, 64)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--estimate-flow", default=None, metavar="HxW",
                    help="also time pd.estimate_flow on the astronaut resized to HxW, both paths")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pnpdeblur.nets import SEN

    net = SEN.pretrained().eval()
    folded = net._inference_stacks()
    rows = []
    with torch.no_grad():
        for side in map(int, args.sizes.split(",")):
            x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side))
            x = x.contiguous(memory_format=torch.channels_last)
            plain_flow, folded_flow = net._run(x, net.stacks)[-1], net._run(x, folded)[-1]
            times = {"plain": [], "folded": []}
            for _ in range(args.repeats):
                for name, stacks in (("plain", net.stacks), ("folded", folded)):
                    t0 = time.perf_counter()
                    net._run(x, stacks)
                    times[name].append(time.perf_counter() - t0)
            row = {"side": side, **{k: statistics.median(v) for k, v in times.items()},
                   "pair_ratios": [round(a / b, 3) for a, b in zip(times["plain"], times["folded"])],
                   "max_flow_diff_px": float((plain_flow - folded_flow).abs().max())}
            row["ratio"] = row["plain"] / row["folded"]
            rows.append(row)
            print(f"{side}²: plain {row['plain']:.3f} s, folded {row['folded']:.3f} s, {row['ratio']:.2f}× "
                  f"(pairs {row['pair_ratios']}); flows differ by ≤ {row['max_flow_diff_px']:.2e} px", flush=True)
    if args.estimate_flow:
        import numpy as np
        from skimage import data, transform

        import pnpdeblur as pd

        h, w = map(int, args.estimate_flow.lower().split("x"))
        photo = transform.resize(data.astronaut(), (h, w), order=1).astype(np.float32)
        plain_net = SEN.pretrained().eval()
        plain_net._inference_stacks = lambda: plain_net.stacks  # the path before the folding
        times = {"plain": [], "folded": []}
        for _ in range(max(1, args.repeats // 3)):
            for name, model in (("plain", plain_net), ("folded", net)):
                t0 = time.perf_counter()
                pd.estimate_flow(photo, model)
                times[name].append(time.perf_counter() - t0)
        row = {"estimate_flow": f"{h}x{w}", **{k: statistics.median(v) for k, v in times.items()}}
        row["ratio"] = row["plain"] / row["folded"]
        rows.append(row)
        print(f"pd.estimate_flow {h}×{w}: plain {row['plain']:.1f} s, folded {row['folded']:.1f} s, "
              f"{row['ratio']:.2f}×", flush=True)
    write_rows("sen_fold", "cpu", rows, threads=args.threads, torch=torch.__version__)


if __name__ == "__main__":
    main()
