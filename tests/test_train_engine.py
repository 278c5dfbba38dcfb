"""The training engine (pnpdeblur.train): schedule, config, exact resume, DDP, logs, export."""
import json
import math
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.train import TrainConfig, Trainer, distributed, linear_decay_lambda

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers
class Regression(torch.utils.data.Dataset):
    """Items ``{"x": (3,), "y": (1,), "name": str}``; optional augmentation from torch, numpy and python RNGs."""

    def __init__(self, n=10, augment=False):
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
        self.augment = augment
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i].clone()
        if self.augment:  # randomness drawn inside __getitem__ from all three global RNGs
            x = x + 0.1 * torch.randn(3) + 0.1 * float(np.random.standard_normal()) + 0.1 * random.random()
        return {"x": x, "y": self.y[i], "name": f"item{i}"}


class Tiny(nn.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def mse_loss(model, batch):
    assert isinstance(batch["name"], list) and isinstance(batch["name"][0], str)
    err = model(batch["x"]) - batch["y"]
    return (err**2).mean(), {"mae": err.abs().mean()}


def val_mse(model, batch):
    return {"mse": ((model(batch["x"]) - batch["y"]) ** 2).mean().item()}


def make_model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return Tiny(dropout)


def cfg(**kw):
    base = dict(steps=4, batch_size=4, lr=1e-2, log_every=0, progress=False, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- schedule
def test_linear_decay_schedule_hand_values():
    f = linear_decay_lambda(10, 1.0, decay_start=5, lr_end=0.1)
    # constant up to step 5, then 1 -> 0.1 over steps 5..9 (4 intervals of 0.225)
    assert [round(f(s), 12) for s in range(10)] == [1, 1, 1, 1, 1, 1.0, 0.775, 0.55, 0.325, 0.1]
    assert f(25) == pytest.approx(0.1)
    w = linear_decay_lambda(10, 2.0, warmup_steps=4)
    assert [w(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert all(linear_decay_lambda(7, 1e-3)(s) == 1.0 for s in range(9))
    # Wu et al.: 1.25e-3 for 50 epochs then linearly to 1.25e-5 over 40 (here 10 steps/epoch)
    wu = linear_decay_lambda(900, 1.25e-3, decay_start=500, lr_end=1.25e-5)
    assert 1.25e-3 * wu(499) == pytest.approx(1.25e-3)
    assert 1.25e-3 * wu(500) == pytest.approx(1.25e-3)
    assert 1.25e-3 * wu(899) == pytest.approx(1.25e-5)
    # step 700: 200/399 of the way from 1.25e-3 to 1.25e-5
    assert 1.25e-3 * wu(700) == pytest.approx(1.25e-3 + 200 / 399 * (1.25e-5 - 1.25e-3))
    # decay starting at the last step: only the last step is at lr_end
    last = linear_decay_lambda(5, 1.0, decay_start=4, lr_end=0.5)
    assert [last(s) for s in range(5)] == [1, 1, 1, 1, 0.5]
    with pytest.raises(ValueError, match="decay_start"):
        linear_decay_lambda(5, 1.0, decay_start=6)


def test_trainer_uses_the_schedule():
    c = cfg(steps=6, lr=0.2, warmup_steps=2, decay_start=3, lr_end=0.02, log_every=1)
    tr = Trainer(make_model(), c, Regression(8), mse_loss).fit()
    f = linear_decay_lambda(6, 0.2, 2, 3, 0.02)
    lrs = [r["lr"] for r in tr.history if r["phase"] == "train"]
    assert lrs == pytest.approx([0.2 * f(s) for s in range(6)])
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.11, 0.02])  # by hand


# --------------------------------------------------------------------------- config
def test_config_round_trip():
    c = TrainConfig(steps=7, batch_size=6, lr=3e-4, betas=(0.5, 0.9), decay_start=3, lr_end=1e-5,
                    grad_clip=0.5, out_dir=Path("/tmp/x"), amp=True, seed=3)
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d and d["out_dir"] == "/tmp/x"
    back = TrainConfig.from_dict(json.loads(json.dumps(d)))
    assert back == c and back.betas == (0.5, 0.9)
    with pytest.raises(ValueError, match="bogus.*colour|colour.*bogus"):
        TrainConfig.from_dict({**d, "bogus": 1, "colour": 2})


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("steps", 2.5), ("batch_size", 0), ("lr", 0.0), ("lr", -1e-3), ("lr", float("nan")),
     ("betas", (0.9, 1.0)), ("eps", 0.0), ("weight_decay", -1.0), ("warmup_steps", 11), ("decay_start", 11),
     ("lr_end", -1.0), ("grad_clip", 0.0), ("device", "gpu7"), ("device", "nonsense:0"), ("num_workers", -1),
     ("log_every", -1), ("amp", "yes"), ("amp_dtype", "float8")],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{"steps": 10, field: value})


def test_batch_must_divide_world_size():
    c = TrainConfig(batch_size=6)
    c.validate(world_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        c.validate(world_size=4)


def test_trainer_rejects_bad_setups():
    with pytest.raises(ValueError, match="batch_size"):  # no full batch
        Trainer(make_model(), cfg(batch_size=16), Regression(10), mse_loss)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            Trainer(make_model(), cfg(device="cuda"), Regression(10), mse_loss)
    with pytest.raises(ValueError, match="val_fn"):
        Trainer(make_model(), cfg(), Regression(10), mse_loss, val_data=Regression(4))


# --------------------------------------------------------------------------- exact resume
class Crash(Exception):
    pass


def crashing(loss_fn, at_call):
    calls = {"n": 0}

    def fn(model, batch):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise Crash
        return loss_fn(model, batch)

    return fn


@pytest.mark.parametrize("num_workers", [0, 1])
def test_exact_resume_is_bit_identical(tmp_path, num_workers):
    # 10 items, batch 4: 2 batches an epoch; 7 steps cross 3 epoch boundaries; checkpoint
    # at step 3 is in the middle of epoch 1. Dropout + augmentation exercise every RNG.
    common = dict(steps=7, batch_size=4, lr=5e-2, warmup_steps=2, decay_start=3, lr_end=1e-3,
                  grad_clip=5.0, log_every=2, num_workers=num_workers, seed=5)
    full = Trainer(make_model(0, 0.3), cfg(**common), Regression(augment=True), mse_loss).fit()

    out = tmp_path / "run"
    c = cfg(**common, ckpt_every=3, out_dir=str(out))
    with pytest.raises(Crash):  # dies during step 5: last.pt holds step 3
        Trainer(make_model(0, 0.3), c, Regression(augment=True), crashing(mse_loss, 5)).fit()
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 3 and saved["epoch"] == 1 and saved["batch_in_epoch"] == 1
    # disturb every global RNG and start from different weights: all must come from last.pt
    torch.manual_seed(999), np.random.seed(999), random.seed(999)
    ds = Regression(augment=True)
    resumed = Trainer(make_model(1, 0.3), c, ds, mse_loss)
    resumed.fit()
    assert resumed.step == 7 and ds.epochs == [1, 2, 3]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    # the not-yet-interrupted part of the history is restored too
    assert [r["step"] for r in resumed.history] == [2, 4, 6, 7]
    # ... and so is the log window (row 4 averages steps 3 and 4, across the interruption)
    for key in ("loss", "mae", "grad_norm", "lr"):
        assert [r[key] for r in resumed.history] == [r[key] for r in full.history], key


def test_data_order_is_a_function_of_seed_and_epoch():
    class Record(Regression):
        def __init__(self):
            super().__init__(8)
            self.seen = []

        def __getitem__(self, i):
            self.seen.append(i)
            return super().__getitem__(i)

    runs = []
    for seed in (0, 0, 1):
        ds = Record()
        Trainer(make_model(), cfg(steps=6, seed=seed), ds, mse_loss).fit()
        runs.append(ds.seen)
    assert runs[0] == runs[1] and runs[0] != runs[2]
    epochs = [runs[0][i : i + 8] for i in (0, 8, 16)]
    assert all(sorted(e) == list(range(8)) for e in epochs)  # each epoch is a permutation
    assert epochs[0] != epochs[1]  # reshuffled every epoch


# --------------------------------------------------------------------------- DDP
DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train_engine import Regression, make_model, mse_loss, val_mse, cfg
    from pnpdeblur.train import Trainer, distributed
    torch.set_num_threads(1)
    tr = Trainer(make_model(), cfg(steps=2, batch_size=4, log_every=1, lr=0.05), Regression(16), mse_loss,
                 val_data=Regression(5), val_fn=val_mse)
    assert distributed.is_distributed() and distributed.world_size() == 2
    tr.fit()
    if distributed.is_main_process():  # export on rank 0 alone must not wait for the others
        assert tr.export({out!r} + "/w.safetensors", "Tiny", {{}}) is not None
    with open({out!r} + f"/rank{{distributed.rank()}}.json", "w") as f:
        json.dump({{"shard": distributed.shard(list(range(5))), "history": tr.history,
                   "val": tr.last_validation}}, f)
    """
)


def test_ddp_two_processes_match_one_process(tmp_path):
    from _ddp import run_ranks

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(REPO / "tests"), out=str(tmp_path)))
    run_ranks(script, tmp_path)

    single = Trainer(make_model(), cfg(steps=2, batch_size=4, log_every=1, lr=0.05), Regression(16), mse_loss,
                     val_data=Regression(5), val_fn=val_mse).fit()
    ddp_state, header = load_checkpoint(tmp_path / "w.safetensors", "Tiny")
    assert header["steps"] == 2
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ddp_state[k], v, rtol=0, atol=1e-6)
    # the weights moved, so the comparison is meaningful
    assert not torch.allclose(ddp_state["net.0.weight"], make_model().state_dict()["net.0.weight"], atol=1e-3)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["shard"] == [0, 2, 4] and r1["shard"] == [1, 3]
    # logged loss is the global mean; validation is the sample-weighted mean over both shards
    assert [h["loss"] for h in r0["history"] if h["phase"] == "train"] == pytest.approx(
        [h["loss"] for h in single.history if h["phase"] == "train"], rel=1e-5)
    assert r0["val"]["mse"] == pytest.approx(single.last_validation["mse"], rel=1e-5) == r1["val"]["mse"]


def test_distributed_helpers_single_process():
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.shard("abcde") == list("abcde")
    assert distributed.init_distributed() is False  # WORLD_SIZE unset: stays single-process
    distributed.barrier()


# --------------------------------------------------------------------------- clipping, NaN, AMP, compile
def test_grad_clip_limits_the_update():
    # Adam's first step is lr * g / (|g| + eps): scale-free unless |g| << eps. Clipping the
    # global norm to 1e-12 (eps 1e-8) therefore shrinks the first update ~10^4-fold.
    def first_update(clip):
        m = make_model()
        w0 = [p.detach().clone() for p in m.parameters()]
        tr = Trainer(m, cfg(steps=1, lr=0.1, grad_clip=clip, log_every=1), Regression(4), mse_loss).fit()
        return max((p.detach() - w).abs().max().item() for p, w in zip(m.parameters(), w0)), tr.history[-1]

    free, _ = first_update(None)
    clipped, row = first_update(1e-12)
    assert free > 0.05
    assert clipped < 1e-4 * 0.1 * 1.01
    assert row["grad_norm"] > 1e-3  # the logged norm is the one before clipping


def test_nan_loss_raises_naming_the_step():
    calls = {"n": 0}

    def loss_fn(model, batch):
        calls["n"] += 1
        loss = mse_loss(model, batch)[0]
        return loss * float("nan") if calls["n"] == 3 else loss

    tr = Trainer(make_model(), cfg(steps=5), Regression(8), loss_fn)
    with pytest.raises(RuntimeError, match="non-finite.*step 3"):
        tr.fit()
    assert tr.step == 2 and all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_amp_is_ignored_on_cpu_with_a_warning():
    with pytest.warns(UserWarning, match="amp"):
        tr = Trainer(make_model(), cfg(amp=True, steps=1), Regression(4), mse_loss)
    assert tr.amp_dtype is None and not tr.scaler.is_enabled()
    tr.fit()
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())


def test_compile_wraps_the_training_model(monkeypatch):
    seen = []

    def fake_compile(module, *a, **k):  # real torch.compile is too slow for a CPU test
        seen.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    tr = Trainer(make_model(), cfg(compile=True, steps=1), Regression(4), mse_loss).fit()
    assert seen == [tr.model] and tr.step == 1


# --------------------------------------------------------------------------- logs, validation, export
def test_logs_picture_validation_and_export(tmp_path):
    out = tmp_path / "run"
    c = cfg(steps=6, log_every=2, val_every=3, out_dir=str(out))
    tr = Trainer(make_model(), c, Regression(8), mse_loss, val_data=Regression(5), val_fn=val_mse).fit()
    rows = json.loads((out / "log.json").read_text())
    assert [(r["phase"], r["step"]) for r in rows] == [
        ("train", 2), ("val", 3), ("train", 4), ("train", 6), ("val", 6)]
    assert rows == tr.history
    assert all(k in rows[0] for k in ("loss", "lr", "mae", "samples_per_s", "epoch"))
    csv_lines = (out / "log.csv").read_text().splitlines()
    assert len(csv_lines) == 6 and {"loss", "lr", "mae", "val_mse"} <= set(csv_lines[0].split(","))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 6

    # validation: the sample-weighted mean over batches of 4 and 1 (not the mean of batch means)
    with torch.no_grad():
        v = Regression(5)
        exact = ((tr.model(v.x) - v.y) ** 2).mean().item()
    assert tr.last_validation["mse"] == pytest.approx(exact, rel=1e-6)
    assert rows[-1]["val_mse"] == tr.last_validation["mse"]

    path = tr.export(tmp_path / "tiny.safetensors", "Tiny", {"dropout": 0.0}, {"data": "synthetic"})
    state, header = load_checkpoint(path, "Tiny")
    assert header["config"] == {"dropout": 0.0} and header["steps"] == 6
    assert header["validation"] == tr.last_validation and header["training"] == c.to_dict()
    assert header["data"] == "synthetic"
    for k, v in tr.model.state_dict().items():
        assert torch.equal(state[k], v)
    # a finished run resumes as a no-op
    again = Trainer(make_model(7), c, Regression(8), mse_loss).fit()
    assert again.step == 6 and torch.equal(again.model.net[0].weight, tr.model.net[0].weight)
