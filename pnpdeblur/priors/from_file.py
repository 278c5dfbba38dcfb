"""A learned prior from a weights file, by kind: the authors' files or pnpdeblur checkpoints.

``prior_from_weights("drunet", "drunet_color.pth")`` and the like: one entry point for the
command line (``--prior KIND --prior-weights PATH``) and for benchmark scripts comparing priors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from .drunet import DRUNetPrior
from .learned import DenoiserPrior, DnCNNPrior, load_denoiser

__all__ = ["prior_from_weights", "parse_weights_spec", "WEIGHT_KINDS"]

#: Kinds :func:`prior_from_weights` reads, with the authors' files each takes.
WEIGHT_KINDS: Dict[str, str] = {
    "dncnn": "KAIR's dncnn_15/25/50.pth, dncnn_gray_blind.pth, dncnn_color_blind.pth",
    "drunet": "DPIR's drunet_color.pth, drunet_gray.pth",
    "ffdnet": "KAIR's ffdnet_gray.pth, ffdnet_color.pth",
    "ircnn": "KAIR's / DPIR's ircnn_gray.pth, ircnn_color.pth (banks of 25)",
}


def prior_from_weights(kind: str, path: Any, **options: Any) -> DenoiserPrior:
    """The prior of ``kind`` with the weights in ``path``.

    Parameters
    ----------
    kind : {"dncnn", "drunet", "ffdnet", "ircnn"}
        The network (:data:`WEIGHT_KINDS`).
    path : str or PathLike
        A pnpdeblur checkpoint (a name ending in ``.safetensors``) or the authors' ``torch.save``
        file (any other name; read by the class's ``from_official``, without running code).
    **options
        Passed to the prior: :class:`~pnpdeblur.priors.DnCNNPrior` for ``"dncnn"``,
        :class:`~pnpdeblur.priors.DRUNetPrior` for ``"drunet"``,
        :class:`~pnpdeblur.priors.DenoiserPrior` for the others (e.g. ``cycle=True``).

    Returns
    -------
    DenoiserPrior
        With the schedule :func:`~pnpdeblur.solvers.hqs` gives a user's network: DPIR's.

    Raises
    ------
    ValueError
        Unknown ``kind``.
    TypeError
        ``path`` not a str or PathLike (None too: it would give the shipped weights of the prior,
        not those of a file).
    pnpdeblur.checkpoints.CheckpointError
        A file that is missing, unreadable or of another network.
    """
    if path is None:
        raise TypeError("path must be a str or PathLike, got None (for the shipped weights use the prior itself, "
                        "e.g. DnCNNPrior() or DRUNetPrior())")
    if kind == "dncnn":
        return DnCNNPrior(path, **options)
    if kind == "drunet":
        return DRUNetPrior(path, **options)
    if kind == "ffdnet":
        from ..nets.ffdnet import FFDNet

        return DenoiserPrior(load_denoiser(FFDNet, path), **options)
    if kind == "ircnn":
        from ..nets.ircnn import IRCNNBank

        return DenoiserPrior(load_denoiser(IRCNNBank, path), **options)
    raise ValueError(f"kind must be one of {sorted(WEIGHT_KINDS)}, got {kind!r}")


def parse_weights_spec(spec: str) -> Tuple[str, Path]:
    """``"KIND:PATH"`` (e.g. ``"drunet:drunet_color.pth"``) → ``(kind, Path(path))``; the form of
    the benchmark scripts' ``--prior-file``. ValueError names the kinds when it is not that."""
    kind, _, path = str(spec).partition(":")
    if kind not in WEIGHT_KINDS or not path:
        raise ValueError(f"expected KIND:PATH with KIND one of {', '.join(WEIGHT_KINDS)}, got {spec!r}")
    return kind, Path(path)
