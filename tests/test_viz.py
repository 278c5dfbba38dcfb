"""Pictures: colour wheel values, legend, kernel segments, figures written as PNG."""
import numpy as np
import pytest
import torch
from skimage import io

from pnpdeblur.viz import (
    comparison_figure,
    convergence_figure,
    flow_legend,
    flow_to_color,
    kernel_field_figure,
    kernel_segments,
    to_hwc,
)


def _flow(u, v):
    return np.array([u, v], float).reshape(2, 1, 1)


def test_flow_to_color_known_directions():
    # zero motion is white; unit vectors are saturated wheel colours
    assert np.array_equal(flow_to_color(_flow(0, 0), max_norm=1)[0, 0], [255, 255, 255])
    # exact wheel colours (Middlebury wheel: 55 hues, RY 15, YG 6, GC 4, CB 11, BM 13, MR 6)
    right = flow_to_color(_flow(1, 0), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(right, [1.0, 0.0, 1 / 6], atol=1e-12)  # red
    up = flow_to_color(_flow(0, -1), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(up, [4.5 / 13, 0.0, 1.0], atol=1e-12)  # blue-violet
    left = flow_to_color(_flow(-1, 0), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(left, [0.0, 9 / 11, 1.0], atol=1e-12)  # cyan-blue
    down = flow_to_color(_flow(0, 1), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(down, [1.0, 0.9, 0.0], atol=1e-12)  # yellow
    # half length is half-way to white
    half = flow_to_color(_flow(0.5, 0), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(half, 1 - 0.5 * (1 - right), atol=1e-12)
    # beyond max_norm: darkened
    far = flow_to_color(_flow(2, 0), max_norm=1, dtype="float")[0, 0]
    np.testing.assert_allclose(far, 0.75 * right, atol=1e-12)


def test_flow_to_color_shapes_types_symmetric():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 2, 5, 6))
    out = flow_to_color(f)
    assert out.shape == (3, 5, 6, 3) and out.dtype == np.uint8
    assert np.array_equal(flow_to_color(torch.tensor(f)), out)
    assert np.array_equal(out[1], flow_to_color(f[1], max_norm=np.hypot(f[:, 0], f[:, 1]).max()))
    # default max_norm is the batch max: the longest vector is exactly on the circle
    single = flow_to_color(f[0], dtype="float")
    assert single.shape == (5, 6, 3)
    sym_a = flow_to_color(f[0], symmetric=True)
    sym_b = flow_to_color(-f[0], symmetric=True)
    assert np.array_equal(sym_a, sym_b)
    assert not np.array_equal(flow_to_color(f[0]), flow_to_color(-f[0]))
    with pytest.raises(ValueError):
        flow_to_color(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError):
        flow_to_color(np.full((2, 2, 2), np.nan))
    with pytest.raises(ValueError):
        flow_to_color(f[0], max_norm=-1)


def test_legend():
    leg = flow_legend(65)
    assert leg.shape == (65, 65, 3) and leg.dtype == np.uint8
    assert np.array_equal(leg[32, 32], [255, 255, 255])  # centre: zero flow
    assert np.array_equal(leg[0, 0], [255, 255, 255])  # outside the disc
    assert leg[32, 64, 0] > 240 and leg[32, 64, 1] < 20  # right edge red


def test_kernel_segments_follow_convention():
    flow = np.zeros((2, 32, 32))
    flow[0] = 6.0
    flow[1] = -2.0
    segs = kernel_segments(flow, step=16)
    assert segs.shape == (4, 2, 2)
    np.testing.assert_allclose(segs[0], [[8 - 3, 8 + 1], [8 + 3, 8 - 1]])
    np.testing.assert_allclose(segs.mean(axis=1)[:, 0], [8, 24, 8, 24])


def test_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.random((48, 64, 3))
    flow = rng.integers(-5, 6, size=(2, 48, 64)).astype(float)
    p1 = tmp_path / "kf.png"
    fig = kernel_field_figure(img, flow, step=8, path=p1, show_flow=True)
    assert len(fig.axes) == 2 and len(fig.axes[0].collections) == 1
    assert io.imread(p1).ndim == 3
    p2 = tmp_path / "sub" / "cmp.png"
    noisy = np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1)
    fig = comparison_figure([noisy, img], ["noisy", "sharp"], reference=1, path=p2)
    assert p2.exists()
    titles = [ax.get_title() for ax in fig.axes]
    from skimage.metrics import peak_signal_noise_ratio

    assert f"{peak_signal_noise_ratio(img, noisy, data_range=1):.2f} dB" in titles[0]
    assert "PSNR" not in titles[1]
    # torch (C, H, W) and grey inputs
    comparison_figure([torch.tensor(img).permute(2, 0, 1), img[:, :, 0]], reference=None)
    with pytest.raises(ValueError):
        kernel_field_figure(img, flow[:, :10])
    with pytest.raises(ValueError):
        comparison_figure([img], ["a", "b"])


class _Result:
    def __init__(self, history):
        self.history = history


@pytest.mark.parametrize("history", [
    {"residual": [1.0, 1e-2, 1e-4], "psnr": [20.0, 25.0, 26.0], "note": ["a", "b", "c"]},
    [{"residual": 1.0, "psnr": 20.0}, {"residual": 1e-2, "psnr": 25.0}, {"residual": 1e-4}],
])
def test_convergence_figure_tolerant(tmp_path, history):
    p = tmp_path / "conv.png"
    fig = convergence_figure(_Result(history), path=p)
    assert p.exists()
    assert sorted(ax.get_title() for ax in fig.axes) == ["psnr", "residual"]
    res_ax = [ax for ax in fig.axes if ax.get_title() == "residual"][0]
    assert res_ax.get_yscale() == "log"
    np.testing.assert_allclose(res_ax.lines[0].get_ydata(), [1.0, 1e-2, 1e-4])
    convergence_figure(history)  # the history itself
    with pytest.raises(ValueError):
        convergence_figure({"note": ["x"]})
    with pytest.raises(TypeError):
        convergence_figure(_Result(3))


def test_convergence_figure_overlays_several_runs(tmp_path):
    # a list of results used to fail with "no numeric series": the runs of a prior comparison
    tv = _Result({"iteration": [1, 2, 3], "residual": [1.0, 0.1, 0.01], "psnr": [20.0, 22.0, 23.0]})
    dn = _Result([{"iteration": 1, "residual": 2.0, "psnr": 21.0}, {"iteration": 2, "residual": 0.5}])
    fig = convergence_figure({"TV": tv, "DRUNet": dn}, path=tmp_path / "two.png")
    assert (tmp_path / "two.png").exists()
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert sorted(axes) == ["psnr", "residual"]  # "iteration" is the x axis
    res = axes["residual"]
    assert [ln.get_label() for ln in res.lines] == ["TV", "DRUNet"]
    assert [t.get_text() for t in res.get_legend().get_texts()] == ["TV", "DRUNet"]
    np.testing.assert_allclose(res.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(res.lines[1].get_ydata(), [2.0, 0.5])
    assert res.get_yscale() == "log"  # 2.0 … 0.01 over both runs spans two decades
    np.testing.assert_allclose(axes["psnr"].lines[1].get_ydata(), [21.0, np.nan])  # a gap, not a drop
    assert res.get_xlabel() == "iteration"
    # a list: labelled by position; a series only one run has is drawn for that run alone
    only = _Result({"residual": [3.0, 1.0], "cg_iters": [5, 4]})
    fig = convergence_figure([tv, only])
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert [ln.get_label() for ln in axes["residual"].lines] == ["run 0", "run 1"]
    assert [ln.get_label() for ln in axes["cg_iters"].lines] == ["run 1"]
    np.testing.assert_allclose(axes["residual"].lines[1].get_xdata(), [0, 1])  # run 1 has no "iteration"
    # one run keeps its single unlabelled curve
    assert convergence_figure(tv).axes[0].get_legend() is None
    with pytest.raises(ValueError, match=r"^keys \['ssim'\] are not numeric series"):
        convergence_figure({"TV": tv, "DRUNet": dn}, keys=["ssim"])


def test_to_hwc_layouts():
    x = np.random.default_rng(0).random((3, 10, 12))
    assert to_hwc(torch.tensor(x)).shape == (10, 12, 3)
    assert to_hwc(torch.tensor(x)[None]).shape == (10, 12, 3)
    assert to_hwc(x.transpose(1, 2, 0)).shape == (10, 12, 3)
    assert to_hwc(np.zeros((10, 12), np.uint8)).shape == (10, 12, 1)
    with pytest.raises(ValueError):
        to_hwc(np.zeros((2, 3, 4, 5)))


def test_kernel_field_kernels_mode_paints_line_kernel():
    flow = np.zeros((2, 32, 32))
    flow[0] = 6.0
    fig = kernel_field_figure(np.zeros((32, 32)), flow, step=16, mode="kernels")
    overlay = fig.axes[0].images[1].get_array()
    alpha = np.asarray(overlay[..., 3])
    # m = (6, 0) at the grid point (8, 8): taps x = 5..11 on row 8, end taps at half weight
    np.testing.assert_allclose(alpha[8, 5:12], [0.5, 1, 1, 1, 1, 1, 0.5], atol=1e-12)
    assert alpha[8, 4] == 0 and alpha[7, 8] == 0 and alpha[0, 0] == 0


def test_convergence_figure_with_solver_result(tmp_path):
    result_mod = pytest.importorskip("pnpdeblur.solvers.result")
    hist = [{"iteration": i + 1, "time": 0.1 * i, "residual": 10.0 ** -i, "psnr": 20.0 + i,
             "cg_converged": True} for i in range(4)]
    res = result_mod.SolverResult(x=np.zeros((4, 4)), history=hist)
    fig = convergence_figure(res, path=tmp_path / "c.png")
    assert sorted(ax.get_title() for ax in fig.axes) == ["psnr", "residual"]
    ax = [a for a in fig.axes if a.get_title() == "psnr"][0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 2, 3, 4])
    assert ax.get_xlabel() == "iteration"
