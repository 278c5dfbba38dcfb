"""Training logs (pnpdeblur.train.logging) directly: the exact log.csv / log.json text and what
the loss picture draws (read back from the matplotlib Figure it builds)."""
import csv
import io
import json
import math
import struct

import matplotlib.figure
import pytest

from pnpdeblur.train import logging as tlog

HISTORY = [
    {"phase": "train", "step": 1, "epoch": 0, "loss": 0.5, "lr": 0.1},
    {"phase": "train", "step": 2, "epoch": 0, "loss": 0.25, "lr": 0.1, "grad_norm": 3.0},
    {"phase": "val", "step": 2, "epoch": 0, "val_psnr": 20.0, "val_ssim": 0.5},
    {"phase": "train", "step": 3, "epoch": 1, "loss": 0.125, "lr": 0.05},
    {"phase": "val", "step": 3, "epoch": 1, "val_psnr": 21.0, "val_ssim": float("nan")},
]


def test_columns_are_the_union_in_first_seen_order():
    assert tlog._columns([{"b": 1, "a": 2}, {"a": 3, "c": 4}, {"d": 0, "b": 1}]) == ["b", "a", "c", "d"]
    assert tlog._columns([]) == []


def test_write_logs_exact_files(tmp_path):
    out = tmp_path / "new" / "deeper"  # folders are created
    tlog.write_logs(HISTORY[:3], out)
    assert (out / "log.json").read_text() == json.dumps(HISTORY[:3], indent=1) + "\n"
    text = (out / "log.csv").read_bytes().decode()
    assert text == (
        "phase,step,epoch,loss,lr,grad_norm,val_psnr,val_ssim\r\n"
        "train,1,0,0.5,0.1,,,\r\n"
        "train,2,0,0.25,0.1,3.0,,\r\n"
        "val,2,0,,,,20.0,0.5\r\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["log.csv", "log.json"]  # no temporary file left
    # rewritten whole: a shorter history replaces the longer one
    tlog.write_logs(HISTORY[:1], str(out))
    assert json.loads((out / "log.json").read_text()) == HISTORY[:1]
    assert list(csv.reader(io.StringIO((out / "log.csv").read_text()))) == [
        ["phase", "step", "epoch", "loss", "lr"], ["train", "1", "0", "0.5", "0.1"]]
    assert sorted(p.name for p in out.iterdir()) == ["log.csv", "log.json"]


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")
    tlog._atomic_write(p, "new text")
    assert p.read_text() == "new text"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_finite():
    assert tlog._finite(1) and tlog._finite(-2.5) and tlog._finite(0)
    for v in (True, False, None, "1", float("nan"), float("inf"), -math.inf):
        assert not tlog._finite(v)


@pytest.fixture
def figures(monkeypatch):
    """Every Figure that plot_history builds, kept for inspection."""
    made = []

    class Recording(matplotlib.figure.Figure):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(matplotlib.figure, "Figure", Recording)
    return made


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def lines(ax):
    return [(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata()), ln.get_color(), ln.get_marker(),
             ln.get_linestyle()) for ln in ax.get_lines()]


def test_plot_history_draws_train_loss_and_validation(tmp_path, figures):
    hist = HISTORY + [{"phase": "train", "step": 4, "loss": float("inf")}, {"phase": "other", "loss": 9.0}]
    out = tlog.plot_history(hist, tmp_path / "sub" / "loss.png", title="step 3")
    assert out == tmp_path / "sub" / "loss.png" and isinstance(out, type(tmp_path))
    assert png_size(out) == (700, 400)  # 7x4 inches at 100 dpi
    assert [p.name for p in out.parent.iterdir()] == ["loss.png"]  # no temporary picture left
    (fig,) = figures
    ax, ax2 = fig.axes
    # the infinite loss and the row of another phase are left out
    assert lines(ax) == [("train loss", [1, 2, 3], [0.5, 0.25, 0.125], "C0", "None", "-")]
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    assert ax.yaxis.label.get_color() == "C0"
    assert ax.get_title() == "step 3"
    # validation metrics in first-seen order on a twin axis; the NaN point is left out
    assert lines(ax2) == [("val_psnr", [2, 3], [20.0, 21.0], "C1", "o", "--"),
                          ("val_ssim", [2], [0.5], "C2", "o", "--")]
    assert ax2.get_ylabel() == "validation"
    leg = ax.get_legend()
    assert [t.get_text() for t in leg.get_texts()] == ["train loss", "val_psnr", "val_ssim"]
    assert leg._loc == 0  # "best"
    assert leg.get_texts()[0].get_fontsize() == pytest.approx(matplotlib.font_manager.font_scalings["small"]
                                                              * matplotlib.rcParams["font.size"])
    # tight_layout moved the axes off matplotlib's default subplot box
    assert ax.get_position().x0 != pytest.approx(matplotlib.rcParams["figure.subplot.left"])


def test_plot_history_linear_scale_without_validation(tmp_path, figures):
    hist = [{"phase": "train", "step": 1, "loss": 1.0}, {"phase": "train", "step": 2, "loss": 0.0},
            {"phase": "val", "step": 2, "other": 1.0}]  # no val_ column: no twin axis
    out = tlog.plot_history(hist, str(tmp_path / "p.png"))
    assert out.is_file()
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear"  # a zero loss cannot go on a log axis
    assert ax.get_title() == ""
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train loss"]


def test_plot_history_empty(tmp_path, figures):
    out = tlog.plot_history([], tmp_path / "e.png", title="")
    assert png_size(out) == (700, 400)
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_lines() == [] and ax.get_legend() is None and ax.get_title() == ""
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"


def test_plot_history_validation_only(tmp_path, figures):
    tlog.plot_history([{"phase": "val", "step": 5, "val_psnr": 30.0}], tmp_path / "v.png")
    (fig,) = figures
    ax, ax2 = fig.axes
    assert ax.get_lines() == [] and ax.get_yscale() == "linear"
    assert lines(ax2) == [("val_psnr", [5], [30.0], "C1", "o", "--")]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["val_psnr"]


def test_plot_history_metric_without_finite_points(tmp_path, figures):
    tlog.plot_history([{"phase": "val", "step": 5, "val_a": float("nan"), "val_b": 2.0}], tmp_path / "v.png")
    (fig,) = figures
    ax, ax2 = fig.axes
    assert lines(ax2) == [("val_b", [5], [2.0], "C2", "o", "--")]  # val_a keeps its colour slot


def test_plot_history_size_ignores_rc_dpi_and_uses_the_whole_figure(tmp_path, figures):
    with matplotlib.rc_context({"figure.dpi": 50, "savefig.dpi": "figure"}):
        out = tlog.plot_history(HISTORY, tmp_path / "d.png")
    assert png_size(out) == (700, 400)  # 100 dpi, whatever the user's matplotlibrc says
    (fig,) = figures
    box = fig.axes[0].get_position()
    assert box.width > 0.6 and box.height > 0.6  # one subplot filling the figure


def test_plot_history_makes_nested_folders_and_puts_the_legend_at_best(tmp_path, figures):
    with matplotlib.rc_context({"legend.loc": "upper left"}):
        out = tlog.plot_history(HISTORY, tmp_path / "a" / "b" / "loss.png")
    assert out.is_file()
    assert figures[0].axes[0].get_legend()._loc == 0  # "best", whatever the rc default
