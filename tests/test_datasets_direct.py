"""Datasets, augmentation and image files (``pnpdeblur.data.datasets``, ``augment``, ``image_files``) checked directly.

Tiny images are written to ``tmp_path`` or handed in as arrays; the decoder is swapped for
hand-built arrays where a dtype or shape cannot be written to a file; the augmentations run
with a scripted random generator so that every crop offset, flip, rotation, permutation and
noise draw has a hand-computed expectation. Error messages are matched from their start.
"""
import os
import re

import numpy as np
import pytest
import torch
from skimage import io

from pnpdeblur.data import datasets as D
from pnpdeblur.data.datasets import (
    IMAGE_EXTENSIONS,
    BlurredFolderDataset,
    GoProDataset,
    KohlerDataset,
    PairAugment,
    PairedFolderDataset,
    SyntheticBlurDataset,
    SyntheticVideoDataset,
    _Base,
    _check_pair,
    _fit_sources,
    _images_from,
    list_images,
    read_image,
)


def _save_u8(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), a, check_contrast=False)


def _u8(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, size=(h, w, c) if c else (h, w), dtype=np.uint8)
    return a


def _fake_imread(monkeypatch, arr):
    import skimage.io

    monkeypatch.setattr(skimage.io, "imread", lambda path, *a, **k: arr)


class ScriptRng:
    """A stand-in ``numpy.random.Generator`` returning scripted values and recording calls."""

    def __init__(self, integers=(), random=(), perm=None, uniform=None, normal=None, std=None):
        self._int, self._rand = list(integers), list(random)
        self._perm, self._uniform, self._normal, self._std = perm, uniform, normal, std
        self.calls = []

    def integers(self, lo, hi):
        self.calls.append(("integers", lo, hi))
        return self._int.pop(0)

    def random(self):
        self.calls.append(("random",))
        return self._rand.pop(0)

    def permutation(self, n):
        self.calls.append(("permutation", n))
        return np.array(self._perm)

    def uniform(self, lo, hi):
        self.calls.append(("uniform", lo, hi))
        return self._uniform

    def normal(self, mu, sigma):
        self.calls.append(("normal", mu, sigma))
        return self._normal

    def standard_normal(self, shape):
        self.calls.append(("standard_normal", shape))
        return np.full(shape, self._std, np.float64)


# -- read_image -------------------------------------------------------------------------


def test_read_image_uint8_rgb_exact(tmp_path):
    a = _u8(3, 5)
    _save_u8(tmp_path / "a.png", a)
    r = read_image(tmp_path / "a.png")
    assert r.dtype == np.float32 and r.shape == (3, 5, 3) and r.flags.c_contiguous
    np.testing.assert_array_equal(r, a.astype(np.float32) / np.float32(255.0))
    assert read_image(str(tmp_path / "a.png"), channels=None).shape == (3, 5, 3)


def test_read_image_16bit_grey(tmp_path):
    a = np.array([[0, 65535, 257], [1000, 30000, 65534]], dtype=np.uint16)
    _save_u8(tmp_path / "g.png", a)
    r = read_image(tmp_path / "g.png", channels=None)
    assert r.shape == (2, 3, 1) and r.dtype == np.float32
    np.testing.assert_array_equal(r[:, :, 0], a.astype(np.float32) / np.float32(65535.0))
    r3 = read_image(tmp_path / "g.png")  # default channels=3 replicates grey
    assert r3.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(r3[:, :, c], r[:, :, 0])
    assert read_image(tmp_path / "g.png", channels=1).shape == (2, 3, 1)


def test_read_image_luminance(monkeypatch, tmp_path):
    (tmp_path / "x.png").write_bytes(b"stand-in")
    _fake_imread(monkeypatch, np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8))
    r = read_image(tmp_path / "x.png", channels=1)
    assert r.shape == (1, 4, 1) and r.dtype == np.float32
    np.testing.assert_allclose(r[0, :, 0], [0.2125, 0.7154, 0.0721, 1.0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("arr, want", [
    (np.array([[True, False]]), [[1.0, 0.0]]),
    (np.array([[-0.5, 0.25, 1.5]], np.float64), [[0.0, 0.25, 1.0]]),
    (np.array([[0.5, 0.75]], np.float16), [[0.5, 0.75]]),
    (np.array([[3, 7]], np.int8), [[3 / 127, 7 / 127]]),
])
def test_read_image_dtypes(monkeypatch, tmp_path, arr, want):
    (tmp_path / "x.png").write_bytes(b"stand-in")
    _fake_imread(monkeypatch, arr)
    r = read_image(tmp_path / "x.png", channels=None)
    assert r.dtype == np.float32 and r.shape == arr.shape + (1,)
    np.testing.assert_allclose(r[:, :, 0], want, rtol=1e-7, atol=0)


@pytest.mark.parametrize("c", [2, 4])
def test_read_image_drops_alpha(monkeypatch, tmp_path, c):
    (tmp_path / "x.png").write_bytes(b"stand-in")
    a = _u8(2, 3, c)
    _fake_imread(monkeypatch, a)
    r = read_image(tmp_path / "x.png", channels=None)
    assert r.shape == (2, 3, c - 1)
    np.testing.assert_array_equal(r, a[:, :, :-1].astype(np.float32) / np.float32(255.0))


def test_read_image_errors(monkeypatch, tmp_path):
    p = tmp_path / "x.png"
    with pytest.raises(FileNotFoundError, match=rf"^image file not found: {re.escape(str(p))}$"):
        read_image(p)
    with pytest.raises(IsADirectoryError, match=rf"^{re.escape(str(tmp_path))} is a folder, not an image file "
                                                rf"\(list_images\('{re.escape(str(tmp_path))}'\) lists its images\)$"):
        read_image(tmp_path)  # a folder is not a file
    with pytest.raises(IsADirectoryError, match=r" is a folder"):
        read_image(str(tmp_path))
    p.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(p))}: not an image file Pillow or "
                                         r"imageio can decode \(damaged, or another kind of file\)$"):
        read_image(p)
    for name, head in (("y.png", b"xx"), ("y.jpg", b"\x00"), ("y.bmp", b"BM\x00"), ("y.tif", bytes(range(40)))):
        q = tmp_path / name  # a few bytes: Pillow's BMP probe raised a struct error through imageio
        q.write_bytes(head)
        with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(q))}: not an image file Pillow "
                                             r"or imageio can decode \(damaged, or another kind of file\)$"):
            read_image(q)
    from PIL import Image

    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:full.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(cut))}: image file is truncated"):
        read_image(cut)  # a photo Pillow knows keeps the decoder's own reason
    p.write_bytes(b"")  # an interrupted copy: said as such, not as a missing imageio plugin
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(p))}: the file is empty \(0 bytes\)$"):
        read_image(p)
    p.write_bytes(b"not an image")
    bad = [
        (np.array([[1 + 1j]]), r"unsupported dtype complex128$"),
        (np.array([["a"]]), r"unsupported dtype <U1$"),
        (np.zeros((2, 3, 5), np.uint8), r"unsupported shape \(2, 3, 5\)$"),
        (np.zeros((1, 1, 2, 3, 3), np.uint8), r"unsupported shape \(1, 1, 2, 3, 3\)$"),
        (np.zeros((2, 2, 3, 3), np.uint8), r"it holds 2 frames \(an animation or a multi-page file\)"),
        (np.zeros((4,), np.uint8), r"unsupported shape \(4,\)$"),
        (np.zeros((2, 2, 0), np.uint8), r"unsupported shape \(2, 2, 0\)$"),
    ]
    for arr, msg in bad:
        _fake_imread(monkeypatch, arr)
        with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(p))}: {msg}"):
            read_image(p)
    for v in (np.nan, np.inf):
        _fake_imread(monkeypatch, np.array([[0.5, v]]))
        with pytest.raises(ValueError, match=rf"^image {re.escape(str(p))} contains NaN or Inf$"):
            read_image(p)
    # one frame of a (frames, H, W, C) file is the image
    one = np.random.default_rng(1).integers(0, 256, (1, 2, 3, 3), dtype=np.uint8)
    _fake_imread(monkeypatch, one)
    np.testing.assert_array_equal(read_image(p), one[0] / np.float32(255))
    _fake_imread(monkeypatch, np.zeros((2, 2), np.uint8))
    for ch in (2, 0, "3"):
        with pytest.raises(ValueError, match=rf"^channels must be None, 1 or 3, got {re.escape(repr(ch))}$"):
            read_image(p, channels=ch)
    _fake_imread(monkeypatch, np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^channels must be None, 1 or 3, got 2$"):
        read_image(p, channels=2)


def test_read_image_decoder_errors_are_chained(monkeypatch, tmp_path):
    import skimage.io

    from PIL import Image

    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p)  # a PNG Pillow identifies: its decoder's reason stands

    def boom(path, *a, **k):
        raise OSError("truncated")

    monkeypatch.setattr(skimage.io, "imread", boom)
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(p))}: truncated$") as ei:
        read_image(p)
    assert isinstance(ei.value.__cause__, OSError)
    q = tmp_path / "y.png"
    q.write_bytes(b"\x89PNG")  # bytes Pillow cannot identify: the decoder's reason is chained, not shown
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(q))}: not an image file") as ei:
        read_image(q)
    assert isinstance(ei.value.__cause__, OSError) and str(ei.value.__cause__) == "truncated"


# -- list_images ------------------------------------------------------------------------


def test_list_images(tmp_path):
    for n in ("b.PNG", "a.jpg", "c.tiff", "d.webp", "e.jpeg", "f.bmp", "g.tif", "notes.txt", "png"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "dir.png").mkdir()  # a folder named like an image is not one
    (tmp_path / "dir.png" / "z.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.png").write_bytes(b"")
    flat = list_images(tmp_path)
    assert [p.name for p in flat] == ["a.jpg", "b.PNG", "c.tiff", "d.webp", "e.jpeg", "f.bmp", "g.tif"]
    deep = list_images(str(tmp_path), recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in deep] == [
        "a.jpg", "b.PNG", "c.tiff", "d.webp", "dir.png/z.png", "e.jpeg", "f.bmp", "g.tif", "sub/0.png"]
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".avif", ".jp2")


def test_list_images_errors(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=rf"^folder not found: {re.escape(str(missing))}$"):
        list_images(missing)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^no images \(\.png, \.jpg, \.jpeg, \.bmp, \.tif, \.tiff, \.webp, "
                                         rf"\.avif, \.jp2\) in {re.escape(str(tmp_path))}$"):
        list_images(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^no images"):
        list_images(tmp_path)  # not recursive: the sub-folder's image does not count
    assert len(list_images(tmp_path, recursive=True)) == 1


# -- PairAugment ------------------------------------------------------------------------


def test_pair_augment_arguments():
    assert PairAugment(crop=5).crop == (5, 5)
    assert PairAugment(crop=np.int64(4)).crop == (4, 4)
    assert PairAugment(crop=[3, 7]).crop == (3, 7)
    assert PairAugment(crop=(1, 1)).crop == (1, 1)
    assert PairAugment().crop is None
    for bad, shown in [(0, "0"), ((3,), "(3,)"), ((1, 2, 3), "(1, 2, 3)"), ((0, 4), "(0, 4)"), ((4, -1), "(4, -1)"),
                       (True, "True"), ((2.0, 3), "(2.0, 3)"), ("ab", "'ab'"), (1.5, "1.5")]:
        with pytest.raises(ValueError, match=rf"^crop must be a positive int or \(H, W\), got {re.escape(shown)}$"):
            PairAugment(crop=bad)
    assert PairAugment(saturation=(0.0, 0.0)).saturation == (0.0, 0.0)
    assert PairAugment(saturation=(0.5, 0.5)).saturation == (0.5, 0.5)
    for bad in [(-0.1, 1.0), (2.0, 1.0), (0.5,), (0.1, 0.2, 0.3)]:
        with pytest.raises(ValueError, match=r"^saturation must be a finite range \(lo, hi\) with 0 <= lo <= hi, got "
                                             + re.escape(repr(bad)) + "$"):
            PairAugment(saturation=bad)
    assert PairAugment(noise_sigma=0).noise_sigma == 0
    assert PairAugment(noise_sigma=0.5).noise_sigma == 0.5
    for bad in (-0.01, "0.1", 1j):
        with pytest.raises(ValueError,
                           match=rf"^noise_sigma must be a finite non-negative float, got {re.escape(repr(bad))}$"):
            PairAugment(noise_sigma=bad)


def test_pair_augment_defaults_repr_and_nah():
    a = PairAugment()
    assert (a.crop, a.hflip, a.vflip, a.rot90, a.permute_channels, a.saturation, a.noise_sigma,
            a.canonical_flow) == (None, True, False, False, False, None, None, True)
    n = PairAugment.nah()
    assert (n.crop, n.hflip, n.vflip, n.rot90, n.permute_channels, n.saturation, n.noise_sigma) == (
        (256, 256), True, True, True, True, (0.5, 1.5), 2.0 / 255.0)
    assert PairAugment.nah(crop=8).crop == (8, 8) and PairAugment.nah(crop=None).crop is None
    assert repr(PairAugment(crop=4, vflip=True, saturation=(0.5, 1.5), noise_sigma=0.25)) == (
        "PairAugment(crop=(4, 4), hflip=True, vflip=True, rot90=False, permute_channels=False, "
        "saturation=(0.5, 1.5), noise_sigma=0.25)")


def _img(h=4, w=6, c=3):
    return np.arange(h * w * c, dtype=np.float32).reshape(h, w, c) / (h * w * c)


def _flow(h=4, w=6):
    u = np.arange(h * w, dtype=np.float32).reshape(h, w) + 1.0
    return np.stack([u, -2.0 * u])


def test_crop_offsets_and_bounds():
    img, fl = _img(), _flow()
    rng = ScriptRng(integers=[1, 2])
    aug = PairAugment(crop=(2, 3), hflip=False, canonical_flow=False)
    out, flows = aug({"sharp": img, "blurred": img * 2}, rng, {"flow": fl})
    assert rng.calls == [("integers", 0, 3), ("integers", 0, 4)]  # h - ch + 1, w - cw + 1
    np.testing.assert_array_equal(out["sharp"], img[1:3, 2:5])
    np.testing.assert_array_equal(out["blurred"], img[1:3, 2:5] * 2)
    np.testing.assert_array_equal(flows["flow"], fl[:, 1:3, 2:5])
    for v in list(out.values()) + list(flows.values()):
        assert v.dtype == np.float32 and v.flags.c_contiguous
    # the whole image as crop: offsets drawn from [0, 1)
    rng = ScriptRng(integers=[0, 0])
    out, _ = PairAugment(crop=(4, 6), hflip=False)({"sharp": img}, rng)
    assert rng.calls == [("integers", 0, 1), ("integers", 0, 1)]
    np.testing.assert_array_equal(out["sharp"], img)


def test_crop_errors():
    img = _img()
    with pytest.raises(ValueError, match=r"^crop \(5, 6\) is larger than the image size \(4, 6\)$"):
        PairAugment(crop=(5, 6))({"sharp": img}, ScriptRng())
    with pytest.raises(ValueError, match=r"^crop \(4, 7\) is larger than the image size \(4, 6\)$"):
        PairAugment(crop=(4, 7))({"sharp": img}, ScriptRng())
    with pytest.raises(ValueError, match=r"^images of one sample have different sizes: "
                                         r"\{'sharp': \(4, 6\), 'blurred': \(4, 5\)\}$"):
        PairAugment()({"sharp": img, "blurred": img[:, :5]}, ScriptRng())
    with pytest.raises(ValueError, match=r"^images of one sample have different sizes: "
                                         r"\{'sharp': \(4, 6\), 'flow': \(3, 6\)\}$"):
        PairAugment()({"sharp": img}, ScriptRng(), {"flow": _flow()[:, :3]})


def test_hflip_and_vflip():
    img, fl = _img(), _flow()
    aug = PairAugment(hflip=True, vflip=True, canonical_flow=False)
    out, flows = aug({"sharp": img}, ScriptRng(random=[0.49, 0.7]), {"flow": fl})  # h yes, v no
    np.testing.assert_array_equal(out["sharp"], img[:, ::-1])
    np.testing.assert_array_equal(flows["flow"][0], -fl[0][:, ::-1])
    np.testing.assert_array_equal(flows["flow"][1], fl[1][:, ::-1])
    out, flows = aug({"sharp": img}, ScriptRng(random=[0.5, 0.0]), {"flow": fl})  # 0.5 is not < 0.5
    np.testing.assert_array_equal(out["sharp"], img[::-1])
    np.testing.assert_array_equal(flows["flow"][0], fl[0][::-1])
    np.testing.assert_array_equal(flows["flow"][1], -fl[1][::-1])
    # off: no draw at all
    rng = ScriptRng()
    out, flows = PairAugment(hflip=False, canonical_flow=False)({"sharp": img}, rng, {"flow": fl})
    assert rng.calls == [] and np.array_equal(out["sharp"], img) and np.array_equal(flows["flow"], fl)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rot90_by_hand(k):
    img, fl = _img(), _flow()
    rng = ScriptRng(integers=[k])
    out, flows = PairAugment(hflip=False, rot90=True, canonical_flow=False)({"sharp": img}, rng, {"flow": fl})
    assert rng.calls == [("integers", 0, 4)]
    # one step: pixel (x, y) -> (y, W-1-x), i.e. out[i, j] = in[j, W-1-i]; a vector (u, v) -> (v, -u)
    ref_img, ref_u, ref_v = img, fl[0], fl[1]
    for _ in range(k):
        h, w = ref_img.shape[:2]
        ni = np.empty((w, h, 3), np.float32)
        nu = np.empty((w, h), np.float32)
        nv = np.empty((w, h), np.float32)
        for i in range(w):
            for j in range(h):
                ni[i, j] = ref_img[j, w - 1 - i]
                nu[i, j] = ref_v[j, w - 1 - i]
                nv[i, j] = -ref_u[j, w - 1 - i]
        ref_img, ref_u, ref_v = ni, nu, nv
    np.testing.assert_array_equal(out["sharp"], ref_img)
    np.testing.assert_array_equal(flows["flow"], np.stack([ref_u, ref_v]))


def test_rot90_of_a_frame_stack():
    frames = np.stack([_img(), _img() + 1])  # (K, H, W, C)
    out, _ = PairAugment(hflip=False, rot90=True)({"sharp": frames}, ScriptRng(integers=[1]))
    assert out["sharp"].shape == (2, 6, 4, 3)
    for f in range(2):
        np.testing.assert_array_equal(out["sharp"][f], np.rot90(frames[f], 1, axes=(0, 1)))


def test_permute_channels():
    img = _img()
    rng = ScriptRng(perm=[2, 0, 1])
    out, _ = PairAugment(hflip=False, permute_channels=True)({"sharp": img, "blurred": img + 1}, rng)
    assert rng.calls == [("permutation", 3)]
    np.testing.assert_array_equal(out["sharp"], np.stack([img[..., 2], img[..., 0], img[..., 1]], -1))
    np.testing.assert_array_equal(out["blurred"], np.stack([img[..., 2], img[..., 0], img[..., 1]], -1) + 1)


def test_saturation():
    img = np.array([[[0.8, 0.4, 0.2], [0.1, 0.5, 0.3]]], np.float32)
    grey = np.array([[[0.3], [0.6]]], np.float32)
    rng = ScriptRng(uniform=0.0)
    out, _ = PairAugment(hflip=False, saturation=(0.0, 0.5))({"sharp": img, "g": grey}, rng)
    assert rng.calls == [("uniform", 0.0, 0.5)]
    # saturation 0: every channel becomes the value, max(r, g, b)
    np.testing.assert_allclose(out["sharp"], [[[0.8] * 3, [0.5] * 3]], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["g"], grey)  # one channel: untouched
    out, _ = PairAugment(hflip=False, saturation=(1.0, 1.0))({"sharp": img}, ScriptRng(uniform=1.0))
    np.testing.assert_allclose(out["sharp"], img, rtol=0, atol=1e-6)
    # factor 2 on s = (0.8 - 0.2) / 0.8 = 0.75 -> clipped to 1: the minimum goes to 0
    out, _ = PairAugment(hflip=False, saturation=(2.0, 2.0))({"sharp": img[:, :1]}, ScriptRng(uniform=2.0))
    h_ref = np.array([[[0.8, 0.8 * (0.4 - 0.2) / (0.8 - 0.2), 0.0]]])  # hue kept, s = 1
    np.testing.assert_allclose(out["sharp"], h_ref, rtol=0, atol=1e-6)


def test_noise_on_the_named_images_only():
    img = np.full((2, 3, 3), 0.5, np.float32)
    img[0, 0] = 0.95
    rng = ScriptRng(normal=-0.1, std=1.0)
    aug = PairAugment(hflip=False, noise_sigma=0.2)
    out, _ = aug({"blurred": img, "sharp": img}, rng, noisy=("blurred", "missing"))
    assert ("normal", 0.0, 0.2) in rng.calls
    ref = np.clip(img + 0.1, 0, 1)  # |-0.1| * 1, clipped
    np.testing.assert_allclose(out["blurred"], ref, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(out["sharp"], img)
    out, _ = aug({"blurred": img}, ScriptRng(normal=0.3, std=-1.0))
    np.testing.assert_allclose(out["blurred"], np.clip(img - 0.3, 0, 1), rtol=0, atol=1e-7)
    rng = ScriptRng()
    PairAugment(hflip=False, noise_sigma=0.0)({"blurred": img}, rng)  # zero: no draw
    assert rng.calls == []


def test_flows_are_canonicalised_after_the_transform():
    fl = np.zeros((2, 2, 2), np.float32)
    fl[0] = [[-1.0, 2.0], [0.0, 0.0]]
    fl[1] = [[3.0, 1.0], [-4.0, 5.0]]
    _, flows = PairAugment(hflip=False)({"sharp": _img(2, 2)}, ScriptRng(), {"flow": fl})
    np.testing.assert_array_equal(flows["flow"], [[[1.0, 2.0], [0.0, 0.0]], [[-3.0, 1.0], [4.0, 5.0]]])
    _, flows = PairAugment(hflip=False, canonical_flow=False)({"sharp": _img(2, 2)}, ScriptRng(), {"flow": fl})
    np.testing.assert_array_equal(flows["flow"], fl)


def test_call_does_not_modify_the_callers_dicts():
    images, flows = {"sharp": _img()}, {"flow": _flow()}
    PairAugment(crop=2)(images, ScriptRng(integers=[0, 0], random=[0.0]), flows)
    assert images["sharp"].shape == (4, 6, 3) and flows["flow"].shape == (2, 4, 6)


# -- _Base, _check_pair, _fit_sources, _images_from --------------------------------------


class _Tiny(_Base):
    def __len__(self):
        return 3


def test_base_arguments():
    with pytest.raises(TypeError, match=r"^transform must be a PairAugment or callable, got int$"):
        _Tiny(3, None, False)
    with pytest.raises(ValueError, match=r"^fixed=True needs an int seed$"):
        _Tiny(None, None, True)
    for bad, tname in [(True, "bool"), (1.0, "float"), ("1", "str")]:
        with pytest.raises(TypeError, match=rf"^seed must be None or an int, got {tname}$"):
            _Tiny(None, bad, False)
    d = _Tiny(len, np.int64(4), True)
    assert d.transform is len and d.seed == 4 and d.fixed is True


def test_check_index():
    d = _Tiny(None, None, False)
    assert [d._check_index(i) for i in (0, 2, -1, -3, np.int64(1))] == [0, 2, 2, 0, 1]
    assert type(d._check_index(np.int64(-1))) is int
    for i in (3, -4):
        with pytest.raises(IndexError, match=rf"^index {i} out of range for a dataset of 3 items$"):
            d._check_index(i)
    with pytest.raises(TypeError, match=r"^index must be an int, got float$"):
        d._check_index(1.0)


def test_item_rng_fixed_and_streams(monkeypatch):
    d = _Tiny(None, 7, True)
    assert d._item_rng(2).random() == np.random.default_rng([7, 2]).random()
    assert d._item_rng(2).random() == np.random.default_rng([7, 2]).random()  # the same every time
    s = _Tiny(None, 7, False)
    g = s._item_rng(0)
    assert g.random() == np.random.default_rng([7, 2**31]).random()
    assert s._item_rng(1) is g  # one stream, continued
    monkeypatch.setattr(os, "getpid", lambda: -5)  # another process (a DataLoader worker): a new stream
    g2 = s._item_rng(0)
    assert g2 is not g and g2.random() == np.random.default_rng([7, 2**31]).random()
    from types import SimpleNamespace

    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: SimpleNamespace(id=3))
    g3 = s._item_rng(0)
    assert g3 is not g2 and g3.random() == np.random.default_rng([7, 2**31 + 3]).random()
    assert s._rng_owner == (-5, 3)
    u = _Tiny(None, None, False)
    assert isinstance(u._item_rng(0), np.random.Generator)


def test_finish_layouts_and_transforms():
    seen = {}

    def transform(images, rng, flows):
        seen["args"] = (set(images), rng, set(flows))
        return {k: v + 1 for k, v in images.items()}, flows

    d = _Tiny(transform, None, False)
    img = _img(2, 3)
    frames = np.stack([img, img * 0])
    out = d._finish({"blurred": img, "clip": frames}, {"flow": _flow(2, 3).astype(np.float64)}, "R", "nm")
    assert seen["args"] == ({"blurred", "clip"}, "R", {"flow"})
    assert out["name"] == "nm"
    assert out["blurred"].dtype == torch.float32 and out["blurred"].shape == (3, 2, 3)
    np.testing.assert_array_equal(out["blurred"].numpy(), np.moveaxis(img + 1, -1, 0))
    assert out["clip"].shape == (2, 3, 2, 3)  # (K, H, W, C) -> (K, C, H, W)
    np.testing.assert_array_equal(out["clip"][0].numpy(), np.moveaxis(img + 1, -1, 0))
    np.testing.assert_array_equal(out["clip"][1].numpy(), np.ones((3, 2, 3)))
    assert out["flow"].dtype == torch.float32 and torch.equal(out["flow"], torch.from_numpy(_flow(2, 3)))
    # PairAugment gets the noisy names; no transform: unchanged
    aug = PairAugment(hflip=False, noise_sigma=0.1)
    d = _Tiny(aug, None, False)
    img = np.full((2, 2, 1), 0.5, np.float32)
    out = d._finish({"blurred": img, "sharp": img}, {}, ScriptRng(normal=0.1, std=1.0), "n", noisy=("sharp",))
    np.testing.assert_allclose(out["sharp"].numpy(), 0.6, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(out["blurred"].numpy(), 0.5)
    out = _Tiny(None, None, False)._finish({"sharp": img}, {}, None, "n")
    assert set(out) == {"sharp", "name"} and torch.equal(out["sharp"], torch.full((1, 2, 2), 0.5))


def test_check_pair():
    _check_pair(np.zeros((2, 3, 1)), np.zeros((2, 3, 3)), "a", "b")
    with pytest.raises(ValueError, match=r"^mismatched image sizes: a\.png is \(2, 3\), b\.png is \(3, 3\)$"):
        _check_pair(np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), "a.png", "b.png")
    with pytest.raises(ValueError, match=r"^mismatched image sizes"):
        _check_pair(np.zeros((2, 3, 3)), np.zeros((2, 4, 3)), "a", "b")


def _sources_of(source, channels):
    return _images_from(source, channels)[0]


def _fit(sources, need, default):
    return _fit_sources(sources, [f"images[{i}]" for i in range(len(sources))], need, default)


def test_fit_sources(tmp_path):
    big, tall, wide, p = np.zeros((4, 4, 3)), np.zeros((5, 3, 3)), np.zeros((3, 5, 3)), tmp_path / "x.png"
    _png(p, 4, 4)
    assert _fit([big, p], (4, 4), False) == [big, p]  # exactly the size fits; files by their header
    kept = _fit([tall, big, wide], (4, 4), True)
    assert len(kept) == 1 and kept[0] is big
    with pytest.raises(ValueError, match=r"^images\[1\] of size \(5, 3\) is smaller than the required \(4, 4\)$"):
        _fit([big, tall], (4, 4), False)
    with pytest.raises(ValueError, match=r"^images\[0\] of size \(3, 5\) is smaller than the required \(4, 4\)$"):
        _fit([wide], (4, 4), False)
    with pytest.raises(ValueError, match=r"^no source image is at least \(4, 4\) pixels$"):
        _fit([tall, wide], (4, 4), True)


def test_images_from_labels_sources_for_the_messages(tmp_path):
    (tmp_path / "d").mkdir()
    _png(tmp_path / "d" / "a.png", 4, 4)
    assert _images_from(tmp_path / "d", 3)[1] == [str(tmp_path / "d" / "a.png")]
    arrays, labels = _images_from([np.zeros((4, 4, 3)), "coins", str(tmp_path / "d" / "a.png")], 3)
    assert labels == ["images[0]", "images[1] (sample 'coins')", f"images[2]"] and arrays[1].shape == (303, 384, 3)
    with pytest.raises(ValueError, match=r"^images\[1\] \(sample 'coins'\) of size \(303, 384\) is smaller than the "
                                         r"required \(320, 320\)$"):
        SyntheticBlurDataset(images=["moon", "coins"], crop=320)


def test_images_from(monkeypatch, tmp_path):
    from pnpdeblur.data import samples

    calls = []
    monkeypatch.setattr(samples, "sample_image", lambda n, channels=None: calls.append((n, channels)) or n)
    monkeypatch.setattr(samples, "sample_images", lambda: ["moon", "page"])
    assert _sources_of(None, 1) == ["moon", "page"] and calls == [("moon", 1), ("page", 1)]
    a2 = np.ones((2, 3), np.float64)
    out = _sources_of(["page", str(tmp_path / "f.png"), tmp_path / "g.png", a2, np.ones((2, 3, 3))], 3)
    assert out[0] == "page" and calls[-1] == ("page", 3)
    assert out[1] == tmp_path / "f.png" and isinstance(out[1], type(tmp_path)) and out[2] == tmp_path / "g.png"
    # a grey array is replicated to the channels asked for, as read_image does for a grey file
    assert out[3].shape == (2, 3, 3) and out[3].dtype == np.float32 and out[4].shape == (2, 3, 3)
    assert _sources_of([a2], None)[0].shape == (2, 3, 1)
    # arrays are read as files are: integers over their range, alpha dropped, luminance for grey
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_sources_of([u8], 3)[0], u8.astype(np.float32) / 255)
    u16 = rng.integers(0, 65536, (4, 5), dtype=np.uint16)
    np.testing.assert_array_equal(_sources_of([u16], 1)[0][..., 0], u16.astype(np.float32) / 65535)
    rgba = rng.random((4, 5, 4))
    np.testing.assert_array_equal(_sources_of([rgba], 3)[0], rgba[..., :3].astype(np.float32))
    lum = (rgba[..., :3].astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32))[..., None]
    np.testing.assert_allclose(_sources_of([rgba], 1)[0], lum, rtol=1e-6)
    png = tmp_path / "u8.png"
    from PIL import Image
    Image.fromarray(u8).save(png)
    np.testing.assert_allclose(_sources_of([u8], 1)[0], read_image(png, 1), rtol=1e-6)
    with pytest.raises(TypeError, match=r"^images\[0\] must be a float, integer or bool array, got dtype <U1$"):
        _sources_of([np.full((4, 4), "a")], 3)
    for wide in (np.int64, np.int32, np.uint32):  # np.array of Python ints is int64: 0..255 read black
        with pytest.raises(TypeError, match=rf"^images\[1\] has dtype {np.dtype(wide)}, which has no white level: "
                                            r"give uint8 or uint16 integers, or floats in \[0, 1\]$"):
            _sources_of([a2, np.full((4, 4), 128, wide)], 3)
    for bad in (2, 0, 4, True, "3"):
        with pytest.raises(ValueError, match=rf"^channels must be None, 1 or 3, got {re.escape(repr(bad))}$"):
            _sources_of([a2], bad)
    (tmp_path / "d" / "s").mkdir(parents=True)
    (tmp_path / "d" / "s" / "a.png").write_bytes(b"")
    assert _sources_of(str(tmp_path / "d"), 3) == [tmp_path / "d" / "s" / "a.png"]  # recursive
    assert _sources_of(tmp_path / "d", 3) == [tmp_path / "d" / "s" / "a.png"]
    with pytest.raises(FileNotFoundError, match=rf"^images folder not found: {re.escape(str(tmp_path / 'no'))}$"):
        _sources_of(str(tmp_path / "no"), 3)
    with pytest.raises(FileNotFoundError, match=r"^images folder not found: "):
        _sources_of(tmp_path / "no", 3)
    for bad, shape in [(np.array([[np.nan]]), r"\(1, 1\)"), (np.zeros((1, 2, 2, 3)), r"\(1, 2, 2, 3\)"),
                       (np.zeros(3), r"\(3,\)"), (np.array([[0.0, np.inf]]), r"\(1, 2\)"),
                       (np.zeros((2, 2, 5)), r"\(2, 2, 5\)"), (np.zeros((0, 4, 3)), r"\(0, 4, 3\)")]:
        with pytest.raises(ValueError, match=rf"^images\[1\] must be a finite, non-empty \(H, W\[, C\]\) array "
                                             rf"with C in 1\.\.4, got shape {shape}$"):
            _sources_of([a2, bad], 3)
    # floats on another scale are refused, not clipped into white crops; noise's overshoot passes
    with pytest.raises(ValueError, match=r"^images\[1\] has values in \[0, 255\]; float images must lie in \[0, 1\] "
                                         r"\(divide 8-bit data by 255"):
        _sources_of([a2, np.linspace(0.0, 255.0, 16).reshape(4, 4)], 3)
    with pytest.raises(ValueError, match=r"^images\[0\] has values in \[-0\.6, 1\]"):
        _sources_of([np.linspace(-0.6, 1.0, 16).reshape(4, 4)], 3)
    edge = np.linspace(-0.5, 1.5, 16).reshape(4, 4)  # accepted, and clipped as read_image clips a file's
    np.testing.assert_array_equal(_sources_of([edge], None)[0][..., 0], np.clip(edge, 0, 1).astype(np.float32))
    with pytest.raises(TypeError, match=r"^images\[0\] must be a sample name, a path or a numpy array, got int$"):
        _sources_of([3], 3)
    with pytest.raises(ValueError, match=r"^images must not be empty$"):
        _sources_of([], 3)


# -- folder datasets --------------------------------------------------------------------


def test_match_pairs():
    m = PairedFolderDataset._match
    from pathlib import Path

    b = [Path(f"/b/{n}.png") for n in ("x1", "x2", "x3")]
    s = [Path(f"/s/{n}.jpg") for n in ("x2", "x1", "y")]
    with pytest.raises(ValueError, match=r"^unpaired images: 1 blurred without sharp \['x3'\], "
                                         r"1 sharp without blurred \['y'\]$"):
        m(b, s, True)
    assert m(b, s, False) == [(b[0], s[1], "x1"), (b[1], s[0], "x2")]
    many = [Path(f"/b/{i}.png") for i in range(8)]
    with pytest.raises(ValueError, match=r"^unpaired images: 7 blurred without sharp \['1', '2', '3', '4', '5'\], "
                                         r"0 sharp without blurred \[\]$"):
        m(many, many[:1], True)
    with pytest.raises(ValueError, match=r"^unpaired images: 0 blurred without sharp \[\], 1 sharp"):
        m(b[:1], b[:1] + s[2:], True)
    with pytest.raises(ValueError, match=r"^no \(blurred, sharp\) pairs with matching file names$"):
        m(b[:1], s[2:], False)


def test_paired_folder_items(tmp_path):
    a, c = _u8(3, 4, seed=1), _u8(3, 4, 0, seed=2)
    _save_u8(tmp_path / "b" / "k.png", a)
    _save_u8(tmp_path / "s" / "k.png", c)
    ds = PairedFolderDataset(tmp_path / "b", tmp_path / "s", channels=1)
    assert len(ds) == 1 and ds.channels == 1
    it = ds[-1]
    assert it["name"] == "k" and it["blurred"].shape == (1, 3, 4) and it["sharp"].shape == (1, 3, 4)
    np.testing.assert_allclose(it["sharp"][0].numpy(), c / 255.0, rtol=0, atol=1e-7)
    ds = PairedFolderDataset(tmp_path / "b", tmp_path / "s", transform=PairAugment(crop=2), seed=0, fixed=True)
    x, y = ds[0], ds[0]
    assert x["blurred"].shape == (3, 2, 2) and torch.equal(x["blurred"], y["blurred"])
    _save_u8(tmp_path / "s" / "k.png", _u8(4, 4, seed=3))
    with pytest.raises(ValueError, match=r"^mismatched image sizes: .*k\.png is \(3, 4\), .*k\.png is \(4, 4\)$"):
        PairedFolderDataset(tmp_path / "b", tmp_path / "s")[0]


def test_gopro(tmp_path):
    for seq in ("S2", "S1"):
        for f in ("2", "1"):
            _save_u8(tmp_path / "test" / seq / "sharp" / f"{f}.png", _u8(2, 3))
            _save_u8(tmp_path / "test" / seq / "blur_gamma" / f"{f}.png", _u8(2, 3, seed=1))
    (tmp_path / "test" / "notes").mkdir()  # no blur/ or sharp/: not a sequence
    (tmp_path / "test" / "readme.txt").write_text("x")
    ds = GoProDataset(tmp_path, split="test", blur_dir="blur_gamma", channels=1)
    assert [p[2] for p in ds.pairs] == ["S1/1", "S1/2", "S2/1", "S2/2"]
    assert ds.channels == 1 and ds[0]["blurred"].shape == (1, 2, 3)
    np.testing.assert_allclose(ds[0]["blurred"].numpy(), read_image(ds.pairs[0][0], 1).transpose(2, 0, 1))
    assert len(GoProDataset(tmp_path / "test", blur_dir="blur_gamma", sequences=("S2",))) == 2
    base = re.escape(str(tmp_path / "test"))
    with pytest.raises(FileNotFoundError, match=rf"^GOPRO folder not found: {re.escape(str(tmp_path / 'train'))}$"):
        GoProDataset(tmp_path, split="train")
    with pytest.raises(FileNotFoundError, match=rf"^sequences not found under {base}: \['S3', 'S4'\]$"):
        GoProDataset(tmp_path, split="test", blur_dir="blur_gamma", sequences=["S4", "S1", "S3"])
    with pytest.raises(FileNotFoundError, match=rf"^no sequence folders with 'blur/' and 'sharp/' under "
                                                rf"{re.escape(str(tmp_path))}$"):
        GoProDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"^sequence {re.escape(str(tmp_path / 'test' / 'S1'))} has no "
                                                r"'blur/' folder$"):
        GoProDataset(tmp_path, split="test")  # sharp/ but no blur/
    (tmp_path / "test" / "S3" / "blur_gamma").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"^sequence .*S3 has no 'sharp/' folder$"):
        GoProDataset(tmp_path, split="test", blur_dir="blur_gamma")


def test_kohler(tmp_path):
    frames = {}
    for k in (2, 1, 11, 3, 5):
        frames[k] = _u8(2, 3, seed=k)
        _save_u8(tmp_path / "gt" / f"groundtruth1_1_{k}.png", frames[k])
    _save_u8(tmp_path / "BLURRY1_1.png", _u8(2, 3, seed=20))
    _save_u8(tmp_path / "other.png", _u8(2, 3, seed=21))
    ds = KohlerDataset(tmp_path)
    assert len(ds) == 1 and ds.max_frames is None
    it = ds[0]
    assert it["name"] == "Blurry1_1" and it["sharp_frames"].shape == (5, 3, 2, 3)
    order = [1, 2, 3, 5, 11]  # numeric order
    for i, k in enumerate(order):
        np.testing.assert_allclose(it["sharp_frames"][i].numpy(), frames[k].transpose(2, 0, 1) / 255.0, atol=1e-7)
    assert torch.equal(it["sharp"], it["sharp_frames"][2])
    np.testing.assert_allclose(it["blurred"].numpy(), _u8(2, 3, seed=20).transpose(2, 0, 1) / 255.0, atol=1e-7)
    it = KohlerDataset(tmp_path, channels=1, max_frames=3)[0]
    assert it["sharp_frames"].shape == (3, 1, 2, 3)  # frames 0, 2, 4 of 5: k = 1, 3, 11
    for i, k in enumerate((1, 3, 11)):
        np.testing.assert_allclose(it["sharp_frames"][i].numpy(), read_image(tmp_path / "gt" / f"groundtruth1_1_{k}.png",
                                                                             1).transpose(2, 0, 1))
    assert KohlerDataset(tmp_path, max_frames=5)[0]["sharp_frames"].shape[0] == 5
    it = KohlerDataset(tmp_path, max_frames=4)[0]  # round(linspace(0, 4, 4)) = 0, 1, 3, 4
    np.testing.assert_allclose(it["sharp_frames"][2].numpy(), frames[5].transpose(2, 0, 1) / 255.0, atol=1e-7)
    assert torch.equal(it["sharp"], it["sharp_frames"][2])  # len 4: frame 4 // 2
    for bad in (0, 1.0, True and 0):
        with pytest.raises(ValueError, match=rf"^max_frames must be a positive int, got {re.escape(repr(bad))}$"):
            KohlerDataset(tmp_path, max_frames=bad)
    _save_u8(tmp_path / "Blurry2_7.png", _u8(2, 3))
    with pytest.raises(ValueError, match=r"^blurred images without GroundTruth<i>_<j>_<k> frames: \['Blurry2_7'\]$"):
        KohlerDataset(tmp_path)
    (tmp_path / "gt" / "GroundTruth2_7_1.png").write_bytes((tmp_path / "gt" / "groundtruth1_1_1.png").read_bytes())
    assert len(KohlerDataset(tmp_path)) == 2
    _save_u8(tmp_path / "gt" / "GroundTruth2_7_2.png", _u8(3, 3))
    with pytest.raises(ValueError, match=r"^mismatched image sizes"):
        KohlerDataset(tmp_path)[1]
    empty = tmp_path / "e"
    _save_u8(empty / "x.png", _u8(2, 2))
    with pytest.raises(ValueError, match=rf"^no Blurry<i>_<j> images under {re.escape(str(empty))}$"):
        KohlerDataset(empty)


def test_blurred_folder(tmp_path):
    _save_u8(tmp_path / "b.png", _u8(3, 4))
    _save_u8(tmp_path / "sub" / "a.png", _u8(3, 4, 0))
    ds = BlurredFolderDataset(tmp_path)
    assert len(ds) == 1 and ds[0]["name"] == "b" and ds[0]["blurred"].shape == (3, 3, 4)
    ds = BlurredFolderDataset(tmp_path, recursive=True, channels=1, transform=PairAugment(crop=2), seed=1, fixed=True)
    assert len(ds) == 2 and ds.channels == 1
    assert ds[0]["name"] == "b"  # sorted by path: tmp/b.png before tmp/sub/a.png
    it = ds[1]
    assert it["name"] == "a" and it["blurred"].shape == (1, 2, 2) and torch.equal(it["blurred"], ds[1]["blurred"])
    assert set(it) == {"blurred", "name"}


# -- synthetic datasets -----------------------------------------------------------------


def test_synthetic_blur_arguments(tmp_path):
    src = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match=rf"^length must be a positive int, got {re.escape(repr(bad))}$"):
            SyntheticBlurDataset(images=[src], length=bad, crop=8)
    ds = SyntheticBlurDataset(images=[src], length=np.int64(3), crop=(8, 6), preset="46", noise_sigma=0.0,
                              seed=1, channels=3, blur=np.False_)
    assert len(ds) == 3 and type(ds.length) is int and ds.crop == (8, 6) and ds.blur is False
    assert ds.preset == "46" and ds.flow_kwargs == {} and ds.channels == 3
    assert ds._cropper.crop == (8, 6) and ds._cropper.hflip and ds._cropper.vflip
    with pytest.raises(ValueError, match=r"^images\[0\] of size \(12, 10\) is smaller than the required \(8, 11\)$"):
        SyntheticBlurDataset(images=[src], crop=(8, 11))


def test_synthetic_blur_items(tmp_path):
    src = np.random.default_rng(0).random((12, 10, 3)).astype(np.float32)
    _save_u8(tmp_path / "f" / "p.png", (src * 255).astype(np.uint8))
    ds = SyntheticBlurDataset(images=[src], length=4, crop=8, noise_sigma=0.0, seed=2, fixed=True, blur=False)
    it = ds[3]
    assert set(it) == {"sharp", "flow", "name"} and it["name"] == "image0#3"
    assert it["sharp"].shape == (3, 8, 8) and it["flow"].shape == (2, 8, 8)
    assert it["flow"].dtype == torch.float32 and (it["flow"][0] >= 0).all()
    assert torch.equal(ds[-1]["flow"], it["flow"])  # -1 is item 3, fixed: the same draw
    ds = SyntheticBlurDataset(images=tmp_path / "f", length=2, crop=8, noise_sigma=0.0, seed=2, fixed=True)
    it = ds[1]
    assert set(it) == {"blurred", "sharp", "flow", "name"} and it["name"] == "p.png#1"
    from pnpdeblur.operators import MotionBlur

    re_ = MotionBlur(it["flow"][None])(it["sharp"][None])[0]
    torch.testing.assert_close(re_, it["blurred"], atol=1e-5, rtol=0)


def test_synthetic_video_arguments():
    src = np.random.default_rng(0).random((30, 30, 3)).astype(np.float32)
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=rf"^n_blurred must be a positive int, got {re.escape(repr(bad))}$"):
            SyntheticVideoDataset(images=[src], n_blurred=bad)
        with pytest.raises(ValueError, match=rf"^length must be a positive int, got {re.escape(repr(bad))}$"):
            SyntheticVideoDataset(images=[src], length=bad)
    ds = SyntheticVideoDataset(images=[src], length=2, crop=(8, 6), max_blur=3, n_blurred=1)
    # margin m = ceil(max_blur * (n_blurred + 1) / 2) = 3 on each side
    assert ds.crop == (8, 6) and ds._src_crop.crop == (14, 12) and ds.noise is None
    assert ds.max_blur == 3.0 and type(ds.max_blur) is float and ds.n_blurred == 1 and len(ds) == 2
    ds = SyntheticVideoDataset(images=[src], crop=8, max_blur=3, n_blurred=2, noise_sigma=0.1)
    assert ds._src_crop.crop == (8 + 2 * 5, 8 + 2 * 5)  # ceil(4.5) = 5
    assert ds.noise.noise_sigma == 0.1 and ds.noise.hflip is False and ds.noise.canonical_flow is False
    with pytest.raises(ValueError, match=r"^images\[0\] of size \(30, 30\) is smaller than the required \(32, 32\)$"):
        SyntheticVideoDataset(images=[src], crop=20, max_blur=6)


# -- SyntheticVideoDataset items, with the renderer replaced by a recorder -----------------


class _Recorder:
    """Stands in for ``synthesize_video_blur`` / ``synthesize_video_sequence``: records the call."""

    def __init__(self, clip=0):
        self.clip, self.calls = clip, []

    def __call__(self, image, *args, **kw):
        from types import SimpleNamespace

        self.calls.append((image, args, kw))
        h, w = kw["shape"]
        c = image.shape[-1]
        lead = (self.clip,) if self.clip else ()
        blurred = np.full(lead + (h, w, c), 0.25, np.float32) + np.arange(w, dtype=np.float32)[:, None] / 100
        sharp = np.full(lead + (h, w, c), 0.75, np.float32)
        flows = [np.full(lead + (2, h, w), v, np.float32) for v in (1.0, -2.0, 3.0)]
        if self.clip:
            return SimpleNamespace(blurred=blurred, sharp=sharp, flows_next=flows[0], flows_prev=flows[1],
                                   exposure_flows=flows[2], n_frames=9)
        return SimpleNamespace(blurred=blurred, sharp=sharp, flow_next=flows[0], flow_prev=flows[1],
                               exposure_flow=flows[2], n_frames=7)


def _sources():
    # two constant photos of exactly the source-crop size (crop 4 + 2 * ceil(3 * 2 / 2) = 10)
    return [np.full((10, 10, 3), 0.1, np.float32), np.full((10, 10, 3), 0.9, np.float32)]


def test_synthetic_video_item_passes_its_settings(monkeypatch):
    from pnpdeblur.data import video

    rec = _Recorder()
    monkeypatch.setattr(video, "synthesize_video_blur", rec)
    ds = SyntheticVideoDataset(images=_sources(), length=5, crop=4, motion="rotation", max_blur=3, gamma=None,
                               foreground=True, n_frames=7, seed=11, fixed=True)
    it = ds[-2]  # item 3
    i = int(np.random.default_rng([11, 3]).integers(0, 2))  # the item's first draw picks the photo
    image, args, kw = rec.calls[0]
    assert args == () and image.shape == (10, 10, 3) and np.all(image == _sources()[i][0, 0, 0])
    seed = kw.pop("seed")
    assert isinstance(seed, np.random.Generator)
    assert kw == dict(shape=(4, 4), n_frames=7, motion="rotation", max_blur=3.0, min_blur=2.0, gamma=None,
                      foreground=True)
    assert it["name"] == f"video{i}#3" and it["n_frames"] == 7
    assert set(it) == {"blurred", "sharp", "flow_next", "flow_prev", "exposure_flow", "n_frames", "name"}
    want_b = np.moveaxis(np.full((4, 4, 3), 0.25, np.float32) + np.arange(4, dtype=np.float32)[:, None] / 100, -1, 0)
    assert it["blurred"].dtype == torch.float32 and it["blurred"].shape == (3, 4, 4)
    np.testing.assert_array_equal(it["blurred"].numpy(), want_b)
    np.testing.assert_array_equal(it["sharp"].numpy(), 0.75)
    for k, v in (("flow_next", 1.0), ("flow_prev", -2.0), ("exposure_flow", 3.0)):
        assert it[k].shape == (2, 4, 4) and torch.all(it[k] == v)  # blur labels not re-canonicalised here
    # a small max_blur is also the minimum
    SyntheticVideoDataset(images=_sources(), length=1, crop=4, max_blur=1.5, seed=0, fixed=True)[0]
    assert rec.calls[-1][2]["min_blur"] == 1.5 and rec.calls[-1][2]["max_blur"] == 1.5


def test_synthetic_video_item_reads_path_sources_and_adds_noise(monkeypatch, tmp_path):
    from pnpdeblur.data import video

    rec = _Recorder()
    monkeypatch.setattr(video, "synthesize_video_blur", rec)
    _save_u8(tmp_path / "p.png", np.full((10, 10), 51, np.uint8))
    ds = SyntheticVideoDataset(images=[tmp_path / "p.png"], length=2, crop=4, max_blur=3, seed=0, fixed=True,
                               channels=1, noise_sigma=0.05)
    it = ds[1]
    image = rec.calls[0][0]
    assert image.shape == (10, 10, 1) and np.allclose(image, 0.2)  # read with channels=1
    assert it["name"] == "video0#1" and it["blurred"].shape == (1, 4, 4)
    np.testing.assert_array_equal(it["sharp"].numpy(), 0.75)  # noise on the blurred image only
    want_b = 0.25 + np.arange(4, dtype=np.float32)[:, None] / 100
    assert not np.allclose(it["blurred"][0].numpy(), want_b)
    assert np.abs(it["blurred"][0].numpy() - want_b).max() < 0.5


@pytest.mark.parametrize("noise", [None, 0.05])
def test_synthetic_video_clip_item(monkeypatch, noise):
    from pnpdeblur.data import video

    rec = _Recorder(clip=2)
    monkeypatch.setattr(video, "synthesize_video_sequence", rec)
    monkeypatch.setattr(video, "synthesize_video_blur", None)  # the single-frame path must not run
    ds = SyntheticVideoDataset(images=_sources(), length=3, crop=(4, 2), motion="zoom", max_blur=2, gamma=1.8,
                               n_frames=9, seed=5, fixed=True, n_blurred=2, noise_sigma=noise)
    it = ds[2]
    i = int(np.random.default_rng([5, 2]).integers(0, 2))
    image, args, kw = rec.calls[0]
    # margin ceil(2 * 3 / 2) = 3: the source crop is (10, 8)
    assert image.shape == (10, 8, 3) and np.all(image == _sources()[i][0, 0, 0])
    assert args == (2,) and isinstance(kw.pop("seed"), np.random.Generator)
    assert kw == dict(shape=(4, 2), n_frames=9, motion="zoom", max_blur=2.0, min_blur=2.0, gamma=1.8,
                      foreground=False)
    assert it["name"] == f"video{i}#2" and it["n_frames"] == 9
    assert set(it) == {"blurred", "sharp", "flow_next", "flow_prev", "exposure_flow", "n_frames", "name"}
    assert it["blurred"].shape == (2, 3, 4, 2) and it["sharp"].shape == (2, 3, 4, 2)
    np.testing.assert_array_equal(it["sharp"].numpy(), 0.75)
    want_b = np.moveaxis(np.full((2, 4, 2, 3), 0.25, np.float32) + np.arange(2, dtype=np.float32)[:, None] / 100,
                         -1, 1)
    if noise is None:
        np.testing.assert_array_equal(it["blurred"].numpy(), want_b)
    else:
        assert not np.allclose(it["blurred"].numpy(), want_b) and np.abs(it["blurred"].numpy() - want_b).max() < 0.5
    for k, v in (("flow_next", 1.0), ("flow_prev", -2.0), ("exposure_flow", 3.0)):
        assert it[k].shape == (2, 2, 4, 2) and torch.all(it[k] == v)


# -- what the first mutation run of this module showed ----------------------------------


def test_synthetic_video_defaults_and_stored_settings():
    src = np.zeros((160, 160, 3), np.float32)  # the default crop 128 plus 2 * ceil(16 * 2 / 2)
    ds = SyntheticVideoDataset(images=[src])
    assert (len(ds), ds.crop, ds.motion, ds.max_blur, ds.gamma, ds.foreground, ds.n_frames, ds.channels,
            ds.noise, ds.n_blurred, ds.seed, ds.fixed) == (200, (128, 128), "mixed", 16.0, 2.2, False, None, 3,
                                                           None, 1, None, False)
    assert ds._src_crop.crop == (160, 160) and ds._src_crop.hflip is True
    ds = SyntheticVideoDataset(images=[src], length=1, crop=4, seed=9, fixed=True)
    assert len(ds) == 1 and ds.seed == 9 and ds.fixed is True


def test_synthetic_video_sources(monkeypatch):
    from pnpdeblur.data import samples

    calls = []
    photos = {"small": np.zeros((8, 8, 1), np.float32), "big": np.zeros((12, 12, 1), np.float32)}
    monkeypatch.setattr(samples, "sample_images", lambda: ["big", "small"])
    monkeypatch.setattr(samples, "sample_image", lambda n, channels=None: calls.append((n, channels)) or photos[n])
    # the default sample set drops photos smaller than the source crop (4 + 2 * 3 = 10) ...
    ds = SyntheticVideoDataset(crop=4, max_blur=3, channels=1)
    assert calls == [("big", 1), ("small", 1)] and len(ds.sources) == 1 and ds.sources[0] is photos["big"]
    # ... named photos are the user's choice: a small one is an error
    with pytest.raises(ValueError, match=r"^images\[1\] \(sample 'small'\) of size \(8, 8\) is smaller than the "
                                         r"required \(10, 10\)$"):
        SyntheticVideoDataset(images=["big", "small"], crop=4, max_blur=3, channels=1)


def test_folder_datasets_store_fixed_as_given(tmp_path):
    _save_u8(tmp_path / "b.png", _u8(3, 4))
    assert BlurredFolderDataset(tmp_path).fixed is False
    assert BlurredFolderDataset(tmp_path, seed=1, fixed=True).fixed is True


def test_gopro_sequences_select_and_frames_must_pair(tmp_path):
    for seq in ("S1", "S2"):
        for f in ("1", "2"):
            _save_u8(tmp_path / seq / "sharp" / f"{f}.png", _u8(2, 3))
            _save_u8(tmp_path / seq / "blur" / f"{f}.png", _u8(2, 3))
    assert [p[2] for p in GoProDataset(tmp_path, sequences=["S2"]).pairs] == ["S2/1", "S2/2"]
    assert [p[2] for p in GoProDataset(tmp_path, sequences=["S1"]).pairs] == ["S1/1", "S1/2"]
    assert GoProDataset(tmp_path).fixed is False
    _save_u8(tmp_path / "S2" / "blur" / "3.png", _u8(2, 3))  # a blurred frame without its sharp one
    with pytest.raises(ValueError, match=r"^unpaired images: 1 blurred without sharp \['3'\], 0 sharp without"):
        GoProDataset(tmp_path)


def test_paired_folder_reads_both_images_with_the_channels(tmp_path):
    _save_u8(tmp_path / "b" / "k.png", _u8(3, 4))
    _save_u8(tmp_path / "s" / "k.png", _u8(3, 4, seed=5))
    it = PairedFolderDataset(tmp_path / "b", tmp_path / "s", channels=1)[0]
    assert it["blurred"].shape == (1, 3, 4) and it["sharp"].shape == (1, 3, 4)
    np.testing.assert_allclose(it["sharp"].numpy(), read_image(tmp_path / "s" / "k.png", 1).transpose(2, 0, 1))


def test_match_lists_at_most_five_of_each():
    from pathlib import Path

    b = [Path("/b/x.png")]
    s = [Path(f"/s/{i}.png") for i in range(7)] + [Path("/s/x.png")]
    with pytest.raises(ValueError, match=r"^unpaired images: 0 blurred without sharp \[\], "
                                         r"7 sharp without blurred \['0', '1', '2', '3', '4'\]$"):
        PairedFolderDataset._match(b, s, True)


def test_kohler_channels_names_and_frame_limits(tmp_path):
    for k in (1, 2, 3):
        _save_u8(tmp_path / f"GroundTruth1_1_{k}.png", _u8(2, 3, seed=k))
    _save_u8(tmp_path / "Blurry1_1.png", _u8(2, 3, seed=9))
    ds = KohlerDataset(tmp_path, channels=1, max_frames=1)
    assert ds.fixed is False and ds.max_frames == 1
    it = ds[0]
    assert it["blurred"].shape == (1, 2, 3) and it["sharp_frames"].shape == (1, 1, 2, 3)
    np.testing.assert_allclose(it["sharp_frames"][0].numpy(),
                               read_image(tmp_path / "GroundTruth1_1_1.png", 1).transpose(2, 0, 1))
    assert KohlerDataset(tmp_path, max_frames=3)[0]["sharp_frames"].shape[0] == 3
    _save_u8(tmp_path / "GroundTruth1_1_2.png", _u8(3, 3))
    b, g = re.escape(str(tmp_path / "Blurry1_1.png")), re.escape(str(tmp_path / "GroundTruth1_1_2.png"))
    with pytest.raises(ValueError, match=rf"^mismatched image sizes: {b} is \(2, 3\), {g} is \(3, 3\)$"):
        KohlerDataset(tmp_path)[0]  # all frames (max_frames=1 would read frame 1 only)
    for j in range(2, 9):
        _save_u8(tmp_path / f"Blurry1_{j}.png", _u8(2, 3))
    with pytest.raises(ValueError, match=r"^blurred images without GroundTruth<i>_<j>_<k> frames: "
                                         r"\['Blurry1_2', 'Blurry1_3', 'Blurry1_4', 'Blurry1_5', 'Blurry1_6'\]$"):
        KohlerDataset(tmp_path)


class _BlurRecorder:
    """Stands in for ``synthesize_flow_blur`` / ``random_motion_flow``: records the call."""

    def __init__(self):
        self.calls = []

    def blur(self, image, *args, **kw):
        from types import SimpleNamespace

        self.calls.append(("blur", image, args, kw))
        h, w = image.shape[:2]
        return SimpleNamespace(blurred=np.full_like(image, 0.5), sharp=image,
                               flow=np.full((2, h, w), 2.0, np.float32))

    def flow(self, shape, *args, **kw):
        self.calls.append(("flow", shape, args, kw))
        return np.full((2,) + tuple(shape), 3.0, np.float32)


def test_synthetic_blur_item_passes_its_settings(monkeypatch, tmp_path):
    from pnpdeblur.data import flows as F, synthetic as S

    rec = _BlurRecorder()
    monkeypatch.setattr(S, "synthesize_flow_blur", rec.blur)
    monkeypatch.setattr(F, "random_motion_flow", rec.flow)
    src = [np.full((6, 6, 3), 0.2, np.float32), np.full((6, 6, 3), 0.7, np.float32)]
    ds = SyntheticBlurDataset(images=src, length=4, crop=(4, 3), preset="46", noise_sigma=(0.01, 0.02), seed=3,
                              fixed=True, flow_kwargs={"smooth": 2})
    it = ds[2]
    i = int(np.random.default_rng([3, 2]).integers(0, 2))
    kind, image, args, kw = rec.calls[-1]
    assert kind == "blur" and image.shape == (4, 3, 3) and np.all(image == src[i][0, 0, 0])
    assert args == ("46", (0.01, 0.02)) and isinstance(kw.pop("seed"), np.random.Generator)
    assert kw == {"smooth": 2}
    assert it["name"] == f"image{i}#2" and set(it) == {"blurred", "sharp", "flow", "name"}
    assert torch.all(it["blurred"] == 0.5) and torch.all(it["flow"] == 2.0) and it["sharp"].shape == (3, 4, 3)
    # blur=False: the flow is drawn here, with the same settings, and no "blurred"
    ds = SyntheticBlurDataset(images=src, length=4, crop=(4, 3), preset="46", seed=3, fixed=True,
                              flow_kwargs={"smooth": 2}, blur=False)
    it = ds[1]
    kind, shape, args, kw = rec.calls[-1]
    assert kind == "flow" and tuple(shape) == (4, 3) and args[0] == "46" and isinstance(args[1], np.random.Generator)
    assert kw == {"smooth": 2} and set(it) == {"sharp", "flow", "name"} and torch.all(it["flow"] == 3.0)
    # a path source is read with the dataset's channels
    _save_u8(tmp_path / "p.png", _u8(6, 6))
    ds = SyntheticBlurDataset(images=[tmp_path / "p.png"], length=1, crop=4, channels=1, seed=0, fixed=True)
    it = ds[0]
    assert rec.calls[-1][1].shape == (4, 4, 1) and it["sharp"].shape == (1, 4, 4) and it["name"] == "p.png#0"


def test_synthetic_blur_transform_gets_the_item_rng_and_adds_no_noise(monkeypatch):
    from pnpdeblur.data import synthetic as S

    rec = _BlurRecorder()
    monkeypatch.setattr(S, "synthesize_flow_blur", rec.blur)
    src = [np.full((8, 8, 3), 0.2, np.float32)]
    # the transform crops (needs the item's rng) and would add noise to "blurred" if asked to
    aug = PairAugment(crop=2, hflip=False, noise_sigma=0.5)
    ds = SyntheticBlurDataset(images=src, length=2, crop=4, seed=1, fixed=True, transform=aug)
    it = ds[0]
    assert it["blurred"].shape == (3, 2, 2) and torch.all(it["blurred"] == 0.5)  # noise-free: noisy=()
    ds = SyntheticBlurDataset(images=src, length=2, crop=4, seed=1, fixed=True, transform=aug, blur=False)
    assert ds[1]["sharp"].shape == (3, 2, 2)


def test_synthetic_blur_defaults_and_sources(monkeypatch):
    from pnpdeblur.data import samples

    src = np.zeros((128, 128, 3), np.float32)
    ds = SyntheticBlurDataset(images=[src])
    assert (len(ds), ds.crop, ds.preset, ds.noise_sigma, ds.channels, ds.blur, ds.seed, ds.fixed, ds.transform) == (
        1000, (128, 128), "23", 0.01, 3, True, None, False, None)
    assert len(SyntheticBlurDataset(images=[src], length=1)) == 1
    calls = []
    photos = {"small": np.zeros((3, 8, 1), np.float32), "big": np.zeros((4, 8, 1), np.float32)}
    monkeypatch.setattr(samples, "sample_images", lambda: ["big", "small"])
    monkeypatch.setattr(samples, "sample_image", lambda n, channels=None: calls.append((n, channels)) or photos[n])
    ds = SyntheticBlurDataset(crop=(4, 8), channels=1)
    assert calls == [("big", 1), ("small", 1)] and len(ds.sources) == 1 and ds.sources[0] is photos["big"]


def test_fit_sources_compares_height_and_width_separately():
    tall_need = (6, 3)
    assert _fit([np.zeros((6, 3, 1))], tall_need, False)[0].shape == (6, 3, 1)
    with pytest.raises(ValueError, match=r"^images\[0\] of size \(5, 4\) is smaller than the required \(6, 3\)$"):
        _fit([np.zeros((5, 4, 1))], tall_need, False)
    with pytest.raises(ValueError, match=r"^images\[0\] of size \(7, 2\) is smaller than the required \(6, 3\)$"):
        _fit([np.zeros((7, 2, 1))], tall_need, False)


def test_synthetic_video_passes_gamma_and_the_clip_min_blur(monkeypatch, tmp_path):
    from pnpdeblur.data import video

    rec, clip = _Recorder(), _Recorder(clip=2)
    monkeypatch.setattr(video, "synthesize_video_blur", rec)
    monkeypatch.setattr(video, "synthesize_video_sequence", clip)
    src = [np.zeros((16, 16, 3), np.float32)]
    SyntheticVideoDataset(images=src, length=1, crop=4, max_blur=4, gamma=2.4, seed=0, fixed=True)[0]
    assert rec.calls[-1][2]["gamma"] == 2.4 and rec.calls[-1][2]["min_blur"] == 2.0
    SyntheticVideoDataset(images=src, length=1, crop=4, max_blur=3, gamma=2.4, seed=0, fixed=True, n_blurred=2)[0]
    assert clip.calls[-1][2]["gamma"] == 2.4 and clip.calls[-1][2]["min_blur"] == 2.0  # min(2, max_blur)
    _save_u8(tmp_path / "p.png", _u8(16, 16))  # a colour file read as grey
    SyntheticVideoDataset(images=[tmp_path / "p.png"], length=1, crop=4, max_blur=3, channels=1, seed=0,
                          fixed=True)[0]
    assert rec.calls[-1][0].shape[-1] == 1


def test_paired_folder_is_strict_by_default(tmp_path):
    for n in ("a", "b"):
        _save_u8(tmp_path / "b" / f"{n}.png", _u8(2, 2))
    _save_u8(tmp_path / "s" / "a.png", _u8(2, 2))
    with pytest.raises(ValueError, match=r"^unpaired images: 1 blurred without sharp \['b'\]"):
        PairedFolderDataset(tmp_path / "b", tmp_path / "s")
    with pytest.raises(ValueError, match=r"^unpaired images"):
        PairedFolderDataset(tmp_path / "b", tmp_path / "s", strict=True)
    assert [p[2] for p in PairedFolderDataset(tmp_path / "b", tmp_path / "s", strict=False).pairs] == ["a"]


def test_gopro_defaults_and_stored_settings(tmp_path):
    _save_u8(tmp_path / "S1" / "sharp" / "1.png", _u8(4, 4))
    _save_u8(tmp_path / "S1" / "blur" / "1.png", _u8(4, 4, 0))
    ds = GoProDataset(tmp_path)
    assert ds.channels == 3 and ds.transform is None and ds.seed is None and ds.fixed is False
    assert ds[0]["blurred"].shape == (3, 4, 4) and ds[0]["sharp"].shape == (3, 4, 4)
    aug = PairAugment(crop=2)
    ds = GoProDataset(tmp_path, transform=aug, seed=4, fixed=True)
    assert ds.transform is aug and ds.seed == 4 and ds.fixed is True
    assert ds[0]["blurred"].shape == (3, 2, 2) and torch.equal(ds[0]["sharp"], ds[0]["sharp"])


def test_blurred_folder_reads_with_the_channels(tmp_path):
    _save_u8(tmp_path / "c.png", _u8(3, 4))
    it = BlurredFolderDataset(tmp_path, channels=1)[0]
    assert it["blurred"].shape == (1, 3, 4)
    np.testing.assert_allclose(it["blurred"].numpy(), read_image(tmp_path / "c.png", 1).transpose(2, 0, 1))


def test_crop_of_flows_at_other_offsets_and_the_vflip_boundary():
    img, fl = _img(5, 7), _flow(5, 7)
    aug = PairAugment(crop=(2, 3), hflip=False, canonical_flow=False)
    for y0, x0 in [(0, 1), (3, 4), (2, 0)]:
        out, flows = aug({"sharp": img}, ScriptRng(integers=[y0, x0]), {"flow": fl})
        np.testing.assert_array_equal(out["sharp"], img[y0:y0 + 2, x0:x0 + 3])
        np.testing.assert_array_equal(flows["flow"], fl[:, y0:y0 + 2, x0:x0 + 3])
    # 0.5 is not < 0.5: no vertical flip
    out, flows = PairAugment(hflip=False, vflip=True, canonical_flow=False)({"sharp": img}, ScriptRng(random=[0.5]),
                                                                           {"flow": fl})
    np.testing.assert_array_equal(out["sharp"], img)
    np.testing.assert_array_equal(flows["flow"], fl)


def test_items_are_float32_whatever_the_transform_returns():
    def to64(images, rng, flows):
        return {k: v.astype(np.float64) for k, v in images.items()}, flows

    d = _Tiny(to64, None, False)
    img = _img(2, 3)
    out = d._finish({"blurred": img, "clip": np.stack([img, img])}, {}, None, "n")
    assert out["blurred"].dtype == torch.float32 and out["clip"].dtype == torch.float32
    np.testing.assert_array_equal(out["blurred"].numpy(), np.moveaxis(img, -1, 0))


def test_pair_augment_returns_float32_for_float64_inputs():
    img, fl = _img().astype(np.float64), _flow().astype(np.float64)
    out, flows = PairAugment(hflip=False, canonical_flow=False)({"sharp": img}, ScriptRng(), {"flow": fl})
    assert out["sharp"].dtype == np.float32 and flows["flow"].dtype == np.float32
    np.testing.assert_array_equal(out["sharp"], img.astype(np.float32))


def test_pair_augment_refuses_integer_images_by_key():
    # it casts to float32 without scaling: a uint8 crop would have come out on 0..255
    img = (_img() * 255).astype(np.uint8)
    with pytest.raises(TypeError, match=r"^images\['blurred'\] must be a float array on the \[0, 1\] scale, "
                                        r"got dtype uint8 \(read files with read_image\)$"):
        PairAugment(hflip=False)({"sharp": _img(), "blurred": img}, ScriptRng())


def test_finish_hands_the_flows_to_a_pair_augment():
    d = _Tiny(PairAugment(crop=2, hflip=False, canonical_flow=False), None, False)
    out = d._finish({"sharp": _img()}, {"flow": _flow()}, ScriptRng(integers=[1, 3]), "n")
    assert torch.equal(out["flow"], torch.from_numpy(_flow()[:, 1:3, 3:5]))
    np.testing.assert_array_equal(out["sharp"].numpy(), np.moveaxis(_img()[1:3, 3:5], -1, 0))


def test_noise_is_scaled_and_clipped_at_both_ends():
    img = np.array([[[0.05], [0.5], [0.97]]], np.float32)
    aug = PairAugment(hflip=False, noise_sigma=0.2)
    out, _ = aug({"blurred": img}, ScriptRng(normal=0.1, std=2.0))  # + 0.2
    np.testing.assert_allclose(out["blurred"][0, :, 0], [0.25, 0.7, 1.0], rtol=0, atol=1e-6)
    out, _ = aug({"blurred": img}, ScriptRng(normal=0.1, std=-2.0))  # - 0.2
    np.testing.assert_allclose(out["blurred"][0, :, 0], [0.0, 0.3, 0.77], rtol=0, atol=1e-6)


def test_read_image_hides_only_deprecation_warnings(monkeypatch, tmp_path):
    import warnings

    import skimage.io

    p = tmp_path / "x.png"
    p.write_bytes(b"stand-in")

    def noisy(category):
        def imread(path, *a, **k):
            warnings.warn("decoder says", category)
            return np.zeros((2, 2), np.uint8)
        return imread

    monkeypatch.setattr(skimage.io, "imread", noisy(DeprecationWarning))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(p).shape == (2, 2, 3)
    monkeypatch.setattr(skimage.io, "imread", noisy(UserWarning))
    with pytest.warns(UserWarning, match="decoder says"):
        read_image(p)


def test_an_8_bit_photo_gives_sharp_and_blurred_crops_on_one_scale():
    # images=[skimage.data.astronaut()] is uint8: its sharp crops were 0..255 beside blurred ones in [0, 1]
    photo = _u8(40, 40, seed=3)
    a = SyntheticBlurDataset(images=[photo], length=2, crop=24, seed=1, fixed=True, noise_sigma=0.0)[1]
    b = SyntheticBlurDataset(images=[photo / 255.0], length=2, crop=24, seed=1, fixed=True, noise_sigma=0.0)[1]
    for key in ("sharp", "blurred", "flow"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    assert float(a["sharp"].max()) <= 1.0 and float(a["sharp"].max()) > 0.9
    video = SyntheticVideoDataset(images=[photo], length=1, crop=24, seed=1, fixed=True, max_blur=4.0)[0]
    assert float(video["sharp"].max()) <= 1.0


def test_datasets_check_channels_and_preset_when_built(tmp_path):
    # not at the first item, where a DataLoader worker would report it
    _save_u8(tmp_path / "b" / "a.png", _u8(8, 8))
    _save_u8(tmp_path / "gopro" / "train" / "s" / "blur" / "a.png", _u8(8, 8))
    _save_u8(tmp_path / "gopro" / "train" / "s" / "sharp" / "a.png", _u8(8, 8))
    src = np.zeros((16, 16, 3))
    builders = [
        lambda c: BlurredFolderDataset(tmp_path / "b", channels=c),
        lambda c: PairedFolderDataset(tmp_path / "b", tmp_path / "b", channels=c),
        lambda c: GoProDataset(tmp_path / "gopro", split="train", channels=c),
        lambda c: KohlerDataset(tmp_path / "b", channels=c),
        lambda c: SyntheticBlurDataset(images=[src], crop=8, channels=c),
        lambda c: SyntheticVideoDataset(images=[src], crop=8, channels=c),
    ]
    for build in builders:
        for bad in (2, 4, 0):
            with pytest.raises(ValueError, match=rf"^channels must be None, 1 or 3, got {bad}$"):
                build(bad)
    with pytest.raises(ValueError, match=r"^preset must be one of \['23', '46'\] \(or pass max_len\), got '99'$"):
        SyntheticBlurDataset(images=[src], crop=8, preset="99")
    assert len(SyntheticBlurDataset(images=[src], crop=8, preset="99", flow_kwargs={"max_len": 5}, length=2)) == 2


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(noise_sigma=-0.01), ValueError, r"^noise_sigma must be a non-negative float or a \(lo, hi\) range"),
    (dict(noise_sigma=float("nan")), ValueError, r"^noise_sigma must be a non-negative float"),
    (dict(noise_sigma=(0.02, 0.01)), ValueError, r"^noise_sigma range must be \(lo, hi\) with 0 <= lo <= hi"),
    (dict(flow_kwargs={"rotation_prob": 2}), ValueError, r"^rotation_prob must be a probability in \[0, 1\]"),
    (dict(flow_kwargs={"acceleration": -1}), ValueError, r"^acceleration must be a float in \[0, 2\)"),
    (dict(flow_kwargs={"rotaton_prob": 0.5}), TypeError, r"unexpected keyword argument 'rotaton_prob'"),
])
def test_synthetic_blur_dataset_checks_its_noise_and_flow_options_when_built(kwargs, exc, match):
    src = np.zeros((16, 16, 3))
    with pytest.raises(exc, match=match):
        SyntheticBlurDataset(images=[src], crop=8, **kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(motion="shake"), ValueError, r"^motion must be one of \('translation', 'rotation', 'zoom', 'mixed'\)"),
    (dict(max_blur=-1.0), ValueError, r"^max_blur must be a non-negative finite number, got -1\.0$"),
    (dict(max_blur=float("inf")), ValueError, r"^max_blur must be a non-negative finite number, got inf$"),
    (dict(gamma=0), ValueError, r"^gamma must be a positive finite number, got 0$"),
    (dict(gamma=True), ValueError, r"^gamma must be a positive finite number, got True$"),
    (dict(n_frames=8), ValueError, r"^n_frames must be a positive odd int \(7-13 in GOPRO\) or None, got 8$"),
    (dict(n_frames=7.0), ValueError, r"^n_frames must be a positive odd int"),
    (dict(n_frames=True), ValueError, r"^n_frames must be a positive odd int"),
    (dict(foreground="no"), TypeError, r"^foreground must be True or False, got 'no'$"),
])
def test_synthetic_video_dataset_checks_its_clip_options_when_built(kwargs, exc, match):
    src = np.zeros((16, 16, 3))
    with pytest.raises(exc, match=match):
        SyntheticVideoDataset(images=[src], crop=8, max_blur=kwargs.pop("max_blur", 2.0), **kwargs)


def test_synthetic_video_dataset_accepts_the_documented_clip_options():
    src = np.random.default_rng(0).random((32, 32, 3))
    for kwargs in (dict(n_frames=1), dict(n_frames=7), dict(gamma=None), dict(gamma=1), dict(foreground=np.True_),
                   dict(max_blur=0.0), dict(motion="zoom")):
        ds = SyntheticVideoDataset(images=[src], crop=8, length=1, seed=0, **{"max_blur": 2.0, **kwargs})
        assert ds[0]["blurred"].shape == (3, 8, 8)


def test_synthesize_video_blur_refuses_a_string_foreground():
    from pnpdeblur.data import synthesize_video_blur

    with pytest.raises(TypeError, match=r"^foreground must be True or False, got 'no'$"):
        synthesize_video_blur(np.zeros((48, 48, 3)), max_blur=4.0, foreground="no", seed=0)


# -- training folders are checked when the data set is built --------------------------------


def _png(path, h, w, orientation=None):
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8))
    if orientation is None:
        img.save(path)
    else:
        ex = Image.Exif()
        ex[0x0112] = orientation
        img.save(path, format="JPEG", exif=ex.tobytes())


def test_small_or_unreadable_files_in_a_training_folder_are_refused_up_front(tmp_path):
    # they stopped a run at the random step that first drew them, without naming the small file
    d = tmp_path / "corpus"
    d.mkdir()
    _png(d / "a.png", 40, 40)
    _png(d / "b.png", 20, 30)
    with pytest.raises(ValueError, match=rf"^1 image file\(s\) are smaller than the required \(32, 32\) \(H, W\): "
                                         rf"{re.escape(str(d / 'b.png'))} \(20, 30\); remove them or lower the crop$"):
        SyntheticBlurDataset(images=d, crop=32)
    assert SyntheticBlurDataset(images=d, crop=20).sources == [d / "a.png", d / "b.png"]
    for k in range(4):
        _png(d / f"s{k}.png", 8, 40)
    with pytest.raises(ValueError, match=r"^5 image file\(s\) .*b\.png \(20, 30\), .*s3\.png \(8, 40\); remove them"):
        SyntheticBlurDataset(images=d, crop=32)  # five are all listed
    _png(d / "s4.png", 8, 40)
    with pytest.raises(ValueError, match=r"^6 image file\(s\) .*s3\.png \(8, 40\) and 1 more; remove them"):
        SyntheticBlurDataset(images=d, crop=32)
    _png(d / "s5.png", 8, 40)
    with pytest.raises(ValueError, match=r"^7 image file\(s\) .*s3\.png \(8, 40\) and 2 more; remove them"):
        SyntheticBlurDataset(images=d, crop=32)
    with pytest.raises(ValueError, match=r"^\d image file\(s\) are smaller than the required \(\d+, \d+\)"):
        SyntheticVideoDataset(images=d, crop=24)
    (d / "z.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(d / 'z.png'))}: not an image file"):
        SyntheticBlurDataset(images=d, crop=4)


def test_training_files_are_sized_upright_as_read_image_reads_them(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    _png(d / "portrait.jpg", 20, 40, orientation=6)  # stored 20 x 40, shown (and read) 40 x 20
    assert read_image(d / "portrait.jpg").shape[:2] == (40, 20)
    assert SyntheticBlurDataset(images=d, crop=(32, 16)).sources == [d / "portrait.jpg"]
    with pytest.raises(ValueError, match=r"portrait\.jpg \(40, 20\); remove them"):
        SyntheticBlurDataset(images=d, crop=(16, 32))


def test_paired_folders_are_checked_from_their_headers_when_built(tmp_path):
    b, s = tmp_path / "b", tmp_path / "s"
    b.mkdir()
    s.mkdir()
    for stem, (h, w) in {"big": (40, 40), "small": (20, 40)}.items():
        _png(b / f"{stem}.png", h, w)
        _png(s / f"{stem}.png", h, w)
    assert len(PairedFolderDataset(b, s, transform=PairAugment(crop=20))) == 2
    with pytest.raises(ValueError, match=rf"^1 image file\(s\) are smaller than the required \(32, 32\) \(H, W\): "
                                         rf"{re.escape(str(b / 'small.png'))} \(20, 40\); remove them"):
        PairedFolderDataset(b, s, transform=PairAugment(crop=32))
    assert len(PairedFolderDataset(b, s, transform=lambda items, rng: (items, {}))) == 2  # no crop to know
    _png(s / "small.png", 20, 41)
    with pytest.raises(ValueError, match=r"^mismatched image sizes: .*b/small\.png is \(20, 40\), .*s/small\.png is "
                                         r"\(20, 41\)$"):
        PairedFolderDataset(b, s)  # at once, not at the item that reads them
    (s / "small.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"^cannot read image .*s/small\.png: not an image file"):
        PairedFolderDataset(b, s)
    root = tmp_path / "gopro" / "train" / "seq"
    for sub in ("blur", "sharp"):
        (root / sub).mkdir(parents=True)
        _png(root / sub / "000.png", 16, 24)
    assert len(GoProDataset(tmp_path / "gopro", "train", transform=PairAugment(crop=16))) == 1
    with pytest.raises(ValueError, match=r"^1 image file\(s\) are smaller than the required \(20, 20\)"):
        GoProDataset(tmp_path / "gopro", "train", transform=PairAugment(crop=20))
