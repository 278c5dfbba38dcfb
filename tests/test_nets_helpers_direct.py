"""Direct tests of the end-to-end nets' shared helpers: nets._e2e (input checks, torch-file
reading, prefix stripping) and nets._official (official checkpoints under a key mapping).

Tiny modules and files in tmp_path; fast: also the selection for ``make mutation`` of both
modules. Error messages are matched from their start.
"""
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets._e2e import check_input, check_int, check_multiple, read_torch_state, strip_prefix
from pnpdeblur.nets._official import copy_mapped, load_official


class Opaque:
    """A python object that ``torch.load(weights_only=True)`` must refuse."""


class Small(nn.Module):
    def __init__(self, channels=2):
        super().__init__()
        self.config = {"channels": channels}
        self.conv = nn.Conv2d(1, channels, 1)
        self.bn = nn.BatchNorm2d(channels)


class NoConfig(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1, bias=False)


MAPPING = {"features.0.weight": "conv.weight", "features.0.bias": "conv.bias", "features.1.weight": "bn.weight",
           "features.1.bias": "bn.bias", "features.1.running_mean": "bn.running_mean",
           "features.1.running_var": "bn.running_var", "features.1.num_batches_tracked": "bn.num_batches_tracked"}


def _official_state(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    s = {"features.0.weight": torch.randn(2, 1, 1, 1, generator=g, dtype=dtype),
         "features.0.bias": torch.randn(2, generator=g, dtype=dtype),
         "features.1.weight": torch.rand(2, generator=g, dtype=dtype),
         "features.1.bias": torch.randn(2, generator=g, dtype=dtype),
         "features.1.running_mean": torch.randn(2, generator=g, dtype=dtype),
         "features.1.running_var": torch.rand(2, generator=g, dtype=dtype) + 1,
         "features.1.num_batches_tracked": torch.tensor(11)}
    return OrderedDict(s)


# ---------------------------------------------------------------------------------- check_int


def test_check_int_returns_the_value():
    assert check_int("depth", 1) == 1 and check_int("depth", 7) == 7
    assert check_int("pad", 0, lo=0) == 0 and check_int("n", 5, lo=5) == 5
    v = 2**70
    assert check_int("n", v) is v


@pytest.mark.parametrize("value, lo", [(0, 1), (-1, 0), (4, 5), (2.0, 1), (True, 0), (False, 0), ("3", 1),
                                       (None, 1), (np.float64(3), 1)])
def test_check_int_refuses(value, lo):
    with pytest.raises(ValueError, match="^" + re.escape(f"depth must be an int >= {lo}, got {value!r}") + "$"):
        check_int("depth", value, lo)


def test_check_int_default_bound_is_one():
    with pytest.raises(ValueError, match=r"^n must be an int >= 1, got 0$"):
        check_int("n", 0)


# ---------------------------------------------------------------------------------- check_input


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_check_input_returns_the_tensor(dtype):
    x = torch.rand(2, 3, 4, 5, dtype=dtype)
    assert check_input(x, 3) is x
    y = torch.zeros(1, 1, 1, 1)
    assert check_input(y, 1, "blurred") is y


@pytest.mark.parametrize("x", [np.zeros((1, 3, 4, 4)), [[0.0]], None])
def test_check_input_needs_a_tensor(x):
    with pytest.raises(TypeError, match="^" + re.escape(
            f"img must be a torch.Tensor of shape (N, 3, H, W), got {type(x).__name__}") + "$"):
        check_input(x, 3, "img")


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64])
def test_check_input_needs_floats(dtype):
    x = torch.zeros(1, 3, 2, 2, dtype=dtype)
    with pytest.raises(TypeError, match="^" + re.escape(
            f"x must be a floating-point tensor with values in [0, 1], got dtype {dtype}") + "$"):
        check_input(x, 3)


@pytest.mark.parametrize("shape", [(3, 4, 4), (1, 1, 3, 4, 4), (1, 1, 4, 4), (1, 4, 4, 4), (4, 4)])
def test_check_input_needs_n_c_h_w(shape):
    with pytest.raises(ValueError, match="^" + re.escape(f"x must have shape (N, 3, H, W), got {shape}") + "$"):
        check_input(torch.zeros(shape), 3)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (1, 3, 0, 4), (1, 3, 4, 0), (2, 3, 0, 0)])
def test_check_input_refuses_empty(shape):
    with pytest.raises(ValueError, match="^" + re.escape(f"sharp must not be empty, got shape {shape}") + "$"):
        check_input(torch.zeros(shape), 3, name="sharp")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_input_refuses_non_finite(bad):
    x = torch.zeros(1, 2, 3, 3)
    x[0, 1, 2, 2] = bad
    with pytest.raises(ValueError, match=r"^x holds NaN or Inf values$"):
        check_input(x, 2)


# ---------------------------------------------------------------------------------- check_multiple


def test_check_multiple():
    check_multiple(torch.zeros(1, 1, 8, 12), 4, "DeepDeblur")
    check_multiple(torch.zeros(2, 3, 3, 3), 1, "Net")
    for shape, hw in [((1, 1, 8, 10), (8, 10)), ((1, 1, 6, 8), (6, 8)), ((1, 1, 5, 7), (5, 7))]:
        with pytest.raises(ValueError, match="^" + re.escape(
                f"blurred's H and W must be multiples of DeepDeblur.stride = 4 in forward_multiscale, got {hw}; "
                "crop training patches accordingly or call the net itself for any size") + "$"):
            check_multiple(torch.zeros(shape), 4, "DeepDeblur", "blurred")
    with pytest.raises(ValueError, match=r"^x's H and W must be multiples of DVD\.stride = 2 "):
        check_multiple(torch.zeros(1, 1, 3, 2), 2, "DVD")


# ---------------------------------------------------------------------------------- torch files


def test_read_torch_state_reads_plain_containers(tmp_path):
    p = tmp_path / "m.pth"
    obj = {"state_dict": {"a": torch.arange(3.0)}, "epoch": 4, "arch": "x"}
    torch.save(obj, p)
    got = read_torch_state(str(p), "DeepDeblur")
    assert got["epoch"] == 4 and got["arch"] == "x" and torch.equal(got["state_dict"]["a"], torch.arange(3.0))
    assert got["state_dict"]["a"].device.type == "cpu"


def test_read_torch_state_missing(tmp_path):
    with pytest.raises(CheckpointError, match="^" + re.escape(
            f"DeepDeblur checkpoint not found: {tmp_path / 'x.pt'}") + "$"):
        read_torch_state(tmp_path / "x.pt", "DeepDeblur")
    with pytest.raises(CheckpointError, match=r"^DVD checkpoint not found: "):
        read_torch_state(tmp_path, "DVD")


@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_read_torch_state_unreadable_or_unsafe(tmp_path, content):
    p = tmp_path / "x.pt"
    if content == "garbage":
        p.write_bytes(b"\x00not a torch file")
    else:
        torch.save({"obj": Opaque()}, p)  # unpickling would run arbitrary code: refused
    with pytest.raises(CheckpointError, match="^" + re.escape(
            f"{p} is not a readable torch checkpoint (corrupt or not a DeblurNet file?): ")) as e:
        read_torch_state(p, "DeblurNet")
    assert e.value.__cause__ is not None
    # the message ends with the reader's own reason, as describe_load_error words it
    from pnpdeblur.nets._official import describe_load_error

    assert str(e.value).endswith(": " + describe_load_error(e.value.__cause__))
    if content == "pickle":
        assert "never runs code from a checkpoint" in str(e.value)


def test_strip_prefix():
    state = OrderedDict([("module.a", 1), ("b", 2), ("x.module.c", 3), ("module.module.d", 4)])
    out = strip_prefix(state)
    assert list(out.items()) == [("a", 1), ("b", 2), ("x.module.c", 3), ("module.d", 4)]
    assert strip_prefix({"net.w": 1, "netw": 2, "w": 3}, "net.") == {"w": 3, "netw": 2}
    assert list(strip_prefix({"net.w": 1, "netw": 2}, "net.")) == ["w", "netw"]


# ---------------------------------------------------------------------------------- load_official


def test_load_official_plain_state_dict(tmp_path):
    p = tmp_path / "w.pth"
    s = _official_state()
    torch.save(s, p)
    state, meta = load_official(str(p))
    assert meta == {} and isinstance(state, OrderedDict)
    assert list(state) == list(s)
    assert all(torch.equal(state[k], s[k]) for k in s)


def test_load_official_container_and_data_parallel_prefix(tmp_path):
    p = tmp_path / "w.pth"
    s = _official_state()
    wrapped = OrderedDict(("module." + k, v) for k, v in s.items())
    torch.save({"arch": "DeepDeblur", "div_flow": 20, "state_dict": wrapped}, p)
    state, meta = load_official(p)
    assert meta == {"arch": "DeepDeblur", "div_flow": 20}
    assert list(state) == list(s) and all(torch.equal(state[k], s[k]) for k in s)
    torch.save({"w": torch.zeros(1), "amodule.x": torch.ones(1), "module.module.y": torch.ones(2)}, p)
    assert list(load_official(p)[0]) == ["w", "amodule.x", "module.y"]


def test_load_official_missing(tmp_path):
    with pytest.raises(CheckpointError, match="^" + re.escape(f"checkpoint not found: {tmp_path / 'w.pth'}") + "$"):
        load_official(tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"^checkpoint not found: "):
        load_official(tmp_path)


@pytest.mark.parametrize("content", ["garbage", "pickle", "truncated"])
def test_load_official_unreadable(tmp_path, content):
    p = tmp_path / "w.pth"
    if content == "garbage":
        p.write_bytes(b"PK\x03\x04 broken zip")
    elif content == "pickle":
        torch.save({"state_dict": {"a": torch.zeros(1)}, "cfg": Opaque()}, p)
    else:
        torch.save(_official_state(), p)
        p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} is not a readable torch checkpoint: ")) as e:
        load_official(p)
    assert e.value.__cause__ is not None


@pytest.mark.parametrize("obj", [
    {}, [torch.zeros(1)], torch.zeros(2), {"a": torch.zeros(1), "epoch": 3}, {"state_dict": {}},
    {"state_dict": [torch.zeros(1)]}, {"state_dict": {"a": 1.0}}, "text",
])
def test_load_official_needs_a_state_dict_of_tensors(tmp_path, obj):
    p = tmp_path / "w.pth"
    torch.save(obj, p)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} does not hold a state dict of tensors") + "$"):
        load_official(p)


# ---------------------------------------------------------------------------------- copy_mapped


def test_copy_mapped_copies_every_tensor():
    m = Small()
    s = _official_state(1)
    copy_mapped(m, s, MAPPING, "w.pth")
    ours = m.state_dict()
    for off, mine in MAPPING.items():
        assert ours[mine].dtype == s[off].dtype and torch.equal(ours[mine], s[off]), mine


def test_copy_mapped_casts_to_the_models_dtype():
    m = Small()
    s = _official_state(2, torch.float64)
    copy_mapped(m, s, MAPPING, "w.pth")
    assert m.conv.weight.dtype == torch.float32
    assert torch.equal(m.conv.weight.detach(), s["features.0.weight"].float())
    assert m.bn.num_batches_tracked.dtype == torch.int64 and int(m.bn.num_batches_tracked) == 11


def test_copy_mapped_mapping_must_cover_the_model():
    m = Small()
    partial = {k: v for k, v in MAPPING.items() if not v.startswith("bn.")}
    with pytest.raises(RuntimeError, match="^" + re.escape(
            "key mapping for Small misses ['bn.bias', 'bn.num_batches_tracked', 'bn.running_mean', "
            "'bn.running_var', 'bn.weight']") + "$"):
        copy_mapped(m, _official_state(), partial, "w.pth")
    with pytest.raises(RuntimeError, match=r"^key mapping for Small misses \['bn\.bias', 'bn\.num_batches_tracked', "
                                           r"'bn\.running_mean', 'bn\.running_var', 'bn\.weight'\]$"):
        copy_mapped(m, _official_state(), {"features.0.weight": "conv.weight"}, "w.pth")  # 6 missing: 5 shown


def test_copy_mapped_mapping_must_name_only_the_models_tensors():
    wrong = dict(MAPPING, **{"features.2.weight": "head.weight", "features.2.bias": "head.bias"})
    with pytest.raises(RuntimeError, match="^" + re.escape(
            "key mapping for Small names tensors Small does not have: ['head.bias', 'head.weight']") + "$"):
        copy_mapped(Small(), _official_state(), wrong, "w.pth")


def test_copy_mapped_state_must_hold_exactly_the_mapped_keys():
    m = Small()
    s = _official_state()
    del s["features.1.bias"]
    with pytest.raises(CheckpointError, match="^" + re.escape(
            "w.pth does not fit Small{'channels': 2}: missing ['features.1.bias'], unexpected []") + "$"):
        copy_mapped(m, s, MAPPING, "w.pth")
    s = _official_state()
    for i in range(7):
        s[f"extra.{i}"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="^" + re.escape(
            "w.pth does not fit Small{'channels': 2}: missing [], unexpected "
            "['extra.0', 'extra.1', 'extra.2', 'extra.3', 'extra.4']") + "$"):
        copy_mapped(m, s, MAPPING, "w.pth")
    s = {f"w{i}": torch.zeros(1, 2) for i in range(7)}
    with pytest.raises(CheckpointError, match="^" + re.escape(
            "p.pth does not fit NoConfig: missing ['lin.weight'], unexpected ['w0', 'w1', 'w2', 'w3', 'w4']") + "$"):
        copy_mapped(NoConfig(), s, {"lin.weight": "lin.weight"}, "p.pth")
    big = {f"o{i}": "lin.weight" for i in range(7)}  # every official key missing: the first five named
    with pytest.raises(CheckpointError, match=re.escape("missing ['o0', 'o1', 'o2', 'o3', 'o4'], unexpected []") + "$"):
        copy_mapped(NoConfig(), {}, big, "p.pth")


def test_copy_mapped_checks_shapes():
    m = Small()
    s = _official_state()
    s["features.0.weight"] = torch.zeros(2, 1, 3, 3)
    with pytest.raises(CheckpointError, match="^" + re.escape(
            "w.pth: 'features.0.weight' has shape (2, 1, 3, 3), Small.conv.weight expects (2, 1, 1, 1)") + "$"):
        copy_mapped(m, s, MAPPING, "w.pth")
    s = _official_state()
    s["features.1.bias"] = torch.zeros(1, 2)  # same numel, another shape
    with pytest.raises(CheckpointError, match=r"^w\.pth: 'features\.1\.bias' has shape \(1, 2\), Small\.bn\.bias "):
        copy_mapped(m, s, MAPPING, "w.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_copy_mapped_refuses_non_finite(bad):
    m = Small()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    s = _official_state()
    s["features.1.running_var"][0] = bad
    with pytest.raises(CheckpointError, match="^" + re.escape(
            "w.pth: tensor 'features.1.running_var' holds NaN or Inf") + "$"):
        copy_mapped(m, s, MAPPING, "w.pth")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # nothing loaded


def _save_as_if_on_cuda(obj, path, monkeypatch):
    """``torch.save`` with every storage tagged ``cuda:0``, as a file written on a GPU is (no GPU here)."""
    import torch.serialization as ts

    with monkeypatch.context() as m:
        m.setattr(ts, "_package_registry", [(0, lambda s: "cuda:0", lambda s, loc: None)] + list(ts._package_registry))
        torch.save(obj, path)
    with pytest.raises(RuntimeError, match="CUDA"):  # what torch.load does without a map_location
        torch.load(path, weights_only=True)


def test_checkpoints_written_on_a_gpu_load_on_the_cpu(tmp_path, monkeypatch):
    p = tmp_path / "gpu.pth"
    s = _official_state(4)
    _save_as_if_on_cuda({"state_dict": s, "epoch": 2}, p, monkeypatch)
    got = read_torch_state(p, "DeepDeblur")
    assert got["epoch"] == 2 and torch.equal(got["state_dict"]["features.0.bias"], s["features.0.bias"])
    state, meta = load_official(p)
    assert meta == {"epoch": 2} and all(torch.equal(state[k], s[k]) and state[k].device.type == "cpu" for k in s)


def test_loaders_stay_safe_when_the_environment_allows_pickles(tmp_path, monkeypatch):
    # torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only where weights_only is not given explicitly
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    p = tmp_path / "x.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "cfg": Opaque()}, p)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} is not a readable torch checkpoint (corrupt or")):
        read_torch_state(p, "DVD")
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} is not a readable torch checkpoint: ")):
        load_official(p)


def test_check_input_accepts_meta_and_grad_tensors_and_names_nan():
    """Meta tensors (shape propagation) hold no values to check; a tensor that requires grad is checked too."""
    from pnpdeblur.nets._e2e import check_input

    meta = torch.empty(1, 3, 4, 4, device="meta")
    assert check_input(meta, 3) is meta
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    assert check_input(x, 3, "deconv") is x
    bad = x.detach().clone()
    bad[0, 1, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"^deconv holds NaN or Inf values$"):
        check_input(bad.requires_grad_(), 3, "deconv")
