"""Checkpoints: safetensors weights with a JSON header naming architecture and config.

A pnpdeblur checkpoint is a ``.safetensors`` file whose metadata holds one entry,
``"pnpdeblur"``, a JSON object with at least ``"architecture"`` (a class name) and
``"config"`` (the constructor arguments). Loading checks both the architecture and the
tensor names/shapes; a wrong architecture, a foreign or corrupt file is an error.

Files written by :func:`save_checkpoint` also carry a SHA-256 of their tensors (names, dtypes,
shapes and bytes) in a second metadata entry, ``"pnpdeblur_sha256"``; loading recomputes it,
so damaged tensor data (a flipped bit that still decodes as a finite number) is an error too.
Files without the entry (written before it existed) load unchecked.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from ._checks import check_flag

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_header",
    "tensors_digest",
    "load_into",
    "build_from_checkpoint",
    "half_state",
    "halve_checkpoint",
    "CheckpointError",
]

_KEY = "pnpdeblur"
_DIGEST_KEY = "pnpdeblur_sha256"
PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, foreign or for another architecture."""


def save_checkpoint(
    path: PathLike,
    state: Union[torch.nn.Module, Mapping[str, torch.Tensor]],
    architecture: str,
    config: Mapping[str, Any],
    metadata: Optional[Mapping[str, Any]] = None,
    sidecar: bool = True,
) -> Path:
    """Write ``state`` (a module or a state dict) to ``path`` as safetensors.

    Parameters
    ----------
    path : str or PathLike
        Output file, conventionally ``*.safetensors``.
    state : torch.nn.Module or mapping of str to Tensor
    architecture : str
        Name checked at load time (e.g. ``"DnCNN"``).
    config : mapping
        JSON-serialisable constructor arguments.
    metadata : mapping, optional
        Extra JSON-serialisable information (training settings, metrics ...).
    sidecar : bool
        Also write the header as ``<stem>.json`` next to the weights for humans
        (``weights.safetensors`` → ``weights.json``).

    Returns
    -------
    pathlib.Path
    """
    from safetensors.torch import save_file

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = dict(metadata or {})
    reserved = sorted({"architecture", "config"} & set(metadata))
    if reserved:
        raise ValueError(f"metadata must not hold the reserved header keys {reserved}")
    header = {"architecture": str(architecture), "config": dict(config), **metadata}
    text = json.dumps(header, sort_keys=True)
    path = Path(path)
    sidecar = check_flag(sidecar, "sidecar")
    if sidecar and path.suffix == ".json":
        raise ValueError(f"path must not end in .json when sidecar=True (the header goes there), got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt", _KEY: text, _DIGEST_KEY: tensors_digest(tensors)})
    if sidecar:
        path.with_suffix(".json").write_text(json.dumps(header, indent=2, sort_keys=True) + "\n")
    return path


def tensors_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, in name order.

    The digest :func:`save_checkpoint` stores and :func:`load_checkpoint` checks; it depends on
    the values only (not on the device or the memory layout).
    """
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(json.dumps([k, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # hashed in place, no copy of the bytes
    return h.hexdigest()


def _read_metadata(path: Path) -> Dict[str, str]:
    """The safetensors metadata of ``path`` (raises :class:`CheckpointError`)."""
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt?): {e}") from e


def read_header(path: PathLike) -> Dict[str, Any]:
    """Return the pnpdeblur JSON header of a checkpoint (raises :class:`CheckpointError`)."""
    path = Path(path)
    return _parse_header(_read_metadata(path), path)


def _parse_header(meta: Mapping[str, str], path: Path) -> Dict[str, Any]:
    """The checked pnpdeblur header in a file's metadata ``meta``."""
    if _KEY not in meta:
        raise CheckpointError(f"{path} has no '{_KEY}' header: not a pnpdeblur checkpoint")
    try:
        header = json.loads(meta[_KEY])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} has a corrupt '{_KEY}' header: {e}") from e
    if not isinstance(header, dict) or "architecture" not in header or "config" not in header:
        raise CheckpointError(f"{path}: header must name 'architecture' and 'config', got {header!r}")
    return header


def load_checkpoint(
    path: PathLike, architecture: Optional[str] = None
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Read a checkpoint, checking its architecture.

    Parameters
    ----------
    path : str or PathLike
    architecture : str, optional
        Expected architecture name; a different one raises :class:`CheckpointError`.

    Returns
    -------
    state_dict : dict of str to Tensor
    header : dict
        ``architecture``, ``config`` and any extra metadata.

    Raises
    ------
    CheckpointError
        A missing, foreign or unreadable file, another architecture, or tensors that do not
        match the checksum saved with them.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = _read_metadata(path)
    header = _parse_header(meta, path)
    if architecture is not None and header["architecture"] != architecture:
        raise CheckpointError(
            f"{path} holds a {header['architecture']!r} checkpoint, expected {architecture!r}"
        )
    try:
        state = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: could not read the tensors (corrupt?): {e}") from e
    expected = meta.get(_DIGEST_KEY)
    if expected is not None and tensors_digest(state) != expected:
        raise CheckpointError(f"{path}: the tensors do not match the checksum saved with them "
                              "(the file is damaged; re-copy or re-export it)")
    return state, header


def load_into(model: torch.nn.Module, path: PathLike, architecture: Optional[str] = None) -> Dict[str, Any]:
    """Load a checkpoint into ``model`` strictly; returns the header.

    ``architecture`` defaults to ``type(model).__name__``. Missing, unexpected or
    mis-shaped tensors and NaN/Inf weights raise :class:`CheckpointError` (NaN/Inf before
    anything is loaded).
    """
    state, header = load_checkpoint(path, architecture or type(model).__name__)
    _check_finite(state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {e}") from e
    return header


def build_from_checkpoint(cls: type, path: PathLike, architecture: Optional[str] = None) -> torch.nn.Module:
    """Construct ``cls(**config)`` from a checkpoint's header and load its weights strictly.

    The model comes back in eval mode with the header as ``model.header``. A checkpoint of
    another architecture, a config ``cls`` rejects, missing/unexpected/mis-shaped tensors and
    NaN/Inf weights raise :class:`CheckpointError`.
    """
    arch = architecture or cls.__name__
    state, header = load_checkpoint(path, arch)
    try:
        model = cls(**header["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: config does not fit {arch}: {e}") from e
    _check_finite(state, path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit {arch}{header['config']}: {e}") from e
    model.eval()
    model.header = header
    return model


def _check_finite(state: Mapping[str, torch.Tensor], path: PathLike) -> None:
    """Raise :class:`CheckpointError` naming the first floating-point tensor with NaN or Inf."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: tensor {k!r} holds NaN or Inf")


def half_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A float16 CPU copy of a state dict, for shipping small weights (loading casts back).

    BatchNorm statistics (``running_mean``/``running_var``) and non-float tensors are kept as
    they are: a running variance can exceed float16's range (65504). A tensor that is not
    finite in float16 raises ``ValueError`` (export in float32 instead).
    """
    out = {}
    for k, v in state.items():
        keep = not v.is_floating_point() or k.endswith(("running_mean", "running_var"))
        out[k] = v.detach().cpu() if keep else v.detach().cpu().half()
        if out[k].is_floating_point() and not bool(torch.isfinite(out[k].float()).all()):
            raise ValueError(f"{k} is not finite in float16; export with --float32")
    return out


def halve_checkpoint(src: PathLike, dst: PathLike, architecture: str, extra: Mapping[str, Any]) -> Path:
    """Re-save the ``architecture`` checkpoint ``src`` as ``dst`` with :func:`half_state` weights.

    The header is kept, with ``extra`` added to its metadata. Returns ``dst``.
    """
    state, header = load_checkpoint(src, architecture)
    meta = {k: v for k, v in header.items() if k not in ("architecture", "config")}
    meta.update(extra)
    return save_checkpoint(dst, half_state(state), architecture, header["config"], meta)
