"""Step-decay schedule and GAN training in one optimiser step (AdversarialPair)."""
import pytest
import torch
from torch import nn

from pnpdeblur.losses.adversarial import gan_discriminator_loss, gan_generator_loss
from pnpdeblur.train import AdversarialPair, TrainConfig, Trainer, linear_decay_lambda, step_decay_lambda


def test_step_decay_matches_multisteplr():
    base = linear_decay_lambda(10, 1.0)
    f = step_decay_lambda(base, (3, 7), 0.5)
    assert [f(s) for s in range(10)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    # the reference: torch's MultiStepLR on the same optimiser steps
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 7], gamma=0.5)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs == [f(s) for s in range(10)]
    # composes with a linear decay
    g = step_decay_lambda(linear_decay_lambda(5, 1.0, decay_start=1, lr_end=0.5), (2,), 0.1)
    assert g(4) == pytest.approx(0.05) and g(1) == pytest.approx(1.0)


def test_config_milestones_validated_and_round_trip():
    cfg = TrainConfig(steps=10, lr_milestones=(2, 5), lr_gamma=0.5)
    back = TrainConfig.from_dict(cfg.to_dict())
    assert back == cfg and back.lr_milestones == (2, 5)
    for bad in [(5, 2), (0,), (11,), (2.5,), (2, 2)]:
        with pytest.raises(ValueError, match="lr_milestones"):
            TrainConfig(steps=10, lr_milestones=bad)
    with pytest.raises(ValueError, match="lr_gamma"):
        TrainConfig(steps=10, lr_gamma=0.0)


def test_trainer_applies_milestones(tmp_path):
    data = [{"x": torch.ones(1)} for _ in range(8)]
    model = nn.Linear(1, 1)
    cfg = TrainConfig(steps=4, batch_size=2, lr=1.0, lr_milestones=(2,), lr_gamma=0.1, log_every=1,
                      progress=False, device="cpu", out_dir=str(tmp_path))
    t = Trainer(model, cfg, data, lambda m, b: m(b["x"]).pow(2).mean())
    t.fit()
    lrs = [r["lr"] for r in t.history if r.get("phase") == "train"]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_pair_losses_reach_disjoint_parameters():
    torch.manual_seed(0)
    pair = AdversarialPair(nn.Linear(2, 2), nn.Linear(2, 1))
    x, real = torch.randn(4, 2), torch.randn(4, 2)
    fake = pair(x)
    assert torch.equal(fake, pair.generator(x))
    # generator loss through the frozen judge: no gradient on the discriminator
    gan_generator_loss(pair.judge_frozen(fake)).backward()
    assert all(p.grad is None for p in pair.discriminator.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pair.generator.parameters())
    pair.zero_grad(set_to_none=True)
    # discriminator loss on detached fakes: no gradient on the generator
    gan_discriminator_loss(pair.judge(real), pair.judge(fake.detach())).backward()
    assert all(p.grad is None for p in pair.generator.parameters())
    assert all(p.grad is not None for p in pair.discriminator.parameters())
    # the frozen judge gives the same scores as the live one
    assert torch.allclose(pair.judge_frozen(x), pair.judge(x))


def test_pair_trains_through_the_engine_and_exports_the_generator(tmp_path):
    torch.manual_seed(0)
    target = torch.tensor([2.0, -1.0])
    data = [{"z": torch.randn(2), "real": target + 0.05 * torch.randn(2)} for _ in range(64)]
    pair = AdversarialPair(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)))

    def loss_fn(model, batch):
        fake = model(batch["z"])
        l_g = gan_generator_loss(pair.judge_frozen(fake))
        l_d = gan_discriminator_loss(pair.judge(batch["real"]), pair.judge(fake.detach()))
        return l_g + l_d

    g0 = [p.detach().clone() for p in pair.generator.parameters()]
    d0 = [p.detach().clone() for p in pair.discriminator.parameters()]
    cfg = TrainConfig(steps=3, batch_size=8, lr=1e-2, progress=False, device="cpu", out_dir=str(tmp_path))
    t = Trainer(pair, cfg, data, loss_fn)
    t.fit()
    assert any(not torch.equal(a, b) for a, b in zip(g0, pair.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, pair.discriminator.parameters()))
    from pnpdeblur.checkpoints import load_checkpoint

    path = t.export(tmp_path / "g.safetensors", "Linear", {"in": 2}, module=pair.generator)
    state, header = load_checkpoint(path, "Linear")
    assert set(state) == {"weight", "bias"} and header["steps"] == 3


def test_pair_rejects_non_modules():
    with pytest.raises(TypeError, match="discriminator"):
        AdversarialPair(nn.Linear(1, 1), lambda x: x)


# --------------------------------------------------------------------- DDP (gloo)
def make_pair():
    torch.manual_seed(3)
    return AdversarialPair(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1)))


class PairData(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"z": torch.randn(2, generator=g), "real": torch.tensor([2.0, -1.0]) + 0.1 * torch.randn(2, generator=g)}


def pair_loss(model, batch):
    pair = model.module if hasattr(model, "module") else model
    fake = model(batch["z"])  # through the (DDP) wrapper
    return (gan_generator_loss(pair.judge_frozen(fake))
            + gan_discriminator_loss(pair.judge(batch["real"]), pair.judge(fake.detach())))


def pair_cfg(out):
    return TrainConfig(steps=2, batch_size=4, lr=0.05, progress=False, device="cpu", out_dir=str(out))


DDP_PAIR_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_train_adversarial import make_pair, PairData, pair_loss, pair_cfg
from pnpdeblur.train import Trainer, distributed
torch.set_num_threads(1)
pair = make_pair()
tr = Trainer(pair, pair_cfg({out!r} + "/run"), PairData(), pair_loss)
assert distributed.world_size() == 2
tr.fit()
if distributed.is_main_process():
    torch.save(pair.state_dict(), {out!r} + "/pair.pt")
"""


def test_pair_under_ddp_matches_one_process(tmp_path):
    from _ddp import REPO, run_ranks

    script = tmp_path / "ddp_pair.py"
    script.write_text(DDP_PAIR_SCRIPT.format(tests=str(REPO / "tests"), out=str(tmp_path)))
    run_ranks(script, tmp_path)
    ddp = torch.load(tmp_path / "pair.pt", weights_only=True)
    single = make_pair()
    Trainer(single, pair_cfg(tmp_path / "single"), PairData(), pair_loss).fit()
    start = make_pair().state_dict()
    for k, v in single.state_dict().items():
        torch.testing.assert_close(ddp[k], v, rtol=0, atol=1e-6)
        assert not torch.allclose(v, start[k])  # both halves moved: the comparison means something
