r"""The Reblur2Deblur self-supervised loss (Chen et al., eq. 5–7).

A deblurred frame :math:`d(B_t)` is blurred again with the per-pixel kernel built from the
optical flows between consecutive deblurred frames, and compared with the observed frame::

    L_U = MSE( K(F₊, F₋) · d(B_t),  B_t )

Flow convention (docs/conventions.md): ``flow_next`` = F₊ and ``flow_prev`` = F₋ live on frame t's pixel
grid and point from a pixel p to its position in frame t+1 / t−1 (channel 0 = u, +x right;
channel 1 = v, +y down; pixels). :func:`pnpdeblur.estimation.optical_flow.optical_flow`
``(d_t, d_{t±1})`` returns exactly these.

Kernels
-------
``"two_segment"``
    :class:`pnpdeblur.TwoSegmentBlur` (F₊, F₋, τ): half of the mass on the segment p → p + τF₊,
    half on p → p + τF₋ (Chen's eq. 8, anti-aliased so it is differentiable in the flow).
``"lut"``
    :meth:`pnpdeblur.MotionBlur.lut` of the line kernel ``m = τ (F₊ − F₋)``: Chen's 33 × 33
    look-up table with bilinear interpolation between integer flows. A table indexed by one
    motion vector holds symmetric line kernels, so with two different flows it keeps the chord
    ``p + τF₋ → p + τF₊`` re-centred on p (the asymmetric part, i.e. acceleration, is dropped);
    in the 2-frame case ``m = 2τF₊`` and it is exact. The table covers ``|m_x|, |m_y| <= 16``
    px; larger motion is clamped to its edge (a table saturates), so its gradient there is 0.
``"warp"``
    :class:`pnpdeblur.WarpBlur`: the average of the frame warped to ``n`` positions along each
    flow (bilinear sampling), Chen's faster warp-based blur formation (table 3).

2-frame variant: ``flow_prev=None`` assumes F₋ = −F₊ (Chen §4.4), a line kernel of length
``2τ|F₊|`` centred on p. 3-frame variant: both flows given.
"""
from __future__ import annotations

import numbers
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..operators.base import LinearOperator
from ..operators.motion import LUT_RANGE, MotionBlur, TwoSegmentBlur
from ..operators.warp import WarpBlur

__all__ = ["REBLUR_KERNELS", "reblur", "reblur_operator", "reblur_loss"]

#: Names accepted by ``kernel=``.
REBLUR_KERNELS = ("two_segment", "lut", "warp")


def _check_tensor(x, name: str, channels: Optional[int] = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(N, {channels}, H, W) or ({channels}, H, W)" if channels else "(N, C, H, W) or (C, H, W)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def reblur_operator(
    deblurred: torch.Tensor,
    flow_next: torch.Tensor,
    flow_prev: Optional[torch.Tensor] = None,
    kernel: str = "two_segment",
    tau: float = 1.0,
    n: int = 8,
) -> Tuple[LinearOperator, torch.Tensor]:
    """The blur operator of the flows, and ``deblurred`` checked and made 4-D.

    Parameters
    ----------
    deblurred : torch.Tensor, (N, C, H, W) or (C, H, W), float32/float64
        Deblurred frames t.
    flow_next : torch.Tensor, (N, 2, H, W) or (2, H, W), float
        F₊: flow from frame t to frame t+1 on frame t's grid (u right, v down), pixels.
        An N of 1 applies to every image of the batch.
    flow_prev : torch.Tensor or None
        F₋: flow from frame t to frame t−1; ``None`` uses −F₊ (the 2-frame variant).
    kernel : {"two_segment", "lut", "warp"}
    tau : float in (0, 1]
        Chen's exposure cycle (1 in the paper; 0.5 for exposures without a gap).
    n : int
        Samples along each flow for ``kernel="warp"``.

    Returns
    -------
    op : LinearOperator
        ``TwoSegmentBlur``, ``WarpBlur`` or ``MotionBlur.lut`` of the flows (their dtype and
        device made those of ``deblurred``); ``op(x)`` is :func:`reblur`'s result and
        ``op.reach()`` how far it reads.
    x : torch.Tensor
        ``deblurred`` as ``(N, C, H, W)``.
    """
    if kernel not in REBLUR_KERNELS:
        raise ValueError(f"kernel must be one of {REBLUR_KERNELS}, got {kernel!r}")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not 0.0 < float(tau) <= 1.0:
        raise ValueError(f"tau must be a number in (0, 1], got {tau!r}")
    x = _check_tensor(deblurred, "deblurred")
    fn = _check_tensor(flow_next, "flow_next", 2)
    fp = None if flow_prev is None else _check_tensor(flow_prev, "flow_prev", 2)
    for name, f in (("flow_next", fn), ("flow_prev", fp)):
        if f is None:
            continue
        if f.shape[2:] != x.shape[2:]:
            raise ValueError(f"{name} has spatial size {tuple(f.shape[2:])}, but deblurred has {tuple(x.shape[2:])}")
        if f.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"{name} has batch size {f.shape[0]}, expected 1 or {x.shape[0]} (that of deblurred)")
    if fp is not None and fp.shape != fn.shape:
        raise ValueError(f"flow_next and flow_prev must have the same shape, got {tuple(fn.shape)} and "
                         f"{tuple(fp.shape)}")
    fn = fn.to(dtype=x.dtype, device=x.device)
    fp = -fn if fp is None else fp.to(dtype=x.dtype, device=x.device)
    if kernel == "two_segment":
        op = TwoSegmentBlur(fn, fp, tau=float(tau))
    elif kernel == "warp":
        op = WarpBlur(fn, fp, n=n, tau=float(tau))
    else:
        # The chord between the two segment ends, re-centred: exact for F₋ = −F₊.
        m = (float(tau) * (fn - fp)).clamp(-float(LUT_RANGE), float(LUT_RANGE))
        op = MotionBlur.lut(m)
    return op, x


def reblur(
    deblurred: torch.Tensor,
    flow_next: torch.Tensor,
    flow_prev: Optional[torch.Tensor] = None,
    kernel: str = "two_segment",
    tau: float = 1.0,
    n: int = 8,
) -> torch.Tensor:
    """Blur ``deblurred`` with the per-pixel kernel of the flows (see the module docstring).

    Parameters
    ----------
    deblurred, flow_next, flow_prev, kernel, tau, n
        As for :func:`reblur_operator`: the frames ``(N, C, H, W)`` or ``(C, H, W)``, F₊ and
        F₋ (``None``: −F₊) on their grid, the blur model, Chen's exposure cycle and the warp
        samples.

    Returns
    -------
    torch.Tensor
        The reblurred frames, shape of ``deblurred`` made 4-D, differentiable in
        ``deblurred`` and in the flows.
    """
    op, x = reblur_operator(deblurred, flow_next, flow_prev, kernel, tau, n)
    return op(x)


def reblur_loss(
    deblurred: torch.Tensor,
    blurred: torch.Tensor,
    flow_next: torch.Tensor,
    flow_prev: Optional[torch.Tensor] = None,
    kernel: str = "two_segment",
    tau: float = 1.0,
    n: int = 8,
    margin: Union[int, str] = 0,
) -> torch.Tensor:
    r"""Chen et al.'s self-supervised reblur loss ``MSE(K(F₊, F₋) · d(B_t), B_t)`` (eq. 7 with h = MSE).

    Parameters
    ----------
    deblurred : torch.Tensor, (N, C, H, W) or (C, H, W), float32/float64
        The network's estimate d(B_t) of the sharp frames t.
    blurred : torch.Tensor, same shape
        The observed blurred frames B_t (values in [0, 1]).
    flow_next : torch.Tensor, (N, 2, H, W) or (2, H, W)
        F₊ on frame t's grid, from p to its position in frame t+1 (u = +x, v = +y), pixels.
    flow_prev : torch.Tensor or None
        F₋, from p to its position in frame t−1; ``None``: the 2-frame variant F₋ = −F₊.
    kernel : {"two_segment", "lut", "warp"}
        Blur formation model (module docstring).
    tau : float in (0, 1]
        Exposure cycle τ (Chen: 1).
    n : int
        Warp samples per flow for ``kernel="warp"``.
    margin : int >= 0 or "reach"
        Pixels left out of the mean along each border (default 0: every pixel, as Chen
        et al.). ``"reach"``: the blur's own reach (``op.reach()`` of
        :func:`reblur_operator`, from the flows of this call), so that only pixels whose
        whole kernel lies inside the frame are compared. Nearer the border the reblurred
        frame reads the operator's border rule where the camera saw the scene beyond the
        frame, an error no deblurred frame can remove.

    Returns
    -------
    torch.Tensor
        0-d mean squared error over the elements inside the margin, differentiable in
        ``deblurred`` and in the flows. It is 0 (to rounding) when ``blurred`` is
        ``K(F₊, F₋)`` applied to ``deblurred`` with the same kernel and flows; with
        ``margin="reach"`` also when ``blurred`` is a crop of a larger blurred scene and
        ``deblurred`` the same crop of the sharp scene.

    Raises
    ------
    TypeError
        Non-tensor or non-float input.
    ValueError
        Mismatched shapes, NaN/Inf, unknown ``kernel``, ``tau`` outside (0, 1], flows beyond
        the operators' 64 px, a ``margin`` that is not an int >= 0 or ``"reach"``, or one
        that leaves no pixel.
    """
    if margin != "reach" and (isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0):
        raise ValueError(f"margin must be an int >= 0 or 'reach', got {margin!r}")
    op, x = reblur_operator(deblurred, flow_next, flow_prev, kernel, tau, n)
    y = op(x)
    b = _check_tensor(blurred, "blurred")
    if b.shape != y.shape:
        raise ValueError(f"blurred must have the shape of deblurred {tuple(y.shape)}, got {tuple(b.shape)}")
    b = b.to(dtype=y.dtype, device=y.device)
    r = op.reach() if margin == "reach" else int(margin)
    h, w = y.shape[-2:]
    if 2 * r >= min(h, w):
        what = f"the blur's reach ({r} px)" if margin == "reach" else f"margin={r}"
        raise ValueError(f"{what} leaves no pixel of the {h}×{w} frames: use a smaller margin or larger frames")
    if r:
        y, b = y[..., r : h - r, r : w - r], b[..., r : h - r, r : w - r]
    return F.mse_loss(y, b)
