"""Input checks and the official-checkpoint reader shared by the end-to-end deblurring nets.

Private helpers of the end-to-end nets (DeepDeblur, DeblurNet, DVD, DeblurGAN, FlowNetS) and of
the RP-GAN networks.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from ..checkpoints import CheckpointError
from ._official import describe_load_error

__all__ = ["PhotoRestorer", "check_input", "check_multiple", "check_int", "read_torch_state", "strip_prefix"]


def check_int(name: str, value: Any, lo: int = 1) -> int:
    """``value`` as an int >= ``lo`` (bools refused), else ValueError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return value


def check_input(x: Any, channels: int, name: str = "x", allow_empty: bool = False,
                net: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """``x`` unchanged if it is a finite float ``(N, channels, H, W)`` tensor, else TypeError/ValueError
    (an empty one too unless ``allow_empty``).

    With ``net``, ``x`` must also have the dtype and device of the network's weights (a float64
    numpy image is the usual slip; torch would say only "Input type and bias type should be the
    same"). Under autocast the dtypes legitimately differ, so only the device is checked there.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, {channels}, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name} must have shape (N, {channels}, H, W), got {tuple(x.shape)}")
    if not allow_empty and (x.shape[0] == 0 or x.shape[-1] == 0 or x.shape[-2] == 0):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if x.device.type != "meta" and not bool(torch.isfinite(x.detach()).all()):  # meta tensors hold no values
        raise ValueError(f"{name} holds NaN or Inf values")
    if net is not None:
        _check_like_weights(x, net, name)
    return x


def _first_weight(net: torch.nn.Module) -> Optional[torch.Tensor]:
    """The net's first floating-point parameter (its dtype and device are the net's), or None."""
    return next((p for p in net.parameters() if p.is_floating_point()), None)


def _check_like_weights(x: torch.Tensor, net: torch.nn.Module, name: str) -> None:
    w = _first_weight(net)
    if w is None or "meta" in (x.device.type, w.device.type):
        return
    if x.device != w.device:
        raise ValueError(f"{name} is on {x.device} but {type(net).__name__}'s weights are on {w.device}; "
                         "move one of them with .to()")
    if x.dtype != w.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{name} has dtype {x.dtype} but {type(net).__name__}'s weights are {w.dtype}; "
                        f"convert with {name}.to({w.dtype}) or the network with .to({x.dtype})")


class PhotoRestorer:
    """Mixin of the single-image deblurring nets: :meth:`restore` runs the net on a photo as given."""

    def restore(self, image: Any) -> Any:
        """Deblur a photo (or a batch) given in any of the library's layouts with this network.

        ``net(x)`` takes a float ``(N, C, H, W)`` tensor on the net's device and dtype; this takes
        what a user holds — a numpy photo read from disk, uint8 or float — and hands back the same.

        Parameters
        ----------
        image : array
            ``(H, W)`` / ``(H, W, C)`` numpy or cupy, ``(H, W)`` / ``(C, H, W)`` torch, or
            ``(N, C, H, W)``; uint8 or float in [0, 1]; grey, RGB or RGBA (the alpha channel comes
            back opaque). A grey photo goes through a colour network as three equal planes and
            comes back as their mean.

        Returns
        -------
        array
            The restored photo in the caller's type, layout, device and dtype (uint8 in → uint8
            out), clipped to [0, 1].

        Raises
        ------
        ValueError
            An image of another channel count than the network's, or a network output with NaN
            or Inf values (never written back as black or NaN pixels).

        Notes
        -----
        The network runs in eval mode (dropout off, batch norm on its running statistics) and
        without gradients, on its own device and dtype; its training mode is restored afterwards.
        """
        from .._images import as_image_batch

        x, boundary = as_image_batch(image, "image")
        channels = self.config["in_channels"]
        grey = x.shape[1] == 1 and channels == 3
        if not grey and x.shape[1] != channels:
            raise ValueError(f"image has {x.shape[1]} channels; {type(self).__name__} takes {channels}")
        if grey:
            x = x.expand(-1, 3, -1, -1)
        w = _first_weight(self)
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = self(x.to(device=w.device, dtype=w.dtype))
        finally:
            self.train(training)
        if not bool(torch.isfinite(out).all()):  # a uint8 photo would come back black, a float one NaN
            raise ValueError(f"{type(self).__name__} produced NaN or Inf values on this image (weights that "
                             "overflow in this dtype, or a diverged checkpoint)")
        if grey:
            out = out.mean(dim=1, keepdim=True)
        return boundary.image(out.to(device=x.device))


def check_multiple(x: torch.Tensor, stride: int, cls: str, name: str = "x") -> None:
    """Raise ValueError unless H and W of ``x`` are multiples of ``stride``."""
    h, w = x.shape[-2:]
    if h % stride or w % stride:
        raise ValueError(f"{name}'s H and W must be multiples of {cls}.stride = {stride} in forward_multiscale, "
                         f"got {(h, w)}; crop training patches accordingly or call the net itself for any size")


def read_torch_state(path: Union[str, os.PathLike], what: str) -> Mapping[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU; errors become :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} checkpoint not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle and zip errors come in many types
        raise CheckpointError(f"{path} is not a readable torch checkpoint (corrupt or not a {what} file?): "
                              f"{describe_load_error(e)}") from e
    return obj


def strip_prefix(state: Mapping[str, Any], prefix: str = "module.") -> Dict[str, Any]:
    """Drop a DataParallel/DDP ``module.`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}
