"""Direct checks of the Reblur2Deblur loss (losses/reblur.py) against the dense operators.

Each kernel name is compared on a 5×6 float64 image with the explicit sparse matrix of
:mod:`pnpdeblur.operators.dense` (built pixel by pixel from the kernel formulas), the loss
with a hand-written MSE; every default, layout rule and error message is checked from its start.
"""
import numpy as np
import pytest
import torch

from pnpdeblur.losses.reblur import REBLUR_KERNELS, reblur, reblur_loss
from pnpdeblur.operators.dense import apply_matrix, lut_blur_matrix, two_segment_matrix, warp_blur_matrix

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D = torch.float64
H, W = 5, 6


def image(n=1, c=2, seed=0):
    return torch.rand(n, c, H, W, generator=torch.Generator().manual_seed(seed), dtype=D)


def flow(seed, amp=2.0, n=1):
    """Flows on a grid of quarter pixels (exact in float32 too), |u|, |v| <= amp."""
    g = torch.Generator().manual_seed(seed)
    return torch.round(4 * amp * (2 * torch.rand(n, 2, H, W, generator=g, dtype=D) - 1)) / 4


def dense_reference(x, fn, fp, kernel, tau=1.0, n=8):
    a, b = fn[0].numpy(), fp[0].numpy()
    if kernel == "two_segment":
        A = two_segment_matrix(a, b, tau)
    elif kernel == "warp":
        A = warp_blur_matrix(a, b, n, tau)
    else:
        A = lut_blur_matrix(np.clip(tau * (a - b), -16, 16))
    return apply_matrix(A, x.numpy())


@pytest.mark.parametrize("kernel", REBLUR_KERNELS)
def test_three_frame_reblur_matches_the_dense_operator(kernel):
    x, fn, fp = image(), flow(1), flow(2)
    got = reblur(x, fn, fp, kernel=kernel, tau=0.75, n=3)
    assert got.shape == x.shape and got.dtype == D
    np.testing.assert_allclose(got.numpy(), dense_reference(x, fn, fp, kernel, 0.75, 3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", REBLUR_KERNELS)
def test_two_frame_reblur_uses_minus_flow_next(kernel):
    x, fn = image(seed=3), flow(4)
    got = reblur(x, fn, None, kernel=kernel)
    np.testing.assert_allclose(got.numpy(), dense_reference(x, fn, -fn, kernel), rtol=0, atol=1e-12)


def test_defaults_are_two_segment_tau_1_and_8_warp_samples():
    x, fn, fp = image(seed=5), flow(6), flow(7)
    np.testing.assert_allclose(reblur(x, fn, fp).numpy(), dense_reference(x, fn, fp, "two_segment", 1.0),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(reblur(x, fn, fp, "warp").numpy(), dense_reference(x, fn, fp, "warp", 1.0, 8),
                               rtol=0, atol=1e-12)
    b = image(seed=8)
    for kernel in REBLUR_KERNELS:
        y = dense_reference(x, fn, fp, kernel, 1.0, 8)
        expect = ((y - b.numpy()) ** 2).mean()
        assert reblur_loss(x, b, fn, fp, kernel).item() == pytest.approx(expect, abs=1e-13)
    y = dense_reference(x, fn, -fn, "two_segment")
    assert reblur_loss(x, b, fn).item() == pytest.approx(((y - b.numpy()) ** 2).mean(), abs=1e-13)


def test_lut_motion_is_clamped_to_the_table():
    x = image(seed=9)
    fn = torch.zeros(1, 2, H, W, dtype=D)
    fn[:, 0], fn[:, 1] = 9.0, -10.5  # m = 2F₊ = (18, -21): beyond the ±16 px table
    got = reblur(x, fn, kernel="lut")
    m = torch.zeros_like(fn)
    m[:, 0], m[:, 1] = 16.0, -16.0
    np.testing.assert_allclose(got.numpy(), apply_matrix(lut_blur_matrix(m[0].numpy()), x.numpy()),
                               rtol=0, atol=1e-12)


def test_layouts_batches_and_dtypes():
    x, fn, fp = image(n=2, seed=10), flow(11), flow(12)
    # one flow for a batch of two images
    got = reblur(x, fn, fp, "two_segment", 0.5)
    ref = dense_reference(x, fn, fp, "two_segment", 0.5)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
    # 3-D tensors are one image / one flow; float32 flows follow the image's float64
    got3 = reblur(x[0], fn[0].float(), fp[0].float(), "two_segment", 0.5)
    assert got3.shape == (1, 2, H, W) and got3.dtype == D
    np.testing.assert_allclose(got3.numpy(), ref[:1], rtol=0, atol=1e-12)
    # per-image flows
    fn2, fp2 = torch.cat([fn, flow(13)]), torch.cat([fp, flow(14)])
    got2 = reblur(x, fn2, fp2, "warp", 1.0, 2)
    for i in range(2):
        np.testing.assert_allclose(got2[i:i + 1].numpy(), dense_reference(x[i:i + 1], fn2[i:i + 1], fp2[i:i + 1],
                                                                           "warp", 1.0, 2), rtol=0, atol=1e-12)
    # a float32 blurred frame is compared in the deblurred frames' dtype; 3-D blurred frames are one image
    b = image(n=1, seed=15).float()
    loss = reblur_loss(x[:1], b[0], fn, fp, "lut", 0.5)
    y = dense_reference(x[:1], fn, fp, "lut", 0.5)
    assert loss.dtype == D and loss.shape == ()
    assert loss.item() == pytest.approx(((y - b.double().numpy()) ** 2).mean(), abs=1e-13)


def test_tau_rules():
    x, fn = image(seed=16), flow(17)
    reblur(x, fn, tau=1)  # 1 is allowed, as an int too
    for bad in (0, 0.0, -0.5, 1.0001, True, "0.5", None):
        with pytest.raises(ValueError, match=rf"^tau must be a number in \(0, 1\], got {re_repr(bad)}$"):
            reblur(x, fn, tau=bad)


def re_repr(v):
    return "".join("\\" + c if c in "().[]+*?^$|{}" else c for c in repr(v))


def test_kernel_and_tensor_messages():
    x, f = image(seed=18), flow(19)
    with pytest.raises(ValueError, match=r"^kernel must be one of \('two_segment', 'lut', 'warp'\), got 'gauss'$"):
        reblur(x, f, kernel="gauss")
    for name, call in (("deblurred", lambda b: reblur(b, f)),
                       ("flow_next", lambda b: reblur(x, b)),
                       ("flow_prev", lambda b: reblur(x, f, b)),
                       ("blurred", lambda b: reblur_loss(x, b, f))):
        with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got ndarray$"):
            call(np.zeros((1, 2, H, W)))
        with pytest.raises(TypeError, match=rf"^{name} must be float32 or float64, got dtype torch\.float16$"):
            call(torch.zeros(1, 2, H, W, dtype=torch.float16))
        want = r"\(N, 2, H, W\) or \(2, H, W\)" if name.startswith("flow") else r"\(N, C, H, W\) or \(C, H, W\)"
        with pytest.raises(ValueError, match=rf"^{name} must have shape {want}, got \(1, 1, 2, {H}, {W}\)$"):
            call(torch.zeros(1, 1, 2, H, W, dtype=D))
        with pytest.raises(ValueError, match=rf"^{name} must have shape {want}, got \({W},\)$"):
            call(torch.zeros(W, dtype=D))
        with pytest.raises(ValueError, match=rf"^{name} must not be empty, got shape \(0, 2, {H}, {W}\)$"):
            call(torch.zeros(0, 2, H, W, dtype=D))
        for v in (float("nan"), float("inf")):
            bad = torch.zeros(1, 2, H, W, dtype=D)
            bad[0, 1, 2, 3] = v
            with pytest.raises(ValueError, match=rf"^{name} contains NaN or Inf values$"):
                call(bad)
    # flows with the wrong number of channels name their shape rule
    with pytest.raises(ValueError, match=rf"^flow_next must have shape \(N, 2, H, W\) or \(2, H, W\), "
                                         rf"got \(1, 3, {H}, {W}\)$"):
        reblur(x, torch.zeros(1, 3, H, W, dtype=D))
    # the images may have any channel count (3 here)
    reblur(torch.zeros(1, 3, H, W, dtype=D), f)


def test_size_and_batch_messages():
    x, f = image(n=2, seed=20), flow(21)
    for name, args in (("flow_next", (torch.zeros(1, 2, H, W + 1, dtype=D),)),
                       ("flow_prev", (f, torch.zeros(1, 2, H + 1, W, dtype=D)))):
        sz = r"\(5, 7\)" if name == "flow_next" else r"\(6, 6\)"
        with pytest.raises(ValueError, match=rf"^{name} has spatial size {sz}, but deblurred has \(5, 6\)$"):
            reblur(x, *args)
    with pytest.raises(ValueError, match=r"^flow_next has batch size 3, expected 1 or 2 \(that of deblurred\)$"):
        reblur(x, torch.zeros(3, 2, H, W, dtype=D))
    with pytest.raises(ValueError, match=r"^flow_prev has batch size 3, expected 1 or 2 \(that of deblurred\)$"):
        reblur(x, f, torch.zeros(3, 2, H, W, dtype=D))
    with pytest.raises(ValueError, match=rf"^flow_next and flow_prev must have the same shape, got "
                                         rf"\(1, 2, {H}, {W}\) and \(2, 2, {H}, {W}\)$"):
        reblur(x, f, torch.zeros(2, 2, H, W, dtype=D))
    with pytest.raises(ValueError, match=rf"^blurred must have the shape of deblurred \(2, 2, {H}, {W}\), got "
                                         rf"\(1, 2, {H}, {W}\)$"):
        reblur_loss(x, x[:1], f)


def test_the_loss_is_differentiable_in_the_image_and_the_flows():
    x, b = image(seed=22).requires_grad_(True), image(seed=23)
    fn, fp = flow(24).requires_grad_(True), flow(25).requires_grad_(True)
    reblur_loss(x, b, fn, fp).backward()
    for t in (x, fn, fp):
        assert t.grad is not None and bool(t.grad.abs().sum() > 0)


def test_batch_rule_reads_the_batch_not_the_channels():
    # N = 2 images of C = 3 channels: a flow batch of 2 is per image, 3 is refused
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(26), dtype=D)
    fn2, fp2 = torch.cat([flow(27), flow(28)]), torch.cat([flow(29), flow(30)])
    got = reblur(x, fn2, fp2)
    for i in range(2):
        np.testing.assert_allclose(got[i:i + 1].numpy(), dense_reference(x[i:i + 1], fn2[i:i + 1], fp2[i:i + 1],
                                                                          "two_segment"), rtol=0, atol=1e-12)
    for name, args in (("flow_next", (torch.zeros(3, 2, H, W, dtype=D),)),
                       ("flow_prev", (flow(31), torch.zeros(3, 2, H, W, dtype=D)))):
        with pytest.raises(ValueError, match=rf"^{name} has batch size 3, expected 1 or 2 \(that of deblurred\)$"):
            reblur(x, *args)


def test_reblur_loss_passes_the_warp_sample_count_on():
    x, b, fn, fp = image(seed=32), image(seed=33), flow(34), flow(35)
    for n in (1, 3):
        y = dense_reference(x, fn, fp, "warp", 0.5, n)
        assert reblur_loss(x, b, fn, fp, "warp", 0.5, n).item() == pytest.approx(((y - b.numpy()) ** 2).mean(),
                                                                                   abs=1e-13)
    y = dense_reference(x, fn, fp, "warp", 1.0, 2)
    assert reblur_loss(x, b, fn, fp, kernel="warp", n=2).item() == pytest.approx(((y - b.numpy()) ** 2).mean(),
                                                                                 abs=1e-13)


def test_reblur_loss_is_in_the_deblurred_frames_dtype():
    x, fn = image(seed=36).float(), flow(37)
    b = image(seed=38)  # float64 blurred frames are compared in float32
    loss = reblur_loss(x, b, fn)
    assert loss.dtype == torch.float32
    y = reblur(x, fn)
    assert loss.item() == pytest.approx(((y - b.float()) ** 2).mean().item(), rel=1e-6)
