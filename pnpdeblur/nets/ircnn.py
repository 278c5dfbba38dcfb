"""IRCNN: Zhang et al.'s denoisers for plug-and-play restoration (CVPR 2017), for the authors' weights.

One IRCNN is a 7-layer residual CNN of 3×3 convolutions with dilations 1, 2, 3, 4, 3, 2, 1
(receptive field 33×33), biases and ReLUs, predicting the noise (``x − f(x)``); each is trained
for one noise level. The authors released **banks** of 25 of them, for σ = 2, 4, …, 50 (/255),
and their plug-and-play solvers call, at each iteration, the one of the smallest level at or
above the iteration's σ. :class:`IRCNNBank` is that bank as one module, ``forward(x, sigma)``,
so that ``DenoiserPrior(IRCNNBank.from_official("ircnn_color.pth"))`` is the classical IRCNN
prior in this library's solvers. No weights ship.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Mapping, Sequence, Union

import torch
from torch import nn

from ..checkpoints import CheckpointError
from ._base import CheckpointMixin
from ._e2e import check_input, check_int, read_torch_state, strip_prefix
from ._official import copy_mapped

__all__ = ["IRCNN", "IRCNNBank", "DILATIONS", "OFFICIAL_LEVELS"]

#: Dilations of the seven convolutions.
DILATIONS = (1, 2, 3, 4, 3, 2, 1)
#: Noise levels of the authors' banks (``ircnn_gray.pth``, ``ircnn_color.pth``): 2, 4, …, 50 /255.
OFFICIAL_LEVELS = tuple(2.0 * (i + 1) / 255.0 for i in range(25))


class IRCNN(nn.Module):
    """One fixed-level IRCNN denoiser: ``forward(x) = x − f(x)``.

    Parameters
    ----------
    channels : int
        Image channels (1 or 3 in the authors' banks).
    features : int
        Width of the hidden layers (authors: 64).

    Shapes
    ------
    ``x``: ``(N, channels, H, W)`` float, any size (zero padding inside, as the authors');
    output: like ``x``.
    """

    def __init__(self, channels: int = 1, features: int = 64):
        super().__init__()
        check_int("channels", channels)
        check_int("features", features)
        self.config: Dict[str, Any] = dict(channels=int(channels), features=int(features))
        widths = [channels] + [features] * (len(DILATIONS) - 1) + [channels]
        layers = []
        for i, d in enumerate(DILATIONS):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=d, dilation=d))
            if i < len(DILATIONS) - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.config["channels"], net=self)
        return x - self.body(x)


class IRCNNBank(CheckpointMixin, nn.Module):
    """A bank of :class:`IRCNN` denoisers, one per noise level: ``forward(x, sigma)``.

    ``sigma`` picks the denoiser of the smallest level ≥ ``sigma`` (the largest level beyond
    the last, the smallest below the first), as the authors' solvers do
    (``ceil(σ·255/2) − 1`` for their levels 2, 4, …, 50).

    Parameters
    ----------
    channels, features : int
        As for :class:`IRCNN`.
    levels : sequence of float
        The noise levels (std on the [0, 1] scale), strictly increasing (default: the authors',
        :data:`OFFICIAL_LEVELS`).

    Shapes
    ------
    ``x``: ``(N, channels, H, W)``; ``sigma``: a float or a tensor with one value for the batch
    (a 0-d tensor, or ``(N,)`` all equal); output: like ``x``.
    """

    def __init__(self, channels: int = 1, features: int = 64, levels: Sequence[float] = OFFICIAL_LEVELS):
        super().__init__()
        try:
            levels = [float(v) for v in levels]
        except (TypeError, ValueError):
            raise ValueError(f"levels must be a sequence of noise levels, got {levels!r}") from None
        if not levels or any(not math.isfinite(v) or v <= 0 for v in levels) or \
                any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"levels must be finite, positive and strictly increasing, got {levels!r}")
        self.nets = nn.ModuleList(IRCNN(channels, features) for _ in levels)
        self.config: Dict[str, Any] = dict(channels=int(channels), features=int(features), levels=levels)

    def index(self, sigma: float) -> int:
        """Which denoiser ``sigma`` calls: the smallest level ≥ ``sigma`` (1e-6 relative slack
        for float round-off), clipped to the bank."""
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be a finite non-negative noise std, got {sigma!r}")
        for i, level in enumerate(self.config["levels"]):
            if sigma <= level * (1 + 1e-6):
                return i
        return len(self.config["levels"]) - 1

    def forward(self, x: torch.Tensor, sigma: Union[float, torch.Tensor] = 0.0) -> torch.Tensor:
        if isinstance(sigma, torch.Tensor):
            values = sigma.detach().reshape(-1)
            if values.numel() == 0 or bool((values != values[0]).any()):
                raise ValueError("sigma must hold one value for the whole batch: each IRCNN serves one noise level")
            sigma = float(values[0])
        return self.nets[self.index(sigma)](x)

    @classmethod
    def from_official(cls, path: Union[str, os.PathLike, Mapping[str, Any]],
                      levels: Sequence[float] = OFFICIAL_LEVELS) -> "IRCNNBank":
        """Load the authors' bank (KAIR / DPIR ``ircnn_gray.pth``, ``ircnn_color.pth``).

        The file is a dict ``{"0": state dict, …, "24": state dict}``, entry ``i`` the denoiser
        of ``levels[i]`` (default 2(i+1)/255); each is KAIR's ``IRCNN``, an ``nn.Sequential``
        called ``model`` with the seven convolutions at indices 0, 2, …, 12 (ReLUs between).
        Channels and width are read from the shapes.

        Parameters
        ----------
        path : str, PathLike or mapping
            The ``torch.save`` file (read with ``weights_only=True``) or the dict itself.
        levels : sequence of float
            The noise level of each entry, in the entries' order ``"0"``, ``"1"``, ….

        Returns
        -------
        IRCNNBank
            In eval mode.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Missing or unreadable file, entries that are not ``"0"`` … ``"n−1"`` for the ``n``
            levels, or an entry that is not an IRCNN state dict.
        """
        bank = read_torch_state(path, "IRCNN") if not isinstance(path, Mapping) else path
        where = "the given bank" if isinstance(path, Mapping) else str(path)
        levels = list(levels)
        if isinstance(bank, Mapping):
            bank = {str(k): v for k, v in bank.items()}  # their files use "0" …; integer keys read the same
        if not isinstance(bank, Mapping) or sorted(bank) != sorted(str(i) for i in range(len(levels))):
            keys = sorted(bank)[:5] if isinstance(bank, Mapping) else type(bank).__name__
            raise CheckpointError(f"{where}: not an IRCNN bank of {len(levels)} denoisers (a dict '0' … "
                                  f"'{len(levels) - 1}' of state dicts); got {keys}")
        first = bank["0"]
        w0 = first.get("model.0.weight") if isinstance(first, Mapping) else None
        if not isinstance(w0, torch.Tensor) or w0.ndim != 4:
            raise CheckpointError(f"{where}: entry '0' is not an IRCNN state dict (no 4-d 'model.0.weight')")
        try:
            model = cls(channels=int(w0.shape[1]), features=int(w0.shape[0]), levels=levels)
        except ValueError as e:
            raise CheckpointError(f"{where}: the bank implies an invalid IRCNNBank: {e}") from e
        mapping = {f"model.{2 * j}.{p}": f"body.{2 * j}.{p}" for j in range(len(DILATIONS)) for p in ("weight", "bias")}
        for i, net in enumerate(model.nets):
            entry = bank[str(i)]
            if not isinstance(entry, Mapping) or not all(isinstance(v, torch.Tensor) for v in entry.values()):
                raise CheckpointError(f"{where}: entry '{i}' is not a state dict of tensors")
            copy_mapped(net, strip_prefix(dict(entry)), mapping, f"{where} (entry '{i}')")
        return model.eval()
