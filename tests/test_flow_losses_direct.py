"""Direct checks of the flow and multi-scale losses (losses/epe.py, flow.py, multiscale.py).

Tiny float64 tensors and hand-computed values or independent references (closed forms,
scipy's Gaussian filter, a numpy bilinear resize); every error message is matched from its
start. Fast enough to be the mutation-testing selection for these modules.
"""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d

from pnpdeblur.losses.epe import FLOWNET_WEIGHTS, endpoint_error, multiscale_epe
from pnpdeblur.losses.flow import flow_l2_loss
from pnpdeblur.losses.multiscale import (_symmetric_pad, gaussian_downsample, image_pyramid,
                                         multiscale_mse)

from _operators import bilinear_resize

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D = torch.float64


def z(*shape):
    return torch.zeros(*shape, dtype=D)


# ------------------------------------------------------------------------------- endpoint_error
def test_endpoint_error_is_the_mean_of_per_pixel_distances():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 2, 3, 5, generator=g, dtype=D)
    target = torch.randn(2, 2, 3, 5, generator=g, dtype=D)
    d = (pred - target).numpy()
    ref = np.sqrt(d[:, 0] ** 2 + d[:, 1] ** 2).mean()
    got = endpoint_error(pred, target)
    assert got.shape == () and got.dtype == D
    assert abs(got.item() - ref) < 1e-12


def test_endpoint_error_of_a_constant_error_is_its_length():
    target = z(1, 2, 2, 3)
    pred = target.clone()
    pred[:, 0], pred[:, 1] = 3.0, -4.0
    assert endpoint_error(pred, target).item() == pytest.approx(5.0, abs=1e-14)
    # the gradient at zero error is 0, not NaN
    p = target.clone().requires_grad_(True)
    endpoint_error(p, target).backward()
    assert torch.equal(p.grad, torch.zeros_like(p))


@pytest.mark.parametrize("name", ["pred", "target"])
def test_endpoint_error_argument_checks(name):
    good = z(1, 2, 2, 2)

    def call(bad):
        return endpoint_error(bad, good) if name == "pred" else endpoint_error(good, bad)

    with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got list$"):
        call([[0.0]])
    with pytest.raises(TypeError, match=rf"^{name} must be a floating-point tensor, got dtype torch\.int64$"):
        call(torch.zeros(1, 2, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=rf"^{name} must have shape \(N, 2, H, W\), got \(1, 3, 2, 2\)$"):
        call(z(1, 3, 2, 2))
    with pytest.raises(ValueError, match=rf"^{name} must have shape \(N, 2, H, W\), got \(2, 2, 2\)$"):
        call(z(2, 2, 2))  # 3-D with 2 "channels" at dim 1: the ndim rule alone must refuse it
    with pytest.raises(ValueError, match=rf"^{name} must not be empty, got shape \(0, 2, 2, 2\)$"):
        call(z(0, 2, 2, 2))
    for v in (float("nan"), float("inf")):
        bad = good.clone()
        bad[0, 1, 1, 0] = v
        with pytest.raises(ValueError, match=rf"^{name} holds NaN or Inf$"):
            call(bad)


def test_endpoint_error_shape_mismatch_message():
    with pytest.raises(ValueError, match=r"^pred and target must have the same shape, got \(1, 2, 2, 2\) and "
                                         r"\(1, 2, 2, 3\)$"):
        endpoint_error(z(1, 2, 2, 2), z(1, 2, 2, 3))


# ------------------------------------------------------------------------------- multiscale_epe
def _target_6x4():
    """Non-square target (H=6, W=4): u = x index, v = 10 + y index."""
    t = z(1, 2, 6, 4)
    t[0, 0] = torch.arange(4, dtype=D).expand(6, 4)
    t[0, 1] = 10 + torch.arange(6, dtype=D)[:, None].expand(6, 4)
    return t


def _pooled_reference(t, h, w):
    """Block means of t to (h, w) (integer ratios), u × w/W and v × h/H: numpy by hand."""
    a = t[0].numpy()
    H, W = a.shape[1:]
    bh, bw = H // h, W // w
    pooled = a.reshape(2, h, bh, w, bw).mean(axis=(2, 4))
    pooled[0] *= w / W
    pooled[1] *= h / H
    return pooled


def test_multiscale_epe_per_scale_values_by_hand():
    t = _target_6x4()
    g = torch.Generator().manual_seed(1)
    # coarse (3, 2), then (6, 4) = the full grid (h == H, w == W is allowed)
    preds = [torch.randn(1, 2, 3, 2, generator=g, dtype=D), torch.randn(1, 2, 6, 4, generator=g, dtype=D)]
    ratios = [(2 / 4, 3 / 6), (1.0, 1.0)]
    e_scale, e_full = [], []
    for p, (rx, ry) in zip(preds, ratios):
        ref = _pooled_reference(t, *p.shape[-2:])
        d = p[0].numpy() - ref
        e_scale.append(np.sqrt(d[0] ** 2 + d[1] ** 2).mean())
        e_full.append(np.sqrt((d[0] / rx) ** 2 + (d[1] / ry) ** 2).mean())
    w = (0.7, 0.2)
    got_full = multiscale_epe(preds, t, weights=w)
    got_default_units = multiscale_epe(preds, t, w)
    got_scale = multiscale_epe(preds, t, weights=w, units="scale")
    assert got_full.shape == () and got_full.dtype == D
    assert got_full.item() == pytest.approx(w[0] * e_full[0] + w[1] * e_full[1], abs=1e-12)
    assert got_default_units.item() == got_full.item()
    assert got_scale.item() == pytest.approx(w[0] * e_scale[0] + w[1] * e_scale[1], abs=1e-12)
    assert abs(got_scale.item() - got_full.item()) > 0.1


def test_multiscale_epe_anisotropic_ratio_uses_u_by_width_and_v_by_height():
    # pred (1, 1) of a 6×4 target: u × 1/4, v × 1/6; the exact pooled, rescaled target costs 0
    t = _target_6x4()
    exact = torch.tensor([[[[1.5 / 4]], [[12.5 / 6]]]], dtype=D)
    assert multiscale_epe([exact], t, weights=[1.0]).item() == pytest.approx(0.0, abs=1e-14)
    swapped = torch.tensor([[[[1.5 / 6]], [[12.5 / 4]]]], dtype=D)
    assert multiscale_epe([swapped], t, weights=[1.0]).item() > 0.5


def test_multiscale_epe_single_tensor_none_weights_and_default_weights():
    t = _target_6x4()
    g = torch.Generator().manual_seed(2)
    p = torch.randn(1, 2, 3, 2, generator=g, dtype=D)
    one = multiscale_epe(p, t, weights=None)  # a lone tensor is one scale, weight 1
    assert one.item() == pytest.approx(multiscale_epe([p], t, weights=[1.0]).item(), abs=1e-14)
    assert one.item() == pytest.approx(multiscale_epe([p], t, weights=[2.0]).item() / 2, abs=1e-14)
    # None with two scales: both weight 1
    q = torch.randn(1, 2, 6, 4, generator=g, dtype=D)
    both = multiscale_epe([p, q], t, weights=None).item()
    assert both == pytest.approx(multiscale_epe([p], t, [1.0]).item() + multiscale_epe([q], t, [1.0]).item(),
                                 abs=1e-12)
    # default weights: FlowNet's, coarse → fine, on five scales of a 32×32 target
    assert FLOWNET_WEIGHTS == (0.32, 0.08, 0.02, 0.01, 0.005)
    t32 = torch.randn(1, 2, 32, 32, generator=g, dtype=D)
    preds = [torch.randn(1, 2, s, s, generator=g, dtype=D) for s in (2, 4, 8, 16, 32)]
    expect = sum(wk * multiscale_epe([pk], t32, [1.0]).item() for wk, pk in zip(FLOWNET_WEIGHTS, preds))
    assert multiscale_epe(preds, t32).item() == pytest.approx(expect, abs=1e-12)
    # int-like weights are converted
    assert multiscale_epe([p], t, weights=[3]).item() == pytest.approx(3 * one.item(), abs=1e-12)


def test_multiscale_epe_argument_checks():
    t = _target_6x4()
    p = z(1, 2, 3, 2)
    with pytest.raises(ValueError, match=r"^preds must hold at least one prediction$"):
        multiscale_epe([], t)
    with pytest.raises(ValueError, match=r"^target must have shape \(N, 2, H, W\), got \(1, 3, 6, 4\)$"):
        multiscale_epe([p], z(1, 3, 6, 4), weights=[1.0])
    with pytest.raises(ValueError, match=r"^weights must have one entry per prediction \(2\), got 1$"):
        multiscale_epe([p, p], t, weights=[1.0])
    with pytest.raises(ValueError, match=r"^weights must have one entry per prediction \(1\), got 5$"):
        multiscale_epe([p], t)
    with pytest.raises(ValueError, match=r"^units must be 'full' or 'scale', got 'px'$"):
        multiscale_epe([p], t, weights=[1.0], units="px")
    with pytest.raises(ValueError, match=r"^preds\[1\] must have shape \(N, 2, H, W\), got \(1, 1, 3, 2\)$"):
        multiscale_epe([p, z(1, 1, 3, 2)], t, weights=[1.0, 1.0])
    for bad in (z(2, 2, 3, 2), z(1, 2, 7, 2), z(1, 2, 3, 5)):
        msg = rf"^preds\[1\] must be \(N=1, 2, h <= 6, w <= 4\), got {re_shape(bad)}$"
        with pytest.raises(ValueError, match=msg):
            multiscale_epe([p, bad], t, weights=[1.0, 1.0])


def re_shape(x):
    return str(tuple(x.shape)).replace("(", r"\(").replace(")", r"\)")


# ------------------------------------------------------------------------------- flow_l2_loss
def test_flow_l2_loss_plain_and_symmetric_by_hand():
    pred = z(1, 2, 1, 2)
    target = z(1, 2, 1, 2)
    # pixel 0: pred (1, 2), target (-1, -2) → plain error² 4 + 16, with -pred 0
    # pixel 1: pred (3, 0), target (1, 1)   → plain 4 + 1 = 5, with -pred 16 + 1 = 17
    pred[0, :, 0, 0] = torch.tensor([1.0, 2.0])
    target[0, :, 0, 0] = torch.tensor([-1.0, -2.0])
    pred[0, :, 0, 1] = torch.tensor([3.0, 0.0])
    target[0, :, 0, 1] = torch.tensor([1.0, 1.0])
    plain = flow_l2_loss(pred, target)
    assert plain.shape == () and plain.item() == pytest.approx((4 + 16 + 4 + 1) / 4, abs=1e-14)
    assert flow_l2_loss(pred, target, symmetric=False).item() == plain.item()
    sym = flow_l2_loss(pred, target, symmetric=True)
    assert sym.item() == pytest.approx((0 + 5) / 2 / 2, abs=1e-14)


def test_flow_l2_loss_argument_checks():
    with pytest.raises(TypeError, match=r"^pred and target must be torch tensors, got list, Tensor$"):
        flow_l2_loss([0.0], z(1, 2, 1, 1))
    with pytest.raises(TypeError, match=r"^pred and target must be torch tensors, got Tensor, float$"):
        flow_l2_loss(z(1, 2, 1, 1), 0.0)
    msg = r"^pred and target must both be \(N, 2, H, W\), got "
    with pytest.raises(ValueError, match=msg + r"\(1, 2, 1, 1\) and \(1, 2, 1, 2\)$"):
        flow_l2_loss(z(1, 2, 1, 1), z(1, 2, 1, 2))
    with pytest.raises(ValueError, match=msg + r"\(2, 1, 1\) and \(2, 1, 1\)$"):
        flow_l2_loss(z(2, 1, 1), z(2, 1, 1))
    with pytest.raises(ValueError, match=msg + r"\(1, 3, 1, 1\) and \(1, 3, 1, 1\)$"):
        flow_l2_loss(z(1, 3, 1, 1), z(1, 3, 1, 1))


# ------------------------------------------------------------------------------- multiscale.py

def _reference_downsample(x):
    """scipy's Gaussian (sigma 2/3, 'reflect' = half-sample symmetric, truncate 4), then 2×."""
    a = x.numpy()
    b = gaussian_filter1d(gaussian_filter1d(a, 2 / 3, axis=-1, mode="reflect", truncate=4.0),
                          2 / 3, axis=-2, mode="reflect", truncate=4.0)
    h, w = a.shape[-2:]
    return bilinear_resize(b, math.ceil(h / 2), math.ceil(w / 2))


@pytest.mark.parametrize("h,w", [(8, 6), (7, 5), (6, 5), (5, 6), (2, 2), (3, 1)])
def test_gaussian_downsample_matches_scipy_then_bilinear(h, w):
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.rand(2, 2, h, w, generator=g, dtype=D)
    got = gaussian_downsample(x)
    assert got.shape == (2, 2, math.ceil(h / 2), math.ceil(w / 2)) and got.dtype == D
    np.testing.assert_allclose(got.numpy(), _reference_downsample(x), rtol=0, atol=1e-13)


def test_gaussian_downsample_float32_and_taps_in_float64():
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=D)
    got32 = gaussian_downsample(x.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.double().numpy(), _reference_downsample(x), rtol=0, atol=1e-6)


def test_symmetric_pad_matches_numpy_symmetric_including_fold_back():
    for n, r in ((4, 3), (2, 5), (1, 3), (3, 0)):
        x = torch.arange(n, dtype=D).view(1, 1, 1, n) + 1
        got = _symmetric_pad(x, r, 3)
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 0), (r, r)), mode="symmetric")
        np.testing.assert_array_equal(got.numpy(), ref)
        got2 = _symmetric_pad(x.transpose(2, 3), r, 2)
        np.testing.assert_array_equal(got2.numpy(), np.swapaxes(ref, 2, 3))


def test_image_pyramid_levels_and_order():
    x = torch.rand(1, 1, 8, 5, generator=torch.Generator().manual_seed(4), dtype=D)
    one = image_pyramid(x, 1)
    assert len(one) == 1 and one[0] is x
    pyr = image_pyramid(x)  # default 3 levels, coarse → fine
    assert [tuple(p.shape[-2:]) for p in pyr] == [(2, 2), (4, 3), (8, 5)]
    assert pyr[-1] is x
    np.testing.assert_allclose(pyr[1].numpy(), gaussian_downsample(x).numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(pyr[0].numpy(), gaussian_downsample(pyr[1]).numpy(), rtol=0, atol=0)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=rf"^levels must be an int >= 1, got {bad!r}$"):
            image_pyramid(x, bad)


def test_image_checks_name_the_argument():
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor \(N, C, H, W\), got list$"):
        gaussian_downsample([1.0])
    with pytest.raises(ValueError, match=r"^x must have shape \(N, C, H, W\), got \(2, 2\)$"):
        image_pyramid(z(2, 2))
    with pytest.raises(TypeError, match=r"^x must be a floating-point tensor, got torch\.int64$"):
        gaussian_downsample(torch.zeros(1, 1, 2, 2, dtype=torch.int64))


def test_multiscale_mse_by_hand_and_with_a_pyramid_target():
    outs = [z(1, 1, 1, 2), z(1, 2, 2, 2)]
    tgts = [torch.tensor([[[[1.0, 3.0]]]], dtype=D), torch.full((1, 2, 2, 2), 2.0, dtype=D)]
    # scale 1: (1 + 9)/2 = 5; scale 2: 4 → mean 4.5
    got = multiscale_mse(outs, tgts)
    assert got.shape == () and got.item() == pytest.approx(4.5, abs=1e-14)
    assert multiscale_mse(tuple(outs), tuple(tgts)).item() == pytest.approx(4.5, abs=1e-14)
    assert multiscale_mse(outs[:1], tgts[:1]).item() == pytest.approx(5.0, abs=1e-14)
    g = torch.Generator().manual_seed(5)
    sharp = torch.rand(1, 1, 6, 5, generator=g, dtype=D)
    preds = [torch.rand(1, 1, 2, 2, generator=g, dtype=D), torch.rand(1, 1, 3, 3, generator=g, dtype=D),
             torch.rand(1, 1, 6, 5, generator=g, dtype=D)]
    ref1 = _reference_downsample(sharp)
    ref0 = _reference_downsample(torch.from_numpy(ref1))
    expect = np.mean([((preds[0].numpy() - ref0) ** 2).mean(), ((preds[1].numpy() - ref1) ** 2).mean(),
                      ((preds[2].numpy() - sharp.numpy()) ** 2).mean()])
    assert multiscale_mse(preds, sharp).item() == pytest.approx(expect, abs=1e-13)


def test_multiscale_mse_argument_checks():
    o = z(1, 1, 2, 2)
    for bad, kind in ((o, "Tensor"), ([], "list"), ("ab", "str")):
        with pytest.raises(TypeError, match=r"^outputs must be a non-empty list/tuple of \(N, C, H, W\) tensors "
                                            rf"\(coarse → fine\), got {kind}$"):
            multiscale_mse(bad, [o])
    with pytest.raises(ValueError, match=r"^outputs\[1\] must have shape \(N, C, H, W\), got \(2, 2\)$"):
        multiscale_mse([o, z(2, 2)], [o, o])
    with pytest.raises(ValueError, match=r"^targets must have shape \(N, C, H, W\), got \(2, 2\)$"):
        multiscale_mse([o], z(2, 2))
    with pytest.raises(TypeError, match=r"^targets must be a tensor or a list of tensors, got dict$"):
        multiscale_mse([o], {})
    with pytest.raises(ValueError, match=r"^targets must hold one tensor per output \(2\), got 1$"):
        multiscale_mse([o, o], [o])
    with pytest.raises(TypeError, match=r"^targets\[1\] must be a torch\.Tensor \(N, C, H, W\), got int$"):
        multiscale_mse([o, o], [o, 3])
    with pytest.raises(ValueError, match=r"^outputs\[1\] has shape \(1, 1, 2, 2\) but its target has "
                                         r"\(1, 1, 2, 3\)$"):
        multiscale_mse([o, o], (o, z(1, 1, 2, 3)))


def test_multiscale_mse_pyramid_has_one_level_per_output():
    # two outputs: the target's pyramid has two levels (not image_pyramid's default three)
    g = torch.Generator().manual_seed(6)
    sharp = torch.rand(1, 1, 4, 6, generator=g, dtype=D)
    preds = [torch.rand(1, 1, 2, 3, generator=g, dtype=D), torch.rand(1, 1, 4, 6, generator=g, dtype=D)]
    ref1 = _reference_downsample(sharp)
    expect = (((preds[0].numpy() - ref1) ** 2).mean() + ((preds[1].numpy() - sharp.numpy()) ** 2).mean()) / 2
    assert multiscale_mse(preds, sharp).item() == pytest.approx(expect, abs=1e-13)
    assert multiscale_mse(preds[1:], sharp).item() == pytest.approx(((preds[1] - sharp) ** 2).mean().item(),
                                                                    abs=1e-14)
