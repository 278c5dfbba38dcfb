"""Helpers shared by the iterative solvers (input checks, prior calls, x-steps)."""
from __future__ import annotations

import inspect
import math
import numbers
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .._checks import check_flag, check_real
from .._images import UNIT_SCALE_MARGIN
from .._warn import warn_at_caller
from ..backend import array_kind, check_finite, check_float, to_torch
from ..operators.base import LinearOperator, to_nchw
from .cg import CGInfo, _cg_core, _ImplicitCG
from .fft import _fft_solve, _reg_power, supports_fft, uniform_transfer_function
from .preconditioners import make_preconditioner


def prepare_observation(y: Any, K: Any) -> Tuple[torch.Tensor, str, Callable]:
    """Return y as a checked ``(N, C, H, W)`` tensor, its kind and the layout restorer."""
    if not isinstance(K, LinearOperator):
        raise TypeError(
            f"K must be a pnpdeblur LinearOperator (e.g. MotionBlur, UniformBlur), got {type(K).__name__}"
        )
    kind = array_kind(y, "y")
    yt, restore = to_nchw(to_torch(y, "y"), kind, "y")
    check_float(yt, "y")
    K.check_image(yt, "y")  # shape, dtype and NaN/Inf
    return yt, kind, restore


def prepare_like(v: Any, yt: torch.Tensor, name: str, detach: bool = True) -> Optional[torch.Tensor]:
    """Convert an optional image argument to y's layout, dtype and device."""
    if v is None:
        return None
    t, _ = to_nchw(to_torch(v, name), array_kind(v), name)
    if t.shape != yt.shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)} (as N, C, H, W), expected {tuple(yt.shape)}")
    check_float(t, name)
    check_finite(t, name)
    t = t.detach() if detach else t
    return t.to(dtype=yt.dtype, device=yt.device)


def prepare_weights(weights: Any, yt: torch.Tensor) -> Optional[torch.Tensor]:
    """Check and convert the data-term weights of a splitting solver (None stays None).

    ``weights`` has y's shape in y's layout, or one channel (``(H, W)``, ``(N, 1, H, W)``)
    shared by every channel of y; bool (a mask) or float, finite and ≥ 0, not all zero.
    Returns an ``(N, C', H, W)`` tensor in y's dtype and device (C' = 1 or C), or None when
    every weight is 1 (the unweighted problem, solved exactly as without weights).
    """
    if weights is None:
        return None
    kind = array_kind(weights, "weights")
    t, _ = to_nchw(to_torch(weights, "weights"), kind, "weights")
    if t.dtype == torch.bool:
        t = t.to(yt.dtype)
    n, c, h, w = yt.shape
    if t.shape[2:] != (h, w) or t.shape[0] not in (1, n) or t.shape[1] not in (1, c):
        raise ValueError(
            f"weights has shape {tuple(t.shape)} (as N, C, H, W); expected y's shape {tuple(yt.shape)} "
            f"or one channel ({n}, 1, {h}, {w})"
        )
    check_float(t, "weights", image=False)
    check_finite(t, "weights")
    t = t.detach().to(dtype=yt.dtype, device=yt.device)
    if bool((t < 0).any()):
        raise ValueError(f"weights must be >= 0, got a minimum of {float(t.min()):g}")
    if not bool((t > 0).flatten(1).any(dim=1).all()):
        raise ValueError("weights are all zero for an image: no observation would be left to deblur it")
    if bool((t == 1).all()):
        return None
    return t


def check_noise_level(noise_level: Any) -> Optional[float]:
    """``noise_level`` as a float (None stays None); warns when it looks like grey levels."""
    if noise_level is None:
        return None

    v = check_real(noise_level, "noise_level", what=" (noise std for images in [0, 1])")
    if v > 1:
        warn_at_caller(
            f"noise_level={v:g} is larger than the whole [0, 1] image range: it is the noise std "
            f"of images in [0, 1] (for 8-bit grey levels divide by 255: {v / 255:.4g})",
        )
    return v


def check_image_range(y: torch.Tensor, name: str = "y") -> None:
    """Warn when ``y`` lies far outside [0, 1] (e.g. an 8-bit image given as 0-255 floats).

    The priors and the default schedules assume images in [0, 1]; noise can push values a
    little outside, so only values beyond [-0.5, 1.5] count.
    """
    lo, hi = float(y.detach().min()), float(y.detach().max())
    if hi > 1.0 + UNIT_SCALE_MARGIN or lo < -UNIT_SCALE_MARGIN:  # the photo entry points' rule, as a warning
        warn_at_caller(
            f"{name} has values in [{lo:.3g}, {hi:.3g}]; the priors and schedules assume images "
            f"in [0, 1] (divide 8-bit images by 255), so results will be poor",
        )


def prior_caller(prior: Any) -> Callable[[torch.Tensor, float, Dict[str, Any]], torch.Tensor]:
    """Wrap a prior (Prior protocol or plain ``f(z, sigma)``) into ``f(z, sigma, context)``."""
    if not callable(prior):
        raise TypeError(f"prior must be callable as prior(z, sigma, context=...), got {type(prior).__name__}")
    if isinstance(prior, type):  # TV for TV(): calling it would build a prior with z as its weight
        raise TypeError(f"prior must be a prior instance, got the class {prior.__name__}; "
                        f"pass {prior.__name__}() instead")
    takes_context = True
    try:
        sig = inspect.signature(prior)
        params = sig.parameters
        takes_context = "context" in params or any(
            p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
    except (TypeError, ValueError):
        pass

    def call(z: torch.Tensor, sigma: float, context: Dict[str, Any]) -> torch.Tensor:
        out = prior(z, sigma, context=context) if takes_context else prior(z, sigma)
        out = to_torch(out, "prior output")
        if out.shape != z.shape:
            raise ValueError(
                f"the prior returned shape {tuple(out.shape)}, expected the input shape {tuple(z.shape)}"
            )
        check_finite(out, "the prior's output")
        return out.to(device=z.device, dtype=z.dtype)

    return call


class XStep:
    """Solver for ``(KᵀWK + β I) x = KᵀW y + β v``: exact FFT for periodic uniform blurs, else CG.

    ``W`` is the diagonal of data-term weights (``weights``, None: the identity). The
    preconditioner, when given, is fitted to ``KᵀK + β I``; for weights in [0, 1] it remains
    an SPD approximation, which is all CG needs.
    """

    def __init__(
        self,
        K: LinearOperator,
        y: torch.Tensor,
        cg_iters: int,
        cg_tol: float,
        method: str,
        differentiable: bool = False,
        preconditioner: Any = None,
        weights: Optional[torch.Tensor] = None,
    ):
        if method not in ("auto", "cg", "fft"):
            raise ValueError(f"x_step must be 'auto', 'cg' or 'fft', got {method!r}")
        if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 1:
            raise ValueError(f"cg_iters must be a positive int, got {cg_iters!r}")
        if isinstance(cg_tol, bool) or not isinstance(cg_tol, (numbers.Real, torch.Tensor)):
            raise TypeError(f"cg_tol must be a real number, got {type(cg_tol).__name__}")
        if not (cg_tol > 0):
            raise ValueError(f"cg_tol must be positive, got {cg_tol!r}")
        if not math.isfinite(cg_tol):  # an infinite tolerance would stop CG before its first step
            raise ValueError(f"cg_tol must be finite, got {cg_tol!r}")
        use_fft = supports_fft(K) and weights is None if method == "auto" else method == "fft"
        if use_fft and not supports_fft(K):
            raise ValueError(f"x_step='fft' needs a periodic uniform blur, got {K!r}")
        if use_fft and weights is not None:
            raise ValueError("x_step='fft' cannot solve a weighted data term (KᵀWK is not diagonal in "
                             "Fourier); use x_step='cg' or 'auto'")
        self.K, self.y, self.weights = K, y, weights
        self.use_fft = use_fft
        self.cg_iters, self.cg_tol = cg_iters, cg_tol
        self.differentiable = differentiable = check_flag(differentiable, "differentiable")
        self.params = operator_tensors(K) if differentiable else []
        # checked (and built) even for the FFT x-step, which is exact and ignores it
        self.precond = make_preconditioner(preconditioner, K, y)
        if use_fft:
            self.tf = uniform_transfer_function(K, y.shape[-2:], y.dtype, y.device)
            self.rp = _reg_power("identity", y.shape[-2:], y.dtype, y.device)
        else:
            with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
                self.Kty = K._adjoint(y if weights is None else weights * y)

    @property
    def method(self) -> str:
        return "fft" if self.use_fft else "cg"

    def __call__(self, v: torch.Tensor, beta: float, x_warm: torch.Tensor) -> Tuple[torch.Tensor, Optional[CGInfo]]:
        if self.use_fft:
            return _fft_solve(self.y, self.tf, beta, v, self.rp), None
        K, w = self.K, self.weights
        if w is None:
            # KᵀK through _normal: one fused pass where the operator has one (motion blurs, numba)
            normal = getattr(K, "_normal", None) or (lambda t: K._adjoint(K._forward(t)))
        else:
            normal = lambda t: K._adjoint(w * K._forward(t))  # noqa: E731  KᵀWK
        A = lambda t: normal(t) + beta * t  # noqa: E731
        b = self.Kty + beta * v
        M = None
        if self.precond is not None:
            M = self._bind(self.precond, beta)
        if self.differentiable and torch.is_grad_enabled():
            holder: list = []
            opts = dict(x0=x_warm.detach(), tol=self.cg_tol, atol=0.0, maxiter=self.cg_iters, M=M)
            x = _ImplicitCG.apply(A, opts, holder, b, *self.params)
            return x, holder[0]
        return _cg_core(A, b, x_warm, self.cg_tol, 0.0, self.cg_iters, M)

    @staticmethod
    def _bind(pc: Callable, beta: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """``r -> pc(r, beta)`` with a shape check; no graph (it only steers CG)."""

        def apply(r: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                out = to_torch(pc(r, beta), "preconditioner(r, beta)")
            if out.shape != r.shape:
                raise ValueError(
                    f"preconditioner(r, beta) returned shape {tuple(out.shape)}, expected r's shape {tuple(r.shape)}"
                )
            return out.to(dtype=r.dtype, device=r.device)

        return apply


def operator_tensors(K: Any, _seen: Optional[set] = None) -> list:
    """Tensors requiring grad held by an operator (and the operators it is built from)."""
    seen = set() if _seen is None else _seen
    if id(K) in seen:
        return []
    seen.add(id(K))
    out = []
    for v in vars(K).values() if hasattr(K, "__dict__") else ():
        if isinstance(v, torch.Tensor) and v.requires_grad:
            out.append(v)
        elif isinstance(v, LinearOperator):
            out += operator_tensors(v, seen)
    return out


@torch.no_grad()
def relative_residual(
    K: LinearOperator, x: torch.Tensor, y: torch.Tensor, Kx: Optional[torch.Tensor] = None,
    weights: Optional[torch.Tensor] = None,
) -> float:
    """``‖K x − y‖ / ‖y‖`` (absolute where y = 0), without building a graph.

    Pass ``Kx`` when the caller has already computed ``K x`` (saves an operator call). With
    ``weights`` W both norms are weighted, ``‖W^½ (K x − y)‖ / ‖W^½ y‖``.
    """
    if Kx is None:
        Kx = K._forward(x)
    r, yw = Kx - y, y
    if weights is not None:
        root = weights.sqrt()
        r, yw = r * root, y * root
    num = torch.linalg.vector_norm(r)
    den = torch.linalg.vector_norm(yw)
    return float(num / den) if float(den) > 0 else float(num)
