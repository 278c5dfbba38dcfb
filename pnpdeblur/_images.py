"""Photos at the public boundary: uint8 or float, grey or colour, numpy/torch/cupy, any layout.

The blind functions (:func:`pnpdeblur.estimate_flow`, :func:`pnpdeblur.deblur`) take what a
user reads from disk. :func:`as_image_batch` turns it into a checked ``(N, C, H, W)`` float
tensor in [0, 1] and returns a :class:`Boundary` that gives results back in the caller's type,
layout and dtype (uint8 in → uint8 out).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from .backend import array_kind, check_finite, from_torch, to_torch
from .operators.base import to_nchw

__all__ = ["Boundary", "as_image_batch", "check_unit_scale"]

#: Float photos must lie in [0, 1]; values up to this far outside are noise's overshoot (clipped),
#: beyond it the data are on another scale (a 0-255 or 0-65535 photo stored as floats).
UNIT_SCALE_MARGIN = 0.5

#: RGB weights of the library's grey conversion (ITU-R BT.709 luminance as rounded by
#: :func:`skimage.color.rgb2gray`): one copy for every function that turns a photo grey.
GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)

_SCALE_HINT = "divide 8-bit data by 255 and 16-bit data by 65535, or pass uint8"


@dataclass
class Boundary:
    """How to hand an ``(N, C, H, W)`` result back to the caller."""

    kind: str            #: 'numpy', 'torch' or 'cupy'
    dtype: torch.dtype   #: the caller's dtype (uint8 or float)
    restore: Callable[[torch.Tensor], torch.Tensor]  #: (N, C, H, W) → caller's layout
    single: bool         #: the caller gave one image, not a batch

    def image(self, t: torch.Tensor) -> Any:
        """An image batch ``(N, C, H, W)`` → clipped to [0, 1], the caller's type, layout and dtype."""
        t = t.clamp(0.0, 1.0)
        t = torch.round(t * 255.0).to(torch.uint8) if self.dtype == torch.uint8 else t.to(self.dtype)
        return from_torch(self.restore(t), self.kind)

    def flow(self, f: torch.Tensor) -> Any:
        """A flow batch ``(N, 2, H, W)`` → ``(2, H, W)`` for one image, else ``(N, 2, H, W)``.

        Float flows keep the caller's float dtype; for uint8 images they are float32.
        """
        f = f[0] if self.single else f
        return from_torch(f.to(self.dtype if self.dtype.is_floating_point else torch.float32), self.kind)


def as_float_batch(image: Any, name: str,
                   uint8_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, Callable, str]:
    """``image`` as a finite float ``(N, C, H, W)`` tensor with its values as given.

    For functions that measure an image rather than restore it (noise estimates, clipping
    masks): any layout of :func:`as_image_batch`, uint8 divided by 255 (in ``uint8_dtype``),
    float kept as it is — no range check and no clipping, which would bias a measurement.
    Returns the tensor, the function that restores the caller's layout, and the array kind.
    TypeError for a non-array or another dtype, ValueError for another shape or NaN/Inf.
    """
    kind = array_kind(image, name)
    t = to_torch(image, name)
    if t.dtype == torch.uint8:
        t = t.to(uint8_dtype) / 255.0
    elif not t.is_floating_point():
        raise TypeError(f"{name} must be uint8 or float, got dtype {image.dtype}")
    t4, restore = to_nchw(t, kind, name)
    check_finite(t4, name)
    return t4, restore, kind


def as_image_batch(image: Any, name: str = "image") -> tuple[torch.Tensor, Boundary]:
    """Check and convert a photo to ``(N, C, H, W)`` float in [0, 1] on its device.

    Accepts ``(H, W)``, ``(H, W, C)`` numpy/cupy, ``(H, W)``, ``(C, H, W)`` torch and
    ``(N, C, H, W)`` of any kind; C is 1, 3 or 4 (an alpha channel is dropped and comes back
    opaque); dtype uint8 (÷255) or float32/float64 (float16 is promoted to float32; values
    a little outside [0, 1], as noise leaves them, are clipped). Raises TypeError for a
    non-array or another dtype, ValueError for an empty array, a wrong shape, NaN/Inf or
    float values beyond [-0.5, 1.5] (a 0-255 photo given as floats).
    """
    kind = array_kind(image, name)
    t = to_torch(image, name)
    if t.dtype != torch.uint8 and not t.is_floating_point():
        # the hint fits integer photos of more than 8 bits (16-bit PNGs are read as int32 by PIL);
        # bool is one byte, so only complex needs excluding
        wide_int = not t.is_complex() and t.element_size() > 1
        hint = " (divide 16-bit images by 65535 first)" if wide_int else ""
        raise TypeError(f"{name} must be uint8 or float, got dtype {image.dtype}{hint}")
    if t.ndim not in (2, 3, 4):
        raise ValueError(f"{name} must be (H, W), (H, W, C) / (C, H, W) or (N, C, H, W), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    x, restore = to_nchw(t, kind, name)
    if x.shape[1] not in (1, 3, 4):
        raise ValueError(f"{name} must have 1, 3 or 4 channels, got {x.shape[1]} (shape {tuple(t.shape)}; "
                         "numpy/cupy colour images are (H, W, C), torch ones (C, H, W))")
    if t.dtype == torch.uint8:
        x = x.to(torch.float32) / 255.0
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    # detached: float() of a tensor that requires grad warns
    check_unit_scale(*(float(v) for v in torch.aminmax(x.detach())), name)
    if x.shape[1] == 4:
        x = x[:, :3]
        inner = restore
        # opaque alpha in the dtype restore sees: 255 for uint8 results (Boundary.image converts
        # before restoring), 1.0 for float ones
        restore = lambda r: inner(torch.cat(  # noqa: E731
            (r, torch.full_like(r[:, :1], 255 if r.dtype == torch.uint8 else 1)), 1))
    out_dtype = t.dtype if t.dtype in (torch.uint8, torch.float32, torch.float64) else torch.float32
    return x.clamp(0.0, 1.0).contiguous(), Boundary(kind, out_dtype, restore, t.ndim < 4)


def check_unit_scale(lo: float, hi: float, name: str, hint: str = _SCALE_HINT) -> None:
    """Raise ``ValueError`` naming ``name`` unless float values in ``[lo, hi]`` are on the [0, 1] scale.

    Clipping would silently turn a 0-255 float photo into a white one; a little overshoot
    (noise, up to :data:`UNIT_SCALE_MARGIN`) is the caller's to clip. ``hint`` says how to fix it.
    """
    if hi > 1.0 + UNIT_SCALE_MARGIN or lo < -UNIT_SCALE_MARGIN:
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1] ({hint})")

