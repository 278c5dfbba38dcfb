"""Direct tests of pnpdeblur.train.state: RNG capture/restore, seeding, the training-state file.

Fast (no training): also the selection for ``make mutation`` of the module. Every RNG test
draws from all three global generators (torch, numpy's legacy one, python's ``random``),
including the cached second Gaussian of numpy and python, which a state that forgets
``has_gauss``/``cached_gaussian``/``gauss_next`` would lose.
"""
import os
import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.train.state import (
    FORMAT,
    VERSION,
    derive_seed,
    get_rng_state,
    has_state,
    load_training_state,
    save_training_state,
    seed_everything,
    set_rng_state,
)


class Opaque:
    """A python object that ``torch.load(weights_only=True)`` must refuse."""

    def __init__(self, v=1):
        self.v = v


def _draw():
    """Draws from every global RNG, Gaussians included (they use the cached second value)."""
    return (torch.rand(3).tolist(), torch.randn(1).item(), np.random.rand(2).tolist(), np.random.standard_normal(),
            random.random(), random.gauss(0, 1), random.getrandbits(64))


def _leave_cached_gaussians():
    """An odd number of Box–Muller draws leaves a cached Gaussian in numpy and python."""
    np.random.standard_normal()
    random.gauss(0, 1)


def test_rng_state_round_trip_with_cached_gaussians():
    seed_everything(11)
    _leave_cached_gaussians()
    state = get_rng_state()
    assert state["numpy"]["has_gauss"] == 1 and state["python"]["gauss_next"] is not None
    first = _draw()
    _draw()  # move every generator on
    set_rng_state(state)
    assert _draw() == first


def test_rng_state_is_plain_values():
    seed_everything(3)
    _leave_cached_gaussians()
    s = get_rng_state(torch.device("cpu"))
    assert set(s) == {"torch", "cuda", "numpy", "python"} and s["cuda"] is None
    assert s["torch"].dtype == torch.uint8 and torch.equal(s["torch"], torch.get_rng_state())
    name, keys, pos, has_gauss, cached = np.random.get_state()
    n = s["numpy"]
    assert set(n) == {"keys", "pos", "has_gauss", "cached_gaussian"}
    assert n["keys"].dtype == torch.int64 and n["keys"].shape == (624,)
    assert np.array_equal(n["keys"].numpy(), keys.astype(np.int64))
    assert type(n["pos"]) is int and n["pos"] == pos
    assert type(n["has_gauss"]) is int and n["has_gauss"] == has_gauss == 1
    assert type(n["cached_gaussian"]) is float and n["cached_gaussian"] == cached
    version, internal, gauss_next = random.getstate()
    p = s["python"]
    assert set(p) == {"version", "internal", "gauss_next"}
    assert type(p["version"]) is int and p["version"] == version
    assert type(p["internal"]) is list and len(p["internal"]) == 625 and tuple(p["internal"]) == internal
    assert all(type(i) is int for i in p["internal"])
    assert p["gauss_next"] == gauss_next and p["gauss_next"] is not None


def test_rng_state_survives_the_training_state_file(tmp_path):
    seed_everything(5)
    _leave_cached_gaussians()
    state = get_rng_state()
    first = _draw()
    p = save_training_state(tmp_path / "last.pt", {"rng": state, "step": 4})
    _draw()
    back = load_training_state(p)
    assert back["step"] == 4
    set_rng_state(back["rng"])
    assert _draw() == first


def test_rng_state_without_cuda_on_a_cuda_device_argument():
    # CUDA is not initialised here: no CUDA generator is read or written, whatever the device
    seed_everything(2)
    state = get_rng_state(torch.device("cuda"))
    assert state["cuda"] is None
    first = _draw()
    set_rng_state(state, torch.device("cuda"))
    assert _draw() == first
    set_rng_state({**state, "cuda": torch.zeros(8, dtype=torch.uint8)}, None)  # no device: cuda ignored
    assert _draw() == first
    set_rng_state({**state, "cuda": torch.zeros(8, dtype=torch.uint8)}, torch.device("cpu"))
    assert _draw() == first


def test_set_rng_state_accepts_a_state_without_cuda_entry():
    seed_everything(9)
    state = get_rng_state()
    first = _draw()
    del state["cuda"]
    set_rng_state(state, torch.device("cuda"))
    assert _draw() == first


def test_seed_everything_seeds_all_three_generators():
    seed_everything(1234)
    got = (torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random())
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    assert got == (torch.rand(2).tolist(), np.random.rand(2).tolist(), random.random())


@pytest.mark.parametrize("seed, same_as", [(2**32 + 7, 7), (-1, 2**32 - 1), (5.0, 5), (np.int64(3), 3)])
def test_seed_everything_reduces_modulo_two_to_the_32(seed, same_as):
    seed_everything(seed)
    a = _draw()
    seed_everything(same_as)
    assert _draw() == a
    seed_everything(same_as + 1)
    assert _draw() != a


def test_derive_seed_is_numpys_seed_sequence():
    for keys in [(0,), (7, 0, 3), (2**40, 1), (1, 2, 3, 4, 5)]:
        got = derive_seed(*keys)
        assert type(got) is int and 0 <= got < 2**32
        assert got == int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint32)[0])
    seeds = {derive_seed(1, r, e) for r in range(4) for e in range(4)}
    assert len(seeds) == 16  # rank and epoch both change the stream
    assert derive_seed(1, 2) != derive_seed(2, 1)
    assert derive_seed(True, 2.0) == derive_seed(1, 2)  # converted with int()


# ---------------------------------------------------------------------------------- the file


def test_save_training_state_writes_atomically_a_tagged_file(tmp_path):
    p = tmp_path / "run" / "sub" / "last.pt"
    out = save_training_state(p, {"step": 3, "w": torch.arange(3.0)})
    assert out == p and p.is_file()
    assert sorted(os.listdir(p.parent)) == ["last.pt"]  # the temporary file was renamed
    raw = torch.load(p, weights_only=True)
    assert raw["format"] == FORMAT == "pnpdeblur-train-state" and raw["version"] == VERSION == 1
    assert raw["step"] == 3 and torch.equal(raw["w"], torch.arange(3.0))
    save_training_state(p, {"step": 4})  # replaces the old one
    assert load_training_state(p) == {"format": FORMAT, "version": VERSION, "step": 4}


def test_save_training_state_failure_keeps_the_old_file(tmp_path):
    p = save_training_state(tmp_path / "last.pt", {"step": 1})
    with pytest.raises(Exception):
        save_training_state(p, {"step": 2, "bad": lambda: 0})  # cannot be pickled
    assert load_training_state(p)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]  # and no half-written temporary is left behind


def test_load_training_state_missing(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match="^" + re.escape(f"training state not found: {tmp_path / 'x.pt'}") + "$"):
        load_training_state(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="^training state not found: "):
        load_training_state(str(tmp_path))  # a folder


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip"])
def test_load_training_state_corrupt(tmp_path, content):
    p = tmp_path / "last.pt"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="^" + re.escape(f"{p} is not a readable training state (corrupt?): ")) as e:
        load_training_state(str(p))
    assert e.value.__cause__ is not None


def test_load_training_state_truncated(tmp_path):
    p = save_training_state(tmp_path / "last.pt", {"w": torch.zeros(100)})
    p.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"is not a readable training state \(corrupt\?\)"):
        load_training_state(p)


def test_load_training_state_refuses_pickled_objects(tmp_path):
    p = tmp_path / "last.pt"
    torch.save({"format": FORMAT, "version": VERSION, "obj": Opaque()}, p)  # arbitrary code on load
    with pytest.raises(ValueError, match="^" + re.escape(f"{p} is not a readable training state (corrupt?): ")):
        load_training_state(p)


@pytest.mark.parametrize("obj", [[1, 2], {"version": 1}, {"format": "other", "version": 1}, torch.zeros(2)])
def test_load_training_state_foreign_files(tmp_path, obj):
    p = tmp_path / "last.pt"
    torch.save(obj, p)
    with pytest.raises(ValueError, match="^" + re.escape(f"{p} is not a pnpdeblur training state") + "$"):
        load_training_state(p)


@pytest.mark.parametrize("version", [2, 0, None])
def test_load_training_state_other_versions(tmp_path, version):
    p = tmp_path / "last.pt"
    obj = {"format": FORMAT, "step": 1}
    if version is not None:
        obj["version"] = version
    torch.save(obj, p)
    with pytest.raises(ValueError, match="^" + re.escape(
            f"{p}: training-state version {version} is not supported (want {VERSION})") + "$"):
        load_training_state(p)


def test_has_state():
    class Both:
        def state_dict(self):
            return {}

        def load_state_dict(self, d):
            pass

    class OnlySave:
        def state_dict(self):
            return {}

    class OnlyLoad:
        def load_state_dict(self, d):
            pass

    class NotCallable:
        state_dict = {}
        load_state_dict = None

    class LoadNotCallable(OnlySave):
        load_state_dict = 3

    assert has_state(Both()) and has_state(nn.Linear(1, 1))
    assert has_state(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1))
    for obj in (OnlySave(), OnlyLoad(), NotCallable(), LoadNotCallable(), [1], None, {"state_dict": 1}):
        assert has_state(obj) is False, obj
    assert has_state(Both()) is True


def test_cuda_generator_is_saved_and_restored_only_for_a_cuda_device(monkeypatch):
    # no GPU here: torch.cuda's generator functions are replaced by recorders, CUDA "in use"
    calls = []
    cuda_state = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": calls.append(("get", device)) or cuda_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": calls.append(("set", s, device)))
    dev = torch.device("cuda", 1)
    state = get_rng_state(dev)
    assert calls == [("get", dev)] and torch.equal(state["cuda"], cuda_state)
    assert get_rng_state(torch.device("cpu"))["cuda"] is None and get_rng_state()["cuda"] is None
    assert len(calls) == 1
    set_rng_state(state, dev)
    assert len(calls) == 2 and calls[1][0] == "set" and calls[1][2] == dev
    assert torch.equal(calls[1][1], cuda_state)
    set_rng_state(state, torch.device("cpu"))  # a CPU run ignores a saved CUDA state
    set_rng_state(state, None)
    set_rng_state({**state, "cuda": None}, dev)  # nothing saved: nothing restored
    assert len(calls) == 2
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert get_rng_state(dev)["cuda"] is None and len(calls) == 2  # CUDA not in use: not touched


def test_a_crashed_saves_temporary_is_replaced(tmp_path):
    (tmp_path / "last.pt.tmp").write_bytes(b"half a file")  # what a crash during torch.save leaves
    p = save_training_state(tmp_path / "last.pt", {"step": 5})
    assert sorted(os.listdir(tmp_path)) == ["last.pt"] and load_training_state(p)["step"] == 5


def test_loading_stays_safe_when_the_environment_allows_pickles(tmp_path, monkeypatch):
    # torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only where weights_only is not given explicitly
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    p = tmp_path / "last.pt"
    torch.save({"format": FORMAT, "version": VERSION, "obj": Opaque()}, p)
    with pytest.raises(ValueError, match="^" + re.escape(f"{p} is not a readable training state (corrupt?): ")):
        load_training_state(p)


def test_a_state_written_on_a_gpu_resumes_on_the_cpu(tmp_path, monkeypatch):
    # every storage tagged cuda:0, as torch.save writes it on a GPU (no GPU here)
    import torch.serialization as ts

    p = tmp_path / "last.pt"
    with monkeypatch.context() as m:
        m.setattr(ts, "_package_registry", [(0, lambda s: "cuda:0", lambda s, loc: None)] + list(ts._package_registry))
        save_training_state(p, {"w": torch.arange(3.0)})
    with pytest.raises(RuntimeError, match="CUDA"):  # what torch.load does without a map_location
        torch.load(p, weights_only=True)
    back = load_training_state(p)
    assert back["w"].device.type == "cpu" and torch.equal(back["w"], torch.arange(3.0))
