"""Sample photographs shipped with scikit-image (no download needed).

All images come from :mod:`skimage.data` entries that are bundled with the installed
package, so this module works offline.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .._images import GREY_WEIGHTS
from ._utils import check_channels

__all__ = ["sample_image", "sample_images"]

# Entries of skimage.data that are bundled with the wheel (no pooch download).
_SAMPLES: dict[str, str] = {
    "astronaut": "colour, 512x512",
    "camera": "grey, 512x512",
    "coffee": "colour, 400x600",
    "chelsea": "colour, 300x451",
    "rocket": "colour, 427x640",
    "coins": "grey, 303x384",
    "moon": "grey, 512x512",
    "page": "grey, 191x384",
    "text": "grey, 172x448",
    "immunohistochemistry": "colour, 512x512",
    "hubble_deep_field": "colour, 872x1000",
    "colorwheel": "colour, 370x371",
    "grass": "grey, 512x512",
    "gravel": "grey, 512x512",
    "brick": "grey, 512x512",
}


def sample_images() -> list[str]:
    """Names accepted by :func:`sample_image`, in a fixed order.

    Returns
    -------
    list of str
        Sorted names of the bundled scikit-image photographs.
    """
    return sorted(_SAMPLES)


def _loader(name: str) -> Callable[[], np.ndarray]:
    import skimage.data

    return getattr(skimage.data, name)


def _parse_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    given = size  # the error shows what the caller passed, not the expanded pair
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) < 1
    ):
        raise ValueError(f"size must be None, a positive int or a pair (H, W) of positive ints, got {given!r}")
    return int(size[0]), int(size[1])


def sample_image(
    name: str = "astronaut",
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """Load a bundled sample photograph as a float image in [0, 1].

    Parameters
    ----------
    name : str
        One of :func:`sample_images` (e.g. ``"astronaut"``, ``"camera"``, ``"coffee"``).
    size : int or (int, int), optional
        Output ``(H, W)`` (an int means square). The photo is centre-cropped to the target
        aspect ratio, then resized with anti-aliasing. ``None`` keeps the native size.
    channels : {None, 1, 3}
        ``None`` keeps the native channel count (1 for grey photos, 3 for colour);
        ``3`` replicates grey photos; ``1`` converts colour photos to luminance
        (ITU-R BT.709 weights, as :func:`skimage.color.rgb2gray`).
    dtype : numpy dtype
        Floating dtype of the result (default float32).

    Returns
    -------
    numpy.ndarray
        ``(H, W, C)`` array of ``dtype`` with values in [0, 1]. Alpha channels are dropped.

    Raises
    ------
    ValueError
        Unknown ``name``, bad ``size`` or ``channels``.
    """
    if not isinstance(name, str) or name not in _SAMPLES:
        raise ValueError(f"name must be one of {sample_images()}, got {name!r}")
    channels = check_channels(channels)
    try:
        as_dtype = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        as_dtype = None
    if as_dtype is None or as_dtype.kind != "f":
        raise TypeError(f"dtype must be a floating dtype, got {as_dtype if as_dtype is not None else repr(dtype)}")
    dtype = as_dtype
    target = _parse_size(size)

    img = np.asarray(_loader(name)())
    if img.dtype == bool:
        img = img.astype(np.float64)
    elif np.issubdtype(img.dtype, np.integer):
        img = img.astype(np.float64) / float(np.iinfo(img.dtype).max)
    else:
        img = img.astype(np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]

    if channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 1 and img.shape[2] == 3:
        img = (img @ np.array(GREY_WEIGHTS))[:, :, None]

    if target is not None:
        from skimage.transform import resize

        h, w = img.shape[:2]
        th, tw = target
        # centre crop to the target aspect ratio
        if h * tw > w * th:  # too tall
            nh = max(1, int(round(w * th / tw)))
            top = (h - nh) // 2
            img = img[top : top + nh]
        else:
            nw = max(1, int(round(h * tw / th)))
            left = (w - nw) // 2
            img = img[:, left : left + nw]
        if img.shape[:2] != target:
            img = resize(img, (th, tw, img.shape[2]), order=1, anti_aliasing=True, mode="reflect")
    return np.clip(img, 0.0, 1.0).astype(dtype)
