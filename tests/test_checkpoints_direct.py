"""Direct tests of pnpdeblur.checkpoints and pnpdeblur.nets._base on a two-layer toy network.

Fast (tiny modules, files in tmp_path): they are also the selection for ``make mutation`` of
both modules. Corrupt files are made byte by byte from the safetensors layout (an 8-byte
little-endian header length, a JSON header, the raw data).
"""
import json
import re
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import pnpdeblur
from pnpdeblur.checkpoints import (
    CheckpointError,
    build_from_checkpoint,
    half_state,
    halve_checkpoint,
    load_checkpoint,
    load_into,
    read_header,
    save_checkpoint,
    tensors_digest,
)
from pnpdeblur.nets import _base
from pnpdeblur.nets._base import WEIGHTS_DIR, CheckpointMixin, crop_to, pad_to_multiple

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Tiny(CheckpointMixin, nn.Module):
    """1 → ``channels`` 1×1 convolution and a BatchNorm (running statistics, an int64 counter)."""

    def __init__(self, channels: int = 2, bias: bool = True):
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.config = {"channels": channels, "bias": bias}
        self.conv = nn.Conv2d(1, channels, 1, bias=bias)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class Other(Tiny):
    """Same tensors as Tiny, another architecture name."""


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    m = Tiny(**kw)
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(1, 2)
        m.bn.num_batches_tracked.fill_(7)
    return m


def _same_state(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def _raw_header(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


# ---------------------------------------------------------------------------------- saving


def test_save_writes_tensors_header_sidecar_and_returns_the_path(tmp_path):
    m = _tiny()
    p = tmp_path / "w.safetensors"
    out = save_checkpoint(p, m, "Tiny", {"channels": 2, "bias": True}, metadata={"epochs": 3})
    assert isinstance(out, Path) and out == p
    _same_state(load_file(str(p)), m.state_dict())
    meta = _raw_header(p)
    assert set(meta) == {"format", "pnpdeblur", "pnpdeblur_sha256"}
    assert meta["format"] == "pt"  # what other safetensors readers (transformers) expect
    header = {"architecture": "Tiny", "config": {"channels": 2, "bias": True}, "epochs": 3}
    assert json.loads(meta["pnpdeblur"]) == header
    side = tmp_path / "w.json"
    assert side.read_text() == json.dumps(header, indent=2, sort_keys=True) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.json", "w.safetensors"]


def test_save_accepts_a_mapping_of_parameters_and_non_contiguous_tensors(tmp_path):
    w = nn.Parameter(torch.arange(6.0).reshape(2, 3))
    t = torch.arange(12.0).reshape(3, 4).t()  # not contiguous
    p = save_checkpoint(tmp_path / "m.safetensors", {"w": w, "t": t}, "Raw", {}, sidecar=False)
    back = load_file(str(p))
    assert torch.equal(back["w"], w.detach()) and torch.equal(back["t"], t)
    assert not (tmp_path / "m.json").exists()


def test_save_header_is_canonical_whatever_the_key_order(tmp_path):
    m = _tiny()
    a = save_checkpoint(tmp_path / "a.safetensors", m, "Tiny", {"channels": 2, "bias": True},
                        metadata={"z": 1, "a": 2}, sidecar=False)
    b = save_checkpoint(tmp_path / "b.safetensors", m, "Tiny", {"bias": True, "channels": 2},
                        metadata={"a": 2, "z": 1}, sidecar=False)
    text = _raw_header(a)["pnpdeblur"]
    assert _raw_header(b)["pnpdeblur"] == text  # the same bytes for the same header
    assert text == json.dumps(json.loads(text), sort_keys=True)


def test_save_architecture_is_stored_as_a_string(tmp_path):
    class Named:
        def __str__(self):
            return "Tiny"

    p = save_checkpoint(tmp_path / "w.safetensors", _tiny(), Named(), {"channels": 2}, sidecar=False)
    assert read_header(p)["architecture"] == "Tiny"


def test_save_creates_missing_folders_and_overwrites(tmp_path):
    p = tmp_path / "a" / "b" / "w.safetensors"
    save_checkpoint(p, _tiny(0), "Tiny", {"channels": 2})
    save_checkpoint(p, _tiny(1), "Tiny", {"channels": 2})  # folder exists now
    _same_state(load_file(str(p)), _tiny(1).state_dict())


def test_save_refuses_reserved_metadata_keys(tmp_path):
    with pytest.raises(ValueError, match=r"^metadata must not hold the reserved header keys \['config'\]$"):
        save_checkpoint(tmp_path / "w.safetensors", _tiny(), "Tiny", {}, metadata={"config": 1})
    with pytest.raises(ValueError,
                       match=r"^metadata must not hold the reserved header keys \['architecture', 'config'\]$"):
        save_checkpoint(tmp_path / "w.safetensors", _tiny(), "Tiny", {},
                        metadata={"config": 1, "architecture": "x", "ok": 2})
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_json_path_only_with_a_sidecar(tmp_path):
    with pytest.raises(ValueError, match=r"^path must not end in \.json when sidecar=True \(the header goes there\)"):
        save_checkpoint(tmp_path / "w.json", _tiny(), "Tiny", {})
    p = save_checkpoint(tmp_path / "w.json", _tiny(), "Tiny", {"channels": 2}, sidecar=False)
    assert read_header(p)["architecture"] == "Tiny"


# ---------------------------------------------------------------------------------- reading


def test_read_header_returns_the_whole_header(tmp_path):
    p = save_checkpoint(tmp_path / "w.safetensors", _tiny(), "Tiny", {"channels": 2}, {"note": "x"})
    assert read_header(str(p)) == {"architecture": "Tiny", "config": {"channels": 2}, "note": "x"}


def test_read_header_missing_file_or_folder(tmp_path):
    err = re.escape(f"checkpoint not found: {tmp_path / 'nope.safetensors'}") + "$"
    with pytest.raises(CheckpointError, match="^" + err):
        read_header(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"^checkpoint not found: "):
        read_header(tmp_path)  # a folder
    assert issubclass(CheckpointError, ValueError)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_read_header_corrupt_file(tmp_path, damage):
    p = save_checkpoint(tmp_path / "w.safetensors", _tiny(), "Tiny", {"channels": 2}, sidecar=False)
    data = p.read_bytes()
    p.write_bytes({"truncated": data[:-4], "garbage": b"not a safetensors file at all", "empty": b""}[damage])
    with pytest.raises(CheckpointError,
                       match="^" + re.escape(f"{p} is not a readable safetensors file (corrupt?): ")) as e:
        read_header(p)
    assert e.value.__cause__ is not None


def test_read_header_foreign_safetensors_files(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))  # no metadata at all
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} has no 'pnpdeblur' header: not a pnpdeblur")):
        read_header(p)
    save_file({"w": torch.zeros(2)}, str(p), metadata={"format": "pt"})  # someone else's metadata
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} has no 'pnpdeblur' header")):
        read_header(p)


def test_read_header_corrupt_json(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"pnpdeblur": "{not json"})
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} has a corrupt 'pnpdeblur' header: ")) as e:
        read_header(p)
    assert isinstance(e.value.__cause__, json.JSONDecodeError)


@pytest.mark.parametrize("header", [[1, 2], {"config": {}}, {"architecture": "Tiny"}, "Tiny"])
def test_read_header_must_name_architecture_and_config(tmp_path, header):
    p = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"pnpdeblur": json.dumps(header)})
    with pytest.raises(CheckpointError,
                       match="^" + re.escape(f"{p}: header must name 'architecture' and 'config', got {header!r}")):
        read_header(p)


def test_load_checkpoint_names_the_file_of_a_bad_header(tmp_path):
    p = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2)}, str(p), metadata={"pnpdeblur": json.dumps({"config": {}})})
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: header must name 'architecture'")):
        load_checkpoint(p)


def test_load_checkpoint_checks_the_architecture_only_when_asked(tmp_path):
    m = _tiny()
    p = save_checkpoint(tmp_path / "w.safetensors", m, "Tiny", {"channels": 2}, {"k": 1})
    for state, header in (load_checkpoint(p), load_checkpoint(str(p), "Tiny")):
        _same_state(state, m.state_dict())
        assert header == {"architecture": "Tiny", "config": {"channels": 2}, "k": 1}
    with pytest.raises(CheckpointError,
                       match="^" + re.escape(f"{p} holds a 'Tiny' checkpoint, expected 'DnCNN'") + "$"):
        load_checkpoint(p, "DnCNN")


def _with_bad_tensor_data(path):
    """A file whose header reads but whose tensor does not: a 4-bit float with an odd last axis."""
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header = {"__metadata__": header["__metadata__"], name: {"dtype": "F4", "shape": [2, 3], "data_offsets": [0, 3]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + bytes(3))


def test_load_checkpoint_unreadable_tensors(tmp_path):
    p = save_checkpoint(tmp_path / "w.safetensors", {"w": torch.zeros(1, 3)}, "Raw", {}, sidecar=False)
    _with_bad_tensor_data(p)
    assert read_header(p)["architecture"] == "Raw"  # the header alone is fine
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: could not read the tensors (corrupt?): ")) as e:
        load_checkpoint(p, "Raw")
    assert e.value.__cause__ is not None


# ---------------------------------------------------------------------------------- loading into models


def test_load_into_defaults_to_the_class_name_and_returns_the_header(tmp_path):
    src = _tiny(0)
    p = save_checkpoint(tmp_path / "w.safetensors", src, "Tiny", {"channels": 2}, {"k": 2})
    dst = _tiny(1)
    header = load_into(dst, p)
    assert header == {"architecture": "Tiny", "config": {"channels": 2}, "k": 2}
    _same_state(dst.state_dict(), src.state_dict())
    with pytest.raises(CheckpointError, match=r"holds a 'Tiny' checkpoint, expected 'Other'$"):
        load_into(Other(), p)
    other = Other()
    load_into(other, p, architecture="Tiny")  # an explicit name wins over the class name
    _same_state(other.state_dict(), src.state_dict())


@pytest.mark.parametrize("state", [
    {"conv.weight": torch.zeros(2, 1, 1, 1)},  # missing tensors
    {**_tiny().state_dict(), "extra": torch.zeros(1)},  # an unexpected one
    {**_tiny().state_dict(), "conv.weight": torch.zeros(3, 1, 1, 1)},  # a wrong shape
])
def test_load_into_is_strict(tmp_path, state):
    p = save_checkpoint(tmp_path / "w.safetensors", state, "Tiny", {"channels": 2})
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p} does not fit Tiny: ")):
        load_into(Tiny(), p)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_load_into_refuses_non_finite_weights(tmp_path, bad):
    # it loaded them silently before (only build_from_checkpoint checked)
    state = _tiny(0).state_dict()
    state["conv.bias"][0] = bad
    p = save_checkpoint(tmp_path / "w.safetensors", state, "Tiny", {"channels": 2})
    dst = _tiny(1)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: tensor 'conv.bias' holds NaN or Inf") + "$"):
        load_into(dst, p)
    _same_state(dst.state_dict(), before)  # nothing was loaded


def test_build_from_checkpoint_builds_loads_and_evaluates(tmp_path):
    src = _tiny(0, channels=3, bias=False)
    p = save_checkpoint(tmp_path / "w.safetensors", src, "Tiny", src.config, {"k": 3})
    m = build_from_checkpoint(Tiny, p)
    assert type(m) is Tiny and m.config == {"channels": 3, "bias": False} and m.conv.bias is None
    assert not m.training and not m.bn.training
    assert m.header == {"architecture": "Tiny", "config": {"channels": 3, "bias": False}, "k": 3}
    _same_state(m.state_dict(), src.state_dict())
    q = save_checkpoint(tmp_path / "o.safetensors", src, "Legacy", src.config)
    assert type(build_from_checkpoint(Tiny, q, "Legacy")) is Tiny
    with pytest.raises(CheckpointError, match=r"holds a 'Legacy' checkpoint, expected 'Tiny'$"):
        build_from_checkpoint(Tiny, q)


@pytest.mark.parametrize("config, error", [({"channels": 0}, "channels must be"), ({"width": 2}, "")])
def test_build_from_checkpoint_config_the_class_rejects(tmp_path, config, error):
    p = save_checkpoint(tmp_path / "w.safetensors", _tiny(), "Tiny", config)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: config does not fit Tiny: {error}")) as e:
        build_from_checkpoint(Tiny, p)
    assert isinstance(e.value.__cause__, (TypeError, ValueError))
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: config does not fit Odd: ")):
        build_from_checkpoint(Tiny, save_checkpoint(p, _tiny(), "Odd", config), "Odd")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_build_from_checkpoint_refuses_non_finite_weights(tmp_path, bad):
    state = _tiny().state_dict()
    state["bn.running_var"][1] = bad
    p = save_checkpoint(tmp_path / "w.safetensors", state, "Tiny", {"channels": 2})
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{p}: tensor 'bn.running_var' holds NaN or Inf") + "$"):
        build_from_checkpoint(Tiny, p)


def test_build_from_checkpoint_is_strict(tmp_path):
    state = {**_tiny().state_dict(), "conv.weight": torch.zeros(2, 1, 3, 3)}
    p = save_checkpoint(tmp_path / "w.safetensors", state, "Tiny", {"channels": 2})
    with pytest.raises(CheckpointError,
                       match="^" + re.escape(f"{p} does not fit Tiny{{'channels': 2}}: Error(s) in loading")):
        build_from_checkpoint(Tiny, p)


@pytest.mark.parametrize("drop, add", [("bn.running_var", None), (None, "extra.weight")])
def test_build_from_checkpoint_refuses_missing_and_unexpected_tensors(tmp_path, drop, add):
    state = _tiny().state_dict()
    if drop:
        del state[drop]
    if add:
        state[add] = torch.zeros(2)
    p = save_checkpoint(tmp_path / "w.safetensors", state, "Tiny", {"channels": 2})
    what = "Missing key(s)" if drop else "Unexpected key(s)"
    with pytest.raises(CheckpointError, match="^" + re.escape(
            f"{p} does not fit Tiny{{'channels': 2}}: Error(s) in loading state_dict for Tiny:\n\t{what}")):
        build_from_checkpoint(Tiny, p)


# ---------------------------------------------------------------------------------- float16 export


def test_half_state_halves_weights_only():
    m = _tiny()
    with torch.no_grad():
        m.bn.running_var[0] = 1e6  # beyond float16's range: must stay float32
    m.conv.weight.requires_grad_(True)
    src = m.state_dict(keep_vars=True)
    out = half_state(src)
    assert set(out) == set(src)
    for k in ("conv.weight", "conv.bias", "bn.weight", "bn.bias"):
        assert out[k].dtype == torch.float16 and torch.equal(out[k], src[k].detach().half()), k
    for k in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked"):
        assert out[k].dtype == src[k].dtype and torch.equal(out[k], src[k]), k
        assert out[k].data_ptr() == src[k].data_ptr()  # kept as it is (a CPU tensor is not copied)
    assert all(not v.requires_grad for v in out.values())


def test_half_state_keeps_non_float_tensors_and_only_the_bn_suffixes():
    state = {"idx": torch.tensor([70000, 3]), "flag": torch.tensor([True]),
             "running_mean_scale": torch.tensor([0.1]), "x.running_var": torch.tensor([0.3])}
    out = half_state(state)
    assert out["idx"].dtype == torch.int64 and torch.equal(out["idx"], state["idx"])
    assert out["flag"].dtype == torch.bool
    assert out["running_mean_scale"].dtype == torch.float16  # only a suffix counts
    assert out["x.running_var"].dtype == torch.float32


@pytest.mark.parametrize("value", [7e4, -7e4, float("nan")])
def test_half_state_refuses_weights_float16_cannot_hold(value):
    with pytest.raises(ValueError, match=r"^conv\.weight is not finite in float16; export with --float32$"):
        half_state({"bn.running_var": torch.tensor([1.0]), "conv.weight": torch.tensor([1.0, value])})
    assert half_state({"conv.weight": torch.tensor([65504.0])})["conv.weight"].item() == 65504.0
    with pytest.raises(ValueError, match=r"^bn\.running_var is not finite in float16"):
        half_state({"bn.running_var": torch.tensor([float("inf")])})  # kept, but still not finite


def test_halve_checkpoint_keeps_the_header_and_adds_extra(tmp_path):
    m = _tiny()
    src = save_checkpoint(tmp_path / "src.safetensors", m, "Tiny", m.config, {"epochs": 5, "psnr": 30.0})
    dst = halve_checkpoint(src, tmp_path / "out" / "dst.safetensors", "Tiny", {"psnr": 29.9, "dtype": "float16"})
    assert dst == tmp_path / "out" / "dst.safetensors"
    header = read_header(dst)
    assert header == {"architecture": "Tiny", "config": m.config, "epochs": 5, "psnr": 29.9, "dtype": "float16"}
    assert json.loads((tmp_path / "out" / "dst.json").read_text()) == header
    _same_state(load_file(str(dst)), half_state(m.state_dict()))
    back = build_from_checkpoint(Tiny, dst)  # loading casts float16 back into the float32 model
    assert back.conv.weight.dtype == torch.float32
    assert torch.equal(back.conv.weight, m.conv.weight.detach().half().float())
    with pytest.raises(CheckpointError, match=r"holds a 'Tiny' checkpoint, expected 'Other'$"):
        halve_checkpoint(src, tmp_path / "x.safetensors", "Other", {})


# ---------------------------------------------------------------------------------- CheckpointMixin


def test_mixin_save_and_from_checkpoint_round_trip(tmp_path):
    m = _tiny(3, channels=1)
    p = m.save(tmp_path / "t.safetensors", metadata={"epochs": 2})
    assert p == tmp_path / "t.safetensors"
    assert read_header(p) == {"architecture": "Tiny", "config": {"channels": 1, "bias": True}, "epochs": 2}
    assert (tmp_path / "t.json").is_file()
    back = Tiny.from_checkpoint(p)
    assert type(back) is Tiny and not back.training and back.header["epochs"] == 2
    _same_state(back.state_dict(), m.state_dict())
    with pytest.raises(CheckpointError, match=r"holds a 'Tiny' checkpoint, expected 'Other'$"):
        Other.from_checkpoint(p)
    q = Other(channels=1).save(tmp_path / "o.safetensors")
    assert read_header(q)["architecture"] == "Other" and type(Other.from_checkpoint(q)) is Other
    assert "epochs" not in read_header(q)


def test_weights_dir_is_the_package_weights_folder():
    assert WEIGHTS_DIR == Path(pnpdeblur.__file__).resolve().parent / "weights"
    assert WEIGHTS_DIR.is_absolute()


def test_pretrained_path_and_pretrained(tmp_path, monkeypatch):
    monkeypatch.setattr(_base, "WEIGHTS_DIR", tmp_path)

    class NoWeights(Tiny):
        pass

    with pytest.raises(FileNotFoundError, match=r"^no weights ship for NoWeights; train them or load your own "
                                                r"with NoWeights\.from_checkpoint\(path\)$"):
        NoWeights.pretrained_path()

    class Shipped(Tiny):
        pretrained_file = "shipped.safetensors"
        training_command = "pnpdeblur train tiny"

    with pytest.raises(FileNotFoundError, match="^" + re.escape(
            f"shipped weights not found at {tmp_path / 'shipped.safetensors'}; reproduce them with: "
            "pnpdeblur train tiny") + "$"):
        Shipped.pretrained_path()

    class Quiet(Tiny):
        pretrained_file = "quiet.safetensors"

    with pytest.raises(FileNotFoundError,
                       match="^" + re.escape(f"shipped weights not found at {tmp_path / 'quiet.safetensors'}") + "$"):
        Quiet.pretrained_path()

    src = _tiny(5)
    with torch.no_grad():
        src.bn.running_var.fill_(1.5)
    save_checkpoint(tmp_path / "shipped.safetensors", src, "Shipped", src.config)
    assert Shipped.pretrained_path() == tmp_path / "shipped.safetensors"
    m = Shipped.pretrained()
    assert type(m) is Shipped and not m.training
    _same_state(m.state_dict(), src.state_dict())
    (tmp_path / "quiet.safetensors").mkdir()  # a folder is not a weights file
    with pytest.raises(FileNotFoundError, match=r"^shipped weights not found at "):
        Quiet.pretrained_path()


# ---------------------------------------------------------------------------------- padding


def _reference_pad(x, ph, pw, mode):
    """numpy.pad at the bottom/right: ``reflect`` (no edge repeat), ``edge``, ``constant``."""
    import numpy as np

    return torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode))


@pytest.mark.parametrize("h, w, multiple, ref", [
    (5, 7, 4, "reflect"),   # pads 3 and 1, both smaller than the sizes
    (4, 5, 8, "edge"),      # H pad 4 == H: reflection impossible
    (9, 3, 6, "edge"),      # W pad 3 == W, H pad 3 < 9: both axes replicate
    (3, 4, 6, "edge"),      # H pad 3 == H, W pad 2 < 4
    (6, 3, 4, "reflect"),   # H pad 2 < 6, W pad 1 < 3
    (1, 2, 2, "edge"),      # one row: a pad of 1 is not < 1
])
def test_pad_to_multiple_reflects_where_possible(h, w, multiple, ref):
    x = torch.arange(2 * h * w, dtype=torch.float64).reshape(1, 2, h, w) ** 1.5
    y, size = pad_to_multiple(x, multiple)
    ph, pw = -h % multiple, -w % multiple
    assert size == (h, w) and y.shape == (1, 2, h + ph, w + pw)
    assert y.shape[-2] % multiple == 0 and y.shape[-1] % multiple == 0
    assert torch.equal(y, _reference_pad(x, ph, pw, ref))
    assert torch.equal(crop_to(y, size), x)


def test_pad_to_multiple_other_modes_and_no_pad():
    x = torch.rand(2, 1, 5, 6)
    y, size = pad_to_multiple(x, 3, mode="constant")
    assert size == (5, 6) and torch.equal(y, _reference_pad(x, 1, 0, "constant"))
    y, _ = pad_to_multiple(x, 4, mode="replicate")
    assert torch.equal(y, _reference_pad(x, 3, 2, "edge"))
    y, _ = pad_to_multiple(x, 4, "circular")  # 3 < 5 but circular is not reflect: kept
    assert torch.equal(y[..., 5:, :6], x[..., :3, :])
    v = x[..., :4, :]
    for m in (1, 2):  # 4 x 6 needs no pad: the input itself comes back
        z, size = pad_to_multiple(v, m)
        assert z is v and size == (4, 6)


def test_pad_to_multiple_pads_when_only_one_axis_needs_it():
    x = torch.rand(1, 1, 4, 5)
    y, _ = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 8) and torch.equal(y, _reference_pad(x, 0, 3, "reflect"))
    y, _ = pad_to_multiple(x.transpose(-1, -2), 4)
    assert y.shape == (1, 1, 8, 4)


@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4), (1, 1, 1, 4, 4)])
def test_pad_to_multiple_needs_four_axes(shape):
    with pytest.raises(ValueError, match="^" + re.escape(f"x must have shape (N, C, H, W), got {shape}") + "$"):
        pad_to_multiple(torch.zeros(shape), 2)


@pytest.mark.parametrize("multiple", [0, -2, 2.0, "2", None])
def test_pad_to_multiple_needs_a_positive_int(multiple):
    with pytest.raises(ValueError, match="^" + re.escape(f"multiple must be a positive int, got {multiple!r}") + "$"):
        pad_to_multiple(torch.zeros(1, 1, 3, 3), multiple)


def test_crop_to_keeps_the_top_left_corner():
    x = torch.arange(2 * 3 * 4 * 5.0).reshape(2, 3, 4, 5)
    assert torch.equal(crop_to(x, (2, 3)), x[:, :, :2, :3])
    assert torch.equal(crop_to(x[0], (3, 1)), x[0, :, :3, :1])


# -- the tensors' checksum ----------------------------------------------------------------


def _by_hand_digest(state):
    """SHA-256 over (name, dtype, shape) JSON and the raw little-endian bytes, names sorted."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        a = state[k].detach().contiguous()
        h.update(json.dumps([k, str(a.dtype), list(a.shape)]).encode())
        h.update(a.numpy().tobytes() if a.dtype != torch.bfloat16 else a.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def test_digest_is_the_sha256_of_names_dtypes_shapes_and_bytes():
    state = {"b": torch.arange(6.0).reshape(2, 3).t(), "a": torch.tensor(3, dtype=torch.int64),
             "c": torch.ones(2, dtype=torch.bfloat16), "d": torch.zeros(0, 4), "e": torch.tensor([True, False])}
    assert tensors_digest(state) == _by_hand_digest(state)
    # any change of a value, a name, a dtype or a shape changes it
    for other in ({**state, "a": torch.tensor(4)}, {**{k: v for k, v in state.items() if k != "a"}, "z": state["a"]},
                  {**state, "d": torch.zeros(0, 4, dtype=torch.float64)}, {**state, "d": torch.zeros(4, 0)}):
        assert tensors_digest(other) != tensors_digest(state)


def test_save_stores_the_digest_and_load_checks_it(tmp_path):
    m = _tiny()
    p = save_checkpoint(tmp_path / "w.safetensors", m, "Tiny", {"channels": 2, "bias": True})
    assert _raw_header(p)["pnpdeblur_sha256"] == tensors_digest(m.state_dict()) == _by_hand_digest(m.state_dict())
    state, _ = load_checkpoint(p, "Tiny")
    _same_state(state, m.state_dict())


def _flip_one_tensor_byte(path, name):
    """Change one byte inside tensor ``name``'s data, leaving a readable file."""
    raw = bytearray(path.read_bytes())
    n = struct.unpack("<Q", raw[:8])[0]
    begin = 8 + n + json.loads(raw[8:8 + n])[name]["data_offsets"][0]
    raw[begin] ^= 0x01  # the lowest mantissa bit of a float32: still a finite number
    path.write_bytes(bytes(raw))


def test_a_damaged_tensor_is_an_error_not_garbage(tmp_path):
    m = _tiny()
    p = save_checkpoint(tmp_path / "w.safetensors", m, "Tiny", {"channels": 2, "bias": True})
    name = sorted(m.state_dict())[0]
    _flip_one_tensor_byte(p, name)
    damaged = load_file(str(p))[name]
    assert torch.isfinite(damaged).all() and not torch.equal(damaged, m.state_dict()[name])  # it decodes
    message = (f"{p}: the tensors do not match the checksum saved with them "
               "(the file is damaged; re-copy or re-export it)")
    with pytest.raises(CheckpointError, match="^" + re.escape(message) + "$"):
        load_checkpoint(p, "Tiny")
    with pytest.raises(CheckpointError, match=r"checksum"):
        load_into(_tiny(), p, "Tiny")


def test_files_without_a_digest_still_load(tmp_path):
    m = _tiny()
    p = tmp_path / "old.safetensors"
    header = {"architecture": "Tiny", "config": {"channels": 2, "bias": True}}
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(p),
              metadata={"format": "pt", "pnpdeblur": json.dumps(header)})
    state, got = load_checkpoint(p, "Tiny")
    assert got == header
    _same_state(state, m.state_dict())


@pytest.mark.parametrize("path", sorted(WEIGHTS_DIR.glob("*.safetensors")), ids=lambda p: p.name)
def test_every_shipped_file_carries_the_checksum_of_its_tensors(path, tmp_path):
    # without it a flipped bit that still decodes as a finite weight loads silently
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    assert meta["pnpdeblur_sha256"] == tensors_digest(load_file(str(path)))
    state, _ = load_checkpoint(path)
    name = sorted(state)[len(state) // 2]
    damaged = dict(state)
    damaged[name] = state[name].clone()
    damaged[name].view(-1)[0] = -damaged[name].view(-1)[0] if damaged[name].view(-1)[0] != 0 else 1.0
    copy = tmp_path / path.name
    save_file(damaged, str(copy), metadata=meta)
    with pytest.raises(CheckpointError, match=r"the tensors do not match the checksum saved with them"):
        load_checkpoint(copy)
