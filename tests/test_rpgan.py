"""RP-GAN: networks, losses, perceptual losses, replay buffer, prior in HQS, training recipe."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pnpdeblur as pd
from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.perceptual import (
    VGG16_LAYERS,
    LaplacianPyramidLoss,
    PerceptualLoss,
    VGG16Features,
    laplacian_pyramid,
)
from pnpdeblur.losses.rpgan import (
    artifact_critic_loss,
    artifact_penalty,
    cgan_discriminator_loss,
    cgan_generator_loss,
    content_loss,
    rpgan_generator_loss,
)
from pnpdeblur.nets.rpgan import (
    MIN_CRITIC_SIZE,
    SMALL_GENERATOR,
    ArtifactCritic,
    ConditionalDiscriminator,
    RPGANGenerator,
)
from pnpdeblur.priors.rpgan import RPGANPrior, rpgan_schedule
from pnpdeblur.train.replay import ReplayBuffer, level_counts


def tiny_generator(residual=False, seed=0):
    torch.manual_seed(seed)
    return RPGANGenerator(width=4, n_res=1, final_width=4, residual=residual)


# ----------------------------------------------------------------------------- networks
def _cbr(cin, cout, k):
    return cin * cout * k * k + 2 * cout  # conv without bias + norm scale/shift


def test_generator_paper_configuration_parameter_count_and_odd_sizes():
    g = RPGANGenerator()
    assert g.config == {"channels": 3, "width": 64, "n_res": 6, "final_width": 32, "residual": False}
    expected = (_cbr(6, 64, 7) + _cbr(64, 128, 3) + _cbr(128, 256, 3)  # encoder
                + 6 * 2 * _cbr(256, 256, 3)                               # Res1 256 ×6
                + _cbr(256, 256, 3) + _cbr(256, 128, 3) + _cbr(128, 64, 7)  # decoder
                + _cbr(70, 32, 3) + _cbr(32, 32, 3) + (32 * 3 * 9 + 3) + (70 * 3 * 9 + 3))  # Res2 3 on [f, I*, O]
    assert sum(p.numel() for p in g.parameters()) == expected
    g.eval()
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        assert g(x, x).shape == (1, 3, 17, 23)


@pytest.mark.parametrize("size", [(13, 9), (33, 47), (32, 32)])
def test_small_generator_any_size(size):
    g = RPGANGenerator(**SMALL_GENERATOR)
    x = torch.rand(2, 3, *size)
    out = g(x, torch.rand_like(x))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_residual_generator_starts_at_identity_and_uses_the_observation():
    g = tiny_generator(residual=True)
    x, o = torch.rand(2, 3, 12, 10), torch.rand(2, 3, 12, 10)
    torch.testing.assert_close(g(x, o), x)
    g2 = tiny_generator(residual=False).eval()
    with torch.no_grad():  # O is an input: changing it changes the output
        assert not torch.allclose(g2(x, o), g2(x, torch.rand_like(o)))


def test_generator_bad_input():
    g = tiny_generator()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="deconv"):
        g(torch.rand(1, 1, 8, 8), x)
    with pytest.raises(ValueError, match="same shape"):
        g(x, torch.rand(1, 3, 8, 9))
    with pytest.raises(TypeError, match="blurred"):
        g(x, x.numpy())
    with pytest.raises(ValueError, match="width"):
        RPGANGenerator(width=0)
    with pytest.raises(TypeError, match="residual"):
        RPGANGenerator(residual=1)


def _critic_out(n):
    n = max(n, MIN_CRITIC_SIZE)
    for _ in range(4):
        n = n // 2          # 4×4, stride 2, padding 1
    return n - 2            # two 4×4 stride-1 layers with padding 1


def test_discriminator_parameter_counts():
    d = ConditionalDiscriminator()
    body = _cbr(6, 64, 4) + _cbr(64, 128, 4) + _cbr(128, 256, 4) + _cbr(256, 512, 4) + _cbr(512, 512, 4)
    assert sum(p.numel() for p in d.parameters()) == body + 512 * 16 + 1
    c = ArtifactCritic()
    body = _cbr(3, 64, 4) + _cbr(64, 128, 4) + _cbr(128, 256, 4) + _cbr(256, 512, 4) + _cbr(512, 512, 4)
    assert sum(p.numel() for p in c.parameters()) == body + 512 * 16 + 1


@pytest.mark.parametrize("size", [(9, 13), (50, 67), (97, 64)])
def test_discriminator_shapes_on_odd_sizes(size):
    torch.manual_seed(0)
    d, c = ConditionalDiscriminator(width=4), ArtifactCritic(width=4)
    x = torch.rand(2, 3, *size)
    expect = (2, 1, _critic_out(size[0]), _critic_out(size[1]))
    assert d(x, x).shape == expect
    assert c(x).shape == expect
    assert c.score(x).shape == (2,)
    with pytest.raises(ValueError, match="same shape"):
        d(x, x[..., :-1])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        c(x[:, :1])


def test_artifact_critic_is_per_sample():
    # layer norm, not batch norm: a sample's score does not depend on the rest of the batch
    torch.manual_seed(0)
    c = ArtifactCritic(width=4).train()
    x = torch.rand(3, 3, 48, 48)
    torch.testing.assert_close(c(x)[:1], c(x[:1]))


def test_checkpoints_round_trip_and_wrong_architecture(tmp_path):
    g = tiny_generator()
    g.eval()
    path = g.save(tmp_path / "g.safetensors")
    g2 = RPGANGenerator.from_checkpoint(path)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(g2(x, x), g(x, x))
    c = ArtifactCritic(width=4)
    cpath = c.save(tmp_path / "c.safetensors")
    with pytest.raises(CheckpointError, match="ArtifactCritic"):
        RPGANGenerator.from_checkpoint(cpath)
    with pytest.raises(CheckpointError, match="RPGANGenerator"):
        ConditionalDiscriminator.from_checkpoint(path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        RPGANGenerator.from_checkpoint(tmp_path / "bad.safetensors")


# ------------------------------------------------------------------------------- losses
def test_artifact_penalty_zero_when_generated_scores_lower_and_hand_values():
    g = torch.tensor([0.5, -2.0, 1.0])
    s = torch.tensor([1.0, -1.0, 1.0])
    assert artifact_penalty(g, s).item() == 0.0  # D_p(G) <= D_p(I_s) everywhere
    # positive part per image, then the batch mean: ((3-1)+ + (0-2)+) / 2 = 1
    assert artifact_penalty(torch.tensor([3.0, 0.0]), torch.tensor([1.0, 2.0])).item() == pytest.approx(1.0)
    # score maps are averaged per image first: image 0 mean 2 vs 0 → 2, image 1 mean −1 vs 0 → 0
    gm = torch.tensor([[[[1.0, 3.0]]], [[[-1.0, -1.0]]]])
    assert artifact_penalty(gm, torch.zeros_like(gm)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        artifact_penalty(torch.zeros(2), torch.zeros(3))
    with pytest.raises(TypeError, match="generated_scores"):
        artifact_penalty([1.0], torch.zeros(1))


def test_artifact_penalty_gradient_only_where_positive():
    g = torch.tensor([3.0, 0.0], requires_grad=True)
    artifact_penalty(g, torch.tensor([1.0, 2.0])).backward()
    torch.testing.assert_close(g.grad, torch.tensor([0.5, 0.0]))


def test_cgan_losses_hand_values():
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus: -log σ(-v)
    assert cgan_discriminator_loss(real, fake).item() == pytest.approx(sp(-2.0) + sp(-1.0), rel=1e-6)
    assert cgan_generator_loss(fake).item() == pytest.approx(sp(1.0), rel=1e-6)
    z = torch.zeros(2, 1, 3, 3)
    assert cgan_discriminator_loss(z, z).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_artifact_critic_loss_with_a_linear_critic():
    # D(x) = c·Σx: the W-estimate is c(ΣI* − ΣO) per image; the gradient norm is c·sqrt(numel)
    c = 0.05
    critic = lambda x: c * x.flatten(1).sum(1)  # noqa: E731
    deconv = torch.full((2, 3, 4, 4), 0.75)
    blurred = torch.full((2, 3, 4, 4), 0.25)
    loss, parts = artifact_critic_loss(critic, deconv, blurred, gp_weight=10.0)
    w = c * 48 * 0.5
    gp = (c * math.sqrt(48) - 1) ** 2
    assert parts["wasserstein"].item() == pytest.approx(w, rel=1e-5)
    assert parts["gp"].item() == pytest.approx(gp, rel=1e-5)
    assert loss.item() == pytest.approx(-w + 10 * gp, rel=1e-5)
    loss0, _ = artifact_critic_loss(critic, deconv, blurred, gp_weight=0)
    assert loss0.item() == pytest.approx(-w, rel=1e-5)
    with pytest.raises(ValueError, match="gp_weight"):
        artifact_critic_loss(critic, deconv, blurred, gp_weight=-1)
    with pytest.raises(ValueError, match="same shape"):
        artifact_critic_loss(critic, deconv, blurred[:1])


def test_total_loss_weights():
    lc, lg, lp = torch.tensor(0.3), torch.tensor(0.7), torch.tensor(2.0)
    assert rpgan_generator_loss(lc, lg, lp, gamma=0.1, lam=0.5).item() == pytest.approx(0.3 + 0.07 + 1.0)
    assert rpgan_generator_loss(lc, None, lp, gamma=0.1, lam=0.5).item() == pytest.approx(1.3)
    assert rpgan_generator_loss(lc).item() == pytest.approx(0.3)
    with pytest.raises(ValueError, match="gamma"):
        rpgan_generator_loss(lc, lg, lp, gamma=float("nan"))
    with pytest.raises(TypeError, match="penalty"):
        rpgan_generator_loss(lc, lg, torch.ones(2))


def _checker(n=8):
    i = torch.arange(n)
    return ((-1.0) ** (i[:, None] + i[None, :])).expand(1, 3, n, n)


def test_laplacian_pyramid_loss_hand_values():
    # a ±0.25 checkerboard is pure finest band: the binomial filter removes it exactly
    x = 0.5 + 0.25 * _checker()
    y = torch.full_like(x, 0.5)
    assert LaplacianPyramidLoss(1)(x, y).item() == pytest.approx(0.25, abs=1e-6)
    assert LaplacianPyramidLoss(3)(x, y).item() == pytest.approx(0.25, abs=1e-6)
    assert LaplacianPyramidLoss(1, weights=[2.0, 1.0])(x, y).item() == pytest.approx(0.5, abs=1e-6)
    # constants live in the residual only: |0.9 − 0.5|
    assert LaplacianPyramidLoss(2)(torch.full_like(x, 0.9), y).item() == pytest.approx(0.4, abs=1e-6)
    # no levels: plain L1
    a, b = torch.rand(1, 3, 5, 7), torch.rand(1, 3, 5, 7)
    assert LaplacianPyramidLoss(0)(a, b).item() == pytest.approx((a - b).abs().mean().item(), rel=1e-6)
    # the pyramid reconstructs the image
    bands = laplacian_pyramid(a, 2)
    rec = bands[-1]
    for band in reversed(bands[:-1]):
        rec = band + F.interpolate(rec, size=band.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(rec, a)
    with pytest.raises(ValueError, match="weights"):
        LaplacianPyramidLoss(2, weights=[1.0])
    with pytest.raises(ValueError, match="same shape"):
        LaplacianPyramidLoss(1)(a, b[..., :-1])


def test_content_loss_default_is_the_pyramid_and_takes_a_perceptual_loss():
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert content_loss(a, b).item() == pytest.approx(LaplacianPyramidLoss(3)(a, b).item())
    assert content_loss(a, b, perceptual=lambda x, y: (x - y).pow(2).mean()).item() == pytest.approx(
        (a - b).pow(2).mean().item())


def _vgg_state(seed=0, upto=31, extra=True):
    g = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    idx = 0
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            idx += 1
            continue
        if idx < upto:
            state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
            state[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.01
        cin, idx = v, idx + 2
    if extra:  # a whole torchvision state dict also has the classifier
        state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


def test_perceptual_loss_hand_value(tmp_path):
    from safetensors.torch import save_file

    state = _vgg_state()
    w = torch.zeros(64, 3, 3, 3)
    w[0, 0, 1, 1] = 1.0  # relu1_1 channel 0 = normalised red, all other channels 0
    state["features.0.weight"], state["features.0.bias"] = w, torch.zeros(64)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "vgg.safetensors"))
    loss = PerceptualLoss(tmp_path / "vgg.safetensors", layers=("relu1_1",))
    x, y = torch.full((1, 3, 6, 6), 0.9), torch.full((1, 3, 6, 6), 0.6)
    expected = ((0.9 - 0.485) / 0.229 - (0.6 - 0.485) / 0.229) ** 2 / 64
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-5)
    assert all(not p.requires_grad for p in loss.parameters())


def test_vgg_relu2_2_matches_an_independent_conv_chain(tmp_path):
    state = _vgg_state(seed=3, upto=9)
    torch.save(state, tmp_path / "vgg.pth")
    feats = VGG16Features(tmp_path / "vgg.pth", layers=("relu1_2", "relu2_2"))
    x = torch.rand(1, 3, 10, 12)
    t = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    conv = lambda t, i: F.relu(F.conv2d(t, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))  # noqa: E731
    r12 = conv(conv(t, 0), 2)
    r22 = conv(conv(F.max_pool2d(r12, 2), 5), 7)
    a, b = feats(x)
    torch.testing.assert_close(a, r12)
    torch.testing.assert_close(b, r22)
    assert VGG16_LAYERS["relu2_2"] == 8
    with pytest.raises(ValueError, match="features.10.weight"):
        VGG16Features(state, layers=("relu3_1",))
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        VGG16Features(state, layers=("relu9_9",))
    with pytest.raises(FileNotFoundError, match="vgg16"):
        PerceptualLoss(tmp_path / "missing.safetensors")
    bad = dict(state)
    bad["features.0.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(ValueError, match="shape"):
        VGG16Features(bad, layers=("relu1_1",))


# ------------------------------------------------------------------------ replay buffer
def _fake_producer(calls):
    def producer(counts, round):
        calls.append((list(counts), round))
        level = torch.cat([torch.full((n,), k + 1) for k, n in enumerate(counts)])
        return {"level": level, "x": torch.full((len(level), 2), float(round))}

    return producer


def test_level_counts_paper_and_rounding():
    assert level_counts(1000, (0.5, 0.3, 0.2)) == [500, 300, 200]
    # 3.5, 2.1, 1.4 → floors 3, 2, 1; the one left goes to the largest remainder (level 1)
    assert level_counts(7, (0.5, 0.3, 0.2)) == [4, 2, 1]
    assert level_counts(10, (5, 3, 2)) == [5, 3, 2]  # shares are normalised
    with pytest.raises(ValueError, match="proportions"):
        level_counts(10, (0.5, -0.1))
    with pytest.raises(ValueError, match="capacity"):
        level_counts(0, (1.0,))


def test_replay_buffer_proportions_and_refresh_rounds():
    calls = []
    buf = ReplayBuffer(_fake_producer(calls), capacity=1000, proportions=(0.5, 0.3, 0.2), refresh_every=3)
    levels = buf.level_of()
    assert len(buf) == 1000
    assert [(levels == k).sum().item() for k in (1, 2, 3)] == [500, 300, 200]
    assert calls == [([500, 300, 200], 0)]
    for epoch in range(7):  # the engine calls set_epoch at each epoch start (and again on resume)
        buf.set_epoch(epoch)
        buf.set_epoch(epoch)
    assert [r for _, r in calls] == [0, 1, 2] and buf.refills == 3
    item = buf[5]
    assert set(item) == {"level", "x"} and item["x"][0].item() == 2.0


def test_replay_buffer_checks_the_producer():
    with pytest.raises(ValueError, match="level counts"):
        ReplayBuffer(lambda counts, r: {"level": torch.ones(10, dtype=torch.long)}, capacity=10,
                     proportions=(0.5, 0.5))
    with pytest.raises(ValueError, match="NaN"):
        ReplayBuffer(lambda counts, r: {"level": torch.ones(4, dtype=torch.long), "x": torch.full((4,), float("nan"))},
                     capacity=4, proportions=(1.0,))
    with pytest.raises(ValueError, match="refresh_every"):
        ReplayBuffer(_fake_producer([]), capacity=4, refresh_every=0)
    buf = ReplayBuffer(_fake_producer([]), capacity=4, fill_now=False)
    with pytest.raises(RuntimeError, match="empty"):
        buf[0]


# ------------------------------------------------------------------------- the prior in HQS
def _scene(h=20, w=26, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((h, w, 3)).astype(np.float32)
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = 4.0, 2.0
    K = pd.MotionBlur(flow)
    return x, K, K(x)


def test_prior_is_the_generator_given_the_observation():
    g = tiny_generator().eval()
    prior = RPGANPrior(g)
    z, y = torch.rand(1, 3, 12, 14), torch.rand(1, 3, 12, 14)
    with torch.no_grad():
        torch.testing.assert_close(prior(z, 0.05, context={"y": y}), g(z, y))
    # sigma = 0: identity, as every prior
    torch.testing.assert_close(prior(z, 0.0, context={"y": y}), z)
    # a grey image through the RGB generator: replicated, then averaged back
    zg, yg = z[:, :1], y[:, :1]
    with torch.no_grad():
        torch.testing.assert_close(prior(zg, 0.05, context={"y": yg}),
                                   g(zg.expand(-1, 3, -1, -1), yg.expand(-1, 3, -1, -1)).mean(1, keepdim=True))


def test_prior_in_hqs_numpy_and_torch_with_levels():
    x, K, y = _scene()
    g = tiny_generator()
    prior = RPGANPrior(g, levels=3)
    betas = prior.schedule(0.01)
    assert betas == rpgan_schedule(0.01, 3) and len(betas) == 3 and betas[0] < betas[1] < betas[2]
    res = pd.solvers.hqs(y, K, prior, betas=betas, cg_iters=3)
    assert isinstance(res.x, np.ndarray) and res.x.shape == y.shape and res.x.dtype == np.float32
    assert prior.levels_run == [1, 2, 3] and prior.level == 3
    # the result is the generator applied to the last x-step with O = y
    with torch.no_grad():
        aux = torch.from_numpy(res.aux).permute(2, 0, 1)[None]
        ref = g(aux, torch.from_numpy(y).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(res.x, ref, atol=1e-5)
    yt = torch.from_numpy(y).permute(2, 0, 1).double()  # torch (C, H, W), float64
    res_t = pd.solvers.hqs(yt, K, prior, betas=betas[:2], cg_iters=3)
    assert isinstance(res_t.x, torch.Tensor) and res_t.x.shape == yt.shape and res_t.x.dtype == torch.float64
    assert prior.levels_run == [1, 2]  # a new observation restarts the recurrence


def test_prior_level_counter_without_iteration_and_errors(tmp_path):
    g = tiny_generator()
    prior = RPGANPrior(g)
    z, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    for _ in range(2):
        prior(z, 0.1, context={"y": y})
    assert prior.levels_run == [1, 2]
    prior.reset()
    assert prior.level == 0 and prior.levels_run == []
    with pytest.raises(ValueError, match="context"):
        prior(z, 0.1)
    with pytest.raises(ValueError, match="shape of z"):
        prior(z, 0.1, context={"y": y[..., :4]})
    with pytest.raises(ValueError, match="NaN"):
        prior(z, 0.1, context={"y": torch.full_like(y, float("nan"))})
    with pytest.raises(TypeError, match="generator"):
        RPGANPrior(generator=3)
    with pytest.raises(ValueError, match="levels"):
        RPGANPrior(g, levels=0)
    path = g.save(tmp_path / "g.safetensors")
    assert RPGANPrior(str(path)).generator.config == g.config
    with pytest.raises(ValueError, match="channels"):
        RPGANPrior(g)(torch.rand(1, 2, 8, 8), 0.1, context={"y": torch.rand(1, 2, 8, 8)})


def test_prior_without_shipped_weights_explains_how_to_train():
    from pnpdeblur.nets._base import WEIGHTS_DIR

    if (WEIGHTS_DIR / RPGANGenerator.pretrained_file).is_file():
        assert isinstance(RPGANPrior().generator, RPGANGenerator)
    else:
        with pytest.raises(FileNotFoundError, match="train_rpgan"):
            RPGANPrior()


# ------------------------------------------------------------------------------ training
def _fixed_batch(n=4, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, 3, size, size, generator=g)
    blurred = F.avg_pool2d(F.pad(sharp, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    deconv = (sharp + 0.1 * torch.randn(sharp.shape, generator=g)).clamp(-0.2, 1.2)
    return {"deconv": deconv, "blurred": blurred, "sharp": sharp}


def _tiny_module(residual=True):
    from pnpdeblur.train.rpgan import RPGANTrainModule

    torch.manual_seed(0)
    return RPGANTrainModule(RPGANGenerator(width=4, n_res=1, final_width=4, residual=residual),
                            ConditionalDiscriminator(width=4), ArtifactCritic(width=4))


def test_loss_sends_generator_and_discriminator_gradients_to_their_own_networks():
    from pnpdeblur.train.rpgan import make_loss_fn

    batch = _fixed_batch()
    m = _tiny_module()
    # break the zero start so that the generator's gradient is not trivially sparse
    torch.nn.init.normal_(m.generator.head.skip.weight, std=0.01)
    loss_fn = make_loss_fn(gamma=0.1, lam=0.1, gp_weight=0.0)
    total, extra = loss_fn(m, batch)
    total.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad(set_to_none=True)
    # L_G alone: content + γ cGAN + λ penalty through the same (fixed) discriminators
    out = m.generator(batch["deconv"], batch["blurred"])
    lg = rpgan_generator_loss(content_loss(out, batch["sharp"]),
                              cgan_generator_loss(m.d_cgan(out, batch["blurred"])),
                              artifact_penalty(m.d_p(out), m.d_p(batch["sharp"])), 0.1, 0.1)
    gen_params = dict(m.generator.named_parameters())
    ref = torch.autograd.grad(lg, list(gen_params.values()), allow_unused=True)
    for (n, _), r in zip(gen_params.items(), ref):
        if r is not None:
            torch.testing.assert_close(grads[f"generator.{n}"], r, rtol=1e-4, atol=1e-7)
    # L_D alone for the critic
    ld, _ = artifact_critic_loss(m.d_p, batch["deconv"], batch["blurred"], gp_weight=0.0)
    crit = dict(m.d_p.named_parameters())
    ref = torch.autograd.grad(ld, list(crit.values()))
    for (n, _), r in zip(crit.items(), ref):
        torch.testing.assert_close(grads[f"d_p.{n}"], r, rtol=1e-4, atol=1e-7)
    assert extra["generator"] == pytest.approx(lg.item(), rel=1e-5)


def test_one_step_changes_every_network_and_steps_lower_the_fixed_batch_loss():
    from pnpdeblur.train import TrainConfig, Trainer
    from pnpdeblur.train.rpgan import TensorItems, make_loss_fn

    batch = _fixed_batch(4, 16)
    m = _tiny_module(residual=False)  # a random start: its content loss is far from the minimum
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        c0 = content_loss(m.generator(batch["deconv"], batch["blurred"]), batch["sharp"]).item()
    for steps in (1, 6):
        cfg = TrainConfig(steps=steps, batch_size=4, lr=1e-3, betas=(0.5, 0.999), device="cpu", progress=False,
                          log_every=0)
        Trainer(m, cfg, TensorItems(batch), make_loss_fn()).fit()
        if steps == 1:
            for prefix in ("generator.", "d_cgan.", "d_p."):
                changed = [not torch.equal(before[n], p) for n, p in m.named_parameters() if n.startswith(prefix)]
                assert any(changed), prefix
    with torch.no_grad():
        c1 = content_loss(m.generator(batch["deconv"], batch["blurred"]), batch["sharp"]).item()
    assert c1 < 0.8 * c0


def test_producer_levels_and_level1_is_the_plain_x_step():
    from pnpdeblur.train.rpgan import DeconvolutionProducer

    x, K, y = _scene(16, 16)
    yt = torch.from_numpy(y).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    flow = torch.zeros(3, 2, 16, 16)
    flow[:, 0], flow[:, 1] = 4.0, 2.0
    pool = {"blurred": yt, "sharp": yt.clone(), "flow": flow}
    g = tiny_generator()
    prod = DeconvolutionProducer(g, pool, levels=3, noise_level=0.01, cg_iters=3, chunk=2)
    out = prod([2, 1, 1], round=0)
    assert out["level"].tolist() == [1, 1, 2, 3]
    assert out["deconv"].shape == (4, 3, 16, 16)
    # level 1 does not involve the generator: HQS's first x-step from Z_0 = O
    ref = pd.solvers.hqs(yt[:1], pd.MotionBlur(flow[:1]), lambda z, s: z, betas=prod.betas[:1], cg_iters=3).aux
    torch.testing.assert_close(out["deconv"][0], ref[0], atol=1e-5, rtol=1e-4)
    # the frozen copy is a copy: the live generator keeps training mode and its own grads
    assert g.training and all(p.requires_grad for p in g.parameters())


def test_training_recipe_smoke_run(tmp_path):
    from pnpdeblur.nets.sen import SEN
    from pnpdeblur.train.rpgan import main

    torch.manual_seed(0)
    sen = SEN(width=2, stacks=1, levels=1)  # an untrained tiny SEN: fast, still an estimated flow
    sen_path = sen.save(tmp_path / "sen.safetensors")
    out = tmp_path / "g.safetensors"
    argv = ["--steps", "2", "--pretrain-steps", "1", "--batch", "2", "--crop", "24", "--pool", "3", "--buffer", "2",
            "--val-items", "1", "--val-every", "0", "--width", "4", "--n-res", "1", "--d-width", "4",
            "--cg-iters", "2", "--sen", str(sen_path), "--run-dir", str(tmp_path / "run"), "--out", str(out),
            "--no-progress", "--log-every", "1"]
    assert main(argv) == out
    g = RPGANGenerator.from_checkpoint(out)
    assert g.config["width"] == 4 and g.header["schedule"]["levels"] == 3
    assert g.header["data"]["flows"] == "sen" and g.header["stored_dtype"].startswith("float16")
    assert (tmp_path / "run" / "d_p.safetensors").is_file() and (tmp_path / "run" / "d_cgan.safetensors").is_file()
    assert (tmp_path / "run" / "recurrent" / "last.pt").is_file()
    val = g.header["validation"]
    assert {"psnr_level1", "psnr_level2", "psnr_level3", "psnr_deconv1"} <= set(val)
    with pytest.raises(SystemExit):
        main(["--buffer", "2", "--batch", "4"])
