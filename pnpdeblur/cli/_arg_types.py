"""The ``type=`` callables of the parser's options: each turns an argument's text into its value or
raises :class:`argparse.ArgumentTypeError`, which argparse reports as a usage error (exit status 2)."""
from __future__ import annotations

import argparse

import numpy as np

__all__ = ["_positive_int", "_margin", "_odd_int", "_finite_float", "_nonneg_float", "_positive_float",
           "_unit_float", "_gamma", "_flow_scale"]


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _margin(s: str):
    """``--margin``: ``reach`` or an integer >= 0."""
    if s == "reach":
        return s
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'reach', got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0 or 'reach', got {s!r}")
    return v


def _odd_int(s: str) -> int:
    v = _positive_int(s)
    if v < 3 or v % 2 == 0:
        raise argparse.ArgumentTypeError(f"expected an odd integer >= 3, got {s!r}")
    return v


def _finite_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def _nonneg_float(s: str) -> float:
    v = _finite_float(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    v = _finite_float(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {s!r}")
    return v


def _unit_float(s: str) -> float:
    v = _finite_float(s)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {s!r}")
    return v


def _gamma(s: str) -> float:
    v = _finite_float(s)
    if not 1 <= v <= 4:
        raise argparse.ArgumentTypeError(f"expected a number in [1, 4] (2.2 for a typical camera curve), got {s!r}")
    return v


# --flow-scale shortens the estimated flow, never lengthens it: the same range as _unit_float
_flow_scale = _unit_float
