"""Degenerate but valid photos through the blind pipelines, the CLI and the data synthesis.

Constant, white (clipped everywhere), mostly clipped and tiny photos, as users feed them: the
result must be finite, in range, of the input's type, shape and dtype, a constant must come back
that constant, and what cannot be deblurred must be said in words (a warning naming the
argument), never a solver's internal error.
"""
import warnings

import numpy as np
import pytest
from skimage import io

import pnpdeblur as pd
from pnpdeblur import cli
from pnpdeblur.data import random_shake_kernel, sample_image, synthesize_flow_blur, synthesize_video_blur

pytestmark = pytest.mark.usefixtures("one_torch_thread")

S = 32
#: fast settings: a 7 px kernel fits the 32 px photos, one SEN pass per estimate
SHAKE = {"kernel_size": 7}
FLOW = {"flow_ensemble": False}


def _quiet(f, *args, **kwargs):
    """``f(*args, **kwargs)`` and the messages of the warnings it gave (SEN's small-photo note left out,
    and ResourceWarnings: a garbage collection during the call reports files that earlier tests' failed
    image reads left open, e.g. imageio's probing of a file that is not an image)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = f(*args, **kwargs)
    return res, [str(w.message) for w in caught
                 if "estimate_flow sees" not in str(w.message) and not issubclass(w.category, ResourceWarning)]


WHITE = np.full((S, S, 3), 255, np.uint8)
PIPELINES = {"deblur": (pd.deblur, FLOW), "deblur_shake": (pd.deblur_shake, SHAKE)}
#: the constants keep deblur's default flow ensemble: one SEN pass reads a flat photo as ~31 px of blur
SAFEGUARDED = {"deblur": (pd.deblur, {}), "deblur_shake": (pd.deblur_shake, SHAKE)}


@pytest.mark.parametrize("name", list(PIPELINES))
@pytest.mark.parametrize("safeguard", [False, True])
def test_white_photo_comes_back_as_given_with_a_word(name, safeguard):
    # every value clipped left no data term: hqs raised "weights are all zero for an image" with safeguard=False
    f, fast = PIPELINES[name]
    res, said = _quiet(f, WHITE, safeguard=safeguard, **fast)
    assert res.x.dtype == np.uint8 and np.array_equal(res.x, WHITE)
    assert res.unchanged == [True]
    clipped = res.history[0]["clipped_fraction"]
    assert (clipped if name == "deblur_shake" else clipped[0]) == 1.0
    assert len(said) == 1 and "saturation=0.98" in said[0] and "as given" in said[0]


@pytest.mark.parametrize("name", list(PIPELINES))
def test_white_photo_in_a_batch_leaves_the_others_deblurred(name):
    f, fast = PIPELINES[name]
    grey = np.full((3, S, S), 0.5, np.float32)
    batch = np.stack([np.ones_like(grey), grey])
    res, said = _quiet(f, batch, safeguard=False, **fast)
    assert res.unchanged == [True, False]
    assert np.array_equal(res.x[0], batch[0])
    assert np.all(np.isfinite(res.x)) and 0 <= res.x.min() and res.x.max() <= 1
    assert [m for m in said if "as given" in m] and "[0]" in said[0]


def test_white_photo_through_deblur_auto():
    res, said = _quiet(pd.deblur_auto, WHITE, safeguard=False, **SHAKE, flow_options=FLOW)
    assert res.model == ["none"] and np.array_equal(res.x, WHITE)
    assert len(said) == 2 and all("saturation=0.98" in m for m in said)


def test_auto_scores_a_photo_whose_inner_window_is_clipped():
    # only the bottom rows are unclipped, all within the border margin: both residuals were nan and the
    # flow was kept unscored
    photo = sample_image("astronaut", size=S)
    photo[: S * 7 // 8] = 1.0
    res, _ = _quiet(pd.deblur_auto, photo, safeguard=False, **SHAKE, flow_options=FLOW)
    assert np.isfinite(res.residual_flow[0]) and np.isfinite(res.residual_shake[0])
    expected = "shake" if res.residual_shake[0] < pd.auto.AUTO_RATIO * res.residual_flow[0] else "flow"
    assert res.model == [expected]
    assert np.all(np.isfinite(res.x)) and 0 <= res.x.min() and res.x.max() <= 1


@pytest.mark.parametrize("mode", [["--no-flow-ensemble"], ["--shake", "--kernel-size", "7"]])
def test_cli_writes_a_white_photo_unchanged_and_says_why(tmp_path, capsys, mode):
    src = tmp_path / "white.png"
    io.imsave(src, WHITE, check_contrast=False)
    out = tmp_path / "out"
    rc = cli.main(["deblur", str(src), "-o", str(out), "--no-progress", "--no-safeguard", *mode])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert np.array_equal(io.imread(out / "white.png"), WHITE)
    assert "clipped everywhere" in err and "--no-saturation" in err
    assert "failed" not in err and "looks sharp" not in err and "UserWarning" not in err


# already right, kept so: constants come back exactly, in the caller's dtype and layout
CONSTANTS = {
    "grey0": np.zeros((S, S), np.float32),
    "rgb-half": np.full((S, S, 3), 0.5, np.float32),
    "hw1-half-f64": np.full((S, S, 1), 0.5, np.float64),
    "rgba-half": np.concatenate([np.full((S, S, 3), 0.5), np.ones((S, S, 1))], -1).astype(np.float32),
    "uint8-128": np.full((S, S, 3), 128, np.uint8),
}


@pytest.mark.parametrize("name", list(SAFEGUARDED))
@pytest.mark.parametrize("key", list(CONSTANTS))
def test_constant_photos_come_back_unchanged(name, key):
    f, fast = SAFEGUARDED[name]
    x = CONSTANTS[key]
    res, said = _quiet(f, x, **fast)
    assert res.x.dtype == x.dtype and res.x.shape == x.shape
    assert np.array_equal(res.x, x)
    assert res.noise_level == [0.0] and len(said) == 1 and "unchanged" in said[0]


@pytest.mark.parametrize("noise_level, tol", [(0.0, 1e-3), (1e-6, 1e-3), (0.3, 0.05)])
def test_constant_photo_deblurred_anyway_stays_near_constant(noise_level, tol):
    # safeguard off: the interior stays the constant (the DnCNN's own bias at σ = 0.3 is the slack there)
    x = np.full((S, S, 3), 0.5, np.float32)
    res, _ = _quiet(pd.deblur_shake, x, noise_level=noise_level, safeguard=False, **SHAKE)
    assert res.x.dtype == np.float32 and np.all(np.isfinite(res.x))
    assert np.abs(res.x[4:-4, 4:-4] - 0.5).max() < tol


def test_synthesis_keeps_constants_constant():
    for v in (0.0, 0.5, 1.0):
        x = np.full((S, S), v, np.float32)
        s = synthesize_flow_blur(x, seed=0)
        assert s.blurred.shape == (S, S, 1) and np.allclose(s.blurred, v, atol=1e-6)
        video = synthesize_video_blur(np.full((S, S, 3), v), max_blur=4, min_blur=1, n_frames=3, seed=0)
        assert np.allclose(video.blurred, v, atol=1e-6) and np.allclose(video.sharp, v, atol=1e-6)
    noisy = synthesize_flow_blur(np.zeros((S, S, 3), np.float32), noise_sigma=0.3, seed=0).blurred
    assert np.all(np.isfinite(noisy)) and noisy.min() >= 0 and noisy.max() <= 1


@pytest.mark.parametrize("extent", [None, 0, 0.0])
def test_shake_kernels_are_finite_and_sum_to_one(extent):
    for size in (3, 5, 31):
        k = random_shake_kernel(size, extent, seed=1)
        assert k.shape == (size, size) and np.all(np.isfinite(k)) and k.min() >= 0
        assert k.sum() == pytest.approx(1.0)
