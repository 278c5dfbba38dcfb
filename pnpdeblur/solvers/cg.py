"""Batched conjugate gradients with per-sample convergence and implicit differentiation.

``cg`` solves ``A x = b`` for a symmetric positive-definite ``A`` given as a
:class:`~pnpdeblur.operators.LinearOperator`, a plain callable or a dense matrix.
Every sample of the batch (the first axis of ``b``) has its own step sizes and its own
stopping test, so a batch of images solves exactly as each image would alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

from .._checks import check_flag, check_real
from .._repr import short_floats
from ..backend import array_kind, check_finite, check_float, from_torch, to_torch
from ..operators.base import LinearOperator, to_nchw

__all__ = ["cg", "CGInfo"]

TensorFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CGInfo:
    """Convergence report of :func:`cg`.

    Attributes
    ----------
    converged : bool
        True when every sample reached ``‖b − A x‖ ≤ max(tol·‖b‖, atol)``.
    iterations : int
        Iterations run (the largest over the batch).
    residual : list of float
        Final relative residual ``‖b − A x‖ / ‖b‖`` per sample (absolute where ``b = 0``).
    history : list of list of float
        Relative residual per sample, before the first and after every iteration.
    converged_per_sample : list of bool
    iterations_per_sample : list of int
    message : str
        Human-readable summary; says why a solve stopped without converging.
    """

    converged: bool
    iterations: int
    residual: List[float]
    history: List[List[float]] = field(default_factory=list)
    converged_per_sample: List[bool] = field(default_factory=list)
    iterations_per_sample: List[int] = field(default_factory=list)
    message: str = ""

    def __repr__(self) -> str:
        # the history (iterations × samples) is left out: a long solve's would fill the screen
        return (f"CGInfo(converged={self.converged}, iterations={self.iterations}, "
                f"residual={short_floats(self.residual)}, message={self.message!r})")

    def __getitem__(self, key: str) -> Any:  # dict-style access: info["converged"]
        return getattr(self, key)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product over all axes but the first -> shape (N,)."""
    return (a * b).flatten(1).sum(1)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _precondition(
    M: Optional[TensorFn], r: torch.Tensor, active: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``z = M r``, ``⟨r, z⟩`` and the active samples where M is not positive definite.

    ``⟨r, M r⟩ ≤ 0`` for ``r ≠ 0`` means M is not SPD: the caller stops those samples.
    Without M, ``z`` is ``r`` itself and no sample is flagged.
    """
    z = M(r) if M is not None else r
    rz = _dot(r, z)
    if M is None:
        return z, rz, torch.zeros_like(active)
    bad = active & ~(rz > 0)
    if bool(bad.any()) and not bool(torch.isfinite(rz).all()):
        raise ValueError("the preconditioner produced NaN or Inf values")
    return z, rz, bad


def _cg_core(
    A: TensorFn,
    b: torch.Tensor,
    x0: Optional[torch.Tensor],
    tol: float,
    atol: float,
    maxiter: int,
    M: Optional[TensorFn],
) -> Tuple[torch.Tensor, CGInfo]:
    """CG on torch tensors whose first axis is the batch (no checks, no autograd)."""
    n = b.shape[0]
    bnorm = torch.linalg.vector_norm(b.flatten(1), dim=1)
    scale = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
    thresh = torch.maximum(tol * bnorm, torch.full_like(bnorm, atol))
    if x0 is None:
        x = torch.zeros_like(b)
        r = b.clone()
    else:
        x = x0.clone()
        r = b - A(x)
    rnorm = torch.linalg.vector_norm(r.flatten(1), dim=1)
    if not bool(torch.isfinite(rnorm).all()):
        raise ValueError("A(x0) produced NaN or Inf values")
    history = [(rnorm / scale).tolist()]
    active = rnorm > thresh
    iters = torch.zeros(n, dtype=torch.long)
    breakdown = torch.zeros(n, dtype=torch.bool, device=b.device)
    pbreak = torch.zeros(n, dtype=torch.bool, device=b.device)  # breakdowns caused by M
    z, rz, mbad = _precondition(M, r, active)
    pbreak |= mbad
    breakdown |= mbad
    active = active & ~mbad
    p = z.clone()
    k = 0
    any_active = bool(active.any())
    while k < maxiter and any_active:
        k += 1
        Ap = A(p)
        pAp = _dot(p, Ap)
        # Everything the host needs from this iteration comes back in one transfer below: on a
        # GPU each device-to-host read waits for the queued kernels (one wait per iteration).
        bad = active & ~(pAp > 0)
        breakdown |= bad
        active = active & ~bad
        safe = torch.where(active, pAp, torch.ones_like(pAp))
        alpha = torch.where(active, rz / safe, torch.zeros_like(rz))
        a = _bcast(alpha, x)
        x = x + a * p
        r = r - a * Ap
        rnorm = torch.linalg.vector_norm(r.flatten(1), dim=1)
        rel = rnorm / scale
        flags = torch.stack([bad, torch.isfinite(pAp), torch.isfinite(rnorm), active, rnorm > thresh])
        host = torch.cat([flags.to(rel.dtype).flatten(), rel]).tolist()  # 0/1 flags are exact
        bad_h, pfinite_h, rfinite_h, active_h, above_h, rel_h = (host[i * n:(i + 1) * n] for i in range(6))
        if (any(bad_h) and not all(pfinite_h)) or not all(rfinite_h):
            raise ValueError("A produced NaN or Inf values during conjugate gradients")
        history.append(rel_h)
        iters += torch.tensor(active_h, dtype=torch.long)
        active = active & (rnorm > thresh)
        if not any(a_ and b_ for a_, b_ in zip(active_h, above_h)):
            break
        z, rz_new, mbad = _precondition(M, r, active)
        pbreak |= mbad
        breakdown |= mbad
        active = active & ~mbad
        any_active = True if M is None else bool(active.any())
        beta = torch.where(active, rz_new / torch.where(rz != 0, rz, torch.ones_like(rz)),
                           torch.zeros_like(rz))
        p = z + _bcast(beta, p) * p
        rz = rz_new
    conv = (rnorm <= thresh) & ~breakdown
    conv_list = conv.tolist()
    msg = []
    if all(conv_list):
        msg.append(f"converged in {k} iterations")
    else:
        if bool((breakdown & ~pbreak).any()):
            msg.append(
                f"samples {torch.nonzero(breakdown & ~pbreak).flatten().tolist()} broke down "
                "(pᵀAp ≤ 0: A is not positive definite)"
            )
        if bool(pbreak.any()):
            msg.append(
                f"samples {torch.nonzero(pbreak).flatten().tolist()} broke down "
                "(rᵀMr ≤ 0: the preconditioner is not positive definite)"
            )
        slow = (~conv & ~breakdown).nonzero().flatten().tolist()
        if slow:
            msg.append(
                f"samples {slow} did not reach tol={tol:g} in maxiter={maxiter} iterations "
                f"(relative residuals {[round(history[-1][i], 8) for i in slow]})"
            )
    info = CGInfo(
        converged=all(conv_list),
        iterations=k,
        residual=history[-1],
        history=history,
        converged_per_sample=conv_list,
        iterations_per_sample=iters.tolist(),
        message="; ".join(msg),
    )
    return x, info


class _ImplicitCG(torch.autograd.Function):
    """x = A⁻¹ b with the backward pass solving the adjoint system Aᵀλ = g (A symmetric)."""

    @staticmethod
    def forward(ctx, A, opts, holder, b, *params):
        with torch.no_grad():
            x, info = _cg_core(A, b, opts["x0"], opts["tol"], opts["atol"], opts["maxiter"], opts["M"])
        holder.append(info)
        ctx.A, ctx.opts = A, opts
        ctx.save_for_backward(x, *params)
        return x

    @staticmethod
    def backward(ctx, g):
        x, *params = ctx.saved_tensors
        o = ctx.opts
        with torch.no_grad():
            lam, _ = _cg_core(ctx.A, g, None, o["tol"], o["atol"], o["maxiter"], o["M"])
        grads_p: Sequence[Optional[torch.Tensor]] = [None] * len(params)
        need = [p.requires_grad for p in params]
        if any(need):
            with torch.enable_grad():
                Ax = ctx.A(x.detach())
                used = [p for p, nd in zip(params, need) if nd]
                got = torch.autograd.grad(Ax, used, grad_outputs=-lam, allow_unused=True)
            it = iter(got)
            grads_p = [next(it) if nd else None for nd in need]
        return (None, None, None, lam, *grads_p)


def _as_tensor_fn(A: Any, kind: str, like: torch.Tensor) -> TensorFn:
    if isinstance(A, LinearOperator):
        return A._forward
    if isinstance(A, (torch.Tensor,)) or (not callable(A) and _is_array(A)):
        mat = to_torch(A, "A").to(dtype=like.dtype, device=like.device)
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1] or mat.shape[1] != like.shape[-1]:
            raise ValueError(
                f"a matrix A must be square with size matching the last axis of b "
                f"({like.shape[-1]}), got shape {tuple(mat.shape)}"
            )
        return lambda v: v @ mat.T
    if not callable(A):
        raise TypeError(
            f"A must be a LinearOperator, a callable or a square matrix, got {type(A).__name__}"
        )
    # every callable's output is cast to b's dtype (a torch callable returning float64 for a
    # float32 b made x float64); for torch b the conversions are no-ops
    def apply(v: torch.Tensor) -> torch.Tensor:
        out = to_torch(A(from_torch(v, kind)), "A(x)")
        if out.shape != v.shape:  # else torch broadcasts or fails without naming A
            raise ValueError(f"A(x) returned shape {tuple(out.shape)}, expected x's shape {tuple(v.shape)}")
        return out.to(v.dtype)

    return apply


def _check_acts_per_sample(fn: TensorFn, b: torch.Tensor) -> None:
    """``ValueError`` when ``fn`` carries a probe in sample 0 of ``b``'s batch into another sample.

    A batched CG takes its step sizes per sample, which solves the system only when ``A`` is
    block-diagonal over the batch axis; one call on a pseudo-random probe (fixed seed) that is
    zero outside sample 0 checks that for sample 0: what reaches the other samples must stay below
    1e-5 of what stays in sample 0 (a per-sample ``A`` leaves them exactly 0). NaN/Inf are left
    to the iterations, which name them.
    """
    if b.shape[0] < 2:
        return
    gen = torch.Generator().manual_seed(0)
    probe = torch.zeros_like(b)
    probe[0] = torch.randn(b.shape[1:], generator=gen, dtype=torch.float64).to(b.dtype).to(b.device)
    with torch.no_grad():
        out = fn(probe)
    inside = float(torch.linalg.vector_norm(out[0]))
    leak = float(torch.linalg.vector_norm(out[1:]))
    if leak > 1e-5 * inside:  # relative to A's own scale; False for NaN
        raise ValueError(
            f"A mixes the samples along b's first axis (b has shape {tuple(b.shape)}): cg treats that axis as "
            "a batch of independent systems, so its answer would be wrong. Pass batched=False to solve b as "
            "one system (e.g. one (H, W, C) numpy image), or give A as a LinearOperator, which takes images "
            "in their own layouts")


def _as_preconditioner(M: Any, preconditioner: Any, kind: str) -> Optional[TensorFn]:
    """Check ``M``/``preconditioner`` and return a torch-tensor function (or None)."""
    if M is not None and preconditioner is not None:
        raise ValueError("give the preconditioner as preconditioner= or M=, not both")
    if M is not None:
        if not callable(M):
            raise TypeError(f"M must be a callable M(r) -> z, got {type(M).__name__}")
        return M
    if preconditioner is None:
        return None
    if not callable(preconditioner):
        raise TypeError(
            "preconditioner must be a callable preconditioner(r) -> z approximating A⁻¹ r "
            f"(or None), got {type(preconditioner).__name__}"
        )
    pc = preconditioner

    def apply(r: torch.Tensor) -> torch.Tensor:
        out = pc(r) if kind == "torch" else to_torch(pc(from_torch(r, kind)), "preconditioner(r)")
        if not isinstance(out, torch.Tensor):
            out = to_torch(out, "preconditioner(r)")
        if out.shape != r.shape:
            raise ValueError(
                f"preconditioner(r) returned shape {tuple(out.shape)}, expected r's shape {tuple(r.shape)}"
            )
        return out.to(dtype=r.dtype, device=r.device)

    return apply


def _is_array(a: Any) -> bool:
    try:
        array_kind(a)
        return True
    except TypeError:
        return False


def cg(
    A: Any,
    b: Any,
    x0: Any = None,
    tol: float = 1e-6,
    maxiter: int = 100,
    M: Optional[Callable] = None,
    *,
    preconditioner: Optional[Callable] = None,
    atol: float = 0.0,
    params: Optional[Sequence[torch.Tensor]] = None,
    implicit_grad: Optional[bool] = None,
    batched: bool = True,
) -> Tuple[Any, CGInfo]:
    """Solve ``A x = b`` by conjugate gradients, batched over the first axis of ``b``.

    Parameters
    ----------
    A : LinearOperator, callable or matrix
        Symmetric positive-definite map. A :class:`~pnpdeblur.operators.LinearOperator`
        is applied through its ``_forward`` (no per-iteration checks); a callable
        receives arrays of ``b``'s type and shape; a 2-D matrix of shape ``(n, n)``
        acts on the last axis of ``b``.
    b : array, shape (N, ...)
        Right-hand side (numpy, torch or cupy; float32 or float64). Typically an
        ``(N, C, H, W)`` image batch; ``(N, n)`` vectors work with a matrix ``A``; any shape
        with ``batched=False``.
        A 1-D ``b`` is a single sample. With a ``LinearOperator`` ``A``, ``b`` may also be
        one image in the layouts the operator's own calls take (``(H, W)``, ``(H, W, C)``
        numpy/cupy, ``(C, H, W)`` torch; ``x`` comes back in it) and must fit the operator's
        size (``ValueError`` otherwise).
    x0 : array, optional
        Initial guess, same shape as ``b`` (zeros if omitted).
    tol : float
        Relative tolerance: sample i stops when ``‖b_i − A x_i‖ ≤ max(tol·‖b_i‖, atol)``.
    maxiter : int
        Maximum number of iterations.
    M : callable, optional
        Older spelling of ``preconditioner`` whose callable receives and returns torch
        tensors (kept for compatibility; give at most one of the two).
    preconditioner : callable, optional
        ``preconditioner(r) -> z`` with ``z ≈ A⁻¹ r``: a symmetric positive-definite
        approximation of ``A⁻¹``, applied to residuals of ``b``'s type and shape
        ``(N, ...)`` (a torch callable is called on torch tensors; with a ``LinearOperator``
        ``A``, of shape ``(N, C, H, W)`` whatever ``b``'s layout). It changes how many
        iterations CG needs, never the solution: the stopping test is on the true residual
        ``‖b − A x‖``. Default None: plain CG. A preconditioner that is not positive
        definite (``rᵀ M r ≤ 0``) stops the affected samples with ``converged=False``.
    atol : float
        Absolute tolerance floor.
    params : sequence of torch.Tensor, optional
        Tensors ``A`` depends on; with autograd on, gradients reach them through the
        implicit function theorem (``∂L/∂θ = −λᵀ (∂A/∂θ) x`` with ``Aλ = ∂L/∂x``).
    implicit_grad : bool, optional
        Differentiate through the solve implicitly (one adjoint CG solve in backward
        instead of backpropagating through every iteration). Default: on whenever
        autograd is enabled and ``b`` or a tensor in ``params`` requires grad.
    batched : bool
        True (default): the first axis of ``b`` holds independent systems, each with its own
        step sizes and stopping test, so a callable ``A`` must act on each sample alone. A
        callable that mixes them (e.g. ``lambda z: K.T(K(z)) + z`` on one ``(H, W, C)``
        numpy image, whose first axis is a row of pixels) would get a wrong answer, so one
        extra call of ``A`` on a probe checks it and raises ``ValueError``. False: ``b`` is
        one system of any shape (``info`` then has one sample).

    Returns
    -------
    x : array
        Solution, same type, shape, dtype and device as ``b``.
    info : CGInfo
        ``converged``, ``iterations``, ``residual``, ``history`` and a ``message``.
        Non-convergence is reported here (and never raised).

    Raises
    ------
    TypeError, ValueError
        For non-float or mismatched inputs, NaN/Inf in ``b`` or ``x0``, non-positive
        ``tol``/``maxiter``, a negative or non-finite ``atol``, or when ``A`` produces NaN/Inf.

    Examples
    --------
    A 2×2 system (a 1-D ``b`` is one sample; CG is exact after n = 2 steps):

    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> x, info = pd.solvers.cg(np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([1.0, 2.0]))
    >>> np.round(x, 6)                            # the exact solution (1, 7) / 11
    array([0.090909, 0.636364])
    >>> info.converged, info.iterations
    (True, 2)

    The x-step of HQS, ``(KᵀK + βI) x = b``, with the operators composed matrix-free:

    >>> sharp = pd.data.sample_image("camera", 32)
    >>> flow = np.zeros((2, 32, 32), np.float32); flow[0] = 5
    >>> K = pd.MotionBlur(flow)
    >>> A = K.T @ K + 0.1 * pd.operators.Identity()
    >>> b = K.T(K(sharp)) + 0.1 * sharp           # made so that ``sharp`` solves it
    >>> x, info = pd.solvers.cg(A, b, tol=1e-7, maxiter=200)
    >>> x.shape, x.dtype, info.converged          # b's layout and dtype
    ((32, 32, 1), dtype('float32'), True)
    >>> bool(np.abs(x - sharp).max() < 1e-4)
    True
    """
    kind = array_kind(b, "b")
    bt = to_torch(b, "b")
    check_float(bt, "b")
    check_finite(bt, "b")
    if bt.ndim == 0:
        raise ValueError("b must have at least one axis, got a scalar")
    restore_layout = None
    if isinstance(A, LinearOperator):
        # an operator takes the image layouts of its own calls ((H, W), (H, W, C) numpy, (C, H, W)
        # torch); its _forward, which the iterations call unchecked, needs a (N, C, H, W) it accepts
        bt, restore_layout = to_nchw(bt, kind, "b")
        A.check_image(bt, "b", check_finite=False)
    batched = check_flag(batched, "batched")
    single = bt.ndim == 1 or not batched
    if single:
        bt = bt[None]

    atol = check_real(atol, "atol")
    # an infinite tol would stop CG before its first step and return x0 as the solution
    if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and 0 <= tol < math.inf) \
            or not (tol > 0 or atol > 0):
        raise ValueError(f"tol must be a finite non-negative number (with tol or atol > 0), got {tol!r}")
    if isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
    x0t = None
    if x0 is not None:
        x0t = to_torch(x0, "x0")
        if restore_layout is not None and x0t.ndim in (2, 3):
            x0t = to_nchw(x0t, array_kind(x0, "x0"), "x0")[0]
        if single:
            x0t = x0t[None]
        if x0t.shape != bt.shape:
            raise ValueError(f"x0 has shape {tuple(x0t.shape)}, expected b's shape {tuple(bt.shape)}")
        check_float(x0t, "x0")
        check_finite(x0t, "x0")
        x0t = x0t.to(dtype=bt.dtype, device=bt.device).detach()
    fn = _as_tensor_fn(A, kind, bt)
    M = _as_preconditioner(M, preconditioner, kind)
    if not single and not isinstance(A, LinearOperator) and callable(A) and not _is_array(A):
        _check_acts_per_sample(fn, bt)
    if single:
        inner = fn
        fn = lambda v: inner(v[0])[None]  # noqa: E731
        if M is not None:
            inner_m = M
            M = lambda v: inner_m(v[0])[None]  # noqa: E731
    params = list(params or [])
    use_implicit = implicit_grad
    if use_implicit is None:
        use_implicit = torch.is_grad_enabled() and (
            bt.requires_grad or any(p.requires_grad for p in params)
        )
    if use_implicit:
        holder: List[CGInfo] = []
        opts = dict(x0=x0t, tol=float(tol), atol=float(atol), maxiter=maxiter, M=M)
        x = _ImplicitCG.apply(fn, opts, holder, bt, *params)
        info = holder[0]
    else:
        x, info = _cg_core(fn, bt, x0t, float(tol), float(atol), maxiter, M)
    if single:
        x = x[0]
    if restore_layout is not None:
        x = restore_layout(x)
    return from_torch(x, kind), info
