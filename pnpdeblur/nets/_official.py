"""Reading the original authors' PyTorch checkpoints (``from_official`` loaders).

Private helpers: load a ``torch.save`` file safely (``weights_only=True``), unwrap the
usual containers, and copy tensors into a pnpdeblur network under a key mapping with
strict name, shape and finiteness checks. Every failure is a
:class:`pnpdeblur.checkpoints.CheckpointError`.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import torch
from torch import nn

from ..checkpoints import CheckpointError

__all__ = ["load_official", "copy_mapped"]


def load_official(path: Union[str, Path]) -> Tuple["OrderedDict[str, torch.Tensor]", Dict[str, Any]]:
    """Read a torch checkpoint: a plain state dict, or a dict holding one under ``'state_dict'``.

    Returns the state dict (``module.`` prefixes of DataParallel stripped) and the other
    entries of the outer dict (e.g. ``'arch'``, ``'div_flow'``; empty for a plain state dict).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of many kinds
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {e}") from e
    meta: Dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in obj.items())
    return state, meta


def copy_mapped(model: nn.Module, state: Mapping[str, torch.Tensor], mapping: Mapping[str, str], path) -> None:
    """Load ``state[official]`` into ``model[ours]`` for every ``official → ours`` pair of ``mapping``.

    ``mapping`` must cover every tensor of ``model.state_dict()`` and ``state`` must hold
    exactly the keys of ``mapping``; shapes must agree and values be finite.
    """
    name = type(model).__name__
    ours = model.state_dict()
    uncovered = sorted(set(ours) - set(mapping.values()))
    if uncovered:  # a bug in the mapping, not in the file
        raise RuntimeError(f"key mapping for {name} misses {uncovered[:5]}")
    unknown = sorted(set(mapping.values()) - set(ours))
    if unknown:  # likewise: the mapping names tensors the model does not have
        raise RuntimeError(f"key mapping for {name} names tensors {name} does not have: {unknown[:5]}")
    missing = sorted(k for k in mapping if k not in state)
    extra = sorted(k for k in state if k not in mapping)
    if missing or extra:
        raise CheckpointError(f"{path} does not fit {name}{getattr(model, 'config', '')}: "
                              f"missing {missing[:5]}, unexpected {extra[:5]}")
    new = {}
    for off, mine in mapping.items():
        t = state[off]
        if tuple(t.shape) != tuple(ours[mine].shape):
            raise CheckpointError(f"{path}: {off!r} has shape {tuple(t.shape)}, "
                                  f"{name}.{mine} expects {tuple(ours[mine].shape)}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {off!r} holds NaN or Inf")
        new[mine] = t.to(ours[mine].dtype)
    model.load_state_dict(new, strict=True)
