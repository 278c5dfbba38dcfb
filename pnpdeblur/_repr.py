"""Short reprs for results that hold images: shapes and dtypes instead of every pixel.

A dataclass's default repr prints its arrays in full, so a result shown in a notebook cell (or
a log line) fills the screen with numbers.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import torch

from .backend import array_kind

__all__ = ["describe_array", "short_floats", "ArrayFieldsRepr"]


def describe_array(a: Any) -> str:
    """``"ndarray (H, W, 3) float32"`` / ``"Tensor (3, H, W) float32 cuda:0"``: an array without its
    values; anything else by its own repr."""
    try:
        array_kind(a)
    except TypeError:
        return repr(a)
    dtype = str(a.dtype).replace("torch.", "")
    device = f" {a.device}" if isinstance(a, torch.Tensor) and a.device.type != "cpu" else ""
    return f"{type(a).__name__} {tuple(a.shape)} {dtype}{device}"


def short_floats(values: Iterable[Any]) -> str:
    """A list of numbers at 4 significant digits (anything else, e.g. None, by its repr: a repr
    must not raise)."""
    def one(v: Any) -> str:
        try:
            return f"{float(v):.4g}"
        except (TypeError, ValueError):
            return repr(v)

    return "[" + ", ".join(one(v) for v in values) + "]"


class ArrayFieldsRepr:
    """Mixin for dataclasses: the repr lists every field, arrays by type, shape and dtype."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={describe_array(getattr(self, f.name))}"
                           for f in dataclasses.fields(self) if f.repr)
        return f"{type(self).__name__}({fields})"
