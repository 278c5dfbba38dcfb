"""Torch datasets for deblurring: synthetic pairs, GOPRO, Köhler, paired and blurred-only folders.

Every item is a dict of ``torch.float32`` tensors in ``(C, H, W)`` layout with values in
[0, 1] (flows ``(2, H, W)`` in pixels) plus a ``"name"`` string, so the default
``DataLoader`` collation stacks them into ``(N, C, H, W)`` batches when the images share a
size (use ``crop``).

Images are read with :func:`skimage.io.imread` (16-bit PNGs by :mod:`pnpdeblur.data._png`, at
full precision); 8/16-bit integers are scaled to [0, 1],
alpha channels dropped, grey images replicated to ``channels`` (default 3).

Randomness: a dataset with ``seed=None`` draws fresh augmentations on every access; with
an int ``seed`` and ``fixed=True`` item ``i`` is always the same (use it for validation);
with an int ``seed`` and ``fixed=False`` the augmentation stream is reproducible from the
start of iteration (per worker).
"""
from __future__ import annotations

import math
import numbers
import os
import re
import warnings
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_flag
from .._images import GREY_WEIGHTS, check_unit_scale
from ._png import read_png16
from ._utils import check_channels
from .flows import canonicalize_flow

__all__ = [
    "IMAGE_EXTENSIONS",
    "exif_orientation",
    "read_image",
    "list_images",
    "PairAugment",
    "SyntheticBlurDataset",
    "SyntheticVideoDataset",
    "GoProDataset",
    "KohlerDataset",
    "PairedFolderDataset",
    "BlurredFolderDataset",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _pillow_peek(path) -> tuple[str | None, int]:
    """Pillow's mode and the EXIF orientation (1-8) of an image file, from its header only;
    ``(None, 1)`` when Pillow cannot open it, orientation 1 (as stored) without a valid tag."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.mode, _orientation(im)
    except Exception:  # not for Pillow: the general reader reports what is wrong
        return None, 1


def _orientation(im) -> int:
    """The EXIF orientation (1-8) of an open Pillow image; 1 without a valid tag."""
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: as stored
        return 1
    return value if 1 <= value <= 8 else 1


def exif_orientation(path) -> int:
    """The EXIF orientation tag (1-8) of an image file; 1 (as stored) when there is none.

    Cameras and phones store a portrait photo as landscape pixels plus this tag, and viewers
    turn it upright; :func:`read_image` does the same, so results are written upright.
    """
    return _pillow_peek(path)[1]


# Pillow modes of photos stored in another colour space than RGB: the general reader returns their
# channels as stored (C, M, Y, K inks; L, a, b; Y, Cb, Cr), which would be read as R, G, B (and a
# fourth ink as alpha): a wrong image, silently
_OTHER_COLOUR_SPACES = ("CMYK", "LAB", "YCbCr", "HSV")


def _read_as_rgb(path) -> np.ndarray:
    """A photo stored in another colour space (a print-ready CMYK JPEG or TIFF, a Lab or YCbCr
    TIFF) as uint8 RGB by Pillow's conversion."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (H, W, ...) turned upright for EXIF ``orientation`` (1-8; as Pillow's
    ``ImageOps.exif_transpose``)."""
    if orientation in (5, 6, 7, 8):  # the stored rows are the photo's columns
        img = np.swapaxes(img, 0, 1)
    # after the transpose what is left is a flip: rows (v), columns (h), both, or none
    flip_v = orientation in (3, 4, 7, 8)
    flip_h = orientation in (2, 3, 6, 7)
    if flip_v:
        img = img[::-1]
    if flip_h:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def read_image(path, channels: int | None = 3) -> np.ndarray:
    """Read an image file as float32 ``(H, W, C)`` in [0, 1], upright.

    A photo with an EXIF orientation tag is turned as viewers show it (see
    :func:`exif_orientation`); one stored in another colour space (CMYK, Lab, YCbCr) is
    converted to RGB by Pillow; a GIF of one frame is an image.

    Parameters
    ----------
    path : str or path-like
    channels : {None, 1, 3}
        ``3``: grey images are replicated; ``1``: colour images converted to luminance;
        ``None``: as stored (alpha dropped).

    Returns
    -------
    numpy.ndarray
        float32 ``(H, W, C)`` in [0, 1].

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file cannot be decoded as an image, holds several frames (an animation, a multi-page
        TIFF), has an unsupported shape, holds NaN/Inf, holds
        floats beyond [-0.5, 1.5] (a photo on another scale), or holds 32-bit integers outside
        0..65535. Integers are read over their type's range (8 and 16 bits; 32-bit ones, as
        Pillow stores 16-bit images, as 16-bit data), floats as they are, clipped to [0, 1].
    """
    from skimage import io

    p = Path(path)
    if p.is_dir():  # one photo per call; a folder is list_images' (or the data sets')
        raise IsADirectoryError(f"{p} is a folder, not an image file (list_images({str(p)!r}) lists its images)")
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    if p.stat().st_size == 0:  # imageio would answer with advice to install video plugins
        raise ValueError(f"cannot read image {p}: the file is empty (0 bytes)")
    mode, orientation = _pillow_peek(p)  # one header read for both
    try:
        # 16-bit PNGs are decoded here: Pillow would cut colour ones to 8 bits per sample
        img = read_png16(p)
        if img is None and mode in _OTHER_COLOUR_SPACES:
            img = _read_as_rgb(p)
        if img is None:
            with warnings.catch_warnings():  # imageio's plugin probing warns on undecodable files
                warnings.simplefilter("ignore", DeprecationWarning)
                # bytes Pillow cannot identify go to imageio's other plugins as bytes: probing a path,
                # imageio leaves the file open when no plugin takes it (a handle per such file in a folder)
                img = np.asarray(io.imread(str(p) if mode is not None else BytesIO(p.read_bytes())))
    except Exception as exc:  # decoders raise many types
        reason = str(exc)
        if mode is None or "Could not find a backend" in reason:
            # bytes that Pillow cannot identify: imageio's plugin probing then answers with advice to
            # install video plugins, or with a decoder's internals (a struct error on a 2-byte file)
            reason = "not an image file Pillow or imageio can decode (damaged, or another kind of file)"
        raise ValueError(f"cannot read image {p}: {reason}") from exc
    if img.ndim == 4:  # imageio reads GIFs and multi-page files as (frames, H, W, C)
        if img.shape[0] != 1:
            raise ValueError(f"cannot read image {p}: it holds {img.shape[0]} frames (an animation or a multi-page "
                             "file); save the frame to deblur as an image of its own")
        img = img[0]
    img = _orient(img, orientation)
    if img.dtype.kind in "iu" and img.dtype.itemsize > 2:
        # 32- and 64-bit integers have no white level of their own (over the int32 range a photo
        # reads black); Pillow keeps 16-bit images as 32-bit ints (mode "I"), so values within
        # 0..65535 are read as 16-bit data
        lo, hi = (int(img.min()), int(img.max())) if img.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(f"cannot read image {p}: {img.dtype} values in [{lo}, {hi}] have no known white "
                             "level (store 8- or 16-bit integers, or floats in [0, 1])")
        img = img.astype(np.uint16)
    raw, img = img, _unit_float(img)
    if img is None:
        raise ValueError(f"cannot read image {p}: unsupported dtype {raw.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"cannot read image {p}: unsupported shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError(f"image {p} contains NaN or Inf")
    if raw.dtype.kind == "f":  # a float TIFF on 0-255 would be clipped to a white photo
        check_unit_scale(float(img.min()), float(img.max()), f"image {p}",
                         "store 8- or 16-bit integers, or scale the floats to [0, 1]")
    return np.ascontiguousarray(np.clip(_match_channels(img, channels), 0.0, 1.0))


def _unit_float(img: np.ndarray) -> np.ndarray | None:
    """float32 on the [0, 1] scale: integers over their type's range (uint8 / 255), bools as
    0/1, floats as they are; None for any other dtype."""
    if img.dtype == bool:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.dtype.kind == "f":
        return img.astype(np.float32, copy=False)  # a preloaded corpus is not copied again
    return None


def _match_channels(img: np.ndarray, channels) -> np.ndarray:
    """``(H, W, C)`` with C in 1..4 → alpha dropped, then grey replicated (``channels=3``) or
    colour turned to luminance (``channels=1``); ``None`` keeps the stored channels."""
    check_channels(channels)
    if img.shape[2] in (2, 4):  # grey+alpha or RGBA
        img = img[:, :, :-1]
    if channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels == 1 and img.shape[2] == 3:
        img = (img @ np.array(GREY_WEIGHTS, np.float32))[:, :, None]
    return img


def list_images(folder, recursive: bool = False) -> list[Path]:
    """Sorted image files (by extension, case-insensitive) in ``folder``.

    Raises ``FileNotFoundError`` if the folder does not exist and ``ValueError`` if it holds
    no image."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or PathLike), got {type(folder).__name__}")
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"folder not found: {d}")
    it = d.rglob("*") if check_flag(recursive, "recursive") else d.iterdir()
    files = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {d}")
    return files


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0), dtype=np.float32))


def _rgb_to_hsv_sat_scale(img: np.ndarray, factor: float) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(img.astype(np.float64))
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0.0, 1.0)
    return hsv2rgb(hsv).astype(np.float32)


class PairAugment:
    """Random crop, flips, 90° rotations and Nah et al.'s colour/noise augmentations.

    The same geometric and colour transform is applied to every image of a sample (blurred,
    sharp, sharp frames), flows are transformed consistently (flips negate a component,
    rotations rotate the vectors; blur labels are then re-canonicalised), and noise is added
    to the blurred image only.

    Parameters
    ----------
    crop : int or (int, int), optional
        Random crop size ``(H, W)``; images smaller than it raise ``ValueError``.
    hflip, vflip : bool
        Random horizontal / vertical flips (probability 1/2 each).
    rot90 : bool
        Random rotation by a multiple of 90° (the lossless version of Nah et al.'s
        "rotated at random degrees").
    permute_channels : bool
        Random permutation of the RGB channels (Nah et al.).
    saturation : (float, float), optional
        Multiply HSV saturation by a factor drawn uniformly from this range
        (Nah et al.: (0.5, 1.5)).
    noise_sigma : float, optional
        Nah et al.'s noise: the standard deviation is ``|s|`` with ``s ~ N(0, noise_sigma²)``
        (they use 2/255), drawn per sample; Gaussian noise of that std is added to the
        blurred image, then values are clipped to [0, 1].
    canonical_flow : bool
        Re-canonicalise flows (``u >= 0``) after flips/rotations (True for blur labels;
        set False for optical flows between frames).
    """

    def __init__(self, crop: int | tuple[int, int] | None = None, hflip: bool = True, vflip: bool = False,
                 rot90: bool = False, permute_channels: bool = False,
                 saturation: tuple[float, float] | None = None, noise_sigma: float | None = None,
                 canonical_flow: bool = True):
        if crop is not None:
            given = crop  # the message shows what the caller passed, not the expanded pair
            if isinstance(crop, numbers.Integral) and not isinstance(crop, bool):
                crop = (crop, crop)
            try:
                crop = tuple(crop)
            except TypeError:
                crop = ()
            if len(crop) != 2 or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in crop) \
                    or min(crop) < 1:
                raise ValueError(f"crop must be a positive int or (H, W), got {given!r}")
            crop = (int(crop[0]), int(crop[1]))
        if saturation is not None and (len(saturation) != 2 or not 0 <= saturation[0] <= saturation[1] < math.inf):
            raise ValueError(f"saturation must be a finite range (lo, hi) with 0 <= lo <= hi, got {saturation!r}")
        if noise_sigma is not None and (isinstance(noise_sigma, bool) or not (
                isinstance(noise_sigma, numbers.Real) and 0 <= noise_sigma < math.inf)):
            raise ValueError(f"noise_sigma must be a finite non-negative float, got {noise_sigma!r}")
        hflip, vflip, rot90 = check_flag(hflip, "hflip"), check_flag(vflip, "vflip"), check_flag(rot90, "rot90")
        permute_channels = check_flag(permute_channels, "permute_channels")
        self.crop, self.hflip, self.vflip, self.rot90 = crop, hflip, vflip, rot90
        self.permute_channels, self.saturation, self.noise_sigma = permute_channels, saturation, noise_sigma
        self.canonical_flow = check_flag(canonical_flow, "canonical_flow")

    @classmethod
    def nah(cls, crop: int | tuple[int, int] | None = 256) -> "PairAugment":
        """The augmentation set of Nah et al. (DeepDeblur) on ``crop`` patches."""
        return cls(crop=crop, hflip=True, vflip=True, rot90=True, permute_channels=True,
                   saturation=(0.5, 1.5), noise_sigma=2.0 / 255.0)

    def __repr__(self) -> str:
        return (f"PairAugment(crop={self.crop}, hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
                f"permute_channels={self.permute_channels}, saturation={self.saturation}, "
                f"noise_sigma={self.noise_sigma})")

    def __call__(self, images: dict[str, np.ndarray], rng: np.random.Generator,
                 flows: dict[str, np.ndarray] | None = None, noisy: Sequence[str] = ("blurred",)):
        """Transform ``images`` (name -> ``(H, W, C)`` or ``(K, H, W, C)``) and ``flows``
        (name -> ``(2, H, W)``) in place of copies; returns ``(images, flows)``."""
        flows = dict(flows or {})
        images = dict(images)
        for k, v in images.items():
            # the result is cast to float32 unscaled: a uint8 image would come out on 0..255
            if np.asarray(v).dtype.kind != "f":
                raise TypeError(f"images[{k!r}] must be a float array on the [0, 1] scale, got dtype "
                                f"{np.asarray(v).dtype} (read files with read_image)")
        shapes = {k: v.shape[-3:-1] for k, v in images.items()}
        shapes.update({k: v.shape[-2:] for k, v in flows.items()})
        if len(set(shapes.values())) > 1:
            raise ValueError(f"images of one sample have different sizes: {shapes}")
        h, w = next(iter(shapes.values()))
        if self.crop is not None:
            ch, cw = self.crop
            if ch > h or cw > w:
                raise ValueError(f"crop {self.crop} is larger than the image size {(h, w)}")
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            images = {k: v[..., y0:y0 + ch, x0:x0 + cw, :] for k, v in images.items()}
            flows = {k: v[:, y0:y0 + ch, x0:x0 + cw] for k, v in flows.items()}
        if self.hflip and rng.random() < 0.5:
            images = {k: v[..., :, ::-1, :] for k, v in images.items()}
            flows = {k: np.stack([-v[0, :, ::-1], v[1, :, ::-1]]) for k, v in flows.items()}
        if self.vflip and rng.random() < 0.5:
            images = {k: v[..., ::-1, :, :] for k, v in images.items()}
            flows = {k: np.stack([v[0, ::-1, :], -v[1, ::-1, :]]) for k, v in flows.items()}
        if self.rot90:
            k90 = int(rng.integers(0, 4))
            for _ in range(k90):  # 90° counter-clockwise on screen: (x, y) -> (y, W-1-x)
                images = {k: np.rot90(v, 1, axes=(-3, -2)) for k, v in images.items()}
                flows = {k: np.stack([np.rot90(v[1], 1), -np.rot90(v[0], 1)]) for k, v in flows.items()}
        if self.permute_channels:
            c = next(iter(images.values())).shape[-1]
            perm = rng.permutation(c)
            images = {k: v[..., perm] for k, v in images.items()}
        if self.saturation is not None:
            f = float(rng.uniform(*self.saturation))
            images = {k: (_rgb_to_hsv_sat_scale(v, f) if v.shape[-1] == 3 else v) for k, v in images.items()}
        if self.noise_sigma:
            s = abs(float(rng.normal(0.0, self.noise_sigma)))
            for k in noisy:
                if k in images:
                    v = images[k]
                    images[k] = np.clip(v + s * rng.standard_normal(v.shape).astype(np.float32), 0.0, 1.0)
        if self.canonical_flow:
            flows = {k: canonicalize_flow(np.asarray(v)) for k, v in flows.items()}
        images = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in images.items()}
        flows = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flows.items()}
        return images, flows


class _Base(Dataset):
    def __init__(self, transform: PairAugment | Callable | None, seed, fixed: bool):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a PairAugment or callable, got {type(transform).__name__}")
        fixed = check_flag(fixed, "fixed")
        if fixed and seed is None:
            raise ValueError("fixed=True needs an int seed")
        if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
            raise TypeError(f"seed must be None or an int, got {type(seed).__name__}")
        self.transform = transform
        self.seed = seed
        self.fixed = fixed
        self._rng = None
        self._rng_owner = None

    def _item_rng(self, index: int) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([int(self.seed), int(index)])
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        # A DataLoader worker gets a copy of the dataset, with whatever stream the main
        # process (or another worker) had already started: start its own instead.
        owner = (os.getpid(), wid)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(None if self.seed is None else [int(self.seed), 2**31 + wid])
            self._rng_owner = owner
        return self._rng

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return int(index) % n

    def _finish(self, images, flows, rng, name, noisy=("blurred",)) -> dict[str, Any]:
        if self.transform is not None:
            if isinstance(self.transform, PairAugment):
                images, flows = self.transform(images, rng, flows, noisy)
            else:
                images, flows = self.transform(images, rng, flows)
        out: dict[str, Any] = {}
        for k, v in images.items():
            out[k] = _to_tensor(v) if v.ndim == 3 else torch.from_numpy(
                np.ascontiguousarray(np.moveaxis(v, -1, 1), dtype=np.float32))
        for k, v in flows.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        out["name"] = name
        return out


def _check_pair(a: np.ndarray, b: np.ndarray, pa, pb):
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"mismatched image sizes: {pa} is {a.shape[:2]}, {pb} is {b.shape[:2]}")


def _upright_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`read_image` returns it (EXIF turns applied), from the
    header where Pillow reads it, else by decoding; ``ValueError`` for a file that cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # one header read for the size and the orientation
            (w, h), turned = im.size, _orientation(im) in (5, 6, 7, 8)
    except Exception:  # not for Pillow: decode as read_image does (it names the file when it fails)
        return read_image(path, None).shape[:2]
    return (w, h) if turned else (h, w)


def _fit_sources(sources: list, labels: list[str], need: tuple[int, int], default: bool) -> list:
    """Drop (default sample set) or reject (user images) images smaller than ``need``.

    Image files are checked too, from their headers: an unreadable or too small file in a training
    folder would otherwise stop a run at the random step that first draws it, hours in.
    """
    out, small = [], []
    for s, label in zip(sources, labels):
        size = s.shape[:2] if isinstance(s, np.ndarray) else _upright_size(s)
        if size[0] < need[0] or size[1] < need[1]:
            if default:
                continue
            if isinstance(s, np.ndarray):
                raise ValueError(f"{label} of size {size} is smaller than the required {need}")
            small.append(f"{s} {tuple(size)}")
            continue
        out.append(s)
    if small:
        _refuse_small_files(small, need)
    if not out:
        raise ValueError(f"no source image is at least {need} pixels")
    return out


def _refuse_small_files(small: list[str], need: tuple[int, int]) -> None:
    listed = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
    raise ValueError(f"{len(small)} image file(s) are smaller than the required {need} (H, W): {listed}; "
                     "remove them or lower the crop")


def _check_pair_files(pairs: list[tuple[Path, Path, str]], transform) -> None:
    """Every (blurred, sharp) file pair, from the headers: one size, and at least the crop of a
    :class:`PairAugment` ``transform``; a bad pair would stop training at the step that draws it."""
    need = transform.crop if isinstance(transform, PairAugment) else None
    small = []
    for pb, ps, _ in pairs:
        sb, ss = _upright_size(pb), _upright_size(ps)
        if sb != ss:
            raise ValueError(f"mismatched image sizes: {pb} is {sb}, {ps} is {ss}")
        if need is not None and (sb[0] < need[0] or sb[1] < need[1]):
            small.append(f"{pb} {sb}")
    if small:
        _refuse_small_files(small, need)


def _images_from(source, channels) -> tuple[list[np.ndarray | Path], list[str]]:
    """The sources as arrays (decoded sample names, checked arrays) and paths, and a label for each
    that error messages use (``images[i]``, with the sample's name for a sample)."""
    from .samples import sample_image, sample_images

    check_channels(channels)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        paths = list_images(source, recursive=True)
        return paths, [str(p) for p in paths]
    if isinstance(source, (str, os.PathLike)):
        raise FileNotFoundError(f"images folder not found: {source}")
    if source is None:
        source = sample_images()
    # one photo would be iterated row by row, as many one-row images: it must come in a list
    if (isinstance(source, np.ndarray) and source.ndim < 4) or not hasattr(source, "__iter__"):
        what = f"an array of shape {source.shape} (one photo: pass [photo])" if isinstance(source, np.ndarray) \
            else type(source).__name__
        raise TypeError(f"images must be a folder, or a sequence of sample names, paths and arrays, got {what}")
    out, labels = [], []
    for i, s in enumerate(source):
        labels.append(f"images[{i}]")
        if isinstance(s, str) and s in sample_images():
            out.append(sample_image(s, channels=channels))
            labels[-1] += f" (sample {s!r})"
        elif isinstance(s, (str, os.PathLike)):
            out.append(Path(s))
        elif isinstance(s, np.ndarray):
            if s.dtype.kind in "iu" and s.dtype.itemsize > 2:  # e.g. numpy's default int64
                raise TypeError(f"images[{i}] has dtype {s.dtype}, which has no white level: give uint8 or "
                                "uint16 integers, or floats in [0, 1]")
            # as read_image reads a file: uint8 on 0..255 became 0..255 floats here, so the sharp
            # crops of skimage.data's photos were 255 times too bright beside their blurred ones
            a = _unit_float(s)
            if a is None:
                raise TypeError(f"images[{i}] must be a float, integer or bool array, got dtype {s.dtype}")
            if a.ndim == 2:
                a = a[:, :, None]
            if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or not np.all(np.isfinite(a)) or a.size == 0:
                raise ValueError(f"images[{i}] must be a finite, non-empty (H, W[, C]) array with C in 1..4, "
                                 f"got shape {s.shape}")
            if s.dtype.kind == "f":  # 0-255 floats would give sharp crops 255 times their blurred ones
                check_unit_scale(float(a.min()), float(a.max()), f"images[{i}]")
            out.append(np.ascontiguousarray(np.clip(_match_channels(a, channels), 0.0, 1.0)))  # as read_image
        else:
            raise TypeError(f"images[{i}] must be a sample name, a path or a numpy array, got {type(s).__name__}")
    if not out:
        raise ValueError("images must not be empty")
    return out, labels


class SyntheticBlurDataset(_Base):
    """On-the-fly (blurred, sharp, flow) triples: Gong-style flows through ``MotionBlur``.

    Each item crops a random ``crop`` patch of a random source image (after ``transform``-free
    random flips), draws a flow with :func:`pnpdeblur.data.random_motion_flow` and blurs it
    with :func:`pnpdeblur.data.synthesize_flow_blur` (+ Gaussian noise).

    Parameters
    ----------
    images : sequence of sample names / paths / arrays, or a folder; default all
        :func:`pnpdeblur.data.sample_images`. Arrays ``(H, W[, C])`` are read as
        :func:`read_image` reads files: integer ones over their type's range (a uint8 photo
        ÷ 255), alpha dropped, converted to ``channels``. Every image must hold a ``crop``
        patch; files are checked from their headers when the data set is built (``ValueError``
        listing the small ones, or naming an unreadable file), not at the step that draws them.
    length : int
        Items per epoch.
    crop : int or (int, int)
        Patch size (default 128).
    preset : {"23", "46"}
        Flow label range.
    noise_sigma : float or (float, float)
        Noise std or range.
    seed, fixed : see the module docstring.
    channels : {1, 3}
    flow_kwargs : dict, optional
        Passed to :func:`random_motion_flow`.
    transform : PairAugment or callable, optional
        Applied to each item's images and flow (e.g. :class:`PairAugment`).
    blur : bool
        Blur here (default). ``False`` leaves out ``"blurred"`` (and the noise) so that a
        training loop can blur whole batches on its device (the CUDA operator is ~100× faster
        than the CPU one).

    Items: ``{"blurred": (C,H,W), "sharp": (C,H,W), "flow": (2,H,W), "name": str}``.
    """

    def __init__(self, images=None, length: int = 1000, crop: int | tuple[int, int] = 128,
                 preset: str | int = "23", noise_sigma: float | tuple[float, float] = 0.01,
                 seed: int | None = None, fixed: bool = False, channels: int = 3,
                 flow_kwargs: dict | None = None, transform: PairAugment | None = None, blur: bool = True):
        super().__init__(transform, seed, fixed)
        self.blur = check_flag(blur, "blur")
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        self.sources, labels = _images_from(images, channels)
        self.length = int(length)
        self.crop = PairAugment(crop=crop, hflip=True, vflip=True).crop
        self.preset, self.noise_sigma, self.channels = preset, noise_sigma, channels
        self.flow_kwargs = dict(flow_kwargs or {})
        from .flows import random_motion_flow
        from .synthetic import check_noise_sigma

        # a bad preset, flow option or noise level would otherwise surface at the first item, inside
        # a DataLoader worker: one tiny flow drawn here checks them all as the items will use them
        random_motion_flow((2, 2), preset, 0, **self.flow_kwargs)
        check_noise_sigma(noise_sigma)
        self.sources = _fit_sources(self.sources, labels, self.crop, images is None)
        self._cropper = PairAugment(crop=self.crop, hflip=True, vflip=True)

    def __len__(self) -> int:
        return self.length

    def _source(self, i: int) -> tuple[np.ndarray, str]:
        s = self.sources[i]
        if isinstance(s, Path):
            return read_image(s, self.channels), s.name
        return s, f"image{i}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .synthetic import synthesize_flow_blur

        index = self._check_index(index)
        rng = self._item_rng(index)
        img, name = self._source(int(rng.integers(0, len(self.sources))))
        imgs, _ = self._cropper({"sharp": img}, rng)
        if not self.blur:
            from .flows import random_motion_flow

            sharp = np.ascontiguousarray(imgs["sharp"], dtype=np.float32)
            flow = random_motion_flow(sharp.shape[:2], self.preset, rng, **self.flow_kwargs)
            return self._finish({"sharp": sharp}, {"flow": flow}, rng, f"{name}#{index}", noisy=())
        sample = synthesize_flow_blur(imgs["sharp"], self.preset, self.noise_sigma, seed=rng, **self.flow_kwargs)
        return self._finish({"blurred": sample.blurred, "sharp": sample.sharp}, {"flow": sample.flow}, rng,
                            f"{name}#{index}", noisy=())


class SyntheticVideoDataset(_Base):
    """On-the-fly GOPRO-style pairs from :func:`pnpdeblur.data.synthesize_video_blur`.

    Items: ``{"blurred", "sharp": (C,H,W), "flow_next", "flow_prev", "exposure_flow": (2,H,W),
    "n_frames": int, "name"}``. ``crop`` sets the rendered frame size directly (the source
    photo is first randomly cropped to ``crop`` plus a margin).

    With ``n_blurred = K > 1`` an item is a clip of ``K`` consecutive blurred frames from
    :func:`pnpdeblur.data.synthesize_video_sequence` (Reblur2Deblur-style training): images
    ``(K, C, H, W)`` and flows ``(K, 2, H, W)`` under the same keys.
    """

    def __init__(self, images=None, length: int = 200, crop: int | tuple[int, int] = 128,
                 motion: str = "mixed", max_blur: float = 16.0, gamma: float | None = 2.2,
                 foreground: bool = False, n_frames: int | None = None, seed: int | None = None,
                 fixed: bool = False, channels: int = 3, noise_sigma: float | None = None,
                 n_blurred: int = 1):
        super().__init__(None, seed, fixed)
        if not isinstance(n_blurred, numbers.Integral) or n_blurred < 1:
            raise ValueError(f"n_blurred must be a positive int, got {n_blurred!r}")
        self.n_blurred = int(n_blurred)
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        from .video import check_clip_options

        check_clip_options(motion, max_blur, gamma, n_frames, foreground)
        self.sources, labels = _images_from(images, channels)
        self.length = int(length)
        self.crop = PairAugment(crop=crop).crop
        self.motion, self.max_blur, self.gamma = motion, float(max_blur), gamma
        self.foreground, self.n_frames, self.channels = foreground, n_frames, channels
        self.noise = PairAugment(hflip=False, noise_sigma=noise_sigma, canonical_flow=False) if noise_sigma else None
        self._src_crop = PairAugment(crop=self.source_size(self.crop, self.max_blur, self.n_blurred), hflip=True)
        self.sources = _fit_sources(self.sources, labels, self._src_crop.crop, images is None)

    @staticmethod
    def source_size(crop: int | tuple[int, int], max_blur: float, n_blurred: int = 1) -> tuple[int, int]:
        """``(H, W)`` a source photo needs for ``crop``-sized frames: the crop plus a margin for the
        camera's motion over ``n_blurred`` exposures of up to ``max_blur`` px, so that little border
        enters the frames."""
        h, w = PairAugment(crop=crop).crop
        m = int(math.ceil(float(max_blur) * (n_blurred + 1) / 2.0))
        return h + 2 * m, w + 2 * m

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .video import synthesize_video_blur

        index = self._check_index(index)
        rng = self._item_rng(index)
        i = int(rng.integers(0, len(self.sources)))
        s = self.sources[i]
        img = read_image(s, self.channels) if isinstance(s, Path) else s
        imgs, _ = self._src_crop({"sharp": img}, rng)
        if self.n_blurred > 1:
            from .video import synthesize_video_sequence

            q = synthesize_video_sequence(imgs["sharp"], self.n_blurred, shape=self.crop, n_frames=self.n_frames,
                                          motion=self.motion, max_blur=self.max_blur,
                                          min_blur=min(2.0, self.max_blur), gamma=self.gamma,
                                          foreground=self.foreground, seed=rng)
            images = {"blurred": q.blurred, "sharp": q.sharp}
            if self.noise is not None:
                images, _ = self.noise(images, rng)
            out = {k: torch.from_numpy(np.ascontiguousarray(np.moveaxis(v, -1, 1))) for k, v in images.items()}
            out.update(flow_next=torch.from_numpy(q.flows_next), flow_prev=torch.from_numpy(q.flows_prev),
                       exposure_flow=torch.from_numpy(q.exposure_flows), n_frames=q.n_frames,
                       name=f"video{i}#{index}")
            return out
        v = synthesize_video_blur(imgs["sharp"], shape=self.crop, n_frames=self.n_frames, motion=self.motion,
                                  max_blur=self.max_blur, min_blur=min(2.0, self.max_blur), gamma=self.gamma,
                                  foreground=self.foreground, seed=rng)
        images = {"blurred": v.blurred, "sharp": v.sharp}
        if self.noise is not None:
            images, _ = self.noise(images, rng)
        out = self._finish(images, {"flow_next": v.flow_next, "flow_prev": v.flow_prev,
                                    "exposure_flow": v.exposure_flow}, rng, f"video{i}#{index}")
        out["n_frames"] = v.n_frames
        return out


class PairedFolderDataset(_Base):
    """(blurred, sharp) pairs from two folders, matched by file stem.

    Parameters
    ----------
    blurred_dir, sharp_dir : path-like
    transform : PairAugment, optional
    channels : {1, 3}
        Channels the images are converted to (default 3).
    strict : bool
        Raise ``ValueError`` if a file of one folder has no partner in the other (default);
        otherwise keep only the common stems.
    seed, fixed : see the module docstring.

    Items: ``{"blurred": (C,H,W), "sharp": (C,H,W), "name": stem}``. Pairs of different sizes,
    pairs smaller than a :class:`PairAugment` ``transform``'s crop and unreadable files raise
    ``ValueError`` naming the files when the data set is built (from the headers).
    """

    def __init__(self, blurred_dir, sharp_dir, transform: PairAugment | None = None, channels: int = 3,
                 strict: bool = True, seed: int | None = None, fixed: bool = False):
        super().__init__(transform, seed, fixed)
        self.channels = check_channels(channels)
        self.pairs = self._match(list_images(blurred_dir), list_images(sharp_dir), check_flag(strict, "strict"))
        _check_pair_files(self.pairs, transform)

    @staticmethod
    def _match(blurred: list[Path], sharp: list[Path], strict: bool) -> list[tuple[Path, Path, str]]:
        b = {p.stem: p for p in blurred}
        s = {p.stem: p for p in sharp}
        only_b, only_s = sorted(set(b) - set(s)), sorted(set(s) - set(b))
        if strict and (only_b or only_s):
            raise ValueError(
                f"unpaired images: {len(only_b)} blurred without sharp {only_b[:5]}, "
                f"{len(only_s)} sharp without blurred {only_s[:5]}")
        common = sorted(set(b) & set(s))
        if not common:
            raise ValueError("no (blurred, sharp) pairs with matching file names")
        return [(b[k], s[k], k) for k in common]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        pb, ps, name = self.pairs[index]
        b, s = read_image(pb, self.channels), read_image(ps, self.channels)
        _check_pair(b, s, pb, ps)
        return self._finish({"blurred": b, "sharp": s}, {}, self._item_rng(index), name)


class GoProDataset(PairedFolderDataset):
    """The GOPRO layout of Nah et al.: ``root/[split/]<sequence>/{blur,sharp}/<frame>.png``.

    Parameters
    ----------
    root : path-like
        The dataset folder (e.g. ``GOPRO_Large``).
    split : str, optional
        Sub-folder such as ``"train"`` or ``"test"``.
    blur_dir : str
        ``"blur"`` (default) or ``"blur_gamma"`` (the gamma-corrected averages).
    transform : PairAugment, optional
    channels : {1, 3}
        Channels the images are converted to (default 3).
    sequences : sequence of str, optional
        Restrict to these sequence folders.
    seed, fixed : see the module docstring.

    Items: ``{"blurred", "sharp": (C,H,W), "name": "<sequence>/<frame>"}``.
    """

    def __init__(self, root, split: str | None = None, blur_dir: str = "blur", transform: PairAugment | None = None,
                 channels: int = 3, sequences: Sequence[str] | None = None, seed: int | None = None,
                 fixed: bool = False):
        _Base.__init__(self, transform, seed, fixed)
        self.channels = check_channels(channels)
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or PathLike), got {type(root).__name__}")
        base = Path(root) / split if split else Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"GOPRO folder not found: {base}")
        seqs = sorted(d for d in base.iterdir() if d.is_dir() and ((d / blur_dir).is_dir() or (d / "sharp").is_dir()))
        if sequences is not None:
            want = set(sequences)
            missing = want - {d.name for d in seqs}
            if missing:
                raise FileNotFoundError(f"sequences not found under {base}: {sorted(missing)}")
            seqs = [d for d in seqs if d.name in want]
        if not seqs:
            raise FileNotFoundError(f"no sequence folders with '{blur_dir}/' and 'sharp/' under {base}")
        self.pairs = []
        for d in seqs:
            for sub in (blur_dir, "sharp"):
                if not (d / sub).is_dir():
                    raise FileNotFoundError(f"sequence {d} has no '{sub}/' folder")
            pairs = self._match(list_images(d / blur_dir), list_images(d / "sharp"), strict=True)
            self.pairs += [(pb, ps, f"{d.name}/{k}") for pb, ps, k in pairs]
        _check_pair_files(self.pairs, transform)


class KohlerDataset(_Base):
    """The Köhler et al. (2012) benchmark layout.

    Under ``root`` (searched recursively) the blurred images are ``Blurry<i>_<j>.<ext>``
    (image ``i``, trajectory ``j``) and the sharp frames recorded along the trajectory are
    ``GroundTruth<i>_<j>_<k>.<ext>``. Evaluate with :func:`pnpdeblur.metrics.kohler_psnr`.

    Items: ``{"blurred": (C,H,W), "sharp_frames": (K,C,H,W), "sharp": (C,H,W) the middle
    frame, "name": "Blurry<i>_<j>"}``. No augmentation (benchmark data).
    """

    _BLUR = re.compile(r"^blurry(\d+)_(\d+)$", re.IGNORECASE)
    _GT = re.compile(r"^groundtruth(\d+)_(\d+)_(\d+)$", re.IGNORECASE)

    def __init__(self, root, channels: int = 3, max_frames: int | None = None):
        super().__init__(None, None, False)
        self.channels = check_channels(channels)
        if max_frames is not None and (not isinstance(max_frames, numbers.Integral) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
        self.max_frames = max_frames
        files = list_images(root, recursive=True)
        blurry: dict[tuple[int, int], Path] = {}
        gts: dict[tuple[int, int], list[tuple[int, Path]]] = {}
        for p in files:
            m = self._BLUR.match(p.stem)
            if m:
                blurry[(int(m[1]), int(m[2]))] = p
                continue
            m = self._GT.match(p.stem)
            if m:
                gts.setdefault((int(m[1]), int(m[2])), []).append((int(m[3]), p))
        if not blurry:
            raise ValueError(f"no Blurry<i>_<j> images under {root}")
        missing = sorted(k for k in blurry if k not in gts)
        if missing:
            raise ValueError(f"blurred images without GroundTruth<i>_<j>_<k> frames: "
                             f"{['Blurry%d_%d' % k for k in missing[:5]]}")
        self.items = [(blurry[k], [p for _, p in sorted(gts[k])], "Blurry%d_%d" % k) for k in sorted(blurry)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        pb, frames, name = self.items[index]
        if self.max_frames is not None and len(frames) > self.max_frames:
            sel = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
            frames = [frames[i] for i in sel]
        b = read_image(pb, self.channels)
        fr = [read_image(p, self.channels) for p in frames]
        for p, f in zip(frames, fr):
            _check_pair(b, f, pb, p)
        stack = np.stack(fr)
        return {
            "blurred": _to_tensor(b),
            "sharp_frames": torch.from_numpy(np.ascontiguousarray(np.moveaxis(stack, -1, 1))),
            "sharp": _to_tensor(fr[len(fr) // 2]),
            "name": name,
        }


class BlurredFolderDataset(_Base):
    """Blurred images only (real photos without ground truth), e.g. for test-time fine-tuning.

    Items: ``{"blurred": (C,H,W), "name": stem}``."""

    def __init__(self, folder, transform: PairAugment | None = None, channels: int = 3,
                 recursive: bool = False, seed: int | None = None, fixed: bool = False):
        super().__init__(transform, seed, fixed)
        self.channels = check_channels(channels)
        self.files = list_images(folder, recursive=recursive)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        p = self.files[index]
        return self._finish({"blurred": read_image(p, self.channels)}, {}, self._item_rng(index), p.stem)
