"""Flow colour coding (``viz.flow_to_color`` / ``flow_legend``) against a hand-built reference.

The reference is written from the documented convention, not from the library's code:

- the Middlebury colour wheel (Baker et al.): 55 hues, red→yellow 15, yellow→green 6,
  green→cyan 4, cyan→blue 11, blue→magenta 13, magenta→red 6 entries, each segment a linear
  ramp that starts at its first colour;
- a flow m = (u, v) (u right, v down, pixels) at screen angle φ = atan2(v, u) (clockwise, since
  y points down) sits at the hue position 54·(φ / 2π mod 1), with φ = 0 (pure +x) at 54, the
  last hue; the symmetric colouring (m ≡ −m) uses 54·(φ / π mod 1) with φ = 0 at 0;
- the colour between two hue entries is linear in the position; entry 55 is entry 0;
- saturation: r = |m| / max_norm; r ≤ 1 gives 1 − r·(1 − colour) (white at zero), r > 1 the
  colour darkened to 75 %;
- uint8 rounds half up: floor(255·c + 0.5).
"""
import math

import numpy as np
import pytest
import torch

from pnpdeblur.viz import flow_legend, flow_to_color

R, Y, G, C, B, M = (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1), (1, 0, 1)


def _wheel_entry(k: int) -> tuple:
    """Hue entry k (0..54) of the Middlebury wheel, found from the segment boundaries."""
    start = 0
    for length, c0, c1 in ((15, R, Y), (6, Y, G), (4, G, C), (11, C, B), (13, B, M), (6, M, R)):
        if k < start + length:
            t = (k - start) / length
            return tuple(a + t * (b - a) for a, b in zip(c0, c1))
        start += length
    raise AssertionError(k)


def _hue_position(u: float, v: float, symmetric: bool) -> float:
    phi = math.atan2(v, u)
    if symmetric:
        p = (phi / math.pi) % 1.0
        return 54.0 * p
    p = (phi / (2 * math.pi)) % 1.0
    return 54.0 * (p if p > 0 else 1.0)


def _ref_colour(u: float, v: float, max_norm: float, symmetric: bool = False) -> np.ndarray:
    pos = _hue_position(u, v, symmetric)
    k = int(math.floor(pos))
    t = pos - k
    c0, c1 = np.array(_wheel_entry(k)), np.array(_wheel_entry((k + 1) % 55))
    col = (1 - t) * c0 + t * c1
    r = math.hypot(u, v) / max_norm
    return 1 - r * (1 - col) if r <= 1 else 0.75 * col


def _ref_image(flow: np.ndarray, max_norm: float, symmetric: bool = False) -> np.ndarray:
    _, h, w = flow.shape
    out = np.empty((h, w, 3))
    for i in range(h):
        for j in range(w):
            out[i, j] = _ref_colour(float(flow[0, i, j]), float(flow[1, i, j]), max_norm, symmetric)
    return out


def _to_u8(col: np.ndarray) -> np.ndarray:
    return np.array([[[math.floor(255 * c + 0.5) for c in px] for px in row] for row in col], np.uint8)


def _one(u, v):
    return np.array([u, v], float).reshape(2, 1, 1)


@pytest.mark.parametrize("u, v, expected", [
    (1, 0, (1.0, 0.0, 1 / 6)),         # +x: hue 54, magenta→red at 5/6
    (0, 1, (1.0, 0.9, 0.0)),           # +y (down): position 13.5, red→yellow at 0.9
    (-1, 0, (0.0, 9 / 11, 1.0)),       # −x: hue 27, cyan→blue at 2/11
    (0, -1, (4.5 / 13, 0.0, 1.0)),     # −y (up): position 40.5, blue→magenta at 4.5/13
    (1, 1, (1.0, 0.45, 0.0)),          # down-right: position 6.75, red→yellow at 0.45
])
def test_pure_directions_are_the_documented_wheel_colours(u, v, expected):
    got = flow_to_color(_one(u, v), max_norm=math.hypot(u, v), dtype="float")
    assert got.shape == (1, 1, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got[0, 0], expected, atol=1e-12)
    np.testing.assert_allclose(got[0, 0], _ref_colour(u, v, math.hypot(u, v)), atol=1e-12)


def test_symmetric_colours_of_pure_directions():
    # horizontal lines are red (hue 0), vertical ones hue 27 (cyan→blue at 2/11), m ≡ −m
    for (u, v), expected in (((1, 0), (1, 0, 0)), ((-1, 0), (1, 0, 0)),
                             ((0, 1), (0, 9 / 11, 1)), ((0, -1), (0, 9 / 11, 1)),
                             ((1, 1), (1, 0.9, 0))):  # φ = π/4 doubled: position 13.5
        got = flow_to_color(_one(u, v), max_norm=math.hypot(u, v), symmetric=True, dtype="float")
        np.testing.assert_allclose(got[0, 0], expected, atol=1e-12, err_msg=str((u, v)))


def test_random_flows_match_the_reference_pixel_by_pixel():
    rng = np.random.default_rng(3)
    flow = rng.normal(scale=3.0, size=(2, 6, 7))
    flow[:, 0, 0] = 0.0                    # zero motion
    flow[:, 0, 1] = (3.0, 0.0)             # pure +x (the wheel's seam)
    flow[:, 0, 2] = (-2.0, 0.0)
    for max_norm in (4.0, 2.5):            # some vectors inside, some beyond the circle
        for symmetric in (False, True):
            got = flow_to_color(flow, max_norm=max_norm, symmetric=symmetric, dtype="float")
            ref = _ref_image(flow, max_norm, symmetric)
            np.testing.assert_allclose(got, ref, atol=1e-12)
            got8 = flow_to_color(flow, max_norm=max_norm, symmetric=symmetric)
            assert got8.dtype == np.uint8 and got8.shape == (6, 7, 3)
            np.testing.assert_array_equal(got8, _to_u8(ref))


def test_every_hue_entry_is_reached_at_its_angle():
    # a flow at position exactly k shows entry k of the wheel, for each of the 55 entries
    k = np.arange(55)
    phi = 2 * np.pi * k / 54.0
    flow = np.stack([np.cos(phi), np.sin(phi)])[:, None, :]
    got = flow_to_color(flow, max_norm=1.0, dtype="float")[0]
    expected = np.array([_wheel_entry(int(i)) for i in k])
    expected[0] = _wheel_entry(54)  # φ = 0 is pure +x: the seam belongs to the last entry
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_saturation_zero_half_full_and_beyond_the_maximum():
    right = np.array([1.0, 0.0, 1 / 6])
    # (3, 4) has length exactly 5: on the circle it is fully saturated, not darkened
    on = flow_to_color(np.array([3.0, 0.0]).reshape(2, 1, 1), max_norm=3.0, dtype="float")[0, 0]
    np.testing.assert_allclose(on, right, atol=1e-12)
    f = np.zeros((2, 1, 4))
    f[0] = [0.0, 1.0, 2.0, 2.5]
    got = flow_to_color(f, max_norm=2.0, dtype="float")[0]
    np.testing.assert_allclose(got[0], [1, 1, 1], atol=1e-12)           # zero: white
    np.testing.assert_allclose(got[1], 1 - 0.5 * (1 - right), atol=1e-12)  # half-way to white
    np.testing.assert_allclose(got[2], right, atol=1e-12)               # |m| = max_norm
    np.testing.assert_allclose(got[3], 0.75 * right, atol=1e-12)        # beyond: darkened
    u8 = flow_to_color(f, max_norm=2.0)[0]
    # round half up: 127.5 -> 128, 255·(1 − 5/12) = 148.75 -> 149, 0.75·42.5 = 31.875 -> 32;
    # 255·(1 − 5/6) is 42.4999… in floating point -> 42
    np.testing.assert_array_equal(u8, [[255, 255, 255], [255, 128, 149], [255, 0, 42], [191, 0, 32]])


def test_default_max_norm_is_the_longest_vector_of_the_batch():
    f = np.zeros((2, 2, 1, 2))
    f[0, 0, 0, 0] = 1.0   # image 0: one vector of length 1
    f[1, 1, 0, 1] = 4.0   # image 1: the batch's longest, length 4
    got = flow_to_color(f, dtype="float")
    assert got.shape == (2, 1, 2, 3)
    np.testing.assert_allclose(got[0, 0, 0], _ref_colour(1.0, 0.0, 4.0), atol=1e-12)
    np.testing.assert_allclose(got[1, 0, 1], _ref_colour(0.0, 4.0, 4.0), atol=1e-12)
    np.testing.assert_allclose(got[0, 0, 1], [1, 1, 1], atol=1e-12)


def test_an_all_zero_flow_is_white_without_a_scale():
    for f in (np.zeros((2, 3, 4)), np.zeros((2, 2, 3, 4))):
        got = flow_to_color(f)
        assert got.shape == f.shape[:-3] + (3, 4, 3)
        assert np.all(got == 255)


def test_torch_and_integer_flows_give_the_same_colours():
    f = np.array([[[2, -1], [0, 3]], [[1, 1], [-2, 0]]])
    ref = flow_to_color(f.astype(np.float64), max_norm=3.0)
    np.testing.assert_array_equal(flow_to_color(torch.tensor(f, dtype=torch.float32), max_norm=3.0), ref)
    np.testing.assert_array_equal(flow_to_color(f, max_norm=3.0), ref)
    np.testing.assert_array_equal(flow_to_color(f[None], max_norm=3.0)[0], ref)


@pytest.mark.parametrize("flow", [np.zeros((3, 4, 4)), np.zeros((4, 4)), np.zeros((1, 1, 2, 4, 4)),
                                  np.zeros((1, 3, 4, 4))])
def test_a_flow_of_the_wrong_shape_is_refused(flow):
    with pytest.raises(ValueError, match=r"^flow must be \(2, H, W\) or \(N, 2, H, W\), got shape"):
        flow_to_color(flow)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_flows_are_refused(bad):
    f = np.zeros((2, 3, 3))
    f[1, 2, 2] = bad
    with pytest.raises(ValueError, match=r"^flow contains NaN or Inf"):
        flow_to_color(f)


@pytest.mark.parametrize("max_norm", [0, 0.0, -1.0, float("inf"), float("nan"), "1", np.array([1.0, 2.0])])
def test_max_norm_must_be_positive_and_finite(max_norm):
    with pytest.raises(ValueError, match=r"^max_norm must be a positive finite number, got"):
        flow_to_color(np.ones((2, 2, 2)), max_norm=max_norm)


def test_integer_and_numpy_max_norms_are_accepted():
    f = np.ones((2, 1, 1))
    ref = flow_to_color(f, max_norm=2.0)
    np.testing.assert_array_equal(flow_to_color(f, max_norm=2), ref)
    np.testing.assert_array_equal(flow_to_color(f, max_norm=np.float32(2.0)), ref)


@pytest.mark.parametrize("dtype", ["float64", "uint16", None, "UINT8"])
def test_unknown_dtypes_are_refused(dtype):
    with pytest.raises(ValueError, match=r"^dtype must be 'uint8' or 'float', got"):
        flow_to_color(np.ones((2, 2, 2)), dtype=dtype)


# ------------------------------------------------------------------------------- legend

def test_legend_pixels_show_the_colour_of_their_offset():
    size = 9
    c = (size - 1) / 2.0  # 4
    for symmetric in (False, True):
        leg = flow_legend(size, symmetric=symmetric, dtype="float")
        assert leg.shape == (9, 9, 3) and leg.dtype == np.float64
        for y in range(size):
            for x in range(size):
                if math.hypot(x - c, y - c) > c:
                    expected = np.ones(3)      # outside the max_norm disc: white
                else:
                    expected = _ref_colour(x - c, y - c, c, symmetric)
                np.testing.assert_allclose(leg[y, x], expected, atol=1e-12, err_msg=str((y, x, symmetric)))
        np.testing.assert_array_equal(flow_legend(size, symmetric=symmetric), _to_u8(leg))


def test_legend_edge_of_the_disc_is_fully_saturated():
    leg = flow_legend(65)
    assert leg.shape == (65, 65, 3) and leg.dtype == np.uint8
    np.testing.assert_array_equal(leg[32, 64], [255, 0, 42])   # offset (32, 0) = max_norm: +x
    np.testing.assert_array_equal(leg[64, 32], [255, 230, 0])  # offset (0, 32): +y, yellow
    np.testing.assert_array_equal(leg[32, 32], [255, 255, 255])
    np.testing.assert_array_equal(leg[0, 0], [255, 255, 255])
    # an even size has its centre between pixels: c = 1.5 for size 4
    leg4 = flow_legend(4, dtype="float")
    np.testing.assert_allclose(leg4[1, 2], _ref_colour(0.5, -0.5, 1.5), atol=1e-12)


@pytest.mark.parametrize("size", [2, 0, -5, 3.0, "8", None])
def test_legend_size_must_be_an_int_of_at_least_three(size):
    with pytest.raises(ValueError, match=r"^size must be an int >= 3, got"):
        flow_legend(size)


def test_legend_smallest_size():
    leg = flow_legend(3, dtype="float")
    np.testing.assert_allclose(leg[1, 2], _ref_colour(1.0, 0.0, 1.0), atol=1e-12)
    np.testing.assert_allclose(leg[0, 0], [1, 1, 1])


def test_legend_dtype_is_checked():
    with pytest.raises(ValueError, match=r"^dtype must be"):
        flow_legend(5, dtype="uint16")


def test_the_documented_defaults():
    rng = np.random.default_rng(5)
    f = rng.normal(size=(2, 4, 5))
    longest = float(np.hypot(f[0], f[1]).max())
    np.testing.assert_array_equal(flow_to_color(f), flow_to_color(f, max_norm=longest, symmetric=False, dtype="uint8"))
    leg = flow_legend()
    assert leg.shape == (128, 128, 3) and leg.dtype == np.uint8
    np.testing.assert_array_equal(leg, flow_legend(128, symmetric=False, dtype="uint8"))


@pytest.mark.parametrize("flow, message", [
    (np.zeros((2, 3, 3), complex), r"^flow must have a real numeric dtype"),
    (np.zeros((2, 0, 3)), r"^flow is empty"),
])
def test_unusable_arrays_are_refused_as_flow(flow, message):
    with pytest.raises((TypeError, ValueError), match=message):
        flow_to_color(flow)


def test_an_all_zero_flow_in_floats_is_float64_white():
    got = flow_to_color(np.zeros((2, 2, 3)), dtype="float")
    assert got.dtype == np.float64 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(got, np.ones((2, 3, 3)))


def test_bools_are_not_numbers_for_the_pictures():
    from pnpdeblur.viz import kernel_segments

    flow = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match=r"^max_norm must be a positive finite number, got True$"):
        flow_to_color(flow, max_norm=True)
    with pytest.raises(ValueError, match=r"^step must be a positive int, got True$"):
        kernel_segments(flow, step=True)
