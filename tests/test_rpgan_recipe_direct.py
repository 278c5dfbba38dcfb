"""RP-GAN's training recipe (``pnpdeblur/train/rpgan.py``) called directly, on tiny stand-ins.

Wu et al. (``shared/papers/wu-sen-hqs-rpgan.txt``, "RP-GAN training details"): "Batch size is set
as 16. Learning rate is set as 1e−4 for both generator and discriminator in the first 110 epochs,
and linearly decreases to 1e−6 in the next 80 epochs ... we pre-train RP-GAN on the first level
for 40 epochs. Then we set a buffer which stores 1000 images including 50% first-level results,
30% second-level results and 20% third-level results. These images are randomly sent to RP-GAN
for training 3 epochs before the buffer updated"; "1000 synthetic blurred images". The tests check
those defaults of the command line, the total loss ``L_c + γ L_cGAN + λ L_p`` plus the
discriminators' losses term by term (a step with λ = 0 is a step without D_p, γ = 0 one without
D_cGAN), the producer's seeded draws, frozen copy and restored state, the validation PSNRs
against HQS runs of each length, and that ``main`` hands every option to the part that uses it.
"""
import copy
import inspect
import json
import time
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import read_header
from pnpdeblur.losses.rpgan import (
    DEFAULT_GAMMA,
    DEFAULT_GP_WEIGHT,
    DEFAULT_LAMBDA_P,
    artifact_critic_loss,
    artifact_penalty,
    cgan_discriminator_loss,
    cgan_generator_loss,
    content_loss,
    rpgan_generator_loss,
)
from pnpdeblur.nets.rpgan import ArtifactCritic, ConditionalDiscriminator, RPGANGenerator
from pnpdeblur.operators import MotionBlur
from pnpdeblur.priors.rpgan import RPGANPrior, rpgan_schedule
from pnpdeblur.solvers import hqs
from pnpdeblur.train import rpgan as R
from pnpdeblur.train.rpgan import (
    DeconvolutionProducer,
    RPGANTrainModule,
    TensorItems,
    _floats,
    _frozen,
    _psnr,
    make_loss_fn,
    make_val_fn,
    parse_args,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Mix(nn.Module):
    """Stand-in generator ``a·I* + b·O`` (two scalar parameters)."""

    def __init__(self, a=0.7, b=0.3):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, deconv, blurred):
        return self.a * deconv + self.b * blurred


def _pool(n=5, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, 3, size, size, generator=g)
    blurred = (0.5 * sharp + 0.5 * sharp.roll(1, -1)).clamp(0, 1)
    flow = torch.zeros(n, 2, size, size)
    flow[:, 0] = torch.linspace(0.5, 1.5, n)[:, None, None]
    flow[:, 1] = -0.5
    return {"blurred": blurred, "sharp": sharp, "flow": flow, "true_flow": flow.clone()}


def _batch(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, 3, size, size, generator=g)
    blurred = 0.5 * sharp + 0.5 * sharp.roll(2, -1)
    deconv = (sharp + 0.1 * torch.randn(sharp.shape, generator=g)).clamp(-0.2, 1.2)
    return {"deconv": deconv, "blurred": blurred, "sharp": sharp}


def _module(d_cgan=True, d_p=True, seed=0):
    torch.manual_seed(seed)
    gen = RPGANGenerator(width=2, n_res=1, final_width=2, residual=False)
    return RPGANTrainModule(gen, ConditionalDiscriminator(width=2) if d_cgan else None,
                            ArtifactCritic(width=2) if d_p else None).eval()


# ------------------------------------------------------------------------------ the train module
def test_train_module_holds_three_networks_and_runs_the_generator():
    m = _module()
    assert [n for n, _ in m.named_children()] == ["generator", "d_cgan", "d_p"]
    b = _batch()
    assert torch.equal(m(b["deconv"], b["blurred"]), m.generator(b["deconv"], b["blurred"]))
    bare = RPGANTrainModule(_Mix())
    assert bare.d_cgan is None and bare.d_p is None
    with pytest.raises(TypeError, match=r"^generator must be a torch\.nn\.Module, got function$"):
        RPGANTrainModule(lambda a, b: a)
    with pytest.raises(TypeError, match=r"^d_cgan must be a torch\.nn\.Module or None, got int$"):
        RPGANTrainModule(_Mix(), d_cgan=3)
    with pytest.raises(TypeError, match=r"^d_p must be a torch\.nn\.Module or None, got str$"):
        RPGANTrainModule(_Mix(), d_p="critic")


def test_frozen_call_sends_gradients_to_the_inputs_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2)).eval()  # buffers: strict=False needed
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
    x = torch.rand(2, 3, 5, 5, requires_grad=True)
    y = _frozen(net, x)
    assert torch.equal(y, net(x))
    (y ** 2).sum().backward()
    assert all(p.grad is None for p in net.parameters())
    x2 = x.detach().clone().requires_grad_(True)
    (net(x2) ** 2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    two = _Mix()
    a, b = torch.rand(1, 3, 2, 2), torch.rand(1, 3, 2, 2)
    assert torch.equal(_frozen(two, a, b), two(a, b))  # several inputs, in order


def test_tensor_items_rows():
    data = {"a": torch.arange(6.0).reshape(3, 2).requires_grad_(True), "b": torch.arange(3)}
    items = TensorItems(data)
    assert len(items) == 3 and items.n == 3
    row = items[2]
    assert set(row) == {"a", "b"} and row["a"].tolist() == [4.0, 5.0] and int(row["b"]) == 2
    assert not items.data["a"].requires_grad and items.data["a"].device.type == "cpu"
    with pytest.raises(ValueError, match=r"^all tensors must have the same number of rows, got \[2, 3\]$"):
        TensorItems({"a": torch.zeros(3), "b": torch.zeros(2)})


# ------------------------------------------------------------------------------------ losses
def _reference_terms(m, batch, gamma, lam, gp_weight, perceptual=None, seed=5):
    out = m.generator(batch["deconv"], batch["blurred"])
    lc = content_loss(out, batch["sharp"], perceptual)
    terms = {"content": lc}
    cg = pen = None
    ld = torch.zeros(())
    if m.d_cgan is not None:
        l_dc = cgan_discriminator_loss(m.d_cgan(batch["sharp"], batch["blurred"]), m.d_cgan(out, batch["blurred"]))
        cg = cgan_generator_loss(m.d_cgan(out, batch["blurred"]))
        terms.update(cgan_g=cg, d_cgan=l_dc)
        ld = ld + l_dc
    if m.d_p is not None:
        torch.manual_seed(seed)  # the gradient penalty's interpolation weights
        l_dp, parts = artifact_critic_loss(m.d_p, batch["deconv"], batch["blurred"], gp_weight)
        pen = artifact_penalty(m.d_p(out), m.d_p(batch["sharp"]))
        terms.update(penalty=pen, d_p=l_dp, wasserstein=parts["wasserstein"], gp=parts["gp"])
        ld = ld + l_dp
    lg = rpgan_generator_loss(lc, cg, pen, gamma, lam)
    terms["generator"] = lg
    return lg + ld, {k: float(v.detach()) for k, v in terms.items()}


@pytest.mark.parametrize("d_cgan, d_p", [(True, True), (True, False), (False, True), (False, False)])
def test_loss_is_generator_plus_discriminator_terms(d_cgan, d_p):
    m = _module(d_cgan, d_p)
    batch = _batch()
    gamma, lam, gp_w = 0.3, 0.7, 2.5
    torch.manual_seed(5)
    total, extra = make_loss_fn(gamma=gamma, lam=lam, gp_weight=gp_w)(m, batch)
    want_total, want = _reference_terms(m, batch, gamma, lam, gp_w)
    assert set(extra) == set(want)
    for k, v in want.items():
        assert extra[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert total.item() == pytest.approx(float(want_total.detach()), rel=1e-5)
    # written out: L_G = L_c + γ L_cGAN + λ L_p
    lg = want["content"] + gamma * want.get("cgan_g", 0.0) + lam * want.get("penalty", 0.0)
    assert extra["generator"] == pytest.approx(lg, rel=1e-5)
    assert total.item() == pytest.approx(lg + want.get("d_cgan", 0.0) + want.get("d_p", 0.0), rel=1e-5)


def test_loss_defaults_are_the_modules_weights_and_the_pyramid_content():
    p = inspect.signature(make_loss_fn).parameters
    assert p["perceptual"].default is None
    assert (p["gamma"].default, p["lam"].default, p["gp_weight"].default) == (DEFAULT_GAMMA, DEFAULT_LAMBDA_P,
                                                                             DEFAULT_GP_WEIGHT)
    m, batch = _module(), _batch()
    torch.manual_seed(5)
    total, extra = make_loss_fn()(m, batch)
    want_total, want = _reference_terms(m, batch, DEFAULT_GAMMA, DEFAULT_LAMBDA_P, DEFAULT_GP_WEIGHT)
    assert total.item() == pytest.approx(want_total.item(), rel=1e-5) and extra["gp"] == pytest.approx(want["gp"])


def test_loss_uses_the_given_perceptual_content_loss():
    m, batch = _module(False, False), _batch()

    def perceptual(a, b):
        return 3.0 * (a - b).abs().mean()

    total, extra = make_loss_fn(perceptual)(m, batch)
    out = m.generator(batch["deconv"], batch["blurred"])
    assert extra["content"] == pytest.approx(perceptual(out, batch["sharp"]).item(), rel=1e-6)
    assert total.item() == pytest.approx(extra["content"], rel=1e-6)


def _generator_grads(m, loss_fn, batch):
    m.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    total, _ = loss_fn(m, batch)
    total.backward()
    return {n: p.grad.clone() for n, p in m.generator.named_parameters() if p.grad is not None}


def test_lambda_zero_is_a_step_without_the_artifact_critic_and_gamma_zero_without_the_cgan():
    batch = _batch(seed=1)
    full = _module(True, True)
    torch.nn.init.normal_(full.generator.head.skip.weight, std=0.1)
    no_dp = RPGANTrainModule(full.generator, full.d_cgan, None)
    no_cg = RPGANTrainModule(full.generator, None, full.d_p)
    g_lam0 = _generator_grads(full, make_loss_fn(gamma=0.2, lam=0.0), batch)
    g_nodp = _generator_grads(no_dp, make_loss_fn(gamma=0.2, lam=0.9), batch)
    g_gam0 = _generator_grads(full, make_loss_fn(gamma=0.0, lam=0.4), batch)
    g_nocg = _generator_grads(no_cg, make_loss_fn(gamma=0.8, lam=0.4), batch)
    g_both = _generator_grads(full, make_loss_fn(gamma=0.2, lam=0.4), batch)
    assert g_lam0.keys() == g_nodp.keys() == g_gam0.keys() == g_nocg.keys()
    for k in g_lam0:
        torch.testing.assert_close(g_lam0[k], g_nodp[k], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(g_gam0[k], g_nocg[k], rtol=1e-5, atol=1e-8)
    assert any(not torch.allclose(g_both[k], g_lam0[k], rtol=1e-3, atol=1e-7) for k in g_both)
    assert any(not torch.allclose(g_both[k], g_gam0[k], rtol=1e-3, atol=1e-7) for k in g_both)


def test_discriminators_get_only_their_own_losses_gradients():
    batch = _batch(seed=2)
    m = _module()
    torch.manual_seed(5)
    total, _ = make_loss_fn(gamma=0.5, lam=0.5, gp_weight=0.0)(m, batch)
    total.backward()
    with torch.no_grad():
        out = m.generator(batch["deconv"], batch["blurred"])
    l_dc = cgan_discriminator_loss(m.d_cgan(batch["sharp"], batch["blurred"]), m.d_cgan(out, batch["blurred"]))
    ref = torch.autograd.grad(l_dc, list(m.d_cgan.parameters()))
    for p, r in zip(m.d_cgan.parameters(), ref):
        torch.testing.assert_close(p.grad, r, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------------- validation
def _psnr_ref(x, ref):
    mse = ((x.clamp(0, 1) - ref) ** 2).mean(dim=(1, 2, 3))
    return float(torch.mean(10 * torch.log10(1 / mse)))


def test_psnr_hand_values():
    ref = torch.full((2, 1, 2, 2), 0.6)
    x = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.4)])
    # per image: 10·log10(1/0.01) = 20 dB and 10·log10(1/0.04); the clamp to [0, 1] before the error
    got = _psnr(x, ref)
    assert got.shape == (2,) and got[0].item() == pytest.approx(20.0, rel=1e-5)
    assert got[1].item() == pytest.approx(10 * math.log10(25.0), rel=1e-5)
    assert _psnr(torch.full((1, 1, 2, 2), 1.7), torch.ones(1, 1, 2, 2)).item() == pytest.approx(120.0)
    assert _psnr(torch.full((1, 1, 2, 2), -0.5), torch.full((1, 1, 2, 2), 0.1)).item() == pytest.approx(20.0, rel=1e-5)


def test_val_fn_psnr_of_every_level_equals_hqs_runs_of_that_length():
    pool = _pool(2, 8, seed=3)
    m = RPGANTrainModule(_Mix(0.6, 0.35))
    levels, noise, iters, tol = 4, 0.05, 3, 0.05  # not the defaults (10, 1e-4): deconv1 differs with these
    got = make_val_fn(levels, noise, iters, tol)(m, pool)
    betas = rpgan_schedule(noise, levels)
    sharp, o, op = pool["sharp"], pool["blurred"], MotionBlur(pool["flow"])
    want = {"psnr_blurred": _psnr_ref(o, sharp)}
    res1 = hqs(o, op, RPGANPrior(_Mix(0.6, 0.35), levels=levels), betas=betas[:1], cg_iters=iters, cg_tol=tol,
               progress=False)
    want["psnr_deconv1"] = _psnr_ref(res1.aux, sharp)
    for k in range(1, levels + 1):
        res = hqs(o, op, RPGANPrior(_Mix(0.6, 0.35), levels=levels), betas=betas[:k], cg_iters=iters, cg_tol=tol,
                  progress=False)
        want[f"psnr_level{k}"] = _psnr_ref(res.x, sharp)
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-5), k


def test_val_fn_defaults():
    p = inspect.signature(make_val_fn).parameters
    assert (p["levels"].default, p["noise_level"].default, p["cg_iters"].default, p["cg_tol"].default) == \
        (3, 0.01, 10, 1e-4)
    pool = _pool(1, 8, seed=4)
    got = make_val_fn()(RPGANTrainModule(_Mix()), pool)
    assert set(got) == {"psnr_blurred", "psnr_deconv1", "psnr_level1", "psnr_level2", "psnr_level3"}
    betas = rpgan_schedule(0.01, 3)
    for k in (1, 2, 3):
        res = hqs(pool["blurred"], MotionBlur(pool["flow"]), RPGANPrior(_Mix(), levels=3), betas=betas[:k],
                  cg_iters=10, cg_tol=1e-4, progress=False)
        assert got[f"psnr_level{k}"] == pytest.approx(_psnr_ref(res.x, pool["sharp"]), rel=1e-5)
        if k == 1:
            assert got["psnr_deconv1"] == pytest.approx(_psnr_ref(res.aux, pool["sharp"]), rel=1e-5)
    assert len({round(got[f"psnr_level{k}"], 4) for k in (1, 2, 3)}) == 3  # each level its own value


def test_floats():
    assert _floats("0.5, 0.3,0.2", "--p") == [0.5, 0.3, 0.2]
    assert _floats("1,,2,", "--p") == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"^--proportions must be comma-separated numbers, got 'a,b'$"):
        _floats("a,b", "--proportions")


# ------------------------------------------------------------------------------------ producer
class _SpyProducer(DeconvolutionProducer):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.frozen_seen = []

    def deconvolve(self, frozen, idx, level):
        self.frozen_seen.append(frozen)
        return super().deconvolve(frozen, idx, level)


def test_producer_defaults_and_schedule():
    p = inspect.signature(DeconvolutionProducer).parameters
    assert (p["levels"].default, p["noise_level"].default, p["cg_iters"].default, p["cg_tol"].default,
            p["chunk"].default, p["seed"].default) == (3, 0.01, 10, 1e-4, 16, 0)
    prod = DeconvolutionProducer(_Mix(), _pool(4), levels=4, noise_level=0.05, cg_iters=2, cg_tol=0.2, chunk=3,
                                 seed=9)
    assert prod.betas == rpgan_schedule(0.05, 4) and prod.noise_level == 0.05 and prod.levels == 4
    assert (prod.cg_iters, prod.cg_tol, prod.chunk, prod.seed, prod.n) == (2, 0.2, 3, 9, 4)
    assert prod.state_dict() == {"round": -1}


def test_producer_rows_are_the_seeded_draws_of_each_level():
    pool = _pool(5)
    gen = _Mix()
    prod = _SpyProducer(gen, pool, levels=3, noise_level=0.02, cg_iters=2, chunk=2, seed=2)
    out = prod([2, 1, 0], round=4)
    assert set(out) == {"deconv", "blurred", "sharp", "level"}
    assert out["level"].dtype == torch.long and out["level"].tolist() == [1, 1, 2]
    frozen = prod.frozen_seen[0]
    assert frozen is not gen and not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert gen.training and all(p.requires_grad for p in gen.parameters())
    rows = []
    for k, n in ((1, 2), (2, 1)):
        idx = torch.randperm(5, generator=torch.Generator().manual_seed(2 * 1_000_003 + 4 * 101 + k))[:n]
        rows.append((k, idx))
    idx = torch.cat([r[1] for r in rows])
    assert torch.equal(out["blurred"], pool["blurred"][idx]) and torch.equal(out["sharp"], pool["sharp"][idx])
    ref = torch.cat([DeconvolutionProducer.deconvolve(prod, _Mix(), i, k) for k, i in rows])
    torch.testing.assert_close(out["deconv"], ref, rtol=1e-5, atol=1e-6)
    # more rows than pool images: drawn with replacement
    big = prod([7], round=1)
    idx = torch.randint(5, (7,), generator=torch.Generator().manual_seed(2 * 1_000_003 + 101 + 1))
    assert torch.equal(big["blurred"], pool["blurred"][idx]) and big["level"].tolist() == [1] * 7
    exact = prod([5], round=0)  # exactly the pool: a permutation
    assert sorted(exact["sharp"][:, 0, 0, 0].tolist()) == sorted(pool["sharp"][:, 0, 0, 0].tolist())
    with pytest.raises(ValueError, match=r"^counts for 4 levels, the producer has 3$"):
        prod([1, 1, 1, 1], round=0)
    assert prod([0, 0, 3], round=0)["level"].tolist() == [3, 3, 3]


def test_producer_state_is_the_frozen_copy_and_restores_once_for_its_round():
    pool = _pool(3)
    gen = _Mix(0.7, 0.3)
    prod = DeconvolutionProducer(gen, pool, levels=2, noise_level=0.02, cg_iters=2, seed=1)
    prod([0, 2], round=3)
    state = prod.state_dict()
    assert state["round"] == 3 and state["frozen"]["a"].item() == pytest.approx(0.7)
    state["round"] = 99
    assert prod.state_dict()["round"] == 3  # a copy
    with torch.no_grad():
        gen.a.fill_(0.1)
    assert prod.state_dict()["frozen"]["a"].item() == pytest.approx(0.7)  # not the live generator's tensors
    saved = {"round": 5, "frozen": {"a": torch.tensor(0.7), "b": torch.tensor(0.3)}}
    prod.load_state_dict(saved)
    restored = prod([0, 2], round=5)  # uses the restored weights, not the live 0.1
    live = DeconvolutionProducer(_Mix(0.1, 0.3), pool, levels=2, noise_level=0.02, cg_iters=2, seed=1)([0, 2], 5)
    old = DeconvolutionProducer(_Mix(0.7, 0.3), pool, levels=2, noise_level=0.02, cg_iters=2, seed=1)([0, 2], 5)
    torch.testing.assert_close(restored["deconv"], old["deconv"])
    assert not torch.allclose(restored["deconv"], live["deconv"])
    assert prod.state_dict()["frozen"]["a"].item() == pytest.approx(0.7)
    again = prod([0, 2], round=5)  # used once: now the live generator
    torch.testing.assert_close(again["deconv"], live["deconv"])
    prod.load_state_dict(saved)
    other = prod([0, 2], round=6)  # another round: the live generator, and the state is dropped
    torch.testing.assert_close(other["deconv"], DeconvolutionProducer(_Mix(0.1, 0.3), pool, levels=2,
                                                                      noise_level=0.02, cg_iters=2,
                                                                      seed=1)([0, 2], 6)["deconv"])
    torch.testing.assert_close(prod([0, 2], round=5)["deconv"], live["deconv"])
    prod.load_state_dict({"round": 5})  # no weights: nothing to restore
    torch.testing.assert_close(prod([0, 2], round=5)["deconv"], live["deconv"])
    for bad in ([5], {"frozen": {}}):
        with pytest.raises(ValueError, match=r"^state must be a dict from DeconvolutionProducer\.state_dict\(\)$"):
            prod.load_state_dict(bad)


# ----------------------------------------------------------------------------- command line
def test_cli_defaults_are_the_papers_settings():
    a = parse_args([])
    # Wu et al.: batch 16, lr 1e-4 → 1e-6 after 110 of 190 epochs, a pool of 1000 synthetic images,
    # a buffer of 1000 with 50/30/20 % of levels 1/2/3, 3 epochs per filling, flows from SEN.
    assert (a.batch, a.lr, a.lr_end, a.decay_from) == (16, 1e-4, 1e-6, 110 / 190)
    assert (a.pool, a.buffer, a.proportions, a.refresh_every) == (1000, 1000, "0.5,0.3,0.2", 3)
    assert a.flows == "sen" and a.sen is None and (a.preset, a.noise) == ("23", 0.01)
    assert (a.steps, a.pretrain_steps, a.crop, a.cg_iters) == (20000, 4000, 128, 10)
    assert (a.width, a.n_res, a.d_width, a.no_residual) == (16, 3, 16, False)
    assert (a.gamma, a.lam, a.gp_weight) == (DEFAULT_GAMMA, DEFAULT_LAMBDA_P, DEFAULT_GP_WEIGHT)
    assert (a.no_dp, a.no_cgan, a.vgg, a.corpus, a.preload) == (False, False, None, None, False)
    assert (a.run_dir, a.val_items, a.val_every) == ("runs/rpgan", 8, 1000)
    assert a.out == Path("runs/rpgan/rpgan.safetensors")  # not the shipped file
    assert not hasattr(a, "amp") and a.float32 is False and a.no_progress is False
    a = parse_args(["--no-residual", "--no-dp", "--no-cgan", "--preload", "--flows", "true", "--lr-end", "2e-6"])
    assert (a.no_residual, a.no_dp, a.no_cgan, a.preload, a.flows, a.lr_end) == (True, True, True, True, "true", 2e-6)


_HELP = {
    "--corpus": "folder of sharp photos (default: scikit-image photos only)",
    "--preload": "decode the corpus into memory once",
    "--steps": "steps of the recurrent (buffer) phase",
    "--pretrain-steps": "level-1 pre-training steps (paper: 40 epochs)",
    "--batch": "batch size (paper: 16)",
    "--crop": "crop size of the pool images",
    "--pool": "blurred images in the pool (paper: 1000)",
    "--buffer": "replay buffer size (paper: 1000)",
    "--proportions": "share of each level in the buffer (paper: 0.5,0.3,0.2)",
    "--refresh-every": "epochs on one buffer filling (paper: 3)",
    "--preset": "flow preset of the pool ('23' or '46')",
    "--noise": "noise std of the blurred images and of the schedule",
    "--flows": ("flows of the deconvolutions (paper: sen, one SEN pass; sen-ensemble: SEN's 8-symmetry ensemble, "
                "as pd.deblur uses by default)"),
    "--sen": "SEN checkpoint for --flows sen (default: the shipped SEN)",
    "--cg-iters": "CG iterations per x-step",
    "--width": "generator width (paper: 64)",
    "--n-res": "generator Res1 blocks (paper: 6)",
    "--no-residual": "no I* + r output (the paper's literal head)",
    "--d-width": "discriminators' first width (paper: 64)",
    "--gamma": "weight of the cGAN term",
    "--lam": "weight of the artifact penalty",
    "--no-dp": "ablation: no artifact critic D_p",
    "--no-cgan": "ablation: no cGAN discriminator",
    "--vgg": "VGG16 weights file: the paper's relu2_2 perceptual content loss",
    "--decay-from": "fraction of steps at constant lr",
    "--run-dir": "logs, checkpoints, discriminators",
    "--time-budget": "train for about this long, the pool included: the level-1 and recurrent phases share it as "
                     "--pretrain-steps : --steps do, and each phase's steps are set from a probe of the step rate and "
                     "the time of its first buffer filling (refills cost as much); training stops at this time "
                     "regardless",
    "--out": "exported generator (safetensors); default RUN_DIR/rpgan.safetensors",
}


def test_cli_help_states_each_options_meaning(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per option
    with pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: pnpdeblur train rpgan ")
    assert "\nTrain RP-GAN, the recurrent HQS prior.\n" in text
    found = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        mt = re.match(r"^\s+(--[\w-]+)(?: [A-Z_]+)?(?: \{[^}]*\})?(?:\s{2,}(\S.*))?$", line)
        if mt:  # a long option's help starts on the next line
            found[mt.group(1)] = (mt.group(2) or lines[i + 1]).strip()
    for opt, want in _HELP.items():
        assert found.get(opt) == want, opt
    assert "--gp-weight" in text and "--lr-end" in text


@pytest.mark.parametrize("name", ["steps", "batch", "pool", "buffer", "refresh-every", "cg-iters", "width",
                                  "n-res", "d-width"])  # --crop has its own minimum (test_leftovers_39)
def test_cli_counts_must_be_positive(name, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args([f"--{name}", "0"])
    assert e.value.code == 2
    assert f"error: --{name} must be >= 1, got 0" in capsys.readouterr().err
    ok = parse_args([f"--{name}", "1"] + (["--batch", "1"] if name == "buffer" else []))
    assert getattr(ok, name.replace("-", "_")) == 1


@pytest.mark.parametrize("argv, msg", [
    (["--pretrain-steps", "-1"], "--pretrain-steps and --val-items must be >= 0"),
    (["--val-items", "-1"], "--val-items must be >= 0, got -1"),  # the engine options' shared check
    (["--buffer", "3", "--batch", "4"], "--buffer (3) must hold at least one batch (4)"),
    (["--noise", "-0.01"], "--noise must be a finite number >= 0, got -0.01"),
    (["--noise", "nan"], "--noise must be a finite number >= 0, got nan"),
    (["--noise", "inf"], "--noise must be a finite number >= 0, got inf"),
    (["--flows", "estimated"], "argument --flows: invalid choice: 'estimated'"),
    (["--crop", "96", "--flow-context", "95"], "--flow-context (95) must be at least --crop (96)"),
])
def test_cli_bad_values(argv, msg, capsys):
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "error: " + msg in capsys.readouterr().err


def test_cli_boundaries_are_accepted():
    a = parse_args(["--pretrain-steps", "0", "--val-items", "0", "--buffer", "4", "--batch", "4", "--noise", "0"])
    assert (a.pretrain_steps, a.val_items, a.buffer, a.batch, a.noise) == (0, 0, 4, 4, 0.0)
    assert parse_args(["--crop", "96", "--flow-context", "96"]).flow_context == 96


@pytest.mark.parametrize("argv, context", [
    ([], 192), (["--crop", "96"], 192), (["--crop", "191"], 192), (["--crop", "193"], 193),
    (["--crop", "256", "--flows", "sen-ensemble"], 256), (["--crop", "96", "--flows", "sen-ensemble"], 192),
    (["--crop", "96", "--flows", "true"], 96), (["--crop", "96", "--flow-context", "100"], 100),
])
def test_flow_context_default_gives_sen_192_pixels_and_true_flows_none(argv, context):
    assert R.SEN_CONTEXT == 192
    assert parse_args(argv).flow_context == context


# ----------------------------------------------------------------------------------------- main
def _spy_main(monkeypatch):
    """Record what ``main`` hands to build_pool, the producer, the buffers, the losses and the trainers."""
    import pnpdeblur.train as T
    import pnpdeblur.train.sen as S

    calls = {k: [] for k in ("pool", "producer", "buffer", "loss", "val", "trainer", "sources")}
    real_pool, real_loss, real_val, real_sources = R.build_pool, R.make_loss_fn, R.make_val_fn, S.training_sources

    def pool(*a, **k):
        calls["pool"].append((a, k))
        return real_pool(*a, **k)

    def loss(*a, **k):
        calls["loss"].append((a, k))
        return real_loss(*a, **k)

    def val(*a, **k):
        calls["val"].append((a, k))
        return real_val(*a, **k)

    def sources(*a, **k):
        calls["sources"].append((a, k))
        return real_sources(*a, **k)

    class Producer(R.DeconvolutionProducer):
        def __init__(self, *a, **k):
            calls["producer"].append((a, k))
            super().__init__(*a, **k)

    class Buffer(R.ReplayBuffer):
        def __init__(self, *a, **k):
            calls["buffer"].append((a, k))
            super().__init__(*a, **k)

    class Trainer(T.Trainer):
        def __init__(self, model, cfg, data, loss_fn, **k):
            calls["trainer"].append({"model": model, "cfg": cfg, "data": data, "loss_fn": loss_fn, **k})
            super().__init__(model, cfg, data, loss_fn, **k)
            calls["trainer"][-1]["self"] = self

    monkeypatch.setattr(R, "build_pool", pool)
    monkeypatch.setattr(R, "make_loss_fn", loss)
    monkeypatch.setattr(R, "make_val_fn", val)
    monkeypatch.setattr(R, "DeconvolutionProducer", Producer)
    monkeypatch.setattr(R, "ReplayBuffer", Buffer)
    monkeypatch.setattr(T, "Trainer", Trainer)
    monkeypatch.setattr(S, "training_sources", sources)
    return calls


def test_main_hands_every_option_to_its_part_and_records_it(tmp_path, monkeypatch, capsys):
    from pnpdeblur.nets.sen import SEN
    from pnpdeblur.train.sen import HELD_OUT_SAMPLES

    calls = _spy_main(monkeypatch)
    torch.manual_seed(0)
    sen_path = SEN(width=2, stacks=1, levels=1).save(tmp_path / "sen.safetensors")
    out, run = tmp_path / "g.safetensors", tmp_path / "run"
    argv = ["--steps", "2", "--pretrain-steps", "1", "--batch", "1", "--crop", "16", "--pool", "2", "--buffer", "2",
            "--proportions", "0.5,0.5", "--refresh-every", "2", "--preset", "46", "--noise", "0.02",
            "--sen", str(sen_path), "--cg-iters", "2", "--width", "2", "--n-res", "1", "--d-width", "2",
            "--flow-context", "24", "--gamma", "0.2", "--lam", "0.3", "--gp-weight", "4", "--lr", "2e-4", "--lr-end", "1e-5",
            "--decay-from", "0.5", "--seed", "3", "--val-items", "1", "--val-every", "0", "--log-every", "1",
            "--run-dir", str(run), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert R.main(argv) == out
    # data: the pool and the held-out validation pool, both from the given SEN
    assert calls["sources"] == [((None, False), {"min_size": 24})]  # the flow context
    (pa, pk), (va, vk) = calls["pool"]
    assert pk == {"context": 24} and vk == {"context": 24}
    assert pa[1:6] == (2, 16, "46", 0.02, 3) and pa[6] == "sen" and pa[8] == torch.device("cpu")
    assert list(pa[0]) == _sources_now()
    assert isinstance(pa[7], SEN) and pa[7].config == SEN(width=2, stacks=1, levels=1).config
    assert torch.equal(next(pa[7].parameters()), next(SEN.from_checkpoint(sen_path).parameters()))
    assert va[0] == HELD_OUT_SAMPLES and va[1:6] == (1, 16, "46", 0.02, 10_000) and va[6] == "sen"
    assert va[7] is pa[7] and va[8] == torch.device("cpu")
    # losses, validation, producer, buffers
    assert calls["loss"] == [((None, 0.2, 0.3, 4.0), {})]
    assert calls["val"] == [((2, 0.02, 2), {})]
    (qa, qk), = calls["producer"]
    t1, t2 = calls["trainer"]
    model = t2["model"]
    assert qa[0] is model.generator and qa[2:] == (2, 0.02, 2) and qk == {"seed": 3}
    assert set(qa[1]) == {"blurred", "sharp", "flow", "true_flow"} and qa[1]["blurred"].shape == (2, 3, 16, 16)
    (b1a, b1k), (b2a, b2k) = calls["buffer"]
    assert b1a[1:] == (2, (1.0,), 2) and b2a[1:] == (2, [0.5, 0.5], 2)
    assert b1k == b2k == {"fill_now": False} and b1a[0] is b2a[0] and isinstance(b1a[0], R.DeconvolutionProducer)
    assert t1["data"].producer is t2["data"].producer
    # networks
    assert t1["model"] is model and isinstance(model.d_cgan, ConditionalDiscriminator)
    assert isinstance(model.d_p, ArtifactCritic) and model.d_cgan.config["width"] == 2 and model.d_p.config["width"] == 2
    g = model.generator.config
    assert (g["channels"], g["width"], g["n_res"], g["residual"]) == (3, 2, 1, True)
    # the two phases' configurations
    c1, c2 = t1["cfg"], t2["cfg"]
    for c in (c1, c2):
        assert (c.batch_size, c.lr, tuple(c.betas), c.seed, c.device, c.log_every, c.val_every, c.progress) == \
            (1, 2e-4, (0.5, 0.999), 3, "cpu", 1, 0, False)
    assert c1.steps == 1 and c1.out_dir == str(run / "level1")
    assert c1.decay_start == type(c1)().decay_start and c1.lr_end == type(c1)().lr_end
    assert (c2.steps, c2.decay_start, c2.lr_end, c2.out_dir) == (2, 1, 1e-5, str(run / "recurrent"))
    assert t1["val_data"] is t2["val_data"] and len(t1["val_data"]) == 1
    assert set(t1["val_data"][0]) == {"blurred", "sharp", "flow"}
    assert t1["loss_fn"] is t2["loss_fn"] and t1["val_fn"] is t2["val_fn"] and t1["val_fn"] is not None
    # what it wrote
    h = read_header(out)
    assert h["architecture"] == "RPGANGenerator" and h["config"] == model.generator.config
    assert h["training"] == c2.to_dict()
    assert h["steps"] == {"level1": 1, "recurrent": 2}
    assert h["schedule"] == {"levels": 2, "noise_level": 0.02, "betas": rpgan_schedule(0.02, 2), "cg_iters": 2,
                             "rule": "pnpdeblur.priors.rpgan.rpgan_schedule"}
    assert set(h["validation"]) == {"psnr_blurred", "psnr_deconv1", "psnr_level1", "psnr_level2"}
    d = h["data"]
    assert d["script"] == "scripts/train_rpgan.py (pnpdeblur.train.rpgan)" and d["argv"] == argv
    assert (d["corpus"], d["corpus_files"], d["pool"], d["crop"], d["preset"], d["noise"], d["flows"]) == \
        (None, [], 2, 16, "46", 0.02, "sen")
    assert d["flow_context"] == 24
    assert (d["sen"], d["buffer"], d["proportions"], d["refresh_every"], d["held_out"]) == \
        (str(sen_path), 2, [0.5, 0.5], 2, list(HELD_OUT_SAMPLES))
    assert d["losses"] == {"content": "LaplacianPyramidLoss(3)", "gamma": 0.2, "lam": 0.3, "gp_weight": 4.0,
                           "d_cgan": True, "d_p": True}
    assert d["torch"] == torch.__version__ and d["device"] == "cpu" and d["seconds"] >= 0
    assert h["stored_dtype"] == "float16 weights, float32 BatchNorm statistics"
    from safetensors.torch import load_file

    weights = load_file(str(out))
    assert any(v.dtype == torch.float16 for v in weights.values())
    for name, cls in (("d_cgan", "ConditionalDiscriminator"), ("d_p", "ArtifactCritic")):
        hd = read_header(run / f"{name}.safetensors")
        assert hd["architecture"] == cls and hd["config"] == getattr(model, name).config
        assert hd["generator"] == str(out)
    hist = json.loads((run / "history.json").read_text())
    assert [(r["phase_name"], r["step"]) for r in hist if r["phase"] == "train"] == \
        [("level1", 1), ("recurrent", 1), ("recurrent", 2)]
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == {"weights": str(out), "validation": h["validation"]}


def _sources_now():
    from pnpdeblur.train.sen import TRAIN_SAMPLES

    from pnpdeblur.data import sample_images

    return [n for n in TRAIN_SAMPLES if n in sample_images()]


def test_main_ablations_corpus_and_float32(tmp_path, monkeypatch):
    from PIL import Image

    calls = _spy_main(monkeypatch)
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("b.png", "sub/a.png"):
        Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(corpus / name)
    out, run = tmp_path / "g.safetensors", tmp_path / "run"
    argv = ["--corpus", str(corpus), "--steps", "1", "--pretrain-steps", "0", "--batch", "1", "--crop", "16",
            "--pool", "2", "--buffer", "1", "--val-items", "0", "--flows", "true", "--cg-iters", "1", "--width", "2",
            "--n-res", "1", "--no-residual", "--no-dp", "--no-cgan", "--float32", "--run-dir", str(run),
            "--out", str(out), "--no-progress", "--device", "cpu"]
    assert R.main(argv) == out
    assert calls["sources"] == [((str(corpus), False), {"min_size": 16})]
    (pa, _), = calls["pool"]  # no validation pool
    assert pa[6] == "true" and pa[7] is None and len(pa[0]) == 2 + len(_sources_now())
    assert calls["val"] == [] and len(calls["buffer"]) == 1
    (t2,) = calls["trainer"]  # no level-1 phase
    assert t2["val_data"] is None and t2["val_fn"] is None
    model = t2["model"]
    assert model.d_cgan is None and model.d_p is None and model.generator.config["residual"] is False
    assert calls["buffer"][0][0][2] == [0.5, 0.3, 0.2]
    h = read_header(out)
    assert "stored_dtype" not in h and h["validation"] == {} and h["schedule"]["levels"] == 3
    assert h["data"]["corpus_files"] == ["a.png", "b.png"] and h["data"]["corpus"] == str(corpus)
    assert h["data"]["sen"] == "shipped" and h["data"]["flows"] == "true"
    assert h["data"]["losses"]["d_cgan"] is False and h["data"]["losses"]["d_p"] is False
    assert h["steps"] == {"level1": 0, "recurrent": 1}
    from safetensors.torch import load_file

    assert all(v.dtype == torch.float32 for v in load_file(str(out)).values() if v.is_floating_point())
    assert not (run / "d_p.safetensors").exists() and not (run / "d_cgan.safetensors").exists()
    hist = json.loads((run / "history.json").read_text())
    assert {r["phase_name"] for r in hist} == {"recurrent"}


def test_main_writes_nothing_on_other_ranks(tmp_path, monkeypatch):
    import pnpdeblur.train.distributed as D

    from pnpdeblur.nets.sen import SEN

    monkeypatch.setattr(D, "is_main_process", lambda: False)
    calls = _spy_main(monkeypatch)
    sen_path = SEN(width=2, stacks=1, levels=1).save(tmp_path / "sen.safetensors")  # unused with --flows true
    out, run = tmp_path / "g.safetensors", tmp_path / "run"
    argv = ["--sen", str(sen_path), "--steps", "1", "--pretrain-steps", "0", "--batch", "1", "--crop", "16", "--pool", "1", "--buffer", "1",
            "--val-items", "0", "--flows", "true", "--cg-iters", "1", "--width", "2", "--n-res", "1", "--no-dp",
            "--no-cgan", "--run-dir", str(run), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert R.main(argv) == out
    assert not out.exists() and not (run / "history.json").exists()
    (pa, kw), = calls["pool"]
    assert pa[6] == "true" and pa[7] is None  # --sen only matters with --flows sen
    assert kw["context"] == 16  # true flows need no context for SEN
    # with --flows sen-ensemble the given SEN is loaded too, and the pool asked for the ensemble's flows
    calls["pool"].clear()
    i = argv.index("true")
    assert R.main(argv[:i] + ["sen-ensemble"] + argv[i + 1:]) == out
    (pa, kw), = calls["pool"]
    assert pa[6] == "sen-ensemble" and isinstance(pa[7], SEN)
    assert kw["context"] == R.SEN_CONTEXT  # SEN estimates on 192² around each 16² crop


# ------------------------------------------------------- checks added after the mutation run
def test_producer_defaults_by_behaviour():
    # a mutant's trampoline keeps the original signature: the defaults are checked on the object
    pool = _pool(4)
    prod = DeconvolutionProducer(_Mix(), pool)
    assert (prod.levels, prod.noise_level, prod.cg_iters, prod.cg_tol, prod.chunk, prod.seed) == \
        (3, 0.01, 10, 1e-4, 16, 0)
    assert prod.betas == rpgan_schedule(0.01, 3)
    out = prod([2], round=0)
    idx = torch.randperm(4, generator=torch.Generator().manual_seed(0 * 1_000_003 + 0 * 101 + 1))[:2]
    assert torch.equal(out["sharp"], pool["sharp"][idx])


def test_main_names_a_bad_proportions_option():
    with pytest.raises(ValueError, match=r"^--proportions must be comma-separated numbers, got '0\.5,x'$"):
        R.main(["--proportions", "0.5,x"])


def test_cli_flows_accepts_exactly_sen_sen_ensemble_and_true(capsys):
    assert parse_args(["--flows", "sen"]).flows == "sen" and parse_args(["--flows", "true"]).flows == "true"
    assert parse_args(["--flows", "sen-ensemble"]).flows == "sen-ensemble"
    with pytest.raises(SystemExit):
        parse_args(["--flows", "SEN"])
    assert "invalid choice: 'SEN' (choose from sen, sen-ensemble, true)" in capsys.readouterr().err \
        .replace("'sen'", "sen").replace("'sen-ensemble'", "sen-ensemble").replace("'true'", "true")


def _hard_pool():
    """One 16² image blurred by a 3 px flow: CG needs more than 10 iterations at tol 1e-4 here."""
    sharp = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0], flow[:, 1] = 3.0, -1.5
    return {"blurred": MotionBlur(flow)(sharp), "sharp": sharp, "flow": flow}


def test_val_fn_default_cg_budget_is_ten_iterations():
    pool, m = _hard_pool(), RPGANTrainModule(_Mix())
    got = make_val_fn()(m, pool)
    assert got == make_val_fn(3, 0.01, 10, 1e-4)(m, pool)
    assert got["psnr_level3"] != make_val_fn(3, 0.01, 11, 1e-4)(m, pool)["psnr_level3"]  # the budget matters here


def test_val_fn_first_deconvolution_uses_the_cg_budget_and_stays_quiet(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    fake = Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    pool = _hard_pool()
    got = make_val_fn(2, 0.01, 3, 1e-8)(RPGANTrainModule(_Mix()), pool)
    res = hqs(pool["blurred"], MotionBlur(pool["flow"]), lambda z, s: z, betas=rpgan_schedule(0.01, 2)[:1],
              cg_iters=3, cg_tol=1e-8, progress=False)
    assert got["psnr_deconv1"] == pytest.approx(_psnr_ref(res.aux, pool["sharp"]), rel=1e-6)
    assert fake.getvalue() == ""  # no progress bars inside the training loop, even on a terminal


def test_main_vgg_file_gives_the_perceptual_content_loss(tmp_path, monkeypatch):
    from pnpdeblur.losses.perceptual import PerceptualLoss

    g = torch.Generator().manual_seed(0)
    state, cin = {}, 3
    for idx, v in ((0, 64), (2, 64), (5, 128), (7, 128)):  # VGG16's convolutions up to relu2_2
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{idx}.bias"] = torch.zeros(v)
        cin = v
    torch.save(state, tmp_path / "vgg.pth")
    calls = _spy_main(monkeypatch)
    out = tmp_path / "g.safetensors"
    argv = ["--vgg", str(tmp_path / "vgg.pth"), "--steps", "1", "--pretrain-steps", "0", "--batch", "1", "--crop",
            "16", "--pool", "1", "--buffer", "1", "--val-items", "0", "--flows", "true", "--cg-iters", "1",
            "--width", "2", "--n-res", "1", "--no-dp", "--no-cgan", "--run-dir", str(tmp_path / "run"), "--out",
            str(out), "--no-progress", "--device", "cpu"]
    R.main(argv)
    (la, _), = calls["loss"]
    assert isinstance(la[0], PerceptualLoss)
    assert read_header(out)["data"]["losses"]["content"] == "vgg16 " + str(tmp_path / "vgg.pth")


def test_adam_betas_option_reaches_both_phases(tmp_path, monkeypatch):
    """``--adam-betas 0.9 0.99`` (Wu et al.: SEN's solver) is what both training phases use."""
    from pnpdeblur.nets.sen import SEN

    calls = _spy_main(monkeypatch)
    torch.manual_seed(0)
    sen_path = SEN(width=2, stacks=1, levels=1).save(tmp_path / "sen.safetensors")
    argv = ["--steps", "2", "--pretrain-steps", "1", "--batch", "1", "--crop", "16", "--pool", "2", "--buffer", "2",
            "--sen", str(sen_path), "--cg-iters", "2", "--width", "2", "--n-res", "1", "--d-width", "2",
            "--val-items", "1", "--val-every", "0", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "g.safetensors"), "--no-progress", "--device", "cpu", "--adam-betas", "0.9", "0.99"]
    R.main(argv)
    t1, t2 = calls["trainer"]
    assert tuple(t1["cfg"].betas) == tuple(t2["cfg"].betas) == (0.9, 0.99)


def test_main_writes_the_history_and_prints_the_result(tmp_path, monkeypatch, capsys):
    """The run folder's history.json holds both phases' rows in order; the last line printed names the weights."""
    import sys

    from pnpdeblur.nets.sen import SEN

    calls = _spy_main(monkeypatch)
    torch.manual_seed(0)
    sen_path = SEN(width=2, stacks=1, levels=1).save(tmp_path / "sen.safetensors")
    run, out = tmp_path / "deep" / "run", tmp_path / "g.safetensors"
    argv = ["--steps", "2", "--pretrain-steps", "1", "--batch", "1", "--crop", "16", "--pool", "2", "--buffer", "2",
            "--sen", str(sen_path), "--cg-iters", "2", "--width", "2", "--n-res", "1", "--d-width", "2",
            "--val-items", "1", "--val-every", "1", "--log-every", "1", "--run-dir", str(run), "--out", str(out),
            "--no-progress", "--device", "cpu", "--float32"]
    t0 = time.time()
    monkeypatch.setattr(sys, "argv", ["pnpdeblur-train-rpgan", *argv])
    assert R.main() == out  # argv from the command line
    elapsed = time.time() - t0
    t1, t2 = calls["trainer"]
    rows = json.loads((run / "history.json").read_text())
    assert [r["phase_name"] for r in rows] == ["level1"] * len(t1["self"].history) + ["recurrent"] * len(t2["self"].history)
    assert len(rows) >= 2 and all(set(r) - {"phase_name"} for r in rows)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {"weights": str(out), "validation": json.loads(json.dumps(t2["self"].last_validation, default=str))}
    data = read_header(out)["data"]
    assert data["argv"] is None and data["device"] == "cpu" and data["torch"] == torch.__version__
    assert 0 <= data["seconds"] <= elapsed + 0.1 and data["seconds"] == round(data["seconds"], 1)


def test_main_records_the_seconds_to_a_tenth(tmp_path, monkeypatch):
    from _recording_trainer import fake_clock

    from pnpdeblur.nets.sen import SEN

    _spy_main(monkeypatch)
    torch.manual_seed(0)
    sen_path = SEN(width=2, stacks=1, levels=1).save(tmp_path / "sen.safetensors")
    argv = ["--steps", "2", "--pretrain-steps", "1", "--batch", "1", "--crop", "16", "--pool", "2", "--buffer", "2",
            "--sen", str(sen_path), "--cg-iters", "2", "--width", "2", "--n-res", "1", "--d-width", "2",
            "--val-items", "1", "--val-every", "0", "--run-dir", str(tmp_path / "run"),
            "--out", str(tmp_path / "g.safetensors"), "--no-progress", "--device", "cpu", "--float32"]
    fake_clock(monkeypatch, R)  # t0 = 100, every later reading 101.2345
    out = R.main(argv)
    assert read_header(out)["data"]["seconds"] == 1.2
