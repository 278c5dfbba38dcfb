"""Adversarial losses against hand-computed values and closed forms."""
import math

import pytest
import torch

from pnpdeblur.losses.adversarial import (
    gan_discriminator_loss,
    gan_generator_loss,
    gradient_penalty,
    wgan_critic_loss,
    wgan_generator_loss,
)


def _log_sigmoid(x):
    return -math.log1p(math.exp(-x))


def test_gan_losses_match_hand_computed_values():
    real = torch.tensor([2.0, -1.0])
    fake = torch.tensor([[0.5], [-3.0]])
    # −mean log σ(real) − mean log(1 − σ(fake)); log(1 − σ(x)) = log σ(−x)
    expect_d = -(_log_sigmoid(2.0) + _log_sigmoid(-1.0)) / 2 - (_log_sigmoid(-0.5) + _log_sigmoid(3.0)) / 2
    assert gan_discriminator_loss(real, fake).item() == pytest.approx(expect_d, rel=1e-6)
    expect_g = -(_log_sigmoid(0.5) + _log_sigmoid(-3.0)) / 2
    assert gan_generator_loss(fake).item() == pytest.approx(expect_g, rel=1e-6)
    # an undecided discriminator: 2 log 2
    z = torch.zeros(3, 1, 4, 4)
    assert gan_discriminator_loss(z, z).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_gan_losses_are_stable_for_large_logits():
    big = torch.tensor([80.0, -80.0])
    assert torch.isfinite(gan_discriminator_loss(big, -big)).item()
    assert gan_generator_loss(torch.tensor([-80.0])).item() == pytest.approx(80.0, rel=1e-4)


def test_wgan_losses_match_means():
    real = torch.tensor([1.0, 3.0, 5.0])          # mean 3
    fake = torch.tensor([[[-2.0, 0.0]]])           # mean −1
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-4.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(1.0)


class _Linear(torch.nn.Module):
    """D(x) = <w, x>: ‖∇D‖ = ‖w‖ everywhere, so the penalty is (‖w‖ − 1)² exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, *cond):
        out = (x * self.w).flatten(1).sum(1)
        for c in cond:  # a condition enters the score but not the penalised gradient
            out = out + 100.0 * c.flatten(1).sum(1)
        return out


def test_gradient_penalty_closed_form_and_condition_ignored():
    w = torch.full((1, 2, 3, 3), 0.5)             # ‖w‖ = 0.5·sqrt(18)
    critic = _Linear(w)
    real, fake = torch.rand(4, 2, 3, 3), torch.rand(4, 2, 3, 3)
    expect = (0.5 * math.sqrt(18) - 1) ** 2
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(expect, rel=1e-5)
    gp_c = gradient_penalty(critic, real, fake, torch.rand(4, 1, 3, 3))
    assert gp_c.item() == pytest.approx(expect, rel=1e-5)
    # differentiable in the critic's weights: d/dw (‖w‖−1)² = 2(‖w‖−1) w/‖w‖
    gp.backward()
    n = w.norm()
    assert torch.allclose(critic.w.grad, 2 * (n - 1) * w / n, atol=1e-5)


def test_gradient_penalty_zero_for_unit_norm_and_uses_interpolates():
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0] = 1.0
    assert gradient_penalty(_Linear(w), torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)).item() == pytest.approx(0.0, abs=1e-10)

    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return (x ** 2).flatten(1).sum(1)

    real, fake = torch.ones(2, 1, 1, 1), torch.zeros(2, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    eps = torch.rand((2, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    gp = gradient_penalty(critic, real, fake, generator=g)
    assert torch.allclose(seen[0], eps)            # x̂ = ε·1 + (1−ε)·0
    assert gp.item() == pytest.approx(((2 * eps.flatten() - 1) ** 2).mean().item(), rel=1e-6)


@pytest.mark.parametrize("bad, err", [(torch.tensor([1, 2]), TypeError), (torch.empty(0), ValueError), ([1.0], TypeError)])
def test_bad_scores_raise(bad, err):
    with pytest.raises(err, match="real"):
        wgan_critic_loss(bad, torch.zeros(2))


def test_gradient_penalty_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(lambda x: x.sum(), torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 3, 2))


def test_interpolates_mix_both_samples_in_the_input_dtype_and_pass_the_condition():
    seen, conds = [], []

    def critic(x, cond):
        seen.append(x.detach().clone())
        conds.append(cond)
        return (x ** 2).flatten(1).sum(1)

    real = torch.full((3, 1, 1, 1), 2.0, dtype=torch.float64)
    fake = torch.full((3, 1, 1, 1), -1.0, dtype=torch.float64)
    cond = torch.zeros(3, 1, 1, 1)
    eps = torch.rand((3, 1, 1, 1), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, cond, generator=torch.Generator().manual_seed(5))
    assert seen[0].dtype == torch.float64
    mixed = 3 * eps - 1  # ε·2 + (1−ε)·(−1)
    torch.testing.assert_close(seen[0], mixed, rtol=0, atol=1e-15)
    assert conds[0] is cond
    # ∇(x²) = 2x̂ → (|2x̂| − 1)²
    assert gp.item() == pytest.approx(((2 * mixed.abs() - 1) ** 2).mean().item(), rel=1e-12)


_CALLS = [
    (lambda bad: gan_discriminator_loss(bad, torch.zeros(1)), "real_logits"),
    (lambda bad: gan_discriminator_loss(torch.zeros(1), bad), "fake_logits"),
    (lambda bad: gan_generator_loss(bad), "fake_logits"),
    (lambda bad: wgan_critic_loss(bad, torch.zeros(1)), "real_scores"),
    (lambda bad: wgan_critic_loss(torch.zeros(1), bad), "fake_scores"),
    (lambda bad: wgan_generator_loss(bad), "fake_scores"),
    (lambda bad: gradient_penalty(lambda x: x.sum(), bad, torch.zeros(1, 1, 1, 1)), "real"),
    (lambda bad: gradient_penalty(lambda x: x.sum(), torch.zeros(1, 1, 1, 1), bad), "fake"),
]


@pytest.mark.parametrize("call, name", _CALLS)
def test_errors_name_the_argument(call, name):
    with pytest.raises(TypeError, match=rf"^{name} must be a floating-point tensor"):
        call(torch.tensor([1]))
    with pytest.raises(ValueError, match=rf"^{name} must not be empty"):
        call(torch.empty(0))


@pytest.mark.parametrize("call, name", _CALLS[:6])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_scores_raise_naming_the_argument(call, name, value):
    bad = torch.zeros(3)
    bad[1] = value
    with pytest.raises(ValueError, match=rf"^{name} holds NaN or Inf$"):
        call(bad)


@pytest.mark.parametrize("call, name", _CALLS)
def test_non_tensor_errors_name_the_type_given(call, name):
    with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got list$"):
        call([1.0])


def test_interpolation_weights_are_drawn_where_the_generator_lives():
    # The "meta" device (shapes only, no data) stands in for a GPU on this CPU-only machine:
    # ε must be drawn on the inputs' device without a generator, on the generator's device
    # with one (then moved to the inputs), and never from the default (CPU) random stream.
    w = torch.ones(1, 2, 3, 3, device="meta")

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real = torch.empty(2, 2, 3, 3, device="meta", dtype=torch.float64)
    fake = torch.empty_like(real)
    torch.manual_seed(0)
    want_next = torch.rand(3)
    torch.manual_seed(0)
    gp = gradient_penalty(critic, real, fake)
    assert gp.device.type == "meta" and gp.shape == ()
    assert torch.equal(torch.rand(3), want_next)  # the CPU stream was not used

    gen = torch.Generator().manual_seed(7)
    twin = torch.Generator().manual_seed(7)
    torch.rand((2, 1, 1, 1), generator=twin, dtype=torch.float64)  # one CPU draw of ε
    torch.manual_seed(0)
    gp = gradient_penalty(critic, real, fake, generator=gen)
    assert gp.device.type == "meta" and gp.shape == ()
    assert torch.equal(gen.get_state(), twin.get_state())  # drawn from the CPU generator
    assert torch.equal(torch.rand(3), want_next)
