"""One training engine for every network of pnpdeblur.

>>> from pnpdeblur.train import TrainConfig, Trainer
>>> cfg = TrainConfig(steps=1000, batch_size=16, lr=1e-3, out_dir="runs/sen")  # doctest: +SKIP
>>> trainer = Trainer(model, cfg, dataset, loss_fn, val_data, val_fn)         # doctest: +SKIP
>>> trainer.fit()                       # resumes from runs/sen/last.pt if present  # doctest: +SKIP
>>> trainer.export("sen.safetensors", "SEN", model.config)                   # doctest: +SKIP

Modules: :mod:`.config` (TrainConfig), :mod:`.schedules` (learning-rate schedules),
:mod:`.state` (training state and RNGs), :mod:`.distributed` (torchrun/DDP helpers),
:mod:`.logging` (CSV/JSON logs and the loss picture), :mod:`.engine` (Trainer), :mod:`.budget` (a run
sized to a time budget), :mod:`.adversarial` (GAN training in one
optimiser step), :mod:`.replay` (RP-GAN's experience replay), :mod:`.reblur` (Reblur2Deblur
fine-tuning); recipes: :mod:`.sen`, :mod:`.rpgan`, :mod:`.drunet`, :mod:`.dncnn`, :mod:`.deblurnets`.
"""
from . import distributed
from .config import TrainConfig
from .engine import Trainer, unwrap_model
from .budget import measure_step_rate, steps_for_budget, steps_with_refills
from .adversarial import AdversarialPair
from .replay import ReplayBuffer, level_counts
from .schedules import linear_decay_lambda, step_decay_lambda

from .reblur import finetune_reblur  # after the engine: it builds on it

__all__ = ["TrainConfig", "Trainer", "AdversarialPair", "ReplayBuffer", "level_counts", "linear_decay_lambda",
           "step_decay_lambda", "unwrap_model", "distributed", "finetune_reblur", "measure_step_rate",
           "steps_for_budget",
           "steps_with_refills"]
