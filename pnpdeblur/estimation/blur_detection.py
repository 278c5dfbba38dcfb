"""No-reference blur detection: is a photo blurred enough for :func:`pnpdeblur.deblur` to help?

:func:`pnpdeblur.deblur` estimates a motion flow with SEN and deconvolves it. On a sharp
photo the shipped SEN still reports about 3 px of blur (2 px with its 8-symmetry ensemble),
and deconvolving that phantom blur costs about 10 dB (``benchmarks/RESULTS.md``, issue 10).
The safeguard of :func:`pnpdeblur.deblur` therefore asks first whether the photo is blurred at
all.

Measured (``benchmarks/blind.py --calibrate``, BSDS500 *train* crops, sharp vs Gong flows
±23/±46 and mild blurs, σ = 0.01; figures in ``benchmarks/RESULTS.md``), the signal that
separates sharp from blurred photos best is SEN's own estimate: the **median flow length**
``median_p |f(p)|`` over the image (:func:`blur_score`). It costs nothing inside
:func:`pnpdeblur.deblur`, which needs that flow anyway. The candidates it beat are kept here
for measurement: the directional re-blur score of Crété-Roffet et al. (2007)
(:func:`reblur_score`, sharp and blurred ranges overlap because it depends on the image's
content) and, in the benchmark, the cepstrum's evidence score, gradient kurtosis and the growth
of SEN's estimate under a known extra blur.

A photo is *blurred* when its score reaches :data:`DEFAULT_THRESHOLD` (px;
:data:`SINGLE_PASS_THRESHOLD` for flows from one SEN pass). Blurs that SEN
measures below it — sharp photos and mild blurs (mean length below about 4–6 px) — are left
alone on purpose: at those lengths SEN's own error (its phantom blur on sharp photos: a median of
1.4 px with the ensemble, 2.2 px in one pass, and tails beyond 4 px) is as large as the blur, and
deconvolving with it lost PSNR on every calibration image tried.

Limits (measured): the score depends on the image size SEN sees. The threshold was calibrated
on 256² crops; on 128² crops sharp photos scored up to 8.9 px (SEN has less context), so small
images are more often judged blurred. Photos of 256² and more (SEN works on tiles of up to
768²) are the intended use. A different SEN needs its own threshold.
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_flag, check_real
from .._images import GREY_WEIGHTS, as_image_batch
from .._vectors import vector_length
from ..backend import to_torch
from ..nets.sen import SEN

__all__ = ["DEFAULT_THRESHOLD", "SINGLE_PASS_THRESHOLD", "default_threshold", "blur_score", "flow_blur_score",
           "is_blurred", "reblur_score"]

#: Decision threshold on :func:`blur_score` (SEN's median flow length, px) for the shipped SEN with
#: its 8-symmetry ensemble (``ensemble=True``, the default of :func:`pnpdeblur.estimate_flow` and
#: :func:`pnpdeblur.deblur`). Chosen on BSDS500 *train* crops only (all 200 photos, 256² centre
#: crops, σ = 0.01; ``benchmarks/blind.py --calibrate``): the 99th percentile of the sharp crops'
#: scores, rounded up to 0.5 px. The rule keeps false alarms to 1 % because they cost far more than
#: misses: a sharp photo deblurred by mistake lost 11–13 dB, a blurred one left alone forgoes 1–2 dB.
#: There, 99 % of sharp crops, 89 % of mild blurs (Gong flows with ``max_len`` 8), 17.5 % of ±23 and
#: 5.5 % of ±46 blurs score below it (``benchmarks/RESULTS.md``, "SEN fine-tuned on an H100").
DEFAULT_THRESHOLD = 6.0

#: The same rule for flows from one SEN pass (``ensemble=False``), on the same crops (99 % of sharp
#: crops, 70 % of mild, 13.5 % of ±23 and 4.5 % of ±46 blurs below it). One pass's phantom blur on
#: sharp photos has a higher median than the ensemble's (2.2 px against 1.4 px) but a shorter tail
#: (99th percentile 4.5 px against 5.8 px), hence the lower threshold.
SINGLE_PASS_THRESHOLD = 4.5


def default_threshold(ensemble: bool = True) -> float:
    """The calibrated threshold for flows estimated with (default) or without the ensemble."""
    return DEFAULT_THRESHOLD if check_flag(ensemble, "ensemble") else SINGLE_PASS_THRESHOLD


# the four directions of the re-blur score (dx, dy): 0°, 45°, 90°, 135°
_DIRECTIONS = ((1, 0), (1, 1), (0, 1), (-1, 1))


def _per_image(values: List[Any], single: bool) -> Any:
    return values[0] if single else values


def flow_blur_score(flow: Any) -> Union[float, List[float]]:
    """Median motion-flow length of each image of a flow field, in pixels.

    Parameters
    ----------
    flow : array
        ``(2, H, W)`` or ``(N, 2, H, W)`` numpy or torch flow (channel 0 u, channel 1 v, px),
        float, finite (``TypeError`` for another dtype, ``ValueError`` for NaN/Inf).

    Returns
    -------
    float or list of float
        ``median_p sqrt(u² + v²)``: one float for a ``(2, H, W)`` flow, a list for a batch.
    """
    if not isinstance(flow, (np.ndarray, torch.Tensor)):
        raise TypeError(f"flow must be a numpy array or torch tensor, got {type(flow).__name__}")
    if (flow.dtype.kind != "f") if isinstance(flow, np.ndarray) else not flow.is_floating_point():
        # an integer flow is not SEN's; a complex one would lose its imaginary part
        raise TypeError(f"flow must be a float array (pixels), got dtype {flow.dtype}")
    if isinstance(flow, np.ndarray):
        f = to_torch(flow, "flow").to(torch.float64)  # copies read-only, flipped and big-endian arrays
    else:
        f = flow.detach().to("cpu", torch.float64)
    single = f.ndim == 3
    if single:
        f = f[None]
    if f.ndim != 4 or f.shape[1] != 2 or f.shape[-1] == 0 or f.shape[-2] == 0:
        raise ValueError(f"flow must be (2, H, W) or (N, 2, H, W) with H, W > 0, got shape {tuple(flow.shape)}")
    if not torch.isfinite(f).all():
        raise ValueError("flow contains NaN or Inf")
    length = vector_length(f, dim=1).flatten(1)
    return _per_image([float(v) for v in length.median(dim=1).values], single)


def blur_score(
    image: Any,
    model: Optional[SEN] = None,
    *,
    flow: Any = None,
    ensemble: bool = True,
) -> Union[float, List[float]]:
    """How blurred a photo looks to SEN: its median estimated motion length in pixels.

    Parameters
    ----------
    image : array
        Photo in any layout :func:`pnpdeblur.estimate_flow` accepts (``(H, W)``,
        ``(H, W, C)`` numpy, ``(C, H, W)`` torch, ``(N, C, H, W)``); uint8 or float in [0, 1].
    model : SEN, optional
        Flow network (default the shipped :meth:`pnpdeblur.nets.SEN.pretrained`).
    flow : array, optional
        SEN's flow of ``image`` if already computed (``(2, H, W)`` / ``(N, 2, H, W)``); skips
        the network. Its batch size and size must match ``image``.
    ensemble : bool
        Estimate the flow with the 8-symmetry ensemble (:func:`pnpdeblur.estimate_flow`'s
        ``ensemble``; default True, as :func:`pnpdeblur.deblur` does).

    Returns
    -------
    float or list of float
        The score (px, ≥ 0) of one image, or a list for an ``(N, C, H, W)`` batch. Sharp
        photos score about 1.5–3 with the shipped SEN and its ensemble (2.5–3.5 without);
        compare with :func:`default_threshold`.
    """
    from .learned import estimate_flow

    x, boundary = as_image_batch(image, "image")
    if flow is None:
        flow = estimate_flow(x, model, ensemble=ensemble)
    scores = flow_blur_score(flow)
    scores = [scores] if isinstance(scores, float) else scores
    fshape = tuple(flow.shape[-2:])
    if len(scores) != x.shape[0] or fshape != tuple(x.shape[-2:]):
        raise ValueError(f"flow of shape {tuple(flow.shape)} does not match image {tuple(x.shape)} (as N, C, H, W)")
    return _per_image(scores, boundary.single)


def is_blurred(
    image: Any,
    threshold: Optional[float] = None,
    model: Optional[SEN] = None,
    *,
    flow: Any = None,
    ensemble: bool = True,
) -> Union[bool, List[bool]]:
    """Whether :func:`pnpdeblur.deblur` should process a photo: ``blur_score >= threshold``.

    Parameters
    ----------
    image : array
        Photo, as for :func:`blur_score`.
    threshold : float, optional
        Decision threshold in pixels of median flow length. Default: the value calibrated for
        the shipped SEN, :func:`default_threshold` of ``ensemble`` (6 px with the ensemble,
        4.5 px without); recalibrate for other weights with ``benchmarks/blind.py --calibrate``.
    model : SEN, optional
        Flow network (default the shipped one).
    flow : array, optional
        SEN's flow of ``image`` if already computed.
    ensemble : bool
        Whether the flow is (or was) estimated with the 8-symmetry ensemble (default True); it
        picks the default threshold.

    Returns
    -------
    bool or list of bool
        One bool, or a list for a batch.
    """
    threshold = default_threshold(ensemble) if threshold is None else check_real(threshold, "threshold")
    scores = blur_score(image, model, flow=flow, ensemble=ensemble)
    if isinstance(scores, float):
        return scores >= threshold
    return [s >= threshold for s in scores]


def reblur_score(image: Any, length: int = 9) -> Union[float, List[float]]:
    """Crété-Roffet et al.'s (2007) re-blur blur metric, taken along four directions.

    The grey image is blurred further by a ``length``-px line kernel along 0°, 45°, 90° and
    135°; in each direction ``d`` the score is ``1 − Σ max(0, |∇_d I| − |∇_d B|) / Σ |∇_d I|``
    (gradients as differences of neighbours along ``d``, ``B`` the re-blurred image,
    borders of ``length`` px left out): a sharp image loses much of its variation when
    blurred (score near 0), a blurred one little (near 1). Motion blur is directional, so the
    largest of the four is returned.

    Parameters
    ----------
    image : array
        Photo in any layout :func:`pnpdeblur.estimate_flow` accepts; uint8 or float in [0, 1];
        colour is reduced to BT.709 luminance. Larger than ``4·length`` px on each side.
    length : int
        Length of the extra blur in pixels (odd or even, ≥ 2; default 9 as in the paper).

    Returns
    -------
    float or list of float
        In [0, 1]; one per image. Measured weaker than :func:`blur_score` (it depends on the
        image's content: sharp and blurred ranges overlap; ``benchmarks/RESULTS.md``).
    """
    from ..operators import motion_kernel

    if not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise ValueError(f"length must be an int >= 2, got {length!r}")
    x, boundary = as_image_batch(image, "image")
    x = x.to(torch.float64)
    if x.shape[-1] <= 4 * length or x.shape[-2] <= 4 * length:
        raise ValueError(f"image must be larger than {4 * length} px on each side for length={length}, "
                         f"got {tuple(x.shape[-2:])}")
    g = x.mean(1, keepdim=True) if x.shape[1] != 3 else \
        (x * torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    per_dir = []
    for dx, dy in _DIRECTIONS:
        m = np.array([dx, dy], np.float64) * (length / np.hypot(dx, dy))
        k = torch.as_tensor(np.asarray(motion_kernel(m), np.float64), device=x.device)
        r = k.shape[-1] // 2
        b = F.conv2d(F.pad(g, (r, r, r, r), mode="replicate"), k[None, None])

        def grad(a: torch.Tensor) -> torch.Tensor:
            # |a(p) − a(p − d)|, away from the borders (rolled-in and replicated pixels)
            d = (a - torch.roll(a, shifts=(dy, dx), dims=(-2, -1))).abs()
            return d[..., 2 * r:-2 * r, 2 * r:-2 * r].flatten(1)

        gi, gb = grad(g), grad(b)
        lost = (gi - gb).clamp_min(0).sum(1)
        total = gi.sum(1)
        # a constant image has no variation to lose: call it maximally blurred (nothing to sharpen)
        per_dir.append(torch.where(total > 0, 1 - lost / total.clamp_min(1e-300), torch.ones_like(total)))
    score = torch.stack(per_dir, 1).amax(1)
    return _per_image([float(s) for s in score.cpu()], boundary.single)
