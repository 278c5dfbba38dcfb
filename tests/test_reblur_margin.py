"""reblur_loss(margin=...): the border that no deblurred frame can match, left out of the loss.

The reference is a scene larger than the frame: the camera's blurred frame is a crop of the
blurred scene, so near the frame's border it holds light from beyond the frame. The true sharp
crop then reblurs exactly everywhere except within the blur's reach of the border.
"""
import numpy as np
import pytest
import torch

from pnpdeblur.losses.reblur import REBLUR_KERNELS, reblur, reblur_loss, reblur_operator

H, W, TOP, LEFT, h, w = 72, 80, 17, 13, 40, 48


def _scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H, dtype=torch.float64),
                            torch.linspace(-1, 1, W, dtype=torch.float64), indexing="ij")
    # smooth, spatially varying flows of up to ~5 px; F₋ is not −F₊ (3-frame case)
    fn = torch.stack([3.0 + 1.5 * yy, -2.0 + 2.0 * xx])[None]
    fp = torch.stack([-2.5 + 1.0 * xx, 2.5 - 1.0 * yy])[None]
    return sharp, fn, fp


def _crop(t):
    return t[..., TOP:TOP + h, LEFT:LEFT + w]


@pytest.mark.parametrize("kernel", REBLUR_KERNELS)
def test_true_sharp_crop_scores_zero_inside_the_reach_only(kernel):
    sharp, fn, fp = _scene()
    blurred_scene = reblur(sharp, fn, fp, kernel=kernel, tau=0.5)
    args = (_crop(sharp), _crop(blurred_scene), _crop(fn), _crop(fp))
    everywhere = float(reblur_loss(*args, kernel=kernel, tau=0.5))
    inside = float(reblur_loss(*args, kernel=kernel, tau=0.5, margin="reach"))
    assert everywhere > 1e-4, everywhere  # the border's light from beyond the frame
    assert inside < 1e-24, inside
    # "reach" is the operator's reach (an upper bound of the kernels' extent); one pixel
    # of margin is not enough
    r = reblur_operator(*args[:1], args[2], args[3], kernel=kernel, tau=0.5)[0].reach()
    assert 1 < r < 12
    assert float(reblur_loss(*args, kernel=kernel, tau=0.5, margin=r)) == inside
    assert float(reblur_loss(*args, kernel=kernel, tau=0.5, margin=1)) > 1e-6


def test_an_int_margin_is_the_mean_over_the_inner_window():
    sharp, fn, fp = _scene(1)
    b = torch.rand(1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x, f1, f2 = _crop(sharp), _crop(fn), _crop(fp)
    y = reblur(x, f1, f2)
    m = 4
    want = float(((y - b)[..., m:h - m, m:w - m] ** 2).mean())
    assert float(reblur_loss(x, b, f1, f2, margin=m)) == pytest.approx(want, rel=1e-12)
    assert float(reblur_loss(x, b, f1, f2, margin=0)) == pytest.approx(float(((y - b) ** 2).mean()), rel=1e-12)


def test_the_margin_ignores_the_observed_border_and_keeps_gradients():
    sharp, fn, fp = _scene(2)
    x = _crop(sharp).clone().requires_grad_(True)
    f1 = _crop(fn).clone().requires_grad_(True)
    b = _crop(reblur(sharp, fn, fp)) + 0.01
    loss = reblur_loss(x, b, f1, _crop(fp), margin="reach")
    value = float(loss.detach())
    r = reblur_operator(x, f1, _crop(fp))[0].reach()
    b2 = b.clone()
    b2[..., :r, :] = 5.0  # anything in the border band
    b2[..., :, -r:] = -5.0
    assert float(reblur_loss(x, b2, f1, _crop(fp), margin="reach").detach()) == value
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert f1.grad is not None and float(f1.grad.abs().sum()) > 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "auto", None])
def test_margin_is_checked(bad):
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="margin must be an int >= 0 or 'reach'"):
        reblur_loss(x, x, torch.zeros(1, 2, 16, 16), margin=bad)


def test_a_margin_that_leaves_no_pixel_is_an_error():
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="margin=8 leaves no pixel of the 16×16 frames"):
        reblur_loss(x, x, torch.zeros(1, 2, 16, 16), margin=8)
    big = torch.full((1, 2, 16, 16), 14.0)
    with pytest.raises(ValueError, match=r"the blur's reach \(\d+ px\) leaves no pixel"):
        reblur_loss(x, x, big, margin="reach")
    assert np.isfinite(float(reblur_loss(x, x, torch.zeros(1, 2, 16, 16), margin=7)))


# --------------------------------------------------------------------------- in fine-tuning
def _objective(margin, crop=16):
    from pnpdeblur.train.reblur import ReblurObjective

    clip = torch.rand(3, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    return ReblurObjective(clip, [1], 3, kernel="two_segment", tau=1.0, alpha=0.1, crop=crop, flow="tvl1",
                           flow_every=1, margin=margin)


@pytest.mark.parametrize("amp,want", [(0.6, None), (9.0, 4)])
def test_objective_reach_margin_is_the_reach_capped_at_a_quarter_crop(amp, want):
    obj = _objective("reach")
    g = torch.Generator().manual_seed(1)
    out, blurred = torch.rand(2, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    fn, fp = amp * torch.ones(2, 2, 16, 16), -amp * torch.ones(2, 2, 16, 16)
    reach = reblur_operator(out, fn, fp)[0].reach()
    want = reach if want is None else want
    assert (reach < 4) if amp < 1 else (reach > 4)
    got = float(obj._loss(out, blurred, fn, fp))
    assert got == float(reblur_loss(out, blurred, fn, fp, margin=want))
    assert got != float(reblur_loss(out, blurred, fn, fp, margin=0))
    assert float(_objective(3)._loss(out, blurred, fn, fp)) == float(reblur_loss(out, blurred, fn, fp, margin=3))


def test_finetune_checks_and_records_the_margin():
    from pnpdeblur.train.reblur import finetune_reblur

    net = torch.nn.Conv2d(3, 3, 1)
    clip = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def flow(a, b):
        return torch.zeros(a.shape[0], 2, *a.shape[-2:])

    for bad in (-1, 2.5, True, "auto"):
        with pytest.raises(ValueError, match="margin must be an int >= 0 or 'reach'"):
            finetune_reblur(net, clip, margin=bad, flow=flow, steps=1, progress=False, supervised=False)
    with pytest.raises(ValueError, match=r"margin=8 leaves no pixel of the 16² crops"):
        finetune_reblur(net, clip, margin=8, flow=flow, steps=1, progress=False, supervised=False)
    tuned = finetune_reblur(net, clip, margin="reach", flow=flow, steps=1, progress=False, supervised=False,
                            batch_size=1)
    assert tuned.reblur_settings["margin"] == "reach"


def test_cli_margin_option():
    from pnpdeblur import cli

    assert cli._margin("reach") == "reach" and cli._margin("3") == 3 and cli._margin("0") == 0
    for bad in ("-1", "x", "2.5"):
        with pytest.raises(Exception, match="expected an integer >= 0 or 'reach'"):
            cli._margin(bad)


@pytest.mark.parametrize("kernel,tau", [("two_segment", 0.5), ("lut", 1.0), ("warp", 0.5)])
def test_objective_reach_margin_is_the_reach_of_both_flows_with_its_kernel_and_tau(kernel, tau):
    """F₋ reaches much further than F₊: the margin must come from the 3-frame operator itself."""
    from pnpdeblur.losses.reblur import reblur_loss, reblur_operator
    from pnpdeblur.train.reblur import ReblurObjective

    torch.manual_seed(0)
    crop = 64
    out, blurred = torch.rand(2, 3, crop, crop), torch.rand(2, 3, crop, crop)
    fn = torch.full((2, 2, crop, crop), 0.5)
    fp = torch.zeros(2, 2, crop, crop)
    fp[:, 0] = -9.0
    obj = ReblurObjective(torch.rand(3, 3, crop, crop), [1], 3, kernel=kernel, tau=tau, alpha=0.1, crop=crop,
                          flow="tvl1", flow_every=1, margin="reach")
    op = reblur_operator(out, fn, fp, kernel=kernel, tau=tau)[0]
    margin = min(op.reach(), crop // 4)
    assert margin > reblur_operator(out, fn, None, kernel=kernel, tau=tau)[0].reach()  # F₋ matters here
    want = reblur_loss(out, blurred, fn, fp, kernel=kernel, tau=tau, margin=margin)
    assert torch.equal(obj._loss(out, blurred, fn, fp), want)
    assert not torch.equal(want, reblur_loss(out, blurred, fn, fp, kernel=kernel, tau=tau, margin=0))
