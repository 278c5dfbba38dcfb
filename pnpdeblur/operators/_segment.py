"""Dispatch and autograd for the generic per-pixel segment blur.

See :mod:`pnpdeblur.operators._numba_kernels` for the kernel definition. Three
implementations compute the same numbers:

* ``"numba"``: the CPU kernels (default for CPU tensors); gradients w.r.t. the
  image, the segment vectors and the masses come from hand-written kernels wired
  into :class:`torch.autograd.Function`.
* ``"torch"``: vectorised torch ops, one gather per tap position, differentiable
  by autograd; it runs wherever torch runs (CUDA tensors included).
* ``"cupy"``: CUDA kernels (``_cuda/segment_blur.cu``, compiled by NVRTC through
  CuPy) on torch CUDA tensors, with the same hand-written gradients as the numba
  path (:mod:`pnpdeblur.operators._cupy`). Default for CUDA tensors when
  :func:`pnpdeblur.backend.cupy_available` is true; if the kernels cannot be built
  (NVRTC missing, say) the default falls back to ``"torch"`` with one warning and
  :func:`pnpdeblur.backend.info` says why.
"""
from __future__ import annotations

import math
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import backend
from .._vectors import longest_vector

__all__ = ["segment_blur", "available_paths", "PATHS", "FlowCache", "FLOW_CACHE", "prepare_numba", "NumbaPrepared",
           "prepare_cupy", "CupyGeometry", "WeightTable", "build_weight_table", "WEIGHT_TABLES"]

#: Every implementation name ``path=`` accepts.
PATHS = ("numba", "torch", "cupy")


def _numba_ok() -> bool:
    try:
        from . import _numba_kernels  # noqa: F401

        return True
    except ImportError:  # numba is a hard dependency, but keep torch working without it
        return False


def available_paths() -> tuple:
    """The implementation names usable on this machine (``"cupy"`` only with a CUDA device)."""
    paths = ("numba", "torch") if _numba_ok() else ("torch",)
    if backend.cupy_available():
        paths = paths + ("cupy",)
    return paths


# The fork-safe numba layer (workqueue) must not be entered by two threads at once; each
# call already uses every core, so serialising them costs nothing.
_NUMBA_LOCK = threading.Lock()


def _nchunks() -> int:
    import numba

    # One scatter buffer per chunk: cap it so memory stays a few images.
    return max(1, min(numba.get_num_threads(), int(os.environ.get("PNPDEBLUR_SCATTER_CHUNKS", 4))))


def _default_path(device_type: str) -> str:
    """The path ``path=None`` takes for tensors on a device of this type."""
    if device_type == "cpu":
        return "numba" if _numba_ok() else "torch"
    if device_type == "cuda" and backend.cupy_available() and backend.cupy_kernel_error() is None:
        return "cupy"
    return "torch"


def _resolve_path(x: torch.Tensor, path: Optional[str]) -> str:
    if path is None:
        return _default_path(x.device.type)
    if path not in PATHS:
        raise ValueError(f"path must be 'numba', 'torch', 'cupy' or None, got {path!r}")
    if path == "numba" and x.device.type != "cpu":
        raise ValueError("path='numba' needs CPU tensors; use path='torch' or 'cupy' for CUDA tensors")
    if path == "cupy":
        if not backend.cupy_available():
            raise RuntimeError(
                f"path='cupy' needs CuPy and a CUDA device: {backend.cupy_status()[1]}; "
                "use path=None (automatic) or path='torch'"
            )
        if x.device.type != "cuda":
            raise ValueError(
                f"path='cupy' needs CUDA tensors, got a tensor on {x.device}; move it with .cuda() "
                "or pass a cupy array"
            )
    return path


def segment_blur(
    x: torch.Tensor,
    vec: torch.Tensor,
    mass: torch.Tensor,
    beta: float,
    transpose: bool = False,
    path: Optional[str] = None,
    prepared: Optional["NumbaPrepared"] = None,
) -> torch.Tensor:
    """Apply the segment blur (or its transpose) to ``x``.

    Parameters
    ----------
    x : Tensor, shape (N, C, H, W), float32 or float64
    vec : Tensor, shape (Nf, S, 2, H, W)
        Segment vectors (u, v) in pixels, Nf in {1, N}.
    mass : Tensor, shape (Nf, S, H, W)
        Weight of each segment; each segment's kernel is normalised to sum 1.
    beta : float
        0 for the centred line kernel, 0.5 for a half segment from p to p + a.
    transpose : bool
        Apply the exact adjoint instead.
    path : {'numba', 'torch', 'cupy'} or None
        Implementation; ``None`` picks numba for CPU tensors, and for CUDA tensors
        cupy when :func:`pnpdeblur.backend.cupy_available` is true, else torch.
    prepared : NumbaPrepared, optional
        For the numba path only: the converted arrays of exactly ``vec`` and ``mass``
        (operators take them from :data:`FLOW_CACHE`, so that the conversion happens
        once per flow, not once per call).
    """
    chosen = _resolve_path(x, path)
    # Without a gradient to record, the kernels run directly: the autograd Function's
    # bookkeeping is a sizeable part of a small image's call on the GPU.
    grad = torch.is_grad_enabled() and (x.requires_grad or vec.requires_grad or mass.requires_grad)
    if chosen == "numba":
        kernels = prepared if prepared is not None else _NumbaKernels
        if not grad:
            return kernels.run(x, vec, mass, float(beta), bool(transpose))
        return SegmentBlurFn.apply(x, vec, mass, float(beta), bool(transpose), kernels)
    if chosen == "cupy":
        from . import _cupy

        try:
            _cupy.load(x.device.index or 0)
        except _cupy.CupyUnavailableError as exc:
            if path == "cupy":
                raise
            # Automatic choice: remember why, say it once, and use the torch path from now on.
            backend._set_cupy_kernel_error(str(exc))
            warnings.warn(
                f"pnpdeblur: CuPy kernels unavailable, using the torch path ({exc})", UserWarning, stacklevel=2
            )
            return _torch_segment_blur(x, vec, mass, float(beta), bool(transpose))
        if not grad:
            return _cupy.run(x, vec, mass, float(beta), bool(transpose))
        return _cupy.segment_blur_cupy(x, vec, mass, float(beta), bool(transpose))
    return _torch_segment_blur(x, vec, mass, float(beta), bool(transpose))


# ---------------------------------------------------------------------------- numba path
def _np64(t: torch.Tensor):
    return t.detach().to(torch.float64).contiguous().numpy()


def _run_numba(x: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor, beta: float, transpose: bool):
    from . import _numba_kernels as nk

    v = _np64(vec)
    m = _np64(mass)
    ntaps = nk.max_taps(longest_vector(torch.from_numpy(v), dim=2))  # the float64 copy just made
    xn = x.detach().contiguous().numpy()
    with _NUMBA_LOCK:
        if transpose:
            out = nk.adjoint(xn, v, m, beta, ntaps, _nchunks())
        else:
            out = nk.forward(xn, v, m, beta, ntaps)
    return torch.from_numpy(out)


def _param_grad(x: torch.Tensor, g: torch.Tensor, vec: torch.Tensor, mass: torch.Tensor, beta: float):
    from . import _numba_kernels as nk

    v = _np64(vec)
    ntaps = nk.max_taps(longest_vector(torch.from_numpy(v), dim=2))  # the float64 copy just made
    with _NUMBA_LOCK:
        gv, gm = nk.param_grad(
            x.detach().contiguous().numpy(), g.detach().contiguous().numpy(), v, _np64(mass), beta, ntaps
        )
    gv, gm = torch.from_numpy(gv), torch.from_numpy(gm)
    if vec.shape[0] == 1 and gv.shape[0] > 1:
        gv, gm = gv.sum(0, keepdim=True), gm.sum(0, keepdim=True)
    return gv.to(vec.dtype), gm.to(mass.dtype)


class SegmentBlurFn(torch.autograd.Function):
    """Autograd for kernel-backed paths: ``kernels`` provides ``run`` and ``param_grad``.

    ``kernels.run(x, vec, mass, beta, transpose)`` applies K (or Kᵀ);
    ``kernels.param_grad(x, g, vec, mass, beta)`` returns the gradients of ``<K x, g>``
    w.r.t. ``vec`` and ``mass``. The numba and CuPy paths share this wiring.
    """

    @staticmethod
    def forward(ctx, x, vec, mass, beta, transpose, kernels):
        ctx.save_for_backward(x, vec, mass)
        ctx.beta, ctx.transpose, ctx.kernels = beta, transpose, kernels
        return kernels.run(x, vec, mass, beta, transpose)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        x, vec, mass = ctx.saved_tensors
        g = g.contiguous()
        gx = gv = gm = None
        if ctx.needs_input_grad[0]:
            gx = ctx.kernels.run(g, vec, mass, ctx.beta, not ctx.transpose)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # d<Kᵀy, g> = d<K g, y>: the transpose swaps the roles of input and cotangent.
            a, b = (g, x) if ctx.transpose else (x, g)
            gv, gm = ctx.kernels.param_grad(a, b, vec, mass, ctx.beta)
        return gx, gv, gm, None, None, None


class _NumbaKernels:
    run = staticmethod(_run_numba)
    param_grad = staticmethod(_param_grad)


class NumbaPrepared:
    """The numba kernels bound to one flow's segment arrays (built once, reused).

    Used as the ``kernels`` of :class:`SegmentBlurFn`: ``run`` and ``param_grad`` ignore
    the ``vec``/``mass`` tensors they are given and read the prepared arrays, which hold
    the same values (``vec``/``mass`` as :func:`segment_blur` would convert them).

    From the second application with a given ``beta`` and image dtype on, the kernels read
    the segments' weights from a :class:`WeightTable` held in :data:`WEIGHT_TABLES` (where
    it fits that cache's byte limit) instead of recomputing them: the same results, bitwise.
    A single application never pays for building one.
    """

    __slots__ = ("vec", "mass", "ntaps", "nbytes", "uses", "_anchor", "__weakref__")

    def __init__(self, vec, mass, ntaps: int):
        self.vec, self.mass, self.ntaps = vec, mass, int(ntaps)
        self.nbytes = int(vec.nbytes + mass.nbytes)
        self.uses: dict = {}  # applications per (beta, dtype): a table is built from the second on
        # the weight tables' cache key: a tensor that lives exactly as long as this object
        self._anchor = torch.from_numpy(vec)

    def table(self, beta: float, dtype) -> Optional["WeightTable"]:
        """The weight table for ``beta`` and image ``dtype`` (numpy), or None (first use, or too large).

        Call with ``_NUMBA_LOCK`` held (building one runs the parallel kernels).
        """
        key = (float(beta), np.dtype(dtype).str)
        self.uses[key] = self.uses.get(key, 0) + 1
        if self.uses[key] < 2:
            return None
        sources, tag = (self._anchor,), ("weights",) + key

        def build():
            return build_weight_table(self.vec, self.mass, beta, self.ntaps, dtype, WEIGHT_TABLES.max_bytes)

        table = WEIGHT_TABLES.get(sources, tag, build)
        if table.arrays is None and 0 < table.needed <= WEIGHT_TABLES.max_bytes:
            # recorded as too large under a lower limit, which has been raised since
            WEIGHT_TABLES.discard(sources, tag)
            table = WEIGHT_TABLES.get(sources, tag, build)
        return table if table.arrays is not None else None

    def run(self, x: torch.Tensor, vec, mass, beta: float, transpose: bool) -> torch.Tensor:
        from . import _numba_kernels as nk

        xn = x.detach().contiguous().numpy()
        with _NUMBA_LOCK:
            table = self.table(beta, xn.dtype)
            arrays = None if table is None else table.arrays
            if transpose:
                out = nk.adjoint(xn, self.vec, self.mass, beta, self.ntaps, _nchunks(), arrays)
            else:
                out = nk.forward(xn, self.vec, self.mass, beta, self.ntaps, arrays)
        return torch.from_numpy(out)

    def param_grad(self, x, g, vec, mass, beta):
        return _param_grad(x, g, vec, mass, beta)

    def normal(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        """``Kᵀ K x`` in one fused pass (no autograd: the caller checks no gradient is needed).

        Bitwise equal to ``run(run(x, ..., False), ..., True)``: the kernel rounds ``K x``
        to ``x``'s dtype per pixel and scatters in the adjoint's row chunks.
        """
        from . import _numba_kernels as nk

        xn = x.detach().contiguous().numpy()
        with _NUMBA_LOCK:
            table = self.table(beta, xn.dtype)
            out = nk.normal(xn, self.vec, self.mass, float(beta), self.ntaps, _nchunks(),
                            None if table is None else table.arrays)
        return torch.from_numpy(out)


def prepare_numba(vec: torch.Tensor, mass: torch.Tensor, dtype: torch.dtype = torch.float64) -> NumbaPrepared:
    """Convert segment tensors once for the numba kernels (contiguous copies, tap bound).

    ``dtype`` (float64 or float32) is the arrays' storage type: the kernels read the
    values as float64 either way, so float32 segments (those of a float32 image, already
    rounded to float32) can be stored in half the memory with the same results.
    """
    from . import _numba_kernels as nk

    if dtype not in (torch.float64, torch.float32):
        raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    longest = longest_vector(vec, dim=2)

    def own(t):  # a copy even where the dtype already matches: a cache entry must not alias the flow
        return t.detach().to(dtype, copy=True).contiguous().numpy()

    return NumbaPrepared(own(vec), own(mass), nk.max_taps(longest))


class CupyGeometry:
    """One flow's segments as the CUDA kernels read them: float64, C-contiguous, on the
    image's device, owned (never a view of the flow). Built by :func:`prepare_cupy` and
    held in :data:`FLOW_CACHE` (its ``nbytes`` is device memory)."""

    __slots__ = ("vec", "mass", "nbytes", "__weakref__")

    def __init__(self, vec: torch.Tensor, mass: torch.Tensor):
        self.vec, self.mass = vec, mass
        self.nbytes = int(vec.numel() * vec.element_size() + mass.numel() * mass.element_size())


def prepare_cupy(vec: torch.Tensor, mass: torch.Tensor) -> CupyGeometry:
    """Convert segment tensors once for the CUDA kernels (see :class:`CupyGeometry`)."""

    def own(t):  # a copy even where nothing needs converting: a cache entry must not alias the flow
        return t.detach().to(torch.float64, copy=True, memory_format=torch.contiguous_format)

    return CupyGeometry(own(vec), own(mass))


def _env_bytes(name: str, default: int) -> int:
    """A byte count from environment variable ``name`` (an integer >= 0), else ``default``."""
    raw = os.environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _default_cache_bytes() -> int:
    return _env_bytes("PNPDEBLUR_FLOW_CACHE_BYTES", 256 * 2**20)


# The weight tables' default limit: an eighth of the memory the process may use, within these
# bounds (768 MiB holds a 1280×720 float32 table of 46 px blur; a 12 MP photo's table of 13 px takes
# 2 GiB, and holding it makes its K+Kᵀ 1.8× faster: benchmarks/RESULTS.md, "The weight tables' limit")
TABLE_MEMORY_SHARE = 8
MIN_TABLE_BYTES, MAX_TABLE_BYTES = 768 * 2**20, 8 * 2**30


def default_table_limit(memory: Optional[int]) -> int:
    """The weight tables' byte limit on a machine with ``memory`` bytes (None: unknown):
    ``memory / TABLE_MEMORY_SHARE`` within ``[MIN_TABLE_BYTES, MAX_TABLE_BYTES]``."""
    if memory is None:
        return MIN_TABLE_BYTES
    return min(MAX_TABLE_BYTES, max(MIN_TABLE_BYTES, int(memory) // TABLE_MEMORY_SHARE))


def _default_table_bytes() -> int:
    from .._memory import machine_memory_bytes, processes_on_this_machine

    memory = machine_memory_bytes()  # shared by the processes of a torchrun job on this machine
    share = None if memory is None else memory // processes_on_this_machine()
    return _env_bytes("PNPDEBLUR_WEIGHT_TABLE_BYTES", default_table_limit(share))


# Bytes of a weight table: per step, 3 weights (image dtype) and an int16 minor offset; per
# segment, start and steps (int64), kind (int8), scale (float64), lo and radius (int32), major (bool).
_TABLE_STEP_EXTRA = 2
_TABLE_SEGMENT_BYTES = 8 + 8 + 1 + 8 + 4 + 4 + 1


class WeightTable:
    """One flow's per-segment step weights for one ``beta`` and image dtype (see
    :mod:`pnpdeblur.operators._numba_kernels`, "Weight tables").

    ``arrays`` is the tuple the kernels take as ``table=`` (None for a table too large to
    build, recorded with ``nbytes = 0`` so that the size is not counted again); ``nbytes`` is
    what it holds; ``needed`` the bytes the table takes (or would take), so that a record of
    "too large" can be retried once the limit has been raised.
    """

    __slots__ = ("arrays", "nbytes", "needed")

    def __init__(self, arrays: Optional[tuple], nbytes: int, needed: Optional[int] = None):
        self.arrays, self.nbytes = arrays, int(nbytes)
        self.needed = int(nbytes if needed is None else needed)


def build_weight_table(vec, mass, beta: float, ntaps: int, dtype, max_bytes: Optional[int] = None) -> WeightTable:
    """The :class:`WeightTable` of segment arrays ``vec`` (Nf, S, 2, H, W), ``mass`` (Nf, S, H, W).

    ``dtype`` is the image dtype the table serves (numpy float32 or float64). With
    ``max_bytes``, a table that would be larger is not built: the result has
    ``arrays = None`` (its size comes from one cheap pass over the flow's geometry).
    """
    from . import _numba_kernels as nk

    dtype = np.dtype(dtype)
    if ntaps // 3 > np.iinfo(np.int16).max:  # minor offsets are stored as int16 (|r| <= steps)
        raise ValueError(f"segments too long for a weight table (ntaps={ntaps}); the operators allow |flow| <= 64 px")
    steps = nk.table_steps(vec, mass, float(beta))
    total = int(steps.sum())
    nbytes = total * (3 * dtype.itemsize + _TABLE_STEP_EXTRA) + steps.size * _TABLE_SEGMENT_BYTES
    if max_bytes is not None and nbytes > max_bytes:
        return WeightTable(None, 0, needed=nbytes)
    start = np.cumsum(steps.ravel()).reshape(steps.shape) - steps
    shape = steps.shape
    kind = np.empty(shape, np.int8)
    scale = np.empty(shape, np.float64)
    lo = np.zeros(shape, np.int32)
    radius = np.zeros(shape, np.int32)
    major = np.zeros(shape, np.bool_)
    w = np.empty((3, total), dtype)
    r = np.empty(total, np.int16)
    nk.fill_table(vec, mass, float(beta), int(ntaps), start, kind, scale, lo, radius, major, w, r)
    return WeightTable((start, steps, kind, scale, lo, radius, major, w, r), nbytes)


class FlowCache:
    """A bounded, thread-safe LRU of per-flow precomputation.

    A solve applies the same operator hundreds of times; what depends on the flow
    alone (for the numba path: the segment arrays and the tap bound, 24 bytes per pixel
    for a line kernel, 96 for the LUT variant, half that for float32 images) is built on the first call and
    reused. An entry is valid while its source tensors are alive and unchanged: it
    holds weak references to them and their ``_version`` counters, which torch bumps
    on every in-place change, so ``flow.add_(1)`` or ``flow[...] = v`` invalidates it.
    Where no version counter sees a change — tensors viewing a numpy or CuPy array's memory
    (an edit through the array does not reach torch's counter) and inference-mode tensors
    (which have none) — the entry holds a copy of the sources instead and is valid while
    they equal it bit for bit: one comparison per call (a few ms for a 720p flow on the
    CPU) instead of rebuilding the segments; the copy counts against ``max_bytes``.
    The cache never holds more than ``max_bytes`` (least recently used entries go
    first; an entry larger than the limit is not stored; 0 disables caching), and an
    entry is dropped as soon as one of its source tensors is garbage-collected.

    Parameters
    ----------
    max_bytes : int
        Byte limit of all entries together. The library-wide instance
        :data:`FLOW_CACHE` reads it from the environment variable
        ``PNPDEBLUR_FLOW_CACHE_BYTES`` (256 MiB when it is unset: a 1280×720 line kernel takes
        22 MiB in float64, 11 MiB in float32; its LUT form 88 / 44 MiB). On the CuPy path
        the entries are the float64 segments in device memory (:class:`CupyGeometry`),
        counted against the same limit.
    """

    def __init__(self, max_bytes: int):
        # re-entrant: evicting an entry can free the last reference to another entry's source, whose
        # weakref callback (_drop) then takes the lock again on the same thread
        self._lock = threading.RLock()
        self._entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self.max_bytes = max_bytes

    @property
    def max_bytes(self) -> int:
        """The byte limit; setting it evicts entries until the cache fits."""
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"max_bytes must be an int >= 0, got {type(value).__name__}")
        if value < 0:
            raise ValueError(f"max_bytes must be >= 0, got {value}")
        with self._lock:
            self._max_bytes = value
            self._evict(0)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def _evict(self, incoming: int) -> None:
        while self._entries and self.nbytes + incoming > self._max_bytes:
            _, entry = self._entries.popitem(last=False)
            self.nbytes -= entry[2]

    def discard(self, sources: Sequence[torch.Tensor], tag: tuple) -> None:
        """Drop the entry for these source tensors and ``tag``, if there is one."""
        self._drop((tag,) + tuple(id(t) for t in sources))

    def _drop(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self.nbytes -= entry[2]

    def get(self, sources: Sequence[torch.Tensor], tag: tuple, build: Callable[[], object], *,
            by_value: bool = False):
        """Return ``build()`` for these source tensors and ``tag``, cached while valid.

        ``build`` must be a pure function of the sources' values and ``tag`` and
        return an object with an ``nbytes`` attribute. With ``by_value`` (for sources that view
        memory torch does not own, such as a numpy array's) and for inference-mode tensors (which
        have no version counter) the entry is checked against a copy of the sources' values
        instead of their version counters.
        """
        by_value = by_value or any(t.is_inference() for t in sources)
        key = (tag,) + tuple(id(t) for t in sources)
        versions = None if by_value else tuple(t._version for t in sources)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                refs, stamp, _, value = entry
                alive = all(r() is t for r, t in zip(refs, sources))
                if alive and (_same_bits(stamp, sources) if by_value else stamp == versions):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return value
                self._entries.pop(key)
                self.nbytes -= entry[2]
            self.misses += 1
        value = build()
        size = int(value.nbytes)
        stamp = versions
        if by_value:
            with torch.no_grad():
                stamp = tuple(t.detach().clone() for t in sources)
            size += sum(t.numel() * t.element_size() for t in stamp)
        with self._lock:
            if size <= self._max_bytes:
                # drop the entry when a source dies (its id may then be reused)
                this = weakref.ref(self)

                def _gone(_ref, key=key):
                    cache = this()
                    if cache is not None:
                        cache._drop(key)

                refs = tuple(weakref.ref(t, _gone) for t in sources)
                old = self._entries.pop(key, None)
                if old is not None:
                    self.nbytes -= old[2]
                self._evict(size)
                self._entries[key] = (refs, stamp, size, value)
                self.nbytes += size
        return value


# integer dtypes of each float width: copies are compared bit for bit (a -0.0 stays apart from 0.0)
_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(copies: Sequence[torch.Tensor], sources: Sequence[torch.Tensor]) -> bool:
    """Whether each source holds exactly the bits of its copy (same shape, dtype and device)."""
    for c, t in zip(copies, sources):
        if c.shape != t.shape or c.dtype != t.dtype or c.device != t.device:
            return False
        bits = _BITS.get(t.element_size()) if t.is_floating_point() else None
        if bits is None:
            if not torch.equal(c, t):
                return False
        elif not torch.equal(c.view(bits), t.detach().view(bits)):
            return False
    return True


#: The library-wide cache used by the per-pixel operators (see :class:`FlowCache`).
FLOW_CACHE = FlowCache(_default_cache_bytes())

#: The weight tables of the prepared flows in :data:`FLOW_CACHE` (a :class:`FlowCache` of
#: :class:`WeightTable`; an entry goes with its prepared flow). Its byte limit comes from
#: ``PNPDEBLUR_WEIGHT_TABLE_BYTES`` (0 turns the tables off); by default an eighth of the
#: memory the process may use (:func:`default_table_limit`: 768 MiB to 8 GiB; 2.9 GiB on a
#: 24 GiB machine; the processes of a torchrun job on one machine share it). A 1280×720 line kernel whose every pixel moves 46 px takes 560 MiB for
#: float32 images and 1015 MiB for float64 ones; a table over the limit is not built, and the
#: weights are recomputed per call, as without.
WEIGHT_TABLES = FlowCache(_default_table_bytes())


# ---------------------------------------------------------------------------- torch path
# Elements of the per-chunk gather in the torch path, per device type. A GPU is
# launch-bound on one tap at a time, so it takes many taps per chunk (2**24 elements:
# 64 MiB of float32); a CPU gains little from chunks beyond small images and keeps
# its memory low.
_TORCH_CHUNK_ELEMENTS = {"cpu": 2**18, "other": 2**24}


def _torch_segment_blur(x, vec, mass, beta, transpose):
    N, C, H, W = x.shape
    Nf, S = vec.shape[0], vec.shape[1]
    dev, dt = x.device, x.dtype
    vec = vec.to(dt)
    mass = mass.to(dt)
    iy = torch.arange(H, device=dev).view(1, H, 1)
    ix = torch.arange(W, device=dev).view(1, 1, W)
    xf = x.reshape(N, C, H * W)
    out = torch.zeros_like(xf)
    for s in range(S):
        ax, ay = vec[:, s, 0], vec[:, s, 1]
        sq = ax * ax + ay * ay
        zero = sq == 0
        # sqrt through a where() so that the gradient at L = 0 is 0, not NaN
        L = torch.where(zero, torch.zeros_like(sq), torch.sqrt(torch.where(zero, torch.ones_like(sq), sq)))
        Ls = torch.where(zero, torch.ones_like(L), L)
        ux, uy = ax / Ls, ay / Ls
        h = 0.5 * L + 0.5
        with torch.no_grad():
            major_x = ax.abs() >= ay.abs()
            a_maj = torch.where(major_x, ax, ay)
            a_min = torch.where(major_x, ay, ax)
            slope = a_min / torch.where(a_maj == 0, torch.ones_like(a_maj), a_maj)
            c_maj, c_min = beta * a_maj, beta * a_min
            base = torch.floor(c_maj)
            extent = (h * a_maj.abs() + a_min.abs()) / Ls
            J = int(math.ceil(float(extent.max()))) + 1 if extent.numel() else 1
        def taps(jd):
            """Offsets and weights of the taps ``jd`` (T, 2) at once: tensors (T, Nf, H, W)."""
            j, d = jd[:, 0].view(-1, 1, 1, 1), jd[:, 1].view(-1, 1, 1, 1)
            with torch.no_grad():
                k_maj = base + j
                k_min = torch.floor(c_min + (k_maj - c_maj) * slope + 0.5) + d
                kx = torch.where(major_x, k_maj, k_min)
                ky = torch.where(major_x, k_min, k_maj)
            t = kx * ux + ky * uy
            c = kx * uy - ky * ux
            w = torch.relu(1 - c.abs()) * torch.clamp(h - (t - beta * L).abs(), 0, 1)
            w = torch.where(zero, ((kx == 0) & (ky == 0)).to(dt), w)
            return kx, ky, w

        offsets = torch.tensor([(j, d) for j in range(-J, J + 1) for d in (-1, 0, 1)], device=dev, dtype=dt)
        # Taps are processed T at a time (one kernel launch per op per chunk, not per tap:
        # on a GPU the per-tap loop is launch-bound), in two passes (normaliser, then taps)
        # so that at most a chunk of per-tap tensors is alive.
        budget = _TORCH_CHUNK_ELEMENTS["cpu" if dev.type == "cpu" else "other"]
        T = max(1, min(len(offsets), budget // max(1, N * C * H * W)))
        chunks = offsets.split(T)
        total = sum(taps(jd)[2].sum(0) for jd in chunks)
        scale = mass[:, s] / total  # (Nf, H, W)
        for jd in chunks:
            kx, ky, w = taps(jd)
            t_n = len(jd)
            with torch.no_grad():
                idx = torch.clamp(iy + ky.long(), 0, H - 1) * W + torch.clamp(ix + kx.long(), 0, W - 1)
                # (T, Nf, H, W) -> (Nf, 1, T*HW): one gather/scatter for the whole chunk
                idx = idx.reshape(t_n, Nf, H * W).permute(1, 0, 2).reshape(Nf, 1, t_n * H * W)
                idx = idx.expand(N, C, t_n * H * W)
            wn = (w * scale).reshape(t_n, Nf, H * W).permute(1, 0, 2).reshape(Nf, 1, t_n, H * W)
            if transpose:
                src = (wn * xf.unsqueeze(2)).reshape(N, C, t_n * H * W)
                out = out.scatter_add(2, idx, src)
            else:
                out = out + (wn * torch.gather(xf, 2, idx).reshape(N, C, t_n, H * W)).sum(2)
    return out.reshape(N, C, H, W)
