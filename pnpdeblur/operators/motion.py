"""Per-pixel motion-blur operators: the line kernel (and its look-up-table form) and the
Reblur2Deblur two-segment kernel.

Conventions (docs/conventions.md): flow ``(N, 2, H, W)``, channel 0 = u (+x, right), channel 1 =
v (+y, down), in pixels. Gather form ``y(p) = sum_k w_p(k) x(p + k)`` with replicated
borders; the adjoint is the exact transpose (a scatter).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Tuple

import numpy as np
import torch

from ._flow import MAX_FLOW, as_flow, as_flow_pair, check_tau, pad_flow
from ._segment import FLOW_CACHE, _numba_ok, _resolve_path, prepare_numba, prepare_cupy, segment_blur
from .._vectors import longest_vector
from ..backend import to_host_numpy
from .base import LinearOperator, check_width

__all__ = [
    "MAX_FLOW",
    "LUT_RANGE",
    "MotionBlur",
    "TwoSegmentBlur",
    "motion_kernel",
    "motion_kernel_table",
]

#: The look-up table covers integer flows in [-LUT_RANGE, LUT_RANGE]² (33 × 33 entries).
LUT_RANGE = 16


def _segment_kernel(a, beta: float, radius: Optional[int] = None) -> np.ndarray:
    """Dense 2-D kernel of one segment, evaluated over its bounding box (reference form).

    ``K[radius + ky, radius + kx] = w(kx, ky)``, normalised to sum 1.
    """
    ax, ay = float(a[0]), float(a[1])
    L = math.hypot(ax, ay)
    need = int(math.ceil(L * (beta + 0.5) + 1.5)) if L > 0 else 0
    r = need if radius is None else int(radius)
    if r < need and L > 0:
        raise ValueError(f"radius={r} is too small for a segment of length {L:.3g}; need {need}")
    k = np.arange(-r, r + 1, dtype=np.float64)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    if L == 0:
        w = ((kx == 0) & (ky == 0)).astype(np.float64)
    else:
        ux, uy = ax / L, ay / L
        t = kx * ux + ky * uy
        s = np.abs(kx * uy - ky * ux)
        w = np.maximum(0.0, 1.0 - s) * np.clip(0.5 * L + 0.5 - np.abs(t - beta * L), 0.0, 1.0)
    return w / w.sum()


def line_kernel_reach(length: float) -> int:
    """How far (px, per axis) the line kernel of a motion vector of this length reaches:
    ``ceil(L/2 + 3/2)`` (half the segment, its anti-aliased end, one pixel across); 0 for L = 0.
    The same bound as the dense reference's radius (:func:`motion_kernel`)."""
    return int(math.ceil(length / 2 + 1.5)) if length > 0 else 0


def motion_kernel(m: Any, radius: Optional[int] = None) -> np.ndarray:
    """The normalised line kernel of one motion vector ``m = (u, v)`` as a 2-D array.

    Parameters
    ----------
    m : sequence of 2 floats
        Motion vector (u right, v down) in pixels: a tuple, list, numpy array or one-axis
        tensor of two finite numbers.
    radius : int, optional
        Half-size of the returned ``(2r+1, 2r+1)`` array; default: just large enough.

    Returns
    -------
    ndarray, float64, shape (2r+1, 2r+1)
        ``K[r + ky, r + kx]`` is the weight of offset ``(kx, ky)``; the kernel is
        point-symmetric, so it is the same in correlation and convolution form.

    Raises
    ------
    TypeError
        ``m`` is not a vector of numbers (a scalar, a string), ``radius`` is not an int.
    ValueError
        ``m`` does not hold exactly 2 numbers or holds NaN/Inf; ``radius`` is negative or
        smaller than the kernel needs.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> k = pd.operators.motion_kernel((6, 0))    # 6 px to the right
    >>> k.shape                                   # radius ceil(6/2 + 3/2) = 5
    (11, 11)
    >>> k[5] * 6                                  # the middle row: [.5 1 1 1 1 1 .5] / 6
    array([0. , 0. , 0.5, 1. , 1. , 1. , 1. , 1. , 0.5, 0. , 0. ])
    >>> round(float(k.sum()), 12), bool(np.array_equal(pd.operators.motion_kernel((-6, 0)), k))
    (1.0, True)
    >>> int(np.count_nonzero(pd.operators.motion_kernel((7, 0))))   # seven taps of 1/7
    7
    """
    return _segment_kernel(_motion_vector(m), 0.0, _kernel_radius(radius))


def _motion_vector(m: Any) -> Tuple[float, float]:
    """``m`` as two finite floats; a clear error for anything else (a scalar, 3 numbers, NaN)."""
    if isinstance(m, (torch.Tensor, np.ndarray)) or type(m).__module__.split(".")[0] == "cupy":
        m = to_host_numpy(m, "m")  # tensors and cupy arrays to the host, checked
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"m must be a motion vector (u, v) of 2 real numbers, got {m!r}") from None
    if a.ndim == 0:
        raise TypeError(f"m must be a motion vector (u, v) of 2 real numbers, got {m!r}")
    if a.shape != (2,):
        raise ValueError(f"m must be a motion vector (u, v) of 2 real numbers, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"m must be finite, got ({a[0]}, {a[1]})")
    return float(a[0]), float(a[1])


def _kernel_radius(radius: Any) -> Optional[int]:
    if radius is None:
        return None
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral):
        raise TypeError(f"radius must be an int or None, got {radius!r}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    return int(radius)


def motion_kernel_table(radius: int = 13) -> np.ndarray:
    """The Reblur2Deblur look-up table: line kernels for all integer flows in ±16 px.

    Returns
    -------
    ndarray, float64, shape (33, 33, 2*radius+1, 2*radius+1)
        ``table[v + 16, u + 16]`` is ``motion_kernel((u, v), radius)``.
    """
    radius = _kernel_radius(radius)
    if radius is None:
        raise TypeError("radius must be an int, got None")
    n = 2 * LUT_RANGE + 1
    table = np.empty((n, n, 2 * radius + 1, 2 * radius + 1))
    for iv in range(n):
        for iu in range(n):
            table[iv, iu] = motion_kernel((iu - LUT_RANGE, iv - LUT_RANGE), radius)
    return table


def _lut_segments(flow: torch.Tensor):
    """Corner flows and bilinear weights of the 33×33 table (weights differentiable in flow)."""
    with torch.no_grad():
        lo = torch.clamp(torch.floor(flow), -LUT_RANGE, LUT_RANGE - 1)
    frac = flow - lo  # in [0, 1]
    fu, fv = frac[:, 0], frac[:, 1]
    u0, v0 = lo[:, 0], lo[:, 1]
    vec = torch.stack(
        [torch.stack([u0 + du, v0 + dv], 1) for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1))], 1
    )
    mass = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], 1)
    return vec, mass


def _store_dtype(like: torch.Tensor) -> torch.dtype:
    """Storage type of the prepared segments: float32 for float32 images (the segments are
    cast to the image dtype first, so float32 storage loses nothing and halves the cache
    entry), float64 otherwise."""
    return torch.float32 if like.dtype == torch.float32 else torch.float64


class _SegmentOperator(LinearOperator):
    """Shared plumbing: flows held as given, cast to the image's dtype/device per call."""

    beta = 0.0
    path: Optional[str] = None

    def _segments(self, like: torch.Tensor):
        raise NotImplementedError

    def _check_batch(self, n: int):
        if self.image_shape[0] not in (1, n):
            raise ValueError(
                f"x has batch size {n}, but the flow has batch size {self.image_shape[0]} (expected 1 or {n})"
            )

    def _sources(self) -> tuple:
        """The flow tensors the segments are computed from (the cache's keys)."""
        raise NotImplementedError

    def _cache_tag(self, like: torch.Tensor) -> tuple:
        """Everything besides the flows' values that the segments depend on."""
        return (type(self).__name__, self.beta, like.dtype)

    def _cached_numba(self, like: torch.Tensor):
        """The flow's prepared numba arrays from :data:`FLOW_CACHE`, or None where not applicable.

        Applicable on the numba path when no gradient w.r.t. the flow is being
        recorded. Torch's version counter sees a torch flow's in-place changes but not a
        numpy array's (whose tensor view ``as_flow`` shares): entries of numpy flows are
        checked against a copy of the flow's values instead (``by_value``).
        """
        if like.device.type != "cpu":
            return None
        if self.path not in (None, "numba") or not _numba_ok():
            return None
        sources = self._sources()
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            return None
        return FLOW_CACHE.get(
            sources, self._cache_tag(like), lambda: prepare_numba(*self._segments(like), dtype=_store_dtype(like)),
            by_value=not self._flows_are_torch,
        )

    def _cached_cupy(self, like: torch.Tensor):
        """The flow's segments as the CUDA kernels read them (float64, contiguous, on ``like``'s
        device) from :data:`FLOW_CACHE`, or None where not applicable.

        Applicable where the CuPy path will run, under the same conditions as
        :meth:`_cached_numba`: a solve's hundreds of calls then skip casting the flow,
        building the segments and converting them to float64 (a few kernels and
        allocations per call, and a host-to-device copy for a flow held on the CPU).
        """
        if like.device.type != "cuda":
            return None
        if self.path not in (None, "cupy") or _resolve_path(like, self.path) != "cupy":
            return None
        sources = self._sources()
        if torch.is_grad_enabled() and any(t.requires_grad for t in sources):
            return None
        from . import _cupy

        try:
            _cupy.load(like.device.index or 0)
        except _cupy.CupyUnavailableError:
            return None  # segment_blur reports it once and takes the torch path
        return FLOW_CACHE.get(sources, self._cache_tag(like) + (str(like.device),),
                              lambda: prepare_cupy(*self._segments(like)), by_value=not self._flows_are_torch)

    def _run(self, x: torch.Tensor, transpose: bool) -> torch.Tensor:
        self._check_batch(x.shape[0])
        prep = self._cached_numba(x)
        if prep is not None:
            vec, mass = torch.from_numpy(prep.vec), torch.from_numpy(prep.mass)
            return segment_blur(x, vec, mass, self.beta, transpose, "numba", prepared=prep)
        geometry = self._cached_cupy(x)
        if geometry is not None:
            return segment_blur(x, geometry.vec, geometry.mass, self.beta, transpose, self.path)
        vec, mass = self._segments(x)
        return segment_blur(x, vec, mass, self.beta, transpose, self.path)

    def _forward(self, x):
        return self._run(x, False)

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        """``Kᵀ K x``; on the numba path without autograd, one fused pass (see ``_numba_kernels.normal``).

        The fused kernel evaluates each pixel's weights once for both the gather and the
        scatter and gives bitwise the result of ``_adjoint(_forward(x))``. Where a
        gradient must flow (w.r.t. ``x`` or a flow), or on the torch/CuPy paths, it is
        exactly that composition.
        """
        self._check_batch(x.shape[0])
        grad = torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in self._sources()))
        if grad or x.device.type != "cpu" or self.path not in (None, "numba") or not _numba_ok():
            return self._adjoint(self._forward(x))
        # every case _cached_numba declines was sent to the composition above; with the cache off
        # or full it still returns the flow's arrays, built for this call
        return self._cached_numba(x).normal(x, self.beta)

    def _adjoint(self, y):
        return self._run(y, True)

    def _cast(self, f: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return f.to(device=like.device, dtype=like.dtype)


class MotionBlur(_SegmentOperator):
    """Per-pixel linear motion blur ``K`` from a motion-flow field.

    At each pixel p with motion vector m = (u, v), L = |m|, the blurred value averages
    the sharp image along the segment from p − m/2 to p + m/2 (docs/conventions.md)::

        w(k) = max(0, 1 − |k × m|/L) · clip(L/2 + 1/2 − |k · m|/L, 0, 1),  normalised to 1

    m and −m give the same kernel; m = 0 is the identity. Weights are computed from the
    flow on the fly (no H×W×k×k tensor); the operator is differentiable in the image
    and in the flow (torch autograd).

    Parameters
    ----------
    flow : array, shape (N, 2, H, W) or (2, H, W), float32 or float64
        Motion vectors (u right, v down) in pixels, |u|, |v| <= ``MAX_FLOW`` (64).
        A flow with N = 1 blurs every image of a batch.
    path : {'numba', 'torch', 'cupy'}, optional
        Force an implementation. Default: numba for CPU tensors; for CUDA tensors the
        CuPy kernels when CuPy and a device are usable, else the torch path
        (:func:`pnpdeblur.backend.info` tells which).

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> flow = np.zeros((2, 32, 32)); flow[0] = 7.0           # 7 px to the right everywhere
    >>> K = pd.MotionBlur(flow)
    >>> x = np.random.default_rng(0).random((32, 32, 3))
    >>> y = K(x)                                  # (H, W, C) numpy in, numpy out
    >>> y.shape, y.dtype
    ((32, 32, 3), dtype('float64'))
    >>> bool(np.allclose(y[10, 10], x[10, 7:14].mean(axis=0)))  # seven taps of 1/7 along the row
    True
    >>> K.T(y).shape                              # the adjoint (a scatter), same layout
    (32, 32, 3)
    """

    def __init__(self, flow: Any, path: Optional[str] = None, *, _lut: bool = False):
        self._flows_are_torch = isinstance(flow, torch.Tensor)
        self.flow = as_flow(flow, "flow", LUT_RANGE if _lut else MAX_FLOW)
        self.lut_mode = _lut
        self.path = path
        n, _, h, w = self.flow.shape
        self.image_shape = (n, h, w)

    @classmethod
    def lut(cls, flow: Any, path: Optional[str] = None) -> "MotionBlur":
        """The Reblur2Deblur look-up-table variant.

        The kernel at pixel p is the bilinear interpolation of the table's line kernels
        (:func:`motion_kernel_table`) at the four integer flows around ``flow(p)``, so it
        is differentiable in the flow everywhere (piecewise linear). The table covers
        |u|, |v| <= 16 px; larger flows raise ``ValueError``. At integer flows it equals
        :class:`MotionBlur`.
        """
        return cls(flow, path, _lut=True)

    def _sources(self):
        return (self.flow,)

    def reach(self) -> int:
        """``ceil(L/2 + 3/2)`` for the longest vector L (half the segment, its anti-aliased end
        and one pixel across); with the look-up table, for the longest of the integer flows it
        interpolates between (each component rounded away from zero, plus one)."""
        f = self.flow.detach()
        if self.lut_mode:
            f = f.abs().floor() + 1.0
        return line_kernel_reach(longest_vector(f))

    def padded(self, width: int) -> "MotionBlur":
        return MotionBlur(pad_flow(self.flow, check_width(width)), self.path, _lut=self.lut_mode)

    def _cache_tag(self, like):
        return super()._cache_tag(like) + (self.lut_mode,)

    def _segments(self, like):
        f = self._cast(self.flow, like)
        if self.lut_mode:
            return _lut_segments(f)
        return f[:, None], torch.ones_like(f[:, :1])

    def __repr__(self):
        kind = "MotionBlur.lut" if self.lut_mode else "MotionBlur"
        return f"{kind}(flow of shape {tuple(self.flow.shape)})"


class TwoSegmentBlur(_SegmentOperator):
    """The Reblur2Deblur per-pixel kernel from the flows to the next and previous frames.

    Half of the mass lies on the segment from p to p + τ·f_next, half on the segment
    from p to p + τ·f_prev, each with the anti-aliased weights of docs/conventions.md, normalised
    per half. With ``f_prev = -f_next`` and |τ·f_next| >= 1 this is the line kernel of
    ``m = 2τ·f_next``.

    Parameters
    ----------
    flow_next, flow_prev : array, shape (N, 2, H, W) or (2, H, W), float
        Flows from frame t's pixel grid to frames t+1 and t−1 (u right, v down), pixels.
    tau : float in (0, 1], default 1.0
        Fraction of the inter-frame motion covered on each side: Reblur2Deblur's
        "exposure cycle", which the paper sets to 1 (each half reaches the neighbouring
        frame's position). For frames whose exposures follow each other without a gap,
        the blur spans half-way to each neighbour: use 0.5.
    path : {'numba', 'torch', 'cupy'}, optional
        As for :class:`MotionBlur`.
    """

    beta = 0.5

    def __init__(self, flow_next: Any, flow_prev: Any, tau: float = 1.0, path: Optional[str] = None):
        self.tau = check_tau(tau)
        self._flows_are_torch = isinstance(flow_next, torch.Tensor) and isinstance(flow_prev, torch.Tensor)
        self.flow_next, self.flow_prev = as_flow_pair(flow_next, flow_prev)
        self.path = path
        n, _, h, w = self.flow_next.shape
        self.image_shape = (n, h, w)

    def _sources(self):
        return (self.flow_next, self.flow_prev)

    def reach(self) -> int:
        """``ceil(τ·L + 3/2)`` for the longest vector L of either flow (a half reaches from p
        to p + τ·f, plus its anti-aliased end and one pixel across)."""
        longest = max(longest_vector(self.flow_next), longest_vector(self.flow_prev))
        return int(math.ceil(self.tau * longest + 1.5)) if longest > 0 else 0

    def padded(self, width: int) -> "TwoSegmentBlur":
        width = check_width(width)
        return TwoSegmentBlur(pad_flow(self.flow_next, width), pad_flow(self.flow_prev, width), self.tau, self.path)

    def _cache_tag(self, like):
        return super()._cache_tag(like) + (self.tau,)

    def _segments(self, like):
        vec = self.tau * torch.stack([self._cast(self.flow_next, like), self._cast(self.flow_prev, like)], 1)
        mass = torch.full_like(vec[:, :, 0], 0.5)
        return vec, mass
