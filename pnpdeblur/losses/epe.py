"""End-point error and FlowNet's multi-scale EPE loss.

The end-point error of a flow prediction is the Euclidean distance between predicted and
true motion vectors, ``‖f̂(p) − f(p)‖₂``, averaged over pixels (and the batch).

FlowNet (Dosovitskiy et al.) supervises each of its five predictions (1/64 … 1/4 of the
input) with the ground truth **average-pooled** to that prediction's grid (Caffe's
``Downsample`` layer; ``F.interpolate(mode="area")`` in Pinard's port, ``AvgPool2d`` in
NVIDIA's) and weights the scales 0.32, 0.08, 0.02, 0.01, 0.005 from coarse to fine (the
weights of the released Caffe ``train.prototxt``, kept by Pinard's port).

Units. pnpdeblur's :meth:`pnpdeblur.nets.flownets.FlowNetS.forward_multiscale` returns
each scale in pixels of its own grid, so :func:`multiscale_epe` scales the pooled
target's magnitudes with the resolution (u by ``w/W``, v by ``h/H``) before comparing.
With ``units="full"`` (default) each scale's error is then expressed in pixels of the
full-resolution target (divided by the same ratios) — exactly the balance between scales
that FlowNet trained with, whose targets are ``flow / 20`` at every scale, never rescaled;
our loss is FlowNet's times ``div_flow`` (a constant factor Adam does not notice).
``units="scale"`` measures each error in its own grid's pixels instead (coarse scales then
count ``2**k`` times less).

Each scale's EPE is a mean over pixels, as in NVIDIA's port; Pinard's port sums over the
pixels of each image (``EPE(mean=False)``), which multiplies scale ``k``'s term by its
pixel count.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .._checks import check_real
from .._vectors import vector_length
from ._checks import check_finite

__all__ = ["endpoint_error", "multiscale_epe", "FLOWNET_WEIGHTS"]

#: FlowNet's loss weights, coarse → fine (flow6 at 1/64 … flow2 at 1/4).
FLOWNET_WEIGHTS = (0.32, 0.08, 0.02, 0.01, 0.005)


def _check_flow(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2, H, W), got {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    return check_finite(x, name)


def endpoint_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error ``mean_p ‖pred(p) − target(p)‖₂``.

    Parameters
    ----------
    pred, target : Tensor
        Flows ``(N, 2, H, W)`` of the same shape, in the same units (pixels).

    Returns
    -------
    Tensor
        Scalar, averaged over the batch and the pixels.
    """
    _check_flow(pred, "pred")
    _check_flow(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    # vector_length has a zero (not NaN) gradient where the error is exactly 0
    return vector_length(pred - target, dim=1).mean()


def multiscale_epe(preds: Sequence[torch.Tensor], target: torch.Tensor,
                   weights: Optional[Sequence[float]] = FLOWNET_WEIGHTS, units: str = "full") -> torch.Tensor:
    """FlowNet's multi-scale loss ``Σ_k weight_k · EPE_k``.

    Parameters
    ----------
    preds : sequence of Tensor
        Predictions ``(N, 2, h_k, w_k)``, coarse → fine, each in pixels of its own grid
        (as :meth:`FlowNetS.forward_multiscale` returns them); a single tensor is one scale.
    target : Tensor
        Ground truth ``(N, 2, H, W)`` in pixels of the full-resolution grid.
    weights : sequence of float, optional
        One finite number >= 0 per prediction (default FlowNet's ``0.32, 0.08, 0.02, 0.01,
        0.005``); None gives every scale weight 1.
    units : {"full", "scale"}
        Pixels in which each scale's error is measured (see the module docstring):
        the full-resolution grid (FlowNet's balance, default) or the scale's own grid.

    Returns
    -------
    Tensor
        Scalar.

    Notes
    -----
    At scale ``k`` the target is average-pooled to ``(h_k, w_k)`` (``mode="area"``, the
    exact mean over each block when ``H/h_k`` and ``W/w_k`` are integers) and its u, v are
    multiplied by ``w_k/W`` and ``h_k/H``.
    """
    if isinstance(preds, torch.Tensor):
        preds = [preds]
    preds = list(preds)
    if not preds:
        raise ValueError("preds must hold at least one prediction")
    _check_flow(target, "target")
    if units not in ("full", "scale"):
        raise ValueError(f"units must be 'full' or 'scale', got {units!r}")
    if weights is None:
        weights = [1.0] * len(preds)
    weights = [check_real(w, f"weights[{i}]") for i, w in enumerate(weights)]
    if len(weights) != len(preds):
        raise ValueError(f"weights must have one entry per prediction ({len(preds)}), got {len(weights)}")
    n, _, H, W = target.shape
    total = target.new_zeros(())
    for k, (p, w) in enumerate(zip(preds, weights)):
        _check_flow(p, f"preds[{k}]")
        h, wd = p.shape[-2:]
        if p.shape[0] != n or h > H or wd > W:
            raise ValueError(f"preds[{k}] must be (N={n}, 2, h <= {H}, w <= {W}), got {tuple(p.shape)}")
        ratio = target.new_tensor([wd / W, h / H]).view(1, 2, 1, 1)
        t = F.interpolate(target, size=(h, wd), mode="area") * ratio
        diff = p - t
        if units == "full":
            diff = diff / ratio
        total = total + w * vector_length(diff, dim=1).mean()
    return total
