"""AdversarialPair (pnpdeblur.train.adversarial) directly: forward is the generator, judge reaches
the discriminator's parameters, judge_frozen reaches only its inputs (gradients by hand)."""
import re

import pytest
import torch
from torch import nn

from pnpdeblur.train.adversarial import AdversarialPair


class Affine(nn.Module):
    """``a·x + b`` summed over the last axis, with a BatchNorm-like running buffer."""

    def __init__(self, a, b):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))
        self.register_buffer("calls", torch.zeros((), dtype=torch.float64))

    def forward(self, x, y=None, scale=1.0):
        self.calls += 1
        out = (self.a * x + self.b).sum(-1) * scale
        return out if y is None else out + (self.a * y).sum(-1)


def test_pair_holds_and_forwards():
    g, d = Affine(2.0, 1.0), Affine(3.0, 0.5)
    pair = AdversarialPair(g, d)
    assert pair.generator is g and pair.discriminator is d
    assert dict(pair.named_children()) == {"generator": g, "discriminator": d}
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    # positional and keyword arguments reach the generator
    assert pair(x).tolist() == [2 * 1 + 1 + 2 * 2 + 1]
    assert pair(x, scale=2.0).tolist() == [16.0]
    assert pair(x, x).tolist() == [8.0 + 6.0]
    assert g.calls.item() == 3 and d.calls.item() == 0


def test_judge_has_gradients_to_the_discriminator():
    g, d = Affine(2.0, 1.0), Affine(3.0, 0.5)
    pair = AdversarialPair(g, d)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[4.0, -1.0]], dtype=torch.float64)
    s = pair.judge(x, y)  # several inputs pass through
    assert s.tolist() == [3 * 3 + 2 * 0.5 + 3 * 3]
    s.sum().backward()
    assert d.a.grad.item() == 3 + 3 and d.b.grad.item() == 2  # d/da Σ(a x + b) + Σ a y
    assert x.grad.tolist() == [[3.0, 3.0]]


def test_judge_frozen_has_gradients_only_to_the_inputs():
    g, d = Affine(2.0, 1.0), Affine(3.0, 0.5)
    pair = AdversarialPair(g, d)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    fake = pair(x)  # through the generator: Σ(2x + 1) = 8
    fake2 = fake.unsqueeze(-1).expand(1, 2)
    s = pair.judge_frozen(fake2, torch.ones(1, 2, dtype=torch.float64))
    assert s.tolist() == pair.judge(fake2.detach(), torch.ones(1, 2, dtype=torch.float64)).tolist()
    assert s.tolist() == [(3 * 8 + 0.5) * 2 + 3 * 2]
    assert d.calls.item() == 2  # buffers are the discriminator's own (shared, updated)
    s.sum().backward()
    assert d.a.grad is None and d.b.grad is None
    # chain rule by hand: s = Σ_j (a_d·f + b_d) + …, f = Σ_i (a_g x_i + b_g): ds/da_g = 2·a_d·Σx = 18
    assert g.a.grad.item() == pytest.approx(2 * 3 * 3) and g.b.grad.item() == pytest.approx(2 * 3 * 2)
    assert d.a.requires_grad and d.b.requires_grad  # the real parameters stay trainable


def test_judge_frozen_keeps_the_parameter_values():
    d = Affine(3.0, 0.5)
    pair = AdversarialPair(Affine(1.0, 0.0), d)
    x = torch.tensor([[1.0, -1.0, 2.0]], dtype=torch.float64)
    with torch.no_grad():
        d.a.fill_(-1.5)
    assert pair.judge_frozen(x).tolist() == [-1.5 * 2 + 3 * 0.5]


def test_pair_rejects_non_modules():
    text = "generator and discriminator must be torch.nn.Module instances, got {} and {}"
    for g, d, names in ((nn.Linear(1, 1), "d", ("Linear", "str")), (len, nn.Linear(1, 1), ("builtin_function_or_method", "Linear")),
                        (None, None, ("NoneType", "NoneType"))):
        with pytest.raises(TypeError, match="^" + re.escape(text.format(*names)) + "$"):
            AdversarialPair(g, d)
