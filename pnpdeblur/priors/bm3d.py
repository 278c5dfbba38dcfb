"""BM3D (Dabov et al.) as a prior, through the optional ``bm3d`` package.

Install with ``pip install 'pnpdeblur[bm3d]'``. The ``bm3d`` package is distributed
under its authors' own licence (free for non-commercial use only); pnpdeblur does not
ship it.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch

from .base import BasePrior, refuse_grad

__all__ = ["BM3D", "bm3d_available"]

_MISSING = (
    "the BM3D prior needs the optional 'bm3d' package, which is not installed: "
    "pip install 'pnpdeblur[bm3d]' (or pip install bm3d). Note that bm3d is free for "
    "non-commercial use only; check its licence before using it."
)


def bm3d_available() -> bool:
    """True when the optional ``bm3d`` package imports."""
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


class BM3D(BasePrior):
    """BM3D denoiser at noise std ``sigma`` (colour images use ``bm3d_rgb``).

    Attributes
    ----------
    hqs_sigma_start : float
        The first strength σ_1 of :func:`~pnpdeblur.solvers.hqs`'s default schedule with BM3D:
        100/255, which beat DPIR's 49/255 by 0.16–0.17 dB on BSDS500 *val* crops (true flow;
        ``benchmarks/hqs_lambda.py``, ``benchmarks/RESULTS.md``, "DRUNet prior"). λ stays DPIR's
        0.23, which BM3D preferred to 0.18. Set it to ``None`` for DPIR's schedule.

    Raises
    ------
    ImportError
        At construction, with installation instructions, when ``bm3d`` is missing.
    ValueError
        When called (``sigma > 0``) on a torch ``z`` that requires grad while grad mode is on: BM3D
        runs on numpy arrays, so its result could carry no gradient.
    """

    hqs_sigma_start = 100.0 / 255.0

    def __init__(self, **kwargs: Any):
        try:
            import bm3d
        except ImportError as e:
            raise ImportError(_MISSING) from e
        self._bm3d = bm3d
        self.kwargs = kwargs

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        refuse_grad(z, "BM3D", "the bm3d package")  # the numpy round trip would cut the graph silently
        arr = z.detach().cpu().to(torch.float64).numpy()
        out = np.empty_like(arr)
        for i, im in enumerate(arr):
            if im.shape[0] == 3:
                res = self._bm3d.bm3d_rgb(np.moveaxis(im, 0, -1), sigma, **self.kwargs)
                out[i] = np.moveaxis(res, -1, 0)
            else:
                for c in range(im.shape[0]):
                    out[i, c] = self._bm3d.bm3d(im[c], sigma_psd=sigma, **self.kwargs)
        return torch.from_numpy(out).to(dtype=z.dtype, device=z.device)
