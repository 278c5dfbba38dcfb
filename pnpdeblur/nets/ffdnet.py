"""FFDNet: Zhang et al.'s fast noise-level-aware denoiser (2018), for the authors' weights.

The image is reversibly down-sampled by 2 (each 2×2 block becomes four channels, a pixel
unshuffle), the noise level joins as one more constant channel, a plain stack of 3×3
convolutions with biases and ReLUs (``depth`` of them) predicts the four sub-images of the
clean image, and a pixel shuffle puts them back: the network sees twice the context of a
DnCNN of the same depth at a quarter of its cost. No weights ship: the class exists to run the
authors' KAIR weights (``ffdnet_gray.pth``: 64 features, 15 layers; ``ffdnet_color.pth``: 96
features, 12 layers) as a plug-and-play prior, ``DenoiserPrior(FFDNet.from_official(path))``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointError
from ._base import CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import check_input, check_int
from ._official import build_mapped, kair_conv_stack, load_official
from .drunet import noise_level_map

__all__ = ["FFDNet"]


class FFDNet(CheckpointMixin, nn.Module):
    """Noise-level-aware denoiser on the 2×-unshuffled image: ``forward(x, sigma) -> clean``.

    Parameters
    ----------
    channels : int
        Image channels (1: grey, 3: colour).
    features : int
        Width of the hidden layers (paper: 64 grey, 96 colour).
    depth : int
        Number of convolutions, ≥ 2 (paper: 15 grey, 12 colour).

    Shapes
    ------
    ``x``: ``(N, channels, H, W)`` float, any ``H, W`` (replicated at the bottom/right to even
    sizes, as the authors do, and cropped back); ``sigma``: float, 0-d / ``(N,)`` tensor or
    ``(N, 1, H, W)`` map, noise std on the [0, 1] scale (a map is averaged over each 2×2 block);
    output: like ``x``, the clean image (not the residual).
    """

    def __init__(self, channels: int = 1, features: int = 64, depth: int = 15):
        super().__init__()
        check_int("channels", channels)
        check_int("features", features)
        check_int("depth", depth, lo=2)
        self.config: Dict[str, Any] = dict(channels=int(channels), features=int(features), depth=int(depth))
        layers = [nn.Conv2d(4 * channels + 1, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, 4 * channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
        check_input(x, self.config["channels"], net=self)
        smap = noise_level_map(sigma, x)
        xp, size = pad_to_multiple(x, 2, mode="replicate")
        mp, _ = pad_to_multiple(smap, 2, mode="replicate")
        inp = torch.cat((F.pixel_unshuffle(xp, 2), F.avg_pool2d(mp, 2)), dim=1)
        return crop_to(F.pixel_shuffle(self.body(inp), 2), size)

    # -- the authors' checkpoints (KAIR) ----------------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, os.PathLike], bn_eps: float = 1e-4) -> "FFDNet":
        """Load an FFDNet saved by Zhang et al.'s KAIR code (``models/network_ffdnet.py``).

        Their layout is :meth:`pnpdeblur.nets.DnCNN.from_official`'s (an ``nn.Sequential`` called
        ``model`` of convolutions with biases and ReLUs; batch norms, if the file has them, are
        merged with ``bn_eps``), with ``4·C + 1`` input and ``4·C`` output channels. Their pixel
        unshuffle orders the sub-images as :func:`torch.nn.functional.pixel_unshuffle` does, and
        the noise level is on the same [0, 1] scale (they feed ``σ/255``).

        Returns
        -------
        FFDNet
            In eval mode.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Missing or unreadable file, a state dict that is not a KAIR conv stack, or channel
            counts that are not ``4·C + 1`` in and ``4·C`` out.
        """
        merged = kair_conv_stack(load_official(path)[0], path, bn_eps, "FFDNet")
        n = len(merged) // 2
        first, last = merged["body.0.weight"], merged[f"body.{2 * (n - 1)}.weight"]
        cout, cin = int(last.shape[0]), int(first.shape[1])
        if cout % 4 or cin != cout + 1:
            raise CheckpointError(f"{path}: the first convolution takes {cin} channels and the last gives {cout}; "
                                  "an FFDNet takes 4·C + 1 (the unshuffled image and the noise map) and gives 4·C")
        return build_mapped(cls, merged, {k: k for k in merged}, path, channels=cout // 4,
                            features=int(first.shape[0]), depth=n)
