"""The numba path's backward (``SegmentBlurFn.backward``) for each input alone, and the cache limit.

``SegmentBlurFn.backward`` hands each input its own gradient only when autograd asks for it
(``ctx.needs_input_grad``); these tests ask for one input at a time and compare with the torch
path, whose gradients come from torch's own autograd (an independent implementation).
"""
import pytest
import torch

from pnpdeblur.operators import _segment as seg


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def _problem(seed=0, n=2, c=2, h=7, w=9, s=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    vec = 3.0 * (torch.rand(1, s, 2, h, w, generator=g, dtype=torch.float64) - 0.5)
    mass = 0.5 + torch.rand(1, s, h, w, generator=g, dtype=torch.float64)
    cot = torch.rand(n, c, h, w, generator=g, dtype=torch.float64)
    return x, vec, mass, cot


def _grads(path, which, transpose, beta=0.0):
    x, vec, mass, cot = _problem()
    inputs = {"x": x, "vec": vec, "mass": mass}
    inputs[which].requires_grad_(True)
    out = seg.segment_blur(inputs["x"], inputs["vec"], inputs["mass"], beta, transpose, path)
    (out * cot).sum().backward()
    return {k: (None if t.grad is None else t.grad.clone()) for k, t in inputs.items()}


def _assert_only_input_gets_torch_paths_gradient(which, transpose, beta):
    got = _grads("numba", which, transpose, beta=beta)
    ref = _grads("torch", which, transpose, beta=beta)
    assert got[which] is not None, f"no gradient for {which}"
    torch.testing.assert_close(got[which], ref[which], rtol=1e-9, atol=1e-10)
    for other in {"x", "vec", "mass"} - {which}:
        assert got[other] is None


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("which", ["x", "vec", "mass"])
def test_each_input_alone_gets_the_torch_paths_gradient(which, transpose):
    _assert_only_input_gets_torch_paths_gradient(which, transpose, beta=0.0 if which != "mass" else 0.5)


# A segment centred off its pixel (β ≠ 0: the second segment of a two-segment blur) has a flow
# gradient with a −β·u term that vanishes at β = 0; several β so that a wrong factor shows too.
@pytest.mark.parametrize("beta", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("which", ["vec", "mass"])
def test_off_centre_segments_get_the_torch_paths_gradient(which, transpose, beta):
    _assert_only_input_gets_torch_paths_gradient(which, transpose, beta)


def test_image_gradient_is_the_transpose_applied_to_the_cotangent():
    x, vec, mass, cot = _problem(seed=3)
    x.requires_grad_(True)
    (seg.segment_blur(x, vec, mass, 0.0, False, "numba") * cot).sum().backward()
    torch.testing.assert_close(x.grad, seg.segment_blur(cot, vec, mass, 0.0, True, "numba"), rtol=0, atol=1e-12)


class _Sized:
    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_setting_the_limit_to_the_current_size_keeps_every_entry():
    cache = seg.FlowCache(1000)
    a, b = torch.zeros(1), torch.zeros(1)
    cache.get([a], ("t",), lambda: _Sized(300))
    cache.get([b], ("t",), lambda: _Sized(200))
    assert (len(cache), cache.nbytes) == (2, 500)
    cache.max_bytes = 500  # exactly what is held: nothing goes
    assert (len(cache), cache.nbytes) == (2, 500)
    cache.max_bytes = 499  # one byte less: the least recently used entry (a's) goes
    assert (len(cache), cache.nbytes) == (1, 200)
    hits = cache.hits
    cache.get([b], ("t",), lambda: _Sized(200))
    assert cache.hits == hits + 1
