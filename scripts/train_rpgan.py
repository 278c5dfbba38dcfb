"""Train RP-GAN's generator (Wu et al.'s recurrent HQS prior) and its two discriminators.

A thin wrapper around :func:`pnpdeblur.train.rpgan.main`; see its docstring and ``--help``
for the data (a pool of blurred crops with SEN-estimated flows), the level-1 pre-training,
the replay buffer (50/30/20 % of levels 1/2/3, refreshed every 3 epochs), the losses and the
schedule. Typical runs::

    python scripts/train_rpgan.py --corpus .data/bsds500/train --preload --device cuda \
        --steps 20000 --pretrain-steps 4000 --run-dir runs/rpgan
    python scripts/train_rpgan.py --steps 2 --pretrain-steps 2 --batch 2 --crop 32 --pool 4 \
        --buffer 4 --val-items 2 --width 4 --n-res 1 --d-width 4 --cg-iters 2 \
        --run-dir /tmp/rpgan --out /tmp/rpgan/g.safetensors              # CPU smoke run

``.data/bsds500/train`` is the *train* split of BSDS500; its *val* and *test* splits
(CBSD68) stay out of training.
"""
import sys

from pnpdeblur.train.rpgan import main

if __name__ == "__main__":
    main(sys.argv[1:])
