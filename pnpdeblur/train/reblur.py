r"""Reblur2Deblur test-time fine-tuning (Chen et al.) on the shared training engine.

:func:`finetune_reblur` fine-tunes a copy of a deblurring network on an unlabelled blurred
clip. Every step minimises the hybrid loss of Chen et al.'s eq. 10::

    L = L_S + α · L_U,     L_U = MSE(K(F₊, F₋) · d(B_t), B_t)     (α = 0.1)

over a mini-batch made of ``n_u`` random crops of the clip's blurred frames (the reblur term,
:func:`pnpdeblur.losses.reblur.reblur_loss`) and ``n_s`` supervised (blurred, sharp) pairs
(``L_S`` = MSE(d(B), S)). The flows F₊ / F₋ are the optical flows between the *current*
deblurred frames (:func:`pnpdeblur.estimation.optical_flow.optical_flow`, TV-L1 by default or
a learned network), computed on whole frames without gradient and re-estimated every
``flow_every`` steps (default 20: the network changes little in 20 steps at lr 1e-4, and a
TV-L1 pass over the clip costs about as much as a few training steps). They are then held
fixed, so the gradient reaches the deblurring network through the reblurred centre frame
only.

``train_flow=True`` (with a learned flow network) is the paper's end-to-end system and its
footnote ("we can also simultaneously fine-tune the optical flow network Θ_f together with
Θ_d"): every step deblurs the reblur crops *and* the same windows of their neighbour frames,
runs the flow network on those deblurred crops with gradient, and minimises the same hybrid
loss over both networks' parameters (one Adam). The gradient of L_U then reaches the
deblurring network through the flows as well, and the flow network learns from the reblur
error alone. Flows are estimated per step on the crops, so ``flow_every`` does not apply.

When no supervised set is given, the supervised half is synthesised by the library:
GOPRO-style frame averaging (:class:`pnpdeblur.data.SyntheticVideoDataset`) of the
scikit-image photos used for training elsewhere (:data:`pnpdeblur.train.sen.TRAIN_SAMPLES`),
so the default call is the hybrid recipe; the paper found reblur-only fine-tuning to
degenerate. ``supervised=False`` selects reblur-only (``L = α·L_U``).

Schedule (the paper's settings as defaults): Adam, lr 1e-4, 200 steps, lr × 0.5 at epochs
30, 50 and 100, where an epoch is one pass over the clip's centre frames (``ceil(centres /
n_u)`` steps): a single image with its neighbours has 1-step epochs, so its learning rate
halves at steps 30, 50 and 100. The loop is the shared :class:`pnpdeblur.train.Trainer`
(tqdm, NaN check, AMP on CUDA, logs) with one item per mini-batch (:class:`HybridBatches`)
and the step decay as ``TrainConfig.lr_milestones``.

Small CPU configuration (tests, smoke runs): a tiny net, ``steps=5, crop=32, batch_size=2,
flow_every=5`` on a 3-frame 48² clip runs in about a second.
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .._images import as_image_batch
from ..estimation.optical_flow import _check_method, _flow_tensors
from ..losses.reblur import REBLUR_KERNELS, reblur_loss, reblur_operator
from ..operators._flow import MAX_FLOW

__all__ = [
    "PAPER_MILESTONES",
    "as_clip",
    "net_frames",
    "frame_stack",
    "deblur_frames",
    "run_net",
    "HybridBatches",
    "first_item",
    "ReblurObjective",
    "JointNets",
    "default_supervised_set",
    "finetune_reblur",
]

#: Epochs at which Chen et al. halve the learning rate.
PAPER_MILESTONES = (30, 50, 100)


# ------------------------------------------------------------------------------- helpers
def as_clip(blurred_frames: Any, name: str = "blurred_frames") -> torch.Tensor:
    """A clip as a checked ``(T, C, H, W)`` float tensor in [0, 1].

    Accepts a ``(T, C, H, W)`` array (numpy, torch or cupy) or a sequence of images, each
    ``(H, W)``, ``(H, W, C)`` numpy / ``(C, H, W)`` torch, uint8 or float. Raises TypeError
    for non-arrays and ValueError for fewer than 2 frames, frames of different shapes or
    channel counts, and NaN/Inf.
    """
    if isinstance(blurred_frames, (list, tuple)):
        if len(blurred_frames) < 2:
            raise ValueError(f"{name} must hold at least 2 frames (in temporal order), got {len(blurred_frames)}")
        out = []
        for i, f in enumerate(blurred_frames):
            x, _ = as_image_batch(f, f"{name}[{i}]")
            if x.shape[0] != 1:
                raise ValueError(f"{name}[{i}] must be one image, got a batch of shape {tuple(x.shape)}")
            if out and x.shape[1:] != out[0].shape[1:]:
                raise ValueError(f"{name}[{i}] has (C, H, W) = {tuple(x.shape[1:])}, but {name}[0] has "
                                 f"{tuple(out[0].shape[1:])}: all frames must have the same size")
            out.append(x.to(device=out[0].device, dtype=out[0].dtype) if out else x)
        return torch.cat(out)
    if hasattr(blurred_frames, "ndim") and getattr(blurred_frames, "ndim") == 4:
        x, _ = as_image_batch(blurred_frames, name)
        if x.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 frames (in temporal order), got {x.shape[0]}")
        return x
    shape = getattr(blurred_frames, "shape", None)
    raise TypeError(f"{name} must be a (T, C, H, W) array or a sequence of images in temporal order, got "
                    f"{type(blurred_frames).__name__}{'' if shape is None else ' of shape ' + str(tuple(shape))}")


def net_frames(net: Any) -> int:
    """Frames a deblurring network reads for one output: its ``frames`` (``T`` of a multi-frame
    network such as :class:`pnpdeblur.nets.DVD`, whose input stacks ``T`` neighbouring frames
    along the channels), else 1. A :class:`JointNets` answers for its deblurring network."""
    net = getattr(net, "deblur", net) if isinstance(net, JointNets) else net
    t = getattr(net, "frames", 1)
    return int(t) if isinstance(t, numbers.Integral) and not isinstance(t, bool) and t >= 1 else 1


def frame_stack(clip: torch.Tensor, t: int, frames: int) -> torch.Tensor:
    """The input of a ``frames``-frame network for frame ``t`` of a ``(T, C, H, W)`` clip.

    ``(1, frames·C, H, W)``: frames ``t - frames // 2 … t + frames // 2`` in temporal order
    along the channels, indices clamped to the clip (its first and last frames are repeated
    at its ends); ``clip[t:t + 1]`` for ``frames == 1``.
    """
    last, half = clip.shape[0] - 1, frames // 2
    return torch.cat([clip[min(max(t + k, 0), last)] for k in range(-half, frames - half)])[None]


def _centre_frame(stack: torch.Tensor, frames: int) -> torch.Tensor:
    """The centre frame ``(N, C, H, W)`` of :func:`frame_stack` inputs ``(N, frames·C, H, W)``."""
    c = stack.shape[1] // frames
    return stack[:, (frames // 2) * c:(frames // 2 + 1) * c]


def run_net(net: Callable, x: torch.Tensor, frames: int = 1) -> torch.Tensor:
    """``net(x)`` for a deblurring network, reduced to one ``(N, C, H, W)`` image batch.

    ``x`` is ``(N, frames·C, H, W)`` (a stack of ``frames`` frames for a multi-frame
    network, :func:`frame_stack`); the output must be ``(N, C, H, W)``. Multi-scale networks
    that return a list/tuple of outputs (coarse → fine) give the last output of that size.
    Raises ValueError if no output has that shape.
    """
    want = (x.shape[0], x.shape[1] // frames, *x.shape[2:])
    out = net(x)
    if isinstance(out, (list, tuple)):
        same = [o for o in out if isinstance(o, torch.Tensor) and tuple(o.shape) == want]
        if not same:
            raise ValueError(f"the network returned {len(out)} outputs, none of the shape {want}")
        out = same[-1]
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        what = "(N, C, H, W) images to the same shape" if frames == 1 else \
            f"stacks of {frames} frames (N, {frames}·C, H, W) to the centre frame's shape"
        raise ValueError(f"the network must map {what} {want}, got {got}")
    return out


@torch.no_grad()
def deblur_frames(net: nn.Module, frames: torch.Tensor, chunk: int = 1) -> torch.Tensor:
    """Run ``net`` on each frame of a ``(T, C, H, W)`` clip (no gradient), ``chunk`` frames at a time.

    A multi-frame network (:func:`net_frames` > 1) gets each frame's :func:`frame_stack`, one
    frame at a time. The frames are moved to the device of the network's parameters; the result (on that
    device, unclipped) has the clip's shape.
    """
    dev = next((p.device for p in net.parameters()), frames.device)
    k = net_frames(net)
    if k > 1:  # a multi-frame network reads each frame's neighbourhood (clamped at the ends)
        return torch.cat([run_net(net, frame_stack(frames, t, k).to(dev), k) for t in range(frames.shape[0])])
    outs = [run_net(net, frames[i:i + chunk].to(dev)) for i in range(0, frames.shape[0], chunk)]
    return torch.cat(outs)


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _real(value: Any, name: str, low: float, high: float = math.inf, low_open: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and v <= high
    if not ok:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {lo}{low}, {high}], got {value!r}")
    return float(value)


def _crop_pair(item: Dict[str, Any], crop: int, rng: np.random.Generator,
               where: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random ``crop``² window of a supervised item's (blurred, sharp) ``(C, H, W)`` tensors."""
    if not isinstance(item, dict) or "blurred" not in item or "sharp" not in item:
        raise ValueError(f"{where} must be a dict with 'blurred' and 'sharp' images (C, H, W)")
    b, s = (torch.as_tensor(item[k]) for k in ("blurred", "sharp"))
    if b.ndim != 3 or b.shape[1:] != s.shape[1:] or b.shape[0] % max(s.shape[0], 1):  # (so s is 3-D too)
        raise ValueError(f"{where}: 'blurred' and 'sharp' must be (C, H, W) of the same shape (or 'blurred' a "
                         f"stack of frames (T·C, H, W) for a multi-frame network), got {tuple(b.shape)} and "
                         f"{tuple(s.shape)}")
    h, w = b.shape[1:]
    if h < crop or w < crop:
        raise ValueError(f"{where} is {h}×{w}, smaller than crop={crop}")
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return b[:, y:y + crop, x:x + crop].float(), s[:, y:y + crop, x:x + crop].float()


# --------------------------------------------------------------------------------- data
class HybridBatches(Dataset):
    """Mini-batches of the hybrid loss, one item a whole batch (a pure function of ``(seed, index)``).

    Item ``i``: ``{"frames": (n_u,) int64`` clip indices of the centre frames, ``"ys", "xs":
    (n_u,)`` top-left corners of their ``crop``² windows, and when ``n_s > 0`` ``"sup_blurred",
    "sup_sharp": (n_s, C, crop, crop)}`` drawn from ``supervised``. Use with batch size 1 and
    :func:`first_item` as the collate function. Supervised items are cached (they are often
    synthesised on the fly and a fine-tuning run draws from a small pool).

    Parameters
    ----------
    length : int
        Number of batches.
    centres : sequence of int
        Clip indices the reblur crops may come from.
    frame_size : (int, int)
        ``(H, W)`` of the clip.
    crop : int
        Window size (<= H, W).
    n_u, n_s : int
        Reblur crops and supervised pairs per batch.
    supervised : Dataset or None
        Items with ``"blurred"``/``"sharp"`` ``(C, H, W)`` images at least ``crop``² (needed
        when ``n_s > 0``).
    pool : int or None
        Draw supervised items from its first ``pool`` entries (None: all).
    seed : int
    """

    def __init__(self, length: int, centres: Sequence[int], frame_size: Tuple[int, int], crop: int, n_u: int,
                 n_s: int, supervised: Optional[Dataset] = None, pool: Optional[int] = None, seed: int = 0):
        self.length = _int(length, "length", 1)
        self.centres = np.asarray(list(centres), dtype=np.int64)
        if self.centres.size == 0:
            raise ValueError("centres must not be empty")
        self.h, self.w = (int(v) for v in frame_size)
        self.crop = _int(crop, "crop", 1)
        if self.crop > min(self.h, self.w):
            raise ValueError(f"crop={crop} exceeds the frame size {self.h}×{self.w}")
        self.n_u, self.n_s = _int(n_u, "n_u", 1), _int(n_s, "n_s", 0)
        if self.n_s and supervised is None:
            raise ValueError("n_s > 0 needs a supervised dataset")
        self.supervised = supervised
        self.pool = len(supervised) if supervised is not None else 0
        if supervised is not None and pool is not None:
            self.pool = min(self.pool, _int(pool, "pool", 1))
        self.seed = int(seed)
        self._cache: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.length

    def _supervised_item(self, j: int, rng: np.random.Generator):
        if j not in self._cache:
            self._cache[j] = self.supervised[j]
        return _crop_pair(self._cache[j], self.crop, rng, f"supervised[{j}]")

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        frames = rng.choice(self.centres, self.n_u, replace=self.n_u > len(self.centres))
        out = {
            "frames": torch.from_numpy(np.asarray(frames, dtype=np.int64)),
            "ys": torch.from_numpy(rng.integers(0, self.h - self.crop + 1, self.n_u)),
            "xs": torch.from_numpy(rng.integers(0, self.w - self.crop + 1, self.n_u)),
        }
        if self.n_s:
            pairs = [self._supervised_item(int(j), rng) for j in rng.integers(0, self.pool, self.n_s)]
            out["sup_blurred"] = torch.stack([p[0] for p in pairs])
            out["sup_sharp"] = torch.stack([p[1] for p in pairs])
        return out


def first_item(items: List[Any]) -> Any:
    """Collate function of :class:`HybridBatches` (each item already is a batch)."""
    return items[0]


def _windows(x: torch.Tensor, frames: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, crop: int,
             stack: int = 1) -> torch.Tensor:
    """``crop``² windows of frames ``frames`` of ``x``; with ``stack > 1`` each window is the
    :func:`frame_stack` of its frame (the same window of its neighbours, along the channels)."""
    if stack > 1:
        return torch.cat([frame_stack(x[..., int(y):int(y) + crop, int(x0):int(x0) + crop], int(t), stack)
                          for t, y, x0 in zip(frames, ys, xs)])
    return torch.stack([x[int(t), :, int(y):int(y) + crop, int(x0):int(x0) + crop]
                        for t, y, x0 in zip(frames, ys, xs)])


class JointNets(nn.Module):
    """The deblurring and flow networks trained together (``finetune_reblur(train_flow=True)``).

    ``forward(x)`` is the deblurring network's, so the supervised term and every caller see
    the deblurring network; :class:`ReblurObjective` reaches the flow network as ``.flow``.
    """

    def __init__(self, deblur: nn.Module, flow: nn.Module):
        super().__init__()
        self.deblur, self.flow = deblur, flow

    def forward(self, x: torch.Tensor) -> Any:
        return self.deblur(x)


# ---------------------------------------------------------------------------- objective
class ReblurObjective:
    """``loss_fn(model, batch)`` of the hybrid loss for :class:`pnpdeblur.train.Trainer`.

    Holds the blurred clip and the flows of its current deblurred frames (re-estimated from
    the model every ``flow_every`` calls, on whole frames, without gradient). With
    ``joint=True`` the model is a :class:`JointNets` and the flows are instead estimated on
    every call, on the crops, by ``model.flow`` with gradient (:meth:`joint_reblur_term`).

    Returns ``(L_S + α·L_U, {"reblur": L_U, "supervised": L_S})`` (``L = α·L_U`` without
    supervised pairs).

    Parameters
    ----------
    clip : torch.Tensor, (T, C, H, W)
    centres : sequence of int
        Frames whose flows are needed.
    frames : {2, 3}
        2: F₋ = −F₊ with F₊ to the next frame (to the previous one, negated, for the last
        frame); 3: both neighbours.
    kernel, tau : see :func:`pnpdeblur.losses.reblur.reblur_loss`
    alpha : float
    crop : int
    flow : "tvl1" or callable
    flow_every : int
    joint : bool
        Flows from the model's own flow network, per call, with gradient (see above).
    margin : int or "reach"
        Border left out of L_U on each crop (:func:`~pnpdeblur.losses.reblur.reblur_loss`);
        ``"reach"`` is the blur's reach for the crop's flows, capped at a quarter of the crop so
        that at least its central half is always compared.
    """

    def __init__(self, clip: torch.Tensor, centres: Sequence[int], frames: int, kernel: str, tau: float,
                 alpha: float, crop: int, flow: Union[str, Callable], flow_every: int, joint: bool = False,
                 margin: Union[int, str] = 0):
        self.clip, self.centres = clip, sorted(set(int(c) for c in centres))
        self.frames, self.kernel, self.tau, self.alpha, self.margin = frames, kernel, tau, alpha, margin
        self.crop, self.flow, self.flow_every, self.joint = crop, flow, flow_every, joint
        self.calls = 0
        self.refreshes = 0
        self.flow_next: Optional[torch.Tensor] = None
        self.flow_prev: Optional[torch.Tensor] = None

    @torch.no_grad()
    def refresh(self, model: Callable) -> None:
        """Deblur the frames that matter and estimate their flows (between deblurred frames)."""
        clip, t_len = self.clip, self.clip.shape[0]
        need = set()
        for t in self.centres:
            need.update(u for u in (t - 1, t, t + 1) if 0 <= u < t_len)
        dev = next((p.device for p in model.parameters()), clip.device) if isinstance(model, nn.Module) else clip.device
        was_training = model.training
        model.eval()  # no batch statistics of single frames, no running-stat updates
        try:
            k = net_frames(model)
            deb = {t: run_net(model, frame_stack(clip, t, k).to(dev), k).clamp(0.0, 1.0) for t in sorted(need)}
        finally:
            model.train(was_training)
        fn, fp = [], []
        for t in self.centres:
            if self.frames == 3:
                fn.append(_flow_tensors(deb[t], deb[t + 1], self.flow)[0])
                fp.append(_flow_tensors(deb[t], deb[t - 1], self.flow)[0])
            elif t + 1 < t_len:
                fn.append(_flow_tensors(deb[t], deb[t + 1], self.flow)[0])
            else:  # last frame of a 2-frame clip: the flow to the previous frame, negated
                fn.append(-_flow_tensors(deb[t], deb[t - 1], self.flow)[0])
        # Flows beyond the operators' range (e.g. TV-L1 outliers at borders) are clipped.
        lim = float(MAX_FLOW)
        self.flow_next = torch.stack(fn).detach().clamp(-lim, lim).to(dev)
        self.flow_prev = torch.stack(fp).detach().clamp(-lim, lim).to(dev) if fp else None
        self._slot = {t: i for i, t in enumerate(self.centres)}
        self.refreshes += 1

    def reblur_term(self, model: Callable, frames: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """L_U on the crops ``(frames, ys, xs)`` with the current flows."""
        c = self.crop
        dev = self.flow_next.device
        slots = torch.tensor([self._slot[int(t)] for t in frames])
        k = net_frames(model)
        inputs = _windows(self.clip, frames, ys, xs, c, k).to(dev)
        blurred = _centre_frame(inputs, k)
        fn = _windows(self.flow_next, slots, ys, xs, c)
        fp = None if self.flow_prev is None else _windows(self.flow_prev, slots, ys, xs, c)
        out = run_net(model, inputs, k)
        return self._loss(out.float(), blurred.float(), fn.float(), None if fp is None else fp.float())

    def _loss(self, out: torch.Tensor, blurred: torch.Tensor, fn: torch.Tensor,
              fp: Optional[torch.Tensor]) -> torch.Tensor:
        """L_U with this objective's kernel, τ and margin (``"reach"`` capped at crop / 4)."""
        margin = self.margin
        if margin == "reach":
            op = reblur_operator(out, fn, fp, kernel=self.kernel, tau=self.tau)[0]
            margin = min(op.reach(), min(out.shape[-2:]) // 4)
        return reblur_loss(out, blurred, fn, fp, kernel=self.kernel, tau=self.tau, margin=margin)

    def joint_reblur_term(self, model: JointNets, frames: torch.Tensor, ys: torch.Tensor,
                          xs: torch.Tensor) -> torch.Tensor:
        """L_U on the crops ``(frames, ys, xs)`` with flows from ``model.flow``, all with gradient.

        The crops and the same windows of their neighbour frames are deblurred in one batch;
        F₊ = flow(d(B_t), d(B_t+1)) and, for 3 frames, F₋ = flow(d(B_t), d(B_t-1)) (2 frames:
        F₋ = −F₊, and the last frame takes −flow(d(B_t), d(B_t-1)) as F₊, as :meth:`refresh` does).
        The deblurred crops go to the flow network clipped to [0, 1], and the flows are clipped
        to the operators' range.
        """
        c, t_len, n = self.crop, self.clip.shape[0], len(frames)
        dev = next((p.device for p in model.parameters()), self.clip.device)
        if self.frames == 3:
            nxt, sign, prv = frames + 1, torch.ones(n), frames - 1
        else:  # a frame without a next one uses its previous one, negated (as refresh() does; the
            # 2-frame kernels are symmetric in the flow's sign, so this is the convention only)
            last = frames + 1 >= t_len
            nxt, sign, prv = torch.where(last, frames - 1, frames + 1), torch.where(last, -1.0, 1.0), None
        cut = [frames, nxt] + ([prv] if prv is not None else [])
        k = net_frames(model)
        inputs = torch.cat([_windows(self.clip, f, ys, xs, c, k) for f in cut]).to(dev)
        deb = run_net(model, inputs, k)
        out, d_next = deb[:n], deb[n:2 * n]
        d0 = out.clamp(0.0, 1.0)
        lim = float(MAX_FLOW)
        fn = _flow_tensors(d0, d_next.clamp(0.0, 1.0), model.flow) * sign.to(dev, deb.dtype).view(n, 1, 1, 1)
        fp = None if prv is None else _flow_tensors(d0, deb[2 * n:].clamp(0.0, 1.0), model.flow).clamp(-lim, lim)
        blurred = _centre_frame(inputs[:n], k)
        return self._loss(out.float(), blurred.float(), fn.clamp(-lim, lim).float(), None if fp is None else fp.float())

    def __call__(self, model: Callable, batch: Dict[str, torch.Tensor]):
        self.calls += 1
        if self.joint:
            l_u = self.joint_reblur_term(model, batch["frames"], batch["ys"], batch["xs"])
        else:
            if (self.calls - 1) % self.flow_every == 0:
                self.refresh(model)
            l_u = self.reblur_term(model, batch["frames"], batch["ys"], batch["xs"])
        extra = {"reblur": float(l_u.detach())}
        if "sup_blurred" in batch:
            out = run_net(model, batch["sup_blurred"], net_frames(model))
            l_s = torch.nn.functional.mse_loss(out.float(), batch["sup_sharp"].float())
            extra["supervised"] = float(l_s.detach())
            return l_s + self.alpha * l_u, extra
        return self.alpha * l_u, extra


# ---------------------------------------------------------------------------- the recipe
def default_supervised_set(crop: int, seed: int = 0, length: int = 256, max_blur: float = 16.0,
                           frames: int = 1) -> Dataset:
    """The library's own supervised pairs: frame-averaged blur of the training sample photos.

    :class:`pnpdeblur.data.SyntheticVideoDataset` (GOPRO-style, mixed camera motion up to
    ``max_blur`` px per exposure, γ = 2.2) on :data:`pnpdeblur.train.sen.TRAIN_SAMPLES` (the
    benchmarks' photos stay out), ``crop``² items, a fixed function of ``(seed, index)``.
    ``frames > 1`` (a multi-frame network): ``"blurred"`` is a stack of that many consecutive
    blurred frames ``(frames·C, crop, crop)`` and ``"sharp"`` the centre frame's sharp image.
    """
    from ..data import SyntheticVideoDataset, sample_images
    from .sen import TRAIN_SAMPLES

    names = [n for n in TRAIN_SAMPLES if n in sample_images()]
    clips = SyntheticVideoDataset(names, length=length, crop=crop, max_blur=max_blur, seed=seed, fixed=True,
                                  n_blurred=frames)
    if frames == 1:
        return clips
    from .deblurnets import _VideoItems

    return _VideoItems(clips, "video")


def finetune_reblur(
    net: nn.Module,
    blurred_frames: Any,
    *,
    frames: int = 3,
    kernel: str = "two_segment",
    tau: float = 1.0,
    margin: Union[int, str] = 0,
    steps: int = 200,
    lr: float = 1e-4,
    alpha: float = 0.1,
    supervised: Union[None, bool, Dataset] = None,
    flow: Union[str, Callable] = "tvl1",
    flow_every: int = 20,
    train_flow: bool = False,
    group: bool = True,
    target: Optional[int] = None,
    crop: int = 128,
    batch_size: int = 8,
    supervised_share: float = 0.5,
    milestones: Sequence[int] = PAPER_MILESTONES,
    lr_decay: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    device: Optional[str] = None,
) -> nn.Module:
    """Fine-tune a copy of a deblurring network on an unlabelled blurred clip (Reblur2Deblur).

    Parameters
    ----------
    net : torch.nn.Module
        Deblurring network ``net(x) -> x'`` on ``(N, C, H, W)`` images in [0, 1] (a list of
        multi-scale outputs is reduced to the full-size one). It is not modified. A multi-frame
        network such as :class:`pnpdeblur.nets.DVD` (Chen et al.'s first network; its ``frames``
        attribute, :func:`net_frames`) gets each frame's neighbourhood stacked along the
        channels (:func:`frame_stack`), and its default supervised pairs are stacks too.
    blurred_frames : (T, C, H, W) array or sequence of images
        The blurred clip in temporal order: ``(H, W)``/``(H, W, C)`` numpy or ``(C, H, W)`` torch
        images, uint8 or float in [0, 1], all the same size; T >= 2 (>= 3 for ``frames=3``).
    frames : {2, 3}
        Blur model from 2 frames (F₋ = −F₊) or 3 frames (both neighbours; the clip's first and
        last frames only serve as neighbours). Chen et al. found 3 better.
    kernel : {"two_segment", "lut", "warp"}
        Blur formation model (:func:`pnpdeblur.losses.reblur.reblur_loss`).
    tau : float in (0, 1]
        Exposure cycle (Chen: 1).
    margin : int >= 0 or "reach"
        Border left out of the reblur loss on each crop (default 0: all pixels, as Chen et
        al.). ``"reach"``: the blur's reach for the crop's flows (capped at a quarter of the
        crop), where the reblurred crop would read past the crop's edge; see
        :func:`pnpdeblur.losses.reblur.reblur_loss`.
    steps : int
        Optimiser steps (paper: 200 self-supervised iterations).
    lr : float
        Adam learning rate (paper: 1e-4).
    alpha : float >= 0
        Weight of the reblur term (paper: 0.1).
    supervised : None, False or Dataset
        ``None`` (default): the hybrid loss with the library's synthetic pairs
        (:func:`default_supervised_set`); a Dataset of ``{"blurred", "sharp"}`` ``(C, H, W)``
        items at least ``crop``² (e.g. :class:`pnpdeblur.data.PairedFolderDataset`): the hybrid
        loss with those; ``False``: reblur-only (all ``batch_size`` crops are reblur crops).
    flow : "tvl1" or callable
        Optical flow between deblurred frames (:func:`pnpdeblur.estimation.optical_flow.optical_flow`),
        e.g. a ``pnpdeblur.nets.FlowNetS`` module. Unless ``train_flow`` is set it is not
        trained (a module is moved to ``device`` in place and put in eval mode).
    flow_every : int
        Re-estimate the flows from the current network every this many steps (default 20;
        not used with ``train_flow``).
    train_flow : bool
        Fine-tune a copy of the flow network together with the deblurring network (Chen et
        al.'s footnote; needs ``flow`` to be an ``nn.Module`` with parameters): flows are then
        estimated on every step's crops with gradient, and both networks minimise the hybrid
        loss with one Adam (see the module docstring). The caller's flow network is not
        modified; the fine-tuned copy is returned as ``tuned.reblur_flow_net``. Start from a
        *trained* flow network: an untrained one learns whatever flows make the reblurred crops
        match, not the motion (benchmarks/RESULTS.md).
    group : bool
        True: fine-tune on crops of every usable frame of the clip (Chen's "group"); False:
        only on frame ``target`` (with its neighbours for the flows), Chen's per-image mode.
    target : int, optional
        The frame of ``group=False`` (default: the middle frame).
    crop : int
        Training window size (clipped to the frame size; paper's timing: 128).
    batch_size : int
        Images per mini-batch, reblur crops plus supervised pairs.
    supervised_share : float in [0, 1]
        Fraction of ``batch_size`` that are supervised pairs in the hybrid loss (rounded, then
        kept between 1 pair and ``batch_size - 1``: every batch has a reblur crop).
    milestones, lr_decay : sequence of int, float
        Epochs (passes over the usable centre frames) at which the lr is multiplied by
        ``lr_decay`` in (0, 1] (paper: 30, 50, 100 and 0.5).
    seed : int
        Crop positions, supervised draws and the engine's RNGs (the caller's global RNG
        states are restored afterwards).
    progress : bool
        A tqdm bar (True) or, as the training engine does without one, a plain log line every
        few steps (False).
    device : str, optional
        Training device (default: that of ``net``'s parameters).

    Returns
    -------
    torch.nn.Module
        The fine-tuned copy, in eval mode, with ``reblur_history`` (the engine's log rows:
        ``loss``, ``reblur``, ``supervised``, ``lr``) and ``reblur_settings`` attributes, and with
        ``train_flow`` also ``reblur_flow_net`` (the fine-tuned flow network, in eval mode).

    Raises
    ------
    TypeError, ValueError
        Bad arguments: a non-module ``net``, fewer frames than ``frames``, frames of different
        sizes, NaN/Inf frames, unknown ``kernel``/``flow``, ``target`` outside the usable frames.
    """
    from . import TrainConfig, Trainer
    from .state import get_rng_state, set_rng_state

    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if isinstance(frames, bool) or not isinstance(frames, numbers.Integral) or frames not in (2, 3):
        raise ValueError(f"frames must be 2 or 3, got {frames!r}")
    if kernel not in REBLUR_KERNELS:
        raise ValueError(f"kernel must be one of {REBLUR_KERNELS}, got {kernel!r}")
    _check_method(flow)
    tau = _real(tau, "tau", 0.0, 1.0, low_open=True)
    if margin != "reach":
        if isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0:
            raise ValueError(f"margin must be an int >= 0 or 'reach', got {margin!r}")
        margin = int(margin)
    steps = _int(steps, "steps", 1)
    lr = _real(lr, "lr", 0.0, low_open=True)
    alpha = _real(alpha, "alpha", 0.0)
    flow_every = _int(flow_every, "flow_every", 1)
    crop = _int(crop, "crop", 8)
    batch_size = _int(batch_size, "batch_size", 1)
    share = _real(supervised_share, "supervised_share", 0.0, 1.0)
    lr_decay = _real(lr_decay, "lr_decay", 0.0, 1.0, low_open=True)
    seed = _int(seed, "seed", 0)
    ms = [_int(m, "milestones", 1) for m in milestones]
    if not isinstance(group, bool):
        raise TypeError(f"group must be a bool, got {type(group).__name__}")
    if not isinstance(train_flow, bool):
        raise TypeError(f"train_flow must be a bool, got {type(train_flow).__name__}")
    if train_flow and not (isinstance(flow, nn.Module) and any(p.requires_grad for p in flow.parameters())):
        got = repr(flow) if isinstance(flow, str) else type(flow).__name__
        raise ValueError(f"train_flow=True needs flow to be a torch.nn.Module with trainable parameters "
                         f"(e.g. pnpdeblur.nets.FlowNetS), got {got}")
    if not (supervised is None or supervised is False or isinstance(supervised, Dataset)):
        raise TypeError(f"supervised must be None, False or a torch Dataset of {{'blurred', 'sharp'}} items, "
                        f"got {type(supervised).__name__}")

    clip = as_clip(blurred_frames)
    t_len, _, h, w = clip.shape
    if t_len < frames:
        raise ValueError(f"frames={frames} needs at least {frames} blurred frames, got {t_len}")
    usable = list(range(1, t_len - 1)) if frames == 3 else list(range(t_len))
    if group:
        centres = usable
    else:
        t = usable[len(usable) // 2] if target is None else target
        if isinstance(t, bool) or not isinstance(t, numbers.Integral) or int(t) not in usable:
            raise ValueError(f"target must be one of the frames {usable[0]}..{usable[-1]} (frames={frames} "
                             f"needs its neighbours), got {target!r}")
        centres = [int(t)]
    crop = min(crop, h, w)
    if margin != "reach" and 2 * margin >= crop:
        raise ValueError(f"margin={margin} leaves no pixel of the {crop}² crops (margin < crop / 2 needed)")

    hybrid = supervised is not False
    if hybrid:
        if batch_size < 2:
            raise ValueError("the hybrid loss needs batch_size >= 2 (one reblur crop and one supervised pair)")
        n_s = min(max(1, int(round(batch_size * share))), batch_size - 1)
        k = net_frames(net)
        sup_set = default_supervised_set(crop, seed, frames=k) if supervised is None else supervised
        if supervised is not None and k > 1 and len(sup_set):
            first = sup_set[0]
            b = torch.as_tensor(first["blurred"]) if isinstance(first, dict) and "blurred" in first else None
            c = torch.as_tensor(first["sharp"]).shape[0] if isinstance(first, dict) and "sharp" in first else 0
            if b is None or b.ndim != 3 or b.shape[0] != k * c:
                got = "no 'blurred' image" if b is None else f"'blurred' of shape {tuple(b.shape)}"
                raise ValueError(f"net reads stacks of {k} frames: its supervised items need 'blurred' stacks "
                                 f"({k}·C, H, W) of consecutive blurred frames and the centre frame's 'sharp' "
                                 f"(C, H, W); supervised[0] has {got}")
    else:
        n_s, sup_set = 0, None
    n_u = batch_size - n_s

    if device is None:
        device = str(next((p.device for p in net.parameters()), torch.device("cpu")))
    if train_flow:  # both networks in one module: the engine's one Adam trains them together
        tuned = JointNets(copy.deepcopy(net), copy.deepcopy(flow).to(device))
    else:
        if isinstance(flow, nn.Module):
            flow.to(device).eval()  # moved in place (as estimate_flow does); it is not trained here
        tuned = copy.deepcopy(net)
    epoch_len = math.ceil(len(centres) / n_u)
    data = HybridBatches(steps, centres, (h, w), crop, n_u, n_s, sup_set, seed=seed)
    objective = ReblurObjective(clip, centres, frames, kernel, tau, alpha, crop, flow, flow_every, joint=train_flow,
                                margin=margin)
    # Chen's epochs → the engine's step milestones (those past the last step never apply).
    milestone_steps = tuple(sorted({m * epoch_len for m in ms if m * epoch_len <= steps}))
    cfg = TrainConfig(steps=steps, batch_size=1, lr=lr, seed=seed, device=device, progress=progress,
                      log_every=max(1, min(10, steps)), lr_milestones=milestone_steps, lr_gamma=lr_decay)
    saved_rng = get_rng_state(torch.device(device))
    try:
        trainer = Trainer(tuned, cfg, data, objective, collate_fn=first_item)
        trainer.fit(resume=False)
    finally:
        set_rng_state(saved_rng, torch.device(device))  # the caller's random streams are untouched
    tuned = trainer.model
    flow_net = None
    if train_flow:
        tuned, flow_net = tuned.deblur, tuned.flow.eval()
    tuned.eval()
    tuned.reblur_history = list(trainer.history)
    tuned.reblur_settings = {
        "frames": frames, "kernel": kernel, "tau": tau, "margin": margin, "steps": steps, "lr": lr, "alpha": alpha,
        "hybrid": hybrid, "n_reblur": n_u, "n_supervised": n_s, "flow": flow if isinstance(flow, str) else
        type(flow).__name__, "flow_every": flow_every, "flow_refreshes": objective.refreshes,
        "train_flow": train_flow, "group": group, "centres": centres, "crop": crop,
        "milestone_steps": list(milestone_steps), "seed": seed,
    }
    if flow_net is not None:
        tuned.reblur_flow_net = flow_net
    return tuned
