"""Image and flow quality metrics.

Layout rules (all functions)
----------------------------
* 4-D inputs are batches ``(N, C, H, W)`` (numpy or torch); a metric is computed per image
  and, with ``reduction="mean"`` (default), averaged over the batch (the per-image mean,
  as published tables report). ``reduction="none"`` returns the ``(N,)`` per-image values
  as a numpy array.
* 3-D inputs are single images: numpy/cupy ``(H, W, C)`` (the user-facing layout), torch
  ``(C, H, W)``, each input by its own type (the rule of
  :func:`pnpdeblur.backend.host_image_batch`, shared with :mod:`pnpdeblur.viz`); pass
  ``channel_axis`` to override. 2-D inputs are grey images.

Values are computed in float64 on the CPU; inputs are not modified. Inputs containing
NaN or Inf, and empty inputs, raise ``ValueError``. ``data_range`` defaults to 1 for float
images (the library's [0, 1] convention) and, as in scikit-image, to the range of the dtype
for integer images (255 for uint8; for PSNR of images with negative values, max − min of
the dtype); mixing an integer and a float input needs an explicit ``data_range``.

PSNR and SSIM defaults equal scikit-image's ``peak_signal_noise_ratio(ref, x, data_range=1)``
and ``structural_similarity(ref, x, data_range=1, channel_axis=...)``: a 7x7 uniform window,
sample covariance (``N/(N-1)``), ``K1 = 0.01``, ``K2 = 0.03``, borders of half a window
excluded from the mean, mean over channels. ``gaussian_weights=True`` gives the SSIM of
Wang et al. (2004) that several deblurring papers report: an 11x11 Gaussian window with
sigma 1.5 and population covariance (``use_sample_covariance=False``), i.e. skimage's
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
The two SSIM variants differ by up to a few hundredths, so state which one a table uses.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable

import numpy as np
from scipy import ndimage

from ._checks import check_flag
from ._images import check_unit_scale
from .backend import host_image_batch, to_host_numpy

__all__ = ["psnr", "ssim", "flow_epe", "flow_mse", "kohler_psnr", "kohler_align"]


def _is_torch(x) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, torch.Tensor)


def _shape(x) -> tuple:
    # array-likes with only __array__ (e.g. PIL images) have no .shape: report their array's
    shape = getattr(x, "shape", None)
    return tuple(shape) if shape is not None else np.shape(np.asarray(x))


def _to_numpy(x, name: str) -> np.ndarray:
    """float64 host copy/view of an array (checks in :func:`pnpdeblur.backend.to_host_numpy`)."""
    return to_host_numpy(x, name).astype(np.float64, copy=False)


def _batch(x, ref, channel_axis, names=("x", "ref")) -> tuple[np.ndarray, np.ndarray]:
    """Return both as float64 ``(N, C, H, W)``, each by its own type's layout rule."""
    a = host_image_batch(x, names[0], channel_axis).astype(np.float64, copy=False)
    b = host_image_batch(ref, names[1], channel_axis).astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {_shape(x)} and "
            f"{_shape(ref)} (as (N, C, H, W): {a.shape} and {b.shape}; 3-D numpy/cupy "
            "images are (H, W, C), torch ones (C, H, W))"
        )
    return a, b


def _reduce(values: np.ndarray, reduction: str):
    if reduction == "mean":
        return float(np.mean(values))
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _int_limits(x):
    """(min, max) of an integer/bool dtype, or None for floating inputs."""
    if _is_torch(x):
        import torch

        if x.dtype == torch.bool:
            return 0, 1
        if x.is_floating_point() or x.is_complex():
            return None
        info = torch.iinfo(x.dtype)
        return info.min, info.max
    dt = getattr(x, "dtype", None)
    if dt is None:
        return None
    dt = np.dtype(dt)
    if dt.kind == "b":
        return 0, 1
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min), int(info.max)
    return None


def _check_range(data_range, x=None, ref=None, signed_full_range: bool = True) -> float:
    """Explicit ``data_range``, or the default: 1 for floats, the dtype's range for integers.

    ``signed_full_range=False`` is PSNR's rule in scikit-image (dtype max when the reference
    has no negative values); SSIM always uses max − min of the dtype.
    """
    if data_range is None:
        lx, lr = _int_limits(x), _int_limits(ref)
        if lx is None and lr is None:
            return 1.0
        if lx is None or lr is None or lx != lr:
            raise ValueError(
                "x and ref have different dtypes, one of them integer: pass data_range "
                "(e.g. 255 for 8-bit images, 1 for floats in [0, 1])"
            )
        lo, hi = lr
        if not signed_full_range and float(ref.min()) >= 0:
            return float(hi)
        return float(hi - lo)
    if (isinstance(data_range, bool) or not isinstance(data_range, numbers.Real)
            or not np.isfinite(data_range) or data_range <= 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return float(data_range)


def _check_unit_floats(data_range, x, a: np.ndarray, b: np.ndarray) -> None:
    """Without ``data_range``, float images are on the [0, 1] scale (the photo rule of
    :func:`pnpdeblur._images.check_unit_scale`): a 0-255 float image would otherwise score
    against a peak of 1 (a PSNR of −40 dB where scikit-image raises)."""
    if data_range is not None or _int_limits(x) is not None:
        return
    for arr, name in ((a, "x"), (b, "ref")):
        if arr.size:
            check_unit_scale(float(arr.min()), float(arr.max()), name,
                             "pass data_range for another scale, e.g. 255")


def psnr(x: Any, ref: Any, data_range: float | None = None, reduction: str = "mean",
         channel_axis: int | None = None) -> float | np.ndarray:
    """Peak signal-to-noise ratio ``10 log10(data_range² / MSE)`` in dB.

    Parameters
    ----------
    x, ref : numpy.ndarray or torch.Tensor
        Same shape; see the module docstring for layouts.
    data_range : float, optional
        Peak value. Default: 1 for float images (values in [0, 1]; floats beyond [−0.5, 1.5]
        without a ``data_range`` raise ``ValueError``, as scikit-image does); for integer images
        the range of the dtype, as scikit-image (255 for uint8).
    reduction : {"mean", "none"}
        Mean over a batch (float) or per-image values (numpy ``(N,)``).
    channel_axis : int, optional
        Channel axis of 3-D inputs, overriding the layout rule of the module docstring.

    Returns
    -------
    float or numpy.ndarray
        ``inf`` where the images are identical (as scikit-image).

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> ref = np.zeros((8, 8))
    >>> round(pd.metrics.psnr(ref + 0.1, ref), 3)          # 10 log10(1 / 0.1²)
    20.0
    >>> round(pd.metrics.psnr(np.uint8([[0, 255]]), np.uint8([[0, 0]])), 3)  # 10 log10(255² / (255²/2))
    3.01
    >>> pd.metrics.psnr(ref, ref)
    inf
    >>> batch = np.stack([ref + 0.1, ref + 0.01])[:, None]  # (N, C, H, W)
    >>> np.round(pd.metrics.psnr(batch, np.zeros_like(batch), reduction="none"), 3)
    array([20., 40.])
    """
    a, b = _batch(x, ref, channel_axis)
    dr = _check_range(data_range, x, ref, signed_full_range=False)
    _check_unit_floats(data_range, x, a, b)
    mse = np.mean((a - b) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        vals = 10.0 * np.log10(dr**2 / mse)
    return _reduce(vals, reduction)


def _ssim_plane(a: np.ndarray, b: np.ndarray, dr: float, win_size: int, gaussian: bool,
                sigma: float, sample_cov: bool, k1: float, k2: float) -> float:
    if gaussian:
        truncate = 3.5
        r = int(truncate * sigma + 0.5)
        win = 2 * r + 1

        def filt(z):
            return ndimage.gaussian_filter(z, sigma=sigma, truncate=truncate, mode="reflect")
    else:
        win = win_size

        def filt(z):
            return ndimage.uniform_filter(z, size=win, mode="reflect")
    if min(a.shape) < win:
        raise ValueError(f"images of size {a.shape} are smaller than the {win}x{win} SSIM window")
    n = win**2
    cov_norm = n / (n - 1.0) if sample_cov else 1.0
    ux, uy = filt(a), filt(b)
    uxx, uyy, uxy = filt(a * a), filt(b * b), filt(a * b)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (win - 1) // 2
    return float(s[pad:s.shape[0] - pad, pad:s.shape[1] - pad].mean(dtype=np.float64))


def ssim(x: Any, ref: Any, data_range: float | None = None, *, gaussian_weights: bool = False, sigma: float = 1.5,
         win_size: int = 7, use_sample_covariance: bool | None = None, K1: float = 0.01,
         K2: float = 0.03, reduction: str = "mean", channel_axis: int | None = None) -> float | np.ndarray:
    """Structural similarity (mean SSIM over the image and its channels).

    Parameters
    ----------
    x, ref : numpy.ndarray or torch.Tensor
        Same shape; see the module docstring for layouts.
    data_range : float, optional
        Peak value. Default: 1 for float images (values in [0, 1]; floats beyond [−0.5, 1.5]
        without a ``data_range`` raise ``ValueError``, as scikit-image does); for integer images
        max − min of the dtype, as scikit-image (255 for uint8).
    gaussian_weights : bool
        False (default): scikit-image's default 7x7 uniform window with sample covariance.
        True: Wang et al.'s 11x11 Gaussian window (``sigma`` = 1.5, truncated at 3.5 sigma)
        with population covariance.
    sigma : float
        Std of the Gaussian window in pixels (used only with ``gaussian_weights``; the window
        is truncated at 3.5 sigma).
    win_size : int
        Odd side of the uniform window (ignored with ``gaussian_weights``).
    use_sample_covariance : bool, optional
        Override the covariance normalisation (default: True for the uniform window,
        False for the Gaussian one).
    K1, K2 : float
        SSIM's stabilising constants, ``C1 = (K1·data_range)²``, ``C2 = (K2·data_range)²``.
    reduction : {"mean", "none"}
        Mean over a batch (float) or per-image values (numpy ``(N,)``).
    channel_axis : int, optional
        Channel axis of 3-D inputs, overriding the layout rule of the module docstring.

    Returns
    -------
    float or numpy.ndarray
        Mean SSIM (a float), or with ``reduction="none"`` the per-image values.

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> a, b = np.full((16, 16), 0.2), np.full((16, 16), 0.4)
    >>> round(pd.metrics.ssim(a, b), 4)           # flat: (2·0.2·0.4 + C1) / (0.2² + 0.4² + C1), C1 = 0.01²
    0.8001
    >>> sharp = pd.data.sample_image("camera", 64)
    >>> flow = np.zeros((2, 64, 64), np.float32); flow[0] = 7
    >>> blurred = pd.MotionBlur(flow)(sharp)
    >>> round(pd.metrics.ssim(sharp, sharp), 4), round(pd.metrics.ssim(blurred, sharp), 2)
    (1.0, 0.8)
    """
    if not isinstance(win_size, numbers.Integral) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd int >= 3, got {win_size!r}")
    if isinstance(sigma, bool) or not (isinstance(sigma, numbers.Real) and 0 < sigma < np.inf):
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    for name, k in (("K1", K1), ("K2", K2)):
        if isinstance(k, bool) or not (isinstance(k, numbers.Real) and 0 <= k < np.inf):
            raise ValueError(f"{name} must be a finite number >= 0, got {k!r}")
    gaussian_weights = check_flag(gaussian_weights, "gaussian_weights")
    sample_cov = (not gaussian_weights) if use_sample_covariance is None else check_flag(
        use_sample_covariance, "use_sample_covariance")
    a, b = _batch(x, ref, channel_axis)
    dr = _check_range(data_range, x, ref)
    _check_unit_floats(data_range, x, a, b)
    vals = np.array([
        np.mean([_ssim_plane(a[i, c], b[i, c], dr, int(win_size), gaussian_weights, float(sigma),
                             sample_cov, K1, K2) for c in range(a.shape[1])])
        for i in range(a.shape[0])
    ])
    return _reduce(vals, reduction)


def _flows(est, gt) -> tuple[np.ndarray, np.ndarray]:
    e, g = _to_numpy(est, "est"), _to_numpy(gt, "gt")
    if e.shape != g.shape:
        raise ValueError(f"est and gt must have the same shape, got {e.shape} and {g.shape}")
    if e.ndim == 3:
        e, g = e[None], g[None]
    if e.ndim != 4 or e.shape[1] != 2:
        raise ValueError(f"flows must be (2, H, W) or (N, 2, H, W), got {e.shape}")
    return e, g


def flow_epe(est: Any, gt: Any, symmetric: bool = True, reduction: str = "mean") -> float | np.ndarray:
    """Average end-point error ``‖est − gt‖₂`` in pixels.

    With ``symmetric=True`` (default) a blur label and its negation are equivalent
    (``m ≡ −m``: same line kernel), so the per-pixel error is
    ``min(‖est − gt‖, ‖est + gt‖)``.

    Parameters
    ----------
    est, gt : ``(2, H, W)`` or ``(N, 2, H, W)`` numpy arrays or torch tensors.
    symmetric : bool
        Count ``est`` and ``−est`` as the same label (default True).
    reduction : {"mean", "none"}
        Mean over a batch (float) or per-image values (numpy ``(N,)``).

    Returns
    -------
    float or numpy.ndarray
        The mean end-point error in pixels, or with ``reduction="none"`` the per-image values.
    """
    symmetric = check_flag(symmetric, "symmetric")
    e, g = _flows(est, gt)
    d = np.sqrt(((e - g) ** 2).sum(axis=1))
    if symmetric:
        d = np.minimum(d, np.sqrt(((e + g) ** 2).sum(axis=1)))
    return _reduce(d.mean(axis=(1, 2)), reduction)


def flow_mse(est: Any, gt: Any, symmetric: bool = True, reduction: str = "mean") -> float | np.ndarray:
    """Mean squared error of flow labels, ``‖est − gt‖² / (2HW)`` per image (Wu et al. eq. 1).

    This is the "MSE on motion flow estimation" of Wu et al. / Gong et al. With
    ``symmetric=True`` each pixel uses ``min(‖est − gt‖², ‖est + gt‖²)`` (``m ≡ −m``).
    """
    symmetric = check_flag(symmetric, "symmetric")
    e, g = _flows(est, gt)
    d = ((e - g) ** 2).sum(axis=1)
    if symmetric:
        d = np.minimum(d, ((e + g) ** 2).sum(axis=1))
    return _reduce(d.mean(axis=(1, 2)) / 2.0, reduction)


def _single_hwc(x, name: str, channel_axis) -> np.ndarray:
    a = host_image_batch(x, name, channel_axis)
    if a.shape[0] != 1:
        raise ValueError(f"{name} must be one image (H, W), (H, W, C), (C, H, W) or (1, C, H, W), "
                         f"got shape {_shape(x)}")
    return np.moveaxis(a[0], 0, -1).astype(np.float64)


def kohler_align(x: Any, ref: Any, max_shift: int = 5,
                 channel_axis: int | None = None) -> tuple[float, tuple[int, int], float]:
    """Best integer shift and least-squares intensity scale aligning ``x`` to ``ref``.

    For every shift ``d`` in ``[-max_shift, max_shift]²`` the interior
    ``ref[s:H-s, s:W-s]`` (``s = max_shift``) is compared with ``α · x(p + d)``, where
    ``α = <x_d, ref> / <x_d, x_d>`` minimises the squared error; the shift of lowest error
    wins.

    Returns
    -------
    (psnr_db, (dy, dx), alpha) : (float, (int, int), float)
        PSNR (data range 1) over the interior, the shift (rows, columns; ``x[p + d]`` matches
        ``ref[p]``) and the scale.
    """
    if not isinstance(max_shift, numbers.Integral) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    a, b = _single_hwc(x, "x", channel_axis), _single_hwc(ref, "ref", channel_axis)
    if a.shape != b.shape:
        raise ValueError(f"x and the sharp frames must have the same shape, got {a.shape} and {b.shape}")
    s = int(max_shift)
    h, w = a.shape[:2]
    if h <= 2 * s or w <= 2 * s:
        raise ValueError(f"max_shift={s} is too large for images of size {(h, w)}")
    g = b[s:h - s, s:w - s]
    m = g.size
    # For every shift d: c(d) = <x_d, g>, e(d) = <x_d, x_d>; the optimal scale is c/e and the
    # residual energy <g, g> - c²/e. c comes from one FFT correlation, e from an integral image.
    from scipy.signal import fftconvolve

    c = sum(fftconvolve(a[..., ch], g[::-1, ::-1, ch], mode="valid") for ch in range(a.shape[2]))
    sq = np.pad((a * a).sum(axis=2).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    hh, ww = h - 2 * s, w - 2 * s
    e = sq[hh:, ww:] - sq[:-hh, ww:] - sq[hh:, :-ww] + sq[:-hh, :-ww]  # (2s+1, 2s+1) window sums
    gg = float(np.sum(g * g))
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(e > 0, c / e, 1.0)
    err = np.maximum(gg - 2 * alpha * c + alpha**2 * e, 0.0) / m
    k = int(np.argmin(err))  # ties: the first shift in (dy, dx) raster order
    iy, ix = divmod(k, 2 * s + 1)
    # re-evaluate the winner directly (exact residual, no FFT round-off)
    xs = a[iy:iy + hh, ix:ix + ww]
    den = float(np.sum(xs * xs))
    best_alpha = float(np.sum(xs * g)) / den if den > 0 else 1.0
    best = (float(np.mean((best_alpha * xs - g) ** 2)), (iy - s, ix - s), best_alpha)
    err, shift, alpha = best
    if not (np.isfinite(err) and np.isfinite(alpha)):
        # finite inputs whose squares overflow float64 (|values| beyond ~1e150)
        raise ValueError(f"kohler_align overflowed (squared error {err}, scale {alpha}): x and ref must be "
                         "images on a [0, 1]-like scale")
    with np.errstate(divide="ignore"):
        val = float(10.0 * np.log10(1.0 / err)) if err > 0 else float("inf")
    return val, shift, alpha


def kohler_psnr(x: Any, sharp_frames: Iterable[Any], max_shift: int = 5, channel_axis: int | None = None,
                return_details: bool = False) -> float | tuple[float, tuple[int, tuple[int, int], float]]:
    """PSNR under the Köhler et al. (2012) benchmark protocol.

    The restored image is compared with every ground-truth sharp frame recorded along the
    camera trajectory; for each frame it is aligned by :func:`kohler_align` (integer shift up
    to ``max_shift`` pixels and least-squares intensity scaling), and the best PSNR over the
    frames is reported.

    Parameters
    ----------
    x : one image (numpy ``(H, W[, C])``, torch ``(C, H, W)``, or ``(1, C, H, W)``).
    sharp_frames : sequence of images like ``x``, or an array with a leading frame axis.
        An array with as many axes as a 2-D or 3-D ``x`` is one frame (the sharp image).
    max_shift : int
        Largest shift searched, in pixels (default 5).
    channel_axis : int, optional
        Channel axis of 3-D inputs, overriding the layout rule of the module docstring.
    return_details : bool
        Also return ``(frame_index, (dy, dx), alpha)`` of the best match.

    Returns
    -------
    float or (float, (int, (int, int), float))
        The best PSNR in dB; with ``return_details``, ``(psnr, (frame_index, (dy, dx), alpha))``.
    """
    if (hasattr(sharp_frames, "shape") and hasattr(x, "shape") and len(x.shape) in (2, 3)
            and len(sharp_frames.shape) == len(x.shape)):
        # One image, not a stack: iterating it would compare x with its rows.
        sharp_frames = [sharp_frames]
    return_details = check_flag(return_details, "return_details")
    frames = list(sharp_frames)
    if not frames:
        raise ValueError("sharp_frames must contain at least one image")
    best = (-np.inf, -1, (0, 0), 1.0)
    for i, f in enumerate(frames):
        val, shift, alpha = kohler_align(x, f, max_shift=max_shift, channel_axis=channel_axis)
        if val > best[0]:
            best = (val, i, shift, alpha)
    if return_details:
        return best[0], (best[1], best[2], best[3])
    return best[0]
