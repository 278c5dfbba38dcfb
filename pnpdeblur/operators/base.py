"""The :class:`LinearOperator` base: apply, adjoint, normal operator and algebra.

Operators in pnpdeblur map images of shape ``(N, C, H, W)`` to images of the same
shape. They accept numpy, torch or cupy arrays and return the caller's type; the
computation itself always runs on torch tensors (see :mod:`pnpdeblur.backend`).

Layout at the public boundary: a 4-D array is ``(N, C, H, W)``; a 2-D array is a
single grey image ``(H, W)``; a 3-D numpy or cupy array is ``(H, W, C)``
(scikit-image's convention) and a 3-D torch tensor is ``(C, H, W)`` (torch's).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Tuple

import torch

from .._checks import check_flag
from ..backend import array_kind, check_float, from_torch, to_torch
from ..backend import check_finite as _check_finite

__all__ = ["LinearOperator", "Identity", "to_nchw"]


def to_nchw(x: torch.Tensor, kind: str, name: str = "x") -> Tuple[torch.Tensor, Callable]:
    """Return ``x`` as ``(N, C, H, W)`` and a function that restores the caller's layout."""
    if x.ndim == 4:
        return x, lambda t: t
    if x.ndim == 2:
        return x[None, None], lambda t: t[0, 0]
    if x.ndim == 3:
        if kind == "torch":
            return x[None], lambda t: t[0]
        return x.permute(2, 0, 1)[None], lambda t: t[0].permute(1, 2, 0)
    raise ValueError(
        f"{name} must have shape (N, C, H, W), (H, W) or a 3-D image, got shape {tuple(x.shape)}"
    )


def check_width(width: Any) -> int:
    """``width`` (pixels added on each side of a grid) as an int >= 0, else ValueError."""
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 0:
        raise ValueError(f"width must be an int >= 0 (pixels added on each side), got {width!r}")
    return int(width)


class LinearOperator:
    """A linear map on ``(N, C, H, W)`` images with an exact adjoint.

    Subclasses implement :meth:`_forward` and :meth:`_adjoint` on torch tensors of
    shape ``(N, C, H, W)`` and set ``image_shape`` to the ``(N, H, W)`` they need
    (an entry may be ``None`` for "any"; an operator with ``N == 1`` applies to
    every image of a batch).

    Algebra: ``A @ B`` (composition), ``A + B``, ``A - B``, ``a * A``, ``-A``,
    ``A.T`` (the adjoint as an operator), ``A.normal(x)`` (``AᵀA x``).
    ``A @ x`` with an array ``x`` applies the operator.
    """

    image_shape: Tuple[Optional[int], Optional[int], Optional[int]] = (None, None, None)

    # -- to implement -----------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        """``KᵀK x`` on an ``(N, C, H, W)`` tensor (what CG's x-step applies).

        Override where one fused pass is cheaper than ``_adjoint(_forward(x))``; an
        override must give the same values (to float rounding) and stay differentiable
        where that is. Scaled and composed operators pass it on to their parts.
        """
        return self._adjoint(self._forward(x))

    # -- unknown boundaries -----------------------------------------------------------
    def reach(self) -> int:
        """How far an output pixel reads the input: the largest ``|k|`` along either axis of
        any tap, in px (0 for a pointwise operator).

        An output pixel depends only on input pixels within this distance (per axis), so on a
        grid padded by it every observed pixel sees its whole kernel and never the border
        rule (:meth:`padded`, :func:`pnpdeblur.solvers.pad_problem`). Operators that cannot
        state it raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not state its reach")

    def padded(self, width: int) -> "LinearOperator":
        """This operator on the image grid enlarged by ``width`` px on each side.

        Per-pixel flows are extended by repeating their border vectors; a size-free operator
        (one PSF) is returned as it is. With ``width >= reach()``, applied to a larger scene
        cut to the padded grid, its outputs on the original grid are exactly those of the
        operator applied to the whole scene (they never read the padded grid's border).
        Operators that cannot be extended raise ``NotImplementedError``: compositions and
        adjoints, whose inner operator would read its flow in the margin.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be extended to a larger grid")

    # -- public -----------------------------------------------------------------------
    # ``check_finite`` follows scipy.linalg: the NaN/Inf scan of the input is on by default;
    # off, a call skips it (and, on a GPU, the device-to-host read that makes every checked
    # call wait for the GPU), and non-finite input gives non-finite output without an error.
    def apply(self, x: Any, *, check_finite: bool = True) -> Any:
        """Return ``K x`` in the type and layout of ``x``.

        ``check_finite=False`` skips the NaN/Inf check of ``x`` (shape and dtype are still
        checked): for tight loops on a GPU, where the check makes each call wait for the
        device; NaN or Inf in ``x`` then propagate to the result silently.
        """
        return self._call(x, self._forward, "x", check_finite)

    __call__ = apply

    def adjoint(self, y: Any, *, check_finite: bool = True) -> Any:
        """Return ``Kᵀ y`` (the exact transpose) in the type and layout of ``y``
        (``check_finite`` as for :meth:`apply`)."""
        return self._call(y, self._adjoint, "y", check_finite)

    def normal(self, x: Any, *, check_finite: bool = True) -> Any:
        """Return ``KᵀK x`` (``check_finite`` as for :meth:`apply`)."""
        return self._call(x, self._normal, "x", check_finite)

    @property
    def T(self) -> "LinearOperator":
        """The adjoint as an operator."""
        return _Adjoint(self)

    H = T  # for users coming from PyLops/deepinv

    def _label(self) -> str:
        """Short name of the operator for messages: its class, or the expression built from them."""
        return type(self).__name__

    def check_image(self, x: torch.Tensor, name: str = "x", check_finite: bool = True) -> None:
        """Raise unless ``x`` is a finite float ``(N, C, H, W)`` tensor this operator accepts
        (``check_finite=False``: finite or not)."""
        if x.ndim != 4:
            raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
        check_float(x, name)
        n, h, w = self.image_shape
        if (h is not None and x.shape[2] != h) or (w is not None and x.shape[3] != w):
            raise ValueError(
                f"{name} has spatial size {tuple(x.shape[2:])}, but {self._label()} "
                f"was built for (H, W) = ({h}, {w})"
            )
        if n is not None and n != 1 and x.shape[0] != n:
            raise ValueError(
                f"{name} has batch size {x.shape[0]}, but {self._label()} was built "
                f"for N = {n} (or use a batch of one operator for all images)"
            )
        if check_finite:
            _check_finite(x, name)

    def _call(self, x: Any, fn: Callable[[torch.Tensor], torch.Tensor], name: str, check_finite: bool) -> Any:
        check_finite = check_flag(check_finite, "check_finite")
        kind = array_kind(x, name)
        t, restore = to_nchw(to_torch(x, name), kind, name)
        self.check_image(t, name, check_finite)
        return from_torch(restore(fn(t)), kind)

    # -- algebra ----------------------------------------------------------------------
    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return _Composed(self, other)
        return self.apply(other)

    def __add__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _Sum(self, other)

    def __sub__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return _Sum(self, _Scaled(other, -1.0))

    def __mul__(self, a: Any) -> "LinearOperator":
        if isinstance(a, bool) or not isinstance(a, numbers.Real):
            return NotImplemented
        if not math.isfinite(float(a)):
            raise ValueError(f"an operator can only be scaled by a finite number, got {a!r}")
        return _Scaled(self, float(a))

    __rmul__ = __mul__

    def __neg__(self) -> "LinearOperator":
        return _Scaled(self, -1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(image_shape={self.image_shape})"


def _merge_shapes(a: LinearOperator, b: LinearOperator) -> Tuple:
    out = []
    for name, sa, sb in zip(("N", "H", "W"), a.image_shape, b.image_shape):
        if sa is not None and sb is not None and sa != sb:
            if name == "N" and 1 in (sa, sb):
                out.append(max(sa, sb))
                continue
            raise ValueError(
                f"cannot combine {a!r} and {b!r}: {name} differs ({sa} vs {sb})"
            )
        out.append(sa if sa is not None else sb)
    return tuple(out)


class Identity(LinearOperator):
    """The identity operator (any shape)."""

    def _forward(self, x):
        return x.clone()  # a copy, so the result never aliases the caller's array

    _adjoint = _forward

    def reach(self) -> int:
        return 0

    def padded(self, width: int) -> "LinearOperator":
        check_width(width)
        return self


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        self.op = op
        self.image_shape = op.image_shape

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    @property
    def T(self):
        return self.op

    def _label(self):
        return f"{self.op._label()}.T"

    def __repr__(self):
        return f"{self.op!r}.T"


class _Composed(LinearOperator):
    def __init__(self, a: LinearOperator, b: LinearOperator):
        self.a, self.b = a, b
        self.image_shape = _merge_shapes(a, b)

    def _forward(self, x):
        return self.a._forward(self.b._forward(x))

    def _adjoint(self, y):
        return self.b._adjoint(self.a._adjoint(y))

    def _normal(self, x):
        # (AB)ᵀ(AB) = Bᵀ (AᵀA) B: A's fused normal where it has one
        return self.b._adjoint(self.a._normal(self.b._forward(x)))

    def _label(self):
        return f"({self.a._label()} @ {self.b._label()})"

    def __repr__(self):
        return f"({self.a!r} @ {self.b!r})"


class _Sum(LinearOperator):
    def __init__(self, a: LinearOperator, b: LinearOperator):
        self.a, self.b = a, b
        self.image_shape = _merge_shapes(a, b)

    def _forward(self, x):
        return self.a._forward(x) + self.b._forward(x)

    def _adjoint(self, y):
        return self.a._adjoint(y) + self.b._adjoint(y)

    def reach(self) -> int:
        return max(self.a.reach(), self.b.reach())

    def padded(self, width: int) -> "LinearOperator":
        return _Sum(self.a.padded(width), self.b.padded(width))

    def _label(self):
        return f"({self.a._label()} + {self.b._label()})"

    def __repr__(self):
        return f"({self.a!r} + {self.b!r})"


class _Scaled(LinearOperator):
    def __init__(self, op: LinearOperator, a: float):
        self.op, self.a = op, a
        self.image_shape = op.image_shape

    def _forward(self, x):
        return self.a * self.op._forward(x)

    def _adjoint(self, y):
        return self.a * self.op._adjoint(y)

    def _normal(self, x):
        return (self.a * self.a) * self.op._normal(x)

    def reach(self) -> int:
        return self.op.reach()

    def padded(self, width: int) -> "LinearOperator":
        return _Scaled(self.op.padded(width), self.a)

    def _label(self):
        return f"{self.a} * {self.op._label()}"

    def __repr__(self):
        return f"{self.a} * {self.op!r}"
