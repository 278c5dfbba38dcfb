"""The end-to-end deblurring networks of ``finetune --net`` and ``deblur --net``: their registries
and loading them by name (shipped weights) or from a checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["FINETUNE_NETS", "DEBLUR_NETS", "_net_class", "load_deblur_net", "_load_net"]


#: ``finetune --net NAME`` → the deblurring network class (a class, or ``"module:Class"``
#: imported on use). ``--net PATH`` accepts a checkpoint of any of these classes.
FINETUNE_NETS: Dict[str, Any] = {
    "deepdeblur": "pnpdeblur.nets.deepdeblur:DeepDeblur",
    "deblurgan": "pnpdeblur.nets.deblurgan:DeblurGANGenerator",
    "deblurnet": "pnpdeblur.nets.deblurnet:DeblurNet",
    "dvd": "pnpdeblur.nets.dvd:DVD",  # no shipped weights: --net PATH of a DVD checkpoint
}

#: ``deblur --net NAME`` → the single-image deblurring networks (those with ``.restore(photo)``); DVD
#: restores a frame from a stack of frames and stays with ``finetune``.
DEBLUR_NETS: Dict[str, Any] = {k: FINETUNE_NETS[k] for k in ("deepdeblur", "deblurgan", "deblurnet")}


def _net_class(spec: Any) -> type:
    """A :data:`FINETUNE_NETS` entry → the class (``"module:Class"`` strings are imported here)."""
    if isinstance(spec, type):
        return spec
    import importlib

    module, _, name = str(spec).partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise FileNotFoundError(f"{name} is not available in this installation of pnpdeblur ({e})") from None


def load_deblur_net(spec: str, nets: Optional[Dict[str, Any]] = None,
                    kind: str = "a deblurring network that can be fine-tuned") -> Any:
    """The network of ``finetune --net`` (or ``deblur --net``): a registry name or a checkpoint path.

    Parameters
    ----------
    spec : str
        A name (its class's ``pretrained()`` weights) or the path of a pnpdeblur checkpoint
        whose header names one of the registry's architectures.
    nets : dict, optional
        The registry, name → class or ``"module:Class"`` (default: :data:`FINETUNE_NETS`;
        ``deblur --net`` passes :data:`DEBLUR_NETS`).
    kind : str
        What the registry's networks are, for the error on a checkpoint of another architecture.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    FileNotFoundError
        No shipped weights for the name, a missing path, or a class not in this installation.
    ValueError
        A checkpoint of another architecture (e.g. SEN), or a corrupt one
        (:class:`pnpdeblur.checkpoints.CheckpointError`).
    """
    nets = FINETUNE_NETS if nets is None else nets
    key = spec.lower()
    if key in nets:
        cls = _net_class(nets[key])
        try:
            return cls.pretrained()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"no shipped weights for {cls.__name__} ({e}); pass a checkpoint with "
                                    f"--net PATH") from None
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--net {spec!r} is neither a known network ({', '.join(nets)}) "
                                "nor a checkpoint file")
    from ..checkpoints import read_header

    arch = read_header(path)["architecture"]
    for entry in nets.values():
        name = entry.__name__ if isinstance(entry, type) else str(entry).rpartition(":")[2]
        if name == arch:
            return _net_class(entry).from_checkpoint(path)
    known = [e.__name__ if isinstance(e, type) else str(e).rpartition(":")[2] for e in nets.values()]
    raise ValueError(f"{path} holds a {arch!r} checkpoint, not {kind} ({', '.join(known)})")


def _load_net(spec: str, device: Optional[str]) -> Any:
    """The network of ``deblur --net``: a :data:`DEBLUR_NETS` name or checkpoint (see
    :func:`load_deblur_net`), on ``device``; ValueError for a network without ``.restore``."""
    net = load_deblur_net(spec, DEBLUR_NETS, kind="a single-image deblurring network")
    if not callable(getattr(net, "restore", None)):
        raise ValueError(f"{type(net).__name__} has no restore(photo): not a single-image deblurring network")
    return net if device is None else net.to(device)
