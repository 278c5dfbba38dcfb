"""TrainConfig (pnpdeblur.train.config) directly: every field's check, its boundary, the exact
error message, the normalisation of JSON/path inputs and the dict round trip."""
import json
import re
from pathlib import Path

import pytest

from pnpdeblur.train.config import TrainConfig


def msg(text):
    """A ``match`` pattern for exactly ``text`` (from the start to the end of the message)."""
    return "^" + re.escape(text) + "$"


# --------------------------------------------------------------------------- defaults
def test_defaults_are_the_documented_ones():
    c = TrainConfig()
    assert (c.steps, c.batch_size, c.lr, c.betas, c.eps, c.weight_decay) == (1000, 16, 1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert (c.warmup_steps, c.decay_start, c.lr_end, c.lr_milestones, c.lr_gamma) == (0, None, None, (), 0.1)
    assert (c.grad_clip, c.amp, c.compile, c.seed, c.num_workers, c.device) == (None, False, False, 0, 0, "auto")
    assert (c.log_every, c.val_every, c.ckpt_every, c.out_dir, c.progress, c.amp_dtype) == (50, 0, 0, None, True, None)


# --------------------------------------------------------------------------- integers
INT_FIELDS = [("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("decay_start", 0), ("seed", 0),
              ("num_workers", 0), ("log_every", 0), ("val_every", 0), ("ckpt_every", 0)]


@pytest.mark.parametrize("name, low", INT_FIELDS)
def test_integer_fields_lower_bound_and_type(name, low):
    base = {"steps": 10, "warmup_steps": 0}
    c = TrainConfig(**{**base, name: low})  # the bound itself is accepted
    assert getattr(c, name) == low
    with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be >= {low}, got {low - 1}")):
        TrainConfig(**{**base, name: low - 1})
    for bad in (2.0, True, "3", None if name != "decay_start" else "x"):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be an int, got {bad!r} ({type(bad).__name__})")):
            TrainConfig(**{**base, name: bad})


def test_numpy_integers_are_ints():
    np = pytest.importorskip("numpy")
    c = TrainConfig(steps=np.int64(5), batch_size=np.int32(2))
    assert c.steps == 5 and c.batch_size == 2


def test_warmup_and_decay_start_at_most_steps():
    TrainConfig(steps=5, warmup_steps=5, decay_start=5)  # equal is fine
    with pytest.raises(ValueError, match=msg("TrainConfig.warmup_steps (6) must be <= steps (5)")):
        TrainConfig(steps=5, warmup_steps=6)
    with pytest.raises(ValueError, match=msg("TrainConfig.decay_start (6) must be <= steps (5)")):
        TrainConfig(steps=5, decay_start=6)


# --------------------------------------------------------------------------- reals
@pytest.mark.parametrize("name", ["lr", "eps", "lr_gamma", "grad_clip"])
def test_positive_reals(name):
    assert getattr(TrainConfig(**{name: 1e-300}), name) == 1e-300
    assert getattr(TrainConfig(**{name: 2}), name) == 2  # ints are numbers
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be > 0, got {bad}")):
            TrainConfig(**{name: bad})
    for bad in (float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be a finite number, got {bad!r}")):
            TrainConfig(**{name: bad})


@pytest.mark.parametrize("name", ["weight_decay", "lr_end"])
def test_non_negative_reals(name):
    assert getattr(TrainConfig(**{name: 0.0}), name) == 0.0
    with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be >= 0, got -1e-12")):
        TrainConfig(**{name: -1e-12})
    for bad in (float("-inf"), None if name == "weight_decay" else float("nan"), False):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be a finite number, got {bad!r}")):
            TrainConfig(**{name: bad})


def test_optional_reals_accept_none():
    c = TrainConfig(lr_end=None, grad_clip=None)
    assert c.lr_end is None and c.grad_clip is None


def test_betas():
    assert TrainConfig(betas=(0.0, 0.0)).betas == (0.0, 0.0)
    assert TrainConfig(betas=[0.5, 0.25]).betas == (0.5, 0.25)  # JSON list -> tuple
    for bad in ((0.9,), (0.9, 0.99, 0.999), "ab", 0.9):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.betas must be a pair of floats, got {bad!r}")):
            TrainConfig(betas=bad)
    for bad in ((1.0, 0.9), (0.9, 1.0), (0.9, 1.5)):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.betas must lie in [0, 1), got {bad!r}")):
            TrainConfig(betas=bad)
    with pytest.raises(ValueError, match=msg("TrainConfig.betas must be >= 0, got -0.1")):
        TrainConfig(betas=(0.9, -0.1))
    with pytest.raises(ValueError, match=msg("TrainConfig.betas must be a finite number, got nan")):
        TrainConfig(betas=(float("nan"), 0.9))


# --------------------------------------------------------------------------- milestones
def test_milestones():
    assert TrainConfig(steps=10, lr_milestones=[1, 10]).lr_milestones == (1, 10)  # list -> tuple, ends included
    for bad in ((1.5,), (True,), ("3",), 3, "12"):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.lr_milestones must be a tuple of ints, got {bad!r}")):
            TrainConfig(steps=10, lr_milestones=bad)
    for bad in ((0,), (11,), (5, 3), (3, 3), (-1, 4)):
        with pytest.raises(ValueError, match=msg(
                f"TrainConfig.lr_milestones must be increasing ints in (0, steps=10], got {bad!r}")):
            TrainConfig(steps=10, lr_milestones=bad)


# --------------------------------------------------------------------------- flags, amp, device, out_dir
@pytest.mark.parametrize("name", ["amp", "compile", "progress"])
def test_flags(name):
    assert getattr(TrainConfig(**{name: True}), name) is True
    assert getattr(TrainConfig(**{name: False}), name) is False
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match=msg(f"TrainConfig.{name} must be a bool, got {bad!r}")):
            TrainConfig(**{name: bad})


def test_amp_dtype():
    for ok in (None, "bfloat16", "float16"):
        assert TrainConfig(amp_dtype=ok).amp_dtype == ok
    with pytest.raises(ValueError, match=msg(
            "TrainConfig.amp_dtype must be one of (None, 'bfloat16', 'float16'), got 'float32'")):
        TrainConfig(amp_dtype="float32")


def test_device():
    for ok in ("auto", "cpu", "cuda", "cuda:1", "meta"):  # torch.device parses names without a GPU
        assert TrainConfig(device=ok).device == ok
    with pytest.raises(ValueError, match=msg("TrainConfig.device must be a str, got 0")):
        TrainConfig(device=0)
    with pytest.raises(ValueError, match=r"^TrainConfig\.device: unknown device 'gpu7' \(.+\)$"):
        TrainConfig(device="gpu7")


def test_out_dir_is_normalised_to_str():
    assert TrainConfig(out_dir=Path("/tmp/a/b")).out_dir == "/tmp/a/b"
    assert TrainConfig(out_dir="rel").out_dir == "rel"
    c = TrainConfig()
    c.out_dir = 3  # set after construction: validate() itself must refuse it
    with pytest.raises(ValueError, match=msg("TrainConfig.out_dir must be a str or None, got 3")):
        c.validate()


def test_validate_checks_the_current_values():
    c = TrainConfig(steps=3)
    c.steps = 0
    with pytest.raises(ValueError, match=msg("TrainConfig.steps must be >= 1, got 0")):
        c.validate()


# --------------------------------------------------------------------------- world size
def test_world_size():
    c = TrainConfig(batch_size=6)
    c.validate()  # default 1
    c.validate(world_size=1)
    c.validate(world_size=6)
    c.validate(world_size=2)
    with pytest.raises(ValueError, match=msg(
            "TrainConfig.batch_size (6) must be divisible by the number of processes (4)")):
        c.validate(world_size=4)
    for bad in (0, -2, True, 2.0, "2"):
        with pytest.raises(ValueError, match=msg(f"world_size must be an int >= 1, got {bad!r}")):
            c.validate(world_size=bad)


# --------------------------------------------------------------------------- round trip
def test_to_dict_and_back():
    c = TrainConfig(steps=9, batch_size=3, betas=(0.5, 0.75), lr_milestones=(2, 4), out_dir=Path("o"), seed=4)
    d = c.to_dict()
    assert d["betas"] == [0.5, 0.75] and d["lr_milestones"] == [2, 4] and d["out_dir"] == "o"
    assert type(d["betas"]) is list and type(d["lr_milestones"]) is list
    assert set(d) == {f for f in TrainConfig.__dataclass_fields__}
    assert json.loads(json.dumps(d)) == d
    back = TrainConfig.from_dict(json.loads(json.dumps(d)))
    assert back == c and back.betas == (0.5, 0.75) and back.lr_milestones == (2, 4)
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_from_dict_errors():
    known = sorted(TrainConfig.__dataclass_fields__)
    with pytest.raises(ValueError, match=msg(
            f"TrainConfig.from_dict: unknown keys ['a', 'b'] (known: {known})")):
        TrainConfig.from_dict({"b": 1, "steps": 3, "a": 2})
    with pytest.raises(TypeError, match=msg("TrainConfig.from_dict expects a mapping, got list")):
        TrainConfig.from_dict([("steps", 3)])
    with pytest.raises(ValueError, match=msg("TrainConfig.steps must be >= 1, got 0")):
        TrainConfig.from_dict({"steps": 0})
