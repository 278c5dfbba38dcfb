"""torch.distributed helpers (pnpdeblur.train.distributed) directly, in one process: the
environment parsing, the arguments init_distributed passes on (recorded, not run), and the
collectives on a real one-process gloo group."""
import datetime
import re
import socket

import pytest
import torch
import torch.distributed as dist

from pnpdeblur.train import distributed as D


def msg(text):
    return "^" + re.escape(text) + "$"


@pytest.fixture
def env(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_env_world_size(env):
    assert D.env_world_size() == 1
    for text, ws in (("3", 3), ("1", 1), ("0", 1), ("-2", 1)):
        env.setenv("WORLD_SIZE", text)
        assert D.env_world_size() == ws
    env.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=msg("WORLD_SIZE environment variable is not an int: 'two'")):
        D.env_world_size()


def test_single_process_defaults(env):
    assert not D.is_distributed()
    assert D.world_size() == 1 and D.rank() == 0 and D.is_main_process()
    assert D.local_rank() == 0
    env.setenv("LOCAL_RANK", "3")
    assert D.local_rank() == 3
    D.barrier()  # no-op
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert D.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert D.shard("abc") == ["a", "b", "c"] and D.shard(range(3)) == [0, 1, 2]
    assert D.init_distributed() is False  # WORLD_SIZE absent: nothing to do
    assert D.init_distributed(world_size=1) is False
    assert not D.is_distributed()


def test_shard_takes_every_world_size_th_item(monkeypatch):
    monkeypatch.setattr(D, "rank", lambda: 1)
    monkeypatch.setattr(D, "world_size", lambda: 3)
    assert D.shard(list(range(8))) == [1, 4, 7]
    assert not D.is_main_process()


@pytest.fixture
def recorded(env):
    calls = []
    env.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    env.setattr(D, "is_distributed", lambda: False)
    return calls


def test_init_distributed_arguments(env, recorded):
    env.setenv("WORLD_SIZE", "4")
    env.setenv("RANK", "2")
    env.setenv("MASTER_PORT", "29999")
    assert D.init_distributed(backend="gloo") is True
    assert recorded == [dict(backend="gloo", rank=2, world_size=4, timeout=datetime.timedelta(seconds=1800.0))]
    import os

    assert os.environ["MASTER_ADDR"] == "127.0.0.1"  # a default address
    env.setenv("MASTER_ADDR", "10.0.0.5")
    assert D.init_distributed(backend="gloo", rank=1, world_size=3, timeout_s=60) is True
    assert recorded[-1] == dict(backend="gloo", rank=1, world_size=3, timeout=datetime.timedelta(seconds=60))
    assert os.environ["MASTER_ADDR"] == "10.0.0.5"  # kept
    # the override world_size=1 wins over the environment's 4
    assert D.init_distributed(world_size=1) is False and len(recorded) == 2
    env.delenv("RANK")
    D.init_distributed(backend="gloo")
    assert recorded[-1]["rank"] == 0
    if not torch.cuda.is_available():
        D.init_distributed()  # default backend without CUDA
        assert recorded[-1]["backend"] == "gloo"


def test_init_distributed_destroys_its_group_at_exit_once(env, recorded):
    hooks = []
    env.setattr(D.atexit, "register", lambda f: hooks.append(f))
    env.setattr(D, "_EXIT_HOOK", False)
    env.setenv("MASTER_PORT", "29999")
    assert D.init_distributed(backend="gloo", world_size=2, rank=0) is True
    assert D.init_distributed(backend="gloo", world_size=2, rank=1) is True
    assert hooks == [D._destroy_at_exit] and len(recorded) == 2
    assert D.init_distributed(world_size=1) is False and hooks == [D._destroy_at_exit]


def test_destroy_at_exit_takes_down_a_live_group_only(env):
    D._destroy_at_exit()  # no group: nothing to do
    assert not D.is_distributed()
    env.setenv("MASTER_PORT", str(free_port()))
    env.setenv("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group(backend="gloo", rank=0, world_size=1)
    assert D.is_distributed()
    D._destroy_at_exit()
    assert not D.is_distributed()


def test_destroy_at_exit_waits_for_the_ranks_then_destroys_even_if_that_fails(env):
    env.setenv("MASTER_PORT", str(free_port()))
    env.setenv("MASTER_ADDR", "127.0.0.1")
    calls = []

    def failing_barrier(**kw):
        calls.append(kw)
        raise RuntimeError("peer gone")

    env.setattr(dist, "monitored_barrier", failing_barrier)
    dist.init_process_group(backend="gloo", rank=0, world_size=1)
    D._destroy_at_exit()
    assert calls == [dict(timeout=datetime.timedelta(seconds=D.EXIT_BARRIER_TIMEOUT_S), wait_all_ranks=True)]
    assert not D.is_distributed()


def test_the_ddp_harness_retries_only_runtime_aborts_and_busy_ports():
    from _ddp import _transient

    abort = "terminate called without an active exception\n"
    assert _transient([0, -6], ["", abort])
    assert _transient([1, 1], ["RuntimeError: Address already in use", ""])
    assert not _transient([0, 1], ["", "Traceback (most recent call last):\nAssertionError"])
    assert not _transient([0, -6], ["", "Traceback (most recent call last):\n" + abort])  # a Python error first
    assert not _transient([0, -11], ["", abort])  # a segfault is not the teardown abort
    assert not _transient([0, 0], ["", ""])


def test_init_distributed_nccl_binds_the_local_gpu(env, recorded):
    bound = []
    env.setattr(torch.cuda, "set_device", lambda i: bound.append(i))
    env.setenv("LOCAL_RANK", "1")
    env.setenv("MASTER_PORT", "1")
    D.init_distributed(backend="nccl", world_size=2, rank=0)
    assert bound == [1] and recorded[-1]["backend"] == "nccl"
    if torch.cuda.is_available():  # pragma: no cover - GPU machines
        D.init_distributed(world_size=2, rank=0)
        assert recorded[-1]["backend"] == "nccl"


def test_init_distributed_needs_a_master_port(env, recorded):
    env.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=msg("init_distributed: MASTER_PORT is not set (launch with torchrun)")):
        D.init_distributed(backend="gloo")
    assert recorded == []


def test_init_distributed_without_torch_distributed(env):
    env.setattr(dist, "is_available", lambda: False)
    assert not D.is_distributed()
    with pytest.raises(RuntimeError, match=msg("torch.distributed is not available in this build of PyTorch")):
        D.init_distributed(world_size=2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_helpers_inside_a_one_process_group(env):
    env.setenv("MASTER_PORT", str(free_port()))
    env.setenv("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group(backend="gloo", rank=0, world_size=1)
    try:
        assert D.is_distributed()
        assert D.init_distributed() is True  # already initialised: nothing else done
        assert D.world_size() == 1 and D.rank() == 0 and D.is_main_process()
        D.barrier()
        t = torch.tensor([1.5, -2.0])
        assert D.all_reduce_sum(t) is t and t.tolist() == [1.5, -2.0]
        assert D.all_gather_objects(("x", 3)) == [("x", 3)]
        assert D.shard([5, 6]) == [5, 6]
    finally:
        dist.destroy_process_group()
    assert not D.is_distributed()


def test_rank_and_world_size_come_from_the_group(monkeypatch):
    # a 3-process group seen from rank 2, without starting processes
    monkeypatch.setattr(D, "is_distributed", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 3)
    monkeypatch.setattr(dist, "get_rank", lambda: 2)
    assert D.world_size() == 3 and D.rank() == 2 and not D.is_main_process()
    assert D.shard(list(range(7))) == [2, 5]


def test_default_backend_with_cuda_is_nccl(env, recorded):
    bound = []
    env.setattr(torch.cuda, "is_available", lambda: True)
    env.setattr(torch.cuda, "set_device", lambda i: bound.append(i))
    env.setenv("MASTER_PORT", "1")
    env.setenv("LOCAL_RANK", "2")
    D.init_distributed(world_size=4, rank=3)
    assert recorded[-1]["backend"] == "nccl" and bound == [2]
