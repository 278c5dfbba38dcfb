"""One array/layout rule for the whole library (issue 16 §4).

A 2-D array is a grey ``(H, W)`` image, a 3-D numpy/cupy array is ``(H, W, C)``, a 3-D
torch tensor is ``(C, H, W)``, a 4-D array is ``(N, C, H, W)``: decided by the array type,
never by the sizes. The operators/solvers (``operators.base.to_nchw``), the photo boundary
(``_images.as_image_batch``), the metrics and the pictures must all read an input the same
way; the references here are explicit transposes written in the test.
"""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity as sk_ssim

from pnpdeblur._images import as_image_batch
from pnpdeblur.backend import host_image_batch, image_channel_axis, to_host_numpy, to_torch
from pnpdeblur.metrics import kohler_align, psnr, ssim
from pnpdeblur.operators.base import to_nchw
from pnpdeblur.viz import to_hwc

from _fakes import FakeCupyArray


@pytest.fixture
def hwc():
    return np.random.default_rng(3).random((10, 12, 3))


def test_channel_axis_rule_by_kind():
    assert image_channel_axis("torch") == 0
    assert image_channel_axis("numpy") == -1 and image_channel_axis("cupy") == -1
    with pytest.raises(ValueError, match="kind"):
        image_channel_axis("jax")


def test_host_image_batch_layouts(hwc):
    nchw = hwc.transpose(2, 0, 1)[None]  # the reference: an explicit transpose
    np.testing.assert_array_equal(host_image_batch(hwc), nchw)
    np.testing.assert_array_equal(host_image_batch(FakeCupyArray(hwc)), nchw)
    np.testing.assert_array_equal(host_image_batch(torch.from_numpy(nchw[0].copy())), nchw)
    np.testing.assert_array_equal(host_image_batch(torch.from_numpy(nchw.copy())), nchw)
    np.testing.assert_array_equal(host_image_batch(nchw), nchw)
    np.testing.assert_array_equal(host_image_batch(hwc[:, :, 0]), hwc[None, None, :, :, 0])
    # channel_axis overrides the rule for 3-D and 4-D inputs
    np.testing.assert_array_equal(host_image_batch(nchw[0], channel_axis=0), nchw)
    np.testing.assert_array_equal(host_image_batch(torch.from_numpy(hwc), channel_axis=-1), nchw)
    np.testing.assert_array_equal(host_image_batch(hwc[None], channel_axis=-1), nchw)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(x=np.zeros((4, 5)), channel_axis=0), ValueError, "2-D"),
    (dict(x=np.zeros((1, 2, 3, 4, 5))), ValueError, "shape"),
    (dict(x=np.zeros((2, 3, 4, 5)), channel_axis=0), ValueError, "batch"),
    (dict(x=np.zeros((3, 4, 5)), channel_axis=3), ValueError, "range"),
    (dict(x=np.zeros((3, 4, 5)), channel_axis=True), TypeError, "channel_axis"),
    (dict(x=[[0.0, 1.0]]), TypeError, "numpy array"),
])
def test_host_image_batch_rejects(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        host_image_batch(name="img", **kwargs)


def test_to_host_numpy_checks_and_dtypes():
    assert to_host_numpy(torch.ones(2, dtype=torch.float32)).dtype == np.float64
    assert to_host_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float64
    assert to_host_numpy(torch.ones(2, dtype=torch.uint8)).dtype == np.uint8  # range stays visible
    g = torch.ones(3, requires_grad=True)
    np.testing.assert_array_equal(to_host_numpy(g * 2), [2.0, 2.0, 2.0])
    for bad, exc, words in [
        (torch.ones(2, dtype=torch.complex64), TypeError, "real"),
        (np.array(["a"]), TypeError, "real"),
        (np.array([None]), TypeError, "real"),
        ([1.0], TypeError, "numpy array"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([0.0, np.nan]), ValueError, "NaN"),
        (torch.tensor([np.inf]), ValueError, "NaN or Inf"),
    ]:
        with pytest.raises(exc, match=words):
            to_host_numpy(bad, "img")


def test_every_stack_reads_an_input_the_same_way(hwc):
    """Operators/solvers, the photo boundary, metrics and viz agree for each layout."""
    t = torch.from_numpy(hwc.transpose(2, 0, 1).copy())
    cases = {"numpy (H, W, C)": hwc, "torch (C, H, W)": t, "grey (H, W)": hwc[:, :, 0].copy(),
             "numpy (N, C, H, W)": hwc.transpose(2, 0, 1)[None].copy(), "torch (N, C, H, W)": t[None]}
    for label, x in cases.items():
        kind = "torch" if isinstance(x, torch.Tensor) else "numpy"
        ops, _ = to_nchw(to_torch(x), kind)
        photo, _ = as_image_batch(x)
        host = host_image_batch(x)
        np.testing.assert_array_equal(ops.numpy(), host, err_msg=label)
        np.testing.assert_array_equal(photo.numpy(), host, err_msg=label)
        np.testing.assert_array_equal(to_hwc(x), host[0].transpose(1, 2, 0), err_msg=label)


def test_the_rule_never_guesses_from_sizes():
    # (8, 9, 10) as numpy is H=8, W=9, C=10; as torch it is C=8, H=9, W=10. SSIM per channel
    # differs between the two readings: scikit-image with the matching channel_axis is the
    # reference for each.
    rng = np.random.default_rng(5)
    ref = rng.random((8, 9, 10))
    x = np.clip(ref + 0.1 * rng.standard_normal(ref.shape), 0, 1)
    as_hwc = sk_ssim(ref, x, data_range=1, channel_axis=-1)
    as_chw = sk_ssim(ref, x, data_range=1, channel_axis=0)
    assert abs(as_hwc - as_chw) > 1e-4  # the test can tell the readings apart (1e-12 below)
    assert ssim(x, ref) == pytest.approx(as_hwc, abs=1e-12)
    assert ssim(torch.from_numpy(x), torch.from_numpy(ref)) == pytest.approx(as_chw, abs=1e-12)
    # viz used to guess: a numpy (3, H, W) array was displayed as (H, W, 3); now it is a
    # 3-pixel-high image with W channels, which a picture refuses
    with pytest.raises(ValueError, match="channels"):
        to_hwc(np.zeros((3, 10, 12)))
    assert to_hwc(np.zeros((3, 10, 1))).shape == (3, 10, 1)


def test_metrics_read_each_input_by_its_own_type(hwc):
    rng = np.random.default_rng(7)
    noisy = np.clip(hwc + 0.05 * rng.standard_normal(hwc.shape), 0, 1)
    want = 10 * np.log10(1.0 / np.mean((noisy - hwc) ** 2))
    chw = torch.from_numpy(noisy.transpose(2, 0, 1).copy())
    assert psnr(noisy, hwc) == pytest.approx(want, abs=1e-12)
    assert psnr(chw, hwc) == pytest.approx(want, abs=1e-12)  # torch (C, H, W) vs numpy (H, W, C)
    assert psnr(FakeCupyArray(noisy), torch.from_numpy(hwc.transpose(2, 0, 1).copy())) == pytest.approx(want, abs=1e-12)
    s = ssim(noisy, hwc)
    assert ssim(chw, hwc) == pytest.approx(s, abs=1e-12)
    # the same raw shape in two types is two different layouts: refused, with the reason
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        psnr(chw, noisy.transpose(2, 0, 1).copy())
    # kohler_align shares the rule
    a = kohler_align(noisy, hwc, max_shift=2)
    b = kohler_align(chw, hwc, max_shift=2)
    assert a[1] == b[1] and a[0] == pytest.approx(b[0], abs=1e-12)


def test_viz_scales_integers_by_their_dtype():
    img = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    np.testing.assert_allclose(to_hwc(img)[:, :, 0], img / 255.0)
    img16 = np.array([[0, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(to_hwc(img16)[:, :, 0], [[0.0, 1.0]])
    t = torch.tensor([[[0, 255]], [[255, 0]], [[51, 51]]], dtype=torch.uint8)  # (C, H, W)
    np.testing.assert_allclose(to_hwc(t), np.array([[[0, 1, 0.2], [1, 0, 0.2]]]))
