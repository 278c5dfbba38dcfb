"""Direct checks of losses/perceptual.py: the VGG16 feature loss and the Laplacian-pyramid loss.

VGG16's layer table and parameter shapes are written out by hand from torchvision's
``vgg16().features`` (13 convolutions 3×3, ReLUs, 5 max-pools); features are compared
with an independent chain of ``F.conv2d``/``relu``/``max_pool2d`` on random weights; the
Laplacian pyramid with a numpy transcription (reflected 5-tap binomial blur, subsampling,
PyTorch's bilinear resize written out). Every message is matched from its start.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pnpdeblur.checkpoints import CheckpointError
from pnpdeblur.losses.perceptual import (VGG16_LAYERS, LaplacianPyramidLoss, PerceptualLoss, VGG16Features,
                                         laplacian_pyramid)

from _operators import bilinear_resize

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D = torch.float64

# torchvision vgg16().features: index → (out, in) of each conv
CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
         17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}
POOLS = {4: "pool1", 9: "pool2", 16: "pool3", 23: "pool4", 30: "pool5"}


def hand_layer_table():
    names, block, n = {}, 1, 1
    for i in range(31):
        if i in POOLS:
            names[POOLS[i]] = i
            block, n = block + 1, 1
        elif i in CONVS:
            names[f"conv{block}_{n}"] = i
        else:
            names[f"relu{block}_{n}"] = i
            n += 1
    return names


def vgg_state(upto, seed=0, dtype=torch.float32, zeros=False):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (co, ci) in CONVS.items():
        if i < upto:
            if zeros:
                state[f"features.{i}.weight"] = torch.zeros(co, ci, 3, 3, dtype=dtype)
                state[f"features.{i}.bias"] = torch.zeros(co, dtype=dtype)
            else:
                w = torch.randn(co, ci, 3, 3, generator=g) * (2 / (9 * ci)) ** 0.5
                state[f"features.{i}.weight"] = w.to(dtype)
                state[f"features.{i}.bias"] = (torch.randn(co, generator=g) * 0.1).to(dtype)
    return state


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def reference_features(state, x, upto, normalize=True):
    """Every intermediate of vgg16().features[:upto] by hand (index → tensor)."""
    t = (x - MEAN) / STD if normalize else x
    out = {}
    for i in range(upto):
        if i in CONVS:
            t = F.conv2d(t, state[f"features.{i}.weight"].float(), state[f"features.{i}.bias"].float(), padding=1)
        elif i in POOLS:
            t = F.max_pool2d(t, 2, 2)
        else:
            t = F.relu(t)
        out[i] = t
    return out


# ------------------------------------------------------------------------------------ VGG16
def test_layer_table_is_torchvisions():
    assert VGG16_LAYERS == hand_layer_table()
    assert len(VGG16_LAYERS) == 31 and VGG16_LAYERS["relu2_2"] == 8 and VGG16_LAYERS["pool5"] == 30


def test_full_depth_parameter_shapes():
    feats = VGG16Features(vgg_state(31, zeros=True), layers=("pool5",))
    assert len(feats.features) == 31
    shapes = {k: tuple(v.shape) for k, v in feats.features.state_dict().items()}
    expect = {}
    for i, (co, ci) in CONVS.items():
        expect[f"{i}.weight"], expect[f"{i}.bias"] = (co, ci, 3, 3), (co,)
    assert shapes == expect
    kinds = [type(m).__name__ for m in feats.features]
    assert kinds == ["Conv2d" if i in CONVS else "MaxPool2d" if i in POOLS else "ReLU" for i in range(31)]
    assert all(m.kernel_size == 2 and m.stride == 2 for m in feats.features if isinstance(m, torch.nn.MaxPool2d))
    assert all(m.padding == (1, 1) and m.kernel_size == (3, 3) for m in feats.features
               if isinstance(m, torch.nn.Conv2d))


def test_features_match_an_independent_chain_in_the_order_asked():
    state = vgg_state(10, seed=1, dtype=D)  # float64 weights are read as float32
    feats = VGG16Features(state, layers=("pool2", "relu1_1", "conv2_1"))
    assert len(feats.features) == 10 and feats.layers == ["pool2", "relu1_1", "conv2_1"]
    x = torch.rand(2, 3, 8, 6, generator=torch.Generator().manual_seed(2))
    got = feats(x)
    ref = reference_features(state, x, 10)
    assert len(got) == 3
    for a, i in zip(got, (9, 1, 5)):
        torch.testing.assert_close(a, ref[i], rtol=1e-5, atol=1e-6)
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in feats.parameters())
    # grey images are replicated to RGB
    g1 = x[:, :1]
    torch.testing.assert_close(feats(g1)[1], reference_features(state, g1.expand(-1, 3, -1, -1), 2)[1])


def test_normalisation_is_imagenets_and_can_be_switched_off():
    state = vgg_state(1, dtype=torch.float32, zeros=True)
    for c in range(3):
        state["features.0.weight"][c, c, 1, 1] = 1.0  # conv1_1 channels 0..2 = the input channels
    x = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    on = VGG16Features(state, layers=("conv1_1",))
    off = VGG16Features(state, layers=("conv1_1",), normalize=False)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for c in range(3):
        torch.testing.assert_close(on(x)[0][:, c], (x[:, c] - mean[c]) / std[c])
        torch.testing.assert_close(off(x)[0][:, c], x[:, c])
    assert on.normalize is True and off.normalize is False


def test_always_in_eval_mode():
    feats = VGG16Features(vgg_state(1), layers=("relu1_1",))
    assert not feats.training
    assert feats.train() is feats and not feats.training and not feats.features[0].training
    feats.train(True)
    assert not feats.training


def test_weight_files(tmp_path):
    from safetensors.torch import save_file

    state = vgg_state(3, seed=4)
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a whole torchvision dict: extra keys ignored
    save_file(state, str(tmp_path / "v.safetensors"))
    torch.save(state, tmp_path / "v.pth")
    x = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(5))
    ref = reference_features(state, x, 4)[3]
    for name in ("v.safetensors", "v.pth"):
        torch.testing.assert_close(VGG16Features(tmp_path / name, ("relu1_2",))(x)[0], ref)
        torch.testing.assert_close(VGG16Features(str(tmp_path / name), ("relu1_2",))(x)[0], ref)
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"^.*list\.pth does not hold a state dict \(got list\)$"):
        VGG16Features(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match=r"^VGG16 weights file not found: .*missing\.pth \(see "
                                                r"pnpdeblur\.losses\.perceptual for how to convert torchvision's "
                                                r"vgg16 state dict\)$"):
        VGG16Features(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match=r"^VGG16 weights file not found"):
        VGG16Features(tmp_path)  # a folder is not a file


def test_vgg_messages():
    state = vgg_state(8)
    for bad in ("relu1_1", (), []):
        with pytest.raises(ValueError, match=rf"^layers must be a non-empty sequence of VGG16 layer names, "
                                             rf"got {re_repr(bad)}$"):
            VGG16Features(state, layers=bad)
    known = re_repr(str(sorted(VGG16_LAYERS, key=VGG16_LAYERS.get)))
    with pytest.raises(ValueError, match=rf"^unknown VGG16 layers \['relu9_9', 'x'\]; known: {known}$"):
        VGG16Features(state, layers=("relu1_1", "relu9_9", "x"))
    assert known.startswith(re_repr("['conv1_1', 'relu1_1', 'conv1_2'"))
    with pytest.raises(ValueError, match=r"^VGG16 weights lack 'features\.10\.weight' \(needed for layer relu3_1\)$"):
        VGG16Features(state, layers=("relu3_1", "relu1_1"))
    bad = dict(state)
    bad["features.2.weight"] = torch.zeros(64, 64, 1, 3)
    with pytest.raises(ValueError, match=r"^VGG16 weight 'features\.2\.weight' must have shape \(64, 64, 3, 3\), "
                                         r"got \(64, 64, 1, 3\)$"):
        VGG16Features(bad, layers=("relu1_2",))
    bad["features.2.weight"] = [0.0]
    with pytest.raises(ValueError, match=r"^VGG16 weight 'features\.2\.weight' must have shape \(64, 64, 3, 3\), "
                                         r"got \(\)$"):
        VGG16Features(bad, layers=("relu1_2",))
    bad = dict(state)
    bad["features.0.bias"] = state["features.0.bias"].clone()
    bad["features.0.bias"][5] = float("inf")
    with pytest.raises(ValueError, match=r"^VGG16 weight 'features\.0\.bias' holds NaN or Inf$"):
        VGG16Features(bad, layers=("relu1_1",))
    feats = VGG16Features(state, layers=("relu1_1",))
    for x, got in ((torch.zeros(1, 2, 4, 4), r"\(1, 2, 4, 4\)"), (torch.zeros(3, 4, 4), r"\(3, 4, 4\)"),
                   ([0.0], "list")):
        with pytest.raises(ValueError, match=rf"^x must be a \(N, 3, H, W\) or \(N, 1, H, W\) tensor, got {got}$"):
            feats(x)


def re_repr(v):
    return "".join("\\" + c if c in "().[]+*?^$|{}" else c for c in (v if isinstance(v, str) and v.startswith("[")
                                                                    else repr(v)))


def test_perceptual_loss_value_and_weights():
    state = vgg_state(9, seed=6)
    x = torch.rand(2, 3, 6, 4, generator=torch.Generator().manual_seed(7))
    y = torch.rand(2, 3, 6, 4, generator=torch.Generator().manual_seed(8))
    rx, ry = reference_features(state, x, 9), reference_features(state, y, 9)
    mse = {i: ((rx[i] - ry[i]) ** 2).mean().item() for i in (3, 8)}
    default = PerceptualLoss(state)  # the paper's relu2_2, weight 1
    assert default.vgg.layers == ["relu2_2"] and default.layer_weights == [1.0]
    assert default(x, y).item() == pytest.approx(mse[8], rel=1e-5)
    two = PerceptualLoss(state, layers=("relu1_2", "relu2_2"), layer_weights=(0.25, 2))
    assert two(x, y).item() == pytest.approx(0.25 * mse[3] + 2 * mse[8], rel=1e-5)
    assert PerceptualLoss(state, layers=("relu1_2", "relu2_2"))(x, y).item() == pytest.approx(mse[3] + mse[8],
                                                                                              rel=1e-5)
    xr = x.clone().requires_grad_(True)
    default(xr, y).backward()
    assert xr.grad is not None and all(p.grad is None for p in default.parameters())
    for bad in ((1.0,), (1.0, -0.5), (1.0, float("inf")), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match=rf"^layer_weights must be 2 finite non-negative numbers, "
                                             rf"got {re_repr(bad)}$"):
            PerceptualLoss(state, layers=("relu1_2", "relu2_2"), layer_weights=bad)
    PerceptualLoss(state, layers=("relu1_2", "relu2_2"), layer_weights=(0, 0))  # zeros are allowed


def test_pair_messages():
    loss = LaplacianPyramidLoss(0)
    a = torch.zeros(1, 1, 2, 2)
    for name, call in (("x", lambda b: loss(b, a)), ("target", lambda b: loss(a, b))):
        with pytest.raises(TypeError, match=rf"^{name} must be a torch\.Tensor, got list$"):
            call([0.0])
        with pytest.raises(ValueError, match=rf"^{name} must be a float \(N, C, H, W\) tensor, got \(1, 2, 2\) "
                                             r"torch\.float32$"):
            call(torch.zeros(1, 2, 2))
        with pytest.raises(ValueError, match=rf"^{name} must be a float \(N, C, H, W\) tensor, got \(1, 1, 2, 2\) "
                                             r"torch\.int64$"):
            call(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^x and target must have the same shape, got \(1, 1, 2, 2\) and "
                                         r"\(1, 1, 2, 3\)$"):
        loss(a, torch.zeros(1, 1, 2, 3))


# ------------------------------------------------------------------------- Laplacian pyramid

def _np_blur(a):
    k = np.array([1, 4, 6, 4, 1]) / 16
    h, w = a.shape[-2:]
    mode = "reflect" if min(h, w) >= 3 else "edge"
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(2, 2), (2, 2)], mode=mode)
    rows = sum(k[j] * p[..., :, j:j + w] for j in range(5))
    return sum(k[i] * rows[..., i:i + h, :] for i in range(5))


def _np_pyramid(a, levels):
    out, g = [], a
    for _ in range(levels):
        low = _np_blur(g)[..., ::2, ::2]
        up = bilinear_resize(low, g.shape[-2], g.shape[-1])
        out.append(g - up)
        g = low
    return out + [g]


@pytest.mark.parametrize("h,w,levels", [(9, 7, 2), (8, 8, 3), (2, 5, 1), (5, 2, 1), (3, 3, 1), (4, 3, 2)])
def test_laplacian_pyramid_matches_numpy(h, w, levels):
    x = torch.rand(2, 2, h, w, generator=torch.Generator().manual_seed(h * w), dtype=D)
    got = laplacian_pyramid(x, levels)
    ref = _np_pyramid(x.numpy(), levels)
    assert len(got) == levels + 1
    for a, b in zip(got, ref):
        assert a.dtype == D
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-13)


def test_laplacian_pyramid_edges():
    x = torch.rand(1, 1, 4, 4, dtype=D)
    assert laplacian_pyramid(x, 0)[0] is x and len(laplacian_pyramid(x, 0)) == 1
    # 4×4 → 2×2 → 1×1: two levels fit, a third needs a 1-pixel image halved
    assert [tuple(b.shape[-2:]) for b in laplacian_pyramid(x, 2)] == [(4, 4), (2, 2), (1, 1)]
    with pytest.raises(ValueError, match=r"^image too small for 3 pyramid levels: \(4, 4\)$"):
        laplacian_pyramid(x, 3)
    with pytest.raises(ValueError, match=r"^image too small for 1 pyramid levels: \(1, 4\)$"):
        laplacian_pyramid(torch.zeros(1, 1, 1, 4), 1)
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match=rf"^levels must be an int >= 0, got {bad!r}$"):
            laplacian_pyramid(x, bad)


def test_laplacian_pyramid_loss_value_weights_and_checks():
    g = torch.Generator().manual_seed(9)
    x, y = torch.rand(1, 2, 8, 6, generator=g, dtype=D), torch.rand(1, 2, 8, 6, generator=g, dtype=D)
    px, py = _np_pyramid(x.numpy(), 2), _np_pyramid(y.numpy(), 2)
    terms = [np.abs(a - b).mean() for a, b in zip(px, py)]
    assert LaplacianPyramidLoss(2)(x, y).item() == pytest.approx(sum(terms), abs=1e-13)
    wl = LaplacianPyramidLoss(2, weights=(0.5, 0, 3))
    assert wl(x, y).item() == pytest.approx(0.5 * terms[0] + 3 * terms[2], abs=1e-13)
    assert wl.weights == [0.5, 0.0, 3.0] and wl.levels == 2
    assert repr(wl) == "LaplacianPyramidLoss(levels=2, weights=[0.5, 0.0, 3.0])"
    # default 3 levels, weights 1
    p3x, p3y = _np_pyramid(x.numpy(), 3), _np_pyramid(y.numpy(), 3)
    assert LaplacianPyramidLoss()(x, y).item() == pytest.approx(
        sum(np.abs(a - b).mean() for a, b in zip(p3x, p3y)), abs=1e-13)
    assert LaplacianPyramidLoss(0)(x, y).item() == pytest.approx((x - y).abs().mean().item(), abs=1e-14)
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match=rf"^levels must be an int >= 0, got {bad!r}$"):
            LaplacianPyramidLoss(bad)
    for bad in ((1.0,), (1.0, -1.0), (1.0, float("inf")), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match=rf"^weights must be 2 finite non-negative numbers, got {re_repr(bad)}$"):
            LaplacianPyramidLoss(1, weights=bad)


def test_layer_table_builder_by_itself():
    # VGG16_LAYERS is built once at import; the builder itself must give torchvision's table too
    from pnpdeblur.losses.perceptual import _layer_names

    assert _layer_names() == hand_layer_table()


class _NotAWeight:
    """An arbitrary object in a pickle: weights-only loading must refuse it."""


def test_pth_files_are_loaded_weights_only_and_safetensors_by_safetensors(tmp_path):
    import pickle

    state = vgg_state(1, seed=10)
    torch.save({**state, "extra": _NotAWeight()}, tmp_path / "evil.pth")
    # refused by torch's safe reader, reported as a CheckpointError (a ValueError) naming the file
    with pytest.raises(CheckpointError, match=r"evil\.pth .*safe reader \(weights_only=True\)") as info:
        VGG16Features(tmp_path / "evil.pth", ("conv1_1",))
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    # a .safetensors name is read by safetensors: a torch pickle under that name is refused
    torch.save(state, tmp_path / "pickle.safetensors")
    with pytest.raises(CheckpointError, match=r"Error while deserializing header") as info:
        VGG16Features(tmp_path / "pickle.safetensors", ("conv1_1",))
    assert type(info.value.__cause__).__name__ == "SafetensorError"


def test_grey_images_are_replicated_without_normalisation_too():
    state = vgg_state(2, seed=11)
    feats = VGG16Features(state, ("relu1_1",), normalize=False)
    g = torch.rand(2, 1, 3, 4, generator=torch.Generator().manual_seed(12))
    ref = reference_features(state, g.expand(-1, 3, -1, -1), 2, normalize=False)[1]
    torch.testing.assert_close(feats(g)[0], ref)
    rgb = torch.rand(1, 3, 1, 4, generator=torch.Generator().manual_seed(13))  # one row: H = 1 is no grey image
    torch.testing.assert_close(feats(rgb)[0], reference_features(state, rgb, 2, normalize=False)[1])


def test_state_dict_holds_only_torchvisions_conv_keys():
    # ImageNet's mean/std are constants, not weights: a saved loss carries only the convolutions
    state = vgg_state(3, seed=14)
    feats = VGG16Features(state, ("relu1_2",))
    assert sorted(feats.state_dict()) == sorted(state)
    assert sorted(PerceptualLoss(state, ("relu1_2",)).state_dict()) == sorted(f"vgg.{k}" for k in state)
    VGG16Features(state, ("relu1_2",)).load_state_dict(feats.state_dict())  # strict round trip


def test_missing_weight_names_the_deepest_layer_not_the_last_in_spelling():
    state = vgg_state(8)  # up to relu2_2: conv3_1 (index 10) lacks weights
    with pytest.raises(ValueError, match=r"^VGG16 weights lack 'features\.10\.weight' \(needed for layer conv3_1\)$"):
        VGG16Features(state, layers=("conv3_1", "relu2_2"))


def test_laplacian_pyramid_checks_its_image():
    with pytest.raises(TypeError, match=r"^x must be a torch\.Tensor, got list$"):
        laplacian_pyramid([[0.0]], 1)
    for bad, got in ((torch.rand(3, 8, 8), r"\(3, 8, 8\) torch\.float32"),
                     (torch.zeros(1, 1, 8, 8, dtype=torch.int64), r"\(1, 1, 8, 8\) torch\.int64")):
        with pytest.raises(ValueError, match=rf"^x must be a float \(N, C, H, W\) tensor, got {got}$"):
            laplacian_pyramid(bad, 1)
