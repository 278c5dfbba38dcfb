"""The fused normal operator ``KᵀK`` of the per-pixel blurs (issue 14, part 2).

``LinearOperator._normal`` is what the CG x-step applies. Its default is
``_adjoint(_forward(x))``; the motion operators override it on the numba path with
one fused kernel that evaluates each pixel's weights once, gathers ``y_p = (K x)_p``
and scatters ``w_k y_p`` back. It is built to be *bitwise* the composition (``y_p``
rounded to the image dtype, the adjoint's row chunks), so the tests check bitwise
equality with the composition and, independently, agreement with the dense sparse
matrix ``AᵀA`` in float64 at 1e-12: line, two-segment and LUT kernels, C = 1 and 3,
batches with per-image flows, borders, zero-length segments and zero-mass corners.

Float32 images (same issue): the kernels gather and scatter in float32 with weights
from the float64 geometry; forward, adjoint and normal agree with float64 to 1e-6
relative, float32 segment arrays give bitwise the float64 copies' results, and the
flow cache stores float32 segments for float32 images.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpdeblur.operators import _numba_kernels as nk
from pnpdeblur.operators import dense
from pnpdeblur.operators._segment import FLOW_CACHE, NumbaPrepared, prepare_numba
from pnpdeblur.operators.base import Identity, LinearOperator
from pnpdeblur.operators.motion import MotionBlur, TwoSegmentBlur
from pnpdeblur.solvers.hqs import hqs

H, W = 26, 31  # |m| <= 8: interior pixels exist (radius ceil(L/2) + 4 <= 8) and so do borders


def _flow(seed: int, scale: float = 8.0) -> np.ndarray:
    """A random flow (2, H, W) with every direction and some pixels exactly 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / max(H, W)
    ang = 2 * np.pi * (xx + 0.7 * yy) + rng.uniform(0, 2 * np.pi)
    length = scale * (0.3 + 0.7 * rng.random((H, W)))
    f = np.stack([length * np.cos(ang), length * np.sin(ang)])
    f[:, rng.random((H, W)) < 0.1] = 0.0
    return f


def _dense_normal(A, x: np.ndarray) -> np.ndarray:
    return dense.apply_matrix(A.T.tocsr(), dense.apply_matrix(A, x))


@pytest.fixture(autouse=True)
def _cache_on():
    old = FLOW_CACHE.max_bytes
    FLOW_CACHE.max_bytes = 2**28
    FLOW_CACHE.clear()
    yield
    FLOW_CACHE.max_bytes = old
    FLOW_CACHE.clear()


def test_fixture_has_interior_and_border_pixels():
    R = nk._radius(8.0, 0.0)
    assert 0 < H - 2 * R and 0 < W - 2 * R


@pytest.mark.parametrize("C", [1, 3])
def test_line_kernel_normal_matches_dense_and_composition(C):
    f = _flow(C)
    x = torch.from_numpy(np.random.default_rng(20 + C).random((1, C, H, W)))
    K = MotionBlur(torch.from_numpy(f))
    z = K._normal(x)
    assert z.dtype == torch.float64 and z.shape == x.shape
    assert torch.equal(z, K._adjoint(K._forward(x)))
    np.testing.assert_allclose(z.numpy(), _dense_normal(dense.motion_blur_matrix(f), x.numpy()), rtol=0, atol=1e-12)


def test_normal_is_fused_not_composed(monkeypatch):
    # guards the tests above: on the numba path _normal must not call _forward/_adjoint
    K = MotionBlur(torch.from_numpy(_flow(1)))
    x = torch.from_numpy(np.random.default_rng(2).random((1, 3, H, W)))
    ref = K._adjoint(K._forward(x))

    def boom(*_):
        raise AssertionError("_normal fell back to the composition")

    monkeypatch.setattr(K, "_forward", boom)
    monkeypatch.setattr(K, "_adjoint", boom)
    assert torch.equal(K._normal(x), ref)


def test_two_segment_batched_normal_matches_dense():
    fn, fp = _flow(5, 5.0), _flow(6, 5.0)
    fn2, fp2 = _flow(7, 5.0), _flow(8, 5.0)
    x = torch.from_numpy(np.random.default_rng(3).random((2, 3, H, W)))
    K = TwoSegmentBlur(torch.from_numpy(np.stack([fn, fn2])), torch.from_numpy(np.stack([fp, fp2])), tau=0.7)
    z = K._normal(x)
    assert torch.equal(z, K._adjoint(K._forward(x)))
    for b, (a, p) in enumerate([(fn, fp), (fn2, fp2)]):
        A = dense.two_segment_matrix(a, p, tau=0.7)
        np.testing.assert_allclose(z[b : b + 1].numpy(), _dense_normal(A, x[b : b + 1].numpy()), rtol=0, atol=1e-12)


def test_shared_flow_applies_to_every_image_of_a_batch():
    f = _flow(4)
    x = torch.from_numpy(np.random.default_rng(9).random((3, 1, H, W)))
    z = MotionBlur(torch.from_numpy(f))._normal(x)
    A = dense.motion_blur_matrix(f)
    for b in range(3):
        np.testing.assert_allclose(z[b : b + 1].numpy(), _dense_normal(A, x[b : b + 1].numpy()), rtol=0, atol=1e-12)


def test_lut_normal_with_zero_mass_corners_matches_dense():
    f = _flow(9, 7.0)
    f[:, :, ::3] = np.round(f[:, :, ::3])  # integer flows: three of the four corners have mass 0
    x = torch.from_numpy(np.random.default_rng(4).random((1, 3, H, W)))
    K = MotionBlur.lut(torch.from_numpy(f))
    z = K._normal(x)
    assert torch.equal(z, K._adjoint(K._forward(x)))
    np.testing.assert_allclose(z.numpy(), _dense_normal(dense.lut_blur_matrix(f), x.numpy()), rtol=0, atol=1e-12)


def test_float32_normal_is_the_float32_composition():
    f = torch.from_numpy(_flow(12).astype(np.float32))
    x = torch.from_numpy(np.random.default_rng(6).random((1, 3, H, W)).astype(np.float32))
    K = MotionBlur(f)
    z = K._normal(x)
    assert z.dtype == torch.float32
    assert torch.equal(z, K._adjoint(K._forward(x)))
    z64 = MotionBlur(f.double())._normal(x.double())
    np.testing.assert_allclose(z.numpy(), z64.numpy(), rtol=0, atol=1e-6)


def test_kernel_equals_adjoint_of_forward_for_every_chunking():
    rng = np.random.default_rng(11)
    vec = rng.uniform(-7, 7, (2, 2, 2, H, W))
    vec[:, :, :, rng.random((H, W)) < 0.15] = 0.0  # zero-length segments
    mass = rng.random((2, 2, H, W))
    mass[:, 1, rng.random((H, W)) < 0.15] = 0.0  # zero-mass segments
    x = rng.random((2, 3, H, W))
    ntaps = nk.max_taps(float(np.hypot(vec[:, :, 0], vec[:, :, 1]).max()))
    for beta in (0.0, 0.5):
        y = nk.forward(x, vec, mass, beta, ntaps)
        for chunks in (1, 3):
            z = nk.normal(x, vec, mass, beta, ntaps, chunks)
            assert np.array_equal(z, nk.adjoint(y, vec, mass, beta, ntaps, chunks))


def test_numpy_flows_and_cache_off_are_fused_too():
    f = _flow(13)
    x = torch.from_numpy(np.random.default_rng(7).random((1, 3, H, W)))
    ref = MotionBlur(torch.from_numpy(f))._normal(x)
    K = MotionBlur(f)  # numpy flow: never cached, converted per call
    assert torch.equal(K._normal(x), ref)
    FLOW_CACHE.max_bytes = 0
    assert torch.equal(MotionBlur(torch.from_numpy(f))._normal(x), ref)
    assert len(FLOW_CACHE) == 0


def test_public_normal_uses_the_fused_path_and_layouts():
    f = _flow(14)
    x = np.random.default_rng(8).random((H, W, 3))  # (H, W, C) numpy in, numpy out
    K = MotionBlur(torch.from_numpy(f))
    z = K.normal(x)
    assert isinstance(z, np.ndarray) and z.shape == (H, W, 3)
    ref = _dense_normal(dense.motion_blur_matrix(f), x.transpose(2, 0, 1)[None])[0].transpose(1, 2, 0)
    np.testing.assert_allclose(z, ref, rtol=0, atol=1e-12)


def test_gradients_fall_back_to_the_differentiable_composition():
    f = torch.from_numpy(_flow(15, 5.0))
    x = torch.from_numpy(np.random.default_rng(10).random((1, 3, H, W))).requires_grad_()
    g = torch.from_numpy(np.random.default_rng(11).random((1, 3, H, W)))
    K = MotionBlur(f)
    (K._normal(x) * g).sum().backward()
    # KᵀK is symmetric: the gradient of <KᵀK x, g> w.r.t. x is KᵀK g
    np.testing.assert_allclose(x.grad.numpy(), K._normal(g).numpy(), rtol=0, atol=1e-12)
    # and w.r.t. the flow it matches the composition's gradient
    fr = f.clone().requires_grad_()
    xd = x.detach()
    (MotionBlur(fr)._normal(xd) * g).sum().backward()
    fr2 = f.clone().requires_grad_()
    Kc = MotionBlur(fr2)
    (Kc._adjoint(Kc._forward(xd)) * g).sum().backward()
    assert torch.equal(fr.grad, fr2.grad)


class _Diag(LinearOperator):
    """A diagonal operator with no _normal of its own (the base default is used)."""

    def __init__(self, d: torch.Tensor):
        self.d = d
        self.image_shape = (None, d.shape[-2], d.shape[-1])

    def _forward(self, x):
        return self.d * x

    def _adjoint(self, y):
        return self.d * y


def test_base_default_normal_and_public_normal_route_through_it():
    d = torch.linspace(-2.0, 3.0, H * W, dtype=torch.float64).reshape(1, 1, H, W)
    x = torch.from_numpy(np.random.default_rng(12).random((1, 2, H, W)))
    D = _Diag(d)
    assert torch.equal(D._normal(x), d * (d * x))
    assert torch.equal(Identity()._normal(x), x)

    class Marked(_Diag):
        def _normal(self, t):
            return torch.full_like(t, 7.0)

    assert torch.equal(Marked(d).normal(x), torch.full_like(x, 7.0))


def test_hqs_answer_unchanged_by_the_fused_normal(monkeypatch):
    calls = []
    fused_normal = NumbaPrepared.normal
    monkeypatch.setattr(NumbaPrepared, "normal", lambda self, *a: calls.append(1) or fused_normal(self, *a))
    f = torch.from_numpy(_flow(16, 6.0))
    rng = np.random.default_rng(13)
    K = MotionBlur(f)
    y = K._forward(torch.from_numpy(rng.random((1, 3, H, W)))) + 0.01 * torch.from_numpy(rng.standard_normal((1, 3, H, W)))

    class Composed(MotionBlur):
        def _normal(self, t):
            return self._adjoint(self._forward(t))

    def prior(z, sigma):
        return z.clamp(0.0, 1.0)

    kw = dict(noise_level=0.01, n_iter=3, cg_iters=10, progress=False)
    fused = hqs(y, K, prior, **kw)
    n_fused = len(calls)
    plain = hqs(y, Composed(f), prior, **kw)
    assert n_fused > 3 and len(calls) == n_fused  # the x-step used the fused kernel, the control did not
    assert torch.equal(fused.x, plain.x)
    assert float((fused.x - y).abs().max()) > 1e-3  # the solve did something


# ---------------------------------------------------------------------------- float32 images
@pytest.mark.parametrize("kind", ["line", "lut", "two_segment"])
def test_float32_operators_agree_with_float64(kind):
    f = _flow(17, 7.0).astype(np.float32)  # float32 flows: both dtypes see the same segment values
    if kind == "line":
        make = MotionBlur
    elif kind == "lut":
        make = MotionBlur.lut
    else:
        def make(t):
            return TwoSegmentBlur(t, -0.6 * t, tau=0.5)
    x = np.random.default_rng(18).random((2, 3, H, W)).astype(np.float32)
    K32, K64 = make(torch.from_numpy(f)), make(torch.from_numpy(f).double())
    x32, x64 = torch.from_numpy(x), torch.from_numpy(x).double()
    for name in ("_forward", "_adjoint", "_normal"):
        a, b = getattr(K32, name)(x32), getattr(K64, name)(x64)
        assert a.dtype == torch.float32
        rel = float((a.double() - b).abs().max() / b.abs().max())
        assert rel < 1e-6, (name, rel)


def test_float32_segment_arrays_give_the_float64_weights():
    # the kernels read segment arrays as float64: float32 storage changes nothing
    rng = np.random.default_rng(19)
    vec = rng.uniform(-7, 7, (1, 2, 2, H, W)).astype(np.float32)
    mass = rng.random((1, 2, H, W)).astype(np.float32)
    ntaps = nk.max_taps(float(np.hypot(vec[:, :, 0], vec[:, :, 1]).max()))
    for dt in (np.float32, np.float64):
        x = rng.random((1, 3, H, W)).astype(dt)
        v64, m64 = vec.astype(np.float64), mass.astype(np.float64)
        assert np.array_equal(nk.forward(x, vec, mass, 0.5, ntaps), nk.forward(x, v64, m64, 0.5, ntaps))
        assert np.array_equal(nk.adjoint(x, vec, mass, 0.5, ntaps, 2), nk.adjoint(x, v64, m64, 0.5, ntaps, 2))
        assert np.array_equal(nk.normal(x, vec, mass, 0.5, ntaps, 2), nk.normal(x, v64, m64, 0.5, ntaps, 2))


def test_cache_holds_float32_segments_for_float32_images():
    f = torch.from_numpy(_flow(20).astype(np.float32))
    x = torch.from_numpy(np.random.default_rng(21).random((1, 3, H, W)).astype(np.float32))
    K = MotionBlur(f)
    y = K._forward(x)
    prep = K._cached_numba(x)
    assert prep.vec.dtype == np.float32 and prep.mass.dtype == np.float32
    assert prep.nbytes == 4 * 3 * H * W  # u, v and the mass of one segment per pixel
    assert K._cached_numba(x.double()).vec.dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        prepare_numba(f[None, None], torch.ones(1, 1, H, W), dtype=torch.float16)
    FLOW_CACHE.max_bytes = 0  # uncached: converted to float64 on every call
    assert torch.equal(MotionBlur(f)._forward(x), y)


def test_scaled_and_composed_operators_pass_the_fused_normal_on(monkeypatch):
    f = _flow(11)
    K = MotionBlur(torch.from_numpy(f))
    A = dense.motion_blur_matrix(f)
    x = torch.from_numpy(np.random.default_rng(12).random((1, 2, H, W)))
    calls = []
    fused = type(K)._normal

    def spy(self, t):
        calls.append(self)
        return fused(self, t)

    monkeypatch.setattr(type(K), "_normal", spy)
    S = -2.5 * K  # (aK)ᵀ(aK) = a² KᵀK
    np.testing.assert_allclose(S._normal(x).numpy(), 6.25 * _dense_normal(A, x.numpy()), rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(S._normal(x), S._adjoint(S._forward(x)), rtol=1e-13, atol=1e-12)
    C = K @ (0.5 * Identity())  # (K B)ᵀ(K B) = Bᵀ (KᵀK) B with B = I/2
    np.testing.assert_allclose(C._normal(x).numpy(), 0.25 * _dense_normal(A, x.numpy()), rtol=1e-13, atol=1e-12)
    torch.testing.assert_close(C._normal(x), C._adjoint(C._forward(x)), rtol=1e-13, atol=1e-12)
    C2 = (0.5 * Identity()) @ K  # the outer factor has no fused normal: (B K)ᵀ(B K) = Kᵀ (BᵀB) K
    np.testing.assert_allclose(C2._normal(x).numpy(), 0.25 * _dense_normal(A, x.numpy()), rtol=1e-13, atol=1e-12)
    assert calls.count(K) == 4  # S twice, C twice (C2 composes: K is its inner factor)


def test_public_normal_names_its_argument_x():
    K = MotionBlur(torch.zeros(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"^x must be an array"):
        K.normal("s")
    with pytest.raises(ValueError, match=r"^x contains NaN or Inf"):
        K.normal(torch.full((1, 1, 4, 4), float("nan"), dtype=torch.float64))


@pytest.mark.parametrize("path", [None, "numba", "torch"])
def test_normal_honours_the_path_and_uses_the_flow_cache(monkeypatch, path):
    K = MotionBlur(torch.from_numpy(_flow(13)), path=path)
    x = torch.from_numpy(np.random.default_rng(14).random((1, 2, H, W)))
    ref = K._adjoint(K._forward(x))
    used = []
    fused = NumbaPrepared.normal
    monkeypatch.setattr(NumbaPrepared, "normal", lambda self, *a: used.append(1) or fused(self, *a))
    hits = FLOW_CACHE.hits
    torch.testing.assert_close(K._normal(x), ref, rtol=0, atol=1e-12)
    if path == "torch":  # the torch path composes its own K and Kᵀ, never the numba kernel
        assert used == []
    else:
        assert used == [1] and FLOW_CACHE.hits == hits + 1  # the segments built for `ref` are reused
