"""``pnpdeblur train <recipe>``: a bad option is refused before any work, by the name the user typed.

The recipes' options become ``TrainConfig`` fields and data-set arguments whose own errors name
those (``--steps 0`` said "length must be a positive int"); the command line now checks them up
front (:func:`pnpdeblur.train._cli.check_options`). Each case runs the command line in-process
with the work stood in for: reaching a photo, a net, a GOPRO split or the trainer fails the test.
"""
import numpy as np
import pytest
from PIL import Image

from pnpdeblur import cli
from pnpdeblur.train.deblurnets import build_net as _build_net


class _Work(AssertionError):
    """Raised where the run would have begun its work (not caught by the command line)."""


@pytest.fixture
def no_work(monkeypatch):
    """Stand in for the recipes' first work: reading photos, building a net, the trainer."""
    import pnpdeblur.train.deblurnets as deblurnets
    import pnpdeblur.train.dncnn as dncnn
    import pnpdeblur.train.drunet as drunet
    import pnpdeblur.train.sen as sen
    from pnpdeblur.train import engine

    def work(*args, **kwargs):
        raise _Work("a bad option reached the run's work")

    for module, name in ((sen, "training_sources"), (deblurnets, "training_sources"), (drunet, "training_photos"),
                         (dncnn, "training_photos"), (deblurnets, "build_net")):
        monkeypatch.setattr(module, name, work)
    monkeypatch.setattr(engine.Trainer, "__init__", work)
    monkeypatch.delenv("PNPDEBLUR_DEBUG", raising=False)


@pytest.fixture
def folders(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(photos / f"p{i}.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("not a photo")
    return tmp_path


def _train(capsys, recipe, *argv):
    rc = cli.main(["train", recipe, "--device", "cpu", *map(str, argv)])
    return rc, capsys.readouterr().err


# the TrainConfig field or data-set argument each one was blamed on before, where it was
@pytest.mark.parametrize("recipe, argv, message", [
    ("drunet", ["--steps", "0"], "--steps must be >= 1, got 0"),  # length must be a positive int
    ("deepdeblur", ["--steps", "-1"], "--steps must be >= 1, got -1"),  # length ..., got -2
    ("deepdeblur", ["--batch", "0"], "--batch must be >= 1, got 0"),  # length
    ("deepdeblur", ["--crop", "0"], "--crop must be >= 1, got 0"),  # crop ... (H, W)
    ("deepdeblur", ["--lr", "nan"], "--lr must be > 0 and finite, got nan"),  # TrainConfig.lr
    ("deblurgan", ["--seed", "-1"], "--seed must be >= 0, got -1"),  # TrainConfig.seed
    ("deblurnet", ["--grad-clip", "inf"], "--grad-clip must be > 0 and finite, got inf"),  # TrainConfig.grad_clip
    ("deepdeblur", ["--adv-weight", "nan"], "--adv-weight must be >= 0 and finite, got nan"),  # trained on NaN
    ("deblurgan", ["--adv-weight", "-1"], "--adv-weight must be >= 0 and finite, got -1.0"),  # accepted
    ("dvd", ["--max-blur", "inf"], "--max-blur must be >= 0 and finite, got inf"),  # OverflowError traceback
    ("deepdeblur", ["--max-blur", "nan"], "--max-blur must be >= 0 and finite, got nan"),  # float NaN to integer
    ("flownets", ["--noise", "-1"], "--noise must be >= 0 and finite, got -1.0"),  # noise_sigma
    ("deepdeblur", ["--val-items", "0"], "--val-items must be >= 1, got 0"),  # length
    ("dvd", ["--frames", "0"], "--frames must be >= 1, got 0"),
    ("dvd", ["--frames", "4"], "--frames must be odd"),  # a shape error at the first step
    ("deepdeblur", ["--time-budget", "nan"], "--time-budget must be a finite number of seconds > 0"),  # net built
    ("deblurnet", ["--config", "notjson"], "--config must be a JSON object"),  # Expecting value: line 1 ...
    ("deblurnet", ["--config", "[1]"], "--config must be a JSON object"),  # argument after ** must be a mapping
    ("dvd", ["--config", '{"frames": 3}'], "--config frames=3 and --frames 5 differ"),
    ("flownets", ["--data", "flow"], "--data flow: FlowNetS trains on --data video"),  # data='video'
    ("deepdeblur", ["--data", "gopro"], "--data gopro needs --root"),  # data='gopro' needs root
    ("deepdeblur", ["--device", "bogus"], "--device 'bogus' is not a torch device"),  # TrainConfig.device
    ("sen", ["--lr-end", "nan"], "--lr-end must be >= 0 and finite, got nan"),  # TrainConfig.lr_end
    ("sen", ["--width", "0"], "--width must be >= 1, got 0"),  # width (SEN's argument)
    ("sen", ["--steps", "0"], "--steps must be >= 1, got 0"),
    # x's H and W must be multiples of 64 (after the net was built and the photos read)
    ("sen", ["--crop", "48"], "--crop must be a multiple of SEN's stride 4·2^levels = 64 (--levels 4), got 48"),
    ("sen", ["--crop", "64", "--levels", "5"], "--crop must be a multiple of SEN's stride 4·2^levels = 128"),
    # batch norm's "Expected more than 1 value per channel when training" at the first step
    ("sen", ["--crop", "64", "--batch", "1"], "--crop 64 with --batch 1 leaves one value per channel"),
    ("rpgan", ["--lr", "0"], "--lr must be > 0 and finite, got 0.0"),  # TrainConfig.lr
    ("rpgan", ["--decay-from", "nan"], "--decay-from must be in [0, 1], got nan"),  # trained on
    ("rpgan", ["--adam-betas", "1", "0.9"], "--adam-betas must be two numbers in [0, 1)"),  # TrainConfig.betas
    ("rpgan", ["--gamma", "nan"], "--gamma must be >= 0 and finite, got nan"),  # trained on
    ("rpgan", ["--seed", "-1"], "--seed must be >= 0, got -1"),  # numpy: expected non-negative integer
    ("dncnn", ["--depth", "1"], "--depth must be >= 2 (a first and a last convolution), got 1"),  # depth
    ("dncnn", ["--grey-share", "nan"], "--grey-share must be in [0, 1], got nan"),  # grey_share
    ("dncnn", ["--threads", "0"], "--threads must be >= 1, got 0"),  # RuntimeError traceback
    ("drunet", ["--max-sigma", "0"], "--max-sigma must be in (0, 1], got 0.0"),  # max_sigma
    ("drunet", ["--crop", "7"], "--crop must be >= 8, got 7"),  # crop
    ("drunet", ["--halve-at", "x"], "--halve-at must be comma-separated fractions"),  # could not convert string
    ("drunet", ["--halve-at", "2"], "--halve-at must be comma-separated fractions"),  # TrainConfig.lr_milestones
    ("drunet", ["--features", "x"], "--features must be 4 comma-separated ints >= 1"),  # invalid literal for int()
    ("drunet", ["--features", "0"], "--features must be 4 comma-separated ints >= 1"),  # features must be 4 ...
    ("drunet", ["--blocks", "0"], "--blocks must be >= 1, got 0"),  # blocks
    ("drunet", ["--warmup", "inf"], "--warmup must be >= 0 and finite, got inf"),  # OverflowError traceback
    ("drunet", ["--val-images", "-1"], "--val-images must be >= 0, got -1"),  # val_images
])
def test_a_bad_option_is_named_before_any_work(capsys, no_work, recipe, argv, message):
    rc, err = _train(capsys, recipe, *argv)
    assert rc == 1
    assert err.startswith(f"pnpdeblur train {recipe}: error: {message}")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("recipe", ["deepdeblur", "rpgan"])
def test_flow_presets_are_choices(capsys, no_work, recipe):
    rc, err = _train(capsys, recipe, "--preset", "99")
    assert rc == 2 and "argument --preset: invalid choice: '99'" in err


@pytest.mark.parametrize("recipe, option", [("deepdeblur", "--corpus"), ("dvd", "--corpus"), ("sen", "--corpus"),
                                            ("rpgan", "--corpus"), ("drunet", "--data"), ("dncnn", "--data")])
@pytest.mark.parametrize("where, what", [("missing", "folder not found"), ("photos/p0.png", "is a file"),
                                         ("empty", "no images"), ("text", "no images")])
def test_a_photo_folder_that_holds_no_photo_is_named(capsys, no_work, folders, recipe, option, where, what):
    rc, err = _train(capsys, recipe, option, folders / where)
    assert rc == 1 and err.startswith(f"pnpdeblur train {recipe}: error: {option} {folders / where}")
    assert what in err and err.count("\n") == 1


@pytest.mark.parametrize("recipe, option", [("deblurgan", "--init"), ("sen", "--init"), ("drunet", "--init"),
                                            ("rpgan", "--sen"), ("rpgan", "--vgg")])
@pytest.mark.parametrize("where, what", [("missing.safetensors", "not found"), ("photos", "a folder")])
def test_a_weights_file_that_is_not_a_file_is_named(capsys, no_work, folders, recipe, option, where, what):
    rc, err = _train(capsys, recipe, option, folders / where)
    assert rc == 1
    assert err.startswith(f"pnpdeblur train {recipe}: error: {option} {folders / where}: {what}; expected a weights")


@pytest.mark.parametrize("recipe", ["deepdeblur", "sen", "dncnn", "rpgan"])
def test_out_and_run_dir_are_checked_before_the_run(capsys, no_work, folders, recipe):
    # found only when exporting before: after the whole training
    rc, err = _train(capsys, recipe, "--out", folders / "photos")
    assert rc == 1 and f"error: --out {folders / 'photos'} is a folder" in err
    rc, err = _train(capsys, recipe, "--run-dir", folders / "photos" / "p0.png")
    assert rc == 1 and "is a file; expected a folder for the run" in err


def test_cuda_asked_for_where_there_is_none(capsys, no_work, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc, err = _train(capsys, "drunet", "--device", "cuda:0")
    assert rc == 1 and "error: --device 'cuda:0': CUDA is not available" in err


def test_val_images_must_leave_a_training_photo(capsys, no_work, folders):
    rc, err = _train(capsys, "dncnn", "--data", folders / "photos", "--val-images", "2")
    assert rc == 1 and f"--val-images (2) must be smaller than the 2 photos of --data {folders / 'photos'}" in err


@pytest.mark.parametrize("where, what", [("missing", "GOPRO folder not found"), ("photos/p0.png", "not found"),
                                         ("empty", "not found"), ("photos", "not found")])
def test_gopro_root_is_checked_before_any_work(capsys, no_work, folders, where, what):
    rc, err = _train(capsys, "deblurgan", "--data", "gopro", "--root", folders / where)
    assert rc == 1 and err.startswith(f"pnpdeblur train deblurgan: error: --root {folders / where}: ")
    assert what in err and err.count("\n") == 1


@pytest.fixture
def built(monkeypatch, no_work):
    """Build the nets for real (the photos and the trainer stay stood in for); records their arguments."""
    import pnpdeblur.train.deblurnets as deblurnets

    calls = []

    def build(name, small=False, **config):
        calls.append((name, config))
        return _build_net(name, small=small, **config)

    monkeypatch.setattr(deblurnets, "build_net", build)
    return calls


def test_an_unknown_constructor_argument_names_config(capsys, built):
    rc, err = _train(capsys, "deepdeblur", "--small", "--config", '{"bogus": 1}')
    assert rc == 1 and err.startswith('pnpdeblur train deepdeblur: error: --config {"bogus": 1}: ')


def test_dvd_is_built_for_the_frames_of_its_clips(capsys, built):
    # --frames 3 made 3-frame clips for a 5-frame DVD: a shape error at the first step
    with pytest.raises(_Work):
        _train(capsys, "dvd", "--small", "--frames", "3", "--crop", "64")
    assert built == [("dvd", {"frames": 3})]


# -- PNPDEBLUR_DEBUG -----------------------------------------------------------------------------
def _deep_failure(argv):
    raise ValueError("a NaN loss at step 7000")


@pytest.mark.parametrize("value", [None, "", "0"])
def test_an_error_is_one_line_that_says_how_to_see_its_traceback(capsys, monkeypatch, value):
    monkeypatch.setitem(cli.TRAINERS, "sen", _deep_failure)
    if value is None:
        monkeypatch.delenv("PNPDEBLUR_DEBUG", raising=False)
    else:
        monkeypatch.setenv("PNPDEBLUR_DEBUG", value)
    assert cli.main(["train", "sen"]) == 1
    assert capsys.readouterr().err == ("pnpdeblur train sen: error: a NaN loss at step 7000 "
                                       "(PNPDEBLUR_DEBUG=1 shows the traceback)\n")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_pnpdeblur_debug_raises_with_the_traceback(capsys, monkeypatch, value):
    monkeypatch.setitem(cli.TRAINERS, "sen", _deep_failure)
    monkeypatch.setenv("PNPDEBLUR_DEBUG", value)
    with pytest.raises(ValueError, match="a NaN loss at step 7000") as e:
        cli.main(["train", "sen"])
    assert e.traceback[-1].name == "_deep_failure"
    assert capsys.readouterr().err == ""


def test_the_cli_docstring_explains_pnpdeblur_debug():
    assert "with the environment variable ``PNPDEBLUR_DEBUG`` set (to anything\n    but ``0``)" in cli.__doc__
