"""The training engine every network of pnpdeblur uses: :class:`Trainer`.

One loop for single-process CPU/GPU training and torchrun/DDP: Adam + a linear-decay
``LambdaLR``, optional AMP (CUDA) and gradient clipping, periodic logging, validation
and checkpoints, and *exact* resume from ``out_dir/last.pt`` (weights, optimiser,
scheduler, scaler, position in the data and every RNG).

Data order is a pure function of ``(seed, epoch)``: a :class:`DistributedSampler`
(also for one process) draws the permutation, each rank takes every
``world_size``-th index, and batches are consecutive runs of ``batch_size //
world_size`` of them. So a 2-process run sees, step for step, the same samples as a
1-process run with the same global batch.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from ..checkpoints import save_checkpoint
from . import distributed as D
from .config import TrainConfig
from .logging import plot_history, write_logs
from .schedules import linear_decay_lambda, step_decay_lambda
from .state import (
    derive_seed,
    get_rng_state,
    has_state,
    load_training_state,
    save_training_state,
    seed_everything,
    set_rng_state,
)

__all__ = ["Trainer", "unwrap_model"]

LossOutput = Union[torch.Tensor, Tuple[torch.Tensor, Mapping[str, Any]]]
LossFn = Callable[[nn.Module, Dict[str, Any]], LossOutput]
ValFn = Callable[[nn.Module, Dict[str, Any]], Mapping[str, Any]]

_VAL_SEED_KEY = 7919  # mixed into the validation seed so it never equals a training seed


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(getattr(model, "_orig_mod"), nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        else:
            return model


def _to_device(obj: Any, device: torch.device) -> Any:
    """Tensors (also inside dicts/lists/tuples) to ``device``; everything else untouched."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=device.type == "cuda")
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(isinstance(v, (torch.Tensor, Mapping, list, tuple)) for v in obj):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def _batch_len(batch: Any) -> int:
    """Number of samples in a collated batch (leading size of its first tensor)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        for v in batch.values():
            if isinstance(v, torch.Tensor):
                return _batch_len(v)
        for v in batch.values():
            if isinstance(v, (list, tuple)):
                return len(v)
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_len(batch[0]) if isinstance(batch[0], (torch.Tensor, Mapping)) else len(batch)
    raise TypeError(f"cannot tell the number of samples of a batch of type {type(batch).__name__}")


class _KeyedItems(Dataset):
    """Items addressed by ``(epoch, index)``.

    In a DataLoader worker, every item first reseeds torch/numpy/python RNGs from
    ``(seed, epoch, index)``: augmentation drawn from the global RNGs inside
    ``__getitem__`` is then independent of which worker loads the item and of how many
    batches were skipped on resume. In the main process (``num_workers=0``) the global
    RNG streams continue untouched and are saved/restored with the training state.
    """

    def __init__(self, data: Dataset, seed: int):
        self.data = data
        self.seed = seed

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, key: Tuple[int, int]) -> Any:
        epoch, index = key
        if get_worker_info() is not None:
            seed_everything(derive_seed(self.seed, epoch, index))
        return self.data[index]


def _empty_window() -> Dict[str, Any]:
    return {"n": 0, "loss": 0.0, "extra": {}, "grad_norm": None}


def _window_to_plain(win: Dict[str, Any]) -> Dict[str, Any]:
    """The log window with tensors turned into floats (for ``weights_only`` loading)."""
    f = lambda v: None if v is None else float(v)  # noqa: E731
    return {"n": int(win["n"]), "loss": float(win["loss"]), "extra": {k: f(v) for k, v in win["extra"].items()},
            "grad_norm": f(win["grad_norm"])}


def _worker_init(seed: int, rank: int, epoch: int, worker_id: int) -> None:
    # Anything a dataset draws at worker start-up is a function of (seed, rank, epoch, worker).
    seed_everything(derive_seed(seed, rank, epoch, worker_id, 1))


class Trainer:
    """Train ``model`` by minimising ``loss_fn`` over ``train_data`` with Adam.

    Parameters
    ----------
    model : torch.nn.Module
        Moved to the training device; its parameters are updated in place
        (:attr:`model` is this plain module, never a DDP/compile wrapper).
    cfg : TrainConfig or mapping
        Settings (a mapping goes through :meth:`TrainConfig.from_dict`).
    train_data : torch.utils.data.Dataset
        Map-style dataset of dict items (tensors, and strings such as ``"name"``);
        collated by :func:`torch.utils.data.default_collate` unless ``collate_fn`` is
        given. If it has ``set_epoch(epoch)`` it is called at the start of each epoch.
        If it has ``state_dict()`` and ``load_state_dict(state)`` (a dataset whose items
        depend on the training so far, such as :class:`pnpdeblur.train.ReplayBuffer`),
        that state is saved in ``last.pt`` and restored on resume (rank 0's copy).
    loss_fn : callable
        ``loss_fn(model, batch) -> loss`` or ``(loss, {name: float})`` with ``loss`` a
        scalar tensor and the batch's tensors already on the device. ``model`` is the
        training wrapper (DDP / compiled) — call it, ``model(...)``; for attributes use
        :attr:`Trainer.model`. Extra named values are averaged over each log window.
    val_data : Dataset, optional
        Validation items, split across ranks without padding.
    val_fn : callable, optional
        ``val_fn(model, batch) -> {metric: float}`` (mean over the batch); run under
        ``torch.no_grad()`` and ``model.eval()`` on the plain module, in float32, with
        the RNGs seeded for the pass and restored afterwards (validation never changes
        the training's random streams). Averaged over the set weighted by batch size.
    collate_fn : callable, optional
        DataLoader collate function.
    ddp_kwargs : mapping, optional
        Extra :class:`DistributedDataParallel` arguments (e.g. ``find_unused_parameters``).

    Attributes
    ----------
    step : int
        Optimiser steps done.
    epoch : int
        Current epoch; ``batch_in_epoch`` batches of it are consumed.
    history : list of dict
        Log rows: ``phase="train"`` rows (``step, epoch, loss, lr, samples_per_s,
        elapsed_s``, extra values, ``grad_norm`` when clipping) every ``log_every``
        steps, ``phase="val"`` rows with ``val_<metric>`` after each validation.
    last_validation : dict
        Metrics of the latest validation pass.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: Union[TrainConfig, Mapping[str, Any]],
        train_data: Dataset,
        loss_fn: LossFn,
        val_data: Optional[Dataset] = None,
        val_fn: Optional[ValFn] = None,
        *,
        collate_fn: Optional[Callable[[List[Any]], Any]] = None,
        ddp_kwargs: Optional[Mapping[str, Any]] = None,
    ):
        if isinstance(cfg, Mapping):
            cfg = TrainConfig.from_dict(cfg)
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig or a mapping, got {type(cfg).__name__}")
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(model, batch) -> loss")
        if val_data is not None and not callable(val_fn):
            raise ValueError("val_data was given without a val_fn(model, batch) -> {metric: float}")
        self.cfg = cfg
        self.loss_fn = loss_fn
        self.val_fn = val_fn
        self.train_data = train_data
        self.val_data = val_data
        self.collate_fn = collate_fn

        # --- processes and device
        self.device = self._resolve_device(cfg.device)
        self.distributed = D.init_for_device(self.device)
        self.world_size = D.world_size()
        self.rank = D.rank()
        self.is_main = self.rank == 0
        cfg.validate(self.world_size)
        self.local_batch = cfg.batch_size // self.world_size

        # --- mixed precision: autocast dtype + a scaler for fp16 only (bf16 needs none)
        self.amp_dtype: Optional[torch.dtype] = None
        if cfg.amp:
            if self.device.type == "cuda":
                if cfg.amp_dtype is not None:
                    self.amp_dtype = getattr(torch, cfg.amp_dtype)
                else:
                    self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                warnings.warn(f"TrainConfig.amp=True is ignored on {self.device.type}: training in float32",
                              stacklevel=2)
        fp16 = self.amp_dtype == torch.float16
        if hasattr(torch.amp, "GradScaler"):
            self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        else:  # pragma: no cover - torch < 2.3
            self.scaler = torch.cuda.amp.GradScaler(enabled=fp16)

        # --- model, wrappers, optimiser, schedule
        self.model: nn.Module = unwrap_model(model).to(self.device)
        net: nn.Module = self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(net, device_ids=ids, **dict(ddp_kwargs or {}))
        if cfg.compile:
            if hasattr(torch, "compile"):
                net = torch.compile(net)
            else:  # pragma: no cover - torch < 2.0
                warnings.warn("TrainConfig.compile=True but torch.compile is unavailable: skipped", stacklevel=2)
        self.net = net
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError("model has no trainable parameters")
        self.optimizer = torch.optim.Adam(
            self._params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, step_decay_lambda(
                linear_decay_lambda(cfg.steps, cfg.lr, cfg.warmup_steps, cfg.decay_start, cfg.lr_end),
                cfg.lr_milestones, cfg.lr_gamma)
        )

        # --- data order: DistributedSampler for every world size (same permutation rule)
        try:
            n = len(train_data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError("train_data must be a map-style Dataset with __len__") from None
        self._sampler = DistributedSampler(
            range(n), num_replicas=self.world_size, rank=self.rank, shuffle=True, seed=cfg.seed, drop_last=False
        )
        self.batches_per_epoch = len(self._sampler) // self.local_batch
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"train_data has {n} items, fewer than TrainConfig.batch_size={cfg.batch_size} "
                f"({self.local_batch} per process): no full batch"
            )

        # --- progress
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.last_validation: Dict[str, float] = {}
        self._elapsed = 0.0  # training seconds of earlier (resumed) runs
        self._started = False  # RNGs seeded or restored
        self._t0: Optional[float] = None  # start of the running fit()
        self._win: Dict[str, Any] = _empty_window()
        #: True once a fit() stopped at ``cfg.time_limit_s`` before ``cfg.steps``.
        self.stopped_by_time = False

    # ----------------------------------------------------------------- setup
    @staticmethod
    def _resolve_device(name: str) -> torch.device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(name)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"TrainConfig.device={name!r} but CUDA is not available")
            if dev.index is None:
                # One GPU per process under torchrun; LOCAL_RANK is 0 in a single process.
                dev = torch.device("cuda", D.local_rank() if D.env_world_size() > 1 else torch.cuda.current_device())
            if dev.index >= torch.cuda.device_count():
                raise ValueError(f"TrainConfig.device={name!r}: only {torch.cuda.device_count()} CUDA devices")
        elif dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"TrainConfig.device={name!r} but MPS is not available")
        return dev

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def _epoch_loader(self, epoch: int, skip: int) -> DataLoader:
        """Batches ``skip, skip+1, ...`` of ``epoch`` for this rank."""
        cfg = self.cfg
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        self._sampler.set_epoch(epoch)
        idx = list(self._sampler)
        L = self.local_batch
        # Skipping happens on indices, not by loading and discarding items: nothing of
        # the skipped batches is computed and no RNG is consumed.
        batches = [[(epoch, i) for i in idx[b * L : (b + 1) * L]] for b in range(skip, self.batches_per_epoch)]
        # A private generator: creating the iterator must not draw from the global torch
        # RNG, and the workers' base seed is a function of (seed, rank, epoch).
        gen = torch.Generator()
        gen.manual_seed(derive_seed(cfg.seed, self.rank, epoch))
        return DataLoader(
            _KeyedItems(self.train_data, cfg.seed),
            batch_sampler=batches,
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
            generator=gen,
            worker_init_fn=functools.partial(_worker_init, cfg.seed, self.rank, epoch) if cfg.num_workers else None,
        )

    # ------------------------------------------------------------------ train
    def fit(self, resume: bool = True) -> "Trainer":
        """Train until ``cfg.steps`` optimiser steps are done (or ``cfg.time_limit_s`` is spent).

        Parameters
        ----------
        resume : bool
            Continue from ``out_dir/last.pt`` when it exists (exactly: same weights as
            an uninterrupted run).

        Returns
        -------
        Trainer
            ``self``.
        """
        cfg = self.cfg
        ckpt = Path(cfg.out_dir) / "last.pt" if cfg.out_dir else None
        if resume and ckpt is not None and ckpt.is_file():
            self.load_state(ckpt)
        if not self._started:
            seed_everything(derive_seed(cfg.seed, self.rank))
            self._started = True
        self.stopped_by_time = False
        if self.step >= cfg.steps:
            return self
        if self._out_of_time(0.0):  # a resumed run whose time was already spent (ranks agree)
            return self

        bar = None
        if self.is_main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, desc="train",
                       mininterval=0.5)
        self.model.train()
        t0 = self._t0 = time.perf_counter()
        step0 = self.step
        win = self._win  # log-window sums; saved with the state so logs resume exactly too
        try:
            while self.step < cfg.steps and not self.stopped_by_time:
                if self.batch_in_epoch >= self.batches_per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                for batch in self._epoch_loader(self.epoch, self.batch_in_epoch):
                    loss, extra, gnorm, lr = self._train_step(batch)
                    self.step += 1
                    self.batch_in_epoch += 1
                    win["n"] += 1
                    win["loss"] += loss
                    for k, v in extra.items():
                        win["extra"][k] = win["extra"].get(k, 0.0) + v
                    if gnorm is not None:
                        win["grad_norm"] = gnorm if win["grad_norm"] is None else win["grad_norm"] + gnorm
                    elapsed = time.perf_counter() - t0
                    sps = (self.step - step0) * cfg.batch_size / max(elapsed, 1e-9)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.3g}", samples_s=f"{sps:.1f}", refresh=False)
                    last = self.step >= cfg.steps or self._out_of_time(elapsed)
                    if cfg.log_every and (self.step % cfg.log_every == 0 or last):
                        self._log_train(win, lr, sps, self._elapsed + elapsed)
                        win = self._win = _empty_window()
                    if self.val_data is not None and ((cfg.val_every and self.step % cfg.val_every == 0) or last):
                        self.validate()
                    if ckpt is not None and ((cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or last):
                        self._checkpoint(ckpt)
                    if last:
                        break
        finally:
            self._elapsed += time.perf_counter() - t0
            self._t0 = None
            if bar is not None:
                bar.close()
        return self

    def _out_of_time(self, elapsed: float) -> bool:
        """Whether ``cfg.time_limit_s`` is spent (all ranks agree: rank 0's clock decides)."""
        limit = self.cfg.time_limit_s
        if limit is None:
            return False
        spent = self._elapsed + elapsed >= limit
        if self.distributed:
            # Ranks' clocks differ: rank 0's verdict, summed to every rank, so that no rank
            # leaves the loop while another waits in a collective.
            flag = torch.tensor([float(spent and self.is_main)], device=self.device)
            spent = D.all_reduce_sum(flag).item() > 0
        self.stopped_by_time = bool(spent)
        return self.stopped_by_time

    def _train_step(self, batch: Any) -> Tuple[float, Dict[str, Any], Optional[torch.Tensor], float]:
        cfg = self.cfg
        batch = _to_device(batch, self.device)
        with self._autocast():
            out = self.loss_fn(self.net, batch)
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], Mapping):
                raise TypeError("loss_fn must return a loss tensor or (loss, {name: float})")
            loss, extra = out[0], dict(out[1])
        else:
            loss, extra = out, {}
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(
                f"loss_fn must return a scalar loss tensor, got "
                f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}"
            )
        # The mean loss over ranks: every rank sees the same value, so a NaN on any rank
        # stops all of them together (no rank left hanging in a collective).
        lv = loss.detach().float().reshape(1).clone()
        if self.distributed:
            D.all_reduce_sum(lv)
            lv /= self.world_size
        value = lv.item()
        if not math.isfinite(value):
            raise RuntimeError(
                f"non-finite training loss ({value}) at step {self.step + 1} (epoch {self.epoch}, "
                f"batch {self.batch_in_epoch} of the epoch); lower lr, set grad_clip or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.reshape(())).backward()
        gnorm = None
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradient, not the scaled one
            gnorm = torch.nn.utils.clip_grad_norm_(self._params, cfg.grad_clip).detach()
        lr = float(self.scheduler.get_last_lr()[0])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        extra_vals = {k: (v.detach().float() if isinstance(v, torch.Tensor) else float(v)) for k, v in extra.items()}
        return value, extra_vals, gnorm, lr

    def _log_train(self, win: Dict[str, Any], lr: float, sps: float, elapsed: float) -> None:
        n = max(win["n"], 1)
        keys = sorted(win["extra"])
        extra: Dict[str, float] = {}
        if keys:
            # Extra values differ per rank: average them over ranks (one collective a log row).
            t = torch.stack([torch.as_tensor(win["extra"][k], dtype=torch.float64, device=self.device).reshape(())
                             for k in keys])
            D.all_reduce_sum(t)
            extra = dict(zip(keys, (t / (n * self.world_size)).tolist()))
        if win["grad_norm"] is not None:  # identical on every rank (gradients are synchronised)
            extra["grad_norm"] = float(win["grad_norm"]) / n
        row = {
            "phase": "train",
            "step": self.step,
            "epoch": self.epoch,
            "loss": win["loss"] / n,
            "lr": lr,
            **extra,
            "samples_per_s": round(sps, 3),
            "elapsed_s": round(elapsed, 3),
        }
        self.history.append(row)
        if self.is_main and self.cfg.out_dir:
            write_logs(self.history, self.cfg.out_dir)
        if self.is_main and not self.cfg.progress:  # no bar: a plain line for batch-job logs
            more = "".join(f" {k} {v:.4g}" for k, v in extra.items())
            print(f"step {self.step}/{self.cfg.steps} loss {row['loss']:.4g} lr {lr:.3g}{more} "
                  f"{sps:.1f} samples/s", flush=True)

    # ------------------------------------------------------------- validation
    def validate(self) -> Dict[str, float]:
        """One pass over ``val_data``; returns (and logs) the sample-weighted mean metrics.

        Call on every rank under DDP (the sums are all-reduced).
        """
        if self.val_data is None or self.val_fn is None:
            return {}
        cfg = self.cfg
        idx = list(range(self.rank, len(self.val_data), self.world_size))  # no padding: exact means
        L = self.local_batch
        loader = DataLoader(
            self.val_data,
            batch_sampler=[idx[i : i + L] for i in range(0, len(idx), L)],
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
        )
        model = self.model
        was_training = model.training
        saved = get_rng_state(self.device)
        seed_everything(derive_seed(cfg.seed, self.rank, _VAL_SEED_KEY))
        sums: Dict[str, float] = {}
        count = 0
        model.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    nb = _batch_len(batch)
                    metrics = self.val_fn(model, _to_device(batch, self.device))
                    if not isinstance(metrics, Mapping):
                        raise TypeError(f"val_fn must return a dict of metrics, got {type(metrics).__name__}")
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * nb
                    count += nb
        finally:
            model.train(was_training)
            set_rng_state(saved, self.device)  # validation never perturbs training randomness
        keys = sorted(set().union(*[set(k) for k in D.all_gather_objects(sorted(sums))]))
        t = torch.tensor([sums.get(k, 0.0) for k in keys] + [float(count)], dtype=torch.float64, device=self.device)
        D.all_reduce_sum(t)
        total = t[-1].item()
        result = {k: (t[i].item() / total if total else float("nan")) for i, k in enumerate(keys)}
        self.last_validation = result
        self.history.append(
            {"phase": "val", "step": self.step, "epoch": self.epoch,
             **{(k if k.startswith("val_") else f"val_{k}"): v for k, v in result.items()}}
        )
        if self.is_main and cfg.out_dir:
            write_logs(self.history, cfg.out_dir)
        return result

    # ----------------------------------------------------------- checkpoints
    def _checkpoint(self, path: Path) -> None:
        self.save_state(path)
        if self.is_main:
            write_logs(self.history, path.parent)
            plot_history(self.history, path.parent / "loss.png", title=f"step {self.step}")

    def state_dict(self) -> Dict[str, Any]:
        """The full training state of this rank (RNG of this rank only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": int(self.step),
            "epoch": int(self.epoch),
            "batch_in_epoch": int(self.batch_in_epoch),
            "batches_per_epoch": int(self.batches_per_epoch),
            "elapsed_s": self._elapsed + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0),
            "history": list(self.history),
            "last_validation": dict(self.last_validation),
            "log_window": _window_to_plain(self._win),
            "config": self.cfg.to_dict(),
            "world_size": int(self.world_size),
            "rng": [get_rng_state(self.device)],
            "data": self.train_data.state_dict() if has_state(self.train_data) else None,
        }

    def save_state(self, path: Union[str, Path]) -> Optional[Path]:
        """Write the full training state to ``path`` (``torch.save``, loads with ``weights_only=True``).

        Under DDP call it on every rank: the RNG states of all ranks are gathered and rank
        0 writes the file between two barriers. Returns the path on rank 0, else None.
        """
        state = self.state_dict()
        state["rng"] = D.all_gather_objects(state["rng"][0])
        D.barrier()
        out = save_training_state(path, state) if self.is_main else None
        D.barrier()
        return out

    def load_state(self, path: Union[str, Path]) -> None:
        """Restore a state written by :meth:`save_state` (every rank reads the file)."""
        st = load_training_state(path)
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if st.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(st["scaler"])
        self.step = int(st["step"])
        self.epoch = int(st["epoch"])
        self.batch_in_epoch = int(st["batch_in_epoch"])
        self._elapsed = float(st.get("elapsed_s", 0.0))
        self.history = list(st.get("history", []))
        self.last_validation = dict(st.get("last_validation", {}))
        self._win = dict(st.get("log_window") or _empty_window())
        if has_state(self.train_data):
            if st.get("data") is None:
                if self.is_main:
                    warnings.warn(f"resuming {path}: it holds no state of the training data "
                                  f"({type(self.train_data).__name__}); the run is no longer exact", stacklevel=2)
            else:
                self.train_data.load_state_dict(st["data"])
        ignore = {"progress", "out_dir", "log_every", "val_every", "ckpt_every", "num_workers", "time_limit_s"}
        old = st.get("config", {})
        changed = sorted(k for k, v in self.cfg.to_dict().items() if k not in ignore and old.get(k, v) != v)
        if changed and self.is_main:
            warnings.warn(f"resuming {path} with changed settings {changed}: the run is no longer exact", stacklevel=2)
        if st.get("batches_per_epoch") != self.batches_per_epoch and self.is_main:
            warnings.warn(f"resuming {path}: the number of batches an epoch changed (dataset or world size)",
                          stacklevel=2)
        rngs = st.get("rng") or []
        if len(rngs) == self.world_size:
            set_rng_state(rngs[self.rank], self.device)
        else:
            if self.is_main:
                warnings.warn(
                    f"resuming {path} saved by {len(rngs)} processes with {self.world_size}: RNGs reseeded",
                    stacklevel=2
                )
            seed_everything(derive_seed(self.cfg.seed, self.rank, self.step))
        self._started = True

    # ---------------------------------------------------------------- export
    def export(
        self,
        path: Union[str, Path],
        architecture: str,
        config: Mapping[str, Any],
        metadata: Optional[Mapping[str, Any]] = None,
        module: Optional[nn.Module] = None,
    ) -> Optional[Path]:
        """Save the weights with :func:`pnpdeblur.checkpoints.save_checkpoint` (rank 0 writes).

        ``module`` selects a part of the trained model to export (e.g. the generator of an
        :class:`~pnpdeblur.train.AdversarialPair`); default the whole model.

        Safe to call on every rank or on rank 0 alone (no barrier): other ranks do nothing.

        The header's metadata holds ``training`` (this config), ``steps``, ``validation``
        (latest metrics) and then ``metadata``. Returns the path on rank 0, else None.
        """
        meta = {
            "training": self.cfg.to_dict(),
            "steps": int(self.step),
            "validation": dict(self.last_validation),
            **dict(metadata or {}),
        }
        # No collective here: callers may well call export on rank 0 alone.
        target = self.model if module is None else module
        return save_checkpoint(path, target, architecture, config, meta) if self.is_main else None
