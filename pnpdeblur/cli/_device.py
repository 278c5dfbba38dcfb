"""The ``--device`` option of ``deblur`` and ``finetune``, checked before any work."""
from __future__ import annotations

from typing import Optional

__all__ = ["_resolve_device"]


def _resolve_device(spec: Optional[str], distributed: bool) -> Optional[str]:
    if spec is None:
        return None
    import torch

    if distributed and spec == "cuda":
        from ..train.distributed import local_rank

        spec = f"cuda:{local_rank()}"  # one GPU per process
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--device {spec!r} is not a torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec!r}: CUDA is not available")
    return str(dev)
