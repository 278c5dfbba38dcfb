"""Small operators and reference matrices shared by the direct tests (not a test module).

Imported as ``from _operators import Dense, segment_matrix``: pytest's default import mode ("prepend", and
tests/ has no ``__init__.py``) puts tests/ on ``sys.path`` before it imports a test file, so
this works from any clone with ``make test`` or ``pytest tests/...``, with or without xdist.
"""
import numpy as np
import scipy.sparse as sp
import torch

from pnpdeblur.operators import dense
from pnpdeblur.operators.base import LinearOperator

__all__ = ["Dense", "segment_matrix", "bilinear_resize"]


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


def segment_matrix(vec, mass, beta: float) -> sp.csr_matrix:
    """Sparse ``(H·W, H·W)`` matrix of ``Σ_s diag(mass_s) K_s`` for one image's segments.

    ``vec`` ``(S, 2, H, W)`` and ``mass`` ``(S, H, W)`` as :func:`pnpdeblur.operators._segment.segment_blur`
    takes them (one image of its ``Nf``), each pixel's kernel from ``pnpdeblur.operators.dense``.
    """
    H, W = vec.shape[-2:]
    A = sp.csr_matrix((H * W, H * W))
    for v, m in zip(vec, mass):
        rows, cols, vals = [], [], []
        for i in range(H):
            for j in range(W):
                dense._add_kernel(rows, cols, vals, H, W, i, j, dense._segment_kernel(v[:, i, j], beta), m[i, j])
        A = A + dense._build(H, W, rows, cols, vals)
    return sp.csr_matrix(A)


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights of PyTorch's bilinear resize along one axis, written out by hand
    (``align_corners=False``, output size given, source coordinates clamped at the borders)."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        m[i, i0] += 1 - (s - i0)
        m[i, i1] += s - i0
    return m


def bilinear_resize(a: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """``F.interpolate(a, (oh, ow), mode="bilinear", align_corners=False)`` on the last two axes, by hand."""
    return np.einsum("ih,...hw,jw->...ij", _bilinear_weights(a.shape[-2], oh), a, _bilinear_weights(a.shape[-1], ow))

