"""Classical blind estimate of one camera-shake kernel (uniform blur) from a blurred photo.

SEN (:func:`pnpdeblur.estimation.estimate_flow`) models the blur at each pixel as one straight
segment. A hand-held camera's shake during the exposure blurs a distant scene with one kernel
that follows the camera's curved path instead (Levin et al. 2009's recorded kernels), which no
straight segment fits. This module estimates such a kernel by the alternating scheme of
sparse-gradient blind deconvolution (Xu et al. 2013, "Unnatural L0 sparse representation";
Pan et al. 2014's L0 gradient prior), coarse to fine:

- **latent step**: ``x = argmin ||k ⊛ x − y||² + λ ||∇x||₀`` by half-quadratic splitting
  (the gradients hard-thresholded at ``sqrt(λ/β)``, then an FFT solve, for β doubling
  from 2λ to 1e5). The L0 prior keeps only salient edges, which is what makes the kernel
  step well posed (a sharp step edge reveals the kernel's projection);
- **kernel step**: ``k = argmin Σ_d ||M ⊙ (k ⊛ ∂_d x − ∂_d y)||² + γ ||k||²`` over the
  ``s``×``s`` support by conjugate gradients, then small values cut (below 5 % of the
  largest), the rest normalised to sum 1 and re-centred on their centroid. ``M`` masks the
  observed pixels: the FFT works on the photo extended periodically by a smooth blend of
  its opposite edges, and that extension, which no kernel produced, is kept out of the fit;
- λ shrinks by 1.1 per alternation; each scale starts from the previous scale's kernel
  upsampled (the coarsest from a two-pixel segment, not the identity, which is a fixed point).

The photo is first denoised by the shipped DnCNN (``denoise=True``): the kernel step would fit
noise as specks. The estimate is the kernel up to a shift (every blind method's ambiguity; it is
re-centred) and is meant for a non-blind solve with a real prior afterwards
(:func:`pnpdeblur.deblur_shake`), not for its own latent image, which is a cartoon of salient
edges.

Conventions: ``(s, s)`` float64 numpy, non-negative, sum 1, the convolution convention of
:class:`pnpdeblur.operators.Convolution` (``y = x ⊛ k``).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy import fft, ndimage
from skimage.transform import resize

from .._checks import check_flag
from .classical import _MIN_SIZE, _grey_batch

__all__ = ["estimate_kernel", "kernel_length", "default_kernel_size", "DEFAULT_KERNEL_SIZE", "SUPPORT_RATIO",
           "MIN_RELIABLE_SHAKE_SIZE"]

#: The largest default kernel support (px): Levin et al.'s recorded camera-shake kernels are 13–27 px.
DEFAULT_KERNEL_SIZE = 31
#: A kernel support wider than the photo's shorter side over this ratio lets the estimate fail on
#: small photos: with 31 px on 96² crops the estimates were long tangles and ``deblur_shake`` lost
#: up to 18 dB against the blurred input. Of the ratios 3, 4, 5 and 6 (at most 6, so that photos of
#: 6 · 31 = 186 px and more keep the 31-px support: Levin et al.'s 255² images among them), none
#: kept the crops losing more than 0.5 dB under 5 % at any side below 192 px, and 6 had the best
#: mean gain over the 64–160 px BSDS500 *train* crops (+0.9 dB; 31 px: −2.6 dB), which the rule then
#: asks for (fixed before measuring, amended after 5 of the 20 crops: benchmarks/RESULTS.md, "Camera
#: shake on small photos", says how).
SUPPORT_RATIO = 6
#: Below this many pixels on the shorter side even the support :func:`default_kernel_size` gives
#: let more than 5 % of the *train* crops lose more than 0.5 dB, and :func:`pnpdeblur.deblur_shake`
#: warns (measured as :data:`SUPPORT_RATIO`).
MIN_RELIABLE_SHAKE_SIZE = 192

# L0 weight of the latent step at the start of each scale, and its floor (Pan et al.'s values
# for natural images on a [0, 1] scale; 1e-3, 2e-3 and 8e-3 did worse on the tuning set).
_LAMBDA = 4e-3
_LAMBDA_MIN = 1e-4
_LAMBDA_DECAY = 1.1
# Half-quadratic splitting: β from 2λ, doubled up to this.
_BETA_MAX = 1e5
# Kernel values below this fraction of the largest are set to zero after each kernel step.
_CUT = 0.05
# ... and 8-connected pieces with less than this fraction of the mass.
_MIN_PIECE = 0.1
# Kernel step: conjugate-gradient iterations, warm-started from the previous kernel. Stopping
# early regularises: 10 beat 5, 15 and 25 on the tuning set (BSDS500 train, benchmarks/RESULTS.md).
_CG_ITERS = 10
# Gradient selection: at least this many times sqrt(P_I·P_K) pixels per orientation (Cho & Lee).
_SELECT_R = 2.0
# Lowest noise level the pre-denoising runs at (the estimate of a clean photo can be ~0).
_MIN_DENOISE_LEVEL = 1e-3
# Gradients weaker than this (a quarter of an 8-bit level) are no edge: a flat photo, or the
# denoiser's residue on one, gives no evidence of blur.
_MIN_EDGE = 1e-3
# Scale factor between pyramid levels.
_SCALE_STEP = 1.0 / math.sqrt(2.0)
# The coarsest level's kernel side (pixels).
_COARSEST = 5


def _check_kernel_size(kernel_size) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, numbers.Integral) \
            or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 3 (pixels), got {kernel_size!r}")
    return int(kernel_size)


def fitting_kernel_size(side: int) -> int:
    """The largest odd support (px, at least 3) not above ``side / SUPPORT_RATIO``: what a kernel
    estimate on a photo with shorter side ``side`` can afford (:data:`SUPPORT_RATIO`)."""
    s = int(side) // SUPPORT_RATIO
    s -= 1 - s % 2
    return max(3, s)


def default_kernel_size(shape: tuple) -> int:
    """The default kernel support for a photo of ``shape`` ``(..., H, W)``:
    ``min(DEFAULT_KERNEL_SIZE, the largest odd size <= min(H, W) / SUPPORT_RATIO)``, at least 3.

    31 px on photos of ``31 · SUPPORT_RATIO`` px and more on the shorter side; smaller on smaller
    photos, where a 31-px support let the estimate fail (measured on BSDS500 crops, see
    :data:`SUPPORT_RATIO`).

    Examples
    --------
    >>> from pnpdeblur.estimation.kernel import default_kernel_size
    >>> default_kernel_size((255, 255)), default_kernel_size((96, 128))
    (31, 15)
    """
    side = min(int(shape[-2]), int(shape[-1]))
    return min(DEFAULT_KERNEL_SIZE, fitting_kernel_size(side))


def check_kernel_fits(kernel_size: int, shape: tuple[int, int], max_side: int = 512, note: str = "",
                      name: str = "kernel_size") -> None:
    """``ValueError`` unless a ``kernel_size`` kernel can be estimated on an image of ``shape``
    ``(H, W)`` with ``max_side``; the message gives the largest odd size that fits (``note`` is
    appended to the size, e.g. ``" (the default)"``; ``name`` is what the caller calls the size,
    e.g. ``"--kernel-size"`` on the command line)."""
    side = min(int(shape[0]), int(shape[1]))
    if side < _MIN_SIZE:
        raise ValueError(f"the image's smaller side {side} is too small for a kernel estimate "
                         f"(at least {_MIN_SIZE}x{_MIN_SIZE} pixels)")
    if side >= kernel_size and max_side >= kernel_size:
        return
    bound = min(side, max_side)
    bound -= 1 - bound % 2  # the largest odd size that fits
    fix = f"pass an odd {name} <= {bound}" if bound >= 3 else "max_side leaves no room for a kernel"
    raise ValueError(f"{name} {kernel_size}{note} must not exceed the image's smaller side {side} "
                     f"(nor max_side {max_side}): {fix}")


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _smooth_periodic(g: np.ndarray, margin: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """``g`` grown by at least ``margin`` px on each side, to a size the FFT handles fast, so that
    the result tiles the plane without a jump: the new rows (then columns) blend the last row
    into the first with a raised cosine. Also returns where ``g`` lies in the result."""
    out = g
    where = []
    for axis in (0, 1):
        n = g.shape[axis]
        extra = fft.next_fast_len(n + 2 * margin, real=True) - n
        before = extra // 2
        first = np.take(out, [0], axis=axis)
        last = np.take(out, [-1], axis=axis)
        t = (np.arange(1, extra + 1) / (extra + 1)).reshape((-1, 1) if axis == 0 else (1, -1))
        blend = 0.5 - 0.5 * np.cos(np.pi * t)  # 0 → 1 from the last row to the first
        ext = (1.0 - blend) * last + blend * first
        head, tail = np.split(ext, [extra - before], axis=axis)
        out = np.concatenate([tail, out, head], axis=axis)
        where.append(slice(before, before + n))
    return out, (where[0], where[1])


def _rfft(a: np.ndarray) -> np.ndarray:
    return fft.rfft2(a, workers=-1)


def _irfft(a: np.ndarray, shape) -> np.ndarray:
    return fft.irfft2(a, s=shape, workers=-1)


def _kernel_otf(k: np.ndarray, shape) -> np.ndarray:
    """FFT of ``k`` zero-padded to ``shape`` with its centre moved to the origin."""
    s0, s1 = k.shape
    kp = np.zeros(shape)
    kp[:s0, :s1] = k
    kp = np.roll(kp, (-(s0 // 2), -(s1 // 2)), axis=(0, 1))
    return _rfft(kp)


def _gradients(x: np.ndarray):
    """Forward differences with periodic wrap (the FFT's model), x then y."""
    return np.roll(x, -1, axis=1) - x, np.roll(x, -1, axis=0) - x


def _difference_otfs(shape):
    dx = np.zeros(shape)
    dx[0, 0], dx[0, -1] = -1.0, 1.0  # (x[j+1] - x[j]) as a convolution
    dy = np.zeros(shape)
    dy[0, 0], dy[-1, 0] = -1.0, 1.0
    return _rfft(dx), _rfft(dy)


def _latent_l0(y: np.ndarray, k: np.ndarray, lam: float) -> np.ndarray:
    """``argmin_x ||k ⊛ x − y||² + lam ||∇x||₀`` by half-quadratic splitting (periodic model)."""
    Kf = _kernel_otf(k, y.shape)
    Dx, Dy = _difference_otfs(y.shape)
    num_data = np.conj(Kf) * _rfft(y)
    den_data = np.abs(Kf) ** 2
    den_grad = np.abs(Dx) ** 2 + np.abs(Dy) ** 2
    x = y.copy()
    beta = 2.0 * lam
    while beta < _BETA_MAX:
        gx, gy = _gradients(x)
        small = gx ** 2 + gy ** 2 < lam / beta
        gx[small] = 0.0
        gy[small] = 0.0
        num = num_data + beta * (np.conj(Dx) * _rfft(gx) + np.conj(Dy) * _rfft(gy))
        x = _irfft(num / (den_data + beta * den_grad), y.shape)
        beta *= 2.0
    return x


def _salient_gradients(x: np.ndarray, mask: np.ndarray, kernel_pixels: int):
    """The gradients of ``x`` kept for the kernel step: the strongest ones, enough of each
    orientation (Cho & Lee 2009's rule: at least ``r·sqrt(P_I·P_K)`` pixels, r = 2, in each of
    4 orientation bins, P_I the observed pixels, P_K the kernel's), and none below ``_MIN_EDGE``;
    the rest set to zero."""
    gx, gy = _gradients(x)
    mag = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.floor(angle / (np.pi / 4) + 0.5).astype(int) % 4
    n_keep = int(math.ceil(_SELECT_R * math.sqrt(float(mask.sum()) * kernel_pixels)))
    threshold = np.inf
    for b in range(4):
        m = mag[(bins == b) & mask]
        m = m[m > _MIN_EDGE]
        if m.size:
            threshold = min(threshold, float(np.sort(m)[max(0, m.size - n_keep)]))
    keep = (mag >= threshold) & (mag > _MIN_EDGE)
    return np.where(keep, gx, 0.0), np.where(keep, gy, 0.0)


def _kernel_step(x: np.ndarray, y: np.ndarray, mask: np.ndarray, k0: np.ndarray, reg: float) -> np.ndarray:
    """``argmin_k Σ_d ||mask ⊙ (k ⊛ ∂_d x − ∂_d y)||² + reg·E·||k||²`` on ``k0``'s support, by CG
    from ``k0`` (E: the masked gradient energy of x, so that ``reg`` does not depend on the image's
    size or contrast)."""
    s0, s1 = k0.shape
    shape = x.shape
    selected = _salient_gradients(x, mask, s0 * s1)
    gxs = [_rfft(g) for g in selected]
    gys = _gradients(y)
    # the y-gradient is observed where both its pixels are
    masks = [mask & np.roll(mask, -1, axis=1), mask & np.roll(mask, -1, axis=0)]

    def crop(a):  # the s0×s1 window centred on the origin of a periodic array
        a = np.roll(a, (s0 // 2, s1 // 2), axis=(0, 1))
        return a[:s0, :s1]

    energy = sum(float(np.sum(g ** 2 * m)) for g, m in zip(selected, masks))
    if not energy > 0:  # a flat image: no edge, so no evidence of any blur
        return _clean(np.zeros_like(k0))
    lam = reg * energy

    def normal(k):
        Kf = _kernel_otf(k, shape)
        out = lam * k
        for G, m in zip(gxs, masks):
            r = _irfft(Kf * G, shape) * m
            out = out + crop(_irfft(_rfft(r) * np.conj(G), shape))
        return out

    b = sum(crop(_irfft(_rfft(gy * m) * np.conj(G), shape)) for G, gy, m in zip(gxs, gys, masks))
    k = k0.copy()
    r = b - normal(k)
    p = r.copy()
    rr = float(np.sum(r * r))
    for _ in range(_CG_ITERS):
        if rr <= 1e-30:
            break
        Ap = normal(p)
        alpha = rr / float(np.sum(p * Ap))
        k = k + alpha * p
        r = r - alpha * Ap
        rr_new = float(np.sum(r * r))
        p = r + (rr_new / rr) * p
        rr = rr_new
    return _clean(k)


def centroid_offset(kernel: np.ndarray) -> tuple:
    """``(dy, dx)``: where a kernel's centroid lies relative to its central pixel, in px."""
    k = np.asarray(kernel, dtype=np.float64)
    iy, ix = np.indices(k.shape)
    total = float(k.sum())
    return (float((k * iy).sum() / total - k.shape[0] // 2), float((k * ix).sum() / total - k.shape[1] // 2))


def _clean(k: np.ndarray) -> np.ndarray:
    """Non-negative, small values cut, sum 1, centroid moved to the central pixel."""
    k = np.where(k > _CUT * max(float(k.max()), 0.0), k, 0.0)
    # isolated specks (noise fitted by the kernel step): 8-connected pieces holding less than
    # _MIN_PIECE of the mass go
    labels, n = ndimage.label(k > 0, structure=np.ones((3, 3)))
    if n > 1:
        mass = ndimage.sum(k, labels, index=np.arange(1, n + 1))
        small = np.flatnonzero(mass < _MIN_PIECE * float(mass.sum())) + 1
        k = np.where(np.isin(labels, small), 0.0, k)
    total = float(k.sum())
    if not total > 0:  # nothing left: fall back to the identity
        k = np.zeros_like(k)
        k[k.shape[0] // 2, k.shape[1] // 2] = 1.0
        return k
    k = k / total
    sy, sx = (int(round(d)) for d in centroid_offset(k))
    if sy or sx:
        shifted = np.zeros_like(k)
        h, w = k.shape
        shifted[max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)] = \
            k[max(0, sy):h - max(0, -sy), max(0, sx):w - max(0, -sx)]
        k = shifted / shifted.sum()
    return k


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def _n_levels(size: int) -> int:
    """Pyramid levels for a kernel of side ``size``: the coarsest is the last whose kernel,
    ``size · _SCALE_STEP ** level``, is still at least ``_COARSEST`` pixels (one level if
    ``size`` itself is smaller)."""
    return 1 + max(0, int(math.floor(math.log(_COARSEST / size) / math.log(_SCALE_STEP))))


def _estimate_one(g: np.ndarray, size: int, iterations: int, reg: float, max_side: int) -> np.ndarray:
    h, w = g.shape
    if max(h, w) > max_side:  # one kernel for the whole photo: its centre is enough to find it
        ch, cw = min(h, max_side), min(w, max_side)
        top, left = (h - ch) // 2, (w - cw) // 2
        g = g[top:top + ch, left:left + cw]
    k = None
    for level in range(_n_levels(size) - 1, -1, -1):
        factor = _SCALE_STEP ** level
        ks = size if level == 0 else _odd(size * factor)
        ys = g if level == 0 else resize(g, (max(8, round(g.shape[0] * factor)), max(8, round(g.shape[1] * factor))),
                                         order=1, anti_aliasing=True, mode="edge")
        if k is None:
            k = np.zeros((ks, ks))
            k[ks // 2, ks // 2 - 1:ks // 2 + 1] = 0.5
        else:
            k = _clean(np.clip(resize(k, (ks, ks), order=1, mode="constant"), 0.0, None))
        yp, inside = _smooth_periodic(ys, ks)
        mask = np.zeros(yp.shape, dtype=bool)
        mask[inside] = True
        lam = _LAMBDA
        for _ in range(iterations):
            x = _latent_l0(yp, k, lam)
            k = _kernel_step(x, yp, mask, k, reg)
            lam = max(lam / _LAMBDA_DECAY, _LAMBDA_MIN)
    return k


def estimate_kernel(
    image: Any,
    kernel_size: int,
    *,
    iterations: int = 10,
    kernel_reg: float = 1e-3,
    denoise: bool = True,
    max_side: int = 512,
) -> np.ndarray:
    """Estimate one blur kernel (camera shake, uniform over the photo) from a blurred photo.

    Parameters
    ----------
    image : array
        Blurred photo: ``(H, W)`` / ``(H, W, C)`` numpy or cupy, ``(H, W)`` / ``(C, H, W)`` torch,
        or an ``(N, C, H, W)`` batch (one kernel per image), C = 1, 3 or 4; uint8 or float in
        [0, 1]; RGB is reduced to its luminance, alpha ignored. At least 16×16 pixels and at
        least ``kernel_size``.
    kernel_size : int
        Odd side of the kernel's support, pixels: a bound on the blur's extent (too small cuts
        the kernel; too large costs time and some accuracy, and on a small photo the estimate:
        keep it at most the shorter side / :data:`SUPPORT_RATIO`, what
        :func:`default_kernel_size` gives; see Notes).
    iterations : int
        Latent/kernel alternations per pyramid level (default 10).
    kernel_reg : float
        Weight of ``||k||²`` in the kernel step, relative to the selected gradients' energy.
    denoise : bool
        Denoise the photo first with the shipped DnCNN at its estimated noise level
        (:func:`pnpdeblur.pipeline.estimate_noise_level`; default True). The blur survives
        denoising, while noise would be fitted by the kernel step as specks: on 12 held-out
        shaken crops at σ = 0.01 it raised ``deblur_shake``'s mean gain from +3.4 to +4.4 dB, and
        none fell below its input (without it two lost 4.5 and 8.2 dB).
    max_side : int
        Photos larger than this are estimated on their central ``max_side``-pixel crop (one
        kernel for the whole photo: its centre is enough, and the cost grows with the area).

    Returns
    -------
    numpy.ndarray
        ``(kernel_size, kernel_size)`` float64 (``(N, kernel_size, kernel_size)`` for a batch):
        non-negative, sum 1, centred on its mass; convolution convention, ready for
        :class:`pnpdeblur.operators.Convolution`.

    Raises
    ------
    ValueError
        Bad ``kernel_size``/``iterations``/``kernel_reg``/``max_side``, an image smaller than
        16×16 or than the kernel, NaN/Inf values.
    TypeError
        ``image`` not an array, or of a non-float, non-uint8 dtype; ``denoise`` not a bool.

    Notes
    -----
    Measured in ``benchmarks/RESULTS.md`` ("Camera shake"): on Levin et al.'s recorded
    camera-shake images, and on synthetic shake (:func:`pnpdeblur.data.random_shake_kernel`).
    Spatially varying blur (moving objects, rotation, depth) is SEN's domain
    (:func:`pnpdeblur.deblur`).

    On small photos the support must shrink with the photo: a support wider than the shorter side
    / :data:`SUPPORT_RATIO` gave long, tangled estimates (on 96² BSDS500 crops with 31 px,
    ``deblur_shake`` lost up to 18 dB against the blurred input). :func:`pnpdeblur.deblur_shake`
    applies that bound by default and warns above it; this function takes the size as given.
    Below :data:`MIN_RELIABLE_SHAKE_SIZE` px the estimate is unreliable even then.
    """
    size = _check_kernel_size(kernel_size)
    iterations = _check_count(iterations, "iterations")
    reg = _check_positive(kernel_reg, "kernel_reg")
    max_side = _check_count(max_side, "max_side")
    denoise = check_flag(denoise, "denoise")
    g, _, batch = _grey_batch(image, "image")
    check_kernel_fits(size, g.shape[1:], max_side)
    if denoise:
        g = _denoised(g)
    kernels = np.stack([_estimate_one(gi, size, iterations, reg, max_side) for gi in g])
    return kernels if batch is not None else kernels[0]


def kernel_length(kernel: Any) -> float:
    """How far a kernel spreads, as the length of a straight line kernel of the same spread.

    ``sqrt(12 · Σ k(p) |p − c|²)`` with ``c`` the kernel's centroid: a uniform segment of length
    ``L`` has second moment ``L²/12`` about its centre, so it scores ``L``; the identity scores 0.

    Parameters
    ----------
    kernel : array of shape (kh, kw)
        Non-negative PSF (normalised here).

    Returns
    -------
    float
        Pixels.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    if not np.all(np.isfinite(k)) or k.min() < 0 or not k.sum() > 0:
        raise ValueError("kernel must be finite and non-negative with a positive sum")
    k = k / k.sum()
    iy, ix = np.indices(k.shape)
    cy, cx = float((k * iy).sum()), float((k * ix).sum())
    return float(np.sqrt(12.0 * (k * ((iy - cy) ** 2 + (ix - cx) ** 2)).sum()))


def _denoised(g: np.ndarray) -> np.ndarray:
    """Each grey image of ``g`` (N, H, W) denoised by the shipped DnCNN at its estimated level."""
    import torch

    from ..pipeline import default_prior, estimate_noise_level

    t = torch.from_numpy(g[:, None])
    levels = estimate_noise_level(t)
    prior = default_prior()
    out = [prior(t[i:i + 1], max(float(levels[i]), _MIN_DENOISE_LEVEL)) for i in range(len(g))]
    return torch.cat(out)[:, 0].to(torch.float64).numpy()
