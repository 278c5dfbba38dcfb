"""Stand-ins shared by the tests (not a test module: imported as ``from _fakes import FakeCupyArray``)."""
import types

import numpy as np

__all__ = ["FakeCupyArray", "RecordingHQS", "unused_prior"]


class FakeCupyArray:
    """Stands in for ``cupy.ndarray``: ``.shape``; implicit conversion raises, ``.get()`` copies to the host."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self._a = np.asarray(a)
        self.shape = self._a.shape

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()`")

    def get(self):
        return self._a.copy()


class RecordingHQS:
    """Stands in for ``pnpdeblur.solvers.hqs``: records its arguments (``y`` copied), returns ``out(y)``
    (default ``0.5·y + 0.1``) with a history naming the call."""

    def __init__(self, out=lambda y: 0.5 * y + 0.1):
        self.out, self.calls = out, []

    def __call__(self, y, K, prior, **kwargs):
        self.calls.append(dict(y=y.clone(), K=K, prior=prior, **kwargs))
        return types.SimpleNamespace(x=self.out(y), history=[{"call": len(self.calls)}])


def unused_prior(z, sigma, context=None):
    """A prior for a solve that a stand-in HQS records but never runs (callable, as pd.deblur checks)."""
    raise AssertionError("the stand-in HQS does not call the prior")
