"""One training engine for every network of pnpdeblur.

A model, a data set of dict items, and a loss ``loss_fn(model, batch)``; here a 1×1 convolution
learns to double its input (the recipes in :mod:`.sen`, :mod:`.drunet` … do the same with real
networks and photos):

>>> import tempfile, torch
>>> from pnpdeblur.train import TrainConfig, Trainer
>>> from pnpdeblur.checkpoints import load_checkpoint
>>> data = [{"x": x, "y": 2 * x} for x in torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0))]
>>> model = torch.nn.Conv2d(1, 1, 1, bias=False)
>>> loss_fn = lambda net, batch: torch.nn.functional.mse_loss(net(batch["x"]), batch["y"])
>>> run = tempfile.mkdtemp()
>>> cfg = TrainConfig(steps=200, batch_size=8, lr=0.05, device="cpu", out_dir=run, progress=False, log_every=0)
>>> trainer = Trainer(model, cfg, data, loss_fn)
>>> _ = trainer.fit()     # with out_dir set, a later fit() resumes from its last checkpoint
>>> round(model.weight.item(), 2)
2.0
>>> path = trainer.export(f"{run}/double.safetensors", "Conv2d", {"in_channels": 1})
>>> state, header = load_checkpoint(path, "Conv2d")
>>> header["architecture"], round(state["weight"].item(), 2)
('Conv2d', 2.0)
>>> import shutil; shutil.rmtree(run)

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
