"""Blind motion-flow estimation with SEN: any size, any layout, tiles for large photos.

Large images are cut into overlapping tiles (each a multiple of the network's stride) whose
flows are blended with weights that fall off linearly over the overlap. Motion vectors are
defined up to sign (``m`` and ``-m`` are the same blur), so two tiles may return opposite
representatives where they overlap; averaging ``(u, v)`` would then cancel them. The blend
is therefore done in the doubled-angle representation ``(L cos 2θ, L sin 2θ)``, which is the
same for ``m`` and ``-m`` and continuous, and decoded back to a canonical ``(u, v)`` with
``u >= 0``.

The test-time ensemble (``ensemble=True``, the default) runs SEN on the 8 flips and transposes of
the image (the symmetries of the pixel grid), maps each flow back to the image's frame, and
averages the 8 in the same doubled-angle representation. SEN's errors under these symmetries are
not the same, so they partly cancel: the flow MSE fell by 30–39 % on BSDS500 val photos and by
17–21 % on the held-out benchmark photos, and :func:`pnpdeblur.deblur` gained about 0.4 dB more
on blurred held-out photos (``benchmarks/RESULTS.md``, issue 10), for 8 network passes instead of 1.
"""
from __future__ import annotations

import functools
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F

from .._checks import check_flag
from .._images import as_image_batch
from .._tiling import window_starts as _starts
from .._warn import warn_at_caller
from ..backend import resolve_device
from ..nets.sen import SEN

__all__ = ["estimate_flow", "default_flow_model", "MIN_RELIABLE_SIZE"]

#: Below this many pixels on the short side (after ``scale``) SEN sees too little of the scene
#: to tell blur from texture, and :func:`estimate_flow` warns. Measured on held-out BSDS500 crops
#: at ±23 px with the shipped SEN's ensemble (benchmarks/RESULTS.md, RP-GAN, twenty-fourth
#: session): flow MSE 29.7 px² on 96² crops and 35.6 on 128², against 7.4 on 192² and 6.5 on
#: the 256² benchmark photos (the zero flow: 58).
MIN_RELIABLE_SIZE = 192


@functools.lru_cache(maxsize=1)
def default_flow_model() -> SEN:
    """The shipped SEN (:meth:`pnpdeblur.nets.SEN.pretrained`), loaded once per process."""
    return SEN.pretrained()


def _to_doubled(f: torch.Tensor) -> torch.Tensor:
    u, v = f[:, :1], f[:, 1:]
    length = torch.sqrt(u * u + v * v).clamp_min(1e-12)
    return torch.cat(((u * u - v * v) / length, 2 * u * v / length), 1)


def _from_doubled(d: torch.Tensor) -> torch.Tensor:
    a, b = d[:, :1], d[:, 1:]
    length = torch.sqrt(a * a + b * b)
    half = 0.5 * torch.atan2(b, a)  # in (-π/2, π/2]: u = L cos ≥ 0, the canonical representative
    return torch.cat((length * torch.cos(half), length * torch.sin(half)), 1)


# The 8 symmetries of the pixel grid (the dihedral group of the square), as
# (transpose, flip left-right, flip up-down), applied to the image in that order.
_SYMMETRIES = tuple((t, fh, fv) for t in (False, True) for fv in (False, True) for fh in (False, True))


def _estimate_symmetrised(model: SEN, x: torch.Tensor) -> torch.Tensor:
    """SEN's flow of ``x`` ``(N, C, H, W)`` averaged over :data:`_SYMMETRIES` (doubled angles)."""
    acc = torch.zeros(x.shape[0], 2, *x.shape[-2:], device=x.device)
    for transpose, flip_h, flip_v in _SYMMETRIES:
        dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]
        t = x.transpose(-1, -2) if transpose else x
        f = model.estimate(t.flip(dims) if dims else t).float()
        # back to the frame of t: pixels return to their place and a flip negates the
        # vector's component along the flipped axis
        f = f.flip(dims) if dims else f
        f = torch.cat((-f[:, :1] if flip_h else f[:, :1], -f[:, 1:] if flip_v else f[:, 1:]), 1)
        # back to the frame of x: a transpose swaps the axes, so u and v trade places
        if transpose:
            f = f.transpose(-1, -2).flip(1)
        acc += _to_doubled(f)
    return _from_doubled(acc / len(_SYMMETRIES))


def _memory_format(model: SEN) -> torch.memory_format:
    """The layout of the model's convolution weights: channels-last or the usual one."""
    w = next(p for p in model.parameters() if p.ndim == 4)
    cl = w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def _ramp(n: int, overlap: int, first: bool, last: bool, device) -> torch.Tensor:
    w = torch.ones(n, device=device)
    r = torch.arange(1, overlap + 1, device=device, dtype=torch.float32) / (overlap + 1)
    if overlap and not first:
        w[:overlap] = r
    if overlap and not last:
        w[-overlap:] = r.flip(0)
    return w


def _balanced_piece(size: int, tile: int, overlap: int, stride: int) -> int:
    """The shortest piece (a multiple of ``stride``, at most ``tile``) that covers an axis with as
    many pieces overlapping by ``overlap`` as ``tile``-long ones need.

    ``n`` pieces of length ``p`` cover ``size`` when ``n·(p − overlap) + overlap ≥ size``. With
    ``tile`` itself the last piece often hangs far over the others (1280 px in 768-px pieces:
    1536 px of network work); balanced, 2 pieces of 704 px do (1408 px).
    """
    if size <= tile:
        return size
    n = len(_starts(size, tile, tile - overlap))
    p = max(overlap + -(-(size - overlap) // n), 2 * overlap + stride)  # room for both ramps
    return min(tile, -(-p // stride) * stride)


def _estimate_tiled(model: SEN, x: torch.Tensor, tile: int, overlap: int, ensemble: bool) -> torch.Tensor:
    def estimate(piece: torch.Tensor) -> torch.Tensor:
        return _estimate_symmetrised(model, piece) if ensemble else model.estimate(piece).float()

    n, _, h, w = x.shape
    if h <= tile and w <= tile:
        return estimate(x)
    acc = torch.zeros(n, 2, h, w, device=x.device)
    norm = torch.zeros(1, 1, h, w, device=x.device)
    th, tw = (_balanced_piece(s, tile, overlap, model.stride) for s in (h, w))
    ys, xs = (_starts(s, t, t - overlap) if s > tile else [0] for s, t in ((h, th), (w, tw)))
    for i, y0 in enumerate(ys):
        wy = _ramp(th, overlap, i == 0, i == len(ys) - 1, x.device)
        for j, x0 in enumerate(xs):
            wx = _ramp(tw, overlap, j == 0, j == len(xs) - 1, x.device)
            f = estimate(x[:, :, y0:y0 + th, x0:x0 + tw])
            weight = (wy[:, None] * wx[None, :])[None, None]
            acc[:, :, y0:y0 + th, x0:x0 + tw] += _to_doubled(f) * weight
            norm[:, :, y0:y0 + th, x0:x0 + tw] += weight
    return _from_doubled(acc / norm)


def estimate_flow(
    image: Any,
    model: Optional[SEN] = None,
    *,
    scale: float = 1.0,
    ensemble: bool = True,
    tile: int = 768,
    overlap: int = 128,
    device: Union[str, torch.device, None] = None,
) -> Any:
    """Estimate the per-pixel motion flow of a blurred photo (no sharp image needed).

    Parameters
    ----------
    image : array
        Blurred photo: ``(H, W)`` / ``(H, W, C)`` numpy or cupy, ``(H, W)`` / ``(C, H, W)``
        torch, or an ``(N, C, H, W)`` batch; uint8 or float in [0, 1]; grey, RGB or RGBA
        (grey is replicated to RGB, alpha dropped).
    model : SEN, optional
        Flow network; default the shipped :meth:`pnpdeblur.nets.SEN.pretrained` (cached).
        It runs in eval mode (its train/eval mode is restored afterwards) and is moved to
        ``device`` in place (``model.to``), as the learned priors follow their input. On the
        CPU it runs channels-last (faster with oneDNN); its memory layout is restored
        afterwards.
    scale : float
        Estimate on the image resized by ``scale`` (≤ 1, area interpolation) and bring the
        flow back (bilinear, lengths ÷ ``scale``): for photos whose blur exceeds the
        network's range (±46 px for the shipped model). Default 1.
    ensemble : bool
        Average SEN's flows over the 8 flips and transposes of the image (see the module
        docstring): a better flow for 8 network passes. Default True; False runs SEN once.
    tile, overlap : int
        Images larger than ``tile`` pixels on a side are processed in pieces of at most
        ``tile``² overlapping by ``overlap`` pixels (blended; see the module docstring), so
        memory stays bounded (a 4000×3000 photo runs on a CPU with a few GB). Along each axis
        the pieces are as many as ``tile``-long ones would need, but only as long as covering
        it takes (a multiple of the network's stride): 1280 px go in two 704-px pieces.
    device : str or torch.device, optional
        Where the network runs (default: the image's device for torch/cupy, else the CPU).

    Returns
    -------
    flow : array
        ``(2, H, W)`` for one image, ``(N, 2, H, W)`` for a batch, in pixels of the input
        image; channel 0 u (+x, right), channel 1 v (+y, down); canonical (``u >= 0``, the
        sign of a line blur is undefined). The caller's array type and device; float32 (or
        the image's float dtype).

    Warns
    -----
    UserWarning
        When the image SEN sees (after ``scale``) is under :data:`MIN_RELIABLE_SIZE` pixels on
        its short side: the flow is returned, but it is unreliable.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> flow = np.zeros((2, 192, 192), np.float32); flow[0] = 12     # 12 px to the right
    >>> blurred = pd.MotionBlur(flow)(pd.data.sample_image("chelsea", 192))
    >>> est = pd.estimate_flow(blurred)
    >>> est.shape, est.dtype
    ((2, 192, 192), dtype('float32'))
    >>> bool(abs(np.median(est[0]) - 12) < 2), bool(abs(np.median(est[1])) < 2)   # (12.9, -0.4)
    (True, True)
    """
    x, boundary = as_image_batch(image, "image")
    if model is None:
        model = default_flow_model()
    if not isinstance(model, SEN):
        raise TypeError(f"model must be a pnpdeblur.nets.SEN, got {type(model).__name__}")
    ensemble = check_flag(ensemble, "ensemble")
    if isinstance(scale, bool) or not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ValueError(f"scale must be a number in (0, 1], got {scale!r}")
    for name, v in (("tile", tile), ("overlap", overlap)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int, got {v!r}")
    if tile < 2 * overlap + model.stride or tile % model.stride:
        raise ValueError(f"tile must be a multiple of {model.stride} and >= 2·overlap + {model.stride}, "
                         f"got tile={tile}, overlap={overlap}")
    dev = resolve_device(device) or x.device
    h, w = x.shape[-2:]
    xin = x.to(device=dev, dtype=torch.float32)
    cin = model.config["in_channels"]
    if xin.shape[1] == 1 and cin == 3:
        xin = xin.expand(-1, 3, -1, -1)
    elif xin.shape[1] != cin:
        raise ValueError(f"image has {xin.shape[1]} channels, the model takes {cin}")
    if scale != 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xin = F.interpolate(xin, size=size, mode="area")
    if min(xin.shape[-2:]) < MIN_RELIABLE_SIZE:
        seen = f"{xin.shape[-2]}×{xin.shape[-1]} px" + (f" (at scale={scale:g})" if scale != 1 else "")
        warn_at_caller(f"estimate_flow sees {seen}: below {MIN_RELIABLE_SIZE} px on the short side SEN has "
                       "too little context to tell blur from texture, and its flow is unreliable (on 128² "
                       "crops its error was about 5× that on 192² ones); estimate on a larger view of the "
                       "scene where you have one")
    was_training = model.training
    layout = _memory_format(model)
    model.eval()
    try:
        model.to(dev)
        if dev.type == "cpu":
            # oneDNN's convolutions run SEN ~1.4x faster channels-last (the same flow to float
            # rounding); the input may stay NCHW, the weights' layout decides
            model.to(memory_format=torch.channels_last)
        with torch.no_grad():
            flow = torch.cat([_estimate_tiled(model, xin[i:i + 1], tile, overlap, ensemble)
                              for i in range(xin.shape[0])])
    finally:
        model.train(was_training)
        model.to(memory_format=layout)  # the caller's model comes back in its own layout
    flow = flow.contiguous()
    if scale != 1:
        flow = _from_doubled(F.interpolate(_to_doubled(flow), size=(h, w), mode="bilinear",
                                           align_corners=False)) / scale
    return boundary.flow(flow.to(x.device))
