"""The HQS priors that ``deblur --prior`` (and ``--prior-weights``) choose from, built on use."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict

__all__ = ["PRIORS", "PRIOR_WEIGHTS", "_prior_dncnn", "_prior_tv", "_prior_drunet", "_prior_drunet_medium",
           "_prior_with_weights"]


def _prior_dncnn():
    from ..pipeline import default_prior

    return default_prior()  # the same DnCNN set-up as pd.deblur's default


def _prior_tv():
    from ..priors import TV

    return TV()


def _prior_drunet():
    from ..priors import DRUNetPrior

    return DRUNetPrior()


def _prior_drunet_medium():
    from ..priors import DRUNetPrior

    return DRUNetPrior(variant="medium")


#: ``--prior`` choices → factory of the HQS prior.
PRIORS: Dict[str, Callable[[], Any]] = {"dncnn": _prior_dncnn, "tv": _prior_tv, "drunet": _prior_drunet,
                                        "drunet-medium": _prior_drunet_medium}


def _prior_with_weights(kind: str) -> Callable[[Path], Any]:
    def make(path: Path):
        from ..priors import prior_from_weights

        # the DnCNN set up as pd.deblur's default (no flip ensemble)
        return prior_from_weights(kind, path, **({"ensemble": False} if kind == "dncnn" else {}))

    return make


#: ``--prior NAME --prior-weights PATH`` → factory of the prior with those weights (``ffdnet`` and
#: ``ircnn`` ship none: they need the authors' file).
PRIOR_WEIGHTS: Dict[str, Callable[[Path], Any]] = {k: _prior_with_weights(k) for k in ("dncnn", "drunet", "ffdnet",
                                                                                       "ircnn")}
