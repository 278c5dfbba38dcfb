"""The figures of ``pnpdeblur.viz`` checked directly: layouts, drawn data, written files, errors.

Figures are drawn on the Agg canvas (no pyplot); panels are located by rendering the canvas and
reading the pixels at each axis' centre, so a panel in the wrong grid cell fails.
"""
import math
import struct

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from pnpdeblur.operators import motion_kernel
from pnpdeblur.viz import (
    comparison_figure,
    convergence_figure,
    flow_to_color,
    kernel_field_figure,
    kernel_segments,
    to_hwc,
)


def _rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3]


def _pixel_at_axis_centre(fig, ax, rgb: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = ax.get_window_extent().get_points()
    col = int(round((x0 + x1) / 2))
    row = rgb.shape[0] - 1 - int(round((y0 + y1) / 2))  # display y points up, rows down
    return rgb[row, col]


def _png_size(path) -> tuple:
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


def _solid(rgb, h=6, w=8) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, float), (h, w, 3)).copy()


# ---------------------------------------------------------------------------------- to_hwc

def test_to_hwc_gives_float64_hwc_and_scales_integers_by_their_maximum():
    a = to_hwc(np.array([[0, 51], [102, 255]], np.uint8))
    assert a.shape == (2, 2, 1) and a.dtype == np.float64
    np.testing.assert_allclose(a[..., 0], [[0, 0.2], [0.4, 1.0]], atol=1e-15)
    b = to_hwc(np.array([[0, 65535]], np.uint16))
    np.testing.assert_allclose(b[..., 0], [[0.0, 1.0]])
    c = to_hwc(np.full((2, 3, 3), 0.25, np.float32))
    assert c.dtype == np.float64 and c.shape == (2, 3, 3)
    t = torch.arange(24, dtype=torch.float64).reshape(1, 4, 2, 3) / 24  # batch of one RGBA
    np.testing.assert_array_equal(to_hwc(t), t[0].permute(1, 2, 0).numpy())


def test_to_hwc_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^pic must be a single image, got a batch of shape \(2, 3, 4, 5\)"):
        to_hwc(np.zeros((2, 3, 4, 5)), "pic")
    with pytest.raises(ValueError, match=r"^pic must have 1, 3 or 4 channels, got shape \(4, 5, 2\) as \(H, W, C\)"):
        to_hwc(np.zeros((4, 5, 2)), "pic")
    with pytest.raises(ValueError, match=r"^image must have 1, 3 or 4 channels"):
        to_hwc(torch.zeros(5, 4, 4))


# --------------------------------------------------------------------------- kernel_segments

def test_kernel_segments_grid_and_ends_against_a_loop():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(2, 12, 13))
    step = 5
    expected = []
    for y in range(step // 2, 12, step):          # rows 2, 7
        for x in range(step // 2, 13, step):      # columns 2, 7, 12
            u, v = flow[0, y, x], flow[1, y, x]
            expected.append([[x - u / 2, y - v / 2], [x + u / 2, y + v / 2]])
    segs = kernel_segments(flow, step=step)
    assert segs.shape == (6, 2, 2)
    np.testing.assert_allclose(segs, expected, atol=1e-15)
    np.testing.assert_array_equal(kernel_segments(flow[None], step=step), segs)
    np.testing.assert_array_equal(kernel_segments(torch.tensor(flow), step=step), segs)
    # step 1: every pixel, offset 0
    assert kernel_segments(flow, step=1).shape == (12 * 13, 2, 2)
    np.testing.assert_allclose(kernel_segments(flow, step=1)[1].mean(0), [1, 0])


@pytest.mark.parametrize("flow", [np.zeros((3, 4, 4)), np.zeros((2, 2, 4, 4)), np.zeros((2, 4))])
def test_kernel_segments_refuses_other_shapes(flow):
    with pytest.raises(ValueError, match=r"^flow must be \(2, H, W\), got shape"):
        kernel_segments(flow)


@pytest.mark.parametrize("step", [0, -2, 2.0, "4", None])
def test_kernel_segments_step_must_be_a_positive_int(step):
    with pytest.raises(ValueError, match=r"^step must be a positive int, got"):
        kernel_segments(np.zeros((2, 4, 4)), step=step)


# ----------------------------------------------------------------------- kernel_field_figure

def test_kernel_field_lines_draw_the_segments_over_the_image():
    rng = np.random.default_rng(1)
    img = rng.random((8, 12))
    flow = rng.normal(scale=2, size=(2, 8, 12))
    fig = kernel_field_figure(img, flow[None], step=4, color="blue", linewidth=2.5, width=2.0)
    np.testing.assert_allclose(fig.get_size_inches(), [2.0, 2.0 * 8 / 12 + 0.4])
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    im = ax.images[0]
    np.testing.assert_array_equal(np.asarray(im.get_array()), img)
    assert im.get_cmap().name == "gray" and im.get_clim() == (0, 1) and im.get_interpolation() == "nearest"
    lc = ax.collections[0]
    segs = kernel_segments(flow, 4)
    np.testing.assert_allclose(np.array(lc.get_segments()), segs)
    np.testing.assert_allclose(lc.get_colors()[0], to_rgba("blue"))
    np.testing.assert_allclose(lc.get_linewidths(), [2.5])
    assert lc.get_capstyle() == "round"
    dots = ax.lines[0]
    np.testing.assert_allclose(dots.get_xdata(), segs[:, :, 0].mean(1))
    np.testing.assert_allclose(dots.get_ydata(), segs[:, :, 1].mean(1))
    assert dots.get_marker() == "." and dots.get_linestyle() == "None" and dots.get_markersize() == 2
    assert to_rgba(dots.get_color()) == to_rgba("blue")
    assert ax.get_xlim() == (-0.5, 11.5) and ax.get_ylim() == (7.5, -0.5)
    assert not ax.axison and ax.get_title() == ""


def test_kernel_field_colour_image_is_clipped_and_loses_its_alpha():
    img = np.zeros((6, 6, 4))
    img[..., 0] = 1.5   # out of range: shown as 1
    img[..., 1] = -0.5  # shown as 0
    img[..., 2] = 0.25
    img[..., 3] = 0.1   # alpha dropped
    fig = kernel_field_figure(img, np.zeros((2, 6, 6)), step=3, title="T", width=1.5)
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    assert shown.shape == (6, 6, 3)
    np.testing.assert_allclose(shown[0, 0], [1.0, 0.0, 0.25])
    assert ax.get_title() == "T"


def test_kernel_field_with_the_flow_panel():
    flow = np.zeros((2, 8, 8))
    flow[0] = 3.0
    flow[1, :4] = -4.0  # |m| = 5 in the top half
    fig = kernel_field_figure(np.ones((8, 8)), flow, step=4, show_flow=True, width=1.5)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(fig.get_size_inches(), [3.0, 1.5 + 0.4])
    ax2 = fig.axes[1]
    np.testing.assert_array_equal(np.asarray(ax2.images[0].get_array()), flow_to_color(flow, symmetric=True))
    assert ax2.images[0].get_interpolation() == "nearest"
    assert ax2.get_title() == "flow (max |m| = 5.0 px)"
    assert not ax2.axison
    # the flow panel is right of the image panel
    assert fig.axes[0].get_position().x1 <= ax2.get_position().x0


def test_kernel_field_kernels_mode_paints_each_kernel_at_its_grid_point():
    h, w = 12, 16
    flow = np.zeros((2, h, w))
    flow[0, :, :8] = 4.0      # left grid points: horizontal 4-px kernels
    flow[:, :, 8:] = 3.0      # right grid points: diagonal (3, 3) kernels
    fig = kernel_field_figure(np.zeros((h, w)), flow, step=6, mode="kernels", color="lime", width=1.5)
    overlay = np.asarray(fig.axes[0].images[1].get_array())
    assert overlay.shape == (h, w, 4)
    expected = np.zeros((h, w))
    for cy in (3, 9):
        for cx in (3, 9, 15):
            k = motion_kernel(tuple(flow[:, cy, cx]))
            k = k / k.max()
            r = k.shape[0] // 2
            for ky in range(-r, r + 1):
                for kx in range(-r, r + 1):
                    y, x = cy + ky, cx + kx
                    if 0 <= y < h and 0 <= x < w:
                        expected[y, x] = max(expected[y, x], k[r + ky, r + kx])
    np.testing.assert_allclose(overlay[..., 3], expected, atol=1e-12)
    painted = overlay[..., 3] > 0
    np.testing.assert_allclose(overlay[painted][:, :3], np.broadcast_to([0.0, 1.0, 0.0], (painted.sum(), 3)))


def test_kernel_field_kernels_mode_clips_kernels_at_the_border():
    # a 21-px kernel centred at column 4 of a 9-px-wide image: its middle row is painted across
    flow = np.zeros((2, 9, 9))
    flow[0] = 20.0
    fig = kernel_field_figure(np.zeros((9, 9)), flow, step=9, mode="kernels", width=1.5)
    alpha = np.asarray(fig.axes[0].images[1].get_array())[..., 3]
    np.testing.assert_allclose(alpha[4], np.ones(9), atol=1e-12)
    assert np.all(alpha[:4] == 0) and np.all(alpha[5:] == 0)
    # near the top-left corner: grid point (1, 1) of a 3-px step, diagonal kernel cut by both edges
    flow = np.zeros((2, 3, 3))
    flow[:] = 4.0
    alpha = np.asarray(kernel_field_figure(np.zeros((3, 3)), flow, step=3, mode="kernels",
                                           width=1.5).axes[0].images[1].get_array())[..., 3]
    k = motion_kernel((4.0, 4.0))
    r = k.shape[0] // 2
    np.testing.assert_allclose(alpha, (k / k.max())[r - 1:r + 2, r - 1:r + 2], atol=1e-12)


def test_kernel_field_zero_flow_kernels_are_single_pixels():
    fig = kernel_field_figure(np.zeros((6, 6)), np.zeros((2, 6, 6)), step=3, mode="kernels", width=1.5)
    alpha = np.asarray(fig.axes[0].images[1].get_array())[..., 3]
    expected = np.zeros((6, 6))
    expected[1::3, 1::3] = 1.0
    np.testing.assert_array_equal(alpha, expected)


def test_kernel_field_errors():
    img = np.zeros((6, 8))
    with pytest.raises(ValueError, match=r"^mode must be 'lines' or 'kernels', got 'dots'"):
        kernel_field_figure(img, np.zeros((2, 6, 8)), mode="dots")
    with pytest.raises(ValueError, match=r"^flow size \(6, 7\) does not match the image size \(6, 8\)"):
        kernel_field_figure(img, np.zeros((2, 6, 7)))
    with pytest.raises(ValueError, match=r"^flow must be \(2, H, W\) or \(1, 2, H, W\), got shape \(3, 6, 8\)"):
        kernel_field_figure(img, np.zeros((3, 6, 8)))
    with pytest.raises(ValueError, match=r"^flow must be \(2, H, W\) or \(1, 2, H, W\), got shape \(2, 2, 6, 8\)"):
        kernel_field_figure(img, np.zeros((2, 2, 6, 8)))
    bad = np.zeros((2, 6, 8))
    bad[0, 5, 7] = np.inf
    with pytest.raises(ValueError, match=r"^flow contains NaN or Inf"):
        kernel_field_figure(img, bad)
    with pytest.raises(ValueError, match=r"^image must be a single image"):
        kernel_field_figure(np.zeros((2, 1, 6, 8)), np.zeros((2, 6, 8)))


# ------------------------------------------------------------------------- comparison_figure

def test_comparison_panels_sit_in_their_grid_cells():
    colours = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    imgs = [_solid(c) for c in colours]
    fig = comparison_figure(imgs, ncols=2, width_per_image=1.0)
    # 2 columns, 2 rows; width 1 per image, height h/w per row plus 0.6 for the titles
    np.testing.assert_allclose(fig.get_size_inches(), [2.0, 2 * (6 / 8) + 1.2])
    assert [ax.get_subplotspec().get_geometry() for ax in fig.axes] == [(2, 2, 0, 0), (2, 2, 1, 1), (2, 2, 2, 2)]
    rgb = _rendered(fig)
    for ax, c in zip(fig.axes, colours):
        np.testing.assert_array_equal(_pixel_at_axis_centre(fig, ax, rgb), np.array(c) * 255)
    a, b, c = (ax.get_position() for ax in fig.axes)
    assert a.x1 <= b.x0 and abs(a.y0 - b.y0) < 1e-9      # first row: left, right
    assert c.y1 <= a.y0 and abs(c.x0 - a.x0) < 1e-9      # second row under the first
    # default: one row
    fig = comparison_figure(imgs, width_per_image=1.0)
    assert [ax.get_subplotspec().get_geometry() for ax in fig.axes] == [(1, 3, i, i) for i in range(3)]
    np.testing.assert_allclose(fig.get_size_inches(), [3.0, 6 / 8 + 0.6])


def test_comparison_titles_and_scores():
    rng = np.random.default_rng(2)
    sharp = rng.random((8, 8, 3))
    noisy = np.clip(sharp + 0.1 * rng.standard_normal(sharp.shape), 0, 1)
    psnr_ref = 10 * math.log10(1.0 / np.mean((noisy - sharp) ** 2))
    fig = comparison_figure([noisy, sharp], reference=-1, width_per_image=1.0)
    t0, t1 = (ax.get_title() for ax in fig.axes)
    assert t0 == f"image 0\nPSNR {psnr_ref:.2f} dB"
    assert t1 == "image 1"  # the reference's own panel gets no score
    assert fig.axes[0].title.get_fontsize() == 10 and not fig.axes[0].axison
    # data_range scales the PSNR: +20·log10(2)
    fig = comparison_figure([noisy, sharp], ["a", 7], reference=1, data_range=2.0, width_per_image=1.0)
    assert [ax.get_title() for ax in fig.axes] == [f"a\nPSNR {psnr_ref + 20 * math.log10(2):.2f} dB", "7"]
    # a reference image that is not one of the panels: every panel is scored, SSIM on request
    from pnpdeblur.metrics import ssim

    fig = comparison_figure([noisy, sharp], ["n", "s"], reference=torch.tensor(sharp).permute(2, 0, 1),
                            show_ssim=True, width_per_image=1.0)
    t0, t1 = (ax.get_title() for ax in fig.axes)
    assert t0 == f"n\nPSNR {psnr_ref:.2f} dB, SSIM {ssim(noisy, sharp, data_range=1.0):.4f}"
    assert t1 == "s\nPSNR inf dB, SSIM 1.0000"
    # reference=0 is an index, not "no reference"
    assert [ax.get_title() for ax in comparison_figure([sharp, noisy], reference=0, width_per_image=1.0).axes] == [
        "image 0", f"image 1\nPSNR {psnr_ref:.2f} dB"]


def test_comparison_grey_panels_use_a_grey_map():
    fig = comparison_figure([np.full((4, 4), 0.5), np.full((4, 4, 1), 1.4)], width_per_image=1.0)  # overshoot: clipped
    for ax, v in zip(fig.axes, (0.5, 1.0)):
        im = ax.images[0]
        assert im.get_cmap().name == "gray" and im.get_clim() == (0, 1) and im.get_interpolation() == "nearest"
        np.testing.assert_array_equal(np.asarray(im.get_array()), np.full((4, 4), v))


def test_comparison_errors_name_the_argument():
    a = np.zeros((4, 6, 3))
    with pytest.raises(ValueError, match=r"^images must contain at least one image"):
        comparison_figure([])
    with pytest.raises(ValueError, match=r"^titles must have one entry per image \(2\), got 3"):
        comparison_figure([a, a], titles=["x", "y", "z"])
    for bad in (2, -3):
        with pytest.raises(ValueError, match=rf"^reference index {bad} out of range for 2 images"):
            comparison_figure([a, a], reference=bad)
    with pytest.raises(ValueError, match=r"^images\[1\] has shape \(4, 5, 3\), the reference \(4, 6, 3\)"):
        comparison_figure([a, np.zeros((4, 5, 3))], reference=0)
    with pytest.raises(ValueError, match=r"^images\[1\] must be a single image"):
        comparison_figure([a, np.zeros((2, 3, 4, 6))])
    with pytest.raises(ValueError, match=r"^reference must have 1, 3 or 4 channels"):
        comparison_figure([a], reference=np.zeros((4, 6, 2)))
    for bad in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match=r"^data_range must be a positive finite number"):
            comparison_figure([a], data_range=bad)


def test_comparison_of_0_255_floats_needs_their_data_range():
    rng = np.random.default_rng(3)
    sharp = rng.random((6, 6, 3))
    noisy = np.clip(sharp + 0.1 * rng.standard_normal(sharp.shape), 0, 1)
    with pytest.raises(ValueError, match=r"^images\[1\] / data_range has values in \[.*\]; .*data_range=255"):
        comparison_figure([noisy, 255 * sharp])  # would show white and score against a peak of 1
    with pytest.raises(ValueError, match=r"^reference / data_range has values in "):
        comparison_figure([noisy], reference=255 * sharp)
    with pytest.raises(ValueError, match=r"^images\[0\] / data_range has values in \[-0\.6"):
        comparison_figure([noisy - 0.6])
    fig = comparison_figure([255 * noisy, 255 * sharp], reference=1, data_range=255, width_per_image=1.0)
    np.testing.assert_allclose(np.asarray(fig.axes[0].images[0].get_array()), noisy, atol=1e-12)  # shown on [0, 1]
    plain = comparison_figure([noisy, sharp], reference=1, width_per_image=1.0)
    assert fig.axes[0].get_title() == plain.axes[0].get_title()  # the same PSNR on either scale


def test_kernel_field_refuses_a_0_255_float_image():
    with pytest.raises(ValueError, match=r"^image has values in \[0, 200\]; .*divide 8-bit images by 255"):
        kernel_field_figure(np.linspace(0, 200, 36).reshape(6, 6), np.zeros((2, 6, 6)))


# ------------------------------------------------------------------------ convergence_figure

class _Result:
    def __init__(self, history):
        self.history = history


def _series(fig) -> dict:
    return {ax.get_title(): (list(ax.lines[0].get_xdata()), list(ax.lines[0].get_ydata())) for ax in fig.axes}


def test_convergence_default_x_axis_and_excluded_series():
    hist = {"it": [1, 2, 3], "time": [0.1, 0.2, 0.3], "loss": [3.0, 2.0, 1.0]}
    fig = convergence_figure(hist)
    assert _series(fig) == {"loss": ([1, 2, 3], [3.0, 2.0, 1.0])}
    assert fig.axes[0].get_xlabel() == "it"
    # the first of iteration / iter / it / k / step present is the x axis
    for present, chosen in ((("step", "k"), "k"), (("k", "it", "iter"), "iter"), (("iter", "iteration"), "iteration")):
        h = {name: [10 * (i + 1), 10 * (i + 1) + 1] for i, name in enumerate(present)}
        h["y"] = [5.0, 6.0]
        fig = convergence_figure(h)
        assert fig.axes[-1].get_xlabel() == chosen
        assert _series(fig)["y"][0] == h[chosen]
        assert chosen not in _series(fig) and set(_series(fig)) == {"y"} | (set(present) - {chosen})
    # none present: the index, labelled "iteration"
    fig = convergence_figure({"y": [5.0, 6.0, 7.0]})
    assert _series(fig) == {"y": ([0, 1, 2], [5.0, 6.0, 7.0])} and fig.axes[0].get_xlabel() == "iteration"
    line = fig.axes[0].lines[0]
    assert line.get_marker() == "." and line.get_linestyle() == "-" and line.get_markersize() == 3


def test_convergence_explicit_keys_and_x_key():
    hist = {"a": [1.0, 2.0], "b": [3.0, 4.0], "c": [0.5, 1.5], "time": [9.0, 10.0]}
    fig = convergence_figure(hist, keys=["c", "a"], x_key="time")
    assert [ax.get_title() for ax in fig.axes] == ["c", "a"]
    assert _series(fig)["a"] == ([9.0, 10.0], [1.0, 2.0])
    assert fig.axes[0].get_xlabel() == "time"
    # "time" may be plotted when asked for
    assert [ax.get_title() for ax in convergence_figure(hist, keys=["time"]).axes] == ["time"]
    with pytest.raises(ValueError, match=r"^x_key 'z' is not in the history \(keys: \['a', 'b', 'c', 'time'\]\)"):
        convergence_figure(hist, x_key="z")
    with pytest.raises(ValueError, match=r"^keys \['z', 'y'\] are not numeric series of the history "
                                         r"\(have \['a', 'b', 'c', 'time'\]\)"):
        convergence_figure(hist, keys=["a", "z", "y"])
    with pytest.raises(ValueError, match=r"^the history has no numeric series to plot"):
        convergence_figure(hist, keys=[])
    with pytest.raises(ValueError, match=r"^the history has no numeric series to plot"):
        convergence_figure({"time": [1.0], "iteration": [1]})


def test_convergence_grid_and_figure_size():
    hist = {k: [1.0, 2.0] for k in "abcd"}
    fig = convergence_figure(hist)
    assert [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes] == [(2, 3)] * 4
    np.testing.assert_allclose(fig.get_size_inches(), [12.0, 6.0])
    assert fig.get_suptitle() == ""
    fig = convergence_figure({"a": [1.0, 2.0], "b": [2.0, 1.0]}, title="run 3")
    assert [ax.get_subplotspec().get_geometry() for ax in fig.axes] == [(1, 2, 0, 0), (1, 2, 1, 1)]
    np.testing.assert_allclose(fig.get_size_inches(), [8.0, 3.4])
    assert fig.get_suptitle() == "run 3"
    a, b = (ax.get_position() for ax in fig.axes)
    assert a.x1 <= b.x0
    assert all(gl.get_visible() and gl.get_alpha() == 0.3 for gl in fig.axes[0].get_xgridlines())


def test_convergence_log_scale_rule():
    def scale(y, **kw):
        return convergence_figure({"y": y}, **kw).axes[0].get_yscale()

    assert scale([1.0, 100.0]) == "linear"            # exactly two decades: linear
    assert scale([1.0, 100.5]) == "log"               # over two decades
    assert scale([1.0, float("nan"), 101.0]) == "log"  # gaps ignored
    assert scale([0.0, 1.0, 1000.0]) == "linear"      # not positive
    assert scale([-1.0, 1000.0]) == "linear"
    assert scale([1.0, 1000.0], logy=False) == "linear"
    assert scale([1.0, 2.0], logy=True) == "log"
    assert scale([0.0, 2.0], logy=True) == "linear"   # a log axis cannot show 0
    assert scale([float("nan")] * 2, logy=True) == "linear"


def test_convergence_integer_ticks_only_for_integer_x():
    def integer_locator(fig):
        # observable: over a short range an integer locator still puts ticks on integers only
        ticks = fig.axes[0].xaxis.get_major_locator().tick_values(0.0, 1.5)
        return len(ticks) > 1 and np.all(ticks == np.round(ticks))

    assert integer_locator(convergence_figure({"y": [1.0, 2.0, 3.0]}))
    assert integer_locator(convergence_figure({"iteration": [1.0, 2.0], "y": [1.0, 2.0]}))
    assert not integer_locator(convergence_figure({"iteration": [0.5, 1.5], "y": [1.0, 2.0]}))


def test_convergence_x_of_another_length_falls_back_to_the_index():
    fig = convergence_figure({"iteration": [5, 6, 7], "y": [1.0, 2.0]})
    assert _series(fig)["y"] == ([0, 1], [1.0, 2.0])


def test_history_forms():
    # a callable .history (a method) is called; numpy / torch scalars count as numbers;
    # bools, strings, 1-element arrays, empty and non-iterable entries are skipped
    class WithMethod:
        def history(self):
            return {"loss": [np.float32(2.0), torch.tensor(1.0)], "flag": [True, False], "s": ["a"],
                    "vec": [np.ones(1)], "empty": [], "n": 3}

    fig = convergence_figure(WithMethod())
    assert _series(fig) == {"loss": ([0, 1], [2.0, 1.0])}
    # a callable mapping is a history, not a function to call
    class CallableDict(dict):
        def __call__(self):
            return {"wrong": [1.0]}

    assert set(_series(convergence_figure(CallableDict(right=[1.0, 2.0])))) == {"right"}
    # an object with item() but no ndim is not a scalar
    class ItemOnly:
        def item(self):
            return 1.0

    with pytest.raises(ValueError, match=r"^the history has no numeric series"):
        convergence_figure({"x": [ItemOnly()]})


def test_history_as_rows():
    nan = float("nan")
    rows = [{"iteration": 1, "res": 1.0, "name": "a"}, {"iteration": 2, "psnr": 20.0, "res": None},
            {"iteration": 3, "res": 0.5, "psnr": True}]
    fig = convergence_figure(_Result(rows))
    s = _series(fig)
    assert list(s) == ["res", "psnr"]  # first appearance order; "name" is not numeric
    np.testing.assert_array_equal(s["res"][1], [1.0, nan, 0.5])
    np.testing.assert_array_equal(s["psnr"][1], [nan, 20.0, nan])  # missing and bool: gaps
    assert s["res"][0] == [1, 2, 3]
    # plain numbers are a series called "value"; rows of the other kind are gaps in each
    s = _series(convergence_figure([3.0, {"r": 1.0}, np.float64(1.0), "x"]))
    assert list(s) == ["value", "r"]
    np.testing.assert_array_equal(s["value"][1], [3.0, nan, 1.0, nan])
    np.testing.assert_array_equal(s["r"][1], [nan, 1.0, nan, nan])
    np.testing.assert_array_equal(_series(convergence_figure((2.0, 4.0)))["value"][1], [2.0, 4.0])


@pytest.mark.parametrize("history, kind", [("abc", "str"), (b"ab", "bytes"), (3, "int"), (None, "NoneType")])
def test_history_of_another_type_is_refused(history, kind):
    with pytest.raises(TypeError, match=rf"^result must have a \.history that is a dict of lists or a list of "
                                        rf"dicts, got {kind}$"):
        convergence_figure(_Result(history))


# ------------------------------------------------------------------------------ written files

def test_figures_are_written_as_png_where_asked(tmp_path, monkeypatch):
    img = _solid((0.2, 0.4, 0.6), 8, 8)
    nested = tmp_path / "a" / "b" / "cmp.jpg"  # the name's extension does not change the format
    comparison_figure([img], path=nested, width_per_image=1.0)
    _png_size(nested)
    monkeypatch.chdir(tmp_path)
    kernel_field_figure(img, np.zeros((2, 8, 8)), step=4, path="kf.png", width=1.0)  # no folder part
    _png_size(tmp_path / "kf.png")
    convergence_figure({"y": [1.0, 2.0]}, path=str(tmp_path / "c" / "conv.png"))
    _png_size(tmp_path / "c" / "conv.png")
    fig = comparison_figure([img], width_per_image=1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "kf.png"]  # path=None writes nothing
    assert fig is not None


def test_written_figures_use_the_figures_dpi_and_a_tight_box(tmp_path):
    img = _solid((0.2, 0.4, 0.6), 8, 8)
    with matplotlib.rc_context({"savefig.dpi": 300}):
        fig = kernel_field_figure(img, np.zeros((2, 8, 8)), step=4, path=tmp_path / "k.png", width=1.0)
    w, h = _png_size(tmp_path / "k.png")
    full_w, full_h = fig.get_size_inches() * fig.dpi  # 100 x 140 px
    # the figure's own dpi (not the 300 of the settings), cropped to the drawn image (no margins)
    assert w <= full_w and h < full_h - 30


def test_each_x_axis_name_alone_is_the_x_axis():
    for name in ("iteration", "iter", "it", "k", "step"):
        fig = convergence_figure({name: [3, 4], "y": [1.0, 2.0]})
        assert fig.axes[0].get_xlabel() == name and _series(fig) == {"y": ([3, 4], [1.0, 2.0])}, name


def test_a_non_iterable_entry_does_not_hide_the_series_after_it():
    assert set(_series(convergence_figure({"n": 3, "loss": [1.0, 2.0], "m": None, "acc": [0.5, 0.6]}))) == {
        "loss", "acc"}


def test_non_numeric_arrays_are_refused_by_argument_name():
    z = np.zeros((6, 8), complex)
    ok = np.zeros((6, 8))
    cases = [
        (lambda: to_hwc(z, "pic"), r"^pic must have a real numeric dtype"),
        (lambda: to_hwc(z), r"^image must have a real numeric dtype"),
        (lambda: kernel_segments(np.zeros((2, 6, 8), complex)), r"^flow must have a real numeric dtype"),
        (lambda: kernel_field_figure(ok, np.zeros((2, 6, 8), complex)), r"^flow must have a real numeric dtype"),
        (lambda: kernel_field_figure(z, np.zeros((2, 6, 8))), r"^image must have a real numeric dtype"),
        (lambda: comparison_figure([ok, z]), r"^images\[1\] must have a real numeric dtype"),
        (lambda: comparison_figure([ok], reference=z), r"^reference must have a real numeric dtype"),
    ]
    for call, message in cases:
        with pytest.raises(TypeError, match=message):
            call()


def test_the_documented_defaults_of_the_figures():
    rng = np.random.default_rng(4)
    img = rng.random((32, 48, 3))
    flow = rng.normal(scale=3, size=(2, 32, 48))
    fig = kernel_field_figure(img, flow)  # lines, step 16, red, width 1.5, 6 inches, no flow panel
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1
    np.testing.assert_allclose(fig.get_size_inches(), [6.0, 6.0 * 32 / 48 + 0.4])
    lc = fig.axes[0].collections[0]
    np.testing.assert_allclose(np.array(lc.get_segments()), kernel_segments(flow, step=16))
    np.testing.assert_array_equal(kernel_segments(flow), kernel_segments(flow, step=16))
    np.testing.assert_allclose(lc.get_colors()[0], to_rgba("red"))
    np.testing.assert_allclose(lc.get_linewidths(), [1.5])
    sharp = img
    noisy = np.clip(img + 0.1, 0, 1)
    fig = comparison_figure([noisy, sharp], reference=1)  # 3.5 inches per image, PSNR only, range 1
    np.testing.assert_allclose(fig.get_size_inches(), [7.0, 3.5 * 32 / 48 + 0.6])
    psnr_ref = 10 * math.log10(1.0 / np.mean((noisy - sharp) ** 2))
    assert fig.axes[0].get_title() == f"image 0\nPSNR {psnr_ref:.2f} dB"


def test_figures_are_drawn_at_100_dpi():
    fig = comparison_figure([np.zeros((4, 8))], width_per_image=2.0)
    assert fig.dpi == 100
    assert fig.canvas.get_width_height() == (200, int(round((2.0 * 4 / 8 + 0.6) * 100)))


def test_comparison_ssim_uses_the_data_range():
    from pnpdeblur.metrics import ssim

    rng = np.random.default_rng(6)
    sharp = rng.random((16, 16))
    noisy = np.clip(sharp + 0.2 * rng.standard_normal(sharp.shape), 0, 1)
    fig = comparison_figure([noisy], reference=sharp, data_range=2.0, show_ssim=True, width_per_image=1.0)
    expected = ssim(noisy, sharp, data_range=2.0)
    assert abs(expected - ssim(noisy, sharp, data_range=1.0)) > 1e-3  # the range matters here
    assert fig.axes[0].get_title().endswith(f", SSIM {expected:.4f}")


def test_comparison_reference_counted_from_the_end_down_to_the_first_image():
    a, b = np.zeros((4, 4)), np.full((4, 4), 0.5)
    titles = [ax.get_title() for ax in comparison_figure([a, b], reference=-2, width_per_image=1.0).axes]
    assert titles == ["image 0", f"image 1\nPSNR {10 * math.log10(1 / 0.25):.2f} dB"]


def test_comparison_titles_are_10_points_whatever_the_settings():
    with matplotlib.rc_context({"font.size": 7}):
        fig = comparison_figure([np.zeros((4, 4))], width_per_image=1.0)
    assert fig.axes[0].title.get_fontsize() == 10


def test_kernel_field_panels_fill_a_one_row_grid():
    img, flow = np.zeros((8, 8)), np.zeros((2, 8, 8))
    fig = kernel_field_figure(img, flow, step=4, width=1.0)
    assert [ax.get_subplotspec().get_geometry() for ax in fig.axes] == [(1, 1, 0, 0)]
    fig = kernel_field_figure(img, flow, step=4, width=1.0, show_flow=True)
    assert [ax.get_subplotspec().get_geometry() for ax in fig.axes] == [(1, 2, 0, 0), (1, 2, 1, 1)]


def test_kernel_field_view_is_the_image_even_when_segments_stick_out():
    flow = np.full((2, 8, 8), 12.0)  # 12-px kernels at 4-px spacing: past every edge
    flow[1] = -12.0
    for mode in ("lines", "kernels"):
        ax = kernel_field_figure(np.zeros((8, 8)), flow, step=4, mode=mode, width=1.0).axes[0]
        assert ax.get_xlim() == (-0.5, 7.5) and ax.get_ylim() == (7.5, -0.5), mode
    ax = kernel_field_figure(np.zeros((8, 8)), -flow, step=4, width=1.0).axes[0]
    assert ax.get_xlim() == (-0.5, 7.5) and ax.get_ylim() == (7.5, -0.5)


def test_kernel_field_overlay_is_drawn_without_smoothing():
    fig = kernel_field_figure(np.zeros((6, 6)), np.ones((2, 6, 6)), step=3, mode="kernels", width=1.0)
    assert fig.axes[0].images[1].get_interpolation() == "nearest"


def test_grey_panels_are_clipped_below_too():
    fig = comparison_figure([np.array([[-0.5, 0.25], [1.5, 1.0]])], width_per_image=1.0)
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), [[0.0, 0.25], [1.0, 1.0]])


def test_to_hwc_channel_error_explains_the_layouts():
    with pytest.raises(ValueError, match=r"\(numpy/cupy colour images are \(H, W, C\), torch ones \(C, H, W\)\)$"):
        to_hwc(np.zeros((4, 5, 2)))


def test_figures_keep_100_dpi_whatever_the_users_matplotlibrc_says():
    import matplotlib

    with matplotlib.rc_context({"figure.dpi": 72}):
        fig = comparison_figure([np.zeros((4, 8))], width_per_image=2.0)
    assert fig.dpi == 100 and fig.canvas.get_width_height()[0] == 200


def test_convergence_log_rule_is_the_ratio_of_the_extremes():
    def scale(y):
        return convergence_figure({"y": y}).axes[0].get_yscale()

    assert scale([2.0, 150.0]) == "linear"   # ratio 75 (a product would be 300)
    assert scale([0.5, 60.0]) == "log"       # ratio 120 (a product would be 30)
