"""Pictures: flow colour coding, kernel fields, comparisons and convergence plots.

Everything is headless: figures are :class:`matplotlib.figure.Figure` objects drawn with the
Agg canvas (no pyplot global state), returned to the caller and, when ``path`` is given,
written as PNG.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ._checks import check_flag, check_real
from .backend import host_image_batch, to_host_numpy

if TYPE_CHECKING:  # matplotlib loads when a figure is drawn, not on import
    from matplotlib.figure import Figure

__all__ = [
    "flow_to_color",
    "flow_legend",
    "kernel_field_figure",
    "comparison_figure",
    "convergence_figure",
    "to_hwc",
]


def _to_numpy(x, name: str) -> np.ndarray:
    """Host numpy array (checks in :func:`pnpdeblur.backend.to_host_numpy`: real numeric, not
    empty, no NaN/Inf; integers kept)."""
    return to_host_numpy(x, name)


def to_hwc(image: Any, name: str = "image") -> np.ndarray:
    """Convert one image to a float64 ``(H, W, C)`` numpy array for display.

    Accepts ``(H, W)``, numpy/cupy ``(H, W, C)``, torch ``(C, H, W)`` or a batch of one
    ``(1, C, H, W)``: the library's layout rule (:func:`pnpdeblur.backend.host_image_batch`,
    shared with :mod:`pnpdeblur.metrics`), decided by the array type, never guessed from the
    sizes. Integer images are scaled by their dtype's maximum. C must be 1, 3 or 4.
    """
    a = host_image_batch(image, name)
    if a.shape[0] != 1:
        raise ValueError(f"{name} must be a single image, got a batch of shape {tuple(getattr(image, 'shape', ()))}")
    a = np.moveaxis(a[0], 0, -1)
    if np.issubdtype(a.dtype, np.integer):
        a = a / float(np.iinfo(a.dtype).max)
    a = a.astype(np.float64)
    if a.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name} must have 1, 3 or 4 channels, got shape {a.shape} as (H, W, C) "
                         "(numpy/cupy colour images are (H, W, C), torch ones (C, H, W))")
    return a


def _display(a: np.ndarray) -> np.ndarray:
    a = np.clip(a, 0.0, 1.0)
    return a[:, :, 0] if a.shape[2] == 1 else a[:, :, :3]


def _color_wheel() -> np.ndarray:
    """The optical-flow colour wheel of Baker et al. (Middlebury): 55 hues, ``(55, 3)`` in [0, 1].

    Segment lengths red→yellow 15, yellow→green 6, green→cyan 4, cyan→blue 11,
    blue→magenta 13, magenta→red 6."""
    segments = [(15, (1, 0, 0), (1, 1, 0)), (6, (1, 1, 0), (0, 1, 0)), (4, (0, 1, 0), (0, 1, 1)),
                (11, (0, 1, 1), (0, 0, 1)), (13, (0, 0, 1), (1, 0, 1)), (6, (1, 0, 1), (1, 0, 0))]
    rows = []
    for n, c0, c1 in segments:
        t = np.arange(n)[:, None] / n
        rows.append((1 - t) * np.array(c0, float) + t * np.array(c1, float))
    return np.concatenate(rows)


def flow_to_color(flow: Any, max_norm: float | None = None, symmetric: bool = False,
                  dtype: str = "uint8") -> np.ndarray:
    """Colour-code a flow with the standard optical-flow colour wheel.

    Hue gives the direction (right = red, down = yellow-green ... as in the Middlebury
    visualisation), saturation the length relative to ``max_norm``: zero motion is white,
    a vector of length ``max_norm`` is fully saturated, longer vectors are darkened.

    Parameters
    ----------
    flow : numpy.ndarray or torch.Tensor
        ``(2, H, W)`` or ``(N, 2, H, W)``; channel 0 is u (right), channel 1 is v (down).
    max_norm : float, optional
        Length shown fully saturated. Default: the largest length in ``flow`` (over the whole
        batch, so a batch shares one scale).
    symmetric : bool
        Colour ``m`` and ``-m`` alike (doubles the angle); use it for blur labels, where
        ``m ≡ -m``.
    dtype : {"uint8", "float"}
        ``uint8`` in [0, 255] or float64 in [0, 1].

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` or ``(N, H, W, 3)`` RGB.
    """
    f = _to_numpy(flow, "flow").astype(np.float64)
    if f.ndim not in (3, 4) or f.shape[-3] != 2:
        raise ValueError(f"flow must be (2, H, W) or (N, 2, H, W), got shape {f.shape}")
    if dtype not in ("uint8", "float"):
        raise ValueError(f"dtype must be 'uint8' or 'float', got {dtype!r}")
    symmetric = check_flag(symmetric, "symmetric")
    u, v = f[..., 0, :, :], f[..., 1, :, :]
    rad = np.hypot(u, v)
    if max_norm is None:
        max_norm = float(rad.max())
    elif (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
          or not (max_norm > 0 and math.isfinite(max_norm))):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    rad = rad / max_norm if max_norm > 0 else np.zeros_like(rad)
    ang = np.arctan2(-v + 0.0, -u + 0.0) / np.pi  # in [-1, 1]; "+ 0.0" drops negative zeros
    if symmetric:
        ang = np.mod(2.0 * (ang + 1.0), 2.0) - 1.0
    wheel = _color_wheel()
    ncols = len(wheel)
    fk = (ang + 1.0) / 2.0 * (ncols - 1)
    k0 = np.floor(fk).astype(int)
    k1 = (k0 + 1) % ncols
    frac = (fk - k0)[..., None]
    col = (1 - frac) * wheel[k0] + frac * wheel[k1]
    r = rad[..., None]
    inside = r <= 1
    col = np.where(inside, 1 - r * (1 - col), col * 0.75)
    if dtype == "float":
        return col
    return np.clip(np.floor(255.0 * col + 0.5), 0, 255).astype(np.uint8)


def flow_legend(size: int = 128, symmetric: bool = False, dtype: str = "uint8") -> np.ndarray:
    """The colour-wheel key for :func:`flow_to_color`: ``(size, size, 3)`` RGB.

    The pixel at offset ``(u, v)`` from the centre shows the colour of that flow; the disc
    of radius ``size/2`` is the ``max_norm`` circle, outside it is white."""
    if not isinstance(size, numbers.Integral) or size < 3:
        raise ValueError(f"size must be an int >= 3, got {size!r}")
    if dtype not in ("uint8", "float"):  # checked here: flow_to_color is always asked for floats
        raise ValueError(f"dtype must be 'uint8' or 'float', got {dtype!r}")
    c = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([x - c, y - c])
    img = flow_to_color(flow, max_norm=c, symmetric=symmetric, dtype="float")
    img[np.hypot(x - c, y - c) > c] = 1.0
    if dtype == "float":
        return img
    return np.clip(np.floor(255.0 * img + 0.5), 0, 255).astype(np.uint8)


def _check_width(value: Any, name: str) -> float:
    """A figure width in inches: a finite number > 0 (``TypeError``/``ValueError`` naming ``name``;
    matplotlib's own error names neither, and accepts 0 and True)."""

    return check_real(value, name, allow_zero=False, what=" (inches)")


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    if path is None:
        return
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, format="png", dpi=fig.dpi, bbox_inches="tight")


def _single_flow(flow, shape) -> np.ndarray:
    f = _to_numpy(flow, "flow").astype(np.float64)
    if f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W) or (1, 2, H, W), got shape {f.shape}")
    if f.shape[1:] != tuple(shape):
        raise ValueError(f"flow size {f.shape[1:]} does not match the image size {tuple(shape)}")
    return f


def kernel_segments(flow: Any, step: int = 16) -> np.ndarray:
    """Line-kernel segments on a grid: ``(K, 2, 2)`` array of ``[[x0, y0], [x1, y1]]``.

    At every grid point ``p`` (every ``step`` pixels, offset ``step // 2``), the segment runs
    from ``p − m(p)/2`` to ``p + m(p)/2`` (the support of the design card's line kernel)."""
    f = _to_numpy(flow, "flow").astype(np.float64)
    if f.ndim == 4 and f.shape[0] == 1:
        f = f[0]
    if f.ndim != 3 or f.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got shape {f.shape}")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
        raise ValueError(f"step must be a positive int, got {step!r}")
    h, w = f.shape[1:]
    ys = np.arange(step // 2, h, step)
    xs = np.arange(step // 2, w, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    u = f[0][gy, gx].ravel()
    v = f[1][gy, gx].ravel()
    px, py = gx.ravel().astype(float), gy.ravel().astype(float)
    return np.stack([np.stack([px - u / 2, py - v / 2], 1), np.stack([px + u / 2, py + v / 2], 1)], 1)


def kernel_field_figure(image: Any, flow: Any, step: int = 16, path: str | os.PathLike | None = None,
                        mode: str = "lines", color: str = "red", linewidth: float = 1.5, title: str | None = None,
                        show_flow: bool = False, width: float = 6.0) -> Figure:
    """Draw the per-pixel line kernels of ``flow`` on a grid over ``image``.

    Parameters
    ----------
    image : one image (see :func:`to_hwc`), ``(H, W)`` matching the flow.
    flow : ``(2, H, W)`` (or ``(1, 2, H, W)``) motion flow (u right, v down, pixels).
    step : int
        Grid spacing in pixels.
    path : str or path-like, optional
        Write the figure there as PNG.
    mode : {"lines", "kernels"}
        ``"lines"``: each kernel as the segment ``p − m/2 .. p + m/2``. ``"kernels"``: the
        discrete kernel of :func:`pnpdeblur.operators.motion_kernel` painted at each grid
        point (brightness = weight).
    color : str
        Matplotlib colour of the segments (``"lines"``) or of the painted kernels (``"kernels"``).
    linewidth : float
        Width of the segments in points (``"lines"`` only).
    title : str, optional
        Title of the image panel.
    show_flow : bool
        Add a second panel with :func:`flow_to_color` of the flow (symmetric colouring).
    width : float
        Width of each panel in inches (> 0).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import LineCollection

    if mode not in ("lines", "kernels"):
        raise ValueError(f"mode must be 'lines' or 'kernels', got {mode!r}")
    width = _check_width(width, "width")
    show_flow = check_flag(show_flow, "show_flow")
    from ._images import check_unit_scale

    img = to_hwc(image)
    check_unit_scale(float(img.min()), float(img.max()), "image", "divide 8-bit images by 255")  # else white
    h, w = img.shape[:2]
    f = _single_flow(flow, (h, w))
    ncol = 2 if show_flow else 1
    fig = _new_figure(width * ncol, width * h / w + 0.4)
    ax = fig.add_subplot(1, ncol, 1)
    disp = _display(img)
    ax.imshow(disp, cmap="gray" if disp.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    segs = kernel_segments(f, step)
    if mode == "lines":
        ax.add_collection(LineCollection(segs, colors=color, linewidths=linewidth, capstyle="round"))
        centres = segs.mean(axis=1)
        ax.plot(centres[:, 0], centres[:, 1], ".", color=color, markersize=2)
    else:
        from .operators import motion_kernel

        overlay = np.zeros((h, w, 4))
        rgb = np.array(__import__("matplotlib.colors", fromlist=["to_rgb"]).to_rgb(color))
        for (p0, p1) in segs:
            cx, cy = (p0 + p1) / 2.0
            m = p1 - p0
            k = np.asarray(_to_numpy(motion_kernel((float(m[0]), float(m[1]))), "kernel"), float)
            k = k / max(k.max(), 1e-12)
            kh, kw = k.shape
            y0, x0 = int(round(cy)) - kh // 2, int(round(cx)) - kw // 2
            ya, xa = max(y0, 0), max(x0, 0)
            yb, xb = min(y0 + kh, h), min(x0 + kw, w)  # never empty: the centre is a grid pixel
            sub = k[ya - y0:yb - y0, xa - x0:xb - x0]
            a = np.maximum(overlay[ya:yb, xa:xb, 3], sub)
            overlay[ya:yb, xa:xb, :3] = rgb
            overlay[ya:yb, xa:xb, 3] = a
        ax.imshow(overlay, interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if show_flow:
        ax2 = fig.add_subplot(1, ncol, 2)
        ax2.imshow(flow_to_color(f, symmetric=True), interpolation="nearest")
        ax2.set_title(f"flow (max |m| = {np.hypot(f[0], f[1]).max():.1f} px)")
        ax2.set_axis_off()
    _save(fig, path)
    return fig


def comparison_figure(images: Sequence[Any], titles: Sequence[str] | None = None, reference: Any = None,
                      path: str | os.PathLike | None = None, data_range: float = 1.0, ncols: int | None = None,
                      width_per_image: float = 3.5, show_ssim: bool = False) -> Figure:
    """Side-by-side panels (e.g. blurred / restored / sharp) with PSNR in the titles.

    Parameters
    ----------
    images : sequence of images (see :func:`to_hwc`), all of the same ``(H, W)``.
    titles : sequence of str, optional
        One per image (default "image i").
    reference : image or int, optional
        Ground truth for the PSNR (and SSIM with ``show_ssim``) printed under each title;
        an int picks one of ``images`` (its own panel then gets no score).
    path : str or path-like, optional
        Write the figure there as PNG.
    data_range : float
        Peak value of float images (default 1: values in [0, 1]); the panels show ``[0,
        data_range]`` and the scores use it. Integer images are first scaled by their dtype's
        maximum (:func:`to_hwc`), so leave it at 1 for them. Float images beyond
        ``[−0.5, 1.5] · data_range`` raise ``ValueError`` (a 0-255 float photo would show white).
    ncols : int, optional
        Panels per row (default: all in one row).
    width_per_image : float
        Width of each panel in inches (> 0).
    show_ssim : bool
        Also print the SSIM (:func:`pnpdeblur.metrics.ssim`) against ``reference``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ._images import check_unit_scale
    from .metrics import psnr, ssim

    if (isinstance(data_range, bool) or not isinstance(data_range, numbers.Real) or not math.isfinite(data_range)
            or data_range <= 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    width_per_image = _check_width(width_per_image, "width_per_image")
    show_ssim = check_flag(show_ssim, "show_ssim")
    imgs = [to_hwc(im, f"images[{i}]") for i, im in enumerate(images)]
    if not imgs:
        raise ValueError("images must contain at least one image")
    def check_scale(im: np.ndarray, name: str) -> None:  # else a 0-255 float photo shows white
        check_unit_scale(float(im.min()) / data_range, float(im.max()) / data_range, f"{name} / data_range",
                         "divide 8-bit images by 255, or pass data_range=255 for 0-255 floats")

    for i, im in enumerate(imgs):
        check_scale(im, f"images[{i}]")
    if titles is None:
        titles = [f"image {i}" for i in range(len(imgs))]
    titles = list(titles)
    if len(titles) != len(imgs):
        raise ValueError(f"titles must have one entry per image ({len(imgs)}), got {len(titles)}")
    ref_idx = None
    ref = None
    if reference is not None:
        if isinstance(reference, numbers.Integral) and not isinstance(reference, bool):
            if not -len(imgs) <= reference < len(imgs):
                raise ValueError(f"reference index {reference} out of range for {len(imgs)} images")
            ref_idx = int(reference) % len(imgs)
            ref = imgs[ref_idx]
        else:
            ref = to_hwc(reference, "reference")
            check_scale(ref, "reference")
    n = len(imgs)
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1):
        raise ValueError(f"ncols must be a positive int or None, got {ncols!r}")
    ncols = n if ncols is None else int(ncols)
    nrows = int(math.ceil(n / ncols))
    h, w = imgs[0].shape[:2]
    fig = _new_figure(width_per_image * ncols, width_per_image * h / w * nrows + 0.6 * nrows)
    for i, (im, t) in enumerate(zip(imgs, titles)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        d = _display(im / data_range)
        ax.imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        label = str(t)
        if ref is not None and i != ref_idx:
            if im.shape != ref.shape:
                raise ValueError(f"images[{i}] has shape {im.shape}, the reference {ref.shape}")
            label += f"\nPSNR {psnr(im, ref, data_range=data_range):.2f} dB"
            if show_ssim:
                label += f", SSIM {ssim(im, ref, data_range=data_range):.4f}"
        ax.set_title(label, fontsize=10)
        ax.set_axis_off()
    _save(fig, path)
    return fig


def _history_series(result: Any) -> dict[str, list[float]]:
    hist = getattr(result, "history", result)
    if callable(hist) and not isinstance(hist, Mapping):
        hist = hist()
    series: dict[str, list[float]] = {}

    def usable(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) or (
            hasattr(v, "item") and getattr(v, "ndim", 1) == 0)

    if isinstance(hist, Mapping):
        for k, vals in hist.items():
            try:
                vals = list(vals)
            except TypeError:
                continue
            if vals and all(usable(v) for v in vals):
                series[str(k)] = [float(v) for v in vals]
    elif isinstance(hist, Sequence) and not isinstance(hist, (str, bytes)):
        keys: list[str] = []
        for row in hist:
            if isinstance(row, Mapping):
                for k, v in row.items():
                    if usable(v) and str(k) not in keys:
                        keys.append(str(k))
            elif usable(row):
                if "value" not in keys:
                    keys.append("value")
        for k in keys:
            vals = []
            for row in hist:
                if isinstance(row, Mapping):
                    v = row.get(k, None)
                    vals.append(float(v) if v is not None and usable(v) else float("nan"))
                else:
                    vals.append(float(row) if k == "value" and usable(row) else float("nan"))
            series[k] = vals
    else:
        raise TypeError("result must have a .history that is a dict of lists or a list of dicts, "
                        f"got {type(hist).__name__}")
    return series


def _runs(result: Any) -> dict[str | None, dict[str, list[float]]]:
    """One or several solver runs as ``{label: series}`` (label None for a single run)."""
    def is_run(v):
        return hasattr(v, "history") and not isinstance(v, (Mapping, str, bytes))

    if isinstance(result, Mapping) and result and all(is_run(v) for v in result.values()):
        return {str(k): _history_series(v) for k, v in result.items()}
    if (isinstance(result, Sequence) and not isinstance(result, (str, bytes)) and result
            and all(is_run(v) for v in result)):
        return {f"run {i}": _history_series(v) for i, v in enumerate(result)}
    return {None: _history_series(result)}


def convergence_figure(result: Any, path: str | os.PathLike | None = None, keys: Sequence[str] | None = None,
                       x_key: str | None = None, logy: bool | None = None, title: str | None = None) -> Figure:
    """Plot the per-iteration history of a solver result, or of several to compare them.

    Parameters
    ----------
    result : object with ``.history`` (e.g. ``SolverResult``), the history itself, or several runs
        The history is a dict of lists (``{"residual": [...], "psnr": [...]}``) or a list of dicts
        (one per iteration); non-numeric entries are skipped, missing values are gaps. Several
        runs overlay their curves: a dict ``{label: result}`` (e.g. one solve per prior) or a list
        of results (labelled ``run 0``, ``run 1`` ...).
    path : str or path-like, optional
        Write the figure there as PNG.
    keys : sequence of str, optional
        Which series to plot (default all numeric ones except ``x_key`` and ``"time"``; with
        several runs, those of any run).
    x_key : str, optional
        Series used as the x axis (default: the first of ``"iteration"``, ``"iter"``, ``"it"``,
        ``"k"``, ``"step"`` present, else the index).
    logy : bool, optional
        Log scale for y; default: when a series is positive and spans over two decades.
    title : str, optional
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs = _runs(result)
    present: list[str] = []  # the numeric series of any run, in their first order
    for series in runs.values():
        present += [k for k in series if k not in present]
    if x_key is None:
        x_key = next((k for k in ("iteration", "iter", "it", "k", "step") if k in present), None)
    elif x_key not in present:
        raise ValueError(f"x_key {x_key!r} is not in the history (keys: {sorted(present)})")
    if keys is None:
        keys = [k for k in present if k not in (x_key, "time")]
    else:
        missing = [k for k in keys if k not in present]
        if missing:
            raise ValueError(f"keys {missing} are not numeric series of the history (have {sorted(present)})")
    if not keys:
        raise ValueError("the history has no numeric series to plot")
    n = len(keys)
    ncols = min(n, 3)
    nrows = int(math.ceil(n / ncols))
    fig = _new_figure(4.0 * ncols, 3.0 * nrows + (0.4 if title else 0))
    for i, k in enumerate(keys):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        values = []
        integer_x = True
        for label, series in runs.items():
            if k not in series:
                continue
            y = np.asarray(series[k], float)
            x = np.asarray(series[x_key], float) if x_key in series else np.arange(len(y))
            if len(x) != len(y):
                x = np.arange(len(y))
            ax.plot(x, y, ".-", markersize=3, label=label)
            values.append(y[np.isfinite(y)])
            integer_x = integer_x and bool(np.all(x == np.round(x)))
        finite = np.concatenate(values)
        use_log = logy
        if use_log is None:
            use_log = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
        if use_log and finite.size and finite.min() > 0:
            ax.set_yscale("log")
        if x_key is None or integer_x:
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x_key or "iteration")
        ax.set_title(k)
        ax.grid(True, alpha=0.3)
        if None not in runs:
            ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    return fig
