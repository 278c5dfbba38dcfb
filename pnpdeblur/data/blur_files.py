"""Known blurs from files: a camera-shake kernel (PSF) and a per-pixel motion flow.

For non-blind deblurring of a photo whose blur was measured or estimated elsewhere (a
calibration shot, a gyroscope, an earlier run's ``--save-kernel`` / ``--flow-npy``):
``pd.deblur_shake(photo, kernel=read_kernel(path))`` and ``pd.deblur(photo, flow=read_flow(path))``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["read_kernel", "read_flow"]

# a weight this far below zero, relative to the largest, is not rounding: the file is not a PSF
_NEGATIVE_TOLERANCE = 1e-6


def _existing_file(path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    return p


def _load_npy(p: Path, what: str) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # not a .npy file, truncated, or pickled objects
        raise ValueError(f"cannot read {what} {p}: {exc}") from exc


def read_kernel(path: str | os.PathLike) -> np.ndarray:
    """Read a blur kernel (point-spread function) as float64 ``(kh, kw)``, odd-sized, summing to 1.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` 2-D array of nonnegative weights, or an image file (PNG, TIFF, …) of the
        kernel, grey or colour (read as luminance), on any scale: kernel pictures are usually
        stored scaled to their largest weight (white), as ``pnpdeblur deblur --save-kernel``
        writes them.

    Returns
    -------
    ndarray, float64, shape (kh, kw)
        The kernel as stored, centred on ``(kh // 2, kw // 2)``, for the convolution of
        :class:`pnpdeblur.Convolution` (``scipy.ndimage.convolve``, MATLAB's ``conv2``:
        ``y(p) = Σ_d k[centre + d] x(p − d)``), the convention of blind-deblurring codes and of
        ``--save-kernel``. A PSF stored for correlation (``imfilter``'s default, a gather
        ``Σ_d k[centre + d] x(p + d)``) is the same kernel turned by 180°: ``k[::-1, ::-1]``.
        The weights are divided by their sum (a blur keeps the brightness). An even size, which
        has no centre pixel, is padded by a zero row at the bottom and/or a zero column at the
        right, which moves the deblurred image by half a pixel.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a readable kernel: not 2-D, empty, NaN/Inf, negative weights (beyond rounding,
        1e-6 of the largest, which are set to 0), or all zero.
    """
    p = _existing_file(path, "kernel")
    if p.suffix.lower() == ".npy":
        k = _load_npy(p, "kernel")
        if k.dtype.kind not in "biuf":
            raise ValueError(f"kernel {p} must hold real numbers, got dtype {k.dtype}")
    else:
        from .image_files import read_image

        k = read_image(p, channels=1)[..., 0]
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel {p} must be a non-empty 2-D array (kh, kw), got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"kernel {p} holds NaN or Inf")
    largest = float(np.abs(k).max())
    if float(k.min()) < -_NEGATIVE_TOLERANCE * largest:
        raise ValueError(f"kernel {p} has negative weights (down to {float(k.min()):.3g}); a blur kernel is "
                         "nonnegative")
    k = np.clip(k, 0.0, None)
    total = float(k.sum())
    if total <= 0.0:
        raise ValueError(f"kernel {p} is all zero")
    h, w = k.shape
    k = np.pad(k, ((0, 1 - h % 2), (0, 1 - w % 2)))  # odd sizes: the convolution needs a centre
    return k / total


def read_flow(path: str | os.PathLike) -> np.ndarray:
    """Read a per-pixel motion flow as float32 ``(2, H, W)`` in pixels.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` array ``(2, H, W)`` (or ``(1, 2, H, W)``) of 16-, 32- or 64-bit floats:
        channel 0 is u (+x, to the right), channel 1 is v (+y, down), and the blur at each pixel
        is the line kernel of the motion vector (u, v) (``docs/conventions.md``), as ``pnpdeblur
        deblur --flow-npy`` writes it.

    Returns
    -------
    numpy.ndarray
        float32 ``(2, H, W)`` flow in pixels.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a ``.npy`` file, another shape, integers, NaN/Inf, or a component beyond
        :data:`~pnpdeblur.operators.MAX_FLOW` pixels.
    """
    from ..operators._flow import as_flow

    p = _existing_file(path, "flow")
    if p.suffix.lower() != ".npy":
        raise ValueError(f"flow {p} must be a .npy file (an array of shape (2, H, W)), got {p.suffix or 'no suffix'}")
    f = _load_npy(p, "flow")
    if f.dtype.kind != "f":
        raise ValueError(f"flow {p} must hold floats (pixels), got dtype {f.dtype}")
    if f.ndim == 4 and f.shape[0] != 1:
        raise ValueError(f"flow {p} must hold one flow (2, H, W), got shape {f.shape}")
    if f.dtype == np.float16:  # a flow stored small: its values are read as they are
        f = f.astype(np.float32)
    try:
        t = as_flow(np.ascontiguousarray(f), "flow")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot use flow {p}: {exc}") from exc
    return t[0].numpy().astype(np.float32)
