"""Bundled sample photographs (``pnpdeblur.data.samples``) checked directly.

The loader is swapped for tiny hand-built arrays (``monkeypatch`` on ``_loader``) so that
scaling by dtype, channel handling, the centre crop and every error message can be compared
with hand-computed values; one test reads each bundled photo once and checks its documented
size and channel count.
"""
import re

import numpy as np
import pytest
import skimage.data
from skimage.transform import resize

from pnpdeblur.data import samples
from pnpdeblur.data.samples import _SAMPLES, _loader, _parse_size, sample_image, sample_images

NAMES = ["astronaut", "brick", "camera", "chelsea", "coffee", "coins", "colorwheel", "grass", "gravel",
         "hubble_deep_field", "immunohistochemistry", "moon", "page", "rocket", "text"]


def _use(monkeypatch, arr):
    monkeypatch.setattr(samples, "_loader", lambda name: (lambda: arr))


def test_names_are_the_sorted_bundled_entries():
    assert sample_images() == NAMES
    assert sorted(_SAMPLES) == NAMES


def test_each_photo_matches_its_description():
    # the table documents each photo as "grey|colour, HxW": it must say the truth
    for name in NAMES:
        raw = np.asarray(_loader(name)())
        assert raw.dtype == np.uint8
        kind, size = _SAMPLES[name].split(", ")
        h, w = map(int, size.split("x"))
        assert raw.shape[:2] == (h, w), name
        assert (raw.ndim == 2) == (kind == "grey") and kind in ("grey", "colour"), name


def test_loader_reads_skimage_data():
    np.testing.assert_array_equal(_loader("camera")(), skimage.data.camera())


def test_native_photo_scaled_by_255():
    out = sample_image("camera")
    assert out.shape == (512, 512, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :, 0], (skimage.data.camera() / 255.0).astype(np.float32))


def test_integer_and_bool_scaling(monkeypatch):
    _use(monkeypatch, np.array([[0, 65535], [32768, 1]], dtype=np.uint16))
    out = sample_image("camera", dtype=np.float64)
    assert out.dtype == np.float64 and out.shape == (2, 2, 1)
    np.testing.assert_array_equal(out[:, :, 0], [[0.0, 1.0], [32768 / 65535, 1 / 65535]])
    _use(monkeypatch, np.array([[True, False]]))
    out = sample_image("camera", dtype=np.float64)
    np.testing.assert_array_equal(out[:, :, 0], [[1.0, 0.0]])
    _use(monkeypatch, np.array([[-0.5, 0.25, 1.5]], dtype=np.float32))  # floats: clipped, not scaled
    out = sample_image("camera", dtype=np.float64)
    np.testing.assert_array_equal(out[:, :, 0], [[0.0, 0.25, 1.0]])
    assert out.dtype == np.float64


def test_float_source_keeps_float64_precision(monkeypatch):
    v = 0.1 + 1e-12  # lost in float32, kept in float64
    _use(monkeypatch, np.array([[v]], dtype=np.float64))
    assert sample_image("camera", dtype=np.float64)[0, 0, 0] == v


def test_channels(monkeypatch):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], dtype=np.uint8)
    _use(monkeypatch, rgb)
    out = sample_image("astronaut", dtype=np.float64)
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out, rgb / 255.0)
    lum = sample_image("astronaut", channels=1, dtype=np.float64)
    assert lum.shape == (1, 4, 1)
    np.testing.assert_allclose(lum[0, :, 0], [0.2125, 0.7154, 0.0721, 1.0], rtol=0, atol=1e-12)
    assert sample_image("astronaut", channels=3).shape == (1, 4, 3)  # colour stays colour
    grey = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    _use(monkeypatch, grey)
    out = sample_image("camera", channels=3, dtype=np.float64)
    assert out.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey / 255.0)
    assert sample_image("camera", channels=1).shape == (2, 2, 1)  # grey stays grey
    rgba = np.concatenate([rgb, np.full((1, 4, 1), 9, np.uint8)], axis=2)
    _use(monkeypatch, rgba)
    out = sample_image("astronaut", dtype=np.float64)
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out, rgb / 255.0)


def _ramp(h, w):
    return (np.arange(h * w, dtype=np.float64).reshape(h, w) / (h * w - 1))


@pytest.mark.parametrize("hw, target, rows, cols", [
    ((6, 4), (4, 4), slice(1, 5), slice(0, 4)),     # too tall: centre rows
    ((9, 4), (4, 4), slice(2, 6), slice(0, 4)),
    ((4, 6), (4, 4), slice(0, 4), slice(1, 5)),     # too wide: centre columns
    ((4, 9), (4, 4), slice(0, 4), slice(2, 6)),
    ((4, 4), (4, 4), slice(0, 4), slice(0, 4)),     # same aspect: nothing cropped
    ((9, 4), (6, 4), slice(1, 7), slice(0, 4)),     # non-square target
    ((4, 10), (4, 6), slice(0, 4), slice(2, 8)),
])
def test_centre_crop_without_resize(monkeypatch, hw, target, rows, cols):
    img = _ramp(*hw)
    _use(monkeypatch, img)
    out = sample_image("camera", size=target, dtype=np.float64)
    assert out.shape == target + (1,)
    np.testing.assert_array_equal(out[:, :, 0], img[rows, cols])


def test_crop_then_resize_with_antialiasing(monkeypatch):
    img = _ramp(12, 8)
    _use(monkeypatch, img)
    out = sample_image("camera", size=(3, 2), dtype=np.float64)
    # 12x8 -> 3:2 aspect: 12 rows, 8 columns already 3:2 -> no crop, then resize
    ref = resize(img[:, :, None], (3, 2, 1), order=1, anti_aliasing=True, mode="reflect")
    np.testing.assert_allclose(out, np.clip(ref, 0, 1), rtol=0, atol=1e-15)
    out = sample_image("camera", size=2, dtype=np.float64)  # an int means square: crop rows 2..9
    ref = resize(img[2:10, :, None], (2, 2, 1), order=1, anti_aliasing=True, mode="reflect")
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-15)
    assert out.shape == (2, 2, 1)


def test_extreme_aspect_keeps_at_least_one_pixel(monkeypatch):
    img = np.tile(np.arange(100, dtype=np.float64) / 99.0, (2, 1))  # 2x100, column c = c/99
    _use(monkeypatch, img)
    out = sample_image("camera", size=(100, 1), dtype=np.float64)  # needs a 0.02-column crop
    assert out.shape == (100, 1, 1)
    np.testing.assert_allclose(out, 49 / 99.0, rtol=0, atol=1e-12)  # the single centre column 49
    img = np.tile((np.arange(100, dtype=np.float64) / 99.0)[:, None], (1, 2))  # 100x2, row r = r/99
    _use(monkeypatch, img)
    out = sample_image("camera", size=(1, 100), dtype=np.float64)
    assert out.shape == (1, 100, 1)
    np.testing.assert_allclose(out, 49 / 99.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("size, want", [
    (None, None), (5, (5, 5)), (np.int64(3), (3, 3)), ((2, 7), (2, 7)), ([4, 1], (4, 1)),
    ((np.int32(2), 3), (2, 3)), (1, (1, 1)),
])
def test_parse_size_accepts(size, want):
    got = _parse_size(size)
    assert got == want
    if got is not None:
        assert all(type(s) is int for s in got)


@pytest.mark.parametrize("size", [0, -1, True, (1,), (1, 2, 3), (1.0, 2), (2, True), (0, 3), (3, -1), "ab", 2.0])
def test_parse_size_rejects(size):
    with pytest.raises(ValueError, match=r"^size must be None, a positive int or a pair \(H, W\) of positive ints, "
                                         rf"got {re.escape(repr(size))}$"):
        _parse_size(size)


def test_argument_errors(monkeypatch):
    _use(monkeypatch, np.zeros((2, 2), np.uint8))
    listed = re.escape(repr(NAMES))
    with pytest.raises(ValueError, match=rf"^name must be one of {listed}, got 'nope'$"):
        sample_image("nope")
    with pytest.raises(ValueError, match=rf"^name must be one of {listed}, got 3$"):
        sample_image(3)
    for ch in (0, 2, 4, "3"):
        with pytest.raises(ValueError, match=rf"^channels must be None, 1 or 3, got {re.escape(repr(ch))}$"):
            sample_image("camera", channels=ch)
    for dt in (np.int64, np.uint8, bool):
        with pytest.raises(TypeError, match=rf"^dtype must be a floating dtype, got {np.dtype(dt)}$"):
            sample_image("camera", dtype=dt)
    with pytest.raises(ValueError, match=r"^size must be"):
        sample_image("camera", size=0)
    assert sample_image("camera", dtype=np.float16).dtype == np.float16
    assert sample_image("camera").dtype == np.float32  # the default


def test_default_photo_is_the_astronaut():
    out = sample_image()
    assert out.shape == (512, 512, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, (skimage.data.astronaut() / 255.0).astype(np.float32))
