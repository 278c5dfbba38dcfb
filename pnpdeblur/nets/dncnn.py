"""A small DnCNN-style Gaussian denoiser conditioned on the noise level.

Zhang et al.'s DnCNN predicts the noise residual with a plain stack of 3×3
convolutions and ReLUs. This variant is sized for CPU training in an hour and takes a
noise-level map as an extra input channel (as FFDNet does), so one network serves every
``sigma`` that HQS asks for. ``pnpdeblur train dncnn`` (:mod:`pnpdeblur.train.dncnn`) trains
the grey network on the opponent-colour planes of colour photos, the planes
:class:`~pnpdeblur.priors.DenoiserPrior` feeds it; :meth:`DnCNN.pretrained` loads the shipped
weights (``docs/model_cards/dncnn_small.md``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, Union

import torch
from torch import nn

from .._checks import check_flag
from ._base import WEIGHTS_DIR, CheckpointMixin
from ._e2e import check_input, check_int
from ._official import build_mapped, kair_conv_stack, load_official

__all__ = ["DnCNN", "PRETRAINED_PATH"]

#: The shipped weights (trained by ``pnpdeblur train dncnn``).
PRETRAINED_PATH = WEIGHTS_DIR / "dncnn_small.safetensors"


class DnCNN(CheckpointMixin, nn.Module):
    """Residual CNN denoiser: ``forward(x, sigma) = x − f([x, σ·1])``.

    Parameters
    ----------
    channels : int
        Image channels the network handles (1: grey; colour images are denoised
        channel by channel by :class:`~pnpdeblur.priors.DenoiserPrior`).
    features : int
        Width of the hidden layers.
    depth : int
        Number of convolution layers (≥ 2).
    noise_map : bool
        Feed the noise level as an extra constant input channel.

    Shapes
    ------
    ``x``: ``(N, channels, H, W)`` float; ``sigma``: float, 0-d tensor or ``(N,)``
    tensor (noise std on the [0, 1] scale; NaN, Inf or negative values raise ValueError);
    output: same as ``x``. A non-float ``x`` or a bool/str ``sigma`` raises TypeError, NaN/Inf
    in ``x`` ValueError.
    """

    #: Safe to run in channels-last memory format (no view of its input's strides); the
    #: denoiser priors do so on the CPU, where oneDNN's convolutions are faster in it.
    channels_last_safe = True

    def __init__(self, channels: int = 1, features: int = 32, depth: int = 7, noise_map: bool = True):
        super().__init__()
        # zero widths built an empty network silently; bools and floats are not sizes
        check_int("channels", channels)
        check_int("features", features)
        check_int("depth", depth, lo=2)
        noise_map = check_flag(noise_map, "noise_map")
        self.config: Dict[str, Any] = dict(
            channels=int(channels), features=int(features), depth=int(depth), noise_map=bool(noise_map)
        )
        cin = channels + (1 if noise_map else 0)
        layers = [nn.Conv2d(cin, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
        check_input(x, self.config["channels"], allow_empty=True, net=self)  # NaN would give a NaN image silently
        if isinstance(sigma, (bool, str, bytes)):  # True read as σ = 1
            raise TypeError(f"sigma must be a float or a tensor, got {type(sigma).__name__}")
        inp = x
        if self.config["noise_map"]:
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
            if s.ndim == 0:
                s = s.expand(x.shape[0])
            if s.shape != (x.shape[0],):
                raise ValueError(f"sigma must be a scalar or shape (N,), got shape {tuple(s.shape)}")
            # NaN would pass silently; meta tensors (shape propagation) hold no values to check
            if s.device.type != "meta" and (not bool(torch.isfinite(s).all()) or bool((s < 0).any())):
                raise ValueError("sigma must be finite and non-negative (noise std), got NaN, Inf or < 0")
            smap = s.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, x.shape[2], x.shape[3])
            inp = torch.cat((x, smap), dim=1)
        return x - self.body(inp)

    # -- the authors' checkpoints (KAIR) ----------------------------------------------------
    @classmethod
    def from_official(cls, path: Union[str, os.PathLike], bn_eps: float = 1e-4) -> "DnCNN":
        """Load a DnCNN saved by Zhang et al.'s KAIR code (``models/network_dncnn.py``), e.g. ``dncnn_25.pth``.

        Their network is an ``nn.Sequential`` called ``model``: 3×3 convolutions with biases and
        ReLUs, the first taking the image, the last giving the noise residual
        (``x − model(x)``, as here), no noise-level input. Their released weights have the batch
        norms merged into the convolutions (``model.{2i}``, ReLUs between: ``dncnn_15/25/50``,
        ``dncnn_gray_blind``, ``dncnn_color_blind``, ``dncnn3``); files from their training keep
        them (``act_mode='BR'``: ``model.{3i-1}`` a convolution, ``model.{3i}`` its batch norm), and
        those are merged here, with the statistics stored in the file: ``w·γ/√(var+ε)``,
        ``(b − mean)·γ/√(var+ε) + β``. Channels, width and depth are read from the shapes. A
        ``module.`` prefix is stripped.

        Parameters
        ----------
        path : str or PathLike
            A ``torch.save`` file (read with ``weights_only=True``), holding the state dict or a
            dict with it under ``'state_dict'``.
        bn_eps : float
            ε of their batch norms (KAIR's: 1e-4); used only when the file has batch norms.

        Returns
        -------
        DnCNN
            ``noise_map=False`` (its ``sigma`` argument is ignored: their networks are trained for
            one noise level or blind over a range), in eval mode.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Missing or unreadable file, or a state dict that is not a KAIR ``DnCNN`` one.
        """
        merged = kair_conv_stack(load_official(path)[0], path, bn_eps, "DnCNN")
        n = len(merged) // 2
        first, last = merged["body.0.weight"], merged[f"body.{2 * (n - 1)}.weight"]
        return build_mapped(cls, merged, {k: k for k in merged}, path, channels=int(last.shape[0]),
                            features=int(first.shape[0]), depth=n, noise_map=False)

    # -- checkpoints (save / from_checkpoint / pretrained come from CheckpointMixin) ----
    pretrained_file = PRETRAINED_PATH.name
    # two runs: the colour-plane recipe, then a fine-tune with grey crops (docs/model_cards/dncnn_small.md)
    training_command = ("pnpdeblur train dncnn --data .data/bsds500/train --time-budget 3600 --float32 "
                        "--run-dir runs/dncnn --out runs/dncnn/colour.safetensors && "
                        "pnpdeblur train dncnn --data .data/bsds500/train --init runs/dncnn/colour.safetensors "
                        "--grey-share 0.5 --lr 5e-4 --time-budget 2400 --float32 --run-dir runs/dncnn_grey")
