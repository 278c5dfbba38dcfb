"""Reading the photos and writing the results: 8 or 16 bits as the input had, each file written
whole or not at all."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Tuple

import numpy as np

__all__ = ["_is_16bit_png", "_is_16bit_tiff", "_read", "_to_storage", "_atomic_save", "_png16_bytes", "_imsave"]


def _is_16bit_png(path: Path) -> bool:
    """True for a PNG whose IHDR says 16 bits per sample (read from the header only)."""
    from ..data._png import png_header

    header = png_header(path)
    return header is not None and header["bit_depth"] == 16


def _is_16bit_tiff(path: Path) -> bool:
    """True for a TIFF whose first page holds 16-bit unsigned samples, or 32-bit integers (how
    Pillow stores 16-bit images; ``read_image`` reads them as 16-bit data) (header only)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            dtype = np.dtype(tif.pages[0].dtype)
            return dtype == np.uint16 or (dtype.kind in "iu" and dtype.itemsize == 4)
    except Exception:  # not a TIFF, or unreadable: read_image reports it
        return False


def _read(path: Path) -> Tuple[np.ndarray, bool]:
    """Image as float32 ``(H, W, C)`` (C = 1 or 3, as stored) and whether it has 16-bit samples
    (a PNG or a TIFF), so that its output is written with 16 bits too."""
    from ..data.image_files import read_image

    img = read_image(path, channels=None)  # keeps grey grey, drops alpha; raises for bad files
    return img, _is_16bit_png(path) or _is_16bit_tiff(path)


def _to_storage(x: np.ndarray, sixteen: bool) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    x = np.round(x * 65535.0).astype(np.uint16) if sixteen else np.round(x * 255.0).astype(np.uint8)
    return x[..., 0] if x.ndim == 3 and x.shape[2] == 1 else x


def _atomic_save(path: Path, write: Callable[[Path], None]) -> None:
    # Write next to the target and rename: an interrupted run never leaves a truncated output.
    tmp = path.with_name(f".{path.stem}.part{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _png16_bytes(arr: np.ndarray) -> bytes:
    """A 16-bit grey or RGB PNG of ``arr`` (uint16 ``(H, W)`` or ``(H, W, 3)``).

    Pillow (behind ``skimage.io.imsave``) cannot write 16-bit colour PNGs, and the format is
    simple: IHDR, one zlib stream of rows each prefixed by filter type 0, IEND.
    """
    import struct
    import zlib

    h, w = arr.shape[:2]
    colour_type = 0 if arr.ndim == 2 else 2  # grey / RGB
    rows = np.ascontiguousarray(arr, dtype=">u2").reshape(h, -1).view(np.uint8)  # big-endian samples
    raw = np.concatenate((np.zeros((h, 1), np.uint8), rows), axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    from ..data._png import PNG_SIGNATURE

    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def _imsave(path: Path, arr: np.ndarray) -> None:
    if arr.dtype == np.uint16:
        data = _png16_bytes(arr)
        _atomic_save(path, lambda p: p.write_bytes(data))
        return
    from skimage import io

    _atomic_save(path, lambda p: io.imsave(str(p), arr, check_contrast=False))
