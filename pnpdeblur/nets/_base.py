"""What every pnpdeblur network shares: checkpoints and padding to the network's stride.

:class:`CheckpointMixin` gives a ``torch.nn.Module`` with a ``config`` dict (its
constructor arguments) the methods ``save``, ``from_checkpoint`` and ``pretrained``;
the architecture name written to and checked in the checkpoint header is the class
name. :func:`pad_to_multiple` / :func:`crop_to` let a network with down-sampling run on
any image size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..checkpoints import build_from_checkpoint, save_checkpoint

__all__ = ["CheckpointMixin", "WEIGHTS_DIR", "pad_to_multiple", "crop_to"]

#: Folder of the shipped weights (package data).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class CheckpointMixin:
    """``save`` / ``from_checkpoint`` / ``pretrained`` for a module with a ``config`` dict.

    Subclasses set :attr:`pretrained_file` (a file name in :data:`WEIGHTS_DIR`) when
    weights ship, and :attr:`training_command` (how to reproduce them) for the error
    message when they are missing.
    """

    config: Dict[str, Any]
    pretrained_file: ClassVar[Optional[str]] = None
    training_command: ClassVar[str] = ""

    def save(self, path, metadata: Optional[Dict[str, Any]] = None) -> Path:
        """Save weights and config as a pnpdeblur safetensors checkpoint (header names the class)."""
        return save_checkpoint(path, self, type(self).__name__, self.config, metadata)

    @classmethod
    def from_checkpoint(cls, path):
        """Build the network from a checkpoint's config, load its weights strictly, eval mode.

        A checkpoint of another architecture, a corrupt file or NaN/Inf weights raise
        :class:`pnpdeblur.checkpoints.CheckpointError`.
        """
        return build_from_checkpoint(cls, path, cls.__name__)

    @classmethod
    def pretrained_path(cls) -> Path:
        """Path of the shipped weights (raises ``FileNotFoundError`` when none ship)."""
        if cls.pretrained_file is None:
            raise FileNotFoundError(f"no weights ship for {cls.__name__}; train them or load your own "
                                    f"with {cls.__name__}.from_checkpoint(path)")
        path = WEIGHTS_DIR / cls.pretrained_file
        if not path.is_file():
            hint = f"; reproduce them with: {cls.training_command}" if cls.training_command else ""
            raise FileNotFoundError(f"shipped weights not found at {path}{hint}")
        return path

    @classmethod
    def pretrained(cls):
        """The shipped weights, in eval mode (see the model card in ``docs/model_cards``)."""
        return cls.from_checkpoint(cls.pretrained_path())


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Pad ``x`` ``(N, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple``.

    Returns the padded tensor and the original ``(H, W)`` for :func:`crop_to`.
    Reflection needs a pad smaller than the size; tiny images fall back to replication.
    """
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        if mode == "reflect" and not (ph < h and pw < w):
            mode = "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes of ``x`` to ``size = (H, W)`` (top-left corner)."""
    h, w = size
    return x[..., :h, :w]
