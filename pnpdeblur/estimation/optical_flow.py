"""Optical flow between (deblurred) video frames, in the library's flow convention.

``optical_flow(frame_a, frame_b)`` returns the flow ``f`` on frame_a's pixel grid that takes a
pixel p to its position in frame_b: ``frame_b(p + f(p)) ≈ frame_a(p)``; channel 0 = u (+x,
right), channel 1 = v (+y, down), in pixels (docs/conventions.md). For Reblur2Deblur, the flows of frame
t are ``optical_flow(d_t, d_{t+1})`` (F₊) and ``optical_flow(d_t, d_{t−1})`` (F₋).

Methods
-------
``"tvl1"`` (default, offline)
    scikit-image's :func:`skimage.registration.optical_flow_tvl1` (Zach et al.'s TV-L1 with
    Wedel et al.'s refinements) on grey images (BT.709 luminance). scikit-image returns
    ``(v, u)`` = (row, column) with ``moving(p + f) ≈ reference(p)``; it is called with
    ``reference=frame_a, moving=frame_b`` and its channels are swapped to ``(u, v)``.
a callable
    Any ``net(frame_a, frame_b) -> (N, 2, H, W)`` in the same convention, e.g.
    ``pnpdeblur.nets.FlowNetS`` (the paper's choice). It gets ``(N, C, H, W)`` float tensors in
    [0, 1]; it is called as is (no ``no_grad``), so a module can be trained through it.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .._images import GREY_WEIGHTS, as_image_batch, check_unit_scale
from ..backend import check_finite

__all__ = ["FLOW_METHODS", "optical_flow", "neighbour_flows"]

#: Names accepted by ``method=`` (besides a callable).
FLOW_METHODS = ("tvl1",)


def _grey(x: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` tensor, C = 1 or 3 (the callers check) → float64 ``(H, W)`` luminance."""
    a = x.detach().to("cpu", torch.float64).numpy()
    if a.shape[0] == 3:
        return np.tensordot(np.asarray(GREY_WEIGHTS), a, axes=1)
    return a.mean(0)


def _tvl1(a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    from skimage.registration import optical_flow_tvl1

    out = []
    for i in range(a.shape[0]):
        vu = optical_flow_tvl1(_grey(a[i]), _grey(b[i]), **kwargs)  # (row, col) = (v, u)
        out.append(np.stack([vu[1], vu[0]]))
    return torch.from_numpy(np.stack(out)).to(device=a.device, dtype=a.dtype)


def _check_method(method: Union[str, Callable]) -> None:
    if isinstance(method, str):
        if method not in FLOW_METHODS:
            raise ValueError(f"method must be one of {FLOW_METHODS} or a callable net(frame_a, frame_b), "
                             f"got {method!r}")
    elif not callable(method):
        raise TypeError(f"method must be 'tvl1' or a callable net(frame_a, frame_b) -> (N, 2, H, W), "
                        f"got {type(method).__name__}")


def _check_size(t: torch.Tensor, name: str) -> None:
    """Flows need a gradient along both axes: at least 2 × 2 pixels (numpy's error named neither)."""
    if min(t.shape[-2:]) < 2:
        raise ValueError(f"{name} must be at least 2×2 pixels for an optical flow, got (H, W) = {tuple(t.shape[-2:])}")


def _flow_tensors(a: torch.Tensor, b: torch.Tensor, method: Union[str, Callable], **kwargs: Any) -> torch.Tensor:
    """Flows between two ``(N, C, H, W)`` batches as an ``(N, 2, H, W)`` tensor (checked)."""
    if method == "tvl1":
        return _tvl1(a, b, **kwargs)
    f = method(a, b, **kwargs)
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"the flow method returned {type(f).__name__}, expected a torch.Tensor (N, 2, H, W)")
    want = (a.shape[0], 2) + tuple(a.shape[2:])
    if tuple(f.shape) != want:
        raise ValueError(f"the flow method returned shape {tuple(f.shape)}, expected {want}")
    if not bool(torch.isfinite(f.detach()).all()):
        raise ValueError("the flow method returned NaN or Inf values")
    return f


def optical_flow(frame_a: Any, frame_b: Any, method: Union[str, Callable] = "tvl1", **kwargs: Any) -> Any:
    """Optical flow from ``frame_a`` to ``frame_b`` on frame_a's grid.

    Parameters
    ----------
    frame_a, frame_b : array
        Images of the same shape: ``(H, W)``, ``(H, W, C)`` numpy / ``(C, H, W)`` torch, or
        ``(N, C, H, W)`` batches; uint8 or float in [0, 1].
    method : "tvl1" or callable
        See the module docstring.
    **kwargs
        Passed to :func:`skimage.registration.optical_flow_tvl1` (``attachment=15,
        tightness=0.3, num_warp=5, num_iter=10, tol=1e-4, prefilter=False`` by default) or to
        the callable.

    Returns
    -------
    array
        ``f`` with ``frame_b(p + f(p)) ≈ frame_a(p)``: ``(2, H, W)`` for one image, else
        ``(N, 2, H, W)``; channel 0 = u (+x), 1 = v (+y), pixels; frame_a's array type
        (float32 for uint8 frames).

    Raises
    ------
    TypeError, ValueError
        Non-array frames, frames of different shapes, NaN/Inf, an unknown method or a callable
        that returns the wrong shape.
    """
    _check_method(method)
    a, bound = as_image_batch(frame_a, "frame_a")
    b, _ = as_image_batch(frame_b, "frame_b")
    if a.shape != b.shape:
        raise ValueError(f"frame_a and frame_b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    _check_size(a, "frame_a")
    return bound.flow(_flow_tensors(a, b.to(device=a.device, dtype=a.dtype), method, **kwargs))


def _check_indices(indices: Any, t_len: int) -> list:
    """``indices`` as a sorted list of distinct ints in ``[0, t_len)``: a non-empty sequence of integers, not
    bools (an empty one, or a fraction rounded down, would silently give flows of all NaN or of another frame)."""
    if isinstance(indices, (str, bytes)) or not isinstance(indices, (Sequence, np.ndarray, torch.Tensor)):
        raise TypeError(f"indices must be a sequence of ints or None, got {type(indices).__name__}")
    out = []
    for i in (indices.tolist() if isinstance(indices, (np.ndarray, torch.Tensor)) else indices):
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
            raise TypeError(f"indices must hold ints, got {i!r} ({type(i).__name__})")
        if not 0 <= i < t_len:
            raise ValueError(f"indices must lie in [0, {t_len}), got {i}")
        out.append(int(i))
    if not out:
        raise ValueError("indices is empty: pass None for all frames")
    return sorted(set(out))


def neighbour_flows(
    frames: torch.Tensor,
    method: Union[str, Callable] = "tvl1",
    indices: Optional[Sequence[int]] = None,
    **kwargs: Any,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flows from each frame of a clip to its next and previous frame.

    Parameters
    ----------
    frames : torch.Tensor, (T, C, H, W), float
        Frames in temporal order (e.g. the deblurred frames of a clip), T >= 2; C is 1 or 3 for
        ``"tvl1"`` (a callable gets the channels it is given).
    method : "tvl1" or callable
        As for :func:`optical_flow`.
    indices : sequence of int, optional
        Frames whose flows are needed (default: all); not empty.

    Returns
    -------
    flow_next, flow_prev : torch.Tensor, (T, 2, H, W)
        ``flow_next[t]`` = flow from frame t to t+1, ``flow_prev[t]`` = from t to t−1, on frame
        t's grid. Where a neighbour does not exist (the ends of the clip) or the frame was not
        asked for, the entry is NaN, so it cannot be used by mistake.

    Raises
    ------
    TypeError, ValueError
        ``frames`` not a float ``(T, C, H, W)`` tensor of T >= 2 finite frames in [0, 1] (a
        0-255 clip), an unknown ``method``, ``indices`` empty, out of range or not ints.
    """
    _check_method(method)
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
        raise ValueError(f"frames must be a (T, C, H, W) tensor, got "
                         f"{tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}")
    t_len = frames.shape[0]
    if t_len < 2:
        raise ValueError(f"frames must hold at least 2 frames, got {t_len}")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be a float tensor (values in [0, 1]), got dtype {frames.dtype}")
    if method == "tvl1" and frames.shape[1] not in (1, 3):
        # optical_flow takes grey or RGB (an alpha channel dropped); averaging other planes,
        # alpha included, into a "grey" frame would give the flow of something else
        raise ValueError(f"frames must have 1 (grey) or 3 (RGB) channels for method='tvl1', got {frames.shape[1]} "
                         "(drop an alpha channel with frames[:, :3])")
    check_finite(frames, "frames")  # the result marks missing neighbours with NaN: NaN frames would pass as flows
    _check_size(frames, "frames")
    if frames.numel() == 0:
        raise ValueError(f"frames is empty (shape {tuple(frames.shape)})")
    check_unit_scale(*(float(v) for v in torch.aminmax(frames.detach())), "frames")
    wanted = range(t_len) if indices is None else _check_indices(indices, t_len)
    fn = torch.full((t_len, 2) + tuple(frames.shape[2:]), float("nan"), dtype=frames.dtype, device=frames.device)
    fp = fn.clone()
    for t in wanted:
        if t + 1 < t_len:
            fn[t] = _flow_tensors(frames[t:t + 1], frames[t + 1:t + 2], method, **kwargs)[0]
        if t >= 1:
            fp[t] = _flow_tensors(frames[t:t + 1], frames[t - 1:t], method, **kwargs)[0]
    return fn, fp
