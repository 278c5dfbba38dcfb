"""The ``pnpdeblur`` command line: driven in-process through ``pnpdeblur.cli.main`` (returns
the exit status), plus one subprocess run of ``python -m pnpdeblur --help``.

Speed: 48×64 crops, one global iteration, one HQS iteration and a tiny untrained SEN
checkpoint (``--flow-weights``), so the tests do not depend on the shipped SEN's quality.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import io

import pnpdeblur
from pnpdeblur import cli
from pnpdeblur.data import sample_image
from pnpdeblur.nets.sen import SEN
from pnpdeblur.viz import flow_to_color

H, W = 48, 64


def _u8(name, channels):
    img = sample_image(name, (H, W), channels=channels)
    return np.round(img * 255).astype(np.uint8)[..., 0] if channels == 1 else np.round(img * 255).astype(np.uint8)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), arr, check_contrast=False)
    return path


@pytest.fixture(scope="module")
def sen_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sen") / "tiny_sen.safetensors"
    SEN(in_channels=3, width=4, stacks=1, levels=2).save(path)
    return str(path)


@pytest.fixture
def run(sen_ckpt):
    """``main(["deblur", *args] + fast options)``."""
    # --blur-threshold 0: every photo is deblurred whatever the tiny SEN reports (the
    # safeguard's own behaviour is tested below and in test_blind.py)
    def _run(*args, fast=("--iterations", "1", "--hqs-iters", "1", "--cg-iters", "3", "--blur-threshold", "0")):
        return cli.main(["deblur", *map(str, args), *fast, "--flow-weights", sen_ckpt, "--no-progress"])
    return _run


def _differs(out, inp):
    return np.abs(out.astype(np.int32) - inp.astype(np.int32)).max() > 0


def test_good_files_png_jpeg_grey_rgb(tmp_path, run):
    src = {
        "rgb_png": _save(tmp_path / "in" / "rgb_png.png", _u8("astronaut", 3)),
        "grey_png": _save(tmp_path / "in" / "grey_png.png", _u8("camera", 1)),
        "rgb_jpg": _save(tmp_path / "in" / "rgb_jpg.jpg", _u8("coffee", 3)),
        "grey_jpg": _save(tmp_path / "in" / "grey_jpg.jpeg", _u8("moon", 1)),
    }
    out = tmp_path / "out"
    assert run(*src.values(), "-o", out) == 0  # default prior: the shipped DnCNN
    assert sorted(os.listdir(out)) == sorted(k + ".png" for k in src)
    for stem, p in src.items():
        inp, res = io.imread(str(p)), io.imread(str(out / f"{stem}.png"))
        assert res.dtype == np.uint8
        assert res.shape == inp.shape == ((H, W) if "grey" in stem else (H, W, 3))  # grey stays grey
        assert _differs(res, inp), stem


def test_safeguard_writes_sharp_looking_photos_unchanged(tmp_path, run, capsys):
    src = _save(tmp_path / "in" / "a.png", _u8("astronaut", 3))
    fast = ("--iterations", "1", "--hqs-iters", "1", "--cg-iters", "3")
    # a threshold no estimate reaches: the photo counts as sharp and is written as read
    assert run(src, "-o", tmp_path / "kept", "--blur-threshold", "1e6", fast=fast) == 0
    assert np.array_equal(io.imread(str(tmp_path / "kept" / "a.png")), io.imread(str(src)))
    err = capsys.readouterr().err
    assert f"{src} looks sharp (estimated blur" in err and "< 1e+06 px): written unchanged" in err
    assert "UserWarning" not in err  # said once, in the CLI's words
    # --no-safeguard deblurs it anyway, whatever the threshold
    assert run(src, "-o", tmp_path / "forced", "--blur-threshold", "1e6", "--no-safeguard", fast=fast) == 0
    assert _differs(io.imread(str(tmp_path / "forced" / "a.png")), io.imread(str(src)))
    assert "looks sharp" not in capsys.readouterr().err
    assert cli.main(["deblur", str(src), "-o", str(tmp_path / "x"), "--blur-threshold", "-1"]) == 2
    assert "--blur-threshold: expected a number >= 0, got '-1'" in capsys.readouterr().err


def test_folder_input_and_recursive(tmp_path, run):
    d = tmp_path / "in"
    _save(d / "top.png", _u8("astronaut", 3))
    _save(d / "sub" / "deep.jpg", _u8("coffee", 3))
    (d / "notes.txt").write_text("not an image and not picked up from a folder")
    assert run(d, "-o", tmp_path / "flat", "--prior", "tv") == 0
    assert run(d / "top.png", "-o", tmp_path / "drunet", "--prior", "drunet") == 0  # the shipped DRUNet
    assert _differs(io.imread(str(tmp_path / "drunet" / "top.png")), io.imread(str(d / "top.png")))
    assert sorted(os.listdir(tmp_path / "flat")) == ["top.png"]
    assert run(d, "-o", tmp_path / "rec", "--recursive", "--prior", "tv") == 0
    assert sorted(os.listdir(tmp_path / "rec")) == ["deep.png", "top.png"]


def test_bad_inputs_are_named_skipped_and_fail_the_run(tmp_path, run, capsys):
    d = tmp_path / "in"
    good1 = _save(d / "good1.png", _u8("astronaut", 3))
    good2 = _save(d / "good2.jpg", _u8("camera", 1))
    corrupt = d / "corrupt.png"
    corrupt.write_bytes(good1.read_bytes()[:120])  # a truncated PNG
    text = d / "text.png"
    text.write_text("hello, I am not a picture\n")
    missing = d / "missing.png"
    out = tmp_path / "out"
    rc = run(good1, corrupt, text, missing, good2, "-o", out, "--prior", "tv")
    err = capsys.readouterr().err
    assert rc == 1
    assert sorted(os.listdir(out)) == ["good1.png", "good2.png"]  # the good ones, after the bad ones
    for bad in (corrupt, text, missing):
        assert str(bad) in err
    assert "good1" not in err and "good2" not in err


def test_never_overwrites_an_input(tmp_path, run, capsys):
    d = tmp_path / "photos"
    a = _save(d / "a.png", _u8("astronaut", 3))
    b = _save(d / "b.jpg", _u8("coffee", 3))
    before = a.read_bytes()
    (d / "sub").mkdir()
    for outdir in (d, d / "sub" / ".."):  # same folder, also when spelled differently
        assert run(d, "-o", outdir, "--prior", "tv") == 2
        assert a.read_bytes() == before
        assert sorted(p.name for p in d.iterdir()) == ["a.png", "b.jpg", "sub"]  # nothing written at all
        assert str(a) in capsys.readouterr().err
    # x's flow picture is x_flow.png: an input of that name in OUTDIR is protected too
    f = _save(tmp_path / "other" / "f.png", _u8("camera", 1))
    flow_named = _save(d / "f_flow.png", _u8("moon", 1))
    before = flow_named.read_bytes()
    assert run(f, flow_named, "-o", d, "--save-flow", "--prior", "tv") == 2
    assert flow_named.read_bytes() == before and not (d / "f.png").exists()
    assert "f_flow.png" in capsys.readouterr().err
    assert run(f, flow_named, "-o", tmp_path / "elsewhere", "--save-flow", "--prior", "tv") == 0
    assert sorted(os.listdir(tmp_path / "elsewhere")) == ["f.png", "f_flow.png", "f_flow_1.png", "f_flow_1_flow.png"]
    assert flow_named.read_bytes() == before and b.exists()


def test_save_flow_png_and_npy(tmp_path, run):
    p = _save(tmp_path / "x.png", _u8("astronaut", 3))
    out = tmp_path / "out"
    assert run(p, "-o", out, "--save-flow", "--prior", "tv") == 0
    assert sorted(os.listdir(out)) == ["x.png", "x_flow.png"]
    pic = io.imread(str(out / "x_flow.png"))
    assert pic.shape == (H, W, 3) and pic.dtype == np.uint8
    assert run(p, "-o", out, "--flow-npy", "--prior", "tv") == 0  # implies --save-flow
    assert sorted(os.listdir(out)) == ["x.png", "x_flow.npy", "x_flow.png"]
    flow = np.load(out / "x_flow.npy")
    assert flow.shape == (2, H, W) and flow.dtype == np.float32 and np.isfinite(flow).all()
    assert np.abs(flow).max() > 0
    # the picture is the colour coding of that flow (symmetric: a blur's m and -m are one)
    assert np.array_equal(io.imread(str(out / "x_flow.png")), flow_to_color(flow, symmetric=True))


def test_shared_stems_get_distinct_outputs(tmp_path, run, capsys):
    a_png = _save(tmp_path / "one" / "a.png", _u8("astronaut", 3))
    a_jpg = _save(tmp_path / "two" / "a.jpg", _u8("camera", 1))
    out = tmp_path / "out"
    assert run(a_png, a_jpg, "-o", out, "--prior", "tv") == 0
    assert sorted(os.listdir(out)) == ["a.png", "a_1.png"]
    assert io.imread(str(out / "a.png")).ndim == 3 and io.imread(str(out / "a_1.png")).ndim == 2
    assert str(a_jpg) in capsys.readouterr().err  # the renaming is announced
    # flow names are reserved too: x's flow picture and the input x_flow.png must not collide
    plans = cli.plan_outputs([Path("x.png"), Path("x_flow.png"), Path("X.jpg")], out, save_flow=True)
    names = [n for pl in plans for n in (pl.image.name, pl.flow_png.name)]
    assert names == ["x.png", "x_flow.png", "x_flow_1.png", "x_flow_1_flow.png", "X_1.png", "X_1_flow.png"]


def test_16bit_png_gives_16bit_png(tmp_path, run):
    grey = (sample_image("camera", (H, W))[..., 0] * 65535).round().astype(np.uint16)
    p = _save(tmp_path / "g16.png", grey)
    rgb = tmp_path / "c16.png"
    cli._imsave(rgb, (sample_image("coffee", (H, W)) * 65535).round().astype(np.uint16))
    out = tmp_path / "out"
    assert run(p, rgb, "-o", out, "--prior", "tv") == 0
    res = io.imread(str(out / "g16.png"))
    assert res.dtype == np.uint16 and res.shape == (H, W) and _differs(res, grey)
    assert cli._is_16bit_png(out / "c16.png")  # Pillow reads 16-bit colour as 8-bit; check the header
    jpg = _save(tmp_path / "e8.jpg", _u8("coffee", 3))
    assert run(jpg, "-o", out, "--prior", "tv") == 0 and not cli._is_16bit_png(out / "e8.png")


def test_16bit_colour_png_and_tiff_keep_all_16_bits(tmp_path, run):
    # a threshold no flow reaches: the photo "looks sharp" and is written unchanged, so the
    # output must be the input to the last bit (Pillow alone would have cut it to 8 bits)
    import tifffile

    rng = np.random.default_rng(5)
    rgb = (sample_image("coffee", (H, W)) * 65535).round().astype(np.uint16) ^ rng.integers(0, 256, (H, W, 3)).astype(np.uint16)
    cli._imsave(tmp_path / "c16.png", rgb)
    tifffile.imwrite(tmp_path / "t16.tif", rgb)
    out = tmp_path / "out"
    fast = ("--iterations", "1", "--hqs-iters", "1", "--cg-iters", "3", "--blur-threshold", "1e9")
    assert run(tmp_path / "c16.png", tmp_path / "t16.tif", "-o", out, "--prior", "tv", fast=fast) == 0
    from pnpdeblur.data._png import read_png16

    for name in ("c16.png", "t16.png"):
        got = read_png16(out / name)
        assert got is not None and np.array_equal(got, rgb), name
    assert cli._is_16bit_tiff(tmp_path / "t16.tif") and not cli._is_16bit_tiff(tmp_path / "c16.png")
    tifffile.imwrite(tmp_path / "t8.tif", (rgb >> 8).astype(np.uint8))
    assert not cli._is_16bit_tiff(tmp_path / "t8.tif")
    tifffile.imwrite(tmp_path / "i32.tif", rgb[..., 0].astype(np.int32))  # Pillow's mode "I": 16-bit data
    assert cli._is_16bit_tiff(tmp_path / "i32.tif")
    tifffile.imwrite(tmp_path / "f32.tif", rgb[..., 0].astype(np.float32) / 65535)
    assert not cli._is_16bit_tiff(tmp_path / "f32.tif")


def test_png16_writer_round_trip(tmp_path):
    import zlib

    a = np.random.default_rng(0).integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    data = cli._png16_bytes(a)
    # one IDAT chunk right after IHDR: decode it by hand (Pillow would drop to 8 bits)
    n = int.from_bytes(data[33:37], "big")
    assert data[37:41] == b"IDAT"
    raw = np.frombuffer(zlib.decompress(data[41:41 + n]), np.uint8).reshape(5, -1)
    assert (raw[:, 0] == 0).all()
    assert np.array_equal(raw[:, 1:].copy().view(">u2").reshape(a.shape), a)
    g = a[..., 0]
    cli._imsave(tmp_path / "g.png", g)
    assert np.array_equal(io.imread(str(tmp_path / "g.png")), g)


def test_torchrun_shard(tmp_path, run, monkeypatch):
    from pnpdeblur.train import distributed

    files = [_save(tmp_path / "in" / f"f{i}.png", _u8("astronaut", 3)[:, i:i + W - 4]) for i in range(4)]
    # rank 1 of 2: shard() takes every second plan starting at index 1
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert run(tmp_path / "in", "-o", tmp_path / "out", "--prior", "tv") == 0
    assert sorted(os.listdir(tmp_path / "out")) == [f"f{i}.png" for i in (1, 3)]
    assert [p.name for p in files] == [f"f{i}.png" for i in range(4)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_device_without_cuda_is_a_usage_error(tmp_path, run, capsys):
    p = _save(tmp_path / "x.png", _u8("astronaut", 3))
    assert run(p, "-o", tmp_path / "out", "--device", "cuda") == 2
    assert "CUDA" in capsys.readouterr().err
    assert not (tmp_path / "out" / "x.png").exists()


def test_usage_errors(tmp_path, capsys):
    assert cli.main(["deblur", "x.png"]) == 2  # no -o
    assert cli.main(["deblur", "x.png", "-o", str(tmp_path), "--iterations", "0"]) == 2
    assert cli.main(["deblur", "x.png", "-o", str(tmp_path), "--prior", "bm4d"]) == 2
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_train_sen_help_and_forwarding(monkeypatch, capsys):
    assert cli.main(["train", "sen", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--corpus" in out and "pnpdeblur train sen" in out
    got = []
    monkeypatch.setitem(cli.TRAINERS, "sen", lambda argv: got.append(list(argv)))
    assert cli.main(["train", "sen", "--steps", "3", "--corpus", "photos", "-h"]) == 0
    assert got == [["--steps", "3", "--corpus", "photos", "-h"]]
    assert cli.main(["train", "nosuchnet"]) == 2
    assert "sen" in capsys.readouterr().err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pnpdeblur {pnpdeblur.__version__}"


def test_python_m_help():
    r = subprocess.run([sys.executable, "-m", "pnpdeblur", "--help"], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: pnpdeblur")
    for word in ("deblur", "train", "--version", "examples:"):
        assert word in r.stdout


@pytest.mark.parametrize("model, flag", [("deepdeblur", "--adv-weight"), ("deblurgan", "--adv-weight"),
                                         ("deblurnet", "--data"), ("dvd", "--frames"), ("flownets", "--crop"),
                                         ("rpgan", "--buffer")])
def test_train_recipes_are_reachable(model, flag, capsys):
    assert cli.main(["train", model, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"pnpdeblur train {model}" in out or model in out
    assert flag in out
