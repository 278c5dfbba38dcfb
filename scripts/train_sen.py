"""Train SEN, the motion-flow estimator shipped as pnpdeblur/weights/sen_small.safetensors.

A thin wrapper around :func:`pnpdeblur.train.sen.main` (also ``pnpdeblur train sen``); see its
docstring and ``--help`` for the data, loss and schedule. The shipped weights came from::

    python scripts/train_sen.py --corpus .data/bsds500/train --preload --device cuda --amp \
        --workers 14 --steps <N> --run-dir runs/sen

on one H100 (the exact argv and step count are in the weights' JSON header and
docs/model_cards/sen_small.md). ``.data/bsds500/train`` is the *train* split of BSDS500
(the BIDS/BSDS500 GitHub mirror); its *val* and *test* splits hold CBSD68 and stay out.
A CPU smoke run: ``python scripts/train_sen.py --steps 20 --batch 4 --crop 64 --width 4 --levels 2``.
"""
import sys

from pnpdeblur.train.sen import main

if __name__ == "__main__":
    main(sys.argv[1:])
