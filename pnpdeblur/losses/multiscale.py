"""Multi-scale content loss of coarse-to-fine deblurring nets (Nah et al. eq. 4, Noroozi et al. eq. 1).

:func:`image_pyramid` is the Gaussian pyramid DeepDeblur uses for its inputs and targets:
its authors' PyTorch code builds the pyramids with ``skimage.transform.pyramid_gaussian``
(downscale 2), i.e. each level is the previous one smoothed by a Gaussian of
``sigma = 2·2/6 = 2/3`` px (truncated at 4 sigma: 7 taps, symmetric "reflect" borders
``d c b a | a b c d | d c b a``) and then bilinearly resized to ``ceil(H/2) × ceil(W/2)``
(pixel centres aligned, no anti-aliasing). For even sizes that resize is exactly the mean
of each 2×2 block. The torch version here is differentiable, runs on any device and
matches ``pyramid_gaussian`` to float precision (tests check it on even sizes).

Noroozi et al. do not say how they downsample ("D_k"); DeblurNet uses the same pyramid.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Union

import torch
import torch.nn.functional as F

from ._checks import check_finite

__all__ = ["gaussian_downsample", "image_pyramid", "multiscale_mse"]

_SIGMA = 2.0 * 2.0 / 6.0  # skimage's default for downscale=2 (covers > 99 % of the mass)
_RADIUS = int(4.0 * _SIGMA + 0.5)  # scipy.ndimage truncate=4.0 → 3


def _gaussian_taps(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / _SIGMA) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def _symmetric_pad(x: torch.Tensor, r: int, dim: int) -> torch.Tensor:
    """Pad ``r`` samples on both ends of ``dim`` mirroring *with* the edge sample (scipy 'reflect')."""
    n = x.shape[dim]
    # indices of the half-sample symmetric extension; a fold-back loop covers r > n
    idx = torch.arange(-r, n + r, device=x.device)
    period = 2 * n
    idx = idx % period
    idx = torch.where(idx >= n, period - 1 - idx, idx)
    return x.index_select(dim, idx)


def _check_image(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    check_finite(x, name)


def gaussian_downsample(x: torch.Tensor) -> torch.Tensor:
    """One pyramid step: Gaussian blur (sigma 2/3, symmetric borders) then 2× bilinear down-sizing.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` float.

    Returns
    -------
    torch.Tensor
        ``(N, C, ceil(H/2), ceil(W/2))``, same dtype and device; equals one level of
        ``skimage.transform.pyramid_gaussian(x, downscale=2)``.
    """
    _check_image(x, "x")
    n, c, h, w = x.shape
    taps = _gaussian_taps(x.dtype, x.device)
    y = x.reshape(n * c, 1, h, w)
    # separable blur: rows then columns
    y = F.conv2d(_symmetric_pad(y, _RADIUS, 3), taps.view(1, 1, 1, -1))
    y = F.conv2d(_symmetric_pad(y, _RADIUS, 2), taps.view(1, 1, -1, 1))
    y = y.reshape(n, c, h, w)
    out = (math.ceil(h / 2), math.ceil(w / 2))
    if h % 2 == 0 and w % 2 == 0:
        return F.avg_pool2d(y, 2)  # exact 2× bilinear with centres aligned
    # odd sizes: bilinear with the scale in/out (skimage's mapping); borders clamp
    return F.interpolate(y, size=out, mode="bilinear", align_corners=False)


def image_pyramid(x: torch.Tensor, levels: int = 3) -> List[torch.Tensor]:
    """Gaussian pyramid of ``x``, **coarse → fine** (the finest level, last, is ``x`` itself).

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` float.
    levels : int
        Number of levels (DeepDeblur and DeblurNet: 3, i.e. scales 1/4, 1/2, 1).

    Returns
    -------
    list of torch.Tensor
        ``levels`` tensors; level ``k`` from the end has size ``ceil(H/2**k) × ceil(W/2**k)``.
        Same order as the nets' ``forward_multiscale`` outputs, so
        ``multiscale_mse(net.forward_multiscale(b), image_pyramid(s))`` lines up.
    """
    _check_image(x, "x")
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    pyr = [x]
    for _ in range(levels - 1):
        pyr.append(gaussian_downsample(pyr[-1]))
    return pyr[::-1]


def multiscale_mse(
    outputs: Sequence[torch.Tensor], targets: Union[torch.Tensor, Sequence[torch.Tensor]]
) -> torch.Tensor:
    r"""Mean over scales of the per-scale mean squared error.

    .. math:: \frac1K \sum_{k=1}^K \frac{1}{c_k w_k h_k} \|L_k - S_k\|^2

    Nah et al.'s eq. 4 is half of this (its ``1/2K``, a constant factor); Noroozi et al.'s
    loss is the sum over the ``K = 3`` scales (``K`` times this, per element).

    Parameters
    ----------
    outputs : sequence of torch.Tensor
        The net's outputs ``(N, C, H_k, W_k)``, coarse → fine (``forward_multiscale``).
    targets : torch.Tensor or sequence of torch.Tensor
        Either the sharp image ``(N, C, H, W)`` of the finest scale — its
        :func:`image_pyramid` with ``len(outputs)`` levels is the target — or a list of
        targets with the same shapes as ``outputs``.

    Returns
    -------
    torch.Tensor
        0-d tensor.
    """
    if isinstance(outputs, torch.Tensor) or not isinstance(outputs, (list, tuple)) or len(outputs) == 0:
        raise TypeError("outputs must be a non-empty list/tuple of (N, C, H, W) tensors (coarse → fine), "
                        f"got {type(outputs).__name__}")
    for i, o in enumerate(outputs):
        _check_image(o, f"outputs[{i}]")
    if isinstance(targets, torch.Tensor):
        _check_image(targets, "targets")
        targets = image_pyramid(targets, len(outputs))
    elif not isinstance(targets, (list, tuple)):
        raise TypeError(f"targets must be a tensor or a list of tensors, got {type(targets).__name__}")
    if len(targets) != len(outputs):
        raise ValueError(f"targets must hold one tensor per output ({len(outputs)}), got {len(targets)}")
    total = None
    for i, (o, t) in enumerate(zip(outputs, targets)):
        _check_image(t, f"targets[{i}]")
        if o.shape != t.shape:
            raise ValueError(f"outputs[{i}] has shape {tuple(o.shape)} but its target has {tuple(t.shape)}")
        term = (o - t).square().mean()
        total = term if total is None else total + term
    return total / len(outputs)
