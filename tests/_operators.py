"""Small operators shared by the direct solver tests (not a test module: no ``test_`` prefix).

Imported as ``from _operators import Dense``: pytest's default import mode ("prepend", and
tests/ has no ``__init__.py``) puts tests/ on ``sys.path`` before it imports a test file, so
this works from any clone with ``make test`` or ``pytest tests/...``, with or without xdist.
"""
import torch

from pnpdeblur.operators.base import LinearOperator

__all__ = ["Dense"]


class Dense(LinearOperator):
    """``K x`` = a dense matrix ``A`` applied to each flattened sample (float64 storage).

    ``A`` is ``(M, M)`` for images with ``C·H·W = M``; the output keeps the input's shape, so
    the matrix must be square. Forward and adjoint run in the input's dtype; one call costs
    microseconds on the tiny problems of the solver tests.
    """

    def __init__(self, A):
        self.A = torch.as_tensor(A, dtype=torch.float64)

    def _forward(self, x):
        return (x.flatten(1) @ self.A.T.to(x.dtype)).reshape(x.shape)

    def _adjoint(self, y):
        return (y.flatten(1) @ self.A.to(y.dtype)).reshape(y.shape)
