"""Reading the original authors' PyTorch checkpoints (``from_official`` loaders).

Private helpers: load a ``torch.save`` file safely (``weights_only=True``), unwrap the
usual containers, and copy tensors into a pnpdeblur network under a key mapping with
strict name, shape and finiteness checks. Every failure is a
:class:`pnpdeblur.checkpoints.CheckpointError`.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Tuple, Union

import torch
from torch import nn

from ..checkpoints import CheckpointError

__all__ = ["load_official", "copy_mapped", "build_mapped", "kair_conv_stack", "describe_load_error"]


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
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {describe_load_error(e)}") from e
    meta: Dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in obj.items())
    return state, meta


def describe_load_error(e: Exception) -> str:
    """``torch.load``'s error in a line. Its safe reader's refusal goes on to advise
    ``weights_only=False``, which would run the file's code: keep only what it refused."""
    text = str(e).strip()
    if "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n\n")[0].split(". ")[0].strip()
        return (f"torch's safe reader (weights_only=True) refused it ({' '.join(detail.split())}); "
                "pnpdeblur never runs code from a checkpoint")
    return text.splitlines()[0] if text else type(e).__name__


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


def build_mapped(cls: Any, state: Mapping[str, torch.Tensor], mapping: Mapping[str, str], path, **config: Any):
    """``cls(**config)`` loaded with ``state`` under ``mapping`` (:func:`copy_mapped`), in eval mode;
    a configuration the constructor refuses is a :class:`CheckpointError` naming ``path``."""
    try:
        model = cls(**config)
    except ValueError as e:
        raise CheckpointError(f"{path}: the state dict implies an invalid {cls.__name__}: {e}") from e
    copy_mapped(model, state, mapping, path)
    return model.eval()


_KAIR_LAYER = re.compile(r"^model\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def kair_conv_stack(state: Mapping[str, torch.Tensor], path, bn_eps: float, name: str
                    ) -> "OrderedDict[str, torch.Tensor]":
    """The convolutions of a KAIR plain conv–ReLU stack (DnCNN, FFDNet) as ``body.{2k}.weight/bias``.

    KAIR stores it as an ``nn.Sequential`` called ``model``: a head conv–ReLU, conv–ReLU pairs, a
    tail conv, every conv with a bias (released files: indices 0, 2, 4, …); files from their
    training keep the batch norms (``act_mode='BR'``: conv at ``3k − 1``, its batch norm at ``3k``),
    merged here with the stored statistics and ``bn_eps``: ``w·γ/√(var+ε)``,
    ``(b − mean)·γ/√(var+ε) + β``. Anything else is a :class:`CheckpointError` naming ``path``.
    """
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or not 0 <= bn_eps < 1 \
            or not math.isfinite(bn_eps):
        raise ValueError(f"bn_eps must be a number in [0, 1), got {bn_eps!r}")
    layers: Dict[int, Dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = _KAIR_LAYER.match(key)
        if m is None:
            raise CheckpointError(f"{path}: unexpected key {key!r} for a KAIR {name} (an nn.Sequential 'model')")
        layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
    convs = sorted(i for i, d in layers.items() if isinstance(d.get("weight"), torch.Tensor) and d["weight"].ndim == 4)
    norms = {i for i, d in layers.items() if "running_var" in d}
    if len(convs) < 2 or convs[0] != 0:
        raise CheckpointError(f"{path}: not a KAIR {name} state dict (no 'model.0.weight' convolution; "
                              f"keys start {list(state)[:4]})")
    # head conv–ReLU, then conv–BN–ReLU triples (conv–ReLU pairs once merged), then the tail conv
    expected = [0] + [3 * k - 1 for k in range(1, len(convs))] if norms else [2 * k for k in range(len(convs))]
    expected_norms = {c + 1 for c in expected[1:-1]} if norms else set()
    if convs != expected or norms != expected_norms or set(layers) != set(convs) | norms:
        raise CheckpointError(f"{path}: layer indices {sorted(layers)} do not follow KAIR's {name} layout "
                              f"(convolutions at {expected}, batch norms at {sorted(expected_norms)})")
    merged: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, i in enumerate(convs):
        w, b = layers[i]["weight"], layers[i].get("bias")
        if not isinstance(b, torch.Tensor):
            raise CheckpointError(f"{path}: convolution 'model.{i}' has no bias (KAIR's {name} convolutions have)")
        if i + 1 in norms:
            bn = layers[i + 1]
            try:
                scale = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + bn_eps)
                w = w.double() * scale.reshape(-1, 1, 1, 1)
                b = (b.double() - bn["running_mean"].double()) * scale + bn["bias"].double()
            except (KeyError, RuntimeError) as e:
                raise CheckpointError(f"{path}: batch norm 'model.{i + 1}' does not fit convolution "
                                      f"'model.{i}': {e}") from e
        merged[f"body.{2 * k}.weight"], merged[f"body.{2 * k}.bias"] = w.float(), b.float()
    return merged
