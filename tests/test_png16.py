"""The 16-bit PNG reader (pnpdeblur.data._png) against Pillow and a spec-written encoder.

The encoder here applies the five PNG row filters as ISO/IEC 15948 defines them. Where Pillow
decodes the same file at full precision (8-bit images, 16-bit grey) it is the independent
reference that the encoder is right; the reader must then give back the original samples
exactly, for every filter, sample size and channel count. 16-bit colour, which Pillow cuts to
8 bits, is the case the reader exists for.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from pnpdeblur import cli
from pnpdeblur.data import read_image
from pnpdeblur.data._png import decode_png, png_header, read_png16

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _chunk(tag, body):
    """One PNG chunk: length, tag, body, CRC."""
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def encode(arr: np.ndarray, depth: int, colour: int, filters, interlace: int = 0) -> bytes:
    """PNG bytes of ``arr`` (H, W, C) with row r (of each Adam7 pass when ``interlace``) filtered
    by ``filters[r % len(filters)]``."""
    h, w, c = arr.shape
    assert c == CHANNELS[colour]
    if interlace:  # each pass is an image of its own (empty ones contribute nothing)
        raw = b"".join(_filtered(arr[y0::dy, x0::dx], depth, filters) for x0, y0, dx, dy in ADAM7
                       if arr[y0::dy, x0::dx].size)
    else:
        raw = _filtered(arr, depth, filters)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def _filtered(arr: np.ndarray, depth: int, filters) -> bytes:
    """The filtered scanlines of ``arr`` (H, W, C), each led by its filter type byte."""
    h, c = arr.shape[0], arr.shape[2]
    rows = np.ascontiguousarray(arr, dtype=">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    bpp = c * depth // 8
    raw = bytearray()
    prev = np.zeros(rows.shape[1], np.int64)
    for r in range(h):
        f = filters[r % len(filters)]
        cur = rows[r].astype(np.int64)
        out = []
        for i in range(len(cur)):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            cc = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, cc)][f]
            out.append((cur[i] - pred) % 256)
        raw += bytes([f]) + bytes(out)
        prev = cur
    return bytes(raw)


def _samples(h, w, c, depth, seed=0):
    return np.random.default_rng(seed).integers(0, 2 ** depth, (h, w, c)).astype(np.uint16 if depth == 16 else np.uint8)


FILTER_SETS = [(0,), (1,), (2,), (3,), (4,), (0, 1, 2, 3, 4)]


@pytest.mark.parametrize("colour", [0, 2, 4, 6])
@pytest.mark.parametrize("filters", FILTER_SETS)
def test_8bit_images_decode_as_pillow_decodes_them(colour, filters):
    arr = _samples(6, 9, CHANNELS[colour], 8, seed=colour)
    data = encode(arr, 8, colour, filters)
    pil = np.asarray(Image.open(io.BytesIO(data)))
    assert np.array_equal(pil.reshape(arr.shape), arr)  # the encoder follows the spec
    got = decode_png(data)
    assert got.dtype == np.uint8 and np.array_equal(got, arr)


@pytest.mark.parametrize("filters", FILTER_SETS)
def test_16bit_grey_decodes_as_pillow_decodes_it(filters):
    arr = _samples(5, 8, 1, 16, seed=1)
    data = encode(arr, 16, 0, filters)
    pil = np.asarray(Image.open(io.BytesIO(data))).astype(np.int64)
    assert np.array_equal(pil, arr[..., 0])
    got = decode_png(data)
    assert got.dtype == np.uint16 and np.array_equal(got, arr)


@pytest.mark.parametrize("colour", [2, 4, 6])
@pytest.mark.parametrize("filters", FILTER_SETS)
def test_16bit_colour_keeps_every_bit(colour, filters, tmp_path):
    arr = _samples(7, 5, CHANNELS[colour], 16, seed=colour + 10)
    path = tmp_path / "c16.png"
    path.write_bytes(encode(arr, 16, colour, filters))
    got = read_png16(path)
    assert got.dtype == np.uint16 and np.array_equal(got, arr)
    # read_image: scaled by 65535 exactly, alpha dropped; Pillow's 8-bit reading is off by up to 255
    img = read_image(path, channels=None)
    want = arr[..., :3] if colour == 6 else (arr[..., :1] if colour == 4 else arr)
    np.testing.assert_allclose(img, want / 65535.0, rtol=0, atol=1e-7)


def test_natural_photos_saved_by_pillow_with_its_own_filters():
    # Pillow chooses filters per row (Sub, Up and Paeth on these); decoding must match its reading
    from skimage import data

    for photo in (data.astronaut(), data.camera()):
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format="PNG")
        got = decode_png(buf.getvalue())
        assert np.array_equal(got.reshape(photo.shape), photo)


def test_the_cli_writer_and_the_reader_agree(tmp_path):
    arr = _samples(4, 6, 3, 16, seed=3)[...]
    cli._imsave(tmp_path / "w.png", arr)
    assert np.array_equal(read_png16(tmp_path / "w.png"), arr)


def test_files_the_reader_leaves_to_the_general_reader(tmp_path):
    (tmp_path / "e.png").write_bytes(encode(_samples(4, 4, 3, 8), 8, 2, (0,)))
    assert read_png16(tmp_path / "e.png") is None  # 8-bit: Pillow reads it whole
    (tmp_path / "t.txt").write_text("not an image")
    assert read_png16(tmp_path / "t.txt") is None and png_header(tmp_path / "t.txt") is None
    assert read_png16(tmp_path / "missing.png") is None
    assert png_header(tmp_path / "e.png") == dict(width=4, height=4, bit_depth=8, colour_type=2, interlace=0)


def _corrupt(data: bytes, where: str) -> bytes:
    i = data.index(b"IDAT")
    if where == "crc":
        return data[:i + 6] + bytes([data[i + 6] ^ 1]) + data[i + 7:]
    if where == "truncated":
        return data[:i + 10]
    raise AssertionError(where)


@pytest.mark.parametrize("where,msg", [
    ("crc", r"is corrupt: the CRC of its b'IDAT' chunk does not match"),
    ("truncated", r"is truncated in its b'IDAT' chunk"),
])
def test_corrupt_files_are_errors_that_name_the_file(where, msg, tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(_corrupt(encode(_samples(4, 4, 3, 16), 16, 2, (1,)), where))
    with pytest.raises(ValueError, match=msg):
        read_png16(path)
    with pytest.raises(ValueError, match=r"^cannot read image .*bad\.png: .*bad\.png " + msg):
        read_image(path)


def test_unknown_filters_and_short_data_are_errors():
    good = encode(_samples(3, 3, 1, 16), 16, 0, (0,))
    raw = bytearray(zlib.decompress(good[good.index(b"IDAT") + 4:good.index(b"IEND") - 8]))
    raw[0] = 5  # filter types are 0-4

    def rebuild(payload):
        i = good.index(b"IDAT") - 4
        j = good.index(b"IEND") - 4
        return good[:i] + _chunk(b"IDAT", zlib.compress(bytes(payload))) + good[j:]

    with pytest.raises(ValueError, match=r"^x\.png is corrupt: a row has an unknown filter type$"):
        decode_png(rebuild(raw), "x.png")
    with pytest.raises(ValueError, match=r"^x\.png is corrupt: 20 bytes of image data, expected 21$"):
        decode_png(rebuild(raw[:-1]), "x.png")
    with pytest.raises(ValueError, match=r"^x\.png is not a PNG file$"):
        decode_png(b"GIF89a" + good[6:], "x.png")
    with pytest.raises(ValueError, match=r"^x\.png is truncated \(no IEND chunk\)$"):
        decode_png(good[:good.index(b"IEND") - 4], "x.png")


# -- cases found by mutation testing (docs/mutation.md, twelfth session) ----------------------

def test_png_header_needs_the_signature_the_ihdr_and_33_bytes(tmp_path):
    good = encode(_samples(2, 2, 3, 16), 16, 2, (0,))
    (tmp_path / "sig.bin").write_bytes(b"NOTAPNG!" + good[8:])  # IHDR in place, signature wrong
    assert png_header(tmp_path / "sig.bin") is None
    (tmp_path / "short.png").write_bytes(good[:20])  # the signature and "IHDR", then cut
    assert png_header(tmp_path / "short.png") is None
    (tmp_path / "noihdr.png").write_bytes(good[:12] + b"IDAT" + good[16:])
    assert png_header(tmp_path / "noihdr.png") is None


def test_a_file_cut_inside_a_chunks_crc_is_truncated():
    good = encode(_samples(2, 2, 3, 16), 16, 2, (0,))
    end_of_idat_body = good.index(b"IEND") - 8
    with pytest.raises(ValueError, match=r"^PNG is truncated in its b'IDAT' chunk$"):
        decode_png(good[:end_of_idat_body + 2])  # the body whole, 2 of the CRC's 4 bytes


def test_a_png_without_ihdr_and_a_broken_zlib_stream_are_errors():
    ihdr = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)
    sig = b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"^y\.png has no IHDR chunk$"):
        decode_png(sig + _chunk(b"IDAT", zlib.compress(b"\0" * 26)) + _chunk(b"IEND", b""), "y.png")
    with pytest.raises(ValueError, match=r"^y\.png is corrupt: Error -3 while decompressing data"):
        decode_png(sig + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"not zlib") + _chunk(b"IEND", b""), "y.png")


def test_palette_and_low_bit_depth_pngs_are_left_to_pillow():
    pal = io.BytesIO()
    Image.fromarray(_samples(4, 4, 3, 8)).convert("P").save(pal, format="PNG")
    assert decode_png(pal.getvalue()) is None  # colour type 3
    one_bit = io.BytesIO()
    Image.fromarray(_samples(4, 8, 1, 8)[..., 0] > 127).save(one_bit, format="PNG")
    assert decode_png(one_bit.getvalue()) is None  # bit depth 1


def test_an_unknown_filter_in_a_one_row_image_is_an_error():
    good = encode(_samples(1, 3, 1, 16), 16, 0, (0,))
    i, j = good.index(b"IDAT") + 4, good.index(b"IEND") - 8
    raw = bytearray(zlib.decompress(good[i:j]))
    raw[0] = 7
    body = zlib.compress(bytes(raw))
    bad = good[:i - 8] + _chunk(b"IDAT", body) + good[j + 4:]
    with pytest.raises(ValueError, match=r"^PNG is corrupt: a row has an unknown filter type$"):
        decode_png(bad)


# -- Adam7 interlacing ------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 1), (3, 2), (9, 11), (16, 5)])  # passes empty and not
@pytest.mark.parametrize("filters", [(0,), (1, 2, 3, 4)])
def test_interlaced_pngs_decode_as_pillow_decodes_them(h, w, filters):
    for depth, colour in ((8, 2), (8, 6), (16, 0)):  # the kinds Pillow reads at full precision
        arr = _samples(h, w, CHANNELS[colour], depth, seed=h * w)
        data = encode(arr, depth, colour, filters, interlace=1)
        pil = np.asarray(Image.open(io.BytesIO(data))).astype(np.int64)
        assert np.array_equal(pil.reshape(arr.shape), arr)  # the encoder follows the spec
        got = decode_png(data)
        assert np.array_equal(got, arr), (depth, colour)


def test_an_interlaced_16bit_colour_png_keeps_every_bit(tmp_path):
    arr = _samples(13, 10, 3, 16, seed=4)
    (tmp_path / "i.png").write_bytes(encode(arr, 16, 2, (4, 3, 1), interlace=1))
    got = read_png16(tmp_path / "i.png")
    assert got.dtype == np.uint16 and np.array_equal(got, arr)


def test_interlaced_data_of_the_wrong_length_is_an_error():
    good = encode(_samples(3, 3, 1, 16), 16, 0, (0,), interlace=1)
    i, j = good.index(b"IDAT") + 4, good.index(b"IEND") - 8
    raw = zlib.decompress(good[i:j])
    body = zlib.compress(raw + b"\0")
    bad = good[:i - 8] + _chunk(b"IDAT", body) + good[j + 4:]
    # passes of a 3×3 image: 1×1, 1×1 (pass 4), 1×2 (5), 2×1 (6), 1×3 (7): 3 + 3 + 5 + 6 + 7 = 24 bytes
    with pytest.raises(ValueError, match=rf"^PNG is corrupt: {len(raw) + 1} bytes of image data, expected 24$"):
        decode_png(bad)
