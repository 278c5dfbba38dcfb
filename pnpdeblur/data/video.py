r"""Video synthesis by frame averaging (GOPRO / WILD construction) with known motion.

A photo is filmed by a virtual high-frame-rate camera that moves along a smooth random
path; optionally a textured foreground layer moves on its own. A blurred frame is the
average of ``N`` consecutive sharp frames (``N`` odd: 7–13 in Nah et al.'s GOPRO data, the
default here; 7–23 in Noroozi et al.'s WILD data) taken in *linear* intensity under a gamma camera response
``g(x) = x^(1/γ)``, γ = 2.2 (Nah et al. eq. 2–3)::

    B = g( (1/N) Σ_i g⁻¹(Ŝ[i]) ),     sharp target = Ŝ[(N−1)/2] (the middle frame)

Camera model
------------
Frame pixel ``p = (x, y)`` at time ``τ`` (in frames, 0 = middle frame) shows the photo at
``q(p, τ) = o + r + s(τ) R(θ(τ)) (p − r) + T(τ)``: ``o`` is the integer origin of the crop
(so the middle frame is an exact, un-interpolated crop), ``r`` the rotation/zoom centre,
``T(τ) = v τ + a τ²/2`` the translation (velocity ``v`` px/frame, acceleration ``a``),
``θ(τ) = ω τ`` the in-plane rotation and ``s(τ) = exp(ζ τ)`` the zoom. Frames other than
the middle one are resampled with cubic splines (reflecting borders).

Flows
-----
The scene point seen at ``p`` in the middle frame appears at
``p'(τ) = r + R(θ)ᵀ (p − r − T(τ)) / s(τ)``, so the flows are exact closed forms:

* ``flow_next = p'(+D) − p``, ``flow_prev = p'(−D) − p``: middle frame → middle frames of the
  neighbouring blurred frames, ``D = N`` frames away by default (consecutive exposures
  without gap). These are the flows of Reblur2Deblur: ``TwoSegmentBlur(flow_next,
  flow_prev, tau=0.5)`` spans the exposure.
* ``exposure_flow = p'(+N/2) − p'(−N/2)``: the motion during the exposure, i.e. the
  line-kernel label ``m`` for ``MotionBlur`` (for constant velocity ``m = N v``).

In the foreground layer the flows are those of the layer (its own constant velocity,
added in screen space); occlusion borders are not modelled by a per-pixel kernel.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Optional

import numpy as np
from scipy import ndimage

from .._checks import check_flag
from .._images import check_unit_scale
from .._repr import ArrayFieldsRepr
from ._utils import as_generator, check_shape2, is_finite_real

if TYPE_CHECKING:  # torch is imported where a photo may be a tensor
    import torch

__all__ = [
    "CameraPath",
    "VideoBlurSample",
    "random_camera_path",
    "render_frames",
    "average_frames",
    "synthesize_video_blur",
    "MOTION_KINDS",
    "VideoSequenceSample",
    "synthesize_video_sequence",
]

#: Kinds of camera motion for :func:`random_camera_path`.
MOTION_KINDS = ("translation", "rotation", "zoom", "mixed")


@dataclass(frozen=True)
class CameraPath:
    """A smooth camera path (see the module docstring); times in frames, 0 = middle frame.

    Attributes
    ----------
    velocity : (float, float)
        ``v`` in px/frame (camera-window motion; the content moves by ``−v``).
    acceleration : (float, float)
        ``a`` in px/frame².
    omega : float
        Rotation rate ``ω`` in rad/frame.
    zeta : float
        Log-zoom rate ``ζ`` per frame.
    center : (float, float)
        Rotation/zoom centre ``r`` in frame pixels.
    """

    velocity: tuple[float, float] = (0.0, 0.0)
    acceleration: tuple[float, float] = (0.0, 0.0)
    omega: float = 0.0
    zeta: float = 0.0
    center: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        # a NaN or Inf field would give NaN frames and flows silently
        for name in ("velocity", "acceleration", "center"):
            pair = getattr(self, name)
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2 \
                    or not all(is_finite_real(v) for v in pair):
                raise ValueError(f"CameraPath.{name} must be a pair of finite numbers, got {pair!r}")
        for name in ("omega", "zeta"):
            if not is_finite_real(getattr(self, name)):
                raise ValueError(f"CameraPath.{name} must be a finite number, got {getattr(self, name)!r}")

    def source_coords(self, shape: tuple[int, int], tau: float) -> np.ndarray:
        """``q(p, τ) − o``: photo coordinates (relative to the crop origin), ``(2, H, W)`` (x, y)."""
        h, w = shape
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        s, th = math.exp(self.zeta * tau), self.omega * tau
        c, sn = math.cos(th), math.sin(th)
        rx, ry = self.center
        dx, dy = x - rx, y - ry
        tx = self.velocity[0] * tau + 0.5 * self.acceleration[0] * tau**2
        ty = self.velocity[1] * tau + 0.5 * self.acceleration[1] * tau**2
        return np.stack([rx + s * (c * dx - sn * dy) + tx, ry + s * (sn * dx + c * dy) + ty])

    def scene_position(self, shape: tuple[int, int], tau: float) -> np.ndarray:
        """``p'(τ)``: where the scene point of middle-frame pixel ``p`` appears at time ``τ``, ``(2, H, W)``."""
        h, w = shape
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        s, th = math.exp(self.zeta * tau), self.omega * tau
        c, sn = math.cos(th), math.sin(th)
        rx, ry = self.center
        tx = self.velocity[0] * tau + 0.5 * self.acceleration[0] * tau**2
        ty = self.velocity[1] * tau + 0.5 * self.acceleration[1] * tau**2
        dx, dy = x - rx - tx, y - ry - ty
        return np.stack([rx + (c * dx + sn * dy) / s, ry + (-sn * dx + c * dy) / s])

    def flow(self, shape: tuple[int, int], tau: float) -> np.ndarray:
        """Flow from the middle frame to time ``τ``: ``p'(τ) − p``, ``(2, H, W)`` float64."""
        h, w = shape
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        return self.scene_position(shape, tau) - np.stack([x, y])

    def flow_between(self, shape: tuple[int, int], tau_from: float, tau_to: float) -> np.ndarray:
        """Flow from the frame at ``tau_from`` to the frame at ``tau_to``, ``(2, H, W)`` float64.

        The scene point seen at ``p`` at ``tau_from`` (photo point ``q(p, tau_from)``) appears at
        ``p' = r + R(θ(tau_to))ᵀ (q − r − T(tau_to)) / s(tau_to)``; the flow is ``p' − p``."""
        h, w = shape
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        q = self.source_coords(shape, tau_from)
        tau = float(tau_to)
        s, th = math.exp(self.zeta * tau), self.omega * tau
        c, sn = math.cos(th), math.sin(th)
        rx, ry = self.center
        tx = self.velocity[0] * tau + 0.5 * self.acceleration[0] * tau**2
        ty = self.velocity[1] * tau + 0.5 * self.acceleration[1] * tau**2
        dx, dy = q[0] - rx - tx, q[1] - ry - ty
        return np.stack([rx + (c * dx + sn * dy) / s - x, ry + (-sn * dx + c * dy) / s - y])


def _check_positive(name: str, value, allow_zero: bool = True) -> float:
    if not is_finite_real(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} finite number, "
                         f"got {value!r}")
    return float(value)


def _crf_gamma(gamma) -> float | None:
    """The camera-response exponent, or None for linear averaging (``None`` or 1; bools refused)."""
    if gamma is None:
        return None
    g = _check_positive("gamma", gamma, allow_zero=False)
    return None if g == 1 else g


def random_camera_path(
    shape: tuple[int, int],
    n_frames: int,
    motion: str = "mixed",
    max_blur: float = 20.0,
    min_blur: float = 2.0,
    acceleration: float | None = None,
    seed: int | np.random.Generator | torch.Generator | None = None,
) -> CameraPath:
    """Draw a smooth random camera path whose blur over ``n_frames`` is ``~ U(min_blur, max_blur)`` px.

    Parameters
    ----------
    shape : (int, int)
        Frame size ``(H, W)``.
    n_frames : int
        Frames per exposure ``N`` (sets the per-frame rates).
    motion : {"translation", "rotation", "zoom", "mixed"}
        ``"translation"``: constant velocity (plus ``acceleration``);
        ``"rotation"``: in-plane rotation about a random centre; ``"zoom"``: forward/backward
        zoom about a random centre in the central half; ``"mixed"``: all three (the blur budget
        split at random), with a small acceleration.
    max_blur, min_blur : float
        Range of the largest displacement over the exposure, in pixels.
    acceleration : float, optional
        Change of the translation speed over the exposure relative to the speed (default 0,
        or 0.2 for ``"mixed"``).
    seed : int, numpy.random.Generator, torch.Generator or None

    Returns
    -------
    CameraPath
    """
    h, w = check_shape2(shape)
    if motion not in MOTION_KINDS:
        raise ValueError(f"motion must be one of {MOTION_KINDS}, got {motion!r}")
    _check_positive("max_blur", max_blur)
    _check_positive("min_blur", min_blur)
    if min_blur > max_blur:
        raise ValueError(f"min_blur ({min_blur}) must not exceed max_blur ({max_blur})")
    if not isinstance(n_frames, numbers.Integral) or isinstance(n_frames, bool) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    n = int(n_frames)
    rng = as_generator(seed)
    if acceleration is None:
        acceleration = 0.2 if motion == "mixed" else 0.0
    _check_positive("acceleration", acceleration)
    blur = rng.uniform(min_blur, max_blur)
    weights = {"translation": (1.0, 0.0, 0.0), "rotation": (0.0, 1.0, 0.0), "zoom": (0.0, 0.0, 1.0)}.get(motion)
    if weights is None:
        weights = tuple(rng.dirichlet([2.0, 1.0, 1.0]))
    ang = rng.uniform(0, 2 * math.pi)
    speed = weights[0] * blur / n
    v = (speed * math.cos(ang), speed * math.sin(ang))
    acc_ang = rng.uniform(0, 2 * math.pi)
    amag = float(acceleration) * speed / max(n / 2.0, 1.0) * rng.uniform(0.5, 1.0)
    a = (amag * math.cos(acc_ang), amag * math.sin(acc_ang))
    if motion == "zoom":
        center = (rng.uniform(0.25, 0.75) * (w - 1), rng.uniform(0.25, 0.75) * (h - 1))
    else:
        center = (rng.uniform(0, w - 1), rng.uniform(0, h - 1))
    far = max(math.hypot(cx - center[0], cy - center[1]) for cx in (0, w - 1) for cy in (0, h - 1))
    far = max(far, 1.0)
    omega = weights[1] * blur / far / n * (1 if rng.random() < 0.5 else -1)
    zeta = weights[2] * blur / far / n * (1 if rng.random() < 0.5 else -1)
    # plain floats: the Dirichlet weights are numpy scalars, which read as np.float64(...) in a repr
    return CameraPath(velocity=(float(v[0]), float(v[1])), acceleration=(float(a[0]), float(a[1])),
                      omega=float(omega), zeta=float(zeta),
                      center=(float(center[0]), float(center[1])))


def _as_photo(image) -> np.ndarray:
    try:
        import torch

        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().double().numpy()
            if image.ndim == 3:
                image = np.moveaxis(image, 0, -1)
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    if image.dtype.kind not in "uif":
        raise TypeError(f"image must be numeric, got dtype {image.dtype}")
    img = image.astype(np.float64)
    if np.issubdtype(image.dtype, np.integer):
        img = img / float(np.iinfo(image.dtype).max)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if img.shape[-1] == 4:  # RGBA, as the library's photo functions read it: alpha is coverage, not light
        img = img[..., :3]
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or Inf")
    if img.min() < 0 or img.max() > 1:
        raise ValueError(f"image values must lie in [0, 1], got [{img.min():.3g}, {img.max():.3g}]")
    return img


def _warp(photo: np.ndarray, coords: np.ndarray, origin: tuple[int, int], order: int) -> np.ndarray:
    """Sample ``photo`` (H, W, C) at ``coords`` (2, h, w) (x, y) + origin (x0, y0)."""
    rows = coords[1] + origin[1]
    cols = coords[0] + origin[0]
    out = np.empty(coords.shape[1:] + (photo.shape[2],))
    for ch in range(photo.shape[2]):
        out[..., ch] = ndimage.map_coordinates(photo[..., ch], [rows, cols], order=order, mode="mirror",
                                               prefilter=order > 1)
    return out


@dataclass
class _Foreground:
    texture: np.ndarray  # (h, w, C) linear intensity
    alpha: np.ndarray  # (h, w)
    position: tuple[float, float]  # top-left (x, y) in frame pixels at τ = 0
    velocity: tuple[float, float]  # px/frame (screen space)

    def layer(self, shape, tau, order):
        """(colour (H, W, C), alpha (H, W)) of the layer at time τ."""
        h, w = shape
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        lx = x - self.position[0] - self.velocity[0] * tau
        ly = y - self.position[1] - self.velocity[1] * tau
        col = np.stack([ndimage.map_coordinates(self.texture[..., c], [ly, lx], order=order, mode="constant",
                                                cval=0.0, prefilter=order > 1)
                        for c in range(self.texture.shape[2])], -1)
        a = ndimage.map_coordinates(self.alpha, [ly, lx], order=1, mode="constant", cval=0.0)
        return col, np.clip(a, 0.0, 1.0)


def render_frames(photo: np.ndarray | torch.Tensor, shape: tuple[int, int], path: CameraPath, times: Iterable[float],
                  origin: tuple[int, int] | None = None, foreground: "_Foreground | None" = None,
                  order: int = 3) -> np.ndarray:
    """Render sharp frames in linear intensity: ``(len(times), H, W, C)`` float64.

    ``photo`` is ``(H0, W0, C)`` in [0, 1] (already linear; with C = 4, RGBA, whose alpha is
    dropped), ``origin`` the integer crop origin
    ``(x0, y0)`` (default: centred), ``times`` finite (frames from the middle one), ``order`` the
    spline order 0..5; other values raise ``TypeError``/``ValueError`` naming the argument."""
    photo = _as_photo(photo)
    h, w = check_shape2(shape)
    if not isinstance(path, CameraPath):
        raise TypeError(f"path must be a CameraPath, got {type(path).__name__}")
    if isinstance(times, (str, bytes)) or not hasattr(times, "__iter__"):
        raise TypeError(f"times must be a sequence of numbers (frames from the middle one), got {type(times).__name__}")
    times = list(times)
    if not all(is_finite_real(t) for t in times):  # a NaN time gives a NaN frame silently
        raise ValueError(f"times must be finite numbers, got {times!r}")
    if origin is None:
        origin = ((photo.shape[1] - w) // 2, (photo.shape[0] - h) // 2)
    elif isinstance(origin, (str, bytes)) or not hasattr(origin, "__len__") or len(origin) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in origin):
        raise ValueError(f"origin must be None or a pair (x0, y0) of ints, got {origin!r}")
    if foreground is not None and not isinstance(foreground, _Foreground):
        raise TypeError(f"foreground must be None or a foreground layer, got {type(foreground).__name__}")
    _check_order(order)
    frames = []
    for tau in times:
        f = _warp(photo, path.source_coords((h, w), float(tau)), origin, order)
        if foreground is not None:
            col, a = foreground.layer((h, w), float(tau), order)
            f = (1 - a[..., None]) * f + a[..., None] * col
        frames.append(np.clip(f, 0.0, 1.0))
    return np.stack(frames)


def average_frames(frames: Any, gamma: float | None = 2.2) -> np.ndarray:
    """GOPRO averaging of gamma-encoded frames ``Ŝ[i]`` ``(N, H, W, C)``: ``g(mean g⁻¹(Ŝ))``.

    ``gamma=None`` (or 1) averages the values directly. Frames must be finite (NaN/Inf raise
    ``ValueError``) and at least one; float frames must be on the [0, 1] scale (values beyond
    [-0.5, 1.5], e.g. 0-255 floats, raise ``ValueError``); the overshoot noise leaves is clipped
    under the gamma curve.
    Unsigned integer frames (``uint8``/``uint16``, as video decoders give them) are read on
    their full range (``value / 255``, ``value / 65535``); other integer types raise
    ``TypeError``. The result is float64 on the [0, 1] scale."""
    try:
        fr = np.asarray(frames)
    except ValueError:  # numpy's "inhomogeneous shape" message names neither frames nor sizes
        shapes = sorted({tuple(np.shape(f)) for f in frames})
        raise ValueError(f"frames must all have one shape (H, W, C), got shapes {shapes}") from None
    if fr.dtype.kind == "u":
        # clipping 0..255 to [0, 1] would have turned every frame white
        fr = fr / float(np.iinfo(fr.dtype).max)
    elif fr.dtype.kind != "f":  # signed ints: 0..1 or 0..255? bools, strings: not images
        raise TypeError(f"frames must be float (on the [0, 1] scale) or unsigned integers, "
                        f"got dtype {fr.dtype}")
    fr = fr.astype(np.float64, copy=False)
    if fr.ndim != 4:
        raise ValueError(f"frames must be (N, H, W, C), got shape {fr.shape}")
    if fr.shape[0] < 1:
        raise ValueError(f"frames must hold at least one frame, got shape {fr.shape}")
    if not np.all(np.isfinite(fr)):  # np.clip would keep a NaN, and an Inf gives a NaN mean
        raise ValueError("frames contain NaN or Inf")
    if fr.size:  # float frames on 0-255 would be clipped white under the camera curve
        check_unit_scale(float(fr.min()), float(fr.max()), "frames")
    g = _crf_gamma(gamma)
    if g is None:
        return fr.mean(0)
    return (np.clip(fr, 0, 1) ** g).mean(0) ** (1.0 / g)


@dataclass(repr=False)
class VideoBlurSample(ArrayFieldsRepr):
    """One synthesised (blurred, sharp) pair with its true motion.

    Attributes
    ----------
    blurred, sharp : numpy.ndarray
        ``(H, W, C)`` float32 in [0, 1], gamma-encoded (observed) intensities.
    flow_next, flow_prev : numpy.ndarray
        ``(2, H, W)`` float32 flows from the middle (sharp) frame to the middle frames of the
        next / previous blurred frame (``spacing`` frames away).
    exposure_flow : numpy.ndarray
        ``(2, H, W)`` float32 motion during the exposure (line-kernel label for ``MotionBlur``).
    frames : numpy.ndarray or None
        ``(N, H, W, C)`` gamma-encoded sharp frames when requested.
    n_frames : int
        ``N``, the number of averaged frames.
    gamma : float or None
        CRF gamma used (None: linear averaging).
    path : CameraPath
        The camera path.
    foreground_mask : numpy.ndarray or None
        ``(H, W)`` alpha of the foreground layer in the middle frame.
    meta : dict
        Provenance of the sample (``origin``, ``spacing``, ``motion``).
    """

    blurred: np.ndarray
    sharp: np.ndarray
    flow_next: np.ndarray
    flow_prev: np.ndarray
    exposure_flow: np.ndarray
    n_frames: int
    gamma: float | None
    path: CameraPath
    frames: np.ndarray | None = None
    foreground_mask: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _make_foreground(photo_lin, shape, n, max_blur, rng) -> _Foreground:
    h, w = shape
    fh = int(rng.integers(max(4, h // 5), max(5, h // 2)))
    fw = int(rng.integers(max(4, w // 5), max(5, w // 2)))
    # texture: a flipped, colour-permuted patch of the photo (independent of the background)
    ph, pw = photo_lin.shape[:2]
    y0 = int(rng.integers(0, max(1, ph - fh)))
    x0 = int(rng.integers(0, max(1, pw - fw)))
    tex = photo_lin[y0:y0 + fh, x0:x0 + fw][::-1, ::-1]
    if tex.shape[:2] != (fh, fw):
        tex = np.resize(tex, (fh, fw, photo_lin.shape[2]))
    tex = tex[..., rng.permutation(tex.shape[2])]
    yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float64)
    r = ((yy - (fh - 1) / 2) / (fh / 2)) ** 2 + ((xx - (fw - 1) / 2) / (fw / 2)) ** 2
    alpha = np.clip((1.0 - r) * 8.0, 0.0, 1.0)  # ellipse with a soft 1-2 px edge
    pos = (float(rng.uniform(0, w - fw)), float(rng.uniform(0, h - fh)))
    speed = rng.uniform(0.3, 1.0) * max_blur / n
    ang = rng.uniform(0, 2 * math.pi)
    return _Foreground(np.ascontiguousarray(tex), alpha, pos, (speed * math.cos(ang), speed * math.sin(ang)))


def check_clip_options(motion: str, max_blur: float, gamma: float | None, n_frames: int | None,
                       foreground: bool) -> None:
    """The clip settings a data set passes to every synthesis call, checked once when it is built
    (a bad one would otherwise stop training at the first item, inside a DataLoader worker)."""
    if motion not in MOTION_KINDS:
        raise ValueError(f"motion must be one of {MOTION_KINDS}, got {motion!r}")
    _check_positive("max_blur", max_blur)
    _crf_gamma(gamma)
    if n_frames is not None and (not isinstance(n_frames, numbers.Integral) or isinstance(n_frames, bool)
                                 or n_frames < 1 or n_frames % 2 == 0):
        raise ValueError(f"n_frames must be a positive odd int (7-13 in GOPRO) or None, got {n_frames!r}")
    check_flag(foreground, "foreground")


def _check_clip(image, n_frames, spacing, order, rng):
    """Validate the clip settings shared by the video synthesisers; draw N if not given."""
    photo = _as_photo(image)
    if n_frames is None:
        n_frames = int(rng.choice([7, 9, 11, 13]))
    if not isinstance(n_frames, numbers.Integral) or isinstance(n_frames, bool) or n_frames < 1 or n_frames % 2 == 0:
        raise ValueError(f"n_frames must be a positive odd int (7-13 in GOPRO), got {n_frames!r}")
    n = int(n_frames)
    spacing = n if spacing is None else spacing
    if not isinstance(spacing, numbers.Integral) or isinstance(spacing, bool) or spacing < 1:
        raise ValueError(f"spacing must be a positive int, got {spacing!r}")
    _check_order(order)
    return photo, n, int(spacing)


def _check_order(order) -> None:
    """The spline order of the resampling: an int in 0..5 (True would read as 1)."""
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 0 <= order <= 5:
        raise ValueError(f"order must be an int in 0..5, got {order!r}")


class _Scene(NamedTuple):
    """Output size, linearised photo, camera path and foreground of one synthetic clip."""

    h: int
    w: int
    lin_gamma: Optional[float]
    photo_lin: np.ndarray
    path: "CameraPath"
    fg: Optional["_Foreground"]
    origin: tuple

    @classmethod
    def build(cls, photo, shape, max_blur, n_blurred, n, motion, min_blur, acceleration, gamma,
              path, foreground, order, rng) -> "_Scene":
        _check_positive("max_blur", max_blur)
        check_flag(foreground, "foreground")  # a string such as "no" would add a foreground
        if shape is None:
            # leave a margin for the motion of n_blurred exposures so little border enters
            m = int(math.ceil(max_blur * (n_blurred + 1) / 2.0))
            shape = (photo.shape[0] - 2 * m, photo.shape[1] - 2 * m)
            if min(shape) < 8:
                raise ValueError(f"photo of shape {photo.shape[:2]} is too small for max_blur={max_blur}"
                                 + (f" and n_blurred={n_blurred}" if n_blurred > 1 else ""))
        h, w = check_shape2(shape)
        if h > photo.shape[0] or w > photo.shape[1]:
            raise ValueError(f"shape {shape} is larger than the photo {photo.shape[:2]}")
        lin_gamma = _crf_gamma(gamma)
        photo_lin = photo ** lin_gamma if lin_gamma else photo
        if path is None:
            path = random_camera_path((h, w), n, motion, max_blur, min_blur, acceleration, rng)
        elif not isinstance(path, CameraPath):
            raise TypeError(f"path must be a CameraPath, got {type(path).__name__}")
        fg = _make_foreground(photo_lin, (h, w), n, max_blur, rng) if foreground else None
        origin = ((photo.shape[1] - w) // 2, (photo.shape[0] - h) // 2)
        return cls(h, w, lin_gamma, photo_lin, path, fg, origin)

    def encode(self, z: np.ndarray) -> np.ndarray:
        """Linear intensity -> the camera's stored values (clip, then the inverse gamma)."""
        z = np.clip(z, 0, 1)
        return z ** (1.0 / self.lin_gamma) if self.lin_gamma else z

def synthesize_video_blur(
    image: np.ndarray | torch.Tensor,
    shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
    motion: str = "mixed",
    max_blur: float = 20.0,
    min_blur: float = 2.0,
    acceleration: float | None = None,
    gamma: float | None = 2.2,
    foreground: bool = False,
    spacing: int | None = None,
    path: CameraPath | None = None,
    return_frames: bool = False,
    order: int = 3,
    seed: int | np.random.Generator | torch.Generator | None = None,
) -> VideoBlurSample:
    """Synthesise a GOPRO-style (blurred, sharp) pair from a photo, with its true flows.

    Parameters
    ----------
    image : numpy ``(H0, W0[, C])`` or torch ``(C, H0, W0)`` in [0, 1]
        The photo, gamma-encoded (like an ordinary 8-bit image); it is linearised with
        ``x^γ`` before rendering. With C = 4 it is RGBA, as for ``pd.deblur``: the alpha
        channel (coverage, not light) is dropped and the frames have three channels.
    shape : (int, int), optional
        Output ``(H, W)``; default: the photo size minus a margin of ``max_blur`` on each side
        (so little of the reflected border enters the frames).
    n_frames : int, optional
        Odd number ``N`` of averaged frames; default a random odd number in 7–13.
    motion : {"translation", "rotation", "zoom", "mixed"}
        Camera motion kind (see :func:`random_camera_path`).
    max_blur, min_blur : float
        Range of the largest displacement during the exposure, in pixels.
    acceleration : float, optional
        Relative change of the translation speed over the exposure (default 0, or 0.2 for
        ``"mixed"``).
    gamma : float or None
        CRF gamma (2.2 as in GOPRO); ``None`` or 1 averages the photo's values directly.
    foreground : bool
        Add an elliptical textured layer moving with its own constant velocity.
    spacing : int, optional
        Frames between the middle frames of consecutive blurred frames (default ``N``).
    path : CameraPath, optional
        Use this camera path instead of a random one.
    return_frames : bool
        Keep the ``N`` sharp frames in the result.
    order : int
        Spline order of the frame resampling (default 3).
    seed : int, numpy.random.Generator, torch.Generator or None

    Returns
    -------
    VideoBlurSample
    """
    return_frames = check_flag(return_frames, "return_frames")
    rng = as_generator(seed)
    photo, n, spacing = _check_clip(image, n_frames, spacing, order, rng)
    scene = _Scene.build(
        photo, shape, max_blur, 1, n, motion, min_blur, acceleration, gamma, path, foreground, order, rng
    )
    h, w, lin_gamma, photo_lin, path, fg, origin = scene
    c = (n - 1) / 2.0
    times = np.arange(n) - c
    frames_lin = render_frames(photo_lin, (h, w), path, times, origin, fg, order)
    blurred_lin = frames_lin.mean(0)
    enc = scene.encode
    sharp = enc(frames_lin[n // 2])
    blurred = enc(blurred_lin)
    flow_next = path.flow((h, w), float(spacing))
    flow_prev = path.flow((h, w), -float(spacing))
    exposure = path.scene_position((h, w), n / 2.0) - path.scene_position((h, w), -n / 2.0)
    mask = None
    if fg is not None:
        _, mask = fg.layer((h, w), 0.0, order)
        sel = mask > 0.5
        for f, t in ((flow_next, spacing), (flow_prev, -spacing)):
            f[0][sel] = fg.velocity[0] * t
            f[1][sel] = fg.velocity[1] * t
        exposure[0][sel] = fg.velocity[0] * n
        exposure[1][sel] = fg.velocity[1] * n
    return VideoBlurSample(
        blurred=blurred.astype(np.float32),
        sharp=sharp.astype(np.float32),
        flow_next=flow_next.astype(np.float32),
        flow_prev=flow_prev.astype(np.float32),
        exposure_flow=exposure.astype(np.float32),
        n_frames=n,
        gamma=lin_gamma,
        path=path,
        frames=enc(frames_lin).astype(np.float32) if return_frames else None,
        foreground_mask=None if mask is None else mask.astype(np.float32),
        meta={"origin": origin, "spacing": int(spacing), "motion": motion},
    )


@dataclass(repr=False)
class VideoSequenceSample(ArrayFieldsRepr):
    """``K`` consecutive synthesised blurred frames of one clip (for Reblur2Deblur-style training).

    Attributes
    ----------
    blurred, sharp : numpy.ndarray
        ``(K, H, W, C)`` float32: blurred frames and their sharp middle frames (gamma-encoded).
    flows_next, flows_prev : numpy.ndarray
        ``(K, 2, H, W)`` float32: flow from sharp frame ``k`` to sharp frame ``k + 1`` / ``k − 1``
        (defined by the camera path also at the ends of the clip).
    exposure_flows : numpy.ndarray
        ``(K, 2, H, W)`` float32 motion during exposure ``k`` (line-kernel labels).
    n_frames, spacing : int
        Frames averaged per blurred frame, and frames between consecutive blurred frames.
    gamma : float or None
    path : CameraPath
    foreground_masks : numpy.ndarray or None
        ``(K, H, W)`` alpha of the foreground layer in each sharp frame.
    """

    blurred: np.ndarray
    sharp: np.ndarray
    flows_next: np.ndarray
    flows_prev: np.ndarray
    exposure_flows: np.ndarray
    n_frames: int
    spacing: int
    gamma: float | None
    path: CameraPath
    foreground_masks: np.ndarray | None = None


def synthesize_video_sequence(
    image: np.ndarray | torch.Tensor,
    n_blurred: int = 3,
    shape: tuple[int, int] | None = None,
    n_frames: int | None = None,
    motion: str = "mixed",
    max_blur: float = 10.0,
    min_blur: float = 2.0,
    acceleration: float | None = None,
    gamma: float | None = 2.2,
    foreground: bool = False,
    spacing: int | None = None,
    path: CameraPath | None = None,
    order: int = 3,
    seed: int | np.random.Generator | torch.Generator | None = None,
) -> VideoSequenceSample:
    """Synthesise ``n_blurred`` consecutive GOPRO-style blurred frames of one clip.

    Blurred frame ``k`` (``k = 0 .. K−1``, centred on the clip's middle) averages the ``N``
    sharp frames around time ``τ_k = (k − (K−1)/2) · spacing`` in linear intensity, exactly as
    :func:`synthesize_video_blur` does for one frame; ``spacing`` defaults to ``N`` (a video
    whose exposures follow each other without gap). Parameters are those of
    :func:`synthesize_video_blur`; ``max_blur`` bounds the blur of one exposure, and the
    output size default leaves a margin of ``max_blur`` times the clip length in exposures.

    Returns
    -------
    VideoSequenceSample
    """
    rng = as_generator(seed)
    if not isinstance(n_blurred, numbers.Integral) or isinstance(n_blurred, bool) or n_blurred < 1:
        raise ValueError(f"n_blurred must be a positive int, got {n_blurred!r}")
    k_out = int(n_blurred)
    photo, n, spacing = _check_clip(image, n_frames, spacing, order, rng)
    scene = _Scene.build(
        photo, shape, max_blur, k_out, n, motion, min_blur, acceleration, gamma, path, foreground, order, rng
    )
    h, w, lin_gamma, photo_lin, path, fg, origin = scene
    enc = scene.encode
    offsets = np.arange(n) - (n - 1) / 2.0
    blurred, sharp, fnext, fprev, fexp, masks = [], [], [], [], [], []
    for k in range(k_out):
        tk = (k - (k_out - 1) / 2.0) * spacing
        frames = render_frames(photo_lin, (h, w), path, tk + offsets, origin, fg, order)
        blurred.append(enc(frames.mean(0)))
        sharp.append(enc(frames[n // 2]))
        fn = path.flow_between((h, w), tk, tk + spacing)
        fp = path.flow_between((h, w), tk, tk - spacing)
        fe = path.flow_between((h, w), tk, tk + n / 2.0) - path.flow_between((h, w), tk, tk - n / 2.0)
        if fg is not None:
            _, a = fg.layer((h, w), tk, order)
            sel = a > 0.5
            for f, dt in ((fn, spacing), (fp, -spacing), (fe, n)):
                f[0][sel] = fg.velocity[0] * dt
                f[1][sel] = fg.velocity[1] * dt
            masks.append(a)
        fnext.append(fn)
        fprev.append(fp)
        fexp.append(fe)
    f32 = lambda z: np.stack(z).astype(np.float32)  # noqa: E731
    return VideoSequenceSample(
        blurred=f32(blurred), sharp=f32(sharp), flows_next=f32(fnext), flows_prev=f32(fprev),
        exposure_flows=f32(fexp), n_frames=n, spacing=int(spacing), gamma=lin_gamma, path=path,
        foreground_masks=f32(masks) if masks else None,
    )
