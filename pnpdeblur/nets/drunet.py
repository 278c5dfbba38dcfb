"""DRUNet: Zhang et al.'s noise-level-aware residual U-Net denoiser (DPIR, 2021).

Layout (paper / KAIR ``UNetRes``): the noisy image and a constant noise-level map
are stacked as ``channels + 1`` input channels; a 3×3 head convolution; three encoder
levels, each ``blocks`` residual blocks (conv–ReLU–conv plus identity) followed by a
2×2 stride-2 convolution that halves the size and widens the features; a body of
``blocks`` residual blocks at the coarsest level; three decoder levels, each a 2×2
stride-2 transposed convolution followed by ``blocks`` residual blocks; a 3×3 tail.
Encoder and decoder features are joined by **additive** skips (not concatenation), and
every convolution is bias-free by default (a bias-free network is scale-equivariant,
which the paper credits for generalising across noise levels). The network predicts
the clean image directly.

Configurations
--------------
paper (default)
    ``features=(64, 128, 256, 512), blocks=4`` — 32,640,960 parameters for colour.
small (:data:`SMALL_CONFIG`, the shipped weights)
    ``features=(16, 32, 64, 128), blocks=1, residual=True`` — 575,472 parameters;
    trained for 18 000 steps on a 2-core CPU in 78 minutes (see
    ``docs/model_cards/drunet_small.md``). ``residual=True`` (output = input + network)
    is a deviation from the paper: on a CPU budget, starting from the identity converges
    much faster than learning the image from scratch; the network stays bias-free
    (scale-equivariant).
medium (:data:`MEDIUM_CONFIG`, shipped as ``DRUNet.pretrained("medium")``)
    ``features=(32, 64, 128, 256), blocks=2`` — 4,253,664 parameters (half the paper's
    widths, half its blocks, the paper's direct prediction of the clean image); trained
    for 7 minutes on an H200 (see ``docs/model_cards/drunet_medium.md``). As a denoiser
    0.2–0.3 dB better than the small one, at about 5× its time.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Sequence, Union

import torch
from torch import nn

from .._checks import check_flag
from ..checkpoints import CheckpointError
from ._base import WEIGHTS_DIR, CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import check_input
from ._official import build_mapped, load_official

__all__ = ["DRUNet", "SMALL_CONFIG", "MEDIUM_CONFIG", "PAPER_CONFIG", "DRUNET_PRETRAINED_PATH",
           "DRUNET_MEDIUM_PATH", "PRETRAINED_VARIANTS", "noise_level_map", "official_keys"]

#: The shipped small weights (trained by ``pnpdeblur train drunet --small``).
DRUNET_PRETRAINED_PATH = WEIGHTS_DIR / "drunet_small.safetensors"

#: The shipped medium weights (``pnpdeblur train drunet --features 32,64,128,256 --blocks 2`` on a GPU).
DRUNET_MEDIUM_PATH = WEIGHTS_DIR / "drunet_medium.safetensors"
#: ``DRUNet.pretrained(variant)`` → shipped file.
PRETRAINED_VARIANTS: Dict[str, Any] = {"small": DRUNET_PRETRAINED_PATH, "medium": DRUNET_MEDIUM_PATH}

#: The paper's configuration (the constructor's defaults).
PAPER_CONFIG: Dict[str, Any] = dict(channels=3, features=(64, 128, 256, 512), blocks=4, bias=False, residual=False)
#: The CPU-trainable configuration of the shipped weights.
SMALL_CONFIG: Dict[str, Any] = dict(channels=3, features=(16, 32, 64, 128), blocks=1, bias=False, residual=True)
#: The configuration of the shipped medium weights (half the paper's widths, two blocks a level).
MEDIUM_CONFIG: Dict[str, Any] = dict(channels=3, features=(32, 64, 128, 256), blocks=2, bias=False, residual=False)


class _ResBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` at constant width (DRUNet's residual block)."""

    def __init__(self, c: int, bias: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=bias)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


def noise_level_map(sigma: Any, x: torch.Tensor) -> torch.Tensor:
    """The ``(N, 1, H, W)`` noise-level map of ``sigma`` for an image batch ``x`` ``(N, C, H, W)``.

    ``sigma`` (noise std on the [0, 1] scale) is a real number, a 0-d or ``(N,)``
    tensor, or already a ``(N, 1, H, W)`` map (``(1, 1, H, W)`` broadcasts over the
    batch). Negative, NaN or Inf values and other shapes raise ``ValueError`` naming
    ``sigma``; non-numeric types raise ``TypeError``.
    """
    n, _, h, w = x.shape
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)) and not hasattr(sigma, "__float__"):
        raise TypeError(f"sigma must be a float, a (N,) tensor or a (N, 1, H, W) map, got {type(sigma).__name__}")
    if isinstance(sigma, torch.Tensor):
        if sigma.is_complex() or sigma.dtype == torch.bool:
            raise TypeError(f"sigma must be a real tensor, got dtype {sigma.dtype}")
        s = sigma.to(dtype=x.dtype, device=x.device)
    else:
        v = float(sigma)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"sigma must be a finite non-negative noise std, got {sigma!r}")
        return x.new_full((n, 1, h, w), v)
    if s.ndim == 0 or (s.ndim == 1 and s.shape[0] in (1, n)):
        s = s.reshape(-1, 1, 1, 1).expand(n, 1, h, w)
    elif s.ndim == 4 and s.shape[1] == 1 and s.shape[0] in (1, n) and tuple(s.shape[2:]) == (h, w):
        s = s.expand(n, 1, h, w)
    else:
        raise ValueError(
            f"sigma must be a scalar, a ({n},) tensor or a ({n}, 1, {h}, {w}) map, got shape {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError("sigma must be finite and non-negative everywhere (noise std), got NaN, Inf or < 0")
    return s


class DRUNet(CheckpointMixin, nn.Module):
    """Noise-level-aware residual U-Net denoiser: ``forward(x, sigma) -> clean``.

    Parameters
    ----------
    channels : int
        Image channels (3: colour, the shipped weights; 1: grey).
    features : sequence of 4 ints
        Widths of the four levels (paper: ``(64, 128, 256, 512)``).
    blocks : int
        Residual blocks per level (paper: 4).
    bias : bool
        Biases in the convolutions (paper: no).
    residual : bool
        Return ``x + network(x, σ)`` instead of the network's output (paper: no; the
        small configuration: yes, see the module docstring).

    Shapes
    ------
    ``x``: ``(N, channels, H, W)`` float, any ``H, W`` (reflect-padded to a multiple of 8
    and cropped back); ``sigma``: float, 0-d / ``(N,)`` tensor or ``(N, 1, H, W)`` map,
    noise std on the [0, 1] scale (trained for [0, 50/255]); output: like ``x``.
    """

    #: Safe to run in channels-last memory format (no view of its input's strides); the
    #: denoiser priors do so on the CPU, where oneDNN's convolutions are faster in it.
    channels_last_safe = True

    def __init__(self, channels: int = 3, features: Sequence[int] = (64, 128, 256, 512), blocks: int = 4,
                 bias: bool = False, residual: bool = False):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        try:
            features = tuple(features)
        except TypeError:  # one number: not iterable
            features = (features,)
        if len(features) != 4 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(f"features must be 4 positive ints, got {features!r}")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
            raise ValueError(f"blocks must be a positive int, got {blocks!r}")
        bias, residual = check_flag(bias, "bias"), check_flag(residual, "residual")
        self.config: Dict[str, Any] = dict(channels=channels, features=list(features), blocks=blocks, bias=bias,
                                           residual=residual)
        f0, f1, f2, f3 = features

        def res(c: int) -> nn.Sequential:
            return nn.Sequential(*[_ResBlock(c, bias) for _ in range(blocks)])

        def down(a: int, b: int) -> nn.Conv2d:
            return nn.Conv2d(a, b, 2, stride=2, bias=bias)

        def up(a: int, b: int) -> nn.ConvTranspose2d:
            return nn.ConvTranspose2d(a, b, 2, stride=2, bias=bias)

        self.head = nn.Conv2d(channels + 1, f0, 3, padding=1, bias=bias)
        self.down1 = nn.Sequential(res(f0), down(f0, f1))
        self.down2 = nn.Sequential(res(f1), down(f1, f2))
        self.down3 = nn.Sequential(res(f2), down(f2, f3))
        self.body = res(f3)
        self.up3 = nn.Sequential(up(f3, f2), res(f2))
        self.up2 = nn.Sequential(up(f2, f1), res(f1))
        self.up1 = nn.Sequential(up(f1, f0), res(f0))
        self.tail = nn.Conv2d(f0, channels, 3, padding=1, bias=bias)
        if residual:  # start at the identity map: a short training run only learns the correction
            nn.init.zeros_(self.tail.weight)

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
        check_input(x, self.config["channels"], net=self)
        smap = noise_level_map(sigma, x)
        inp, size = pad_to_multiple(torch.cat((x, smap), dim=1), 8)  # three 2× down-samplings
        x1 = self.head(inp)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        y = self.body(x4)
        y = self.up3(y + x4)
        y = self.up2(y + x3)
        y = self.up1(y + x2)
        y = crop_to(self.tail(y + x1), size)
        return x + y if self.config["residual"] else y

    @classmethod
    def small(cls) -> "DRUNet":
        """An untrained network of the shipped small configuration (:data:`SMALL_CONFIG`)."""
        return cls(**SMALL_CONFIG)

    # -- the authors' checkpoints (DPIR / KAIR) ------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, os.PathLike]) -> "DRUNet":
        """Load a DRUNet saved by Zhang et al.'s DPIR / KAIR code (``UNetRes``), e.g. ``drunet_color.pth``.

        Their layout (``models/network_unet.py`` of KAIR): ``m_head``; ``m_down{1,2,3}`` holding
        ``blocks`` residual blocks (``{i}.res.0`` and ``{i}.res.2``, the convolutions around the
        ReLU) and then the 2×2 stride-2 convolution ``{blocks}``; ``m_body`` (``blocks`` residual
        blocks); ``m_up{3,2,1}`` holding the 2×2 transposed convolution ``0`` and then the residual
        blocks ``1 … blocks``; ``m_tail``. The noise-level map is their last input channel, as
        here, on the same [0, 1] scale (they feed ``σ/255`` for grey levels σ). Channels, widths,
        blocks and biases are read from the keys and shapes (their released weights: colour or
        grey, widths 64–512, 4 blocks, no biases, ``residual=False``). A ``module.`` prefix is
        stripped. The schedule that :func:`~pnpdeblur.solvers.hqs` uses with it is DPIR's (the
        values were tuned for these weights): ``DRUNetPrior(DRUNet.from_official(path))``.

        Parameters
        ----------
        path : str or PathLike
            A ``torch.save`` file (read with ``weights_only=True``: no code is run), holding the
            state dict or a dict with it under ``'state_dict'``.

        Returns
        -------
        DRUNet
            In eval mode; it takes and returns [0, 1] images like every pnpdeblur net.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Missing or unreadable file, or a state dict that is not a ``UNetRes`` one (foreign,
            missing, unexpected or mis-shaped tensors, NaN or Inf).
        """
        state, _ = load_official(path)
        head, tail = state.get("m_head.weight"), state.get("m_tail.weight")
        if not isinstance(head, torch.Tensor) or head.ndim != 4 or not isinstance(tail, torch.Tensor) or tail.ndim != 4:
            raise CheckpointError(f"{path}: not a DPIR/KAIR UNetRes (DRUNet) state dict "
                                  f"(no 4-d 'm_head.weight' and 'm_tail.weight'; keys start {list(state)[:4]})")
        channels = int(tail.shape[0])
        if int(head.shape[1]) != channels + 1:
            raise CheckpointError(f"{path}: m_head takes {int(head.shape[1])} channels and m_tail gives {channels}; "
                                  "a DRUNet takes the image plus one noise-level map (in = out + 1)")
        blocks = 0
        while f"m_body.{blocks}.res.0.weight" in state:
            blocks += 1
        features = [int(head.shape[0])]
        for level in (1, 2, 3):
            down = state.get(f"m_down{level}.{blocks}.weight")
            if not isinstance(down, torch.Tensor) or down.ndim != 4:
                raise CheckpointError(f"{path}: no stride-2 convolution 'm_down{level}.{blocks}.weight' after "
                                      f"{blocks} residual blocks: not a UNetRes with strided down-sampling")
            features.append(int(down.shape[0]))
        bias = "m_head.bias" in state
        return build_mapped(cls, state, official_keys(blocks, bias), path, channels=channels, features=features,
                            blocks=blocks, bias=bias, residual=False)

    # -- checkpoints (save / from_checkpoint come from CheckpointMixin) ----
    pretrained_file = DRUNET_PRETRAINED_PATH.name
    training_command = "pnpdeblur train drunet --small --data .data/bsds500/train"

    @classmethod
    def pretrained(cls, variant: str = "small") -> "DRUNet":
        """The shipped weights, in eval mode.

        Parameters
        ----------
        variant : {"small", "medium"}
            ``"small"`` (:data:`SMALL_CONFIG`, 1.2 MB, the default) or ``"medium"``
            (:data:`MEDIUM_CONFIG`, 8.5 MB, 0.2–0.3 dB better, about 5× the time); model
            cards in ``docs/model_cards/drunet_{small,medium}.md``.

        Returns
        -------
        DRUNet
            The network with the shipped weights, in eval mode.
        """
        if variant not in PRETRAINED_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(PRETRAINED_VARIANTS)}, got {variant!r}")
        if variant == "small":
            return cls.from_checkpoint(cls.pretrained_path())
        path = PRETRAINED_VARIANTS[variant]
        if not path.is_file():
            raise FileNotFoundError(f"shipped weights not found at {path}; see docs/model_cards/drunet_{variant}.md")
        return cls.from_checkpoint(path)


def official_keys(blocks: int = 4, bias: bool = False) -> Dict[str, str]:
    """``{DPIR/KAIR UNetRes key: DRUNet key}`` for ``blocks`` residual blocks a level."""
    params = ("weight", "bias") if bias else ("weight",)
    pairs = [("m_head", "head"), ("m_tail", "tail")]
    for level in (1, 2, 3):
        pairs.append((f"m_down{level}.{blocks}", f"down{level}.1"))  # the stride-2 convolution
        pairs.append((f"m_up{level}.0", f"up{level}.0"))  # the transposed convolution
        for i in range(blocks):
            pairs += [(f"m_down{level}.{i}.res.{j}", f"down{level}.0.{i}.conv{n}") for j, n in ((0, 1), (2, 2))]
            pairs += [(f"m_up{level}.{i + 1}.res.{j}", f"up{level}.1.{i}.conv{n}") for j, n in ((0, 1), (2, 2))]
    for i in range(blocks):
        pairs += [(f"m_body.{i}.res.{j}", f"body.{i}.conv{n}") for j, n in ((0, 1), (2, 2))]
    return {f"{theirs}.{p}": f"{ours}.{p}" for theirs, ours in pairs for p in params}
