"""Save and load a full training state (``last.pt``) including every RNG.

The file is written with :func:`torch.save` and read back with
``torch.load(weights_only=True)``, so it may only hold tensors, numbers, strings,
``None`` and lists/tuples/dicts of those: the numpy and python RNG states are converted
to such plain values here.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch

__all__ = [
    "get_rng_state",
    "set_rng_state",
    "seed_everything",
    "derive_seed",
    "save_training_state",
    "load_training_state",
    "has_state",
]

FORMAT = "pnpdeblur-train-state"
VERSION = 1
PathLike = Union[str, os.PathLike]


def derive_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from a tuple of non-negative ints (e.g. seed, rank, epoch)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global RNG and python's ``random``."""
    seed = int(seed) % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """Every global RNG state as plain values.

    Parameters
    ----------
    device : torch.device, optional
        The CUDA device whose generator is saved (only when CUDA is initialised).

    Returns
    -------
    dict
        ``torch``: uint8 tensor; ``cuda``: uint8 tensor or None; ``numpy``: dict with
        ``keys`` (int64 tensor, 624), ``pos``, ``has_gauss``, ``cached_gaussian``;
        ``python``: dict with ``version``, ``internal`` (list of 625 ints), ``gauss_next``.
    """
    cuda = None
    if device is not None and device.type == "cuda" and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state(device)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    if name != "MT19937":  # pragma: no cover - numpy's legacy global RNG is always MT19937
        raise RuntimeError(f"unexpected numpy global RNG {name!r}")
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64).copy()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": [int(i) for i in internal], "gauss_next": gauss_next},
    }


def set_rng_state(state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_training_state(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` atomically (temporary file + rename: a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed save leaves neither half a file nor its temporary
        raise
    return path


def load_training_state(path: PathLike) -> Dict[str, Any]:
    """Read a state written by :func:`save_training_state` (``weights_only=True``, on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable training state (corrupt?): {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pnpdeblur training state")
    if state.get("version") != VERSION:
        raise ValueError(f"{path}: training-state version {state.get('version')} is not supported (want {VERSION})")
    return state


def has_state(obj: Any) -> bool:
    """Whether ``obj`` keeps a state a checkpoint must carry (``state_dict`` and ``load_state_dict``)."""
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))
