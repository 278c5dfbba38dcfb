"""pnpdeblur operators as :class:`scipy.sparse.linalg.LinearOperator`.

scipy's iterative solvers (``lsqr``, ``lsmr``, ``gmres``, ``cg``), eigenvalue routines
(``eigsh`` for ``KᵀK``'s spectrum) and PyLops-style code take a matrix-free operator on flat
vectors; :func:`to_scipy` wraps one of the library's operators for them, with ``rmatvec`` the
exact adjoint.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .base import LinearOperator
from .dottest import _image_shape

__all__ = ["to_scipy"]


def to_scipy(K: LinearOperator, shape: Optional[Sequence[int]] = None, dtype: Any = np.float64) -> Any:
    """``K`` as a :class:`scipy.sparse.linalg.LinearOperator` on flattened images.

    Parameters
    ----------
    K : LinearOperator
        The operator (it runs on the CPU, through its public calls).
    shape : tuple of 4 ints, optional
        ``(N, C, H, W)`` of the images; vectors are those images flattened in C order, so the
        scipy operator is ``(M, M)`` with ``M = N·C·H·W``. Default: ``K.image_shape`` with N = 1
        where the operator takes any batch and C = 3 (as :func:`dot_test`); required for
        size-free operators (a ``Convolution``).
    dtype : numpy dtype
        ``float64`` (default) or ``float32``: the vectors' dtype and the arithmetic's.

    Returns
    -------
    scipy.sparse.linalg.LinearOperator
        ``matvec`` applies ``K``, ``rmatvec`` its adjoint ``Kᵀ``; 1-D inputs of length M
        (or ``(M, 1)`` columns, as scipy passes them) give outputs of the same form.

    Examples
    --------
    >>> import numpy as np, scipy.sparse.linalg as spla, pnpdeblur as pd
    >>> K = pd.MotionBlur(np.full((2, 16, 16), 3.0))
    >>> A = pd.operators.to_scipy(K, (1, 1, 16, 16))
    >>> A.shape                                   # one grey 16×16 image: 256 unknowns
    (256, 256)
    >>> x = spla.lsqr(A, A @ np.ones(A.shape[1]), damp=1e-3)[0]   # least squares, matrix-free
    >>> bool(np.allclose(x, 1, atol=0.05))        # the flat image comes back
    True
    """
    import scipy.sparse.linalg as spla

    if not isinstance(K, LinearOperator):
        raise TypeError(f"K must be a pnpdeblur LinearOperator, got {type(K).__name__}")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    size = _image_shape(K, shape)
    m = int(np.prod(size))

    def call(fn, v: np.ndarray) -> np.ndarray:
        # scipy has checked the length; K's call checks the values (NaN/Inf) and names them
        # numpy in (4-D: (N, C, H, W)): the call's to_torch copies a read-only vector, which
        # torch.from_numpy would take with a warning
        v = np.asarray(v)
        return fn(np.ascontiguousarray(v, dtype=dt).reshape(size)).reshape(v.shape)

    return spla.LinearOperator((m, m), matvec=lambda v: call(K.apply, v), rmatvec=lambda v: call(K.adjoint, v),
                               dtype=dt)
