"""MotionBlur (line and LUT), TwoSegmentBlur and WarpBlur against the dense reference."""
import warnings

import numpy as np
import pytest
import torch

import pnpdeblur as pd
from pnpdeblur.backend import to_torch
from pnpdeblur.operators import dense, motion_kernel, motion_kernel_table

PATHS = ["numba", "torch"]
TOL = {np.float32: 1e-5, np.float64: 1e-12}


def random_flow(rng, n, h, w, lim, integer_share=0.3, zero_share=0.1):
    """Fractional flows in [-lim, lim], some integer, some exactly zero."""
    f = rng.uniform(-lim, lim, (n, 2, h, w))
    mask = rng.random((n, 1, h, w))
    f = np.where(mask < integer_share, np.round(f), f)
    f = np.where(mask > 1 - zero_share, 0.0, f)
    return f


def per_image(matrix_fn, x, *flows, transpose=False, **kw):
    out = []
    for b in range(x.shape[0]):
        A = matrix_fn(*[f[min(b, f.shape[0] - 1)] for f in flows], **kw)
        if transpose:
            A = A.T.tocsr()
        out.append(dense.apply_matrix(A, x[b : b + 1])[0])
    return np.stack(out)


def test_line_kernel_examples_from_design():
    k6 = motion_kernel((6, 0))
    r = k6.shape[0] // 2
    np.testing.assert_allclose(k6[r, r - 4 : r + 5], np.array([0, 0.5, 1, 1, 1, 1, 1, 0.5, 0]) / 6, atol=1e-15)
    k7 = motion_kernel((7, 0))
    r = k7.shape[0] // 2
    np.testing.assert_allclose(k7[r, r - 4 : r + 5], np.array([0, 1, 1, 1, 1, 1, 1, 1, 0]) / 7, atol=1e-15)
    assert np.count_nonzero(k7) == 7
    np.testing.assert_array_equal(motion_kernel((0, 0)), [[1.0]])
    # vertical motion is the transpose of horizontal motion
    np.testing.assert_allclose(motion_kernel((0, 5)), motion_kernel((5, 0)).T, atol=1e-15)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lim", [3.0, 23.0, 46.0])
def test_motion_blur_matches_dense(path, dtype, lim):
    rng = np.random.default_rng(int(lim) + (dtype == np.float32))
    n, h, w = 2, 11, 13
    flow = random_flow(rng, n, h, w, lim)
    x = rng.random((n, 3, h, w))
    g = rng.random((n, 3, h, w))
    K = pd.MotionBlur(flow.astype(dtype), path=path)
    ref = per_image(dense.motion_blur_matrix, x, flow.astype(dtype).astype(np.float64))
    refT = per_image(dense.motion_blur_matrix, g, flow.astype(dtype).astype(np.float64), transpose=True)
    y = K(x.astype(dtype))
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=TOL[dtype], rtol=0)
    np.testing.assert_allclose(K.adjoint(g.astype(dtype)), refT, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize("path", PATHS)
def test_lut_matches_dense_table(path):
    rng = np.random.default_rng(5)
    flow = random_flow(rng, 1, 10, 9, 16.0)
    flow[0, :, 0, 0] = (16.0, -16.0)  # the table's corners are included
    x = rng.random((1, 2, 10, 9))
    K = pd.MotionBlur.lut(flow, path=path)
    np.testing.assert_allclose(K(x), per_image(dense.lut_blur_matrix, x, flow), atol=1e-12)
    np.testing.assert_allclose(K.T(x), per_image(dense.lut_blur_matrix, x, flow, transpose=True), atol=1e-12)


def test_lut_equals_line_kernel_at_integer_flows():
    rng = np.random.default_rng(6)
    flow = np.round(rng.uniform(-16, 16, (1, 2, 12, 12)))
    x = rng.random((1, 3, 12, 12))
    np.testing.assert_allclose(pd.MotionBlur.lut(flow)(x), pd.MotionBlur(flow)(x), atol=1e-12)


def test_lut_table_shape_and_entries():
    table = motion_kernel_table()
    assert table.shape[:2] == (33, 33)
    np.testing.assert_allclose(table.sum(axis=(2, 3)), 1.0, atol=1e-12)
    r = table.shape[2] // 2
    np.testing.assert_allclose(table[16 + 3, 16 - 5], motion_kernel((-5, 3), r))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_segment_matches_dense(path, dtype):
    rng = np.random.default_rng(7)
    fn = random_flow(rng, 2, 9, 12, 46.0).astype(dtype)
    fp = random_flow(rng, 2, 9, 12, 46.0).astype(dtype)
    x = rng.random((2, 3, 9, 12))
    K = pd.TwoSegmentBlur(fn, fp, tau=0.7, path=path)
    f64 = (fn.astype(np.float64), fp.astype(np.float64))
    np.testing.assert_allclose(K(x.astype(dtype)), per_image(dense.two_segment_matrix, x, *f64, tau=0.7), atol=TOL[dtype])
    np.testing.assert_allclose(
        K.T(x.astype(dtype)), per_image(dense.two_segment_matrix, x, *f64, tau=0.7, transpose=True), atol=TOL[dtype]
    )


def test_two_segment_with_opposite_flows_is_the_line_kernel():
    rng = np.random.default_rng(8)
    f = rng.uniform(-12, 12, (1, 2, 14, 15))
    small = np.hypot(f[0, 0], f[0, 1]) < 4  # need |tau f| >= 1
    f[0, 0][small] += 5
    x = rng.random((1, 3, 14, 15))
    for tau in (0.5, 0.8):
        two = pd.TwoSegmentBlur(f, -f, tau=tau)(x)
        line = pd.MotionBlur(2 * tau * f)(x)
        np.testing.assert_allclose(two, line, atol=1e-12)
    # the default is Reblur2Deblur's exposure cycle tau = 1
    np.testing.assert_allclose(pd.TwoSegmentBlur(f, -f)(x), pd.MotionBlur(2 * f)(x), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_warp_blur_matches_dense(dtype):
    rng = np.random.default_rng(9)
    fn = random_flow(rng, 1, 8, 9, 10.0).astype(dtype)
    fp = random_flow(rng, 1, 8, 9, 10.0).astype(dtype)
    x = rng.random((1, 2, 8, 9))
    K = pd.WarpBlur(fn, fp, n=3, tau=0.9)
    f64 = (fn[0].astype(np.float64), fp[0].astype(np.float64))
    A = dense.warp_blur_matrix(*f64, n=3, tau=0.9)
    np.testing.assert_allclose(K(x.astype(dtype)), dense.apply_matrix(A, x), atol=TOL[dtype])
    np.testing.assert_allclose(K.T(x.astype(dtype)), dense.apply_matrix(A.T.tocsr(), x), atol=TOL[dtype])


def test_dense_references_default_to_the_operators_tau():
    # a reference called without tau must describe the operator built without tau
    rng = np.random.default_rng(10)
    fn, fp = random_flow(rng, 1, 7, 8, 6.0), random_flow(rng, 1, 7, 8, 6.0)
    x = rng.random((1, 2, 7, 8))
    np.testing.assert_allclose(
        pd.TwoSegmentBlur(fn, fp)(x), per_image(dense.two_segment_matrix, x, fn, fp), atol=1e-12
    )
    A = dense.warp_blur_matrix(fn[0], fp[0], n=3)
    np.testing.assert_allclose(pd.WarpBlur(fn, fp, n=3)(x), dense.apply_matrix(A, x), atol=1e-12)


def _operators(rng, h, w, n=2):
    f1 = random_flow(rng, n, h, w, 46.0)
    f2 = random_flow(rng, n, h, w, 46.0)
    fl = random_flow(rng, n, h, w, 16.0)
    return {
        "line-numba": pd.MotionBlur(f1, path="numba"),
        "line-torch": pd.MotionBlur(f1, path="torch"),
        "lut": pd.MotionBlur.lut(fl),
        "two-segment": pd.TwoSegmentBlur(f1, f2, tau=0.6),
        "warp": pd.WarpBlur(f1 / 4, f2 / 4, n=4),
    }


@pytest.mark.parametrize("name", ["line-numba", "line-torch", "lut", "two-segment", "warp"])
def test_dot_test_and_constant_preservation(name):
    rng = np.random.default_rng(10)
    h, w = 20, 17
    K = _operators(rng, h, w)[name]
    x = rng.standard_normal((2, 3, h, w))
    y = rng.standard_normal((2, 3, h, w))
    lhs = np.vdot(K(x), y)
    rhs = np.vdot(x, K.T(y))
    assert abs(lhs - rhs) <= 1e-11 * max(1.0, abs(lhs))
    np.testing.assert_allclose(K(np.ones((2, 1, h, w))), 1.0, atol=1e-12)


def test_zero_flow_is_identity_and_sign_does_not_matter():
    rng = np.random.default_rng(11)
    x = rng.random((1, 3, 16, 16))
    for path in PATHS:
        np.testing.assert_array_equal(pd.MotionBlur(np.zeros((1, 2, 16, 16)), path=path)(x), x)
        f = random_flow(rng, 1, 16, 16, 46.0)
        np.testing.assert_allclose(pd.MotionBlur(f, path=path)(x), pd.MotionBlur(-f, path=path)(x), atol=1e-12)
    f = random_flow(rng, 1, 16, 16, 16.0)
    np.testing.assert_allclose(pd.MotionBlur.lut(f)(x), pd.MotionBlur.lut(-f)(x), atol=1e-12)


def test_flow_batch_of_one_blurs_every_image():
    rng = np.random.default_rng(12)
    f = random_flow(rng, 1, 10, 10, 20.0)
    x = rng.random((3, 2, 10, 10))
    y = pd.MotionBlur(f)(x)
    for b in range(3):
        np.testing.assert_allclose(y[b : b + 1], pd.MotionBlur(f)(x[b : b + 1]), atol=1e-14)


@pytest.mark.parametrize("path", PATHS)
def test_numba_and_torch_paths_agree_float32(path):
    rng = np.random.default_rng(13)
    f = torch.tensor(random_flow(rng, 2, 24, 31, 46.0), dtype=torch.float32)
    x = torch.rand(2, 3, 24, 31, dtype=torch.float32)
    other = "torch" if path == "numba" else "numba"
    torch.testing.assert_close(pd.MotionBlur(f, path=path)(x), pd.MotionBlur(f, path=other)(x), atol=1e-5, rtol=0)


def test_types_and_layouts_round_trip():
    rng = np.random.default_rng(14)
    f = random_flow(rng, 1, 12, 14, 10.0)
    img_hwc = rng.random((12, 14, 3))
    K = pd.MotionBlur(f)
    y_np = K(img_hwc)
    assert isinstance(y_np, np.ndarray) and y_np.shape == (12, 14, 3)
    y_nchw = K(img_hwc.transpose(2, 0, 1)[None])
    np.testing.assert_allclose(y_np, y_nchw[0].transpose(1, 2, 0), atol=1e-14)
    y_t = K(torch.from_numpy(img_hwc.transpose(2, 0, 1).copy()))  # torch (C, H, W)
    assert isinstance(y_t, torch.Tensor) and y_t.shape == (3, 12, 14)
    np.testing.assert_allclose(y_t.numpy(), y_nchw[0], atol=1e-14)
    grey = K(img_hwc[..., 0])
    np.testing.assert_allclose(grey, y_np[..., 0], atol=1e-14)


def _gradcheck(fn, inputs):
    return torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("transpose", [False, True])
def test_motion_blur_gradients_image_and_flow(path, transpose):
    rng = np.random.default_rng(15)
    x = torch.tensor(rng.random((2, 2, 6, 7)), requires_grad=True)
    f = torch.tensor(rng.uniform(-6, 6, (2, 2, 6, 7)), requires_grad=True)

    def fn(x, f):
        K = pd.MotionBlur(f, path=path)
        return (K.T if transpose else K)(x)

    assert _gradcheck(fn, (x, f))


def test_shared_flow_gradient_sums_over_batch():
    rng = np.random.default_rng(16)
    x = torch.tensor(rng.random((3, 1, 6, 6)), requires_grad=True)
    f = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 6)), requires_grad=True)
    assert _gradcheck(lambda x, f: pd.MotionBlur(f)(x), (x, f))


def test_two_segment_lut_and_warp_gradients():
    rng = np.random.default_rng(17)
    x = torch.tensor(rng.random((1, 2, 6, 7)), requires_grad=True)
    a = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 7)), requires_grad=True)
    b = torch.tensor(rng.uniform(-5, 5, (1, 2, 6, 7)), requires_grad=True)
    assert _gradcheck(lambda x, a, b: pd.TwoSegmentBlur(a, b, tau=0.7)(x), (x, a, b))
    assert _gradcheck(lambda x, a: pd.MotionBlur.lut(a)(x), (x, a))
    assert _gradcheck(lambda x, a, b: pd.WarpBlur(a, b, n=2)(x), (x, a, b))
    assert _gradcheck(lambda x, a, b: pd.WarpBlur(a, b, n=2).T(x), (x, a, b))


def test_gradient_is_finite_at_zero_flow():
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64)
    for path in PATHS:
        f = torch.zeros(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
        pd.MotionBlur(f, path=path)(x).sum().backward()
        assert torch.isfinite(f.grad).all()


def test_warp_blur_adjoint_works_under_inference_mode():
    # the adjoint is a vector-Jacobian product; under torch.inference_mode() autograd
    # recorded nothing and K.T raised "element 0 of tensors does not require grad"
    rng = np.random.default_rng(0)
    f = rng.uniform(-2, 2, (2, 8, 9)).astype(np.float32)
    y = torch.from_numpy(rng.random((1, 2, 8, 9)).astype(np.float32))
    K = pd.WarpBlur(f, -f, n=3)
    want = K.T(y)
    with torch.inference_mode():
        got = K.T(y.clone())
        got_built_inside = pd.WarpBlur(torch.from_numpy(f), torch.from_numpy(-f), n=3).T(y.clone())
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_built_inside, want)


def _blur_in_child(queue, flow, x):
    queue.put(pd.MotionBlur(flow)(x))


def test_forked_process_can_blur_after_the_parent_did():
    # DataLoader workers fork after the parent has run the CPU kernels
    import multiprocessing as mp

    rng = np.random.default_rng(18)
    flow = rng.uniform(-9, 9, (1, 2, 12, 12))
    x = rng.random((1, 2, 12, 12))
    expected = pd.MotionBlur(flow)(x)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_blur_in_child, args=(queue, flow, x))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    np.testing.assert_array_equal(queue.get(timeout=10), expected)


def test_concurrent_calls_from_threads_agree():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(19)
    flow = rng.uniform(-20, 20, (1, 2, 40, 40))
    xs = [rng.random((1, 3, 40, 40)) for _ in range(6)]
    K = pd.MotionBlur(flow)
    expected = [K(x) for x in xs] + [K.T(x) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(K, xs)) + list(pool.map(K.T, xs))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("chunk", [1, 7 * 3 * 20 * 23, 10**9])
@pytest.mark.parametrize("transpose", [False, True])
def test_torch_path_tap_chunking_is_exact(monkeypatch, chunk, transpose):
    """One tap per chunk, a few taps per chunk (not dividing their number) and all at once."""
    from pnpdeblur.operators import _segment

    monkeypatch.setitem(_segment._TORCH_CHUNK_ELEMENTS, "cpu", chunk)
    rng = np.random.default_rng(21)
    f = torch.tensor(random_flow(rng, 2, 20, 23, 30.0))
    x = torch.tensor(rng.random((2, 3, 20, 23)))
    K, ref = pd.MotionBlur(f, path="torch"), pd.MotionBlur(f, path="numba")
    got, want = (K.T(x), ref.T(x)) if transpose else (K(x), ref(x))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_numpy_input_is_copied_without_warning():
    # torch warns only once per process about non-writable arrays, so the warning alone could
    # pass by luck after an earlier test; the shared-memory checks cannot
    rng = np.random.default_rng(31)
    x = _read_only(rng.random((1, 2, 6, 7)))
    flow = _read_only(random_flow(rng, 1, 6, 7, 5.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = to_torch(x)
        y = pd.MotionBlur(flow)(x)
        yT = pd.MotionBlur(flow).T(x)
    assert not np.shares_memory(t.numpy(), x)
    t.add_(1.0)  # writing through the tensor must not touch the caller's read-only array
    assert np.array_equal(x + 1.0, t.numpy())
    ref = per_image(dense.motion_blur_matrix, np.array(x), np.array(flow))
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_allclose(yT, per_image(dense.motion_blur_matrix, np.array(x), np.array(flow), transpose=True), atol=1e-12)
    # writeable contiguous input stays zero-copy
    w = np.array(x)
    assert np.shares_memory(to_torch(w).numpy(), w)
