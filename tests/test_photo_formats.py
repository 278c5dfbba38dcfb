"""Photos as cameras and print workflows store them: read_image turns them upright by their EXIF
orientation, as Pillow's ImageOps.exif_transpose (the independent reference) and every photo
viewer do, and reads CMYK JPEGs and TIFFs, Lab and YCbCr TIFFs as RGB (Pillow's conversion the
reference); a one-frame GIF is an image, an animation or a multi-page file is refused by name."""
from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from pnpdeblur.data import read_image
from pnpdeblur.data.datasets import _pillow_peek, exif_orientation

BASE = data.astronaut()[:30, :44]  # not square, so a transpose changes the shape


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_each_orientation_as_pillow_turns_it(orientation, fmt, tmp_path):
    path = tmp_path / ("o.png" if fmt == "PNG" else "o.jpg")
    Image.fromarray(BASE).save(path, format=fmt, exif=_exif(orientation))
    assert exif_orientation(path) == orientation
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == want.shape
    assert np.array_equal(np.round(got * 255).astype(np.uint8), want)
    if orientation in (5, 6, 7, 8):
        assert got.shape[:2] == (BASE.shape[1], BASE.shape[0])


def test_grey_images_turn_too(tmp_path):
    grey = data.camera()[:20, :36]
    Image.fromarray(grey).save(tmp_path / "g.png", exif=_exif(6))
    got = read_image(tmp_path / "g.png", channels=None)
    assert got.shape == (36, 20, 1)
    assert np.array_equal(np.round(got[..., 0] * 255).astype(np.uint8), np.rot90(grey, -1))  # 90° clockwise


def test_a_16bit_colour_png_with_an_exif_chunk_turns(tmp_path):
    # a 16-bit RGB PNG (no filter) with an eXIf chunk: read by the library's own decoder, turned by the tag
    arr = np.random.default_rng(0).integers(0, 65536, (3, 5, 3)).astype(np.uint16)

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    rows = np.ascontiguousarray(arr, ">u2").reshape(3, -1).view(np.uint8)
    raw = np.concatenate((np.zeros((3, 1), np.uint8), rows), 1).tobytes()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 3, 16, 2, 0, 0, 0))
           + chunk(b"eXIf", _exif(8)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    (tmp_path / "e.png").write_bytes(png)
    assert exif_orientation(tmp_path / "e.png") == 8
    got = read_image(tmp_path / "e.png")
    np.testing.assert_allclose(got, np.rot90(arr, 1) / 65535.0, rtol=0, atol=1e-7)  # 90° anticlockwise


def test_no_tag_a_bad_tag_or_no_image_means_as_stored(tmp_path):
    Image.fromarray(BASE).save(tmp_path / "plain.png")
    assert exif_orientation(tmp_path / "plain.png") == 1
    assert read_image(tmp_path / "plain.png").shape == BASE.shape
    Image.fromarray(BASE).save(tmp_path / "nine.png", exif=_exif(9))  # outside 1-8
    assert exif_orientation(tmp_path / "nine.png") == 1
    assert read_image(tmp_path / "nine.png").shape == BASE.shape
    (tmp_path / "t.txt").write_text("text")
    assert exif_orientation(tmp_path / "t.txt") == 1
    assert exif_orientation(tmp_path / "missing.jpg") == 1


def test_the_cli_writes_an_oriented_photo_upright(tmp_path):
    from pnpdeblur import cli

    Image.fromarray(BASE).save(tmp_path / "p.png", exif=_exif(6))
    out = tmp_path / "out"
    # a threshold no flow reaches: written unchanged, so the output is the upright input
    assert cli.main(["deblur", str(tmp_path / "p.png"), "-o", str(out), "--blur-threshold", "1e9",
                     "--no-flow-ensemble", "--no-progress", "--prior", "tv"]) == 0
    got = np.asarray(Image.open(out / "p.png"))
    assert np.array_equal(got, np.rot90(BASE, -1))


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("TIFF", "tif")])
def test_cmyk_photos_are_read_as_rgb(fmt, suffix, tmp_path):
    path = tmp_path / f"c.{suffix}"
    Image.fromarray(BASE).convert("CMYK").save(path, format=fmt)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        want = np.asarray(im.convert("RGB"))
    got = read_image(path)
    assert got.shape == BASE.shape
    assert np.array_equal(np.round(got * 255).astype(np.uint8), want)
    # and close to the photo itself (the ink channels read as R, G, B are off by up to 1)
    assert np.abs(got - BASE / 255.0).mean() < 0.05
    grey = read_image(path, channels=1)
    assert grey.shape == BASE.shape[:2] + (1,)


@pytest.mark.parametrize("mode", ["LAB", "YCbCr"])
def test_lab_and_ycbcr_tiffs_are_read_as_rgb(mode, tmp_path):
    # their channels as stored (L, a, b or Y, Cb, Cr) were read as R, G, B: 60-75 grey levels off
    path = tmp_path / "c.tif"
    Image.fromarray(BASE).convert(mode).save(path, format="TIFF")
    with Image.open(path) as im:
        assert im.mode == mode
        want = np.asarray(im.convert("RGB"))
    got = read_image(path)
    assert got.shape == BASE.shape
    assert np.array_equal(np.round(got * 255).astype(np.uint8), want)
    assert np.abs(got - BASE / 255.0).mean() < 0.01  # the photo itself, to the conversions' rounding


def test_a_one_frame_gif_is_read_and_an_animation_is_refused_by_name(tmp_path):
    still = Image.fromarray(BASE).convert("P")
    still.save(tmp_path / "s.gif")
    got = read_image(tmp_path / "s.gif")
    with Image.open(tmp_path / "s.gif") as im:
        want = np.asarray(im.convert("RGB"))
    assert got.shape == BASE.shape and np.array_equal(np.round(got * 255).astype(np.uint8), want)
    frames = [Image.fromarray(np.roll(BASE, k, axis=1)).convert("P") for k in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ValueError, match=r"^cannot read image .*a\.gif: it holds 3 frames \(an animation or a "
                                         r"multi-page file\); save the frame to deblur as an image of its own$"):
        read_image(tmp_path / "a.gif")
    pages = [Image.fromarray(BASE), Image.fromarray(BASE[::-1].copy())]
    pages[0].save(tmp_path / "m.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"^cannot read image .*m\.tif: it holds 2 frames"):
        read_image(tmp_path / "m.tif")


def test_a_cmyk_photo_with_an_orientation_tag_turns_too(tmp_path):
    path = tmp_path / "c.jpg"
    Image.fromarray(BASE).convert("CMYK").save(path, format="JPEG", exif=_exif(6))
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(path)
    assert got.shape == want.shape == (BASE.shape[1], BASE.shape[0], 3)
    assert np.array_equal(np.round(got * 255).astype(np.uint8), want)


def test_a_malformed_exif_block_means_as_stored(tmp_path):
    # Pillow cannot parse this eXIf chunk (getexif raises): orientation 1, as stored
    buf = io.BytesIO()
    Image.fromarray(BASE).save(buf, format="PNG")
    data = buf.getvalue()
    junk = b"garbage!!"
    chunk = struct.pack(">I", len(junk)) + b"eXIf" + junk + struct.pack(">I", zlib.crc32(b"eXIf" + junk) & 0xFFFFFFFF)
    i = data.index(b"IDAT") - 4
    (tmp_path / "m.png").write_bytes(data[:i] + chunk + data[i:])
    assert exif_orientation(tmp_path / "m.png") == 1
    assert _pillow_peek(tmp_path / "m.png") == ("RGB", 1)  # the mode is still known (a CMYK test needs it)


def test_float_tiffs_on_the_unit_scale_are_read_as_stored_and_others_refused(tmp_path):
    grey = BASE.mean(2)
    unit = tmp_path / "unit.tif"
    Image.fromarray((grey / 255.0).astype(np.float32), mode="F").save(unit)
    got = read_image(unit, channels=None)
    np.testing.assert_array_equal(got[..., 0], (grey / 255.0).astype(np.float32))
    # a 0-255 float TIFF used to be clipped into a white photo, silently
    wide = tmp_path / "wide.tif"
    Image.fromarray(grey.astype(np.float32), mode="F").save(wide)
    with pytest.raises(ValueError, match=rf"^image {re.escape(str(wide))} has values in "
                                         r"\[\d+(\.\d+)?, 2\d\d(\.\d+)?\]; float images must lie in \[0, 1\] "
                                         r"\(store 8- or 16-bit integers, or scale the floats to \[0, 1\]\)$"):
        read_image(wide)
    # noise's overshoot is clipped, as before
    over = tmp_path / "over.tif"
    Image.fromarray(np.full((8, 8), 1.4, np.float32), mode="F").save(over)
    assert np.all(read_image(over) == 1.0)


def test_32bit_integer_tiffs_are_read_as_16bit_data_or_refused(tmp_path):
    # Pillow keeps 16-bit images as 32-bit ints (mode "I"); over the int32 range they read black
    a = np.arange(20 * 30, dtype=np.int64).reshape(20, 30) * 109 % 65536
    Image.fromarray(a.astype(np.uint16)).save(tmp_path / "u16.tif")
    Image.fromarray(a.astype(np.int32)).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as im:
        assert im.mode == "I"
    got = read_image(tmp_path / "i32.tif", channels=None)
    np.testing.assert_array_equal(got, read_image(tmp_path / "u16.tif", channels=None))
    np.testing.assert_allclose(got[..., 0], a / 65535.0, rtol=1e-6)
    import tifffile

    tifffile.imwrite(tmp_path / "u32.tif", a.astype(np.uint32))  # unsigned 32-bit: the same rule
    np.testing.assert_array_equal(read_image(tmp_path / "u32.tif", channels=None), got)
    for bad, shown in ((65536, r"\[0, 65536\]"), (-1, r"\[-1, \d+\]")):
        b = a.astype(np.int32)
        b[3, 4] = bad
        Image.fromarray(b).save(tmp_path / "bad.tif")
        with pytest.raises(ValueError, match=rf"^cannot read image .*bad\.tif: int32 values in {shown} have no known "
                                             r"white level \(store 8- or 16-bit integers, or floats in \[0, 1\]\)$"):
            read_image(tmp_path / "bad.tif")
