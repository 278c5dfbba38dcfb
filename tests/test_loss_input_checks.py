"""``pnpdeblur.losses._checks.check_finite``: the NaN/Inf check every loss runs on its inputs."""
import pytest
import torch

from pnpdeblur.losses._checks import check_finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_one_non_finite_value_anywhere_is_refused_by_name(bad):
    x = torch.zeros(2, 3, 4, 5)
    x[1, 2, 3, 4] = bad  # the last element: a check of the first elements only would pass
    with pytest.raises(ValueError, match=r"^pred holds NaN or Inf$"):
        check_finite(x, "pred")


def test_finite_inputs_come_back_unchanged_with_their_graph():
    x = torch.randn(2, 3, requires_grad=True)
    y = 2 * x
    out = check_finite(y, "target")
    assert out is y  # no copy, no detach: the loss's gradient still reaches the network
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
    z = torch.tensor([1e30, -1e30, 0.0], dtype=torch.float32)  # large but finite
    assert check_finite(z, "z") is z
    i = torch.arange(4)
    assert check_finite(i, "i") is i  # integer tensors are always finite


def test_a_non_finite_value_in_a_tensor_that_needs_grad_is_refused():
    x = torch.tensor([1.0, float("nan")], requires_grad=True)
    with pytest.raises(ValueError, match=r"^fake logits holds NaN or Inf$"):
        check_finite(x * 1.0, "fake logits")
    assert x.grad is None


def test_empty_and_half_precision_tensors():
    e = torch.zeros(0, 3)
    assert check_finite(e, "e") is e  # nothing to flag
    h = torch.tensor([1.0, float("inf")], dtype=torch.float16)
    with pytest.raises(ValueError, match=r"^h holds NaN or Inf$"):
        check_finite(h, "h")
