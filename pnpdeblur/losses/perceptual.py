"""Perceptual content losses: VGG16 features from a user's weights file, and an offline substitute.

Wu et al.'s RP-GAN content loss is Johnson et al.'s perceptual loss at VGG16's ``relu2_2``::

    L_c = 1/(C·H·W) Σ_{c,i,j} (φ(G(I*|O)) − φ(I_s))²_{c,i,j}

(the paper prints the difference without its square; Johnson et al.'s loss, which it cites,
squares it). VGG16 weights cannot be downloaded by this library, so :class:`PerceptualLoss`
reads them from a file the user provides (conversion below), and the shipped training uses
:class:`LaplacianPyramidLoss`, a fixed multi-scale edge loss needing no weights.

Converting torchvision's VGG16 (on a machine with torchvision and network)::

    import torchvision
    from safetensors.torch import save_file
    sd = torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()
    save_file({k: v.contiguous() for k, v in sd.items() if k.startswith("features.")},
              "vgg16_features.safetensors")

i.e. keep the keys ``features.<i>.weight`` / ``features.<i>.bias`` (``i`` = 0, 2, 5, 7, 10,
12, 14, 17, 19, 21, 24, 26, 28: the 13 convolutions of ``vgg16().features``) unchanged.
A whole torchvision state dict (``.pth``, read with ``torch.load(weights_only=True)``) or a
safetensors file of it also loads: ``classifier.*`` keys and convolutions deeper than the
requested layers are ignored. Images are normalised with ImageNet's mean/std inside, as
torchvision's weights expect (inputs in [0, 1], RGB).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_finite

__all__ = ["VGG16_LAYERS", "VGG16Features", "PerceptualLoss", "LaplacianPyramidLoss", "laplacian_pyramid"]

# torchvision's vgg16().features, by index: 'C' conv 3×3 (out channels), 'R' ReLU, 'M' max-pool.
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _layer_names() -> Dict[str, int]:
    names, idx, block, n = {}, 0, 1, 1
    for v in _VGG16_CFG:
        if v == "M":
            names[f"pool{block}"] = idx
            idx, block, n = idx + 1, block + 1, 1
        else:
            names[f"conv{block}_{n}"] = idx
            names[f"relu{block}_{n}"] = idx + 1
            idx, n = idx + 2, n + 1
    return names


#: Layer name → index in torchvision's ``vgg16().features`` (``relu2_2`` → 8).
VGG16_LAYERS: Dict[str, int] = _layer_names()

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _read_state(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """The state dict in a weights file; a corrupt or foreign file is a ``CheckpointError`` (a ValueError)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"weights must be a file path (str or PathLike) or a state dict, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights file not found: {path} (see pnpdeblur.losses.perceptual "
                                "for how to convert torchvision's vgg16 state dict)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and safetensors errors of many kinds
        from ..checkpoints import CheckpointError
        from ..nets._official import describe_load_error

        raise CheckpointError(f"VGG16 weights {path} are not a readable weights file: {describe_load_error(e)}") from e
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return dict(state)


class VGG16Features(nn.Module):
    """The convolutional part of VGG16 up to the deepest requested layer, frozen.

    Parameters
    ----------
    weights : str, PathLike or mapping
        A file (``.safetensors``, or a ``torch.save``'d state dict) or a state dict with
        torchvision's keys ``features.<i>.weight|bias`` (module docstring).
    layers : sequence of str
        Layer names: ``relu1_1 … relu5_3``, ``conv…``, ``pool1 … pool5`` (:data:`VGG16_LAYERS`).
    normalize : bool
        Map inputs in [0, 1] to ImageNet's normalisation first (torchvision's convention).

    Notes
    -----
    ``forward(x)``, ``x`` ``(N, 3, H, W)`` (or ``(N, 1, H, W)``, replicated to RGB), returns a
    list of the requested feature maps in the order of ``layers``. The parameters never
    require grad; the module stays in eval mode. Keys are checked: a missing or mis-shaped
    convolution raises ``ValueError`` naming it; a file that cannot be read, a
    :class:`~pnpdeblur.checkpoints.CheckpointError` (a ``ValueError``).
    """

    def __init__(self, weights: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                 layers: Sequence[str] = ("relu2_2",), normalize: bool = True):
        super().__init__()
        if isinstance(layers, str) or not layers:
            raise ValueError(f"layers must be a non-empty sequence of VGG16 layer names, got {layers!r}")
        bad = [name for name in layers if name not in VGG16_LAYERS]
        if bad:
            raise ValueError(f"unknown VGG16 layers {bad}; known: {sorted(VGG16_LAYERS, key=VGG16_LAYERS.get)}")
        self.layers = list(layers)
        self._idx = [VGG16_LAYERS[n] for n in self.layers]
        depth = max(self._idx) + 1
        mods: List[nn.Module] = []
        cin = 3
        for v in _VGG16_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*mods[:depth])  # keys 'features.<i>.*' as in torchvision
        self.normalize = bool(normalize)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        state = weights if isinstance(weights, Mapping) else _read_state(weights)
        own = self.features.state_dict()
        wanted = {}
        for k, ref in own.items():
            key = f"features.{k}"
            if key not in state:
                raise ValueError(f"VGG16 weights lack {key!r} (needed for layer "
                                 f"{max(self.layers, key=VGG16_LAYERS.get)})")
            t = state[key]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(ref.shape):
                raise ValueError(f"VGG16 weight {key!r} must have shape {tuple(ref.shape)}, "
                                 f"got {tuple(getattr(t, 'shape', ()))}")
            if not bool(torch.isfinite(t.float()).all()):
                raise ValueError(f"VGG16 weight {key!r} holds NaN or Inf")
            wanted[k] = t.float()
        self.features.load_state_dict(wanted)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGG16Features":
        return super().train(False)  # a fixed feature extractor: never in training mode

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"x must be a (N, 3, H, W) or (N, 1, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.normalize:
            x = (x - self.mean.to(x)) / self.std.to(x)
        out, want = {}, set(self._idx)
        for i, m in enumerate(self.features):
            x = m(x)
            if i in want:
                out[i] = x
        return [out[i] for i in self._idx]


class PerceptualLoss(nn.Module):
    """Johnson et al.'s feature reconstruction loss on VGG16 (Wu et al.'s content loss L_c).

    ``L = Σ_l w_l · 1/(C_l H_l W_l) Σ (φ_l(x) − φ_l(target))²``, averaged over the batch.

    Parameters
    ----------
    weights : str, PathLike or mapping
        VGG16 weights (see the module docstring for the file and the conversion).
    layers : sequence of str
        Feature layers (paper: ``("relu2_2",)``).
    layer_weights : sequence of float, optional
        ``w_l`` (default 1 each).

    Notes
    -----
    ``forward(x, target)``: ``(N, C, H, W)`` tensors of the same shape, C ∈ {1, 3}, values in
    [0, 1]; returns a scalar. Gradients reach ``x`` (and ``target``), never the VGG weights.
    """

    def __init__(self, weights: Union[str, os.PathLike, Mapping[str, torch.Tensor]],
                 layers: Sequence[str] = ("relu2_2",), layer_weights: Optional[Sequence[float]] = None):
        super().__init__()
        self.vgg = VGG16Features(weights, layers)
        lw = [1.0] * len(self.vgg.layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(lw) != len(self.vgg.layers) or any(not (w >= 0) or w == float("inf") for w in lw):
            raise ValueError(f"layer_weights must be {len(self.vgg.layers)} finite non-negative numbers, "
                             f"got {layer_weights!r}")
        self.layer_weights = lw

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(x, target)
        fx, ft = self.vgg(x), self.vgg(target)
        return sum(w * F.mse_loss(a, b) for w, a, b in zip(self.layer_weights, fx, ft))


def _check_image(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 4 or not t.is_floating_point():
        raise ValueError(f"{name} must be a float (N, C, H, W) tensor, got {tuple(t.shape)} {t.dtype}")
    check_finite(t, name)


def _check_pair(x, target) -> None:
    _check_image(x, "x")
    _check_image(target, "target")
    if x.shape != target.shape:
        raise ValueError(f"x and target must have the same shape, got {tuple(x.shape)} and {tuple(target.shape)}")


_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial ``[1 4 6 4 1]/16`` blur with reflected borders."""
    c = x.shape[1]
    k = torch.tensor(_BINOMIAL, dtype=x.dtype, device=x.device) / 16
    pad_h, pad_w = min(2, x.shape[-2] - 1), min(2, x.shape[-1] - 1)
    if pad_h < 2 or pad_w < 2:  # reflection needs 3+ pixels; tiny levels replicate instead
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
    else:
        x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """Band-pass pyramid of ``x`` ``(N, C, H, W)``: ``levels`` bands and the low-pass residual.

    ``G_0 = x``, ``G_{k+1} = (blur G_k)[::2, ::2]``, band ``L_k = G_k − up(G_{k+1})`` with ``up``
    bilinear (align_corners=False) back to ``G_k``'s size; the last element is ``G_levels``.
    Returns ``levels + 1`` tensors (``x`` itself for ``levels = 0``).
    """
    _check_image(x, "x")  # without it, bad input failed deep inside torch with a message not naming x
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be an int >= 0, got {levels!r}")
    out, g = [], x
    for _ in range(levels):
        if min(g.shape[-2:]) < 2:
            raise ValueError(f"image too small for {levels} pyramid levels: {tuple(x.shape[-2:])}")
        low = _blur(g)[..., ::2, ::2]
        out.append(g - F.interpolate(low, size=g.shape[-2:], mode="bilinear", align_corners=False))
        g = low
    out.append(g)
    return out


class LaplacianPyramidLoss(nn.Module):
    """Multi-scale L1 on Laplacian-pyramid bands: the offline substitute for the VGG loss.

    ``L = Σ_{k<K} w_k · mean|L_k(x) − L_k(target)| + w_K · mean|G_K(x) − G_K(target)|`` with
    the pyramid of :func:`laplacian_pyramid` (``K = levels``; default weights 1).

    Why it stands in for VGG16 ``relu2_2`` in the shipped RP-GAN training: that layer's
    features are mostly oriented edge and fine-texture detectors at full and half
    resolution, so the perceptual loss compares *where edges are and how sharp they are*
    rather than raw pixel values. The band-pass levels of a Laplacian pyramid measure the
    same (edges at 1, 1/2, 1/4 … resolution; blur lowers every band, ringing adds energy to
    them), the L1 norm favours sharp over averaged edges, and the coarse residual keeps the
    colours. It needs no weights (nothing to download or ship), is deterministic and cheap,
    and its values can be checked by hand. It is not a learned perceptual metric: it does not
    know textures or object shapes as VGG features do.

    Parameters
    ----------
    levels : int
        Number of band-pass levels (≥ 0; 0 is the plain L1 loss).
    weights : sequence of float, optional
        ``levels + 1`` weights (bands from fine to coarse, then the residual).

    Notes
    -----
    ``forward(x, target)``: float ``(N, C, H, W)`` tensors of the same shape; a scalar.
    """

    def __init__(self, levels: int = 3, weights: Optional[Sequence[float]] = None):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
            raise ValueError(f"levels must be an int >= 0, got {levels!r}")
        self.levels = levels
        w = [1.0] * (levels + 1) if weights is None else [float(v) for v in weights]
        if len(w) != levels + 1 or any(not (v >= 0) or v == float("inf") for v in w):
            raise ValueError(f"weights must be {levels + 1} finite non-negative numbers, got {weights!r}")
        self.weights = w

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(x, target)
        px, pt = laplacian_pyramid(x, self.levels), laplacian_pyramid(target, self.levels)
        return sum(w * (a - b).abs().mean() for w, a, b in zip(self.weights, px, pt))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, weights={self.weights}"
