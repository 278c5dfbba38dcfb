"""The training engine (pnpdeblur.train.engine) directly, on a float64 linear model of 2 weights.

The references are written out in the test: the data order (torch.randperm seeded with
seed + epoch), the learning rate of every step (warm-up, linear decay, a milestone), Adam's
moments with L2 weight decay, the clipped gradient norm, the log rows (window means), the
sample-weighted validation means, the RNG streams, and the exact resume of weights, optimiser,
scheduler, history and random draws.
"""
import json
import math
import random
import re
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import load_checkpoint
from pnpdeblur.train import engine as E
from pnpdeblur.train.config import TrainConfig
from pnpdeblur.train.engine import Trainer, unwrap_model
from pnpdeblur.train.state import (derive_seed, get_rng_state, load_training_state, save_training_state,
                                   seed_everything)


def msg(text):
    return "^" + re.escape(text) + "$"


@pytest.fixture(autouse=True)
def plots(monkeypatch):
    """The engine's loss pictures, recorded instead of drawn (test_train_logging_direct draws them)."""
    calls = []
    monkeypatch.setattr(E, "plot_history", lambda hist, path, title=None: calls.append((list(hist), path, title)))
    return calls


# --------------------------------------------------------------------------- fixtures
N, B = 6, 2  # 3 batches an epoch
X = torch.tensor([[1.0, 0.5], [-0.5, 2.0], [0.25, -1.0], [2.0, 1.0], [-1.5, 0.75], [0.5, 0.5]], dtype=torch.float64)
Y = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.25], dtype=torch.float64)
W0 = [0.3, -0.2]


class Data(torch.utils.data.Dataset):
    def __init__(self, n=N):
        self.n = n
        self.epochs = []

    def set_epoch(self, e):
        self.epochs.append(e)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": X[i % N], "y": Y[i % N], "i": i}


class StatefulData(Data):
    def __init__(self, n=N):
        super().__init__(n)
        self.value = 0
        self.loaded = []

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, s):
        self.loaded.append(s)
        self.value = s["value"]


def linear(w=W0):
    m = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        m.weight.copy_(torch.tensor([w], dtype=torch.float64))
    return m


class Recorder:
    """loss_fn: mean squared error; records the batch indices and one torch draw per call."""

    def __init__(self, fail_at=None, bad=None):
        self.batches, self.draws, self.calls, self.modes = [], [], 0, []
        self.fail_at, self.bad = fail_at, bad

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt  # a crash between checkpoints
        self.batches.append(batch["i"].tolist())
        self.draws.append(torch.rand(()).item())  # the training RNG stream
        r = model(batch["x"]).reshape(-1) - batch["y"]
        loss = (r**2).mean()
        if self.bad is not None and self.calls == self.bad[0]:
            loss = loss * self.bad[1]
        self.modes.append(model.training)
        return loss, {"const": 2.0, "abs": r.abs().mean()}  # not in sorted order: rows sort them


def val_fn_factory(log):
    def val_fn(model, batch):
        log.append({"training": model.training, "grad": torch.is_grad_enabled(), "draw": torch.rand(()).item(),
                    "n": len(batch["i"])})
        r = model(batch["x"]).reshape(-1) - batch["y"]
        return {"mse": (r**2).mean().item(), "val_size": float(len(batch["i"]))}

    return val_fn


BASE = dict(steps=5, batch_size=B, lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.01, warmup_steps=2,
            decay_start=2, lr_end=0.02, lr_milestones=(4,), lr_gamma=0.5, grad_clip=1.0, seed=3, device="cpu",
            progress=False, log_every=2)
# By hand: warm-up (s+1)/2 at s = 0; 1 at s = 1, 2; decay from s = 2 to 1 + (3-2)/(4-2)·(0.2-1) = 0.6
# at s = 3 and 0.2 at s = 4, times the milestone's 0.5 from s = 4.
LRS = [0.05, 0.1, 0.1, 0.06, 0.01]


def cfg(**kw):
    c = {**BASE, **kw}
    if c["steps"] < 4 and "lr_milestones" not in kw:  # short runs: keep the schedule valid
        c["lr_milestones"] = ()
        c["warmup_steps"] = min(c["warmup_steps"], c["steps"])
        c["decay_start"] = min(c["decay_start"], c["steps"])
    return TrainConfig(**c)


def order(seed, steps, n=N, b=B):
    out, epoch = [], 0
    while len(out) < steps:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out += [perm[k * b:(k + 1) * b] for k in range(n // b)]
        epoch += 1
    return out[:steps]


def reference(steps=5, lrs=LRS, seed=3, betas=(0.8, 0.9), eps=1e-6, wd=0.01, clip=1.0, w0=W0):
    """Adam by hand: the weights after each step, the losses, the gradient norms before clipping."""
    w = torch.tensor(w0, dtype=torch.float64)
    m, v = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    ws, losses, norms, abss = [], [], [], []
    for t, idx in enumerate(order(seed, steps), start=1):
        x, y = X[idx], Y[idx]
        r = x @ w - y
        losses.append(float((r**2).mean()))
        abss.append(float(r.abs().mean()))
        g = 2 * x.T @ r / len(idx)
        nrm = float(g.norm())
        norms.append(nrm)
        if clip is not None and clip / (nrm + 1e-6) < 1:
            g = g * (clip / (nrm + 1e-6))
        g = g + wd * w  # Adam's L2 weight decay
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        mhat, vhat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w = w - lrs[t - 1] * mhat / (vhat.sqrt() + eps)
        ws.append(w.clone())
    return ws, losses, norms, abss, (m, v)


def weights(tr):
    return tr.model.weight.detach().reshape(-1)


TIMING = ("samples_per_s", "elapsed_s")


def untimed(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


# --------------------------------------------------------------------------- helpers of the module
def test_unwrap_model():
    inner = nn.Linear(1, 1)

    class Wrapper(nn.Module):
        def __init__(self, mod):
            super().__init__()
            self._orig_mod = mod

    assert unwrap_model(inner) is inner
    assert unwrap_model(Wrapper(inner)) is inner
    assert unwrap_model(Wrapper(Wrapper(inner))) is inner  # nested wrappers
    odd = nn.Sequential()
    odd._orig_mod_value = 3
    object.__setattr__(odd, "_orig_mod", 3)  # not a module: not a wrapper
    assert unwrap_model(odd) is odd


def test_to_device():
    t = torch.ones(2)
    dev = torch.device("cpu")
    assert E._to_device(t, dev) is t
    names = ["a", "b"]
    out = E._to_device({"x": t, "name": names, "nest": [t, (t, 1)], "k": 3}, dev)
    assert out["x"] is t and out["name"] is names and out["k"] == 3
    assert type(out["nest"]) is list and type(out["nest"][1]) is tuple and out["nest"][1][1] == 1
    assert E._to_device((1, 2), dev) == (1, 2)
    meta = E._to_device({"x": t, "l": [t], "m": [{"y": t}]}, torch.device("meta"))
    assert meta["x"].device.type == "meta" and meta["l"][0].device.type == "meta"
    assert meta["m"][0]["y"].device.type == "meta"
    assert E._to_device(["s", 1], torch.device("meta")) == ["s", 1]


def test_batch_len():
    assert E._batch_len(torch.zeros(5, 2)) == 5
    assert E._batch_len(torch.tensor(1.0)) == 1
    assert E._batch_len({"name": ["a", "b", "c"], "x": torch.zeros(4)}) == 4  # tensors first
    assert E._batch_len({"name": ["a", "b", "c"], "k": 1}) == 3
    assert E._batch_len({"name": ("a", "b")}) == 2
    assert E._batch_len([torch.zeros(3), torch.zeros(3)]) == 3
    assert E._batch_len(({"x": torch.zeros(7)}, 1)) == 7
    assert E._batch_len(["a", "b"]) == 2
    for bad, name in (([], "list"), ("abc", "str"), ({"k": 1}, "dict"), (3, "int")):
        with pytest.raises(TypeError, match=msg(f"cannot tell the number of samples of a batch of type {name}")):
            E._batch_len(bad)


def test_keyed_items_reseed_only_in_workers(monkeypatch):
    class Draw(torch.utils.data.Dataset):
        def __len__(self):
            return 9

        def __getitem__(self, i):
            return (torch.rand(()).item(), float(np.random.rand()), random.random())

    k = E._KeyedItems(Draw(), seed=5)
    assert len(k) == 9 and k.seed == 5
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    first = k[(1, 4)]
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    assert first == (torch.rand(()).item(), float(np.random.rand()), random.random())  # main process: untouched
    monkeypatch.setattr(E, "get_worker_info", lambda: object())
    got = k[(2, 7)]
    seed_everything(derive_seed(5, 2, 7))
    assert got == (torch.rand(()).item(), float(np.random.rand()), random.random())


def test_worker_init_seed():
    E._worker_init(4, 1, 2, 3)
    a = torch.rand(()).item()
    seed_everything(derive_seed(4, 1, 2, 3, 1))
    assert a == torch.rand(()).item()


def test_windows():
    assert E._empty_window() == {"n": 0, "loss": 0.0, "extra": {}, "grad_norm": None}
    w = E._empty_window()
    w["n"] = 1
    assert E._empty_window()["n"] == 0  # a fresh dict each time
    plain = E._window_to_plain({"n": 2.0, "loss": torch.tensor(1.5), "extra": {"a": torch.tensor(2.0), "b": None, "c": 1},
                                "grad_norm": torch.tensor(0.5)})
    assert plain == {"n": 2, "loss": 1.5, "extra": {"a": 2.0, "b": None, "c": 1.0}, "grad_norm": 0.5}
    assert type(plain["n"]) is int and type(plain["loss"]) is float and type(plain["extra"]["a"]) is float
    assert type(plain["grad_norm"]) is float
    assert E._window_to_plain(E._empty_window())["grad_norm"] is None


# --------------------------------------------------------------------------- construction
def test_constructor_settings():
    with pytest.warns(UserWarning, match=msg("TrainConfig.amp=True is ignored on cpu: training in float32")):
        tr = Trainer(linear(), BASE | {"amp": True}, Data(), Recorder())  # a mapping is a config
    assert isinstance(tr.cfg, TrainConfig) and tr.cfg.amp and tr.amp_dtype is None
    assert not tr.scaler.is_enabled()
    assert tr.device == torch.device("cpu") and not tr.distributed and tr.world_size == 1 and tr.rank == 0
    assert tr.is_main and tr.local_batch == B and tr.batches_per_epoch == 3
    assert tr.net is tr.model
    g = tr.optimizer.param_groups[0]
    assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (0.05, (0.8, 0.9), 1e-6, 0.01)
    assert g["initial_lr"] == 0.1
    assert [p is q for p, q in zip(g["params"], tr.model.parameters())] == [True]
    assert (tr.step, tr.epoch, tr.batch_in_epoch, tr.history, tr.last_validation) == (0, 0, 0, [], {})
    assert tr._elapsed == 0.0 and tr._started is False and tr._t0 is None and tr._win == E._empty_window()
    # the schedule: lr of steps 0..4
    lrs = []
    for _ in range(5):
        lrs.append(tr.scheduler.get_last_lr()[0])
        tr.optimizer.step()
        tr.scheduler.step()
    assert lrs == pytest.approx(LRS, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(linear(), cfg(amp=False), Data(), Recorder())  # no warning without amp


def test_only_trainable_parameters_are_optimised():
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    m[0].weight.requires_grad_(False)
    tr = Trainer(m, cfg(), Data(), Recorder())
    assert [p is m[0].bias or p is m[1].weight or p is m[1].bias for p in tr._params] == [True] * 3
    for p in m.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match=msg("model has no trainable parameters")):
        Trainer(m, cfg(), Data(), Recorder())


def test_constructor_errors():
    with pytest.raises(TypeError, match=msg("cfg must be a TrainConfig or a mapping, got int")):
        Trainer(linear(), 3, Data(), Recorder())
    with pytest.raises(TypeError, match=msg("model must be a torch.nn.Module, got function")):
        Trainer(lambda x: x, cfg(), Data(), Recorder())
    with pytest.raises(TypeError, match=msg("loss_fn must be callable: loss_fn(model, batch) -> loss")):
        Trainer(linear(), cfg(), Data(), 3)
    with pytest.raises(ValueError, match=msg("val_data was given without a val_fn(model, batch) -> {metric: float}")):
        Trainer(linear(), cfg(), Data(), Recorder(), val_data=Data(), val_fn="no")
    tr = Trainer(linear(), cfg(), Data(), Recorder(), val_fn=lambda m, b: {})  # a val_fn alone is fine
    assert tr.validate() == {} and tr.history == []  # ... and validates nothing
    with pytest.raises(TypeError, match=msg("train_data must be a map-style Dataset with __len__")):
        Trainer(linear(), cfg(), object(), Recorder())
    with pytest.raises(ValueError, match=msg(
            "train_data has 3 items, fewer than TrainConfig.batch_size=4 (4 per process): no full batch")):
        Trainer(linear(), cfg(batch_size=4), Data(3), Recorder())
    assert Trainer(linear(), cfg(batch_size=4), Data(4), Recorder()).batches_per_epoch == 1
    assert Trainer(linear(), cfg(batch_size=4), Data(11), Recorder()).batches_per_epoch == 2


def test_resolve_device():
    assert Trainer._resolve_device("cpu") == torch.device("cpu")
    expect = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    assert Trainer._resolve_device("auto") == expect
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(ValueError, match=msg(f"TrainConfig.device={name!r} but CUDA is not available")):
                Trainer._resolve_device(name)
        with pytest.raises(ValueError, match=msg("TrainConfig.device='cuda' but CUDA is not available")):
            Trainer(linear(), cfg(device="cuda"), Data(), Recorder())
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match=msg("TrainConfig.device='mps' but MPS is not available")):
            Trainer._resolve_device("mps")
    assert Trainer._resolve_device("meta") == torch.device("meta")


def test_compile_wraps_only_the_training_model(monkeypatch):
    seen = []

    class Compiled(nn.Module):
        def __init__(self, mod):
            super().__init__()
            self._orig_mod = mod

        def forward(self, *a):
            seen.append(1)
            return self._orig_mod(*a)

    monkeypatch.setattr(torch, "compile", lambda m: Compiled(m))
    plain = linear()
    tr = Trainer(Compiled(plain), cfg(compile=True, steps=1), Data(), Recorder())
    assert tr.model is plain and isinstance(tr.net, Compiled) and tr.net._orig_mod is plain
    tr.fit()
    assert seen == [1]  # the loss saw the compiled wrapper
    assert Trainer(linear(), cfg(), Data(), Recorder()).net.__class__ is nn.Linear


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_a_null_context_without_amp():
    tr = Trainer(linear(), cfg(), Data(), Recorder())
    ctx = tr._autocast()
    assert type(ctx).__name__ == "nullcontext"
    tr.amp_dtype = torch.bfloat16  # what CUDA with amp sets
    ctx = tr._autocast()
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16


# --------------------------------------------------------------------------- one run against the reference
@pytest.mark.filterwarnings("error")  # e.g. pin_memory=True on a machine without an accelerator warns
def test_fit_matches_adam_by_hand(capsys):
    data, rec = Data(), Recorder()
    model = linear()
    model.eval()
    tr = Trainer(model, cfg(log_every=3), data, rec).fit()
    assert rec.modes == [True] * 5 and tr.model.training  # fit trains in train mode
    ws, losses, norms, abss, (m, v) = reference()
    assert rec.batches == order(3, 5)
    assert data.epochs == [0, 1]  # set_epoch at each epoch start
    assert weights(tr).tolist() == pytest.approx(ws[-1].tolist(), rel=1e-12, abs=1e-15)
    assert any(n > 1.0 for n in norms) and any(n < 1.0 for n in norms)  # clipping both active and idle
    st = tr.optimizer.state_dict()["state"][0]
    assert float(st["step"]) == 5
    assert st["exp_avg"].reshape(-1).tolist() == pytest.approx(m.tolist(), rel=1e-12)
    assert st["exp_avg_sq"].reshape(-1).tolist() == pytest.approx(v.tolist(), rel=1e-12)
    assert (tr.step, tr.epoch, tr.batch_in_epoch) == (5, 1, 2)
    # draws: the training stream is torch's global RNG seeded with derive_seed(seed, rank) at fit start
    seed_everything(derive_seed(3, 0))
    assert rec.draws == [torch.rand(()).item() for _ in range(5)]
    # log rows at step 3 and 5 (the last), window means; extra values sorted by name
    rows = tr.history
    assert [list(r) for r in rows] == [["phase", "step", "epoch", "loss", "lr", "abs", "const", "grad_norm",
                                        "samples_per_s", "elapsed_s"]] * 2
    for r, (a, b), epoch in zip(rows, [(0, 3), (3, 5)], (0, 1)):
        assert (r["phase"], r["step"], r["epoch"]) == ("train", b, epoch)
        assert r["loss"] == pytest.approx(sum(losses[a:b]) / (b - a), rel=1e-6)  # float32 values
        assert r["lr"] == pytest.approx(LRS[b - 1], rel=1e-12)
        # the engine sums float32 values, then divides in float64
        s32 = torch.tensor(0.0)
        for x in abss[a:b]:
            s32 = s32 + torch.tensor(x, dtype=torch.float32)
        assert r["abs"] == float(s32.double() / (b - a))
        assert r["const"] == 2.0
        assert r["grad_norm"] == pytest.approx(sum(norms[a:b]) / (b - a), rel=1e-12)
        assert r["samples_per_s"] > 0 and r["elapsed_s"] > 0
    assert rows[1]["elapsed_s"] >= rows[0]["elapsed_s"]
    # no bar: one printed line per log row
    cap = capsys.readouterr()
    out = cap.out.splitlines()
    assert len(out) == 2 and cap.err == ""
    r = rows[1]
    assert re.fullmatch(re.escape(f"step 5/5 loss {r['loss']:.4g} lr {r['lr']:.3g} abs {r['abs']:.4g} const 2 "
                                  f"grad_norm {r['grad_norm']:.4g} ") + r"\d+\.\d samples/s", out[1]), out[1]
    # finished: fit again does nothing, not even switching to train mode
    before = weights(tr).clone()
    tr.model.eval()
    tr.fit()
    assert torch.equal(weights(tr), before) and tr.step == 5 and len(tr.history) == 2 and not tr.model.training


def test_fit_without_clipping_weight_decay_or_logs():
    rec = Recorder()
    c = cfg(grad_clip=None, weight_decay=0.0, log_every=0, warmup_steps=0, decay_start=None, lr_end=None,
            lr_milestones=(), steps=4)
    tr = Trainer(linear(), c, Data(), rec).fit()
    ws, *_ = reference(steps=4, lrs=[0.1] * 4, wd=0.0, clip=None)
    assert weights(tr).tolist() == pytest.approx(ws[-1].tolist(), rel=1e-12)
    assert tr.history == []


def test_log_rows_without_grad_norm_and_with_an_odd_window(capsys):
    c = cfg(grad_clip=None, log_every=3, steps=4)
    tr = Trainer(linear(), c, Data(), lambda m, b: ((m(b["x"]).reshape(-1) - b["y"]).pow(2).mean()), ).fit()
    _, losses, *_ = reference(steps=4, clip=None)
    assert [(r["step"], list(r)) for r in tr.history] == [
        (3, ["phase", "step", "epoch", "loss", "lr", "samples_per_s", "elapsed_s"]),
        (4, ["phase", "step", "epoch", "loss", "lr", "samples_per_s", "elapsed_s"])]
    assert tr.history[0]["loss"] == pytest.approx(sum(losses[:3]) / 3, rel=1e-6)
    assert tr.history[1]["loss"] == pytest.approx(losses[3], rel=1e-6)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"step 3/4 loss \S+ lr 0\.1 \d+\.\d samples/s", out[0]), out


@pytest.fixture
def no_bar_monitor(monkeypatch):
    """tqdm's monitor thread: none (a thread alive when mutmut forks its test children can deadlock them)."""
    from tqdm.auto import tqdm

    monkeypatch.setattr(tqdm, "monitor_interval", 0)


def test_progress_bar(capsys, no_bar_monitor):
    Trainer(linear(), cfg(progress=True, log_every=2), Data(), Recorder()).fit()
    cap = capsys.readouterr()
    assert cap.out == ""  # the bar replaces the printed lines
    assert "train:" in cap.err and "5/5" in cap.err and "step" in cap.err


def test_loss_output_checks():
    def run(fn):
        return Trainer(linear(), cfg(), Data(), fn).fit()

    with pytest.raises(TypeError, match=msg("loss_fn must return a loss tensor or (loss, {name: float})")):
        run(lambda m, b: (torch.zeros(()), {}, 1))
    with pytest.raises(TypeError, match=msg("loss_fn must return a loss tensor or (loss, {name: float})")):
        run(lambda m, b: (torch.zeros(()), [1]))
    with pytest.raises(TypeError, match=msg("loss_fn must return a scalar loss tensor, got Tensor(2,)")):
        run(lambda m, b: m(b["x"]).reshape(-1))
    with pytest.raises(TypeError, match=msg("loss_fn must return a scalar loss tensor, got float")):
        run(lambda m, b: 1.0)
    # a one-element loss of any shape is a scalar
    tr = run(lambda m, b: ((m(b["x"]).reshape(-1) - b["y"]) ** 2).mean().reshape(1, 1))
    assert tr.step == 5


@pytest.mark.parametrize("factor, shown, step, epoch, batch", [(float("nan"), "nan", 3, 0, 2),
                                                               (float("inf"), "inf", 4, 1, 0)])
def test_non_finite_loss_is_refused(factor, shown, step, epoch, batch):
    tr = Trainer(linear(), cfg(), Data(), Recorder(bad=(step, factor)))
    with pytest.raises(RuntimeError, match=msg(
            f"non-finite training loss ({shown}) at step {step} (epoch {epoch}, batch {batch} of the epoch); "
            "lower lr, set grad_clip or check the data")):
        tr.fit()
    ws, *_ = reference(steps=step - 1)
    assert weights(tr).tolist() == pytest.approx(ws[-1].tolist(), rel=1e-12)  # the bad step changed nothing
    assert tr.step == step - 1 and tr._t0 is None and tr._elapsed > 0


# --------------------------------------------------------------------------- validation
def test_validation_steps_weights_and_rng(tmp_path):
    log = []
    val = Data(5)
    rec = Recorder()
    tr = Trainer(linear(), cfg(val_every=2, log_every=0, out_dir=str(tmp_path)), Data(), rec,
                 val_data=val, val_fn=val_fn_factory(log))
    tr.fit()
    ws, *_ = reference()
    vrows = [r for r in tr.history if r["phase"] == "val"]
    assert [(r["step"], r["epoch"]) for r in vrows] == [(2, 0), (4, 1), (5, 1)]  # every 2 steps and at the end
    assert [list(r) for r in vrows] == [["phase", "step", "epoch", "val_mse", "val_size"]] * 3
    for r, w in zip(vrows, (ws[1], ws[3], ws[4])):
        err = X[:5] @ w - Y[:5]
        # per-batch means of batches (0,1), (2,3), (4), weighted by their sizes = the mean over the items
        assert r["val_mse"] == pytest.approx(float((err**2).mean()), rel=1e-12)
        assert r["val_size"] == pytest.approx((2 * 2 + 2 * 2 + 1 * 1) / 5, rel=1e-15)
    assert tr.last_validation == {"mse": vrows[-1]["val_mse"], "val_size": vrows[-1]["val_size"]}
    assert [e["n"] for e in log] == [2, 2, 1] * 3
    assert not any(e["training"] or e["grad"] for e in log)
    assert tr.model.training  # train mode is back
    # each pass runs on its own seeded stream ...
    seed_everything(derive_seed(3, 0, 7919))
    torch.empty((), dtype=torch.int64).random_()  # the DataLoader's base seed, drawn as its iterator starts
    ref = [torch.rand(()).item() for _ in range(3)]
    assert [e["draw"] for e in log] == ref * 3
    # ... and leaves the training stream as if it never ran
    seed_everything(derive_seed(3, 0))
    assert rec.draws == [torch.rand(()).item() for _ in range(5)]
    after = torch.get_rng_state()
    tr2 = Trainer(linear(), cfg(log_every=0), Data(), Recorder())
    tr2.fit()
    assert torch.equal(torch.get_rng_state(), after)
    # rows written to the logs
    assert json.loads((tmp_path / "log.json").read_text()) == tr.history


def test_validate_directly():
    tr = Trainer(linear(), cfg(), Data(), Recorder())
    assert tr.validate() == {} and tr.history == []
    log = []
    tr = Trainer(linear(), cfg(), Data(), Recorder(), val_data=Data(0), val_fn=val_fn_factory(log))
    tr.model.eval()
    res = tr.validate()
    assert res == {} and log == [] and not tr.model.training  # the mode it had
    assert tr.history == [{"phase": "val", "step": 0, "epoch": 0}]
    tr = Trainer(linear(), cfg(), Data(), Recorder(), val_data=Data(3),
                 val_fn=lambda m, b: {"a": 1.0} if len(b["i"]) == 2 else {"b": 4.0})
    res = tr.validate()
    # a metric missing from a batch counts as 0 for it; the sums are over all 3 items
    assert res == {"a": pytest.approx(2 / 3), "b": pytest.approx(4 / 3)}
    tr = Trainer(linear(), cfg(), Data(), Recorder(), val_data=Data(3), val_fn=lambda m, b: [1.0])
    state = get_rng_state()
    with pytest.raises(TypeError, match=msg("val_fn must return a dict of metrics, got list")):
        tr.validate()
    assert tr.model.training and torch.equal(torch.get_rng_state(), state["torch"])  # restored on error too
    assert np.random.get_state()[2] == state["numpy"]["pos"]


# --------------------------------------------------------------------------- checkpoints and exact resume
def test_checkpoint_files_and_state(tmp_path, plots):
    data = StatefulData()
    data.value = 7
    tr = Trainer(linear(), cfg(ckpt_every=2, out_dir=tmp_path, log_every=0), data, Recorder())
    tr.fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "log.csv", "log.json"]
    # a picture at each checkpoint (steps 2, 4 and the last, 5), next to last.pt
    assert [(len(h), p, t) for h, p, t in plots] == [(0, tmp_path / "loss.png", f"step {s}") for s in (2, 4, 5)]
    assert (tmp_path / "log.json").read_text() == "[]\n"  # logs written at the checkpoint even without rows
    st = load_training_state(tmp_path / "last.pt")
    assert sorted(st) == sorted(["format", "version", "model", "optimizer", "scheduler", "scaler", "step", "epoch", "batch_in_epoch",
                                 "batches_per_epoch", "elapsed_s", "history", "last_validation", "log_window",
                                 "config", "world_size", "rng", "data"])
    assert (st["step"], st["epoch"], st["batch_in_epoch"], st["batches_per_epoch"], st["world_size"]) == (5, 1, 2, 3, 1)
    assert st["config"] == tr.cfg.to_dict() and st["data"] == {"value": 7}
    assert st["history"] == tr.history and st["last_validation"] == {}
    # log_every=0: the window keeps summing, and is saved as plain floats
    _, losses, norms, abss, _ = reference()
    win = st["log_window"]
    assert set(win) == {"n", "loss", "extra", "grad_norm"} and win["n"] == 5
    assert win["loss"] == pytest.approx(sum(losses), rel=1e-6) and win["grad_norm"] == pytest.approx(sum(norms), rel=1e-12)
    assert win["extra"] == {"abs": pytest.approx(sum(abss), rel=1e-6), "const": 10.0}
    assert type(win["grad_norm"]) is float and type(win["extra"]["abs"]) is float
    assert torch.equal(st["model"]["weight"], tr.model.weight.detach())
    assert st["scheduler"]["last_epoch"] == 5 and st["optimizer"]["state"][0]["step"] == 5
    assert 0 < st["elapsed_s"] <= tr._elapsed + 1e-9 and len(st["rng"]) == 1
    assert torch.equal(st["rng"][0]["torch"], torch.get_rng_state())  # saved at the end, after the last step
    # a state taken inside fit counts the running time
    tr._t0 = __import__("time").perf_counter() - 100.0
    assert tr.state_dict()["elapsed_s"] >= tr._elapsed + 100.0
    assert Trainer(linear(), cfg(), Data(), Recorder()).state_dict()["data"] is None


def run_pair(tmp_path, crash_at, **kw):
    """An uninterrupted run and one that crashes at loss call ``crash_at`` and is resumed."""
    c = dict(ckpt_every=2, log_every=3, val_every=3, **kw)
    full_rec, vlog = Recorder(), []
    full = Trainer(linear(), cfg(out_dir=tmp_path / "full", **c), Data(), full_rec, val_data=Data(3),
                   val_fn=val_fn_factory(vlog)).fit()
    full_rng = get_rng_state()
    first = Recorder(fail_at=crash_at)
    with pytest.raises(KeyboardInterrupt):
        Trainer(linear(), cfg(out_dir=tmp_path / "cut", **c), Data(), first, val_data=Data(3),
                val_fn=val_fn_factory([])).fit()
    torch.manual_seed(1234)  # the resumed process starts from other RNG states and other weights
    rec, data = Recorder(), Data()
    resumed = Trainer(linear([5.0, 5.0]), cfg(out_dir=tmp_path / "cut", **c), data, rec, val_data=Data(3),
                      val_fn=val_fn_factory([]))
    resumed.fit()
    return full, full_rec, full_rng, first, resumed, rec, data


def test_exact_resume_mid_epoch_mid_window(tmp_path):
    full, full_rec, full_rng, first, resumed, rec, data = run_pair(tmp_path, crash_at=4)
    # the crash came after step 3; last.pt is from step 2 (mid epoch 0, mid log window)
    assert rec.batches == full_rec.batches[2:] and rec.draws == full_rec.draws[2:]
    assert data.epochs == [0, 1]  # the interrupted epoch is re-entered, then the next one
    assert torch.equal(weights(resumed), weights(full))
    so, fo = resumed.optimizer.state_dict(), full.optimizer.state_dict()
    for k in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(so["state"][0][k], fo["state"][0][k])
    assert so["param_groups"] == fo["param_groups"]
    assert resumed.scheduler.state_dict() == full.scheduler.state_dict()
    assert (resumed.step, resumed.epoch, resumed.batch_in_epoch) == (5, 1, 2)
    assert untimed(resumed.history) == untimed(full.history)
    assert resumed.last_validation == full.last_validation
    now = get_rng_state()
    assert torch.equal(now["torch"], full_rng["torch"]) and now["python"] == full_rng["python"]
    assert torch.equal(now["numpy"]["keys"], full_rng["numpy"]["keys"]) and now["numpy"]["pos"] == full_rng["numpy"]["pos"]
    assert resumed._elapsed > 0


def test_exact_resume_at_an_epoch_boundary(tmp_path):
    full, full_rec, _, _, resumed, rec, data = run_pair(tmp_path, crash_at=5)
    # last.pt from step 4 (epoch 1, after its first batch)
    assert rec.batches == full_rec.batches[4:] and data.epochs == [1]
    assert torch.equal(weights(resumed), weights(full))
    assert untimed(resumed.history) == untimed(full.history)


def test_resume_false_starts_again(tmp_path):
    Trainer(linear(), cfg(out_dir=tmp_path, steps=2), Data(), Recorder()).fit()
    rec = Recorder()
    tr = Trainer(linear(), cfg(out_dir=tmp_path, steps=2), Data(), rec).fit(resume=False)
    assert len(rec.batches) == 2 and tr.step == 2
    ws, *_ = reference(steps=2)
    assert weights(tr).tolist() == pytest.approx(ws[-1].tolist(), rel=1e-12)
    rec = Recorder()
    tr = Trainer(linear(), cfg(out_dir=tmp_path, steps=2), Data(), rec).fit()  # resume=True: already done
    assert rec.batches == [] and tr.step == 2 and weights(tr).tolist() == pytest.approx(ws[-1].tolist(), rel=1e-12)


def saved(tmp_path, data=None, **kw):
    tr = Trainer(linear(), cfg(out_dir=tmp_path, steps=2, **kw), data or Data(), Recorder()).fit()
    return tr, tmp_path / "last.pt"


def test_load_state_warnings(tmp_path):
    tr, path = saved(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # settings outside the run's arithmetic: no warning
        Trainer(linear(), cfg(out_dir=tmp_path, steps=2, log_every=1, val_every=1, ckpt_every=1, progress=True,
                              num_workers=1), Data(), Recorder()).load_state(path)
    other = Trainer(linear(), cfg(out_dir=str(tmp_path / "x"), steps=2, lr=0.2, seed=4), Data(), Recorder())
    with pytest.warns(UserWarning, match=msg(f"resuming {path} with changed settings ['lr', 'seed']: "
                                             "the run is no longer exact")):
        other.load_state(path)
    other = Trainer(linear(), cfg(out_dir=tmp_path, steps=2), Data(8), Recorder())
    with pytest.warns(UserWarning, match=msg(f"resuming {path}: the number of batches an epoch changed "
                                             "(dataset or world size)")):
        other.load_state(path)
    assert other._started and other.step == 2


def test_load_state_reseeds_when_the_rng_count_differs(tmp_path):
    tr, path = saved(tmp_path)
    st = load_training_state(path)
    st["rng"] = st["rng"] * 2  # saved by 2 processes
    save_training_state(path, st)
    other = Trainer(linear(), cfg(out_dir=tmp_path, steps=2), Data(), Recorder())
    with pytest.warns(UserWarning, match=msg(f"resuming {path} saved by 2 processes with 1: RNGs reseeded")):
        other.load_state(path)
    a = torch.rand(()).item()
    seed_everything(derive_seed(3, 0, 2))
    assert a == torch.rand(()).item()
    del st["rng"]
    save_training_state(path, st)
    with pytest.warns(UserWarning, match=msg(f"resuming {path} saved by 0 processes with 1: RNGs reseeded")):
        other.load_state(path)


def test_load_state_restores_everything(tmp_path):
    tr, path = saved(tmp_path, val_every=1, data=StatefulData())
    st = load_training_state(path)
    st["data"] = {"value": 11}
    st["elapsed_s"] = 42.5
    st["log_window"] = {"n": 1, "loss": 0.5, "extra": {"abs": 0.25}, "grad_norm": None}
    st["last_validation"] = {"m": 1.5}
    save_training_state(path, st)
    data = StatefulData()
    other = Trainer(linear([9.0, 9.0]), cfg(out_dir=tmp_path, steps=2, val_every=1), data, Recorder(),
                    val_data=Data(2), val_fn=val_fn_factory([]))
    other.load_state(path)
    assert data.loaded == [{"value": 11}] and data.value == 11
    assert other._elapsed == 42.5 and other._win == st["log_window"] and other.last_validation == {"m": 1.5}
    assert other.history == tr.history and other.history is not st["history"]
    assert (other.step, other.epoch, other.batch_in_epoch) == (2, 0, 2)
    assert torch.equal(other.model.weight, tr.model.weight)
    assert other.scheduler.state_dict() == tr.scheduler.state_dict()
    assert torch.equal(torch.get_rng_state(), st["rng"][0]["torch"])
    # a stateful dataset, a file without its state: warned, not loaded
    st["data"] = None
    save_training_state(path, st)
    data = StatefulData()
    other = Trainer(linear(), cfg(out_dir=tmp_path, steps=2, val_every=1), data, Recorder())
    with pytest.warns(UserWarning, match=msg(f"resuming {path}: it holds no state of the training data "
                                             "(StatefulData); the run is no longer exact")):
        other.load_state(path)
    assert data.loaded == []
    # older files without the optional entries
    for k in ("elapsed_s", "history", "last_validation", "log_window"):
        del st[k]
    save_training_state(path, st)
    other = Trainer(linear(), cfg(out_dir=tmp_path, steps=2, val_every=1), Data(), Recorder())
    other.load_state(path)
    assert (other._elapsed, other.history, other.last_validation, other._win) == (0.0, [], {}, E._empty_window())


def test_export(tmp_path):
    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder(), val_data=Data(2), val_fn=val_fn_factory([])).fit()
    out = tr.export(tmp_path / "w.safetensors", "Lin", {"n": 2}, metadata={"note": "hi", "steps": 99})
    assert out == tmp_path / "w.safetensors"
    state, header = load_checkpoint(out, "Lin")
    assert header["config"] == {"n": 2}
    assert header["training"] == tr.cfg.to_dict()
    assert header["validation"] == tr.last_validation and set(header["validation"]) == {"mse", "val_size"}
    assert header["note"] == "hi" and header["steps"] == 99  # the caller's metadata comes last
    assert torch.equal(state["weight"], tr.model.weight.detach())
    out = tr.export(tmp_path / "v.safetensors", "Lin", {})
    assert load_checkpoint(out)[1]["steps"] == 2
    seq = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    tr = Trainer(seq, cfg(steps=1), Data(), Recorder())
    state, _ = load_checkpoint(tr.export(tmp_path / "p.safetensors", "Part", {}, module=seq[1]))
    assert sorted(state) == ["bias", "weight"] and torch.equal(state["weight"], seq[1].weight.detach())


def test_worker_processes_reseed_every_item(tmp_path):
    class Draws(Data):
        def __getitem__(self, i):
            info = torch.utils.data.get_worker_info()
            return {**super().__getitem__(i), "draw": torch.rand(()).item(), "base": info.seed}

    seen = []

    def loss(model, batch):
        seen.append((batch["i"].tolist(), batch["draw"].tolist(), batch["base"].tolist()))
        return (model(batch["x"]).reshape(-1) - batch["y"]).pow(2).mean()

    Trainer(linear(), cfg(num_workers=1, steps=4), Data(), loss)  # construction alone starts nothing
    Trainer(linear(), cfg(num_workers=1, steps=4), Draws(), loss).fit()
    for t, (idx, draws, bases) in enumerate(seen):
        epoch = t // 3
        for i, d in zip(idx, draws):
            seed_everything(derive_seed(3, epoch, i))
            assert d == torch.rand(()).item()
        gen = torch.Generator().manual_seed(derive_seed(3, 0, epoch))
        assert bases == [torch.empty((), dtype=torch.int64).random_(generator=gen).item()] * 2


# --------------------------------------------------------------------------- timing, files written on the way, odd setups
def test_samples_per_second_and_elapsed_time(monkeypatch):
    ticks = iter([0.0, 1.0, 3.00049, 4.5,  # first fit: start, steps 1 and 2, end
                  10.0, 12.0, 15.25, 16.0])  # second fit: start, steps 3 and 4, end
    monkeypatch.setattr(E, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(ticks))}))
    tr = Trainer(linear(), cfg(steps=2, log_every=2), Data(), Recorder()).fit()
    assert tr._elapsed == 4.5
    tr.cfg.steps = 4  # continue the same run in a second fit
    tr.fit()
    rows = [(r["step"], r["samples_per_s"], r["elapsed_s"]) for r in tr.history]
    # 2 steps of 2 samples in 3.00049 s; then steps 3-4 (2 steps) in 5.25 s, after 4.5 s of the first fit
    assert rows == [(2, 1.333, 3.0), (4, 0.762, 9.75)]  # rounded to 3 decimals
    assert tr._elapsed == 4.5 + 6.0


def test_logs_are_written_as_rows_come(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Trainer(linear(), cfg(out_dir=tmp_path, log_every=1), Data(), Recorder(fail_at=4)).fit()
    rows = json.loads((tmp_path / "log.json").read_text())
    assert [(r["phase"], r["step"]) for r in rows] == [("train", 1), ("train", 2), ("train", 3)]
    assert not (tmp_path / "last.pt").exists()
    d = tmp_path / "v"
    with pytest.raises(KeyboardInterrupt):
        Trainer(linear(), cfg(out_dir=d, log_every=0, val_every=1), Data(), Recorder(fail_at=3), val_data=Data(2),
                val_fn=val_fn_factory([])).fit()
    rows = json.loads((d / "log.json").read_text())
    assert [(r["phase"], r["step"]) for r in rows] == [("val", 1), ("val", 2)]


@pytest.mark.filterwarnings("error")  # pin_memory=True on a machine without an accelerator warns
def test_collate_fn_is_used_for_training_and_validation():
    from torch.utils.data import default_collate

    used = []

    def collate(items):
        used.append(len(items))
        return default_collate(items)

    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder(), val_data=Data(3), val_fn=val_fn_factory([]),
                 collate_fn=collate)
    assert tr.collate_fn is collate
    tr.fit()
    assert used == [2, 2, 2, 1]  # two training batches, then the validation batches of the last step


class NoEpoch(torch.utils.data.Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"x": X[i], "y": Y[i], "i": i}


def test_dataset_without_set_epoch_and_meta_device():
    rec = Recorder()
    tr = Trainer(linear(), cfg(steps=4), NoEpoch(), rec).fit()
    assert rec.batches == order(3, 4)
    tr = Trainer(linear(), cfg(device="meta"), Data(), Recorder())
    assert tr.device == torch.device("meta") and tr.model.weight.device.type == "meta"  # the model is moved


def test_a_world_size_in_the_environment_initialises_distributed(monkeypatch):
    asked = []
    monkeypatch.setattr(E.D, "env_world_size", lambda: 2)
    monkeypatch.setattr(E.D, "init_distributed", lambda backend=None: asked.append(backend) or False)
    tr = Trainer(linear(), cfg(), Data(), Recorder())
    assert asked == ["gloo"] and not tr.distributed and tr.world_size == 1
    monkeypatch.setattr(E.D, "env_world_size", lambda: 1)
    Trainer(linear(), cfg(), Data(), Recorder())
    assert asked == ["gloo"]


@pytest.mark.skipif("mutmut" in sys.modules, reason="mutmut's trampoline adds a stack frame between caller and engine")
def test_warnings_point_at_the_caller(tmp_path):
    with pytest.warns(UserWarning) as rec:
        Trainer(linear(), cfg(amp=True), Data(), Recorder())
    assert [w.filename for w in rec] == [__file__]
    tr, path = saved(tmp_path)
    with pytest.warns(UserWarning) as rec:
        Trainer(linear(), cfg(out_dir=tmp_path, steps=2, lr=0.3), Data(8), Recorder()).load_state(path)
    assert [w.filename for w in rec] == [__file__, __file__]
    st = load_training_state(path)
    st["rng"] = []
    st["data"] = None
    save_training_state(path, st)
    with pytest.warns(UserWarning) as rec:
        Trainer(linear(), cfg(out_dir=tmp_path, steps=2), StatefulData(), Recorder()).load_state(path)
    assert [w.filename for w in rec] == [__file__, __file__]


def test_save_state_returns_the_path_and_keys_missing_from_an_old_config(tmp_path):
    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder()).fit()
    assert tr.save_state(tmp_path / "s.pt") == tmp_path / "s.pt"
    st = load_training_state(tmp_path / "s.pt")
    del st["config"]["amp_dtype"]  # a file from before the setting existed
    save_training_state(tmp_path / "s.pt", st)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(linear(), cfg(steps=2), Data(), Recorder()).load_state(tmp_path / "s.pt")


def test_progress_bar_shows_loss_lr_and_rate(capsys, no_bar_monitor):
    Trainer(linear(), cfg(progress=True, steps=2), Data(), Recorder()).fit()
    err = capsys.readouterr().err
    assert "train:" in err and "2/2" in err and "step/s" in err
    assert "loss=" in err and "lr=" in err and "samples_s=" in err


def test_workers_validate_too():
    class WorkerFlag(Data):
        def __getitem__(self, i):
            return {**super().__getitem__(i), "worker": torch.utils.data.get_worker_info() is not None}

    seen = []
    tr = Trainer(linear(), cfg(num_workers=1, steps=1), Data(), Recorder(), val_data=WorkerFlag(2),
                 val_fn=lambda m, b: seen.append(b["worker"].tolist()) or {"a": 1.0})
    tr.fit()
    assert seen == [[True, True]]


def test_an_enabled_scaler_is_saved_and_restored(tmp_path):
    # float16 AMP needs CUDA; a CPU GradScaler stands in for it (the engine only saves and loads it)
    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder())
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=3)
    tr.save_state(tmp_path / "s.pt")
    st = load_training_state(tmp_path / "s.pt")
    assert st["scaler"]["scale"] == 8.0 and st["scaler"]["growth_interval"] == 3
    other = Trainer(linear(), cfg(steps=2), Data(), Recorder())
    other.scaler = torch.amp.GradScaler("cpu")
    other.load_state(tmp_path / "s.pt")
    assert other.scaler.get_scale() == 8.0 and other.scaler.get_growth_interval() == 3
    # a disabled scaler (float32 / bfloat16 runs) ignores a saved one
    plain = Trainer(linear(), cfg(steps=2), Data(), Recorder())
    plain.load_state(tmp_path / "s.pt")
    assert not plain.scaler.is_enabled()


def test_state_outside_fit_and_a_file_without_config(tmp_path):
    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder()).fit()
    assert tr._t0 is None and tr.state_dict()["elapsed_s"] == tr._elapsed  # nothing running: no extra time
    tr.save_state(tmp_path / "s.pt")
    st = load_training_state(tmp_path / "s.pt")
    del st["config"]  # nothing to compare with: no warning
    save_training_state(tmp_path / "s.pt", st)
    other = Trainer(linear(), cfg(steps=2, lr=0.5), Data(), Recorder())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other.load_state(tmp_path / "s.pt")
    assert other.step == 2


def test_a_second_fit_continues_the_random_stream():
    rec = Recorder()
    tr = Trainer(linear(), cfg(steps=2), Data(), rec).fit()
    tr.cfg.steps = 4  # continue the same run
    tr.fit()
    seed_everything(derive_seed(3, 0))
    assert rec.draws == [torch.rand(()).item() for _ in range(4)]  # seeded once, at the first fit
    assert rec.batches == order(3, 4)


def test_an_empty_saved_scaler_is_not_loaded(tmp_path):
    # a float32/bfloat16 run saves a disabled scaler's empty state; an fp16 resume keeps its own scaler
    tr = Trainer(linear(), cfg(steps=2), Data(), Recorder())
    tr.save_state(tmp_path / "s.pt")
    assert load_training_state(tmp_path / "s.pt")["scaler"] == {}
    other = Trainer(linear(), cfg(steps=2), Data(), Recorder())
    other.scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    other.load_state(tmp_path / "s.pt")
    assert other.scaler.get_scale() == 4.0


def test_three_epochs():
    data, rec = Data(), Recorder()
    tr = Trainer(linear(), cfg(steps=7, lr_milestones=()), data, rec).fit()
    assert data.epochs == [0, 1, 2] and rec.batches == order(3, 7) and (tr.epoch, tr.batch_in_epoch) == (2, 1)


def test_samples_per_second_under_one_second(monkeypatch):
    ticks = iter([0.0, 0.25, 0.5, 1.0])
    monkeypatch.setattr(E, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(ticks))}))
    tr = Trainer(linear(), cfg(steps=2, log_every=2), Data(), Recorder()).fit()
    assert [(r["samples_per_s"], r["elapsed_s"]) for r in tr.history] == [(8.0, 0.5)]  # 4 samples in 0.5 s


def test_progress_bar_values(capsys, no_bar_monitor):
    Trainer(linear(), cfg(progress=True, steps=2), Data(), Recorder()).fit()
    err = capsys.readouterr().err
    assert re.search(r"loss=\d", err) and re.search(r"lr=0\.1", err) and re.search(r"samples_s=\d+\.\d", err)


def test_a_resumed_runs_progress_bar_starts_at_the_resumed_step(tmp_path, capsys, no_bar_monitor):
    c = dict(ckpt_every=2, out_dir=tmp_path, log_every=0)
    with pytest.raises(KeyboardInterrupt):
        Trainer(linear(), cfg(**c), Data(), Recorder(fail_at=4)).fit()  # last.pt holds step 2
    capsys.readouterr()
    tr = Trainer(linear(), cfg(progress=True, **c), Data(), Recorder())
    tr.fit()
    assert tr.step == 5
    frames = [f for f in re.split(r"[\r\n]", capsys.readouterr().err) if "train:" in f]
    assert re.search(r"\b2/5\b", frames[0]) and not any(re.search(r"\b[01]/5\b", f) for f in frames), frames
