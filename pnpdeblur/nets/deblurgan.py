"""DeblurGAN (Kupyn et al., CVPR 2018): ResNet generator with a global skip, PatchGAN critic.

Generator (``resnet_9blocks`` of the authors' code, Johnson et al.'s style-transfer net)::

    7×7 conv (reflection pad 3) → IN → ReLU                         features   F
    3×3 conv stride 2 → IN → ReLU                                          2F
    3×3 conv stride 2 → IN → ReLU                                          4F
    9 × ResBlock: reflect-pad 1, 3×3 conv, IN, ReLU, dropout 0.5,
                  reflect-pad 1, 3×3 conv, IN; plus the block input        4F
    3×3 transposed conv stride 2 (output_padding 1) → IN → ReLU            2F
    3×3 transposed conv stride 2 (output_padding 1) → IN → ReLU             F
    7×7 conv (reflection pad 3) → tanh                                      C

IN is instance normalisation without affine parameters (so every convolution before it
has a bias, as in the authors' code). The *global skip* ("learn_residual") adds the tanh
output to the input: the network learns the residual ``sharp − blurred``.

Value range: the authors work in [-1, 1]; pnpdeblur images are in [0, 1]. The generator
maps ``a = 2x − 1``, computes ``out = clamp(a + tanh(body(a)), −1, 1)`` exactly as the
official ``learn_residual`` forward, and returns ``(out + 1) / 2``; i.e.
``G(x) = clamp(x + tanh(body(2x − 1)) / 2, 0, 1)``. The official weights therefore work
unchanged (:meth:`DeblurGANGenerator.from_official`).

Critic: the authors' ``NLayerDiscriminator`` (``n_layers = 3``, 4×4 convs, LeakyReLU 0.2,
instance norm, no sigmoid) — a 70×70 PatchGAN whose unbounded score map is trained as a
WGAN-GP critic (:mod:`pnpdeblur.losses.deblurgan`). It too maps [0, 1] to [-1, 1] first.

Configurations
--------------
* paper (default): ``DeblurGANGenerator()`` — ``features=64, blocks=9, dropout=0.5``,
  11,378,179 parameters for RGB; ``DeblurGANCritic()`` — ``features=64, layers=3``,
  2,764,737 parameters.
* small CPU configuration: ``DeblurGANGenerator(features=16, blocks=3)`` (272,515 parameters) and
  ``DeblurGANCritic(features=16)`` (175,089), sized for CPU training on small crops.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_flag
from ..checkpoints import CheckpointError
from ._e2e import PhotoRestorer
from ._e2e import check_input as _check_image
from ._e2e import check_int as _check_int
from ._base import CheckpointMixin, crop_to
from ._official import copy_mapped, load_official

__all__ = ["DeblurGANGenerator", "DeblurGANCritic", "official_generator_keys", "official_critic_keys"]






def _pad_to(x: torch.Tensor, multiple: int, minimum: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad bottom/right to a multiple of ``multiple`` and at least ``minimum`` (reflect, else replicate)."""
    h, w = x.shape[-2:]
    th = max(-(-h // multiple) * multiple, minimum)
    tw = max(-(-w // multiple) * multiple, minimum)
    ph, pw = th - h, tw - w
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


# --------------------------------------------------------------------------- generator
class _ResBlock(nn.Module):
    """reflect-pad 1, 3×3 conv, IN, ReLU, [dropout], reflect-pad 1, 3×3 conv, IN; plus the input."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect")
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, padding_mode="reflect")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(F.instance_norm(self.conv1(x))))
        return x + F.instance_norm(self.conv2(h))


def _official_parameters(path) -> "OrderedDict[str, torch.Tensor]":
    """An official DeblurGAN state dict without normalisation statistics (old PyTorch saved them
    for instance norm; neither of our modules has any)."""
    state, _ = load_official(path)
    return OrderedDict((k, v) for k, v in state.items()
                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


class DeblurGANGenerator(PhotoRestorer, CheckpointMixin, nn.Module):
    """Kupyn et al.'s DeblurGAN generator: blurred image → deblurred image (global skip).

    Parameters
    ----------
    in_channels : int
        Image channels (3: RGB); the output has the same channels.
    features : int
        Width ``F`` of the first layer (paper: 64); the residual blocks run at ``4F``.
    blocks : int
        Residual blocks (paper: 9).
    dropout : float
        Dropout probability after each block's first convolution (paper: 0.5; the
        authors' training command keeps it on). Use ``model.eval()`` for inference.
    clamp : bool
        Clamp the output to [0, 1] as the official ``learn_residual`` forward does
        (gradients vanish where it clamps).

    Shapes
    ------
    ``forward(x)``: ``x`` ``(N, in_channels, H, W)`` float in [0, 1], any ``H, W``
    (reflection-padded to a multiple of :attr:`stride`, at least 8, and cropped back);
    returns ``(N, in_channels, H, W)`` in [0, 1] (same dtype/device).
    """

    def __init__(self, in_channels: int = 3, features: int = 64, blocks: int = 9,
                 dropout: float = 0.5, clamp: bool = True):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("features", features, 1)
        _check_int("blocks", blocks, 0)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        self.config: Dict[str, Any] = dict(in_channels=in_channels, features=features, blocks=blocks,
                                           dropout=float(dropout), clamp=check_flag(clamp, "clamp"))
        f, c = features, in_channels
        self.head = nn.Conv2d(c, f, 7, padding=3, padding_mode="reflect")
        self.down1 = nn.Conv2d(f, 2 * f, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(2 * f, 4 * f, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(_ResBlock(4 * f, float(dropout)) for _ in range(blocks))
        self.up1 = nn.ConvTranspose2d(4 * f, 2 * f, 3, stride=2, padding=1, output_padding=1)
        self.up2 = nn.ConvTranspose2d(2 * f, f, 3, stride=2, padding=1, output_padding=1)
        self.tail = nn.Conv2d(f, c, 7, padding=3, padding_mode="reflect")
        # the authors' init (weights_init): conv weights N(0, 0.02), biases 0
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    @property
    def stride(self) -> int:
        """Total down-sampling (two stride-2 convolutions): inputs are padded to multiples of 4."""
        return 4

    def _residual(self, a: torch.Tensor) -> torch.Tensor:
        """tanh output of the body on ``a`` in [-1, 1], ``H, W`` multiples of 4."""
        h = F.relu(F.instance_norm(self.head(a)))
        h = F.relu(F.instance_norm(self.down1(h)))
        h = F.relu(F.instance_norm(self.down2(h)))
        for block in self.blocks:
            h = block(h)
        h = F.relu(F.instance_norm(self.up1(h)))
        h = F.relu(F.instance_norm(self.up2(h)))
        return torch.tanh(self.tail(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.config["in_channels"], net=self)
        # instance norm needs > 1 pixel at 1/4 resolution, the 7×7 reflection pad > 3 px
        xp, size = _pad_to(x, self.stride, 8)
        a = 2 * xp - 1
        out = a + self._residual(a)
        if self.config["clamp"]:
            out = out.clamp(-1, 1)
        return crop_to((out + 1) / 2, size)

    def forward_multiscale(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``[self(x)]`` — one scale, for training recipes shared with multi-scale nets.

        ``x``'s ``H`` and ``W`` must be multiples of :attr:`stride` (ValueError otherwise).
        """
        _check_image(x, self.config["in_channels"], net=self)
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"x's H and W must be multiples of {self.stride}, got {tuple(x.shape[-2:])}; "
                             "call the network itself for any size")
        return [self(x)]

    # -- the authors' checkpoints ----------------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, Path]) -> "DeblurGANGenerator":
        """Load the authors' generator weights (``G.pth`` of KupynOrest/DeblurGAN).

        The file is ``torch.save(netG.state_dict())`` of ``ResnetGenerator``: an
        ``nn.Sequential`` called ``model`` whose convolutions sit at indices
        1 (7×7), 4, 7 (down), ``10 … 9+B`` (ResBlocks: ``conv_block.1`` and
        ``conv_block.6`` with dropout, ``conv_block.5`` without), ``10+B``, ``13+B`` (up)
        and ``17+B`` (7×7 out); the configuration (channels, width, blocks, dropout) is
        read from the keys and shapes. Instance-norm running statistics that PyTorch ≤ 0.3
        saved (``running_mean``/``running_var``) are ignored: the norm is affine-free and
        uses the statistics of each input. A ``module.`` prefix (DataParallel) is stripped.
        The model is returned in eval mode; it takes and returns [0, 1] images.

        Raises
        ------
        CheckpointError
            Missing file, unreadable file, or a state dict of another layout.
        """
        state = _official_parameters(path)
        if "model.1.weight" not in state or state["model.1.weight"].ndim != 4:
            raise CheckpointError(f"{path}: not a DeblurGAN ResnetGenerator state dict "
                                  f"(no 'model.1.weight'; keys start {list(state)[:4]})")
        f, c = state["model.1.weight"].shape[:2]
        blocks = 0
        while f"model.{10 + blocks}.conv_block.1.weight" in state:
            blocks += 1
        dropout = 0.5 if "model.10.conv_block.6.weight" in state else 0.0
        model = cls(in_channels=int(c), features=int(f), blocks=blocks, dropout=dropout)
        mapping = official_generator_keys(blocks, dropout > 0)
        copy_mapped(model, state, mapping, path)
        return model.eval()

    #: CPU demonstration weights (``docs/model_cards/deblurgan_small.md``).
    pretrained_file = "deblurgan_small.safetensors"
    training_command = ("pnpdeblur train deblurgan --small --data flow --preset 23 --corpus .data/bsds500/train "
                        "--steps 3000 --batch 4 --crop 64 --lr 5e-4 --adv-weight 0")


def official_generator_keys(blocks: int = 9, dropout: bool = True) -> Dict[str, str]:
    """``{official key: DeblurGANGenerator key}`` for the authors' ``ResnetGenerator``."""
    pairs = [(1, "head"), (4, "down1"), (7, "down2"), (10 + blocks, "up1"), (13 + blocks, "up2"),
             (17 + blocks, "tail")]
    out = {}
    for i, name in pairs:
        for p in ("weight", "bias"):
            out[f"model.{i}.{p}"] = f"{name}.{p}"
    second = 6 if dropout else 5  # Dropout sits at index 4 and shifts the second conv
    for b in range(blocks):
        for p in ("weight", "bias"):
            out[f"model.{10 + b}.conv_block.1.{p}"] = f"blocks.{b}.conv1.{p}"
            out[f"model.{10 + b}.conv_block.{second}.{p}"] = f"blocks.{b}.conv2.{p}"
    return out


# --------------------------------------------------------------------------- critic
class DeblurGANCritic(CheckpointMixin, nn.Module):
    """PatchGAN critic of DeblurGAN (the authors' ``NLayerDiscriminator``), no sigmoid.

    ``layers`` 4×4 stride-2 convolutions (widths ``F, 2F, 4F, …`` capped at ``8F``; all but
    the first followed by instance norm), a 4×4 stride-1 convolution to ``min(2**layers, 8)·F``
    with instance norm, LeakyReLU 0.2 after each, and a 4×4 stride-1 convolution to one
    channel: an unbounded score per overlapping patch (70×70 for ``layers=3``), for the
    Wasserstein loss with gradient penalty.

    Parameters
    ----------
    in_channels : int
        Image channels (DeblurGAN's critic sees only the sharp or restored image).
    features : int
        Width ``F`` of the first layer (paper: 64; small CPU configuration: 16).
    layers : int
        Number of stride-2 convolutions (paper: 3).

    Shapes
    ------
    ``x`` ``(N, in_channels, H, W)`` float in [0, 1] (mapped to [-1, 1] inside as in the
    authors' code), ``H, W >= 8`` (any size, no padding); returns ``(N, 1, h, w)`` with
    ``(h, w) =`` :meth:`output_size` ``(H, W)``.
    """

    def __init__(self, in_channels: int = 3, features: int = 64, layers: int = 3):
        super().__init__()
        _check_int("in_channels", in_channels, 1)
        _check_int("features", features, 1)
        _check_int("layers", layers, 1)
        self.config: Dict[str, Any] = dict(in_channels=in_channels, features=features, layers=layers)
        f = features
        seq: List[nn.Module] = [nn.Conv2d(in_channels, f, 4, stride=2, padding=2), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(f * prev, f * mult, 4, stride=2, padding=2), nn.InstanceNorm2d(f * mult),
                    nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2 ** layers, 8)
        seq += [nn.Conv2d(f * prev, f * mult, 4, stride=1, padding=2), nn.InstanceNorm2d(f * mult),
                nn.LeakyReLU(0.2), nn.Conv2d(f * mult, 1, 4, stride=1, padding=2)]
        # same Sequential layout (and indices) as the authors' NLayerDiscriminator.model
        self.model = nn.Sequential(*seq)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def output_size(self, h: int, w: int) -> Tuple[int, int]:
        """Score-map size for an ``h × w`` input (4×4 kernels, padding 2)."""
        for _ in range(self.config["layers"]):
            h, w = h // 2 + 1, w // 2 + 1
        return h + 2, w + 2  # two stride-1 layers each add one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.config["in_channels"], net=self)
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"x must be at least 8×8 for the critic, got {tuple(x.shape[-2:])}")
        return self.model(2 * x - 1)

    @classmethod
    def from_official(cls, path: Union[str, Path]) -> "DeblurGANCritic":
        """Load the authors' critic (``D.pth``, ``NLayerDiscriminator`` with instance norm).

        Keys are ``model.{i}.weight/bias`` for the convolutions; the configuration is read
        from them. Returns the critic in eval mode (the layout is the same as ours).
        """
        state = _official_parameters(path)
        if "model.0.weight" not in state or state["model.0.weight"].ndim != 4:
            raise CheckpointError(f"{path}: not a DeblurGAN NLayerDiscriminator state dict "
                                  f"(no 'model.0.weight'; keys start {list(state)[:4]})")
        f, c = state["model.0.weight"].shape[:2]
        convs = sum(1 for k in state if k.endswith(".weight"))
        model = cls(in_channels=int(c), features=int(f), layers=max(convs - 2, 1))
        mapping = official_critic_keys(model.config["layers"])
        copy_mapped(model, state, mapping, path)
        return model.eval()


def official_critic_keys(layers: int = 3) -> Dict[str, str]:
    """``{official key: DeblurGANCritic key}`` for ``NLayerDiscriminator`` (identical names)."""
    idx = [0] + [2 + 3 * (n - 1) for n in range(1, layers)] + [2 + 3 * (layers - 1), 5 + 3 * (layers - 1)]
    return {f"model.{i}.{p}": f"model.{i}.{p}" for i in idx for p in ("weight", "bias")}
