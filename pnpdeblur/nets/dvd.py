"""DVD: Su et al.'s encoder-decoder for video deblurring ("Deep video deblurring", CVPR 2017).

The network Reblur2Deblur (Chen et al.) fine-tunes as its "DVD" baseline. Layer list from the
authors' release (``shuochsu/DeepVideoDeblurring``, ``models/model2_symskip_nngraph2_deeper.lua``),
widths ``w0..w3`` = 64, 128, 256, 512 by default, every layer conv → BN (eps 1e-3) → ReLU unless
said otherwise, 3×3 kernels unless said otherwise:

=====  ==========================================  ====================================
F0     5×5 conv T·C → w0                           full resolution
D1     stride-2 conv w0 → w0;  F1 w0 → w1; F2 w1 → w1      1/2
D2     stride-2 conv w1 → w2;  F3, F4, F5 w2 → w2          1/4
D3     stride-2 conv w2 → w3;  F6, F7, F8 w3 → w3          1/8
U1     4×4 stride-2 transposed conv w3 → w2, BN;  ReLU(F5 + U1);  F9, F10, F11 w2 → w2
U2     transposed conv w2 → w1, BN;  ReLU(F2 + U2);  F12 w1 → w1;  F13 w1 → w0
U3     transposed conv w0 → w0, BN;  ReLU(F0 + U3);  F14 w0 → T·C
F15    conv T·C → C, BN (no ReLU)
out    sigmoid(centre frame + F15)
=====  ==========================================  ====================================

Input: ``(N, T·C, H, W)``, the ``T`` (default 5, odd) neighbouring frames stacked along the
channels in temporal order (frame ``t`` in channels ``t·C … t·C+C-1``), values in [0, 1];
Su et al. align the neighbours to the centre frame first (optical flow or homography) —
alignment is the caller's job. Output: the centre frame's restoration ``(N, C, H, W)``.
The net predicts a residual added to the centre frame *inside* a sigmoid (as the authors'
code does), so outputs lie in (0, 1) and a zero residual is not the identity.
Any H, W: the stack is reflection-padded to a multiple of :attr:`DVD.stride` = 8 and the output
cropped back (the authors zero-padded).

Small CPU configuration: ``DVD(widths=(8, 16, 32, 64))`` (0.24 M parameters; the default
has 15.3 M, counted in the tests from the list above).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointError
from ._base import CheckpointMixin, crop_to, pad_to_multiple
from ._e2e import check_input, check_int, check_multiple

__all__ = ["DVD"]

_BN_EPS = 1e-3  # the authors' SpatialBatchNormalization(n, 1e-3)


class _Unit(nn.Module):
    """A (transposed) convolution followed by batch norm; activations live in :meth:`DVD._run`."""

    def __init__(self, conv: nn.Module, cout: int):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


def _c(cin: int, cout: int, k: int = 3, stride: int = 1) -> _Unit:
    return _Unit(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2), cout)


def _u(cin: int, cout: int) -> _Unit:
    return _Unit(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), cout)


# layer names in the order of the authors' file (the order of their flat parameter vector)
_ORDER = ("f0", "d1", "f1", "f2", "d2", "f3", "f4", "f5", "d3", "f6", "f7", "f8",
          "u1", "f9", "f10", "f11", "u2", "f12", "f13", "u3", "f14", "f15")


class DVD(CheckpointMixin, nn.Module):
    """Su et al.'s deep video deblurring network (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Channels of one frame (3 for RGB).
    frames : int
        Number of stacked frames ``T`` (odd; paper: 5).
    widths : sequence of 4 ints
        Widths of the four resolutions (paper: 64, 128, 256, 512).

    Shapes
    ------
    ``net(frames)``: ``(N, T·C, H, W)`` float in [0, 1], any H, W → ``(N, C, H, W)``.
    ``net.forward_multiscale(frames)``: H, W multiples of :attr:`stride` → ``[output]``.
    """

    pretrained_file = None
    training_command = "pnpdeblur train dvd"

    def __init__(self, in_channels: int = 3, frames: int = 5, widths: Sequence[int] = (64, 128, 256, 512)):
        super().__init__()
        check_int("in_channels", in_channels)
        check_int("frames", frames)
        if frames % 2 == 0:
            raise ValueError(f"frames must be odd (the centre frame is restored), got {frames}")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) != 4:
            raise ValueError(f"widths must be a sequence of 4 ints, got {widths!r}")
        w0, w1, w2, w3 = (check_int(f"widths[{i}]", w) for i, w in enumerate(widths))
        self.config: Dict[str, Any] = dict(in_channels=in_channels, frames=frames, widths=[w0, w1, w2, w3])
        tc, c = frames * in_channels, in_channels
        self.f0 = _c(tc, w0, 5)
        self.d1, self.f1, self.f2 = _c(w0, w0, stride=2), _c(w0, w1), _c(w1, w1)
        self.d2, self.f3, self.f4, self.f5 = _c(w1, w2, stride=2), _c(w2, w2), _c(w2, w2), _c(w2, w2)
        self.d3, self.f6, self.f7, self.f8 = _c(w2, w3, stride=2), _c(w3, w3), _c(w3, w3), _c(w3, w3)
        self.u1, self.f9, self.f10, self.f11 = _u(w3, w2), _c(w2, w2), _c(w2, w2), _c(w2, w2)
        self.u2, self.f12, self.f13 = _u(w2, w1), _c(w1, w1), _c(w1, w0)
        self.u3, self.f14, self.f15 = _u(w0, w0), _c(w0, tc), _c(tc, c)

    @property
    def stride(self) -> int:
        """H and W of ``forward_multiscale`` inputs must be multiples of this (8: three stride-2 layers)."""
        return 8

    @property
    def frames(self) -> int:
        """Frames in the input stack, ``T`` (how many neighbouring frames restore one)."""
        return self.config["frames"]

    @property
    def in_channels(self) -> int:
        """Channels of the input stack, ``T·C``."""
        return self.config["frames"] * self.config["in_channels"]

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        r = F.relu
        f0 = r(self.f0(x))
        f2 = r(self.f2(r(self.f1(r(self.d1(f0))))))
        f5 = r(self.f5(r(self.f4(r(self.f3(r(self.d2(f2))))))))
        f8 = r(self.f8(r(self.f7(r(self.f6(r(self.d3(f5))))))))
        h = r(f5 + self.u1(f8))
        h = r(self.f11(r(self.f10(r(self.f9(h))))))
        h = r(f2 + self.u2(h))
        h = r(self.f13(r(self.f12(h))))
        h = r(f0 + self.u3(h))
        residual = self.f15(r(self.f14(h)))
        c, t = self.config["in_channels"], self.config["frames"]
        centre = x[:, (t // 2) * c:(t // 2 + 1) * c]
        return torch.sigmoid(centre + residual)

    def forward_multiscale(self, frames: torch.Tensor) -> List[torch.Tensor]:
        """``[restored centre frame]`` for a stack ``(N, T·C, H, W)``, H and W multiples of 8."""
        check_input(frames, self.in_channels, "frames", net=self)
        check_multiple(frames, self.stride, type(self).__name__, "frames")
        return [self._run(frames)]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Restored centre frame ``(N, C, H, W)`` of a stack ``(N, T·C, H, W)`` of any size."""
        check_input(frames, self.in_channels, "frames", net=self)
        xp, size = pad_to_multiple(frames, self.stride)
        return crop_to(self._run(xp), size)

    # -- the authors' Torch7 release --------------------------------------------------------
    def official_parameter_order(self) -> List[Tuple[str, torch.Size]]:
        """``(name, shape)`` of every tensor in the order of the authors' flat parameter vector.

        Per layer (F0, D1, F1, F2, D2, F3, F4, F5, D3, F6, F7, F8, U1, F9, F10, F11, U2, F12,
        F13, U3, F14, F15 — the order they are defined in the authors' model file): conv weight,
        conv bias, BN weight, BN bias. Torch7's ``SpatialConvolution`` stores ``(out, in, kH, kW)``
        and ``SpatialFullConvolution`` ``(in, out, kH, kW)``, the same as torch's.
        """
        out = []
        for name in _ORDER:
            unit = getattr(self, name)
            for p in ("conv.weight", "conv.bias", "bn.weight", "bn.bias"):
                out.append((f"{name}.{p}", dict(unit.named_parameters())[p].shape))
        return out

    @classmethod
    def from_official(cls, path: Union[str, os.PathLike, np.ndarray, torch.Tensor],
                      bn_path: Union[str, os.PathLike, Sequence[Any]], in_channels: int = 3,
                      frames: int = 5) -> "DVD":
        """Load the authors' released weights (``param_epoch_*.t7`` and ``bn_meanvar_epoch_*.t7``).

        Their ``inference.lua`` copies a flat float vector into ``getParameters()`` of the model
        and the running means / variances of the 22 batch-norm layers from a pair of lists. This
        reads the vector in :meth:`official_parameter_order`, the layers' definition order:
        nngraph's ``gModule`` lists its modules in a topological order of the graph, and every
        layer with parameters lies on the one main path F0 → … → F15 (the skips only add into
        it), so every topological order lists them in this order. (Not checked against the real
        file, which is not downloaded here.) Their inputs are ``byte / 255`` in [0, 1] like
        ours, so no range change.

        Parameters
        ----------
        path : str, PathLike, ndarray or Tensor
            The flat parameter vector: a ``.t7`` file (needs the ``torchfile`` package), a
            ``.npy`` file, a ``torch.save`` file of a 1-d tensor, or the vector itself. Convert
            elsewhere with ``np.save("param.npy", torchfile.load("param_epoch_400.t7"))``.
        bn_path : str, PathLike or (means, variances)
            The batch-norm statistics: a ``.t7`` file holding ``{means, variances}``, an ``.npz``
            with arrays ``mean_0 … mean_21`` and ``var_0 … var_21``, a ``torch.save`` file of
            ``[means, variances]``, or the pair of sequences itself.
        in_channels, frames : int
            Their model: 3 channels, 5 frames.

        Returns
        -------
        DVD
            Default widths, eval mode.

        Raises
        ------
        pnpdeblur.checkpoints.CheckpointError
            Unreadable files, a vector of the wrong length, statistics of the wrong number or
            shape, negative variances, NaN or Inf.
        """
        with torch.device("meta"):  # no random init of 15 M weights that are overwritten below
            net = cls(in_channels=in_channels, frames=frames)
        flat = _as_tensor(_read_array(path, "parameter vector"), "parameter vector").reshape(-1)
        order = net.official_parameter_order()
        need = sum(int(torch.Size(s).numel()) for _, s in order)
        if flat.numel() != need:
            raise CheckpointError(f"the official DVD parameter vector must hold {need} values for "
                                  f"{frames} frames × {in_channels} channels, got {flat.numel()}")
        if not bool(torch.isfinite(flat).all()):
            raise CheckpointError("the official DVD parameter vector holds NaN or Inf")
        state: Dict[str, torch.Tensor] = {}
        pos = 0
        for name, shape in order:
            n = int(torch.Size(shape).numel())
            state[name] = flat[pos:pos + n].reshape(shape).clone()
            pos += n
        means, variances = _read_bn(bn_path)
        if len(means) != len(_ORDER) or len(variances) != len(_ORDER):
            raise CheckpointError(f"expected {len(_ORDER)} batch-norm means and variances, "
                                  f"got {len(means)} and {len(variances)}")
        for name, m, v in zip(_ORDER, means, variances):
            bn = getattr(net, name).bn
            m, v = _as_tensor(m, f"{name} mean").reshape(-1), _as_tensor(v, f"{name} variance").reshape(-1)
            if m.numel() != bn.num_features or v.numel() != bn.num_features:
                raise CheckpointError(f"batch-norm statistics of {name} must have {bn.num_features} values, "
                                      f"got {m.numel()} and {v.numel()}")
            if not (bool(torch.isfinite(m).all()) and bool(torch.isfinite(v).all())) or bool((v < 0).any()):
                raise CheckpointError(f"batch-norm statistics of {name} hold NaN/Inf or negative variances")
            state[f"{name}.bn.running_mean"] = m.clone()
            state[f"{name}.bn.running_var"] = v.clone()
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
        net = net.to_empty(device="cpu")
        try:  # strict: every parameter and buffer of the uninitialised net is overwritten
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:  # cannot happen when the order above is complete; kept as a guard
            raise CheckpointError(f"official DVD tensors do not fit: {e}") from e
        return net.eval()


def _read_t7(path: Path) -> Any:
    try:
        import torchfile  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError(f"reading {path} needs the 'torchfile' package (pip install torchfile), "
                          "or convert it to .npy elsewhere first") from e
    try:
        return torchfile.load(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable Torch7 file: {e}") from e


def _read_array(src: Any, what: str) -> Any:
    if isinstance(src, (np.ndarray, torch.Tensor)):
        return src
    if not isinstance(src, (str, os.PathLike)):
        raise TypeError(f"the official DVD {what} must be a path, ndarray or tensor, got {type(src).__name__}")
    path = Path(src)
    if not path.is_file():
        raise CheckpointError(f"official DVD {what} not found: {path}")
    if path.suffix == ".t7":
        return _read_t7(path)
    try:
        if path.suffix in (".npy", ".npz"):
            return np.load(str(path), allow_pickle=False)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable DVD {what} file: {e}") from e


def _as_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float32)
    try:
        arr = np.asarray(a, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"official DVD {what} is not numeric: {e}") from e
    return torch.from_numpy(arr.copy())


def _read_bn(src: Any) -> Tuple[List[Any], List[Any]]:
    obj = _read_array(src, "batch-norm statistics") if isinstance(src, (str, os.PathLike)) else src
    if isinstance(obj, np.lib.npyio.NpzFile):
        n = len(_ORDER)
        try:
            return [obj[f"mean_{i}"] for i in range(n)], [obj[f"var_{i}"] for i in range(n)]
        except KeyError as e:
            raise CheckpointError(f"the batch-norm .npz must hold mean_0 … mean_{n - 1} and var_0 … var_{n - 1}: "
                                  f"{e}") from e
    if isinstance(obj, dict):  # torchfile gives Lua tables as dicts keyed 1, 2 (or lists)
        obj = [obj[k] for k in sorted(obj)]
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise CheckpointError("official DVD batch-norm statistics must be a pair (means, variances), "
                              f"got {type(obj).__name__}")
    means, variances = obj
    if isinstance(means, dict):
        means = [means[k] for k in sorted(means)]
    if isinstance(variances, dict):
        variances = [variances[k] for k in sorted(variances)]
    return list(means), list(variances)
