"""Direct tests of pnpdeblur.train.schedules against the closed forms of its docstrings.

The reference below is written from the docstring of ``linear_decay_lambda`` (piecewise:
warm-up ramp × (constant, then linear decay to ``lr_end / lr`` at step ``steps - 1``, then
constant)), not from the code. Fast: also the selection for ``make mutation``.
"""
import itertools
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.train.schedules import linear_decay_lambda, step_decay_lambda


def reference(s, steps, lr, warmup_steps=0, decay_start=None, lr_end=None):
    """The documented multiplier at 0-based step ``s``."""
    r = (lr if lr_end is None else lr_end) / lr
    if decay_start is None or decay_start >= steps or s < decay_start:
        d = 1.0
    elif s >= steps - 1:  # the last step and beyond: lr_end (also when decay starts there)
        d = r
    else:
        d = 1.0 + (s - decay_start) / (steps - 1 - decay_start) * (r - 1.0)
    w = (s + 1) / warmup_steps if s < warmup_steps else 1.0
    return d * w


def _cases():
    for steps in (1, 2, 5, 9):
        for warm, ds, end in itertools.product((0, 1, 3, steps), (None, 0, 1, steps - 1, steps), (None, 0.0, 0.3, 2.0)):
            if warm <= steps and (ds is None or ds <= steps):
                yield steps, warm, ds, end


@pytest.mark.parametrize("lr", [0.5, 4.0])
def test_linear_decay_matches_the_documented_closed_form(lr):
    n = 0
    for steps, warm, ds, end in _cases():
        lr_end = None if end is None else end * lr
        f = linear_decay_lambda(steps, lr, warm, ds, lr_end)
        for s in range(steps + 3):
            want = reference(s, steps, lr, warm, ds, lr_end)
            assert f(s) == pytest.approx(want, rel=1e-12, abs=1e-15), (steps, warm, ds, end, s)
            n += 1
    assert n > 500


def test_linear_decay_hand_values():
    # 10 steps, warm-up 4, decay from step 2 to 0.2 at step 9 (7 intervals of -0.8/7)
    f = linear_decay_lambda(10, 0.5, warmup_steps=4, decay_start=2, lr_end=0.1)
    want = [0.25, 0.5, 0.75 * 1.0, 1.0 * (1 - 0.8 / 7), 1 - 1.6 / 7, 1 - 2.4 / 7, 1 - 3.2 / 7, 1 - 4.0 / 7,
            1 - 4.8 / 7, 0.2, 0.2, 0.2]
    assert [f(s) for s in range(12)] == pytest.approx(want, rel=1e-12)
    # one step: warm-up of one reaches the full rate at once; a decay from step 0 is lr_end at once
    assert linear_decay_lambda(1, 2.0, warmup_steps=1)(0) == 1.0
    assert linear_decay_lambda(1, 2.0, decay_start=0, lr_end=0.5)(0) == 0.25
    # an increasing "decay" is allowed (lr_end > lr)
    assert linear_decay_lambda(3, 1.0, decay_start=0, lr_end=3.0)(1) == 2.0


def test_linear_decay_never_decays_without_or_after_the_end():
    for f in (linear_decay_lambda(6, 1.0, decay_start=6, lr_end=0.1), linear_decay_lambda(6, 1.0, lr_end=0.1),
              linear_decay_lambda(6, 1.0)):
        assert [f(s) for s in range(10)] == [1.0] * 10
    f = linear_decay_lambda(6, 1.0, decay_start=5, lr_end=0.1)  # only the last step and beyond
    assert [f(s) for s in range(8)] == pytest.approx([1, 1, 1, 1, 1, 0.1, 0.1, 0.1])
    assert linear_decay_lambda(6, 1.0, decay_start=0, lr_end=0.0)(5) == 0.0


def test_linear_decay_is_what_lambdalr_applies():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.4)
    f = linear_decay_lambda(6, 0.4, warmup_steps=2, decay_start=3, lr_end=0.04)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    used = []
    for _ in range(6):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used == pytest.approx([0.2, 0.4, 0.4, 0.4, 0.22, 0.04])  # by hand: 0.4 → 0.04 over steps 3..5


def test_linear_decay_accepts_integral_floats_and_zero_lr_end():
    f = linear_decay_lambda(6.0, 1, warmup_steps=2.0, decay_start=3.0, lr_end=0)
    g = linear_decay_lambda(6, 1.0, warmup_steps=2, decay_start=3, lr_end=0.0)
    assert [f(s) for s in range(8)] == [g(s) for s in range(8)]
    assert linear_decay_lambda(1, 1e-300)(0) == 1.0


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, False, float("nan"), float("inf"), None, "5"])
def test_linear_decay_steps_must_be_a_positive_int(steps):
    # NaN, Inf, None and strings raised int()'s own errors (OverflowError for Inf) before
    with pytest.raises(ValueError, match=r"^steps must be an int >= 1, got " + re.escape(repr(steps)) + "$"):
        linear_decay_lambda(steps, 1.0)


@pytest.mark.parametrize("lr", [0, -1.0, float("nan"), float("inf"), "1.0", None, True])
def test_linear_decay_lr_must_be_finite_and_positive(lr):
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got " + re.escape(repr(lr)) + "$"):
        linear_decay_lambda(5, lr)


@pytest.mark.parametrize("warm", [-1, 6, 1.5, float("nan"), float("inf"), None, "2", True])
def test_linear_decay_warmup_must_fit(warm):
    with pytest.raises(ValueError,
                       match=r"^warmup_steps must be an int in \[0, steps=5\], got " + re.escape(repr(warm)) + "$"):
        linear_decay_lambda(5, 1.0, warmup_steps=warm)
    assert linear_decay_lambda(5, 1.0, warmup_steps=5)(4) == 1.0


@pytest.mark.parametrize("ds", [-1, 6, 2.5, float("nan"), -float("inf"), "2", False])
def test_linear_decay_start_must_fit(ds):
    with pytest.raises(ValueError, match=r"^decay_start must be None or an int in \[0, steps=5\], got "
                       + re.escape(repr(ds)) + "$"):
        linear_decay_lambda(5, 1.0, decay_start=ds, lr_end=0.5)


@pytest.mark.parametrize("lr_end", [-0.1, float("nan"), float("inf"), "0.1", True, 1e308])
def test_linear_decay_lr_end_must_be_finite_and_non_negative(lr_end):
    # "0.1" was parsed by float() while lr="0.1" was refused; 1e308 / 1e-3 overflows the ratio
    with pytest.raises(ValueError, match=r"^lr_end must be a finite number >= 0, got " + re.escape(repr(lr_end)) + "$"):
        linear_decay_lambda(5, 1e-3, decay_start=1, lr_end=lr_end)


def test_numpy_scalars_are_numbers():
    f = linear_decay_lambda(np.int64(6), np.float32(0.5), np.int64(2), np.int32(3), np.float32(0.05))
    g = linear_decay_lambda(6, 0.5, 2, 3, 0.05)
    assert [f(s) for s in range(7)] == pytest.approx([g(s) for s in range(7)], rel=1e-6)
    assert step_decay_lambda(g, [np.int64(2)], np.float32(0.5))(3) == pytest.approx(0.5 * g(3))


# ---------------------------------------------------------------------------------- step decay


def test_step_decay_closed_form():
    base = linear_decay_lambda(12, 1.0, warmup_steps=2, decay_start=6, lr_end=0.5)
    f = step_decay_lambda(base, (7, 3, 7.0), 0.25)  # unsorted, a milestone twice: counted twice
    for s in range(14):
        k = sum(m <= s for m in (3, 7, 7))
        assert f(s) == pytest.approx(base(s) * 0.25 ** k, rel=1e-12), s
    assert f(2) == base(2) and f(3) == pytest.approx(0.25 * base(3)) and f(7) == pytest.approx(base(7) / 64)


def test_step_decay_matches_multisteplr_with_gamma_above_one():
    f = step_decay_lambda(linear_decay_lambda(8, 1.0), [2, 5], 3)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=3)
    got = []
    for s in range(8):
        got.append((opt.param_groups[0]["lr"], f(s)))
        opt.step()
        ref.step()
    assert [a for a, _ in got] == pytest.approx([b for _, b in got], rel=1e-12)
    assert [b for _, b in got] == pytest.approx([1, 1, 3, 3, 3, 9, 9, 9])


def test_step_decay_without_milestones_is_the_base():
    base = linear_decay_lambda(4, 1.0, decay_start=1, lr_end=0.5)
    assert step_decay_lambda(base) is base
    assert step_decay_lambda(base, [], 0.5) is base


@pytest.mark.parametrize("gamma", [0, -0.5, float("nan"), float("inf"), "0.1", None, True])
def test_step_decay_gamma_must_be_finite_and_positive(gamma):
    msg = r"^gamma must be a finite number > 0, got " + re.escape(repr(gamma)) + "$"
    with pytest.raises(ValueError, match=msg):
        step_decay_lambda(linear_decay_lambda(4, 1.0), (2,), gamma)
    with pytest.raises(ValueError, match=msg):  # also when there is nothing to decay
        step_decay_lambda(linear_decay_lambda(4, 1.0), (), gamma)
    assert math.isclose(step_decay_lambda(lambda s: 1.0, (0,), 1e-3)(0), 1e-3)


def test_step_decay_default_gamma_is_a_tenth():
    base = linear_decay_lambda(6, 1.0, decay_start=2, lr_end=0.5)
    f = step_decay_lambda(base, (3,))
    assert [f(s) for s in range(6)] == pytest.approx([base(s) * (0.1 if s >= 3 else 1.0) for s in range(6)])
