"""Image files: a photo read as float32 ``(H, W, C)`` in [0, 1], upright, and a folder's images listed.

:func:`read_image` decodes with :func:`skimage.io.imread` (16-bit PNGs by :mod:`pnpdeblur.data._png`, at
full precision; a photo stored in CMYK, Lab or YCbCr is converted to RGB by Pillow), turns it upright by
its EXIF orientation (:func:`exif_orientation`), scales 8/16-bit integers to [0, 1], drops alpha
channels and replicates grey images to ``channels`` (default 3). :func:`list_images` lists the files of
a folder with one of the :data:`IMAGE_EXTENSIONS`.

Two kinds of photo files are not read here, and are refused by name rather than misread: camera raw
files (:data:`RAW_EXTENSIONS`; most are TIFFs inside, whose first page is the small preview the camera
embeds, so a TIFF reader would return a thumbnail as if it were the photo) and HEIC/HEIF photos
(:data:`HEIF_EXTENSIONS`; Pillow reads them only with the ``pillow-heif`` plugin, which is not a dependency:
where it is installed, :func:`read_image` registers it and :func:`list_images` lists them).
"""
from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np

from .._checks import check_flag
from .._images import GREY_WEIGHTS, check_unit_scale
from .._warn import warn_at_caller
from ._png import read_png16
from ._utils import check_channels

__all__ = [
    "IMAGE_EXTENSIONS",
    "RAW_EXTENSIONS",
    "HEIF_EXTENSIONS",
    "exif_orientation",
    "read_image",
    "list_images",
    "scan_folder",
    "heif_readable",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".jp2")

#: Camera raw formats (Adobe, Canon, Nikon, Sony, Fujifilm, Olympus, Panasonic, Pentax, Samsung, Sigma,
#: Hasselblad, Phase One, Epson, Kodak, Minolta, Leaf, Leica): undeveloped sensor data, to be developed
#: into a TIFF or PNG first
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
                  ".rw2", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw",
                  ".mos", ".raw", ".rwl")

#: HEIC/HEIF photos (phones' default format)
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")

_RAW_ADVICE = ("develop camera raw files into 16-bit TIFFs or PNGs first (with rawpy, darktable, RawTherapee "
               "or the camera maker's software): a TIFF reader would return the small preview they embed, "
               "not the photo")
_HEIF_ADVICE = ("Pillow decodes HEIC/HEIF photos only with the pillow-heif plugin, which is not installed "
                "(pip install pillow-heif, which pnpdeblur then uses); or convert them to JPEG or PNG")


_heif_plugin: bool | None = None  # whether pillow-heif is registered with Pillow (None: not tried yet)


def heif_readable() -> bool:
    """Whether HEIC/HEIF photos can be read: the ``pillow-heif`` plugin is installed (it is not a
    dependency of pnpdeblur); the first call registers it with Pillow."""
    global _heif_plugin
    if _heif_plugin is None:
        try:
            import pillow_heif
        except ImportError:
            _heif_plugin = False
        else:
            pillow_heif.register_heif_opener()
            _heif_plugin = True
    return _heif_plugin


def _unread_format_advice(path: Path) -> str | None:
    """What to do with a photo file in a format :func:`read_image` does not read (camera raw,
    HEIC/HEIF without the ``pillow-heif`` plugin), by its extension; None for any other file."""
    suffix = path.suffix.lower()
    if suffix in RAW_EXTENSIONS:
        return _RAW_ADVICE
    if suffix in HEIF_EXTENSIONS and not heif_readable():
        return _HEIF_ADVICE
    return None


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


def exif_orientation(path: str | os.PathLike) -> int:
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


def read_image(path: str | os.PathLike, channels: int | None = 3) -> np.ndarray:
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
        The file is a camera raw file (:data:`RAW_EXTENSIONS`; develop it first), cannot be decoded
        as an image (a HEIC/HEIF photo without the ``pillow-heif`` plugin: the message says so),
        holds several frames (an animation, a multi-page TIFF), has an unsupported shape, holds
        NaN/Inf, holds
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
    if p.suffix.lower() in RAW_EXTENSIONS:  # before Pillow, which would read the embedded preview
        raise ValueError(f"cannot read image {p}: {_RAW_ADVICE}")
    if p.suffix.lower() in HEIF_EXTENSIONS:
        heif_readable()  # registers the plugin with Pillow where it is installed
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
            if p.suffix.lower() in HEIF_EXTENSIONS and not heif_readable():
                reason = _HEIF_ADVICE
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


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Sorted image files (by extension, case-insensitive) in ``folder``.

    Photo files in formats :func:`read_image` does not read (camera raw, HEIC/HEIF; see the module
    docstring) are left out with a ``UserWarning`` that names them and says what to do.

    Raises ``FileNotFoundError`` if the folder does not exist and ``ValueError`` if it holds
    no image (naming the raw or HEIC/HEIF photos it holds, if any)."""
    files, unread = scan_folder(folder, recursive)
    d = Path(folder)
    if not files:
        message = f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {d}"
        raise ValueError(message + (f": {_unread_summary(unread)}" if unread else ""))
    if unread:
        warn_at_caller(f"list_images left out photo files of {d}: {_unread_summary(unread)}")
    return files


def scan_folder(folder: str | os.PathLike, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """The files of ``folder`` that :func:`list_images` lists, and the photo files it leaves out
    (camera raw, HEIC/HEIF), each sorted; no error or warning for an empty result.

    Raises ``FileNotFoundError`` if the folder does not exist."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or PathLike), got {type(folder).__name__}")
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"folder not found: {d}")
    it = d.rglob("*") if check_flag(recursive, "recursive") else d.iterdir()
    paths = sorted(p for p in it if p.is_file())
    readable = IMAGE_EXTENSIONS + (HEIF_EXTENSIONS if heif_readable() else ())
    files = [p for p in paths if p.suffix.lower() in readable]
    return files, [p for p in paths if _unread_format_advice(p) is not None]


def _unread_summary(unread: list[Path], shown: int = 3) -> str:
    """``unread`` photo files counted, the first ``shown`` named, and what to do with each kind."""
    names = ", ".join(p.name for p in unread[:shown]) + (", …" if len(unread) > shown else "")
    advice = list(dict.fromkeys(_unread_format_advice(p) for p in unread))  # each kind once, in order
    return f"{len(unread)} photo file(s) in formats not read here ({names}); " + "; ".join(advice)


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
