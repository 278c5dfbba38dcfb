"""Learned priors: any torch denoiser ``net(noisy, sigma) -> clean`` as a Prior."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import nn

from .._checks import check_flag
from .._tiling import apply_in_tiles
from ..backend import resolve_device as usable_device
from ..checkpoints import CheckpointError
from .base import BasePrior

__all__ = ["DenoiserPrior", "DnCNNPrior", "resolve_device", "load_denoiser"]

# Orthonormal opponent colour transform (rows: luminance, red-blue, green-magenta).
_OPPONENT = torch.tensor(
    [
        [3**-0.5, 3**-0.5, 3**-0.5],
        [2**-0.5, 0.0, -(2**-0.5)],
        [6**-0.5, -2 * 6**-0.5, 6**-0.5],
    ],
    dtype=torch.float64,
)


def resolve_device(device: Any) -> Optional[torch.device]:
    """A learned prior's ``device`` argument: ``None`` for ``"follow"`` (run on each input's device).

    Anything else must name a torch device that is usable here (ValueError otherwise: a CUDA
    device without CUDA fails when the prior is made, not at its first call).
    """
    if isinstance(device, str) and device == "follow":
        return None
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be 'follow', a device name or a torch.device, got {device!r}")
    try:
        torch.device(device)
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"device must be 'follow', a device name or a torch.device, got {device!r}") from err
    return usable_device(device)


def load_denoiser(cls: Any, path: Any, name: str = "path") -> nn.Module:
    """``cls`` (``DnCNN``, ``DRUNet``, ``FFDNet``, ``IRCNNBank``) from a file: a pnpdeblur
    checkpoint when the name ends in ``.safetensors`` (``cls.from_checkpoint``), else the authors'
    ``torch.save`` file (``cls.from_official``, e.g. KAIR's ``dncnn_25.pth`` or DPIR's
    ``drunet_color.pth``). A file that fails the second way says which way it was read."""
    if not isinstance(path, (str, Path)) and not hasattr(path, "__fspath__"):
        raise TypeError(f"{name} must be a str or PathLike, got {type(path).__name__}")
    if Path(path).suffix.lower() == ".safetensors":
        return cls.from_checkpoint(path)
    try:
        return cls.from_official(path)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (read as the authors' {cls.__name__} file because its name does not end in "
                              ".safetensors; a pnpdeblur checkpoint needs that suffix)") from e


def _cycle_index(context: Optional[Dict[str, Any]]) -> int:
    """Which of the 8 rotations/flips geometric cycling uses: the solver's iteration mod 8."""
    k = context.get("iteration") if context else None
    return k % 8 if isinstance(k, int) and not isinstance(k, bool) else 0


def _chroma_noise(z: torch.Tensor, std: float) -> torch.Tensor:
    """Gaussian noise of ``std`` along the two chroma rows of :data:`_OPPONENT` for an
    ``(N, 3, H, W)`` ``z``: zero mean over the channels, the same draw for the same shape (seed 0)."""
    n, _, h, w = z.shape
    g = torch.Generator().manual_seed(0)
    ab = torch.randn(n, 2, h, w, generator=g, dtype=torch.float64)
    chroma = _OPPONENT[1:].T  # (3, 2): each column a unit chroma direction
    return (std * torch.einsum("cj,njhw->nchw", chroma, ab)).to(dtype=z.dtype, device=z.device)


def _dihedral(t: torch.Tensor, k: int, inverse: bool = False) -> torch.Tensor:
    """``t`` (…, H, W) rotated by ``(k mod 4)·90°`` and, for k ≥ 4, mirrored left-right; or
    the inverse of that."""
    if not inverse:
        t = torch.rot90(t, k % 4, dims=(-2, -1))
        return t.flip(-1) if k >= 4 else t
    if k >= 4:
        t = t.flip(-1)
    return torch.rot90(t, -(k % 4), dims=(-2, -1))


class DenoiserPrior(BasePrior):
    """Wrap a torch module that maps ``(noisy, sigma)`` to a clean image.

    Parameters
    ----------
    net : torch.nn.Module
        Called as ``net(z, sigma)`` (or ``net(z)`` with ``takes_sigma=False``) on
        ``(N, C', H, W)`` tensors in the network's dtype and device.
    channels : int, optional
        Channels the network takes. If it is 1 and the image has more, channels are
        denoised one by one (folded into the batch). If it is 3 and the image is grey, the
        image is replicated to three channels and denoised with ``σ√3`` (its noise, the same
        in every channel, is all luminance: √3 σ there and none in the chroma directions),
        and the three outputs are averaged. A network that takes no σ (``takes_sigma=False``,
        or a DnCNN without a noise-map input, such as the authors' blind colour one) cannot be
        told; it would take the correlated noise for structure and leave it. Its replica also
        gets independent Gaussian noise of std √3 σ in the two chroma directions (a fixed
        seed per call; the channel mean is unchanged): the input is then the white colour
        noise of std √3 σ the network was trained on. Default: ``net.config['channels']``
        when present, else the image's channel count.
    takes_sigma : bool
        Pass the noise level to the network.
    clamp : bool
        Clip the output to [0, 1].
    color : {'auto', 'rgb', 'opponent'}
        How a grey network denoises a 3-channel image: channel by channel in RGB, or in
        the orthonormal opponent colour space (luminance + two chroma channels; white
        noise stays white with the same sigma, and the smooth chroma channels are
        denoised much better). 'auto' = 'opponent' for a 1-channel network and a
        3-channel image.
    ensemble : bool
        Average the denoiser over the four flips of the image (about +0.3 dB in HQS
        for 4× the cost).
    cycle : bool
        Geometric cycling (Zhang et al.'s DPIR): at iteration ``k`` of a solver (the
        ``context['iteration']`` it passes) the network denoises the image turned by the
        ``k mod 8``-th of the eight rotations and flips, and the result is turned back; a call
        without that context is not turned. It costs nothing and averages the network's
        orientation biases over the iterations (+0.05 / +0.15 dB in HQS with the shipped DRUNet
        at |m| ≤ 23, σ = 0.01 / |m| ≤ 46, σ = 0.03: ``benchmarks/RESULTS.md``). Exclusive
        with ``ensemble``, which already averages over flips at every call.
    device : 'follow', str or torch.device
        Where the network runs. ``'follow'`` (default): on the device of each input,
        the module being moved there in place (``net.to(device)``, which keeps its
        Parameter objects, so an optimiser holding them still works) when an input
        arrives on a new device, so a solve on the GPU denoises on the GPU. A device
        pins the network there (moved once, now); inputs go to it and back.
    tile : int, optional
        Denoise images larger than ``tile`` pixels on a side in ``tile``² pieces, so the
        network's memory stays that of one piece (a 12-megapixel photo needs ~10 GB through
        the shipped DnCNN whole, ~1 GB in 1024² tiles). Default: whole images.
    tile_overlap : int
        Margin (px) each piece discards at its cuts (:func:`pnpdeblur._tiling.apply_in_tiles`).
        When it is at least the network's receptive-field radius (a DnCNN of depth d: d), the
        tiled result equals the whole-image one up to float rounding; for a U-Net (DRUNet) it
        is an approximation.

    Notes
    -----
    On the CPU a network that declares ``channels_last_safe = True`` (the library's DnCNN
    and DRUNet) runs in channels-last memory format: its 4-D parameters are converted in
    place, values are unchanged and convolutions are 1.5-2× faster. The output is
    contiguous in the usual layout.
    Runs under ``torch.no_grad()`` unless the input requires grad (so the prior can sit
    inside a trained pipeline). The output is cast back to the input's dtype and device.
    ``context`` is accepted and ignored (recurrent learned priors may use it).
    """

    def __init__(
        self,
        net: nn.Module,
        channels: Optional[int] = None,
        takes_sigma: bool = True,
        clamp: bool = False,
        color: str = "auto",
        ensemble: bool = False,
        device: Any = "follow",
        tile: Optional[int] = None,
        tile_overlap: int = 32,
        cycle: bool = False,
    ):
        if not isinstance(net, nn.Module) and not callable(net):
            raise TypeError(f"net must be a torch.nn.Module or callable, got {type(net).__name__}")
        self.net = net
        self.device = resolve_device(device)
        if self.device is not None and isinstance(net, nn.Module):
            net.to(self.device)
        if channels is None:
            config = getattr(net, "config", None)
            channels = config.get("channels") if isinstance(config, dict) else None
        self.channels = channels
        self.takes_sigma = takes_sigma = check_flag(takes_sigma, "takes_sigma")
        # a network that ignores σ: not given it, or a DnCNN without its noise-map input
        config = getattr(net, "config", None)
        self._blind = not takes_sigma or (isinstance(config, dict) and config.get("noise_map") is False)
        self.clamp = check_flag(clamp, "clamp")
        if color not in ("auto", "rgb", "opponent"):
            raise ValueError(f"color must be 'auto', 'rgb' or 'opponent', got {color!r}")
        self.color = color
        self.ensemble = check_flag(ensemble, "ensemble")
        cycle = check_flag(cycle, "cycle")
        if cycle and self.ensemble:
            raise ValueError("cycle and ensemble are exclusive: the ensemble already averages over flips at every call")
        self.cycle = cycle
        for name, v in (("tile", tile), ("tile_overlap", tile_overlap)):
            if name == "tile" and v is None:
                continue  # whole images
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if tile is not None and tile <= 2 * tile_overlap:
            raise ValueError(f"tile must be > 2·tile_overlap = {2 * tile_overlap}, got {tile}")
        self.tile = tile
        self.tile_overlap = tile_overlap

    def _param(self) -> Optional[torch.Tensor]:
        if isinstance(self.net, nn.Module):
            for p in self.net.parameters():
                return p
        return None

    def _run(self, t: torch.Tensor, sigma: float) -> torch.Tensor:
        if not self.ensemble:
            return self.net(t, sigma) if self.takes_sigma else self.net(t)
        out = 0
        for dims in ((), (-1,), (-2,), (-2, -1)):
            f = t.flip(dims) if dims else t
            o = self.net(f, sigma) if self.takes_sigma else self.net(f)
            out = out + (o.flip(dims) if dims else o)
        return out / 4

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        grey = self.channels == 3 and z.shape[1] == 1
        if grey:  # through the colour network replicated; its noise is all luminance, √3 σ
            z, sigma = z.expand(-1, 3, -1, -1), sigma * math.sqrt(3.0)
            if self._blind:  # (σ > 0 here: BasePrior returns σ = 0 calls unchanged)
                z = z + _chroma_noise(z, sigma)
        p = self._param()
        if p is not None and self.device is None and p.device != z.device:
            self.net.to(z.device)  # 'follow': the network runs where the data is
            p = self._param()
        t = z if p is None else z.to(dtype=p.dtype, device=p.device)
        n, c, h, w = t.shape
        fold = self.channels is not None and self.channels == 1 and c > 1
        if self.channels is not None and not fold and self.channels != c:
            raise ValueError(f"the network takes {self.channels} channels, the image has {c}")
        opponent = fold and c == 3 and self.color in ("auto", "opponent")
        if opponent:
            M = _OPPONENT.to(dtype=t.dtype, device=t.device)
            t = torch.einsum("ij,njhw->nihw", M, t)
        if fold:
            t = t.reshape(n * c, 1, h, w)
        turn = _cycle_index(context) if self.cycle else 0
        if turn:
            t = _dihedral(t, turn)
        fmt = torch.contiguous_format
        if getattr(self.net, "channels_last_safe", False):
            # channels-last on the CPU, where oneDNN's convolutions are 1.5-2x faster in it (same
            # values to float rounding), the usual layout elsewhere; the Parameters are kept
            fmt = torch.channels_last if t.device.type == "cpu" else torch.contiguous_format
            self.net.to(memory_format=fmt)
            t = t.contiguous(memory_format=fmt)
        with torch.set_grad_enabled(torch.is_grad_enabled() and z.requires_grad):
            if self.tile is None:
                out = self._run(t, sigma)
            else:
                out = apply_in_tiles(lambda piece: self._run(piece.contiguous(memory_format=fmt), sigma), t,
                                     self.tile, self.tile_overlap)
        if turn:
            out = _dihedral(out, turn, inverse=True)
        out = out.contiguous()
        if fold:
            out = out.reshape(n, c, h, w)
        if opponent:
            out = torch.einsum("ji,njhw->nihw", M, out)
        if grey:
            out = out.mean(dim=1, keepdim=True)
        if self.clamp:
            out = out.clamp(0, 1)
        return out.to(dtype=z.dtype, device=z.device)

    def __repr__(self) -> str:
        where = "follow" if self.device is None else str(self.device)
        return (f"DenoiserPrior({type(self.net).__name__}, channels={self.channels}, cycle={self.cycle}, "
                f"device={where!r})")


class DnCNNPrior(DenoiserPrior):
    """The shipped small DnCNN (``pnpdeblur.nets.DnCNN.pretrained()``) as a prior.

    Parameters
    ----------
    path : str or PathLike, optional
        Other weights (default: the shipped ones): a pnpdeblur checkpoint (``.safetensors``,
        e.g. written by ``pnpdeblur train dncnn``) or, under any other name, a DnCNN saved by
        the authors' KAIR code (``dncnn_25.pth``, ``dncnn_color_blind.pth`` …; read by
        :meth:`pnpdeblur.nets.DnCNN.from_official`; those take no noise level, so ``sigma`` is
        ignored).
    ensemble : bool
        Flip self-ensemble (default on: better HQS results, 4× the denoiser cost).
    cycle : bool
        Geometric cycling inside a solver instead (:class:`DenoiserPrior`; exclusive with
        ``ensemble``, default off).
    color, clamp, device
        As for :class:`DenoiserPrior` (colour images go through the opponent space; by
        default the network runs on the device of its input).
    tile : int or None
        Images larger than this on a side are denoised in tiles (default 1024; None: whole).
        The tiles overlap by the network's receptive-field radius (its depth: every layer is
        a 3×3 convolution), so the result is the whole-image one up to float rounding, and
        the memory is that of a 1024² piece whatever the photo's size.
    """

    def __init__(
        self, path: Any = None, ensemble: bool = True, color: str = "auto", clamp: bool = False, device: Any = "follow",
        tile: Optional[int] = 1024, cycle: bool = False,
    ):
        from ..nets.dncnn import DnCNN

        net = DnCNN.pretrained() if path is None else load_denoiser(DnCNN, path)
        # a blind DnCNN (no noise-map input, as the authors') is told no σ
        super().__init__(net, takes_sigma=bool(net.config["noise_map"]), clamp=clamp, color=color,
                         ensemble=ensemble, device=device, tile=tile, tile_overlap=int(net.config["depth"]),
                         cycle=cycle)
