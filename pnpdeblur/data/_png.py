"""A reader for 16-bit PNGs at full precision.

Pillow (behind :func:`skimage.io.imread`) decodes 16-bit colour PNGs (RGB, RGBA, grey+alpha)
to 8 bits per sample, so a camera's 16-bit export would lose 8 bits before deblurring
starts. This module decodes them itself (PNG specification, ISO/IEC 15948): the IHDR
header, the zlib stream of the IDAT chunks, the five per-row filters and Adam7 interlacing.
:func:`read_png16` returns ``None`` for anything it does not handle (another bit depth, a
palette), and the caller falls back to the general reader.

Samples come back as stored: ``uint16`` ``(H, W, C)`` with C = 1 (grey), 2 (grey+alpha),
3 (RGB) or 4 (RGBA). 8-bit files of the same colour types decode too (``uint8``), which is
what the tests compare against Pillow.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Optional

import numba as nb
import numpy as np

__all__ = ["PNG_SIGNATURE", "png_header", "read_png16", "decode_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: samples per pixel of the colour types this reader decodes (3, palette, is not one)
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}

#: Adam7's seven passes: (first column, first row, column step, row step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def png_header(path) -> Optional[dict]:
    """IHDR fields of a PNG file (``width, height, bit_depth, colour_type, interlace``), or
    ``None`` when the file does not start like a PNG (only the first 33 bytes are read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(33)
    except OSError:
        return None
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return dict(width=width, height=height, bit_depth=depth, colour_type=colour, interlace=interlace)


@nb.njit(cache=True)
def _unfilter(raw, height, stride, bpp):
    """Undo the PNG row filters: ``raw`` is ``height`` rows of (filter byte, ``stride`` bytes).

    Returns the reconstructed ``(height, stride)`` bytes, or an empty array for an unknown
    filter type. a, b, c are the bytes left, above and above-left (0 outside the image).
    """
    out = np.zeros((height, stride), np.uint8)
    for r in range(height):
        base = r * (stride + 1)
        f = raw[base]
        if f > 4:
            return np.zeros((0, stride), np.uint8)
        for i in range(stride):
            x = np.int32(raw[base + 1 + i])
            a = np.int32(out[r, i - bpp]) if i >= bpp else np.int32(0)
            b = np.int32(out[r - 1, i]) if r > 0 else np.int32(0)
            c = np.int32(out[r - 1, i - bpp]) if (r > 0 and i >= bpp) else np.int32(0)
            if f == 1:
                x += a
            elif f == 2:
                x += b
            elif f == 3:
                x += (a + b) // 2
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    x += a
                elif pb <= pc:
                    x += b
                else:
                    x += c
            out[r, i] = x & 0xFF
    return out


def decode_png(data: bytes, name: str = "PNG") -> Optional[np.ndarray]:
    """Samples of an 8- or 16-bit grey/RGB/grey+alpha/RGBA PNG held in ``data``.

    Returns ``uint8``/``uint16`` ``(H, W, C)``, or ``None`` for a PNG this reader does not
    handle. Raises ``ValueError`` naming ``name`` for a corrupt file (bad chunk CRC, truncated
    data, unknown filter).
    """
    if data[:8] != PNG_SIGNATURE:
        raise ValueError(f"{name} is not a PNG file")
    pos, header, idat = 8, None, []
    while True:
        if pos + 12 > len(data):
            raise ValueError(f"{name} is truncated (no IEND chunk)")
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError(f"{name} is truncated in its {tag!r} chunk")
        if struct.unpack(">I", crc)[0] != zlib.crc32(tag + body) & 0xFFFFFFFF:
            raise ValueError(f"{name} is corrupt: the CRC of its {tag!r} chunk does not match")
        pos += 12 + length
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if header is None:
        raise ValueError(f"{name} has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth not in (8, 16) or colour not in _CHANNELS or interlace not in (0, 1):
        return None
    channels = _CHANNELS[colour]
    bpp = channels * depth // 8  # bytes per pixel: the filters' "left" distance
    stride = width * bpp
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ValueError(f"{name} is corrupt: {exc}") from exc
    # (first column, first row, column step, row step) of each pass; one pass of all pixels
    # when not interlaced. Each pass is a small image of its own, filtered row by row.
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    sizes = [(-(-(height - y0) // dy), -(-(width - x0) // dx)) for x0, y0, dx, dy in passes]
    expected = sum(ph * (pw * bpp + 1) for ph, pw in sizes if ph and pw)  # empty passes hold no bytes
    if len(raw) != expected:
        raise ValueError(f"{name} is corrupt: {len(raw)} bytes of image data, expected {expected}")
    buf = np.frombuffer(raw, np.uint8)
    out = np.empty((height, width, channels), np.uint16 if depth == 16 else np.uint8)
    start = 0
    for (x0, y0, dx, dy), (ph, pw) in zip(passes, sizes):
        if not (ph and pw):
            continue
        n = ph * (pw * bpp + 1)
        rows = _unfilter(buf[start:start + n], ph, pw * bpp, bpp)
        start += n
        if rows.shape[0] != ph:
            raise ValueError(f"{name} is corrupt: a row has an unknown filter type")
        if depth == 16:
            samples = rows.reshape(-1).view(">u2").astype(np.uint16)  # PNG samples are big-endian
        else:
            samples = rows.reshape(-1)
        out[y0::dy, x0::dx] = samples.reshape(ph, pw, channels)
    return out


def read_png16(path) -> Optional[np.ndarray]:
    """A 16-bit PNG's samples at full precision (``uint16`` ``(H, W, C)``), or ``None`` when the
    file is not a 16-bit PNG that :func:`decode_png` handles (read it with the general reader)."""
    head = png_header(path)
    if head is None or head["bit_depth"] != 16:
        return None
    return decode_png(Path(path).read_bytes(), str(path))
