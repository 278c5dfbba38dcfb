"""DeepDeblur: Nah et al.'s multi-scale CNN for dynamic scene deblurring, and its discriminator.

Architecture (Nah et al., CVPR 2017, section 3 and Fig. 4). ``scales`` sub-networks, coarse → fine,
see the Gaussian pyramid of the blurred image (scales 1/4, 1/2, 1 by default; the pyramid is
:func:`pnpdeblur.losses.multiscale.image_pyramid`, the authors' ``pyramid_gaussian``). Each
sub-network is

* a ``kernel_size`` convolution from its input to ``features`` maps,
* ``blocks`` ResBlocks without batch norm: ``x + conv(ReLU(conv(x)))`` (no ReLU after the sum),
* a ``kernel_size`` convolution back to the image's channels,

all "same" zero-padded. The coarsest sub-network sees the blurred image only; each finer one
sees the blurred image of its scale concatenated with the coarser output *up-convolved* to its
size. With the defaults there are 3·40 = 120 convolutions and 11.72 M parameters
(``DeepDeblur().num_parameters()``; the issue's "≈ 11.7 M").

Up-convolution. The paper calls it "upconvolution"; both releases of the authors' code (Torch7
``DeepDeblur_release`` and ``DeepDeblur-PyTorch``) implement it as a 5×5 convolution to 4·C
channels followed by a pixel shuffle (sub-pixel convolution), which is the default here
(``upsample="pixelshuffle"``) so that :meth:`DeepDeblur.from_official` loads their weights.
``upsample="transposed"`` uses a 5×5 stride-2 transposed convolution C → C instead.

Value range. Inputs and outputs are images in [0, 1]. Internally the net works on
``(x - 0.5) · rgb_range`` and maps its outputs back with ``/ rgb_range + 0.5``; ``rgb_range=1``
for nets trained here, 255 for the authors' weights (they feed 0–255 images minus 127.5 and add
127.5 to every output), so an official net gives exactly ``official(255·x) / 255``. The net is
not residual by default: each scale outputs the image itself (the ResBlocks are residual inside;
``residual=True`` adds each scale's input level, see the class). Nothing
is clamped; clamp for display.

Small CPU configuration: ``DeepDeblur(features=16, blocks=3, residual=True)`` (≈ 0.13 M parameters).
"""
from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_flag
from ..checkpoints import CheckpointError
from ..losses.multiscale import image_pyramid
from ._base import CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import PhotoRestorer, check_input, check_int, check_multiple, read_torch_state, strip_prefix

__all__ = ["DeepDeblur", "DeepDeblurDiscriminator", "ResBlock"]

_UPSAMPLE = ("pixelshuffle", "transposed")


def _conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


class ResBlock(nn.Module):
    """Nah et al.'s modified residual block: ``x + conv2(ReLU(conv1(x)))``, no BN, no final ReLU."""

    def __init__(self, features: int, kernel_size: int):
        super().__init__()
        self.conv1 = _conv(features, features, kernel_size)
        self.conv2 = _conv(features, features, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class _ScaleNet(nn.Module):
    """One scale: head conv → ResBlocks → tail conv (40 convolutions with 19 blocks)."""

    def __init__(self, cin: int, cout: int, features: int, blocks: int, kernel_size: int):
        super().__init__()
        self.head = _conv(cin, features, kernel_size)
        self.body = nn.Sequential(*(ResBlock(features, kernel_size) for _ in range(blocks)))
        self.tail = _conv(features, cout, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


def _upconv(channels: int, kernel_size: int, mode: str) -> nn.Module:
    if mode == "pixelshuffle":
        return nn.Sequential(_conv(channels, 4 * channels, kernel_size), nn.PixelShuffle(2))
    # output_padding=1 makes the output exactly twice the input for an odd kernel
    return nn.ConvTranspose2d(channels, channels, kernel_size, stride=2, padding=kernel_size // 2, output_padding=1)


class DeepDeblur(PhotoRestorer, CheckpointMixin, nn.Module):
    """Nah et al.'s multi-scale deblurring CNN (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB).
    features : int
        Feature maps of every convolution (paper: 64).
    blocks : int
        ResBlocks per scale (paper: 19).
    scales : int
        Pyramid levels (paper: 3, i.e. 1/4, 1/2, 1); :attr:`stride` is ``2**(scales-1)``.
    kernel_size : int
        Odd kernel size of every convolution (paper: 5).
    upsample : {"pixelshuffle", "transposed"}
        How the coarser output is up-convolved (see the module docstring).
    rgb_range : float
        Internal value scale: the net computes on ``(x - 0.5)·rgb_range`` (1 here, 255 for the
        authors' weights).
    residual : bool
        Not in the paper (default False): every scale adds its output to its own input level,
        so an untrained net starts near the identity. The small CPU configuration of
        ``pnpdeblur train deepdeblur --small`` uses it: a few thousand CPU steps of the paper's
        direct prediction do not even reach the blurred input's PSNR.

    Shapes
    ------
    ``net(x)``: ``x`` ``(N, in_channels, H, W)`` float in [0, 1], any H, W → ``(N, in_channels, H, W)``.
    ``net.forward_multiscale(x)``: H, W multiples of :attr:`stride` → list of ``scales`` images,
    coarse → fine, level ``k`` from the end of size ``H/2**k × W/2**k``.
    """

    #: CPU demonstration weights (``docs/model_cards/deepdeblur_small.md``).
    pretrained_file = "deepdeblur_small.safetensors"
    training_command = ("pnpdeblur train deepdeblur --small --data flow --preset 23 --corpus .data/bsds500/train "
                        "--steps 4000 --batch 4 --crop 64 --lr 1e-3 --adv-weight 0")

    def __init__(self, in_channels: int = 3, features: int = 64, blocks: int = 19, scales: int = 3,
                 kernel_size: int = 5, upsample: str = "pixelshuffle", rgb_range: float = 1.0,
                 residual: bool = False):
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("features", features)
        check_int("blocks", blocks, 0)
        check_int("scales", scales)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
        if upsample not in _UPSAMPLE:
            raise ValueError(f"upsample must be one of {_UPSAMPLE}, got {upsample!r}")
        if isinstance(rgb_range, bool) or not isinstance(rgb_range, (int, float)) or not rgb_range > 0 \
                or rgb_range == float("inf"):
            raise ValueError(f"rgb_range must be a finite positive number, got {rgb_range!r}")
        residual = check_flag(residual, "residual")
        self.config: Dict[str, Any] = dict(in_channels=in_channels, features=features, blocks=blocks,
                                           scales=scales, kernel_size=kernel_size, upsample=upsample,
                                           rgb_range=float(rgb_range), residual=residual)
        c = in_channels
        # coarse → fine; every scale but the coarsest also sees the up-convolved coarser output
        self.nets = nn.ModuleList(
            _ScaleNet(c if k == 0 else 2 * c, c, features, blocks, kernel_size) for k in range(scales)
        )
        self.ups = nn.ModuleList(_upconv(c, kernel_size, upsample) for _ in range(scales - 1))

    @property
    def stride(self) -> int:
        """H and W of ``forward_multiscale`` inputs must be multiples of this (``2**(scales-1)``)."""
        return 2 ** (self.config["scales"] - 1)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward_multiscale(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Restored pyramid of the blurred ``x`` ``(N, C, H, W)``, coarse → fine (finest last).

        H and W must be multiples of :attr:`stride` (training crops); the input pyramid is
        :func:`~pnpdeblur.losses.multiscale.image_pyramid` of ``x``.
        """
        check_input(x, self.config["in_channels"], net=self)
        check_multiple(x, self.stride, type(self).__name__)
        r = self.config["rgb_range"]
        pyramid = [(p - 0.5) * r for p in image_pyramid(x, self.config["scales"])]
        outs: List[torch.Tensor] = []
        for k, net in enumerate(self.nets):
            inp = pyramid[k] if k == 0 else torch.cat((pyramid[k], self.ups[k - 1](outs[-1])), dim=1)
            out = net(inp)
            outs.append(out + pyramid[k] if self.config["residual"] else out)
        return [o / r + 0.5 for o in outs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deblurred ``x`` ``(N, C, H, W)`` of any size (reflection-padded to :attr:`stride`, cropped back)."""
        check_input(x, self.config["in_channels"], net=self)
        xp, size = pad_to_multiple(x, self.stride)
        return crop_to(self.forward_multiscale(xp)[-1], size)

    # -- the authors' PyTorch checkpoints -------------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                      rgb_range: float = 255.0) -> "DeepDeblur":
        """Load a generator saved by the authors' ``DeepDeblur-PyTorch`` (``MSResNet``).

        Their layout (``src/model/MSResNet.py``): ``body_models.{s}`` is the ResNet of scale ``s``
        (0 = finest, ``n_scales-1`` = coarsest) with ``body.0`` the head conv,
        ``body.{1..n}.body.{0,2}`` the two convs of ResBlock ``i`` and ``body.{n+1}`` the tail
        conv; ``conv_end_models.{s}.uppath.0`` (``s >= 1``) is the 5×5 conv before the pixel
        shuffle that feeds scale ``s-1``. Their training files hold ``{"G": ..., "D": ...}``;
        ``G`` is used (a bare generator state dict, ``module.`` / ``model.G.`` prefixes are accepted).
        ``features``, ``blocks``, ``scales``, ``kernel_size`` and ``in_channels`` are read from the
        shapes. Their images are 0–``rgb_range`` (255 by default in their options) minus
        ``rgb_range/2``: pass the value they trained with; the returned net takes and returns
        [0, 1] images like every pnpdeblur net.

        Parameters
        ----------
        path : str, PathLike or mapping
            A ``torch.save`` file (read with ``weights_only=True``) or the state dict itself.
        rgb_range : float
            Their ``--rgb_range``.

        Returns
        -------
        DeepDeblur
            In eval mode, ``upsample="pixelshuffle"``.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Unreadable file, or a state dict that is not an ``MSResNet`` one (foreign, missing,
            unexpected or mis-shaped tensors).
        """
        state = read_torch_state(path, "DeepDeblur-PyTorch") if not isinstance(path, Mapping) else path
        if not isinstance(state, Mapping):
            raise CheckpointError(f"expected a state dict, got {type(state).__name__}")
        if "G" in state and isinstance(state["G"], Mapping):
            state = state["G"]
        state = strip_prefix(strip_prefix(dict(state), "module."), "model.G.")
        ends = re.compile(r"^conv_end_models\.(\d+)\.uppath\.0\.(weight|bias)$")
        single = re.compile(r"^body_models\.(\d+)\.body\.(\d+)\.(weight|bias)$")
        block = re.compile(r"^body_models\.(\d+)\.body\.(\d+)\.body\.([02])\.(weight|bias)$")
        scale_ids = {int(m.group(1)) for k in state for m in [single.match(k)] if m}
        if not scale_ids or "body_models.0.body.0.weight" not in state:
            keys = list(state)[:5]
            raise CheckpointError(f"not a DeepDeblur-PyTorch MSResNet state dict (no 'body_models.*' keys; "
                                  f"first keys: {keys})")
        scales = max(scale_ids) + 1
        head0 = state["body_models.0.body.0.weight"]
        if not isinstance(head0, torch.Tensor) or head0.ndim != 4:
            raise CheckpointError("body_models.0.body.0.weight must be a 4-d conv weight")
        features, kernel = int(head0.shape[0]), int(head0.shape[-1])
        blocks = len({int(m.group(2)) for k in state for m in [block.match(k)] if m and m.group(1) == "0"})
        coarse_head = state.get(f"body_models.{scales - 1}.body.0.weight")
        if coarse_head is None:
            raise CheckpointError(f"body_models.{scales - 1}.body.0.weight is missing")
        in_channels = int(coarse_head.shape[1])
        try:
            with torch.device("meta"):  # skip the random init; every tensor is loaded below
                net = cls(in_channels=in_channels, features=features, blocks=blocks, scales=scales,
                          kernel_size=kernel, upsample="pixelshuffle", rgb_range=rgb_range)
        except ValueError as e:
            raise CheckpointError(f"the official state dict implies an invalid configuration: {e}") from e
        net = net.to_empty(device="cpu")
        mapped: Dict[str, torch.Tensor] = {}
        for key, value in state.items():
            new: Optional[str] = None
            if (m := block.match(key)) is not None:
                s, i, j, p = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
                if 1 <= i <= blocks:
                    new = f"nets.{scales - 1 - s}.body.{i - 1}.conv{1 if j == '0' else 2}.{p}"
            elif (m := single.match(key)) is not None:
                s, i, p = int(m.group(1)), int(m.group(2)), m.group(3)
                part = "head" if i == 0 else "tail" if i == blocks + 1 else None
                if part is not None:
                    new = f"nets.{scales - 1 - s}.{part}.{p}"
            elif (m := ends.match(key)) is not None:
                s, p = int(m.group(1)), m.group(2)
                if 1 <= s < scales:
                    # conv_end_models[s] up-samples scale s's output (ours: nets[scales-1-s])
                    new = f"ups.{scales - 1 - s}.0.{p}"
            if new is None:
                raise CheckpointError(f"unexpected key {key!r} for a DeepDeblur-PyTorch MSResNet "
                                      f"with {scales} scales and {blocks} ResBlocks")
            mapped[new] = value
        try:
            net.load_state_dict(mapped, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"the official state dict does not fit DeepDeblur{net.config}: {e}") from e
        for k, v in net.state_dict().items():
            if not bool(torch.isfinite(v).all()):
                raise CheckpointError(f"official tensor for {k!r} holds NaN or Inf")
        return net.eval()


class DeepDeblurDiscriminator(CheckpointMixin, nn.Module):
    """Nah et al.'s discriminator (their Table 1): ten 5×5 conv + LeakyReLU(0.2) layers, then fc.

    Widths ``b, 2b, 2b, 4b, 4b, 8b, 8b, 16b, 16b, 32b`` with ``b = base`` (paper: 32, i.e. 32 …
    1024) and strides 2, 1, 2, 1, 2, 1, 4, 1, 4, 2 (total 256: a 256² crop becomes 1×1); the
    convolutions have no bias (as in the authors' Torch7 code). The fully connected layer maps
    the ``32b`` features to **one logit** (the table's "1024×1024" cannot feed a single sigmoid;
    the authors' code uses a 1024 → 1 layer). Inputs other than 256² are reduced by a global mean
    over the last feature map (identity at 256²).

    ``forward`` returns the logit ``(N, 1)``; the paper's ``D(S)`` is ``torch.sigmoid`` of it (use
    a logits loss such as ``binary_cross_entropy_with_logits`` for stability).

    Small CPU configuration: ``DeepDeblurDiscriminator(base=8)``.
    """

    pretrained_file = None
    _STRIDES = (2, 1, 2, 1, 2, 1, 4, 1, 4, 2)
    _MULT = (1, 2, 2, 4, 4, 8, 8, 16, 16, 32)

    def __init__(self, in_channels: int = 3, base: int = 32, kernel_size: int = 5, negative_slope: float = 0.2):
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("base", base)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or \
                not 0 <= negative_slope < 1:
            raise ValueError(f"negative_slope must be a number in [0, 1), got {negative_slope!r}")
        self.config: Dict[str, Any] = dict(in_channels=in_channels, base=base, kernel_size=kernel_size,
                                           negative_slope=float(negative_slope))
        widths = [in_channels] + [m * base for m in self._MULT]
        self.convs = nn.ModuleList(
            _conv(widths[i], widths[i + 1], kernel_size, stride=s, bias=False) for i, s in enumerate(self._STRIDES)
        )
        self.fc = nn.Linear(widths[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit ``(N, 1)`` that ``x`` ``(N, C, H, W)`` in [0, 1] is a sharp image."""
        check_input(x, self.config["in_channels"], net=self)
        slope = self.config["negative_slope"]
        for conv in self.convs:
            x = F.leaky_relu(conv(x), slope)
        return self.fc(x.mean(dim=(2, 3)))
