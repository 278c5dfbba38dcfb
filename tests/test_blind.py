"""Blind deblurring: pd.estimate_flow (layouts, tiles, scale) and pd.deblur (end to end)."""
import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.estimation.learned import _from_doubled, _to_doubled
from pnpdeblur.metrics import flow_mse, psnr
from pnpdeblur.nets import SEN
from pnpdeblur.pipeline import estimate_noise_level


class ConstantFlowSEN(SEN):
    """A SEN whose estimate is a fixed motion vector (or a callable of the input), for wiring tests.

    Its answer does not turn with the image, so the tests run it once per estimate
    (``ensemble=False`` / ``flow_ensemble=False``); the ensemble has its own tests.
    """

    def __init__(self, vector=(6.0, 0.0), fn=None):
        super().__init__(width=2, levels=1, stacks=1)
        self.vector, self.fn, self.calls = vector, fn, []

    @torch.no_grad()
    def estimate(self, x):
        self.calls.append(tuple(x.shape))
        if self.fn is not None:
            return self.fn(x)
        f = torch.tensor(self.vector, dtype=x.dtype, device=x.device).view(1, 2, 1, 1)
        return f.expand(x.shape[0], 2, *x.shape[-2:]).clone()


def _deblur(*args, **kwargs):
    """pd.deblur with one SEN pass per flow estimate, for the stand-in networks (see ConstantFlowSEN)."""
    return pd.deblur(*args, flow_ensemble=False, **kwargs)


@pytest.fixture(scope="module")
def tiny_sen():
    torch.manual_seed(0)
    return SEN(width=4, levels=2).eval()


def test_doubled_angle_round_trip_is_sign_invariant():
    f = torch.randn(2, 2, 5, 7) * 10
    back = _from_doubled(_to_doubled(f))
    canon = pd.data.canonicalize_flow(f)
    assert torch.allclose(back, canon, atol=1e-4)
    assert torch.allclose(_to_doubled(f), _to_doubled(-f), atol=1e-5)


def test_estimate_flow_layouts_and_types(tiny_sen):
    rgb = sample_image("astronaut", size=(50, 70))
    f = pd.estimate_flow(rgb, tiny_sen)
    assert isinstance(f, np.ndarray) and f.shape == (2, 50, 70) and f.dtype == np.float32
    # uint8 gives the same flow as the float image it encodes
    u8 = np.round(rgb * 255).astype(np.uint8)
    assert np.allclose(pd.estimate_flow(u8, tiny_sen), pd.estimate_flow(u8 / np.float32(255), tiny_sen), atol=1e-5)
    # grey is replicated to RGB
    grey = rgb.mean(2)
    assert np.allclose(pd.estimate_flow(grey, tiny_sen), pd.estimate_flow(np.repeat(grey[:, :, None], 3, 2), tiny_sen),
                       atol=1e-5)
    # torch (C, H, W) and (N, C, H, W): same numbers, torch out
    t = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    ft = pd.estimate_flow(t, tiny_sen)
    assert isinstance(ft, torch.Tensor) and ft.shape == (2, 50, 70)
    assert np.allclose(ft.numpy(), f, atol=1e-5)
    fb = pd.estimate_flow(torch.stack([t, t.flip(-1)]), tiny_sen)
    assert fb.shape == (2, 2, 50, 70) and torch.allclose(fb[0], ft, atol=1e-5)
    # float64 in -> float64 out
    assert pd.estimate_flow(t.double(), tiny_sen).dtype == torch.float64


@pytest.mark.parametrize("bad, err", [
    (np.full((20, 20, 3), np.nan, np.float32), ValueError),
    (np.zeros((0, 20, 3), np.float32), ValueError),
    (np.zeros((20, 20, 5), np.float32), ValueError),
    (np.zeros((2, 2, 2, 2, 2), np.float32), ValueError),
    (np.zeros((20, 20), np.int16), TypeError),
    ("photo.png", TypeError),
])
def test_estimate_flow_rejects_bad_input(tiny_sen, bad, err):
    with pytest.raises(err, match="image"):
        pd.estimate_flow(bad, tiny_sen)


def test_estimate_flow_rejects_bad_arguments(tiny_sen):
    img = np.zeros((32, 32, 3), np.float32)
    with pytest.raises(TypeError, match="model"):
        pd.estimate_flow(img, torch.nn.Conv2d(3, 2, 1))
    with pytest.raises(ValueError, match="scale"):
        pd.estimate_flow(img, tiny_sen, scale=2.0)
    with pytest.raises(ValueError, match="tile"):
        pd.estimate_flow(img, tiny_sen, tile=100)


def test_tiles_cover_the_image_and_blend_opposite_representatives():
    """Tiles meet where one says m and the other −m: the blend must keep |m|, not cancel it."""

    def vertical(x):
        # left half of the image (by absolute column) reports (0, +8), right half (0, −8)
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 1] = 8.0 if float(x[0, 0, 0, 0]) < 0.5 else -8.0
        return f

    img = np.zeros((64, 200, 3), np.float32)
    img[:, 100:] = 1.0  # tiles starting in the right half see 1.0 at their corner
    m = ConstantFlowSEN(fn=vertical)
    f = pd.estimate_flow(img, m, ensemble=False, tile=96, overlap=32)
    assert len(m.calls) >= 3 and all(c[-1] <= 96 for c in m.calls)
    assert np.allclose(np.hypot(f[0], f[1]), 8.0, atol=1e-4)
    # plain averaging of (u, v) would have given 0 where the tiles overlap


def test_tiled_equals_untiled_for_a_constant_field():
    m = ConstantFlowSEN((5.0, -3.0))
    img = np.random.default_rng(0).random((150, 260, 3)).astype(np.float32)
    f = pd.estimate_flow(img, m, ensemble=False, tile=64, overlap=16)
    assert np.allclose(f[0], 5.0, atol=1e-4) and np.allclose(f[1], -3.0, atol=1e-4)


def test_scale_estimates_on_a_smaller_image_and_rescales_the_lengths():
    m = ConstantFlowSEN((4.0, 2.0))
    img = np.random.default_rng(0).random((80, 120, 3)).astype(np.float32)
    f = pd.estimate_flow(img, m, ensemble=False, scale=0.5)
    assert m.calls[-1][-2:] == (40, 60)
    assert f.shape == (2, 80, 120)
    assert np.allclose(f[0], 8.0, atol=1e-3) and np.allclose(f[1], 4.0, atol=1e-3)


def test_pretrained_sen_beats_the_zero_flow_on_a_held_out_photo():
    """The shipped weights on a photo never used in training (astronaut), ±23 preset."""
    img = sample_image("astronaut", size=128)
    errs, zero = [], []
    for seed in (1, 2):
        flow = random_motion_flow((128, 128), "23", seed)
        y = np.asarray(pd.MotionBlur(flow)(img), np.float32)
        est = pd.estimate_flow(y)
        errs.append(flow_mse(est, flow))
        zero.append(flow_mse(np.zeros_like(flow), flow))
    assert np.mean(errs) < 0.35 * np.mean(zero)


def test_noise_level_estimate_matches_the_added_noise():
    rng = np.random.default_rng(0)
    for sigma in (0.01, 0.05):
        # a flat image holds nothing but the noise: the MAD rule is unbiased (±2 % sampling error)
        flat = 0.5 + sigma * rng.standard_normal((2, 3, 128, 128))
        est = estimate_noise_level(torch.from_numpy(flat))
        assert est == pytest.approx([sigma, sigma], rel=0.05)
    # on a photo it agrees with scikit-image's wavelet estimator (another wavelet, same rule)
    pytest.importorskip("pywt")
    from skimage.restoration import estimate_sigma

    img = sample_image("coffee", size=256)
    y = img + 0.02 * rng.standard_normal(img.shape)
    ref = estimate_sigma(y, average_sigmas=True, channel_axis=-1)
    est = estimate_noise_level(torch.from_numpy(y.transpose(2, 0, 1)[None].copy()))[0]
    assert est == pytest.approx(ref, rel=0.15)
    with pytest.raises(ValueError, match="2×2"):
        estimate_noise_level(torch.zeros(1, 1, 1, 5))


def _blurred(size=64, vector=(7.0, 0.0), noise=0.005):
    img = sample_image("astronaut", size=size)
    flow = np.zeros((2, size, size), np.float32)
    flow[0], flow[1] = vector
    rng = np.random.default_rng(0)
    y = np.clip(np.asarray(pd.MotionBlur(flow)(img)) + noise * rng.standard_normal(img.shape), 0, 1)
    return img, y.astype(np.float32)


def test_deblur_with_the_right_flow_sharpens_and_with_the_wrong_one_does_not():
    """Wiring: the flow the model reports is the one deconvolved (direction and length matter)."""
    img, y = _blurred()
    right = _deblur(y, flow_model=ConstantFlowSEN((7.0, 0.0)), prior=pd.priors.TV(), noise_floor=0.0)
    wrong = _deblur(y, flow_model=ConstantFlowSEN((0.0, 7.0)), prior=pd.priors.TV(), noise_floor=0.0)
    p0 = psnr(y, img, channel_axis=-1)
    assert psnr(right.x, img, channel_axis=-1) > p0 + 3
    assert psnr(wrong.x, img, channel_axis=-1) < p0
    assert right.x.shape == y.shape and right.x.dtype == np.float32
    assert len(right.flow) == 1 and right.flow[0].shape == (2, 64, 64)
    assert np.allclose(right.flow[0][0], 7.0)


def test_deblur_global_iterations_uint8_grey_and_torch():
    img, y = _blurred(48)
    m = ConstantFlowSEN((7.0, 0.0))
    res = _deblur(np.round(y * 255).astype(np.uint8), iterations=2, flow_model=m, prior=pd.priors.TV(),
                    n_iter=3, reference=np.round(img * 255).astype(np.uint8))
    assert res.x.dtype == np.uint8 and res.x.shape == y.shape
    assert [e["iteration"] for e in res.history] == [0, 1] and len(res.flow) == 2
    assert all("psnr" in e and "hqs" in e and e["noise_level"][0] >= 0 for e in res.history)
    # the second iteration estimates the flow on the first result, not on the input
    assert len(m.calls) == 2
    grey = _deblur(y.mean(2), flow_model=m, prior=pd.priors.TV(), n_iter=3)
    assert grey.x.shape == (48, 48)
    t = torch.from_numpy(y.transpose(2, 0, 1).copy())
    tr = _deblur(t, flow_model=m, prior=pd.priors.TV(), n_iter=3)
    assert isinstance(tr.x, torch.Tensor) and tr.x.shape == t.shape
    assert float(tr.x.min()) >= 0 and float(tr.x.max()) <= 1
    assert isinstance(tr.flow[0], torch.Tensor) and tr.flow[0].shape == (2, 48, 48)


def test_deblur_callback_can_stop_early():
    _, y = _blurred(32)
    res = _deblur(y, iterations=3, flow_model=ConstantFlowSEN(), prior=pd.priors.TV(), n_iter=2,
                    callback=lambda entry, x: True)
    assert len(res.history) == 1


def test_deblur_rejects_bad_arguments():
    _, y = _blurred(32)
    m = ConstantFlowSEN()
    with pytest.raises(ValueError, match="iterations"):
        _deblur(y, iterations=0, flow_model=m)
    with pytest.raises(ValueError, match="noise_level"):
        _deblur(y, noise_level=-0.1, flow_model=m)
    with pytest.raises(TypeError, match="noise_level"):
        _deblur(y, noise_level="0.01", flow_model=m)
    with pytest.raises(ValueError, match="noise_floor"):
        _deblur(y, noise_floor=float("nan"), flow_model=m)
    with pytest.raises(ValueError, match="image"):
        _deblur(np.full_like(y, np.nan), flow_model=m)
    with pytest.raises(ValueError, match="reference"):
        _deblur(y, flow_model=m, reference=y[:10])


def test_deblur_default_models_run_end_to_end():
    """Shipped SEN and DnCNN, no arguments: a finite image of the input's size and dtype."""
    img = sample_image("coffee", size=64)
    flow = random_motion_flow((64, 64), "23", 3)
    y = np.clip(np.asarray(pd.MotionBlur(flow)(img)), 0, 1).astype(np.float32)
    res = pd.deblur(y)
    assert res.x.shape == y.shape and np.isfinite(res.x).all()
    assert 0 < res.noise_level[0] < 0.05


def _load_example(name: str):
    """The module ``examples/<name>.py``, imported from its file."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_blind_demo_example_runs(tmp_path):
    _load_example("blind_demo").main(["--out", str(tmp_path), "--size", "64"])
    for name in ("blurred.png", "deblurred.png", "flow_true.png", "flow_estimated.png", "comparison.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_make_demo_example_runs_and_deblurs(tmp_path):
    # `make demo` is one of the README's two commands: it must work, and its deblur must help
    from skimage.io import imread

    _load_example("demo").main(["--out", str(tmp_path), "--size", "64"])
    names = ("sharp.png", "blurred.png", "flow.png", "flow_legend.png", "kernels.png", "deblurred.png",
             "comparison.png")
    for name in names:
        assert (tmp_path / name).stat().st_size > 0
    sharp, blurred, deblurred = (imread(tmp_path / n) / 255.0 for n in names[:2] + names[5:6])
    assert sharp.shape == blurred.shape == deblurred.shape == (64, 64, 3)
    assert pd.metrics.psnr(deblurred, sharp) > pd.metrics.psnr(blurred, sharp) + 1.0


# -- the safeguard (issue 10): blur detector inside pd.deblur -----------------------------------
from pnpdeblur.estimation.blur_detection import (  # noqa: E402
    DEFAULT_THRESHOLD, blur_score, flow_blur_score, is_blurred, reblur_score)


def _line_blur(img, vector):
    flow = np.zeros((2,) + img.shape[:2], np.float32)
    flow[0], flow[1] = vector
    return np.asarray(pd.MotionBlur(flow)(img), np.float32)


def test_flow_blur_score_is_the_median_length():
    # lengths 0, 5, 5, 13 (3-4-5 and 5-12-13 triangles): median 5, independent of sign
    f = np.zeros((2, 2, 2), np.float32)
    f[:, 0, 1], f[:, 1, 0], f[:, 1, 1] = (3, 4), (-4, 3), (5, -12)
    assert flow_blur_score(f) == pytest.approx(5.0)
    fb = torch.from_numpy(np.stack([f, 2 * f]))
    assert flow_blur_score(fb) == pytest.approx([5.0, 10.0])
    with pytest.raises(ValueError, match="flow"):
        flow_blur_score(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        flow_blur_score(np.full((2, 4, 4), np.nan, np.float32))
    with pytest.raises(TypeError, match="flow"):
        flow_blur_score([[1.0]])


def _centre_crop(name, size=256):
    full = sample_image(name, channels=3).astype(np.float32)
    r, c = (full.shape[0] - size) // 2, (full.shape[1] - size) // 2
    return np.ascontiguousarray(full[r:r + size, c:c + size])


def test_detector_separates_a_sharp_photo_from_the_same_photo_blurred():
    """Shipped SEN on a held-out photo (not used to choose the threshold), 256² crop, a 17 px blur."""
    img = _centre_crop("astronaut")
    rng = np.random.default_rng(0)
    noisy = lambda a: np.clip(a + 0.01 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)  # noqa: E731
    batch = torch.from_numpy(np.stack([noisy(_line_blur(img, (15.0, 8.0))), noisy(img)]).transpose(0, 3, 1, 2).copy())
    flow = pd.estimate_flow(batch)  # one SEN pass for both images
    s_blur, s_sharp = blur_score(batch, flow=flow)
    assert s_sharp < DEFAULT_THRESHOLD < s_blur, (s_sharp, s_blur)
    # SEN measures the 17 px blur's length (median within 20 %), the sharp photo far below it
    assert s_blur == pytest.approx(np.hypot(15, 8), rel=0.2) and s_sharp < 0.3 * s_blur
    assert is_blurred(batch, flow=flow) == [True, False]  # one decision per image, in order


def test_is_blurred_compares_in_the_right_direction():
    """Fails if the threshold test is inverted or made strict the wrong way."""
    img = np.zeros((32, 32, 3), np.float32)
    big, small = np.zeros((2, 32, 32), np.float32), np.zeros((2, 32, 32), np.float32)
    big[0], small[1] = 9.0, 2.0
    assert is_blurred(img, 4.0, flow=big) is True
    assert is_blurred(img, 4.0, flow=small) is False
    assert is_blurred(img, 9.0, flow=big) is True       # score == threshold counts as blurred
    assert is_blurred(img, 9.5, flow=big) is False
    assert blur_score(img, flow=big) == pytest.approx(9.0)
    with pytest.raises(ValueError, match="does not match"):
        blur_score(img, flow=big[:, :16])
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold"):
            is_blurred(img, bad, flow=big)
    with pytest.raises(TypeError, match="threshold"):
        is_blurred(img, "4", flow=big)


def test_reblur_score_rises_with_blur_and_is_directional():
    img = sample_image("camera", size=128)[..., 0].astype(np.float64)
    s0 = reblur_score(img)
    s1, s2 = reblur_score(_line_blur(img, (5.0, 0.0))), reblur_score(_line_blur(img, (15.0, 0.0)))
    assert 0 < s0 < s1 < s2 < 1
    # the score follows the blur's direction: a vertical blur scores as a horizontal one on the transpose
    v = reblur_score(_line_blur(img, (0.0, 15.0)))
    t = _line_blur(np.ascontiguousarray(img.T), (15.0, 0.0))
    assert v == pytest.approx(reblur_score(np.ascontiguousarray(t.T)), abs=1e-9)
    # the largest of four directions: a vertical blur is seen as well as a horizontal one
    assert v > s1
    assert reblur_score(np.full((64, 64), 0.5)) == 1.0  # nothing to lose: no detail to restore
    with pytest.raises(ValueError, match="length"):
        reblur_score(img, length=1)
    with pytest.raises(ValueError, match="larger than"):
        reblur_score(img[:30, :30])


def test_safeguard_returns_a_sharp_input_unchanged_and_says_why():
    """Shipped SEN on a sharp held-out photo (grey uint8): the caller's array comes back bit-identical."""
    u8 = np.round(_centre_crop("camera")[..., 0] * 255).astype(np.uint8)
    with pytest.warns(UserWarning, match=r"unchanged.*safeguard=False"):
        res = pd.deblur(u8, prior=pd.priors.TV(), n_iter=2)
    assert res.x.dtype == np.uint8 and np.array_equal(res.x, u8) and res.x is not u8
    assert res.unchanged == [True] and len(res.history) == 1
    g = res.history[0]["safeguard"]
    assert g["blurred"] == [False] and g["processed"] == [False]
    assert g["blur_score"][0] == pytest.approx(blur_score(u8)) and g["threshold"] == DEFAULT_THRESHOLD
    assert g["blur_score"][0] < DEFAULT_THRESHOLD
    assert res.history[0]["hqs"] is None and len(res.flow) == 1 and res.flow[0].shape == (2, 256, 256)
    # float64 torch (C, H, W): the same object type, dtype and values
    t = torch.from_numpy(sample_image("astronaut", size=48).transpose(2, 0, 1).astype(np.float64))
    small = ConstantFlowSEN((1.0, 1.0))
    with pytest.warns(UserWarning, match="unchanged"):
        rt = _deblur(t, iterations=3, flow_model=small, prior=pd.priors.TV(), n_iter=2)
    assert rt.x.dtype == torch.float64 and torch.equal(rt.x, t) and len(small.calls) == 1


def test_safeguard_can_be_switched_off_and_decides_per_image():
    img, y = _blurred(48, vector=(3.0, 0.0))
    m = ConstantFlowSEN((3.0, 0.0))  # 3 px: below the threshold
    off = _deblur(y, flow_model=m, prior=pd.priors.TV(), n_iter=2, safeguard=False)
    assert off.history[0]["safeguard"] is None and off.unchanged == [False]
    assert np.abs(off.x - y).max() > 0.01
    # a batch: one image looks blurred (8 px), the other sharp (2 px); only the first is deblurred
    both = torch.from_numpy(np.stack([y, y]).transpose(0, 3, 1, 2).copy())

    def per_image(x, lengths=[]):  # estimate_flow runs the model one image at a time
        lengths.append(8.0 if len(lengths) % 2 == 0 else 2.0)
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = lengths[-1]
        return f

    with pytest.warns(UserWarning, match=r"image\(s\) \[1\] unchanged"):
        res = _deblur(both, flow_model=ConstantFlowSEN(fn=per_image), prior=pd.priors.TV(), n_iter=2)
    g = res.history[0]["safeguard"]
    assert g["blur_score"] == pytest.approx([8.0, 2.0]) and g["processed"] == [True, False]
    assert res.unchanged == [False, True]
    assert torch.equal(res.x[1], both[1]) and not torch.allclose(res.x[0], both[0], atol=1e-3)
    assert isinstance(res.history[0]["hqs"], list) and res.history[0]["hqs"][1] is None
    # a threshold above both scores leaves everything alone; one below both processes both
    with pytest.warns(UserWarning):
        assert _deblur(both, flow_model=ConstantFlowSEN(fn=per_image), prior=pd.priors.TV(), n_iter=2,
                         blur_threshold=9.0).unchanged == [True, True]
    assert _deblur(both, flow_model=ConstantFlowSEN(fn=per_image), prior=pd.priors.TV(), n_iter=2,
                     blur_threshold=1.0).unchanged == [False, False]
    with pytest.warns(UserWarning):  # a score equal to the threshold counts as blurred
        assert _deblur(both, flow_model=ConstantFlowSEN(fn=per_image), prior=pd.priors.TV(), n_iter=1,
                         blur_threshold=8.0).unchanged == [False, True]


def test_safeguard_stops_global_iterations_once_the_image_looks_sharp():
    _, y = _blurred(32)
    lengths = iter([7.0, 1.0, 7.0])  # the first result looks sharp to the (fake) estimator

    def fn(x):
        f = torch.zeros(x.shape[0], 2, *x.shape[-2:])
        f[:, 0] = next(lengths)
        return f

    res = _deblur(y, iterations=3, flow_model=ConstantFlowSEN(fn=fn), prior=pd.priors.TV(), n_iter=2)
    assert [e["safeguard"]["processed"] for e in res.history] == [[True], [False]]
    assert res.unchanged == [False] and len(res.flow) == 2


def test_safeguard_rejects_bad_arguments():
    _, y = _blurred(32)
    m = ConstantFlowSEN()
    with pytest.raises(TypeError, match="safeguard"):
        _deblur(y, flow_model=m, safeguard="yes")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="blur_threshold"):
            _deblur(y, flow_model=m, blur_threshold=bad)
