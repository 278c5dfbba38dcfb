"""Unusual but valid arrays give the plain array's answer (the unusual-input audit).

Each public entry point is called on a plain C-contiguous float64 array and on the same values
held differently — numpy: Fortran order, negative strides, strided slices, read-only, memmap,
big-endian; torch: transposed/permuted/expanded views, channels_last, ``requires_grad``,
inference-mode tensors, views of numpy memory. The result must equal the plain one, come back
as a plain array of the documented type and dtype, leave the input unchanged and warn nothing.

``strict_from_numpy`` and ``strict_float`` make ``torch.from_numpy`` (a read-only array) and
``float()`` (a tensor that requires grad) raise where torch only warns once per process, so a test
cannot pass because an earlier one used up the warning.
"""
import warnings

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur import metrics, priors, solvers, viz
from pnpdeblur.backend import to_torch
from pnpdeblur.estimation import blur_score, estimate_flow_classical, flow_blur_score, optical_flow
from pnpdeblur.operators import FLOW_CACHE, to_scipy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H, W = 12, 16


@pytest.fixture
def strict_from_numpy(monkeypatch):
    """``torch.from_numpy`` that raises on a read-only array (torch warns once, then never again)."""
    real = torch.from_numpy

    def strict(a):
        assert a.flags.writeable, "torch.from_numpy got a read-only array"
        return real(a)

    monkeypatch.setattr(torch, "from_numpy", strict)


@pytest.fixture
def strict_float(monkeypatch):
    """``float(tensor)`` that raises where torch warns, once per process, about a tensor requiring grad."""
    real = torch.Tensor.__float__

    def strict(t):
        assert not t.requires_grad, "float() of a tensor that requires grad"
        return real(t)

    monkeypatch.setattr(torch.Tensor, "__float__", strict)


def _readonly(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def _memmap(a, tmp_path):
    m = np.memmap(tmp_path / "a.dat", dtype=a.dtype, mode="w+", shape=a.shape)
    m[:] = a
    return m


def _strided(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


NUMPY_VARIANTS = {
    "fortran": np.asfortranarray,
    "flipped": lambda a: np.flip(np.flip(a).copy()),  # negative strides on every axis
    "strided": _strided,
    "readonly": _readonly,
    "memmap": None,  # needs tmp_path
    "big-endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
}


def numpy_variant(name, a, tmp_path):
    return _memmap(a, tmp_path) if name == "memmap" else NUMPY_VARIANTS[name](a)


def _inference(t):
    with torch.inference_mode():
        return t.clone()


TORCH_VARIANTS = {
    "transposed": lambda t: t.transpose(-1, -2).contiguous().transpose(-1, -2),
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "permuted": lambda t: t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2),
    "expanded": lambda t: t[:1].expand(*t.shape) if t.shape[0] == 1 else t,
    "requires_grad": lambda t: t.clone().requires_grad_(True),
    "inference": _inference,
    "numpy-fortran-view": lambda t: torch.from_numpy(np.asfortranarray(t.numpy())),
}


def _as_numpy(out):
    return out.detach().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def check_same(fn, plain, unusual, tol=1e-10):
    """``fn(unusual)`` equals ``fn(plain)``, has its type and dtype, warns nothing, leaves ``unusual`` as it was."""
    ref = fn(plain)
    before = unusual.detach().clone() if isinstance(unusual, torch.Tensor) else np.array(unusual, copy=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn(unusual)
    if isinstance(ref, (np.ndarray, torch.Tensor)):
        assert type(out) is type(ref)  # a memmap in gives a plain ndarray back
        assert out.dtype == ref.dtype and out.shape == ref.shape
        if isinstance(out, np.ndarray) and isinstance(unusual, np.ndarray):
            assert not np.shares_memory(out, unusual)
    np.testing.assert_allclose(_as_numpy(out), _as_numpy(ref), rtol=tol, atol=tol)
    if isinstance(unusual, torch.Tensor):
        assert torch.equal(unusual.detach(), before)
    else:
        np.testing.assert_array_equal(unusual, before)
    return out


@pytest.fixture
def flow():
    r = np.random.default_rng(5)
    return np.stack([np.full((H, W), 3.0) + r.random((H, W)), 2 * r.random((H, W)) - 1])


@pytest.fixture
def image():
    return np.random.default_rng(6).random((H, W, 3))


OPERATORS = {
    "MotionBlur": lambda f: pd.MotionBlur(f),
    "MotionBlur.lut": lambda f: pd.MotionBlur.lut(f),
    "TwoSegmentBlur": lambda f: pd.TwoSegmentBlur(f, -f),
    "WarpBlur": lambda f: pd.WarpBlur(f, -f, n=4),
    "UniformBlur": lambda f: pd.UniformBlur(np.full((3, 5), 1 / 15)),
    "Convolution": lambda f: pd.Convolution(np.full((3, 5), 1 / 15)),
}


# ---------------------------------------------------------------------------- fixed bugs
@pytest.mark.parametrize("make", ["MotionBlur", "Convolution", "WarpBlur"])
@pytest.mark.parametrize("shape", [(1, 9), (1, 1)])
def test_flipped_axis_of_length_one(make, shape):
    """numpy calls ``x[::-1]`` of a 1-row image contiguous, torch refuses its negative stride:
    ``to_torch`` gave it to ``torch.from_numpy`` as it was (ValueError); now it is copied."""
    r = np.random.default_rng(0)
    x = r.random(shape)
    K = OPERATORS[make](r.random((2,) + shape))
    flipped = np.flip(x.copy(), 0)  # the same values, stride < 0 on the length-1 axis
    assert flipped.strides[0] < 0 and flipped.flags.c_contiguous
    for call in (K.apply, K.adjoint, K.normal):
        check_same(call, x, flipped)
    np.testing.assert_array_equal(to_torch(flipped).numpy(), x)


INFERENCE_OPERATORS = {  # the flows as given, so that an in-place change reaches the operator
    "MotionBlur": lambda f, g: pd.MotionBlur(f),
    "MotionBlur.lut": lambda f, g: pd.MotionBlur.lut(f),
    "TwoSegmentBlur": lambda f, g: pd.TwoSegmentBlur(f, g),
}


@pytest.mark.parametrize("make", list(INFERENCE_OPERATORS))
def test_inference_mode_flow(make, flow, image):
    """A flow made under ``torch.inference_mode`` has no version counter: the flow cache read it
    and raised RuntimeError on every call; now such flows skip the cache (and an in-place change
    made to one under inference mode is seen)."""
    make = INFERENCE_OPERATORS[make]
    f, g = torch.from_numpy(flow.copy()), torch.from_numpy(-0.5 * flow)
    fi, gi = _inference(f), _inference(g)
    K, ref = make(fi, gi), make(f, g)
    for name in ("apply", "adjoint", "normal"):
        np.testing.assert_allclose(getattr(K, name)(image), getattr(ref, name)(image), rtol=1e-12, atol=1e-12)
    with torch.inference_mode():
        fi.mul_(0.5)
        gi.mul_(0.5)
    np.testing.assert_allclose(K(image), make(f * 0.5, g * 0.5)(image), rtol=1e-12, atol=1e-12)


def test_inference_flow_cached_by_value():
    """An inference tensor has no version counter: its entry is checked against a copy."""
    built = []
    with torch.inference_mode():
        t = torch.zeros(2)
    for _ in range(2):
        assert FLOW_CACHE.get((t,), ("test-inference",), lambda: built.append(1) or np.zeros(1)) is not None
    assert len(built) == 1
    with torch.inference_mode():
        t[0] = 1.0
    FLOW_CACHE.get((t,), ("test-inference",), lambda: built.append(1) or np.zeros(1))
    assert len(built) == 2
    FLOW_CACHE.discard((t,), ("test-inference",))


def test_grad_tracking_photo_does_not_warn(image, strict_float):
    """``as_image_batch`` took ``float()`` of the min/max of a photo that requires grad: torch's
    'Converting a tensor with requires_grad=True to a scalar' warning; now detached."""
    a = torch.from_numpy(image.transpose(2, 0, 1).copy())
    b = torch.roll(a, 1, dims=2)
    check_same(lambda t: optical_flow(t, b), a, a.clone().requires_grad_(True), tol=1e-6)


@pytest.mark.parametrize("variant", ["flipped", "readonly", "big-endian", "fortran", "memmap"])
def test_flow_blur_score_numpy_layouts(variant, flow, image, tmp_path, strict_from_numpy):
    """``flow_blur_score`` gave a numpy flow to ``torch.from_numpy`` itself: flipped flows raised
    (negative strides), read-only ones warned; now it goes through ``to_torch``."""
    unusual = numpy_variant(variant, flow, tmp_path)
    check_same(flow_blur_score, flow, unusual)
    check_same(lambda f: blur_score(image, flow=f), flow, unusual)


def test_to_scipy_read_only_vector(flow, strict_from_numpy):
    """``to_scipy``'s matvec handed scipy's vector to ``torch.from_numpy``: a read-only one warned
    (torch cannot mark a tensor read-only); now it goes through the operator's own call."""
    A = to_scipy(pd.MotionBlur(flow), (1, 1, H, W))
    v = np.random.default_rng(1).random(H * W)
    for call in (A.matvec, A.rmatvec):
        out = check_same(call, v, _readonly(v))
        assert out.shape == v.shape
    assert A.matvec(v[:, None]).shape == (H * W, 1)


# ------------------------------------------------------------------------- what already passed
@pytest.mark.parametrize("variant", list(NUMPY_VARIANTS))
@pytest.mark.parametrize("make", list(OPERATORS))
def test_operators_numpy_layouts(make, variant, flow, image, tmp_path):
    K = OPERATORS[make](flow)
    unusual = numpy_variant(variant, image, tmp_path)
    for call in (K.apply, K.adjoint, K.normal, K.__call__):
        check_same(call, image, unusual)


@pytest.mark.parametrize("variant", list(TORCH_VARIANTS))
@pytest.mark.parametrize("make", list(OPERATORS))
def test_operators_torch_layouts(make, variant, flow, image):
    K = OPERATORS[make](flow)
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    for call in (K.apply, K.adjoint, K.normal):
        check_same(call, x, TORCH_VARIANTS[variant](x))


@pytest.mark.parametrize("variant", ["flipped", "readonly", "big-endian", "memmap"])
@pytest.mark.parametrize("make", ["MotionBlur", "TwoSegmentBlur", "WarpBlur"])
def test_flows_numpy_layouts(make, variant, flow, image, tmp_path):
    check_same(lambda f: OPERATORS[make](f)(image), flow, numpy_variant(variant, flow, tmp_path))


@pytest.mark.parametrize("variant", ["transposed", "requires_grad", "numpy-fortran-view"])
@pytest.mark.parametrize("make", ["MotionBlur", "WarpBlur"])
def test_flows_torch_with_numpy_image(make, variant, flow, image):
    """A torch flow with a numpy image (and a float32 flow with a float64 image) is documented."""
    f = torch.from_numpy(flow.copy())
    check_same(lambda g: OPERATORS[make](g)(image), f, TORCH_VARIANTS[variant](f))
    np.testing.assert_allclose(OPERATORS[make](flow.astype(np.float32))(image), OPERATORS[make](flow)(image),
                               atol=1e-5)


def test_flow_expanded_over_batch(flow, image):
    f = torch.from_numpy(flow.copy())[None]
    x = torch.from_numpy(np.stack([image.transpose(2, 0, 1)] * 3))
    check_same(lambda g: pd.MotionBlur(g)(x), f.expand(3, -1, -1, -1).contiguous(), f.expand(3, -1, -1, -1))


def test_requires_grad_image_gets_gradient(flow, image):
    """The operators are documented differentiable in the image and the flow."""
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy()).requires_grad_(True)
    f = torch.from_numpy(flow.copy()).requires_grad_(True)
    pd.MotionBlur(f)(x).sum().backward()
    assert x.grad is not None and f.grad is not None and f.grad.abs().sum() > 0


SOLVES = {
    "cg": lambda y, K: solvers.cg(K.T @ K + 0.1 * pd.operators.Identity(), y, maxiter=8)[0],
    "hqs": lambda y, K: solvers.hqs(y, K, priors.TV(), noise_level=0.01, n_iter=2, cg_iters=4).x,
    "admm": lambda y, K: solvers.admm(y, K, priors.TV(), noise_level=0.01, n_iter=2, cg_iters=4).x,
    "richardson_lucy": lambda y, K: solvers.richardson_lucy(y, K, iters=3).x,
    "fft_deconv": lambda y, K: solvers.fft_deconv(y, pd.UniformBlur(np.full((1, 5), 0.2)), 1e-2),
}


@pytest.mark.parametrize("variant", ["fortran", "flipped", "readonly", "memmap", "big-endian"])
@pytest.mark.parametrize("solver", list(SOLVES))
def test_solvers_numpy_layouts(solver, variant, flow, image, tmp_path):
    K = pd.MotionBlur(flow)
    y = np.clip(K(image), 0.01, 1)
    check_same(lambda v: SOLVES[solver](v, K), y, numpy_variant(variant, y, tmp_path))


@pytest.mark.parametrize("variant", ["channels_last", "transposed", "requires_grad", "inference"])
@pytest.mark.parametrize("solver", list(SOLVES))
def test_solvers_torch_layouts(solver, variant, flow, image):
    K = pd.MotionBlur(flow)
    y = torch.from_numpy(np.clip(K(image), 0.01, 1).transpose(2, 0, 1)[None].copy())
    check_same(lambda v: SOLVES[solver](v, K), y, TORCH_VARIANTS[variant](y))


def test_solver_torch_start_not_written(flow, image):
    """``x0`` / ``z`` given as torch tensors are starting points only: never updated in place."""
    K = pd.MotionBlur(flow)
    y = torch.from_numpy(K(image).transpose(2, 0, 1)[None].copy())
    x0 = y.clamp(0.05, 1)
    check_same(lambda v: solvers.hqs(y, K, priors.TV(), noise_level=0.01, n_iter=2, cg_iters=4, x0=v).x, x0,
               x0.clone())
    check_same(lambda v: solvers.cg(K.T @ K + pd.operators.Identity(), y, x0=v, maxiter=4)[0], x0, x0.clone())
    check_same(lambda v: solvers.richardson_lucy(y.clamp(0.01, 1), K, iters=3, x0=v).x, x0, x0.clone())


PRIORS = {
    "TV": priors.TV,
    "Tikhonov": lambda: priors.Tikhonov(operator="gradient"),
    "SkimageTV": priors.SkimageTV,
    "DnCNN": lambda: priors.DnCNNPrior(ensemble=False),
    "DRUNet": lambda: priors.DRUNetPrior(ensemble=False),
}


@pytest.mark.parametrize("variant", ["fortran", "flipped", "strided", "readonly", "big-endian"])
@pytest.mark.parametrize("prior", list(PRIORS))
def test_priors_numpy_layouts(prior, variant, image, tmp_path):
    p = PRIORS[prior]()
    check_same(lambda z: p(z, 0.05), image, numpy_variant(variant, image, tmp_path), tol=1e-6)


@pytest.mark.parametrize("variant", ["channels_last", "permuted", "requires_grad", "inference"])
@pytest.mark.parametrize("prior", list(PRIORS))
def test_priors_torch_layouts(prior, variant, image):
    p = PRIORS[prior]()
    z = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    if variant == "requires_grad" and prior == "SkimageTV":  # numpy inside: no gradient to give, so it says so
        with pytest.raises(ValueError, match="^z requires grad, but SkimageTV runs scikit-image"):
            p(TORCH_VARIANTS[variant](z), 0.05)
        return
    check_same(lambda v: p(v, 0.05), z, TORCH_VARIANTS[variant](z), tol=1e-6)


@pytest.mark.parametrize("variant", ["fortran", "flipped", "readonly", "memmap", "big-endian"])
def test_metrics_and_pictures_numpy_layouts(variant, flow, image, tmp_path):
    ref = np.clip(image + 0.05, 0, 1)
    x = numpy_variant(variant, image, tmp_path)
    check_same(lambda v: metrics.psnr(v, ref), image, x)
    check_same(lambda v: metrics.ssim(v, ref), image, x)
    check_same(lambda v: metrics.psnr(ref, v), image, x)
    f = numpy_variant(variant, flow, tmp_path / ".." if variant != "memmap" else tmp_path)
    check_same(lambda g: metrics.flow_epe(g, -flow), flow, f)
    check_same(lambda g: metrics.flow_mse(flow * 0.5, g), flow, f)
    check_same(viz.flow_to_color, flow, f)


@pytest.mark.parametrize("variant", ["transposed", "requires_grad", "inference", "numpy-fortran-view"])
def test_metrics_and_pictures_torch_layouts(variant, flow, image):
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())
    ref = (x + 0.05).clamp(0, 1)
    t = TORCH_VARIANTS[variant](x)
    check_same(lambda v: metrics.psnr(v, ref), x, t)
    check_same(lambda v: metrics.ssim(v, ref), x, t)
    f = torch.from_numpy(flow.copy())
    check_same(lambda g: metrics.flow_epe(g, flow), f, TORCH_VARIANTS[variant](f))  # torch vs numpy flow
    check_same(viz.flow_to_color, f, TORCH_VARIANTS[variant](f))


def test_comparison_figure_readonly_flipped_torch(image):
    """Every panel of the same photo, however it is held, shows the same pixels and the same PSNR."""
    import matplotlib.pyplot as plt

    ref = np.clip(image + 0.05, 0, 1)
    held = [image, _readonly(image), np.flip(np.flip(image).copy()), torch.from_numpy(image.transpose(2, 0, 1).copy())]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = viz.comparison_figure(held, titles=["a"] * 4, reference=ref)
    panels = [np.asarray(ax.images[0].get_array(), float) for ax in fig.axes if ax.images]
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    plt.close(fig)
    assert len(panels) == 4 and len(set(titles)) == 1 and "dB" in titles[0]
    for p in panels[1:]:
        np.testing.assert_array_equal(p, panels[0])
    np.testing.assert_array_equal(held[1], image)


@pytest.mark.parametrize("variant", ["fortran", "flipped", "readonly", "big-endian"])
def test_estimation_numpy_layouts(variant, tmp_path):
    image = np.random.default_rng(7).random((18, 20, 3))  # the classical estimators need 16 px
    y = pd.MotionBlur(np.stack([np.full((18, 20), 4.0), np.zeros((18, 20))]))(image)
    u = numpy_variant(variant, y, tmp_path)
    check_same(lambda v: pd.estimate_kernel(v, 5, iterations=1), y, u, tol=1e-8)
    check_same(estimate_flow_classical, y, u, tol=1e-8)
    check_same(lambda v: optical_flow(v, np.roll(y, 1, axis=1)), y, u, tol=1e-8)
