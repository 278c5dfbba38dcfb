"""Unknown boundaries: ``pad_boundary`` / ``crop_boundary`` / ``motion_blur_width`` and
``pd.deblur(boundary=...)``.

The references are independent of the library's operators where one exists: the reach of a line
kernel from its dense form (``motion_kernel`` with a generous radius), the masked solve from a
dense rectangular least-squares problem ``A = C K_ext`` (``C`` the crop) with
``numpy.linalg.solve``, and the padding from ``numpy.pad``.
"""
import os
import re
import warnings

import numpy as np
import pytest
import torch

import pnpdeblur.solvers
from _fakes import unused_prior
from _flow_standins import StandInSEN
from pnpdeblur import MotionBlur, pipeline
from pnpdeblur.data import random_motion_flow, sample_image
from pnpdeblur.metrics import psnr
from pnpdeblur.operators import dense
from pnpdeblur.operators.motion import motion_kernel
from pnpdeblur.priors import DnCNNPrior
from pnpdeblur.solvers import crop_boundary, hqs, motion_blur_width, pad_boundary

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors (conftest)


# -- motion_blur_width ---------------------------------------------------------------------------
@pytest.mark.parametrize("m", [(1.0, 0.0), (0.0, 1.0), (6.0, 0.0), (7.0, 0.0), (3.0, 4.0), (-5.5, 2.25),
                               (0.3, -0.2), (11.0, 11.0), (-20.0, 13.0), (46.0, 0.0)])
def test_width_covers_every_tap_of_the_dense_kernel(m):
    k = motion_kernel(m, radius=40)
    rows, cols = np.nonzero(k > 0)
    reach = int(max(np.abs(rows - 40).max(), np.abs(cols - 40).max()))
    flow = np.zeros((2, 3, 4))
    flow[:, 1, 2] = m  # the longest vector decides; the others are shorter
    flow[:, 0, 0] = (0.5 * m[0], 0.5 * m[1])
    w = motion_blur_width(flow)
    assert reach <= w
    if 0 in m:  # along an axis the bound is tight (diagonals reach less far along each axis)
        assert w <= reach + 2
    assert w == int(np.ceil(np.hypot(*m) / 2 + 1.5))


def test_width_of_a_zero_flow_is_zero_and_layouts_agree():
    assert motion_blur_width(np.zeros((2, 5, 5))) == 0
    f = random_motion_flow((9, 11), "23", 0)
    assert motion_blur_width(f) == motion_blur_width(torch.from_numpy(f)[None])
    assert motion_blur_width(f.astype(np.int16)) == motion_blur_width(np.rint(f))


@pytest.mark.parametrize("bad, err, msg", [
    (np.zeros((3, 4, 4)), ValueError, "flow must have shape (2, H, W) or (N, 2, H, W), got (3, 4, 4)"),
    (np.zeros((4, 4)), ValueError, "(2, H, W) or (N, 2, H, W)"),
    (np.full((2, 3, 3), np.nan), ValueError, "flow contains NaN or Inf"),
    ("flow.npy", TypeError, "flow must be an array"),
])
def test_width_rejects_bad_flows(bad, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        motion_blur_width(bad)


def test_the_padded_grid_reproduces_the_scene_blur_exactly():
    """Blur a whole scene, crop it: the operator on the crop padded by the width, applied to the
    scene cropped to that padded grid, gives the observed crop exactly (no clamped coordinate
    reaches an observed pixel); one pixel less of padding does not."""
    rng = np.random.default_rng(3)
    scene = rng.random((60, 70, 2))
    flow = random_motion_flow((60, 70), "23", rng)
    observed = np.asarray(MotionBlur(flow)(scene))[20:40, 25:45]
    f_crop = flow[:, 20:40, 25:45]
    w = motion_blur_width(f_crop)
    assert 0 < w <= 20

    def blur_with(pad):
        f_pad = np.pad(f_crop, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        x_pad = scene[20 - pad:40 + pad, 25 - pad:45 + pad]
        return crop_boundary(np.asarray(MotionBlur(f_pad)(x_pad)), pad)

    np.testing.assert_allclose(blur_with(w), observed, atol=1e-12, rtol=0)


def test_less_padding_than_the_width_lets_the_clamped_border_reach_observed_pixels():
    """13 px horizontal: taps reach 6 px, the width is ceil(6.5 + 1.5) = 8; 6 px of padding is
    still exact, 5 px is not (the clamped border of the padded grid reaches the crop)."""
    rng = np.random.default_rng(4)
    scene = rng.random((40, 60))
    flow = np.zeros((2, 40, 60))
    flow[0] = 13.0
    observed = np.asarray(MotionBlur(flow)(scene))[10:30, 20:40]
    assert motion_blur_width(flow) == 8

    def blur_with(pad):
        return crop_boundary(np.asarray(MotionBlur(flow[:, :20 + 2 * pad, :20 + 2 * pad])(
            scene[10 - pad:30 + pad, 20 - pad:40 + pad])), pad)

    np.testing.assert_allclose(blur_with(8), observed, atol=1e-12, rtol=0)
    np.testing.assert_allclose(blur_with(6), observed, atol=1e-12, rtol=0)
    assert np.abs(blur_with(5) - observed).max() > 1e-3


# -- pad_boundary / crop_boundary ----------------------------------------------------------------
def test_pad_replicates_the_image_and_zeroes_the_weights_numpy_hwc():
    y = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    y_pad, w_pad = pad_boundary(y, 3)
    np.testing.assert_array_equal(y_pad, np.pad(y, ((3, 3), (3, 3), (0, 0)), mode="edge"))
    assert isinstance(w_pad, np.ndarray) and w_pad.dtype == np.float32 and w_pad.shape == (11, 13, 1)
    expect = np.zeros((11, 13, 1), np.float32)
    expect[3:8, 3:10] = 1
    np.testing.assert_array_equal(w_pad, expect)


def test_pad_keeps_given_weights_inside():
    rng = np.random.default_rng(1)
    y = rng.random((2, 4, 6))  # torch layout (C, H, W) below
    w = (rng.random((2, 4, 6)) > 0.5).astype(np.float64) * 0.75
    y_pad, w_pad = pad_boundary(torch.from_numpy(y), 2, weights=torch.from_numpy(w))
    assert isinstance(y_pad, torch.Tensor) and y_pad.shape == (2, 8, 10) and y_pad.dtype == torch.float64
    np.testing.assert_array_equal(y_pad.numpy(), np.pad(y, ((0, 0), (2, 2), (2, 2)), mode="edge"))
    np.testing.assert_array_equal(w_pad.numpy(), np.pad(w, ((0, 0), (2, 2), (2, 2))))


@pytest.mark.parametrize("shape, torch_in", [((6, 5), False), ((6, 5, 3), False), ((3, 6, 5), True),
                                             ((2, 3, 6, 5), True)])
def test_crop_undoes_pad_in_every_layout(shape, torch_in):
    y = np.random.default_rng(2).random(shape)
    y = torch.from_numpy(y) if torch_in else y
    y_pad, w_pad = pad_boundary(y, 4)
    back = crop_boundary(y_pad, 4)
    assert type(back) is type(y) and tuple(back.shape) == tuple(y.shape)
    assert bool((back == y).all())
    wb = crop_boundary(w_pad, 4)
    assert bool((wb == 1).all()) and float(w_pad.sum()) == float(wb.sum())


def test_width_zero_changes_nothing_and_copies():
    y = np.random.default_rng(0).random((4, 5, 3))
    y_pad, w_pad = pad_boundary(y, 0)
    np.testing.assert_array_equal(y_pad, y)
    assert not np.shares_memory(y_pad, y) and bool((w_pad == 1).all())
    assert crop_boundary(y, 0) is y


@pytest.mark.parametrize("call, err, msg", [
    (lambda: pad_boundary(np.zeros((4, 4)), -1), ValueError, "width must be an int >= 0"),
    (lambda: pad_boundary(np.zeros((4, 4)), 1.5), ValueError, "width must be an int >= 0"),
    (lambda: pad_boundary(np.zeros((4, 4)), True), ValueError, "width must be an int >= 0"),
    (lambda: pad_boundary(np.zeros((4, 4), np.uint8), 1), TypeError, "y must be a float image"),
    (lambda: pad_boundary(np.full((4, 4), np.inf), 1), ValueError, "y contains NaN or Inf"),
    (lambda: pad_boundary([[0.5, 0.5]], 1), TypeError, "y must be an array"),
    (lambda: pad_boundary(np.zeros((1, 1, 1, 4, 4)), 1), ValueError, "y must have shape (N, C, H, W)"),
    (lambda: pad_boundary(np.zeros((4, 4)), 1, weights=[[1.0]]), TypeError, "weights must be an array"),
    (lambda: pad_boundary(np.zeros((4, 4)), 1, weights=np.ones((1, 1, 1, 4, 4))), ValueError,
     "weights must have shape (N, C, H, W)"),
    (lambda: pad_boundary(np.zeros((4, 4, 3)), 1, weights=np.ones((4, 5, 3))), ValueError, "weights has shape"),
    (lambda: pad_boundary(np.zeros((2, 3, 4, 4)), 1, weights=np.ones((3, 3, 4, 4))), ValueError,
     "weights has shape (3, 3, 4, 4) (as N, C, H, W); expected y's shape (2, 3, 4, 4) or one channel"),
    (lambda: pad_boundary(np.zeros((2, 3, 4, 4)), 1, weights=np.ones((2, 2, 4, 4))), ValueError, "weights has shape"),
    (lambda: crop_boundary(np.zeros((6, 8)), 3), ValueError, "width=3 leaves nothing of an image of 6x8"),
    (lambda: crop_boundary(torch.zeros(3, 6, 20), 3), ValueError, "of an image of 6x20"),
    (lambda: crop_boundary(torch.zeros(3, 20, 6), 3), ValueError, "of an image of 20x6"),
    (lambda: crop_boundary(np.zeros(6), 1), ValueError, "x must be an (H, W), (H, W, C), (C, H, W) or (N, C, H, W) "
                                                         "image, got ndarray with shape (6,)"),
    (lambda: crop_boundary([[0.0]], 1), ValueError, "image, got list with shape None"),
])
def test_bad_arguments_are_named(call, err, msg):
    with pytest.raises(err, match=re.escape(msg)):
        call()


def test_width_one_pads_and_weights_of_another_dtype_take_ys():
    y = np.random.default_rng(3).random((2, 3, 4, 5)).astype(np.float32)
    mask = np.ones((2, 1, 4, 5), bool)
    mask[0, 0, 1, 2] = False
    y_pad, w_pad = pad_boundary(y, 1, weights=mask)
    assert y_pad.shape == (2, 3, 6, 7) and w_pad.shape == (2, 1, 6, 7) and w_pad.dtype == np.float32
    np.testing.assert_array_equal(w_pad, np.pad(mask, ((0, 0), (0, 0), (1, 1), (1, 1))).astype(np.float32))
    _, w64 = pad_boundary(y, 2, weights=np.ones((2, 3, 4, 5)))  # float64 weights, float32 image
    assert w64.dtype == np.float32
    _, shared = pad_boundary(y, 1, weights=mask[:1])  # one mask for the whole batch, as the solvers take it
    assert shared.shape == (1, 1, 6, 7)
    np.testing.assert_array_equal(shared, w_pad[:1])


def test_crop_keeps_the_smallest_possible_interior():
    assert crop_boundary(np.zeros((8, 9)), 3).shape == (2, 3)  # 2 * width < 8: allowed
    assert crop_boundary(torch.zeros(2, 7, 12), 3).shape == (2, 1, 6)


# -- the masked solve is the least-squares problem of the crop -----------------------------------
def test_hqs_on_the_padded_grid_solves_the_crop_model():
    """HQS with ``pad_boundary``'s observation and weights on the padded operator equals, iterate for
    iterate, a dense HQS for the rectangular model ``y = C K_ext x`` started from the padded image."""
    rng = np.random.default_rng(5)
    h, w = 5, 6
    flow = rng.uniform(-3, 3, (2, h, w))
    width = motion_blur_width(flow)
    f_pad = np.pad(flow, ((0, 0), (width, width), (width, width)), mode="edge")
    H, W = h + 2 * width, w + 2 * width
    y = rng.random((h, w))
    betas, sigmas, ridge = [0.05, 0.5, 4.0], [0.3, 0.1, 0.02], 3.0

    def prior(z, sigma, *, context=None):  # exact prox of (ridge σ²/2)‖·‖²
        return z / (1.0 + ridge * sigma**2)

    y_pad, weights = pad_boundary(y, width)
    res = hqs(y_pad, MotionBlur(f_pad), prior, noise_level=0.02, betas=betas, sigmas=sigmas, weights=weights,
              cg_iters=400, cg_tol=1e-14, progress=False)

    K_ext = dense.motion_blur_matrix(f_pad).toarray()
    keep = np.zeros((H, W), bool)
    keep[width:-width, width:-width] = True
    A = K_ext[keep.ravel()]  # C K_ext: only the observed rows
    z = np.pad(y, width, mode="edge").ravel()
    for b, s in zip(betas, sigmas):
        x = np.linalg.solve(A.T @ A + b * np.eye(H * W), A.T @ y.ravel() + b * z)
        z = x / (1 + ridge * s**2)
    np.testing.assert_allclose(np.asarray(res.x), z.reshape(H, W), atol=1e-9, rtol=0)


# -- pd.deblur -----------------------------------------------------------------------------------
class RecordingHQS:
    def __init__(self):
        self.calls = []

    def __call__(self, y, K, prior, **kwargs):
        self.calls.append(dict(y=y.clone(), K=K, **kwargs))
        return type("R", (), dict(x=0.5 * y + 0.1 * torch.arange(y.shape[-1], dtype=y.dtype), history=[]))()


@pytest.fixture
def fake_hqs(monkeypatch):
    rec = RecordingHQS()
    monkeypatch.setattr(pnpdeblur.solvers, "hqs", rec)
    return rec


@pytest.mark.parametrize("vector, width", [((3.0, 4.0), 4), ((12.0, 0.0), 8), ((0.0, 9.0), 6)])
def test_deblur_solves_on_the_padded_grid_and_crops_back(fake_hqs, vector, width):
    y = 0.9 * np.random.default_rng(0).random((10, 13, 3)).astype(np.float32)  # nothing clipped
    res = pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN(vector), flow_ensemble=False,
                          safeguard=False)
    (call,) = fake_hqs.calls
    assert width == motion_blur_width(np.array(vector, float).reshape(2, 1, 1))
    y_pad = np.pad(y, ((width, width), (width, width), (0, 0)), mode="edge").transpose(2, 0, 1)[None]
    np.testing.assert_array_equal(call["y"].numpy(), y_pad)
    flow = np.asarray(call["K"].flow)
    assert flow.shape == (1, 2, 10 + 2 * width, 13 + 2 * width)
    np.testing.assert_array_equal(flow, np.broadcast_to(np.array(vector, np.float32).reshape(1, 2, 1, 1), flow.shape))
    weights = call["weights"].numpy()  # the (all-one) saturation weights of the photo, padded with 0
    expect = np.zeros((1, 1) + y_pad.shape[2:], np.float32)
    expect[..., width:-width, width:-width] = 1
    assert weights.shape[1] in (1, 3)
    np.testing.assert_array_equal(weights, np.broadcast_to(expect, weights.shape))
    # what HQS returned, cropped: its columns were marked by their index on the padded grid
    cols = 0.1 * np.arange(width, width + 13, dtype=np.float32)
    np.testing.assert_allclose(res.x, np.clip(0.5 * y + cols[None, :, None], 0, 1), atol=1e-6)
    assert res.x.shape == y.shape and res.flow[0].shape == (2, 10, 13)


def test_deblur_pads_a_varying_flow_by_repeating_its_border_vectors(fake_hqs):
    def ramp(x):
        h, w = x.shape[-2:]
        f = torch.zeros(x.shape[0], 2, h, w)
        f[:, 0] = 5.0 + 0.5 * torch.arange(w, dtype=torch.float32)  # u > 0: already canonical
        f[:, 1] = 0.25 * torch.arange(h, dtype=torch.float32)[:, None]
        return f

    y = 0.9 * np.random.default_rng(1).random((9, 11, 3)).astype(np.float32)
    pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN(fn=ramp), flow_ensemble=False,
                    safeguard=False)
    (call,) = fake_hqs.calls
    f = ramp(torch.zeros(1, 3, 9, 11))[0].numpy()
    width = int(np.ceil(np.hypot(f[0], f[1]).max() / 2 + 1.5))
    np.testing.assert_array_equal(np.asarray(call["K"].flow)[0], np.pad(f, ((0, 0), (width, width), (width, width)),
                                                                        mode="edge"))


def test_deblur_pads_the_saturation_weights_and_reports_the_photos_clipped_share(fake_hqs):
    y = np.full((8, 9), 0.5, np.float32)
    y[2:4, 3:6] = 1.0
    res = pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0), in_channels=1),
                          flow_ensemble=False, safeguard=False)
    (call,) = fake_hqs.calls
    width = 5  # ceil(6/2 + 1.5)
    inner = np.ones((8, 9), np.float32)
    inner[2:4, 3:6] = 0
    np.testing.assert_array_equal(call["weights"].numpy()[0, 0], np.pad(inner, width))
    assert res.history[0]["clipped_fraction"] == [pytest.approx(6 / 72)]


def test_without_saturation_the_margin_gets_a_one_channel_mask(fake_hqs):
    y = np.random.default_rng(0).random((7, 9, 3)).astype(np.float32)  # values near 1 count: no saturation
    pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((6.0, 0.0)), flow_ensemble=False,
                    safeguard=False, saturation=None)
    (call,) = fake_hqs.calls
    expect = np.pad(np.ones((1, 1, 7, 9), np.float32), ((0, 0), (0, 0), (5, 5), (5, 5)))
    assert call["weights"].dtype == torch.float32
    np.testing.assert_array_equal(call["weights"].numpy(), expect)


def test_replicate_boundary_solves_on_the_photos_grid(fake_hqs):
    y = 0.9 * np.random.default_rng(0).random((10, 13, 3)).astype(np.float32)
    pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((12.0, 0.0)), flow_ensemble=False,
                    safeguard=False, boundary="replicate")
    (call,) = fake_hqs.calls
    np.testing.assert_array_equal(call["y"].numpy(), y.transpose(2, 0, 1)[None])
    assert bool((call["weights"] == 1).all()) and tuple(call["K"].flow.shape) == (1, 2, 10, 13)


def test_a_zero_flow_needs_no_padding(fake_hqs):
    y = 0.9 * np.random.default_rng(0).random((10, 13, 3)).astype(np.float32)
    pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN((0.0, 0.0)), flow_ensemble=False,
                    safeguard=False)
    (call,) = fake_hqs.calls
    assert call["y"].shape == (1, 3, 10, 13) and bool((call["weights"] == 1).all())


@pytest.mark.parametrize("bad", ["zero", "Unknown", None, 0])
def test_deblur_rejects_other_boundaries(bad):
    with pytest.raises(ValueError, match=re.escape(f"boundary must be 'unknown' or 'replicate', got {bad!r}")):
        pipeline.deblur(np.zeros((8, 8, 3), np.float32), boundary=bad, flow_model=StandInSEN())


def test_unknown_boundary_recovers_a_crop_of_a_blurred_scene_better():
    """A scene blurred as a whole and cropped (the photo's border holds light from outside): with
    the true flow (a stand-in network), the unknown boundary beats the replicate rule by a wide
    margin in the border band, and is not worse in the interior."""
    scene = np.ascontiguousarray(sample_image("camera", channels=3)[100:196, 150:246]).astype(np.float32)
    flow = np.zeros((2, 96, 96), np.float32)
    flow[0] = 9.0
    y = np.asarray(MotionBlur(flow)(scene), np.float32)[18:78, 18:78]
    sharp = scene[18:78, 18:78]
    out = {}
    for b in ("unknown", "replicate"):
        out[b] = pipeline.deblur(y, prior=DnCNNPrior(ensemble=False), noise_level=0.005,
                                 flow_model=StandInSEN((9.0, 0.0)), flow_ensemble=False, safeguard=False, boundary=b,
                                 n_iter=8, cg_iters=20).x
    band = np.zeros((60, 60), bool)
    band[:, :8] = band[:, -8:] = True  # the blur runs along x: the left and right edges

    def err(x, mask):
        return float(np.sqrt(np.mean((x[mask] - sharp[mask]) ** 2)))

    assert err(out["unknown"], band) < 0.7 * err(out["replicate"], band)
    assert err(out["unknown"], ~band) <= 1.05 * err(out["replicate"], ~band)
    assert psnr(out["unknown"], sharp, channel_axis=-1) > psnr(out["replicate"], sharp, channel_axis=-1) + 1.0


# -- flows beyond the operator's range -----------------------------------------------------------
def test_flows_beyond_the_operator_range_are_shortened_keeping_their_direction(fake_hqs):
    """SEN at flow_scale=0.5 can report more than 64 px: pd.deblur shortens those vectors to the
    operator's limit (larger component = 64 px, same direction) with a warning, instead of failing."""
    def big(x):
        h, w = x.shape[-2:]
        f = torch.zeros(x.shape[0], 2, h, w)
        f[:, 0], f[:, 1] = 20.0, 5.0
        f[:, 0, :, w // 2:] = 96.0  # right half: (96, -24) -> (64, -16)
        f[:, 1, :, w // 2:] = -24.0
        return f

    y = 0.9 * np.random.default_rng(0).random((8, 10, 3)).astype(np.float32)
    with pytest.warns(UserWarning) as record:
        warnings.filterwarnings("ignore", message="estimate_flow sees")  # small test image
        res = pipeline.deblur(y, prior=unused_prior, noise_level=0.02, flow_model=StandInSEN(fn=big),
                              flow_ensemble=False, safeguard=False, boundary="replicate")
    (w,) = record
    assert str(w.message) == ("the estimated flow reaches 96.0 px, beyond the 64 px the blur operator takes: those "
                              "vectors were shortened to 64 px (keeping their direction), so that blur is only partly "
                              "removed")
    # reported outside the library, at pd.deblur's caller (this file; mutmut's trampoline adds a frame)
    assert not w.filename.startswith(os.path.dirname(pipeline.__file__))
    (call,) = fake_hqs.calls
    used = np.asarray(call["K"].flow)[0]
    np.testing.assert_allclose(used[:, :, :5], np.broadcast_to(np.array([20.0, 5.0]).reshape(2, 1, 1), (2, 8, 5)))
    np.testing.assert_allclose(used[:, :, 5:], np.broadcast_to(np.array([64.0, -16.0]).reshape(2, 1, 1), (2, 8, 5)),
                               rtol=1e-6)
    np.testing.assert_allclose(res.flow[0], used, rtol=0, atol=0)  # the flow reported is the one used


def test_flows_within_range_pass_unchanged_and_silently():
    f = torch.zeros(1, 2, 3, 4)
    f[0, 0] = 64.0
    f[0, 1] = -64.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pipeline._fit_operator_range(f) is f


def test_each_image_of_a_batch_is_shortened_by_its_own_vectors():
    f = torch.zeros(2, 2, 2, 3, dtype=torch.float64)
    f[0, 0] = 128.0  # image 0: (128, 32) everywhere -> (64, 16)
    f[0, 1] = 32.0
    f[1, 0, 0] = 10.0  # image 1: row 0 (10, 0) stays, row 1 (0, -80) -> (0, -64)
    f[1, 1, 1] = -80.0
    with pytest.warns(UserWarning, match="reaches 128.0 px"):
        out = pipeline._fit_operator_range(f)
    expect = f.clone()
    expect[0, 0], expect[0, 1] = 64.0, 16.0
    expect[1, 1, 1] = -64.0
    assert torch.equal(out, expect)
