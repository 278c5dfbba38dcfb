r"""Gong-style synthesis of per-pixel motion flows (blur labels).

Model
-----
A flow ``m(p) = (u(p), v(p))`` gives, at every pixel ``p = (x, y)`` (x to the right,
y down, in pixels), the motion vector of the line blur kernel of the design card
(the blurred value averages the sharp image on the segment ``p - m/2 .. p + m/2``).
Following Gong et al. (*From motion blur to motion flow*, CVPR 2017), as used by
Wu et al. for their MSCOCO-23/46 data, the flow is the image-plane displacement
during the exposure of a randomly moving camera, the sum of three components:

* **Translation** (always present): a vector ``t`` of length ``|t| ~ U(0, max_len)``
  and uniform direction; a small linear acceleration across the frame scales it
  linearly along a random direction ``d``:
  ``m_T(p) = t · (1 + a · <d, p̂>)`` with ``p̂ = (x/(W-1) - 1/2, y/(H-1) - 1/2)`` and
  ``a ~ U(-acceleration, acceleration)`` (so the blur length changes by at most
  ``acceleration·|t|`` from the centre to a border).
* **In-plane rotation** (probability ``rotation_prob``) by an angle ``ω`` about a centre
  ``c`` drawn uniformly over the frame: ``m_R(p) = (R(ω) - I)(p - c)``; ``|ω|`` is set so
  that the largest displacement over the frame is ``~ U(0, max_len)``.
* **Zoom** (probability ``zoom_prob``), forward or backward with equal chance, about a
  centre ``c_z`` drawn uniformly in the central half of the frame:
  ``m_Z(p) = s · (p - c_z)``; ``|s|`` is set so that the largest displacement over the
  frame is ``~ U(0, max_len)``.

The sum is shrunk per pixel (direction kept) wherever ``max(|u|, |v|) > max_len``, rounded
to the nearest integer (the labels of Gong et al. are integers), and canonicalised: since
``m`` and ``-m`` give the same line kernel, a label is negated where ``u < 0`` or where
``u == 0`` and ``v < 0``, so every label has ``u >= 0``. Presets ``"23"`` and ``"46"``
(``max_len`` 23 and 46 px) reproduce the label ranges ``|u|, |v| <= 23`` and ``<= 46``
of the MSCOCO-23 / MSCOCO-46 data sets.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_flag
from ..operators._flow import MAX_FLOW
from ._utils import as_generator, check_shape2

if TYPE_CHECKING:  # torch is imported where a flow becomes a tensor
    import torch

__all__ = [
    "FLOW_PRESETS",
    "CameraMotion",
    "sample_camera_motion",
    "random_motion_flow",
    "random_motion_flows",
    "canonicalize_flow",
]

#: Label ranges of the two data sets of Wu et al. (|u|, |v| <= value).
FLOW_PRESETS: dict[str, int] = {"23": 23, "46": 46}


def _resolve_max_len(preset, max_len) -> int:
    if max_len is not None:
        if not isinstance(max_len, numbers.Integral) or isinstance(max_len, bool) or max_len < 0:
            raise ValueError(f"max_len must be a non-negative int, got {max_len!r}")
        if max_len > MAX_FLOW:
            # the operators refuse longer components: a flow they cannot use is an error here
            raise ValueError(
                f"max_len must be at most {int(MAX_FLOW)} px (the operators' limit MAX_FLOW), got {max_len!r}"
            )
        return int(max_len)
    key = str(preset)
    if key not in FLOW_PRESETS:
        raise ValueError(f"preset must be one of {sorted(FLOW_PRESETS)} (or pass max_len), got {preset!r}")
    return FLOW_PRESETS[key]


@dataclass(frozen=True)
class CameraMotion:
    """Parameters of one random camera motion (see the module docstring).

    Attributes
    ----------
    translation : (float, float)
        ``t = (tx, ty)`` in pixels.
    accel_dir : (float, float)
        Unit direction ``d`` of the linear change of the translation across the frame.
    accel : float
        Relative change ``a`` of the translation from the frame centre to ``p̂ = d/2``.
    angle : float
        Rotation angle ``ω`` in radians (0 when there is no rotation).
    rot_center : (float, float)
        Rotation centre ``(cx, cy)`` in pixels.
    zoom : float
        Zoom factor ``s`` (0 when there is no zoom; > 0 zooms out of ``c_z``).
    zoom_center : (float, float)
        Zoom centre ``(cx, cy)`` in pixels.
    max_len : int
        Per-component label bound applied by :meth:`flow`.
    """

    translation: tuple[float, float]
    accel_dir: tuple[float, float]
    accel: float
    angle: float
    rot_center: tuple[float, float]
    zoom: float
    zoom_center: tuple[float, float]
    max_len: int

    def continuous_flow(self, shape: tuple[int, int]) -> np.ndarray:
        """The real-valued displacement field ``m_T + m_R + m_Z``, ``(2, H, W)`` float64."""
        h, w = check_shape2(shape)
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        xn = x / max(w - 1, 1) - 0.5
        yn = y / max(h - 1, 1) - 0.5
        scale = 1.0 + self.accel * (self.accel_dir[0] * xn + self.accel_dir[1] * yn)
        u = self.translation[0] * scale
        v = self.translation[1] * scale
        if self.angle != 0.0:
            dx, dy = x - self.rot_center[0], y - self.rot_center[1]
            c, s = math.cos(self.angle), math.sin(self.angle)
            u = u + (c - 1.0) * dx - s * dy
            v = v + s * dx + (c - 1.0) * dy
        if self.zoom != 0.0:
            u = u + self.zoom * (x - self.zoom_center[0])
            v = v + self.zoom * (y - self.zoom_center[1])
        return np.stack([u, v])

    def flow(self, shape: tuple[int, int], integer: bool = True, canonical: bool = True) -> np.ndarray:
        """The label field: bounded by ``max_len``, optionally rounded and canonicalised.

        Returns
        -------
        numpy.ndarray
            ``(2, H, W)`` float64; channel 0 is u (right), channel 1 is v (down).
        """
        integer, canonical = check_flag(integer, "integer"), check_flag(canonical, "canonical")
        m = self.continuous_flow(shape)
        peak = np.maximum(np.abs(m[0]), np.abs(m[1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            shrink = np.where(peak > self.max_len, self.max_len / np.maximum(peak, 1e-12), 1.0)
        m = m * shrink
        if integer:
            m = np.rint(m)
            np.clip(m, -self.max_len, self.max_len, out=m)
        if canonical:
            m = canonicalize_flow(m)
        return m + 0.0  # no negative zeros


def _farthest_corner(c: tuple[float, float], h: int, w: int) -> float:
    return max(math.hypot(cx - c[0], cy - c[1]) for cx in (0.0, w - 1.0) for cy in (0.0, h - 1.0))


def sample_camera_motion(
    shape: tuple[int, int],
    max_len: int,
    seed: int | np.random.Generator | torch.Generator | None = None,
    rotation_prob: float = 0.5,
    zoom_prob: float = 0.5,
    acceleration: float = 0.3,
) -> CameraMotion:
    """Draw one random :class:`CameraMotion` (parameters documented in the module docstring).

    Parameters
    ----------
    shape : (int, int)
        Frame size ``(H, W)``; sets the rotation/zoom strengths.
    max_len : int
        Label bound in pixels (23 or 46 for the presets).
    seed : int, numpy.random.Generator, torch.Generator or None
        Randomness source.
    rotation_prob, zoom_prob : float in [0, 1]
        Probability that the rotation / zoom component is present.
    acceleration : float >= 0
        Bound of the relative linear change of the translation across the frame.

    Returns
    -------
    CameraMotion
        The motion; :meth:`CameraMotion.flow` renders its flow labels.

    Raises
    ------
    ValueError
        A bad ``shape``; ``max_len`` not an int in ``[0, MAX_FLOW]``; a probability outside
        [0, 1] or ``acceleration`` outside [0, 2) (NaN and bools included).
    """
    h, w = check_shape2(shape)
    if max_len is None:
        raise ValueError("max_len must be a non-negative int, got None")
    max_len = _resolve_max_len(None, max_len)  # a negative, fractional or NaN bound gave a garbage motion
    for nm, val in (("rotation_prob", rotation_prob), ("zoom_prob", zoom_prob)):
        if isinstance(val, bool) or not (isinstance(val, numbers.Real) and 0.0 <= float(val) <= 1.0):
            raise ValueError(f"{nm} must be a probability in [0, 1], got {val!r}")
    if isinstance(acceleration, bool) or not (isinstance(acceleration, numbers.Real)
                                              and 0.0 <= float(acceleration) < 2.0):
        raise ValueError(f"acceleration must be a float in [0, 2), got {acceleration!r}")
    rng = as_generator(seed)
    # fixed number of draws per call, so the stream is the same whatever the probabilities
    (t_len, t_ang, a_dir, a_val, r_on, r_len, r_sign, r_cx, r_cy,
     z_on, z_len, z_sign, z_cx, z_cy) = rng.random(14)
    t = (t_len * max_len * math.cos(2 * math.pi * t_ang), t_len * max_len * math.sin(2 * math.pi * t_ang))
    d = (math.cos(2 * math.pi * a_dir), math.sin(2 * math.pi * a_dir))
    accel = float(acceleration) * (2.0 * a_val - 1.0)
    angle, rc = 0.0, (r_cx * (w - 1), r_cy * (h - 1))
    if r_on < rotation_prob and max_len > 0:
        far = max(_farthest_corner(rc, h, w), 1.0)
        # largest displacement 2 R sin(|ω|/2) = r_len * max_len
        target = min(r_len * max_len, 2.0 * far)
        angle = 2.0 * math.asin(target / (2.0 * far)) * (1.0 if r_sign < 0.5 else -1.0)
    zoom, zc = 0.0, ((0.25 + 0.5 * z_cx) * (w - 1), (0.25 + 0.5 * z_cy) * (h - 1))
    if z_on < zoom_prob and max_len > 0:
        far = max(_farthest_corner(zc, h, w), 1.0)
        zoom = (z_len * max_len / far) * (1.0 if z_sign < 0.5 else -1.0)
    return CameraMotion(
        translation=(float(t[0]), float(t[1])),
        accel_dir=(float(d[0]), float(d[1])),
        accel=float(accel),
        angle=float(angle),
        rot_center=(float(rc[0]), float(rc[1])),
        zoom=float(zoom),
        zoom_center=(float(zc[0]), float(zc[1])),
        max_len=int(max_len),
    )


def random_motion_flow(
    shape: tuple[int, int] = (256, 256),
    preset: str | int = "23",
    seed: int | np.random.Generator | torch.Generator | None = None,
    *,
    max_len: int | None = None,
    rotation_prob: float = 0.5,
    zoom_prob: float = 0.5,
    acceleration: float = 0.3,
    integer: bool = True,
    canonical: bool = True,
    dtype: type | np.dtype = np.float32,
) -> np.ndarray:
    """Draw a random Gong-style motion flow (see the module docstring for the model).

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the flow.
    preset : {"23", "46"}
        Label range: ``|u|, |v| <= 23`` or ``<= 46`` pixels. Ignored when ``max_len`` is given.
    seed : int, numpy.random.Generator, torch.Generator or None
        Randomness source; the same int gives the same flow.
    max_len : int, optional
        Explicit label bound in pixels (overrides ``preset``); at most ``MAX_FLOW`` (64),
        the longest component the operators accept.
    rotation_prob, zoom_prob : float
        Probabilities of the rotation and zoom components (default 0.5 each).
    acceleration : float
        Bound of the relative linear change of the translation across the frame (default 0.3).
    integer : bool
        Round to integer labels (default True, as in Gong et al.).
    canonical : bool
        Negate labels so that ``u >= 0`` (and ``v >= 0`` where ``u == 0``) (default True).
    dtype : numpy.float32 or numpy.float64
        Output dtype (default float32), the dtypes the operators accept.

    Returns
    -------
    numpy.ndarray
        ``(2, H, W)`` array; channel 0 is u (pixels, right), channel 1 is v (pixels, down).

    Examples
    --------
    >>> import numpy as np
    >>> import pnpdeblur as pd
    >>> flow = pd.data.random_motion_flow((64, 64), preset="23", seed=0)
    >>> flow.shape, flow.dtype
    ((2, 64, 64), dtype('float32'))
    >>> bool((flow == np.round(flow)).all()), bool(np.abs(flow).max() <= 23), bool((flow[0] >= 0).all())
    (True, True, True)
    >>> np.array_equal(flow, pd.data.random_motion_flow((64, 64), seed=0))    # same seed, same flow
    True
    >>> blurred = pd.MotionBlur(flow)(pd.data.sample_image("camera", 64))     # a training pair
    """
    bound = _resolve_max_len(preset, max_len)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}") from None
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        # the operators take float32/float64 flows only (float16 and long double are refused there)
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype}")
    motion = sample_camera_motion(shape, bound, seed, rotation_prob, zoom_prob, acceleration)
    return motion.flow(shape, integer=integer, canonical=canonical).astype(dtype)


def random_motion_flows(
    n: int,
    shape: tuple[int, int] = (256, 256),
    preset: str | int = "23",
    seed: int | np.random.Generator | torch.Generator | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """A batch of independent flows as a torch tensor ``(n, 2, H, W)``.

    Same model and keyword arguments as :func:`random_motion_flow`; ``device`` and ``dtype``
    (default ``torch.float32``) place the result. With an int ``seed`` the batch is
    reproducible, and sample ``i`` does not depend on ``n``.
    """
    import torch

    from ..backend import resolve_device

    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    device = resolve_device(device, "device")  # before the flows are drawn, not at the transfer
    rng = as_generator(seed)
    # an int seeds a sequence whose i-th child does not depend on n; a generator (numpy or torch) is a stream
    children = rng.bit_generator.seed_seq.spawn(int(n)) if seed is not None and not isinstance(
        seed, (np.random.Generator, torch.Generator)) else [rng.integers(0, 2**63 - 1) for _ in range(int(n))]
    flows = np.stack([
        random_motion_flow(shape, preset, np.random.default_rng(c), dtype=np.float64, **kwargs)
        for c in children
    ])
    return torch.as_tensor(flows, dtype=dtype or torch.float32, device=device)


def canonicalize_flow(flow: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Negate motion vectors so that ``u >= 0`` (``v >= 0`` where ``u == 0``).

    ``m`` and ``-m`` give the same line kernel, so this picks one representative.

    Parameters
    ----------
    flow : numpy.ndarray or torch.Tensor
        ``(..., 2, H, W)``; channel ``-3`` holds ``(u, v)``.

    Returns
    -------
    Same type, shape and dtype as ``flow``.

    Raises
    ------
    TypeError
        ``flow`` is neither a numpy array nor a torch tensor, or of a bool or complex dtype.
    ValueError
        Another shape, or NaN/Inf (whose sign cannot be chosen).
    """
    import torch

    if not isinstance(flow, (np.ndarray, torch.Tensor)):
        raise TypeError(f"flow must be a numpy array or torch tensor, got {type(flow).__name__}")
    real = flow.dtype.kind in "iuf" if isinstance(flow, np.ndarray) else \
        flow.dtype != torch.bool and not flow.is_complex()
    if not real:  # a bool flow is no displacement; a complex one has no sign to choose
        raise TypeError(f"flow must hold real numbers (pixels), got dtype {flow.dtype}")
    if flow.ndim < 3 or flow.shape[-3] != 2:
        raise ValueError(f"flow must have shape (..., 2, H, W), got {tuple(flow.shape)}")
    finite = np.isfinite(flow).all() if isinstance(flow, np.ndarray) else torch.isfinite(flow).all()
    if not bool(finite):
        raise ValueError("flow contains NaN or Inf values")
    u, v = flow[..., 0, :, :], flow[..., 1, :, :]
    flip = (u < 0) | ((u == 0) & (v < 0))
    # "+ 0" drops the negative zeros of float flows without promoting integer ones
    if isinstance(flow, np.ndarray):
        sign = np.where(flip, -1, 1).astype(flow.dtype)
        return flow * sign[..., None, :, :] + flow.dtype.type(0)
    sign = torch.where(flip, -1, 1).to(flow.dtype)
    return flow * sign.unsqueeze(-3) + 0
