"""RP-GAN (Wu et al., section 4.2 and appendix A): the recurrent generator and its two critics.

Notation of appendix A: ``CBR k*k*c:s`` is a k×k convolution with ``c`` outputs and stride
``s`` followed by BatchNorm and ReLU; ``Res1 c`` is ``CBR 3×3 c → CBR 3×3 c`` plus the input;
``Res2 c`` is ``CBR c/2 → CBR c/2 → CBR c`` plus a 3×3 projection of the input.

* :class:`RPGANGenerator` ``G(I*|O)``: the HQS deconvolution ``I*`` concatenated with the
  observed blurred image ``O`` (6 channels) → ``CBR 7×7×64:1 → CBR 3×3×128:2 → CBR 3×3×256:2
  → 6 × Res1 256 → CBR 3×3×256:½ → CBR 3×3×128:½ → CBR 7×7×64:1``; the concatenated input is
  skip-connected to the last layer (section 4.2.1): ``[features, I*, O] → Res2 3 → output``.
  The two ``:2`` layers of the decoder are read as 2× up-sampling (transposed) convolutions,
  since the output has the input's size.
* :class:`ConditionalDiscriminator` ``D_cGAN(x|O)`` (eq. 5): a PatchGAN on ``[x, O]``,
  ``CBR 4×4×64:2 → 128:2 → 256:2 → 512:2 → 512:1 → 4×4×1:1``; returns **logits** (the
  paper's final sigmoid is folded into :func:`pnpdeblur.losses.adversarial.gan_discriminator_loss`
  for numerical stability).
* :class:`ArtifactCritic` ``D_p(x)`` (eq. 6): the same PatchGAN layout on ``x`` alone, an
  unbounded WGAN critic score map.

Deviations where appendix A is silent or cannot be meant literally (all documented in the
classes): the last layer of every network is a plain convolution (no BatchNorm/ReLU on an
image or a score); ``Res2 3`` at the generator's end uses ``final_width`` hidden channels
(``3/2`` is not a width); D_p normalises with per-sample layer norm instead of BatchNorm
(see :class:`ArtifactCritic`).

All three take ``(N, C, H, W)`` float tensors of any H, W. The generator pads to a multiple
of 4 (its stride) and crops back; the critics pad small inputs up to :data:`MIN_CRITIC_SIZE`
pixels per side (their five 4×4 layers need it) and return a patch map ``(N, 1, h, w)``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_flag, check_real
from ._base import WEIGHTS_DIR, CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import check_input

__all__ = [
    "RPGANGenerator",
    "ConditionalDiscriminator",
    "ArtifactCritic",
    "RPGAN_PRETRAINED_PATH",
    "MIN_CRITIC_SIZE",
    "SMALL_GENERATOR",
]

#: Shipped weights of the small generator (``scripts/train_rpgan.py``), when they ship.
RPGAN_PRETRAINED_PATH = WEIGHTS_DIR / "rpgan_small.safetensors"
#: Critics' inputs are padded (replicated borders) up to this many pixels per side.
MIN_CRITIC_SIZE = 48
#: The CPU-sized generator of the shipped ``rpgan_small``: ``RPGANGenerator(**SMALL_GENERATOR)``
#: (≈ 0.26 M parameters).
SMALL_GENERATOR: Dict[str, Any] = {"width": 16, "n_res": 2, "final_width": 8, "residual": True}


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _cbr(cin: int, cout: int, k: int, stride: int = 1, norm: str = "batch", transpose: bool = False,
         relu_slope: float = 0.0, padding: Optional[int] = None) -> nn.Sequential:
    """Appendix A's ``CBR k*k*c:s`` (conv → norm → ReLU); ``transpose`` up-samples by ``stride``."""
    pad = (k - 1) // 2 if padding is None else padding
    if transpose:
        # k=3, p=1, output_padding=1: exactly 2× the size (H → 2H)
        conv = nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=pad, output_padding=stride - 1,
                                  bias=norm == "none")
    else:
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=norm == "none")
    layers = [conv]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm == "layer":
        layers.append(nn.GroupNorm(1, cout))  # one group: normalise each sample over (C, H, W)
    elif norm != "none":
        raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")
    layers.append(nn.LeakyReLU(relu_slope, inplace=True) if relu_slope else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Res1(nn.Module):
    """Appendix A's ``Res1 c``: ``CBR 3×3 c → CBR 3×3 c`` plus the input."""

    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_cbr(c, c, 3), _cbr(c, c, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class OutputRes2(nn.Module):
    """The generator's last block, appendix A's ``Res2 3`` with a linear output.

    ``CBR 3×3 mid → CBR 3×3 mid → conv 3×3 out`` plus a 3×3 conv projection of the input;
    the two output convolutions carry no BatchNorm/ReLU (an image must be free to take any
    value and sign of correction).
    """

    def __init__(self, cin: int, cout: int, mid: int):
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, mid, 3), _cbr(mid, mid, 3), nn.Conv2d(mid, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class RPGANGenerator(CheckpointMixin, nn.Module):
    """RP-GAN's generator ``G(I*|O)``: one network for every HQS z-step (Wu et al., appendix A).

    Parameters
    ----------
    channels : int
        Image channels (3: RGB). The input is ``2 * channels`` wide (``I*`` and ``O``).
    width : int
        Width of the first layer (paper: 64; encoder widths ``width, 2·width, 4·width``).
    n_res : int
        Number of ``Res1`` blocks at 1/4 resolution (paper: 6).
    final_width : int
        Hidden width of the final ``Res2`` block (the paper's ``Res2 3`` would give it 1.5
        channels; default ``width // 2``).
    residual : bool
        Add ``I*`` to the output (``G = I* + r``). Off in the paper's configuration (the skip
        connection of section 4.2.1 is the concatenation); on in :data:`SMALL_GENERATOR`, where
        starts the untrained network at the identity (its two output convolutions are
        zero-initialised) and trains much faster on a CPU.

    Notes
    -----
    ``forward(deconv, blurred)``: both ``(N, channels, H, W)`` float, same shape, values
    nominally in [0, 1] (``deconv`` may over- and undershoot: deconvolution artifacts);
    returns ``(N, channels, H, W)``. Any ``H, W``: reflection padding to a multiple of 4
    (:attr:`stride`), cropped back. The paper configuration has ≈ 8.8 M parameters; the small
    one (``RPGANGenerator(**SMALL_GENERATOR)``, the shipped ``rpgan_small``) ≈ 0.26 M.
    """

    stride = 4
    pretrained_file = RPGAN_PRETRAINED_PATH.name
    training_command = "python scripts/train_rpgan.py --help  (pnpdeblur.train.rpgan)"

    def __init__(self, channels: int = 3, width: int = 64, n_res: int = 6, final_width: Optional[int] = None,
                 residual: bool = False):
        super().__init__()
        _check_int(channels, "channels", 1)
        _check_int(width, "width", 1)
        _check_int(n_res, "n_res", 0)
        if final_width is None:
            final_width = max(width // 2, 1)
        _check_int(final_width, "final_width", 1)
        residual = check_flag(residual, "residual")
        self.config = {"channels": channels, "width": width, "n_res": n_res, "final_width": final_width,
                       "residual": residual}
        self.channels = channels
        self.residual = residual
        c_in, w = 2 * channels, width
        self.encoder = nn.Sequential(_cbr(c_in, w, 7), _cbr(w, 2 * w, 3, stride=2), _cbr(2 * w, 4 * w, 3, stride=2))
        self.blocks = nn.Sequential(*[Res1(4 * w) for _ in range(n_res)])
        self.decoder = nn.Sequential(
            _cbr(4 * w, 4 * w, 3, stride=2, transpose=True),
            _cbr(4 * w, 2 * w, 3, stride=2, transpose=True),
            _cbr(2 * w, w, 7),
        )
        # section 4.2.1: the concatenated input [I*, O] is skip-connected to the last layer
        self.head = OutputRes2(w + c_in, channels, final_width)
        if residual:
            # zero output layers: the untrained residual generator is exactly G(I*|O) = I*
            # (HQS without a prior), a neutral start; gradients still reach these layers
            for conv in (self.head.body[-1], self.head.skip):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def forward(self, deconv: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
        """Restore ``deconv`` (I*) given the observation ``blurred`` (O); see the class notes."""
        check_input(deconv, self.channels, "deconv", net=self)
        check_input(blurred, self.channels, "blurred", net=self)
        if deconv.shape != blurred.shape:
            raise ValueError(f"deconv and blurred must have the same shape, got {tuple(deconv.shape)} "
                             f"and {tuple(blurred.shape)}")
        x = torch.cat((deconv, blurred), 1)
        xp, size = pad_to_multiple(x, self.stride)
        f = self.decoder(self.blocks(self.encoder(xp)))
        out = crop_to(self.head(torch.cat((f, xp), 1)), size)
        return deconv + out if self.residual else out


class _PatchCritic(nn.Module):
    """Appendix A's discriminator layout: five 4×4 CBR layers and a 4×4 one-channel output."""

    def __init__(self, in_channels: int, width: int, norm: str, relu_slope: float):
        super().__init__()
        w = width
        chans = [in_channels, w, 2 * w, 4 * w, 8 * w]
        layers = []
        for i in range(4):
            layers.append(_cbr(chans[i], chans[i + 1], 4, stride=2, norm=norm, relu_slope=relu_slope, padding=1))
        layers.append(_cbr(8 * w, 8 * w, 4, stride=1, norm=norm, relu_slope=relu_slope, padding=1))
        self.body = nn.Sequential(*layers)
        # a score map, so no norm/ReLU on it (the paper's last "CBR 4*4*1:1" would clip it at 0)
        self.out = nn.Conv2d(8 * w, 1, 4, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = max(0, MIN_CRITIC_SIZE - h), max(0, MIN_CRITIC_SIZE - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.out(self.body(x))


def _init_critic(module: nn.Module, channels: int, width: int, relu_slope: float, inputs: int, norm: str) -> None:
    """Shared constructor body of the two discriminators: checks, ``config`` and the PatchGAN."""
    _check_int(channels, "channels", 1)
    _check_int(width, "width", 1)
    relu_slope = check_real(relu_slope, "relu_slope")  # LeakyReLU's slope: finite, >= 0
    module.config = {"channels": channels, "width": width, "relu_slope": relu_slope}
    module.channels = channels
    module.net = _PatchCritic(inputs * channels, width, norm, relu_slope)


class ConditionalDiscriminator(CheckpointMixin, nn.Module):
    """D_cGAN (eq. 5): PatchGAN logits that ``x`` is a sharp image, given the blurred ``O``.

    Parameters
    ----------
    channels : int
        Image channels; the network sees ``[x, O]`` (``2 * channels``).
    width : int
        First-layer width (paper: 64; then 128, 256, 512, 512).
    relu_slope : float
        Negative slope of the activations (paper: 0, ReLU).

    Notes
    -----
    ``forward(x, blurred)`` → logits ``(N, 1, h, w)`` (one per overlapping patch; no sigmoid:
    use :func:`pnpdeblur.losses.adversarial.gan_discriminator_loss`). BatchNorm as in the
    paper; inputs smaller than :data:`MIN_CRITIC_SIZE` are padded (replicated borders).
    """

    def __init__(self, channels: int = 3, width: int = 64, relu_slope: float = 0.0):
        super().__init__()
        _init_critic(self, channels, width, relu_slope, inputs=2, norm="batch")

    def forward(self, x: torch.Tensor, blurred: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, "x", net=self)
        check_input(blurred, self.channels, "blurred", net=self)
        if x.shape != blurred.shape:
            raise ValueError(f"x and blurred must have the same shape, got {tuple(x.shape)} and {tuple(blurred.shape)}")
        return self.net(torch.cat((x, blurred), 1))


class ArtifactCritic(CheckpointMixin, nn.Module):
    """D_p (eq. 6): a WGAN critic scoring deconvolution artifacts high and blur low.

    Trained (see :func:`pnpdeblur.losses.rpgan.artifact_critic_loss`) to maximise
    ``E[D_p(I*)] − E[D_p(O)]`` over artifact-corrupted deconvolutions ``I*`` and blurred
    observations ``O`` under a 1-Lipschitz constraint, so that ``E[D_p(I*)] − E[D_p(O)]``
    estimates the Wasserstein-1 distance between the two distributions.

    **Lipschitz constraint: gradient penalty** (Gulrajani et al., weight 10 on random
    interpolates of ``I*`` and ``O``), not spectral normalisation. Why: spectral norm bounds
    every layer's gain by 1, a product bound that is loose for a deep stack of 4×4 convs and
    so shrinks the critic's usable range (scores of artifacts and blur end up nearly equal,
    and the penalty of eq. 7 loses its bite); the penalty constrains the actual gradient
    along the pairs the critic compares, which is what the Wasserstein estimate needs, and
    the library ships it (:func:`pnpdeblur.losses.adversarial.gradient_penalty`). Because
    the penalty is per sample, the critic uses **layer norm** (one-group GroupNorm over each
    sample's ``(C, H, W)``) instead of the paper's BatchNorm, which couples the samples of a
    batch and invalidates the per-sample gradient (Gulrajani et al., section 4).

    Parameters
    ----------
    channels : int
        Image channels.
    width : int
        First-layer width (paper: 64).
    relu_slope : float
        Negative slope of the activations (paper: 0).

    Notes
    -----
    ``forward(x)`` → scores ``(N, 1, h, w)``, unbounded; :meth:`score` averages them to ``(N,)``.
    """

    def __init__(self, channels: int = 3, width: int = 64, relu_slope: float = 0.0):
        super().__init__()
        _init_critic(self, channels, width, relu_slope, inputs=1, norm="layer")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, "x", net=self)
        return self.net(x)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image score ``(N,)``: the mean of the patch scores."""
        return self.forward(x).flatten(1).mean(1)
