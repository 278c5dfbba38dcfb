"""Preconditioners for the x-step system ``(KᵀK + β I) x = b`` of HQS and ADMM.

A preconditioner here is a callable ``P(r, beta) -> z`` with ``z ≈ (KᵀK + β I)⁻¹ r``,
symmetric positive definite for every β > 0. It only changes how fast conjugate
gradients converges; the system solved (and so the answer, to CG's tolerance) is the
same with or without it.

Named preconditioners (``preconditioner=`` of :func:`~pnpdeblur.solvers.hqs` /
:func:`~pnpdeblur.solvers.admm`):

``"uniform"`` (:class:`UniformPreconditioner`)
    fits one spatially-invariant kernel to the blur and inverts ``|H|² + β`` in the
    Fourier domain (on a zero-padded domain). For a motion flow this is the line kernel of
    the flow's mean motion vector. Since m and −m give the same kernel, the mean direction
    is taken in the doubled-angle representation ``L (cos 2θ, sin 2θ)`` (so m and −m add
    instead of cancelling) and the length is the mean ``|m|``.
``"tiles"`` (:class:`TiledPreconditioner`)
    the spatially varying version (product-convolution style): a smooth partition of
    unity ``Σ_t w_t = 1`` over overlapping tiles, one line kernel fitted per tile (the
    ``w_t``-weighted doubled-angle mean), and ``M⁻¹ r = Σ_t √w_t C_t(√w_t r)`` with ``C_t``
    the zero-padded FFT inverse of ``|H_t|² + β + δ`` on the tile. SPD by construction. The
    damping δ (default :data:`DEFAULT_SHIFT`) is what makes it pay: undamped (δ = 0), the
    fitted kernels' spectral zeros, which never match the true blur's, are amplified by
    1/β and CG needs more iterations than without a preconditioner.
``"jacobi"`` (:class:`JacobiPreconditioner`)
    ``(diag(KᵀK) + β)⁻¹`` with the exact diagonal ``Σ_i K_ij²`` of the per-pixel operator
    (:func:`normal_diagonal`), replicated borders included.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch

from .._vectors import longest_vector
from ..backend import resolve_device
from ..operators.base import LinearOperator
from ..operators.convolution import Convolution, UniformBlur
from ..operators.motion import MotionBlur, TwoSegmentBlur, motion_kernel

__all__ = [
    "UniformPreconditioner",
    "TiledPreconditioner",
    "JacobiPreconditioner",
    "fitted_motion_vector",
    "fitted_motion_vectors",
    "normal_diagonal",
    "tile_partition",
    "make_preconditioner",
    "PRECONDITIONERS",
    "DEFAULT_TILE",
    "DEFAULT_SHIFT",
]

PRECONDITIONERS = ("uniform", "tiles", "jacobi")

#: Default tile size (px) of :class:`TiledPreconditioner`. Measured (benchmarks/pcg.py, 256²,
#: Gong flows ±23/±46): without a shift 128 needed the fewest iterations of 32/64/128 at every
#: β; with the default shift the tile size hardly matters (64 and one whole-image tile tie).
DEFAULT_TILE = 128

#: Default damping δ of :class:`TiledPreconditioner` (it inverts ``|H_t|² + β + δ``).
#: Measured with tile 64 over the DPIR β schedule (256², Gong flows ±23/±46): δ = 0 costs
#: 1.6-2.2× plain CG's iterations to 1e-6 at the smallest β; δ = 0.03 / 0.1 / 0.3 save up to
#: 20 % (±23) / 9 % (±46), and 0.1 was the best or tied.
DEFAULT_SHIFT = 0.1

PreconditionerFn = Callable[[torch.Tensor, float], torch.Tensor]


def fitted_motion_vector(flow: torch.Tensor) -> np.ndarray:
    """Mean motion vector of each flow of a batch, treating m and −m as the same blur.

    Parameters
    ----------
    flow : torch.Tensor, shape (N, 2, H, W)
        Motion vectors (u right, v down) in pixels.

    Returns
    -------
    numpy.ndarray, float64, shape (N, 2)
        ``(u, v)`` of length mean ``|m|`` along the mean doubled-angle direction.
    """
    c, s, L = (t.flatten(1) for t in _doubled_angle(flow.detach().to(device="cpu", dtype=torch.float64)))
    return _vector(c.mean(1), s.mean(1), L.mean(1)).numpy()


def _doubled_angle(f: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel ``L·(cos 2θ, sin 2θ)`` and ``L = |m|`` of flows ``f`` (N, 2, H, W) → three (N, H, W)."""
    u, v = f[:, 0], f[:, 1]
    L = torch.hypot(u, v)
    safe = torch.where(L > 0, L, torch.ones_like(L))
    # L·(cos 2θ, sin 2θ) = ((u² − v²)/L, 2uv/L): invariant under m -> −m
    return (u * u - v * v) / safe, 2 * u * v / safe, L


def _vector(c: torch.Tensor, s: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """``(…, 2)`` motion vectors of length ``length`` along the doubled-angle mean ``(c, s)``."""
    theta = 0.5 * torch.atan2(s, c)
    return torch.stack([length * torch.cos(theta), length * torch.sin(theta)], -1)


def fitted_motion_vectors(flow: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> np.ndarray:
    """Weighted mean motion vectors, one per flow and separable weight ``wy[a] ⊗ wx[b]``.

    The same fit as :func:`fitted_motion_vector` (doubled-angle mean direction, mean
    ``|m|``), with every pixel weighted by ``wy[a, y] · wx[b, x]`` (e.g. the tiles of
    :func:`tile_partition`). With all-ones weights it is :func:`fitted_motion_vector`.

    Parameters
    ----------
    flow : torch.Tensor, shape (N, 2, H, W)
        Motion vectors (u right, v down) in pixels.
    wy : torch.Tensor, shape (A, H)
        Non-negative row weights, each with a positive sum.
    wx : torch.Tensor, shape (B, W)
        Non-negative column weights, each with a positive sum.

    Returns
    -------
    numpy.ndarray, float64, shape (N, A, B, 2)
        ``(u, v)`` per flow and tile.
    """
    f = flow.detach().to(device="cpu", dtype=torch.float64)
    wy = wy.detach().to(device="cpu", dtype=torch.float64)
    wx = wx.detach().to(device="cpu", dtype=torch.float64)
    if wy.ndim != 2 or wy.shape[1] != f.shape[2] or wx.ndim != 2 or wx.shape[1] != f.shape[3]:
        raise ValueError(
            f"wy and wx must have shapes (A, {f.shape[2]}) and (B, {f.shape[3]}), "
            f"got {tuple(wy.shape)} and {tuple(wx.shape)}"
        )
    c, s, L = _doubled_angle(f)

    def wmean(g: torch.Tensor) -> torch.Tensor:
        # Σ_yx wy[a,y] wx[b,x] g[n,y,x] / Σ w: separable, never an (A, B, H, W) tensor
        return torch.einsum("ay,nyx,bx->nab", wy, g, wx) / torch.outer(wy.sum(1), wx.sum(1))

    return _vector(wmean(c), wmean(s), wmean(L)).numpy()


def _kernel_of(K: Union[UniformBlur, Convolution]) -> np.ndarray:
    """The 2-D kernel of a spatially invariant blur, float64 numpy."""
    return K.kernel.detach().cpu().to(torch.float64).numpy()


def _check_residual(r: torch.Tensor, shape: Tuple[int, int]) -> None:
    """A preconditioner applies only to residuals of the image size it was built for."""
    if tuple(r.shape[-2:]) != tuple(shape):
        raise ValueError(f"r has spatial shape {tuple(r.shape[-2:])}, the preconditioner was built for {tuple(shape)}")


def _fitted_kernels(K: LinearOperator) -> list:
    """One float64 2-D kernel per flow sample (a list of length 1 for a uniform blur)."""
    if isinstance(K, MotionBlur):
        return [motion_kernel(m) for m in fitted_motion_vector(K.flow)]
    if isinstance(K, (UniformBlur, Convolution)):
        return [_kernel_of(K)]
    raise TypeError(
        f"preconditioner='uniform' needs a MotionBlur, UniformBlur or Convolution operator, got {K!r}"
    )


class UniformPreconditioner:
    """``(|H|² + β)⁻¹`` applied by FFT, H the transfer function of a fitted uniform kernel.

    Parameters
    ----------
    K : MotionBlur, UniformBlur or Convolution
        The blur; a ``MotionBlur`` with a batch of N flows gets one fitted kernel per flow.
    shape : (int, int)
        Image ``(H, W)``.
    dtype : torch.dtype
        float32 or float64 (the residuals' dtype).
    device : torch.device or str
        Where the residuals live.

    Notes
    -----
    The operator ``F⁻¹ diag(1 / (|H|² + β)) F`` is real, symmetric and positive definite
    (H is the transfer function of a real kernel, so ``|H|²`` is real, non-negative and
    conjugate-symmetric), as CG requires. The inverse is taken on the image zero-padded by
    the kernel radius (at least 8 px) and cropped back, ``Cᵀ D C``, which stays SPD and
    keeps the FFT's wrap-around away from the clamped borders of the operators.
    """

    def __init__(self, K: LinearOperator, shape: Tuple[int, int], dtype: torch.dtype, device: Any):
        (h, w), device = _check_setup(K, shape, dtype, device)
        kernels = _fitted_kernels(K)
        # The operators clamp at the border while the FFT wraps around; inverting on a
        # domain zero-padded by the kernel radius keeps the wrap-around away from the image
        # (measured: 2× fewer iterations than the plain periodic inverse at small β).
        # Cᵀ D C with C the zero-padding embedding is still SPD.
        self.pad = max(8, max(max(k.shape) for k in kernels) // 2)
        he, we = h + 2 * self.pad, w + 2 * self.pad
        power = []
        for k in kernels:
            k = _crop_to(k, he, we)
            tf = UniformBlur(k).transfer_function((he, we), torch.float64, "cpu")
            power.append(tf.real**2 + tf.imag**2)
        # (N or 1, 1, H, W//2+1): broadcasts over channels (and over the batch for one kernel)
        self.power = torch.stack(power)[:, None].to(dtype=dtype, device=device)
        self.shape = (h, w)

    def __call__(self, r: torch.Tensor, beta: float) -> torch.Tensor:
        """Apply ``Cᵀ (|H|² + β)⁻¹ C`` to ``r`` of shape (N, C, H, W) (C: zero-padding)."""
        p, (h, w) = self.pad, self.shape
        _check_residual(r, self.shape)
        rp = torch.nn.functional.pad(r, (p, p, p, p))
        z = torch.fft.irfft2(torch.fft.rfft2(rp) / (self.power + beta), s=rp.shape[-2:])
        return z[..., p:p + h, p:p + w]


def _crop_to(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """Crop a centred odd kernel to fit an (h, w) image (keeps it odd and centred)."""
    kh, kw = k.shape
    ch = min(kh, h if h % 2 else h - 1)
    cw = min(kw, w if w % 2 else w - 1)
    if (ch, cw) == (kh, kw):
        return k
    a, b = (kh - ch) // 2, (kw - cw) // 2
    k = k[a:a + ch, b:b + cw]
    return k / k.sum()


def tile_partition(n: int, tile: int) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """A smooth 1-D partition of unity over ``n`` pixels by overlapping windows.

    ``k = max(1, round(2 n / tile))`` window centres ``c_i = (i + ½) s − ½`` with spacing
    ``s = n / k`` (about ``tile / 2``); window i is ``cos²(π (x − c_i) / (2 s))`` for
    ``|x − c_i| < s`` (so neighbours overlap by half and ``cos² + sin² = 1`` between
    centres), and the first/last window is 1 outside its centre, towards the border.

    Parameters
    ----------
    n : int
        Number of pixels along the axis.
    tile : int
        Window width in pixels (about twice the spacing); ``tile >= n`` gives one window of 1.

    Returns
    -------
    weights : torch.Tensor, float64, shape (k, n)
        Non-negative, summing to 1 over the first axis at every pixel.
    starts : torch.Tensor, int64, shape (k,)
        First pixel of each window's box.
    size : int
        Box length: window i is zero outside ``[starts[i], starts[i] + size)``.
    """
    k = max(1, int(round(2 * n / tile)))
    s = n / k
    x = torch.arange(n, dtype=torch.float64)
    c = (torch.arange(k, dtype=torch.float64) + 0.5) * s - 0.5
    d = (x[None] - c[:, None]) / s  # (k, n), in units of the spacing
    w = torch.where(d.abs() < 1, torch.cos(0.5 * math.pi * d) ** 2, torch.zeros_like(d))
    w[0, d[0] <= 0] = 1.0
    w[-1, d[-1] >= 0] = 1.0
    nz = w > 0
    lo = nz.float().argmax(1)
    hi = n - 1 - nz.flip(1).float().argmax(1)
    size = int((hi - lo).max()) + 1
    starts = torch.clamp(lo, max=n - size)
    return w, starts, size


class TiledPreconditioner:
    """Spatially varying FFT preconditioner: per-tile line kernels blended by a partition of unity.

    ``M⁻¹ r = Σ_t √w_t · C_tᵀ F⁻¹ (|H_t|² + β)⁻¹ F C_t · (√w_t · r)``, where the ``w_t``
    are the products ``wy[a] ⊗ wx[b]`` of two 1-D partitions of unity
    (:func:`tile_partition`), so ``Σ_t w_t = 1`` at every pixel; ``C_t`` cuts the tile's
    box out of the image and zero-pads it by the kernel radius (as
    :class:`UniformPreconditioner` pads the whole image, because the operators clamp at
    the border); ``H_t`` is the transfer function of the line kernel of the tile's
    ``w_t``-weighted mean motion (:func:`fitted_motion_vectors`).

    Parameters
    ----------
    K : MotionBlur, UniformBlur or Convolution
        The blur; a ``MotionBlur`` with a batch of N flows gets its own kernels per flow
        (a uniform blur gives every tile the same kernel).
    shape : (int, int)
        Image ``(H, W)``.
    dtype : torch.dtype
        float32 or float64 (the residuals' dtype).
    device : torch.device or str
        Where the residuals live.
    tile : int
        Tile size in pixels (default :data:`DEFAULT_TILE`); neighbouring tiles overlap by
        half. A tile as large as the image is one tile: the uniform preconditioner.
    shift : float
        Extra damping ``δ ≥ 0``: the tiles invert ``|H_t|² + β + δ`` (default
        :data:`DEFAULT_SHIFT`). The fitted kernels' spectral zeros never sit exactly where
        the true blur's are, and at small β the undamped inverse amplifies those
        frequencies by up to 1/β, so δ = 0 (the plain local inverse) costs more CG
        iterations than no preconditioner on rotating/zooming flows; δ caps the
        amplification (δ → ∞ tends to plain CG, up to scale).

    Notes
    -----
    Symmetric positive definite by construction: each term is ``Bᵀ D B`` with ``D`` the
    (real, symmetric, positive) Fourier multiplier and ``B = C_t diag(√w_t)``, so
    ``rᵀ M⁻¹ r = Σ_t ‖D^{1/2} B_t r‖² ≥ 0``, and it is 0 only if ``√w_t r = 0`` for every
    t, i.e. ``r = 0`` because the ``w_t`` sum to 1. One application costs one batched FFT
    pair over all tiles: about 4× the image area (half overlap in both axes) plus padding.
    """

    def __init__(
        self,
        K: LinearOperator,
        shape: Tuple[int, int],
        dtype: torch.dtype,
        device: Any,
        tile: int = DEFAULT_TILE,
        shift: float = DEFAULT_SHIFT,
    ):
        if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 4:
            raise ValueError(f"tile must be an int >= 4 (pixels), got {tile!r}")
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not (0 <= shift < math.inf):
            raise ValueError(f"shift must be a finite number >= 0, got {shift!r}")
        self.shift = float(shift)
        (h, w), device = _check_setup(K, shape, dtype, device)
        wy, sy, bh = tile_partition(h, int(tile))
        wx, sx, bw = tile_partition(w, int(tile))
        kernels = _tile_kernels(K, wy, wx)  # (Nf, A, B) nested lists of 2-D arrays
        self.pad = max(8, max(max(k.shape) for row in kernels for r in row for k in r) // 2)
        p = self.pad
        he, we = bh + 2 * p, bw + 2 * p
        self.power = _power_spectra(kernels, he, we).to(dtype=dtype, device=device)
        self.shape, self.box, self.tile = (h, w), (bh, bw), int(tile)
        self.n_tiles = (wy.shape[0], wx.shape[0])
        # pixel indices of every tile's box, flattened: (A·bh·B·bw,) into the H·W image
        iy = sy[:, None] + torch.arange(bh)  # (A, bh)
        ix = sx[:, None] + torch.arange(bw)  # (B, bw)
        self.index = (iy[:, :, None, None] * w + ix[None, None]).reshape(-1).to(device)
        ry = torch.gather(wy, 1, iy).sqrt()
        rx = torch.gather(wx, 1, ix).sqrt()
        # √w_t on each box, laid out as the boxes: (A, bh, B, bw)
        self.root = (ry[:, :, None, None] * rx[None, None]).to(dtype=dtype, device=device)

    def __call__(self, r: torch.Tensor, beta: float) -> torch.Tensor:
        """Apply ``M⁻¹`` to ``r`` of shape (N, C, H, W); ``beta > 0``."""
        (h, w), (bh, bw), p = self.shape, self.box, self.pad
        _check_residual(r, self.shape)
        n, c = r.shape[:2]
        a, b = self.n_tiles
        t = r.reshape(n, c, h * w)[:, :, self.index].reshape(n, c, a, bh, b, bw) * self.root
        t = t.permute(0, 1, 2, 4, 3, 5)  # (N, C, A, B, bh, bw)
        t = torch.nn.functional.pad(t, (p, p, p, p))
        # power: (Nf, 1, A, B, ·, ·) broadcasts over channels (and the batch for one flow)
        z = torch.fft.irfft2(torch.fft.rfft2(t) / (self.power + (beta + self.shift)), s=t.shape[-2:])
        z = z[..., p:p + bh, p:p + bw].permute(0, 1, 2, 4, 3, 5) * self.root
        out = torch.zeros(n, c, h * w, dtype=r.dtype, device=r.device)
        out.index_add_(2, self.index, z.reshape(n, c, -1))
        return out.reshape(n, c, h, w)


def _check_shape(shape: Any) -> Tuple[int, int]:
    try:
        h, w = shape
    except (TypeError, ValueError):
        h = w = None
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in (h, w)):
        raise ValueError(f"shape must be (H, W), got {shape!r}")
    if h < 1 or w < 1:
        raise ValueError(f"shape must be two positive ints (H, W), got {tuple(shape)!r}")
    return int(h), int(w)


def _check_setup(K: Any, shape: Any, dtype: Any, device: Any) -> Tuple[Tuple[int, int], Optional[torch.device]]:
    """A preconditioner's ``shape``, ``dtype`` and ``device`` checked (ValueError/TypeError naming
    them, and ValueError for a ``shape`` the operator was not built for): ``((H, W), device)``."""
    h, w = _check_shape(shape)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64 (the residuals' dtype), got {dtype!r}")
    device = resolve_device(device, "device")
    kh, kw = getattr(K, "image_shape", (None, None, None))[1:]
    if (kh is not None and kh != h) or (kw is not None and kw != w):
        raise ValueError(f"shape {(h, w)} does not match the operator's image size {(kh, kw)}")
    return (h, w), device


def _tile_kernels(K: LinearOperator, wy: torch.Tensor, wx: torch.Tensor) -> List[List[List[np.ndarray]]]:
    """Fitted kernels ``[n][a][b]`` for the tiles ``wy[a] ⊗ wx[b]`` of every flow."""
    a, b = wy.shape[0], wx.shape[0]
    if isinstance(K, MotionBlur):
        vecs = fitted_motion_vectors(K.flow, wy, wx)
        return [[[motion_kernel(vecs[n, i, j]) for j in range(b)] for i in range(a)] for n in range(len(vecs))]
    if isinstance(K, (UniformBlur, Convolution)):
        return [[[_kernel_of(K)] * b for _ in range(a)]]
    raise TypeError(
        f"preconditioner='tiles' needs a MotionBlur, UniformBlur or Convolution operator, got {K!r}"
    )


def _power_spectra(kernels: List[List[List[np.ndarray]]], he: int, we: int) -> torch.Tensor:
    """``|H|²`` of every kernel on an (he, we) grid: float64 (Nf, 1, A, B, he, we//2+1)."""
    flat = [_crop_to(k, he, we) for row in kernels for r in row for k in r]
    stack = torch.zeros(len(flat), he, we, dtype=torch.float64)
    for i, k in enumerate(flat):
        # |H|² does not change when a kernel is shifted circularly: no need to centre it at 0
        stack[i, :k.shape[0], :k.shape[1]] = torch.from_numpy(k)
    tf = torch.fft.rfft2(stack)
    pw = tf.real**2 + tf.imag**2
    nf, a, b = len(kernels), len(kernels[0]), len(kernels[0][0])
    return pw.reshape(nf, 1, a, b, he, we // 2 + 1)


def normal_diagonal(K: LinearOperator, shape: Tuple[int, int]) -> torch.Tensor:
    """The exact diagonal of ``KᵀK``, ``d_j = Σ_i K_ij²``, for each flow of a per-pixel blur.

    For ``MotionBlur`` (line kernel or look-up-table form) and ``TwoSegmentBlur``, row i of
    K holds pixel i's segment weights (the kernel of docs/conventions.md, normalised per
    segment and scaled by its mass) at the clamped source pixels ``clamp(i + k)``. The
    taps are enumerated along each segment (every offset within distance 1 of the
    segment's line, which covers all non-zero weights), the entries of a row that land on
    the same source pixel (replicated borders; overlapping segments) are summed first,
    then squared and accumulated per source pixel. ``UniformBlur`` (periodic) gives the
    constant ``Σ_k k²``.

    Parameters
    ----------
    K : MotionBlur, TwoSegmentBlur or UniformBlur
    shape : (int, int)
        Image ``(H, W)`` (must match the flow's).

    Returns
    -------
    torch.Tensor, float64, CPU, shape (Nf, 1, H, W)
        ``Nf`` the flow batch (1 for a uniform blur).
    """
    h, w = _check_shape(shape)
    if isinstance(K, UniformBlur):
        k = K.kernel.detach().cpu().to(torch.float64)
        return torch.full((1, 1, h, w), float((k * k).sum()), dtype=torch.float64)
    if not isinstance(K, (MotionBlur, TwoSegmentBlur)):
        raise TypeError(
            f"preconditioner='jacobi' needs a MotionBlur, TwoSegmentBlur or UniformBlur operator, got {K!r}"
        )
    if tuple(K.image_shape[1:]) != (h, w):
        raise ValueError(f"shape {(h, w)} does not match the operator's flow size {tuple(K.image_shape[1:])}")
    like = torch.zeros(1, dtype=torch.float64)
    with torch.no_grad():
        vec, mass = K._segments(like)
    vec, mass = vec.detach().to("cpu", torch.float64), mass.detach().to("cpu", torch.float64)
    return torch.stack([_diag_one(vec[n], mass[n], float(K.beta), h, w) for n in range(vec.shape[0])])[:, None]


def _segment_taps(a: torch.Tensor, beta: float):
    """Offsets and normalised weights of every tap of one segment per pixel.

    ``a`` (2, R, W) segment vectors. Returns ``kx, ky, w`` of shape (T, R, W): for each
    position j along the major axis (the axis where |a| is larger) and d ∈ {−1, 0, 1}, the
    integer offset nearest the segment's line at j, moved by d across it. Since the line
    kernel vanishes beyond distance 1 from the line and the major axis's direction cosine
    is at least 1/√2, the non-zero taps lie within 1.5 of the line along the minor axis, so
    these three per position include every one of them.
    """
    ax, ay = a[0], a[1]
    L = torch.hypot(ax, ay)
    zero = L == 0
    Ls = torch.where(zero, torch.ones_like(L), L)
    ux, uy = ax / Ls, ay / Ls
    h = 0.5 * L + 0.5
    major_x = ax.abs() >= ay.abs()
    a_maj = torch.where(major_x, ax, ay)
    a_min = torch.where(major_x, ay, ax)
    slope = a_min / torch.where(a_maj == 0, torch.ones_like(a_maj), a_maj)
    # the support along the major axis: |t − βL| < h and |c| < 1 projected on it
    reach = (h * a_maj.abs() + a_min.abs()) / Ls
    J = int(math.ceil(float(reach.max()))) + 1 if reach.numel() else 1
    j = torch.arange(-J, J + 1, dtype=torch.float64).repeat_interleave(3).view(-1, 1, 1)
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64).repeat(2 * J + 1).view(-1, 1, 1)
    k_maj = torch.floor(beta * a_maj) + j
    k_min = torch.floor(beta * a_min + (k_maj - beta * a_maj) * slope + 0.5) + d
    kx = torch.where(major_x, k_maj, k_min)
    ky = torch.where(major_x, k_min, k_maj)
    t = kx * ux + ky * uy
    c = kx * uy - ky * ux
    wt = torch.relu(1 - c.abs()) * torch.clamp(h - (t - beta * L).abs(), 0, 1)
    wt = torch.where(zero, ((kx == 0) & (ky == 0)).to(wt.dtype), wt)
    return kx, ky, wt / wt.sum(0)


def _diag_one(vec: torch.Tensor, mass: torch.Tensor, beta: float, h: int, w: int) -> torch.Tensor:
    """``Σ_i K_ij²`` (H, W) for one image's segments ``vec`` (S, 2, H, W), ``mass`` (S, H, W)."""
    hw = h * w
    diag = torch.zeros(hw, dtype=torch.float64)
    # a band of rows at a time keeps the (taps × pixels) tensors to a few MB
    L = longest_vector(vec, dim=1)
    taps = vec.shape[0] * 3 * (2 * (int(L) + 4) + 1)
    rows = max(1, min(h, 2**21 // max(1, taps * w)))
    yy = torch.arange(h).view(h, 1)
    xx = torch.arange(w).view(1, w)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        keys, vals = [], []
        py, px = yy[y0:y1], xx
        src_row = (py * w + px).reshape(-1)  # flat index i of each pixel of the band
        for s in range(vec.shape[0]):
            kx, ky, wt = _segment_taps(vec[s, :, y0:y1], beta)
            wt = wt * mass[s, y0:y1]
            j = torch.clamp(py + ky.long(), 0, h - 1) * w + torch.clamp(px + kx.long(), 0, w - 1)
            keep = wt != 0
            keys.append((src_row.view(1, y1 - y0, w).expand_as(j)[keep]) * hw + j[keep])
            vals.append(wt[keep])
        key = torch.cat(keys)
        val = torch.cat(vals)
        # K_ij = sum of the taps of row i landing on j (clamped borders, overlapping segments)
        uniq, inv = torch.unique(key, return_inverse=True)
        kij = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, val)
        diag.index_add_(0, uniq % hw, kij * kij)
    return diag.view(h, w)


class JacobiPreconditioner:
    """Jacobi (diagonal) preconditioner ``(diag(KᵀK) + β)⁻¹`` with the exact diagonal.

    Parameters
    ----------
    K : MotionBlur, TwoSegmentBlur or UniformBlur
        The blur (see :func:`normal_diagonal`).
    shape : (int, int)
        Image ``(H, W)``.
    dtype : torch.dtype
        float32 or float64 (the residuals' dtype).
    device : torch.device or str
        Where the residuals live.

    Notes
    -----
    A positive diagonal matrix for β > 0, so SPD. The set-up enumerates every tap of every
    pixel once (about a second at 256², |m| ≤ 46, on 2 cores).
    """

    def __init__(self, K: LinearOperator, shape: Tuple[int, int], dtype: torch.dtype, device: Any):
        self.shape, device = _check_setup(K, shape, dtype, device)
        self.diag = normal_diagonal(K, self.shape).to(dtype=dtype, device=device)

    def __call__(self, r: torch.Tensor, beta: float) -> torch.Tensor:
        """Apply ``(diag(KᵀK) + β)⁻¹`` to ``r`` of shape (N, C, H, W)."""
        _check_residual(r, self.shape)
        return r / (self.diag + beta)


def make_preconditioner(
    spec: Union[None, str, Callable], K: LinearOperator, y: torch.Tensor
) -> Optional[PreconditionerFn]:
    """Resolve the ``preconditioner=`` argument of HQS/ADMM into ``P(r, beta) -> z`` or None.

    Parameters
    ----------
    spec : None, str or callable
        None (plain CG), a name from :data:`PRECONDITIONERS` or a callable
        ``P(r, beta)`` on torch tensors ``(N, C, H, W)`` returning an SPD approximation
        of ``(KᵀK + β I)⁻¹ r`` of the same shape.
    K : LinearOperator
        The blur.
    y : torch.Tensor, shape (N, C, H, W)
        The observation (fixes size, dtype and device).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "uniform":
            return UniformPreconditioner(K, y.shape[-2:], y.dtype, y.device)
        if spec == "tiles":
            return TiledPreconditioner(K, y.shape[-2:], y.dtype, y.device)
        if spec == "jacobi":
            return JacobiPreconditioner(K, y.shape[-2:], y.dtype, y.device)
        raise ValueError(f"preconditioner must be None, a callable P(r, beta) or one of {PRECONDITIONERS}, "
                         f"got {spec!r}")
    if not callable(spec):
        raise TypeError(
            "preconditioner must be None, a callable P(r, beta) or one of "
            f"{PRECONDITIONERS}, got {type(spec).__name__}"
        )
    return spec
