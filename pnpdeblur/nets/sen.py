"""SEN: Wu et al.'s stacked estimation network for per-pixel motion flow.

Structure (Wu et al., section 3 and appendix A). One *stack* is

* three dilated ``conv-BN-ReLU`` layers with growing width, the last two with stride 2
  (7×7, 5×5, 5×5 in the paper), so the hourglass runs at 1/4 of the input resolution;
* an hourglass encoder-decoder of residual blocks ("Res2": two half-width 3×3 layers and a
  full-width 3×3 layer, plus a 3×3 projection of the input when the width changes) with
  ``levels`` max-pool steps down and nearest up-sampling steps back, each scale's encoder
  output added to the decoder (Newell et al.'s skip connections);
* two more residual blocks and a linear 1×1 head that regresses ``(u, v)`` at 1/4 resolution,
  bilinearly up-sampled to the input size (the flows are smooth: translation, rotation, zoom).

The second and later stacks see the blurred image concatenated with the previous stack's
flow (divided by ``flow_scale``); every stack's output is supervised (intermediate
supervision), and the last one is the estimate.

Where it departs from appendix A's layer list (the shipped weights are trained on this
layout): the encoder's first Res2 widens to 8w at once (the paper keeps 4w = 256 for one more
level), a Res2 at the bottom of the hourglass joins the encoder to the decoder, and the last
layer is a linear 1×1 convolution instead of "Res2 2" — a CBR block ends in a ReLU, which
cannot output the negative v (or, before canonicalisation, u) of a flow.

Conventions: input ``(N, C, H, W)`` float in [0, 1]; output ``(N, 2, H, W)`` float, channel 0
u (+x), channel 1 v (+y), pixels of the input image; any ``H, W`` (reflection-padded to a
multiple of :attr:`SEN.stride` and cropped back). Labels follow Gong et al.: ``m`` and ``-m``
are the same blur, so training targets are canonical (``u >= 0``) and :meth:`SEN.estimate`
canonicalises its output.
"""
from __future__ import annotations

import copy
import numbers
from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .._checks import check_real
from ._base import WEIGHTS_DIR, CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import check_input, check_int

__all__ = ["SEN", "SEN_PRETRAINED_PATH"]

#: Shipped weights (trained by ``scripts/train_sen.py``).
SEN_PRETRAINED_PATH = WEIGHTS_DIR / "sen_small.safetensors"


def _cbr(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """conv k×k (same padding) → BatchNorm → ReLU; the "CBR" unit of the paper."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Res2(nn.Module):
    """Appendix A's "Res2 c": ``CBR(c/2) → CBR(c/2) → CBR(c)`` plus the (projected) input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 1)
        self.body = nn.Sequential(_cbr(cin, mid, 3), _cbr(mid, mid, 3), _cbr(mid, cout, 3))
        # identity when the width is kept; a 3×3 CBR projection (as in the paper) when it changes
        self.skip = nn.Identity() if cin == cout else _cbr(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class _Hourglass(nn.Module):
    """Encoder-decoder of Res2 blocks over ``len(widths) - 1`` max-pool levels, additive skips."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.down = nn.ModuleList(Res2(widths[i], widths[i + 1]) for i in range(len(widths) - 1))
        self.bottom = Res2(widths[-1], widths[-1])
        self.up = nn.ModuleList(Res2(widths[i + 1], widths[i]) for i in reversed(range(len(widths) - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))
        x = self.bottom(x)
        for block in self.up:
            x = F.interpolate(block(x), scale_factor=2, mode="nearest") + skips.pop()
        return x


class _Stack(nn.Module):
    def __init__(self, cin: int, width: int, levels: int, dilations: Sequence[int]):
        super().__init__()
        w = width
        self.front = nn.Sequential(
            _cbr(cin, w, 7, 1, dilations[0]),
            _cbr(w, 2 * w, 5, 2, dilations[1]),
            _cbr(2 * w, 4 * w, 5, 2, dilations[2]),
        )
        widths = [4 * w] + [8 * w] * levels  # the encoder widens once, then keeps 8w
        self.hourglass = _Hourglass(widths)
        self.tail = nn.Sequential(Res2(4 * w, 2 * w), Res2(2 * w, w))
        self.head = nn.Conv2d(w, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tail(self.hourglass(self.front(x)))
        return F.interpolate(self.head(h), size=x.shape[-2:], mode="bilinear", align_corners=False)


class SEN(CheckpointMixin, nn.Module):
    """Stacked estimation network: blurred image → per-pixel motion flow.

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB; :func:`pnpdeblur.estimation.learned.estimate_flow` replicates
        grey images, :meth:`estimate` does not).
    width : int
        Width of the first layer; the paper's network is ``width=64`` (64/128/256/512
        channels). The shipped small model uses 16.
    stacks : int
        Number of stacked hourglasses (paper: 2).
    levels : int
        Max-pool levels of each hourglass (paper: 4), so :attr:`stride` is ``4 · 2**levels``.
    dilations : (int, int, int)
        Dilations of the three front layers (enlarge the receptive field).
    flow_scale : float
        The network regresses ``flow / flow_scale`` (keeps targets O(1)); outputs are in pixels.

    Shapes
    ------
    ``forward(x)``: ``x`` ``(N, in_channels, H, W)`` float (TypeError otherwise; NaN/Inf raise
    ValueError), ``H`` and ``W`` multiples of :attr:`stride`; returns a list of ``stacks`` flows
    ``(N, 2, H, W)`` in pixels (the last one is the estimate). :meth:`estimate` takes any size
    and returns the canonical last flow.
    """

    def __init__(self, in_channels: int = 3, width: int = 64, stacks: int = 2, levels: int = 4,
                 dilations: Sequence[int] = (1, 2, 3), flow_scale: float = 23.0):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("width", width), ("stacks", stacks), ("levels", levels)):
            check_int(name, v)
        try:  # a fraction would be cut to an int, a bool read as 1
            ok = len(dilations) == 3 and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
                                             for d in dilations)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"dilations must be three ints >= 1, got {dilations!r}")
        dilations = tuple(int(d) for d in dilations)
        flow_scale = check_real(flow_scale, "flow_scale", allow_zero=False)
        self.config: Dict[str, Any] = dict(in_channels=in_channels, width=width, stacks=stacks, levels=levels,
                                           dilations=list(dilations), flow_scale=float(flow_scale))
        self.stacks = nn.ModuleList(
            _Stack(in_channels + (2 if i else 0), width, levels, dilations) for i in range(stacks)
        )

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this (``4 · 2**levels``)."""
        return 4 * 2 ** self.config["levels"]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self._run(x, self.stacks)

    def _run(self, x: torch.Tensor, stacks: nn.ModuleList) -> List[torch.Tensor]:
        c = self.config["in_channels"]
        check_input(x, c, allow_empty=True, net=self)  # NaN would give NaN flows silently
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"x's H and W must be multiples of {self.stride}, got {tuple(x.shape[-2:])}; "
                             "use SEN.estimate for any size")
        scale = self.config["flow_scale"]
        outs, inp = [], x
        for stack in stacks:
            f = stack(inp)
            outs.append(f * scale)
            inp = torch.cat((x, f), dim=1)
        return outs

    def _inference_stacks(self) -> nn.ModuleList:
        """The stacks with each batch norm folded into its convolution, for eval-mode inference.

        In eval mode a batch norm is an affine map per channel, so ``conv → BN`` is one
        convolution with scaled weights and a bias: the same function up to float rounding
        (≈ 1e-5 of the flow), and SEN runs 1.2× faster on the CPU (benchmarks/RESULTS.md, "SEN
        with its batch norms folded"). Built on first use and kept until a weight or running
        statistic changes (their storage and version counters are the key), on a copy: the
        module's parameters, state dict and training behaviour are untouched.
        """
        tensors = list(self.parameters()) + list(self.buffers())
        if any(t.is_inference() for t in tensors):  # no version counter to see an edit by: fold afresh
            return self._folded_copy()
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
        cached = self.__dict__.get("_folded")
        if cached is not None and cached[0] == key:
            return cached[1]
        stacks = self._folded_copy()
        self.__dict__["_folded"] = (key, stacks)  # a plain attribute: not a submodule, not in the state dict
        return stacks

    def _folded_copy(self) -> nn.ModuleList:
        stacks = copy.deepcopy(self.stacks)
        for unit in stacks.modules():
            if isinstance(unit, nn.Sequential) and len(unit) == 3 and isinstance(unit[0], nn.Conv2d) \
                    and isinstance(unit[1], nn.BatchNorm2d):  # a CBR unit (_cbr)
                unit[0] = fuse_conv_bn_eval(unit[0], unit[1])
                unit[1] = nn.Identity()
        return stacks.eval()

    @torch.no_grad()
    def estimate(self, x: torch.Tensor) -> torch.Tensor:
        """Flow of ``x`` ``(N, C, H, W)`` of any size: reflection-pad to the stride, crop back.

        Returns the last stack's flow ``(N, 2, H, W)`` in pixels, canonical (``u >= 0``).
        Runs in the module's current mode (call ``.eval()`` first for inference); in eval mode
        with the batch norms folded into the convolutions (:meth:`_inference_stacks`).
        """
        from ..data.flows import canonicalize_flow

        x, size = pad_to_multiple(x, self.stride)
        flows = self(x) if self.training else self._run(x, self._inference_stacks())
        return canonicalize_flow(crop_to(flows[-1], size))

    # -- checkpoints (save / from_checkpoint / pretrained come from CheckpointMixin) ----
    pretrained_file = SEN_PRETRAINED_PATH.name
    training_command = "python scripts/train_sen.py"
