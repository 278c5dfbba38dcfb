"""DVD (Su et al., as fine-tuned by Chen et al.) against independent references: a functional
forward written from the authors' layer list (model2_symskip_nngraph2_deeper.lua, as listed in
the module docstring), padding by hand, the official parameter order, parameter counts, argument
checks and the official loader's error messages.

Widths 2–4, float64, 8²–24² stacks.
"""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.nets.dvd import DVD
from _nets import randomise_state as randomise

# (name, kind, in, out, kernel, stride) with the widths w0..w3 and T·C as symbols
LAYERS = [("f0", "c", "tc", 0, 5, 1), ("d1", "c", 0, 0, 3, 2), ("f1", "c", 0, 1, 3, 1), ("f2", "c", 1, 1, 3, 1),
          ("d2", "c", 1, 2, 3, 2), ("f3", "c", 2, 2, 3, 1), ("f4", "c", 2, 2, 3, 1), ("f5", "c", 2, 2, 3, 1),
          ("d3", "c", 2, 3, 3, 2), ("f6", "c", 3, 3, 3, 1), ("f7", "c", 3, 3, 3, 1), ("f8", "c", 3, 3, 3, 1),
          ("u1", "u", 3, 2, 4, 2), ("f9", "c", 2, 2, 3, 1), ("f10", "c", 2, 2, 3, 1), ("f11", "c", 2, 2, 3, 1),
          ("u2", "u", 2, 1, 4, 2), ("f12", "c", 1, 1, 3, 1), ("f13", "c", 1, 0, 3, 1),
          ("u3", "u", 0, 0, 4, 2), ("f14", "c", 0, "tc", 3, 1), ("f15", "c", "tc", "c", 3, 1)]


def dims(widths, c, t):
    def d(v):
        return {"tc": t * c, "c": c}.get(v, None) if isinstance(v, str) else widths[v]
    return [(name, kind, d(i), d(o), k, s) for name, kind, i, o, k, s in LAYERS]


def reference(net, x, training=False):
    """The authors' graph with functional ops: conv → BN (eps 1e-3) → ReLU, the three additive skips
    before their ReLU, F15 without ReLU, sigmoid(centre frame + F15)."""
    sd = dict(net.named_parameters())
    buf = dict(net.named_buffers())

    def unit(name, h):
        kind, k, s = {n: (kd, k_, s_) for n, kd, _, _, k_, s_ in LAYERS}[name]
        if kind == "c":
            h = F.conv2d(h, sd[f"{name}.conv.weight"], sd[f"{name}.conv.bias"], stride=s, padding=k // 2)
        else:
            h = F.conv_transpose2d(h, sd[f"{name}.conv.weight"], sd[f"{name}.conv.bias"], stride=2, padding=1)
        rm, rv = buf[f"{name}.bn.running_mean"], buf[f"{name}.bn.running_var"]
        if training:
            rm, rv = rm.clone(), rv.clone()
        return F.batch_norm(h, rm, rv, sd[f"{name}.bn.weight"], sd[f"{name}.bn.bias"], training=training, eps=1e-3)

    r = F.relu
    f0 = r(unit("f0", x))
    h = r(unit("d1", f0))
    h = r(unit("f1", h))
    f2 = r(unit("f2", h))
    h = r(unit("d2", f2))
    for n in ("f3", "f4"):
        h = r(unit(n, h))
    f5 = r(unit("f5", h))
    h = r(unit("d3", f5))
    for n in ("f6", "f7", "f8"):
        h = r(unit(n, h))
    h = r(f5 + unit("u1", h))
    for n in ("f9", "f10", "f11"):
        h = r(unit(n, h))
    h = r(f2 + unit("u2", h))
    h = r(unit("f12", h))
    h = r(unit("f13", h))
    h = r(f0 + unit("u3", h))
    res = unit("f15", r(unit("f14", h)))
    c, t = net.config["in_channels"], net.config["frames"]
    mid = t // 2
    return torch.sigmoid(x[:, mid * c:(mid + 1) * c] + res)


@pytest.mark.parametrize("c, t, widths", [(3, 5, (4, 4, 4, 4)), (2, 3, (2, 3, 4, 5)), (1, 7, (2, 2, 3, 3))])
def test_forward_matches_the_functional_graph(c, t, widths):
    net = randomise(DVD(in_channels=c, frames=t, widths=widths).double(), seed=t).eval()
    x = torch.rand(2, t * c, 16, 24, dtype=torch.float64)
    with torch.no_grad():
        out = net(x)
        torch.testing.assert_close(out, reference(net, x))
        torch.testing.assert_close(net.forward_multiscale(x)[0], out)
    assert out.shape == (2, c, 16, 24)


def test_training_mode_uses_batch_statistics():
    net = randomise(DVD(in_channels=1, frames=3, widths=(2, 3, 3, 4)).double(), seed=9).train()
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    ref = reference(net, x, training=True)
    torch.testing.assert_close(net(x), ref)
    assert not torch.allclose(ref, reference(net, x, training=False))


def test_odd_sizes_are_reflection_padded_to_8():
    net = randomise(DVD(in_channels=1, frames=3, widths=(2, 2, 2, 2)).double(), seed=2).eval()
    x = torch.rand(1, 3, 13, 10, dtype=torch.float64)
    xp = x[:, :, list(range(13)) + [11, 10, 9]][..., list(range(10)) + [8, 7, 6, 5, 4, 3]]
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(net, xp)[..., :13, :10])


# ------------------------------------------------------------------ layer list, counts, order
def count(widths, c, t):
    return sum(cin * cout * k * k + 3 * cout for _, _, cin, cout, k, _ in dims(widths, c, t))


def test_parameter_counts_from_the_layer_list():
    small = DVD(widths=(8, 16, 32, 64))
    assert small.num_parameters() == count((8, 16, 32, 64), 3, 5)
    assert round(small.num_parameters() / 1e6, 2) == 0.24  # documented
    with torch.device("meta"):
        full = DVD()
    assert full.num_parameters() == count((64, 128, 256, 512), 3, 5)
    assert round(full.num_parameters() / 1e6, 1) == 15.3  # documented
    odd = DVD(in_channels=2, frames=3, widths=(2, 3, 4, 5))
    assert odd.num_parameters() == count((2, 3, 4, 5), 2, 3)
    odd.f0.conv.weight.requires_grad_(False)  # only trainable parameters count
    assert odd.num_parameters() == count((2, 3, 4, 5), 2, 3) - 5 * 5 * 6 * 2


def test_layer_strides_kernels_and_batch_norm():
    net = DVD(in_channels=2, frames=3, widths=(2, 3, 4, 5))
    for name, kind, cin, cout, k, s in dims((2, 3, 4, 5), 2, 3):
        conv = getattr(net, name).conv
        assert isinstance(conv, torch.nn.ConvTranspose2d) == (kind == "u"), name
        assert conv.kernel_size == (k, k) and conv.stride == (s, s), name
        assert conv.padding == ((1, 1) if kind == "u" else (k // 2, k // 2)), name
        assert (conv.in_channels, conv.out_channels) == (cin, cout), name
        bn = getattr(net, name).bn
        assert bn.eps == 1e-3 and bn.num_features == cout and bn.affine, name
    assert net.in_channels == 6 and net.stride == 8


def test_official_parameter_order_is_the_definition_order():
    net = DVD(in_channels=2, frames=3, widths=(2, 3, 4, 5))
    expected = []
    for name, kind, cin, cout, k, _ in dims((2, 3, 4, 5), 2, 3):
        w = (cout, cin, k, k) if kind == "c" else (cin, cout, k, k)
        expected += [(f"{name}.conv.weight", w), (f"{name}.conv.bias", (cout,)), (f"{name}.bn.weight", (cout,)),
                     (f"{name}.bn.bias", (cout,))]
    got = [(n, tuple(s)) for n, s in net.official_parameter_order()]
    assert got == expected


# ------------------------------------------------------------------ argument checks
@pytest.mark.parametrize("kw, msg", [
    (dict(in_channels=0), r"^in_channels must be an int >= 1, got 0$"),
    (dict(frames=0), r"^frames must be an int >= 1, got 0$"),
    (dict(frames=4), r"^frames must be odd \(the centre frame is restored\), got 4$"),
    (dict(widths=(4, 4, 4)), r"^widths must be a sequence of 4 ints, got \(4, 4, 4\)$"),
    (dict(widths="abcd"), r"^widths must be a sequence of 4 ints, got 'abcd'$"),
    (dict(widths=b"abcd"), r"^widths must be a sequence of 4 ints, got b'abcd'$"),
    (dict(widths=iter((1, 2, 3, 4))), r"^widths must be a sequence of 4 ints, got <tuple_iterator"),
    (dict(widths=(4, 0, 4, 4)), r"^widths\[1\] must be an int >= 1, got 0$"),
    (dict(widths=(4, 4, 4, -1)), r"^widths\[3\] must be an int >= 1, got -1$"),
])
def test_config_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        DVD(**kw)


def test_one_frame_one_channel_is_allowed():
    net = DVD(in_channels=1, frames=1, widths=[1, 1, 1, 1]).eval()
    assert net.config == dict(in_channels=1, frames=1, widths=[1, 1, 1, 1])
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)


def test_multiscale_error_names_the_argument():
    net = DVD(in_channels=1, frames=1, widths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=re.escape("frames's H and W must be multiples of DVD.stride = 8 "
                                                   "in forward_multiscale, got (8, 12)")):
        net.forward_multiscale(torch.rand(1, 1, 8, 12))
    with pytest.raises(ValueError, match=r"^frames must have shape \(N, 1, H, W\)"):
        net.forward_multiscale(torch.rand(1, 2, 8, 8))


# ------------------------------------------------------------------ official loader (default widths)
def release(in_channels=3, frames=5, seed=0):
    with torch.device("meta"):
        order = DVD(in_channels=in_channels, frames=frames).official_parameter_order()
    n = sum(int(np.prod(s)) for _, s in order)
    g = torch.Generator().manual_seed(seed)
    flat = torch.randn(n, generator=g) * 0.01
    outs = [s[0] for name, s in order if name.endswith("bn.weight")]
    means = [torch.randn(o, generator=g) for o in outs]
    variances = [torch.rand(o, generator=g) + 0.5 for o in outs]
    return flat, means, variances


def test_from_official_other_frames_and_lua_tables():
    flat, means, variances = release(in_channels=1, frames=3, seed=1)
    # torchfile gives Lua tables as dicts keyed 1, 2, …
    table = {2: {i + 1: v.numpy() for i, v in enumerate(variances)}, 1: {i + 1: m.numpy() for i, m in enumerate(means)}}
    net = DVD.from_official(flat.double().numpy(), table, in_channels=1, frames=3)
    assert net.config == dict(in_channels=1, frames=3, widths=[64, 128, 256, 512]) and not net.training
    assert net.f0.conv.weight.dtype == torch.float32
    assert torch.equal(net.f0.conv.weight.flatten(), flat[:64 * 3 * 25])
    assert torch.equal(net.f15.bn.bias, flat[-1:])
    assert torch.equal(net.f15.bn.running_var, variances[-1]) and torch.equal(net.d2.bn.running_mean, means[4])
    assert all(int(b) == 0 for n, b in net.named_buffers() if n.endswith("num_batches_tracked"))
    with pytest.raises(CheckpointError, match=r"^the official DVD parameter vector must hold \d+ values for 5 frames × "
                                              r"3 channels, got " + str(flat.numel()) + "$"):
        DVD.from_official(flat, (means, variances))


def test_from_official_statistics_errors(tmp_path):
    flat, means, variances = release()
    with pytest.raises(CheckpointError, match=r"^batch-norm statistics of f3 must have 256 values, got 256 and 255$"):
        DVD.from_official(flat, (means, variances[:5] + [variances[5][:-1]] + variances[6:]))
    bad = [v.clone() for v in variances]
    bad[7][0] = float("inf")
    with pytest.raises(CheckpointError, match=r"^batch-norm statistics of f5 hold NaN/Inf or negative variances$"):
        DVD.from_official(flat, (means, bad))
    badm = [m.clone() for m in means]
    badm[0][1] = float("nan")
    with pytest.raises(CheckpointError, match=r"^batch-norm statistics of f0 hold NaN"):
        DVD.from_official(flat, (badm, variances))
    with pytest.raises(CheckpointError, match=r"^expected 22 batch-norm means and variances, got 22 and 21$"):
        DVD.from_official(flat, (means, variances[:-1]))
    with pytest.raises(CheckpointError, match=r"^official DVD batch-norm statistics must be a pair \(means, variances\), "
                                              r"got list$"):
        DVD.from_official(flat, [means])
    with pytest.raises(CheckpointError, match=r"^official DVD f0 mean is not numeric"):
        DVD.from_official(flat, ([["a", "b"]] + means[1:], variances))
    np.savez(tmp_path / "bn.npz", **{f"mean_{i}": m.numpy() for i, m in enumerate(means)})
    with pytest.raises(CheckpointError, match=r"^the batch-norm .npz must hold mean_0 … mean_21 and var_0 … var_21"):
        DVD.from_official(flat, tmp_path / "bn.npz")
    with pytest.raises(TypeError, match=r"^the official DVD parameter vector must be a path, ndarray or tensor, "
                                        r"got list$"):
        DVD.from_official([0.0, 1.0], (means, variances))
    (tmp_path / "p.npy").write_bytes(b"not numpy")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "p.npy"))
                       + " is not a readable DVD parameter vector file"):
        DVD.from_official(tmp_path / "p.npy", (means, variances))
    with pytest.raises(CheckpointError, match=r"^official DVD batch-norm statistics not found: "):
        DVD.from_official(flat, tmp_path / "missing.pt")
    inf = flat.clone()
    inf[-1] = float("-inf")
    with pytest.raises(CheckpointError, match=r"^the official DVD parameter vector holds NaN or Inf$"):
        DVD.from_official(inf, (means, variances))


def test_t7_files_are_read_with_torchfile(tmp_path, monkeypatch):
    """A stand-in ``torchfile`` module (the real one is not installed here) records what it reads."""
    import sys
    import types

    flat, means, variances = release(seed=3)
    param, bn = tmp_path / "param_epoch_400.t7", tmp_path / "bn_meanvar_epoch_400.t7"
    param.write_bytes(b"t7")
    bn.write_bytes(b"t7")
    table = {1: {i + 1: m.numpy() for i, m in enumerate(means)}, 2: {i + 1: v.numpy() for i, v in enumerate(variances)}}
    calls = []

    def load(p):
        calls.append(p)
        if p == str(param):
            return flat.numpy()
        if p == str(bn):
            return table
        raise OSError("bad magic")

    fake = types.ModuleType("torchfile")
    fake.load = load
    monkeypatch.setitem(sys.modules, "torchfile", fake)
    net = DVD.from_official(param, bn)
    assert calls == [str(param), str(bn)]
    assert torch.equal(net.f0.conv.weight.flatten()[:10], flat[:10]) and torch.equal(net.u3.bn.running_var, variances[19])
    other = tmp_path / "other.t7"
    other.write_bytes(b"t7")
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{other} is not a readable Torch7 file: bad magic") + "$"):
        DVD.from_official(other, bn)
    monkeypatch.setitem(sys.modules, "torchfile", None)  # import fails
    with pytest.raises(ImportError, match="^" + re.escape(f"reading {param} needs the 'torchfile' package (pip install "
                                                          "torchfile), or convert it to .npy elsewhere first") + "$"):
        DVD.from_official(param, bn)


def test_from_official_value_checks_after_float32():
    flat, means, variances = release(seed=4)
    big = flat.double()
    big[3] = 1e300  # finite in float64, Inf in the net's float32
    with pytest.raises(CheckpointError, match=r"^the official DVD parameter vector holds NaN or Inf$"):
        DVD.from_official(big, (means, variances))
    with pytest.raises(CheckpointError, match=r"^official DVD parameter vector is not numeric"):
        DVD.from_official(np.array(["a", "b"]), (means, variances))
    with pytest.raises(CheckpointError, match=r"^official DVD f1 variance is not numeric"):
        DVD.from_official(flat, (means, variances[:2] + [["x"]] + variances[3:]))
    # a zero variance (a dead channel) is valid; only negative ones are refused
    zero = [v.clone() for v in variances]
    zero[4][:] = 0.0
    net = DVD.from_official(flat, (means, zero))
    assert torch.equal(net.d2.bn.running_var, torch.zeros(256))


def test_from_official_files_refuse_pickled_objects(tmp_path):
    import datetime

    flat, means, variances = release(seed=5)
    obj = np.empty(1, dtype=object)
    obj[0] = datetime.date(2017, 7, 21)
    np.save(tmp_path / "p.npy", obj, allow_pickle=True)
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 'p.npy'} is not a readable DVD parameter "
                                                              "vector file")):
        DVD.from_official(tmp_path / "p.npy", (means, variances))
    torch.save(datetime.date(2017, 7, 21), tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match="^" + re.escape(f"{tmp_path / 'p.pt'} is not a readable DVD parameter "
                                                              "vector file")):
        DVD.from_official(tmp_path / "p.pt", (means, variances))


def test_from_official_loads_gpu_saved_torch_files_on_the_cpu(tmp_path, monkeypatch):
    """Files written from CUDA tensors (their storages tagged 'cuda:0') load on a CPU-only machine."""
    import torch.serialization

    flat, means, variances = release(seed=6)
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(flat, tmp_path / "param.pt")
        torch.save([means, variances], tmp_path / "bn.pt")
    net = DVD.from_official(tmp_path / "param.pt", tmp_path / "bn.pt")
    assert net.f0.conv.weight.device.type == "cpu"
    assert torch.equal(net.f15.bn.bias, flat[-3:]) and torch.equal(net.f7.bn.running_mean, means[10])
