"""DRUNet (Zhang et al.'s DPIR denoiser) as a plug-and-play prior."""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional

import torch

from .._checks import check_flag, check_real
from .learned import DenoiserPrior, load_denoiser

__all__ = ["DRUNetPrior", "SHIPPED_HQS_LAMBDA", "SHIPPED_HQS_SIGMA_START"]

# HQS's schedule with the shipped DRUNet weights (small and medium), tuned on six BSDS500 *val*
# crops with the true flow (|m| ≤ 23, σ = 0.01 and |m| ≤ 46, σ = 0.03; benchmarks/hqs_lambda.py,
# benchmarks/RESULTS.md "HQS's schedule per prior"). DPIR's λ = 0.23 and σ_1 = 49/255 were
# tuned for DPIR's much larger network.
#: λ: 0.18 beat 0.23 by 0.10–0.24 dB for both sizes; 0.15 was no better and 0.12 lost up to 1.5 dB.
SHIPPED_HQS_LAMBDA = 0.18
#: σ_1: from 49/255, a larger first strength gained up to 100/255 and was flat beyond (to 160/255).
SHIPPED_HQS_SIGMA_START = 100.0 / 255.0


class DRUNetPrior(DenoiserPrior):
    """A colour :class:`~pnpdeblur.nets.drunet.DRUNet` (shipped small weights by default) as a prior.

    Parameters
    ----------
    net : DRUNet, str or PathLike, optional
        A network; a file: a pnpdeblur DRUNet checkpoint (``.safetensors``) or, under any other
        name, a DRUNet saved by the authors' DPIR / KAIR code (``drunet_color.pth``, read by
        :meth:`DRUNet.from_official`); or ``None`` for the shipped weights
        (:meth:`DRUNet.pretrained`, see ``docs/model_cards/drunet_small.md``).
    variant : {"small", "medium"}
        Which shipped weights ``net=None`` loads: ``"small"`` (default, fastest) or
        ``"medium"`` (0.2–0.4 dB better inside HQS, about 1.5–2× the solve time at 256²;
        ``docs/model_cards/drunet_medium.md``). Only with ``net=None``.
    ensemble : bool
        Average over the four flips at every call (default off: on costs 4× the time, and
        ``cycle`` gains as much inside a solver for nothing).
    cycle : bool
        Geometric cycling inside a solver (default on): iteration ``k`` denoises the image
        turned by the ``k mod 8``-th rotation/flip (:class:`DenoiserPrior`). In HQS with the
        true flow it gained what the 4× flip ensemble gains, at no cost
        (``benchmarks/RESULTS.md``, "DRUNet prior"). Turned off when ``ensemble`` is on.
    clamp : bool
        Clip the output to [0, 1].
    device : 'follow', str or torch.device
        As for :class:`DenoiserPrior` (default: the network runs on each input's device).
    tile, tile_overlap : int, optional
        Denoise large images in overlapping tiles to bound memory (:class:`DenoiserPrior`;
        default: whole images). The U-Net sees far beyond any practical overlap, so tiles
        change the result slightly; use a tile of 512 or more and an overlap of 64 or more.
    hqs_lam, hqs_sigma_start : float, optional
        The λ and first strength σ_1 of the schedule that :func:`~pnpdeblur.solvers.hqs` uses with
        this prior when it is given none (``β_k = λσ²/σ_k²``, σ_k falling from σ_1 to the noise
        level; :func:`~pnpdeblur.solvers.schedules.prior_schedule`). Default: for the shipped
        weights :data:`SHIPPED_HQS_LAMBDA` (0.18) and :data:`SHIPPED_HQS_SIGMA_START` (100/255),
        tuned on BSDS500 *val*; for a network or checkpoint of yours ``None`` (DPIR's 0.23 and
        49/255). Stored as attributes of the same names.

    Notes
    -----
    The noise level goes to the network as a constant map (``sigma`` on the [0, 1] scale,
    the weights were trained for ``sigma`` ≤ 50/255; HQS asks for larger values in its
    first iterations, where the network extrapolates).

    Grey images (one channel) with a colour network are replicated to three channels,
    denoised at ``sigma·√3`` and averaged back. Replicated noise is the same in the three
    channels: all of it lies in the luminance direction ``(1, 1, 1)/√3``, with std
    ``σ√3`` there (and none in the chroma directions), whereas the network was trained on
    independent channel noise of std σ in every direction; the larger map matches the
    luminance noise (measured on grey astronaut/camera 128² at σ = 0.05 / 0.1: +0.3–1.1 /
    +1.2–2.2 dB over feeding σ). The average removes the small chroma the network adds.
    A grey network denoises each channel of a colour image as a grey image (in the opponent
    colour space for RGB, as :class:`~pnpdeblur.priors.DenoiserPrior` does). Other channel
    counts with a colour network raise ``ValueError``.
    """

    def __init__(self, net: Any = None, ensemble: bool = False, clamp: bool = False, device: Any = "follow",
                 tile: Optional[int] = None, tile_overlap: int = 64, cycle: bool = True, variant: str = "small",
                 hqs_lam: Optional[float] = None, hqs_sigma_start: Optional[float] = None):
        from ..nets.drunet import PRETRAINED_VARIANTS, DRUNet

        if variant not in PRETRAINED_VARIANTS:
            raise ValueError(f"variant must be one of {sorted(PRETRAINED_VARIANTS)}, got {variant!r}")
        if net is not None and variant != "small":
            raise ValueError(f"variant={variant!r} picks shipped weights: give it with net=None, not with net")
        schedule = {}
        for name, value, shipped in (("hqs_lam", hqs_lam, SHIPPED_HQS_LAMBDA),
                                     ("hqs_sigma_start", hqs_sigma_start, SHIPPED_HQS_SIGMA_START)):
            # the tuned values belong to the shipped weights; a user's net starts from DPIR's
            schedule[name] = (check_real(value, name, allow_zero=False) if value is not None
                              else shipped if net is None else None)
        if net is None:
            net = DRUNet.pretrained(variant)
        elif isinstance(net, (str, os.PathLike)):
            net = load_denoiser(DRUNet, net, "net")
        elif not isinstance(net, DRUNet):
            raise TypeError(f"net must be a DRUNet, a checkpoint path or None, got {type(net).__name__}")
        cycle = check_flag(cycle, "cycle")
        super().__init__(net, clamp=clamp, ensemble=ensemble, device=device, tile=tile, tile_overlap=tile_overlap,
                         cycle=cycle and not ensemble)
        self.hqs_lam, self.hqs_sigma_start = schedule["hqs_lam"], schedule["hqs_sigma_start"]

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        c = z.shape[1]
        if self.channels == 3 and c not in (1, 3):
            raise ValueError(f"z must have 3 channels (or 1) for this colour DRUNet, got {c}")
        # a grey image goes through the colour network replicated, with σ√3 (DenoiserPrior); a grey
        # network denoises colour images plane by plane (DenoiserPrior folds them)
        return super()._denoise(z, sigma, context)

    def __repr__(self) -> str:
        where = "follow" if self.device is None else str(self.device)
        return (f"DRUNetPrior(channels={self.channels}, ensemble={self.ensemble}, cycle={self.cycle}, "
                f"hqs_lam={self.hqs_lam!r}, hqs_sigma_start={self.hqs_sigma_start!r}, device={where!r})")
