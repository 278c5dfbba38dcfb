"""The dot test: is an operator's adjoint its exact transpose?

For a linear ``K`` and its claimed adjoint ``Kᵀ``, ``⟨K x, y⟩ = ⟨x, Kᵀ y⟩`` for every ``x``
and ``y``; random images make a wrong adjoint show at once. Every operator of the library
passes to float64 round-off; run it on your own :class:`~pnpdeblur.operators.LinearOperator`
subclasses and compositions before handing them to a solver (CG assumes ``KᵀK`` symmetric).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import torch

from .._checks import check_flag
from ..backend import check_finite, check_float, resolve_device
from .base import LinearOperator

__all__ = ["dot_test"]


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.to(torch.float64)))


def _image_shape(K: LinearOperator, shape: Optional[Sequence[int]]) -> tuple:
    """The ``(N, C, H, W)`` to test on: ``shape`` checked, or filled in from ``K.image_shape``."""
    if shape is not None:
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 4 or any(
                isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
            raise ValueError(f"shape must be (N, C, H, W), four positive ints, got {shape!r}")
        return tuple(int(s) for s in shape)
    n, h, w = K.image_shape
    if h is None or w is None:
        raise ValueError(f"{K._label()} works on images of any size: pass shape=(N, C, H, W) to test it on")
    return (1 if n is None else n, 3, h, w)


def _check_output(out: Any, like: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.shape != like.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise AssertionError(f"{what} returned {got}, expected a tensor of the input's shape {tuple(like.shape)}")
    return out


def dot_test(
    K: LinearOperator,
    shape: Optional[Sequence[int]] = None,
    *,
    x: Optional[torch.Tensor] = None,
    y: Optional[torch.Tensor] = None,
    trials: int = 3,
    dtype: torch.dtype = torch.float64,
    device: Any = None,
    seed: int = 0,
    tol: Optional[float] = None,
    normal: bool = True,
) -> float:
    """Check that ``K.T`` is the exact adjoint of ``K`` (and ``K.normal`` is ``KᵀK``).

    For random images ``x`` and ``y`` (standard normal, seeded), the mismatch

    ``|⟨K x, y⟩ − ⟨x, Kᵀ y⟩| / max(‖K x‖ ‖y‖, ‖x‖ ‖Kᵀ y‖)``

    is 0 for an exact adjoint and bounded by 2 for any operator (Cauchy–Schwarz), so it reads as
    a relative error whatever the operator's scale; an exact adjoint gives about 1e-16 in
    float64 and 1e-7 in float32. With ``normal``, ``‖K.normal(x) − Kᵀ(K x)‖ / ‖Kᵀ(K x)‖``
    is measured too (operators may replace ``KᵀK`` by one fused pass, which CG then uses).

    Parameters
    ----------
    K : LinearOperator
        The operator; applied through its public calls on torch ``(N, C, H, W)`` tensors.
    shape : tuple of 4 ints, optional
        ``(N, C, H, W)`` of the test images. Default: ``K.image_shape`` with N = 1 where the
        operator takes any batch and C = 3; required for size-free operators (a ``Convolution``).
    x, y : torch.Tensor, optional
        Test images of that shape, instead of random ones (then one trial). Give both or neither.
    trials : int
        Number of random pairs; the worst mismatch is returned.
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device : str or torch.device, optional
        Where the images are made (default: the CPU).
    seed : int
        Seed of the random images (the same seed gives the same result).
    tol : float, optional
        When given, ``AssertionError`` (naming the inner products, the trial and the shape) if a
        mismatch exceeds it, e.g. ``1e-12`` for float64.
    normal : bool
        Also compare ``K.normal`` with ``Kᵀ(K ·)``.

    Returns
    -------
    float
        The largest mismatch over the trials (and the normal-operator check); NaN when the
        operator returned NaN or Inf.

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or value.
    AssertionError
        When a mismatch exceeds ``tol``, or when ``K`` or ``Kᵀ`` returns another shape.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> K = pd.MotionBlur(pd.data.random_motion_flow((32, 32), seed=0))
    >>> err = pd.operators.dot_test(K)            # 3 pairs of float64 images of K's size
    >>> bool(err < 1e-12)                         # an exact adjoint: about 1e-16
    True
    >>> box = pd.Convolution(np.ones((3, 3)) / 9)     # size-free: give the image shape
    >>> bool(pd.operators.dot_test(box, (1, 3, 16, 16), tol=1e-12) < 1e-12)
    True
    """
    if not isinstance(K, LinearOperator):
        raise TypeError(f"K must be a pnpdeblur LinearOperator, got {type(K).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    if isinstance(trials, bool) or not isinstance(trials, numbers.Integral) or trials < 1:
        raise ValueError(f"trials must be a positive int, got {trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0
                            or not math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0 or None, got {tol!r}")
    normal = check_flag(normal, "normal")
    if (x is None) != (y is None):
        raise ValueError("give both x and y, or neither")
    dev = resolve_device(device) or torch.device("cpu")
    if x is not None:
        pairs = []
        for name, t in (("x", x), ("y", y)):
            if not isinstance(t, torch.Tensor) or t.ndim != 4:
                raise TypeError(f"{name} must be a torch (N, C, H, W) tensor, got "
                                f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
            check_float(t, name)
            check_finite(t, name)
        if x.shape != y.shape:
            raise ValueError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if shape is not None and tuple(x.shape) != _image_shape(K, shape):
            raise ValueError(f"x has shape {tuple(x.shape)}, but shape={tuple(shape)} was given")
        pairs.append((x.detach(), y.detach()))
    else:
        size = _image_shape(K, shape)
        gen = torch.Generator().manual_seed(int(seed))
        # drawn in float64 on the CPU, so a seed gives the same images for every dtype and device
        pairs = [tuple(torch.randn(size, generator=gen, dtype=torch.float64).to(dtype=dtype, device=dev)
                       for _ in range(2)) for _ in range(trials)]
    worst = 0.0
    for i, (xi, yi) in enumerate(pairs):
        with torch.no_grad():
            kx = _check_output(K.apply(xi), xi, f"{K._label()} applied to x")
            kty = _check_output(K.adjoint(yi), yi, f"the adjoint of {K._label()}")
            lhs = float((kx.to(torch.float64) * yi.to(torch.float64)).sum())
            rhs = float((xi.to(torch.float64) * kty.to(torch.float64)).sum())
            scale = max(_norm(kx) * _norm(yi), _norm(xi) * _norm(kty))
            err = abs(lhs - rhs) / scale if scale != 0 else 0.0  # NaN stays NaN
            _fail_if(tol, err, f"{K._label()} fails the dot test: <K x, y> = {lhs:.17g} but <x, K.T y> = {rhs:.17g}",
                     i, xi)
            worst = _worse(worst, err)
            if normal:
                ktkx = _check_output(K.adjoint(kx), xi, f"the adjoint of {K._label()}")
                nx = _check_output(K.normal(xi), xi, f"{K._label()}.normal")
                ref = _norm(ktkx)
                diff = _norm(nx.to(torch.float64) - ktkx.to(torch.float64))
                err_n = diff / ref if ref > 0 else diff
                _fail_if(tol, err_n, f"{K._label()}.normal(x) differs from K.T(K x) by {diff:.3g} "
                         f"(|K.T K x| = {ref:.3g})", i, xi)
                worst = _worse(worst, err_n)
    return worst


def _worse(a: float, b: float) -> float:
    """The larger mismatch, NaN if either is (``max`` would keep a number over a NaN)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _fail_if(tol: Optional[float], err: float, what: str, trial: int, x: torch.Tensor) -> None:
    if tol is not None and not err <= tol:  # NaN fails too
        raise AssertionError(f"{what}: relative mismatch {err:.3g} > tol {tol:g} (trial {trial}, images of shape "
                             f"{tuple(x.shape)}, {str(x.dtype).removeprefix('torch.')})")
