"""Priors (Prior protocol, classical, scikit-image, BM3D extra, learned) and checkpoints (issue 4)."""
import inspect
import json

import numpy as np
import pytest
import torch
from skimage import data, transform
from skimage.restoration import denoise_tv_chambolle

from pnpdeblur.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from pnpdeblur.nets import DnCNN
from pnpdeblur.nets.dncnn import PRETRAINED_PATH
from pnpdeblur.priors import (
    BM3D,
    TV,
    Bilateral,
    DenoiserPrior,
    DnCNNPrior,
    NLMeans,
    Prior,
    SkimageTV,
    Tikhonov,
    Wavelet,
    bm3d_available,
    tv_norm,
    tv_prox,
)
from pnpdeblur.priors.classical import _grad, _grad_t


def _camera(size=48):
    img = data.camera().astype(np.float64) / 255.0
    return transform.resize(img[100:356, 150:406], (size, size), anti_aliasing=True)


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a) - np.asarray(b)) ** 2))


PRIORS = {
    "tv": lambda: TV(),
    "tv_channelwise": lambda: TV(coupled=False),
    "tikhonov_identity": lambda: Tikhonov(operator="identity"),
    "tikhonov_gradient": lambda: Tikhonov(),
    "skimage_tv": lambda: SkimageTV(),
    "nl_means": lambda: NLMeans(),
    "bilateral": lambda: Bilateral(),
    "denoiser_untrained": lambda: DenoiserPrior(DnCNN(features=8, depth=3).double()),
}
try:
    import pywt  # noqa: F401

    PRIORS["wavelet"] = lambda: Wavelet()
except ImportError:
    pass
if PRETRAINED_PATH.is_file():
    PRIORS["dncnn_pretrained"] = lambda: DnCNNPrior()


@pytest.fixture(params=sorted(PRIORS))
def prior(request):
    return PRIORS[request.param]()


def test_prior_keeps_type_shape_dtype_and_is_identity_at_zero(prior, rng):
    # isinstance(prior, Prior) holds for any callable (even print), so check the protocol
    # by what it promises: a keyword-only context and a real change at sigma > 0
    assert "context" in inspect.signature(prior.__call__).parameters
    z0 = rng.random((16, 18))
    assert np.abs(prior(z0, 0.1) - z0).max() > 1e-3
    cases = [
        rng.random((16, 18, 3)),  # numpy (H, W, C) float64
        rng.random((16, 18)).astype(np.float32),  # numpy grey float32
        torch.rand(2, 3, 16, 18, dtype=torch.float64),  # torch batch
        torch.rand(1, 16, 18),  # torch (C, H, W) float32
    ]
    for z in cases:
        out = prior(z, 0.05)
        assert type(out) is type(z) and out.shape == z.shape and out.dtype == z.dtype
        assert np.isfinite(np.asarray(out)).all()
        same = prior(z, 0.0)
        assert type(same) is type(z) and same.dtype == z.dtype
        np.testing.assert_array_equal(np.asarray(same), np.asarray(z))
        assert same is not z  # a copy, not the caller's buffer
    t = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    assert prior(t, 0.1, context={"iteration": 3, "y": t}).shape == t.shape


def test_prior_rejects_bad_sigma_and_nan(prior, rng):
    z = rng.random((8, 8))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma"):
            prior(z, bad)
    with pytest.raises(TypeError, match="sigma"):
        prior(z, "0.1")
    z[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prior(z, 0.1)
    with pytest.raises(TypeError, match="float"):
        prior(np.ones((8, 8), dtype=np.uint8), 0.1)


def test_prior_refuses_an_empty_image(prior):
    for z in (np.zeros((0, 8)), np.zeros((8, 0, 3)), torch.zeros(1, 3, 8, 0)):
        with pytest.raises(ValueError, match=r"^z must not be empty"):
            prior(z, 0.1)


def test_a_direct_call_warns_on_a_0_255_image_and_a_solver_call_does_not(prior, rng, recwarn):
    z = rng.random((8, 8))
    for ok in (z, z * 1.49, z * 1.9 - 0.49):  # within [-0.5, 1.5]: noise and ringing, not another scale
        prior(ok, 0.1)
    assert not [w for w in recwarn if "[0, 1]" in str(w.message)]
    for far, where in ((z * 255, r"\[0\.\d+, 2\d\d\]"), (z * 1.6 + 0.1, ""), (z - 0.6, r"\[-0\.\d+, ")):
        with pytest.warns(UserWarning, match=r"^z has values in " + where + r".*assume images in \[0, 1\]"):
            prior(far, 0.1)
        prior(far, 0.1, context={"iteration": 0})  # inside a solver: the solver checked its data once
    assert len([w for w in recwarn if "[0, 1]" in str(w.message)]) == 0


@pytest.mark.parametrize(
    "name, gain",
    [("tv", 3.0), ("tikhonov_gradient", 1.0), ("skimage_tv", 3.0), ("nl_means", 2.0), ("bilateral", 1.0)],
)
def test_classical_denoisers_denoise(name, gain):
    x = _camera(96)
    noisy = x + 0.08 * np.random.default_rng(0).standard_normal(x.shape)
    out = PRIORS[name]()(noisy, 0.08)
    assert _psnr(out, x) > _psnr(noisy, x) + gain


def test_wavelet_prior_needs_pywavelets():
    try:
        import pywt  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="PyWavelets"):
            Wavelet()
    else:
        x = _camera(64)
        noisy = x + 0.08 * np.random.default_rng(0).standard_normal(x.shape)
        assert _psnr(Wavelet()(noisy, 0.08), x) > _psnr(noisy, x) + 2.0


def test_tv_prox_solves_the_same_problem_as_skimage():
    x = _camera(32)
    z = torch.from_numpy(x + 0.1 * np.random.default_rng(0).standard_normal(x.shape))[None, None]
    tau = 0.08
    ours = tv_prox(z, tau, iters=3000, tol=0.0)
    ref = torch.from_numpy(denoise_tv_chambolle(z[0, 0].numpy(), weight=tau, eps=1e-12, max_num_iter=3000))

    def objective(u):
        return float(0.5 * ((u - z[0, 0]) ** 2).sum() + tau * tv_norm(u[None, None]))

    assert objective(ours[0, 0]) <= objective(ref) * (1 + 1e-6)
    np.testing.assert_allclose(ours[0, 0].numpy(), ref.numpy(), atol=2e-3)


def test_tv_prox_is_not_the_identity_and_weight_scales():
    z = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    weak, strong = TV(weight=0.5)(z, 0.1), TV(weight=2.0)(z, 0.1)
    tv = lambda u: float(tv_norm(u)[0])  # noqa: E731
    assert tv(strong) < tv(weak) < tv(z)


def test_grad_transpose_is_exact():
    x = torch.rand(2, 3, 5, 7, dtype=torch.float64)
    p = torch.rand(2, 2, 3, 5, 7, dtype=torch.float64)
    assert float((_grad(x) * p).sum()) == pytest.approx(float((x * _grad_t(p)).sum()), rel=1e-12)


def test_tikhonov_closed_forms():
    z = torch.rand(1, 2, 9, 11, dtype=torch.float64)
    sigma, lam = 0.1, 50.0
    torch.testing.assert_close(Tikhonov(2.0, "identity")(z, sigma), z / (1 + 2.0 * sigma**2))
    x = Tikhonov(lam, "gradient")(z, sigma)
    # x solves (I + λσ² DᵀD) x = z with the Neumann forward differences D
    torch.testing.assert_close(x + lam * sigma**2 * _grad_t(_grad(x)), z, atol=1e-10, rtol=0)


def test_bad_prior_parameters():
    with pytest.raises(ValueError, match="weight"):
        TV(weight=-1.0)
    with pytest.raises(ValueError, match="operator"):
        Tikhonov(operator="laplace")
    with pytest.raises(ValueError, match="iters"):
        TV(iters=0)


def test_bm3d_optional_extra(monkeypatch):
    # the missing-package path runs whether or not bm3d is installed here
    with monkeypatch.context() as m:
        m.setitem(__import__("sys").modules, "bm3d", None)  # makes "import bm3d" raise
        assert not bm3d_available()
        with pytest.raises(ImportError, match=r"pip install 'pnpdeblur\[bm3d\]'"):
            BM3D()
    if not bm3d_available():
        pytest.skip("the optional bm3d package is not installed")
    import bm3d

    # the prior is the package's denoiser at noise std sigma (not sigma², not per-channel
    # for colour), and it denoises
    x = _camera(32)
    noisy = x + 0.1 * np.random.default_rng(0).standard_normal(x.shape)
    out = BM3D()(noisy, 0.1)
    np.testing.assert_allclose(out, bm3d.bm3d(noisy, sigma_psd=0.1), atol=1e-5)  # bm3d works in float32
    assert _psnr(out, x) > _psnr(noisy, x) + 3.0
    rgb = np.clip(np.random.default_rng(1).random((24, 24, 3)), 0, 1)
    np.testing.assert_allclose(BM3D()(rgb, 0.1), bm3d.bm3d_rgb(rgb, 0.1), atol=1e-5)


# -- learned -------------------------------------------------------------------------
class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float32))
        self.config = {"channels": 1}
        self.seen = []

    def forward(self, x, sigma):
        self.seen.append((tuple(x.shape), x.dtype, float(sigma)))
        return x * self.w


def test_denoiser_prior_folds_channels_and_casts():
    net = _Recorder()
    z = torch.rand(2, 3, 8, 9, dtype=torch.float64)
    out = DenoiserPrior(net)(z, 0.2)
    assert net.seen == [((6, 1, 8, 9), torch.float32, 0.2)]
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, z, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="channels"):
        DenoiserPrior(DnCNN(channels=3, features=4, depth=2))(torch.rand(1, 2, 8, 8), 0.1)


def test_dncnn_shapes_and_sigma_forms():
    net = DnCNN(features=8, depth=3)
    x = torch.rand(2, 1, 10, 12)
    assert net(x, 0.1).shape == x.shape
    assert net(x, torch.tensor([0.1, 0.2])).shape == x.shape
    with pytest.raises(ValueError, match="sigma"):
        net(x, torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        net(torch.rand(1, 3, 8, 8), 0.1)


@pytest.mark.skipif(not PRETRAINED_PATH.is_file(), reason="shipped weights not built yet")
def test_pretrained_dncnn_denoises_held_out_image():
    net = DnCNN.pretrained()
    assert net.header["architecture"] == "DnCNN" and not net.training
    x = _camera(64)
    rng = np.random.default_rng(0)
    for s in (10 / 255, 25 / 255):
        noisy = x + s * rng.standard_normal(x.shape)
        out = DnCNNPrior()(noisy, s)
        tv = TV()(noisy, s)
        assert _psnr(out, x) > _psnr(noisy, x) + 3.0
        assert _psnr(out, x) > _psnr(tv, x)


# -- checkpoints -----------------------------------------------------------------------
def test_checkpoint_roundtrip_and_sidecar(tmp_path):
    net = DnCNN(features=8, depth=3)
    p = net.save(tmp_path / "d.safetensors", {"note": "test"})
    back = DnCNN.from_checkpoint(p)
    for a, b in zip(net.state_dict().values(), back.state_dict().values()):
        torch.testing.assert_close(a, b)
    side = json.loads((tmp_path / "d.json").read_text())
    assert side["architecture"] == "DnCNN" and side["config"]["depth"] == 3 and side["note"] == "test"
    state, header = load_checkpoint(p, "DnCNN")
    assert header["config"] == net.config
    with pytest.raises(ValueError, match="path must not end in .json"):
        save_checkpoint(tmp_path / "w.json", net, "DnCNN", net.config)


def test_checkpoint_wrong_architecture_corrupt_or_foreign_raise(tmp_path):
    net = DnCNN(features=8, depth=3)
    p = save_checkpoint(tmp_path / "other.safetensors", net, "SEN", net.config)
    with pytest.raises(CheckpointError, match="SEN"):
        DnCNN.from_checkpoint(p)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="corrupt"):
        DnCNN.from_checkpoint(bad)
    good = net.save(tmp_path / "trunc.safetensors")
    data_ = good.read_bytes()
    good.write_bytes(data_[: len(data_) // 2])
    with pytest.raises(ValueError):
        DnCNN.from_checkpoint(good)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a pnpdeblur checkpoint"):
        DnCNN.from_checkpoint(tmp_path / "foreign.safetensors")
    # right architecture name, wrong config/shapes
    p2 = save_checkpoint(tmp_path / "shape.safetensors", DnCNN(features=4, depth=3), "DnCNN", net.config)
    with pytest.raises(CheckpointError, match="does not fit"):
        DnCNN.from_checkpoint(p2)
    with pytest.raises(CheckpointError, match="not found"):
        DnCNN.from_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("color", ["rgb", "opponent"])
@pytest.mark.parametrize("ensemble", [False, True])
def test_denoiser_prior_colour_space_and_ensemble_are_exact_for_identity_net(color, ensemble):
    net = _Recorder()
    z = torch.rand(1, 3, 8, 9, dtype=torch.float64)
    out = DenoiserPrior(net, color=color, ensemble=ensemble)(z, 0.1)
    torch.testing.assert_close(out, z, atol=1e-6, rtol=0)
    assert len(net.seen) == (4 if ensemble else 1)
    with pytest.raises(ValueError, match="color"):
        DenoiserPrior(net, color="lab")


@pytest.mark.parametrize("key", ["architecture", "config"])
def test_checkpoint_metadata_cannot_override_the_header(tmp_path, key):
    # metadata={"config": ...} used to replace the real config silently, so the file
    # could not be loaded back (or loaded as another architecture).
    net = DnCNN(features=4, depth=3)
    with pytest.raises(ValueError, match="reserved"):
        net.save(tmp_path / "d.safetensors", {key: {"channels": 3}})
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize("make", [lambda w: TV(weight=w), lambda w: Tikhonov(weight=w),
                                  lambda w: Tikhonov(weight=w, operator="identity")])
def test_classical_priors_reject_non_finite_or_non_numeric_weights(make):
    # weight=inf used to give NaN images (inf * 0) instead of an error
    for w in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="weight"):
            make(w)
    with pytest.raises(TypeError, match="weight"):
        make("strong")


def test_denoiser_prior_device_argument():
    with pytest.raises(ValueError, match="device must be 'follow'"):
        DenoiserPrior(DnCNN(features=4, depth=2), device="nowhere")
    with pytest.raises(ValueError, match="device must be 'follow'"):
        DenoiserPrior(DnCNN(features=4, depth=2), device=2.5)
    net = DnCNN(features=4, depth=2).double()
    prior = DenoiserPrior(net, device="cpu")
    assert prior.device == torch.device("cpu") and "device='cpu'" in repr(prior)
    z = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(prior(z, 0.1), DenoiserPrior(net)(z, 0.1), atol=0, rtol=0)
