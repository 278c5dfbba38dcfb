"""Data-term weights for the splitting solvers: which observed pixels to trust.

The solvers' data term ``½ Σ w (K x − y)²`` assumes the linear model ``y = K x + n``. A
pixel the sensor clipped (a light, a specular highlight, a white sky) does not follow it:
its true value ``K x`` is above what was recorded, and fitting it anyway spreads ringing
over everything the blur links it to. Weighting such pixels by 0 removes them from the
data term (the outlier handling of Cho et al. 2011 and Whyte et al. 2014, in its simplest,
hard form); the pixels that were recorded unclipped still constrain the sharp image,
including the bright pixels near a clipped region, and the prior fills in the rest.

The same weights express an **unknown boundary**. A photo is a crop of a larger scene, and
the blur carried light from outside the frame into its border pixels; an operator that
replicates (or reflects, or wraps) the border instead explains those pixels wrongly, and the
deconvolution rings inward from every side. Solving for a sharp image ``width`` px larger on
each side, with the blurred image padded by the same amount and weight 0 on the padding,
fits exactly the pixels that were observed, each through its whole kernel (the
masked data term of Reeves 2005 and Almeida & Figueiredo 2013): :func:`pad_boundary` builds
the padded observation and weights, :func:`crop_boundary` cuts the result back.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .._images import as_float_batch
from .._vectors import longest_vector
from ..backend import array_kind, check_finite, from_torch, to_torch
from ..operators.base import LinearOperator, check_width, to_nchw
from ._common import prepare_weights
from ..operators.motion import line_kernel_reach

__all__ = ["saturation_weights", "DEFAULT_SATURATION", "pad_problem", "pad_boundary", "crop_boundary",
           "motion_blur_width"]

#: Observed values at or above this (images in [0, 1]) count as clipped: 8-bit 250–255.
#: Below 1 because JPEG coding and demosaicing spread a clipped region's edge a few levels
#: down (benchmarks/RESULTS.md, "Saturated pixels").
DEFAULT_SATURATION = 0.98


def saturation_weights(y: Any, threshold: float = DEFAULT_SATURATION, margin: int = 0) -> Any:
    """0/1 weights that leave clipped (saturated) pixels out of a solver's data term.

    Parameters
    ----------
    y : array
        The observed image: ``(H, W)``, ``(H, W, C)`` numpy/cupy, ``(C, H, W)`` torch or
        ``(N, C, H, W)``; float in [0, 1] or uint8 (compared as ``y / 255``).
    threshold : float
        A channel value at or above it is taken as clipped (default
        :data:`DEFAULT_SATURATION`). Each channel is judged alone: a red light clips the red
        channel first.
    margin : int
        Also leave out pixels within ``margin`` px (a square neighbourhood) of a clipped
        one in the same channel, for sensors whose clipping bleeds into its neighbours.

    Returns
    -------
    array
        Weights of ``y``'s shape, type, layout and device: 1.0 for a pixel to trust, 0.0 for
        one to leave out; float32 for uint8 input, else ``y``'s dtype. Pass them as
        ``weights`` to :func:`~pnpdeblur.solvers.hqs` or :func:`~pnpdeblur.solvers.admm`.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> pd.solvers.saturation_weights(np.array([[0.2, 0.99], [1.0, 0.5]], np.float32))
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    >>> pd.solvers.saturation_weights(np.uint8([[100, 255]]))      # uint8: compared as y / 255
    array([[1., 0.]], dtype=float32)

    In a solve, a blurred photo whose highlights were clipped by the sensor:

    >>> flow = np.zeros((2, 32, 32), np.float32); flow[0] = 5
    >>> K = pd.MotionBlur(flow)
    >>> y = np.minimum(1.5 * K(pd.data.sample_image("camera", 32)), 1)   # over-exposed
    >>> w = pd.solvers.saturation_weights(y)
    >>> round(float(1 - w.mean()), 2)                              # the share left out
    0.28
    >>> x = pd.solvers.hqs(y, K, pd.priors.TV(), noise_level=0.01, weights=w).x
    >>> x.shape
    (32, 32, 1)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1] (images in [0, 1]), got {threshold!r}")
    if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    t4, restore, kind = as_float_batch(y, "y")
    clipped = t4 >= threshold
    if margin > 0 and bool(clipped.any()):
        k = 2 * margin + 1
        clipped = F.max_pool2d(clipped.to(torch.float32), k, stride=1, padding=margin) > 0
    return from_torch(restore((~clipped).to(t4.dtype)), kind)


def motion_blur_width(flow: Any) -> int:
    """How far a :class:`~pnpdeblur.MotionBlur` of ``flow`` reaches: the padding it needs.

    A line kernel of length L has taps up to ``ceil(L/2 + 3/2)`` px from its pixel (half the
    segment, the half-pixel anti-aliased end and the one-pixel width across it), so a sharp
    image larger by this on each side holds every pixel that any observed pixel averages.

    Parameters
    ----------
    flow : array
        Motion flow, ``(2, H, W)`` or ``(N, 2, H, W)``, numpy/cupy/torch, in pixels.

    Returns
    -------
    int
        ``ceil(L_max/2 + 3/2)`` for the longest vector ``L_max`` of the flow; 0 for a zero flow.
    """
    t = to_torch(flow, "flow")
    if t.ndim not in (3, 4) or t.shape[-3] != 2:
        raise ValueError(f"flow must have shape (2, H, W) or (N, 2, H, W), got {tuple(t.shape)}")
    check_finite(t, "flow")
    return line_kernel_reach(longest_vector(t, dim=t.ndim - 3))  # in float64, whatever the flow's dtype


def pad_boundary(y: Any, width: int, weights: Any = None) -> tuple:
    """Pad an observed image for a solve with an unknown boundary; the weights that go with it.

    Parameters
    ----------
    y : array
        The observed (blurred) image: ``(H, W)``, ``(H, W, C)`` numpy/cupy, ``(C, H, W)``
        torch or ``(N, C, H, W)``; float.
    width : int
        Pixels added on each side: at least the operator's reach (for a
        :class:`~pnpdeblur.MotionBlur`, :func:`motion_blur_width` of its flow).
    weights : array, optional
        Data-term weights of ``y`` (e.g. :func:`saturation_weights`), ``y``'s shape or one
        channel, as the solvers take them (bool, or finite float ≥ 0 and not all zero);
        default all ones.

    Returns
    -------
    y_padded : array
        ``y`` with its border replicated ``width`` px outwards (the values there carry no
        weight; they only start the solver), ``y``'s type, layout, dtype and device.
    weights_padded : array
        The weights (or ones) padded with zeros, the shape of ``y_padded`` (one channel when
        ``weights`` is None or has one channel), float in ``y``'s dtype.

    Notes
    -----
    The operator must act on the padded grid (for a flow, pad it the same way, e.g.
    ``numpy.pad(flow, ((0, 0), (w, w), (w, w)), mode="edge")``); the sharp image is then
    ``crop_boundary(result, width)``.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> flow = np.zeros((2, 48, 48), np.float32); flow[0] = 6
    >>> y = pd.MotionBlur(flow)(pd.data.sample_image("camera", 48))
    >>> w = pd.solvers.motion_blur_width(flow)                    # ceil(6/2 + 3/2)
    >>> w
    5
    >>> y_pad, weights = pd.solvers.pad_boundary(y, w)
    >>> y_pad.shape, weights.shape, float(weights.sum())          # only the 48² observed pixels count
    ((58, 58, 1), (58, 58, 1), 2304.0)
    >>> K = pd.MotionBlur(np.pad(flow, ((0, 0), (w, w), (w, w)), mode="edge"))
    >>> res = pd.solvers.hqs(y_pad, K, pd.priors.TV(), noise_level=0.01, weights=weights)
    >>> pd.solvers.crop_boundary(res.x, w).shape
    (48, 48, 1)
    """
    width = check_width(width)
    kind = array_kind(y, "y")
    t4, restore = to_nchw(to_torch(y, "y"), kind, "y")
    if not t4.is_floating_point():
        raise TypeError(f"y must be a float image (convert uint8 with / 255), got dtype {t4.dtype}")
    if t4.numel() == 0:
        raise ValueError(f"y is empty (shape {tuple(getattr(y, 'shape', ()))})")
    check_finite(t4, "y")
    if weights is None:
        w4 = torch.ones_like(t4[:, :1])
        restore_w = restore
    else:
        prepare_weights(weights, t4)  # the solvers' checks: shape, bool or finite float >= 0, not all zero
        wkind = array_kind(weights, "weights")
        w4, restore_w = to_nchw(to_torch(weights, "weights"), wkind, "weights")
        w4 = w4.to(device=t4.device, dtype=t4.dtype)
    pad = (width,) * 4  # F.pad copies, also for width 0
    y_pad = F.pad(t4, pad, mode="replicate")  # the solver only starts from these values
    w_pad = F.pad(w4, pad)  # zeros: the padding is not observed
    return from_torch(restore(y_pad), kind), from_torch(restore_w(w_pad), kind)


def crop_boundary(x: Any, width: int) -> Any:
    """Cut ``width`` px off each side of ``x`` (the inverse of :func:`pad_boundary`'s padding).

    Parameters
    ----------
    x : array
        ``(H, W)``, ``(H, W, C)`` numpy/cupy, ``(C, H, W)`` torch or ``(N, C, H, W)``.
    width : int
        Pixels removed on each side.

    Returns
    -------
    array
        A view of ``x`` (same type, layout, dtype and device), ``2 * width`` smaller in height
        and width.
    """
    width = check_width(width)
    if not hasattr(x, "ndim") or x.ndim not in (2, 3, 4):
        raise ValueError(f"x must be an (H, W), (H, W, C), (C, H, W) or (N, C, H, W) image, got "
                         f"{type(x).__name__} with shape {getattr(x, 'shape', None)}")
    channels_last = x.ndim == 3 and not isinstance(x, torch.Tensor)
    h, w = (x.shape[0], x.shape[1]) if x.ndim == 2 or channels_last else (x.shape[-2], x.shape[-1])
    if 2 * width >= min(h, w):
        raise ValueError(f"width={width} leaves nothing of an image of {h}x{w} pixels")
    if width == 0:
        return x
    if channels_last:
        return x[width:-width, width:-width]
    return x[..., width:-width, width:-width]


def pad_problem(y: Any, K: LinearOperator, weights: Any = None, width: Any = None) -> tuple:
    """A deblurring problem ``y ≈ K x`` set up for an unknown boundary, for any solver with weights.

    Parameters
    ----------
    y : array
        The observed image (layouts as :func:`pad_boundary`).
    K : LinearOperator
        The blur on ``y``'s grid; it must state its :meth:`~pnpdeblur.operators.LinearOperator.reach`
        and build its :meth:`~pnpdeblur.operators.LinearOperator.padded` version (every blur of
        the library does, and sums and multiples of them).
    weights : array, optional
        Data-term weights of ``y`` (e.g. :func:`saturation_weights`); kept inside.
    width : int, optional
        Pixels added on each side; default (and minimum) ``K.reach()``.

    Returns
    -------
    y_padded, K_padded, weights_padded, width
        Pass the first three to :func:`~pnpdeblur.solvers.hqs` / :func:`~pnpdeblur.solvers.admm`
        (``hqs(y_padded, K_padded, prior, weights=weights_padded)``) and cut the result back
        with ``crop_boundary(res.x, width)``.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> K = pd.Convolution(np.ones((1, 7)) / 7)                  # a 7-px horizontal streak
    >>> y = K(pd.data.sample_image("camera", 48))
    >>> y_pad, K_pad, w, r = pd.solvers.pad_problem(y, K)
    >>> r, y_pad.shape                                           # padded by K.reach() = 3 px
    (3, (54, 54, 1))
    >>> x = pd.solvers.crop_boundary(pd.solvers.hqs(y_pad, K_pad, pd.priors.TV(), noise_level=0.01, weights=w).x, r)
    >>> x.shape
    (48, 48, 1)
    """
    if not isinstance(K, LinearOperator):
        raise TypeError(f"K must be a pnpdeblur LinearOperator, got {type(K).__name__}")
    try:
        reach = K.reach()
        width = reach if width is None else check_width(width)
        if width < reach:
            raise ValueError(f"width={width} is less than the operator's reach ({reach} px): observed pixels would "
                             "see the padded grid's border rule")
        K_pad = K.padded(width)
    except NotImplementedError as e:
        raise TypeError(f"K ({type(K).__name__}) cannot be solved with an unknown boundary: {e}; pad by hand with "
                        "pad_boundary and an operator built on the padded grid") from None
    y_pad, w_pad = pad_boundary(y, width, weights)
    return y_pad, K_pad, w_pad, width
