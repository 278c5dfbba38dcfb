"""DeblurNet: Noroozi et al.'s three-level pyramid of residual sub-networks ("Motion deblurring in the wild").

Architecture (Noroozi et al., GCPR 2017, Table 1 and eq. 1). With ``g`` the blurred image and
``D_k`` down-sampling by ``k`` (:func:`pnpdeblur.losses.multiscale.image_pyramid`; the paper
does not say which filter, this is the Gaussian pyramid DeepDeblur uses):

* ``N1`` takes ``g`` at full resolution and outputs a residual at 1/4 scale:
  ``L1 = D_4(g) + N1(g)``. Seven convolutions, kernels 11, 7, 7, 7, 3, 3, 3, widths
  96, 256, 384, 384, 256, 256, C; the 1st and 3rd have stride 2 (Table 1's strides, garbled
  in the available text, read as ↓2, 1, ↓2, 1, 1, 1, 1 — two stride-2 layers are needed for 1/4).
* ``N2`` takes ``L1`` and outputs a residual at 1/2 scale: ``L2 = D_2(g) + N2(L1)``. Four 5×5
  convolutions of width 256, then a 5×5 stride-2 transposed convolution to C channels.
* ``N3`` likewise from ``L2`` to full scale: ``L3 = g + N3(L2)``.

Batch norm and ReLU follow every layer except the last of each sub-network (the residuals are
linear; the paper's caption names the exception for N1 and calls the ↑2 layers of N2/N3
"deconvolutional", not convolutional). Layers followed by batch norm have no bias (it would be
cancelled); the three output layers have one. With the defaults the net has
:meth:`DeblurNet.num_parameters` = 24.68 M parameters (counted in the tests from the list above).

The net is residual at every scale; inputs and outputs are images in [0, 1] (not clamped).
The multi-scale L2 of eq. 1 is ``3 · multiscale_mse(net.forward_multiscale(g), f)`` per element.

No ``from_official``: Noroozi et al. published no code or weights that we could find (searched
GitHub for DeblurNet / "motion deblurring in the wild"), so there is no layout to map.

Small CPU configuration: ``DeblurNet(n1_channels=(16, 32, 32, 32, 32, 32), width=32)`` (0.31 M).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from ..losses.multiscale import image_pyramid
from ._base import CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import PhotoRestorer, check_input, check_int, check_multiple

__all__ = ["DeblurNet"]

_N1_KERNELS = (11, 7, 7, 7, 3, 3, 3)
_N1_STRIDES = (2, 1, 2, 1, 1, 1, 1)


def _cbr(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up_subnet(cin: int, width: int, cout: int, depth: int, k: int) -> nn.Sequential:
    """``depth`` k×k CBR layers then a k×k stride-2 transposed conv to ``cout`` (exact 2× size)."""
    layers: List[nn.Module] = [_cbr(cin if i == 0 else width, width, k) for i in range(depth)]
    layers.append(nn.ConvTranspose2d(width, cout, k, stride=2, padding=k // 2, output_padding=1))
    return nn.Sequential(*layers)


class DeblurNet(PhotoRestorer, CheckpointMixin, nn.Module):
    """Noroozi et al.'s DeblurNet (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Image channels (3 for RGB).
    n1_channels : sequence of 6 ints
        Widths of N1's first six convolutions (paper: 96, 256, 384, 384, 256, 256); its
        kernels are 11, 7, 7, 7, 3, 3, 3.
    width : int
        Width of the convolutions of N2 and N3 (paper: 256).
    depth : int
        Convolutions before the up-sampling layer in N2 and N3 (paper: 4).
    kernel_size : int
        Odd kernel of N2 and N3 (paper: 5).

    Shapes
    ------
    ``net(x)``: ``(N, C, H, W)`` float in [0, 1], any H, W → same shape.
    ``net.forward_multiscale(x)``: H, W multiples of :attr:`stride` (4) → ``[L1, L2, L3]`` at
    1/4, 1/2 and full size (coarse → fine).
    """

    pretrained_file = None
    training_command = "pnpdeblur train deblurnet"

    def __init__(self, in_channels: int = 3, n1_channels: Sequence[int] = (96, 256, 384, 384, 256, 256),
                 width: int = 256, depth: int = 4, kernel_size: int = 5):
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("width", width)
        check_int("depth", depth)
        check_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if isinstance(n1_channels, (str, bytes)) or not isinstance(n1_channels, Sequence) or len(n1_channels) != 6:
            raise ValueError(f"n1_channels must be a sequence of 6 ints, got {n1_channels!r}")
        n1 = [check_int(f"n1_channels[{i}]", c) for i, c in enumerate(n1_channels)]
        self.config: Dict[str, Any] = dict(in_channels=in_channels, n1_channels=list(n1), width=width,
                                           depth=depth, kernel_size=kernel_size)
        c = in_channels
        widths = [c] + n1
        layers: List[nn.Module] = [_cbr(widths[i], widths[i + 1], _N1_KERNELS[i], _N1_STRIDES[i]) for i in range(6)]
        layers.append(nn.Conv2d(widths[-1], c, _N1_KERNELS[6], padding=_N1_KERNELS[6] // 2))
        self.n1 = nn.Sequential(*layers)
        self.n2 = _up_subnet(c, width, c, depth, kernel_size)
        self.n3 = _up_subnet(c, width, c, depth, kernel_size)

    @property
    def stride(self) -> int:
        """H and W of ``forward_multiscale`` inputs must be multiples of this (4)."""
        return 4

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward_multiscale(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``[L1, L2, L3]`` for the blurred ``x`` ``(N, C, H, W)`` (H, W multiples of 4), coarse → fine."""
        check_input(x, self.config["in_channels"], net=self)
        check_multiple(x, self.stride, type(self).__name__)
        g4, g2, g1 = image_pyramid(x, 3)
        l1 = g4 + self.n1(g1)
        l2 = g2 + self.n2(l1)
        l3 = g1 + self.n3(l2)
        return [l1, l2, l3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deblurred ``x`` ``(N, C, H, W)`` of any size (reflection-padded to 4, cropped back)."""
        check_input(x, self.config["in_channels"], net=self)
        xp, size = pad_to_multiple(x, self.stride)
        return crop_to(self.forward_multiscale(xp)[-1], size)
