"""Blurred images from a sharp image and a Gong-style motion flow: ``y = K(flow) x + n``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_flag
from .._images import check_unit_scale
from .._repr import ArrayFieldsRepr
from ._utils import as_generator, is_finite_real
from .flows import random_motion_flow

if TYPE_CHECKING:
    import torch

__all__ = ["FlowBlurSample", "synthesize_flow_blur"]


@dataclass(repr=False)
class FlowBlurSample(ArrayFieldsRepr):
    """A synthetic (blurred, sharp, flow) triple.

    Attributes
    ----------
    blurred, sharp : numpy.ndarray
        ``(H, W, C)`` float32; ``blurred = MotionBlur(flow)(sharp) + noise`` (clipped to [0, 1]
        when ``clip=True``) on the colour channels; an alpha channel is ``sharp``'s, unchanged.
    flow : numpy.ndarray
        ``(2, H, W)`` float32 integer-valued canonical labels (u >= 0).
    noise_sigma : float
        Standard deviation of the added Gaussian noise.
    """

    blurred: np.ndarray
    sharp: np.ndarray
    flow: np.ndarray
    noise_sigma: float


def check_noise_sigma(noise_sigma: float | tuple[float, float]) -> None:
    """``ValueError`` unless ``noise_sigma`` is a finite std ``>= 0`` or a ``(lo, hi)`` range of them."""
    if isinstance(noise_sigma, (tuple, list)):
        if len(noise_sigma) != 2 or not all(map(is_finite_real, noise_sigma)) \
                or not 0 <= noise_sigma[0] <= noise_sigma[1]:
            raise ValueError(f"noise_sigma range must be (lo, hi) with 0 <= lo <= hi, got {noise_sigma!r}")
    elif not (is_finite_real(noise_sigma) and noise_sigma >= 0):
        raise ValueError(f"noise_sigma must be a non-negative float or a (lo, hi) range, got {noise_sigma!r}")


def synthesize_flow_blur(sharp: np.ndarray, preset: str | int = "23", noise_sigma: float | tuple[float, float] = 0.0,
                         flow: Any = None, clip: bool = True,
                         seed: int | np.random.Generator | torch.Generator | None = None,
                         **flow_kwargs: Any) -> FlowBlurSample:
    """Blur ``sharp`` with a random (or given) motion flow through :class:`pnpdeblur.operators.MotionBlur`.

    Parameters
    ----------
    sharp : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)`` float image in [0, 1]. With C = 4 the image is RGBA, as for
        the library's photo functions (``pd.deblur``, the nets' ``restore``): alpha is not light,
        so it is neither blurred nor noised nor clipped, and ``blurred`` carries it as given.
        Other channel counts are all blurred.
    preset : {"23", "46"}
        Flow label range (see :func:`pnpdeblur.data.random_motion_flow`).
    noise_sigma : float or (float, float)
        Gaussian noise standard deviation, or a range it is drawn from uniformly (finite,
        non-negative; NaN, Inf and bools raise ``ValueError``).
    flow : array, optional
        ``(2, H, W)`` flow to use instead of a random one.
    clip : bool
        Clip the noisy blurred image to [0, 1] (default). Then ``sharp`` must lie on that scale
        (up to the overshoot of noise, [-0.5, 1.5]; ``ValueError`` otherwise); with ``False``
        any scale is blurred as given.
    seed : int, numpy.random.Generator, torch.Generator or None
    **flow_kwargs
        Passed to :func:`random_motion_flow` (``max_len``, ``rotation_prob``, ...).

    Returns
    -------
    FlowBlurSample
        ``blurred``, ``sharp`` (float32 ``(H, W, C)``), ``flow`` (float32 ``(2, H, W)``) and the
        ``noise_sigma`` used.
    """
    from ..operators import MotionBlur

    rng = as_generator(seed)
    x = np.asarray(sharp)
    if not isinstance(sharp, np.ndarray) or x.dtype.kind != "f":
        raise TypeError(f"sharp must be a float numpy array, got {type(sharp).__name__} {getattr(x, 'dtype', '')}")
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"sharp must be (H, W) or (H, W, C), got shape {np.shape(sharp)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("sharp contains NaN or Inf")
    clip = check_flag(clip, "clip")
    if clip and x.size:  # the clip would turn a 0-255 float photo's blurred copy white
        check_unit_scale(float(x.min()), float(x.max()), "sharp",
                         "divide 8-bit images by 255, or pass clip=False for other scales")

    check_noise_sigma(noise_sigma)
    sigma = (float(rng.uniform(noise_sigma[0], noise_sigma[1])) if isinstance(noise_sigma, (tuple, list))
             else float(noise_sigma))
    h, w = x.shape[:2]
    if flow is None:
        flow = random_motion_flow((h, w), preset, rng, **flow_kwargs)
    f = np.asarray(flow, dtype=np.float32)
    if f.shape != (2, h, w):
        raise ValueError(f"flow must have shape (2, {h}, {w}), got {f.shape}")
    xf = x.astype(np.float32)
    # RGBA's alpha is coverage, not light: only the colour channels are exposed to the motion
    colour = xf[..., :3] if xf.shape[-1] == 4 else xf
    y = np.asarray(MotionBlur(f)(np.ascontiguousarray(colour)), dtype=np.float32).reshape(colour.shape)
    if sigma > 0:
        y = y + sigma * rng.standard_normal(y.shape).astype(np.float32)
    if clip:
        y = np.clip(y, 0.0, 1.0)
    if colour is not xf:
        y = np.concatenate((y, xf[..., -1:]), axis=-1)
    return FlowBlurSample(blurred=y, sharp=xf, flow=f, noise_sigma=sigma)
