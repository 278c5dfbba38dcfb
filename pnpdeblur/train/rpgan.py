"""Training recipe for RP-GAN (Wu et al., sections 4.2 and 6.2) on the shared engine.

Data. A fixed *pool* of synthetic blurred crops (the paper's "1000 synthetic blurred
images"): random crops of sharp photos (a corpus folder such as BSDS500's *train* split,
plus scikit-image's training photos), Gong-style flows of one preset, Gaussian noise σ.
Every pool image gets a flow **estimated by SEN** (the shipped one by default;
``--flows true`` uses the true flow, an ablation): the deconvolutions then carry the
artifacts of imperfect kernels that the artifact critic D_p is there to suppress.

Deconvolutions. Level ``k`` of an image is the x-step ``I*_k = [KᵀK + β_k I]⁻¹(β_k Z_{k−1}
+ KᵀO)`` (CG) of HQS run for ``k`` iterations from ``Z_0 = O`` with the z-step
``Z_n = G_frozen(I*_n | O)`` — :func:`pnpdeblur.solvers.hqs` with
:class:`pnpdeblur.priors.rpgan.RPGANPrior` around a frozen copy of the generator, and the
β of :func:`pnpdeblur.priors.rpgan.rpgan_schedule` (which the prior uses at test time).

Procedure. (1) Pre-train on level 1 (``--pretrain-steps``; level-1 inputs do not depend on
G). (2) Experience replay: a :class:`pnpdeblur.train.replay.ReplayBuffer` of ``--buffer``
deconvolutions (paper 1000: 50 % level 1, 30 % level 2, 20 % level 3) made by a frozen
copy of G, trained on for ``--refresh-every`` epochs (paper 3), then remade, until
``--steps``. Adam with β = (0.5, 0.999) by default (``--adam-betas``; the shipped weights were
trained so, the usual choice for GANs; Wu et al. use "the same solver as SEN", β = (0.9, 0.99):
pass ``--adam-betas 0.9 0.99`` for the paper's), lr 1e-4 for G and both
discriminators, constant for 110/190 of the steps then linear to 1e-6 (the paper's 110 +
80 epochs compressed to ``--steps``), batch 16.

Losses (:mod:`pnpdeblur.losses.rpgan`). Generator: ``L_c + γ L_cGAN + λ L_p``; content
``L_c`` the Laplacian-pyramid substitute of the VGG16 loss (``--vgg FILE`` for the paper's
``relu2_2`` perceptual loss). D_cGAN: eq. 5 on ``(I_s|O)`` vs ``(G(I*|O)|O)``. D_p: eq. 6
between ``I*`` (scored high) and ``O`` (scored low) with a gradient penalty.

Generator/discriminator alternation through the one-optimiser engine. :class:`RPGANTrainModule`
holds G, D_cGAN and D_p; the loss handed to :class:`pnpdeblur.train.Trainer` is
``L_G + L_D`` where ``L_G`` sees the discriminators through *detached* parameters
(``torch.func.functional_call``) and ``L_D`` sees ``G``'s output detached, so one backward
and one Adam step update G by ``∇L_G`` and the discriminators by ``∇L_D`` — a simultaneous
update from one snapshot (one D step per G step), with one optimiser, one schedule and one
``last.pt`` for exact resume (it holds the frozen generator of the current buffer round,
from which the buffer is remade).

Usage::

    python scripts/train_rpgan.py --corpus .data/bsds500/train --steps 20000 --device cuda
    python scripts/train_rpgan.py --steps 2 --pretrain-steps 2 --batch 2 --crop 32 --pool 4 \\
        --buffer 4 --val-items 2 --width 4 --n-res 1 --d-width 4 --cg-iters 2   # CPU smoke run
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import Dataset

from ..checkpoints import half_state, save_checkpoint
from ..losses.rpgan import (
    DEFAULT_GAMMA,
    DEFAULT_GP_WEIGHT,
    DEFAULT_LAMBDA_P,
    artifact_critic_loss,
    artifact_penalty,
    cgan_discriminator_loss,
    cgan_generator_loss,
    content_loss,
    rpgan_generator_loss,
)
from ..nets.rpgan import ArtifactCritic, ConditionalDiscriminator, RPGANGenerator
from ..priors.rpgan import RPGANPrior, rpgan_schedule
from ._cli import (FRACTION, NONNEGATIVE, add_engine_arguments, add_time_budget_argument, check_options, device_name,
                   engine_options, parse_engine_args)
from .engine import LossFn, ValFn
from .replay import PAPER_PROPORTIONS, ReplayBuffer, level_counts

#: Side of the crops the pool's SEN flows are estimated on by default (``--flow-context``): the
#: shipped SEN's ensemble flow MSE at ±23 is 29.7 px² on 96² crops, 35.6 on 128², 7.4 on 192²
#: and 6.5 on 256² photos (benchmarks/RESULTS.md, "RP-GAN inside pd.deblur").
SEN_CONTEXT = 192

#: Smallest ``--crop``: the generator's two stride-2 convolutions work at 1/``stride`` of the crop,
#: and their batch norm needs two values per channel, which ``--batch 1`` gets only from a 2×2 map
#: (a 4×4 crop with ``--batch 1`` fails at the first step; 5–7 reach 2×2 only by padding). The
#: critics pad their inputs up to ``MIN_CRITIC_SIZE`` (their own minimum) and add none.
MIN_CROP = 2 * RPGANGenerator.stride

__all__ = ["SEN_CONTEXT", "MIN_CROP", "RPGANTrainModule", "TensorItems", "build_pool", "DeconvolutionProducer",
           "make_loss_fn", "make_val_fn", "parse_args", "main"]


class RPGANTrainModule(nn.Module):
    """RP-GAN's three networks as one module for the engine (one optimiser, one checkpoint).

    Parameters
    ----------
    generator : RPGANGenerator
    d_cgan : ConditionalDiscriminator, optional
        None trains without the cGAN term.
    d_p : ArtifactCritic, optional
        None trains without the artifact penalty (the paper's appendix-B ablation).

    ``forward(deconv, blurred)`` is the generator's.
    """

    def __init__(self, generator: nn.Module, d_cgan: Optional[nn.Module] = None, d_p: Optional[nn.Module] = None):
        super().__init__()
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a torch.nn.Module, got {type(generator).__name__}")
        for name, m in (("d_cgan", d_cgan), ("d_p", d_p)):
            if m is not None and not isinstance(m, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module or None, got {type(m).__name__}")
        self.generator = generator
        self.d_cgan = d_cgan
        self.d_p = d_p

    def forward(self, deconv: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
        return self.generator(deconv, blurred)


def _frozen(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` through detached parameters: gradients reach the inputs only."""
    params = {k: p.detach() for k, p in module.named_parameters()}
    return functional_call(module, params, inputs, strict=False)


class TensorItems(Dataset):
    """Rows of equally long tensors as dict items (the pool as a validation set)."""

    def __init__(self, data: Dict[str, torch.Tensor]):
        lens = {int(v.shape[0]) for v in data.values()}
        if len(lens) != 1:
            raise ValueError(f"all tensors must have the same number of rows, got {sorted(lens)}")
        self.data = {k: v.detach().cpu() for k, v in data.items()}
        self.n = lens.pop()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.data.items()}


@torch.no_grad()
def build_pool(
    sources: Sequence[Any],
    length: int,
    crop: int,
    preset: str = "23",
    noise_sigma: float = 0.01,
    seed: int = 0,
    flows: str = "sen",
    flow_model: Optional[nn.Module] = None,
    device: Any = "cpu",
    chunk: int = 16,
    context: Optional[int] = None,
) -> Dict[str, torch.Tensor]:
    """The fixed pool of blurred crops with the flows the deconvolutions will use.

    Parameters
    ----------
    sources : sequence
        Images for :class:`pnpdeblur.data.SyntheticBlurDataset` (paths, arrays, sample names).
    length, crop : int
        Number of crops and their size.
    preset, noise_sigma : str, float
        Flow preset ('23' or '46') and noise std of the blurred images.
    seed : int
        Every crop, flow and noise draw is a function of ``(seed, index)``.
    flows : {'sen', 'sen-ensemble', 'true'}
        The flow stored as ``"flow"``: SEN's estimate from one pass (paper; the shipped
        weights), SEN's 8-symmetry ensemble (:func:`pnpdeblur.estimate_flow`'s ``ensemble``,
        the flows :func:`pnpdeblur.deblur` deconvolves with by default) or the true one.
    flow_model : SEN, optional
        Estimator for ``flows='sen'`` (default the shipped SEN).
    device : str or torch.device
        Where SEN runs and the pool lives.
    chunk : int
        Images per SEN call.
    context : int, optional
        Blur and estimate the flow on ``context``² crops, then keep their centre ``crop``²
        (default ``crop``: no margin). SEN needs context: the shipped SEN's ensemble flow has
        an MSE of about 30 px² on 96² crops at ±23 and 7 px² on 192² crops, where whole
        photos give 6.5 (``benchmarks/RESULTS.md``, "RP-GAN prior"). A generator trained on
        the deconvolutions of the small crops' flows learns to distrust every deconvolution.
        The kept crops are cut from a larger blurred scene, so their borders hold light from
        outside them, as a photo's do.

    Returns
    -------
    dict
        ``"blurred"``, ``"sharp"`` ``(length, 3, crop, crop)``; ``"flow"`` (used) and
        ``"true_flow"`` ``(length, 2, crop, crop)``; on ``device``.
    """
    from ..data import SyntheticBlurDataset
    from ..estimation.learned import estimate_flow

    if flows not in ("sen", "sen-ensemble", "true"):
        raise ValueError(f"flows must be 'sen', 'sen-ensemble' or 'true', got {flows!r}")
    if context is None:
        context = crop
    if isinstance(context, bool) or not isinstance(context, int) or context < crop:
        raise ValueError(f"context must be an int >= crop ({crop}), got {context!r}")
    ds = SyntheticBlurDataset(list(sources), length=length, crop=context, preset=preset, noise_sigma=noise_sigma,
                              seed=seed, fixed=True)
    items = [ds[i] for i in range(length)]
    dev = torch.device(device)
    out = {k: torch.stack([it[k] for it in items]).to(dev) for k in ("blurred", "sharp", "flow")}
    out["true_flow"] = out.pop("flow")
    if flows == "true":
        out["flow"] = out["true_flow"].clone()
    else:
        est = [estimate_flow(out["blurred"][i:i + chunk], model=flow_model, device=dev,
                             ensemble=flows == "sen-ensemble")
               for i in range(0, length, chunk)]
        out["flow"] = torch.cat(est).to(dev, torch.float32)
    if context > crop:  # the centres, cut after blurring and estimating on the whole context
        r = (context - crop) // 2
        out = {k: v[..., r:r + crop, r:r + crop].contiguous() for k, v in out.items()}
    return out


class DeconvolutionProducer:
    """Makes a buffer filling: level-k deconvolutions of pool images by a frozen generator.

    Parameters
    ----------
    generator : nn.Module
        The *live* generator; each call deep-copies it (the frozen copy of that round).
    pool : dict
        :func:`build_pool`'s output.
    levels : int
        Highest level (length of the β schedule).
    noise_level : float
        σ of the schedule (:func:`pnpdeblur.priors.rpgan.rpgan_schedule`).
    cg_iters, cg_tol : int, float
        CG settings of each x-step.
    chunk : int
        Images per HQS call.
    seed : int
        Which pool images a round uses is a function of ``(seed, round, level)``.

    ``producer(counts, round)`` returns ``{"deconv", "blurred", "sharp", "level"}`` with
    ``counts[k]`` rows of level ``k + 1`` (pool images drawn without replacement when the
    pool is large enough, else with).

    ``state_dict()`` is the frozen generator of the latest round (what a checkpoint needs
    to remake that round's buffer); after ``load_state_dict(state)`` the next call for that
    round uses those weights instead of a copy of the live generator, so a resumed run
    trains on the same deconvolutions as the uninterrupted one.
    """

    def __init__(self, generator: nn.Module, pool: Dict[str, torch.Tensor], levels: int = 3,
                 noise_level: float = 0.01, cg_iters: int = 10, cg_tol: float = 1e-4, chunk: int = 16, seed: int = 0):
        self.generator = generator
        self.pool = pool
        self.levels = levels
        self.betas = rpgan_schedule(noise_level, levels)
        self.noise_level = noise_level
        self.cg_iters, self.cg_tol, self.chunk, self.seed = cg_iters, cg_tol, chunk, seed
        self.n = int(pool["blurred"].shape[0])
        self._latest: Optional[Dict[str, Any]] = None  # {"round", "frozen"} of the latest call
        self._restored: Optional[Dict[str, Any]] = None  # the same, from a checkpoint, until used

    def state_dict(self) -> Dict[str, Any]:
        """``{"round": int, "frozen": state dict}`` of the latest round (``{"round": -1}`` before any)."""
        return dict(self._latest) if self._latest is not None else {"round": -1}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Use ``state["frozen"]`` as the frozen generator of the next call for ``state["round"]``."""
        if not isinstance(state, dict) or "round" not in state:
            raise ValueError("state must be a dict from DeconvolutionProducer.state_dict()")
        self._restored = dict(state) if "frozen" in state else None

    @torch.no_grad()
    def deconvolve(self, frozen: nn.Module, idx: torch.Tensor, level: int) -> torch.Tensor:
        """``I*_level`` of pool images ``idx`` with ``frozen`` as the z-step of the earlier levels."""
        from ..operators import MotionBlur
        from ..solvers import hqs

        out = []
        prior = RPGANPrior(frozen, levels=self.levels)
        for i in range(0, len(idx), self.chunk):
            j = idx[i:i + self.chunk].to(self.pool["blurred"].device)
            o, flow = self.pool["blurred"][j], self.pool["flow"][j]
            res = hqs(o, MotionBlur(flow), prior, betas=self.betas[:level], cg_iters=self.cg_iters,
                      cg_tol=self.cg_tol, progress=False)
            out.append(res.aux)  # the last x-step's solution: I*_level
        return torch.cat(out)

    def __call__(self, counts: List[int], round: int) -> Dict[str, torch.Tensor]:
        if len(counts) > self.levels:
            raise ValueError(f"counts for {len(counts)} levels, the producer has {self.levels}")
        frozen = copy.deepcopy(self.generator).eval()
        if self._restored is not None and int(self._restored["round"]) == int(round):
            frozen.load_state_dict(self._restored["frozen"])
        self._restored = None
        for p in frozen.parameters():
            p.requires_grad_(False)
        self._latest = {"round": int(round), "frozen": frozen.state_dict()}
        parts: Dict[str, List[torch.Tensor]] = {"deconv": [], "blurred": [], "sharp": [], "level": []}
        for k, n in enumerate(counts, start=1):
            if n == 0:
                continue
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + round * 101 + k)
            idx = torch.randperm(self.n, generator=g)[:n] if n <= self.n else torch.randint(self.n, (n,), generator=g)
            parts["deconv"].append(self.deconvolve(frozen, idx, k).cpu())
            parts["blurred"].append(self.pool["blurred"][idx.to(self.pool["blurred"].device)].cpu())
            parts["sharp"].append(self.pool["sharp"][idx.to(self.pool["sharp"].device)].cpu())
            parts["level"].append(torch.full((n,), k, dtype=torch.long))
        return {k: torch.cat(v) for k, v in parts.items()}


def make_loss_fn(
    perceptual: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    gamma: float = DEFAULT_GAMMA,
    lam: float = DEFAULT_LAMBDA_P,
    gp_weight: float = DEFAULT_GP_WEIGHT,
) -> LossFn:
    """``loss_fn(model, batch)`` for the engine: ``L_G + L_D`` on disjoint parameters.

    ``batch`` holds ``"deconv"`` (I*), ``"blurred"`` (O) and ``"sharp"`` (I_s). The logged
    extras are ``content``, ``cgan_g``, ``penalty`` (eq. 7), ``d_cgan``, ``d_p``,
    ``wasserstein`` (D_p's estimate of W(P_I*, P_O)) and ``gp``.
    """
    from .engine import unwrap_model

    def loss_fn(model: nn.Module, batch: Dict[str, torch.Tensor]):
        m = unwrap_model(model)
        deconv, blurred, sharp = batch["deconv"], batch["blurred"], batch["sharp"]
        out = model(deconv, blurred)
        lc = content_loss(out.float(), sharp.float(), perceptual)
        extra: Dict[str, float] = {"content": float(lc.detach())}
        cg = pen = None
        ld = lc.new_zeros(())
        if m.d_cgan is not None:
            d_real = m.d_cgan(sharp, blurred)
            d_fake = m.d_cgan(out.detach(), blurred)
            l_dc = cgan_discriminator_loss(d_real.float(), d_fake.float())
            cg = cgan_generator_loss(_frozen(m.d_cgan, out, blurred).float())
            ld = ld + l_dc
            extra.update(cgan_g=float(cg.detach()), d_cgan=float(l_dc.detach()))
        if m.d_p is not None:
            l_dp, parts = artifact_critic_loss(m.d_p, deconv.float(), blurred.float(), gp_weight)
            pen = artifact_penalty(_frozen(m.d_p, out).float(), _frozen(m.d_p, sharp).float())
            ld = ld + l_dp
            extra.update(penalty=float(pen.detach()), d_p=float(l_dp.detach()),
                         wasserstein=float(parts["wasserstein"]), gp=float(parts["gp"]))
        lg = rpgan_generator_loss(lc, cg, pen, gamma, lam)
        extra["generator"] = float(lg.detach())
        return lg + ld, extra

    return loss_fn


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    mse = ((x.clamp(0, 1) - ref) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)


def make_val_fn(levels: int = 3, noise_level: float = 0.01, cg_iters: int = 10, cg_tol: float = 1e-4) -> ValFn:
    """``val_fn(model, batch)``: PSNR (dB) of the blurred input and of every level's output.

    Runs the full recurrence (HQS with the current generator as :class:`RPGANPrior`, the
    flows in ``batch["flow"]``) on ``batch["blurred"]`` and compares with ``batch["sharp"]``;
    also the PSNR of the first deconvolution ``I*_1`` (what the generator starts from).
    """
    from ..operators import MotionBlur
    from ..solvers import hqs
    from .engine import unwrap_model

    betas = rpgan_schedule(noise_level, levels)

    def val_fn(model: nn.Module, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        g = unwrap_model(model).generator
        sharp = batch["sharp"]
        metrics = {"psnr_blurred": float(_psnr(batch["blurred"], sharp).mean())}

        def record(entry, z):
            metrics[f"psnr_level{entry['iteration'] + 1}"] = float(_psnr(z, sharp).mean())

        res = hqs(batch["blurred"], MotionBlur(batch["flow"]), RPGANPrior(g, levels=levels), betas=betas[:1],
                  cg_iters=cg_iters, cg_tol=cg_tol, progress=False)
        metrics["psnr_deconv1"] = float(_psnr(res.aux, sharp).mean())
        hqs(batch["blurred"], MotionBlur(batch["flow"]), RPGANPrior(g, levels=levels), betas=betas,
            cg_iters=cg_iters, cg_tol=cg_tol, progress=False, callback=record)
        return metrics

    return val_fn


class _PhaseBudget:
    """Sizes the two phases of a ``--time-budget`` run from measured times.

    The budget counts from the start of :func:`main` (building the pool is part of the run).
    Each phase's buffer is filled when the phase begins, and that filling is timed: it is the
    cost of every later refill (:func:`pnpdeblur.train.budget.steps_with_refills`). The step
    rate is measured once, on a batch of the first buffer (both phases train the same
    networks on the same batch shapes). The level-1 phase gets the share
    ``pretrain_steps / (pretrain_steps + steps)`` of what is left when it begins; the
    recurrent phase gets the rest, up to the deadline.
    """

    def __init__(self, args: argparse.Namespace, model: nn.Module, loss_fn: Callable, start: float):
        self.args, self.model, self.loss_fn = args, model, loss_fn
        self.deadline = start + float(args.time_budget)
        self.rate: Optional[float] = None
        self.refill_s: List[float] = []
        self._phase_start = 0.0

    def buffer(self, producer: Callable, proportions: Sequence[float]) -> ReplayBuffer:
        """A buffer filled now (its engine epoch 0 then needs no refill), the filling timed."""
        self._phase_start = time.perf_counter()
        buf = ReplayBuffer(producer, self.args.buffer, proportions, self.args.refresh_every, fill_now=True)
        self.refill_s.append(time.perf_counter() - self._phase_start)
        return buf

    def steps(self, buf: ReplayBuffer, share: float) -> Tuple[int, float]:
        """``(steps, seconds)`` for the phase that trains on ``buf``: ``share`` of the time
        left at its start, less its first filling and the probe; ``seconds`` is its time limit."""
        from torch.utils.data import default_collate

        from . import budget as B  # looked up per call: tests stand in for the probe
        from . import distributed as D

        a = self.args
        if self.rate is None:
            batch = default_collate([buf[i] for i in range(a.batch)])
            self.rate = B.measure_step_rate(self.model, self.loss_fn, batch, device=str(next(
                self.model.parameters()).device), lr=a.lr)
        end = self._phase_start + (self.deadline - self._phase_start) * share
        seconds = end - time.perf_counter()
        per_refill = a.refresh_every * (a.buffer // a.batch)  # parse_args: buffer >= batch
        steps = B.steps_with_refills(seconds, self.rate, self.refill_s[-1], per_refill) if seconds > 0 else 0
        # every rank must train as many steps as the others: rank 0's plan is everyone's
        D.init_for_device(next(self.model.parameters()).device)
        steps, seconds = D.rank0_value((steps, seconds))
        if not seconds > 0:
            spent = time.perf_counter() - (self.deadline - float(a.time_budget))
            raise ValueError(f"--time-budget {a.time_budget:g} s leaves no time for this phase's training "
                             f"({spent:.1f} s spent on the pool, the buffers and the probe): give a larger "
                             "--time-budget or a smaller --pool/--buffer")
        print(json.dumps({"probe_steps_per_s": round(self.rate, 2), "refill_s": round(self.refill_s[-1], 2),
                          "phase_seconds": round(seconds, 1), "steps": steps}), flush=True)
        return steps, seconds


def _floats(text: str, name: str) -> List[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pnpdeblur train rpgan", description="Train RP-GAN, the recurrent HQS prior.")
    ap.add_argument("--corpus", default=None, help="folder of sharp photos (default: scikit-image photos only)")
    ap.add_argument("--preload", action="store_true", help="decode the corpus into memory once")
    ap.add_argument("--steps", type=int, default=20000, help="steps of the recurrent (buffer) phase")
    ap.add_argument("--pretrain-steps", type=int, default=4000, help="level-1 pre-training steps (paper: 40 epochs)")
    ap.add_argument("--batch", type=int, default=16, help="batch size (paper: 16)")
    ap.add_argument("--crop", type=int, default=128, help="crop size of the pool images")
    ap.add_argument("--flow-context", type=int, default=None,
                    help="blur and estimate the flow on crops of this size, keep their centre --crop² "
                         f"(default: max(--crop, {SEN_CONTEXT}) with SEN flows, where smaller crops give "
                         "SEN too little context; --crop with --flows true)")
    ap.add_argument("--pool", type=int, default=1000, help="blurred images in the pool (paper: 1000)")
    ap.add_argument("--buffer", type=int, default=1000, help="replay buffer size (paper: 1000)")
    ap.add_argument("--proportions", default=",".join(map(str, PAPER_PROPORTIONS)),
                    help="share of each level in the buffer (paper: 0.5,0.3,0.2)")
    ap.add_argument("--refresh-every", type=int, default=3, help="epochs on one buffer filling (paper: 3)")
    ap.add_argument("--preset", choices=("23", "46"), default="23", metavar="PRESET",
                    help="flow preset of the pool ('23' or '46')")
    ap.add_argument("--noise", type=float, default=0.01, help="noise std of the blurred images and of the schedule")
    ap.add_argument("--flows", choices=("sen", "sen-ensemble", "true"), default="sen",
                    help="flows of the deconvolutions (paper: sen, one SEN pass; sen-ensemble: SEN's 8-symmetry "
                         "ensemble, as pd.deblur uses by default)")
    ap.add_argument("--sen", default=None, help="SEN checkpoint for --flows sen (default: the shipped SEN)")
    ap.add_argument("--cg-iters", type=int, default=10, help="CG iterations per x-step")
    ap.add_argument("--width", type=int, default=16, help="generator width (paper: 64)")
    ap.add_argument("--n-res", type=int, default=3, help="generator Res1 blocks (paper: 6)")
    ap.add_argument("--no-residual", action="store_true", help="no I* + r output (the paper's literal head)")
    ap.add_argument("--d-width", type=int, default=16, help="discriminators' first width (paper: 64)")
    ap.add_argument("--gamma", type=float, default=DEFAULT_GAMMA, help="weight of the cGAN term")
    ap.add_argument("--lam", type=float, default=DEFAULT_LAMBDA_P, help="weight of the artifact penalty")
    ap.add_argument("--gp-weight", type=float, default=DEFAULT_GP_WEIGHT)
    ap.add_argument("--no-dp", action="store_true", help="ablation: no artifact critic D_p")
    ap.add_argument("--no-cgan", action="store_true", help="ablation: no cGAN discriminator")
    ap.add_argument("--vgg", default=None, help="VGG16 weights file: the paper's relu2_2 perceptual content loss")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--adam-betas", type=float, nargs=2, default=(0.5, 0.999), metavar=("B1", "B2"),
                    help="Adam's betas (default 0.5 0.999, as the shipped weights; the paper: SEN's 0.9 0.99)")
    ap.add_argument("--lr-end", type=float, default=1e-6)
    ap.add_argument("--decay-from", type=float, default=110 / 190, help="fraction of steps at constant lr")
    add_time_budget_argument(ap, help="train for about this long, the pool included: the level-1 and recurrent "
                             "phases share it as --pretrain-steps : --steps do, and each phase's steps are set from "
                             "a probe of the step rate and the time of its first buffer filling (refills cost as "
                             "much); training stops at this time regardless")
    add_engine_arguments(ap, run_dir="runs/rpgan", out_name="rpgan.safetensors", val_items=8, val_every=1000,
                         amp=False, run_dir_help="logs, checkpoints, discriminators",
                         out_help="exported generator (safetensors)")
    args = parse_engine_args(ap, argv)
    if args.time_budget is not None and not (math.isfinite(args.time_budget) and args.time_budget > 0):
        ap.error(f"--time-budget must be a finite number of seconds > 0, got {args.time_budget}")
    for name in ("steps", "batch", "pool", "buffer", "refresh_every", "cg_iters", "width", "n_res", "d_width"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.crop < MIN_CROP:
        ap.error(f"--crop must be >= {MIN_CROP} (the generator works at 1/{RPGANGenerator.stride} of it, where "
                 f"batch norm needs 2×2 values), got {args.crop}")
    if args.pretrain_steps < 0 or args.val_items < 0:
        ap.error("--pretrain-steps and --val-items must be >= 0")
    if args.flow_context is not None and args.flow_context < args.crop:
        ap.error(f"--flow-context ({args.flow_context}) must be at least --crop ({args.crop})")
    if args.flow_context is None:
        args.flow_context = args.crop if args.flows == "true" else max(args.crop, SEN_CONTEXT)
    if args.buffer < args.batch:
        ap.error(f"--buffer ({args.buffer}) must hold at least one batch ({args.batch})")
    if not (args.noise >= 0 and math.isfinite(args.noise)):
        ap.error(f"--noise must be a finite number >= 0, got {args.noise}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """Train RP-GAN as ``argv`` says and export the generator; returns the weights' path."""
    from ..data import list_images
    from ..losses.perceptual import PerceptualLoss
    from . import TrainConfig, Trainer
    from .sen import HELD_OUT_SAMPLES, held_out_samples, training_sources

    args = parse_args(argv)
    check_options(args, files=("sen", "vgg"), photo_folders=("corpus",), lr_end=NONNEGATIVE, decay_from=FRACTION,
                  gamma=NONNEGATIVE, lam=NONNEGATIVE, gp_weight=NONNEGATIVE,
                  adam_betas=((lambda v: all(0 <= b < 1 for b in v)), "two numbers in [0, 1)"))
    proportions = _floats(args.proportions, "--proportions")
    try:  # checked now: the buffer is first built after the level-1 phase, perhaps hours in
        level_counts(args.buffer, proportions)
    except ValueError as e:
        raise ValueError(f"--proportions {args.proportions!r} / --buffer {args.buffer}: {e}") from None
    levels = len(proportions)
    t0 = time.time()
    clock_start = time.perf_counter()  # --time-budget counts from here: the pool is part of the run
    device = Trainer._resolve_device(args.device)
    sources = training_sources(args.corpus, args.preload, min_size=args.flow_context)
    sen = None
    if args.flows != "true" and args.sen is not None:
        from ..nets.sen import SEN

        sen = SEN.from_checkpoint(args.sen)
    pool = build_pool(sources, args.pool, args.crop, args.preset, args.noise, args.seed, args.flows, sen, device,
                      context=args.flow_context)
    val = None
    if args.val_items:
        vpool = build_pool(held_out_samples(args.flow_context), args.val_items, args.crop, args.preset, args.noise,
                           10_000, args.flows, sen, device, context=args.flow_context)
        val = TensorItems({k: vpool[k] for k in ("blurred", "sharp", "flow")})
    gen = RPGANGenerator(3, args.width, args.n_res, residual=not args.no_residual)
    model = RPGANTrainModule(
        gen,
        None if args.no_cgan else ConditionalDiscriminator(3, args.d_width),
        None if args.no_dp else ArtifactCritic(3, args.d_width),
    ).to(device)
    perceptual = PerceptualLoss(args.vgg).to(device) if args.vgg else None
    loss_fn = make_loss_fn(perceptual, args.gamma, args.lam, args.gp_weight)
    val_fn = make_val_fn(levels, args.noise, args.cg_iters) if val is not None else None
    producer = DeconvolutionProducer(model.generator, pool, levels, args.noise, args.cg_iters, seed=args.seed)
    common = dict(batch_size=args.batch, lr=args.lr, betas=tuple(args.adam_betas),
                  **{**engine_options(args), "device": str(device)})
    common.pop("out_dir")  # one folder per phase below
    run = Path(args.run_dir)
    history: List[Dict[str, Any]] = []
    budget = _PhaseBudget(args, model, loss_fn, clock_start) if args.time_budget is not None else None

    def phase_buffer(shares: Sequence[float]) -> ReplayBuffer:
        # with a budget, filled now and timed; else at the engine's first epoch
        if budget:
            return budget.buffer(producer, shares)
        return ReplayBuffer(producer, args.buffer, shares, args.refresh_every, fill_now=False)

    steps = {"level1": args.pretrain_steps, "recurrent": args.steps}
    stopped_by_time = False
    if args.pretrain_steps:
        # (1) level 1 only: its inputs do not depend on G, one filling per refresh still varies the crops
        buf1 = phase_buffer((1.0,))
        limit = None
        if budget:
            steps["level1"], limit = budget.steps(buf1, args.pretrain_steps / (args.pretrain_steps + args.steps))
        cfg1 = TrainConfig(steps=steps["level1"], out_dir=str(run / "level1"), time_limit_s=limit, **common)
        t1 = Trainer(model, cfg1, buf1, loss_fn, val_data=val, val_fn=val_fn)
        t1.fit()
        stopped_by_time = t1.stopped_by_time
        history += [{"phase_name": "level1", **row} for row in t1.history]
    # (2) experience replay over the levels
    buf = phase_buffer(proportions)
    limit = None
    if budget:
        steps["recurrent"], limit = budget.steps(buf, 1.0)
    cfg2 = TrainConfig(steps=steps["recurrent"], decay_start=int(steps["recurrent"] * args.decay_from),
                       lr_end=args.lr_end, out_dir=str(run / "recurrent"), time_limit_s=limit, **common)
    trainer = Trainer(model, cfg2, buf, loss_fn, val_data=val, val_fn=val_fn)
    trainer.fit()
    stopped_by_time = stopped_by_time or trainer.stopped_by_time
    history += [{"phase_name": "recurrent", **row} for row in trainer.history]

    out = Path(args.out)
    from .distributed import is_main_process

    if not is_main_process():
        return out
    corpus_files = [] if args.corpus is None else sorted(p.name for p in list_images(args.corpus, recursive=True))
    meta = {
        "training": cfg2.to_dict(),
        "steps": steps,
        "validation": dict(trainer.last_validation),
        "schedule": {"levels": levels, "noise_level": args.noise, "betas": producer.betas,
                     "cg_iters": args.cg_iters, "rule": "pnpdeblur.priors.rpgan.rpgan_schedule"},
        "data": {
            "script": "scripts/train_rpgan.py (pnpdeblur.train.rpgan)",
            "argv": list(argv) if argv is not None else None,
            "corpus": args.corpus, "corpus_files": corpus_files, "pool": args.pool, "crop": args.crop,
            "flow_context": args.flow_context,
            "preset": args.preset, "noise": args.noise, "flows": args.flows, "sen": args.sen or "shipped",
            "buffer": args.buffer,
            "proportions": proportions, "refresh_every": args.refresh_every, "held_out": HELD_OUT_SAMPLES,
            "losses": {"content": "vgg16 " + str(args.vgg) if args.vgg else "LaplacianPyramidLoss(3)",
                       "gamma": args.gamma, "lam": args.lam, "gp_weight": args.gp_weight,
                       "d_cgan": not args.no_cgan, "d_p": not args.no_dp},
            "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
            "device": device_name(device),
        },
    }
    if budget:
        meta["data"].update(time_budget_s=args.time_budget, probe_steps_per_s=budget.rate,
                            refill_s=[round(v, 3) for v in budget.refill_s], stopped_by_time=stopped_by_time)
    state = model.generator.state_dict() if args.float32 else half_state(model.generator.state_dict())
    if not args.float32:
        meta["stored_dtype"] = "float16 weights, float32 BatchNorm statistics"
    save_checkpoint(out, state, "RPGANGenerator", model.generator.config, meta)
    # the discriminators, to continue adversarial training later
    for name in ("d_cgan", "d_p"):
        net = getattr(model, name)
        if net is not None:
            save_checkpoint(run / f"{name}.safetensors", net, type(net).__name__, net.config, {"generator": str(out)})
    (run / "history.json").parent.mkdir(parents=True, exist_ok=True)
    (run / "history.json").write_text(json.dumps(history, default=str, indent=1))
    print(json.dumps({"weights": str(out), "validation": trainer.last_validation}, default=str))
    return out
