"""Stand-ins shared by the tests (not a test module: imported as ``from _fakes import FakeCupyArray``)."""
import numpy as np

__all__ = ["FakeCupyArray"]


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
