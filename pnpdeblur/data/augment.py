"""Paired augmentation: one random crop, flip, rotation and colour change for every image of a sample.

:class:`PairAugment` transforms the blurred and sharp images of a training sample alike, and their
flows consistently (Nah et al.'s DeepDeblur augmentations, plus lossless 90° rotations).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from .._checks import check_flag
from .flows import canonicalize_flow

__all__ = ["PairAugment"]


def _rgb_to_hsv_sat_scale(img: np.ndarray, factor: float) -> np.ndarray:
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(img.astype(np.float64))
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0.0, 1.0)
    return hsv2rgb(hsv).astype(np.float32)


class PairAugment:
    """Random crop, flips, 90° rotations and Nah et al.'s colour/noise augmentations.

    The same geometric and colour transform is applied to every image of a sample (blurred,
    sharp, sharp frames), flows are transformed consistently (flips negate a component,
    rotations rotate the vectors; blur labels are then re-canonicalised), and noise is added
    to the blurred image only.

    Parameters
    ----------
    crop : int or (int, int), optional
        Random crop size ``(H, W)``; images smaller than it raise ``ValueError``.
    hflip, vflip : bool
        Random horizontal / vertical flips (probability 1/2 each).
    rot90 : bool
        Random rotation by a multiple of 90° (the lossless version of Nah et al.'s
        "rotated at random degrees").
    permute_channels : bool
        Random permutation of the RGB channels (Nah et al.).
    saturation : (float, float), optional
        Multiply HSV saturation by a factor drawn uniformly from this range
        (Nah et al.: (0.5, 1.5)).
    noise_sigma : float, optional
        Nah et al.'s noise: the standard deviation is ``|s|`` with ``s ~ N(0, noise_sigma²)``
        (they use 2/255), drawn per sample; Gaussian noise of that std is added to the
        blurred image, then values are clipped to [0, 1].
    canonical_flow : bool
        Re-canonicalise flows (``u >= 0``) after flips/rotations (True for blur labels;
        set False for optical flows between frames).
    """

    def __init__(self, crop: int | tuple[int, int] | None = None, hflip: bool = True, vflip: bool = False,
                 rot90: bool = False, permute_channels: bool = False,
                 saturation: tuple[float, float] | None = None, noise_sigma: float | None = None,
                 canonical_flow: bool = True):
        if crop is not None:
            given = crop  # the message shows what the caller passed, not the expanded pair
            if isinstance(crop, numbers.Integral) and not isinstance(crop, bool):
                crop = (crop, crop)
            try:
                crop = tuple(crop)
            except TypeError:
                crop = ()
            if len(crop) != 2 or not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in crop) \
                    or min(crop) < 1:
                raise ValueError(f"crop must be a positive int or (H, W), got {given!r}")
            crop = (int(crop[0]), int(crop[1]))
        if saturation is not None and (len(saturation) != 2 or not 0 <= saturation[0] <= saturation[1] < math.inf):
            raise ValueError(f"saturation must be a finite range (lo, hi) with 0 <= lo <= hi, got {saturation!r}")
        if noise_sigma is not None and (isinstance(noise_sigma, bool) or not (
                isinstance(noise_sigma, numbers.Real) and 0 <= noise_sigma < math.inf)):
            raise ValueError(f"noise_sigma must be a finite non-negative float, got {noise_sigma!r}")
        hflip, vflip, rot90 = check_flag(hflip, "hflip"), check_flag(vflip, "vflip"), check_flag(rot90, "rot90")
        permute_channels = check_flag(permute_channels, "permute_channels")
        self.crop, self.hflip, self.vflip, self.rot90 = crop, hflip, vflip, rot90
        self.permute_channels, self.saturation, self.noise_sigma = permute_channels, saturation, noise_sigma
        self.canonical_flow = check_flag(canonical_flow, "canonical_flow")

    @classmethod
    def nah(cls, crop: int | tuple[int, int] | None = 256) -> "PairAugment":
        """The augmentation set of Nah et al. (DeepDeblur) on ``crop`` patches."""
        return cls(crop=crop, hflip=True, vflip=True, rot90=True, permute_channels=True,
                   saturation=(0.5, 1.5), noise_sigma=2.0 / 255.0)

    def __repr__(self) -> str:
        return (f"PairAugment(crop={self.crop}, hflip={self.hflip}, vflip={self.vflip}, rot90={self.rot90}, "
                f"permute_channels={self.permute_channels}, saturation={self.saturation}, "
                f"noise_sigma={self.noise_sigma})")

    def __call__(self, images: dict[str, np.ndarray], rng: np.random.Generator,
                 flows: dict[str, np.ndarray] | None = None, noisy: Sequence[str] = ("blurred",)):
        """Transform ``images`` (name -> ``(H, W, C)`` or ``(K, H, W, C)``) and ``flows``
        (name -> ``(2, H, W)``) in place of copies; returns ``(images, flows)``."""
        flows = dict(flows or {})
        images = dict(images)
        for k, v in images.items():
            # the result is cast to float32 unscaled: a uint8 image would come out on 0..255
            if np.asarray(v).dtype.kind != "f":
                raise TypeError(f"images[{k!r}] must be a float array on the [0, 1] scale, got dtype "
                                f"{np.asarray(v).dtype} (read files with read_image)")
        shapes = {k: v.shape[-3:-1] for k, v in images.items()}
        shapes.update({k: v.shape[-2:] for k, v in flows.items()})
        if len(set(shapes.values())) > 1:
            raise ValueError(f"images of one sample have different sizes: {shapes}")
        h, w = next(iter(shapes.values()))
        if self.crop is not None:
            ch, cw = self.crop
            if ch > h or cw > w:
                raise ValueError(f"crop {self.crop} is larger than the image size {(h, w)}")
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            images = {k: v[..., y0:y0 + ch, x0:x0 + cw, :] for k, v in images.items()}
            flows = {k: v[:, y0:y0 + ch, x0:x0 + cw] for k, v in flows.items()}
        if self.hflip and rng.random() < 0.5:
            images = {k: v[..., :, ::-1, :] for k, v in images.items()}
            flows = {k: np.stack([-v[0, :, ::-1], v[1, :, ::-1]]) for k, v in flows.items()}
        if self.vflip and rng.random() < 0.5:
            images = {k: v[..., ::-1, :, :] for k, v in images.items()}
            flows = {k: np.stack([v[0, ::-1, :], -v[1, ::-1, :]]) for k, v in flows.items()}
        if self.rot90:
            k90 = int(rng.integers(0, 4))
            for _ in range(k90):  # 90° counter-clockwise on screen: (x, y) -> (y, W-1-x)
                images = {k: np.rot90(v, 1, axes=(-3, -2)) for k, v in images.items()}
                flows = {k: np.stack([np.rot90(v[1], 1), -np.rot90(v[0], 1)]) for k, v in flows.items()}
        if self.permute_channels:
            c = next(iter(images.values())).shape[-1]
            perm = rng.permutation(c)
            images = {k: v[..., perm] for k, v in images.items()}
        if self.saturation is not None:
            f = float(rng.uniform(*self.saturation))
            images = {k: (_rgb_to_hsv_sat_scale(v, f) if v.shape[-1] == 3 else v) for k, v in images.items()}
        if self.noise_sigma:
            s = abs(float(rng.normal(0.0, self.noise_sigma)))
            for k in noisy:
                if k in images:
                    v = images[k]
                    images[k] = np.clip(v + s * rng.standard_normal(v.shape).astype(np.float32), 0.0, 1.0)
        if self.canonical_flow:
            flows = {k: canonicalize_flow(np.asarray(v)) for k, v in flows.items()}
        images = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in images.items()}
        flows = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flows.items()}
        return images, flows
