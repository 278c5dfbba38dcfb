"""Leftovers of the thirty-ninth session's note: each case failed (or passed silently) before its fix."""
from __future__ import annotations

import gc
import warnings

import pytest

from pnpdeblur import cli
from pnpdeblur.data import read_image
from pnpdeblur.train import deblurnets as R
from test_leftovers_39 import _train, _Work, no_photos  # noqa: F401 (no_photos: a fixture used by name)


# --preset, --max-blur and --frames were ignored silently where the chosen data or net does not read them
@pytest.mark.parametrize("recipe, argv, message", [
    ("deepdeblur", ["--preset", "46"], "--preset is read only with --data flow, got --data video"),
    ("deblurgan", ["--data", "video", "--preset", "23"], "--preset is read only with --data flow, got --data video"),
    ("deepdeblur", ["--data", "flow", "--max-blur", "8"], "--max-blur is read only with --data video, got --data flow"),
    ("deblurnet", ["--frames", "3"], "--frames is read only by `pnpdeblur train dvd` (its clips' length), got "
                                     "`pnpdeblur train deblurnet`"),
    ("flownets", ["--frames", "5"], "--frames is read only by `pnpdeblur train dvd`"),
])
def test_data_options_the_run_would_ignore_are_refused(capsys, no_photos, recipe, argv, message):
    rc, err = _train(capsys, recipe, *argv)
    assert rc == 1 and message in err  # the recipes' option errors exit 1, as the others do


@pytest.mark.parametrize("recipe, argv", [
    ("deepdeblur", ["--data", "flow", "--preset", "46"]),
    ("deepdeblur", ["--data", "video", "--max-blur", "8"]),
    ("deepdeblur", []),  # the defaults are not "typed"
    ("deblurgan", ["--data", "flow"]),
    ("dvd", ["--frames", "3", "--max-blur", "4"]),
])
def test_data_options_the_run_reads_pass(no_photos, recipe, argv):
    with pytest.raises(_Work):
        cli.main(["train", recipe, "--device", "cpu", "--small", *argv])


def test_untyped_data_options_get_their_defaults():
    a = R.parse_args("deepdeblur", ["--data", "flow"])
    assert (a.preset, a.max_blur, a.frames) == ("23", 16.0, 5) and a.typed_data_options == ()
    a = R.parse_args("dvd", ["--frames", "3", "--max-blur", "2"])
    assert (a.preset, a.max_blur, a.frames) == ("23", 2.0, 3) and set(a.typed_data_options) == {"max_blur", "frames"}


def test_a_file_no_reader_takes_is_not_left_open(tmp_path):
    """imageio, probing a path, left the file open when no plugin took it (one handle per such file)."""
    p = tmp_path / "notes.png"
    p.write_bytes(b"plain text, not an image\n" * 40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(ValueError, match="not an image file Pillow or imageio can decode"):
            read_image(p)
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning) and str(p) in str(w.message)]
    assert not leaks, [str(w.message) for w in leaks]


def test_deblur_progress_shows_the_stage_and_the_solve(capsys):
    """A 12 MP photo takes minutes per global iteration on the CPU: the bars say what runs."""
    import numpy as np

    import pnpdeblur as pd

    x = pd.data.sample_image("camera", 64)
    flow = np.zeros((2, 64, 64), np.float32)
    flow[0] = 8
    pd.deblur(pd.MotionBlur(flow)(x), progress=True, safeguard=False, n_iter=3)
    err = capsys.readouterr().err
    assert "estimating the flow" in err
    assert "hqs:" in err and "0/3" in err  # the solve's own bar (tqdm may skip later refreshes of a fast solve)
    pd.deblur(pd.MotionBlur(flow)(x), progress=False, safeguard=False, n_iter=3)
    assert capsys.readouterr().err == ""
