"""Non-blind deblurring of photos with a known blur: ``pd.deblur(flow=)``, the kernel and flow
file readers (``pd.data.read_kernel`` / ``read_flow``) and the command line's ``--flow`` /
``--kernel``. What reaches the solver is checked with a recording HQS; the whole path against
a direct ``hqs`` solve of the same problem; the readers against the arrays written."""
import types
import warnings

import numpy as np
import pytest
import torch
from skimage import io

import pnpdeblur as pd
import pnpdeblur.solvers
from pnpdeblur import cli, pipeline
from pnpdeblur.data import read_flow, read_kernel
from pnpdeblur.estimation import learned
from pnpdeblur.metrics import psnr
from pnpdeblur.operators import Convolution, MotionBlur, motion_kernel
from pnpdeblur.priors import TV
from pnpdeblur.solvers import hqs
from _fakes import RecordingHQS, unused_prior
from _flow_standins import StandInSEN

H, W = 16, 20


def _flow(h=H, w=W, seed=0):
    """A smooth flow that varies across the image (so a transposed or mis-assigned one differs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    u = 2.0 + 0.2 * xx + rng.uniform(-0.5, 0.5)
    v = -1.0 + 0.1 * yy
    return np.stack([u, v]).astype(np.float32)


def _photo(h=H, w=W, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


@pytest.fixture
def fake_hqs(monkeypatch):
    rec = RecordingHQS()
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)

    def no_sen(*a, **k):
        raise AssertionError("a given flow must not be estimated")

    monkeypatch.setattr(learned, "default_flow_model", no_sen)
    monkeypatch.setattr(pipeline, "estimate_flow", no_sen)
    return rec


PRIOR = unused_prior  # never called: the recording HQS only passes it on


# -- pd.deblur(flow=) ------------------------------------------------------------------------------
def test_a_given_flow_is_the_operator_and_the_solve_is_hqs_own(fake_hqs):
    y, f = _photo(), _flow()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no safeguard warning: the flow is the caller's word
        res = pd.deblur(y, flow=f, prior=PRIOR, noise_level=0.004, boundary="replicate")
    (call,) = fake_hqs.calls
    assert torch.equal(call["y"], torch.from_numpy(y.transpose(2, 0, 1))[None])
    assert isinstance(call["K"], MotionBlur)
    assert torch.equal(torch.as_tensor(call["K"].flow), torch.from_numpy(f)[None])
    assert call["prior"] is PRIOR
    # no noise floor, hqs's own length and CG budget, the prior's own λ and σ_1 (hqs chooses them)
    assert call["noise_level"] == 0.004 and call["n_iter"] is None and call["cg_iters"] == 30
    assert "lam" not in call and "sigma_start" not in call
    assert res.unchanged == [False] and res.history[0]["safeguard"] is None
    assert isinstance(res.flow[0], np.ndarray) and np.array_equal(res.flow[0], f)
    np.testing.assert_allclose(res.x, 0.5 * y + 0.1, atol=1e-6)


def test_the_callers_budget_and_floor_are_kept_with_a_given_flow(fake_hqs):
    pd.deblur(_photo(), flow=_flow(), prior=PRIOR, noise_level=0.004, n_iter=3, cg_iters=7, noise_floor=0.02,
              boundary="replicate")
    (call,) = fake_hqs.calls
    assert (call["noise_level"], call["n_iter"], call["cg_iters"]) == (0.02, 3, 7)


def test_the_estimated_flow_keeps_the_blind_budget_and_floor(fake_hqs, monkeypatch):
    """The given-flow defaults do not leak into the blind path."""
    monkeypatch.setattr(pipeline, "estimate_flow", lambda x, *a, **k: torch.full((x.shape[0], 2, H, W), 6.0))
    pd.deblur(_photo(), prior=PRIOR, noise_level=0.004, flow_model=StandInSEN(), boundary="replicate")
    (call,) = fake_hqs.calls
    assert (call["noise_level"], call["n_iter"], call["cg_iters"]) == (0.02, 4, 5)
    assert (call["lam"], call["sigma_start"]) == (0.23, 49 / 255)


def test_a_zero_flow_is_deconvolved_not_left_as_sharp(fake_hqs):
    res = pd.deblur(_photo(), flow=np.zeros((2, H, W), np.float32), prior=PRIOR, noise_level=0.01)
    assert len(fake_hqs.calls) == 1 and res.unchanged == [False]


def test_one_flow_serves_a_batch_and_a_batch_of_flows_one_each(fake_hqs):
    y = torch.from_numpy(np.stack([_photo(seed=s).transpose(2, 0, 1) for s in range(3)]))
    f = _flow()
    res = pd.deblur(y, flow=torch.from_numpy(f), prior=PRIOR, noise_level=0.01, boundary="replicate")
    assert len(fake_hqs.calls) == 3
    for i, c in enumerate(fake_hqs.calls):
        assert torch.equal(c["y"], y[i:i + 1]) and torch.equal(torch.as_tensor(c["K"].flow), torch.from_numpy(f)[None])
    assert isinstance(res.flow[0], torch.Tensor) and res.flow[0].shape == (3, 2, H, W)
    fake_hqs.calls.clear()
    fs = np.stack([_flow(seed=s) for s in range(3)])
    pd.deblur(y, flow=fs, prior=PRIOR, noise_level=0.01, boundary="replicate")
    for i, c in enumerate(fake_hqs.calls):
        assert torch.equal(torch.as_tensor(c["K"].flow), torch.from_numpy(fs[i:i + 1]))


def test_a_given_flow_is_padded_with_the_unknown_boundary(fake_hqs):
    f = _flow()
    pd.deblur(_photo(), flow=f, prior=PRIOR, noise_level=0.01)  # boundary="unknown" by default
    (call,) = fake_hqs.calls
    K = call["K"]
    pad = (call["y"].shape[-1] - W) // 2
    assert pad > 0 and call["y"].shape[-2:] == (H + 2 * pad, W + 2 * pad)
    inner = torch.as_tensor(K.flow)[0, :, pad:pad + H, pad:pad + W]
    assert torch.equal(inner, torch.from_numpy(f))


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(iterations=2), ValueError, r"iterations must be 1 with a given flow"),
    (dict(flow_model=object()), ValueError, r"flow_model and flow cannot both be given"),
    (dict(flow=np.zeros((2, H, W + 1), np.float32)), ValueError, rf"flow must be on the image's grid \(2, {H}, {W}\)"),
    (dict(flow=np.zeros((2, 2, H, W), np.float32)), ValueError, r"N = 1 images"),
    (dict(flow=np.full((2, H, W), np.nan, np.float32)), ValueError, r"flow.*NaN"),
    (dict(flow=np.full((2, H, W), 70.0, np.float32)), ValueError, r"flow has a component of 70"),
    (dict(flow=np.zeros((H, W), np.float32)), ValueError, r"flow must have shape"),
    (dict(flow=np.zeros((2, H, W), np.int32)), TypeError, r"flow"),
    (dict(flow="flow.npy"), TypeError, r"flow"),
])
def test_bad_given_flows_are_refused_by_name(fake_hqs, kwargs, exc, pattern):
    kwargs = {"flow": _flow(), **kwargs}
    with pytest.raises(exc, match=pattern):
        pd.deblur(_photo(), prior=PRIOR, noise_level=0.01, **kwargs)
    assert fake_hqs.calls == []


def test_deblur_with_a_given_flow_is_the_direct_hqs_solve():
    """The photo pipeline on its own grid, without clipped pixels, solves exactly the problem
    hqs solves with the same operator, prior and noise level; the default (unknown boundary)
    recovers the sharp image well."""
    rng = np.random.default_rng(3)
    sharp = pd.data.sample_image("astronaut")[120:168, 180:236].astype(np.float32)
    f = _flow(48, 56, seed=1)
    y = np.clip(np.asarray(MotionBlur(f)(sharp)) + 0.01 * rng.standard_normal(sharp.shape), 0, 1).astype(np.float32)
    prior = TV()
    res = pd.deblur(y, flow=f, prior=prior, noise_level=0.01, boundary="replicate", saturation=None)
    direct = hqs(y, MotionBlur(f), prior, noise_level=0.01, progress=False).x
    np.testing.assert_allclose(res.x, np.clip(direct, 0, 1), atol=1e-5)
    full = pd.deblur((y * 255).round().astype(np.uint8), flow=f, prior=prior, noise_level=0.01)
    assert full.x.dtype == np.uint8
    gain = psnr(full.x / 255.0, sharp, channel_axis=-1) - psnr(y, sharp, channel_axis=-1)
    assert gain > 3.0, gain


# -- read_kernel / read_flow -----------------------------------------------------------------------
def test_read_kernel_from_a_png_scaled_to_its_peak(tmp_path):
    k = motion_kernel((5.0, 2.0))
    stored = np.round(255 * k / k.max()).astype(np.uint8)
    io.imsave(str(tmp_path / "k.png"), stored, check_contrast=False)
    got = read_kernel(tmp_path / "k.png")
    assert got.dtype == np.float64 and got.shape == k.shape
    np.testing.assert_allclose(got, stored / stored.sum(), rtol=1e-6)  # read through float32
    np.testing.assert_allclose(got, k, atol=2.5 / 255 * k.max())  # the 8-bit picture of the same kernel


def test_read_kernel_from_npy_and_colour_png(tmp_path):
    k = np.array([[0.0, 1.0, 0.0], [2.0, 4.0, 1.0], [0.0, 2.0, 0.0]])
    np.save(tmp_path / "k.npy", k)
    np.testing.assert_allclose(read_kernel(tmp_path / "k.npy"), k / 10.0, rtol=1e-15)
    np.save(tmp_path / "ints.npy", k.astype(np.int64))
    np.testing.assert_allclose(read_kernel(tmp_path / "ints.npy"), k / 10.0, rtol=1e-15)
    grey = np.round(255 * k / 4).astype(np.uint8)
    io.imsave(str(tmp_path / "rgb.png"), np.repeat(grey[:, :, None], 3, axis=2), check_contrast=False)
    np.testing.assert_allclose(read_kernel(tmp_path / "rgb.png"), grey / grey.sum(), rtol=1e-6)
    # a colour picture (a PSF drawn in a colour map's greys, or tinted): its luminance (Rec. 709)
    rgb = np.stack([grey, grey // 2, grey // 4], axis=2)
    io.imsave(str(tmp_path / "tinted.png"), rgb, check_contrast=False)
    lum = rgb.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(read_kernel(tmp_path / "tinted.png"), lum / lum.sum(), rtol=1e-5)


def test_read_kernel_pads_an_even_size_at_the_bottom_right(tmp_path):
    k = np.arange(1.0, 25.0).reshape(4, 6)
    np.save(tmp_path / "k.npy", k)
    got = read_kernel(tmp_path / "k.npy")
    assert got.shape == (5, 7)
    np.testing.assert_allclose(got[:4, :6], k / k.sum(), rtol=1e-15)
    assert not got[4].any() and not got[:, 6].any()
    Convolution(got)  # a kernel the convolution takes


def test_read_kernel_clears_rounding_negatives_and_refuses_real_ones(tmp_path):
    k = np.array([[1e-9, 1.0, -1e-9]])
    np.save(tmp_path / "k.npy", k)
    np.testing.assert_array_equal(read_kernel(tmp_path / "k.npy"), [[1e-9 / (1 + 1e-9), 1 / (1 + 1e-9), 0.0]])
    np.save(tmp_path / "neg.npy", np.array([[0.5, 1.0, -0.1]]))
    with pytest.raises(ValueError, match=r"negative weights \(down to -0.1\)"):
        read_kernel(tmp_path / "neg.npy")


@pytest.mark.parametrize("arr, pattern", [
    (np.zeros((3, 3)), "all zero"),
    (np.array([[0.0, np.nan, 1.0]]), "NaN or Inf"),
    (np.ones((3, 3, 3)), r"2-D array \(kh, kw\), got shape \(3, 3, 3\)"),
    (np.ones((0, 3)), "non-empty"),
    (np.array([["a", "b"]]), "must hold real numbers"),
])
def test_read_kernel_refuses_what_is_not_a_kernel(tmp_path, arr, pattern):
    np.save(tmp_path / "k.npy", arr)
    with pytest.raises(ValueError, match=pattern):
        read_kernel(tmp_path / "k.npy")


def test_readers_name_missing_and_undecodable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="kernel file not found"):
        read_kernel(tmp_path / "none.png")
    with pytest.raises(FileNotFoundError, match="flow file not found"):
        read_flow(tmp_path / "none.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    for read in (read_kernel, read_flow):
        with pytest.raises(ValueError, match=r"cannot read (kernel|flow) .*text\.npy"):
            read(tmp_path / "text.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read kernel"):
        read_kernel(tmp_path / "obj.npy")  # pickled objects are never loaded


def test_read_flow_round_trips_what_numpy_saved(tmp_path):
    f = _flow()
    np.save(tmp_path / "f.npy", f)
    got = read_flow(tmp_path / "f.npy")
    assert got.dtype == np.float32 and np.array_equal(got, f)
    np.save(tmp_path / "f64.npy", f.astype(np.float64)[None])
    got = read_flow(tmp_path / "f64.npy")
    assert got.dtype == np.float32 and got.shape == f.shape and np.array_equal(got, f)
    np.save(tmp_path / "f16.npy", f.astype(np.float16))
    got = read_flow(tmp_path / "f16.npy")
    assert got.dtype == np.float32 and np.array_equal(got, f.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("arr, name, pattern", [
    (np.zeros((2, 2, H, W), np.float32), "f.npy", r"one flow \(2, H, W\)"),
    (np.zeros((2, H, W), np.int16), "f.npy", "must hold floats"),
    (np.zeros((3, H, W), np.float32), "f.npy", r"cannot use flow .*shape"),
    (np.full((2, H, W), np.inf, np.float32), "f.npy", "NaN or Inf"),
    (np.full((2, H, W), -65.0, np.float32), "f.npy", "at most 64 px"),
    (np.zeros((2, H, W), np.float32), "f.png", r"must be a \.npy file"),
])
def test_read_flow_refuses_what_is_not_a_flow(tmp_path, arr, name, pattern):
    path = tmp_path / name
    with open(path, "wb") as fh:
        np.save(fh, arr)
    with pytest.raises(ValueError, match=pattern):
        read_flow(path)


# -- the command line ------------------------------------------------------------------------------
def _save_png(path, arr):
    io.imsave(str(path), arr, check_contrast=False)
    return path


def _u8(seed, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)


class Recorder:
    def __init__(self, result):
        self.calls, self.result = [], result

    def __call__(self, image, *args, **kw):
        self.calls.append((image, args, kw))
        return self.result(image, kw)


@pytest.fixture
def stand_ins(monkeypatch):
    import pnpdeblur.camera_shake as camera_shake

    deblur = Recorder(lambda img, kw: types.SimpleNamespace(x=0.5 * img + 0.25, flow=[kw["flow"]], unchanged=[False],
                                                             history=[{"safeguard": None}]))
    shake = Recorder(lambda img, kw: types.SimpleNamespace(x=0.5 * img + 0.25, kernel=kw["kernel"], unchanged=[False],
                                                           history=[{"kernel_length": 3.0, "threshold": None}]))
    monkeypatch.setattr(pipeline, "deblur", deblur)
    monkeypatch.setattr(camera_shake, "deblur_shake", shake)
    prior, dncnn = object(), object()
    monkeypatch.setitem(cli.PRIORS, "drunet", lambda: prior)  # the default prior with a given blur
    monkeypatch.setitem(cli.PRIORS, "dncnn", lambda: dncnn)
    monkeypatch.setattr(learned, "default_flow_model", lambda: pytest.fail("no flow model is needed"))
    return types.SimpleNamespace(deblur=deblur, shake=shake, prior=prior, dncnn=dncnn)


def test_cli_flow_reaches_pd_deblur_with_the_solve_options(tmp_path, stand_ins):
    a = _save_png(tmp_path / "a.png", _u8(1))
    f = _flow()
    np.save(tmp_path / "f.npy", f)
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow", str(tmp_path / "f.npy"), "--no-progress",
                     "--save-flow", "--flow-npy", "--noise-level", "0.02"]) == 0
    (image, args, kw), = stand_ins.deblur.calls
    assert args == () and np.array_equal(image, io.imread(str(a)).astype(np.float32) / 255)
    assert np.array_equal(kw.pop("flow"), f)
    assert kw == dict(prior=stand_ins.prior, progress=False, n_iter=None, cg_iters=None, noise_level=0.02,
                      device=None, boundary="unknown", saturation=0.98, gamma=None)
    assert np.array_equal(np.load(out / "a_flow.npy"), f)
    assert stand_ins.shake.calls == []
    stand_ins.deblur.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow", str(tmp_path / "f.npy"), "--no-progress",
                     "--hqs-iters", "3", "--cg-iters", "9"]) == 0
    (_, _, kw), = stand_ins.deblur.calls
    assert (kw["n_iter"], kw["cg_iters"]) == (3, 9)
    stand_ins.deblur.calls.clear()
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow", str(tmp_path / "f.npy"), "--no-progress",
                     "--prior", "dncnn"]) == 0
    (_, _, kw), = stand_ins.deblur.calls
    assert kw["prior"] is stand_ins.dncnn


def test_cli_flow_of_another_size_fails_that_photo_only(tmp_path, stand_ins, capsys):
    a = _save_png(tmp_path / "a.png", _u8(1))
    b = _save_png(tmp_path / "b.png", _u8(2, h=H + 2))
    np.save(tmp_path / "f.npy", _flow())
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), str(b), "-o", str(out), "--flow", str(tmp_path / "f.npy"),
                     "--no-progress"]) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"the photo is {H + 2}x{W} px (H x W) and --flow {tmp_path / 'f.npy'} is {H}x{W}" in err
    assert (out / "a.png").exists() and not (out / "b.png").exists()


def test_cli_kernel_is_read_scaled_and_given_to_deblur_shake(tmp_path, stand_ins):
    a = _save_png(tmp_path / "a.png", _u8(3))
    k = np.array([[0, 64, 0], [128, 255, 64], [0, 32, 0]], np.uint8)
    _save_png(tmp_path / "k.png", k)
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--kernel", str(tmp_path / "k.png"), "--no-progress",
                     "--save-kernel", "--gamma", "2.2"]) == 0
    (image, args, kw), = stand_ins.shake.calls
    assert args == () and np.array_equal(image, io.imread(str(a)).astype(np.float32) / 255)
    np.testing.assert_allclose(kw.pop("kernel"), k / k.sum(), rtol=1e-6)
    assert kw == dict(prior=stand_ins.prior, noise_level=None, device=None, boundary="unknown", saturation=0.98,
                      gamma=2.2)
    np.testing.assert_array_equal(io.imread(str(out / "a_kernel.png")), k)  # written as given, peak white
    assert stand_ins.deblur.calls == []


@pytest.mark.parametrize("extra, message", [
    (["--flow", "F", "--shake"], "--shake cannot be used with --flow"),
    (["--flow", "F", "--auto"], "--auto cannot be used with --flow"),
    (["--flow", "F", "--iterations", "2"], "--iterations cannot be used with --flow"),
    (["--flow", "F", "--flow-scale", "0.5"], "--flow-scale cannot be used with --flow"),
    (["--flow", "F", "--no-flow-ensemble", "--blur-threshold", "3"],
     "--no-flow-ensemble, --blur-threshold cannot be used with --flow"),
    (["--flow", "F", "--kernel-size", "9"], "--kernel-size cannot be used with --flow"),
    (["--kernel", "K", "--auto"], "--auto cannot be used with --kernel"),
    (["--kernel", "K", "--kernel-size", "9"], "--kernel-size cannot be used with --kernel"),
    (["--kernel", "K", "--blur-threshold", "3"], "--blur-threshold cannot be used with --kernel"),
    (["--kernel", "K", "--iterations", "2"], "--iterations cannot be used with --kernel (it has no flow)"),
    (["--kernel", "K", "--save-flow"], "--save-flow cannot be used with --kernel"),
])
def test_cli_refuses_estimation_options_with_a_known_blur(tmp_path, stand_ins, capsys, extra, message):
    a = _save_png(tmp_path / "a.png", _u8(4))
    np.save(tmp_path / "F.npy", _flow())
    np.save(tmp_path / "K.npy", np.ones((3, 3)))
    paths = {"F": str(tmp_path / "F.npy"), "K": str(tmp_path / "K.npy")}
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--no-progress"] + [paths.get(e, e) for e in extra]) == \
        cli.EXIT_USAGE
    assert f"pnpdeblur deblur: error: {message}" in capsys.readouterr().err
    assert not out.exists() and stand_ins.deblur.calls == [] and stand_ins.shake.calls == []


def test_cli_refuses_an_unreadable_known_blur_before_any_work(tmp_path, stand_ins, capsys):
    a = _save_png(tmp_path / "a.png", _u8(5))
    np.save(tmp_path / "bad.npy", np.zeros((3, H, W), np.float32))
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow", str(tmp_path / "bad.npy")]) == cli.EXIT_USAGE
    assert "pnpdeblur deblur: error: --flow: cannot use flow" in capsys.readouterr().err
    assert cli.main(["deblur", str(a), "-o", str(out), "--kernel", str(tmp_path / "none.png")]) == cli.EXIT_USAGE
    assert "pnpdeblur deblur: error: --kernel: kernel file not found" in capsys.readouterr().err
    assert cli.main(["deblur", str(a), "-o", str(out), "--flow", "f.npy", "--kernel", "k.png"]) == cli.EXIT_USAGE
    assert "argument --kernel: not allowed with argument --flow" in capsys.readouterr().err  # one at a time
    assert not out.exists() and stand_ins.deblur.calls == [] and stand_ins.shake.calls == []


def test_cli_kernel_npy_writes_every_weight_for_kernel_to_read_back(tmp_path, stand_ins):
    a = _save_png(tmp_path / "a.png", _u8(6))
    k = np.random.default_rng(0).random((5, 7))
    k[0, 0] = 1e-7  # below what an 8-bit picture keeps
    np.save(tmp_path / "k.npy", k)
    out = tmp_path / "o"
    assert cli.main(["deblur", str(a), "-o", str(out), "--kernel", str(tmp_path / "k.npy"), "--kernel-npy",
                     "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_kernel.npy", "a_kernel.png"]  # implies the picture
    saved = np.load(out / "a_kernel.npy")
    assert saved.dtype == np.float64 and np.array_equal(saved, read_kernel(tmp_path / "k.npy"))
    assert saved[0, 0] > 0  # kept, and read back to rounding (its sum is 1 to the last bits)
    np.testing.assert_allclose(read_kernel(out / "a_kernel.npy"), saved, rtol=1e-14, atol=0)
    assert io.imread(str(out / "a_kernel.png"))[0, 0] == 0


def test_plan_outputs_names_the_kernel_weights_and_avoids_clashes(tmp_path):
    files = [tmp_path / "x.png", tmp_path / "sub" / "x.jpg"]
    plans = cli.plan_outputs(files, tmp_path / "o", kernel_npy=True)
    assert [(p.image.name, p.kernel_png.name, p.kernel_npy.name, p.renamed) for p in plans] == [
        ("x.png", "x_kernel.png", "x_kernel.npy", False), ("x_1.png", "x_1_kernel.png", "x_1_kernel.npy", True)]
    assert cli.plan_outputs(files[:1], tmp_path / "o", save_kernel=True)[0].kernel_npy is None
    # an input named like another's kernel weights is renamed, not overwritten
    clash = cli.plan_outputs([tmp_path / "x.png", tmp_path / "x_kernel.npy.png"], tmp_path / "o", kernel_npy=True)
    assert len({p.kernel_npy for p in clash} | {p.image for p in clash}) == 4


def test_cli_kernel_npy_needs_a_kernel_model(tmp_path, stand_ins, capsys):
    a = _save_png(tmp_path / "a.png", _u8(7))
    np.save(tmp_path / "f.npy", _flow())
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--kernel-npy"]) == cli.EXIT_USAGE
    assert "--kernel-npy needs --shake or --auto" in capsys.readouterr().err
    assert cli.main(["deblur", str(a), "-o", str(tmp_path / "o"), "--flow", str(tmp_path / "f.npy"),
                     "--kernel-npy"]) == cli.EXIT_USAGE
    assert "--kernel-npy cannot be used with --flow" in capsys.readouterr().err


# -- the default prior -----------------------------------------------------------------------------
def test_a_given_blur_gets_the_shipped_drunet_and_an_estimated_one_the_dncnn(fake_hqs, monkeypatch):
    given, blind = object(), object()
    monkeypatch.setattr(pipeline, "given_blur_prior", lambda: given)
    monkeypatch.setattr(pipeline, "default_prior", lambda: blind)
    pd.deblur(_photo(), flow=_flow(), noise_level=0.01)
    assert fake_hqs.calls[-1]["prior"] is given
    monkeypatch.setattr(pipeline, "estimate_flow", lambda x, *a, **k: torch.full((x.shape[0], 2, H, W), 6.0))
    pd.deblur(_photo(), noise_level=0.01, flow_model=StandInSEN(), flow_ensemble=False)
    assert fake_hqs.calls[-1]["prior"] is blind


def test_deblur_shake_gets_the_drunet_for_a_given_kernel(monkeypatch):
    import pnpdeblur.camera_shake as camera_shake

    calls = []

    def record(y, K, prior, **kw):
        calls.append(prior)
        return types.SimpleNamespace(x=y, history=[])

    monkeypatch.setattr(pnpdeblur.solvers, "hqs", record)
    given, blind = object(), object()
    monkeypatch.setattr(camera_shake, "given_blur_prior", lambda: given)
    monkeypatch.setattr(camera_shake, "default_prior", lambda: blind)
    monkeypatch.setattr(camera_shake, "estimate_kernel", lambda img, size: motion_kernel((8.0, 0.0), radius=7)[None])
    img = _photo(40, 40)
    pd.deblur_shake(img, kernel=motion_kernel((3.0, 1.0)), noise_level=0.01)
    pd.deblur_shake(img, 15, noise_level=0.01, safeguard=False)
    assert calls == [given, blind]


def test_given_blur_prior_is_the_shipped_drunet():
    p = pipeline.given_blur_prior()
    assert isinstance(p, pd.priors.DRUNetPrior) and p.cycle is True
    ref = pd.priors.DRUNetPrior()
    x = torch.rand(1, 3, 24, 24)
    assert torch.equal(p(x, 0.05), ref(x, 0.05))


def test_cli_noise_floor_reaches_every_model_only_when_given(tmp_path, stand_ins, monkeypatch):
    import pnpdeblur.auto as auto

    a = _save_png(tmp_path / "a.png", _u8(8, h=44, w=52))
    np.save(tmp_path / "f.npy", _flow(44, 52))
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    out = str(tmp_path / "o")
    base = ["deblur", str(a), "-o", out, "--no-progress"]
    assert cli.main(base + ["--flow", str(tmp_path / "f.npy")]) == 0
    assert "noise_floor" not in stand_ins.deblur.calls[-1][2]  # the library's own default
    assert cli.main(base + ["--flow", str(tmp_path / "f.npy"), "--noise-floor", "0.02"]) == 0
    assert stand_ins.deblur.calls[-1][2]["noise_floor"] == 0.02
    assert cli.main(base + ["--kernel", str(tmp_path / "k.npy"), "--noise-floor", "0.015"]) == 0
    assert stand_ins.shake.calls[-1][2]["noise_floor"] == 0.015
    stand_ins.shake.result = lambda img, kw: types.SimpleNamespace(x=img, kernel=np.ones((1, 1)), unchanged=[False],
                                                                   history=[{"kernel_length": 9.0, "threshold": 7}])
    assert cli.main(base + ["--shake", "--noise-floor", "0"]) == 0
    assert stand_ins.shake.calls[-1][2]["noise_floor"] == 0.0
    seen = {}

    def fake_auto(img, **kw):
        seen.update(kw)
        return types.SimpleNamespace(x=img, model=["flow"], residual_shake=[1.0], residual_flow=[0.5])

    monkeypatch.setattr(auto, "deblur_auto", fake_auto)
    monkeypatch.setattr(learned, "default_flow_model", lambda: object())
    assert cli.main(base + ["--auto", "--noise-floor", "0.04"]) == 0
    assert seen["flow_options"]["noise_floor"] == 0.04 and seen["shake_options"] == {"noise_floor": 0.04}
    stand_ins.deblur.result = lambda img, kw: types.SimpleNamespace(
        x=img, flow=[np.zeros((2,) + img.shape[:2])], unchanged=[False], history=[{"safeguard": None}])
    assert cli.main(base + ["--noise-floor", "0.01"]) == 0  # the blind flow path
    assert stand_ins.deblur.calls[-1][2]["noise_floor"] == 0.01 and "flow" not in stand_ins.deblur.calls[-1][2]
    assert cli.main(base + ["--noise-floor", "-1"]) == cli.EXIT_USAGE
