"""Training to a time budget: TrainConfig.time_limit_s, measure_step_rate, steps_for_budget, --time-budget.

Time is faked: the loss functions advance a clock that replaces ``time.perf_counter`` in the
module under test, so every expected step count below is exact.
"""
import types

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import read_header
from pnpdeblur.train import budget as Bu
from pnpdeblur.train import engine as E
from pnpdeblur.train.budget import measure_step_rate, steps_for_budget, steps_with_refills
from pnpdeblur.train.config import TrainConfig
from pnpdeblur.train.engine import Trainer


class Clock:
    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(E, "time", types.SimpleNamespace(perf_counter=c.perf_counter))
    monkeypatch.setattr(Bu, "time", types.SimpleNamespace(perf_counter=c.perf_counter))
    monkeypatch.setattr(E, "plot_history", lambda *a, **k: None)
    return c


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"x": torch.tensor([float(i), 1.0], dtype=torch.float64), "y": torch.tensor(float(i % 3))}


def linear():
    m = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        m.weight.fill_(0.1)
    return m


def timed_loss(clock, seconds):
    """MSE loss that takes ``seconds`` of the fake clock per call."""

    def loss_fn(model, batch):
        clock.now += seconds
        return ((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean()

    return loss_fn


def val_fn(model, batch):
    return {"mse": float(((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean())}


def config(tmp_path, **kw):
    base = dict(steps=10, batch_size=2, lr=0.01, lr_milestones=(5,), lr_gamma=0.5, device="cpu", progress=False,
                log_every=3, val_every=0, ckpt_every=0, out_dir=str(tmp_path / "run"))
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- time_limit_s
def test_time_limit_stops_after_the_step_that_spends_it(tmp_path, clock):
    t = Trainer(linear(), config(tmp_path, time_limit_s=3.5), Data(), timed_loss(clock, 1.0),
                val_data=Data(), val_fn=val_fn)
    t.fit()
    # elapsed after step k is k seconds: step 4 is the first at or past 3.5 s.
    assert t.step == 4 and t.stopped_by_time
    rows = t.history
    assert [r["step"] for r in rows if r["phase"] == "train"] == [3, 4]  # the stop is logged
    assert [r["step"] for r in rows if r["phase"] == "val"] == [4]  # and validated
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["step"] == 4 and state["elapsed_s"] == pytest.approx(4.0)
    # The schedule is still the one over 10 steps: the milestone at 5 was not reached.
    assert t.scheduler.get_last_lr()[0] == pytest.approx(0.01)


def test_no_limit_runs_every_step(tmp_path, clock):
    t = Trainer(linear(), config(tmp_path), Data(), timed_loss(clock, 1.0))
    t.fit()
    assert t.step == 10 and not t.stopped_by_time
    assert t.scheduler.get_last_lr()[0] == pytest.approx(0.005)


def test_limit_counts_resumed_time(tmp_path, clock):
    Trainer(linear(), config(tmp_path, time_limit_s=3.5), Data(), timed_loss(clock, 1.0)).fit()
    # Same limit: already spent, no step is taken.
    again = Trainer(linear(), config(tmp_path, time_limit_s=3.5), Data(), timed_loss(clock, 1.0))
    again.fit()
    assert again.step == 4 and again.stopped_by_time
    # A larger limit on resume continues without a "changed settings" warning, to 4 + 3 = 7 s.
    more = Trainer(linear(), config(tmp_path, time_limit_s=6.5), Data(), timed_loss(clock, 1.0))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        more.fit()
    assert more.step == 7 and more.stopped_by_time


def test_a_limit_above_the_run_does_not_stop_it(tmp_path, clock):
    t = Trainer(linear(), config(tmp_path, time_limit_s=50.0), Data(), timed_loss(clock, 1.0))
    t.fit()
    assert t.step == 10 and not t.stopped_by_time


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "10"])
def test_time_limit_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="TrainConfig.time_limit_s"):
        TrainConfig(time_limit_s=bad)


def test_time_limit_round_trips():
    c = TrainConfig(time_limit_s=12.5)
    assert TrainConfig.from_dict(c.to_dict()).time_limit_s == 12.5


# --------------------------------------------------------------------------- measure_step_rate
def test_step_rate_is_timed_steps_over_their_time_and_leaves_the_model(clock):
    calls = []

    def loss_fn(model, batch):
        calls.append(model.training)
        clock.now += 0.25
        return ((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean()

    model = linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"x": torch.tensor([[1.0, 2.0], [3.0, 1.0]], dtype=torch.float64), "y": torch.tensor([1.0, 0.0])}
    rate = measure_step_rate(model, loss_fn, batch, device="cpu", steps=8, warmup=3)
    assert rate == pytest.approx(4.0)  # 8 steps in 8 × 0.25 s
    assert len(calls) == 11 and all(calls)  # warm-up + timed steps, in training mode
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # the probe trains a copy


def test_step_rate_defaults_and_a_sub_second_probe(clock):
    seen = []

    def loss_fn(model, batch):
        seen.append(model.weight.detach().clone())
        clock.now += 0.01
        return ((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean()

    batch = {"x": torch.tensor([[1.0, 2.0]], dtype=torch.float64), "y": torch.tensor([5.0])}
    rate = measure_step_rate(linear(), loss_fn, batch)  # device "auto" (the CPU here), 5 + 20 steps
    assert len(seen) == 25 and rate == pytest.approx(100.0)  # 20 steps in 0.2 s
    # Adam's first step moves each weight by its learning rate: the probe's default 1e-4
    assert torch.allclose((seen[1] - seen[0]).abs(), torch.full((1, 2), 1e-4, dtype=torch.float64), rtol=1e-6)


def test_step_rate_probe_really_trains_its_copy(clock):
    seen = []

    def loss_fn(model, batch):
        seen.append(float(model.weight.detach()[0, 0]))
        clock.now += 1.0
        return ((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean()

    batch = {"x": torch.tensor([[1.0, 2.0]], dtype=torch.float64), "y": torch.tensor([5.0])}
    measure_step_rate(linear(), loss_fn, batch, device="cpu", steps=3, warmup=1, lr=0.1)
    assert len(set(seen)) == 4  # Adam moved the weight at every step
    assert seen[1] - seen[0] == pytest.approx(0.1, rel=1e-6)  # by the lr given: Adam's first step


def test_step_rate_accepts_a_loss_with_extras(clock):
    def loss_fn(model, batch):
        clock.now += 0.5
        return (model(batch["x"]) ** 2).mean(), {"psnr": 1.0}

    assert measure_step_rate(linear(), loss_fn, {"x": torch.ones(2, 2, dtype=torch.float64)},
                             device="cpu", steps=2, warmup=0) == pytest.approx(2.0)


@pytest.mark.parametrize("kw,match", [({"steps": 0}, "steps must be an int >= 1"),
                                      ({"warmup": -1}, "warmup must be an int >= 0"),
                                      ({"steps": 2.0}, "steps must be an int"),
                                      ({"warmup": True}, "warmup must be an int")])
def test_step_rate_checks_its_counts(kw, match):
    with pytest.raises(ValueError, match=match):
        measure_step_rate(linear(), lambda m, b: m(b).sum(), torch.ones(1, 2, dtype=torch.float64), **kw)


def test_step_rate_checks_model_and_loss():
    with pytest.raises(TypeError, match="^model must be a torch.nn.Module, got function$"):
        measure_step_rate(lambda x: x, lambda m, b: b, torch.ones(1))
    with pytest.raises(TypeError, match=r"^loss_fn must be callable: loss_fn\(model, batch\) -> loss$"):
        measure_step_rate(linear(), None, torch.ones(1))
    frozen = linear().requires_grad_(False)
    with pytest.raises(ValueError, match="^model has no trainable parameters$"):
        measure_step_rate(frozen, lambda m, b: m(b).sum(), torch.ones(1, 2, dtype=torch.float64), device="cpu")


# --------------------------------------------------------------------------- steps_for_budget
@pytest.mark.parametrize("seconds,rate,fill,expect", [(100, 3.0, 0.9, 270), (10, 0.35, 1.0, 3), (1, 2.5, 0.5, 1),
                                                      (600, 41.7, 0.9, 22518)])
def test_steps_for_budget_closed_form(seconds, rate, fill, expect):
    assert steps_for_budget(seconds, rate, fill=fill) == expect == int(np.floor(seconds * rate * fill))


def test_steps_for_budget_minimum():
    assert steps_for_budget(1.0, 0.01) == 1
    assert steps_for_budget(1.0, 0.01, minimum=5) == 5


@pytest.mark.parametrize("kw,match", [({"seconds": 0}, "seconds must be"), ({"rate": float("nan")}, "rate must be"),
                                      ({"rate": -2.0}, "rate must be"), ({"fill": 1.5}, "fill must be"),
                                      ({"fill": 0}, "fill must be"), ({"minimum": 0}, "minimum must be"),
                                      ({"seconds": True}, "seconds must be"), ({"fill": True}, "fill must be"),
                                      ({"minimum": True}, "minimum must be"), ({"minimum": 2.0}, "minimum must be")])
def test_steps_for_budget_checks(kw, match):
    args = {"seconds": 10.0, "rate": 2.0, **kw}
    with pytest.raises(ValueError, match=match):
        steps_for_budget(args.pop("seconds"), args.pop("rate"), **args)


# --------------------------------------------------------------------------- steps_with_refills
def _most_steps_by_search(seconds, rate, refill, per_refill, fill):
    """The reference: the largest n whose time n/rate + refill·(ceil(n/per_refill) − 1) fits, by trying every n."""
    best, n = 0, 1
    while n / rate <= seconds * fill:
        if n / rate + refill * (-(-n // per_refill) - 1) <= seconds * fill:
            best = n
        n += 1
    return max(1, best)


@pytest.mark.parametrize("seed", range(6))
def test_steps_with_refills_is_the_largest_count_that_fits(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        seconds, rate = float(rng.uniform(0.5, 40)), float(rng.uniform(0.2, 12))
        refill = float(rng.choice([0.0, rng.uniform(0, 8)]))
        per_refill, fill = int(rng.integers(1, 30)), float(rng.uniform(0.2, 1.0))
        assert steps_with_refills(seconds, rate, refill, per_refill, fill=fill) == \
            _most_steps_by_search(seconds, rate, refill, per_refill, fill)


def test_steps_with_refills_by_hand():
    # 16.65 s planned at 0.5 steps/s, a 4 s refill every 2 steps: 4 steps take 8 s + one refill = 12 s;
    # 5 steps would take 10 s + two refills = 18 s
    assert steps_with_refills(18.5, 0.5, 4.0, 2) == 4
    # free refills: steps_for_budget's count; refills too dear for a second block: one block
    assert steps_with_refills(100, 3.0, 0.0, 7) == steps_for_budget(100, 3.0) == 270
    assert steps_with_refills(10, 10.0, 1000.0, 5) == 5
    assert steps_with_refills(1.0, 0.01, 0.0, 3) == 1 and steps_with_refills(1.0, 0.01, 0.0, 3, minimum=4) == 4


@pytest.mark.parametrize("kw,match", [({"refill_seconds": -1.0}, "refill_seconds must be"),
                                      ({"refill_seconds": float("inf")}, "refill_seconds must be"),
                                      ({"refill_seconds": True}, "refill_seconds must be"),
                                      ({"steps_per_refill": 0}, "steps_per_refill must be"),
                                      ({"steps_per_refill": 2.0}, "steps_per_refill must be"),
                                      ({"steps_per_refill": True}, "steps_per_refill must be"),
                                      ({"seconds": -1.0}, "seconds must be"), ({"fill": 2.0}, "fill must be")])
def test_steps_with_refills_checks(kw, match):
    args = {"seconds": 10.0, "rate": 2.0, "refill_seconds": 1.0, "steps_per_refill": 4, **kw}
    with pytest.raises(ValueError, match=match):
        steps_with_refills(args.pop("seconds"), args.pop("rate"), args.pop("refill_seconds"),
                           args.pop("steps_per_refill"), **args)


# --------------------------------------------------------------------------- the RP-GAN recipe
def test_rpgan_time_budget_sizes_both_phases(tmp_path, monkeypatch, clock, capsys):
    """The fake clock runs 10 s for the pool and 4 s for each buffer filling, the probe says 0.5 steps/s."""
    import time as real_time

    from pnpdeblur.train import replay
    from pnpdeblur.train import rpgan as R

    monkeypatch.setattr(R, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, time=real_time.time))
    build_pool, refill = R.build_pool, replay.ReplayBuffer.refill

    def slow_pool(*a, **k):
        clock.now += 10.0
        return build_pool(*a, **k)

    def slow_refill(self, round):
        clock.now += 4.0
        return refill(self, round)

    monkeypatch.setattr(R, "build_pool", slow_pool)
    monkeypatch.setattr(replay.ReplayBuffer, "refill", slow_refill)
    probes = []

    def fake_rate(model, loss_fn, batch, **kw):
        assert isinstance(model, R.RPGANTrainModule) and callable(loss_fn)  # the networks as trained
        probes.append(({k: tuple(v.shape) for k, v in batch.items()}, kw))
        return 0.5

    monkeypatch.setattr(Bu, "measure_step_rate", fake_rate)
    out = tmp_path / "g.safetensors"
    base = ["--pretrain-steps", "1000", "--steps", "3000", "--batch", "2", "--crop", "16", "--pool", "3",
            "--buffer", "4", "--refresh-every", "1", "--val-items", "0", "--width", "4", "--n-res", "1",
            "--d-width", "4", "--cg-iters", "2", "--flows", "true", "--run-dir", str(tmp_path / "run"),
            "--no-progress", "--log-every", "0", "--ckpt-every", "0", "--device", "cpu", "--lr", "3e-4"]
    R.main(base + ["--out", str(out), "--time-budget", "100"])
    # one probe, on a batch of the first (level-1) buffer
    (shapes, kw), = probes
    assert shapes["deconv"] == (2, 3, 16, 16) and shapes["level"] == (2,) and kw == {"device": "cpu", "lr": 3e-4}
    header = read_header(out)
    # the pool ends at 110 s; level 1 gets 1/4 of the 90 s left, to 132.5 s, of which its first filling
    # takes 4: 18.5 s → 4 steps (8 s + one 4 s refill within 0.9 × 18.5 s). Its training refills once
    # (118 s at its end); the recurrent buffer is filled by 122 s: 78 s → 18 steps (36 s + 8 refills
    # = 68 s; 19 steps would take 74 s > 0.9 × 78 s).
    assert header["steps"] == {"level1": 4, "recurrent": 18}
    assert header["training"]["steps"] == 18 and header["training"]["time_limit_s"] == pytest.approx(78.0)
    assert header["training"]["decay_start"] == int(18 * 110 / 190)
    data = header["data"]
    assert data["time_budget_s"] == 100.0 and data["probe_steps_per_s"] == 0.5 and data["refill_s"] == [4.0, 4.0]
    assert data["stopped_by_time"] is False
    plans = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith('{"probe_steps_per_s"')]
    assert plans == ['{"probe_steps_per_s": 0.5, "refill_s": 4.0, "phase_seconds": 18.5, "steps": 4}',
                     '{"probe_steps_per_s": 0.5, "refill_s": 4.0, "phase_seconds": 78.0, "steps": 18}']
    # a level-1 phase with under a second still trains: 28 s leave it 0.5 s (1 step); the recurrent
    # phase then has 10 s: 2 steps
    R.main(base + ["--out", str(tmp_path / "s.safetensors"), "--time-budget", "28", "--run-dir", str(tmp_path / "r3")])
    assert read_header(tmp_path / "s.safetensors")["steps"] == {"level1": 1, "recurrent": 2}
    with pytest.raises(ValueError, match=r"^--time-budget 5 s leaves no time for this phase's training \(14\.0 s "
                                         r"spent on the pool, the buffers and the probe\): give a larger "
                                         r"--time-budget or a smaller --pool/--buffer$"):
        R.main(base + ["--out", str(tmp_path / "h.safetensors"), "--time-budget", "5",
                       "--run-dir", str(tmp_path / "run2")])
    with pytest.raises(SystemExit):
        R.parse_args(["--time-budget", "0"])
    with pytest.raises(SystemExit):
        R.parse_args(["--time-budget", "nan"])


# --------------------------------------------------------------------------- the DRUNet recipe
def test_drunet_time_budget_sizes_the_run(tmp_path, monkeypatch, clock):
    # the fake clock stands still: the 2 s limit never stops this run, however slow the machine
    import imageio.v3 as iio

    from pnpdeblur.train import drunet as R

    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        iio.imwrite(data / f"im{i}.png", (rng.random((24, 30, 3)) * 255).astype(np.uint8))
    probes = []

    def fake_rate(model, loss_fn, batch, **kw):
        probes.append((tuple(batch["clean"].shape), kw))
        return 5.0

    monkeypatch.setattr(Bu, "measure_step_rate", fake_rate)
    out = tmp_path / "w.safetensors"
    R.main(["--data", str(data), "--no-skimage", "--val-images", "1", "--val-items", "2", "--features", "4,4,4,4",
            "--blocks", "1", "--time-budget", "2", "--warmup", "0.25", "--batch", "2", "--crop", "16", "--lr", "1e-3",
            "--device", "cpu", "--ckpt-every", "0", "--run-dir", str(tmp_path / "run"), "--out", str(out),
            "--no-progress"])
    assert probes == [((2, 3, 16, 16), {"device": "cpu", "amp": False, "lr": 1e-3})]
    header = read_header(out)
    # floor(2 s × 5 steps/s × 0.9) = 9 steps; lr halved at 1/2, 3/4, 7/8 of them.
    assert header["steps"] == 9
    training = header["metadata"]["training"] if "metadata" in header else header["training"]
    assert training["steps"] == 9 and training["lr_milestones"] == [4, 6, 7]
    assert training["time_limit_s"] == 2.0
    assert training["warmup_steps"] == 2  # round(0.25 × 9): a fraction of the sized run
    prov = header["data"] if "data" in header else header["metadata"]["data"]
    assert prov["time_budget_s"] == 2.0 and prov["probe_steps_per_s"] == 5.0


def test_drunet_time_budget_must_be_positive(tmp_path):
    from pnpdeblur.train import drunet as R

    with pytest.raises(ValueError, match="--time-budget must be a finite number of seconds > 0, got 0.0"):
        R.main(["--features", "4,4,4,4", "--blocks", "1", "--time-budget", "0", "--device", "cpu",
                "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "w.safetensors"), "--no-progress"])


def test_drunet_warmup_counts_steps_and_is_checked(tmp_path):
    from pnpdeblur.train import drunet as R

    base = ["--features", "4,4,4,4", "--blocks", "1", "--steps", "3", "--batch", "2", "--crop", "16",
            "--device", "cpu", "--ckpt-every", "0", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    out = tmp_path / "w.safetensors"
    R.main(base + ["--warmup", "2", "--out", str(out)])
    header = read_header(out)
    training = header["metadata"]["training"] if "metadata" in header else header["training"]
    assert training["warmup_steps"] == 2
    with pytest.raises(ValueError, match="--warmup must be >= 0"):
        R.main(base + ["--warmup", "-1", "--out", str(tmp_path / "x.safetensors")])


# --------------------------------------------------------------------------- DDP (gloo)
DDP_LIMIT_SCRIPT = """
import sys, types, torch
sys.path.insert(0, {tests!r})
from test_train_budget import Data, linear
from pnpdeblur.train import Trainer, TrainConfig, distributed
from pnpdeblur.train import engine as E
torch.set_num_threads(1)
rank = int(__import__("os").environ["RANK"])
now = [0.0]
def tick():  # rank 0's clock runs 1 s a reading, rank 1's a thousand times slower
    now[0] += 1.0 if rank == 0 else 0.001
    return now[0]
E.time = types.SimpleNamespace(perf_counter=tick)
def loss_fn(model, batch):
    return ((model(batch["x"]).reshape(-1) - batch["y"]) ** 2).mean()
cfg = TrainConfig(steps=10, batch_size=2, lr=0.01, progress=False, device="cpu", log_every=0, time_limit_s=2.5)
tr = Trainer(linear(), cfg, Data(), loss_fn)
assert distributed.world_size() == 2
tr.fit()
open({out!r} + "/rank%d.txt" % rank, "w").write("%d %d" % (tr.step, tr.stopped_by_time))
"""


def _two_ranks(tmp_path, template: str):
    """Run ``template`` (formatted with the tests folder and ``tmp_path``) as 2 gloo ranks; each rank's file."""
    from _ddp import REPO, run_ranks

    script = tmp_path / "ddp_script.py"
    script.write_text(template.format(tests=str(REPO / "tests"), out=str(tmp_path)))
    run_ranks(script, tmp_path)
    return [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]


def test_ranks_stop_together_on_rank_zeros_clock(tmp_path):
    got = _two_ranks(tmp_path, DDP_LIMIT_SCRIPT)
    # rank 0 reads its clock once at the start and once a step: 2.5 s are spent at step 3;
    # rank 1 (0.003 s by then) stops with it instead of waiting in a collective.
    assert got == ["3 1", "3 1"], got


def test_sen_time_budget_sizes_the_run(tmp_path, monkeypatch, clock):
    # the fake clock stands still: the 2 s limit never stops this run, however slow the machine
    from pnpdeblur.train import sen as S

    probes = []

    def fake_rate(model, loss_fn, batch, **kw):
        probes.append(({k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape")}, kw))
        return 5.0

    monkeypatch.setattr(Bu, "measure_step_rate", fake_rate)
    out = tmp_path / "sen.safetensors"
    S.main(["--batch", "2", "--crop", "32", "--width", "2", "--levels", "1", "--val-items", "2", "--device", "cpu",
            "--no-progress", "--run-dir", str(tmp_path / "run"), "--out", str(out), "--time-budget", "2",
            "--lr", "0.002"])
    (shapes, kw), = probes
    assert shapes["sharp"] == (2, 3, 32, 32) and shapes["flow"] == (2, 2, 32, 32)  # one training batch
    assert kw == {"device": "cpu", "amp": False, "lr": 0.002}
    header = read_header(out)
    training = header["metadata"]["training"] if "metadata" in header else header["training"]
    # floor(2 s × 5 steps/s × 0.9) = 9 steps; the lr decays from 50/90 of them, step 5
    assert header["steps"] == 9 and training["steps"] == 9 and training["decay_start"] == 5
    assert training["time_limit_s"] == 2.0
    prov = header["data"] if "data" in header else header["metadata"]["data"]
    assert prov["time_budget_s"] == 2.0 and prov["probe_steps_per_s"] == 5.0 and prov["stopped_by_time"] is False


DDP_BUDGET_SCRIPT = """
import argparse, atexit, os, sys, torch
import torch.distributed as dist
# registered before the group exists, so it runs after the library's own exit hook (LIFO):
# whether the group is gone, and whether rank 1 (late, below) had reached its end by then
atexit.register(lambda: open({out!r} + "/exit%s.txt" % os.environ["RANK"], "w").write(
    "%s %s" % (dist.is_initialized(), os.path.exists({out!r} + "/late.txt"))))
sys.path.insert(0, {tests!r})
from test_train_budget import linear
from pnpdeblur.train import budget as Bu, distributed
from pnpdeblur.train._cli import budgeted_steps
torch.set_num_threads(1)
rank = int(os.environ["RANK"])
Bu.measure_step_rate = lambda *a, **k: 5.0 if rank == 0 else 50.0  # rank 1 probes ten times faster
args = argparse.Namespace(time_budget=2.0, steps=1000, device="cpu", lr=1e-3)
steps, rate = budgeted_steps(args, linear(), None, lambda: None)
assert distributed.world_size() == 2
open({out!r} + "/rank%d.txt" % rank, "w").write("%d %g" % (steps, rate))
if rank == 1:
    __import__("time").sleep(2.0)
    open({out!r} + "/late.txt", "w").write("")
"""


def test_ranks_train_rank_zeros_step_count(tmp_path):
    got = _two_ranks(tmp_path, DDP_BUDGET_SCRIPT)
    # floor(2 s × 5 steps/s × 0.9) = 9 on both ranks (rank 1's own probe would give 90)
    assert got == ["9 5", "9 5"], got
    # the group the library made was destroyed before the interpreter ended (an abort otherwise),
    # and rank 0 waited for the late rank 1 to reach its exit before tearing its side down
    assert [(tmp_path / f"exit{r}.txt").read_text() for r in range(2)] == ["False True", "False True"]


def test_rank0_value_in_one_process_is_the_value():
    from pnpdeblur.train import distributed

    obj = {"steps": 3}
    assert distributed.rank0_value(obj) is obj
    assert distributed.init_for_device(torch.device("cpu")) is False


# --------------------------------------------------------------------------- the shared CLI pieces
def test_time_budget_option_default_metavar_and_help(capsys, monkeypatch):
    import argparse

    from pnpdeblur.train._cli import add_time_budget_argument

    monkeypatch.setenv("COLUMNS", "300")
    ap = argparse.ArgumentParser(prog="r")
    add_time_budget_argument(ap)
    assert ap.parse_args([]).time_budget is None and ap.parse_args(["--time-budget", "2.5"]).time_budget == 2.5
    text = " ".join(ap.format_help().split())
    assert ("--time-budget SECONDS train for about this long: a short probe measures the step rate and sets "
            "--steps to fill 90% of it; training stops at this time regardless") in text
    own = argparse.ArgumentParser(prog="r")
    add_time_budget_argument(own, help="a recipe's own words")
    assert "--time-budget SECONDS a recipe's own words" in " ".join(own.format_help().split())


def test_budgeted_steps_probes_the_model_and_reports_the_plan(monkeypatch, capsys):
    import argparse

    from pnpdeblur.train._cli import budgeted_steps

    seen = []
    monkeypatch.setattr(Bu, "measure_step_rate", lambda model, loss_fn, batch, **kw: seen.append(
        (model, loss_fn, batch, kw)) or 4.567)
    model, loss, batch = linear(), (lambda m, b: b), {"x": torch.ones(1)}
    args = argparse.Namespace(time_budget=0.5, steps=1000, device="cpu", lr=3e-3, amp=True)
    # floor(0.5 s × 4.567 /s × 0.9) = 2: a sub-second budget works
    assert budgeted_steps(args, model, loss, lambda: batch) == (2, 4.567)
    (m, lf, b, kw), = seen
    assert m is model and lf is loss and b is batch and kw == {"device": "cpu", "amp": True, "lr": 3e-3}
    assert capsys.readouterr().out == '{"probe_steps_per_s": 4.57, "steps": 2}\n'
    del args.amp  # a recipe without --amp probes without it
    budgeted_steps(args, model, loss, lambda: batch)
    assert seen[-1][3]["amp"] is False
    args.time_budget = None  # no budget: the given steps, no probe
    assert budgeted_steps(args, model, loss, lambda: batch) == (1000, None) and len(seen) == 2
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        args.time_budget = bad
        with pytest.raises(ValueError, match="--time-budget must be a finite number of seconds > 0"):
            budgeted_steps(args, model, loss, lambda: batch)


def test_init_for_device_picks_the_backend_only_for_several_processes(monkeypatch):
    from pnpdeblur.train import distributed as D

    calls = []
    monkeypatch.setattr(D, "init_distributed", lambda backend=None: calls.append(backend) or True)
    monkeypatch.setattr(D, "env_world_size", lambda: 1)
    assert D.init_for_device(torch.device("cpu")) is False and calls == []  # one process: nothing to join
    monkeypatch.setattr(D, "env_world_size", lambda: 2)
    assert D.init_for_device(torch.device("cpu")) is True and calls == ["gloo"]
    assert D.init_for_device("cuda:1") is True and calls == ["gloo", "nccl"]
    monkeypatch.setattr(D, "env_world_size", lambda: 1)
    monkeypatch.setattr(D, "is_distributed", lambda: True)  # already in a group: init_distributed says so
    assert D.init_for_device(torch.device("cpu")) is True and calls == ["gloo", "nccl", "gloo"]


def test_steps_with_refills_checks_minimum_like_steps_for_budget():
    with pytest.raises(ValueError, match="minimum must be"):
        steps_with_refills(10.0, 2.0, 1.0, 4, minimum=0)
