"""Blind deblurring of camera shake: one kernel for the whole photo, estimated, then deconvolved.

:func:`pnpdeblur.deblur` (Wu et al.) models the blur at every pixel as a straight segment, which
fits moving objects and smooth camera motion. A hand-held camera that shakes during the exposure
blurs a distant scene with one *curved* kernel instead, the image of the camera's path (Levin et
al. 2009 recorded such kernels), and straight segments cannot represent it. :func:`deblur_shake`
estimates that kernel with the classical sparse-gradient method of
:func:`pnpdeblur.estimation.estimate_kernel` and deconvolves the photo with it by HQS and the
same plug-in prior as :func:`pnpdeblur.deblur`, with the same care for real photos: the unknown
boundary, clipped highlights left out of the data term, linear light on request, uint8 in and out.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_flag, check_real
from ._images import as_image_batch
from ._repr import describe_array, short_floats
from ._warn import warn_at_caller
from .backend import resolve_device
from .estimation.kernel import (DEFAULT_KERNEL_SIZE, MIN_RELIABLE_SHAKE_SIZE, SUPPORT_RATIO, _check_kernel_size,
                                centroid_offset, check_kernel_fits, default_kernel_size, estimate_kernel,
                                fitting_kernel_size, kernel_length)
from .pipeline import (DEFAULT_NOISE_FLOOR, GIVEN_BLUR_NOISE_FLOOR, _copy_input, check_photo_options, check_prior,
                       default_prior, given_blur_prior, linearize, noise_levels, reference_batch, schedule_for)
from .solvers.weights import DEFAULT_SATURATION, crop_boundary, pad_problem, saturation_weights

__all__ = ["deblur_shake", "ShakeDeblurResult", "DEFAULT_KERNEL_SIZE", "SHAKE_THRESHOLD", "OVERSHOOT_THRESHOLD",
           "overshoot"]

#: :func:`~pnpdeblur.estimation.kernel_length` (px) from which an estimated kernel counts as blur:
#: the 95th percentile of the estimates on 60 sharp BSDS500 *train* crops (σ = 0.01), rounded up to
#: 0.5 px (``benchmarks/camera_shake.py --part calibrate``; benchmarks/RESULTS.md, "Camera shake").
#: 95 %, not pd.deblur's 99 %: 3 of the 60 sharp crops drew 11–14 px kernels, and a threshold above
#: them would leave a third of the shaken crops (which gain ~4.5 dB) alone.
SHAKE_THRESHOLD = 7.0

#: :func:`overshoot` of a result above which the safeguard of :func:`deblur_shake` returns the photo
#: unchanged: a failed estimate (a cloud filling the support, or a long kernel drawn from a sharp
#: photo) rings into values far outside [0, 1]. Set on 288 crops of BSDS500 *test* photos 16-111
#: (between the largest value of a crop that gained >= 1 dB, 0.028, and 0.041) and checked on 144
#: crops of photos 112-159 (benchmarks/RESULTS.md, "An overshoot check for failed kernel estimates").
OVERSHOOT_THRESHOLD = 0.035


@dataclass
class ShakeDeblurResult:
    """What :func:`deblur_shake` returns.

    Attributes
    ----------
    x : array
        The deblurred image in the caller's type, layout, device and dtype (uint8 in → uint8
        out), clipped to [0, 1].
    kernel : numpy.ndarray
        The estimated kernel, ``(kernel_size, kernel_size)`` float64 (``(N, s, s)`` for a batch),
        convolution convention, sum 1; a given ``kernel`` comes back with its own shape.
    noise_level : list of float
        The noise level of each image (estimated when not given).
    history : list of dict
        One entry per image: ``kernel_length`` (px), ``threshold`` (None without the
        safeguard), ``noise_level`` (what HQS ran with), ``clipped_fraction`` (1.0 for an image
        clipped everywhere, left as given), ``hqs`` (the HQS history; None for an image left
        unchanged without a solve), ``registration`` (the sub-pixel ``(dy, dx)`` the solved
        result was moved by, see :func:`deblur_shake`; None for a given kernel or an image left
        unchanged without a solve), ``overshoot`` (the solved result's :func:`overshoot`; None
        for an image that was not solved) and ``overshoot_threshold`` (None without the safeguard),
        ``time_kernel`` and ``time_solve`` (s), and ``psnr`` when a reference was given.
    unchanged : list of bool
        Per image: returned as given, by the safeguard (a short kernel, or a result that
        overshoots) or because every value of it is clipped.
    """

    x: Any
    kernel: Any = None
    noise_level: List[float] = field(default_factory=list)
    history: List[Dict[str, Any]] = field(default_factory=list)
    unchanged: List[bool] = field(default_factory=list)

    def __repr__(self) -> str:
        lengths = short_floats(h["kernel_length"] for h in self.history if "kernel_length" in h)
        return (f"ShakeDeblurResult(x={describe_array(self.x)}, kernel={describe_array(self.kernel)}, "
                f"kernel_length={lengths} px, noise_level={short_floats(self.noise_level)}, "
                f"unchanged={list(self.unchanged)})")


def deblur_shake(
    image: Any,
    kernel_size: Optional[int] = None,
    prior: Optional[Callable] = None,
    noise_level: Union[float, None] = None,
    *,
    kernel: Any = None,
    safeguard: bool = True,
    blur_threshold: Optional[float] = None,
    overshoot_threshold: Optional[float] = None,
    register: bool = True,
    noise_floor: Optional[float] = None,
    saturation: Optional[float] = DEFAULT_SATURATION,
    boundary: str = "unknown",
    gamma: Optional[float] = None,
    device: Union[str, torch.device, None] = None,
    reference: Any = None,
    progress: bool = False,
) -> ShakeDeblurResult:
    """Blind deblurring of a photo blurred by camera shake (one kernel for the whole photo).

    Parameters
    ----------
    image : array
        Blurred photo: ``(H, W)`` / ``(H, W, C)`` numpy or cupy, ``(H, W)`` / ``(C, H, W)`` torch
        or an ``(N, C, H, W)`` batch (one kernel per image); uint8 or float in [0, 1]; grey, RGB
        or RGBA. At least ``kernel_size`` pixels on each side.
    kernel_size : int, optional
        Odd bound on the blur's extent in pixels. Too small cuts the kernel; too large costs time
        and accuracy, and on a small photo the estimate itself. Default
        :func:`~pnpdeblur.estimation.kernel.default_kernel_size`: 31 px, but at most the photo's
        shorter side / :data:`~pnpdeblur.estimation.kernel.SUPPORT_RATIO` (6), so
        smaller on photos under 186 px (a 96 px photo gets 15); a given size above that bound is
        used, with a ``UserWarning`` when a result is deblurred with the estimate. Measured: see
        Notes.
    prior : callable, optional
        Prior of the HQS z-step (:mod:`pnpdeblur.priors`); default the shipped DnCNN, as
        :func:`pnpdeblur.deblur`, or with a given ``kernel`` the shipped DRUNet
        (:func:`pnpdeblur.pipeline.given_blur_prior`).
    noise_level : float, optional
        Noise std on the [0, 1] scale; estimated per image when not given, as :func:`pnpdeblur.deblur`
        estimates it (robust to JPEG coding).
    kernel : array, optional
        Skip the estimate and deconvolve with this kernel (``(kh, kw)``, or ``(N, kh, kw)`` for a
        batch; e.g. one estimated on another frame of the same shot). Any size that fits the image,
        square or not (a ``1 × 15`` horizontal streak is the same blur as its zero-padded
        ``15 × 15``); it must sum to 1. The safeguard does not apply to a given kernel.
    safeguard : bool
        Leave an image unchanged (as given, with a ``UserWarning``) when the kernel estimated on
        it is shorter than ``blur_threshold`` (:func:`~pnpdeblur.estimation.kernel_length`): the
        estimate on a sharp photo is a small blob, and deconvolving with it costs several dB. A
        support smaller than the threshold (the default on photos under 42 px) cannot tell a blur
        from a sharp photo: such photos come back unchanged, and the warning says so. Also when
        the result deblurred with the estimate overshoots (:func:`overshoot` above
        ``overshoot_threshold``), the mark of a failed estimate: see Notes.
    blur_threshold : float, optional
        Default :data:`SHAKE_THRESHOLD`, calibrated on sharp BSDS500 *train* crops.
    overshoot_threshold : float, optional
        Default :data:`OVERSHOOT_THRESHOLD`; in [0, 1].
    register : bool
        Move the result by the sub-pixel part of the estimated kernel's centroid (see Notes), so
        that it is registered on the blur's centre of mass. ``False`` keeps the result that the
        returned ``kernel`` reblurs to the photo exactly (what a reblur check needs). No effect
        with a given ``kernel``.
    noise_floor : float, optional
        Lowest noise level HQS runs with. Default 0.02 for an estimated kernel, as
        :func:`pnpdeblur.deblur`: an estimate is never exact, and a stronger prior keeps its
        errors from ringing. A given ``kernel`` is taken as exact: no floor (0), and the solve
        is :func:`~pnpdeblur.solvers.hqs`'s with the prior's own schedule, as
        :func:`pnpdeblur.deblur` does with a given ``flow`` (+1.0 to +1.3 dB with the true kernel
        at σ = 0.01; for an estimate given back, pass 0.02: ``benchmarks/RESULTS.md``, "A known
        flow or kernel").
    saturation, boundary, gamma, device, reference, progress
        As in :func:`pnpdeblur.deblur`: clipped pixels out of the data term, the unknown
        boundary (solved on a grid larger by half the kernel), linear light, where to compute,
        a sharp reference for ``psnr`` in the history, and a tqdm bar over images.

    Returns
    -------
    ShakeDeblurResult
        ``.x`` (caller's type), ``.kernel``, ``.noise_level``, ``.history``, ``.unchanged``. When
        every image is left unchanged, ``.x`` is a copy of ``image`` itself.

    Notes
    -----
    A blind estimate is a kernel up to a shift: it is re-centred on its centroid, but only by
    whole pixels, which leaves the deblurred image displaced by the centroid's remaining fraction
    (up to half a pixel per axis). The result is moved back by that fraction (``register``; cubic
    interpolation on the grid of the unknown boundary, before it is cropped), so it is registered
    on the blur's centre of mass, as a kernel centred on its centroid defines the sharp image:
    +0.5 dB on held-out synthetic shake and +0.2 dB on Levin et al.'s recorded kernels on
    average, both scored up to whole-pixel shifts (per image −2.7 to +3.9 dB: which fraction the
    reference happens to sit at). The returned ``kernel`` then reblurs ``x`` to the photo moved by
    ``history[i]["registration"]``. A ``kernel`` given by the caller is used as given, its own
    centring included. Measured in ``benchmarks/RESULTS.md`` ("Camera shake"), against
    :func:`pnpdeblur.deblur` and the true kernels.

    A failed estimate: on 11 of 144 synthetically shaken BSDS500 crops the result lost more than
    1 dB (the estimate a cloud over its support, or a path far from the true one), and 7 of 144
    sharp crops passed the length check with a long kernel read into them (−22 to −29 dB). Such a
    result rings into values far beyond [0, 1], so the safeguard also returns the photo unchanged
    (``UserWarning``) when :func:`overshoot` of its result is above ``overshoot_threshold``: the
    share of its values clipped at 0 or 1 more than half the kernel's support away from the
    photo's own clipped values (a deblurred highlight is brighter than its blurred streak and
    clips anyway). On 144 held-out crops (shaken, unblurred, and shaken with clipped highlights)
    it flagged 6, which lost 5.7 to 26 dB, and none that gained; the mean gain rose from 4.47 to
    4.59 dB (shaken), 3.67 to 3.95 dB (clipped highlights) and −1.50 to 0 dB (sharp). On Levin et
    al.'s 32 images it flags one, which had gained 0.28 dB.

    Small photos: with a 31-px support on a 96 px photo the estimate can be a long tangle and the
    result up to 18 dB below the blurred photo (BSDS500 crops). The default support
    shrinks with the photo (``kernel_size`` above), which was measured on BSDS500 *train* crops
    of 64–256 px and checked on held-out *test* crops (``benchmarks/RESULTS.md``, "Camera shake on
    small photos"). On 64, 96, 128 and 160 px *train* crops it changed the mean gain over the
    blurred photo from −9.1, −3.3, −0.4 and +2.4 dB (31 px) to +0.3, −0.8, +1.5 and +2.4 dB, but
    15–35 % of the crops still lost more than 0.5 dB (up to 14 dB): below 192 px the estimate is
    unreliable whatever its support, so a photo under
    :data:`~pnpdeblur.estimation.kernel.MIN_RELIABLE_SHAKE_SIZE` px on the shorter side deblurred
    with an estimated kernel gets a ``UserWarning`` (none when every image is returned unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> sharp = pd.data.sample_image("camera", 64)
    >>> shake = pd.data.random_shake_kernel(15, seed=3)      # 15×15, sums to 1
    >>> photo = pd.Convolution(shake)(sharp)
    >>> res = pd.deblur_shake(photo)         # 64 px: it warns that the photo is small for an estimate
    >>> res.x.shape, res.x.dtype, res.kernel.shape                # the support: 64 / 6 -> 9 px
    ((64, 64, 1), dtype('float32'), (9, 9))
    >>> round(float(res.kernel.sum()), 6)
    1.0
    >>> bool(pd.metrics.psnr(res.x, sharp) > pd.metrics.psnr(photo, sharp) + 3)   # 23.4 -> 32.5 dB
    True
    """
    from .metrics import psnr
    from .operators import Convolution
    from .solvers import hqs

    safeguard = check_flag(safeguard, "safeguard")
    register = check_flag(register, "register")
    progress = check_flag(progress, "progress")
    check_prior(prior)
    threshold = SHAKE_THRESHOLD if blur_threshold is None else check_real(blur_threshold, "blur_threshold")
    overshoot_limit = _check_overshoot_threshold(overshoot_threshold)
    if noise_floor is None:
        noise_floor = DEFAULT_NOISE_FLOOR if kernel is None else GIVEN_BLUR_NOISE_FLOOR
    noise_floor = check_real(noise_floor, "noise_floor")
    saturation, gamma = check_photo_options(saturation, boundary, gamma)
    x, layout = as_image_batch(image, "image")
    n = x.shape[0]
    kernels = None if kernel is None else _check_kernels(kernel, n)
    too_large = None  # what to say about a given support too large for the photo, once something is deblurred
    given = kernel_size
    if kernels is None:  # before the noise estimates: say at once that the kernel cannot fit
        kernel_size = check_shake_kernel_size(kernel_size, x.shape[-2:])
        too_large = None if given is None else _too_large(kernel_size, x.shape[-2:], "kernel_size")
    dev = resolve_device(device) or x.device
    obs = x.to(dev)
    levels = noise_levels(obs, noise_level, saturation)
    ref = None if reference is None else reference_batch(reference, x.shape)
    if prior is None:
        prior = default_prior() if kernels is None else given_blur_prior()
    result = ShakeDeblurResult(x=None, noise_level=list(levels))
    found, outs, blank, overshot = [], [], [], []
    steps = range(n)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="deblur_shake", unit="image", leave=False)
    for i in steps:
        t0 = time.perf_counter()
        obs_i = obs[i:i + 1]
        k = kernels[i] if kernels is not None else estimate_kernel(obs_i.cpu(), kernel_size)[0]
        t1 = time.perf_counter()
        length = kernel_length(k)
        guarded = safeguard and kernels is None
        entry: Dict[str, Any] = {"kernel_length": length, "threshold": threshold if guarded else None,
                                 "noise_level": None, "clipped_fraction": None, "hqs": None, "registration": None,
                                 "overshoot": None, "overshoot_threshold": overshoot_limit if guarded else None,
                                 "time_kernel": t1 - t0}
        found.append(k)
        weights = None if saturation is None else saturation_weights(obs_i, saturation)
        # clipped everywhere (a white photo): no data term is left to solve
        blank.append(weights is not None and not bool(weights.any()))
        result.unchanged.append(blank[-1] or (guarded and length < threshold))
        if blank[-1]:
            entry["clipped_fraction"] = 1.0
        if result.unchanged[-1]:
            outs.append(obs_i.clamp(0.0, 1.0))
        else:
            entry["clipped_fraction"] = 0.0 if weights is None else 1.0 - float(weights.mean())
            photo = obs_i
            level = max(levels[i], noise_floor)
            if gamma is not None:  # blur adds light: deconvolve the linearised photo
                obs_i, level = linearize(obs_i, gamma, level)
            K = Convolution(k)
            pad = 0
            if boundary == "unknown":
                obs_i, K, weights, pad = pad_problem(obs_i, K, weights)
            # the schedule deblur gives this prior with hqs's default length: DPIR's for an estimated kernel,
            # the prior's own for a given one (unless the prior has a schedule of its own)
            res = hqs(obs_i, K, prior, progress=False, weights=weights,
                      **schedule_for(prior, level, None, blind=kernels is None))
            out = _display(crop_boundary(res.x, pad), gamma)
            # judged before the registration, so that register=False (deblur_auto's) judges the same
            entry["overshoot"] = _overshoot(out, photo, max(k.shape) // 2, saturation)
            if register and kernels is None:  # the estimate's centroid is centred to a whole pixel only
                entry["registration"] = centroid_offset(k)
                out = _display(crop_boundary(shift_image(res.x, *entry["registration"]), pad), gamma)
            if guarded and entry["overshoot"] > overshoot_limit:
                result.unchanged[-1] = True
                overshot.append(i)
                outs.append(photo.clamp(0.0, 1.0))
            else:
                outs.append(out.clamp(0.0, 1.0))
            entry.update(noise_level=level, hqs=res.history)
        entry["time_solve"] = time.perf_counter() - t1
        if ref is not None:
            entry["psnr"] = float(psnr(outs[-1].cpu(), ref[i:i + 1], channel_axis=1))
        result.history.append(entry)
    result.kernel = found[0] if layout.single else np.stack(found)
    if any(blank):
        warn_at_caller(f"pd.deblur_shake left image(s) {[i for i, b in enumerate(blank) if b]} as given: every value "
                       f"is at or above saturation={saturation:g} (clipped), which leaves the deconvolution nothing "
                       "to fit; pass saturation=None to deblur it anyway")
    which = [i for i, u in enumerate(result.unchanged) if u and not blank[i] and i not in overshot]
    if which:
        lengths = ", ".join(f"{result.history[i]['kernel_length']:.2f}" for i in which)
        if kernel_size < threshold:  # the support, not the photo, kept the estimate short
            h, w = x.shape[-2:]
            source = (f"the default on a {h}x{w} px photo, at most its shorter side / {SUPPORT_RATIO}" if given is None
                      else "kernel_size")
            why = (f"but the kernel was estimated on a {kernel_size}x{kernel_size} px support ({source}), too small "
                   "to tell such a blur from a sharp photo; pass a larger kernel_size and safeguard=False to deblur "
                   "it anyway")
        else:
            why = "so the photo looks sharp and deconvolving it would likely make it worse; pass safeguard=False to " \
                  "deblur anyway"
        warn_at_caller(f"pd.deblur_shake returned image(s) {which} unchanged: the estimated kernel's length ({lengths} "
                       f"px) is below blur_threshold={threshold:g} px, {why}")
    if overshot:
        values = ", ".join(f"{result.history[i]['overshoot']:.3f}" for i in overshot)
        warn_at_caller(f"pd.deblur_shake returned image(s) {overshot} unchanged: deblurred with the estimated kernel, "
                       f"{values} of the result's values came out clipped at 0 or 1 away from the photo's own clipped "
                       f"values, above overshoot_threshold={overshoot_limit:g}: the mark of a failed kernel estimate "
                       "(a cloud, or a blur read into a sharp photo); pass safeguard=False or a higher "
                       "overshoot_threshold to deblur anyway, or try a smaller kernel_size")
    if kernels is None and not all(result.unchanged):  # a result rests on the estimate: say what it is worth
        if too_large:
            warn_at_caller(too_large)
        warn_if_small(x.shape[-2:])
    if all(result.unchanged):
        result.x = _copy_input(image)  # bit-identical, the caller's own dtype and layout
    else:
        result.x = layout.image(torch.cat(outs).to(x.device))
    return result


def overshoot(result: Any, photo: Any, reach: int = DEFAULT_KERNEL_SIZE // 2,
              saturation: Optional[float] = DEFAULT_SATURATION) -> float:
    """The share of a deblurred result's values that overshoot [0, 1] away from the photo's clipping.

    A kernel estimate that failed (a cloud filling its support, or a long kernel read into a sharp
    photo) deconvolves into ringing far beyond the range of the photo; a good one overshoots only
    where the photo itself is clipped, since a deblurred highlight is brighter than its blurred
    streak. So only values beyond ``reach`` px of the photo's clipped values count.

    Parameters
    ----------
    result : array
        The deblurred image before clipping, the photo's shape and layout (numpy, cupy or torch:
        ``(H, W)``, ``(H, W, C)``, ``(C, H, W)`` or ``(N, C, H, W)``).
    photo : array
        The blurred photo, float in [0, 1] or uint8.
    reach : int
        How far (px, a square neighbourhood in each channel) from a clipped value of the photo a
        value of ``result`` may overshoot without counting: half the kernel's support.
    saturation : float or None
        A photo value at or above it counts as clipped (as :func:`pnpdeblur.deblur`'s
        ``saturation``; None: only values of 1), as does a value of 0 or below.

    Returns
    -------
    float
        The fraction of ``result``'s values (every channel of every pixel) that are at or beyond
        0 or 1 and more than ``reach`` px from any clipped value of ``photo`` in the same channel.

    Examples
    --------
    >>> import numpy as np
    >>> from pnpdeblur.camera_shake import overshoot
    >>> photo = np.full((9, 9), 0.5)
    >>> result = photo.copy()
    >>> result[4, 4] = 1.3                              # one value of 81 rings beyond 1
    >>> round(overshoot(result, photo, reach=2), 4)
    0.0123
    >>> photo[4, 6] = 1.0                               # a clipped value of the photo 2 px away
    >>> overshoot(result, photo, reach=2)
    0.0
    """
    from .backend import array_kind, to_torch
    from .operators.base import to_nchw

    y, _ = as_image_batch(photo, "photo")  # checked, uint8 scaled, an alpha channel dropped
    r = to_torch(result, "result")
    if tuple(r.shape) != tuple(np.shape(photo)):
        raise ValueError(f"result must have the photo's shape {tuple(np.shape(photo))}, got {tuple(r.shape)}")
    if not r.is_floating_point():
        raise TypeError(f"result must be a float array (the deblurred image before clipping), got dtype {r.dtype}")
    if not bool(torch.isfinite(r).all()):
        raise ValueError("result contains NaN or Inf values")
    r = to_nchw(r, array_kind(result, "result"), "result")[0][:, :y.shape[1]]
    if isinstance(reach, bool) or not isinstance(reach, numbers.Integral) or reach < 0:
        raise ValueError(f"reach must be an int >= 0 (px), got {reach!r}")
    if saturation is not None:
        saturation = check_real(saturation, "saturation")
    return _overshoot(r, y.to(r.device), int(reach), saturation)


def _overshoot(result: torch.Tensor, photo: torch.Tensor, reach: int, saturation: Optional[float]) -> float:
    """:func:`overshoot` of checked ``(N, C, H, W)`` tensors on one device (``photo`` in [0, 1])."""
    high = 1.0 if saturation is None else min(saturation, 1.0)
    near = ((photo <= 0) | (photo >= high)).to(torch.float32)
    if reach > 0 and bool(near.any()):  # a square's maximum is a row's of a column's: 2(2r+1) reads, not (2r+1)²
        size = 2 * reach + 1
        near = F.max_pool2d(F.max_pool2d(near, (size, 1), stride=1, padding=(reach, 0)), (1, size), stride=1,
                            padding=(0, reach))
    return float((((result <= 0) | (result >= 1)) & (near == 0)).to(torch.float32).mean())


def _display(x: torch.Tensor, gamma: Optional[float]) -> torch.Tensor:
    """A result solved in linear light back on the photo's scale (unclipped above)."""
    return x if gamma is None else x.clamp(min=0.0) ** (1.0 / gamma)


def _check_overshoot_threshold(value: Any) -> float:
    if value is None:
        return OVERSHOOT_THRESHOLD
    value = check_real(value, "overshoot_threshold")
    if not 0 <= value <= 1:
        raise ValueError(f"overshoot_threshold must be in [0, 1] (a fraction of the result's values), got {value!r}")
    return value


def shift_image(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` with its content moved by ``(dy, dx)`` px (what was at ``p`` is at
    ``p + d``): Catmull–Rom cubic interpolation along each axis (exact for whole pixels, and for
    quadratic ramps in between), the border replicated. A kernel whose centroid sits at ``d``
    deconvolves to the sharp image moved by ``−d``; this moves it back."""
    return _shift_axis(_shift_axis(x, float(dy), 2), float(dx), 3)


def _shift_axis(x: torch.Tensor, d: float, axis: int) -> torch.Tensor:
    """``out[p] = x[p − d]`` along ``axis``, Catmull–Rom between samples, indices clamped."""
    if d == 0:
        return x
    n = math.floor(d)
    s = 1.0 - (d - n)  # p − d lies at fraction s from sample p − n − 1 towards sample p − n
    weights = ((-s ** 3 + 2 * s ** 2 - s) / 2, (3 * s ** 3 - 5 * s ** 2 + 2) / 2,
               (-3 * s ** 3 + 4 * s ** 2 + s) / 2, (s ** 3 - s ** 2) / 2)  # samples p − n − 2 … p − n + 1
    size = x.shape[axis]
    idx = torch.arange(size, device=x.device)
    out = torch.zeros_like(x)
    for j, w in enumerate(weights):
        if w != 0:
            out = out + w * x.index_select(axis, (idx - n - 2 + j).clamp(0, size - 1))
    return out


def check_shake_kernel_size(kernel_size: Any, shape: tuple, name: str = "kernel_size", warn: bool = False) -> int:
    """The kernel support to estimate on an image of ``shape`` ``(..., H, W)``: ``kernel_size``
    checked (a ``ValueError`` when it cannot fit; the message calls the size ``name``), or
    :func:`~pnpdeblur.estimation.kernel.default_kernel_size` for None. With ``warn``, a given
    size above the shorter side / :data:`SUPPORT_RATIO` gets a ``UserWarning`` naming ``name``
    and the largest size within that bound."""
    hw = tuple(int(v) for v in shape[-2:])
    if kernel_size is None:
        size = default_kernel_size(hw)
        check_kernel_fits(size, hw, note=" (the default)", name=name)  # a photo under 16 px
        return size
    size = _check_kernel_size(kernel_size)
    check_kernel_fits(size, hw, name=name)
    message = _too_large(size, hw, name) if warn else None
    if message:
        warn_at_caller(message)
    return size


def _too_large(size: int, shape: tuple, name: str) -> Optional[str]:
    """What to say about a given support ``size`` above the shorter side of ``shape`` /
    :data:`SUPPORT_RATIO` (None when it is within)."""
    side = min(int(v) for v in shape[-2:])
    fit = fitting_kernel_size(side)
    if size <= fit:
        return None
    unset = f", or leave it unset (default {default_kernel_size(shape)} here)" if name == "kernel_size" else ""
    return (f"{name} {size} is too large for a photo whose shorter side is {side} px: a kernel support above "
            f"1/{SUPPORT_RATIO} of the shorter side let the estimate fail on small photos (measured: 31 px on "
            f"64-128 px photos lost 0.4-9 dB on average against the blurred photo, up to 21 dB), so pass "
            f"{name} <= {fit}{unset}")


def warn_if_small(shape: tuple) -> None:
    """A ``UserWarning`` when a kernel estimated on an image of ``shape`` ``(..., H, W)`` is
    unreliable whatever its support (shorter side under :data:`MIN_RELIABLE_SHAKE_SIZE`)."""
    h, w = (int(v) for v in shape[-2:])
    if min(h, w) < MIN_RELIABLE_SHAKE_SIZE:
        warn_at_caller(f"pd.deblur_shake estimates the kernel on a {h}x{w} px photo: below "
                       f"{MIN_RELIABLE_SHAKE_SIZE} px on the shorter side the estimate is unreliable (on 64-160 px "
                       "BSDS500 crops 15-35 % of the shaken photos came out more than 0.5 dB worse than blurred, "
                       "some by 10 dB or more); check the result, or estimate on a larger view of the scene and pass "
                       "it as kernel=")


def _check_kernels(kernel: Any, n: int) -> List[np.ndarray]:
    """``kernel`` (numpy, torch or cupy) as a list of ``n`` float64 kernels, checked."""
    from .backend import to_torch
    from .operators.convolution import as_kernel

    t = to_torch(kernel, "kernel")
    one = t.ndim == 2
    if one:
        t = t.expand(n, *t.shape)
    if t.ndim != 3 or t.shape[0] != n:
        raise ValueError(f"kernel must have shape (kh, kw) or (N, kh, kw) with N = {n}, got {tuple(t.shape)}")
    out = [as_kernel(ki, "kernel").numpy() for ki in t]
    for i, k in enumerate(out):
        total = float(k.sum())
        if abs(total - 1.0) > 1e-3:  # e.g. a kernel read from an 8-bit PNG: the result would be 1/sum as bright
            where = "" if one else f"[{i}]"
            raise ValueError(f"kernel{where} must sum to 1 (a blur keeps the brightness), got sum {total:.6g}: "
                             "divide it by its sum")
    return out
