"""Exact resume of training on a replay buffer (RP-GAN): the buffer's state travels in last.pt."""
import copy

import pytest
import torch

from pnpdeblur.nets.rpgan import ArtifactCritic, ConditionalDiscriminator, RPGANGenerator
from pnpdeblur.train import TrainConfig, Trainer
from pnpdeblur.train.replay import ReplayBuffer
from pnpdeblur.train.rpgan import DeconvolutionProducer, RPGANTrainModule, make_loss_fn


class Crash(RuntimeError):
    pass


def crashing(loss_fn, at_call):
    calls = [0]

    def fn(model, batch):
        calls[0] += 1
        if calls[0] == at_call:
            raise Crash
        return loss_fn(model, batch)

    return fn


def _pool(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    sharp = torch.rand(n, 3, size, size, generator=g)
    flow = torch.zeros(n, 2, size, size)
    flow[:, 0], flow[:, 1] = 3.0, 1.0
    from pnpdeblur.operators import MotionBlur

    blurred = MotionBlur(flow)(sharp).detach() + 0.01 * torch.randn(sharp.shape, generator=g)
    return {"blurred": blurred, "sharp": sharp, "flow": flow}


def _module():
    torch.manual_seed(0)
    m = RPGANTrainModule(RPGANGenerator(width=4, n_res=1, final_width=4, residual=False),
                         ConditionalDiscriminator(width=4), ArtifactCritic(width=4))
    return m


def _trainer(model, cfg, loss_fn, pool):
    producer = DeconvolutionProducer(model.generator, pool, levels=2, noise_level=0.02, cg_iters=2, chunk=4)
    buf = ReplayBuffer(producer, capacity=4, proportions=(0.5, 0.5), refresh_every=1, fill_now=False)
    return Trainer(model, cfg, buf, loss_fn), buf


def _uninterrupted_and_crashed(tmp_path):
    """An uninterrupted 5-step run, and the same run crashed in step 5 with last.pt at step 3.

    Buffer 4, batch 2: 2 steps an epoch, a new buffer (made by the frozen G of that moment)
    every epoch. last.pt at step 3 lies inside round 1, whose buffer was made by G after
    step 2; a resumed run must train on that buffer, not on one remade by G after step 3.
    """
    pool = _pool()
    common = dict(steps=5, batch_size=2, lr=1e-2, betas=(0.5, 0.999), device="cpu", progress=False, log_every=0,
                  seed=3)
    full, _ = _trainer(_module(), TrainConfig(**common), make_loss_fn(), pool)
    full.fit()
    out = tmp_path / "run"
    cfg = TrainConfig(**common, ckpt_every=3, out_dir=str(out))
    with pytest.raises(Crash):
        _trainer(_module(), cfg, crashing(make_loss_fn(), 5), pool)[0].fit()
    return full, cfg, out / "last.pt", pool


def test_rpgan_resume_mid_round_equals_the_uninterrupted_run(tmp_path):
    full, cfg, last, pool = _uninterrupted_and_crashed(tmp_path)
    saved = torch.load(last, weights_only=True)
    assert saved["step"] == 3 and saved["data"]["round"] == 1
    assert saved["data"]["producer"]["round"] == 1 and "frozen" in saved["data"]["producer"]

    resumed, buf = _trainer(_module(), cfg, make_loss_fn(), pool)
    resumed.fit()
    assert resumed.step == 5 and buf.round == 2
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_without_the_producer_state_is_not_exact(tmp_path):
    # the control for the test above: remaking round 1's buffer from the resumed G (what
    # happened before the buffer's state was saved) changes the weights
    full, cfg, last, pool = _uninterrupted_and_crashed(tmp_path)
    st = torch.load(last, weights_only=True)
    st["data"]["producer"] = {"round": -1}  # a producer state that restores nothing
    torch.save(st, last)
    resumed, _ = _trainer(_module(), cfg, make_loss_fn(), pool)
    resumed.fit()
    diff = [not torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values())]
    assert any(diff)


def _counting_producer(calls):
    def producer(counts, r):
        calls.append(r)
        n = sum(counts)
        return {"level": torch.cat([torch.full((c,), k + 1) for k, c in enumerate(counts)]),
                "x": torch.full((n, 2), float(r)) + torch.arange(n, dtype=torch.float32)[:, None]}

    return producer


def test_buffer_without_producer_state_saves_its_samples():
    calls = []
    buf = ReplayBuffer(_counting_producer(calls), capacity=4, proportions=(0.5, 0.5), refresh_every=2)
    buf.set_epoch(2)  # round 1
    st = buf.state_dict()
    assert st["round"] == 1 and torch.equal(st["data"]["x"], buf._data["x"])
    other = ReplayBuffer(_counting_producer([]), capacity=4, proportions=(0.5, 0.5), refresh_every=2, fill_now=False)
    other.load_state_dict(copy.deepcopy(st))
    assert other.round == 1 and torch.equal(other[3]["x"], buf[3]["x"])
    made = len(calls)
    other.set_epoch(3)  # still round 1: no refill, the restored samples stay
    assert torch.equal(other[0]["x"], buf[0]["x"]) and len(calls) == made
    with pytest.raises(ValueError, match=r"^state must be a dict"):
        other.load_state_dict({"round": 1})
    with pytest.raises(ValueError, match=r"^state's samples must be tensors with 4 rows"):
        other.load_state_dict({"round": 1, "data": {"x": torch.zeros(3, 2)}})
    with pytest.raises(ValueError, match=r"^state holds a producer state"):
        other.load_state_dict({"round": 1, "producer": {"round": 1}})


@pytest.mark.filterwarnings("ignore:resuming .* with changed settings")  # steps 2 -> 3, on purpose
def test_engine_warns_when_a_stateful_dataset_has_no_saved_state(tmp_path):
    calls = []
    buf = ReplayBuffer(_counting_producer(calls), capacity=4, proportions=(1.0,), refresh_every=1, fill_now=False)
    model = torch.nn.Linear(2, 1)

    def loss_fn(m, batch):
        return m(batch["x"]).pow(2).mean()

    out = tmp_path / "run"
    cfg = TrainConfig(steps=2, batch_size=2, device="cpu", progress=False, log_every=0, ckpt_every=1, out_dir=str(out))
    Trainer(model, cfg, buf, loss_fn).fit()
    st = torch.load(out / "last.pt", weights_only=True)
    assert st["data"]["round"] == 0
    st["data"] = None
    torch.save(st, out / "last.pt")
    cfg3 = TrainConfig(steps=3, batch_size=2, device="cpu", progress=False, log_every=0, ckpt_every=1, out_dir=str(out))
    with pytest.warns(UserWarning, match="holds no state of the training data"):
        Trainer(torch.nn.Linear(2, 1), cfg3, buf, loss_fn).fit()
