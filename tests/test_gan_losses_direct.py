"""Direct checks of RP-GAN's and DeblurGAN's losses (losses/rpgan.py, losses/deblurgan.py).

Tiny float64 tensors, closed forms (softplus, (a − b)₊, WGAN terms of a linear critic whose
gradient is known), the gradient penalty compared with
:func:`pnpdeblur.losses.adversarial.gradient_penalty` drawn from the same seed, what is
detached, every default, and every error message matched from its start.
"""
import math

import pytest
import torch

from pnpdeblur.losses.adversarial import gradient_penalty
from pnpdeblur.losses.deblurgan import (content_loss as dg_content_loss, deblurgan_critic_loss,
                                        deblurgan_generator_loss, deblurgan_losses)
from pnpdeblur.losses.perceptual import LaplacianPyramidLoss
from pnpdeblur.losses.rpgan import (DEFAULT_GAMMA, DEFAULT_GP_WEIGHT, DEFAULT_LAMBDA_P, artifact_critic_loss,
                                    artifact_penalty, cgan_discriminator_loss, cgan_generator_loss,
                                    content_loss, rpgan_generator_loss)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D = torch.float64


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def softplus(v):
    return math.log1p(math.exp(v))


class QuadCritic(torch.nn.Module):
    """D(x) = Σ a·x² per sample (a parameter): nonlinear, so the penalty depends on ε."""

    def __init__(self, shape, seed=7):
        super().__init__()
        self.a = torch.nn.Parameter(rand(*shape, seed=seed) - 0.3)

    def forward(self, x):
        return (self.a * x * x).flatten(1).sum(1)


# ------------------------------------------------------------------------------------ rpgan.py
def test_rpgan_defaults():
    assert DEFAULT_GP_WEIGHT == 10.0  # Gulrajani et al.
    lc, lg, lp = (torch.tensor(v, dtype=D) for v in (0.5, 3.0, 7.0))
    got = rpgan_generator_loss(lc, lg, lp)
    assert got.item() == pytest.approx(0.5 + DEFAULT_GAMMA * 3.0 + DEFAULT_LAMBDA_P * 7.0, abs=1e-14)
    assert (DEFAULT_GAMMA, DEFAULT_LAMBDA_P) == (0.01, 0.01)


def test_rpgan_generator_loss_terms_and_scalar_shapes():
    lc = torch.tensor([0.5], dtype=D)  # one element of any shape is a scalar
    lg = torch.tensor([[3.0]], dtype=D)
    lp = torch.tensor(7.0, dtype=D)
    got = rpgan_generator_loss(lc, lg, lp, gamma=0.2, lam=0.3)
    assert got.shape == () and got.item() == pytest.approx(0.5 + 0.6 + 2.1, abs=1e-14)
    assert rpgan_generator_loss(lc, None, lp, gamma=0.2, lam=0.3).item() == pytest.approx(2.6, abs=1e-14)
    assert rpgan_generator_loss(lc, lg, None, gamma=0.2, lam=0.3).item() == pytest.approx(1.1, abs=1e-14)
    assert rpgan_generator_loss(lc, gamma=0, lam=0).shape == ()
    assert rpgan_generator_loss(lc, lg, lp, gamma=0, lam=0).item() == 0.5  # 0 is a valid weight


def test_rpgan_weights_and_scalars_are_checked():
    lc = torch.tensor(0.5)
    for bad in (-0.1, float("inf"), float("nan"), True, "1", None):
        for name in ("gamma", "lam"):
            with pytest.raises(ValueError, match=rf"^{name} must be a finite number >= 0, got {re_repr(bad)}$"):
                rpgan_generator_loss(lc, **{name: bad})
    for name, args in (("content", (torch.ones(2),)), ("cgan", (lc, torch.ones(2))),
                       ("penalty", (lc, lc, torch.ones(2)))):
        with pytest.raises(TypeError, match=rf"^{name} must be a scalar float tensor, got Tensor\(2,\)$"):
            rpgan_generator_loss(*args)
    with pytest.raises(TypeError, match=r"^content must be a scalar float tensor, got float$"):
        rpgan_generator_loss(0.5)
    with pytest.raises(TypeError, match=r"^content must be a scalar float tensor, got Tensor\(\)$"):
        rpgan_generator_loss(torch.tensor(1))


def re_repr(v):
    return "".join("\\" + c if c in "().[]+*?^$|{}" else c for c in repr(v))


def test_artifact_penalty_positive_part_per_image():
    g = torch.tensor([[[[1.0, 5.0]]], [[[-1.0, -3.0]]], [[[2.0, 2.0]]]], dtype=D)  # means 3, -2, 2
    s = torch.tensor([[[[0.0, 2.0]]], [[[0.0, 0.0]]], [[[3.0, 1.0]]]], dtype=D)  # means 1, 0, 2
    # (3-1)+ = 2, (-2-0)+ = 0, (2-2)+ = 0 → 2/3 (not the positive part of pixel differences: 4+...)
    got = artifact_penalty(g, s)
    assert got.shape == () and got.item() == pytest.approx(2 / 3, abs=1e-14)
    assert artifact_penalty(torch.tensor([4.0], dtype=D), torch.tensor([1.5], dtype=D)).item() == 2.5
    assert artifact_penalty(torch.tensor([1.0], dtype=D), torch.tensor([1.5], dtype=D)).item() == 0.0


def test_artifact_penalty_and_cgan_checks_name_the_argument():
    ok = torch.zeros(2)
    with pytest.raises(ValueError, match=r"^generated_scores and sharp_scores must have the same shape, "
                                         r"got \(2,\) and \(3,\)$"):
        artifact_penalty(ok, torch.zeros(3))
    for name, call in (("generated_scores", lambda b: artifact_penalty(b, ok)),
                       ("sharp_scores", lambda b: artifact_penalty(ok, b)),
                       ("real_logits", lambda b: cgan_discriminator_loss(b, ok)),
                       ("fake_logits", lambda b: cgan_discriminator_loss(ok, b)),
                       ("fake_logits", lambda b: cgan_generator_loss(b)),
                       ("output", lambda b: content_loss(b, torch.zeros(1, 1, 4, 4))),
                       ("sharp", lambda b: content_loss(torch.zeros(1, 1, 4, 4), b))):
        with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got list$"):
            call([1.0])
        with pytest.raises(TypeError, match=rf"^{name} must be a floating-point tensor, got dtype torch\.int64$"):
            call(torch.zeros(2, dtype=torch.int64))
        with pytest.raises(ValueError, match=rf"^{name} must be a non-empty \(N, \.\.\.\) tensor, got shape \(\)$"):
            call(torch.tensor(1.0))  # 0-d: one element but no batch axis
        with pytest.raises(ValueError, match=rf"^{name} must be a non-empty \(N, \.\.\.\) tensor, "
                                             r"got shape \(0, 2\)$"):
            call(torch.zeros(0, 2))


def test_cgan_losses_are_softplus_means():
    real = torch.tensor([[2.0, -0.5]], dtype=D)
    fake = torch.tensor([[-1.0, 0.25]], dtype=D)
    d = (softplus(-2.0) + softplus(0.5)) / 2 + (softplus(-1.0) + softplus(0.25)) / 2
    assert cgan_discriminator_loss(real, fake).item() == pytest.approx(d, abs=1e-14)
    assert cgan_generator_loss(fake).item() == pytest.approx((softplus(1.0) + softplus(-0.25)) / 2, abs=1e-14)


def test_content_loss_default_and_custom():
    a, b = rand(1, 2, 16, 16, seed=1), rand(1, 2, 16, 16, seed=2)
    ref = LaplacianPyramidLoss(levels=3)(a, b).item()
    assert content_loss(a, b).item() == pytest.approx(ref, abs=1e-14)
    # three levels, not two or four (the values differ on this input)
    for other in (2, 4):
        assert abs(LaplacianPyramidLoss(levels=other)(a, b).item() - ref) > 1e-3
    assert content_loss(a, b, perceptual=lambda x, y: (x - y).sum()).item() == pytest.approx(
        (a - b).sum().item(), abs=1e-12)
    with pytest.raises(ValueError, match=r"^output and sharp must have the same shape, got \(1, 2, 16, 16\) and "
                                         r"\(1, 2, 16, 15\)$"):
        content_loss(a, b[..., :15])


def test_artifact_critic_loss_matches_its_parts():
    deconv = rand(2, 1, 3, 3, seed=3).requires_grad_(True)
    blurred = rand(2, 1, 3, 3, seed=4)
    critic = QuadCritic((1, 1, 3, 3))
    loss, parts = artifact_critic_loss(critic, deconv, blurred, gp_weight=2.5,
                                       generator=torch.Generator().manual_seed(11))
    w = critic(deconv).mean() - critic(blurred).mean()  # E[D(I*)] − E[D(O)]
    gp = gradient_penalty(critic, deconv, blurred, generator=torch.Generator().manual_seed(11))
    assert sorted(parts) == ["gp", "wasserstein"]
    assert parts["wasserstein"].item() == pytest.approx(w.item(), abs=1e-13)
    assert parts["gp"].item() == pytest.approx(gp.item(), abs=1e-13)
    # the interpolation is ε·I* + (1−ε)·O, not the other way round
    swapped = gradient_penalty(critic, blurred, deconv, generator=torch.Generator().manual_seed(11))
    assert abs(swapped.item() - gp.item()) > 1e-3
    assert loss.item() == pytest.approx(-w.item() + 2.5 * gp.item(), abs=1e-13)
    assert not parts["wasserstein"].requires_grad and not parts["gp"].requires_grad
    loss.backward()
    assert deconv.grad is None  # only the critic learns
    assert critic.a.grad is not None and bool(critic.a.grad.abs().sum() > 0)


def test_artifact_critic_loss_default_weight_and_zero_weight():
    deconv, blurred = rand(2, 1, 3, 3, seed=5), rand(2, 1, 3, 3, seed=6)
    critic = QuadCritic((1, 1, 3, 3))
    loss, parts = artifact_critic_loss(critic, deconv, blurred, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(-parts["wasserstein"].item() + 10.0 * parts["gp"].item(), abs=1e-13)
    assert parts["gp"].item() > 1e-3
    loss0, parts0 = artifact_critic_loss(critic, deconv, blurred, gp_weight=0)
    assert parts0["gp"].item() == 0.0  # no penalty computed at all
    assert loss0.item() == pytest.approx(-parts0["wasserstein"].item(), abs=1e-14)
    for bad in (-1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match=rf"^gp_weight must be a finite number >= 0, got {re_repr(bad)}$"):
            artifact_critic_loss(critic, deconv, blurred, gp_weight=bad)
    with pytest.raises(ValueError, match=r"^deconv and blurred must have the same shape, got \(2, 1, 3, 3\) and "
                                         r"\(1, 1, 3, 3\)$"):
        artifact_critic_loss(critic, deconv, blurred[:1])
    with pytest.raises(TypeError, match=r"^deconv must be a torch\.Tensor, got list$"):
        artifact_critic_loss(critic, [0.0], blurred)
    with pytest.raises(TypeError, match=r"^blurred must be a torch\.Tensor, got list$"):
        artifact_critic_loss(critic, deconv, [0.0])


# -------------------------------------------------------------------------------- deblurgan.py
def test_deblurgan_content_loss_values():
    d = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]], dtype=D)
    s = torch.tensor([[[[1.0, 1.0], [0.0, 0.75]]]], dtype=D)
    l1 = (1 + 0 + 0.5 + 0.5) / 4
    mse = (1 + 0 + 0.25 + 0.25) / 4
    assert dg_content_loss(d, s).item() == pytest.approx(l1, abs=1e-14)  # default "l1"
    assert dg_content_loss(d, s, "l1").item() == pytest.approx(l1, abs=1e-14)
    assert dg_content_loss(d, s, "mse").item() == pytest.approx(mse, abs=1e-14)
    # features: x ↦ 3x gives 3× the L1 and 9× the MSE; the sharp image's features are detached
    sr = s.clone().requires_grad_(True)
    dr = d.clone().requires_grad_(True)
    got = dg_content_loss(dr, sr, "mse", feature_extractor=lambda x: 3 * x)
    assert got.item() == pytest.approx(9 * mse, abs=1e-13)
    got.backward()
    assert sr.grad is None and dr.grad is not None
    assert dg_content_loss(d, s, kind="l1", feature_extractor=lambda x: 3 * x).item() == pytest.approx(3 * l1)
    with pytest.raises(ValueError, match=r"^kind must be 'l1' or 'mse', got 'l2'$"):
        dg_content_loss(d, s, "l2")


def test_deblurgan_pair_checks_name_the_argument():
    ok = torch.zeros(1, 1, 2, 2)
    for name, call in (("deblurred", lambda b: dg_content_loss(b, ok)), ("sharp", lambda b: dg_content_loss(ok, b))):
        with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got list$"):
            call([1.0])
        with pytest.raises(ValueError, match=rf"^{name} must be a float \(N, C, H, W\) tensor, "
                                             r"got torch\.int64 \(1, 1, 2, 2\)$"):
            call(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
        with pytest.raises(ValueError, match=rf"^{name} must be a float \(N, C, H, W\) tensor, "
                                             r"got torch\.float32 \(1, 2, 2\)$"):
            call(torch.zeros(1, 2, 2))
        for v in (float("nan"), float("-inf")):
            bad = ok.clone()
            bad[0, 0, 1, 1] = v
            with pytest.raises(ValueError, match=rf"^{name} holds NaN or Inf$"):
                call(bad)
    with pytest.raises(ValueError, match=r"^deblurred and sharp must have the same shape, got \(1, 1, 2, 2\) "
                                         r"and \(1, 1, 2, 3\)$"):
        dg_content_loss(ok, torch.zeros(1, 1, 2, 3))


def test_deblurgan_critic_loss_against_its_parts():
    deblurred = rand(2, 1, 3, 3, seed=8).requires_grad_(True)
    sharp = rand(2, 1, 3, 3, seed=9)
    critic = QuadCritic((1, 1, 3, 3), seed=3)
    out = deblurgan_critic_loss(critic, deblurred, sharp, gp_weight=3.0, generator=torch.Generator().manual_seed(4))
    w = critic(sharp).mean() - critic(deblurred).mean()  # E[D(real)] − E[D(fake)]
    gp = gradient_penalty(critic, sharp, deblurred, generator=torch.Generator().manual_seed(4))
    swapped = gradient_penalty(critic, deblurred, sharp, generator=torch.Generator().manual_seed(4))
    assert abs(swapped.item() - gp.item()) > 1e-3
    assert sorted(out) == ["critic", "gradient_penalty", "wasserstein"]
    assert out["gradient_penalty"].item() == pytest.approx(gp.item(), abs=1e-13)
    assert out["wasserstein"].item() == pytest.approx(w.item(), abs=1e-13)
    assert out["critic"].item() == pytest.approx(-w.item() + 3.0 * gp.item(), abs=1e-13)
    assert not out["wasserstein"].requires_grad
    out["critic"].backward()
    assert deblurred.grad is None and critic.a.grad is not None
    # default weight 10; weight 0 is allowed
    d10 = deblurgan_critic_loss(critic, deblurred, sharp, generator=torch.Generator().manual_seed(4))
    assert d10["critic"].item() == pytest.approx(-w.item() + 10.0 * gp.item(), abs=1e-12)
    d0 = deblurgan_critic_loss(critic, deblurred, sharp, gp_weight=0, generator=torch.Generator().manual_seed(4))
    assert d0["critic"].item() == pytest.approx(-w.item(), abs=1e-13)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"^gp_weight must be >= 0, got {bad!r}$"):
            deblurgan_critic_loss(critic, deblurred, sharp, gp_weight=bad)


def test_deblurgan_generator_loss_and_defaults():
    deblurred = rand(2, 1, 3, 3, seed=10).requires_grad_(True)
    sharp = rand(2, 1, 3, 3, seed=11)
    critic = QuadCritic((1, 1, 3, 3), seed=5)
    l1 = (deblurred - sharp).abs().mean().item()
    mse = (deblurred - sharp).square().mean().item()
    adv = -critic(deblurred).mean().item()
    out = deblurgan_generator_loss(critic, deblurred, sharp)  # defaults: l1, weight 100
    assert sorted(out) == ["adversarial", "content", "generator"]
    assert out["content"].item() == pytest.approx(l1, abs=1e-14)
    assert out["adversarial"].item() == pytest.approx(adv, abs=1e-14)
    assert out["generator"].item() == pytest.approx(100 * l1 + adv, abs=1e-12)
    out2 = deblurgan_generator_loss(critic, deblurred, sharp, "mse", 2.0, feature_extractor=lambda x: x + x)
    assert out2["generator"].item() == pytest.approx(2.0 * 4 * mse + adv, abs=1e-12)
    out2["generator"].backward()
    assert deblurred.grad is not None and bool(deblurred.grad.abs().sum() > 0)
    assert deblurgan_generator_loss(critic, deblurred, sharp, content_weight=0)["generator"].item() == pytest.approx(
        adv, abs=1e-14)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"^content_weight must be >= 0, got {bad!r}$"):
            deblurgan_generator_loss(critic, deblurred, sharp, content_weight=bad)


def test_deblurgan_losses_passes_every_argument_on():
    deblurred = rand(2, 1, 3, 3, seed=12)
    sharp = rand(2, 1, 3, 3, seed=13)
    critic = QuadCritic((1, 1, 3, 3), seed=6)
    feat = lambda x: x * x  # noqa: E731
    out = deblurgan_losses(critic, deblurred, sharp, content="mse", content_weight=7.0, gp_weight=0.5,
                           feature_extractor=feat, generator=torch.Generator().manual_seed(2))
    c = deblurgan_critic_loss(critic, deblurred, sharp, 0.5, torch.Generator().manual_seed(2))
    g = deblurgan_generator_loss(critic, deblurred, sharp, "mse", 7.0, feat)
    assert sorted(out) == sorted(list(c) + list(g))
    for k, v in list(c.items()) + list(g.items()):
        assert out[k].item() == pytest.approx(v.item(), abs=1e-13), k
    # defaults: l1, 100, 10
    out = deblurgan_losses(critic, deblurred, sharp, generator=torch.Generator().manual_seed(2))
    c = deblurgan_critic_loss(critic, deblurred, sharp, 10.0, torch.Generator().manual_seed(2))
    g = deblurgan_generator_loss(critic, deblurred, sharp, "l1", 100.0)
    for k, v in list(c.items()) + list(g.items()):
        assert out[k].item() == pytest.approx(v.item(), abs=1e-12), k


def test_artifact_critic_loss_small_positive_weights_still_compute_the_penalty():
    deconv, blurred = rand(2, 1, 3, 3, seed=14), rand(2, 1, 3, 3, seed=15)
    critic = QuadCritic((1, 1, 3, 3), seed=8)
    for wt in (0.5, 1):
        loss, parts = artifact_critic_loss(critic, deconv, blurred, gp_weight=wt,
                                           generator=torch.Generator().manual_seed(3))
        gp = gradient_penalty(critic, deconv, blurred, generator=torch.Generator().manual_seed(3))
        assert gp.item() > 1e-3
        assert parts["gp"].item() == pytest.approx(gp.item(), abs=1e-13)
        assert loss.item() == pytest.approx(-parts["wasserstein"].item() + wt * gp.item(), abs=1e-13)
