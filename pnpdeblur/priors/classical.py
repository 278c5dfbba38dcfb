"""Classical priors as proximal maps / denoisers: Tikhonov and total variation.

Both follow the :class:`~pnpdeblur.priors.base.Prior` protocol: ``prior(z, sigma)``
denoises ``z`` at noise level ``sigma``; ``sigma = 0`` is the identity.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from .._checks import check_flag, check_real
from .._warn import warn_at_caller
from ..backend import check_finite, check_float
from .base import BasePrior

__all__ = ["Tikhonov", "TV", "tv_prox", "tv_norm"]


def _check_weight(weight: Any) -> None:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise TypeError(f"weight must be a real number, got {type(weight).__name__}")
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight must be a finite positive number, got {weight!r}")


# -- finite differences with a Neumann boundary (last forward difference is 0) ----------
def _grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of ``(N, C, H, W)`` -> ``(N, 2, C, H, W)`` (x-direction, y-direction)."""
    gx = torch.zeros_like(x)
    gy = torch.zeros_like(x)
    gx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    gy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.stack((gx, gy), dim=1)


def _grad_t(p: torch.Tensor) -> torch.Tensor:
    """Exact transpose of :func:`_grad` (minus the divergence)."""
    px, py = p[:, 0], p[:, 1]
    out = torch.zeros_like(px)
    out[..., :, :-1] -= px[..., :, :-1]
    out[..., :, 1:] += px[..., :, :-1]
    out[..., :-1, :] -= py[..., :-1, :]
    out[..., 1:, :] += py[..., :-1, :]
    return out


def _check_tv_args(x: Any, name: str, coupled: Any) -> None:
    """TypeError/ValueError naming the argument unless ``x`` is a float32/float64 ``(N, C, H, W)`` tensor and
    ``coupled`` a bool.

    A 3-D ``(C, H, W)`` tensor is refused rather than read as a batch of C grey images: that would
    silently turn colour (coupled) TV into channel-by-channel TV. Half precision is refused with
    :class:`TV`'s message (every prior takes float32/float64 only): ``tv_norm`` of a 512² photo
    overflows float16 to Inf, and ``tv_prox``'s default ``tol`` (1e-4) is below float16's resolution.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__} "
                        "(pnpdeblur.priors.TV()(image, sigma) takes numpy/cupy images in any layout)")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    check_float(x, name)  # float16 / bfloat16
    check_flag(coupled, "coupled")


def tv_norm(x: torch.Tensor, coupled: bool = True) -> torch.Tensor:
    """Isotropic total variation per sample of an ``(N, C, H, W)`` float32/float64 tensor -> shape (N,).

    ``coupled``: the gradient magnitude is taken jointly over the channels (colour TV) when
    True, per channel (and summed) when False. TypeError/ValueError for another input, and
    ValueError for NaN/Inf in ``x``.
    """
    _check_tv_args(x, "x", coupled)
    check_finite(x, "x")
    g = _grad(x)
    if coupled:
        return torch.sqrt((g**2).sum(dim=(1, 2))).flatten(1).sum(1)
    return torch.sqrt((g**2).sum(dim=1)).flatten(1).sum(1)


def tv_prox(
    z: torch.Tensor, tau: float, iters: int = 40, coupled: bool = True, tol: float = 1e-4
) -> torch.Tensor:
    """Proximal map of isotropic TV: ``argmin_x ½‖x − z‖² + τ TV(x)``.

    Fast gradient projection on the dual (Beck & Teboulle), vectorised over the
    whole batch; Neumann boundary. Tensors that need no gradient run the iterations in
    two fused passes each: numba on the CPU (:mod:`pnpdeblur.priors._tv_numba`), CUDA
    kernels through CuPy on a GPU (:mod:`pnpdeblur.priors._tv_cuda`); others (autograd,
    or a GPU without CuPy) in torch ops. All compute the same iterates, to rounding.

    Parameters
    ----------
    z : torch.Tensor, shape (N, C, H, W)
    tau : float
        Weight τ ≥ 0 of the TV term.
    iters : int
        Maximum dual iterations.
    coupled : bool
        Colour TV (gradient magnitude taken jointly over the channels) when True,
        channel-by-channel when False.
    tol : float
        Stop when the relative change of the dual variable falls below ``tol``.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``z``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument: ``z`` not a float32/float64 ``(N, C, H, W)`` tensor (half precision
        is refused as by :class:`TV`) or holding NaN/Inf, ``tau`` or ``tol`` negative or not
        finite, ``iters`` not a positive int.
    """
    _check_tv_args(z, "z", coupled)
    tau = check_real(tau, "tau")
    tol = check_real(tol, "tol")
    if isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 1:
        raise ValueError(f"iters must be a positive int, got {iters!r}")
    check_finite(z, "z")
    if tau == 0:
        return z.clone()
    fused = not (torch.is_grad_enabled() and z.requires_grad) and z.dtype in (torch.float32, torch.float64)
    if fused and z.device.type == "cpu":
        return _tv_prox_numba(z, float(tau), iters, coupled, tol)
    if fused and z.device.type == "cuda" and _cuda_kernels_usable():
        from ..operators._cupy import CupyUnavailableError
        from . import _tv_cuda

        try:
            return _tv_cuda.tv_prox_cuda(z, float(tau), iters, coupled, tol)
        except CupyUnavailableError as exc:  # NVRTC missing, say: the torch loop computes the same
            _warn_once(f"pnpdeblur: the CUDA kernels of the TV prox are unavailable, using the torch loop ({exc})")
    return _tv_prox_torch(z, tau, iters, coupled, tol)


_WARNED: set = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warn_at_caller(message)


def _cuda_kernels_usable() -> bool:
    from .. import backend

    return backend.cupy_available() and backend.cupy_kernel_error() is None


def _tv_prox_torch(z: torch.Tensor, tau: float, iters: int, coupled: bool, tol: float) -> torch.Tensor:
    """:func:`tv_prox` in torch ops: any device, differentiable through the iterations."""
    step = 1.0 / (8.0 * tau)
    p = torch.zeros((z.shape[0], 2) + tuple(z.shape[1:]), dtype=z.dtype, device=z.device)
    q = p
    t = 1.0
    for _ in range(iters):
        x = z - tau * _grad_t(q)
        pn = q + step * _grad(x)
        if coupled:
            nrm = torch.sqrt((pn**2).sum(dim=(1, 2), keepdim=True))
        else:
            nrm = torch.sqrt((pn**2).sum(dim=1, keepdim=True))
        pn = pn / nrm.clamp_min(1.0)
        tn = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        q = pn + ((t - 1.0) / tn) * (pn - p)
        with torch.no_grad():
            delta = float(torch.linalg.vector_norm(pn - p)) / max(float(torch.linalg.vector_norm(pn)), 1e-12)
        p, t = pn, tn
        if delta < tol:
            break
    return z - tau * _grad_t(p)


def _tv_prox_numba(z: torch.Tensor, tau: float, iters: int, coupled: bool, tol: float) -> torch.Tensor:
    """:func:`tv_prox` on the CPU without autograd: the same iterations in two fused passes each
    (:mod:`pnpdeblur.priors._tv_numba`), 2–4× faster than the torch loop at photo size."""
    from . import _tv_numba

    zn = z.detach().contiguous().numpy()
    scalar = zn.dtype.type  # scalars in the image dtype, as torch applies them
    n, c, h, w = zn.shape
    duals = tuple(np.zeros((n, 2, c, h, w), zn.dtype) for _ in range(4))
    x = np.empty_like(zn)
    dsq, nsq = np.empty(n * h), np.empty(n * h)
    step = scalar(1.0 / (8.0 * tau))

    def dual_step(p, q, mom, pn, qn):
        _tv_numba.dual_step(x, p, q, step, scalar(mom), bool(coupled), pn, qn, dsq, nsq)
        return float(dsq.sum()), float(nsq.sum())

    fgp_iterations(lambda q: _tv_numba.primal(zn, q, scalar(tau), x), dual_step, duals, iters, tol)
    return torch.from_numpy(x)


def fgp_iterations(primal: Callable, dual_step: Callable, duals: tuple, iters: int, tol: float) -> None:
    """The dual iterations of :func:`tv_prox` for the fused backends (numba, CUDA), which own the buffers.

    ``primal(q)`` writes ``x = z − τ ∇ᵀq`` into the backend's primal buffer;
    ``dual_step(p, q, mom, pn, qn)`` writes the projected gradient step into ``pn`` and its
    extrapolation ``pn + mom (pn − p)`` into ``qn`` and returns ``(Σ (pn − p)², Σ pn²)``.
    ``duals = (p, q, pn, qn)``, zero on entry, are swapped after each step; the last call is
    ``primal(p)``, so the primal buffer holds the result.
    """
    p, q, pn, qn = duals
    t = 1.0
    for _ in range(iters):
        primal(q)
        tn = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        sd, sn = dual_step(p, q, (t - 1.0) / tn, pn, qn)
        delta = math.sqrt(sd) / max(math.sqrt(sn), 1e-12)
        p, pn, q, qn, t = pn, p, qn, q, tn
        if delta < tol:
            break
    primal(p)


class TV(BasePrior):
    """Isotropic total-variation denoiser (the proximal map of TV).

    ``TV()(z, sigma)`` returns ``argmin_x ½‖x − z‖² + τ TV(x)`` with ``τ = weight · sigma``
    (a TV denoiser's best weight grows about linearly with the noise level).

    Parameters
    ----------
    weight : float
        τ per unit of sigma. The default 1.0 is a good Gaussian denoiser for natural
        images in [0, 1] and a good HQS prior with the default schedule.
    iters : int
        Maximum dual (FGP) iterations per call.
    coupled : bool
        Joint colour TV (True) or per channel.
    tol : float
        Relative dual-change tolerance.

    Examples
    --------
    A prior is a denoiser ``prior(z, sigma)``; the learned ones are called the same way
    (:class:`DnCNNPrior`, :class:`DRUNetPrior`: swap one for another in a solver):

    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> sharp = pd.data.sample_image("camera", 64)
    >>> noisy = (sharp + 0.1 * np.random.default_rng(0).standard_normal(sharp.shape)).astype(np.float32)
    >>> z = pd.priors.TV()(noisy, 0.1)            # one denoising step at sigma = 0.1
    >>> z.shape, z.dtype                          # the caller's layout and dtype
    ((64, 64, 1), dtype('float32'))
    >>> before = pd.metrics.psnr(noisy, sharp)                               # 20.0 dB
    >>> [bool(pd.metrics.psnr(prior(noisy, 0.1), sharp) > before + 5)        # 27.7, 29.3, 29.3 dB
    ...  for prior in (pd.priors.TV(), pd.priors.DnCNNPrior(), pd.priors.DRUNetPrior())]
    [True, True, True]
    """

    def __init__(self, weight: float = 1.0, iters: int = 40, coupled: bool = True, tol: float = 1e-4):
        _check_weight(weight)
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise ValueError(f"iters must be a positive int, got {iters!r}")
        coupled = check_flag(coupled, "coupled")
        self.weight = float(weight)
        self.iters = iters
        self.coupled = coupled
        self.tol = check_real(tol, "tol")

    def _denoise(self, z, sigma, context):
        return tv_prox(z, self.weight * sigma, self.iters, self.coupled, self.tol)

    def prox(self, z: torch.Tensor, tau: float) -> torch.Tensor:
        """The proximal map with an explicit weight τ (torch ``(N, C, H, W)`` in and out)."""
        return tv_prox(z, float(tau), self.iters, self.coupled, self.tol)


class Tikhonov(BasePrior):
    """Gaussian (quadratic) prior: ``R(x) = (weight/2) ‖D x‖²``.

    ``Tikhonov()(z, sigma)`` is the MAP (= MMSE) denoiser under that prior:
    ``x = (I + weight · sigma² · DᵀD)⁻¹ z``.

    Parameters
    ----------
    weight : float
        λ > 0. Defaults: 1 for ``'identity'`` (a mild shrinkage towards 0),
        200 for ``'gradient'`` (gradients of natural images have std ≈ 0.07).
    operator : {'identity', 'gradient'}
        ``D = I`` (ridge) or forward differences (smoothness, Neumann boundary, solved
        exactly with the FFT of the symmetrically extended image).
    """

    def __init__(self, weight: Optional[float] = None, operator: str = "gradient"):
        if operator not in ("identity", "gradient"):
            raise ValueError(f"operator must be 'identity' or 'gradient', got {operator!r}")
        if weight is None:
            weight = 1.0 if operator == "identity" else 200.0
        _check_weight(weight)
        self.weight = float(weight)
        self.operator = operator

    def _denoise(self, z, sigma, context):
        a = self.weight * sigma**2
        if self.operator == "identity":
            return z / (1.0 + a)
        h, w = z.shape[-2:]
        ext = torch.cat((z, z.flip(-1)), dim=-1)
        ext = torch.cat((ext, ext.flip(-2)), dim=-2)  # symmetric extension -> Neumann solve
        fy = torch.fft.fftfreq(2 * h, dtype=z.dtype, device=z.device).reshape(-1, 1)
        fx = torch.fft.rfftfreq(2 * w, dtype=z.dtype, device=z.device).reshape(1, -1)
        lap = (2 - 2 * torch.cos(2 * torch.pi * fy)) + (2 - 2 * torch.cos(2 * torch.pi * fx))
        out = torch.fft.irfft2(torch.fft.rfft2(ext) / (1.0 + a * lap), s=ext.shape[-2:])
        return out[..., :h, :w]
