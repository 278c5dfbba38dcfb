"""Every loss refuses NaN and Inf inputs with a ValueError naming the argument.

A NaN input would otherwise come back as a NaN loss (and NaN gradients in every weight), far
from the tensor that went wrong. Each case puts one non-finite value in one argument.
"""
import re

import pytest
import torch

from pnpdeblur.losses.deblurgan import content_loss as deblurgan_content_loss
from pnpdeblur.losses.epe import endpoint_error
from pnpdeblur.losses.flow import flow_l2_loss
from pnpdeblur.losses.multiscale import gaussian_downsample, image_pyramid, multiscale_mse
from pnpdeblur.losses.perceptual import LaplacianPyramidLoss, laplacian_pyramid
from pnpdeblur.losses.rpgan import (artifact_critic_loss, artifact_penalty, cgan_discriminator_loss,
                                    cgan_generator_loss, content_loss)


def _img(seed=0, shape=(2, 3, 8, 8)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _flow(seed=0):
    return _img(seed, (2, 2, 8, 8)) * 4 - 2


def _critic(x):
    return x.mean(dim=(1, 2, 3))


# (loss call given its arguments, the arguments, which argument is made non-finite, its name)
CASES = [
    (lambda a, b: flow_l2_loss(a, b), (_flow(0), _flow(1)), 0, "pred"),
    (lambda a, b: flow_l2_loss(a, b, symmetric=True), (_flow(0), _flow(1)), 1, "target"),
    (lambda a, b: endpoint_error(a, b), (_flow(0), _flow(1)), 1, "target"),
    (lambda a: gaussian_downsample(a), (_img(),), 0, "x"),
    (lambda a: image_pyramid(a, 2), (_img(),), 0, "x"),
    (lambda a, b: multiscale_mse([a], b), (_img(0), _img(1)), 0, "outputs[0]"),
    (lambda a, b: multiscale_mse([a], b), (_img(0), _img(1)), 1, "targets"),
    (lambda a, b: multiscale_mse([a], [b]), (_img(0), _img(1)), 1, "targets[0]"),
    (lambda a: laplacian_pyramid(a, 1), (_img(),), 0, "x"),
    (lambda a, b: LaplacianPyramidLoss(levels=1)(a, b), (_img(0), _img(1)), 1, "target"),
    (lambda a, b: content_loss(a, b), (_img(0), _img(1)), 0, "output"),
    (lambda a, b: content_loss(a, b), (_img(0), _img(1)), 1, "sharp"),
    (lambda a, b: cgan_discriminator_loss(a, b), (_img(0), _img(1)), 0, "real_logits"),
    (lambda a, b: cgan_discriminator_loss(a, b), (_img(0), _img(1)), 1, "fake_logits"),
    (lambda a: cgan_generator_loss(a), (_img(0),), 0, "fake_logits"),
    (lambda a, b: artifact_critic_loss(_critic, a, b), (_img(0), _img(1)), 0, "deconv"),
    (lambda a, b: artifact_critic_loss(_critic, a, b), (_img(0), _img(1)), 1, "blurred"),
    (lambda a, b: artifact_penalty(a, b), (_img(0, (4,)), _img(1, (4,))), 0, "generated_scores"),
    (lambda a, b: artifact_penalty(a, b), (_img(0, (4,)), _img(1, (4,))), 1, "sharp_scores"),
    (lambda a, b: deblurgan_content_loss(a, b), (_img(0), _img(1)), 0, "deblurred"),
]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("call, args, which, name", CASES, ids=[f"{i}-{c[3]}" for i, c in enumerate(CASES)])
def test_a_non_finite_input_is_refused_by_name(call, args, which, name, bad):
    call(*args)  # finite: accepted
    args = [a.clone() for a in args]
    args[which].view(-1)[-1] = bad  # one value, the last, so a check of the first element misses it
    with pytest.raises(ValueError, match="^" + re.escape(f"{name} holds NaN or Inf") + "$"):
        call(*args)


def test_the_check_does_not_break_gradients():
    pred = _flow(0).requires_grad_(True)
    flow_l2_loss(pred, _flow(1)).backward()
    assert pred.grad is not None and bool(torch.isfinite(pred.grad).all())
