"""FlowNetS (Dosovitskiy et al., ICCV 2015): optical flow from two stacked frames.

Contracting part (LeakyReLU 0.1 after every convolution; widths for ``width = W = 64``)::

    conv1   7×7 s2   2C → W        conv4   3×3 s2  4W → 8W       conv6   3×3 s2  8W → 16W
    conv2   5×5 s2    W → 2W       conv4_1 3×3     8W → 8W       conv6_1 3×3    16W → 16W
    conv3   5×5 s2   2W → 4W       conv5   3×3 s2  8W → 8W
    conv3_1 3×3      4W → 4W       conv5_1 3×3     8W → 8W

Expanding part, from 1/64 up to 1/4 resolution: at each scale a 3×3 convolution
``predict_flow{k}`` (no activation) predicts the flow, a 4×4 stride-2 transposed
convolution ``upsampled_flow{k}_to_{k-1}`` up-samples it, ``deconv{k-1}`` (4×4 stride-2
transposed conv + LeakyReLU) up-samples the features, and both are concatenated with the
contracting features of the same size (``conv5_1``, ``conv4_1``, ``conv3_1``, ``conv2``).
With ``W = 64`` this is 38,675,536 parameters (≈ 38.7 M; Clément Pinard's ``flownets``) or
38,676,506 with biases on the predictions and deconvolutions (NVIDIA's layout).

Flow units — the one thing to get right
---------------------------------------
Internally (and in both official PyTorch ports and the original Caffe model) every scale
predicts ``flow / div_flow`` **in pixels of the full-resolution input** (the ground truth
is divided by ``div_flow = 20`` and down-sampled *without* rescaling magnitudes). Users
never see those units:

* ``net(frame1, frame2)`` returns the finest prediction (1/4 resolution) × ``div_flow``,
  bilinearly up-sampled to the input size: ``(N, 2, H, W)`` in pixels of the input;
* ``net.forward_multiscale(frame1, frame2)`` returns the five predictions coarse → fine
  (1/64, 1/32, 1/16, 1/8, 1/4 of the input), each in **pixels of its own grid**: internal
  value × ``div_flow`` × (its width / input width) for u and (its height / input height)
  for v, i.e. × ``div_flow / 2**k`` at 1/2**k. Train with
  :func:`pnpdeblur.losses.epe.multiscale_epe`, which compares them with the
  area-down-sampled target in matching units.

Convention: flow from ``frame1``'s grid to ``frame2``: ``frame2(p + f(p)) ≈ frame1(p)``;
channel 0 is u (+x, right), channel 1 is v (+y, down).

Input normalisation: frames in [0, 1]; ``input_mean`` is subtracted from both frames
before they are stacked (Pinard's ports: the fixed RGB mean (0.411, 0.432, 0.45); NVIDIA:
``"pair"``, the per-sample per-channel mean over both frames).

Configurations: paper ``FlowNetS()`` (``width=64``); small CPU configuration
``FlowNetS(width=8)`` (615,528 parameters).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_flag
from ..checkpoints import CheckpointError
from ._e2e import check_input as _check_frame
from ._base import CheckpointMixin, crop_to, pad_to_multiple
from ._official import copy_mapped, load_official

__all__ = ["FlowNetS", "PINARD_MEAN"]

#: RGB mean subtracted by Clément Pinard's FlowNetPytorch (images in [0, 1]).
PINARD_MEAN = (0.411, 0.432, 0.45)

# (name, in-width multiple, out-width multiple, kernel, stride) of the contracting part
_ENCODER = (("conv1", None, 1, 7, 2), ("conv2", 1, 2, 5, 2), ("conv3", 2, 4, 5, 2), ("conv3_1", 4, 4, 3, 1),
            ("conv4", 4, 8, 3, 2), ("conv4_1", 8, 8, 3, 1), ("conv5", 8, 8, 3, 2), ("conv5_1", 8, 8, 3, 1),
            ("conv6", 8, 16, 3, 2), ("conv6_1", 16, 16, 3, 1))




class FlowNetS(CheckpointMixin, nn.Module):
    """FlowNetSimple: two frames → optical flow in pixels (see the module docstring for units).

    Parameters
    ----------
    in_channels : int
        Channels of each frame (3: RGB); the first layer sees ``2 · in_channels``.
    width : int
        Width ``W`` of conv1 (paper: 64); the widths are ``W, 2W, 4W, 8W, 8W, 16W``.
    batch_norm : bool
        Batch norm after every contracting convolution (Pinard's ``flownets_bn``; the
        paper and the default have none, and then those convolutions carry biases).
    head_bias : bool
        Biases on the flow predictions and feature deconvolutions (NVIDIA's layout);
        Pinard's (default) has none.
    div_flow : float
        Internal flow scale: the network regresses ``flow / div_flow`` (paper: 20).
    input_mean : sequence of float, ``"pair"`` or None
        Subtracted from both frames before stacking (see the module docstring).

    Shapes
    ------
    ``forward(frame1, frame2)``: two ``(N, in_channels, H, W)`` float tensors in [0, 1],
    any ``H, W`` (reflection-padded to a multiple of :attr:`stride`, output cropped back);
    returns ``(N, 2, H, W)`` in pixels. :meth:`forward_multiscale` needs multiples of 64.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, batch_norm: bool = False,
                 head_bias: bool = False, div_flow: float = 20.0,
                 input_mean: Union[Sequence[float], str, None] = PINARD_MEAN):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(div_flow, (int, float)) or isinstance(div_flow, bool) or not div_flow > 0 \
                or div_flow == float("inf"):
            raise ValueError(f"div_flow must be a positive finite number, got {div_flow!r}")
        if isinstance(input_mean, str):
            if input_mean != "pair":
                raise ValueError(f"input_mean must be a sequence of {in_channels} floats, 'pair' or None, "
                                 f"got {input_mean!r}")
            mean: Union[List[float], str, None] = "pair"
        elif input_mean is None:
            mean = None
        else:
            try:
                mean = [float(m) for m in input_mean]
            except (TypeError, ValueError):
                raise ValueError(f"input_mean must be a sequence of {in_channels} floats, 'pair' or None, "
                                 f"got {input_mean!r}") from None
            if not all(math.isfinite(m) for m in mean):  # NaN would make every flow NaN
                raise ValueError(f"input_mean must be finite, got {mean!r}")
            if len(mean) != in_channels:
                raise ValueError(f"input_mean must have {in_channels} entries (one per channel), got {mean!r}")
        self.config: Dict[str, Any] = dict(in_channels=in_channels, width=width,
                                           batch_norm=check_flag(batch_norm, "batch_norm"),
                                           head_bias=check_flag(head_bias, "head_bias"),
                                           div_flow=float(div_flow), input_mean=mean)
        w = width
        for name, cin, cout, k, s in _ENCODER:
            cin = 2 * in_channels if cin is None else cin * w
            layers: List[nn.Module] = [nn.Conv2d(cin, cout * w, k, stride=s, padding=(k - 1) // 2,
                                                 bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout * w))
            layers.append(nn.LeakyReLU(0.1))
            setattr(self, name, nn.Sequential(*layers))
        # concatenation widths: skip features + up-sampled features + 2 flow channels
        cat5, cat4, cat3, cat2 = 16 * w + 2, 12 * w + 2, 6 * w + 2, 3 * w + 2
        for name, cin, cout in (("deconv5", 16 * w, 8 * w), ("deconv4", cat5, 4 * w), ("deconv3", cat4, 2 * w),
                                ("deconv2", cat3, w)):
            setattr(self, name, nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=head_bias),
                                              nn.LeakyReLU(0.1)))
        for k, cin in ((6, 16 * w), (5, cat5), (4, cat4), (3, cat3), (2, cat2)):
            setattr(self, f"predict_flow{k}", nn.Conv2d(cin, 2, 3, padding=1, bias=head_bias))
        for k in (6, 5, 4, 3):
            setattr(self, f"upsampled_flow{k}_to_{k - 1}", nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False))
        # Pinard's init: Kaiming normal (a = 0.1 for the LeakyReLU), zero biases
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, 0.1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def stride(self) -> int:
        """Total down-sampling (six stride-2 convolutions): inputs are padded to multiples of 64."""
        return 64

    # -- internals ------------------------------------------------------------------
    def _check_pair(self, frame1: torch.Tensor, frame2: torch.Tensor) -> None:
        c = self.config["in_channels"]
        _check_frame(frame1, c, "frame1", net=self)
        _check_frame(frame2, c, "frame2", net=self)
        if frame1.shape != frame2.shape:
            raise ValueError(f"frame1 and frame2 must have the same shape, got {tuple(frame1.shape)} "
                             f"and {tuple(frame2.shape)}")

    def _stack(self, frame1: torch.Tensor, frame2: torch.Tensor) -> torch.Tensor:
        mean = self.config["input_mean"]
        if mean == "pair":
            m = (frame1.mean(dim=(2, 3), keepdim=True) + frame2.mean(dim=(2, 3), keepdim=True)) / 2
        elif mean is None:
            m = 0.0
        else:
            m = torch.tensor(mean, dtype=frame1.dtype, device=frame1.device).view(1, -1, 1, 1)
        return torch.cat((frame1 - m, frame2 - m), dim=1)

    @staticmethod
    def _crop_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return x[..., : ref.shape[-2], : ref.shape[-1]]

    def _predict(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Stacked input → [flow6, …, flow2] in internal units (full-resolution px / div_flow)."""
        c2 = self.conv2(self.conv1(x))
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        feat = self.conv6_1(self.conv6(c5))
        flow = self.predict_flow6(feat)
        flows = [flow]
        for k, skip in ((5, c5), (4, c4), (3, c3), (2, c2)):
            up_flow = self._crop_like(getattr(self, f"upsampled_flow{k + 1}_to_{k}")(flow), skip)
            up_feat = self._crop_like(getattr(self, f"deconv{k}")(feat), skip)
            feat = torch.cat((skip, up_feat, up_flow), dim=1)
            flow = getattr(self, f"predict_flow{k}")(feat)
            flows.append(flow)
        return flows

    # -- public ---------------------------------------------------------------------
    def forward(self, frame1: torch.Tensor, frame2: torch.Tensor) -> torch.Tensor:
        """Flow ``(N, 2, H, W)`` in pixels from ``frame1``'s grid to ``frame2`` (any size)."""
        self._check_pair(frame1, frame2)
        # normalise before padding so a "pair" mean is that of the frames themselves
        both, size = pad_to_multiple(self._stack(frame1, frame2), self.stride)
        finest = self._predict(both)[-1]
        # internal units are full-resolution pixels / div_flow: up-sampling keeps magnitudes
        flow = F.interpolate(finest * self.config["div_flow"], size=both.shape[-2:], mode="bilinear",
                             align_corners=False)
        return crop_to(flow, size)

    def forward_multiscale(self, frame1: torch.Tensor, frame2: torch.Tensor) -> List[torch.Tensor]:
        """The five predictions coarse → fine (1/64 … 1/4), each in pixels of its own grid.

        ``H`` and ``W`` must be multiples of :attr:`stride` (ValueError otherwise).
        """
        self._check_pair(frame1, frame2)
        h, w = frame1.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"frame1's H and W must be multiples of {self.stride}, got {(h, w)}; "
                             "call the network itself for any size")
        out = []
        for f in self._predict(self._stack(frame1, frame2)):
            scale = f.new_tensor([f.shape[-1] / w, f.shape[-2] / h]).view(1, 2, 1, 1)
            out.append(f * self.config["div_flow"] * scale)
        return out

    # -- the authors' checkpoints ----------------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, Path], input_mean: Union[Sequence[float], str, None, bool] = True,
                      div_flow: Optional[float] = None) -> "FlowNetS":
        """Load FlowNetS weights saved by Clément Pinard's FlowNetPytorch or NVIDIA's flownet2-pytorch.

        Pinard's ``flownets_EPE1.951.pth.tar`` is ``{'arch': 'flownets', 'state_dict': …,
        'div_flow': 20, …}``; NVIDIA's ``FlowNet2-S_checkpoint.pth.tar`` is ``{'state_dict':
        …}`` with biases on ``predict_flow*`` and ``deconv*``. Both use the module names
        kept here (``conv1.0.weight``, ``deconv5.0.weight``, ``predict_flow6.weight``,
        ``upsampled_flow6_to_5.weight``, …), so the mapping is one to one; batch norm
        (``conv1.1.*``, ``flownets_bn``), the biases, the width and the channels are read
        from the keys and shapes.

        Parameters
        ----------
        path : str or Path
        input_mean : True, sequence of float, ``"pair"`` or None
            ``True`` (default) picks the normalisation the checkpoint was trained with:
            Pinard's fixed RGB mean for his layout, ``"pair"`` for NVIDIA's layout.
        div_flow : float, optional
            Defaults to the checkpoint's ``'div_flow'`` entry, else 20.

        Returns
        -------
        FlowNetS
            In eval mode.

        Raises
        ------
        CheckpointError
            Missing or unreadable file, another architecture (``'arch'`` not FlowNetS), or
            a state dict of another layout or shape.
        """
        state, meta = load_official(path)
        arch = meta.get("arch")
        if arch is not None and str(arch).lower() not in ("flownets", "flownets_bn", "flownet2s"):
            raise CheckpointError(f"{path} holds a {arch!r} checkpoint, expected FlowNetS ('flownets')")
        w1 = state.get("conv1.0.weight")
        if w1 is None or w1.ndim != 4 or w1.shape[1] % 2:
            raise CheckpointError(f"{path}: not a FlowNetS state dict (no 'conv1.0.weight' with an even number "
                                  f"of input channels; keys start {list(state)[:4]})")
        head_bias = "predict_flow6.bias" in state
        if input_mean is True:
            input_mean = "pair" if head_bias else PINARD_MEAN
        if div_flow is None:
            raw = meta.get("div_flow", 20.0)
            div_flow = float(raw.item() if isinstance(raw, torch.Tensor) else raw)
        try:
            model = cls(in_channels=int(w1.shape[1]) // 2, width=int(w1.shape[0]),
                        batch_norm="conv1.1.weight" in state, head_bias=head_bias, div_flow=div_flow,
                        input_mean=input_mean)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from e
        for k, v in model.state_dict().items():
            # checkpoints from PyTorch < 0.4 have no batch-norm step counters
            if k.endswith("num_batches_tracked") and k not in state:
                state[k] = torch.zeros_like(v)
        copy_mapped(model, state, {k: k for k in model.state_dict()}, path)
        return model.eval()

    pretrained_file = None
    training_command = "pnpdeblur train flownets"

