"""pd.deblur_auto: the per-photo choice between the flow and the camera-shake results.

The choice logic is tested with stand-in pipelines whose results and blur models are known (so
each residual is known exactly); one end-to-end test per model runs the real pipelines on a
small photo.
"""
import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

import pnpdeblur as pd
from pnpdeblur import auto as A
from pnpdeblur.camera_shake import ShakeDeblurResult
from pnpdeblur.pipeline import DeblurResult


def _sharp(seed=0, size=32):
    return np.random.default_rng(seed).random((size, size))


BOX = np.full((1, 5), 0.2)  # a horizontal 5-tap box: Convolution's convention, sum 1


# --------------------------------------------------------------------------- reblur_residual
def test_reblur_residual_is_the_inner_weighted_mse():
    g = torch.Generator().manual_seed(0)
    y, x = torch.rand(1, 2, 12, 14, generator=g), torch.rand(1, 2, 12, 14, generator=g)
    op = pd.Convolution(BOX)
    d = (op(x.double()) - y.double()).numpy()
    assert A.reblur_residual(y, x, op) == pytest.approx(float(np.mean(d ** 2)), rel=1e-12)
    inner = d[..., 3:-3, 3:-3]
    assert A.reblur_residual(y, x, op, margin=3) == pytest.approx(float(np.mean(inner ** 2)), rel=1e-12)
    w = (torch.rand(1, 2, 12, 14, generator=g) > 0.3).double()
    wi = w.numpy()[..., 3:-3, 3:-3]
    assert A.reblur_residual(y, x, op, margin=3, weights=w) == pytest.approx(
        float((wi * inner ** 2).sum() / wi.sum()), rel=1e-12)
    dg = (op(x.double() ** 2.2) - y.double() ** 2.2).numpy()
    assert A.reblur_residual(y, x, op, gamma=2.2) == pytest.approx(float(np.mean(dg ** 2)), rel=1e-12)
    assert np.isnan(A.reblur_residual(y, x, op, weights=torch.zeros_like(y)))


@pytest.mark.parametrize("margin,match", [(-1, "margin must be an int >= 0"), (True, "margin must be an int"),
                                          (6, "margin=6 leaves no pixel of the 12×14 photo")])
def test_reblur_residual_checks_the_margin(margin, match):
    y = torch.zeros(1, 1, 12, 14)
    with pytest.raises(ValueError, match=match):
        A.reblur_residual(y, y, pd.Convolution(BOX), margin=margin)
    assert A.reblur_residual(y, y + 0.5, pd.Convolution(BOX), margin=5) == pytest.approx(0.25)  # 2 rows left


def test_reblur_residual_with_one_trusted_pixel():
    g = torch.Generator().manual_seed(1)
    y, x = torch.rand(1, 1, 8, 8, generator=g), torch.rand(1, 1, 8, 8, generator=g)
    w = torch.zeros(1, 1, 8, 8)
    w[0, 0, 4, 3] = 1.0
    d = pd.Convolution(BOX)(x.double()) - y.double()
    assert A.reblur_residual(y, x, pd.Convolution(BOX), weights=w) == pytest.approx(float(d[0, 0, 4, 3] ** 2))


# --------------------------------------------------------------------------- the choice
class Pipelines:
    """Stand-ins for deblur / deblur_shake: fixed results, flows, kernels and safeguard verdicts."""

    def __init__(self, monkeypatch, xf, flow, xs, kernel, flow_unchanged=None, shake_unchanged=None):
        self.calls, self.images, self.flow_models = [], [], []
        n = xf.shape[0] if xf.ndim == 4 else 1

        def fake_deblur(image, flow_model=None, **kw):
            self.calls.append(("flow", kw))
            self.images.append(image)
            self.flow_models.append(flow_model)
            return DeblurResult(x=xf, flow=[flow], unchanged=list(flow_unchanged or [False] * n))

        def fake_shake(image, kernel_size, **kw):
            self.calls.append(("shake", kernel_size, kw))
            self.images.append(image)
            return ShakeDeblurResult(x=xs, kernel=kernel, unchanged=list(shake_unchanged or [False] * n),
                                     history=[{"registration": None} for _ in range(n)])

        monkeypatch.setattr(A, "deblur", fake_deblur)
        monkeypatch.setattr(A, "deblur_shake", fake_shake)


def _shaken(sharp):
    return np.clip(convolve(sharp, BOX[::-1, ::-1], mode="nearest"), 0, 1)


def test_the_kernel_result_is_scored_as_deconvolved_and_returned_registered(monkeypatch):
    # deblur_shake runs with register=False: the residual is that of the deconvolution itself (a
    # move and a move back would add interpolation to it); the result returned is then moved by the
    # kernel's centroid fraction, as deblur_shake's own default does
    from pnpdeblur.camera_shake import centroid_offset, shift_image

    half = np.zeros((1, 5))
    half[0, 2:4] = 0.5  # centroid half a pixel right of the centre
    sharp = _sharp(3)
    y = np.clip(convolve(sharp, half, mode="nearest"), 0, 1)  # scipy's convolve is Convolution's convention
    p = Pipelines(monkeypatch, xf=y * 0.9, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=half)
    res = pd.deblur_auto(y, kernel_size=9, saturation=None)
    assert p.calls[1][2]["register"] is False
    assert res.model == ["shake"] and res.residual_shake[0] < 1e-20  # the deconvolution explains y exactly
    assert centroid_offset(half) == (0.0, 0.5) and res.shake_result.history[0]["registration"] == (0.0, 0.5)
    want = shift_image(torch.from_numpy(sharp)[None, None], 0.0, 0.5)[0, 0].clamp(0, 1).numpy()
    np.testing.assert_allclose(res.x, want, atol=1e-12)
    np.testing.assert_array_equal(res.shake_result.x, res.x)
    # register=False in shake_options: the deconvolution as it is
    kept = pd.deblur_auto(y, kernel_size=9, saturation=None, shake_options={"register": False})
    np.testing.assert_array_equal(kept.x, sharp)
    assert kept.shake_result.history[0]["registration"] is None
    with pytest.raises(TypeError, match=r"^register must be True or False, got 1$"):
        pd.deblur_auto(y, kernel_size=9, shake_options={"register": 1})
    # a kernel given through shake_options is used as given: nothing is moved
    given = pd.deblur_auto(y, saturation=None, shake_options={"kernel": half})
    np.testing.assert_array_equal(given.x, sharp)


def test_the_kernel_that_reproduces_the_photo_wins(monkeypatch):
    sharp = _sharp()
    y = _shaken(sharp)
    # flow candidate: a zero flow (identity blur) and a slightly wrong image
    p = Pipelines(monkeypatch, xf=y * 0.9, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=BOX)
    res = pd.deblur_auto(y, kernel_size=9, saturation=None)
    assert res.model == ["shake"] and np.array_equal(res.x, sharp)
    assert res.residual_shake[0] < 1e-20 < res.residual_flow[0]
    want = A.reblur_residual(torch.from_numpy(y)[None, None], torch.from_numpy(y * 0.9)[None, None],
                             pd.MotionBlur(torch.zeros(1, 2, 32, 32, dtype=torch.float64)),
                             margin=pd.Convolution(BOX).reach())
    assert res.residual_flow[0] == pytest.approx(want, rel=1e-12)
    assert [c[0] for c in p.calls] == ["flow", "shake"] and p.calls[1][1] == 9
    assert res.flow_result.x is not None and res.shake_result.kernel is BOX


def test_a_tie_keeps_the_flow_result(monkeypatch):
    sharp = _sharp(1)
    y = _shaken(sharp)
    # both candidates are the sharp image under an identity blur (zero flow, a 1-tap kernel):
    # equal residuals, and a residual is not below 0.8 × itself
    Pipelines(monkeypatch, xf=sharp, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=np.ones((1, 1)))
    res = pd.deblur_auto(y, saturation=None)
    assert res.residual_flow[0] == pytest.approx(res.residual_shake[0]) and res.residual_flow[0] > 1e-4
    assert res.model == ["flow"]
    assert np.array_equal(res.x, sharp)
    assert pd.deblur_auto(y, saturation=None, ratio=1.0).model == ["flow"]  # strictly below: a tie is not


@pytest.mark.parametrize("ratio,model", [(0.5, "flow"), (0.8, "flow"), (1.0, "shake"), (2.0, "shake")])
def test_ratio_sets_how_much_better_the_kernel_must_fit(monkeypatch, ratio, model):
    sharp = _sharp(2)
    y = _shaken(sharp)
    # residuals by construction: shake 0.81 e², flow e² (e a constant offset of the image)
    e = 0.01
    Pipelines(monkeypatch, xf=np.clip(sharp + e, 0, 1), flow=np.zeros((2, 32, 32)),
              xs=np.clip(sharp, 0, 1), kernel=BOX)
    monkeypatch.setattr(A, "reblur_residual", lambda y, x, op, **kw: 0.81e-4 if isinstance(op, pd.Convolution) else 1e-4)
    res = pd.deblur_auto(_shaken(sharp), ratio=ratio, saturation=None)
    assert res.model == [model]


@pytest.mark.parametrize("flow_unchanged,shake_unchanged,model", [
    ([True], [True], "none"), ([True], [False], "shake"), ([False], [True], "flow")])
def test_safeguards_decide_when_a_pipeline_left_the_photo(monkeypatch, flow_unchanged, shake_unchanged, model):
    sharp = _sharp(3)
    y = _shaken(sharp)
    xs = np.clip(sharp * 0.5, 0, 1)  # a poor kernel result: it would lose on residuals
    Pipelines(monkeypatch, xf=y, flow=np.zeros((2, 32, 32)), xs=xs, kernel=BOX,
              flow_unchanged=flow_unchanged, shake_unchanged=shake_unchanged)
    res = pd.deblur_auto(y, saturation=None)
    assert res.model == [model]
    assert np.isnan(res.residual_flow[0]) == flow_unchanged[0]
    assert np.isnan(res.residual_shake[0]) == shake_unchanged[0]
    assert np.array_equal(res.x, xs if model == "shake" else y)


def test_a_batch_is_chosen_photo_by_photo_and_keeps_its_type(monkeypatch):
    a, b = _sharp(4), _sharp(5)
    ya, yb = _shaken(a), _shaken(b)
    y = torch.from_numpy(np.stack([ya, yb])[:, None]).float()
    y[1] = torch.from_numpy(b)[None].float()  # photo 1 is not blurred: the zero flow explains it
    # photo 0: the kernel candidate is exact (the box), the flow one is off; photo 1: the other way
    xf = torch.from_numpy(np.stack([ya * 0.9, b])[:, None]).float()
    xs = torch.from_numpy(np.stack([a, b * 0.5])[:, None]).float()
    Pipelines(monkeypatch, xf=xf, flow=torch.zeros(2, 2, 32, 32), xs=xs, kernel=np.stack([BOX, BOX]))
    res = pd.deblur_auto(y, saturation=0.9)
    assert res.model == ["shake", "flow"]
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float32 and res.x.shape == (2, 1, 32, 32)
    assert torch.equal(res.x[0], xs[0]) and torch.equal(res.x[1], xf[1])
    # each photo's residuals are its own: photo, result and clipped pixels of that photo alone
    m = pd.Convolution(BOX).reach()
    for n in range(2):
        w = (y[n:n + 1] < 0.9).float()
        want_f = A.reblur_residual(y[n:n + 1], xf[n:n + 1], pd.MotionBlur(torch.zeros(1, 2, 32, 32, dtype=torch.float64)),
                                   margin=m, weights=w)
        want_s = A.reblur_residual(y[n:n + 1], xs[n:n + 1], pd.Convolution(BOX), margin=m, weights=w)
        assert res.residual_flow[n] == pytest.approx(want_f, rel=1e-9, abs=1e-15)
        assert res.residual_shake[n] == pytest.approx(want_s, rel=1e-9, abs=1e-15)
    assert float((y >= 0.9).sum()) > 0  # the weights matter here


def test_uint8_in_uint8_out_and_clipped_pixels_left_out(monkeypatch):
    sharp = _sharp(6)
    y = _shaken(sharp)
    y8 = np.round(y * 255).astype(np.uint8)
    y8[10:20, 10:20] = 255  # a clipped highlight: left out of both residuals
    Pipelines(monkeypatch, xf=np.round(y * 0.9 * 255).astype(np.uint8), flow=np.zeros((2, 32, 32), np.float32),
              xs=np.round(sharp * 255).astype(np.uint8), kernel=BOX)
    seen = []
    real = A.reblur_residual

    def spy(yb, xb, op, **kw):
        seen.append(kw["weights"])
        return real(yb, xb, op, **kw)

    monkeypatch.setattr(A, "reblur_residual", spy)
    res = pd.deblur_auto(y8)
    assert res.x.dtype == np.uint8 and res.x.shape == (32, 32) and res.model == ["shake"]
    assert len(seen) == 2 and all(float(w[0, 0, 10:20, 10:20].sum()) == 0 for w in seen)
    assert float(seen[0].sum()) == 32 * 32 - 100


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "0.8"])
def test_ratio_is_checked(bad):
    with pytest.raises(ValueError, match="ratio must be a finite number > 0"):
        pd.deblur_auto(np.zeros((16, 16)), ratio=bad)


def test_options_reach_both_pipelines(monkeypatch):
    sharp = _sharp(7)
    y = _shaken(sharp)
    p = Pipelines(monkeypatch, xf=y, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=BOX)
    prior = object()
    pd.deblur_auto(y, prior=prior, noise_level=0.02, safeguard=False, saturation=0.9, boundary="periodic",
                   gamma=2.2, device="cpu", progress=False, kernel_size=15)
    flow_kw, shake_kw = p.calls[0][1], p.calls[1][2]
    want = dict(prior=prior, noise_level=0.02, safeguard=False, saturation=0.9, boundary="periodic", gamma=2.2,
                device="cpu", progress=False)
    assert flow_kw == want and shake_kw == {**want, "register": False} and p.calls[1][1] == 15  # registered here
    assert p.images[0] is y and p.images[1] is y  # the caller's photo itself goes to both


def test_defaults_reach_both_pipelines(monkeypatch):
    sharp = _sharp(9)
    y = _shaken(sharp)
    p = Pipelines(monkeypatch, xf=y, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=BOX)
    sen = object()
    pd.deblur_auto(y, flow_model=sen)
    want = dict(prior=None, noise_level=None, safeguard=True, saturation=0.98, boundary="unknown", gamma=None,
                device=None, progress=False)
    # kernel_size None: deblur_shake's default support, which follows the photo
    assert p.calls[0][1] == want and p.calls[1][2] == {**want, "register": False} and p.calls[1][1] is None
    assert p.flow_models == [sen]


# --------------------------------------------------------------------------- end to end
def test_real_pipelines_pick_the_kernel_for_camera_shake():
    from pnpdeblur.data import random_shake_kernel, sample_image

    x = sample_image("camera", size=128)[..., 0].astype(np.float64)
    k = random_shake_kernel(19, seed=3)
    y = np.clip(convolve(x, k, mode="nearest") + 0.01 * np.random.default_rng(0).standard_normal(x.shape), 0, 1)
    res = pd.deblur_auto(y.astype(np.float32))
    # measured: residuals 2.7e-4 (flow) against 1.1e-4 (kernel)
    assert res.model == ["shake"] and res.residual_shake[0] < 0.8 * res.residual_flow[0]
    assert np.array_equal(res.x, res.shake_result.x)


def test_pipeline_specific_options_go_to_their_pipeline(monkeypatch):
    sharp = _sharp(8)
    y = _shaken(sharp)
    p = Pipelines(monkeypatch, xf=y, flow=np.zeros((2, 32, 32)), xs=sharp, kernel=BOX)
    pd.deblur_auto(y, flow_options={"iterations": 2, "cg_iters": 7}, shake_options={"noise_floor": 0.03})
    assert p.calls[0][1]["iterations"] == 2 and p.calls[0][1]["cg_iters"] == 7 and "noise_floor" not in p.calls[0][1]
    assert p.calls[1][2]["noise_floor"] == 0.03 and "iterations" not in p.calls[1][2]


@pytest.mark.parametrize("kw,err,match", [
    ({"flow_options": {"prior": None}}, ValueError, r"flow_options repeats arguments of deblur_auto itself: \['prior'\]"),
    ({"shake_options": {"kernel_size": 9}}, ValueError, "shake_options repeats arguments"),
    ({"flow_options": {"flow_model": None}}, ValueError, "flow_options repeats arguments"),
    ({"shake_options": {"image": None}}, ValueError, r"shake_options repeats arguments of deblur_auto itself: \['image'\]"),
    ({"flow_options": [("iterations", 2)]}, TypeError, "flow_options must be a mapping of keyword arguments, got list"),
])
def test_pipeline_options_are_checked(kw, err, match):
    with pytest.raises(err, match=match):
        pd.deblur_auto(np.zeros((16, 16)), **kw)


def test_cli_auto_end_to_end(tmp_path, capsys):
    from skimage import io

    from pnpdeblur import cli
    from pnpdeblur.data import random_shake_kernel, sample_image

    x = sample_image("camera", size=128)[..., 0].astype(np.float64)
    y = np.clip(convolve(x, random_shake_kernel(19, seed=3), mode="nearest")
                + 0.01 * np.random.default_rng(0).standard_normal(x.shape), 0, 1)
    src = tmp_path / "shaken.png"
    io.imsave(str(src), np.round(y * 255).astype(np.uint8), check_contrast=False)
    out = tmp_path / "out"
    assert cli.main(["deblur", str(src), "-o", str(out), "--auto", "--save-kernel", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"pnpdeblur: note: {src}: one camera-shake kernel explains the photo better" in err
    res = io.imread(str(out / "shaken.png"))
    assert res.shape == (128, 128) and res.dtype == np.uint8
    psnr = lambda a: float(pd.metrics.psnr(a.astype(np.float64) / 255, x))  # noqa: E731
    assert psnr(res) > psnr(io.imread(str(src))) + 3  # measured +6.4 dB
    assert io.imread(str(out / "shaken_kernel.png")).shape == (21, 21)  # the default support of a 128 px photo


@pytest.mark.parametrize("shape, kwargs, match", [
    ((15, 30), {}, r"^the image's smaller side 15 is too small for a kernel estimate"),  # the default follows the photo
    ((40, 30, 3), {"kernel_size": 33}, r"^kernel_size 33 must not exceed the image's smaller side 30 .*<= 29$"),
    ((12, 12), {"kernel_size": 5}, r"smaller side 12 is too small for a kernel estimate"),
    ((15, 40), {"kernel_size": 5}, r"^the image's smaller side 15 is too small for a kernel estimate \(at least 16x16"),
    ((40, 40), {"kernel_size": 4}, r"^kernel_size must be an odd int"),
])
def test_a_kernel_that_cannot_fit_is_refused_before_either_pipeline_runs(monkeypatch, shape, kwargs, match):
    def never(*args, **kw):
        raise AssertionError("a pipeline ran")

    monkeypatch.setattr(A, "deblur", never)
    monkeypatch.setattr(A, "deblur_shake", never)
    with pytest.raises(ValueError, match=match):
        pd.deblur_auto(np.random.default_rng(0).random(shape), **kwargs)


def test_a_given_kernel_is_not_held_to_the_estimate_size(monkeypatch):
    class Reached(Exception):
        pass

    def flow_pipeline(*a, **k):
        raise Reached

    monkeypatch.setattr(A, "deblur", flow_pipeline)
    with pytest.raises(Reached):  # past the size check: 20 px would refuse the default 31-px estimate
        pd.deblur_auto(np.random.default_rng(0).random((20, 20)), shake_options={"kernel": np.ones((3, 3)) / 9})


@pytest.mark.parametrize("size,cap", [(20, 9), (21, 10)])  # the largest margin that leaves a pixel
def test_margin_is_capped_for_a_small_photo_and_gamma_reaches_the_residuals(monkeypatch, size, cap):
    sharp = _sharp(10, size=size)
    big = np.full((25, 25), 1 / 625)  # reach 12: more than a 20- or 21-px photo allows
    Pipelines(monkeypatch, xf=sharp, flow=np.zeros((2, size, size)), xs=sharp, kernel=big)
    seen = []
    monkeypatch.setattr(A, "reblur_residual", lambda y, x, op, **kw: seen.append(kw) or 1.0)
    pd.deblur_auto(sharp, kernel_size=19, saturation=0.5, gamma=2.2)
    assert [kw["margin"] for kw in seen] == [cap, cap] and all(kw["gamma"] == 2.2 for kw in seen)
    # the weights are the photo's own at the given saturation: 0 at and above 0.5
    want = (torch.from_numpy(sharp) < 0.5).float()[None, None]
    assert all(torch.equal(kw["weights"].float(), want) for kw in seen)


def test_the_pipelines_warnings_point_at_the_users_line():
    # deblur_auto calls deblur, which calls estimate_flow: each warning lands on this file's line
    import inspect
    import warnings

    from _flow_standins import StandInSEN

    img = _sharp(size=64)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        pd.deblur_auto(img, flow_model=StandInSEN(vector=(0.0, 0.0)), noise_level=0.01)
    said = {str(w.message).split(":")[0]: (w.filename, w.lineno) for w in record}
    assert said["estimate_flow sees 64×64 px"] == (__file__, line)
    assert said["pd.deblur returned image(s) [0] unchanged"] == (__file__, line)
