"""DnCNN's architecture against its documented layer list, layer by layer.

The network (module docstring; Zhang et al.'s DnCNN without batch norm, plus FFDNet's noise-level
map as an extra input channel): ``forward(x, σ) = x − f([x, σ·1])`` with

    f = conv3×3 (cin → F) + ReLU, (depth − 2) × [conv3×3 (F → F) + ReLU], conv3×3 (F → channels)

every convolution with a bias and zero padding 1, ``cin = channels + noise_map``.
References here: parameter counts and state keys from that list, a functional forward with
``torch.nn.functional`` on the shipped weights and on random ones, the receptive field
(``2·depth + 1`` pixels wide) from the gradient of one output pixel, and closed forms.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets.dncnn import PRETRAINED_PATH, DnCNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def layer_list(channels: int, features: int, depth: int, noise_map: bool):
    """(in, out) of every 3×3 convolution, in order."""
    cin = channels + (1 if noise_map else 0)
    return [(cin, features)] + [(features, features)] * (depth - 2) + [(features, channels)]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("cfg", [dict(), dict(channels=3, features=5, depth=2, noise_map=False),
                                 dict(channels=2, features=1, depth=4), dict(channels=1, features=3, depth=3,
                                                                              noise_map=False)])
def test_parameter_count_and_keys_follow_the_layer_list(cfg):
    full = dict(channels=1, features=32, depth=7, noise_map=True)
    full.update(cfg)
    m = DnCNN(**cfg)
    assert m.config == full
    layers = layer_list(**full)
    assert n_params(m) == sum(9 * a * b + b for a, b in layers)
    # conv i sits at body index 2·i (a ReLU after every convolution but the last)
    keys = [f"body.{2 * i}.{t}" for i in range(len(layers)) for t in ("weight", "bias")]
    assert list(m.state_dict()) == keys
    convs = [c for c in m.body if isinstance(c, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == layers
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert [type(c).__name__ for c in m.body] == ["Conv2d", "ReLU"] * (full["depth"] - 1) + ["Conv2d"]


def test_default_size_by_hand():
    """channels 1 + noise map, 32 features, depth 7: 2·32·9 + 32, 5 × (32·32·9 + 32), 32·9 + 1."""
    assert n_params(DnCNN()) == (2 * 32 * 9 + 32) + 5 * (32 * 32 * 9 + 32) + (32 * 9 + 1)


def functional_dncnn(x, sigma, sd, depth, noise_map=True):
    inp = x
    if noise_map:
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1) * torch.ones_like(x[:, :1])
        inp = torch.cat((x, s), dim=1)
    h = inp
    for i in range(depth):
        h = F.conv2d(h, sd[f"body.{2 * i}.weight"], sd[f"body.{2 * i}.bias"], padding=1)
        if i < depth - 1:
            h = h.clamp_min(0)
    return x - h


def test_shipped_weights_match_the_functional_forward():
    m = DnCNN.pretrained().double()
    assert not m.training and m.config == dict(channels=1, features=32, depth=7, noise_map=True)
    assert DnCNN.pretrained_path() == PRETRAINED_PATH and PRETRAINED_PATH.name == "dncnn_small.safetensors"
    torch.manual_seed(0)
    x = torch.rand(2, 1, 19, 23, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.2], dtype=torch.float64)
    with torch.no_grad():
        got = m(x, sigma)
    want = functional_dncnn(x, sigma, m.state_dict(), 7)
    assert got.dtype == torch.float64 and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the noise level matters: each sample's σ is its own
    with torch.no_grad():
        torch.testing.assert_close(m(x[1:], 0.2), got[1:], rtol=1e-10, atol=1e-10)
        assert float((m(x[1:], 0.05) - got[1:]).abs().max()) > 1e-3


@pytest.mark.parametrize("noise_map", [True, False])
def test_random_weights_match_the_functional_forward(noise_map):
    torch.manual_seed(1)
    m = DnCNN(channels=2, features=3, depth=4, noise_map=noise_map).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    x = torch.rand(3, 2, 6, 9, dtype=torch.float64)
    sigma = 0.25  # exact in float32: the 0-d float32 tensor below is the same σ
    with torch.no_grad():
        got = m(x, sigma)
        want = functional_dncnn(x, torch.full((3,), sigma, dtype=torch.float64), m.state_dict(), 4, noise_map)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # a 0-d tensor σ is a scalar too
    with torch.no_grad():
        torch.testing.assert_close(m(x, torch.tensor(sigma)), want, rtol=1e-10, atol=1e-10)
    if not noise_map:  # σ is ignored without the map
        with torch.no_grad():
            torch.testing.assert_close(m(x, 0.9), want, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(m(x), want, rtol=1e-10, atol=1e-10)


def test_zero_last_layer_returns_the_input_and_a_bias_only_layer_subtracts_it():
    m = DnCNN(channels=2, features=3, depth=3).double()
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        m.body[-1].weight.zero_()
        m.body[-1].bias.zero_()
        torch.testing.assert_close(m(x, 0.1), x)
        m.body[-1].bias.copy_(torch.tensor([0.25, -0.5]))
        torch.testing.assert_close(m(x, 0.1), x - torch.tensor([0.25, -0.5], dtype=torch.float64).view(1, 2, 1, 1))


def test_default_sigma_is_zero():
    torch.manual_seed(2)
    m = DnCNN(features=3, depth=3).double()
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x, 0.0))
        torch.testing.assert_close(m(x), functional_dncnn(x, 0.0, m.state_dict(), 3))


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_receptive_field_is_two_depth_plus_one_wide(depth):
    """Each 3×3 convolution widens the support by 2: output pixel (10, 10) sees rows/cols 10 ± depth."""
    torch.manual_seed(3)
    m = DnCNN(features=4, depth=depth).double()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(0.1, 0.5)  # positive weights: every ReLU is active, no cancellations
    x = torch.rand(1, 1, 21, 21, dtype=torch.float64, requires_grad=True)
    m(x, 0.1)[0, 0, 10, 10].backward()
    nz = torch.nonzero(x.grad[0, 0])
    assert (int(nz[:, 0].min()), int(nz[:, 0].max())) == (10 - depth, 10 + depth)
    assert (int(nz[:, 1].min()), int(nz[:, 1].max())) == (10 - depth, 10 + depth)


def test_input_and_noise_map_layouts():
    m = DnCNN(channels=3, features=2, depth=2).double()
    seen = {}
    m.body[0].register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    with torch.no_grad():
        m(x, torch.tensor([0.1, 0.4]))
    assert seen["x"].shape == (2, 4, 4, 5) and seen["x"].dtype == torch.float64
    torch.testing.assert_close(seen["x"][:, :3], x)
    torch.testing.assert_close(seen["x"][:, 3], torch.tensor([0.1, 0.4], dtype=torch.float64).view(2, 1, 1).expand(2, 4, 5))


# ------------------------------------------------------------------------------ messages


@pytest.mark.parametrize("name, lo", [("channels", 1), ("features", 1), ("depth", 2)])
@pytest.mark.parametrize("delta", [-1, "float", "bool"])
def test_size_arguments_are_checked(name, lo, delta):
    bad = {-1: lo - 1, "float": float(lo + 1), "bool": True}[delta]
    with pytest.raises(ValueError, match="^" + re.escape(f"{name} must be an int >= {lo}, got {bad!r}") + "$"):
        DnCNN(**{name: bad})


def test_smallest_sizes_build():
    m = DnCNN(channels=1, features=1, depth=2)
    assert len(m.body) == 3 and m(torch.rand(1, 1, 3, 3), 0.1).shape == (1, 1, 3, 3)


@pytest.mark.parametrize("bad", [1, 0, None, "yes"])
def test_noise_map_must_be_a_bool(bad):
    with pytest.raises(TypeError, match="^" + re.escape(f"noise_map must be True or False, got {bad!r}") + "$"):
        DnCNN(noise_map=bad)


def test_forward_input_is_checked():
    m = DnCNN(channels=2, features=2, depth=2)
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 2, H, W\), got \(1, 1, 4, 4\)$"):
        m(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"^x must have shape \(N, 2, H, W\), got \(2, 4, 4\)$"):
        m(torch.rand(2, 4, 4))
    x = torch.rand(2, 2, 4, 4)
    for bad in (torch.rand(3), torch.rand(2, 1), torch.rand(1)):
        with pytest.raises(ValueError, match=r"^sigma must be a scalar or shape \(N,\), got shape "
                                             + re.escape(str(tuple(bad.shape))) + "$"):
            m(x, bad)
    for bad in (float("nan"), float("inf"), -0.1, torch.tensor([0.1, float("nan")]), torch.tensor([0.1, -1e-3])):
        with pytest.raises(ValueError, match=r"^sigma must be finite and non-negative \(noise std\)"):
            m(x, bad)
    assert m(x, torch.tensor([0.0, 0.2])).shape == x.shape  # zero is a valid noise level


def test_meta_tensors_propagate_shapes_without_value_checks():
    """The priors move nets to the input's device; on "meta" there are no values to check."""
    with torch.device("meta"):
        m = DnCNN(channels=1, features=2, depth=2)
        out = m(torch.empty(2, 1, 5, 6), 0.1)
    assert out.device.type == "meta" and out.shape == (2, 1, 5, 6)


def test_a_net_moved_to_another_device_builds_its_noise_map_there():
    """A float σ becomes a map on x's device (meta stands in for a GPU here: a CPU map fails in cat)."""
    m = DnCNN(channels=1, features=2, depth=2).to("meta")
    out = m(torch.empty(2, 1, 5, 6, device="meta"), 0.1)
    assert out.device.type == "meta" and out.shape == (2, 1, 5, 6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cpu_sigma_tensor_follows_x_to_the_gpu():
    m = DnCNN(channels=1, features=2, depth=2).cuda()
    x = torch.rand(2, 1, 5, 6, device="cuda")
    assert m(x, torch.tensor([0.1, 0.2])).device == x.device


def test_bad_sigma_message_in_full():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"^sigma must be finite and non-negative \(noise std\), got NaN, Inf or < 0$"):
        DnCNN(features=2, depth=2)(x, float("nan"))


def test_checkpoint_round_trip_and_another_architecture_refused(tmp_path):
    from pnpdeblur.nets.sen import SEN

    torch.manual_seed(4)
    m = DnCNN(channels=2, features=3, depth=3, noise_map=False)
    back = DnCNN.from_checkpoint(m.save(tmp_path / "d.safetensors"))
    assert back.config == m.config and not back.training
    x = torch.rand(1, 2, 5, 6)
    assert torch.equal(back(x), m(x))
    with pytest.raises(CheckpointError, match="SEN"):
        DnCNN.from_checkpoint(SEN(width=1, levels=1, stacks=1).save(tmp_path / "s.safetensors"))
    # the training command is two runs of the recipe, the second fine-tuning the first's output with grey crops
    from pnpdeblur.train import dncnn as recipe

    first, second = (shlex.split(part) for part in DnCNN.training_command.split("&&"))
    assert first[:3] == second[:3] == ["pnpdeblur", "train", "dncnn"]
    a, b = recipe.parse_args(first[3:]), recipe.parse_args(second[3:])
    assert a.init is None and a.grey_share == 0 and a.data == b.data == ".data/bsds500/train"
    assert Path(b.init) == a.out and b.grey_share == 0.5 and b.lr == 5e-4 and b.run_dir != a.run_dir
    assert (a.features, a.depth) == (b.features, b.depth) == (32, 7)  # the shipped architecture
    assert DnCNN.channels_last_safe is True
