"""``pnpdeblur.cli`` function by function, in-process and fast.

The end-to-end runs (a real SEN, a real HQS) live in ``tests/test_cli.py`` and
``tests/test_cli_finetune.py``. Here the heavy work is replaced by recording stand-ins
(``pd.deblur``, the model loaders, ``finetune_reblur`` / ``deblur_frames``, the training
recipes), so each test checks what the command line itself does: which arguments reach the
library, which files are written under which names with which values, what is reported on
stderr for which input, and the exit status. Images are 12×16 PNGs.
"""
import argparse
import inspect
import os
import re
import sys
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage import io
from torch import nn

import pnpdeblur
from pnpdeblur import cli, pipeline
from pnpdeblur.checkpoints import read_header, save_checkpoint
from pnpdeblur.pipeline import DeblurResult
from pnpdeblur.viz import flow_to_color

_PD_DEBLUR = pipeline.deblur  # the real one (the `fake` fixture replaces it)

H, W = 12, 16


@pytest.fixture(autouse=True)
def _fork_safe_tqdm(monkeypatch):
    import threading

    import tqdm.auto
    import tqdm.std

    # Forked test processes (mutmut runs one per mutant) share tqdm's default lock, a
    # multiprocessing RLock: one that exits holding it (an exception inside a bar's
    # refresh) deadlocks every later one. A fresh thread lock per test is private to the
    # process. A monitor thread started before a fork deadlocks the children too.
    lock = threading.RLock()
    for cls in (tqdm.std.tqdm, tqdm.auto.tqdm):
        monkeypatch.setattr(cls, "_lock", lock, raising=False)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)


@pytest.fixture(autouse=True)
def _cpu_guard():
    """Fail a test that spins (an endless loop) after 30 CPU seconds; each takes well under 1 s.

    CPU time, not wall time: a loaded machine does not trip it. Without it, an endless loop
    (say a name-clash search that never advances) would run until mutmut's own limit.
    """
    import signal

    def spin(signum, frame):
        raise RuntimeError("test used more than 30 CPU seconds: an endless loop?")

    old = signal.signal(signal.SIGVTALRM, spin)
    signal.setitimer(signal.ITIMER_VIRTUAL, 30.0)
    yield
    signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    signal.signal(signal.SIGVTALRM, old)


def _u8(seed, channels=3, h=H, w=W):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, channels) if channels == 3 else (h, w))
    return a.astype(np.uint8)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    io.imsave(str(path), arr, check_contrast=False)
    return path


def _storage8(x):
    """What an image in [0, 1] becomes on disk as 8 bits (independent of cli._to_storage)."""
    return np.floor(np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


# -- argument types -----------------------------------------------------------------------------
@pytest.mark.parametrize("s, v", [("1", 1), ("7", 7), (" 3 ", 3)])
def test_positive_int_accepts(s, v):
    assert cli._positive_int(s) == v and type(cli._positive_int(s)) is int


@pytest.mark.parametrize("s", ["0", "-1", "x", "1.5", ""])
def test_positive_int_refuses_with_the_value(s):
    with pytest.raises(argparse.ArgumentTypeError, match=rf"^expected a positive integer, got {s!r}$"):
        cli._positive_int(s)


def test_float_types_bounds_and_messages():
    assert cli._finite_float("-2.5") == -2.5
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^expected a finite number, got '{bad}'$"):
            cli._finite_float(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a number, got 'abc'$"):
        cli._finite_float("abc")
    assert cli._nonneg_float("0") == 0.0 and cli._nonneg_float("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a number >= 0, got '-1e-9'$"):
        cli._nonneg_float("-1e-9")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a finite number, got 'nan'$"):
        cli._nonneg_float("nan")  # the finiteness check comes first
    assert cli._positive_float("1e-9") == 1e-9
    for bad in ("0", "-3"):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"^expected a number > 0, got '{bad}'$"):
            cli._positive_float(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a finite number, got 'inf'$"):
        cli._positive_float("inf")
    for f in (cli._unit_float, cli._flow_scale):
        assert f("1") == 1.0 and f("0.5") == 0.5 and f("1e-6") == 1e-6
        for bad in ("0", "1.0001", "-0.5", "2"):
            with pytest.raises(argparse.ArgumentTypeError, match=rf"^expected a number in \(0, 1\], got '{bad}'$"):
                f(bad)
        with pytest.raises(argparse.ArgumentTypeError, match=r"^expected a finite number, got 'inf'$"):
            f("inf")


def test_image_extensions_are_the_datasets():
    from pnpdeblur.data.datasets import IMAGE_EXTENSIONS

    assert cli._image_extensions() == IMAGE_EXTENSIONS


# -- the parser and --help ----------------------------------------------------------------------
def _sub(name):
    ap = cli.build_parser()
    action = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return ap, action.choices[name]


def test_deblur_defaults_and_types():
    _, d = _sub("deblur")
    a = d.parse_args(["x.png", "-o", "out"])
    assert a.inputs == [Path("x.png")] and a.output == Path("out")
    # prior None: chosen by the blur model (test_known_blur.py), dncnn for the estimated flow
    assert (a.recursive, a.iterations, a.prior, a.noise_level, a.flow_scale, a.device) == \
        (False, 1, None, None, 1.0, None)
    assert (a.save_flow, a.flow_npy, a.no_progress, a.no_safeguard, a.blur_threshold) == \
        (False, False, False, False, None)
    # None: pd.deblur's own budget, (4, 5) for SEN's flows or hqs's (8, 30) for a --flow
    assert (a.hqs_iters, a.cg_iters, a.flow_weights, a.no_flow_ensemble) == (None, None, None, False)
    assert a.flow is None and a.kernel is None
    assert (a.saturation, a.no_saturation) == (0.98, False)
    assert a.boundary == "unknown" and a.gamma is None
    assert a.shake is False and a.auto is False and a.kernel_size is None and a.save_kernel is False
    for bad in (["--saturation", "0"], ["--saturation", "1.2"], ["--saturation", "nan"],
                ["--saturation", "0.9", "--no-saturation"], ["--boundary", "zero"], ["--gamma", "0.5"],
                ["--gamma", "4.5"], ["--gamma", "nan"]):
        with pytest.raises(SystemExit):
            d.parse_args(["x.png", "-o", "out"] + bad)
    assert a.handler is cli._run_deblur and a.sub_parser is d
    a = d.parse_args(["x.png", "y", "--output", "o", "-r", "--iterations", "3", "--prior", "tv", "--noise-level",
                      "0.02", "--flow-scale", "0.5", "--device", "cpu", "--save-flow", "--flow-npy", "--no-progress",
                      "--no-safeguard", "--blur-threshold", "2.5", "--hqs-iters", "2", "--cg-iters", "4",
                      "--flow-weights", "w.safetensors", "--no-flow-ensemble"])
    assert a.no_flow_ensemble is True
    assert a.inputs == [Path("x.png"), Path("y")] and a.output == Path("o") and a.recursive
    assert (a.iterations, a.prior, a.noise_level, a.flow_scale, a.device) == (3, "tv", 0.02, 0.5, "cpu")
    assert a.save_flow and a.flow_npy and a.no_progress and a.no_safeguard
    assert (a.blur_threshold, a.hqs_iters, a.cg_iters, a.flow_weights) == (2.5, 2, 4, Path("w.safetensors"))
    assert sorted(next(x for x in d._actions if x.dest == "prior").choices) == [
        "dncnn", "drunet", "drunet-medium", "ffdnet", "ircnn", "tv"]


def test_finetune_defaults_and_types():
    _, f = _sub("finetune")
    a = f.parse_args(["clip", "--net", "deepdeblur", "-o", "out"])
    assert (a.frames_dir, a.net, a.output) == (Path("clip"), "deepdeblur", Path("out"))
    assert (a.frames, a.kernel, a.tau, a.steps, a.lr, a.alpha) == (3, "two_segment", 1.0, 200, 1e-4, 0.1)
    assert (a.reblur_only, a.pairs, a.single, a.flow, a.flow_every, a.crop, a.batch, a.seed) == \
        (False, None, False, "tvl1", 20, 128, 8, 0)
    assert (a.device, a.save_net, a.no_progress) == (None, None, False)
    assert a.handler is cli._run_finetune and a.sub_parser is f
    a = f.parse_args(["clip", "--net", "n", "--output", "o", "--frames", "2", "--kernel", "warp", "--tau", "0.5",
                      "--steps", "3", "--lr", "0.01", "--alpha", "0", "--pairs", "b", "s", "--single", "--flow", "f",
                      "--flow-every", "2", "--crop", "16", "--batch", "4", "--seed", "7", "--device", "cpu",
                      "--save-net", "t.safetensors", "--no-progress", "--margin", "5"])
    assert (a.frames, a.kernel, a.tau, a.steps, a.lr, a.alpha) == (2, "warp", 0.5, 3, 0.01, 0.0)
    assert a.margin == 5 and f.parse_args(["c", "--net", "n", "-o", "o"]).margin == 0
    assert a.pairs == [Path("b"), Path("s")] and a.single and (a.flow, a.flow_every, a.crop, a.batch) == ("f", 2, 16, 4)
    assert (a.seed, a.device, a.save_net, a.no_progress) == (7, "cpu", Path("t.safetensors"), True)
    assert f.parse_args(["c", "--net", "n", "-o", "o", "--reblur-only"]).reblur_only
    kernel = next(x for x in f._actions if x.dest == "kernel")
    assert kernel.choices == ("two_segment", "lut", "warp")
    assert next(x for x in f._actions if x.dest == "frames").choices == (2, 3)


def test_finetune_reblur_only_and_pairs_exclude_each_other(capsys):
    assert cli.main(["finetune", "c", "--net", "n", "-o", "o", "--reblur-only", "--pairs", "b", "s"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_train_parser():
    _, t = _sub("train")
    a = t.parse_args([])
    assert a.model is None and a.handler is cli._run_train and a.sub_parser is t
    assert t.parse_args(["sen"]).model == "sen"
    assert not t.add_help  # '-h' after the model belongs to the recipe
    assert t.format_usage().strip() == "usage: pnpdeblur train {%s} [args…]" % ",".join(cli.TRAINERS)


def _help_of(parser):
    return parser.format_help()


def test_every_help_states_its_defaults_as_the_parser_has_them():
    """``(default: X)`` in an option's help must be the value the parser really uses."""
    checked = 0
    for name in ("deblur", "finetune"):
        _, p = _sub(name)
        for act in p._actions:
            m = re.search(r"\(default: ([^)]*)\)", act.help or "")
            if m is None or act.default is None:
                continue
            said = m.group(1).split(",")[0].strip()
            checked += 1
            if isinstance(act.default, (int, float)):
                assert float(said) == act.default, (name, act.dest, said, act.default)
            else:
                assert said == str(act.default), (name, act.dest, said, act.default)
    assert checked == 14
    # the solve budget's default is pd.deblur's, which depends on whether the flow is given
    _, d = _sub("deblur")
    budget = {act.dest: act.help for act in d._actions if act.dest in ("hqs_iters", "cg_iters")}
    assert "(default: 4; 8 with --flow)" in budget["hqs_iters"]
    assert "(default: 5; 30 with --flow)" in budget["cg_iters"]
    assert (pipeline.ESTIMATED_FLOW_SOLVE, pipeline.GIVEN_FLOW_SOLVE) == ((4, 5), (None, 30))


def test_help_texts(capsys):
    ap, d = _sub("deblur")
    top = _help_of(ap)
    assert top.startswith("usage: pnpdeblur [-h] [--version] COMMAND ...\n\nPlug-and-play motion deblurring: blind")
    for cmd, line in (("deblur", "deblur photos (files or folders) into an output folder"),
                      ("finetune", "Reblur2Deblur: fine-tune a deblurring net"),
                      ("train", "train a network: 'pnpdeblur train <model> [args…]'")):
        assert re.search(rf"^\s+{cmd}\s+{re.escape(line)}", top, re.M), cmd
    assert "\nexamples:\n  pnpdeblur deblur blurred.jpg -o out/\n" in top
    text = _help_of(d)
    assert text.startswith("usage: pnpdeblur deblur [-h] -o OUTDIR")
    assert "\nBlind motion deblurring of photos: estimate the per-pixel motion flow with SEN," in text
    ext = " ".join(cli._image_extensions())
    assert f"image files or folders of images ({ext})" in " ".join(text.split())
    assert "\nadvanced (speed / quality trade-offs):\n" in text
    _, f = _sub("finetune")
    text = " ".join(_help_of(f).split())
    assert text.startswith("usage: pnpdeblur finetune [-h] --net NAME|PATH -o OUTDIR")
    assert "Self-supervised test-time fine-tuning (Chen et al., Reblur2Deblur)" in text
    assert ("network (%s; dvd has no shipped weights) or a pnpdeblur checkpoint of one"
            % ", ".join(cli.FINETUNE_NETS)) in " ".join(text.split())
    _, t = _sub("train")
    text = " ".join(_help_of(t).split())
    assert "one of: " + ", ".join(cli.TRAINERS) in text
    assert "Train a network; the arguments after the model name go to its training recipe" in text
    assert "example: pnpdeblur train sen --corpus photos/" in text


def test_every_option_has_help():
    ap = cli.build_parser()
    for name in ("deblur", "finetune"):
        _, p = _sub(name)
        for act in p._actions:
            if act.dest in ("help",):
                continue
            assert act.help and len(act.help) > 10 or act.dest == "seed", (name, act.dest)


def test_help_examples_parse():
    """Every ``pnpdeblur …`` example line of the three epilogs is a valid command line."""
    ap = cli.build_parser()
    n = 0
    for epilog in (cli._TOP_EPILOG, cli._DEBLUR_EPILOG, cli._FINETUNE_EPILOG):
        for line in epilog.splitlines():
            line = line.split("#")[0].split()
            if line[:1] == ["torchrun"]:
                line = ["pnpdeblur", *line[line.index("pnpdeblur") + 1:]]
            if line[:1] != ["pnpdeblur"]:
                continue
            a, extra = ap.parse_known_args(line[1:])
            assert a.command in ("deblur", "finetune", "train", "warmup"), line
            if a.command == "deblur":
                a.sub_parser.parse_intermixed_args(line[2:])
            elif a.command == "finetune":
                a.sub_parser.parse_args(line[2:])
            n += 1
    assert n >= 13


def test_help_and_version_return_zero(capsys):
    for cmd in (["--help"], ["deblur", "--help"], ["finetune", "-h"]):
        assert cli.main(cmd) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: pnpdeblur")
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"pnpdeblur {pnpdeblur.__version__}\n"


def test_wrap_fills_at_88_columns():
    text = "word " * 60
    out = cli._wrap(text)
    assert max(map(len, out.splitlines())) <= 88 and max(map(len, out.splitlines())) > 80
    assert out.split() == text.split()


# -- inputs and outputs -------------------------------------------------------------------------
def test_collect_inputs_files_folders_order_and_duplicates(tmp_path):
    d = tmp_path / "in"
    b = _save(d / "b.png", _u8(0))
    a = _save(d / "a.JPG", _u8(1))
    deep = _save(d / "sub" / "c.png", _u8(2))
    (d / "notes.txt").write_text("x")
    odd = tmp_path / "odd.dat"
    odd.write_bytes(b"x")  # a named file is taken whatever its extension
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "missing.png"
    files, problems = cli.collect_inputs([odd, d, b, missing, d / "sub" / ".." / "a.JPG", empty])
    assert files == [odd, a, b]  # folder sorted, each file once (also spelled differently)
    assert problems[0] == (missing, "no such file or folder")
    assert problems[1][0] == empty and problems[1][1].startswith("no images (") and problems[1][1].endswith(str(empty))
    assert len(problems) == 2
    files, problems = cli.collect_inputs([d], recursive=True)
    assert files == [a, b, deep] and problems == []
    files, _ = cli.collect_inputs([d])  # default: not recursive
    assert files == [a, b]


def test_collect_inputs_reports_an_unlistable_folder(tmp_path, monkeypatch):
    import pnpdeblur.data.image_files as image_files

    d = tmp_path / "locked"
    d.mkdir()

    def refuse(folder, recursive=False):
        raise PermissionError(f"denied: {folder}")

    # collect_inputs imports list_images from image_files when it runs: patch it there
    monkeypatch.setattr(image_files, "list_images", refuse)
    files, problems = cli.collect_inputs([d, tmp_path / "gone"])
    assert files == [] and problems == [(d, f"denied: {d}"), (tmp_path / "gone", "no such file or folder")]


def test_plan_outputs_names(tmp_path):
    out = tmp_path / "o"
    files = [Path("a/x.png"), Path("b/x.jpg"), Path("X.tif"), Path("y.png")]
    plans = cli.plan_outputs(files, out)
    assert [(p.source, p.image, p.flow_png, p.flow_npy, p.renamed) for p in plans] == [
        (files[0], out / "x.png", None, None, False),
        (files[1], out / "x_1.png", None, None, True),
        (files[2], out / "X_2.png", None, None, True),
        (files[3], out / "y.png", None, None, False)]
    plans = cli.plan_outputs([Path("x.png"), Path("x_flow.png")], out, flow_npy=True)  # npy implies the picture
    assert [(p.image.name, p.flow_png.name, p.flow_npy.name, p.renamed) for p in plans] == [
        ("x.png", "x_flow.png", "x_flow.npy", False), ("x_flow_1.png", "x_flow_1_flow.png", "x_flow_1_flow.npy", True)]
    plans = cli.plan_outputs([Path("x.png"), Path("x_flow.png")], out, save_flow=True)
    assert [(p.image.name, p.flow_png.name, p.flow_npy) for p in plans] == [
        ("x.png", "x_flow.png", None), ("x_flow_1.png", "x_flow_1_flow.png", None)]
    # without flow outputs, x_flow.png's own name is free
    assert [p.image.name for p in cli.plan_outputs([Path("x.png"), Path("x_flow.png")], out)] == \
        ["x.png", "x_flow.png"]
    assert cli.plan_outputs([], out) == []
    plans = cli.plan_outputs([Path("x.png"), Path("x_kernel.png")], out, save_kernel=True)
    assert [(p.image.name, p.flow_png, p.flow_npy, p.kernel_png.name, p.renamed) for p in plans] == [
        ("x.png", None, None, "x_kernel.png", False), ("x_kernel_1.png", None, None, "x_kernel_1_kernel.png", True)]
    assert all(p.kernel_png is None for p in cli.plan_outputs([Path("x.png")], out, save_flow=True))


def test_overwrite_conflicts(tmp_path):
    d = tmp_path / "d"
    a = _save(d / "a.png", _u8(0))
    f = _save(d / "f_flow.png", _u8(1))
    n = d / "g_flow.npy"
    n.write_bytes(b"npy")
    g = _save(tmp_path / "e" / "g.png", _u8(2))
    plans = cli.plan_outputs([a, g], d / "sub" / "..", flow_npy=True)
    assert cli._overwrite_conflicts(plans, [a, g, n]) == [(d / "sub" / ".." / "a.png", a),
                                                         (d / "sub" / ".." / "g_flow.npy", n)]
    plans = cli.plan_outputs([f, g], d, save_flow=True)  # f_flow.png into its own folder: itself
    assert cli._overwrite_conflicts(plans, [f, g]) == [(d / "f_flow.png", f)]
    plans = cli.plan_outputs([f, g], tmp_path / "elsewhere", save_flow=True)
    assert cli._overwrite_conflicts(plans, [f, g]) == []
    k = _save(d / "a_kernel.png", _u8(3))
    plans = cli.plan_outputs([a], tmp_path / "elsewhere2", save_kernel=True)
    assert cli._overwrite_conflicts(plans, [a, k]) == []
    plans = cli.plan_outputs([Path(tmp_path / "z" / "a.png")], d, save_kernel=True)
    assert cli._overwrite_conflicts(plans, [tmp_path / "z" / "a.png", k]) == [(d / "a_kernel.png", k)]
    plans = cli.plan_outputs([Path(tmp_path / "z" / "f.png")], d, save_flow=True)
    assert cli._overwrite_conflicts(plans, [tmp_path / "z" / "f.png", f]) == [(d / "f_flow.png", f)]
    # a hard link: another path text, the same file
    link = tmp_path / "out" / "a.png"
    link.parent.mkdir()
    os.link(a, link)
    plans = cli.plan_outputs([a], link.parent)
    assert cli._overwrite_conflicts(plans, [a]) == [(link, a)]
    assert cli._overwrite_conflicts(cli.plan_outputs([a], tmp_path / "new"), [a]) == []


def test_same_file(tmp_path, monkeypatch):
    a = tmp_path / "a"
    a.write_bytes(b"1")
    b = tmp_path / "b"
    b.write_bytes(b"1")
    os.link(a, tmp_path / "h")
    assert cli._same_file(a, tmp_path / "x" / ".." / "a")
    assert cli._same_file(a, tmp_path / "h") and cli._same_file(tmp_path / "h", a)
    assert not cli._same_file(a, b)
    assert not cli._same_file(a, tmp_path / "nope") and not cli._same_file(tmp_path / "nope", a)

    def broken(x, y):
        raise OSError("stat failed")

    monkeypatch.setattr(os.path, "samefile", broken)
    assert cli._same_file(a, a)  # the same text needs no stat
    assert not cli._same_file(a, tmp_path / "h")


# -- image I/O ----------------------------------------------------------------------------------
def test_is_16bit_png(tmp_path):
    p16 = _save(tmp_path / "g16.png", np.arange(H * W, dtype=np.uint16).reshape(H, W) * 300)
    p8 = _save(tmp_path / "g8.png", _u8(0, 1))
    assert cli._is_16bit_png(p16) and not cli._is_16bit_png(p8)
    head = bytearray(p16.read_bytes())
    assert head[24] == 16
    for name, data in (("short.png", bytes(head[:32])), ("exact.png", bytes(head[:33])),
                       ("sig.png", b"\x89PNG\r\n\x1a\x0b" + bytes(head[8:])),
                       ("tag.png", bytes(head[:12]) + b"IHDX" + bytes(head[16:]))):
        (tmp_path / name).write_bytes(data)
    assert cli._is_16bit_png(tmp_path / "exact.png")  # signature, IHDR chunk and its CRC: 33 bytes
    for name in ("short.png", "sig.png", "tag.png", "missing.png"):
        assert not cli._is_16bit_png(tmp_path / name), name
    d = tmp_path / "dir.png"
    d.mkdir()
    assert not cli._is_16bit_png(d)  # open() fails: not 16-bit, no error


def test_read_keeps_grey_and_reports_16_bit(tmp_path):
    g = _u8(3, 1)
    img, sixteen = cli._read(_save(tmp_path / "g.png", g))
    assert img.shape == (H, W, 1) and img.dtype == np.float32 and not sixteen
    assert np.array_equal(img[..., 0], g / np.float32(255))
    rgba = np.dstack([_u8(4), np.full((H, W), 255, np.uint8)])
    img, _ = cli._read(_save(tmp_path / "rgba.png", rgba))
    assert img.shape == (H, W, 3)
    g16 = (np.arange(H * W).reshape(H, W) * 311).astype(np.uint16)
    img, sixteen = cli._read(_save(tmp_path / "g16.png", g16))
    assert sixteen and np.allclose(img[..., 0], g16 / 65535.0, atol=1e-7)
    with pytest.raises(FileNotFoundError):
        cli._read(tmp_path / "missing.png")


def test_to_storage():
    x = np.array([[[-0.5], [0.0], [0.5 / 255], [0.49 / 255], [1.0], [2.0], [0.5]]], np.float32)
    s = cli._to_storage(x, False)
    assert s.dtype == np.uint8 and s.shape == (1, 7)  # grey (H, W, 1) → (H, W)
    assert s.tolist() == [[0, 0, 1, 0, 255, 255, 128]]  # 127.5 rounds half to even in float64 … 128
    s = cli._to_storage(x, True)
    assert s.dtype == np.uint16 and s.tolist() == [[0, 0, 129, 126, 65535, 65535, 32768]]
    rgb = np.random.default_rng(0).random((3, 4, 3))
    s = cli._to_storage(rgb, False)
    assert s.shape == (3, 4, 3) and np.array_equal(s, _storage8(rgb))
    s2 = cli._to_storage(rgb[..., :2], False)
    assert s2.shape == (3, 4, 2)  # only one channel is squeezed
    assert cli._to_storage(np.full((2, 2), 0.6), False).shape == (2, 2)
    # float64 arithmetic: a float32 0.5 + 1 ulp below stays 0.5·255 = 127.5 → rounds to even
    assert cli._to_storage(np.float32([[1 / 255 * 0.5000001]]), False).tolist() == [[1]]


def test_atomic_save_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    seen = []

    def write(p):
        seen.append(p)
        p.write_bytes(b"new")

    cli._atomic_save(target, write)
    assert target.read_bytes() == b"new"
    assert seen == [tmp_path / f".x.part{os.getpid()}.png"]
    assert sorted(os.listdir(tmp_path)) == ["x.png"]

    def fail(p):
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="^disk full$"):
        cli._atomic_save(target, fail)
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["x.png"]

    def nothing(p):
        raise ValueError("refused")

    with pytest.raises(ValueError, match="^refused$"):
        cli._atomic_save(tmp_path / "y.png", nothing)
    assert sorted(os.listdir(tmp_path)) == ["x.png"]


def _decode_png(data):
    """A minimal PNG reader (filter type 0 only): header fields and samples, CRCs checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert int.from_bytes(data[pos + 8 + n:pos + 12 + n], "big") == zlib.crc32(tag + body)
        chunks.append((tag, body))
        pos += 12 + n
    assert [t for t, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"] and chunks[2][1] == b""
    ihdr = chunks[0][1]
    w, h = int.from_bytes(ihdr[:4], "big"), int.from_bytes(ihdr[4:8], "big")
    depth, colour, comp, filt, inter = ihdr[8:13]
    raw = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(h, -1)
    assert (raw[:, 0] == 0).all()
    c = {0: 1, 2: 3}[colour]
    samples = raw[:, 1:].copy().view(">u2").reshape(h, w, c)
    return (w, h, depth, colour, comp, filt, inter), samples


def test_png16_bytes_grey_and_rgb():
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    head, samples = _decode_png(cli._png16_bytes(rgb))
    assert head == (5, 3, 16, 2, 0, 0, 0) and np.array_equal(samples, rgb)
    grey = rng.integers(0, 65536, (4, 7)).astype(np.uint16)
    data = cli._png16_bytes(grey)
    head, samples = _decode_png(data)
    assert head == (7, 4, 16, 0, 0, 0, 0) and np.array_equal(samples[..., 0], grey)
    # the stream is compressed at level 6, as written
    n = int.from_bytes(data[33:37], "big")
    raw = np.concatenate([np.zeros((4, 1), np.uint8), grey.astype(">u2").view(np.uint8).reshape(4, -1)], 1)
    assert data[41:41 + n] == zlib.compress(raw.tobytes(), 6)


def test_imsave_8_and_16_bit(tmp_path):
    rgb = _u8(7)
    cli._imsave(tmp_path / "a.png", rgb)
    assert np.array_equal(io.imread(str(tmp_path / "a.png")), rgb)
    g16 = (np.arange(H * W).reshape(H, W) * 313).astype(np.uint16)
    cli._imsave(tmp_path / "b.png", g16)
    assert (tmp_path / "b.png").read_bytes() == cli._png16_bytes(g16)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]


def test_err_writes_a_line_to_stderr(capsys):
    cli._err("hello there")
    cap = capsys.readouterr()
    assert cap.err == "hello there\n" and cap.out == ""


# -- devices ------------------------------------------------------------------------------------
def test_resolve_device(monkeypatch):
    assert cli._resolve_device(None, False) is None and cli._resolve_device(None, True) is None
    assert cli._resolve_device("cpu", False) == "cpu" and cli._resolve_device("cpu", True) == "cpu"
    with pytest.raises(ValueError, match=r"^--device 'gpu0' is not a torch device \(.+\)$"):
        cli._resolve_device("gpu0", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^--device 'cuda:1': CUDA is not available$"):
        cli._resolve_device("cuda:1", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert cli._resolve_device("cuda", True) == "cuda:3"  # one GPU per torchrun process
    assert cli._resolve_device("cuda", False) == "cuda"
    assert cli._resolve_device("cuda:1", True) == "cuda:1"  # an explicit index is kept


# -- deblur: the command with a recording pd.deblur ---------------------------------------------
class FakeDeblur:
    """Stands in for ``pd.deblur``: x = 1.5·img − 0.25 (clipped on disk), a known flow."""

    def __init__(self, fail_on=(), sharp=(), warn=False):
        self.calls = []
        self.fail_on, self.sharp, self.warn = fail_on, sharp, warn

    @staticmethod
    def flow_of(img):
        h, w = img.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        return np.stack([xx * 0.5 - 3.0 + img.mean(), yy * 0.25 - 1.0]).astype(np.float64)

    def __call__(self, image, **kw):
        self.calls.append((image, kw))
        key = round(float(image.mean()), 6)
        if key in self.fail_on:
            raise RuntimeError("solver diverged")
        if self.warn:
            warnings.warn("pd.deblur returned image(s) [0] unchanged: because", UserWarning)
            warnings.warn("another warning", UserWarning)
        unchanged = key in self.sharp
        hist = [{"safeguard": {"blur_score": [1.2345], "threshold": 2.5}}]
        x = image.copy() if unchanged else 1.5 * image - 0.25
        return DeblurResult(x=x, flow=[self.flow_of(image) * 9, self.flow_of(image)], history=hist,
                            unchanged=[unchanged])


@pytest.fixture
def fake(monkeypatch):
    import pnpdeblur.estimation.learned as learned
    import pnpdeblur.pipeline as pipeline

    f = FakeDeblur()
    monkeypatch.setattr(pipeline, "deblur", f)
    f.prior, f.flow_model = object(), object()
    monkeypatch.setitem(cli.PRIORS, "dncnn", lambda: f.prior)
    monkeypatch.setattr(learned, "default_flow_model", lambda: f.flow_model)
    return f


def _key(img):
    return round(float((np.asarray(img, np.float64) / 255).mean()), 6)


def test_deblur_writes_each_result_with_the_arguments_passed_through(tmp_path, fake, capsys):
    rgb, grey = _u8(10), _u8(11, 1)
    a = _save(tmp_path / "in" / "a.png", rgb)
    b = _save(tmp_path / "in" / "b.jpg", grey)  # jpeg: values change on disk, compare with what is read
    out = tmp_path / "new" / "out"
    rc = cli.main(["deblur", str(a), "-o", str(out), str(b), "--iterations", "3", "--noise-level", "0.03",
                   "--hqs-iters", "2", "--cg-iters", "7", "--flow-scale", "0.5", "--device", "cpu", "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.err == "" and cap.out == ""
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    assert len(fake.calls) == 2
    for (image, kw), src in zip(fake.calls, (a, b)):
        want = io.imread(str(src)).astype(np.float32) / 255
        assert np.array_equal(image, want if want.ndim == 3 else want[..., None])  # grey stays (H, W, 1)
        assert kw == dict(iterations=3, prior=fake.prior, noise_level=0.03, flow_model=fake.flow_model, n_iter=2,
                          cg_iters=7, flow_scale=0.5, flow_ensemble=True, device="cpu", saturation=0.98,
                          boundary="unknown", gamma=None, progress=False, safeguard=True)
        res = io.imread(str(out / (src.stem + ".png")))
        assert res.dtype == np.uint8 and np.array_equal(res, _storage8(1.5 * image.astype(np.float64) - 0.25)
                                                        .squeeze())
    assert io.imread(str(out / "b.png")).shape == (H, W)


def test_deblur_defaults_reach_pd_deblur(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(12))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    (_, kw), = fake.calls
    # the solver budget and the flow ensemble are pd.deblur's own defaults
    sig = inspect.signature(_PD_DEBLUR).parameters
    assert (sig["n_iter"].default, sig["cg_iters"].default, sig["flow_ensemble"].default) == (None, None, True)
    # what --help says the defaults are is what pd.deblur chooses
    assert pipeline.ESTIMATED_FLOW_SOLVE == (cli.DEBLUR_HQS_ITERS, cli.DEBLUR_CG_ITERS) == (4, 5)
    assert pipeline.GIVEN_FLOW_SOLVE == (None, cli.GIVEN_FLOW_CG_ITERS) == (None, 30)
    hqs_defaults = inspect.signature(pnpdeblur.solvers.hqs).parameters
    assert hqs_defaults["cg_iters"].default == cli.GIVEN_FLOW_CG_ITERS and hqs_defaults["n_iter"].default is None
    betas, _ = pnpdeblur.solvers.schedules.resolve_schedule(0.01, None, None, None, 0.23, 0.2)
    assert len(betas) == cli.GIVEN_FLOW_HQS_ITERS == 8
    assert sig["saturation"].default == cli.DEBLUR_SATURATION == 0.98
    assert sig["boundary"].default == "unknown"
    assert kw == dict(iterations=1, prior=fake.prior, noise_level=None, flow_model=fake.flow_model, n_iter=None,
                      cg_iters=None, flow_scale=1.0, flow_ensemble=True, device=None, saturation=0.98,
                      boundary="unknown", gamma=None, progress=False, safeguard=True)
    assert sig["gamma"].default is None
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--gamma", "2.2"]) == 0
    (_, kw), = fake.calls
    assert kw["gamma"] == 2.2
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--boundary", "replicate"]) == 0
    (_, kw), = fake.calls
    assert kw["boundary"] == "replicate"
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--saturation", "0.9"]) == 0
    (_, kw), = fake.calls
    assert kw["saturation"] == 0.9
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--no-saturation"]) == 0
    (_, kw), = fake.calls
    assert kw["saturation"] is None
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--no-flow-ensemble"]) == 0
    (_, kw), = fake.calls
    assert kw["flow_ensemble"] is False
    fake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress", "--no-safeguard",
                     "--blur-threshold", "0"]) == 0
    (_, kw), = fake.calls
    assert kw["safeguard"] is False and kw["blur_threshold"] == 0.0


def test_deblur_priors_and_flow_weights_reach_pd_deblur(tmp_path, fake, monkeypatch):
    from pnpdeblur.nets.sen import SEN

    loaded = []
    sen = object()
    monkeypatch.setattr(SEN, "from_checkpoint", classmethod(lambda cls, p: loaded.append(p) or sen))
    tv = object()
    monkeypatch.setitem(cli.PRIORS, "tv", lambda: tv)
    a = _save(tmp_path / "a.png", _u8(13))
    w = tmp_path / "w.safetensors"
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--prior", "tv", "--flow-weights", str(w),
                     "--no-progress"]) == 0
    assert loaded == [w]
    (_, kw), = fake.calls
    assert kw["prior"] is tv and kw["flow_model"] is sen


def test_deblur_prior_weights_load_official_and_pnpdeblur_files(tmp_path, fake):
    import torch

    from pnpdeblur.nets import DnCNN, DRUNet
    from pnpdeblur.nets.drunet import official_keys
    from pnpdeblur.priors import DnCNNPrior, DRUNetPrior

    a = _save(tmp_path / "a.png", _u8(14))
    drunet = DRUNet(3, (4, 4, 4, 4), 1)
    torch.save({theirs: drunet.state_dict()[ours] for theirs, ours in official_keys(1).items()},
               tmp_path / "drunet_color.pth")
    dncnn = DnCNN(1, 4, 3, noise_map=False)
    torch.save({k.replace("body.", "model."): v for k, v in dncnn.state_dict().items()}, tmp_path / "dncnn_25.pth")
    dncnn.save(tmp_path / "mine.safetensors")
    for prior, path, kind, want in (("drunet", "drunet_color.pth", DRUNetPrior, drunet),
                                    ("dncnn", "dncnn_25.pth", DnCNNPrior, dncnn),
                                    ("dncnn", "mine.safetensors", DnCNNPrior, dncnn)):
        fake.calls.clear()
        assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--prior", prior, "--prior-weights",
                         str(tmp_path / path), "--no-progress"]) == 0
        (_, kw), = fake.calls
        got = kw["prior"]
        assert type(got) is kind and got.net.config == want.config
        for k, v in want.state_dict().items():
            assert torch.equal(got.net.state_dict()[k], v), (path, k)
    assert fake.calls[0][1]["prior"].ensemble is False  # the DnCNN set up as pd.deblur's default


@pytest.mark.parametrize("prior", ["tv", "drunet-medium"])
def test_deblur_prior_weights_need_a_learned_prior(tmp_path, fake, capsys, prior):
    a = _save(tmp_path / "a.png", _u8(15))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--prior", prior, "--prior-weights", "w.pth",
                     "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--prior-weights needs --prior dncnn, drunet, ffdnet, ircnn" in err and f"got --prior {prior}" in err
    assert not out.exists() and fake.calls == []


def test_prior_with_weights_factories(tmp_path):
    import torch

    from pnpdeblur.nets import DnCNN, FFDNet
    from pnpdeblur.priors import DenoiserPrior, DnCNNPrior

    assert sorted(cli.PRIOR_WEIGHTS) == ["dncnn", "drunet", "ffdnet", "ircnn"]
    dncnn = DnCNN(3, 4, 3, noise_map=False)
    torch.save({k.replace("body.", "model."): v for k, v in dncnn.state_dict().items()}, tmp_path / "dncnn.pth")
    made = cli._prior_with_weights("dncnn")(tmp_path / "dncnn.pth")
    assert type(made) is DnCNNPrior and made.ensemble is False and made.net.config == dncnn.config
    ffdnet = FFDNet(3, 4, 3)
    torch.save({k.replace("body.", "model."): v for k, v in ffdnet.state_dict().items()}, tmp_path / "ffdnet.pth")
    made = cli._prior_with_weights("ffdnet")(tmp_path / "ffdnet.pth")
    assert type(made) is DenoiserPrior and type(made.net) is FFDNet and made.ensemble is False
    assert torch.equal(made.net.body[0].weight, ffdnet.body[0].weight)


@pytest.mark.parametrize("prior", ["ffdnet", "ircnn"])
def test_deblur_priors_without_shipped_weights_need_a_file(tmp_path, fake, capsys, prior):
    a = _save(tmp_path / "a.png", _u8(17))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--prior", prior, "--no-progress"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"--prior {prior} needs --prior-weights PATH (no weights ship for it)" in err
    assert not out.exists() and fake.calls == []


def test_deblur_ffdnet_and_ircnn_weights_reach_pd_deblur(tmp_path, fake):
    import torch

    from pnpdeblur.nets import FFDNet, IRCNNBank
    from pnpdeblur.priors import DenoiserPrior

    a = _save(tmp_path / "a.png", _u8(18))
    ffdnet = FFDNet(3, 4, 3)
    torch.save({k.replace("body.", "model."): v for k, v in ffdnet.state_dict().items()}, tmp_path / "ffdnet.pth")
    bank = IRCNNBank(3, 4)
    torch.save({str(i): {k.replace("body.", "model."): v for k, v in net.state_dict().items()}
                for i, net in enumerate(bank.nets)}, tmp_path / "ircnn.pth")
    for prior, path, want in (("ffdnet", "ffdnet.pth", ffdnet), ("ircnn", "ircnn.pth", bank)):
        fake.calls.clear()
        assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--prior", prior, "--prior-weights",
                         str(tmp_path / path), "--no-progress"]) == 0
        (_, kw), = fake.calls
        got = kw["prior"]
        assert type(got) is DenoiserPrior and type(got.net) is type(want) and got.net.config == want.config
        for k, v in want.state_dict().items():
            assert torch.equal(got.net.state_dict()[k], v), (path, k)


def test_deblur_prior_weights_that_do_not_load_fail_the_inputs(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(16))
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--prior", "drunet", "--prior-weights",
                     str(tmp_path / "bad.pth"), "--no-progress"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert "cannot load the models" in err and "bad.pth" in err and fake.calls == []


def test_prior_factories(monkeypatch):
    import pnpdeblur.pipeline as pipeline
    import pnpdeblur.priors as priors

    made = object()
    monkeypatch.setattr(pipeline, "default_prior", lambda: made)
    assert cli._prior_dncnn() is made
    assert type(cli._prior_tv()) is priors.TV

    class Stand:
        def __init__(self, **kw):
            self.kw = kw

    monkeypatch.setattr(priors, "DRUNetPrior", Stand)
    assert type(cli._prior_drunet()) is Stand and cli._prior_drunet().kw == {}
    assert cli._prior_drunet_medium().kw == {"variant": "medium"}
    assert cli.PRIORS["tv"] is cli._prior_tv and cli.PRIORS["drunet"] is cli._prior_drunet
    assert cli.PRIORS["drunet-medium"] is cli._prior_drunet_medium


def test_load_models_default_flow_model(monkeypatch):
    import pnpdeblur.estimation.learned as learned

    p, m = object(), object()
    monkeypatch.setitem(cli.PRIORS, "tv", lambda: p)
    monkeypatch.setattr(learned, "default_flow_model", lambda: m)
    args = dict(prior="tv", flow_weights=None, prior_weights=None, flow=None)
    assert cli._load_models(SimpleNamespace(shake=False, **args)) == (p, m)
    # --shake and --flow need no flow network: none is loaded
    monkeypatch.setattr(learned, "default_flow_model", lambda: pytest.fail("SEN loaded for --shake or --flow"))
    assert cli._load_models(SimpleNamespace(shake=True, **args)) == (p, None)
    assert cli._load_models(SimpleNamespace(shake=False, **{**args, "flow": Path("f.npy")})) == (p, None)


SHAKE_H, SHAKE_W = 44, 52  # the CLI checks that --kernel-size (up to 41 below) fits before deblurring


class FakeShake:
    """Stands in for pd.deblur_shake: records its arguments, returns a known transform."""

    kernel = np.array([[0.0, 0.1, 0.0], [0.05, 0.5, 0.2], [0.0, 0.15, 0.0]])

    def __init__(self, sharp=False, support=7, overshot=False):
        self.calls, self.sharp, self.support, self.overshot = [], sharp, support, overshot

    def __call__(self, image, kernel_size, **kw):
        self.calls.append((image, kernel_size, kw))
        hist = [{"kernel_length": 2.5, "threshold": 7.0}]
        if self.overshot:  # a long estimate whose result rang out of range: solved, then left unchanged
            hist = [{"kernel_length": 12.0, "threshold": 7.0, "overshoot": 0.125, "overshoot_threshold": 0.03}]
            return SimpleNamespace(x=image.copy(), kernel=self.kernel, unchanged=[True], history=hist)
        if self.sharp:  # the estimate comes back on its whole support (7 px: the default of a 44x52 photo)
            pad = (self.support - 3) // 2
            return SimpleNamespace(x=image.copy(), kernel=np.pad(self.kernel, pad), unchanged=[True], history=hist)
        return SimpleNamespace(x=0.5 * image + 0.25, kernel=self.kernel, unchanged=[False], history=hist)


def test_deblur_shake_option_calls_pd_deblur_shake(tmp_path, fake, monkeypatch, capsys):
    import pnpdeblur.camera_shake as camera_shake

    shake = FakeShake()
    monkeypatch.setattr(camera_shake, "deblur_shake", shake)
    a = _save(tmp_path / "a.png", _u8(21, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"]) == 0
    assert fake.calls == []
    (image, size, kw), = shake.calls
    assert size is None  # deblur_shake's default support, which follows the photo
    assert kw == dict(prior=fake.prior, noise_level=None, device=None, boundary="unknown", saturation=0.98,
                      gamma=None, safeguard=True)
    want = io.imread(str(a)).astype(np.float32) / 255
    assert np.array_equal(image, want)
    assert np.array_equal(io.imread(str(out / "a.png")), _storage8(0.5 * want.astype(np.float64) + 0.25))
    assert sorted(os.listdir(out)) == ["a.png"]
    shake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--save-kernel", "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["a.png", "a_kernel.png"]
    written = io.imread(str(out / "a_kernel.png"))
    assert written.dtype == np.uint8 and written.shape == (3, 3)
    np.testing.assert_array_equal(written, np.round(255 * shake.kernel / shake.kernel.max()).astype(np.uint8))
    shake.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--kernel-size", "41", "--noise-level", "0.02",
                     "--boundary", "replicate", "--no-saturation", "--gamma", "2.2", "--no-progress",
                     "--no-safeguard", "--blur-threshold", "9"]) == 0
    (_, size, kw), = shake.calls
    assert size == 41
    assert kw == dict(prior=fake.prior, noise_level=0.02, device=None, boundary="replicate", saturation=None,
                      gamma=2.2, safeguard=False, blur_threshold=9.0)


def test_deblur_shake_option_reports_a_sharp_photo(tmp_path, fake, monkeypatch, capsys):
    import pnpdeblur.camera_shake as camera_shake

    monkeypatch.setattr(camera_shake, "deblur_shake", FakeShake(sharp=True))
    a = _save(tmp_path / "a.png", _u8(24, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"{a} looks sharp (estimated blur 2.50 px < 7 px): written unchanged" in err
    assert np.array_equal(io.imread(str(out / "a.png")), io.imread(str(a)))


@pytest.mark.parametrize("extra, named", [
    (["--iterations", "2"], "--iterations"), (["--flow-scale", "0.5"], "--flow-scale"),
    (["--save-flow"], "--save-flow"), (["--flow-npy"], "--flow-npy"), (["--hqs-iters", "2"], "--hqs-iters"),
    (["--cg-iters", "2"], "--cg-iters"), (["--no-flow-ensemble"], "--no-flow-ensemble"),
    (["--flow-weights", "w.safetensors"], "--flow-weights"),
])
def test_deblur_shake_refuses_the_flow_options(tmp_path, fake, capsys, extra, named):
    a = _save(tmp_path / "a.png", _u8(22))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"] + extra) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert named in err and "cannot be used with --shake" in err
    assert not out.exists() and fake.calls == []


class FakeAuto:
    """Stands in for pd.deblur_auto: records its arguments, returns a known transform and choice."""

    kernel = FakeShake.kernel

    def __init__(self, model="shake"):
        self.calls, self.model = [], model

    def __call__(self, image, **kw):
        self.calls.append((image, kw))
        x = image.copy() if self.model == "none" else 0.5 * image + 0.25
        nan = float("nan")
        return SimpleNamespace(x=x, model=[self.model], residual_flow=[nan if self.model == "none" else 2e-4],
                               residual_shake=[nan if self.model == "none" else 1e-4],
                               flow_result=SimpleNamespace(flow=[np.zeros((2,) + image.shape[:2], np.float32)]),
                               shake_result=SimpleNamespace(kernel=self.kernel))


def test_deblur_auto_option_calls_pd_deblur_auto(tmp_path, fake, monkeypatch, capsys):
    import pnpdeblur.auto as auto

    runs = FakeAuto()
    monkeypatch.setattr(auto, "deblur_auto", runs)
    a = _save(tmp_path / "a.png", _u8(25, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress", "--save-kernel", "--save-flow"]) == 0
    assert fake.calls == []
    (image, kw), = runs.calls
    assert kw == dict(kernel_size=None, flow_model=fake.flow_model, progress=False, prior=fake.prior, noise_level=None,
                      device=None, boundary="unknown", saturation=0.98, gamma=None, safeguard=True,
                      flow_options=dict(iterations=1, n_iter=None, cg_iters=None, flow_scale=1.0, flow_ensemble=True))
    want = io.imread(str(a)).astype(np.float32) / 255
    assert np.array_equal(image, want)
    assert np.array_equal(io.imread(str(out / "a.png")), _storage8(0.5 * want.astype(np.float64) + 0.25))
    assert sorted(os.listdir(out)) == ["a.png", "a_flow.png", "a_kernel.png"]
    np.testing.assert_array_equal(io.imread(str(out / "a_kernel.png")),
                                  np.round(255 * runs.kernel / runs.kernel.max()).astype(np.uint8))
    err = capsys.readouterr().err
    assert (f"pnpdeblur: note: {a}: one camera-shake kernel explains the photo better (reblur residual 0.0001 with "
            "the kernel, 0.0002 with the flow)") in err
    runs.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress", "--iterations", "2", "--cg-iters",
                     "3", "--kernel-size", "21", "--no-safeguard", "--no-flow-ensemble"]) == 0
    (_, kw), = runs.calls
    assert kw["kernel_size"] == 21 and kw["safeguard"] is False
    assert kw["flow_options"] == dict(iterations=2, n_iter=None, cg_iters=3, flow_scale=1.0, flow_ensemble=False)


def test_deblur_auto_names_the_flow_choice_and_a_sharp_photo(tmp_path, fake, monkeypatch, capsys):
    import pnpdeblur.auto as auto

    a = _save(tmp_path / "a.png", _u8(26, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    monkeypatch.setattr(auto, "deblur_auto", FakeAuto("flow"))
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress"]) == 0
    assert f"pnpdeblur: note: {a}: SEN's per-pixel flow explains the photo better" in capsys.readouterr().err
    only_kernel = FakeAuto("shake")
    only_kernel_call = only_kernel.__call__

    def flow_found_nothing(image, **kw):
        res = only_kernel_call(image, **kw)
        res.residual_flow = [float("nan")]
        return res

    monkeypatch.setattr(auto, "deblur_auto", flow_found_nothing)
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress"]) == 0
    assert ("one camera-shake kernel explains the photo better (reblur residual 0.0001 with the kernel, "
            "none (no blur found) with the flow)") in capsys.readouterr().err
    monkeypatch.setattr(auto, "deblur_auto", FakeAuto("none"))
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"pnpdeblur: {a} looks sharp to both blur models: written unchanged (--no-safeguard deblurs it anyway)" in err
    assert np.array_equal(io.imread(str(out / "a.png")), io.imread(str(a)))


def test_deblur_auto_says_the_kernel_model_could_not_judge_a_tiny_photo(tmp_path, fake, monkeypatch, capsys):
    # a 5 px support cannot show a 7 px blur: "sharp to both" would claim a judgement the kernel never made
    import pnpdeblur.auto as auto

    a = _save(tmp_path / "a.png", _u8(26, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    for support, judged in ((5, False), (7, True)):
        none = FakeAuto("none")
        none_call = none.__call__

        def tiny(image, **kw):
            res = none_call(image, **kw)
            res.shake_result = FakeShake(sharp=True, support=support)(image, None)
            return res

        monkeypatch.setattr(auto, "deblur_auto", tiny)
        assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress"]) == 0
        err = capsys.readouterr().err
        if judged:  # a 7 px support can show a 7 px blur: the kernel model did judge the photo sharp
            assert err == (f"pnpdeblur: {a} looks sharp to both blur models: written unchanged (--no-safeguard "
                           "deblurs it anyway)\n")
        else:
            assert err == (f"pnpdeblur: {a} looks sharp to SEN's flow and is too small for the kernel model to judge "
                           "(a 5x5 px kernel support, under the 7 px threshold; estimated blur 2.50 px): written "
                           "unchanged (--no-safeguard deblurs it anyway)\n")
        assert np.array_equal(io.imread(str(out / "a.png")), io.imread(str(a)))


def test_the_cli_says_a_kernel_estimate_failed_by_overshoot(tmp_path, fake, monkeypatch, capsys):
    import pnpdeblur.auto as auto
    import pnpdeblur.camera_shake as camera_shake

    a = _save(tmp_path / "a.png", _u8(28, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    monkeypatch.setattr(camera_shake, "deblur_shake", FakeShake(overshot=True))
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"]) == 0
    assert capsys.readouterr().err == (
        f"pnpdeblur: the camera-shake kernel estimated on {a} failed (deblurred with it, 0.125 of the values "
        "overshoot [0, 1], above 0.03): written unchanged (--no-safeguard deblurs it anyway)\n")
    assert np.array_equal(io.imread(str(out / "a.png")), io.imread(str(a)))
    none = FakeAuto("none")
    none_call = none.__call__

    def failed(image, **kw):
        res = none_call(image, **kw)
        res.shake_result = FakeShake(overshot=True)(image, None)
        return res

    monkeypatch.setattr(auto, "deblur_auto", failed)
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--no-progress"]) == 0
    assert capsys.readouterr().err == (
        f"pnpdeblur: {a} looks sharp to SEN's flow, and the camera-shake kernel estimated on it failed (deblurred "
        "with it, 0.125 of the values overshoot [0, 1], above 0.03): written unchanged (--no-safeguard deblurs it "
        "anyway)\n")
    # no overshoot in the history: the length safeguard's words
    monkeypatch.setattr(camera_shake, "deblur_shake", FakeShake(sharp=True))
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"]) == 0
    assert "looks sharp (estimated blur 2.50 px < 7 px)" in capsys.readouterr().err


def test_deblur_auto_refuses_a_blur_threshold_and_shake(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(27))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--auto", "--blur-threshold", "5"]) == cli.EXIT_USAGE
    assert ("--blur-threshold cannot be used with --auto (its two models measure blur in different ways)"
            in capsys.readouterr().err)
    _, d = _sub("deblur")
    with pytest.raises(SystemExit):
        d.parse_args(["x.png", "-o", "out", "--auto", "--shake"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert not out.exists() and fake.calls == []


def test_deblur_kernel_size_needs_shake_and_is_odd(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(23))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--kernel-size", "21"]) == cli.EXIT_USAGE
    assert "--kernel-size needs --shake or --auto" in capsys.readouterr().err
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--save-kernel"]) == cli.EXIT_USAGE
    assert "--save-kernel needs --shake" in capsys.readouterr().err
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--save-kernel", "--kernel-size", "5"]) == \
        cli.EXIT_USAGE
    assert "--kernel-size, --save-kernel needs --shake" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and fake.calls == []
    _, d = _sub("deblur")
    for bad in ("20", "1", "0", "x"):
        with pytest.raises(SystemExit):
            d.parse_args(["x.png", "-o", "out", "--shake", "--kernel-size", bad])
    assert d.parse_args(["x.png", "-o", "out", "--shake", "--kernel-size", "3"]).kernel_size == 3


def test_deblur_save_flow_and_npy(tmp_path, fake):
    a = _save(tmp_path / "a.png", _u8(14))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--save-flow", "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["a.png", "a_flow.png"]
    img = io.imread(str(a)).astype(np.float32) / 255
    last = FakeDeblur.flow_of(img).astype(np.float32)  # the LAST global iteration's flow
    assert np.array_equal(io.imread(str(out / "a_flow.png")), flow_to_color(last, symmetric=True))
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow-npy", "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == ["a.png", "a_flow.npy", "a_flow.png"]
    npy = np.load(out / "a_flow.npy")
    assert npy.dtype == np.float32 and np.array_equal(npy, last)


def test_deblur_16_bit_in_16_bit_out(tmp_path, fake):
    g16 = (np.arange(H * W).reshape(H, W) * 313).astype(np.uint16)
    a = _save(tmp_path / "g.png", g16)
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    res = io.imread(str(tmp_path / "o" / "g.png"))
    want = np.floor(np.clip(1.5 * (g16 / np.float32(65535)).astype(np.float32) - 0.25, 0, 1) * 65535 + 0.5)
    assert res.dtype == np.uint16 and np.abs(res.astype(np.int64) - want).max() <= 1


def test_deblur_bad_files_are_named_skipped_and_fail_the_run(tmp_path, fake, capsys):
    d = tmp_path / "in"
    good1 = _save(d / "good1.png", _u8(20))
    good2 = _save(d / "good2.png", _u8(21))
    boom = _save(d / "boom.png", _u8(22))
    corrupt = d / "corrupt.png"
    corrupt.write_bytes(good1.read_bytes()[:60])
    text = d / "text.png"
    text.write_text("hello\nsecond line\n")
    missing = d / "missing.png"
    fake.fail_on = (_key(io.imread(str(boom))),)
    out = tmp_path / "out"
    rc = cli.main(["deblur", str(good1), str(corrupt), str(text), str(missing), str(boom), str(good2),
                   "-o", str(out), "--no-progress"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1
    assert sorted(os.listdir(out)) == ["good1.png", "good2.png"]
    assert err[0] == f"pnpdeblur: skipped {missing}: no such file or folder"  # argument problems first
    assert err[1].startswith(f"pnpdeblur: skipped {corrupt}: not a readable image (cannot read image {corrupt}")
    assert err[2].startswith(f"pnpdeblur: skipped {text}: not a readable image (cannot read image {text}")
    assert err[3] == f"pnpdeblur: failed on {boom}: RuntimeError: solver diverged"
    assert err[4] == f"pnpdeblur: 4 input(s) failed: {missing}, {corrupt}, {text}, {boom}"
    assert len(err) == 5
    assert [c[0].shape for c in fake.calls] == [(H, W, 3)] * 3  # good1, boom, good2


def test_deblur_a_read_error_without_message_is_named_by_its_type(tmp_path, fake, capsys, monkeypatch):
    a = _save(tmp_path / "a.png", _u8(23))

    def bad_read(path):
        raise OSError()

    monkeypatch.setattr(cli._deblur, "_read", bad_read)
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"pnpdeblur: skipped {a}: not a readable image (OSError)"


def test_deblur_a_write_error_is_reported_and_the_rest_written(tmp_path, fake, capsys):
    a = _save(tmp_path / "in" / "a.png", _u8(24))
    b = _save(tmp_path / "in" / "b.png", _u8(25))
    out = tmp_path / "o"
    (out / "a.png").mkdir(parents=True)  # os.replace onto a folder fails
    assert cli.main(["deblur", str(a), str(b), "-o", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"pnpdeblur: cannot write the result of {a}: ")
    assert err[-1] == f"pnpdeblur: 1 input(s) failed: {a}"
    assert (out / "b.png").is_file() and sorted(os.listdir(out)) == ["a.png", "b.png"]
    # the flow picture's failure counts too (the image itself is written)
    (out / "c_flow.png").mkdir()
    c = _save(tmp_path / "in" / "c.png", _u8(26))
    assert cli.main(["deblur", str(c), "-o", str(out), "--save-flow", "--no-progress"]) == 1
    assert (out / "c.png").is_file()
    assert capsys.readouterr().err.splitlines()[0].startswith(f"pnpdeblur: cannot write the result of {c}: ")


def test_deblur_shake_option_says_a_support_under_the_threshold_cannot_judge(tmp_path, fake, monkeypatch, capsys):
    # a 5 px support cannot show a 7 px blur: "looks sharp" would be the wrong reason
    import pnpdeblur.camera_shake as camera_shake

    monkeypatch.setattr(camera_shake, "deblur_shake", FakeShake(sharp=True, support=5))
    a = _save(tmp_path / "a.png", _u8(24, h=SHAKE_H, w=SHAKE_W))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--shake", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err == (f"pnpdeblur: {a} is too small to judge its blur (a 5x5 px kernel support, under the 7 px "
                   "threshold; estimated blur 2.50 px): written unchanged (a larger --kernel-size with "
                   "--no-safeguard deblurs it anyway)\n")
    assert np.array_equal(io.imread(str(out / "a.png")), io.imread(str(a)))


def test_deblur_a_sharp_photo_is_said_once_in_the_clis_words(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(27))
    img = io.imread(str(a))
    fake.sharp, fake.warn = (_key(img),), True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    assert [str(w.message) for w in caught] == ["another warning"]  # pd.deblur's own sentence is hidden
    err = capsys.readouterr().err
    assert err == (f"pnpdeblur: {a} looks sharp (estimated blur 1.23 px < 2.5 px): written unchanged "
                   "(--no-safeguard deblurs it anyway)\n")
    assert np.array_equal(io.imread(str(tmp_path / "o" / "a.png")), img)


def test_deblur_renamed_outputs_are_announced(tmp_path, fake, capsys):
    a = _save(tmp_path / "one" / "a.png", _u8(28))
    b = _save(tmp_path / "two" / "a.png", _u8(29))
    assert cli.main(["deblur", str(a), str(b), "-o", str(tmp_path / "o"), "--no-progress"]) == 0
    assert capsys.readouterr().err == f"pnpdeblur: note: {b} → a_1.png (its name is taken by another input)\n"
    assert sorted(os.listdir(tmp_path / "o")) == ["a.png", "a_1.png"]


def test_deblur_refuses_to_overwrite_an_input(tmp_path, fake, capsys):
    d = tmp_path / "photos"
    a = _save(d / "a.png", _u8(30))
    before = a.read_bytes()
    assert cli.main(["deblur", str(d), "-o", str(d), "--no-progress"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"pnpdeblur deblur: error: output {d / 'a.png'} would overwrite the input {a}",
                   "pnpdeblur deblur: error: refusing to write; choose another output folder (-o)"]
    assert a.read_bytes() == before and fake.calls == []


def test_deblur_output_that_is_a_file(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(31))
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["deblur", str(a), "-o", str(f)]) == 2
    assert capsys.readouterr().err == f"pnpdeblur deblur: error: output {f} exists and is not a folder\n"
    assert fake.calls == []


def test_deblur_bad_device_is_a_usage_error(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(32))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.startswith("pnpdeblur deblur: error: --device 'gpu0' is not a torch device (")
    assert fake.calls == [] and not (tmp_path / "o").exists()


def test_deblur_malformed_world_size_is_a_usage_error(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    a = _save(tmp_path / "a.png", _u8(31))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == ("pnpdeblur deblur: error: WORLD_SIZE environment variable is not an int: "
                                       "'two'\n")
    assert fake.calls == [] and not (tmp_path / "o").exists()


def test_deblur_models_that_cannot_load_fail_every_file(tmp_path, fake, capsys, monkeypatch):
    def broken():
        raise RuntimeError("weights corrupt")

    monkeypatch.setitem(cli.PRIORS, "dncnn", broken)
    a = _save(tmp_path / "a.png", _u8(33))
    b = _save(tmp_path / "b.png", _u8(34))
    assert cli.main(["deblur", str(a), str(b), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "pnpdeblur deblur: error: cannot load the models: weights corrupt",
        f"pnpdeblur: 2 input(s) failed: {a}, {b}"]
    assert (tmp_path / "o").is_dir() and fake.calls == []


def test_deblur_nothing_to_do_creates_no_folder(tmp_path, fake, capsys):
    assert cli.main(["deblur", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()
    assert capsys.readouterr().err.splitlines()[-1] == f"pnpdeblur: 1 input(s) failed: {tmp_path / 'nope.png'}"


def test_deblur_progress_bars(tmp_path, fake, capsys):
    a = _save(tmp_path / "a.png", _u8(35))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o")]) == 0
    (_, kw), = fake.calls
    assert kw["progress"] is True
    err = capsys.readouterr().err
    assert "images: 100%" in err and "1/1" in err and "img/s" in err


class _Dist:
    """A fake torchrun rank: ``world`` processes, this one is ``rank``."""

    def __init__(self, monkeypatch, rank, world, others_failed=(), initialised=False):
        from pnpdeblur.train import distributed as dist

        self.destroyed = 0
        self.gathered = []
        monkeypatch.setattr(dist, "env_world_size", lambda: world)
        monkeypatch.setattr(dist, "init_distributed", lambda: True)
        monkeypatch.setattr(dist, "is_distributed", lambda: initialised)
        monkeypatch.setattr(dist, "rank", lambda: rank)
        monkeypatch.setattr(dist, "world_size", lambda: world)
        monkeypatch.setattr(dist, "is_main_process", lambda: rank == 0)

        def gather(obj):
            self.gathered.append(list(obj))
            return [list(others_failed), obj] if rank == 1 else [obj, list(others_failed)]

        monkeypatch.setattr(dist, "all_gather_objects", gather)
        monkeypatch.setattr(torch.distributed, "destroy_process_group", self._destroy)

    def _destroy(self):
        self.destroyed += 1


def test_deblur_torchrun_rank_1_does_its_share_and_stays_quiet(tmp_path, fake, capsys, monkeypatch):
    files = [_save(tmp_path / "in" / f"f{i}.png", _u8(40 + i)) for i in range(4)]
    dup = _save(tmp_path / "other" / "f0.png", _u8(50))
    d = _Dist(monkeypatch, rank=1, world=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    rc = cli.main(["deblur", str(tmp_path / "in"), str(dup), str(tmp_path / "missing.png"), "-o",
                   str(tmp_path / "o"), "--device", "cuda"])
    # rank 1 of 2: plans 1 and 3 of [f0, f1, f2, f3, f0_1]; argument problems and notes are rank 0's
    assert sorted(os.listdir(tmp_path / "o")) == ["f1.png", "f3.png"]
    assert [kw["device"] for _, kw in fake.calls] == ["cuda:1", "cuda:1"]
    err = capsys.readouterr().err
    assert "pnpdeblur:" not in err and "images (rank 1)" in err  # only its progress bar
    assert d.gathered == [[]] and d.destroyed == 1 and rc == 0
    assert files[0].exists()


def test_deblur_torchrun_rank_0_reports_every_ranks_failures(tmp_path, fake, capsys, monkeypatch):
    _save(tmp_path / "in" / "f0.png", _u8(60))
    _save(tmp_path / "in" / "f1.png", _u8(61))
    d = _Dist(monkeypatch, rank=0, world=2, others_failed=["x/f9.png"], initialised=True)
    missing = tmp_path / "missing.png"
    rc = cli.main(["deblur", str(tmp_path / "in"), str(missing), "-o", str(tmp_path / "o"), "--no-progress"])
    assert rc == 1 and sorted(os.listdir(tmp_path / "o")) == ["f0.png"]
    assert capsys.readouterr().err.splitlines() == [
        f"pnpdeblur: skipped {missing}: no such file or folder",
        f"pnpdeblur: 2 input(s) failed: {missing}, x/f9.png"]
    assert d.gathered == [[str(missing)]] and d.destroyed == 0  # the group was the caller's


def test_deblur_torchrun_failures_of_another_rank_fail_this_one(tmp_path, fake, capsys, monkeypatch):
    _save(tmp_path / "in" / "f0.png", _u8(62))
    _Dist(monkeypatch, rank=1, world=2, others_failed=["x/f9.png"])
    assert cli.main(["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    assert capsys.readouterr().err == ""  # rank 1 has no share and says nothing
    assert not (tmp_path / "o").exists()


def test_deblur_single_process_does_not_gather(tmp_path, fake, monkeypatch):
    from pnpdeblur.train import distributed as dist

    monkeypatch.setattr(dist, "env_world_size", lambda: 1)
    monkeypatch.setattr(dist, "init_distributed", lambda: pytest.fail("no group for one process"))
    monkeypatch.setattr(dist, "all_gather_objects", lambda obj: pytest.fail("nothing to gather"))
    a = _save(tmp_path / "a.png", _u8(63))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 0


def test_deblur_intermixed_inputs(tmp_path, fake):
    a = _save(tmp_path / "a.png", _u8(64))
    b = _save(tmp_path / "b.png", _u8(65))
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), str(b), "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "o")) == ["a.png", "b.png"]


# -- finetune ------------------------------------------------------------------------------------
class TinyNet(nn.Module):
    config = {"width": 1}

    def __init__(self, tag="pre"):
        super().__init__()
        self.tag = tag
        self.scale = nn.Parameter(torch.ones(()))
        self.moved = []

    def to(self, *a, **k):
        self.moved.append(a)
        return self

    @classmethod
    def pretrained(cls):
        return cls("shipped")

    @classmethod
    def from_checkpoint(cls, path):
        return cls(f"ckpt:{Path(path).name}")


class NoWeights(TinyNet):
    @classmethod
    def pretrained(cls):
        raise FileNotFoundError("weights/none.safetensors")


class FakeReblur:
    """``finetune_reblur`` → a net tagged with its target; ``deblur_frames`` → a constant image."""

    def __init__(self, fail=False):
        self.tune_calls, self.deblur_calls, self.fail = [], [], fail

    def finetune(self, net, clip, **kw):
        self.tune_calls.append((net, clip.clone(), kw))
        if self.fail:
            raise RuntimeError("loss is NaN")
        t = TinyNet(f"tuned:{kw.get('target')}")
        t.target = kw.get("target")
        t.reblur_settings = {"frames": kw["frames"], "kernel": kw["kernel"], "tau": kw["tau"], "obj": object,
                             "milestones": [1, 2]}
        return t

    def deblur(self, net, frames):
        self.deblur_calls.append((net.tag, frames.clone()))
        # group: 0.5·frame + 0.25 (with values below 0 and above 1 for the clamp); single: (t + 1) / 8
        if net.target is None:
            return 1.5 * frames - 0.25
        return torch.full_like(frames, (net.target + 1) / 8)


@pytest.fixture
def ft(monkeypatch):
    import pnpdeblur.train.reblur as reblur

    f = FakeReblur()
    monkeypatch.setattr(reblur, "finetune_reblur", f.finetune)
    monkeypatch.setattr(reblur, "deblur_frames", f.deblur)
    monkeypatch.setitem(cli.FINETUNE_NETS, "tiny", TinyNet)
    monkeypatch.setitem(cli.FINETUNE_NETS, "noweights", NoWeights)
    return f


def _clip(tmp_path, n=4, grey=False, names=None, sixteen=False):
    d = tmp_path / "clip"
    names = names or [f"f{k}" for k in (9, 10, 11, 12, 13)[:n]]
    for k, name in enumerate(names):
        if sixteen:
            arr = ((np.arange(H * W).reshape(H, W) * (k + 3) * 37) % 65536).astype(np.uint16)
        else:
            arr = _u8(100 + k, 1 if grey else 3)
        _save(d / f"{name}.png", arr)
    return d, [d / f"{name}.png" for name in names]


def _frames(paths):
    out = []
    for p in paths:
        a = io.imread(str(p))
        a = a.astype(np.float32) / np.float32(np.iinfo(a.dtype).max)
        out.append(np.repeat(a[..., None], 3, 2) if a.ndim == 2 else a)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def test_finetune_group_passes_options_and_writes_the_tuned_nets_frames(tmp_path, ft, capsys):
    d, paths = _clip(tmp_path, 3)
    out = tmp_path / "out"
    rc = cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--frames", "2", "--kernel", "lut",
                   "--tau", "0.5", "--steps", "5", "--lr", "0.002", "--alpha", "0.3", "--flow-every", "4",
                   "--crop", "8", "--batch", "2", "--seed", "9", "--no-progress", "--reblur-only", "--device", "cpu",
                   "--margin", "reach"])
    assert rc == 0, capsys.readouterr().err
    (net, clip, kw), = ft.tune_calls
    assert net.tag == "shipped" and net.moved == [("cpu",)]
    assert clip.dtype == torch.float32 and torch.equal(clip, _frames(paths))
    assert kw == dict(frames=2, kernel="lut", tau=0.5, margin="reach", steps=5, lr=0.002, alpha=0.3, supervised=False, flow="tvl1",
                      flow_every=4, train_flow=False, crop=8, batch_size=2, seed=9, progress=False, group=True)
    (tag, frames), = ft.deblur_calls
    assert tag == "tuned:None" and torch.equal(frames, clip)
    assert sorted(os.listdir(out)) == ["f10.png", "f11.png", "f9.png"]
    for k, p in enumerate(paths):
        want = _storage8((1.5 * clip[k] - 0.25).permute(1, 2, 0).numpy().astype(np.float64))
        assert np.array_equal(io.imread(str(out / p.name)), want)


def test_finetune_defaults(tmp_path, ft, capsys):
    d, paths = _clip(tmp_path, 3)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o")]) == 0
    (net, _, kw), = ft.tune_calls
    assert net.moved == []  # no --device: the network stays where it is
    assert kw == dict(frames=3, kernel="two_segment", tau=1.0, margin=0, steps=200, lr=1e-4, alpha=0.1, supervised=None,
                      flow="tvl1", flow_every=20, train_flow=False, crop=128, batch_size=8, seed=0, progress=True,
                      group=True)


def test_finetune_single_three_frames_end_frames_take_the_nearest_net(tmp_path, ft):
    d, paths = _clip(tmp_path, 5)
    out = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--single", "--no-progress"]) == 0
    assert [(kw["group"], kw["target"]) for _, _, kw in ft.tune_calls] == [(False, 1), (False, 2), (False, 3)]
    clip = _frames(paths)
    # frame 0 by the net tuned for 1, frame 4 by the net tuned for 3
    assert [t for t, _ in ft.deblur_calls] == ["tuned:1", "tuned:1", "tuned:2", "tuned:3", "tuned:3"]
    order = [1, 0, 2, 3, 4]
    for (_, frames), u in zip(ft.deblur_calls, order):
        assert torch.equal(frames, clip[u:u + 1])
    for u, t in enumerate([1, 1, 2, 3, 3]):
        assert (io.imread(str(out / paths[u].name)) == _storage8(np.float64((t + 1) / 8))).all(), u


def test_finetune_single_two_frames_tunes_every_frame(tmp_path, ft, capsys):
    d, paths = _clip(tmp_path, 3)
    out = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--single", "--frames", "2",
                     "--no-progress", "--save-net", str(tmp_path / "t.safetensors")]) == 0
    assert [kw["target"] for _, _, kw in ft.tune_calls] == [0, 1, 2]
    assert [t for t, _ in ft.deblur_calls] == ["tuned:0", "tuned:1", "tuned:2"]
    for u in range(3):
        assert (io.imread(str(out / paths[u].name)) == _storage8(np.float64((u + 1) / 8))).all()
    assert capsys.readouterr().err == \
        "pnpdeblur finetune: note: --save-net is ignored with --single (one network per frame)\n"
    assert not (tmp_path / "t.safetensors").exists()


def test_finetune_grey_and_16_bit_frames(tmp_path, ft):
    d, paths = _clip(tmp_path, 3, sixteen=True)
    out = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--no-progress"]) == 0
    clip = _frames(paths)
    (_, c, _), = ft.tune_calls
    assert c.shape == (3, 3, H, W) and torch.equal(c, clip)  # grey repeated to RGB for the net
    for k, p in enumerate(paths):
        res = io.imread(str(out / p.name))
        want = np.clip(1.5 * clip[k, 0].double().numpy() - 0.25, 0, 1) * 65535
        assert res.dtype == np.uint16 and res.shape == (H, W)
        assert np.abs(res - want).max() <= 0.5 + 1e-3


def test_finetune_grey_output_is_the_channel_mean(tmp_path, ft, monkeypatch):
    d, paths = _clip(tmp_path, 3, grey=True)
    import pnpdeblur.train.reblur as reblur

    weights = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)
    monkeypatch.setattr(reblur, "deblur_frames", lambda net, f: f * weights)
    out = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--no-progress"]) == 0
    for k, p in enumerate(paths):
        g = io.imread(str(p)).astype(np.float64) / 255
        res = io.imread(str(out / p.name))
        assert res.shape == (H, W) and np.abs(res - g * 0.5 * 255).max() <= 0.5 + 1e-3


def test_finetune_save_net_writes_the_tuned_net_with_its_settings(tmp_path, ft):
    d, paths = _clip(tmp_path, 3)
    saved = tmp_path / "nets" / "t.safetensors"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--no-progress",
                     "--save-net", str(saved)]) == 0
    h = read_header(saved)
    assert h["architecture"] == "TinyNet" and h["config"] == {"width": 1}
    assert h["frames"] == ["f9.png", "f10.png", "f11.png"]
    assert h["finetune"] == {"frames": 3, "kernel": "two_segment", "tau": 1.0, "obj": str(object),
                             "milestones": [1, 2]}


def test_finetune_pairs_and_flow_checkpoint(tmp_path, ft, monkeypatch):
    import pnpdeblur.data as data
    from pnpdeblur.nets.flownets import FlowNetS

    made = {}

    class Aug:
        def __init__(self, crop):
            made["crop"] = crop

    class Pairs:
        def __init__(self, b, s, transform, seed):
            made.update(b=b, s=s, transform=transform, seed=seed)

    monkeypatch.setattr(data, "PairAugment", Aug)
    monkeypatch.setattr(data, "PairedFolderDataset", Pairs)
    flows = []
    monkeypatch.setattr(FlowNetS, "from_checkpoint", classmethod(lambda cls, p: flows.append(p) or "flownet"))
    d, _ = _clip(tmp_path, 3)
    ck = tmp_path / "flow.safetensors"
    ck.write_bytes(b"x")
    for crop, want in (("100", min(H, W)), ("5", 5)):
        ft.tune_calls.clear()
        assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--no-progress",
                         "--pairs", "pb", "ps", "--crop", crop, "--seed", "4", "--flow", str(ck)]) == 0
        (_, _, kw), = ft.tune_calls
        assert isinstance(kw["supervised"], Pairs) and kw["flow"] == "flownet"
        assert made["crop"] == want and made["b"] == Path("pb") and made["s"] == Path("ps") and made["seed"] == 4
        assert isinstance(made["transform"], Aug)
    assert flows == [ck, ck]


def test_finetune_wide_frames_crop_by_the_smaller_side(tmp_path, ft, monkeypatch):
    import pnpdeblur.data as data

    got = []
    monkeypatch.setattr(data, "PairAugment", lambda crop: got.append(crop))
    monkeypatch.setattr(data, "PairedFolderDataset", lambda *a, **k: "pairs")
    d = tmp_path / "tall"
    for k in range(3):
        _save(d / f"{k}.png", _u8(k, 3, h=W, w=H))  # 16 high, 12 wide
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--no-progress",
                     "--pairs", "b", "s"]) == 0
    assert got == [H]


def test_finetune_errors_load_and_tuning(tmp_path, ft, capsys):
    d, _ = _clip(tmp_path, 3)
    o = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "noweights", "-o", str(o)]) == 1
    assert capsys.readouterr().err == ("pnpdeblur finetune: error: cannot load the network or the data: no shipped "
                                       "weights for NoWeights (weights/none.safetensors); pass a checkpoint with "
                                       "--net PATH\n")
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--flow", "nope.safetensors"]) == 1
    assert capsys.readouterr().err == ("pnpdeblur finetune: error: cannot load the network or the data: --flow "
                                       "'nope.safetensors' is neither 'tvl1' nor a checkpoint file\n")
    ft.fail = True
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--no-progress"]) == 1
    assert capsys.readouterr().err == "pnpdeblur finetune: error: fine-tuning failed: RuntimeError: loss is NaN\n"
    assert not o.exists()  # nothing written, no folder


def test_finetune_single_failure_is_reported(tmp_path, ft, capsys):
    d, _ = _clip(tmp_path, 3)
    ft.fail = True
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--single"]) == 1
    assert capsys.readouterr().err == "pnpdeblur finetune: error: fine-tuning failed: RuntimeError: loss is NaN\n"


def test_finetune_write_error(tmp_path, ft, capsys):
    d, _ = _clip(tmp_path, 3)
    o = tmp_path / "o"
    (o / "f10.png").mkdir(parents=True)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--no-progress"]) == 1
    assert capsys.readouterr().err.startswith("pnpdeblur finetune: error: cannot write the results: ")
    # a --save-net that cannot be written is a write error too
    o2 = tmp_path / "o2"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o2), "--no-progress", "--save-net",
                     str(tmp_path / "t.json")]) == 1
    assert capsys.readouterr().err.startswith("pnpdeblur finetune: error: cannot write the results: path must not")
    assert len(os.listdir(o2)) == 3  # the frames came first


def test_finetune_usage_errors(tmp_path, ft, capsys):
    prog = "pnpdeblur finetune: error: "
    o = tmp_path / "o"
    assert cli.main(["finetune", str(tmp_path / "none"), "--net", "tiny", "-o", str(o)]) == 2
    assert capsys.readouterr().err == f"{prog}folder not found: {tmp_path / 'none'}\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["finetune", str(empty), "--net", "tiny", "-o", str(o)]) == 2
    assert capsys.readouterr().err.startswith(f"{prog}no images (")
    d, paths = _clip(tmp_path, 2)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o)]) == 2
    assert capsys.readouterr().err == f"{prog}--frames 3 needs at least 3 frames in {d}, found 2\n"
    (d / "f10.png").unlink()
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--frames", "2"]) == 2
    assert capsys.readouterr().err == f"{prog}--frames 2 needs at least 2 frames in {d}, found 1\n"
    _save(d / "f10.png", _u8(5, 3, h=H, w=W + 1))
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--frames", "2"]) == 2
    assert capsys.readouterr().err == f"{prog}the frames must all have the same size, found [({H}, {W}), ({H}, {W + 1})]\n"
    (d / "f10.png").write_text("not a picture")
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--frames", "2"]) == 2
    assert capsys.readouterr().err.startswith(f"{prog}cannot read image {d / 'f10.png'}")
    _save(d / "f10.png", _u8(6))
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(o), "--frames", "2", "--device", "gpu0"]) == 2
    assert capsys.readouterr().err.startswith(f"{prog}--device 'gpu0' is not a torch device (")
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(d)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{prog}output {d / p} would overwrite the input {d / p}" for p in ("f9.png", "f10.png")]
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(f), "--frames", "2"]) == 2
    assert capsys.readouterr().err == f"{prog}output {f} exists and is not a folder\n"
    assert ft.tune_calls == [] and not o.exists()


def test_finetune_two_frames_are_enough_for_the_two_frame_model(tmp_path, ft):
    d, _ = _clip(tmp_path, 2)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--frames", "2",
                     "--no-progress"]) == 0
    assert len(ft.tune_calls) == 1


def test_net_class_and_load_deblur_net(tmp_path, monkeypatch):
    assert cli._net_class(TinyNet) is TinyNet
    from pnpdeblur.nets.deepdeblur import DeepDeblur

    assert cli._net_class("pnpdeblur.nets.deepdeblur:DeepDeblur") is DeepDeblur
    with pytest.raises(FileNotFoundError, match=r"^Nope is not available in this installation of pnpdeblur \("):
        cli._net_class("pnpdeblur.nets.deepdeblur:Nope")
    with pytest.raises(FileNotFoundError, match=r"^X is not available in this installation of pnpdeblur \("):
        cli._net_class("pnpdeblur.no_such_module:X")
    monkeypatch.setitem(cli.FINETUNE_NETS, "tiny", TinyNet)
    net = cli.load_deblur_net("TINY")  # names are case-insensitive
    assert type(net) is TinyNet and net.tag == "shipped"
    # a checkpoint naming one of the classes, by class name (a class entry or a "module:Class" string)
    ck = tmp_path / "t.safetensors"
    save_checkpoint(ck, {"w": torch.zeros(1)}, "TinyNet", {})
    net = cli.load_deblur_net(str(ck))
    assert type(net) is TinyNet and net.tag == "ckpt:t.safetensors"
    monkeypatch.setitem(cli.FINETUNE_NETS, "tiny", "tests.test_cli_direct:TinyNet")
    monkeypatch.setattr(cli._nets, "_net_class", lambda spec: TinyNet if spec == "tests.test_cli_direct:TinyNet"
                        else pytest.fail(f"imported {spec}"))
    assert cli.load_deblur_net(str(ck)).tag == "ckpt:t.safetensors"


def test_load_deblur_net_errors(tmp_path, monkeypatch):
    monkeypatch.setitem(cli.FINETUNE_NETS, "tiny", TinyNet)
    names = ", ".join(cli.FINETUNE_NETS)
    with pytest.raises(FileNotFoundError, match=rf"^--net 'nothing' is neither a known network \({names}\) "
                                                r"nor a checkpoint file$"):
        cli.load_deblur_net("nothing")
    with pytest.raises(FileNotFoundError, match=r"is neither a known network"):
        cli.load_deblur_net(str(tmp_path))  # a folder is no checkpoint
    ck = tmp_path / "sen.safetensors"
    save_checkpoint(ck, {"w": torch.zeros(1)}, "SEN", {})
    with pytest.raises(ValueError, match=rf"^{re.escape(str(ck))} holds a 'SEN' checkpoint, not a deblurring "
                                         r"network that can be fine-tuned \(DeepDeblur, DeblurGANGenerator, "
                                         r"DeblurNet, DVD, TinyNet\)$"):
        cli.load_deblur_net(str(ck))
    monkeypatch.setitem(cli.FINETUNE_NETS, "noweights", NoWeights)
    with pytest.raises(FileNotFoundError, match=r"^no shipped weights for NoWeights \(weights/none.safetensors\); "
                                                r"pass a checkpoint with --net PATH$"):
        cli.load_deblur_net("noweights")


def test_load_flow(tmp_path, monkeypatch):
    from pnpdeblur.nets.flownets import FlowNetS

    assert cli._load_flow("tvl1") == "tvl1"
    with pytest.raises(FileNotFoundError, match=r"^--flow 'TVL1' is neither 'tvl1' nor a checkpoint file$"):
        cli._load_flow("TVL1")
    monkeypatch.setattr(FlowNetS, "from_checkpoint", classmethod(lambda cls, p: ("loaded", p)))
    ck = tmp_path / "f.safetensors"
    ck.write_bytes(b"x")
    assert cli._load_flow(str(ck)) == ("loaded", ck)
    with pytest.raises(FileNotFoundError):
        cli._load_flow(str(tmp_path))


def test_natural_order(tmp_path):
    for name in ("f10.png", "F9.png", "f9b.png", "g1.png", "f100.png", "a.txt", "1.png", "f09a.png"):
        (tmp_path / name).write_bytes(b"")
    got = [p.name for p in cli.sorted_frames(tmp_path)]
    assert got == ["1.png", "F9.png", "f09a.png", "f9b.png", "f10.png", "f100.png", "g1.png"]
    assert cli._natural_key(Path("x/Ab12c.png")) == ((1, 0, "ab"), (0, 12, ""), (1, 0, "c.png"))


# -- train ---------------------------------------------------------------------------------------
def test_train_forwards_to_each_recipe(monkeypatch):
    import pnpdeblur.train.deblurnets as deblurnets
    import pnpdeblur.train.dncnn as dncnn
    import pnpdeblur.train.drunet as drunet
    import pnpdeblur.train.rpgan as rpgan
    import pnpdeblur.train.sen as sen

    got = []
    for mod, tag in ((sen, "sen"), (rpgan, "rpgan"), (drunet, "drunet"), (dncnn, "dncnn"), (deblurnets, "nets")):
        monkeypatch.setattr(mod, "main", lambda argv, tag=tag: got.append((tag, argv)) or f"{tag}-result")
    assert sorted(cli.TRAINERS) == ["deblurgan", "deblurnet", "deepdeblur", "dncnn", "drunet", "dvd", "flownets",
                                    "rpgan", "sen"]
    for name in cli.TRAINERS:
        got.clear()
        assert cli.main(["train", name, "--steps", "2", "-h"]) == 0
        own = ("sen", "rpgan", "drunet", "dncnn")  # recipes of their own; the rest share train.deblurnets
        want = ("nets", [name, "--steps", "2", "-h"]) if name not in own else \
            (name, ["--steps", "2", "-h"])
        assert got == [want]
        assert type(got[0][1]) is list
    assert cli._train_sen(("a",)) == "sen-result" and cli._train_rpgan(("a",)) == "rpgan-result"
    assert cli._train_drunet(("a",)) == "drunet-result" and cli._train_dncnn(("a",)) == "dncnn-result"
    assert cli._deblurnet_trainer("dvd")(("x",)) == "nets-result" and got[-1] == ("nets", ["dvd", "x"])


def test_train_without_a_model_prints_help(capsys):
    assert cli.main(["train"]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith("usage: pnpdeblur train {")
    for flag in ("-h", "--help"):
        assert cli.main(["train", flag]) == 0
        cap = capsys.readouterr()
        assert cap.err == "" and cap.out.startswith("usage: pnpdeblur train {")


def test_train_unknown_model(capsys):
    assert cli.main(["train", "nosuch", "--x"]) == 2
    assert capsys.readouterr().err == ("pnpdeblur train: error: unknown model 'nosuch' (choose from "
                                       + ", ".join(cli.TRAINERS) + ")\n")


def test_train_recipe_exit_codes(monkeypatch, capsys):
    def exits(code):
        def run(argv):
            raise SystemExit(code)
        return run

    for code, rc in ((None, 0), (0, 0), (3, 3), ("bad corpus", 1)):
        monkeypatch.setitem(cli.TRAINERS, "sen", exits(code))
        assert cli.main(["train", "sen"]) == rc
    assert capsys.readouterr().err == "bad corpus\n"


def test_exit_code():
    assert cli._exit_code(None) == 0 and cli._exit_code(0) == 0 and cli._exit_code(2) == 2
    assert cli._exit_code("msg") == 1


# -- main ----------------------------------------------------------------------------------------
def test_main_without_a_command_prints_help(capsys):
    assert cli.main([]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith("usage: pnpdeblur [-h] [--version] COMMAND")


def test_main_reads_sys_argv(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pnpdeblur", "--version"])
    assert cli.main() == 0
    assert capsys.readouterr().out == f"pnpdeblur {pnpdeblur.__version__}\n"


def test_main_interrupted(monkeypatch, capsys):
    def stop(argv):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.TRAINERS, "sen", stop)
    assert cli.main(["train", "sen"]) == 130
    assert capsys.readouterr().err == "pnpdeblur: interrupted\n"


def test_main_unknown_options_are_usage_errors(tmp_path, capsys, ft):
    assert cli.main(["deblur", "x.png", "-o", str(tmp_path), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    d, _ = _clip(tmp_path, 3)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert ft.tune_calls == []


# -- checks added after the first mutation run ---------------------------------------------------
def test_finetune_device_is_taken_as_given_not_per_torchrun_rank(tmp_path, ft, monkeypatch):
    # finetune is one process: 'cuda' stays 'cuda' even where torchrun's LOCAL_RANK is set
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "2")
    d, _ = _clip(tmp_path, 3)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--device", "cuda",
                     "--no-progress"]) == 0
    (net, _, _), = ft.tune_calls
    assert net.moved == [("cuda",)]


def test_finetune_single_tunes_the_loaded_network_each_time(tmp_path, ft):
    d, _ = _clip(tmp_path, 4)
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--single",
                     "--no-progress"]) == 0
    assert [(type(n), n.tag) for n, _, _ in ft.tune_calls] == [(TinyNet, "shipped")] * 2
    assert ft.tune_calls[0][0] is ft.tune_calls[1][0]  # each frame starts from the same loaded weights


def test_finetune_creates_nested_output_folders(tmp_path, ft):
    d, paths = _clip(tmp_path, 3)
    out = tmp_path / "a" / "b" / "c"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--no-progress"]) == 0
    assert sorted(os.listdir(out)) == sorted(p.name for p in paths)


def test_finetune_grey_mean_is_taken_after_the_clamp(tmp_path, ft, monkeypatch):
    # an RGB result outside [0, 1] for a grey frame: each channel is clamped before the mean
    import pnpdeblur.train.reblur as reblur

    shift = torch.tensor([-0.7, 0.0, 0.7]).view(1, 3, 1, 1)
    monkeypatch.setattr(reblur, "deblur_frames", lambda net, f: f + shift)
    d, paths = _clip(tmp_path, 3, grey=True)
    out = tmp_path / "o"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(out), "--no-progress"]) == 0
    for p in paths:
        g = io.imread(str(p)).astype(np.float64) / 255
        want = (np.clip(g - 0.7, 0, 1) + g + np.clip(g + 0.7, 0, 1)) / 3
        res = io.imread(str(out / p.name))
        assert res.shape == (H, W) and np.abs(res - want * 255).max() <= 0.5 + 1e-3


def test_finetune_save_net_of_a_network_without_config(tmp_path, ft, monkeypatch):
    class Bare(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
            self.reblur_settings = {"steps": 3}

    import pnpdeblur.train.reblur as reblur

    monkeypatch.setattr(reblur, "finetune_reblur", lambda net, clip, **kw: Bare())
    monkeypatch.setattr(reblur, "deblur_frames", lambda net, f: f)
    d, _ = _clip(tmp_path, 3)
    saved = tmp_path / "bare.safetensors"
    assert cli.main(["finetune", str(d), "--net", "tiny", "-o", str(tmp_path / "o"), "--no-progress",
                     "--save-net", str(saved)]) == 0
    h = read_header(saved)
    assert h["architecture"] == "Bare" and h["config"] == {} and h["finetune"] == {"steps": 3}


# The options' names, metavars and what their help says first: the synopsis users read in
# ``--help`` (a changed metavar or a help line that no longer says what the option is).
_OPTIONS = {
    "deblur": [
        (["inputs"], "IN", "image files or folders of images ("),
        (["-o", "--output"], "OUTDIR", "output folder (created if needed)"),
        (["-r", "--recursive"], None, "search folders recursively"),
        (["--iterations"], "N", "global iterations: flow re-estimated on the previous result"),
        (["--prior"], None, "HQS prior: the shipped DnCNN or DRUNet denoiser, or total variation"),
        (["--noise-level"], "S", "noise std of the photos on the [0, 1] scale"),
        (["--noise-floor"], "S", "lowest noise level HQS solves with"),
        (["--flow-scale"], "F", "estimate the flow at this scale (<= 1) for blur beyond SEN's range"),
        (["--device"], None, "torch device, e.g. 'cuda' or 'cuda:1' (default: cpu); under torchrun"),
        (["--save-flow"], None, "also write <stem>_flow.png, the colour-coded flow of the last iteration"),
        (["--flow-npy"], None, "also write <stem>_flow.npy, the raw flow (2, H, W) float32 in pixels"),
        (["--no-progress"], None, "no progress bars"),
        (["--no-safeguard"], None, "deblur every photo, even those that look sharp"),
        (["--blur-threshold"], "PX", "median flow length (px; with --shake, the estimated kernel's length"),
        (["--saturation"], "S", "channel values at or above S"),
        (["--no-saturation"], None, "fit every pixel, clipped or not"),
        (["--boundary"], None, "what lies beyond the photo's edges: 'unknown' (a crop of a larger scene"),
        (["--gamma"], "G", "the photos' tone curve as a power law"),
        (["--shake"], None, "estimate one curved camera-shake kernel for the whole photo"),
        (["--auto"], None, "run both blur models, SEN's per-pixel flow and one camera-shake kernel"),
        (["--kernel-size"], "PX", "with --shake or --auto: odd bound on the blur's extent in pixels"),
        (["--save-kernel"], None, "with --shake or --auto: also write <stem>_kernel.png"),
        (["--kernel-npy"], None, "with --shake or --auto: also write <stem>_kernel.npy, the kernel's weights"),
        (["--flow"], "FILE.npy", "deblur every input with this per-pixel motion flow instead of SEN's"),
        (["--kernel"], "FILE", "deblur every input with this blur kernel (PSF) instead of estimating one"),
        (["--net"], "NAME|PATH", "run this end-to-end deblurring network on each photo instead"),
        (["--hqs-iters"], "N", "HQS iterations per global iteration"),
        (["--cg-iters"], "N", "conjugate-gradient budget of each HQS x-step"),
        (["--no-flow-ensemble"], None, "run SEN once per flow estimate instead of averaging it over the 8 flips"),
        (["--flow-weights"], "PATH", "SEN checkpoint to use instead of the shipped one"),
        (["--prior-weights"], "PATH", "weights for --prior dncnn, drunet, ffdnet or ircnn"),
    ],
    "finetune": [
        (["frames_dir"], "FRAMES_DIR", "folder of consecutive blurred frames"),
        (["--net"], "NAME|PATH", "network (deepdeblur, deblurgan, deblurnet, dvd; dvd has no shipped weights)"),
        (["-o", "--output"], "OUTDIR", "output folder (created if needed)"),
        (["--frames"], None, "blur model from 2 frames (F- = -F+) or 3 (both neighbours)"),
        (["--kernel"], None, "reblur model: per-pixel two-segment kernel, its look-up table, or warping"),
        (["--tau"], None, "exposure cycle in (0, 1]"),
        (["--margin"], "PX|reach", "border of each crop left out of the reblur loss: pixels, or 'reach'"),
        (["--steps"], None, "fine-tuning steps"),
        (["--lr"], None, "Adam learning rate"),
        (["--alpha"], None, "weight of the reblur loss"),
        (["--reblur-only"], None, "no supervised term (the paper found this to degenerate)"),
        (["--pairs"], ("BLUR_DIR", "SHARP_DIR"), "supervised (blurred, sharp) pairs matched by file name"),
        (["--single"], None, "fine-tune one copy per frame (Chen's 'individual')"),
        (["--flow"], "tvl1|PATH", "optical flow: scikit-image TV-L1 or a FlowNetS checkpoint"),
        (["--flow-every"], "K", "re-estimate the flows every K steps"),
        (["--train-flow"], None, "fine-tune the --flow FlowNetS together with the deblurring net"),
        (["--crop"], None, "training crop size"),
        (["--batch"], None, "images per step, half reblur crops and half supervised pairs"),
        (["--seed"], None, None),
        (["--device"], None, "torch device, e.g. 'cuda' (default: cpu)"),
        (["--save-net"], "PATH", "also save the fine-tuned network as a checkpoint (group mode)"),
        (["--no-progress"], None, "no progress bars"),
    ],
}


@pytest.mark.parametrize("command", sorted(_OPTIONS))
def test_options_their_metavars_and_what_their_help_says(command):
    _, p = _sub(command)
    got = [(a.option_strings or [a.dest], a.metavar, a.help) for a in p._actions if a.dest != "help"]
    assert [g[:2] for g in got] == [w[:2] for w in _OPTIONS[command]]
    for (names, _, text), (_, _, start) in zip(got, _OPTIONS[command]):
        assert (text is None) if start is None else text.startswith(start), (names, text)
        if text is not None:
            assert not text.endswith(" "), names
    # the helps written in two pieces: the second piece too
    ends = {"--flow-scale": "range of about 46 px (default: 1)", "--device": "under torchrun 'cuda' means cuda:LOCAL_RANK",
            "--flow-npy": "in pixels (u right, v down); implies --save-flow",
            "--no-safeguard": ("whose estimated blur is below --blur-threshold is written unchanged, and with "
                               "--shake or --auto one whose kernel estimate failed: its result overshoots [0, 1])"),
            "--blur-threshold": ("the calibrated value of the shipped SEN, 6 px, or 4.5 px with --no-flow-ensemble; "
                                 "recalibrate for other --flow-weights)"),
            "--flow-weights": "(e.g. written by 'pnpdeblur train sen --out PATH')",
            "--kernel": "or warping (default: two_segment)",
            "--pairs": "(default: the library's synthetic pairs)",
            "--tau": "(default: 1, as Chen et al.; 0.5 for exposures without gap)",
            "--margin": "own reach (default: 0, as Chen et al.)"}
    n = 0
    for names, _, text in got:
        skip = (command == "finetune" and names[-1] == "--device") or (command == "deblur" and names[-1] == "--kernel")
        if names[-1] in ends and not skip:
            assert text.endswith(ends[names[-1]]), (names, text)
            n += 1
    assert n == {"deblur": 6, "finetune": 4}[command]


def test_subcommand_descriptions_and_usage_lines():
    ap, d = _sub("deblur")
    _, f = _sub("finetune")
    _, t = _sub("train")
    assert ap.prog == "pnpdeblur" and d.prog == "pnpdeblur deblur" and f.prog == "pnpdeblur finetune"
    assert " ".join(ap.description.split()) == ("Plug-and-play motion deblurring: blind deblurring of photos with a "
                                                "learned motion-flow estimator (SEN) and HQS/CG deconvolution with a "
                                                "denoising prior.")
    for p in (ap, d, f, t):
        assert max(map(len, p.description.splitlines())) <= 88  # wrapped (the formatter keeps lines as they are)
    def text(p):
        return " ".join(p.description.split())

    assert text(d) == ("Blind motion deblurring of photos: estimate the per-pixel motion flow with SEN, deconvolve "
                       "by HQS/CG with a prior, and repeat on the result (global iterations, Wu et al.). With --flow "
                       "or --kernel, non-blind deblurring with a known blur.")
    assert text(f) == ("Self-supervised test-time fine-tuning (Chen et al., Reblur2Deblur): deblur consecutive frames "
                       "with a network, estimate the optical flow between the deblurred frames, reblur them with the "
                       "per-pixel kernel of the flows and fine-tune the network so that the reblurred frames match "
                       "the input (plus a supervised term on synthetic or given pairs); then write the frames "
                       "deblurred by the fine-tuned network.")
    assert text(t) == ("Train a network; the arguments after the model name go to its training recipe ('pnpdeblur "
                       "train <model> --help' lists them).")
    assert (ap.epilog, d.epilog, f.epilog) == (cli._TOP_EPILOG, cli._DEBLUR_EPILOG, cli._FINETUNE_EPILOG)
    assert t.epilog == "example:\n  pnpdeblur train sen --corpus photos/ --steps 6000 --device cuda --amp"
    _, w = _sub("warmup")
    assert w.prog == "pnpdeblur warmup" and max(map(len, w.description.splitlines())) <= 88
    assert text(w) == ("Compile the CPU kernels ahead of their first use: each is compiled in its own process, side "
                       "by side, into numba's on-disk cache, so that the first deblur does not spend its first minute "
                       "compiling them one after the other. Run it once after installing, or when building a "
                       "container image.")
    for p in (ap, d, f, t):
        assert p.formatter_class is argparse.RawDescriptionHelpFormatter  # the epilogs keep their lines
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.dest == "command" and sub.metavar == "COMMAND" and list(sub.choices) == ["deblur", "finetune", "train",
                                                                                                     "warmup"]
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps == {"deblur": "deblur photos (files or folders) into an output folder",
                     "finetune": "Reblur2Deblur: fine-tune a deblurring net on a video's blurred frames and deblur them",
                     "train": "train a network: 'pnpdeblur train <model> [args…]' (see 'pnpdeblur train -h')",
                     "warmup": "compile the CPU kernels now, several at a time (numba caches them on disk)"}
    model = next(a for a in t._actions if a.dest == "model")
    assert (model.nargs, model.metavar) == ("?", "MODEL")


def test_required_arguments(capsys):
    for argv, missing in ((["deblur", "x.png"], "-o/--output"), (["deblur", "-o", "out"], "IN"),
                          (["finetune", "clip", "-o", "out"], "--net"), (["finetune", "clip", "--net", "n"], "-o/--output"),
                          (["finetune", "--net", "n", "-o", "out"], "FRAMES_DIR")):
        assert cli.main(argv) == 2
        assert capsys.readouterr().err.strip().endswith(f"error: the following arguments are required: {missing}")


def test_deblur_progress_bar_follows_the_terminal_width(tmp_path, fake, capsys, monkeypatch):
    import tqdm.std

    widths = iter([50] + [70] * 100)  # the terminal is widened after the bar starts
    monkeypatch.setattr(tqdm.std, "_screen_shape_wrapper", lambda: (lambda fp: (next(widths), 20)))
    a = _save(tmp_path / "a.png", _u8(70))
    b = _save(tmp_path / "b.png", _u8(71))
    assert cli.main(["deblur", str(a), str(b), "-o", str(tmp_path / "o")]) == 0
    lines = [s for s in capsys.readouterr().err.replace("\n", "\r").split("\r") if s.startswith("images")]
    assert lines and len(lines[-1]) == 70 and lines[-1].startswith("images: 100%")


def test_deblur_recursive_reaches_the_folder_search(tmp_path, fake):
    d = tmp_path / "in"
    _save(d / "top.png", _u8(80))
    _save(d / "sub" / "deep.png", _u8(81))
    assert cli.main(["deblur", str(d), "-o", str(tmp_path / "flat"), "--no-progress"]) == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["top.png"]
    assert cli.main(["deblur", str(d), "-o", str(tmp_path / "rec"), "--no-progress", "--recursive"]) == 0
    assert sorted(os.listdir(tmp_path / "rec")) == ["deep.png", "top.png"]


def test_deblur_model_failure_keeps_the_argument_problems(tmp_path, fake, capsys, monkeypatch):
    def broken():
        raise RuntimeError("no weights")

    monkeypatch.setitem(cli.PRIORS, "dncnn", broken)
    a = _save(tmp_path / "a.png", _u8(82))
    missing = tmp_path / "missing.png"
    assert cli.main(["deblur", str(missing), str(a), "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"pnpdeblur: 2 input(s) failed: {missing}, {a}"


def test_deblur_saves_the_last_of_three_flows(tmp_path, fake, monkeypatch):
    import pnpdeblur.pipeline as pipeline

    def three(image, **kw):
        res = fake(image, **kw)
        res.flow = [res.flow[-1] * 5, res.flow[-1] * 3, res.flow[-1]]
        return res

    monkeypatch.setattr(pipeline, "deblur", three)
    a = _save(tmp_path / "a.png", _u8(83))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow-npy", "--iterations", "3", "--no-progress"]) == 0
    img = io.imread(str(a)).astype(np.float32) / 255
    assert np.array_equal(np.load(out / "a_flow.npy"), FakeDeblur.flow_of(img).astype(np.float32))


def test_imsave_of_a_flat_image_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # skimage's "is a low contrast image" would be noise on stderr
        cli._imsave(tmp_path / "flat.png", np.full((4, 5), 7, np.uint8))
    assert np.array_equal(io.imread(str(tmp_path / "flat.png")), np.full((4, 5), 7, np.uint8))


def test_overwrite_conflict_names_the_input_by_its_own_path(tmp_path):
    a = _save(tmp_path / "in" / "a.png", _u8(84))
    h = tmp_path / "other" / "h.png"
    h.parent.mkdir()
    os.link(a, h)  # two inputs, one file
    plans = cli.plan_outputs([h], a.parent)  # writes in/h.png: not an input
    assert cli._overwrite_conflicts(plans, [h, a]) == []
    plans = cli.plan_outputs([a], a.parent)
    assert cli._overwrite_conflicts(plans, [h, a]) == [(a, a)]  # a itself, not its alias h


@pytest.mark.parametrize("command, option, value, says", [
    ("deblur", "--iterations", "0", "expected a positive integer, got '0'"),
    ("deblur", "--noise-level", "-1", "expected a number >= 0, got '-1'"),
    ("deblur", "--flow-scale", "2", r"expected a number in (0, 1], got '2'"),
    ("deblur", "--blur-threshold", "nan", "expected a finite number, got 'nan'"),
    ("deblur", "--hqs-iters", "x", "expected a positive integer, got 'x'"),
    ("deblur", "--cg-iters", "-2", "expected a positive integer, got '-2'"),
    ("deblur", "--prior", "bm4d", "invalid choice: 'bm4d'"),
    ("finetune", "--tau", "0", r"expected a number in (0, 1], got '0'"),
    ("finetune", "--margin", "-2", "expected an integer >= 0 or 'reach', got '-2'"),
    ("finetune", "--margin", "auto", "expected an integer >= 0 or 'reach', got 'auto'"),
    ("finetune", "--steps", "0", "expected a positive integer, got '0'"),
    ("finetune", "--lr", "0", "expected a number > 0, got '0'"),
    ("finetune", "--alpha", "-1", "expected a number >= 0, got '-1'"),
    ("finetune", "--flow-every", "0", "expected a positive integer, got '0'"),
    ("finetune", "--crop", "0", "expected a positive integer, got '0'"),
    ("finetune", "--batch", "0", "expected a positive integer, got '0'"),
    ("finetune", "--frames", "4", "invalid choice: 4"),
    ("finetune", "--kernel", "box", "invalid choice: 'box'"),
])
def test_bad_option_values_name_the_option(command, option, value, says, capsys):
    base = ["deblur", "x.png", "-o", "out"] if command == "deblur" else ["finetune", "clip", "--net", "n", "-o", "out"]
    assert cli.main([*base, option, value]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"pnpdeblur {command}: error: argument {option}") and says in last, last


@pytest.mark.parametrize("mode", ["--shake", "--auto"])
@pytest.mark.parametrize("size, extra, says", [
    (15, [], r"the image's smaller side 15 is too small for a kernel estimate \(at least 16x16 pixels\)"),
    (40, ["--kernel-size", "41"], r"--kernel-size 41 must not exceed the image's smaller side 40 .*: pass an odd "
                                  r"--kernel-size <= 39"),
])
def test_deblur_shake_and_auto_name_the_kernel_size_flag_on_a_small_photo(tmp_path, fake, monkeypatch, capsys,
                                                                          mode, size, extra, says):
    import pnpdeblur.auto as auto
    import pnpdeblur.camera_shake as camera_shake

    monkeypatch.setattr(camera_shake, "deblur_shake", lambda *a, **k: pytest.fail("deblurred a photo too small"))
    monkeypatch.setattr(auto, "deblur_auto", lambda *a, **k: pytest.fail("deblurred a photo too small"))
    small = _save(tmp_path / "small.png", _u8(27, h=size, w=size + 8))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(small), "-o", str(out), mode, "--no-progress"] + extra) == 1
    err = capsys.readouterr().err
    assert re.search(f"pnpdeblur: failed on {re.escape(str(small))}: ValueError: {says}$", err, re.M), err
    assert "kernel_size" not in err and fake.calls == []
