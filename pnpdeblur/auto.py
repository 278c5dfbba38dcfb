"""Choose the blur model of each photo: per-pixel motion or one camera-shake kernel.

:func:`pnpdeblur.deblur` models the blur at every pixel as a straight segment (SEN's flow), which
fits moving objects and a camera that moves smoothly; :func:`pnpdeblur.deblur_shake` models the
whole photo with one curved kernel, which fits a hand-held camera shaking in front of a distant
scene. On camera shake the kernel model gains far more, on spatially varying blur it can fail
badly, and a user with a photo rarely knows which blur it has.

:func:`deblur_auto` runs both and keeps, per photo, the result whose own blur model explains the
photo better: the kernel's result when its **reblur residual** ``‖w ⊙ (k * x_shake − y)‖²`` is
below ``ratio`` times the flow result's ``‖w ⊙ (K(flow) x_flow − y)‖²`` (mean squared error over
the pixels farther than either blur's reach from the border, clipped pixels left out, in linear
light when ``gamma`` is given). A wrong kernel leaves structure that deconvolution cannot put
back, and a straight-segment field cannot reproduce a curved blur, so the model that fits the
data is the better one. ``ratio`` = :data:`AUTO_RATIO` was chosen on BSDS500 *train* crops
(``benchmarks/camera_shake.py --part choose``; ``benchmarks/RESULTS.md``, "Choosing the blur
model").
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Union

import numpy as np
import torch

from ._checks import check_flag
from ._images import as_image_batch
from ._repr import describe_array, short_floats
from .backend import resolve_device, to_torch
from .camera_shake import ShakeDeblurResult, centroid_offset, check_shake_kernel_size, deblur_shake, shift_image
from .operators.convolution import Convolution
from .operators.motion import MotionBlur
from .pipeline import DeblurResult, deblur
from .solvers.weights import DEFAULT_SATURATION, saturation_weights

__all__ = ["deblur_auto", "AutoDeblurResult", "AUTO_RATIO", "reblur_residual"]

#: The kernel's result is kept when its reblur residual is below this fraction of the flow
#: result's. Of the ratios 0.5–1.5 it gave the largest mean gain over three kinds of blur on 72
#: BSDS500 *train* crops (24 photos × camera shake, Gong ±23, Gong ±46), keeping the kernel for
#: 20 of 24 shaken crops and 6 of 48 flow-blurred ones (benchmarks/RESULTS.md, "Choosing the
#: blur model").
AUTO_RATIO = 0.8


@dataclass
class AutoDeblurResult:
    """What :func:`deblur_auto` returns.

    Attributes
    ----------
    x : array
        The chosen result of each photo, in the caller's type, layout, device and dtype.
    model : list of str
        Per photo: ``"shake"`` (the kernel's result), ``"flow"`` (the per-pixel flow's) or
        ``"none"`` (both pipelines left the photo as it was: their safeguards, or every value of it
        clipped).
    residual_flow, residual_shake : list of float
        Per photo: the reblur residual of each result (mean squared error, see the module
        docstring); ``nan`` for a result its pipeline left unchanged. When every pixel inside the
        border margin is clipped, both are taken over the whole photo's unclipped pixels.
    flow_result : DeblurResult
        What :func:`pnpdeblur.deblur` returned (its ``flow``, ``history`` ...).
    shake_result : ShakeDeblurResult
        What :func:`pnpdeblur.deblur_shake` returned (its ``kernel``, ``history`` ...).
    """

    x: Any
    model: List[str] = field(default_factory=list)
    residual_flow: List[float] = field(default_factory=list)
    residual_shake: List[float] = field(default_factory=list)
    flow_result: Optional[DeblurResult] = None
    shake_result: Optional[ShakeDeblurResult] = None

    def __repr__(self) -> str:
        return (f"AutoDeblurResult(x={describe_array(self.x)}, model={list(self.model)}, "
                f"residual_flow={short_floats(self.residual_flow)}, "
                f"residual_shake={short_floats(self.residual_shake)})")


def reblur_residual(blurred: torch.Tensor, sharp: torch.Tensor, op: Any, *, margin: int = 0,
                    weights: Optional[torch.Tensor] = None, gamma: Optional[float] = None) -> float:
    """Mean squared error between ``op(sharp)`` and ``blurred`` inside a border margin.

    Parameters
    ----------
    blurred, sharp : torch.Tensor, (1, C, H, W), float in [0, 1]
        The observed photo and a deblurred estimate of it.
    op : LinearOperator
        The blur that the estimate claims made the photo (e.g. ``MotionBlur(flow)``,
        ``Convolution(kernel)``).
    margin : int
        Pixels left out along each border (where ``op`` reads its border rule instead of the
        scene beyond the frame); must leave at least one pixel.
    weights : torch.Tensor, optional
        0/1 weights of ``blurred``'s shape (0: a clipped pixel, left out).
    gamma : float, optional
        Compare in linear light, ``v ↦ v ** gamma`` of both images (as the solvers did).

    Returns
    -------
    float
        ``sum(w · (op(x) − y)²) / sum(w)`` over the inner window; ``nan`` when no pixel is
        left (every inner pixel clipped).
    """
    if isinstance(margin, bool) or not isinstance(margin, numbers.Integral) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    h, w = blurred.shape[-2:]
    if 2 * margin >= min(h, w):
        raise ValueError(f"margin={margin} leaves no pixel of the {h}×{w} photo")
    y, x = blurred.to(torch.float64), sharp.to(torch.float64)
    if gamma is not None:
        y, x = y.clamp(min=0.0) ** gamma, x.clamp(min=0.0) ** gamma
    r = (op(x) - y) ** 2
    wt = torch.ones_like(r) if weights is None else weights.to(r)
    inner = (Ellipsis, slice(margin, h - margin), slice(margin, w - margin))
    total = float(wt[inner].sum())
    return float((wt * r)[inner].sum()) / total if total > 0 else float("nan")


def deblur_auto(
    image: Any,
    prior: Optional[Callable] = None,
    noise_level: Union[float, None] = None,
    *,
    kernel_size: Optional[int] = None,
    ratio: float = AUTO_RATIO,
    safeguard: bool = True,
    saturation: Optional[float] = DEFAULT_SATURATION,
    boundary: str = "unknown",
    gamma: Optional[float] = None,
    device: Union[str, torch.device, None] = None,
    flow_model: Any = None,
    progress: bool = False,
    flow_options: Optional[Mapping[str, Any]] = None,
    shake_options: Optional[Mapping[str, Any]] = None,
) -> AutoDeblurResult:
    """Blind deblurring with the blur model that fits each photo: flow or camera-shake kernel.

    Runs :func:`pnpdeblur.deblur` (per-pixel straight motion from SEN) and
    :func:`pnpdeblur.deblur_shake` (one curved kernel) on the photo, then keeps per photo the
    kernel's result if its reblur residual is below ``ratio`` times the flow result's (see the
    module docstring), else the flow's. It takes the time of both.

    Parameters
    ----------
    image : array
        Blurred photo(s), as for :func:`pnpdeblur.deblur`: ``(H, W)`` / ``(H, W, C)``
        numpy or cupy, ``(H, W)`` / ``(C, H, W)`` torch or an ``(N, C, H, W)`` batch; uint8 or
        float in [0, 1].
    prior : callable, optional
        The HQS prior of both pipelines (default: the shipped DnCNN).
    noise_level : float, optional
        Noise std on the [0, 1] scale (default: estimated per photo).
    kernel_size : int, optional
        Odd bound on the camera-shake kernel, px; default as :func:`pnpdeblur.deblur_shake`'s
        (31, smaller on small photos).
    ratio : float in (0, ∞)
        Keep the kernel's result when its residual is below ``ratio`` × the flow's (default
        :data:`AUTO_RATIO`; larger favours the kernel).
    safeguard : bool
        Both pipelines' safeguards: a photo that neither finds blurred is returned as given;
        one that only one of them finds blurred gets that one's result. (The kernel pipeline's
        safeguard also rejects an estimate whose result overshoots: then the flow's result, if
        any, is kept.)
    saturation, boundary, gamma, device, progress
        As for :func:`pnpdeblur.deblur`, passed to both.
    flow_model : SEN, optional
        The flow network of :func:`pnpdeblur.deblur` (default: the shipped SEN).
    flow_options, shake_options : mapping, optional
        More keyword arguments of :func:`pnpdeblur.deblur` (e.g. ``iterations``, ``n_iter``,
        ``cg_iters``, ``blur_threshold``) and of :func:`pnpdeblur.deblur_shake` (e.g.
        ``blur_threshold``, ``noise_floor``, ``register``); the ones above cannot be given again
        here. The kernel's result is scored as deconvolved and registered afterwards (as
        :func:`pnpdeblur.deblur_shake`'s ``register`` does, unless it is False).

    Returns
    -------
    AutoDeblurResult
        ``.x`` (caller's type), ``.model`` per photo, both residuals and both full results.

    Examples
    --------
    A photo blurred by camera shake (64 px is small for the flow network and for the kernel
    estimate, which both warn):

    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> sharp = pd.data.sample_image("camera", 64)
    >>> photo = pd.Convolution(pd.data.random_shake_kernel(15, seed=3))(sharp)
    >>> res = pd.deblur_auto(photo)
    >>> res.model, res.x.shape
    (['shake'], (64, 64, 1))
    >>> bool(pd.metrics.psnr(res.x, sharp) > pd.metrics.psnr(photo, sharp) + 3)   # 23.4 -> 32.5 dB
    True
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio must be a finite number > 0, got {ratio!r}")
    resolve_device(device)  # a bad device fails here, before either pipeline runs
    common = dict(prior=prior, noise_level=noise_level, safeguard=safeguard, saturation=saturation,
                  boundary=boundary, gamma=gamma, device=device, progress=progress)
    extra = {}
    for name, opts, taken in (("flow_options", flow_options, {"flow_model"}),
                              ("shake_options", shake_options, {"kernel_size"})):
        if opts is not None and not isinstance(opts, Mapping):
            raise TypeError(f"{name} must be a mapping of keyword arguments, got {type(opts).__name__}")
        again = sorted(set(opts or {}) & (set(common) | taken | {"image"}))
        if again:
            raise ValueError(f"{name} repeats arguments of deblur_auto itself: {again}")
        extra[name] = dict(opts or {})
    y, out = as_image_batch(image)
    estimated = extra["shake_options"].get("kernel") is None  # a given kernel is used as given
    # the shake pipeline needs the kernel to fit: say so before the flow pipeline's seconds
    if estimated:  # a given kernel is not estimated: any size fits
        check_shake_kernel_size(kernel_size, y.shape)
    # the kernel's result is scored as deconvolved, then registered (deblur_shake's `register`): its
    # reblur residual must not carry the interpolation of a move and its move back
    register = extra["shake_options"].pop("register", True)
    register = check_flag(register, "register")
    rf = deblur(image, flow_model=flow_model, **common, **extra["flow_options"])
    rs = deblur_shake(image, kernel_size, **common, register=False, **extra["shake_options"])

    xf = as_image_batch(rf.x, "the flow result")[0].to(y.device)
    xs = as_image_batch(rs.x, "the kernel result")[0].to(y.device)
    flows = to_torch(rf.flow[-1], "the flow").to(device=y.device, dtype=torch.float64)
    flows = flows.reshape(-1, 2, *flows.shape[-2:])
    kernels = np.asarray(rs.kernel, np.float64).reshape(-1, *np.shape(rs.kernel)[-2:])
    weights = None if saturation is None else saturation_weights(y, saturation)

    registered = xs
    deblurred = [n for n in range(y.shape[0]) if not rs.unchanged[n]]
    if register and estimated and deblurred:
        registered = xs.clone()
        for n in deblurred:
            rs.history[n]["registration"] = centroid_offset(kernels[n])
            registered[n:n + 1] = shift_image(xs[n:n + 1], *rs.history[n]["registration"]).clamp(0.0, 1.0)
        rs.x = out.image(registered)
    chosen, models, res_f, res_s = xf.clone(), [], [], []
    for n in range(y.shape[0]):
        kf = MotionBlur(flows[n:n + 1])
        ks = Convolution(kernels[n])
        margin = min(max(kf.reach(), ks.reach()), (min(y.shape[-2:]) - 1) // 2)
        w = None if weights is None else weights[n:n + 1]
        keep = dict(margin=margin, weights=w, gamma=gamma)
        flow_done, shake_done = not rf.unchanged[n], not rs.unchanged[n]
        r_f = reblur_residual(y[n:n + 1], xf[n:n + 1], kf, **keep) if flow_done else float("nan")
        r_s = reblur_residual(y[n:n + 1], xs[n:n + 1], ks, **keep) if shake_done else float("nan")
        if flow_done and shake_done and np.isnan(r_f + r_s):
            # every pixel inside the margin is clipped: nan would pick the flow unscored, so the
            # unclipped border pixels decide, border rule and all
            keep["margin"] = 0
            r_f = reblur_residual(y[n:n + 1], xf[n:n + 1], kf, **keep)
            r_s = reblur_residual(y[n:n + 1], xs[n:n + 1], ks, **keep)
        if not (flow_done or shake_done):
            model = "none"
        elif shake_done and (not flow_done or r_s < ratio * r_f):
            model = "shake"
        else:
            model = "flow"
        if model == "shake":
            chosen[n] = registered[n]
        models.append(model)
        res_f.append(r_f)
        res_s.append(r_s)
    return AutoDeblurResult(x=out.image(chosen), model=models, residual_flow=res_f, residual_shake=res_s,
                            flow_result=rf, shake_result=rs)
