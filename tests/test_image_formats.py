"""Photo formats beyond PNG/JPEG/TIFF: AVIF and JPEG 2000 read, camera raw and HEIC/HEIF refused by name.

A camera raw file is a TIFF inside; the files here are built the same way (a small first page, the
preview a camera embeds, before the full-size one), so that Pillow, asked directly, returns the
preview: the refusal is what keeps that thumbnail from being deblurred as the photo.
"""
import re
import sys
import types
import warnings

import numpy as np
import pytest
from PIL import Image, features

from pnpdeblur import cli
from pnpdeblur.data import HEIF_EXTENSIONS, IMAGE_EXTENSIONS, RAW_EXTENSIONS, list_images, read_image
from pnpdeblur.data import image_files
from pnpdeblur.data.image_files import heif_readable, scan_folder


@pytest.fixture(autouse=True)
def no_heif_plugin(monkeypatch):
    """The tests below describe a machine without pillow-heif (it is not a dependency), wherever they run."""
    monkeypatch.setattr(image_files, "_heif_plugin", False)


def _photo(h=40, w=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _raw_like(path, photo):
    """A TIFF whose first page is an 8× smaller preview of ``photo`` and whose second is ``photo``."""
    full = Image.fromarray(photo)
    preview = full.resize((photo.shape[1] // 8, photo.shape[0] // 8))
    preview.save(path, format="TIFF", save_all=True, append_images=[full])
    return path


def test_the_extension_lists_do_not_overlap():
    assert not set(IMAGE_EXTENSIONS) & set(RAW_EXTENSIONS)
    assert not set(IMAGE_EXTENSIONS) & set(HEIF_EXTENSIONS)
    assert not set(RAW_EXTENSIONS) & set(HEIF_EXTENSIONS)
    for ext in IMAGE_EXTENSIONS + RAW_EXTENSIONS + HEIF_EXTENSIONS:
        assert ext == ext.lower() and ext.startswith(".")
    assert {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"} <= set(RAW_EXTENSIONS)
    assert {".heic", ".heif"} <= set(HEIF_EXTENSIONS)


def test_jpeg2000_is_read_exactly(tmp_path):
    if not features.check("jpg_2000"):
        pytest.skip("this Pillow has no JPEG 2000 codec")
    photo = _photo()
    Image.fromarray(photo).save(tmp_path / "p.jp2")  # Pillow's default is the reversible (lossless) transform
    np.testing.assert_array_equal(read_image(tmp_path / "p.jp2"), photo.astype(np.float32) / 255)


def test_avif_is_read_as_the_photo(tmp_path):
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[:, 32:] = (200, 40, 90)  # two flat halves: a lossy codec keeps them within a few levels
    Image.fromarray(photo).save(tmp_path / "p.avif", quality=95)
    got = read_image(tmp_path / "p.avif")
    assert got.shape == (48, 64, 3) and got.dtype == np.float32
    assert np.abs(got[4:-4, 4:28] - 0).max() < 6 / 255
    assert np.abs(got[4:-4, 36:-4] - np.array([200, 40, 90]) / 255).max() < 6 / 255


@pytest.mark.parametrize("name", ["shot.NEF", "shot.dng", "shot.cr2", "shot.arw"])
def test_a_camera_raw_file_is_refused_not_read_as_its_preview(tmp_path, name):
    photo = _photo(64, 80)
    path = _raw_like(tmp_path / name, photo)
    with Image.open(path) as im:  # what a TIFF reader would return: the preview
        assert im.size == (10, 8)
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(path))}: develop camera raw files "
                                         r"into 16-bit TIFFs or PNGs first .*small preview"):
        read_image(path)
    renamed = path.rename(tmp_path / "shot.tif")  # the same bytes as a TIFF are read as a TIFF
    assert read_image(renamed).shape == (8, 10, 3)


def test_a_heic_photo_without_its_plugin_gets_advice(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(range(200)))  # a HEIF header, then no decodable data
    with pytest.raises(ValueError, match=rf"^cannot read image {re.escape(str(path))}: Pillow decodes HEIC/HEIF "
                                         r"photos only with the pillow-heif plugin, which is not installed"):
        read_image(path)
    other = tmp_path / "notes.dat"
    other.write_bytes(path.read_bytes())  # the same bytes under another name get the generic reason
    with pytest.raises(ValueError, match=r": not an image file Pillow or imageio can decode"):
        read_image(other)


def test_list_images_leaves_out_raw_and_heif_photos_with_a_warning(tmp_path):
    Image.fromarray(_photo()).save(tmp_path / "b.png")
    for n in ("a.HEIC", "c.cr2", "d.nef", "e.dng", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    with pytest.warns(UserWarning) as rec:
        files = list_images(tmp_path)
    assert [p.name for p in files] == ["b.png"]
    assert len(rec) == 1 and rec[0].filename == __file__  # reported where the user called it
    msg = str(rec[0].message)
    assert msg.startswith(f"list_images left out photo files of {tmp_path}: 4 photo file(s) in formats not read "
                          "here (a.HEIC, c.cr2, d.nef, …); ")
    assert "pillow-heif" in msg and "develop camera raw files" in msg and "notes.txt" not in msg
    assert msg.count("develop camera raw files") == 1  # each kind's advice once, however many files
    (tmp_path / "e.dng").unlink()
    with pytest.warns(UserWarning, match=r"left out photo files of .*: 3 photo file\(s\) in formats not read here "
                                         r"\(a\.HEIC, c\.cr2, d\.nef\); Pillow decodes HEIC"):  # all three named
        list_images(tmp_path)


def test_list_images_names_the_unread_photos_of_a_folder_without_images(tmp_path):
    (tmp_path / "x.cr3").write_bytes(b"x")
    (tmp_path / "y.txt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"^no images \(.*\) in .*: 1 photo file\(s\) in formats not read here "
                                         r"\(x\.cr3\); develop camera raw files"):
        list_images(tmp_path)
    (tmp_path / "x.cr3").unlink()
    with pytest.raises(ValueError) as ei:
        list_images(tmp_path)
    assert str(ei.value) == f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {tmp_path}"  # no photos to name


def test_scan_folder_splits_images_from_unread_photos(tmp_path):
    (tmp_path / "sub").mkdir()
    for n in ("b.png", "a.heif", "sub/c.jpg", "sub/d.raf", "e.txt"):
        (tmp_path / n).write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scanning never warns
        flat = scan_folder(tmp_path)
        deep = scan_folder(str(tmp_path), recursive=True)
    assert [[p.name for p in ps] for ps in flat] == [["b.png"], ["a.heif"]]
    assert [[p.relative_to(tmp_path).as_posix() for p in ps] for ps in deep] == [["b.png", "sub/c.jpg"],
                                                                                 ["a.heif", "sub/d.raf"]]
    assert scan_folder(tmp_path / "sub") == ([tmp_path / "sub" / "c.jpg"], [tmp_path / "sub" / "d.raf"])
    with pytest.raises(FileNotFoundError, match="^folder not found"):
        scan_folder(tmp_path / "gone")


def test_the_cli_reports_each_unread_photo_of_a_folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(_photo()).save(d / "b.png")
    for n in ("a.heic", "c.NEF"):
        (d / n).write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported as problems, not warned about as well
        files, problems = cli.collect_inputs([d])
    assert files == [d / "b.png"]
    assert [p for p, _ in problems] == [d / "a.heic", d / "c.NEF"]
    assert problems[0][1].startswith("not read: Pillow decodes HEIC/HEIF photos")
    assert problems[1][1].startswith("not read: develop camera raw files")
    only = tmp_path / "only"
    only.mkdir()
    (only / "z.arw").write_bytes(b"x")
    files, problems = cli.collect_inputs([only])
    assert files == [] and problems == [(only / "z.arw", problems[0][1])]
    assert problems[0][1].startswith("not read: develop camera raw files")


def test_heic_photos_are_listed_and_the_plugin_registered_where_pillow_heif_is_installed(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("pillow_heif")
    fake.register_heif_opener = lambda: calls.append("registered")
    monkeypatch.setitem(sys.modules, "pillow_heif", fake)
    monkeypatch.setattr(image_files, "_heif_plugin", None)  # not tried yet
    for n in ("a.HEIC", "b.png", "c.nef"):
        (tmp_path / n).write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"1 photo file\(s\) in formats not read here \(c\.nef\); develop"):
        files = list_images(tmp_path)
    assert [p.name for p in files] == ["a.HEIC", "b.png"]
    assert heif_readable() and calls == ["registered"]  # registered once, however often asked
    # a damaged HEIC, once the plugin is there, is called damaged: no advice to install what is installed
    with pytest.raises(ValueError, match=r": not an image file Pillow or imageio can decode"):
        read_image(tmp_path / "a.HEIC")


def test_without_pillow_heif_the_plugin_is_tried_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import raises ImportError
    monkeypatch.setattr(image_files, "_heif_plugin", None)
    assert heif_readable() is False
    monkeypatch.delitem(sys.modules, "pillow_heif")  # not imported again: the answer is kept
    assert heif_readable() is False
