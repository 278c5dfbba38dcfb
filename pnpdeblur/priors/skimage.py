"""scikit-image denoisers as priors: drop any of them into HQS/ADMM.

Each wrapper maps the prior strength ``sigma`` (noise std on the [0, 1] scale) to the
denoiser's own parameter, runs it on every image of the batch as an ``(H, W, C)``
float64 numpy array (``channel_axis=-1``), and returns the caller's type and dtype.

They are not differentiable (numpy has no autograd): a torch ``z`` that requires grad, in
grad mode, is refused with a ``ValueError`` rather than answered with a result that silently
cuts the gradient (``hqs``/``admm`` with ``differentiable=True`` would return gradients that
skip every prior step). Detach ``z``, call under ``torch.no_grad()``, or pick a differentiable
prior (:class:`~pnpdeblur.priors.TV`, :class:`~pnpdeblur.priors.Tikhonov`, a learned prior).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from .._checks import check_flag, check_real
from .base import BasePrior, refuse_grad

__all__ = ["SkimageDenoiser", "SkimageTV", "Wavelet", "NLMeans", "Bilateral"]


class SkimageDenoiser(BasePrior):
    """Wrap a scikit-image style denoiser ``func(image, **kwargs)``.

    Parameters
    ----------
    func : callable
        ``func(image, **kwargs) -> image`` with ``image`` of shape ``(H, W)`` or
        ``(H, W, C)`` (then ``channel_axis=-1`` is passed).
    sigma_kwargs : callable
        Maps ``sigma`` (float > 0) to keyword arguments of ``func``, e.g.
        ``lambda s: {"weight": s}``.
    nonnegative : bool
        Shift each image to be ≥ 0 before calling ``func`` and back afterwards (for
        denoisers that reject negative values).
    **kwargs
        Fixed keyword arguments of ``func``.

    Raises
    ------
    ValueError
        When called (``sigma > 0``) on a torch ``z`` that requires grad while grad mode is on:
        the result could carry no gradient (see the module docstring).
    """

    def __init__(
        self,
        func: Callable[..., np.ndarray],
        sigma_kwargs: Callable[[float], Dict[str, Any]],
        nonnegative: bool = False,
        **kwargs: Any,
    ):
        if not callable(func) or not callable(sigma_kwargs):
            raise TypeError("func and sigma_kwargs must be callable")
        self.func = func
        self.sigma_kwargs = sigma_kwargs
        self.nonnegative = check_flag(nonnegative, "nonnegative")
        self.kwargs = kwargs

    def _denoise(self, z: torch.Tensor, sigma: float, context: Optional[Dict[str, Any]]) -> torch.Tensor:
        refuse_grad(z, type(self).__name__, "scikit-image")  # the numpy round trip would cut the graph silently
        arr = z.detach().cpu().to(torch.float64).numpy()
        out = np.empty_like(arr)
        kw = dict(self.kwargs)
        kw.update(self.sigma_kwargs(sigma))
        for i, im in enumerate(arr):
            img = np.ascontiguousarray(np.moveaxis(im, 0, -1))  # (H, W, C)
            shift = 0.0
            if self.nonnegative:
                shift = min(0.0, float(img.min()))
                img = img - shift
            if img.shape[-1] == 1:
                res = np.asarray(self.func(img[..., 0], **kw))[..., None]
            else:
                res = np.asarray(self.func(img, channel_axis=-1, **kw))
            out[i] = np.moveaxis(res + shift, -1, 0)
        return torch.from_numpy(out).to(dtype=z.dtype, device=z.device)

    def __repr__(self) -> str:
        name = getattr(self.func, "__name__", repr(self.func))
        return f"{type(self).__name__}({name}, {self.kwargs})"


class SkimageTV(SkimageDenoiser):
    """``skimage.restoration.denoise_tv_chambolle`` with ``weight = scale · sigma``."""

    def __init__(self, scale: float = 1.0, **kwargs: Any):
        from skimage.restoration import denoise_tv_chambolle

        self.scale = check_real(scale, "scale")
        super().__init__(denoise_tv_chambolle, lambda s: {"weight": self.scale * s}, **kwargs)


class Wavelet(SkimageDenoiser):
    """``skimage.restoration.denoise_wavelet`` (BayesShrink, soft) at noise ``sigma``."""

    def __init__(self, method: str = "BayesShrink", mode: str = "soft", **kwargs: Any):
        from skimage.restoration import denoise_wavelet

        try:
            import pywt  # noqa: F401
        except ImportError as e:
            raise ImportError(
                "the Wavelet prior needs PyWavelets (scikit-image's optional dependency): "
                "pip install 'pnpdeblur[wavelet]' (or pip install PyWavelets)"
            ) from e
        kwargs.setdefault("rescale_sigma", True)
        super().__init__(denoise_wavelet, lambda s: {"sigma": s}, method=method, mode=mode, **kwargs)


class NLMeans(SkimageDenoiser):
    """``skimage.restoration.denoise_nl_means`` with ``h = h_scale · sigma``."""

    def __init__(self, h_scale: float = 0.8, patch_size: int = 5, patch_distance: int = 6, **kwargs: Any):
        from skimage.restoration import denoise_nl_means

        self.h_scale = check_real(h_scale, "h_scale")
        kwargs.setdefault("fast_mode", True)
        super().__init__(
            denoise_nl_means,
            lambda s: {"h": self.h_scale * s, "sigma": s},
            patch_size=patch_size,
            patch_distance=patch_distance,
            **kwargs,
        )


class Bilateral(SkimageDenoiser):
    """``skimage.restoration.denoise_bilateral`` with ``sigma_color = color_scale · sigma``."""

    def __init__(self, color_scale: float = 1.0, sigma_spatial: float = 1.5, **kwargs: Any):
        from skimage.restoration import denoise_bilateral

        self.color_scale = check_real(color_scale, "color_scale")
        sigma_spatial = check_real(sigma_spatial, "sigma_spatial", allow_zero=False)
        super().__init__(
            denoise_bilateral,
            lambda s: {"sigma_color": self.color_scale * s},
            nonnegative=True,
            sigma_spatial=sigma_spatial,
            **kwargs,
        )
