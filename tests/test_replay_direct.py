"""RP-GAN's replay buffer (pnpdeblur.train.replay) directly: largest-remainder level counts by
hand, the producer's output checks with their messages, refilling by round, and both kinds of
saved state."""
import re

import pytest
import torch

from pnpdeblur.train.replay import PAPER_PROPORTIONS, ReplayBuffer, level_counts


def msg(text):
    return "^" + re.escape(text) + "$"


# --------------------------------------------------------------------------- level_counts
def test_paper_proportions():
    assert PAPER_PROPORTIONS == (0.5, 0.3, 0.2)
    assert level_counts(1000, PAPER_PROPORTIONS) == [500, 300, 200]


def test_largest_remainder_by_hand():
    # 10·(0.5, 0.3, 0.2)/1: exact
    assert level_counts(10, (5, 3, 2)) == [5, 3, 2]
    # 7·(0.5, 0.3, 0.2) = 3.5, 2.1, 1.4: floors 3, 2, 1 (sum 6); the largest remainder is 0.5 -> level 1
    assert level_counts(7, PAPER_PROPORTIONS) == [4, 2, 1]
    # 8·(.5,.3,.2) = 4, 2.4, 1.6: floors 4, 2, 1; remainder 0.6 of level 3 wins
    assert level_counts(8, PAPER_PROPORTIONS) == [4, 2, 2]
    # 4·(1/3 each) = 1.33 each: one extra, tie -> the earliest level
    assert level_counts(4, (1, 1, 1)) == [2, 1, 1]
    # 5·(1/3) = 1.67 each: two extras, ties -> levels 1 and 2
    assert level_counts(5, [1.0, 1.0, 1.0]) == [2, 2, 1]
    # tie between the 2nd and 3rd after a smaller 1st remainder: 3·(0.2, 0.4, 0.4) = 0.6, 1.2, 1.2
    assert level_counts(3, (0.2, 0.4, 0.4)) == [1, 1, 1]
    # 2·(0.1, 0.45, 0.45) = 0.2, 0.9, 0.9: both extras to levels 2 and 3
    assert level_counts(2, (0.1, 0.45, 0.45)) == [0, 1, 1]
    # zero shares get nothing; one level takes everything
    assert level_counts(3, (0, 1)) == [0, 3]
    assert level_counts(1, (2,)) == [1]
    # normalised: only ratios matter
    assert level_counts(9, (10, 20)) == level_counts(9, (0.1, 0.2)) == [3, 6]


def test_level_counts_errors():
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=msg(f"capacity must be a positive int, got {bad!r}")):
            level_counts(bad, (1,))
    for bad in ((), [], "ab", b"ab", 3, None):
        with pytest.raises(ValueError, match=msg(f"proportions must be a non-empty sequence of numbers, got {bad!r}")):
            level_counts(5, bad)
    for bad in (-0.1, float("nan"), float("inf"), True, "1", None):
        with pytest.raises(ValueError, match=msg(f"proportions[1] must be a finite number >= 0, got {bad!r}")):
            level_counts(5, (1.0, bad))
    with pytest.raises(ValueError, match=msg("proportions must not all be zero, got [0, 0.0]")):
        level_counts(5, (0, 0.0))
    assert level_counts(5, (0.0, 1)) == [0, 5]  # a zero proportion is allowed


# --------------------------------------------------------------------------- the buffer
class Producer:
    """Deterministic samples: item value = 100·round + position; records its calls."""

    def __init__(self, bad=None):
        self.calls = []
        self.bad = bad

    def __call__(self, counts, rnd):
        self.calls.append((list(counts), rnd))
        level = torch.cat([torch.full((c,), k + 1) for k, c in enumerate(counts)])
        n = len(level)
        out = {"level": level, "x": (100.0 * rnd + torch.arange(n, dtype=torch.float64)).reshape(n, 1)}
        if self.bad:
            out = self.bad(out)
        return out


class StatefulProducer(Producer):
    def __init__(self):
        super().__init__()
        self.w = 0.0

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, s):
        self.w = s["w"]


def test_construction_fills_round_zero():
    p = Producer()
    b = ReplayBuffer(p, capacity=7, proportions=(0.5, 0.3, 0.2), refresh_every=2)
    assert p.calls == [([4, 2, 1], 0)]
    assert (b.counts, b.capacity, b.proportions, b.refresh_every, b.round, b.refills) == ([4, 2, 1], 7, (0.5, 0.3, 0.2), 2, 0, 1)
    assert len(b) == 7
    assert b.level_of().tolist() == [1, 1, 1, 1, 2, 2, 3] and b.level_of().dtype == torch.long
    assert b[5]["x"].item() == 5.0 and b[5]["level"].item() == 2
    assert b[-1]["x"].item() == 6.0 and b[-7]["x"].item() == 0.0
    assert repr(b) == "ReplayBuffer(capacity=7, counts=[4, 2, 1], refresh_every=2, round=0)"


def test_defaults_and_lazy_fill():
    p = Producer()
    b = ReplayBuffer(p, fill_now=False)
    assert p.calls == [] and (b.capacity, b.counts, b.refresh_every, b.round, b.refills) == (1000, [500, 300, 200], 3, -1, 0)
    assert b.proportions == (0.5, 0.3, 0.2) and all(type(v) is float for v in ReplayBuffer(Producer(), 3, (1, 2)).proportions)
    with pytest.raises(RuntimeError, match=msg("the buffer is empty: call refill() or set_epoch() first")):
        b[0]
    with pytest.raises(RuntimeError, match=msg("the buffer is empty: call refill() or set_epoch() first")):
        b.level_of()
    b.set_epoch(0)
    assert p.calls == [([500, 300, 200], 0)] and b.round == 0 and b.refills == 1


def test_set_epoch_refills_every_refresh_every_epochs():
    p = Producer()
    b = ReplayBuffer(p, capacity=4, proportions=(1, 1), refresh_every=3)
    for e in range(8):
        b.set_epoch(e)
    assert [r for _, r in p.calls] == [0, 1, 2]  # epochs 0-2, 3-5, 6-7
    assert b.round == 2 and b.refills == 3 and b[0]["x"].item() == 200.0
    b.set_epoch(1)  # going back is a new round as well
    assert [r for _, r in p.calls][-1] == 0 and b.round == 0
    ReplayBuffer(p, capacity=4, proportions=(1, 1), refresh_every=1).set_epoch(5)
    assert p.calls[-1][1] == 5
    b.refill(9)  # refill passes the round through as an int
    assert p.calls[-1] == ([2, 2], 9) and b.round == 9 and b.refills == 5


def test_refill_moves_to_cpu_and_detaches():
    def grad(out):
        out["x"] = out["x"].requires_grad_()
        return out

    b = ReplayBuffer(Producer(grad), capacity=3, proportions=(1,))
    assert not b[0]["x"].requires_grad and b._data["x"].device.type == "cpu"


def test_constructor_errors():
    with pytest.raises(TypeError, match=msg("producer must be callable as producer(counts, round), got int")):
        ReplayBuffer(3)
    for bad in (0, -1, 1.0, True, None):
        with pytest.raises(ValueError, match=msg(f"refresh_every must be a positive int, got {bad!r}")):
            ReplayBuffer(Producer(), refresh_every=bad)
    ReplayBuffer(Producer(), capacity=2, proportions=(1,), refresh_every=1)  # 1 is fine


@pytest.mark.parametrize("bad, err, text", [
    (lambda o: [o["level"]], TypeError, "producer must return a dict of tensors with a 'level' entry"),
    (lambda o: {"x": o["x"]}, TypeError, "producer must return a dict of tensors with a 'level' entry"),
    (lambda o: {**o, "y": o["x"][:3]}, ValueError, "producer's 'y' must be a tensor with 4 rows, got (3, 1)"),
    (lambda o: {**o, "y": [1, 2, 3, 4]}, ValueError, "producer's 'y' must be a tensor with 4 rows, got list"),
    (lambda o: {**o, "y": torch.tensor(1.0)}, ValueError, "producer's 'y' must be a tensor with 4 rows, got ()"),
    (lambda o: {**o, "x": o["x"].clone().index_fill_(0, torch.tensor([2]), float("nan"))}, ValueError,
     "producer's 'x' holds NaN or Inf"),
    (lambda o: {**o, "x": o["x"].clone().index_fill_(0, torch.tensor([3]), float("-inf"))}, ValueError,
     "producer's 'x' holds NaN or Inf"),
    (lambda o: {**o, "level": torch.tensor([1, 1, 1, 2])}, ValueError,
     "producer returned level counts [3, 1], expected [2, 2]"),
    (lambda o: {**o, "level": torch.tensor([1, 1, 2, 3])}, ValueError,
     "producer returned level counts [2, 1, 1], expected [2, 2]"),
    (lambda o: {**o, "level": torch.tensor([1, 2, 2, 0])}, ValueError,
     "producer returned level counts [1, 2], expected [2, 2]"),
])
def test_refill_checks_the_producers_output(bad, err, text):
    p = Producer(bad)
    b = ReplayBuffer(p, capacity=4, proportions=(1, 1), fill_now=False)
    with pytest.raises(err, match=msg(text)):
        b.refill(0)
    assert b.round == -1 and b.refills == 0 and b._data == {}


def test_refill_accepts_integer_tensors_and_any_level_dtype():
    def extra(o):
        return {**o, "level": o["level"].to(torch.int32), "idx": torch.arange(4)}

    b = ReplayBuffer(Producer(extra), capacity=4, proportions=(1, 1))
    assert b[3]["idx"].item() == 3 and b.level_of().dtype == torch.long


def test_getitem_bounds():
    b = ReplayBuffer(Producer(), capacity=3, proportions=(1,))
    for bad in (3, -4, 10):
        with pytest.raises(IndexError, match=msg(f"index {bad} out of range for a buffer of 3")):
            b[bad]
    assert set(b[2]) == {"level", "x"}


def test_state_of_a_stateless_producer_is_the_samples():
    p = Producer()
    b = ReplayBuffer(p, capacity=4, proportions=(1, 1), refresh_every=1)
    b.set_epoch(2)
    st = b.state_dict()
    assert set(st) == {"round", "data"} and st["round"] == 2
    assert torch.equal(st["data"]["x"], b._data["x"])
    st["data"]["y"] = torch.zeros(4)  # a copy of the dict, not the buffer's own
    assert "y" not in b._data
    c = ReplayBuffer(Producer(), capacity=4, proportions=(1, 1), refresh_every=1, fill_now=False)
    c.load_state_dict(b.state_dict())
    assert c.round == 2 and torch.equal(c[1]["x"], b[1]["x"]) and c[1]["x"].item() == 201.0
    c.set_epoch(2)  # same round: no refill
    assert c.refills == 0
    # an empty saved buffer (never filled) comes back empty, round -1
    d = ReplayBuffer(Producer(), capacity=4, proportions=(1, 1), fill_now=False)
    d.load_state_dict({"round": 5, "data": {}})
    assert d.round == -1 and d._data == {}


def test_state_of_a_stateful_producer_is_its_state():
    p = StatefulProducer()
    b = ReplayBuffer(p, capacity=4, proportions=(1, 1))
    p.w = 2.5
    st = b.state_dict()
    assert st == {"round": 0, "producer": {"w": 2.5}}
    q = StatefulProducer()
    c = ReplayBuffer(q, capacity=4, proportions=(1, 1))
    c.load_state_dict(st)
    assert q.w == 2.5 and c._data == {} and c.round == -1
    c.set_epoch(0)  # remade from the restored producer
    assert q.calls[-1] == ([2, 2], 0) and c[3]["x"].item() == 3.0


def test_load_state_errors():
    b = ReplayBuffer(Producer(), capacity=4, proportions=(1, 1))
    text = "state must be a dict from ReplayBuffer.state_dict() (keys 'round' and 'producer' or 'data')"
    for bad in (None, [], {"round": 0}, {"data": {}}, {"producer": {}}):
        with pytest.raises(ValueError, match=msg(text)):
            b.load_state_dict(bad)
    with pytest.raises(ValueError, match=msg("state holds a producer state but this buffer's producer has no load_state_dict")):
        b.load_state_dict({"round": 0, "producer": {"w": 1}})
    for data in ({"x": torch.zeros(3, 1)}, {"x": torch.zeros(4), "y": [0, 0, 0, 0]}, {"x": torch.tensor(0.0)}):
        with pytest.raises(ValueError, match=msg("state's samples must be tensors with 4 rows (the buffer's capacity)")):
            b.load_state_dict({"round": 1, "data": data})
    assert b.round == 0 and b[0]["x"].item() == 0.0  # untouched by the refused states
    req = torch.zeros(4, 1, requires_grad=True)
    b.load_state_dict({"round": "3", "data": {"level": torch.tensor([1, 1, 2, 2]), "x": req}})
    assert b.round == 3 and not b._data["x"].requires_grad


def test_a_level_without_samples_is_accepted():
    # proportions (1, 0): counts [3, 0]; a producer making only level-1 samples is right
    b = ReplayBuffer(Producer(), capacity=3, proportions=(1, 0))
    assert b.counts == [3, 0] and b.level_of().tolist() == [1, 1, 1]
    b = ReplayBuffer(Producer(), capacity=3, proportions=(1, 0, 0))
    assert b.counts == [3, 0, 0] and b.refills == 1
