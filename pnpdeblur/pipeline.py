"""Blind deblurring end to end (Wu et al.): estimate the flow, deconvolve, iterate globally.

One *global iteration* takes the current image O, estimates its per-pixel motion flow with
SEN, builds the line-kernel operator :class:`pnpdeblur.MotionBlur` of that flow and solves
``min_I ½‖K I − O‖² + γ p(I)`` by HQS with CG x-steps and the prior as z-step
(:func:`pnpdeblur.solvers.hqs`). As in Wu et al., the result is then treated as the new
observation and sent through the system again, which removes the blur that the first flow
estimate missed.

A safeguard (on by default) deblurs an image only while SEN's median flow length on it reaches
a calibrated threshold (:mod:`pnpdeblur.estimation.blur_detection`): a sharp or mildly blurred
photo comes back unchanged instead of being deconvolved with the phantom blur SEN reports on it.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

import numpy as np
import torch

from ._checks import check_flag, check_real
from ._images import as_float_batch, as_image_batch
from ._repr import describe_array, short_floats
from ._vectors import vector_length
from ._warn import warn_at_caller
from .backend import resolve_device
from .estimation.blur_detection import default_threshold, flow_blur_score
from .estimation.learned import estimate_flow
from .nets.sen import SEN
from .operators._flow import MAX_FLOW
from .solvers._common import prior_caller
from .solvers.schedules import DEFAULT_LAMBDA, DEFAULT_SIGMA_START
from .solvers.weights import DEFAULT_SATURATION, crop_boundary, pad_problem, saturation_weights

if TYPE_CHECKING:  # the priors load on first use
    from .priors import DnCNNPrior, DRUNetPrior

__all__ = ["deblur", "DeblurResult", "estimate_noise_level", "default_prior", "given_blur_prior", "linearize"]

#: pd.deblur's lowest noise level for HQS with the ensemble's flows, and with one SEN pass
#: (chosen with ``benchmarks/blind.py --budget`` on BSDS500 val crops; benchmarks/RESULTS.md)
DEFAULT_NOISE_FLOOR, SINGLE_PASS_NOISE_FLOOR = 0.02, 0.03

#: pd.deblur's solve with an estimated flow: HQS iterations per global iteration and the CG
#: budget of each x-step (short: it stops before the flow's errors ring; benchmarks/RESULTS.md)
ESTIMATED_FLOW_SOLVE = (4, 5)
#: the same with a flow given by the caller, taken as exact: hqs's own default length and CG budget
GIVEN_FLOW_SOLVE = (None, 30)
#: the noise floor of a flow or kernel given by the caller (pd.deblur, pd.deblur_shake): none
GIVEN_BLUR_NOISE_FLOOR = 0.0

#: Fewest unclipped 2×2 blocks a channel needs for :func:`estimate_noise_level` to leave its
#: clipped blocks out (fewer: all blocks are used, as without ``saturation``).
MIN_NOISE_BLOCKS = 64

#: ITU-R BT.601 luma and chroma (Cb, Cr) rows of the RGB → YCbCr transform that JPEG codes in:
#: the luma at full resolution, the chroma usually at half (4:2:0)
YCBCR_WEIGHTS = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))

#: :func:`estimate_noise_level` with ``compression=True`` reads a colour photo as JPEG-coded when
#: the noise of its chroma's finest band is below this fraction of the luma's (4:2:0 coding leaves
#: almost none: at most 0.18 of it on BSDS500 train and val crops stored at quality 75–95, against
#: 0.7–1.0 for the same crops with noise as 8-bit PNG; benchmarks/RESULTS.md, "Compressed photos")
CHROMA_NOISE_RATIO = 0.25

#: :func:`estimate_noise_level` with ``compression=True``: the weight of the coarser band's
#: estimate, below 1 because that band also holds some image content (chosen on BSDS500 val
#: crops, ``benchmarks/compression.py --weights``; benchmarks/RESULTS.md, "Compressed photos")
COARSE_BAND_WEIGHT = 0.9


@dataclass
class DeblurResult:
    """What :func:`deblur` returns.

    Attributes
    ----------
    x : array
        The deblurred image, in the caller's type, layout, device and dtype (uint8 in →
        uint8 out), clipped to [0, 1].
    flow : list of arrays
        The flow estimated at each global iteration (``(2, H, W)`` or ``(N, 2, H, W)``,
        pixels, caller's array type).
    history : list of dict
        One entry per global iteration: ``iteration``, ``noise_level`` (per image),
        ``mean_flow_length`` (px), ``clipped_fraction`` (per image: the share of pixel values
        left out of the data term as clipped; 1.0 for one clipped everywhere, left as given; None for
        an image the safeguard left unchanged), ``hqs`` (the
        HQS history, None for an image left unchanged), ``time`` (s), ``safeguard`` (see
        :func:`deblur`; None when it is off) and ``psnr`` when a reference was given.
    noise_level : list of float
        The noise level used for each image at the first iteration (estimated when not given).
    unchanged : list of bool
        Per image: returned as given (never deblurred), by the safeguard or because every value of
        it is clipped (see ``saturation``).
    """

    x: Any
    flow: List[Any] = field(default_factory=list)
    history: List[Dict[str, Any]] = field(default_factory=list)
    noise_level: List[float] = field(default_factory=list)
    unchanged: List[bool] = field(default_factory=list)

    def __repr__(self) -> str:
        last = self.history[-1].get("mean_flow_length", []) if self.history else []  # per image
        return (f"DeblurResult(x={describe_array(self.x)}, iterations={len(self.history)}, "
                f"mean_flow_length={short_floats(last)} px (last iteration), "
                f"noise_level={short_floats(self.noise_level)}, unchanged={list(self.unchanged)})")


def _copy_input(image: Any) -> Any:
    """A copy of the caller's array, same type, dtype, layout and device."""
    if isinstance(image, torch.Tensor):
        return image.detach().clone()
    return image.copy()  # numpy and cupy


def estimate_noise_level(x: Any, saturation: Optional[float] = None, *,
                         compression: bool = False) -> List[float]:
    """Gaussian noise std of each image of ``x`` (Donoho's wavelet MAD rule), on the [0, 1] scale.

    ``x`` is an image or a batch as :func:`deblur` takes it: ``(H, W)`` / ``(H, W, C)`` numpy or
    cupy, ``(H, W)`` / ``(C, H, W)`` torch, or ``(N, C, H, W)`` of any kind; uint8 (÷255) or
    float, whose values are read as they are (noise below 0 or above 1 is not clipped: clipping
    would bias the estimate). Returns one float per image (a list of one for a single image).
    TypeError for another dtype, ValueError for another number of dimensions or NaN/Inf.

    The finest diagonal Haar detail band ``(a − b − c + d) / 2`` of each 2×2 block holds almost
    no image content and keeps white noise at its std σ, so ``σ ≈ median(|HH|) / 0.6745``
    (the median absolute deviation of a normal variable). Channels are averaged. Needs no
    PyWavelets (scikit-image's ``estimate_sigma`` does).

    With ``saturation``, blocks holding a value at or above it are left out of their
    channel's median: clipped regions are flat, their detail is zero and would pull the
    estimate down (a channel with fewer than :data:`MIN_NOISE_BLOCKS` unclipped blocks keeps
    all of them). Without clipped blocks the result is that of ``saturation=None``.

    With ``compression``, the estimate also holds for colour photos stored as JPEG, whose coding
    quantises away most of the noise in the finest band but keeps it an octave lower. Such a
    photo is recognised by its chroma: 4:2:0 coding (what cameras, phones and Pillow write)
    leaves the chroma's finest band almost without noise, so a photo whose Cb/Cr fine-band
    noise is below :data:`CHROMA_NOISE_RATIO` times its luma's (:data:`YCBCR_WEIGHTS`, each
    normalised to the std it gives white noise) is read as JPEG-coded. For those the result is
    the larger of the estimate above and :data:`COARSE_BAND_WEIGHT` times the same rule applied
    one octave coarser (the diagonal band of the 2×2 block means, whose noise is σ/2) on the luma
    (noise taken as independent across channels, so the luma's std is 0.668 σ). The coarser band
    holds more image content, hence the weight below 1, and is not consulted for other photos,
    where it would read texture as noise. Grey images, images without 3 channels and images
    smaller than 4×4 get the estimate above. On JPEG photos of noise std 0.04 the fine band reads
    0.009 (quality 75) and 0.029 (quality 90); this rule gives 0.040 and 0.044, close to the
    level that deblurs them best (``benchmarks/compression.py``, ``benchmarks/RESULTS.md``).
    """
    x = as_float_batch(x, "x", torch.float64)[0]
    h, w = (x.shape[-2] // 2) * 2, (x.shape[-1] // 2) * 2
    if h == 0 or w == 0:
        raise ValueError(f"image must be at least 2×2 to estimate its noise, got {tuple(x.shape[-2:])}")
    compression = check_flag(compression, "compression")
    t = x[..., :h, :w].detach().to(torch.float64)
    sigma = _diagonal_band_sigma(t, saturation).mean(dim=1)
    if compression and t.shape[1] == 3 and h >= 4 and w >= 4:
        coded = _looks_chroma_subsampled(t, saturation)
        if bool(coded.any()):
            sigma = torch.where(coded, torch.maximum(sigma, COARSE_BAND_WEIGHT * _coarse_luma_sigma(t, saturation)),
                                sigma)
    return [float(s) for s in sigma.cpu()]


def _quad_blocks(t: torch.Tensor) -> tuple:
    """The four pixels of each 2×2 block of ``t`` (…, 2h, 2w): top-left, top-right, bottom-left, bottom-right."""
    return t[..., 0::2, 0::2], t[..., 0::2, 1::2], t[..., 1::2, 0::2], t[..., 1::2, 1::2]


def _ycbcr(t: torch.Tensor, planes: int = 3) -> tuple:
    """The first ``planes`` of ``(Y, Cb, Cr)`` of RGB ``t`` ``(N, 3, H, W)`` as ``(N, planes, H, W)``,
    and the std each gets from unit white noise in every channel, ``(planes,)``."""
    m = torch.tensor(YCBCR_WEIGHTS[:planes], dtype=t.dtype, device=t.device)
    return torch.einsum("kc,nchw->nkhw", m, t), m.norm(dim=1)


def _fine_ycbcr_sigma(t: torch.Tensor, saturation: Optional[float]) -> torch.Tensor:
    """Fine-band noise std of the Y, Cb and Cr planes of RGB ``t`` ``(N, 3, 2h, 2w)``, each over
    the std white noise gives it, ``(N, 3)``: a 2×2 block with a value at or above ``saturation``
    in any channel is left out."""
    ycc, gains = _ycbcr(t)
    blocks = _quad_blocks(t)
    block_max = torch.stack(blocks).amax(dim=0).amax(dim=1, keepdim=True)  # over the block and the channels
    return _diagonal_band_sigma(ycc, saturation, block_max) / gains


def _looks_chroma_subsampled(t: torch.Tensor, saturation: Optional[float]) -> torch.Tensor:
    """Per image of RGB ``t`` ``(N, 3, 2h, 2w)``: is its chroma's fine-band noise below
    :data:`CHROMA_NOISE_RATIO` times its luma's? ``(N,)`` bool."""
    fine = _fine_ycbcr_sigma(t, saturation)
    return fine[:, 1:].mean(dim=1) < CHROMA_NOISE_RATIO * fine[:, 0]


def _coarse_luma_sigma(t: torch.Tensor, saturation: Optional[float]) -> torch.Tensor:
    """Noise std of RGB ``t`` ``(N, 3, H, W)`` (H, W ≥ 4) read one octave below the finest band, on
    the luma, ``(N,)``: white noise of std σ per channel reads σ."""
    t4 = t[..., : t.shape[-2] // 4 * 4, : t.shape[-1] // 4 * 4]
    luma, gain = _ycbcr(torch.nn.functional.avg_pool2d(t4, 2), planes=1)
    # the largest value of each 4×4 block, over all channels: a clipped one leaves the median
    block_max = torch.nn.functional.max_pool2d(t4, 4).amax(dim=1, keepdim=True)
    # a 2×2 block mean carries σ/2 of white noise
    return _diagonal_band_sigma(luma, saturation, block_max)[:, 0] * 2 / gain[0]


def _diagonal_band_sigma(t: torch.Tensor, saturation: Optional[float],
                         block_max: Optional[torch.Tensor] = None) -> torch.Tensor:
    """σ of each channel of ``t`` ``(N, C, 2h, 2w)`` (float64) from its finest diagonal band, ``(N, C)``.

    ``block_max`` ``(N, C or 1, h, w)``: the largest value behind each 2×2 block, for
    ``saturation`` (default: the block's own four values).
    """
    blocks = _quad_blocks(t)
    hh = ((blocks[0] - blocks[1] - blocks[2] + blocks[3]) / 2).flatten(2).abs()
    sigma = hh.median(dim=2).values
    if saturation is not None:
        if block_max is None:
            block_max = torch.stack(blocks).amax(dim=0)
        kept = (block_max < saturation).expand_as(blocks[0]).flatten(2)
        for i in range(hh.shape[0]):
            for c in range(hh.shape[1]):
                k = kept[i, c]
                if not bool(k.all()) and int(k.sum()) >= MIN_NOISE_BLOCKS:
                    sigma[i, c] = hh[i, c][k].median()
    return sigma / 0.6744897501960817


def _fit_operator_range(flow: torch.Tensor) -> torch.Tensor:
    """Shorten the vectors of an estimated flow that the operators cannot take, with a warning.

    :class:`~pnpdeblur.MotionBlur` takes components up to :data:`~pnpdeblur.operators.MAX_FLOW`
    (64 px). A flow estimated at a reduced ``scale`` (its lengths divided by the scale) can
    exceed that on a photo with very large blur; each such vector is scaled down, keeping its
    direction, until its larger component is 64 px, so the photo is deblurred (under-corrected
    there) instead of failing. ``flow`` is ``(N, 2, H, W)``; returned as is when it fits.
    """
    biggest = flow.detach().abs().amax(dim=1, keepdim=True)  # per pixel, the larger of |u|, |v|
    if not bool((biggest > MAX_FLOW).any()):
        return flow
    warn_at_caller(f"the estimated flow reaches {float(biggest.max()):.1f} px, beyond the {MAX_FLOW:g} px the blur "
                   f"operator takes: those vectors were shortened to {MAX_FLOW:g} px (keeping their direction), so "
                   "that blur is only partly removed")
    return flow * (MAX_FLOW / biggest.clamp(min=MAX_FLOW))


def given_flow(flow: Any, shape: torch.Size) -> torch.Tensor:
    """A caller's flow for an image batch of ``shape`` ``(N, C, H, W)`` as float32 ``(N, 2, H, W)``:
    ``(2, H, W)`` serves every image, ``(N, 2, H, W)`` one each; checked (finite, within
    :data:`~pnpdeblur.operators.MAX_FLOW`, on the image's grid)."""
    from .operators._flow import as_flow

    f = as_flow(flow, "flow")
    n, _, h, w = shape
    if tuple(f.shape[2:]) != (h, w):
        raise ValueError(f"flow must be on the image's grid (2, {h}, {w}), got shape {tuple(f.shape)}")
    if f.shape[0] not in (1, n):
        raise ValueError(f"flow must have shape (2, H, W) or (N, 2, H, W) with N = {n} images, got {tuple(f.shape)}")
    return f.detach().to(torch.float32).expand(n, -1, -1, -1).contiguous()


def linearize(y: torch.Tensor, gamma: float, noise_level: float) -> tuple:
    """``(y ** gamma, noise_level · mean slope)``: a photo in linear light, and its noise level there.

    The noise of the recorded values passes through the curve ``v ↦ v^gamma`` scaled by its
    slope ``gamma · v^(gamma-1)``; HQS takes one noise level, so the slope is averaged over the
    photo (values below 1e-3 count as 1e-3, where a slope below 1 would vanish).
    """
    y = y.clamp(min=0.0)
    slope = float((gamma * y.clamp(min=1e-3) ** (gamma - 1.0)).mean())
    return y ** gamma, noise_level * slope


def check_photo_options(saturation: Optional[float], boundary: str, gamma: Optional[float]) -> tuple:
    """``(saturation, gamma)`` checked as :func:`deblur` and :func:`pnpdeblur.deblur_shake` take them
    (``boundary`` is only checked)."""
    if saturation is not None:
        saturation = _in_range(saturation, "saturation", lambda v: 0 < v <= 1, "in (0, 1] or None")
    if boundary not in ("unknown", "replicate"):
        raise ValueError(f"boundary must be 'unknown' or 'replicate', got {boundary!r}")
    if gamma is not None:
        gamma = _in_range(gamma, "gamma", lambda v: 1 <= v <= 4, "in [1, 4] (2.2 for a typical camera curve) or None")
    return saturation, gamma


def _in_range(value: Any, name: str, ok: Callable[[float], bool], wanted: str) -> float:
    """``value`` as a float when it is a real number that passes ``ok``; otherwise a ``ValueError``
    saying the range ``wanted`` (for a negative, NaN or Inf too), or a ``TypeError`` for a non-number."""
    try:
        v = check_real(value, name)
    except ValueError:  # negative, NaN, Inf: the range says what is wanted
        v = math.nan
    if not ok(v):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return v


def check_prior(prior: Any) -> None:
    """``TypeError`` unless ``prior`` is None or a prior :func:`~pnpdeblur.solvers.hqs` can call: checked
    before any work, as the safeguard may leave every image unchanged and never call it."""
    if prior is not None:
        prior_caller(prior)


def check_flow_model(flow_model: Any) -> None:
    """``TypeError`` naming ``flow_model`` unless it is None or a :class:`~pnpdeblur.nets.SEN`."""
    if flow_model is not None and not isinstance(flow_model, SEN):
        hint = ("; load weights with pnpdeblur.nets.SEN.from_checkpoint(path)"
                if isinstance(flow_model, (str, os.PathLike)) else "")
        raise TypeError(f"flow_model must be a pnpdeblur.nets.SEN or None, got {type(flow_model).__name__}{hint}")


def noise_levels(obs: torch.Tensor, noise_level: Optional[float], saturation: Optional[float]) -> List[float]:
    """One noise level per image of ``obs`` ``(N, C, H, W)``: the given one, or estimated.

    The estimate is :func:`estimate_noise_level`'s with ``compression=True``: photos are mostly
    JPEGs, whose finest band has lost most of its noise.
    """
    if noise_level is None:
        return estimate_noise_level(obs, saturation=saturation, compression=True)
    return [check_real(noise_level, "noise_level")] * obs.shape[0]


def reference_batch(reference: Any, shape: torch.Size) -> torch.Tensor:
    """A sharp reference as ``(N, C, H, W)``, checked against the image batch's ``shape``."""
    ref, _ = as_image_batch(reference, "reference")
    if ref.shape != shape:
        raise ValueError(f"reference has shape {tuple(ref.shape)} (as N, C, H, W), image {tuple(shape)}")
    return ref


def schedule_for(prior: Callable, noise_level: float, n_iter: Optional[int], blind: bool = True) -> Dict[str, Any]:
    """The β schedule keywords of :func:`~pnpdeblur.solvers.hqs` for ``prior`` at ``noise_level``.

    A prior with a ``schedule(noise_level)`` method (:class:`pnpdeblur.priors.RPGANPrior`) gets
    the β it returns: a learned z-step was trained on the deconvolutions of exactly that
    schedule, whose length (its levels) replaces ``n_iter``. Every other prior gets DPIR's
    schedule of ``n_iter`` steps (None: :func:`~pnpdeblur.solvers.hqs`'s default length), with
    λ and σ_1 of :mod:`pnpdeblur.solvers.schedules` for an estimated blur (``blind``: the blind
    pipelines' noise floors were tuned with them), and with the prior's own, which
    :func:`~pnpdeblur.solvers.hqs` chooses (:func:`~pnpdeblur.solvers.schedules.prior_schedule`),
    for a blur the caller gives.
    """
    own = getattr(prior, "schedule", None)
    if callable(own):
        return {"betas": list(own(noise_level))}
    if not blind:
        return {"noise_level": noise_level, "n_iter": n_iter}
    return {"noise_level": noise_level, "lam": DEFAULT_LAMBDA, "sigma_start": DEFAULT_SIGMA_START, "n_iter": n_iter}


def default_prior() -> DnCNNPrior:
    """The prior :func:`deblur` uses when none is given: the shipped DnCNN."""
    from .priors import DnCNNPrior

    # no flip ensemble: half the time for 0.06 dB (benchmarks/RESULTS.md, "Blind deblurring")
    return DnCNNPrior(ensemble=False)


def given_blur_prior() -> DRUNetPrior:
    """The prior :func:`deblur` and :func:`~pnpdeblur.deblur_shake` use with a flow or kernel the
    caller gives: the shipped small DRUNet (:class:`pnpdeblur.priors.DRUNetPrior`), the better
    denoiser when the blur is exact; with estimated blurs it is level with the DnCNN
    (benchmarks/RESULTS.md, "A known flow or kernel" and "DRUNet prior")."""
    from .priors import DRUNetPrior

    return DRUNetPrior()


def deblur(
    image: Any,
    iterations: int = 1,
    prior: Optional[Callable] = None,
    noise_level: Union[float, None] = None,
    flow_model: Optional[SEN] = None,
    *,
    safeguard: bool = True,
    blur_threshold: Optional[float] = None,
    noise_floor: Optional[float] = None,
    n_iter: Optional[int] = None,
    cg_iters: Optional[int] = None,
    cg_tol: float = 1e-4,
    flow_scale: float = 1.0,
    flow_ensemble: bool = True,
    saturation: Optional[float] = DEFAULT_SATURATION,
    boundary: str = "unknown",
    gamma: Optional[float] = None,
    device: Union[str, torch.device, None] = None,
    reference: Any = None,
    progress: bool = False,
    callback: Optional[Callable[[Dict[str, Any], torch.Tensor], Any]] = None,
    flow: Any = None,
) -> DeblurResult:
    """Blind motion deblurring of a photo: SEN flow → HQS/CG with a prior, ``iterations`` times.

    With a known ``flow`` the same photo handling (uint8, noise estimate, clipped pixels, the
    unknown boundary, linear light) serves non-blind deblurring: the flow is used as given.

    Parameters
    ----------
    image : array
        Blurred photo: ``(H, W)`` / ``(H, W, C)`` numpy or cupy, ``(H, W)`` / ``(C, H, W)`` torch
        or an ``(N, C, H, W)`` batch; uint8 or float in [0, 1]; grey, RGB or RGBA.
    iterations : int
        Global iterations (Wu et al.): each re-estimates the flow on the previous result.
        Default 1: with the shipped SEN and DnCNN prior, later iterations lowered the PSNR on
        average (``benchmarks/RESULTS.md``); Wu et al. pair them with RP-GAN, built to stop
        deconvolution artifacts from growing from one level to the next.
    prior : callable, optional
        Prior for the HQS z-step (:mod:`pnpdeblur.priors`); default the shipped DnCNN
        (:class:`pnpdeblur.priors.DnCNNPrior` without the flip ensemble), or with a given
        ``flow`` the shipped DRUNet (:func:`given_blur_prior`). A prior with a
        ``schedule(noise_level)`` method, such as :class:`pnpdeblur.priors.RPGANPrior`, is run
        with the β schedule it returns for the image's noise level (with its floor): a learned
        z-step is trained on the deconvolutions of exactly that schedule, so its length (the
        prior's levels) replaces ``n_iter``.
    noise_level : float, optional
        Noise std of the photo on the [0, 1] scale; estimated per image when not given
        (:func:`estimate_noise_level` with ``compression=True``, which also reads the noise that
        JPEG coding leaves an octave below the finest band). Later global iterations re-estimate
        it on their input (the previous result is much less noisy; fine band only).
    flow_model : SEN, optional
        Flow estimator (default: the shipped :meth:`pnpdeblur.nets.SEN.pretrained`); anything else
        (e.g. a path: load it with :meth:`pnpdeblur.nets.SEN.from_checkpoint`) is a ``TypeError``.
    safeguard : bool
        Blur detector (default on): at every global iteration an image is deblurred only if
        SEN's median flow length on it (:func:`pnpdeblur.estimation.blur_detection.blur_score`,
        computed from the flow the iteration needs anyway) reaches ``blur_threshold``.
        A sharp or mildly blurred photo is therefore returned unchanged — as given,
        bit-identical, with a ``UserWarning`` — instead of being deconvolved with the few
        pixels of phantom blur SEN reports on sharp photos (which cost ~10 dB); an image that a
        global iteration has made look sharp is not processed again. What was measured and
        decided is in ``history[k]["safeguard"]``: ``blur_score`` (px, per image),
        ``threshold``, ``blurred`` and ``processed`` (per image). False deblurs every image at
        every iteration (the behaviour before the safeguard). A large flat clipped region (an
        overexposed sky) raises SEN's score beside it too: on sharp photos with a white top 40 %
        the detector fired on 10 % of them instead of none (``benchmarks/RESULTS.md``, "A clipped
        sky and the safeguard"), so such a photo may be deconvolved although it is sharp.
    blur_threshold : float, optional
        The detector's threshold in px. Default: the value calibrated for the shipped SEN on
        BSDS500 train crops (``benchmarks/blind.py --calibrate``) for the flows it is given,
        :func:`pnpdeblur.estimation.blur_detection.default_threshold` of ``flow_ensemble``
        (6 px with the ensemble, 4.5 px without).
    noise_floor : float, optional
        Lowest noise level HQS is run with. An estimated flow is never exact, and the
        deconvolution turns its errors into ringing; solving as if the noise were at least
        ``noise_floor`` keeps the prior strong enough to suppress it (chosen with
        ``benchmarks/blind.py --budget`` on BSDS500 *val* crops; 0 solves with the noise level
        alone). Default: 0.02 with the ensemble's flows, 0.03 with one SEN pass per estimate
        (``flow_ensemble=False``), whose flows are worse: in each mode the highest floor within
        about 0.1 dB of the best on the tuning photos, so that flows worse than these synthetic
        ones still have a margin; lower floors started to make tuning photos worse than their
        blurred input (benchmarks/RESULTS.md). With a given ``flow``: 0, the noise level alone.
    n_iter, cg_iters, cg_tol : int, int, float
        HQS iterations per global iteration (a prior with its own schedule sets the count) and the
        CG budget of each x-step (warm-started).
        With a given ``flow`` the defaults are :func:`~pnpdeblur.solvers.hqs`'s (8 and 30).
        With SEN's flows the defaults (4 and 5) were chosen by ``benchmarks/blind.py --budget`` on BSDS500
        *val* crops and confirmed on the held-out *test* crops: with the shipped SEN's flows a
        shorter solve is also a better one (+0.4 dB at ±23, +0.2 dB at ±46 over 8 and 10) —
        it stops before the flow's errors are deconvolved into ringing — at half the prior calls
        and a third of the CG iterations. With exact (or much better) flows, raise both.
    flow_scale : float
        Passed to :func:`pnpdeblur.estimate_flow` as ``scale`` (≤ 1 for blur beyond the
        network's range). Vectors longer than the operator takes (a component over
        :data:`~pnpdeblur.operators.MAX_FLOW`, 64 px) are shortened to it, with a warning.
    flow_ensemble : bool
        Passed to :func:`pnpdeblur.estimate_flow` as ``ensemble``: SEN's flow averaged over the
        8 flips and transposes of the image (default True). It lowered the flow MSE by 17–39 %
        and, with its noise floor, raised the mean gain on blurred held-out photos by about
        0.4 dB (``benchmarks/RESULTS.md``); False runs SEN once per global iteration (8× less
        flow-estimation time).
    saturation : float or None
        Pixels whose observed value reaches it in a channel (default
        :data:`~pnpdeblur.solvers.DEFAULT_SATURATION`, 0.98: 250–255 in 8 bits) count as clipped
        by the sensor and are left out of the deconvolution's data term
        (:func:`~pnpdeblur.solvers.saturation_weights`): lights and highlights blurred past
        white do not follow the blur model, and fitting them rings across the photo. The noise
        estimate also leaves them out. A photo with no such pixel is deblurred exactly as with
        ``saturation=None`` (off). Measured in ``benchmarks/RESULTS.md`` ("Saturated pixels").
        A photo clipped everywhere (white) leaves nothing to fit: it is returned as given, with a
        warning.
    boundary : {"unknown", "replicate"}
        What lies beyond the photo's edges. ``"unknown"`` (default): the photo is a crop of a
        larger scene, whose blur brought light from outside the frame into the border pixels;
        the sharp image is solved on a grid larger by the flow's reach
        (:meth:`pnpdeblur.MotionBlur.reach`) on each side, with the padding left out of the
        data term (:func:`~pnpdeblur.solvers.pad_problem`), and cropped back.
        ``"replicate"``: the operator's own rule (border pixels repeated), which is exact only
        for images blurred with that rule, and rings inward from the edges of real photos
        (``benchmarks/RESULTS.md``, "Unknown boundaries").
    gamma : float, optional
        The photo's tone curve as a power law: the camera recorded ``(linear light)^(1/gamma)``
        (2.2 approximates sRGB and is the curve of the GOPRO data of Nah et al.). Blur adds
        light, so with it the photo is linearised (``y ** gamma``) before the deconvolution and
        the result re-encoded; the flow is still estimated on the photo as given (SEN's
        training data). The noise level is carried over by the curve's mean slope
        (:func:`linearize`). Default None: the blur model holds in the given values, as for
        images blurred by :class:`~pnpdeblur.MotionBlur` itself. Measured in
        ``benchmarks/RESULTS.md`` ("Linear light").
    device : str or torch.device, optional
        Where to compute (e.g. ``"cuda"``); default the image's device. The result comes
        back on the caller's device.
    reference : array, optional
        Sharp image (same type/layout as ``image``); adds ``psnr`` to the history.
    progress : bool
        tqdm bars over the global iterations (the stage running in the postfix) and over each
        HQS solve's iterations: on a large photo on the CPU a global iteration takes minutes.
    callback : callable, optional
        ``callback(entry, x)`` after each global iteration (``x``: torch ``(N, C, H, W)``);
        returning True stops.
    flow : array, optional
        A known motion flow to deconvolve with instead of SEN's estimate (non-blind deblurring):
        ``(2, H, W)`` for every image of the batch or ``(N, 2, H, W)`` one per image, numpy,
        torch or cupy floats on the image's grid, channel 0 u (+x, right), channel 1 v (+y,
        down), in pixels, each pixel blurred by the line kernel of its vector
        (:class:`pnpdeblur.MotionBlur`); :func:`pnpdeblur.data.read_flow` reads one saved with
        ``numpy.save``. A given flow is not re-estimated, so ``iterations`` must be 1 and
        ``flow_model`` must not be given; ``flow_scale``, ``flow_ensemble``, ``safeguard`` and
        ``blur_threshold`` do not apply. It is taken as exact: the solve is
        :func:`~pnpdeblur.solvers.hqs`'s full one with the prior's own schedule and no noise
        floor, each worth 1–2 dB at σ = 0.01 with the true flow on held-out BSDS500 crops, and
        the DRUNet as the default prior, +1.2 to +2.4 dB over the DnCNN there
        (``benchmarks/RESULTS.md``, "A known flow or kernel"); for an estimate given back, pass
        ``noise_floor=0.02``.
        ``.flow[0]`` of the result is this flow.

    Returns
    -------
    DeblurResult
        ``.x``, ``.flow`` (one per global iteration), ``.history``, ``.noise_level``,
        ``.unchanged``. ``.x`` has the caller's array type, layout and dtype (uint8 in, uint8
        out, rounded), except float16, which comes back as float32 (the solve runs in float32).
        When the safeguard leaves every image unchanged, ``.x`` is a copy of ``image`` itself
        (same type, dtype, layout, values); otherwise unchanged images of a batch come back as
        the input clipped to [0, 1] in the caller's type.

    Warns
    -----
    UserWarning
        When the safeguard returns an image unchanged (it names the images, their scores and
        the threshold), and when an image is returned as given because every value of it is
        clipped (it names the images and ``saturation``).

    Examples
    --------
    A photo blurred by 12 px of horizontal motion, as 8-bit values (SEN needs 192 px or more on
    the short side; :func:`pnpdeblur.estimate_flow` warns below):

    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> sharp = pd.data.sample_image("chelsea", 192)          # (192, 192, 3) float32 in [0, 1]
    >>> flow = np.zeros((2, 192, 192), np.float32); flow[0] = 12
    >>> photo = np.round(255 * pd.MotionBlur(flow)(sharp)).astype(np.uint8)
    >>> res = pd.deblur(photo)
    >>> res.x.shape, res.x.dtype                  # uint8 in, uint8 out
    ((192, 192, 3), dtype('uint8'))
    >>> res.flow[-1].shape, res.unchanged         # the flow it deconvolved with; not left unchanged
    ((2, 192, 192), [False])
    >>> truth = np.round(255 * sharp).astype(np.uint8)
    >>> bool(pd.metrics.psnr(res.x, truth) > pd.metrics.psnr(photo, truth) + 1)   # 25.6 -> 28.7 dB
    True
    """
    from .metrics import psnr
    from .operators import MotionBlur
    from .solvers import hqs

    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    estimated = flow is None
    if not estimated:
        if iterations != 1:
            raise ValueError(f"iterations must be 1 with a given flow (a given flow is not re-estimated), "
                             f"got {iterations!r}")
        if flow_model is not None:
            raise ValueError("flow_model and flow cannot both be given: the flow model estimates the flow that "
                             "flow gives")
    check_flow_model(flow_model)
    check_prior(prior)
    default_n_iter, default_cg_iters = ESTIMATED_FLOW_SOLVE if estimated else GIVEN_FLOW_SOLVE
    n_iter = default_n_iter if n_iter is None else n_iter
    cg_iters = default_cg_iters if cg_iters is None else cg_iters
    safeguard = check_flag(safeguard, "safeguard")
    flow_ensemble = check_flag(flow_ensemble, "flow_ensemble")
    blur_threshold = (default_threshold(flow_ensemble) if blur_threshold is None
                      else check_real(blur_threshold, "blur_threshold"))
    if noise_floor is None:
        noise_floor = (GIVEN_BLUR_NOISE_FLOOR if not estimated else
                       DEFAULT_NOISE_FLOOR if flow_ensemble else SINGLE_PASS_NOISE_FLOOR)
    noise_floor = check_real(noise_floor, "noise_floor")
    saturation, gamma = check_photo_options(saturation, boundary, gamma)
    progress = check_flag(progress, "progress")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(entry, x) or None, got {type(callback).__name__}")
    if isinstance(flow_scale, bool) or not (isinstance(flow_scale, (int, float)) and 0 < flow_scale <= 1):
        raise ValueError(f"flow_scale must be a number in (0, 1], got {flow_scale!r}")
    requested = resolve_device(device)
    x, layout = as_image_batch(image, "image")
    dev = requested or x.device
    obs = x.to(dev)
    levels = noise_levels(obs, noise_level, saturation)
    ref = None if reference is None else reference_batch(reference, x.shape)
    given = None if estimated else given_flow(flow, x.shape).to(dev)
    if prior is None:
        prior = default_prior() if estimated else given_blur_prior()
    if flow_model is None and estimated:
        from .estimation.learned import default_flow_model

        flow_model = default_flow_model()
    result = DeblurResult(x=None, noise_level=list(levels))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations, desc="deblur", unit="it", leave=False)
    n = obs.shape[0]
    # images with every value clipped (white) leave no data term to solve: returned as given
    blank = [saturation is not None and not bool(saturation_weights(obs[i:i + 1], saturation).any())
             for i in range(n)]
    active = [not b for b in blank]  # images still being deblurred
    result.unchanged = [True] * n
    current = obs
    try:
        for it in range(iterations):
            t0 = time.perf_counter()
            if it > 0:
                levels = estimate_noise_level(current, saturation=saturation)
            if estimated:
                if bar is not None:  # minutes on a large photo: say what runs
                    bar.set_postfix_str("estimating the flow")
                flow = _fit_operator_range(estimate_flow(current, flow_model, scale=flow_scale,
                                                         ensemble=flow_ensemble))
            else:
                flow = given
            guard: Optional[Dict[str, Any]] = None
            todo = list(active)
            if safeguard and estimated:  # a given flow is the caller's word that the photo is blurred
                scores = flow_blur_score(flow)
                blurred = [s >= blur_threshold for s in scores]
                todo = [a and b for a, b in zip(active, blurred)]
                guard = {"measured": "median SEN flow length (px)", "blur_score": scores,
                         "threshold": blur_threshold, "blurred": blurred, "processed": todo}
            outs, hist = [], []
            clipped: List[Optional[float]] = [None] * n
            for i in range(n):  # one operator (and schedule) per image
                if not todo[i]:
                    clipped[i] = 1.0 if blank[i] else None
                    outs.append(current[i:i + 1])
                    hist.append(None)
                    continue
                obs_i = current[i:i + 1]
                # clipped pixels leave the data term (None when there are none: the plain solve)
                weights = None if saturation is None else saturation_weights(obs_i, saturation)
                clipped[i] = 0.0 if weights is None else 1.0 - float(weights.mean())
                if clipped[i] == 1.0:  # clipped everywhere after an iteration: no data term is left to solve
                    todo[i] = False
                    outs.append(obs_i)
                    hist.append(None)
                    continue
                level = max(levels[i], noise_floor)
                if gamma is not None:  # blur adds light: deconvolve the linearised photo
                    obs_i, level = linearize(obs_i, gamma, level)
                K = MotionBlur(flow[i:i + 1])
                pad = 0
                if boundary == "unknown":  # solve on a grid larger by the kernels' reach, the margin unobserved
                    obs_i, K, weights, pad = pad_problem(obs_i, K, weights)
                res = hqs(obs_i, K, prior, cg_iters=cg_iters, cg_tol=cg_tol, progress=progress, weights=weights,
                          **schedule_for(prior, level, n_iter, blind=estimated))
                out = crop_boundary(res.x, pad)
                outs.append(out if gamma is None else out.clamp(min=0.0) ** (1.0 / gamma))  # clipped to 1 below
                hist.append(res.history)
            current = torch.cat(outs).clamp_(0.0, 1.0)
            active = todo
            result.unchanged = [u and not t for u, t in zip(result.unchanged, todo)]
            entry: Dict[str, Any] = {
                "iteration": it,
                "noise_level": list(levels),
                "mean_flow_length": [float(vector_length(f, dim=0).mean()) for f in flow],
                "clipped_fraction": clipped,
                "hqs": hist if len(hist) > 1 else hist[0],
                "safeguard": guard,
                "time": time.perf_counter() - t0,
            }
            if ref is not None:
                entry["psnr"] = float(psnr(current.cpu(), ref, channel_axis=1))
            result.history.append(entry)
            result.flow.append(layout.flow(flow.to(x.device)))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(flow=f"{np.mean(entry['mean_flow_length']):.1f}px")
            if callback is not None and callback(entry, current):
                break
            if not any(active):  # every image looks sharp: nothing left to deblur
                break
    finally:
        if bar is not None:
            bar.close()
    clipped_out = [i for i, u in enumerate(result.unchanged) if u and blank[i]]
    if clipped_out:
        warn_at_caller(f"pd.deblur left image(s) {clipped_out} as given: every value is at or above "
                       f"saturation={saturation:g} (clipped), which leaves the deconvolution nothing to fit; pass "
                       "saturation=None to deblur it anyway")
    which = [i for i, u in enumerate(result.unchanged) if u and not blank[i]]
    if which:
        first = result.history[0]["safeguard"]
        scores = ", ".join(f"{first['blur_score'][i]:.2f}" for i in which)
        warn_at_caller(f"pd.deblur returned image(s) {which} unchanged: SEN's median flow length ({scores} px) is "
                       f"below blur_threshold={blur_threshold:g} px, so the photo looks sharp or only mildly blurred "
                       "and deblurring with the estimated flow would likely make it worse; pass safeguard=False to "
                       "deblur anyway")
    if all(result.unchanged):
        result.x = _copy_input(image)  # bit-identical, the caller's own dtype and layout
    else:
        result.x = layout.image(current.to(x.device))
    return result
