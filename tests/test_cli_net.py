"""``pnpdeblur deblur --net NAME|PATH``: an end-to-end network on photos from the command line.

Driven in-process through ``pnpdeblur.cli.main`` (as tests/test_cli.py does). The expected
outputs come from the networks' public API (``Net.pretrained().restore(photo)`` or
``Net.from_checkpoint(path).restore(photo)``) on the photo as ``pd.data.read_image`` reads it,
never from the command line's own helpers. 40×48 photos, the shipped CPU weights by name and
tiny checkpoints written with the nets' own ``save`` for PATH.
"""
import os
import re

import numpy as np
import pytest
import torch
from skimage import io

from pnpdeblur import cli
from pnpdeblur.data import read_image, sample_image
from pnpdeblur.data._png import png_header, read_png16
from pnpdeblur.nets.deblurgan import DeblurGANGenerator
from pnpdeblur.nets.deblurnet import DeblurNet
from pnpdeblur.nets.deepdeblur import DeepDeblur
from pnpdeblur.nets.dvd import DVD
from pnpdeblur.nets.sen import SEN
from test_cli import _save  # writes a photo, making its folder

H, W = 40, 48
SHIPPED = {"deepdeblur": DeepDeblur, "deblurgan": DeblurGANGenerator}


def _photo(name, channels, bits=8, h=H, w=W):
    img = sample_image(name, (h, w), channels=channels)
    img = img[..., 0] if channels == 1 else img
    return np.round(img * (2 ** bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)


def _expected(net, path, bits=8):
    """What the CLI must write for ``path``: the net's restore of the photo as read, stored in ``bits``."""
    x = net.restore(read_image(path, channels=None))
    x = np.clip(np.asarray(x, np.float64), 0, 1)
    x = np.floor(x * (2 ** bits - 1) + 0.5).astype(np.uint8 if bits == 8 else np.uint16)
    return x[..., 0] if x.shape[-1] == 1 else x


def _run(*args):
    return cli.main(["deblur", *map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny checkpoints of the three single-image nets (seeded, so not the identity)."""
    d = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    nets = {"DeepDeblur": DeepDeblur(features=4, blocks=1, scales=2),
            "DeblurNet": DeblurNet(n1_channels=(4, 4, 4, 4, 4, 4), width=4, depth=1, kernel_size=3),
            "DeblurGANGenerator": DeblurGANGenerator(features=4, blocks=1, dropout=0.0)}
    out = {}
    for name, net in nets.items():
        out[name] = d / f"{name}.safetensors"
        net.save(out[name])
    return out


# -- results: the networks' own restore, written like the pipelines' results -------------------
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_net_by_name_writes_its_restore_of_each_photo(tmp_path, name):
    rgb = _save(tmp_path / "in" / "rgb.png", _photo("astronaut", 3))
    grey = _save(tmp_path / "in" / "grey.png", _photo("camera", 1))
    out = tmp_path / "out"
    assert _run(rgb, grey, "-o", out, "--net", name.upper()) == 0  # names are case-insensitive
    assert sorted(os.listdir(out)) == ["grey.png", "rgb.png"]
    net = SHIPPED[name].pretrained()
    for src in (rgb, grey):
        got, inp = io.imread(str(out / src.name)), io.imread(str(src))
        assert got.dtype == np.uint8 and got.shape == inp.shape  # grey stays grey
        assert np.array_equal(got, _expected(net, src)), src.name
        assert np.abs(got.astype(int) - inp.astype(int)).max() > 0  # the net did something
        # the same through restore's uint8 path (rounded in float32 there: one level at most)
        assert np.abs(got.astype(int) - net.restore(inp).astype(int)).max() <= 1


@pytest.mark.parametrize("cls", [DeepDeblur, DeblurNet, DeblurGANGenerator], ids=lambda c: c.__name__)
def test_checkpoint_path_is_loaded_as_its_architecture(tmp_path, ckpts, cls):
    src = _save(tmp_path / "a.png", _photo("coffee", 3))
    out = tmp_path / "out"
    assert _run(src, "-o", out, "--net", ckpts[cls.__name__]) == 0
    got = io.imread(str(out / "a.png"))
    assert np.array_equal(got, _expected(cls.from_checkpoint(ckpts[cls.__name__]), src))
    if cls in SHIPPED.values():  # the checkpoint's weights, not the shipped ones of the same class
        assert not np.array_equal(got, _expected(cls.pretrained(), src))


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_png_and_tiff_give_16_bit_pngs(tmp_path, channels):
    import tifffile

    img = _photo("coffee" if channels == 3 else "camera", channels, bits=16)
    png, tif = tmp_path / "in" / "p16.png", tmp_path / "in" / "t16.tif"
    png.parent.mkdir()
    if channels == 3:
        cli._imsave(png, img)  # Pillow cannot write 16-bit colour PNGs
    else:
        io.imsave(str(png), img, check_contrast=False)
    tifffile.imwrite(tif, img)
    out = tmp_path / "out"
    assert _run(png, tif, "-o", out, "--net", "deepdeblur") == 0
    net = DeepDeblur.pretrained()
    for src, name in ((png, "p16.png"), (tif, "t16.png")):
        head = png_header(out / name)
        assert (head["bit_depth"], head["colour_type"]) == (16, 0 if channels == 1 else 2), name  # grey stays grey
        got = read_png16(out / name)
        assert got is not None and got.dtype == np.uint16, name
        got = got.reshape(img.shape)  # (H, W, 1) for grey
        assert np.array_equal(got, _expected(net, src, bits=16)), name
        assert np.abs(got.astype(int) - img.astype(int)).max() > 0


def test_rgba_loses_its_alpha_and_jpeg_is_read(tmp_path):
    rgba = np.dstack([_photo("astronaut", 3), np.full((H, W), 200, np.uint8)])
    a = _save(tmp_path / "in" / "a.png", rgba)
    j = _save(tmp_path / "in" / "j.jpg", _photo("coffee", 3))
    out = tmp_path / "out"
    assert _run(a, j, "-o", out, "--net", "deblurgan") == 0
    net = DeblurGANGenerator.pretrained()
    got = io.imread(str(out / "a.png"))
    assert got.shape == (H, W, 3) and np.array_equal(got, _expected(net, a))
    assert np.array_equal(io.imread(str(out / "j.png")), _expected(net, j))


# -- what applies with --net: inputs, names, refusal to overwrite, folders, failures, torchrun ----
def test_recursive_folders_and_shared_stems(tmp_path, capsys):
    d = tmp_path / "in"
    _save(d / "top.png", _photo("astronaut", 3))
    _save(d / "sub" / "deep.png", _photo("camera", 1))
    (d / "notes.txt").write_text("not an image")
    other = _save(tmp_path / "other" / "top.jpg", _photo("coffee", 3))
    assert _run(d, "-o", tmp_path / "flat", "--net", "deepdeblur") == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["top.png"]
    assert _run(d, other, "-o", tmp_path / "rec", "-r", "--net", "deepdeblur", "--device", "cpu") == 0
    assert sorted(os.listdir(tmp_path / "rec")) == ["deep.png", "top.png", "top_1.png"]
    assert f"{other} → top_1.png" in capsys.readouterr().err
    net = DeepDeblur.pretrained()
    assert np.array_equal(io.imread(str(tmp_path / "rec" / "deep.png")), _expected(net, d / "sub" / "deep.png"))
    assert np.array_equal(io.imread(str(tmp_path / "rec" / "top_1.png")), _expected(net, other))


def test_bad_inputs_are_named_and_fail_the_run(tmp_path, capsys):
    d = tmp_path / "in"
    good = _save(d / "good.png", _photo("astronaut", 3))
    corrupt = d / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:100])
    missing = d / "missing.png"
    out = tmp_path / "out"
    assert _run(corrupt, good, missing, "-o", out, "--net", "deepdeblur") == 1
    err = capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["good.png"]
    assert f"skipped {corrupt}: not a readable image" in err and f"skipped {missing}: no such file" in err
    assert err.splitlines()[-1] == f"pnpdeblur: 2 input(s) failed: {missing}, {corrupt}"


def test_a_photo_the_net_cannot_take_is_named_and_the_rest_written(tmp_path, monkeypatch, capsys):
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    b = _save(tmp_path / "b.png", _photo("coffee", 3, w=W - 2))
    real = DeepDeblur.restore

    def restore(self, photo):
        if photo.shape[1] == W - 2:  # b only
            raise RuntimeError("out of memory")
        return real(self, photo)

    monkeypatch.setattr(DeepDeblur, "restore", restore)
    assert _run(a, b, "-o", tmp_path / "out", "--net", "deepdeblur") == 1
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png"]
    err = capsys.readouterr().err
    assert f"pnpdeblur: failed on {b}: RuntimeError: out of memory" in err


def test_never_overwrites_an_input(tmp_path, capsys):
    d = tmp_path / "photos"
    a = _save(d / "a.png", _photo("astronaut", 3))
    before = a.read_bytes()
    assert _run(d, "-o", d, "--net", "deepdeblur") == 2
    assert a.read_bytes() == before and os.listdir(d) == ["a.png"]
    assert f"output {a} would overwrite the input {a}" in capsys.readouterr().err


def test_torchrun_rank_does_its_share(tmp_path, monkeypatch):
    from pnpdeblur.train import distributed

    for i in range(4):
        _save(tmp_path / "in" / f"f{i}.png", _photo("astronaut", 3, w=W - i))
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    assert _run(tmp_path / "in", "-o", tmp_path / "out", "--net", "deepdeblur") == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["f1.png", "f3.png"]


class _Spy(torch.nn.Module):
    """A registered stand-in net: records where it is moved, restores to a known transform."""

    moved = []

    @classmethod
    def pretrained(cls):
        return cls()

    def to(self, device):
        self.moved.append(device)
        return self

    def restore(self, photo):
        return 1.0 - photo


def test_device_places_the_net_there(tmp_path, monkeypatch):
    monkeypatch.setitem(cli.DEBLUR_NETS, "spy", _Spy)
    monkeypatch.setattr(_Spy, "moved", [])
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    assert _run(a, "-o", tmp_path / "o1", "--net", "spy") == 0
    assert _Spy.moved == []  # no --device: the net stays where it was loaded (the CPU)
    assert np.array_equal(io.imread(str(tmp_path / "o1" / "a.png")), 255 - io.imread(str(a)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _run(a, "-o", tmp_path / "o2", "--net", "spy", "--device", "cuda") == 0
    assert _Spy.moved == ["cuda"]
    # a real net's weights go to the device (the meta device stands in for a GPU here)
    net = cli._load_net("deepdeblur", "meta")
    assert isinstance(net, DeepDeblur) and {p.device.type for p in net.parameters()} == {"meta"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_a_usage_error(tmp_path, capsys):
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    assert _run(a, "-o", tmp_path / "o", "--net", "deepdeblur", "--device", "cuda") == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "o").exists()


# -- refusals: the pipelines' options, before any file is read -----------------------------------
PIPELINE_ONLY = [
    ["--iterations", "2"], ["--prior", "tv"], ["--noise-level", "0.01"], ["--noise-floor", "0.01"],
    ["--flow-scale", "0.5"], ["--save-flow"], ["--flow-npy"], ["--no-safeguard"], ["--blur-threshold", "3"],
    ["--saturation", "0.9"], ["--no-saturation"], ["--boundary", "replicate"], ["--gamma", "2.2"], ["--shake"],
    ["--auto"], ["--kernel-size", "5"], ["--save-kernel"], ["--kernel-npy"], ["--flow", "f.npy"],
    ["--kernel", "k.npy"], ["--hqs-iters", "2"], ["--cg-iters", "2"], ["--no-flow-ensemble"],
    ["--flow-weights", "sen.safetensors"], ["--prior-weights", "w.pth"],
]


def test_the_refused_list_is_every_pipeline_option():
    _, sub = next((a, a.choices["deblur"]) for a in cli.build_parser()._actions if hasattr(a, "choices")
                  and isinstance(a.choices, dict))
    options = {a.option_strings[-1] for a in sub._actions if a.option_strings}
    kept = {"-h", "--help", "--output", "--recursive", "--device", "--no-progress", "--net"}
    assert {o[0] for o in PIPELINE_ONLY} == options - kept


@pytest.mark.parametrize("extra", PIPELINE_ONLY, ids=lambda e: e[0])
def test_pipeline_options_are_refused_with_both_names(tmp_path, monkeypatch, capsys, extra):
    monkeypatch.setattr(cli._deblur, "_read", lambda p: pytest.fail(f"read {p}"))
    monkeypatch.setattr(cli._nets, "load_deblur_net", lambda *a, **k: pytest.fail("loaded the net"))
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    out = tmp_path / "out"
    assert _run(a, "-o", out, "--net", "deepdeblur", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pnpdeblur deblur: error: ") and err.count("\n") == 0
    assert re.search(rf"{re.escape(extra[0])}\b.* cannot be used with --net", err), err
    assert not out.exists()


def test_several_conflicts_are_named_together(tmp_path, capsys):
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    assert _run(a, "-o", tmp_path / "o", "--shake", "--net", "deblurgan", "--prior", "tv", "--gamma", "2") == 2
    assert capsys.readouterr().err == ("pnpdeblur deblur: error: --prior, --gamma, --shake cannot be used with "
                                       "--net (an end-to-end network has no blur model, prior or solver to set)\n")


# -- networks that cannot be loaded: every input fails (status 1), as with the pipelines' models --
def _load_error(tmp_path, capsys, spec):
    a = _save(tmp_path / "a.png", _photo("astronaut", 3))
    b = _save(tmp_path / "b.png", _photo("coffee", 3))
    out = tmp_path / "out"
    assert _run(a, b, "-o", out, "--net", spec) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"pnpdeblur: 2 input(s) failed: {a}, {b}" and len(lines) == 2
    assert not list(out.glob("*.png"))
    assert lines[0].startswith(f"pnpdeblur deblur: error: cannot load --net {spec}: ")
    return lines[0]


def test_unknown_name_or_missing_file(tmp_path, capsys):
    msg = _load_error(tmp_path, capsys, "nonet")
    assert msg.endswith("--net 'nonet' is neither a known network (deepdeblur, deblurgan, deblurnet) nor a "
                        "checkpoint file")
    assert "is neither a known network" in _load_error(tmp_path, capsys, str(tmp_path / "missing.safetensors"))
    # dvd restores a frame from a stack of frames: not a photo network (finetune takes it)
    assert "'dvd' is neither a known network" in _load_error(tmp_path, capsys, "dvd")


def test_a_name_without_shipped_weights(tmp_path, capsys):
    assert "no shipped weights for DeblurNet" in _load_error(tmp_path, capsys, "deblurnet")


def test_a_checkpoint_of_another_architecture(tmp_path, capsys):
    sen, dvd = tmp_path / "sen.safetensors", tmp_path / "dvd.safetensors"
    SEN(in_channels=3, width=4, stacks=1, levels=2).save(sen)
    DVD(frames=3, widths=(4, 4, 4, 4)).save(dvd)
    for path, arch in ((sen, "SEN"), (dvd, "DVD")):
        assert _load_error(tmp_path, capsys, str(path)).endswith(
            f"{path} holds a '{arch}' checkpoint, not a single-image deblurring network "
            "(DeepDeblur, DeblurGANGenerator, DeblurNet)")


def test_a_corrupt_checkpoint(tmp_path, capsys, ckpts):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _load_error(tmp_path, capsys, str(bad))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(ckpts["DeepDeblur"].read_bytes()[:-64])  # a truncated download
    assert str(cut) in _load_error(tmp_path, capsys, str(cut))


def test_a_registered_net_without_restore_is_refused(tmp_path, capsys, monkeypatch):
    class Plain(torch.nn.Module):
        @classmethod
        def pretrained(cls):
            return cls()

    monkeypatch.setitem(cli.DEBLUR_NETS, "plain", Plain)
    assert _load_error(tmp_path, capsys, "plain").endswith("Plain has no restore(photo): not a single-image "
                                                           "deblurring network")


def test_help_names_the_option():
    text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["deblur"].format_help().split())
    assert "--net NAME|PATH run this end-to-end deblurring network on each photo instead: deepdeblur, " \
           "deblurgan, deblurnet" in text
    assert "pnpdeblur deblur shots/ -o out/ --net deepdeblur" in text
