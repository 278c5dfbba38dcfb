"""The photo boundary (``pnpdeblur._images``) called directly on tiny photos.

``as_image_batch`` must read each array type by the library's layout rule (numpy/cupy
``(H, W, C)``, torch ``(C, H, W)``, 2-D grey, 4-D batches), scale uint8 by 1/255, drop alpha,
refuse bad input with a message that names the argument, and its ``Boundary`` must give results
back in the caller's type, layout and dtype. References are hand-built transposes and values.
"""
import re
import sys
import types

import numpy as np
import pytest
import torch

from pnpdeblur._images import Boundary, as_image_batch

from test_backend_direct import DLPackCupyArray


def _hwc_u8():
    # H=2, W=3, C=3, every value distinct
    return (np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 13 + 5).astype(np.uint8)


def _nchw_ref(hwc):
    h, w, c = hwc.shape
    out = np.empty((1, c, h, w), np.float64)
    for k in range(c):
        out[0, k] = hwc[:, :, k]
    return out


def test_numpy_uint8_colour_is_scaled_and_transposed():
    a = _hwc_u8()
    x, b = as_image_batch(a)
    assert x.dtype == torch.float32 and x.shape == (1, 3, 2, 3) and x.is_contiguous()
    np.testing.assert_allclose(x.numpy(), _nchw_ref(a) / 255.0, rtol=0, atol=1e-7)
    assert (b.kind, b.dtype, b.single) == ("numpy", torch.uint8, True)
    back = b.image(x)
    assert isinstance(back, np.ndarray) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, a)  # exact round trip


def test_grey_2d_and_single_flag():
    g = np.array([[0.0, 0.25, 1.0], [0.5, 0.75, 0.125]], dtype=np.float64)
    x, b = as_image_batch(g)
    assert x.dtype == torch.float64 and x.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(x[0, 0].numpy(), g)
    assert b.single and b.dtype == torch.float64
    out = b.image(x)
    assert out.dtype == np.float64 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, g)


def test_torch_chw_and_batches():
    chw = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(3, 2, 4) / 30.0  # C=3, H=2, W=4
    x, b = as_image_batch(chw)
    assert x.shape == (1, 3, 2, 4)
    torch.testing.assert_close(x[0], chw, rtol=0, atol=0)
    assert (b.kind, b.dtype, b.single) == ("torch", torch.float32, True)
    assert torch.equal(b.image(x), chw)
    batch = torch.stack([chw, chw / 2])
    x, b = as_image_batch(batch)
    assert x.shape == (2, 3, 2, 4) and not b.single
    torch.testing.assert_close(x, batch, rtol=0, atol=0)
    assert b.image(x).shape == (2, 3, 2, 4)


def test_values_outside_the_unit_range_are_clipped():
    a = np.array([[-0.5, 0.5, 1.5]], dtype=np.float32)
    x, b = as_image_batch(a)
    np.testing.assert_array_equal(x[0, 0].numpy(), [[0.0, 0.5, 1.0]])
    # the boundary clips results too
    out = b.image(torch.tensor([[[[-2.0, 0.25, 3.0]]]]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 0.25, 1.0]])


@pytest.mark.parametrize("lo,hi", [(0.0, 237.0), (0.0, 1.5001), (-0.5001, 1.0), (-3.0, 2.0)])
def test_float_values_far_outside_the_unit_range_are_an_error(lo, hi):
    # a 0-255 photo given as floats would be clipped to a white image; say so instead
    a = np.array([[lo, 0.5, hi]], dtype=np.float64)
    with pytest.raises(ValueError, match=r"^photo has values in \[" + re.escape(f"{lo:.4g}, {hi:.4g}") + r"\]; "
                       r"float images must lie in \[0, 1\] \(divide 8-bit data by 255 and 16-bit data by "
                       r"65535, or pass uint8\)$"):
        as_image_batch(a, "photo")
    with pytest.raises(ValueError, match="^photo has values in"):
        as_image_batch(torch.from_numpy(a[None]), "photo")


def test_uint8_results_are_rounded_not_truncated():
    _, b = as_image_batch(np.zeros((1, 4), np.uint8))
    t = torch.tensor([[[[0.4, 0.6, 254.6, 255.0]]]], dtype=torch.float32) / 255.0
    out = b.image(t)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1, 255, 255]])
    out = b.image(torch.tensor([[[[-1.0, 2.0, 0.5, 1.0]]]]))
    np.testing.assert_array_equal(out, [[0, 255, 128, 255]])


def test_float16_and_bfloat16_are_promoted_to_float32():
    a = np.array([[0.25, 0.5]], dtype=np.float16)
    x, b = as_image_batch(a)
    assert x.dtype == torch.float32 and b.dtype == torch.float32
    np.testing.assert_array_equal(x[0, 0].numpy(), [[0.25, 0.5]])
    assert b.image(x).dtype == np.float32
    t = torch.tensor([[0.25, 0.75]], dtype=torch.bfloat16)
    x, b = as_image_batch(t)
    assert x.dtype == torch.float32 and b.dtype == torch.float32
    assert b.image(x).dtype == torch.float32


def test_float64_stays_float64():
    x, b = as_image_batch(torch.full((3, 2, 2), 0.3, dtype=torch.float64))
    assert x.dtype == torch.float64 and b.dtype == torch.float64
    assert x[0, 0, 0, 0].item() == 0.3


def test_alpha_is_dropped_and_comes_back_opaque():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = _hwc_u8()
    rgba[..., 3] = 7  # not opaque
    x, b = as_image_batch(rgba)
    assert x.shape == (1, 3, 2, 3)
    np.testing.assert_allclose(x.numpy(), _nchw_ref(_hwc_u8()) / 255.0, rtol=0, atol=1e-7)
    back = b.image(x)
    assert back.shape == (2, 3, 4) and back.dtype == np.uint8
    np.testing.assert_array_equal(back[..., :3], _hwc_u8())
    np.testing.assert_array_equal(back[..., 3], 255)
    # float torch batch: alpha 1.0 on channel 3 of each image
    t = torch.rand(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    x, b = as_image_batch(t)
    assert x.shape == (2, 3, 3, 5)
    back = b.image(x)
    assert back.shape == (2, 4, 3, 5)
    assert torch.equal(back[:, :3], t[:, :3]) and torch.equal(back[:, 3], torch.ones(2, 3, 5))


def test_flow_back_in_the_callers_type():
    _, b = as_image_batch(np.zeros((2, 3, 3), np.uint8))
    f = torch.arange(12, dtype=torch.float64).reshape(1, 2, 2, 3)
    out = b.flow(f)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out, f[0].numpy())
    _, b = as_image_batch(torch.zeros(2, 3, 2, 3, dtype=torch.float64))
    f = torch.arange(24, dtype=torch.float32).reshape(2, 2, 2, 3)
    out = b.flow(f)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64 and out.shape == (2, 2, 2, 3)
    torch.testing.assert_close(out, f.double(), rtol=0, atol=0)


def test_cupy_in_gives_cupy_out(monkeypatch):
    a = _hwc_u8().astype(np.float32) / 255.0
    x, b = as_image_batch(DLPackCupyArray(a))
    assert b.kind == "cupy" and b.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), _nchw_ref(a), rtol=0, atol=0)  # cupy is (H, W, C)
    fake = types.ModuleType("cupy")
    fake.from_dlpack = lambda t: ("cupy", t)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    tag, t = b.image(x)
    assert tag == "cupy"
    np.testing.assert_array_equal(t.numpy(), a)


def test_boundary_is_a_plain_record():
    b = Boundary("torch", torch.float32, lambda t: t[0], True)
    t = torch.full((1, 1, 2, 2), 0.5)
    assert torch.equal(b.image(t), torch.full((1, 2, 2), 0.5))
    assert torch.equal(b.flow(torch.zeros(1, 2, 2, 2)), torch.zeros(2, 2, 2))


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [torch.int16, torch.int32])
def test_rejects_integer_dtypes_with_a_hint(dt):
    with pytest.raises(TypeError, match=rf"^photo must be uint8 or float, got dtype {dt} "
                                        r"\(divide 16-bit images by 65535 first\)$"):
        as_image_batch(torch.zeros(2, 2, dtype=dt), "photo")


@pytest.mark.parametrize("dt", [torch.bool, torch.complex64, torch.int8])
def test_rejects_bool_complex_and_8_bit_integers_without_the_16_bit_hint(dt):
    with pytest.raises(TypeError, match=rf"^photo must be uint8 or float, got dtype {dt}$"):
        as_image_batch(torch.zeros(2, 2, dtype=dt), "photo")


@pytest.mark.parametrize("dt", [np.uint16, np.bool_, np.complex128])
def test_names_a_numpy_callers_own_dtype(dt):
    with pytest.raises(TypeError, match=rf"got dtype {np.dtype(dt)}\b"):
        as_image_batch(np.zeros((2, 2), dtype=dt), "photo")


@pytest.mark.parametrize("a", [np.full((2, 2), "a"), np.empty((2, 2), object), np.zeros((2, 2), "datetime64[s]")],
                         ids=["str", "object", "datetime"])
def test_rejects_numpy_arrays_that_are_not_numbers_naming_the_argument(a):
    # torch's own error for these names neither the argument nor what was expected
    with pytest.raises(TypeError, match="^" + re.escape(f"photo must be a numeric array, got numpy dtype {a.dtype}") + "$"):
        as_image_batch(a, "photo")


def test_rejects_non_arrays_naming_the_argument():
    with pytest.raises(TypeError, match=r"^photo must be an array"):
        as_image_batch([[0.0]], "photo")
    with pytest.raises(TypeError, match=r"^image must be an array"):
        as_image_batch([[0.0]])


@pytest.mark.parametrize("shape", [(5,), (1, 1, 2, 2, 1)])
def test_rejects_wrong_ndim(shape):
    s = str(shape).replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=r"^photo must be \(H, W\), \(H, W, C\) / \(C, H, W\) or \(N, C, H, W\), "
                                         rf"got shape {s}$"):
        as_image_batch(np.zeros(shape), "photo")


def test_rejects_empty():
    with pytest.raises(ValueError, match=r"^photo is empty \(shape \(0, 4\)\)$"):
        as_image_batch(np.zeros((0, 4)), "photo")
    with pytest.raises(ValueError, match=r"^image is empty \(shape \(2, 0, 3\)\)$"):
        as_image_batch(np.zeros((2, 0, 3)))


@pytest.mark.parametrize("arr, c, shape", [
    (np.zeros((4, 5, 2)), 2, r"\(4, 5, 2\)"),
    (torch.zeros(5, 4, 4), 5, r"\(5, 4, 4\)"),
    (np.zeros((4, 5, 3)).transpose(2, 0, 1), 5, r"\(3, 4, 5\)"),  # (C, H, W) numpy reads W=5 as C
])
def test_rejects_channel_counts(arr, c, shape):
    with pytest.raises(ValueError, match=rf"^photo must have 1, 3 or 4 channels, got {c} \(shape {shape}; "
                                         r"numpy/cupy colour images are \(H, W, C\), torch ones \(C, H, W\)\)$"):
        as_image_batch(arr, "photo")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dt", [np.float16, np.float32, np.float64])
def test_rejects_nan_and_inf(bad, dt):
    a = np.zeros((2, 2), dt)
    a[1, 0] = bad
    with pytest.raises(ValueError, match=r"^photo contains NaN or Inf values$"):
        as_image_batch(a, "photo")


# -- what the first mutation run of this module showed ----------------------------------


def test_float_results_come_back_in_the_callers_float_dtype():
    # a solver may compute in float32: a float64 caller still gets float64 back
    _, b = as_image_batch(np.zeros((2, 2), np.float64))
    out = b.image(torch.full((1, 1, 2, 2), 0.25, dtype=torch.float32))
    assert out.dtype == np.float64 and np.all(out == 0.25)
    _, b = as_image_batch(torch.zeros(3, 2, 2, dtype=torch.float32))
    out = b.image(torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64))
    assert out.dtype == torch.float32


def test_uint8_is_read_as_float32_whatever_the_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, b = as_image_batch(np.array([[0, 51, 255]], np.uint8))
    finally:
        torch.set_default_dtype(old)
    assert x.dtype == torch.float32
    np.testing.assert_allclose(x[0, 0].numpy(), [[0.0, 0.2, 1.0]], rtol=0, atol=1e-7)
