"""Torch datasets for deblurring: synthetic pairs, GOPRO, Köhler, paired and blurred-only folders.

Every item is a dict of ``torch.float32`` tensors in ``(C, H, W)`` layout with values in
[0, 1] (flows ``(2, H, W)`` in pixels) plus a ``"name"`` string, so the default
``DataLoader`` collation stacks them into ``(N, C, H, W)`` batches when the images share a
size (use ``crop``).

Images are read with :func:`skimage.io.imread` (16-bit PNGs by :mod:`pnpdeblur.data._png`, at
full precision); 8/16-bit integers are scaled to [0, 1],
alpha channels dropped, grey images replicated to ``channels`` (default 3).

Randomness: a dataset with ``seed=None`` draws fresh augmentations on every access; with
an int ``seed`` and ``fixed=True`` item ``i`` is always the same (use it for validation);
with an int ``seed`` and ``fixed=False`` the augmentation stream is reproducible from the
start of iteration (per worker).
"""
from __future__ import annotations

import math
import numbers
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_flag
from .._images import check_unit_scale
from ._utils import check_channels
from .augment import PairAugment
from .image_files import _match_channels, _unit_float, _upright_size, list_images, read_image
# re-exports, not used here: they were defined in this module before image_files.py, and tests and
# users import them from pnpdeblur.data.datasets
from .image_files import IMAGE_EXTENSIONS, _pillow_peek, exif_orientation  # noqa: F401

__all__ = [
    # re-exported from image_files.py and augment.py
    "IMAGE_EXTENSIONS",
    "exif_orientation",
    "read_image",
    "list_images",
    "PairAugment",
    # defined here
    "SyntheticBlurDataset",
    "SyntheticVideoDataset",
    "GoProDataset",
    "KohlerDataset",
    "PairedFolderDataset",
    "BlurredFolderDataset",
]


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0), dtype=np.float32))


class _Base(Dataset):
    def __init__(self, transform: PairAugment | Callable | None, seed, fixed: bool):
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be a PairAugment or callable, got {type(transform).__name__}")
        fixed = check_flag(fixed, "fixed")
        if fixed and seed is None:
            raise ValueError("fixed=True needs an int seed")
        if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
            raise TypeError(f"seed must be None or an int, got {type(seed).__name__}")
        self.transform = transform
        self.seed = seed
        self.fixed = fixed
        self._rng = None
        self._rng_owner = None

    def _item_rng(self, index: int) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([int(self.seed), int(index)])
        info = torch.utils.data.get_worker_info()
        wid = 0 if info is None else info.id
        # A DataLoader worker gets a copy of the dataset, with whatever stream the main
        # process (or another worker) had already started: start its own instead.
        owner = (os.getpid(), wid)
        if self._rng is None or self._rng_owner != owner:
            self._rng = np.random.default_rng(None if self.seed is None else [int(self.seed), 2**31 + wid])
            self._rng_owner = owner
        return self._rng

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        return int(index) % n

    def _finish(self, images, flows, rng, name, noisy=("blurred",)) -> dict[str, Any]:
        if self.transform is not None:
            if isinstance(self.transform, PairAugment):
                images, flows = self.transform(images, rng, flows, noisy)
            else:
                images, flows = self.transform(images, rng, flows)
        out: dict[str, Any] = {}
        for k, v in images.items():
            out[k] = _to_tensor(v) if v.ndim == 3 else torch.from_numpy(
                np.ascontiguousarray(np.moveaxis(v, -1, 1), dtype=np.float32))
        for k, v in flows.items():
            out[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        out["name"] = name
        return out


def _check_pair(a: np.ndarray, b: np.ndarray, pa, pb):
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"mismatched image sizes: {pa} is {a.shape[:2]}, {pb} is {b.shape[:2]}")




def _fit_sources(sources: list, labels: list[str], need: tuple[int, int], default: bool) -> list:
    """Drop (default sample set) or reject (user images) images smaller than ``need``.

    Image files are checked too, from their headers: an unreadable or too small file in a training
    folder would otherwise stop a run at the random step that first draws it, hours in.
    """
    out, small = [], []
    for s, label in zip(sources, labels):
        size = s.shape[:2] if isinstance(s, np.ndarray) else _upright_size(s)
        if size[0] < need[0] or size[1] < need[1]:
            if default:
                continue
            if isinstance(s, np.ndarray):
                raise ValueError(f"{label} of size {size} is smaller than the required {need}")
            small.append(f"{s} {tuple(size)}")
            continue
        out.append(s)
    if small:
        _refuse_small_files(small, need)
    if not out:
        raise ValueError(f"no source image is at least {need} pixels")
    return out


def _refuse_small_files(small: list[str], need: tuple[int, int]) -> None:
    listed = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
    raise ValueError(f"{len(small)} image file(s) are smaller than the required {need} (H, W): {listed}; "
                     "remove them or lower the crop")


def _check_pair_files(pairs: list[tuple[Path, Path, str]], transform) -> None:
    """Every (blurred, sharp) file pair, from the headers: one size, and at least the crop of a
    :class:`PairAugment` ``transform``; a bad pair would stop training at the step that draws it."""
    need = transform.crop if isinstance(transform, PairAugment) else None
    small = []
    for pb, ps, _ in pairs:
        sb, ss = _upright_size(pb), _upright_size(ps)
        if sb != ss:
            raise ValueError(f"mismatched image sizes: {pb} is {sb}, {ps} is {ss}")
        if need is not None and (sb[0] < need[0] or sb[1] < need[1]):
            small.append(f"{pb} {sb}")
    if small:
        _refuse_small_files(small, need)


def _images_from(source, channels) -> tuple[list[np.ndarray | Path], list[str]]:
    """The sources as arrays (decoded sample names, checked arrays) and paths, and a label for each
    that error messages use (``images[i]``, with the sample's name for a sample)."""
    from .samples import sample_image, sample_images

    check_channels(channels)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        paths = list_images(source, recursive=True)
        return paths, [str(p) for p in paths]
    if isinstance(source, (str, os.PathLike)):
        raise FileNotFoundError(f"images folder not found: {source}")
    if source is None:
        source = sample_images()
    # one photo would be iterated row by row, as many one-row images: it must come in a list
    if (isinstance(source, np.ndarray) and source.ndim < 4) or not hasattr(source, "__iter__"):
        what = f"an array of shape {source.shape} (one photo: pass [photo])" if isinstance(source, np.ndarray) \
            else type(source).__name__
        raise TypeError(f"images must be a folder, or a sequence of sample names, paths and arrays, got {what}")
    out, labels = [], []
    for i, s in enumerate(source):
        labels.append(f"images[{i}]")
        if isinstance(s, str) and s in sample_images():
            out.append(sample_image(s, channels=channels))
            labels[-1] += f" (sample {s!r})"
        elif isinstance(s, (str, os.PathLike)):
            out.append(Path(s))
        elif isinstance(s, np.ndarray):
            if s.dtype.kind in "iu" and s.dtype.itemsize > 2:  # e.g. numpy's default int64
                raise TypeError(f"images[{i}] has dtype {s.dtype}, which has no white level: give uint8 or "
                                "uint16 integers, or floats in [0, 1]")
            # as read_image reads a file: uint8 on 0..255 became 0..255 floats here, so the sharp
            # crops of skimage.data's photos were 255 times too bright beside their blurred ones
            a = _unit_float(s)
            if a is None:
                raise TypeError(f"images[{i}] must be a float, integer or bool array, got dtype {s.dtype}")
            if a.ndim == 2:
                a = a[:, :, None]
            if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or not np.all(np.isfinite(a)) or a.size == 0:
                raise ValueError(f"images[{i}] must be a finite, non-empty (H, W[, C]) array with C in 1..4, "
                                 f"got shape {s.shape}")
            if s.dtype.kind == "f":  # 0-255 floats would give sharp crops 255 times their blurred ones
                check_unit_scale(float(a.min()), float(a.max()), f"images[{i}]")
            out.append(np.ascontiguousarray(np.clip(_match_channels(a, channels), 0.0, 1.0)))  # as read_image
        else:
            raise TypeError(f"images[{i}] must be a sample name, a path or a numpy array, got {type(s).__name__}")
    if not out:
        raise ValueError("images must not be empty")
    return out, labels


class SyntheticBlurDataset(_Base):
    """On-the-fly (blurred, sharp, flow) triples: Gong-style flows through ``MotionBlur``.

    Each item crops a random ``crop`` patch of a random source image (after ``transform``-free
    random flips), draws a flow with :func:`pnpdeblur.data.random_motion_flow` and blurs it
    with :func:`pnpdeblur.data.synthesize_flow_blur` (+ Gaussian noise).

    Parameters
    ----------
    images : sequence of sample names / paths / arrays, or a folder; default all
        :func:`pnpdeblur.data.sample_images`. Arrays ``(H, W[, C])`` are read as
        :func:`read_image` reads files: integer ones over their type's range (a uint8 photo
        ÷ 255), alpha dropped, converted to ``channels``. Every image must hold a ``crop``
        patch; files are checked from their headers when the data set is built (``ValueError``
        listing the small ones, or naming an unreadable file), not at the step that draws them.
    length : int
        Items per epoch.
    crop : int or (int, int)
        Patch size (default 128).
    preset : {"23", "46"}
        Flow label range.
    noise_sigma : float or (float, float)
        Noise std or range.
    seed, fixed : see the module docstring.
    channels : {1, 3}
    flow_kwargs : dict, optional
        Passed to :func:`random_motion_flow`.
    transform : PairAugment or callable, optional
        Applied to each item's images and flow (e.g. :class:`PairAugment`).
    blur : bool
        Blur here (default). ``False`` leaves out ``"blurred"`` (and the noise) so that a
        training loop can blur whole batches on its device (the CUDA operator is ~100× faster
        than the CPU one).

    Items: ``{"blurred": (C,H,W), "sharp": (C,H,W), "flow": (2,H,W), "name": str}``.
    """

    def __init__(self, images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray] | None = None,
                 length: int = 1000, crop: int | tuple[int, int] = 128,
                 preset: str | int = "23", noise_sigma: float | tuple[float, float] = 0.01,
                 seed: int | None = None, fixed: bool = False, channels: int = 3,
                 flow_kwargs: dict | None = None, transform: PairAugment | Callable | None = None, blur: bool = True):
        super().__init__(transform, seed, fixed)
        self.blur = check_flag(blur, "blur")
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        self.sources, labels = _images_from(images, channels)
        self.length = int(length)
        self.crop = PairAugment(crop=crop, hflip=True, vflip=True).crop
        self.preset, self.noise_sigma, self.channels = preset, noise_sigma, channels
        self.flow_kwargs = dict(flow_kwargs or {})
        from .flows import random_motion_flow
        from .synthetic import check_noise_sigma

        # a bad preset, flow option or noise level would otherwise surface at the first item, inside
        # a DataLoader worker: one tiny flow drawn here checks them all as the items will use them
        random_motion_flow((2, 2), preset, 0, **self.flow_kwargs)
        check_noise_sigma(noise_sigma)
        self.sources = _fit_sources(self.sources, labels, self.crop, images is None)
        self._cropper = PairAugment(crop=self.crop, hflip=True, vflip=True)

    def __len__(self) -> int:
        return self.length

    def _source(self, i: int) -> tuple[np.ndarray, str]:
        s = self.sources[i]
        if isinstance(s, Path):
            return read_image(s, self.channels), s.name
        return s, f"image{i}"

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .synthetic import synthesize_flow_blur

        index = self._check_index(index)
        rng = self._item_rng(index)
        img, name = self._source(int(rng.integers(0, len(self.sources))))
        imgs, _ = self._cropper({"sharp": img}, rng)
        if not self.blur:
            from .flows import random_motion_flow

            sharp = np.ascontiguousarray(imgs["sharp"], dtype=np.float32)
            flow = random_motion_flow(sharp.shape[:2], self.preset, rng, **self.flow_kwargs)
            return self._finish({"sharp": sharp}, {"flow": flow}, rng, f"{name}#{index}", noisy=())
        sample = synthesize_flow_blur(imgs["sharp"], self.preset, self.noise_sigma, seed=rng, **self.flow_kwargs)
        return self._finish({"blurred": sample.blurred, "sharp": sample.sharp}, {"flow": sample.flow}, rng,
                            f"{name}#{index}", noisy=())


class SyntheticVideoDataset(_Base):
    """On-the-fly GOPRO-style pairs from :func:`pnpdeblur.data.synthesize_video_blur`.

    Items: ``{"blurred", "sharp": (C,H,W), "flow_next", "flow_prev", "exposure_flow": (2,H,W),
    "n_frames": int, "name"}``. ``crop`` sets the rendered frame size directly (the source
    photo is first randomly cropped to ``crop`` plus a margin).

    With ``n_blurred = K > 1`` an item is a clip of ``K`` consecutive blurred frames from
    :func:`pnpdeblur.data.synthesize_video_sequence` (Reblur2Deblur-style training): images
    ``(K, C, H, W)`` and flows ``(K, 2, H, W)`` under the same keys.
    """

    def __init__(self, images: str | os.PathLike | Iterable[str | os.PathLike | np.ndarray] | None = None,
                 length: int = 200, crop: int | tuple[int, int] = 128,
                 motion: str = "mixed", max_blur: float = 16.0, gamma: float | None = 2.2,
                 foreground: bool = False, n_frames: int | None = None, seed: int | None = None,
                 fixed: bool = False, channels: int = 3, noise_sigma: float | None = None,
                 n_blurred: int = 1):
        super().__init__(None, seed, fixed)
        if not isinstance(n_blurred, numbers.Integral) or n_blurred < 1:
            raise ValueError(f"n_blurred must be a positive int, got {n_blurred!r}")
        self.n_blurred = int(n_blurred)
        if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        from .video import check_clip_options

        check_clip_options(motion, max_blur, gamma, n_frames, foreground)
        self.sources, labels = _images_from(images, channels)
        self.length = int(length)
        self.crop = PairAugment(crop=crop).crop
        self.motion, self.max_blur, self.gamma = motion, float(max_blur), gamma
        self.foreground, self.n_frames, self.channels = foreground, n_frames, channels
        self.noise = PairAugment(hflip=False, noise_sigma=noise_sigma, canonical_flow=False) if noise_sigma else None
        self._src_crop = PairAugment(crop=self.source_size(self.crop, self.max_blur, self.n_blurred), hflip=True)
        self.sources = _fit_sources(self.sources, labels, self._src_crop.crop, images is None)

    @staticmethod
    def source_size(crop: int | tuple[int, int], max_blur: float, n_blurred: int = 1) -> tuple[int, int]:
        """``(H, W)`` a source photo needs for ``crop``-sized frames: the crop plus a margin for the
        camera's motion over ``n_blurred`` exposures of up to ``max_blur`` px, so that little border
        enters the frames."""
        h, w = PairAugment(crop=crop).crop
        m = int(math.ceil(float(max_blur) * (n_blurred + 1) / 2.0))
        return h + 2 * m, w + 2 * m

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .video import synthesize_video_blur

        index = self._check_index(index)
        rng = self._item_rng(index)
        i = int(rng.integers(0, len(self.sources)))
        s = self.sources[i]
        img = read_image(s, self.channels) if isinstance(s, Path) else s
        imgs, _ = self._src_crop({"sharp": img}, rng)
        if self.n_blurred > 1:
            from .video import synthesize_video_sequence

            q = synthesize_video_sequence(imgs["sharp"], self.n_blurred, shape=self.crop, n_frames=self.n_frames,
                                          motion=self.motion, max_blur=self.max_blur,
                                          min_blur=min(2.0, self.max_blur), gamma=self.gamma,
                                          foreground=self.foreground, seed=rng)
            images = {"blurred": q.blurred, "sharp": q.sharp}
            if self.noise is not None:
                images, _ = self.noise(images, rng)
            out = {k: torch.from_numpy(np.ascontiguousarray(np.moveaxis(v, -1, 1))) for k, v in images.items()}
            out.update(flow_next=torch.from_numpy(q.flows_next), flow_prev=torch.from_numpy(q.flows_prev),
                       exposure_flow=torch.from_numpy(q.exposure_flows), n_frames=q.n_frames,
                       name=f"video{i}#{index}")
            return out
        v = synthesize_video_blur(imgs["sharp"], shape=self.crop, n_frames=self.n_frames, motion=self.motion,
                                  max_blur=self.max_blur, min_blur=min(2.0, self.max_blur), gamma=self.gamma,
                                  foreground=self.foreground, seed=rng)
        images = {"blurred": v.blurred, "sharp": v.sharp}
        if self.noise is not None:
            images, _ = self.noise(images, rng)
        out = self._finish(images, {"flow_next": v.flow_next, "flow_prev": v.flow_prev,
                                    "exposure_flow": v.exposure_flow}, rng, f"video{i}#{index}")
        out["n_frames"] = v.n_frames
        return out


class PairedFolderDataset(_Base):
    """(blurred, sharp) pairs from two folders, matched by file stem.

    Parameters
    ----------
    blurred_dir, sharp_dir : path-like
    transform : PairAugment or callable, optional
        Applied to each item's images: a :class:`PairAugment`, or any ``f(images, rng, flows) -> (images, flows)``.
    channels : {1, 3}
        Channels the images are converted to (default 3).
    strict : bool
        Raise ``ValueError`` if a file of one folder has no partner in the other (default);
        otherwise keep only the common stems.
    seed, fixed : see the module docstring.

    Items: ``{"blurred": (C,H,W), "sharp": (C,H,W), "name": stem}``. Pairs of different sizes,
    pairs smaller than a :class:`PairAugment` ``transform``'s crop and unreadable files raise
    ``ValueError`` naming the files when the data set is built (from the headers).
    """

    def __init__(self, blurred_dir: str | os.PathLike, sharp_dir: str | os.PathLike,
                 transform: PairAugment | Callable | None = None, channels: int = 3,
                 strict: bool = True, seed: int | None = None, fixed: bool = False):
        super().__init__(transform, seed, fixed)
        self.channels = check_channels(channels)
        self.pairs = self._match(list_images(blurred_dir), list_images(sharp_dir), check_flag(strict, "strict"))
        _check_pair_files(self.pairs, transform)

    @staticmethod
    def _match(blurred: list[Path], sharp: list[Path], strict: bool) -> list[tuple[Path, Path, str]]:
        b = {p.stem: p for p in blurred}
        s = {p.stem: p for p in sharp}
        only_b, only_s = sorted(set(b) - set(s)), sorted(set(s) - set(b))
        if strict and (only_b or only_s):
            raise ValueError(
                f"unpaired images: {len(only_b)} blurred without sharp {only_b[:5]}, "
                f"{len(only_s)} sharp without blurred {only_s[:5]}")
        common = sorted(set(b) & set(s))
        if not common:
            raise ValueError("no (blurred, sharp) pairs with matching file names")
        return [(b[k], s[k], k) for k in common]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        pb, ps, name = self.pairs[index]
        b, s = read_image(pb, self.channels), read_image(ps, self.channels)
        _check_pair(b, s, pb, ps)
        return self._finish({"blurred": b, "sharp": s}, {}, self._item_rng(index), name)


class GoProDataset(PairedFolderDataset):
    """The GOPRO layout of Nah et al.: ``root/[split/]<sequence>/{blur,sharp}/<frame>.png``.

    Parameters
    ----------
    root : path-like
        The dataset folder (e.g. ``GOPRO_Large``).
    split : str, optional
        Sub-folder such as ``"train"`` or ``"test"``.
    blur_dir : str
        ``"blur"`` (default) or ``"blur_gamma"`` (the gamma-corrected averages).
    transform : PairAugment or callable, optional
        Applied to each item's images: a :class:`PairAugment`, or any ``f(images, rng, flows) -> (images, flows)``.
    channels : {1, 3}
        Channels the images are converted to (default 3).
    sequences : sequence of str, optional
        Restrict to these sequence folders.
    seed, fixed : see the module docstring.

    Items: ``{"blurred", "sharp": (C,H,W), "name": "<sequence>/<frame>"}``.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, blur_dir: str = "blur",
                 transform: PairAugment | Callable | None = None,
                 channels: int = 3, sequences: Sequence[str] | None = None, seed: int | None = None,
                 fixed: bool = False):
        _Base.__init__(self, transform, seed, fixed)
        self.channels = check_channels(channels)
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a path (str or PathLike), got {type(root).__name__}")
        base = Path(root) / split if split else Path(root)
        if not base.is_dir():
            raise FileNotFoundError(f"GOPRO folder not found: {base}")
        seqs = sorted(d for d in base.iterdir() if d.is_dir() and ((d / blur_dir).is_dir() or (d / "sharp").is_dir()))
        if sequences is not None:
            want = set(sequences)
            missing = want - {d.name for d in seqs}
            if missing:
                raise FileNotFoundError(f"sequences not found under {base}: {sorted(missing)}")
            seqs = [d for d in seqs if d.name in want]
        if not seqs:
            raise FileNotFoundError(f"no sequence folders with '{blur_dir}/' and 'sharp/' under {base}")
        self.pairs = []
        for d in seqs:
            for sub in (blur_dir, "sharp"):
                if not (d / sub).is_dir():
                    raise FileNotFoundError(f"sequence {d} has no '{sub}/' folder")
            pairs = self._match(list_images(d / blur_dir), list_images(d / "sharp"), strict=True)
            self.pairs += [(pb, ps, f"{d.name}/{k}") for pb, ps, k in pairs]
        _check_pair_files(self.pairs, transform)


class KohlerDataset(_Base):
    """The Köhler et al. (2012) benchmark layout.

    Under ``root`` (searched recursively) the blurred images are ``Blurry<i>_<j>.<ext>``
    (image ``i``, trajectory ``j``) and the sharp frames recorded along the trajectory are
    ``GroundTruth<i>_<j>_<k>.<ext>``. Evaluate with :func:`pnpdeblur.metrics.kohler_psnr`.

    Items: ``{"blurred": (C,H,W), "sharp_frames": (K,C,H,W), "sharp": (C,H,W) the middle
    frame, "name": "Blurry<i>_<j>"}``. No augmentation (benchmark data).
    """

    _BLUR = re.compile(r"^blurry(\d+)_(\d+)$", re.IGNORECASE)
    _GT = re.compile(r"^groundtruth(\d+)_(\d+)_(\d+)$", re.IGNORECASE)

    def __init__(self, root: str | os.PathLike, channels: int = 3, max_frames: int | None = None):
        super().__init__(None, None, False)
        self.channels = check_channels(channels)
        if max_frames is not None and (not isinstance(max_frames, numbers.Integral) or max_frames < 1):
            raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
        self.max_frames = max_frames
        files = list_images(root, recursive=True)
        blurry: dict[tuple[int, int], Path] = {}
        gts: dict[tuple[int, int], list[tuple[int, Path]]] = {}
        for p in files:
            m = self._BLUR.match(p.stem)
            if m:
                blurry[(int(m[1]), int(m[2]))] = p
                continue
            m = self._GT.match(p.stem)
            if m:
                gts.setdefault((int(m[1]), int(m[2])), []).append((int(m[3]), p))
        if not blurry:
            raise ValueError(f"no Blurry<i>_<j> images under {root}")
        missing = sorted(k for k in blurry if k not in gts)
        if missing:
            raise ValueError(f"blurred images without GroundTruth<i>_<j>_<k> frames: "
                             f"{['Blurry%d_%d' % k for k in missing[:5]]}")
        self.items = [(blurry[k], [p for _, p in sorted(gts[k])], "Blurry%d_%d" % k) for k in sorted(blurry)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        pb, frames, name = self.items[index]
        if self.max_frames is not None and len(frames) > self.max_frames:
            sel = np.linspace(0, len(frames) - 1, self.max_frames).round().astype(int)
            frames = [frames[i] for i in sel]
        b = read_image(pb, self.channels)
        fr = [read_image(p, self.channels) for p in frames]
        for p, f in zip(frames, fr):
            _check_pair(b, f, pb, p)
        stack = np.stack(fr)
        return {
            "blurred": _to_tensor(b),
            "sharp_frames": torch.from_numpy(np.ascontiguousarray(np.moveaxis(stack, -1, 1))),
            "sharp": _to_tensor(fr[len(fr) // 2]),
            "name": name,
        }


class BlurredFolderDataset(_Base):
    """Blurred images only (real photos without ground truth), e.g. for test-time fine-tuning.

    Items: ``{"blurred": (C,H,W), "name": stem}``."""

    def __init__(self, folder: str | os.PathLike, transform: PairAugment | Callable | None = None, channels: int = 3,
                 recursive: bool = False, seed: int | None = None, fixed: bool = False):
        super().__init__(transform, seed, fixed)
        self.channels = check_channels(channels)
        self.files = list_images(folder, recursive=recursive)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        p = self.files[index]
        return self._finish({"blurred": read_image(p, self.channels)}, {}, self._item_rng(index), p.stem)
