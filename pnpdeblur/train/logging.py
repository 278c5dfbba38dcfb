"""Training logs: ``log.csv``, ``log.json`` and a loss-curve picture ``loss.png``.

(The module shadows nothing: inside the package, ``import logging`` is still the
standard library because imports are absolute.)
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = ["write_logs", "plot_history"]

PathLike = Union[str, os.PathLike]


def _columns(rows: Sequence[Dict[str, Any]]) -> List[str]:
    cols: List[str] = []
    seen = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return cols


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_logs(history: Sequence[Dict[str, Any]], out_dir: PathLike) -> None:
    """Write ``history`` as ``out_dir/log.csv`` (union of columns) and ``out_dir/log.json``.

    The files are rewritten whole: rows may gain columns over time (validation metrics,
    extra losses) and a resumed run restores its history from ``last.pt``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(history)
    _atomic_write(out / "log.json", json.dumps(rows, indent=1) + "\n")
    tmp = out / "log.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=_columns(rows), restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / "log.csv")


def plot_history(history: Sequence[Dict[str, Any]], path: PathLike, title: Optional[str] = None) -> Path:
    """Loss against step (left axis) and validation metrics (right axis) as a PNG.

    Parameters
    ----------
    history : sequence of dict
        Rows with ``phase`` ``"train"`` (``step``, ``loss``) or ``"val"`` (``step``,
        ``val_*`` metrics), as :attr:`Trainer.history` holds them.
    path : str or PathLike
        Output picture.
    """
    # Figure + Agg canvas directly: no pyplot global state, works headless.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in history if r.get("phase") == "train" and _finite(r.get("loss"))]
    val = [r for r in history if r.get("phase") == "val"]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        steps = [r["step"] for r in train]
        losses = [r["loss"] for r in train]
        ax.plot(steps, losses, color="C0", label="train loss")
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="C0")
    handles, labels = ax.get_legend_handles_labels()
    metrics = [k for k in _columns(val) if k.startswith("val_")]
    if metrics:
        ax2 = ax.twinx()
        for i, m in enumerate(metrics):
            pts = [(r["step"], r[m]) for r in val if _finite(r.get(m))]
            if pts:
                ax2.plot(*zip(*pts), marker="o", linestyle="--", color=f"C{i + 1}", label=m)
        ax2.set_ylabel("validation")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)
    return path


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
