"""Tests that kill the surviving mutants of the flow cache (``FlowCache`` and ``_same_bits`` in
``pnpdeblur/operators/_segment.py``); every mutant of ``pnpdeblur/_checks.py`` was already killed.

Found by planting one-token mutants by hand (docs/mutation.md, "New code of the thirty-eighth and
thirty-ninth sessions"). Each test names the mutant it kills. References: the dense matrices of
``pnpdeblur.operators.dense`` for the operators, and the cache's documented contract (what is
built, what is counted) for ``FlowCache``.
"""
import numpy as np
import torch

from pnpdeblur.operators import _segment as seg
from pnpdeblur.operators import dense
from pnpdeblur.operators._segment import FLOW_CACHE
from pnpdeblur.operators.motion import TwoSegmentBlur


class _Blob:
    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_one_inference_flow_among_versioned_ones_is_checked_by_value():
    # kills `any(t.is_inference() ...)` -> `all(...)`: a two-segment blur whose first flow is an
    # inference tensor (no version counter) and whose second is an ordinary tensor
    FLOW_CACHE.clear()
    rng = np.random.default_rng(5)
    fnp, gnp = rng.uniform(-3, 3, (2, 1, 2, 5, 6))
    x = torch.tensor(rng.random((1, 2, 5, 6)))
    with torch.inference_mode():
        f = torch.tensor(fnp)
    K = TwoSegmentBlur(f, torch.tensor(gnp))
    misses, hits = FLOW_CACHE.misses, FLOW_CACHE.hits
    for _ in range(2):
        want = dense.apply_matrix(dense.two_segment_matrix(fnp[0], gnp[0], 1.0), x.numpy())
        np.testing.assert_allclose(K(x).numpy(), want, rtol=0, atol=1e-12)
    assert (FLOW_CACHE.misses - misses, FLOW_CACHE.hits - hits) == (1, 1)
    with torch.inference_mode():
        f[0, 0, 2, 3] = 2.5
    fnp[0, 0, 2, 3] = 2.5
    want = dense.apply_matrix(dense.two_segment_matrix(fnp[0], gnp[0], 1.0), x.numpy())
    np.testing.assert_allclose(K(x).numpy(), want, rtol=0, atol=1e-12)
    assert FLOW_CACHE.misses - misses == 2
    FLOW_CACHE.clear()


def test_discard_names_every_source():
    # kills `discard` keyed on the first source only: an entry of two flows is dropped by both
    cache = seg.FlowCache(10_000)
    a, b = torch.zeros(2), torch.zeros(2)
    cache.get((a, b), ("two",), lambda: _Blob(100))
    cache.get((a,), ("two",), lambda: _Blob(10))
    cache.discard((a, b), ("two",))
    assert (len(cache), cache.nbytes) == (1, 10)
    built = []
    cache.get((a, b), ("two",), lambda: built.append(1) or _Blob(100))
    assert built == [1]


def test_same_bits_needs_the_same_dtype_even_for_equal_bits():
    # kills the dropped dtype check: float16 and bfloat16 zeros have the same 16 bits, yet a
    # flow whose dtype changed (``t.data = ...`` keeps its id) is not the flow the copy was taken of
    zeros16 = torch.zeros(4, dtype=torch.float16)
    assert seg._same_bits((zeros16.clone(),), (zeros16,))
    assert not seg._same_bits((zeros16,), (torch.zeros(4, dtype=torch.bfloat16),))
    assert not seg._same_bits((torch.zeros(4, dtype=torch.int32),), (torch.zeros(4, dtype=torch.float32),))
    assert not seg._same_bits((zeros16,), (torch.zeros(2, 2, dtype=torch.float16),))
    ints = torch.arange(4)
    assert seg._same_bits((ints.clone(),), (ints,)) and not seg._same_bits((ints + 1,), (ints,))


class _Sized:
    """A cached value of ``nbytes`` bytes that may keep another entry's source alive."""

    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.keep = None


def test_evicting_the_last_holder_of_another_entrys_source_does_not_deadlock():
    """Evicting an entry (under the cache's lock) can free the last reference to another entry's
    source; its weakref callback then drops that entry, taking the lock again on the same thread.
    With a non-re-entrant lock the call never returned."""
    import threading

    cache = seg.FlowCache(100)
    a, b, d = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    cache.get((b,), ("k",), lambda: _Sized(10))
    holder = _Sized(40)
    holder.keep = b  # the only reference to b, once the test lets go of it
    cache.get((a,), ("k",), lambda: holder)
    cache.get((b,), ("k",), lambda: _Sized(10))  # a hit: b's entry is now the most recent, a's the oldest
    del holder, b
    done = []
    worker = threading.Thread(target=lambda: done.append(cache.get((d,), ("k",), lambda: _Sized(60))), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done, "FlowCache.get deadlocked while evicting"
    # a's entry was evicted (40 + 10 + 60 > 100), b's went with its source, d's is the one left
    assert len(cache) == 1 and cache.nbytes == 60
